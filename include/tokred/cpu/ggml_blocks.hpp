// tokred/cpu/ggml_blocks.hpp — CPU backends of ggml_quantize and ggml_dequantize.
//
// Byte-identical to ggml's reference C functions: each block goes through the host/device codec
// of <tokred/policy/ggml_block_codec.hpp>, which explains how every rounding ggml makes is kept
// whatever the compiler's contraction flags.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens. Blocks run a batch of SIMD lanes at a time, with the codec's operations in its
// order, so its bytes and values: quantize_block_lanes reads contiguous rows straight from the
// cache; dequantize_block_lanes writes contiguous channels straight to the output or, rotated,
// through batches held in registers. Strided rows and rotated quantization go through the
// codec's unit functions (the bodies of the CUDA threads) with a float buffer on the stack, the
// SIMD block quantizer and the rotation of <tokred/cpu/hadamard.hpp> (SIMD butterflies, the
// codec's bits). iq4_nl quantizes and dequantizes through the codec where lookup16 is missing
// (builds without AVX-512). No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
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

/// iq4_nl's codebook as 16 float lanes, the table lookup16 reads; `search` is the same with +inf
/// for level 15, which the search for the level below a value never picks.
struct iq4nl_level_lanes {
  alignas(64) float level[16] = {};
  alignas(64) float search[16] = {};
  constexpr iq4nl_level_lanes() noexcept {
    for (int i = 0; i < 16; ++i) level[i] = search[i] = iq4nl_level(i);
    search[15] = std::numeric_limits<float>::infinity();
  }
};
inline constexpr iq4nl_level_lanes iq4nl_level_lanes_v{};

/// Whether dequantize_block_lanes<Arch> and quantize_block_lanes<Arch> take blocks of `type`: all
/// but iq4_nl, whose codebook is a 16-lane table lookup (AVX-512 only; elsewhere the codec's loops).
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
  const ggml_block_fields at = ggml_fields_of(type);
  if (type == ggml_type::q8_0) {
    const ub sign(0x80u);
    for (index_t j = 0; j < 32; j += w) put(j, code_floats<Arch>((widen_bytes<Arch>(in + at.codes + j) ^ sign) - sign) * d);
    return;
  }
  const bool five = type == ggml_type::q5_0 || type == ggml_type::q5_1, affine = type == ggml_type::q4_1 || type == ggml_type::q5_1;
  const ub qh(five ? load_u32(in + at.qh) : 0u);
  const fb m(affine ? load_f16(in + 2) : 0.0f);
  const ub offset(type == ggml_type::q4_0 ? 8u : type == ggml_type::q5_0 ? 16u : 0u);
  for (index_t j = 0; j < 32; j += w) {
    const ub bytes = widen_bytes<Arch>(in + at.codes + j % 16);
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

/// Bit j (of 32) set where value j of the block's batches `keys` equals `key`.
template <class Arch>
TOKRED_FORCE_INLINE std::uint32_t block_lanes_equal(const float_batch<Arch>* keys, float key) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  std::uint32_t m = 0;
  for (index_t k = 0; k < 32 / w; ++k) m |= lane_mask<Arch>(keys[k] == float_batch<Arch>(key)) << (k * w);
  return m;
}

/// |value| with the sign of the first of the block's values `v` whose key equals `key` (`keys`
/// are the values or their magnitudes): what the codec's in-order scans keep where equal values
/// differ in sign (+0 and −0; x and −x for the largest magnitude).
template <class Arch>
TOKRED_FORCE_INLINE float sign_of_first(const float_batch<Arch>* keys, float key, const float_batch<Arch>* v,
                                        float value) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  const std::uint32_t equal = block_lanes_equal<Arch>(keys, key);
  std::uint32_t negative = 0;
  for (index_t k = 0; k < 32 / w; ++k) negative |= sign_lanes<Arch>(v[k]) << (k * w);
  const std::uint32_t sign = static_cast<std::uint32_t>((negative & equal & (0u - equal)) != 0) << 31;
  return bits_float(float_bits(std::fabs(value)) | sign);  // no branch: the sign is a coin toss per block
}

