// tokred/policy/vidkv_units.hpp — VidKV's key quantization and dequantization
// (<tokred/policy/vidkv.hpp>) cut into independent units of work, as host/device functions: the
// CUDA kernels' (<tokred/cuda/vidkv.cuh>) whole per-thread bodies, which the CPU tests also run
// on host views against the CPU backend. Every step is the CPU backend's, in its order and
// rounded as it rounds (<tokred/core/rounded.hpp>, fp32 and double), so both write the same bits.
//
// Quantizing a chunk (heads, tokens, D), k difficult and n easy channels:
//   extremes    each channel's min, max and last NaN over rows [r0, r1) of the (head, token) rows
//               in order (channel_extremes); consecutive row ranges merge in order into what one
//               pass over every row gives
//   ranking     range = max − min (the last NaN where one was met), optionally rounded to the
//               element type; the k largest keys score_key(range) are difficult, ties to the
//               lower channel (ranks_difficult); `channels` lists the difficult channels
//               ascending, then the easy ones ascending (channel_position)
//   difficult   one unit per (head, token group, difficult channel): the uniform group kernel
//               over that channel (quantize_unit_from)
//   spectral    one unit per (head, token group, part of bin m ≤ n/2: Re or Im): the group's
//               values of that part, each one token's real DFT over its easy channels
//               (spectral_component) rounded to fp32, computed once into the unit's stack, then
//               rounded to the element type and sign-quantized along tokens into component
//               2m (+1 for Im) and, for 0 < m < n/2, into the mirrored component of bin n − m
//               (the same values, negated for Im): each DFT sum is formed once
// Dequantizing:
//   difficult   one unit per (head, token group, difficult channel), into its channel
//   easy        one item per (head, token, easy channels j and n − j): the inverse DFT of the
//               token's dequantized spectrum at both, from one set of sums (easy_channel_values)
//
// The DFT sums follow the CPU backend's folded form (cos even and sin odd about n/2): row 0,
// the pair sums v_j + v_(n−j) and differences v_j − v_(n−j) for 0 < j < n − j, and v_(n/2) for n
// even; c = row 0 + Σ_m sum_m·cos(2π·km/n) + middle·cos(πk), s = Σ_m difference_m·sin(2π·km/n),
// m = 1 … h in order, each product rounded on its own, in double. Twiddles come from the host
// (fill_twiddle_rows: std::cos and std::sin, as the CPU backend), since a device's double cos
// need not round as the host's.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/selection.hpp"  // score_key
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/uniform_quant.hpp"
#include "tokred/policy/vidkv.hpp"

