// tokred/policy/uniform_group.hpp — one uniform quantization group value by value: its
// statistics, scale and zero point, codes and dequantized values, and the logit of one packed
// key, as host/device functions.
//
// This is the arithmetic of <tokred/policy/uniform_quant.hpp>'s formats written out for one
// value at a time: what the CPU kernels (<tokred/cpu/uniform_quant.hpp>) compute lane by lane in
// SIMD registers, and what one CUDA thread (<tokred/cuda/uniform_quant.cuh>) computes for its
// group. Every step is one IEEE operation (<tokred/core/rounded.hpp>) in the CPU kernels' order,
// with their selects — `min` as `lo < x ? lo : x`, as minps has it — so both backends write the
// same codes, scales and zero points, and the same values but for NaN payloads. The `*_unit`
// functions are the CUDA kernels' whole per-thread bodies; the CPU tests run them on host views
// against the CPU backend.
#pragma once

#include <cstdint>
#include <type_traits>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kv_quant.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred::detail {

/// A kv_scheme as a type, so each kernel is compiled for one scheme.
template <kv_scheme S>
using scheme_tag = std::integral_constant<kv_scheme, S>;

/// Calls `f(scheme_tag<s>{})`.
template <class F>
void with_scheme(kv_scheme s, F&& f) {
  switch (s) {
    case kv_scheme::asymmetric: return f(scheme_tag<kv_scheme::asymmetric>{});
    case kv_scheme::symmetric: return f(scheme_tag<kv_scheme::symmetric>{});
    case kv_scheme::sign: return f(scheme_tag<kv_scheme::sign>{});
    case kv_scheme::ternary: return f(scheme_tag<kv_scheme::ternary>{});
  }
}

/// Where the code of value i of a run lies: word i·bits/32, shifted by i·bits mod 32; `spills`
/// when its high bits continue in the next word.
struct code_slot {
  index_t word;
  int shift;
  bool spills;
};
TOKRED_HOST_DEVICE TOKRED_FORCE_INLINE constexpr code_slot slot_of(index_t i, int bits) noexcept {
  const index_t bit = i * bits;
  return {bit / 32, static_cast<int>(bit % 32), bit % 32 + bits > 32};
}

/// The code at `slot` of the word at `word` (its continuation `next` words on, when it spills).
TOKRED_HOST_DEVICE TOKRED_FORCE_INLINE std::uint32_t code_in(const std::uint32_t* word, index_t next, code_slot slot,
                                                              int bits) noexcept {
  std::uint32_t q = word[0] >> slot.shift;
  if (slot.spills) q |= word[next] << (32 - slot.shift);
  return q & ((1u << bits) - 1u);
}

/// The code of value i of a run from its words (value 0's word first).
TOKRED_HOST_DEVICE TOKRED_FORCE_INLINE std::uint32_t code_at(const std::uint32_t* words, index_t word_stride,
                                                              index_t i, int bits) noexcept {
  const code_slot at = slot_of(i, bits);
  return code_in(words + at.word * word_stride, word_stride, at, bits);
}

/// x rounded to E and widened back (exact for float).
template <class E>
TOKRED_HOST_DEVICE inline float stored_as(float x) noexcept {
  return widen(from_float<E>(x));
}

/// A quantizer's per-step rounding: none, or to E after every operation (`round_each_op`).
template <class E>
TOKRED_HOST_DEVICE inline float step_to(bool each_op, float x) noexcept {
  return each_op ? stored_as<E>(x) : x;
}

/// A group's statistics, value by value in group order: min, max, Σ|x| from +0, and whether a
/// value is NaN or ±inf.
struct group_moments {
  float lo = positive_infinity();
  float hi = -positive_infinity();
  float abs_sum = 0.0f;
  bool bad = false;

  TOKRED_HOST_DEVICE void add(float x) noexcept {
    lo = lo < x ? lo : x;
    hi = hi > x ? hi : x;
    abs_sum = add_rn(abs_sum, abs_bits(x));
    bad = bad || !(sub_rn(x, x) == 0.0f);
  }
};

/// A group's scale and zero point as stored (rounded to E), widened.
struct group_scale {
  float scale = 0.0f;
  float zero = 0.0f;
};