#if XSIMD_WITH_AVX512F
/// quantize_iq4_nl's codes for the batches `v` of a block (magnitudes `a`, the largest `amax`),
/// and the rounded products its two least-squares sums add, value j's at `wqx[j]` and `wqq[j]`
/// (only where has_lookup16<Arch>()). Each id·x takes the nearest level, the upper one on a tie,
/// as iq4nl_codes: the level below it by a binary search of the sorted codebook (four lookups),
/// then the nearer of it and the next. A block below ggml's GROUP_MAX_EPS gets code 8 and zero
/// products, whose sums give the codec's d = 0.
template <class Arch>
void iq4nl_lanes(const float_batch<Arch>* v, const float_batch<Arch>* a, float amax, u32_batch<Arch>* codes,
                 float* wqx, float* wqq) noexcept {
  using fb = float_batch<Arch>;
  using ub = u32_batch<Arch>;
  constexpr index_t w = fb::size, n = 32 / w;
  if (amax < 1e-15f) {  // ggml's GROUP_MAX_EPS: d = 0, every code 8
    for (index_t k = 0; k < n; ++k) {
      codes[k] = ub(8u);
      fb(0.0f).store_aligned(wqx + k * w);
      fb(0.0f).store_aligned(wqq + k * w);
    }
    return;
  }
  const auto u32_lanes = [](const typename fb::batch_bool_type& b) TOKRED_INLINE_LAMBDA {
    return typename ub::batch_bool_type(static_cast<__mmask16>(b));
  };
  const fb id(div_rn(1.0f, div_rn(sign_of_first<Arch>(a, amax, v, amax), -127.0f)));
  const fb levels = fb::load_aligned(iq4nl_level_lanes_v.level), search = fb::load_aligned(iq4nl_level_lanes_v.search);
  for (index_t k = 0; k < n; ++k) {
    const fb s = separate_product(id, v[k]);  // rounded before the level search subtracts from it
    ub below(0u);  // the largest i ≤ 14 with level i ≤ s (0 if none)
    for (std::uint32_t step = 8; step != 0; step /= 2) {
      const ub next = below + ub(step);
      below = xsimd::select(u32_lanes(lookup16<Arch>(search, next) <= s), next, below);
    }
    const fb low = lookup16<Arch>(levels, below), high = lookup16<Arch>(levels, below + ub(1u));
    const auto lower = s - low < high - s;
    codes[k] = xsimd::select(u32_lanes(lower), below, below + ub(1u));
    const fb level = xsimd::select(lower, low, high);
    const fb wq = v[k] * v[k] * level;
    separate_product(wq, v[k]).store_aligned(wqx + k * w);
    separate_product(wq, level).store_aligned(wqq + k * w);
  }
}
#endif

/// The fp16 bits of `value` at `at`, little-endian (a block's d or m).
template <class Arch>
TOKRED_FORCE_INLINE void store_half_le(std::uint8_t* at, float value) noexcept {
  const std::uint16_t h = f16_bits_of<Arch>(value);
  at[0] = static_cast<std::uint8_t>(h & 0xFFu);
  at[1] = static_cast<std::uint8_t>(h >> 8);
}

/// iq4_nl blocks whose codes are written and whose scale d waits for its least-squares sums. Each
/// sum adds a block's 32 products one after another, in the codec's order: a chain of dependent
/// adds that leaves the adders idle for most of its latency. finish_iq4nl_scales runs the chains
/// of `capacity` blocks side by side, each still in its own order, so each d is the codec's. The
/// products are written before they are read (no initialisation: a call that quantizes no iq4_nl
/// block pays nothing for them).
struct iq4nl_pending_scales {
  static constexpr index_t capacity = 8;
  alignas(64) float wqx[capacity][32];
  alignas(64) float wqq[capacity][32];
  std::uint8_t* block[capacity];
  index_t count = 0;
};

