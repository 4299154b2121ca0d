// tokred/cpu/hadamard.hpp — CPU backend of the block Walsh–Hadamard rotation, and the row
// transform <tokred/cpu/ggml_blocks.hpp> fuses into its quantizer and dequantizer.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens. A row is rotated one block of `block` channels at a time through a 256-float
// buffer on the stack (hadamard_unit of <tokred/policy/ggml_block_codec.hpp>, the CUDA thread's
// body): load (widening fp16/bf16 exactly), butterflies, scale, store. Only adds,
// subtracts and one multiply per element, each rounded on its own, so every ISA and every
// auto-vectorisation gives the same bits (no multiply-add exists for a compiler to fuse).
// No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/policy/ggml_block_codec.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {

/// Runs share `ith` of `nth` of a cache's units, `unit(at)` for each, whole rows to a share.
template <class Arch, class Unit>
void for_each_ggml_unit(const cpu<Arch>& exec, const kv_problem& p, index_t width, const Unit& unit) noexcept {
  const index_t rows = p.heads * p.tokens;
  const index_t r1 = share_begin(rows, exec.ith + 1, exec.nth);
  for (index_t r = share_begin(rows, exec.ith, exec.nth); r < r1; ++r) {
    const kv_row row = kv_row_at(r, p.tokens);
    for (index_t c = 0; c < p.head_dim; c += width) unit(ggml_unit{row, c});
  }
}

}  // namespace detail

/// Hadamard rotation on CPU: no workspace; any strides; fp32/fp16/bf16 in and out (computed in
/// fp32); in place when `out.cache` is `in.cache` itself (same pointer, strides, element type).
template <class Arch>
struct backend<hadamard, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const hadamard&, const kv_problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const hadamard& p, const kv_inputs<Ein>& in,
                      const kv_outputs<Eout>& out, workspace) noexcept {
    index_t block = 0;
    if (status s = detail::check_hadamard(exec, p, in, out, block); s != status::ok) return s;
    detail::for_each_ggml_unit(exec, detail::kv_problem_of(in.cache), block,
                               [&](const detail::ggml_unit& at) { detail::hadamard_unit(block, in.cache, out.cache, at); });
    return status::ok;
  }
};

}  // namespace tokred