/// The scale and zero point of a group from its statistics (see kv_scheme); NaN for a group
/// holding a non-finite value.
template <kv_scheme S, class E>
TOKRED_HOST_DEVICE inline group_scale scale_of(const uniform_format& f, const group_moments& m, bool each_op) noexcept {
  group_scale g;
  if constexpr (S == kv_scheme::asymmetric) {
    g.scale = stored_as<E>(div_rn(step_to<E>(each_op, sub_rn(m.hi, m.lo)), static_cast<float>((1 << f.bits) - 1)));
    g.zero = m.lo;
  } else if constexpr (S == kv_scheme::symmetric) {
    const float low = abs_bits(m.lo), high = abs_bits(m.hi);
    g.scale = stored_as<E>(div_rn(low > high ? low : high, static_cast<float>((1 << (f.bits - 1)) - 1)));
  } else {
    g.scale = stored_as<E>(div_rn(m.abs_sum, static_cast<float>(f.group)));
  }
  if (m.bad) g.scale = g.zero = quiet_nan();
  return g;
}

/// The code of value x under a group's parameters: the quotient clamped to the code range, then
/// rounded to the nearest integer, ties to even; a constant group's codes are 0 (`symmetric`: the
/// middle code) and a non-finite group's 0.
template <kv_scheme S, class E>
TOKRED_HOST_DEVICE inline std::uint32_t code_of(int bits, float x, const group_scale& g, bool each_op) noexcept {
  const bool nan_scale = !(g.scale == g.scale);
  if constexpr (S == kv_scheme::asymmetric) {
    const float top = static_cast<float>((1 << bits) - 1);
    float q = step_to<E>(each_op, div_rn(step_to<E>(each_op, sub_rn(x, g.zero)), g.scale));
    q = q > 0.0f ? q : 0.0f;
    q = q < top ? q : top;
    if (g.scale == 0.0f || nan_scale) q = 0.0f;
    return static_cast<std::uint32_t>(round_to_int(q));
  } else if constexpr (S == kv_scheme::symmetric) {
    const float m = static_cast<float>((1 << (bits - 1)) - 1), mid = static_cast<float>(1 << (bits - 1));
    float q = step_to<E>(each_op, div_rn(x, g.scale));
    q = q > -m ? q : -m;
    q = q < m ? q : m;
    if (g.scale == 0.0f) q = 0.0f;
    if (nan_scale) q = -mid;
    return static_cast<std::uint32_t>(round_to_int(q) + (1 << (bits - 1)));
  } else if constexpr (S == kv_scheme::sign) {
    return !nan_scale && x >= 0.0f ? 1u : 0u;
  } else {
    const float tau = mul_rn(g.scale, 0.5f);
    if (nan_scale) return 0u;
    return x > tau ? 2u : x < -tau ? 0u : 1u;
  }
}

/// `x̂ = a·code + b`: the scheme's dequantization as an affine map of the code.
struct code_map {
  float a, b;
};

template <kv_scheme S>
TOKRED_HOST_DEVICE inline code_map map_of(int bits, bool vidkv, const group_scale& g) noexcept {
  if constexpr (S == kv_scheme::asymmetric) return {g.scale, g.zero};
  if constexpr (S == kv_scheme::symmetric) return {g.scale, mul_rn(-static_cast<float>(1 << (bits - 1)), g.scale)};
  if constexpr (S == kv_scheme::sign) return vidkv ? code_map{g.scale, 0.0f} : code_map{add_rn(g.scale, g.scale), -g.scale};
  if constexpr (S == kv_scheme::ternary) return vidkv ? code_map{1.0f, -1.0f} : code_map{g.scale, -g.scale};
}

/// The dequantized value of code q: `q·s + z` (asymmetric; the product and the sum rounded
/// separately), `(q − 2^(b−1))·s`, `(2q − 1)·s` or `(q − 1)·s`, the integer part formed exactly
/// first; `round_each_op` rounds each product to E.
template <kv_scheme S, class E>
TOKRED_HOST_DEVICE inline float value_of(int bits, bool vidkv, std::uint32_t code, const group_scale& g,
                                         bool each_op) noexcept {
  const float q = static_cast<float>(code);
  if constexpr (S == kv_scheme::asymmetric) return add_rn(step_to<E>(each_op, mul_rn(q, g.scale)), g.zero);
  if constexpr (S == kv_scheme::symmetric)
    return step_to<E>(each_op, mul_rn(q - static_cast<float>(1 << (bits - 1)), g.scale));
  if constexpr (S == kv_scheme::sign)
    return step_to<E>(each_op, mul_rn(vidkv ? q : q + q - 1.0f, g.scale));
  if constexpr (S == kv_scheme::ternary) return vidkv ? q - 1.0f : step_to<E>(each_op, mul_rn(q - 1.0f, g.scale));
}