/// Writes the scale of every pending block and empties `pending`. All `capacity` chains run, so
/// the loops have fixed bounds: slots past `count` are zeroed first and their sums not written.
template <class Arch>
void finish_iq4nl_scales(iq4nl_pending_scales& pending) noexcept {
  constexpr index_t c = iq4nl_pending_scales::capacity;
  if (pending.count == 0) return;
  for (index_t b = pending.count; b < c; ++b)
    for (index_t j = 0; j < 32; ++j) pending.wqx[b][j] = pending.wqq[b][j] = 0.0f;
  float sumqx[c] = {}, sumq2[c] = {};
  for (index_t j = 0; j < 32; ++j)
    for (index_t b = 0; b < c; ++b) {
      sumqx[b] += pending.wqx[b][j];
      sumq2[b] += pending.wqq[b][j];
    }
  for (index_t b = 0; b < pending.count; ++b)
    store_half_le<Arch>(pending.block[b], sumq2[b] > 0.0f ? div_rn(sumqx[b], sumq2[b]) : 0.0f);
  pending.count = 0;
}

/// The codec's quantize_block for every type with has_block_lanes, a batch of lanes at a time:
/// the same fp32 operations on the same values, so the same bytes. `v` holds the block's 32
/// values, value j in lane j mod size of v[j / size]. Each product x·id passes through
/// separate_product before its add, so no FMA joins them. The block's extremes are folded across
/// lanes in any order, exact for finite values; where the codec's first-of-equals rule tells equal
/// values apart by sign, sign_of_first finds it. The codes are narrowed to bytes in registers on
/// x86 (code_bytes), through an array elsewhere.
///
/// With `pending`, an iq4_nl block's d is left to finish_iq4nl_scales (called here when
/// `pending` is full; the caller calls it after its last block); without, it is written here.
template <class Arch>
TOKRED_FORCE_INLINE void quantize_block_lanes(ggml_type type, const float_batch<Arch>* v, std::uint8_t* out,
                                              [[maybe_unused]] iq4nl_pending_scales* pending = nullptr) noexcept {
  using fb = float_batch<Arch>;
  using ub = u32_batch<Arch>;
  constexpr index_t w = fb::size, n = 32 / w;
  static_assert(32 % w == 0, "tokred: a block is whole batches");
  const auto store_half = [out](index_t at, float value) TOKRED_INLINE_LAMBDA { store_half_le<Arch>(out + at, value); };
  const ggml_block_fields at = ggml_fields_of(type);
  fb a[n];
  for (index_t k = 0; k < n; ++k) a[k] = xsimd::abs(v[k]);
  const fb finite_max(std::numeric_limits<float>::max());
  auto finite = a[0] <= finite_max;  // false for NaN and ±inf
  fb largest = a[0];
  for (index_t k = 1; k < n; ++k) {
    finite = finite & (a[k] <= finite_max);
    largest = xsimd::max(largest, a[k]);
  }
  if (!xsimd::all(finite)) return quantize_non_finite(type, out);
  const float amax = lanes_extreme<true, Arch>(largest);

  ub codes[n];
  if (type == ggml_type::q8_0) {
    // roundf(x·id), as round_code, by truncating x·id + copysign(½ − 2⁻²⁵, x·id): exact for
    // |x·id| ≤ 127.5 in round-to-nearest (a fraction below ½ stays below the next integer, one
    // of ½ or more reaches it, ½ itself by the tie to even at 1 − 2⁻²⁵). |x·id| stays within
    // 127·(1 + 2⁻²⁰) whenever id is finite (d ≥ 2⁻¹²⁸ then keeps 21 bits or more), so no code
    // leaves int8. Where 1/d overflows, every product is ±inf or NaN, codes the codec sets to 0,
    // as id = 0 does here.
    const float d = div_rn(amax, 127.0f), inverse = d != 0.0f ? div_rn(1.0f, d) : 0.0f;
    const fb id(std::fabs(inverse) <= std::numeric_limits<float>::max() ? inverse : 0.0f);
    store_half(0, d);
    const fb below_half(0.5f - 0x1p-25f), sign(-0.0f);
    for (index_t k = 0; k < n; ++k) {
      const fb p = separate_product(v[k], id);
      codes[k] = xsimd::bitwise_cast<ub>(xsimd::to_int(p + ((p & sign) | below_half))) & ub(0xFFu);
    }
  } else if (type != ggml_type::iq4_nl) {
    const bool five = type == ggml_type::q5_0 || type == ggml_type::q5_1, affine = type == ggml_type::q4_1 || type == ggml_type::q5_1;
    const float levels = five ? 32.0f : 16.0f;
    float d, min = 0.0f;
    if (affine) {
      fb lo = v[0], hi = v[0];
      for (index_t k = 1; k < n; ++k) lo = xsimd::min(lo, v[k]), hi = xsimd::max(hi, v[k]);
      min = lanes_extreme<false, Arch>(lo);
      float max = lanes_extreme<true, Arch>(hi);
      if (min == 0.0f) min = sign_of_first<Arch>(v, 0.0f, v, 0.0f);
      if (max == 0.0f) max = sign_of_first<Arch>(v, 0.0f, v, 0.0f);
      d = div_rn(max - min, levels - 1.0f);
      store_half(2, min);
    } else {
      d = div_rn(amax != 0.0f ? sign_of_first<Arch>(a, amax, v, amax) : 0.0f, -levels / 2);
    }
    const fb id(d != 0.0f ? div_rn(1.0f, d) : 0.0f);
    store_half(0, d);
    const fb offset(affine ? 0.5f : levels / 2 + 0.5f);
    // q5_1 keeps a code of 32 (its low five bits, 0), as ggml's (uint8_t) store does.
    const fb top(type == ggml_type::q5_1 ? 255.0f : levels - 1.0f);
    std::uint32_t qh = 0;
    for (index_t k = 0; k < n; ++k) {  // truncate_code, clamped
      const fb t = (affine ? separate_product(v[k] - fb(min), id) : separate_product(v[k], id)) + offset;
      const fb kept = xsimd::select((t >= fb(0.0f)) & (t < fb(256.0f)), t, fb(0.0f));  // 0 where C is undefined
      const ub code = xsimd::bitwise_cast<ub>(xsimd::to_int(xsimd::min(kept, top)));
      qh |= sign_lanes<Arch>(xsimd::bitwise_cast<fb>(code << 27)) << (k * w);  // bit 4 of each code
      codes[k] = code & ub(0x0Fu);
    }
    if (five) store_u32(out + at.qh, qh);
  } else {  // iq4_nl, where has_block_lanes
#if XSIMD_WITH_AVX512F
    if constexpr (has_lookup16<Arch>()) {
      if (pending != nullptr) {
        if (pending->count == iq4nl_pending_scales::capacity) finish_iq4nl_scales<Arch>(*pending);
        const index_t slot = pending->count++;
        pending->block[slot] = out;
        iq4nl_lanes<Arch>(v, a, amax, codes, pending->wqx[slot], pending->wqq[slot]);
      } else {
        alignas(64) float wqx[32], wqq[32];
        iq4nl_lanes<Arch>(v, a, amax, codes, wqx, wqq);
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (index_t j = 0; j < 32; ++j) {  // the codec's order
          sumqx += wqx[j];
          sumq2 += wqq[j];
        }
        store_half(0, sumq2 > 0.0f ? div_rn(sumqx, sumq2) : 0.0f);
      }
    }
#endif
  }
  if constexpr (has_code_packing<Arch>()) {  // x86 alone (the branch is empty elsewhere)
#if XSIMD_WITH_SSE2
    __m128i b0, b1;
    code_bytes<Arch>(codes, b0, b1);
    auto* const p = reinterpret_cast<__m128i*>(out + at.codes);
    if (type == ggml_type::q8_0) {
      _mm_storeu_si128(p, b0);
      _mm_storeu_si128(p + 1, b1);
    } else {
      _mm_storeu_si128(p, _mm_or_si128(b0, _mm_slli_epi16(b1, 4)));  // nibbles ≤ 15: no carry across bytes
    }
#endif
  } else {
    alignas(64) std::uint32_t q[32];
    for (index_t k = 0; k < n; ++k) codes[k].store_aligned(q + k * w);
    if (type == ggml_type::q8_0) {
      for (index_t j = 0; j < 32; ++j) out[at.codes + j] = static_cast<std::uint8_t>(q[j]);
    } else {
      for (index_t j = 0; j < 16; ++j) out[at.codes + j] = static_cast<std::uint8_t>(q[j] | q[j + 16] << 4);
    }
  }
}

