// tokred/cpu/ggml_blocks.hpp — CPU backends of ggml_quantize and ggml_dequantize.
//
// Byte-identical to ggml's reference C functions: each block goes through the host/device codec
// of <tokred/policy/ggml_block_codec.hpp>, which explains how every rounding ggml makes is kept
// whatever the compiler's contraction flags.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens, and runs their units — the rotation block, or one 32-channel block — through the
// codec's unit functions, the bodies of the CUDA threads, with a float buffer on the stack. No
// workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/hadamard.hpp"
#include "tokred/policy/ggml_block_codec.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
/// ggml block quantization on CPU: no workspace; any strides on the float side; fp32, fp16 and
/// bf16 caches (widened exactly to fp32, as ggml quantizes fp32 rows).
template <class Arch>
struct backend<ggml_quantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const ggml_quantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const ggml_quantize& p, const kv_inputs<E>& in,
                      const kv_block_outputs<>& out, workspace) noexcept {
    if (status s = detail::check_quantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, prob.head_dim) : 0;
    const auto unit = [&](auto rotated) {
      detail::for_each_ggml_unit(exec, prob, detail::ggml_unit_channels(rot), [&](const detail::ggml_unit& at) {
        detail::ggml_quantize_unit<decltype(rotated)::value>(p.type, rot, in.cache, out.blocks, at);
      });
    };
    if (rot != 0) unit(std::true_type{});
    else unit(std::false_type{});
    return status::ok;
  }
};

/// ggml block dequantization on CPU: no workspace; any strides on the float side; fp32, fp16 and
/// bf16 outputs (computed in fp32, rounded to nearest even).
template <class Arch>
struct backend<ggml_dequantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const ggml_dequantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const ggml_dequantize& p, const kv_block_inputs<>& in,
                      const kv_outputs<E>& out, workspace) noexcept {
    if (status s = detail::check_dequantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, prob.head_dim) : 0;
    const auto unit = [&](auto rotated) {
      detail::for_each_ggml_unit(exec, prob, detail::ggml_unit_channels(rot), [&](const detail::ggml_unit& at) {
        detail::ggml_dequantize_unit<decltype(rotated)::value>(p.type, rot, in.blocks, out.cache, at);
      });
    };
    if (rot != 0) unit(std::true_type{});
    else unit(std::false_type{});
    return status::ok;
  }
};

}  // namespace tokred