// ---------------------------------------------------------------------------------------------
// Units: the groups of a cache in the order the CUDA kernels number their threads.

/// One group of a cache: along tokens (head, token group, channel), along channels (head,
/// token, channel group).
struct uniform_unit {
  index_t head, outer, inner;
};

/// The groups of a cache: heads × token groups × head_dim along tokens, heads × tokens ×
/// channel groups along channels.
TOKRED_HOST_DEVICE constexpr index_t uniform_unit_count(const uniform_format& f, const kv_problem& p) noexcept {
  return f.axis == kv_group_axis::tokens ? p.heads * (p.tokens / f.group) * p.head_dim
                                         : p.heads * p.tokens * (p.head_dim / f.group);
}

/// Group u, the innermost index fastest: neighbouring units read neighbouring channels (along
/// tokens) or neighbouring runs of a token (along channels).
TOKRED_HOST_DEVICE constexpr uniform_unit uniform_unit_at(const uniform_format& f, const kv_problem& p,
                                                          index_t u) noexcept {
  const index_t inner = f.axis == kv_group_axis::tokens ? p.head_dim : p.head_dim / f.group;
  const index_t outer = f.axis == kv_group_axis::tokens ? p.tokens / f.group : p.tokens;
  return {u / (inner * outer), u / inner % outer, u % inner};
}

/// (head, row, channel) of item i of `heads × rows × dim`, the channel fastest.
struct row_item {
  index_t head, row, channel;
};
TOKRED_HOST_DEVICE constexpr row_item row_item_at(index_t i, index_t rows, index_t dim) noexcept {
  return {i / (rows * dim), i / dim % rows, i % dim};
}

/// Where a unit's values and codes lie: value e at (token, channel) `first + e·step`, its words
/// from (word row, word column) `word0`, `word_step` apart in the codes view.
struct unit_place {
  index_t token, channel, token_step, channel_step;
  index_t word_row, word_col, word_row_step, word_col_step;

  TOKRED_HOST_DEVICE constexpr index_t token_of(index_t e) const noexcept { return token + e * token_step; }
  TOKRED_HOST_DEVICE constexpr index_t channel_of(index_t e) const noexcept { return channel + e * channel_step; }
  /// Word j of the unit's codes in `codes` (heads, rows, columns) of head `head`.
  template <class Codes>
  TOKRED_HOST_DEVICE auto& word(const Codes& codes, index_t head, index_t j) const noexcept {
    return codes(head, word_row + j * word_row_step, word_col + j * word_col_step);
  }
};

TOKRED_HOST_DEVICE constexpr unit_place place_of(const uniform_format& f, const uniform_unit& u) noexcept {
  if (f.axis == kv_group_axis::tokens)
    return {u.outer * f.group, u.inner, 1, 0, u.outer * f.group * f.bits / 32, u.inner, 1, 0};
  return {u.outer, u.inner * f.group, 0, 1, u.outer, u.inner * f.group * f.bits / 32, 0, 1};
}

/// Quantizes one group into `out` from `value(e)`, its e-th value in group order (fp32), placed
/// at `at`: statistics in group order, then the codes, each word written once.
template <kv_scheme S, class E, class Space, class Value>
TOKRED_HOST_DEVICE void quantize_group_values(const uniform_format& f, bool each_op, const Value& value,
                                              const uniform_packed<E, Space>& out, const uniform_unit& u,
                                              const unit_place& at) noexcept {
  group_moments m;
  for (index_t e = 0; e < f.group; ++e) m.add(value(e));
  const group_scale g = scale_of<S, E>(f, m, each_op);
  out.scale(u.head, u.outer, u.inner) = from_float<E>(g.scale);
  if constexpr (S == kv_scheme::asymmetric) out.zero(u.head, u.outer, u.inner) = from_float<E>(g.zero);
  std::uint32_t word = 0;
  for (index_t e = 0; e < f.group; ++e) {
    const code_slot slot = slot_of(e, f.bits);
    const std::uint32_t q = code_of<S, E>(f.bits, value(e), g, each_op);
    word |= q << slot.shift;
    if (slot.shift + f.bits >= 32) {  // the word is complete
      at.word(out.codes, u.head, slot.word) = word;
      word = slot.spills ? q >> (32 - slot.shift) : 0u;
    }
  }
}