namespace tokred::detail {

/// The most easy channels the CUDA backends transform: their twiddles are a kernel parameter.
inline constexpr index_t vidkv_max_easy = 256;

// ---------------------------------------------------------------------------------------------
// The DFT.

/// cos and sin of 2π·r/n for r < n, in double, on the host: std::cos and std::sin of the angle
/// (2π·r)/n for 2r < n; cos π = −1 and sin π = 0 (n even); the rest from cos(2π − a) = cos a and
/// sin(2π − a) = −sin a. So cos[n − r] = cos[r] and sin[n − r] = −sin[r] to the bit, and the
/// inverse DFT's channels j and n − j are made of the same products.
inline void fill_twiddle_rows(double* cos_rows, double* sin_rows, index_t n) noexcept {
  for (index_t r = 0; 2 * r < n; ++r) {
    const double angle = 2.0 * 3.14159265358979323846 * static_cast<double>(r) / static_cast<double>(n);
    cos_rows[r] = std::cos(angle);
    sin_rows[r] = std::sin(angle);
  }
  if (n % 2 == 0 && n > 0) {
    cos_rows[n / 2] = -1.0;
    sin_rows[n / 2] = 0.0;
  }
  for (index_t r = n / 2 + 1; r < n; ++r) {
    cos_rows[r] = cos_rows[n - r];
    sin_rows[r] = -sin_rows[n - r];
  }
}

/// The rows of a folded real sequence of length n: row 0 holds v_0, rows 1 … h the pair sums
/// v_j + v_(n−j), row h + 1 (n even) v_(n/2), and rows h + e + j the pair differences
/// v_j − v_(n−j), with h = ⌈n/2⌉ − 1 the pairs 0 < j < n − j and e = 1 for n even.
struct dft_fold {
  index_t n, h, e;
  TOKRED_HOST_DEVICE explicit constexpr dft_fold(index_t n_) noexcept
      : n(n_), h((n_ + 1) / 2 - 1), e(n_ % 2 == 0 ? 1 : 0) {}
  TOKRED_HOST_DEVICE constexpr index_t sum(index_t j) const noexcept { return j; }  // j in [0, h]
  TOKRED_HOST_DEVICE constexpr index_t middle() const noexcept { return h + 1; }    // n even
  TOKRED_HOST_DEVICE constexpr index_t difference(index_t j) const noexcept { return h + e + j; }  // j in [1, h]
  /// Bin (or channel) m < n is 0 or n/2: the transform of real values has Im X_m = +0 there,
  /// and for m ≤ n/2 exactly these are their own mirror n − m (mod n).
  TOKRED_HOST_DEVICE constexpr bool real_bin(index_t m) const noexcept { return m == 0 || 2 * m == n; }
};

/// One token's folded rows, formed on demand: sums and the middle from `re(j)`, differences
/// from `im(j)` (the forward transform reads its values through both; the inverse reads the real
/// parts of the spectrum through `re` and the imaginary parts through `im`), in double.
template <class Re, class Im>
struct folded_rows {
  dft_fold f;
  Re re;
  Im im;
  TOKRED_HOST_DEVICE double sum(index_t j) const noexcept { return j == 0 ? re(0) : add_rn(re(j), re(f.n - j)); }
  TOKRED_HOST_DEVICE double middle() const noexcept { return re(f.n / 2); }
  TOKRED_HOST_DEVICE double difference(index_t j) const noexcept { return sub_rn(im(j), im(f.n - j)); }
};

template <class Re, class Im>
TOKRED_HOST_DEVICE folded_rows<Re, Im> fold_rows(index_t n, const Re& re, const Im& im) noexcept {
  return {dft_fold(n), re, im};
}

/// c = row 0 + Σ_m sum_m·cos(2π·km/n) + middle·cos(πk) for output index k < n.
template <class Rows>
TOKRED_HOST_DEVICE double folded_cos_sum(const double* cos_rows, const Rows& rows, index_t k) noexcept {
  const dft_fold& f = rows.f;
  double c = rows.sum(0);
  index_t r = 0;  // k·m mod n
  for (index_t m = 1; m <= f.h; ++m) {
    r += k;
    if (r >= f.n) r -= f.n;
    c = add_rn(c, mul_rn(rows.sum(m), cos_rows[r]));
  }
  if (f.e) c = add_rn(c, mul_rn(rows.middle(), cos_rows[k % 2 == 0 ? 0 : f.n / 2]));
  return c;
}

/// s = Σ_m difference_m·sin(2π·km/n) for output index k < n, from +0.
template <class Rows>
TOKRED_HOST_DEVICE double folded_sin_sum(const double* sin_rows, const Rows& rows, index_t k) noexcept {
  const dft_fold& f = rows.f;
  double s = 0.0;
  index_t r = 0;
  for (index_t m = 1; m <= f.h; ++m) {
    r += k;
    if (r >= f.n) r -= f.n;
    s = add_rn(s, mul_rn(rows.difference(m), sin_rows[r]));
  }
  return s;
}

/// Spectral component `comp` < 2n of one token (Re X_0, Im X_0, Re X_1, …) from its folded
/// easy values, rounded to fp32: bins above n/2 are the conjugates of bins below, and the
/// imaginary parts of bins 0 and n/2 are +0.
template <class Rows>
TOKRED_HOST_DEVICE float spectral_component(const double* cos_rows, const double* sin_rows, const Rows& rows,
                                            index_t comp) noexcept {
  const index_t n = rows.f.n, bin = comp / 2;
  const bool lower = 2 * bin <= n;
  const index_t m = lower ? bin : n - bin;
  if (comp % 2 == 0) return static_cast<float>(folded_cos_sum(cos_rows, rows, m));
  if (rows.f.real_bin(m)) return 0.0f;
  const float b = static_cast<float>(-folded_sin_sum(sin_rows, rows, m));
  return lower ? b : -b;
}

// ---------------------------------------------------------------------------------------------
// The ranking.

/// One channel's statistics over rows in order, as the CPU backend folds them: `lo < x ? lo : x`
/// and `hi > x ? hi : x` (minps and maxps), and the last NaN met (+0 when none).
struct channel_extremes {
  float lo = positive_infinity();
  float hi = -positive_infinity();
  float nan_seen = 0.0f;

