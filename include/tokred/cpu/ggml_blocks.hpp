// tokred/cpu/ggml_blocks.hpp — CPU backends of ggml_quantize and ggml_dequantize.
//
// Byte-identical to ggml's reference C functions: each block goes through the host/device codec
// of <tokred/policy/ggml_block_codec.hpp>, which explains how every rounding ggml makes is kept
// whatever the compiler's contraction flags.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens, and runs their units — the rotation block, or one 32-channel block — through the
// codec's unit functions, the bodies of the CUDA threads, with a float buffer on the stack, and
// the rotation of <tokred/cpu/hadamard.hpp> (SIMD butterflies, the codec's bits). Blocks
// dequantized into contiguous channels skip the units: a batch of SIMD lanes at a time
// (dequantize_block_lanes), straight to the output or, rotated, through batches held in
// registers. No workspace, no allocation.
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
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/ggml_block_codec.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {

/// Lane j holds bit j: the mask that picks code j's bit 4 out of a 5-bit block's qh word.
struct qh_bit_lanes {
  alignas(64) std::uint32_t bit[32] = {};
  constexpr qh_bit_lanes() noexcept {
    for (int j = 0; j < 32; ++j) bit[j] = 1u << j;
  }
};
inline constexpr qh_bit_lanes qh_bit_lanes_v{};

/// iq4_nl's codebook as 16 float lanes, the table lookup16 reads.
struct iq4nl_level_lanes {
  alignas(64) float level[16] = {};
  constexpr iq4nl_level_lanes() noexcept {
    for (int i = 0; i < 16; ++i) level[i] = iq4nl_level(i);
  }
};
inline constexpr iq4nl_level_lanes iq4nl_level_lanes_v{};

/// Whether dequantize_block_lanes<Arch> takes blocks of `type`: all but iq4_nl, whose codebook
/// is a 16-lane table lookup (AVX-512 only; elsewhere the codec's loop).
template <class Arch>
bool has_block_lanes(ggml_type type) noexcept {
  return type != ggml_type::iq4_nl || has_lookup16<Arch>();
}

/// The codec's dequantize_block a batch of lanes at a time: `put(j, values)` receives values j …
/// j + w − 1 of the block. The same integers times the same d (plus m), so the same bits (fused
/// or not, q·d is exact). Nibble blocks hold the low nibbles of their 16 bytes, then the high
/// ones; a batch of at most 16 lanes lies within one of the two halves.
template <class Arch, class Put>
TOKRED_FORCE_INLINE void dequantize_block_lanes(ggml_type type, const std::uint8_t* in, const Put& put) noexcept {
  using fb = float_batch<Arch>;
  using ub = u32_batch<Arch>;
  constexpr index_t w = fb::size;
  static_assert(16 % w == 0, "tokred: a batch of nibble codes lies in one half of the block");
  const fb d(load_f16(in));
  if (type == ggml_type::q8_0) {
    const ub sign(0x80u);
    for (index_t j = 0; j < 32; j += w) put(j, code_floats<Arch>((widen_bytes<Arch>(in + 2 + j) ^ sign) - sign) * d);
    return;
  }
  const bool five = type == ggml_type::q5_0 || type == ggml_type::q5_1, affine = type == ggml_type::q4_1 || type == ggml_type::q5_1;
  const index_t head = 2 + (affine ? 2 : 0), at = head + (five ? 4 : 0);  // d [m] [qh] nibbles
  const ub qh(five ? load_u32(in + head) : 0u);
  const fb m(affine ? load_f16(in + 2) : 0.0f);
  const ub offset(type == ggml_type::q4_0 ? 8u : type == ggml_type::q5_0 ? 16u : 0u);
  for (index_t j = 0; j < 32; j += w) {
    const ub bytes = widen_bytes<Arch>(in + at + j % 16);
    ub q = j < 16 ? ub(bytes & ub(0x0Fu)) : ub(bytes >> 4);
    if (five) q = q | xsimd::select((qh & ub::load_aligned(qh_bit_lanes_v.bit + j)) != ub(0u), ub(16u), ub(0u));
    if constexpr (has_lookup16<Arch>()) {
      if (type == ggml_type::iq4_nl) {
        put(j, d * lookup16<Arch>(fb::load_aligned(iq4nl_level_lanes_v.level), q));
        continue;
      }
    }
    const fb v = code_floats<Arch>(q - offset) * d;
    put(j, affine ? fb(v + m) : v);  // q·d alone keeps a −0
  }
}

}  // namespace detail

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
    const detail::simd_rotation<Arch> rotate{rot != 0 ? detail::hadamard_scale(rot) : 1.0f};
    const auto unit = [&](auto rotated) {
      detail::for_each_ggml_unit(exec, prob, detail::ggml_unit_channels(rot), [&](const detail::ggml_unit& at) {
        detail::ggml_quantize_unit<decltype(rotated)::value>(p.type, rot, in.cache, out.blocks, at, rotate);
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
    const bool lanes = out.cache.stride(2) == 1 && detail::has_block_lanes<Arch>(p.type);
    using fb = detail::float_batch<Arch>;
    if (rot != 0 && lanes) {  // blocks into batches of lanes, rotated back into the row
      const float scale = detail::hadamard_scale(rot);
      detail::for_each_ggml_unit(exec, prob, rot, [&](const detail::ggml_unit& at) {
        fb v[detail::hadamard_max_block / fb::size];
        const std::uint8_t* src = detail::ggml_unit_blocks(in.blocks, p.type, at);
        for (index_t b = 0; b < rot; b += ggml_block_elems, src += ggml_block_bytes(p.type))
          detail::dequantize_block_lanes<Arch>(p.type, src, [&](index_t j, const fb& x) TOKRED_INLINE_LAMBDA { v[(b + j) / fb::size] = x; });
        detail::hadamard_butterflies<Arch>(v, rot);
        detail::store_scaled<Arch>(v, rot, scale, &out.cache(at.row.head, at.row.token, at.channel));
      });
    } else if (rot != 0) {
      const detail::simd_rotation<Arch> rotate{detail::hadamard_scale(rot)};
      detail::for_each_ggml_unit(exec, prob, rot, [&](const detail::ggml_unit& at) {
        detail::ggml_dequantize_unit<true>(p.type, rot, in.blocks, out.cache, at, rotate);
      });
    } else if (lanes) {
      detail::for_each_ggml_unit(exec, prob, ggml_block_elems, [&](const detail::ggml_unit& at) {
        E* const y = &out.cache(at.row.head, at.row.token, at.channel);
        detail::dequantize_block_lanes<Arch>(p.type, detail::ggml_unit_blocks(in.blocks, p.type, at),
                                             [y](index_t j, const fb& x) TOKRED_INLINE_LAMBDA { detail::store_floats<Arch>(y + j, x); });
      });
    } else {
      detail::for_each_ggml_unit(exec, prob, ggml_block_elems, [&](const detail::ggml_unit& at) {
        detail::ggml_dequantize_unit<false>(p.type, 0, in.blocks, out.cache, at);
      });
    }
    return status::ok;
  }
};

}  // namespace tokred