/// A second group of the same values (`negated`: of their negations), for quantize_sign_group.
struct sign_copy {
  uniform_unit unit;
  unit_place at;
  bool negated;
};

/// quantize_group_values<kv_scheme::sign> in one pass, each value read once, for values too
/// dear to form twice or to hold (VidKV's DFT sums): a sign code is the value's sign and depends
/// on the group only through whether it is finite (a group holding a NaN or an infinity codes
/// every value 0), so each word goes out as it fills and all are cleared after if the group is
/// not finite. `copy`, when given, receives the same group of the values or of their negations
/// (the same Σ|x|, finiteness and scale).
template <class E, class Space, class Value>
TOKRED_HOST_DEVICE void quantize_sign_group(const uniform_format& f, bool each_op, const Value& value,
                                            const uniform_packed<E, Space>& out, const uniform_unit& u,
                                            const unit_place& at, const sign_copy* copy = nullptr) noexcept {
  // Codes as a finite group's (a scale of 0: a sign code reads no more of it).
  const auto code = [&](float x) { return code_of<kv_scheme::sign, E>(1, x, group_scale{}, each_op); };
  group_moments m;
  std::uint32_t word = 0, copy_word = 0;
  for (index_t e = 0; e < f.group; ++e) {  // f.group: a multiple of 32, one code bit per value
    const float x = value(e);
    m.add(x);
    word |= code(x) << (e % 32);
    if (copy) copy_word |= code(copy->negated ? -x : x) << (e % 32);
    if (e % 32 == 31) {
      at.word(out.codes, u.head, e / 32) = word;
      if (copy) copy->at.word(out.codes, copy->unit.head, e / 32) = copy_word;
      word = copy_word = 0;
    }
  }
  const E scale = from_float<E>(scale_of<kv_scheme::sign, E>(f, m, each_op).scale);
  out.scale(u.head, u.outer, u.inner) = scale;
  if (copy) out.scale(copy->unit.head, copy->unit.outer, copy->unit.inner) = scale;
  if (!m.bad) return;
  for (index_t j = 0; j < f.group / 32; ++j) {
    at.word(out.codes, u.head, j) = 0u;
    if (copy) copy->at.word(out.codes, copy->unit.head, j) = 0u;
  }
}

/// Quantizes one group into `out`. `source(token, channel)` is the group's value at that place
/// of the cache, widened to fp32 (a streaming cache reads some tokens from its residual, others
/// from the new ones); it is read twice per value, once by each pass.
template <kv_scheme S, class E, class Space, class Source>
TOKRED_HOST_DEVICE void quantize_unit_from(const uniform_format& f, bool each_op, const Source& source,
                                           const uniform_packed<E, Space>& out, const uniform_unit& u) noexcept {
  const unit_place at = place_of(f, u);
  const auto value = [&](index_t e) { return source(at.token_of(e), at.channel_of(e)); };
  quantize_group_values<S>(f, each_op, value, out, u, at);
}

/// Quantizes one group of `x` into `out` (quantize_unit_from over x's head u.head).
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE void quantize_unit(const uniform_format& f, bool each_op, const view<const E, 3, Space>& x,
                                      const uniform_packed<E, Space>& out, const uniform_unit& u) noexcept {
  quantize_unit_from<S>(f, each_op, [&](index_t t, index_t c) { return widen(x(u.head, t, c)); }, out, u);
}

/// The scale and zero point of one group of `in`, widened.
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE inline group_scale scale_at(const uniform_packed<const E, Space>& in, const uniform_unit& u) noexcept {
  group_scale g;
  g.scale = widen(in.scale(u.head, u.outer, u.inner));
  if constexpr (S == kv_scheme::asymmetric) g.zero = widen(in.zero(u.head, u.outer, u.inner));
  return g;
}

/// Dequantizes one group of `in`: `sink(token, channel, value)` receives each value (fp32) with
/// its place in the cache, in group order.
template <kv_scheme S, class E, class Space, class Sink>
TOKRED_HOST_DEVICE void dequantize_unit_to(const uniform_format& f, bool each_op, bool vidkv,
                                           const uniform_packed<const E, Space>& in, const uniform_unit& u,
                                           const Sink& sink) noexcept {
  const unit_place at = place_of(f, u);
  const group_scale g = scale_at<S>(in, u);
  const std::uint32_t* words = &at.word(in.codes, u.head, 0);
  const index_t word_stride = at.word_row_step * in.codes.stride(1) + at.word_col_step * in.codes.stride(2);
  for (index_t e = 0; e < f.group; ++e)
    sink(at.token_of(e), at.channel_of(e),
         value_of<S, E>(f.bits, vidkv, code_at(words, word_stride, e, f.bits), g, each_op));
}