  TOKRED_HOST_DEVICE void add(float x) noexcept {
    lo = lo < x ? lo : x;
    hi = hi > x ? hi : x;
    if (!(x == x)) nan_seen = x;
  }
  /// Folds in the extremes of the rows that follow: the same as adding those rows one by one.
  TOKRED_HOST_DEVICE void merge(const channel_extremes& later) noexcept {
    lo = lo < later.lo ? lo : later.lo;
    hi = hi > later.hi ? hi : later.hi;
    if (!(later.nan_seen == later.nan_seen)) nan_seen = later.nan_seen;
  }
  /// The ranking key of the channel: score_key of max − min (the last NaN where one was met,
  /// which ranks last), rounded to E first when `round_to_e`.
  template <class E>
  TOKRED_HOST_DEVICE std::uint32_t key(bool round_to_e) const noexcept {
    float range = nan_seen == nan_seen ? sub_rn(hi, lo) : nan_seen;
    if (round_to_e) range = stored_as<E>(range);
    return score_key(float_bits(range));
  }
};

/// Whether channel a is among the k of largest key (`key(c)` for every channel c < dim), ties
/// to the lower channel: fewer than k channels rank before it.
template <class Key>
TOKRED_HOST_DEVICE bool ranks_difficult(const Key& key, index_t dim, index_t k, index_t a) noexcept {
  index_t before = 0;
  const std::uint32_t ka = key(a);
  for (index_t b = 0; b < dim; ++b) {
    const std::uint32_t kb = key(b);
    before += kb > ka || (kb == ka && b < a);
  }
  return before < k;
}

/// Where channel c goes in the channel list, `difficult(c')` telling each channel's side: the
/// k difficult channels first, then the easy ones, each side ascending.
template <class Flag>
TOKRED_HOST_DEVICE index_t channel_position(const Flag& difficult, index_t k, index_t c) noexcept {
  const bool mine = difficult(c);
  index_t before = 0;  // channels below c on the same side
  for (index_t b = 0; b < c; ++b) before += difficult(b) == mine;
  return mine ? before : k + before;
}

// ---------------------------------------------------------------------------------------------
// Units.

/// Calls `f(scheme_tag<s>{})` for the scheme of a key layout's difficult part: ternary (1.58
/// bits) or asymmetric (every other layout), so that a kernel is compiled for those two alone.
template <class F>
void with_difficult_scheme(const vidkv_key_layout& l, F&& f) {
  if (l.difficult_format.scheme == kv_scheme::ternary) return f(scheme_tag<kv_scheme::ternary>{});
  return f(scheme_tag<kv_scheme::asymmetric>{});
}

/// A chunk's key layout and rounding, for the units.
struct vidkv_key_plan {
  vidkv_key_layout layout;
  bool each_op = false;  // vidkv_keys::round_each_op
  bool vidkv_dequant = false;
  index_t heads = 0, tokens = 0;

