// tokred/cpu/hadamard.hpp — CPU backend of the block Walsh–Hadamard rotation, and the row
// transform <tokred/cpu/ggml_blocks.hpp> fuses into its quantizer and dequantizer.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens. A row is rotated one block of `block` channels at a time through a 256-float
// buffer on the stack (hadamard_unit of <tokred/policy/ggml_block_codec.hpp>, the CUDA thread's
// body): load (widening fp16/bf16 exactly), butterflies, scale, store. The butterflies run a
// batch of SIMD lanes at a time (hadamard_lanes): spans below the batch width between lanes of
// one batch, the others between whole batches. Only adds, subtracts and one multiply per element,
// each rounded on its own and each stage in the codec's order, so every ISA gives the codec's
// bits (no multiply-add exists for a compiler to fuse). No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/ggml_block_codec.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {

/// Lane i's partner in a butterfly of span S: lane i ^ S.
template <std::uint32_t S>
struct butterfly_partner {
  static constexpr std::uint32_t get(std::size_t i, std::size_t) noexcept { return static_cast<std::uint32_t>(i) ^ S; }
};

/// +1 in the lanes that take the sum in a butterfly of span S, −1 in those that take the
/// difference (bit S set), for batches of up to 16 lanes.
template <std::uint32_t S>
struct butterfly_signs {
  alignas(64) float sign[16] = {};
  constexpr butterfly_signs() noexcept {
    for (std::uint32_t i = 0; i < 16; ++i) sign[i] = (i & S) != 0 ? -1.0f : 1.0f;
  }
};
template <std::uint32_t S>
inline constexpr butterfly_signs<S> butterfly_signs_v{};

/// The butterflies of span S (a power of two below the batch width) within one batch: lane i
/// with bit S clear becomes x[i] + x[i + S], lane i + S becomes x[i] − x[i + S], as the codec's
/// pair (a, b) → (a + b, a − b). Both are partner + x·(±1): the product is exact, so fused or
/// not the one rounding is the codec's (a sum's operands commute exactly), and a permute and a
/// multiply-add replace a permute, an add, a subtract and a blend. On AVX-512 the partners come
/// from immediate permutes within 128-bit lanes (spans 1, 2) and of 128-bit blocks (4, 8), which
/// clang picks for xsimd's swizzle by itself and g++ does not (it loads an index for vpermps:
/// Hadamard fp32 1.07 – 1.13× slower).
template <std::uint32_t S, class Arch>
TOKRED_FORCE_INLINE float_batch<Arch> butterflies_in_lanes(const float_batch<Arch>& x) noexcept {
  float_batch<Arch> partner;
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) {
    if constexpr (S == 1) partner = _mm512_permute_ps(x, 0xB1);
    if constexpr (S == 2) partner = _mm512_permute_ps(x, 0x4E);
    if constexpr (S == 4) partner = _mm512_shuffle_f32x4(x, x, 0xB1);
    if constexpr (S == 8) partner = _mm512_shuffle_f32x4(x, x, 0x4E);
  } else
#endif
  partner = xsimd::swizzle(x, xsimd::make_batch_constant<u32_batch<Arch>, butterfly_partner<S>>());
  return multiply_add<Arch>(x, float_batch<Arch>::load_aligned(butterfly_signs_v<S>.sign), partner);
}

/// The stages of spans 2^S for each S given (1, 2, … up to half the batch width), in that order,
/// on each of the `batches` batches.
template <class Arch, std::uint32_t... S>
TOKRED_FORCE_INLINE void butterflies_below_width(float_batch<Arch>* v, index_t batches,
                                                 std::integer_sequence<std::uint32_t, S...>) noexcept {
  for (index_t k = 0; k < batches; ++k) ((v[k] = butterflies_in_lanes<(1u << S), Arch>(v[k])), ...);
}

/// The butterflies of hadamard_transform (n a power of two, batch width ≤ n ≤ 256) on the n/w
/// batches `v` of n values, a batch of lanes at a time: the same stages in the same order, so
/// the codec's bits before its scale.
template <class Arch>
void hadamard_butterflies(float_batch<Arch>* v, index_t n) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  constexpr std::uint32_t log_w = w == 16 ? 4 : w == 8 ? 3 : w == 4 ? 2 : w == 2 ? 1 : 0;
  static_assert(index_t{1} << log_w == w, "tokred: a batch width is a power of two up to 16");
  const index_t batches = n / w;
  butterflies_below_width<Arch>(v, batches, std::make_integer_sequence<std::uint32_t, log_w>{});
  for (index_t span = 1; span < batches; span *= 2)  // spans of span·w values
    for (index_t i = 0; i < batches; i += 2 * span)
      for (index_t j = i; j < i + span; ++j) {
        const fb a = v[j], b = v[j + span];
        v[j] = a + b;
        v[j + span] = a - b;
      }
}

/// The n values of the batches `v` times `scale` (hadamard_scale(n)), rounded to E, at `out`.
template <class Arch, class E>
void store_scaled(const float_batch<Arch>* v, index_t n, float scale, E* out) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  const float_batch<Arch> s(scale);
  for (index_t k = 0; k < n / w; ++k) store_floats<Arch>(out + k * w, v[k] * s);
}

/// hadamard_transform of the n values at `in` into `out`, rounded to Eout, with the scale
/// `scale` (hadamard_scale(n)). Every value is read before any is written, so `out` may be `in`.
template <class Arch, class Ein, class Eout>
void hadamard_lanes(const Ein* in, Eout* out, index_t n, float scale) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  float_batch<Arch> v[hadamard_max_block / w];
  for (index_t k = 0; k < n / w; ++k) v[k] = load_floats<Arch>(in + k * w);
  hadamard_butterflies<Arch>(v, n);
  store_scaled<Arch>(v, n, scale, out);
}

/// hadamard_lanes in place on the float buffer of the codec's units, as their rotation.
template <class Arch>
struct simd_rotation {
  float scale;  // hadamard_scale of the block
  void operator()(float* x, index_t n) const noexcept {
#if defined(__GNUC__) && !defined(__clang__)
    // An empty statement that may write memory: g++ 12 cannot tell that the unit's loop of
    // run-time length filled the n values of `x` the batches read, and warns (maybe-uninitialized).
    __asm__ volatile("" : : "r"(x) : "memory");
#endif
    hadamard_lanes<Arch>(x, x, n, scale);
  }
};

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
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const float scale = detail::hadamard_scale(block);
    if (in.cache.stride(2) == 1 && out.cache.stride(2) == 1) {  // straight from row to row
      detail::for_each_ggml_unit(exec, prob, block, [&](const detail::ggml_unit& at) {
        detail::hadamard_lanes<Arch>(&in.cache(at.row.head, at.row.token, at.channel),
                                     &out.cache(at.row.head, at.row.token, at.channel), block, scale);
      });
    } else {
      detail::for_each_ggml_unit(exec, prob, block, [&](const detail::ggml_unit& at) {
        detail::hadamard_unit(block, in.cache, out.cache, at, detail::simd_rotation<Arch>{scale});
      });
    }
    return status::ok;
  }
};

}  // namespace tokred