/// Dequantizes one group of `in` into `y` (any element type).
template <kv_scheme S, class E, class Eout, class Space>
TOKRED_HOST_DEVICE void dequantize_unit(const uniform_format& f, bool each_op, bool vidkv,
                                        const uniform_packed<const E, Space>& in, const view<Eout, 3, Space>& y,
                                        const uniform_unit& u) noexcept {
  dequantize_unit_to<S>(f, each_op, vidkv, in, u,
                        [&](index_t t, index_t c, float v) { y(u.head, t, c) = from_float<Eout>(v); });
}

/// The dequantized value of token t, channel c of a format grouped along tokens (fp32).
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE inline float packed_value_at(const uniform_format& f, bool each_op, bool vidkv,
                                                const uniform_packed<const E, Space>& in, index_t h, index_t t,
                                                index_t c) noexcept {
  const uniform_unit u{h, t / f.group, c};
  const unit_place at = place_of(f, u);
  const std::uint32_t* words = &at.word(in.codes, h, 0);
  return value_of<S, E>(f.bits, vidkv, code_at(words, in.codes.stride(1), t % f.group, f.bits), scale_at<S>(in, u),
                        each_op);
}

/// The dequantized key of one packed token (of P), channel by channel: `a·code + b` with its
/// group's map, one fused multiply-add on the device (the logits are defined within fp32
/// rounding, not bit for bit). Where the token's codes lie is found once, on construction.
template <kv_scheme S, class E, class Space>
struct packed_key_row {
  int bits;
  bool vidkv;
  uniform_packed<const E, Space> keys;
  index_t kv, group;
  const std::uint32_t* words;  // the token's word row, channel 0 (codes have inner stride 1)
  index_t next_row;            // to the next word row, where a straddling code continues
  code_slot slot;

  TOKRED_HOST_DEVICE packed_key_row(const uniform_format& f, bool vidkv_, const uniform_packed<const E, Space>& keys_,
                                    index_t kv_, index_t t) noexcept
      : bits(f.bits), vidkv(vidkv_), keys(keys_), kv(kv_), group(t / f.group),
        words(nullptr), next_row(keys_.codes.stride(1)), slot(slot_of(t % f.group, f.bits)) {
    words = &keys.codes(kv, group * f.group * f.bits / 32 + slot.word, 0);
  }

  TOKRED_HOST_DEVICE float operator()(index_t c) const noexcept {
    group_scale g;
    g.scale = widen(keys.scale(kv, group, c));
    if constexpr (S == kv_scheme::asymmetric) g.zero = widen(keys.zero(kv, group, c));
    const code_map m = map_of<S>(bits, vidkv, g);
    return m.a * static_cast<float>(code_in(words + c, next_row, slot, bits)) + m.b;
  }
};

/// Adds key t's products with `count` ≤ Heads query rows over channels [c0, c0 + n) to `acc`,
/// channel by channel: key t is packed token t when t < P (`packed`), residual token t − P of
/// `residual` otherwise. Query row i's channel c0 + c is `queries[i·query_stride + c]` (fp32,
/// staged by the caller). The scores kernel's per-thread body.
template <int Heads, kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE void accumulate_key_logits(const uniform_format& f, bool vidkv,
                                              const uniform_packed<const E, Space>& keys,
                                              const view<const E, 3, Space>& residual, index_t kv, index_t packed,
                                              index_t t, const float* queries, index_t query_stride, int count,
                                              index_t c0, index_t n, float (&acc)[Heads]) noexcept {
  const auto add = [&](index_t c, float k) {
    for (int i = 0; i < Heads; ++i)
      if (i < count) acc[i] += queries[i * query_stride + c] * k;
  };
  if (t < packed) {
    const packed_key_row<S, E, Space> key(f, vidkv, keys, kv, t);
    for (index_t c = 0; c < n; ++c) add(c, key(c0 + c));
  } else {
    for (index_t c = 0; c < n; ++c) add(c, widen(residual(kv, t - packed, c0 + c)));
  }
}

}  // namespace tokred::detail