  TOKRED_HOST_DEVICE index_t difficult_units() const noexcept {
    return heads * tokens / layout.difficult_format.group * layout.difficult;
  }
  /// One unit per (head, token group, Re or Im of bin m = 0 … ⌊n/2⌋).
  TOKRED_HOST_DEVICE index_t spectral_units() const noexcept {
    return heads * tokens / layout.spectral_format.group * 2 * easy_pairs();
  }
  /// Bins 0 … ⌊n/2⌋ of the forward DFT, and easy channel pairs j and n − j of the inverse.
  TOKRED_HOST_DEVICE index_t easy_pairs() const noexcept { return layout.easy > 0 ? layout.easy / 2 + 1 : 0; }
  TOKRED_HOST_DEVICE index_t easy_items() const noexcept { return heads * tokens * easy_pairs(); }
};

/// Quantizes difficult unit u (< difficult_units()): channel `channels(j)` of one head's token
/// group into column j of the difficult part.
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE void vidkv_difficult_quantize(const vidkv_key_plan& w, const view<const E, 3, Space>& x,
                                                 const view<const std::int64_t, 1, Space>& channels,
                                                 const uniform_packed<E, Space>& out, index_t u) noexcept {
  const uniform_format& f = w.layout.difficult_format;
  const uniform_unit at = uniform_unit_at(f, kv_problem{w.heads, w.tokens, w.layout.difficult}, u);
  quantize_unit_from<S>(
      f, w.each_op, [&](index_t t, index_t j) { return widen(x(at.head, t, channels(j))); }, out, at);
}

/// Quantizes spectral unit u (< spectral_units()): part `re_im` (0 Re, 1 Im) of bin m ≤ n/2 of
/// one head's token group, each token's value from its easy channels `channels(k + j)`, into
/// component 2m + re_im and, where bin n − m is another bin, into component 2(n − m) + re_im: the
/// conjugate, so the same values for Re and their negations for Im (spectral_component's, bit
/// for bit: each rounds to the element type after the negation). One pass over the group forms
/// each token's sum once and codes both groups (quantize_sign_group): nothing staged.
template <class E, class Space>
TOKRED_HOST_DEVICE void vidkv_spectral_quantize(const vidkv_key_plan& w, const double* cos_rows,
                                                const double* sin_rows, const view<const E, 3, Space>& x,
                                                const view<const std::int64_t, 1, Space>& channels,
                                                const uniform_packed<E, Space>& out, index_t u) noexcept {
  const uniform_format& f = w.layout.spectral_format;
  const index_t k = w.layout.difficult, n = w.layout.easy;
  const uniform_unit part = uniform_unit_at(f, kv_problem{w.heads, w.tokens, 2 * w.easy_pairs()}, u);
  const index_t m = part.inner / 2, re_im = part.inner % 2;
  const uniform_unit lower{part.head, part.outer, 2 * m + re_im};
  const unit_place at = place_of(f, lower);
  const auto component = [&](index_t e) {  // an O(n) sum: formed once per token
    const index_t t = at.token_of(e);
    const auto value = [&](index_t j) { return static_cast<double>(widen(x(part.head, t, channels(k + j)))); };
    return stored_as<E>(spectral_component(cos_rows, sin_rows, fold_rows(n, value, value), lower.inner));
  };
  if (dft_fold(n).real_bin(m)) return quantize_sign_group(f, w.each_op, component, out, lower, at);
  // Rounding to E is symmetric, so the mirror's Im values (each rounded after the negation) are
  // the negations of the rounded ones.
  const uniform_unit mirror{part.head, part.outer, 2 * (n - m) + re_im};
  const sign_copy conjugate{mirror, place_of(f, mirror), re_im == 1};
  quantize_sign_group(f, w.each_op, component, out, lower, at, &conjugate);
}

/// Dequantizes difficult unit u into its channel of `y`; a channel outside [0, D) is skipped
/// (the list is the caller's: on the device it is not checked first).
template <kv_scheme S, class E, class Eout, class Space>
TOKRED_HOST_DEVICE void vidkv_difficult_dequantize(const vidkv_key_plan& w,
                                                   const vidkv_packed_keys<const E, Space>& in,
                                                   const view<Eout, 3, Space>& y, index_t u) noexcept {
  const uniform_format& f = w.layout.difficult_format;
  const uniform_unit at = uniform_unit_at(f, kv_problem{w.heads, w.tokens, w.layout.difficult}, u);
  const std::int64_t c = in.channels(at.inner);
  if (c < 0 || c >= y.extent(2)) return;
  dequantize_unit_to<S>(f, w.each_op, w.vidkv_dequant, in.difficult, at,
                        [&](index_t t, index_t, float v) { y(at.head, t, c) = from_float<Eout>(v); });
}

/// Easy channels j and n − j (j ≤ n − j) of token t of head h: Re of the inverse DFT of the
/// token's dequantized spectrum, rounded to fp32. The twiddles are symmetric to the bit, so
/// channel n − j has channel j's cos sum c and its sin sum s negated (+0 where s is +0):
/// y_j = (c − s)/n and y_(n−j) = (c − (0 − s))/n in double, the bits of the direct sums.
struct easy_channel_pair {
  float first, second;
};
template <class E, class Space>
TOKRED_HOST_DEVICE easy_channel_pair easy_channel_values(const vidkv_key_plan& w, const double* cos_rows,
                                                         const double* sin_rows,
                                                         const uniform_packed<const E, Space>& spectral, index_t h,
                                                         index_t t, index_t j) noexcept {
  const uniform_format& f = w.layout.spectral_format;
  const index_t n = w.layout.easy;
  const auto component = [&](index_t comp) {
    return static_cast<double>(packed_value_at<kv_scheme::sign>(f, w.each_op, w.vidkv_dequant, spectral, h, t, comp));
  };
  const auto rows = fold_rows(
      n, [&](index_t m) { return component(2 * m); }, [&](index_t m) { return component(2 * m + 1); });
  const double c = folded_cos_sum(cos_rows, rows, j), s = folded_sin_sum(sin_rows, rows, j);
  const double count = static_cast<double>(n);
  return {static_cast<float>(div_rn(sub_rn(c, s), count)),
          static_cast<float>(div_rn(sub_rn(c, sub_rn(0.0, s)), count))};
}

/// Dequantizes easy item i (< easy_items()): channels j and (0 < j < n − j) n − j of one
/// (head, token) of `y`; a channel outside [0, D) is skipped.
template <class E, class Eout, class Space>
TOKRED_HOST_DEVICE void vidkv_easy_dequantize(const vidkv_key_plan& w, const double* cos_rows, const double* sin_rows,
                                              const vidkv_packed_keys<const E, Space>& in,
                                              const view<Eout, 3, Space>& y, index_t i) noexcept {
  const index_t n = w.layout.easy;
  const row_item at = row_item_at(i, w.tokens, w.easy_pairs());
  const index_t j = at.channel;
  const easy_channel_pair v = easy_channel_values(w, cos_rows, sin_rows, in.spectral, at.head, at.row, j);
  const auto store = [&](index_t easy, float value) {
    const std::int64_t c = in.channels(w.layout.difficult + easy);
    if (c >= 0 && c < y.extent(2)) y(at.head, at.row, c) = from_float<Eout>(value);
  };
  store(j, v.first);
  if (!dft_fold(n).real_bin(j)) store(n - j, v.second);
}

// ---------------------------------------------------------------------------------------------
// Scores.

/// Value i < k + 2n of query head h's two queries: i < k, the query at difficult channel
/// `channels(i)`; then Q_m/n as interleaved reals (Re, Im), Q the DFT of the query's easy
/// values in channel-list order, Σ_j q_j·e^(−2πi·jm/n) in double over the keys' twiddles,
/// rounded to fp32 (Im of bins 0 and n/2 is 0: the inverse DFT reads none there).
/// Query head h's value at channel `c` of the keys' channel list; 0 for an entry that names no
/// channel (a corrupt list on the device, which is not checked first: nothing is read outside
/// the row).
template <class E, class Space>
TOKRED_HOST_DEVICE float query_at_channel(const view<const E, 2, Space>& queries, index_t h, std::int64_t c) noexcept {
  return c >= 0 && c < queries.extent(1) ? widen(queries(h, c)) : 0.0f;
}

template <class E, class Space>
TOKRED_HOST_DEVICE float vidkv_score_query(const double* cos_rows, const double* sin_rows, const vidkv_key_layout& l,
                                           const view<const E, 2, Space>& queries,
                                           const view<const std::int64_t, 1, Space>& channels, index_t h,
                                           index_t i) noexcept {
  const index_t k = l.difficult, n = l.easy;
  if (i < k) return query_at_channel(queries, h, channels(i));
  const index_t comp = i - k, m = comp / 2;
  const bool imag = comp % 2 != 0;
  if (imag && dft_fold(n).real_bin(m)) return 0.0f;
  double sum = 0.0;
  for (index_t j = 0; j < n; ++j) {
    const index_t r = j * m % n;
    const double q = static_cast<double>(query_at_channel(queries, h, channels(k + j)));
    sum = imag ? sub_rn(sum, mul_rn(q, sin_rows[r])) : add_rn(sum, mul_rn(q, cos_rows[r]));
  }
  return static_cast<float>(div_rn(sum, static_cast<double>(n)));
}

/// The logit of query head h (its two queries at `query`, k + 2n floats from
/// vidkv_score_query) with key t of kv head kv: packed token t < P read part by part without
/// dequantizing a key (a·code + b), residual token t − P as the dot product with the raw query.
/// Summed in channel order in fp32: within fp32 rounding of the dot product with the
/// dequantized key.
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE float vidkv_logit(const vidkv_key_plan& w, const float* query, const vidkv_score_inputs<E, Space>& in,
                                     index_t h, index_t kv, index_t packed, index_t t) noexcept {
  float acc = 0.0f;
  if (t < packed) {
    const index_t k = w.layout.difficult, n = w.layout.easy;
    for (index_t i = 0; i < k; ++i)
      acc += query[i] * packed_value_at<S>(w.layout.difficult_format, false, w.vidkv_dequant, in.keys.difficult, kv, t, i);
    for (index_t c = 0; c < 2 * n; ++c)
      acc += query[k + c] *
             packed_value_at<kv_scheme::sign>(w.layout.spectral_format, false, w.vidkv_dequant, in.keys.spectral, kv, t, c);
  } else {
    const index_t dim = in.queries.extent(1);
    for (index_t c = 0; c < dim; ++c) acc += widen(in.queries(h, c)) * widen(in.residual(kv, t - packed, c));
  }
  return acc;
}

}  // namespace tokred::detail