/// quantize_block_lanes of the 32 values at `x`, widened exactly (a signalling NaN may arrive
/// quiet, which a non-finite block's bytes do not show).
template <class Arch, class E>
TOKRED_FORCE_INLINE void quantize_block_at(ggml_type type, const E* x, std::uint8_t* out,
                                           iq4nl_pending_scales* pending = nullptr) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  float_batch<Arch> v[32 / w];
  for (index_t k = 0; k < 32 / w; ++k) v[k] = load_operands<Arch>(x + k * w);
  quantize_block_lanes<Arch>(type, v, out, pending);
}

/// The block quantizer the CPU passes to the codec's units: quantize_block_lanes where it takes
/// the type, the codec's quantize_block otherwise.
template <class Arch>
struct simd_block_quantizer {
  void operator()(ggml_type type, const float* x, std::uint8_t* out) const noexcept {
    if (has_block_lanes<Arch>(type)) quantize_block_at<Arch>(type, x, out);
    else quantize_block(type, x, out);
  }
};

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
    const bool lanes = in.cache.stride(2) == 1 && detail::has_block_lanes<Arch>(p.type);
    detail::iq4nl_pending_scales iq4nl_scales;  // iq4_nl's d, a batch of blocks at a time
    detail::iq4nl_pending_scales* const pending = p.type == ggml_type::iq4_nl ? &iq4nl_scales : nullptr;
    if (rot == 0 && lanes) {  // straight from the row
      detail::for_each_ggml_unit(exec, prob, prob.head_dim, [&](const detail::ggml_unit& row) TOKRED_INLINE_LAMBDA {
        const E* x = &in.cache(row.row.head, row.row.token, 0);
        std::uint8_t* dst = detail::ggml_unit_blocks(out.blocks, p.type, row);
        for (index_t c = 0; c < prob.head_dim; c += ggml_block_elems, dst += ggml_block_bytes(p.type))
          detail::quantize_block_at<Arch>(p.type, x + c, dst, pending);
      });
      detail::finish_iq4nl_scales<Arch>(iq4nl_scales);
      return status::ok;
    }
    if (lanes) {  // the row's units rotated in registers, scaled and rounded, then their blocks
      using fb = detail::float_batch<Arch>;
      constexpr index_t w = fb::size;
      const fb scale(detail::hadamard_scale(rot));
      detail::for_each_ggml_unit(exec, prob, rot, [&](const detail::ggml_unit& at) TOKRED_INLINE_LAMBDA {
        fb v[detail::hadamard_max_block / w];
        const E* x = &in.cache(at.row.head, at.row.token, at.channel);
        for (index_t k = 0; k < rot / w; ++k) v[k] = detail::load_operands<Arch>(x + k * w);
        detail::hadamard_butterflies<Arch>(v, rot);
        for (index_t k = 0; k < rot / w; ++k) v[k] = detail::separate_product(v[k], scale);
        std::uint8_t* dst = detail::ggml_unit_blocks(out.blocks, p.type, at);
        for (index_t b = 0; b < rot; b += ggml_block_elems, dst += ggml_block_bytes(p.type))
          detail::quantize_block_lanes<Arch>(p.type, v + b / w, dst, pending);
      });
      detail::finish_iq4nl_scales<Arch>(iq4nl_scales);
      return status::ok;
    }
    const detail::simd_rotation<Arch> rotate{rot != 0 ? detail::hadamard_scale(rot) : 1.0f};
    const auto unit = [&](auto rotated) {
      detail::for_each_ggml_unit(exec, prob, detail::ggml_unit_channels(rot), [&](const detail::ggml_unit& at) {
        detail::ggml_quantize_unit<decltype(rotated)::value>(p.type, rot, in.cache, out.blocks, at, rotate,
                                                             detail::simd_block_quantizer<Arch>{});
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
      detail::for_each_ggml_unit(exec, prob, rot, [&](const detail::ggml_unit& at) TOKRED_INLINE_LAMBDA {
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
      detail::for_each_ggml_unit(exec, prob, ggml_block_elems, [&](const detail::ggml_unit& at) TOKRED_INLINE_LAMBDA {
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
