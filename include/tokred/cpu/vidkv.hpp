// tokred/cpu/vidkv.hpp — CPU backends of vidkv_key_quantize, vidkv_key_dequantize,
// vidkv_append and vidkv_read, built on the group kernels of <tokred/cpu/uniform_quant.hpp>.
//
// The unit of work is one key group: G tokens of one head. Its difficult channels are gathered
// into token rows (read in place when every channel is difficult) and packed by the uniform
// group kernels; its easy channels are gathered channel-major into doubles, folded into pair
// sums and differences (a real DFT's symmetry, which halves every sum), transformed a SIMD batch
// of tokens at a time (double lanes hold tokens, each twiddle is broadcast, four batches per pass
// so eight sums are in flight), written as G token rows of 2n spectral components and packed by
// the same kernels. Dequantization runs the other way: the spectral kernel writes its values
// component-major, so the folded inverse DFT loads a batch of tokens per component.
//
// Shares: the (head, group) units split into nth contiguous ranges; residual copies split the
// heads. The difficult channels depend on every head and token of the chunk, so each share
// ranks them itself from the whole chunk (one min/max pass over it, cheap next to the DFT's
// O(n) work per value) rather than wait for another share; share 0 alone writes `channels`.
//
// Workspace per share: the ranking (three rows of head_dim floats, head_dim keys and indices),
// the twiddles (2n doubles) and one group's gathered rows, easy values (plain and folded) and
// spectra; one token's keys widened to fp32 (quantizing 16-bit keys) or the group's dequantized
// rows in fp32 (dequantizing), which leave a row at a time.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/uniform_quant.hpp"
#include "tokred/policy/vidkv.hpp"
#include "tokred/policy/vidkv_cache_units.hpp"
#include "tokred/policy/vidkv_units.hpp"

namespace tokred {
namespace detail {

template <class Arch>
using double_batch = xsimd::batch<double, simd_arch_t<Arch>>;

/// cos and sin of 2π·r/n for r < n, in double (the angle as (2π·r)/n).
struct dft_twiddles {
  const double* cos = nullptr;
  const double* sin = nullptr;
  index_t n = 0;
};

inline dft_twiddles fill_twiddles(double* c, double* s, index_t n) noexcept {
  fill_twiddle_rows(c, s, n);
  return {c, s, n};
}

/// Token batches per DFT pass: eight independent sums (two for each of four batches) cover the
/// add latency. A group (a multiple of 32 tokens) is a whole number of passes on every ISA.
inline constexpr index_t dft_batches = 4;

/// Folds a group's values (n rows of G doubles, one row per channel) into `folded`, rows of G
/// doubles in dft_fold's order. A real DFT needs only these: cos is even and sin odd about n/2,
/// which halves every sum (torch's real-input FFT rests on the same symmetry).
inline void fold_values(const dft_fold& f, const double* v, index_t group, double* folded) noexcept {
  for (index_t t = 0; t < group; ++t) folded[f.sum(0) * group + t] = v[t];
  for (index_t j = 1; j <= f.h; ++j) {
    const double* a = v + j * group;
    const double* b = v + (f.n - j) * group;
    for (index_t t = 0; t < group; ++t) {
      folded[f.sum(j) * group + t] = a[t] + b[t];
      folded[f.difference(j) * group + t] = a[t] - b[t];
    }
  }
  if (f.e)
    for (index_t t = 0; t < group; ++t) folded[f.middle() * group + t] = v[f.n / 2 * group + t];
}

/// The two folded sums both transforms are made of, for output index k (a bin of the forward
/// DFT, a channel of the inverse) and the tokens [b0, b0 + dft_batches·w) of the group:
/// c = row_0 + Σ_m sum-row_m·cos(2π·km/n) + middle-row·cos(πk) (n even) and
/// s = Σ_m difference-row_m·sin(2π·km/n), m = 1 … h in order, each product rounded on its own.
template <class Arch>
TOKRED_FORCE_INLINE void folded_sums(const dft_twiddles& tw, const dft_fold& f, const double* folded, index_t group,
                                     index_t k, index_t b0, double_batch<Arch> (&c_sum)[dft_batches],
                                     double_batch<Arch> (&s_sum)[dft_batches]) noexcept {
  using db = double_batch<Arch>;
  constexpr index_t w = db::size;
  const index_t n = tw.n;
  for (index_t i = 0; i < dft_batches; ++i) {
    c_sum[i] = db::load_aligned(folded + f.sum(0) * group + b0 + i * w);
    s_sum[i] = db(0.0);
  }
  index_t r = 0;  // k·m mod n
  for (index_t m = 1; m <= f.h; ++m) {
    r += k;
    if (r >= n) r -= n;
    const db c(tw.cos[r]), s(tw.sin[r]);
    const double* a = folded + f.sum(m) * group + b0;
    const double* b = folded + f.difference(m) * group + b0;
    for (index_t i = 0; i < dft_batches; ++i) {
      c_sum[i] = c_sum[i] + separate_product(db::load_aligned(a + i * w), c);
      s_sum[i] = s_sum[i] + separate_product(db::load_aligned(b + i * w), s);
    }
  }
  if (f.e) {
    const db c(tw.cos[k % 2 == 0 ? 0 : n / 2]);  // cos(π·k)
    for (index_t i = 0; i < dft_batches; ++i)
      c_sum[i] = c_sum[i] + separate_product(db::load_aligned(folded + f.middle() * group + b0 + i * w), c);
  }
}

/// The spectra of a group's tokens from their folded easy values (dft_fold rows of G doubles):
/// for each bin m ≤ n/2, Re X_m = v_0 + Σ_j (v_j + v_(n−j))·cos(2π·jm/n) + v_(n/2)·cos(πm) and
/// Im X_m = −Σ_j (v_j − v_(n−j))·sin(2π·jm/n), j = 1 … h in order, each product rounded on its
/// own. `spectrum` receives G token rows of 2n components (Re X_0, Im X_0, …), each rounded to
/// fp32; bin n − m is the conjugate of bin m, and Im X_0, Im X_(n/2) are +0.
template <class Arch>
void forward_dft(const dft_twiddles& tw, const double* folded, index_t group, float* spectrum) noexcept {
  using db = double_batch<Arch>;
  constexpr index_t w = db::size, pass = dft_batches * w;
  static_assert(32 % pass == 0, "a group of 32 tokens is a whole number of passes");
  const dft_fold f(tw.n);
  const index_t n = tw.n, width = 2 * n;
  alignas(64) double re[pass], im[pass];
  for (index_t m = 0; 2 * m <= n; ++m) {
    const bool real_bin = f.real_bin(m);  // the input is real: Im X is exactly 0 there; no mirror
    for (index_t b0 = 0; b0 < group; b0 += pass) {
      db c_sum[dft_batches], s_sum[dft_batches];
      folded_sums<Arch>(tw, f, folded, group, m, b0, c_sum, s_sum);
      for (index_t i = 0; i < dft_batches; ++i) {
        c_sum[i].store_aligned(re + i * w);
        (-s_sum[i]).store_aligned(im + i * w);
      }
      for (index_t t = 0; t < pass; ++t) {
        float* row = spectrum + (b0 + t) * width;
        const float a = static_cast<float>(re[t]), b = real_bin ? 0.0f : static_cast<float>(im[t]);
        row[2 * m] = a;
        row[2 * m + 1] = b;
        if (!real_bin) {
          row[2 * (n - m)] = a;
          row[2 * (n - m) + 1] = -b;
        }
      }
    }
  }
}

/// Re of the inverse DFT of a group's dequantized spectra, from the folded spectrum: rows of G
/// doubles, dft_fold of the real parts (R_0, R_m + R_(n−m), R_(n/2)) in the sum rows and of the
/// imaginary parts (I_m − I_(n−m)) in the difference rows. y_j = ((R_0 + Σ_m (R_m + R_(n−m))·
/// cos(2π·jm/n) + R_(n/2)·cos(πj)) − Σ_m (I_m − I_(n−m))·sin(2π·jm/n)) / n, m = 1 … h in order
/// (Im X_0 and Im X_(n/2) meet sin = 0). `store(j, t, v)` receives easy channel j of token t,
/// rounded to fp32.
///
/// Channels j and n − j share their sums: the twiddles are symmetric to the bit (cos[n − r] =
/// cos[r], sin[n − r] = −sin[r]), so channel n − j's cos sum is c itself and its sin sum is s
/// negated, or +0 where s is (a sum that cancels rounds to +0 either way). Both channels come from
/// one pass: y_j = (c − s)/n and y_(n−j) = (c − (0 − s))/n, the bits of the direct sums.
template <class Arch, class Store>
void inverse_dft(const dft_twiddles& tw, const double* folded, index_t group, const Store& store) noexcept {
  using db = double_batch<Arch>;
  constexpr index_t w = db::size, pass = dft_batches * w;
  const dft_fold f(tw.n);
  const index_t n = tw.n;
  const db count(static_cast<double>(n)), zero(0.0);
  alignas(64) double y[pass];
  for (index_t j = 0; 2 * j <= n; ++j) {
    const bool mirrored = !f.real_bin(j);
    for (index_t b0 = 0; b0 < group; b0 += pass) {
      db c_sum[dft_batches], s_sum[dft_batches];
      folded_sums<Arch>(tw, f, folded, group, j, b0, c_sum, s_sum);
      for (index_t i = 0; i < dft_batches; ++i) ((c_sum[i] - s_sum[i]) / count).store_aligned(y + i * w);
      for (index_t t = 0; t < pass; ++t) store(j, b0 + t, static_cast<float>(y[t]));
      if (!mirrored) continue;
      for (index_t i = 0; i < dft_batches; ++i) ((c_sum[i] - (zero - s_sum[i])) / count).store_aligned(y + i * w);
      for (index_t t = 0; t < pass; ++t) store(n - j, b0 + t, static_cast<float>(y[t]));
    }
  }
}

/// Folds a group's dequantized spectrum ((2n, G) floats, component-major: Re X_m in row 2m,
/// Im X_m in row 2m + 1) for inverse_dft.
inline void fold_spectrum(const dft_fold& f, const float* spectrum, index_t group, double* folded) noexcept {
  for (index_t t = 0; t < group; ++t) folded[f.sum(0) * group + t] = static_cast<double>(spectrum[t]);
  for (index_t m = 1; m <= f.h; ++m)
    for (index_t t = 0; t < group; ++t) {
      const float* re = spectrum + 2 * m * group, *re_mirror = spectrum + 2 * (f.n - m) * group;
      folded[f.sum(m) * group + t] = static_cast<double>(re[t]) + static_cast<double>(re_mirror[t]);
      folded[f.difference(m) * group + t] =
          static_cast<double>(re[group + t]) - static_cast<double>(re_mirror[group + t]);
    }
  if (f.e)
    for (index_t t = 0; t < group; ++t)
      folded[f.middle() * group + t] = static_cast<double>(spectrum[2 * (f.n / 2) * group + t]);
}

/// Writes the channel order of a key chunk to `order` (D,): the k channels of largest range
/// over every (head, token) row — ties to the lower channel, NaN ranges last — ascending, then
/// the others ascending. `lo`, `hi`, `nan_seen`: D rounded up to whole batches of floats.
template <class Arch, class E>
void rank_channels(const view<const E, 3>& x, index_t k, bool round_to_e, float* lo, float* hi, float* nan_seen,
                   std::uint32_t* keys, std::int64_t* order) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  const index_t dim = x.extent(2), cs = x.stride(2);
  for (index_t c = 0; c < dim; c += w) {
    fb(std::numeric_limits<float>::infinity()).store_aligned(lo + c);
    fb(-std::numeric_limits<float>::infinity()).store_aligned(hi + c);
    fb(0.0f).store_aligned(nan_seen + c);
  }
  for (index_t h = 0; h < x.extent(0); ++h)
    for (index_t t = 0; t < x.extent(1); ++t) {
      const E* row = &x(h, t, 0);
      for (index_t c = 0; c < dim; c += w) {
        const fb v = load_lanes<Arch>(row + c * cs, cs, std::min(w, dim - c));
        lane_min<Arch>(fb::load_aligned(lo + c), v).store_aligned(lo + c);
        lane_max<Arch>(fb::load_aligned(hi + c), v).store_aligned(hi + c);
        // unordered, not v != v: xsimd 8.1 compares != ordered on AVX and AVX-512 (NaN != NaN is false).
        xsimd::select(unordered<Arch>(v, v), v, fb::load_aligned(nan_seen + c)).store_aligned(nan_seen + c);
      }
    }
  for (index_t c = 0; c < dim; ++c) {  // the range, NaN where the channel held a NaN
    const float range = nan_seen[c] != nan_seen[c] ? nan_seen[c] : hi[c] - lo[c];
    lo[c] = round_to_e ? to_float(from_float<E>(range)) : range;
  }
  select_largest([&](index_t c) { return score_key(float_bits(lo[c])); }, dim, k, 0, keys, order);
  for (index_t c = 0, next = 0, easy = k; c < dim; ++c) {
    if (next < k && order[next] == c) ++next;
    else order[easy++] = c;
  }
}

/// One share's scratch for quantizing key groups (E-typed buffers carved for E).
template <class E>
struct key_quantize_scratch {
  float* lo = nullptr;  // (D padded,) ×3: the ranking
  float* hi = nullptr;
  float* nan_seen = nullptr;
  std::uint32_t* keys = nullptr;  // (D,)
  std::int64_t* order = nullptr;  // (D,)
  double* cos = nullptr;          // (n,)
  double* sin = nullptr;          // (n,)
  E* gathered = nullptr;          // (G, k): the difficult channels of a group's tokens
  float* row = nullptr;           // (D,): one token's keys widened to fp32 (16-bit E)
  double* easy = nullptr;         // (n, G): the easy channels, channel-major
  double* folded = nullptr;       // (n, G): the same, folded (dft_fold)
  float* spectrum = nullptr;      // (G, 2n): the spectra in fp32
  E* stored = nullptr;            // (G, 2n): rounded to E (E = float: the spectrum itself)

  template <class Arch>
  static key_quantize_scratch carve(arena& a, const cpu<Arch>& exec, const vidkv_key_layout& l) {
    const index_t k = l.difficult, n = l.easy, dim = k + n, group = l.difficult_format.group;
    const bool ranked = k > 0 && n > 0;
    const index_t padded = (dim + float_batch<Arch>::size - 1) / float_batch<Arch>::size * float_batch<Arch>::size;
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      key_quantize_scratch s;
      if (ranked) {
        s.lo = b.take<float>(padded);
        s.hi = b.take<float>(padded);
        s.nan_seen = b.take<float>(padded);
        s.keys = b.take<std::uint32_t>(dim);
        s.gathered = b.take<E>(group, k);
      }
      s.order = b.take<std::int64_t>(dim);
      if (n > 0) {
        s.cos = b.take<double>(n);
        s.sin = b.take<double>(n);
        if constexpr (!std::is_same_v<E, float>) s.row = b.take<float>(dim);
        s.easy = b.take<double>(n, group);
        s.folded = b.take<double>(n, group);
        s.spectrum = b.take<float>(group, 2, n);
        if constexpr (!std::is_same_v<E, float>) s.stored = b.take<E>(group, 2, n);
      }
      return s;
    });
  }
};

/// The key quantizer's workspace for any element type: the larger of the fp32 carve and the
/// 16-bit one (which adds the spectrum rounded to E).
template <class Arch>
std::size_t key_quantize_bytes(const cpu<Arch>& exec, const vidkv_key_layout& l) noexcept {
  arena wide, narrow;
  key_quantize_scratch<float>::carve(wide, exec, l);
  key_quantize_scratch<f16>::carve(narrow, exec, l);
  return std::max(wide.used(), narrow.used());
}

/// One share's scratch for dequantizing key groups.
struct key_dequantize_scratch {
  double* cos = nullptr;       // (n,)
  double* sin = nullptr;       // (n,)
  float* difficult = nullptr;  // (G, k): a group's difficult channels, before the scatter
  float* spectral = nullptr;   // (2n, G): the dequantized spectrum, component-major
  double* folded = nullptr;    // (n, G): the same, folded (dft_fold)
  float* rows = nullptr;       // (G, D): the group's keys in fp32, in channel order

  template <class Arch>
  static key_dequantize_scratch carve(arena& a, const cpu<Arch>& exec, const vidkv_key_layout& l) {
    const index_t k = l.difficult, n = l.easy, group = l.difficult_format.group;
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      key_dequantize_scratch s;
      if (k > 0 && n > 0) s.difficult = b.take<float>(group, k);
      if (n > 0) {
        s.cos = b.take<double>(n);
        s.sin = b.take<double>(n);
        s.spectral = b.take<float>(2, n, group);
        s.folded = b.take<double>(n, group);
        s.rows = b.take<float>(group, k + n);
      }
      return s;
    });
  }
};

/// Ranks the chunk's channels (when some but not all are difficult) into the share's `order`,
/// fills the twiddles, and writes `channels` from share 0. Returns the twiddles.
template <class Arch, class E>
dft_twiddles prepare_key_chunk(const cpu<Arch>& exec, const vidkv_key_layout& l, bool round_each_op,
                               const view<const E, 3>& x, const key_quantize_scratch<E>& s,
                               const view<std::int64_t, 1>& channels) noexcept {
  const index_t k = l.difficult, dim = k + l.easy;
  if (k > 0 && l.easy > 0) rank_channels<Arch>(x, k, round_each_op, s.lo, s.hi, s.nan_seen, s.keys, s.order);
  else for (index_t c = 0; c < dim; ++c) s.order[c] = c;
  if (exec.ith == 0)
    for (index_t c = 0; c < dim; ++c) channels(c) = s.order[c];
  return l.easy > 0 ? fill_twiddles(s.cos, s.sin, l.easy) : dft_twiddles{};
}

/// Quantizes key group g of head h of chunk x (channel order `order`) into `out`.
template <class Arch, class E>
void quantize_key_group(const vidkv_key_layout& l, const step_rounding<Arch, E>& rnd, const view<const E, 3>& x,
                        index_t h, index_t g, const key_quantize_scratch<E>& s, const dft_twiddles& tw,
                        const vidkv_packed_keys<E>& out) noexcept {
  const index_t group = l.difficult_format.group, t0 = g * group, k = l.difficult, n = l.easy;
  const std::int64_t* order = s.order;
  token_rows<E> rows;
  if (k > 0) {
    for (index_t t = 0; t < group; ++t) {
      if (n == 0) {  // every channel difficult, in order: read the chunk in place
        rows.row[t] = &x(h, t0 + t, 0);
        rows.stride[t] = x.stride(2);
        continue;
      }
      E* r = s.gathered + t * k;
      for (index_t j = 0; j < k; ++j) r[j] = x(h, t0 + t, order[j]);
      rows.row[t] = r;
      rows.stride[t] = 1;
    }
    const uniform_format& f = l.difficult_format;
    with_scheme(f.scheme, [&](auto tag) {
      quantize_token_unit<decltype(tag)::value, Arch>(f, rnd, rows, k, token_group_at<E>(out.difficult, f, h, g));
    });
  }
  if (n > 0) {
    for (index_t t = 0; t < group; ++t) {
      const float* wide = s.row;  // the token's keys in fp32: 16-bit rows are widened with SIMD first
      index_t stride = 1;
      if constexpr (std::is_same_v<E, float>) wide = &x(h, t0 + t, 0), stride = x.stride(2);
      else copy_row<Arch>(&x(h, t0 + t, 0), x.stride(2), s.row, 1, k + n);
      for (index_t j = 0; j < n; ++j) s.easy[j * group + t] = static_cast<double>(wide[order[k + j] * stride]);
    }
    fold_values(dft_fold(n), s.easy, group, s.folded);
    forward_dft<Arch>(tw, s.folded, group, s.spectrum);
    const E* stored;
    if constexpr (std::is_same_v<E, float>) {
      stored = s.spectrum;
    } else {
      convert_contiguous<Arch>(s.spectrum, s.stored, group * 2 * n);
      stored = s.stored;
    }
    for (index_t t = 0; t < group; ++t) {
      rows.row[t] = stored + t * 2 * n;
      rows.stride[t] = 1;
    }
    const uniform_format& f = l.spectral_format;
    quantize_token_unit<kv_scheme::sign, Arch>(f, rnd, rows, 2 * n, token_group_at<E>(out.spectral, f, h, g));
  }
}

/// Dequantizes key group g of head h of `in` into rows [g·G, g·G + G) of y.
template <class Arch, class E, class Eout>
void dequantize_key_group(const vidkv_key_layout& l, bool vidkv_dequant, const step_rounding<Arch, E>& rnd,
                          const vidkv_packed_keys<const E>& in, index_t h, index_t g, const key_dequantize_scratch& s,
                          const dft_twiddles& tw, const view<Eout, 3>& y) noexcept {
  const index_t group = l.difficult_format.group, t0 = g * group, k = l.difficult, n = l.easy, dim = k + n;
  if (k > 0) {
    const uniform_format& f = l.difficult_format;
    const token_group_out<const E> at = token_group_at<const E>(in.difficult, f, h, g);
    if (n == 0) {  // every channel difficult, in order: straight into the output rows
      Eout* rows[uniform_max_group] = {};  // {}: g++ -O2 cannot see the group loop fill them
      for (index_t t = 0; t < group; ++t) rows[t] = &y(h, t0 + t, 0);
      with_scheme(f.scheme, [&](auto tag) {
        dequantize_token_unit<decltype(tag)::value, Arch>(f, vidkv_dequant, rnd, at, k, rows, y.stride(2));
      });
    } else {
      float* rows[uniform_max_group] = {};
      for (index_t t = 0; t < group; ++t) rows[t] = s.difficult + t * k;
      with_scheme(f.scheme, [&](auto tag) {
        dequantize_token_unit<decltype(tag)::value, Arch>(f, vidkv_dequant, rnd, at, k, rows, 1);
      });
      for (index_t t = 0; t < group; ++t)
        for (index_t j = 0; j < k; ++j) s.rows[t * dim + in.channels(j)] = s.difficult[t * k + j];
    }
  }
  if (n > 0) {
    float* rows[uniform_max_group] = {};
    for (index_t t = 0; t < group; ++t) rows[t] = s.spectral + t;  // component c of token t at c·G + t
    const uniform_format& f = l.spectral_format;
    dequantize_token_unit<kv_scheme::sign, Arch>(f, vidkv_dequant, rnd, token_group_at<const E>(in.spectral, f, h, g),
                                                2 * n, rows, group);
    fold_spectrum(dft_fold(n), s.spectral, group, s.folded);
    inverse_dft<Arch>(tw, s.folded, group,
                      [&](index_t j, index_t t, float v) { s.rows[t * dim + in.channels(k + j)] = v; });
    // The fp32 rows, assembled in channel order, go out a row at a time (converted with SIMD).
    for (index_t t = 0; t < group; ++t) copy_row<Arch>(s.rows + t * dim, 1, &y(h, t0 + t, 0), y.stride(2), dim);
  }
}

/// Runs `unit(h, g)` for this share's (head, group) units of a chunk of `heads` × `groups`.
template <class Arch, class Unit>
void for_each_group(const cpu<Arch>& exec, index_t heads, index_t groups, const Unit& unit) noexcept {
  const index_t units = heads * groups;
  const index_t u1 = share_begin(units, exec.ith + 1, exec.nth);
  for (index_t u = share_begin(units, exec.ith, exec.nth); u < u1; ++u) unit(u / groups, u % groups);
}

}  // namespace detail

/// VidKV key quantization on CPU: fp32, fp16 and bf16 chunks with any strides; packed codes
/// with inner stride 1. Workspace: `workspace_bytes` (per share, see the header comment).
template <class Arch>
struct backend<vidkv_key_quantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_key_quantize& p, const kv_problem& prob) noexcept {
    if (can_implement(p, prob) != status::ok) return 0;
    return detail::key_quantize_bytes(exec, vidkv_key_layout_of(p.keys, prob.head_dim));
  }

  /// Checks, in order: exec; can_implement; the chunk view; the packed views; aliasing; the
  /// workspace.
  template <class E>
  static status apply(const cpu<Arch>& exec, const vidkv_key_quantize& p, const kv_inputs<E>& in,
                      const vidkv_packed_keys<E>& out, workspace ws) noexcept {
    if (status s = detail::check_key_quantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    detail::arena counter;
    detail::key_quantize_scratch<E>::carve(counter, exec, l);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;

    detail::arena a(ws);
    const auto scratch = detail::key_quantize_scratch<E>::carve(a, exec, l);
    const detail::dft_twiddles tw = detail::prepare_key_chunk(exec, l, p.keys.round_each_op, in.cache, scratch, out.channels);
    const detail::step_rounding<Arch, E> rnd{p.keys.round_each_op};
    detail::for_each_group(exec, prob.heads, prob.tokens / p.keys.group, [&](index_t h, index_t g) {
      detail::quantize_key_group(l, rnd, in.cache, h, g, scratch, tw, out);
    });
    return status::ok;
  }
};

/// VidKV key dequantization on CPU: any output element type and strides.
template <class Arch>
struct backend<vidkv_key_dequantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_key_dequantize& p, const kv_problem& prob) noexcept {
    if (can_implement(p, prob) != status::ok) return 0;
    detail::arena a;
    detail::key_dequantize_scratch::carve(a, exec, vidkv_key_layout_of(p.keys, prob.head_dim));
    return a.used();
  }

  /// Checks, in order: exec; can_implement (of the output's shape); the output view; the packed
  /// views; `invalid_parameter` when channels is not k ascending channels, then the others
  /// ascending, covering [0, head_dim); aliasing; the workspace.
  template <class E, class Eout>
  static status apply(const cpu<Arch>& exec, const vidkv_key_dequantize& p, const vidkv_packed_keys<const E>& in,
                      const kv_outputs<Eout>& out, workspace ws) noexcept {
    if (status s = detail::check_key_dequantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    if (!detail::valid_channel_order(in.channels, l.difficult)) return status::invalid_parameter;
    if (detail::packed_keys_overlap(detail::used_parts(in, l), out.cache)) return status::aliasing;
    detail::arena counter;
    detail::key_dequantize_scratch::carve(counter, exec, l);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;

    detail::arena a(ws);
    const auto scratch = detail::key_dequantize_scratch::carve(a, exec, l);
    const detail::dft_twiddles tw = l.easy > 0 ? detail::fill_twiddles(scratch.cos, scratch.sin, l.easy) : detail::dft_twiddles{};
    const detail::step_rounding<Arch, E> rnd{p.keys.round_each_op};
    detail::for_each_group(exec, prob.heads, prob.tokens / p.keys.group, [&](index_t h, index_t g) {
      detail::dequantize_key_group(l, p.vidkv_dequant, rnd, in, h, g, scratch, tw, out.cache);
    });
    return status::ok;
  }
};

namespace detail {

/// Value group g of the first P packed tokens (<tokred/policy/vidkv_cache_units.hpp>): where it
/// is stored and the cache positions of its G tokens.
struct value_group {
  value_group_slot slot;
  index_t position[uniform_max_group] = {};
};

inline value_group value_group_of(const view<const std::int64_t, 1>& salient, index_t listed, index_t packed,
                                  index_t group, index_t g) noexcept {
  value_group v;
  v.slot = value_group_slot_of(listed, packed, group, g);
  value_positions(salient, listed, group, v.slot, v.position);
  return v;
}

/// Quantizes value group `v` of head h of x (per channel along its tokens) into `out`.
template <class Arch, class E>
void quantize_value_group(const uniform_format& f, const step_rounding<Arch, E>& rnd, const view<const E, 3>& x,
                          index_t h, const value_group& v, const uniform_packed<E>& out) noexcept {
  token_rows<E> rows;
  for (index_t t = 0; t < f.group; ++t) {
    rows.row[t] = &x(h, v.position[t], 0);
    rows.stride[t] = x.stride(2);
  }
  with_scheme(f.scheme, [&](auto tag) {
    quantize_token_unit<decltype(tag)::value, Arch>(f, rnd, rows, x.extent(2), token_group_at<E>(out, f, h, v.slot.row));
  });
}

/// Copies tokens [0, count) of `from` to rows [first, first + count) of `to`, this share's heads.
template <class Arch, class Ein, class Eout>
void copy_tokens(const cpu<Arch>& exec, const view<Ein, 3>& from, index_t count, const view<Eout, 3>& to,
                 index_t first) noexcept {
  const index_t heads = from.extent(0), dim = from.extent(2);
  const index_t h1 = share_begin(heads, exec.ith + 1, exec.nth);
  for (index_t h = share_begin(heads, exec.ith, exec.nth); h < h1; ++h)
    for (index_t t = 0; t < count; ++t)
      copy_row<Arch>(&from(h, t, 0), from.stride(2), &to(h, first + t, 0), to.stride(2), dim);
}

}  // namespace detail

/// VidKV append on CPU: fp32, fp16 and bf16; any strides on the new tokens, the seen tokens
/// and the residuals; codes with inner stride 1. Workspace: the key quantizer's (it is needed
/// whenever a step quantizes; `workspace_bytes` always counts it).
template <class Arch>
struct backend<vidkv_append, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_append& p, const kv_problem& storage) noexcept {
    if (can_implement(p, storage) != status::ok) return 0;
    return detail::key_quantize_bytes(exec, vidkv_key_layout_of(vidkv_keys_of(p.cache), storage.head_dim));
  }

  /// Checks, in order: exec; can_implement of the storage problem; the new tokens' views
  /// (`empty_input` for n = 0); the cache's views; `shape_mismatch` for a state outside the
  /// cache or a step that does not fit (packed past C, a residual past R, a flush of a count
  /// that is not a multiple of G, salient tokens below the packed ones that are not whole groups
  /// within the salient storage); when flushing, the seen views; aliasing; the workspace, then
  /// `aliasing` for a workspace that overlaps the cache or the tokens it reads.
  template <class E>
  static status apply(const cpu<Arch>& exec, const vidkv_append& p, const vidkv_append_inputs<E>& in,
                      const vidkv_cache<E>& cache, workspace ws) noexcept {
    if (status s = detail::check_vidkv_append(exec, p, in, cache); s != status::ok) return s;
    const vidkv& c = p.cache;
    const index_t heads = in.keys.extent(0), dim = in.keys.extent(2);
    const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(c), dim);
    detail::arena counter;
    detail::key_quantize_scratch<E>::carve(counter, exec, l);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;
    if (detail::vidkv_append_scratch_overlaps(c, in, cache, ws, counter.used())) return status::aliasing;

    const detail::vidkv_step step = detail::vidkv_step_of(c, in.state, in.keys.extent(1));
    const index_t packed = step.after.packed;
    if (step.quantizes()) {
      const view<const E, 3> keys = detail::vidkv_quantized_keys(step, in), values = detail::vidkv_quantized_values(step, in);
      detail::arena a(ws);
      const auto scratch = detail::key_quantize_scratch<E>::carve(a, exec, l);
      const detail::dft_twiddles tw = detail::prepare_key_chunk(exec, l, c.round_each_op, keys, scratch, cache.keys.channels);
      const detail::step_rounding<Arch, E> rnd{c.round_each_op};
      const uniform_format vf = vidkv_value_format(c), sf = vidkv_salient_format(c);
      const index_t listed = detail::salient_below(cache.salient, packed);
      detail::for_each_group(exec, heads, packed / c.group, [&](index_t h, index_t g) {
        detail::quantize_key_group(l, rnd, keys, h, g, scratch, tw, cache.keys);
        const detail::value_group v = detail::value_group_of(cache.salient, listed, packed, c.group, g);
        const bool salient = v.slot.salient;
        detail::quantize_value_group(salient ? sf : vf, rnd, values, h, v, salient ? cache.salient_values : cache.values);
      });
    }
    // What stays in full precision: a prefill's last n mod G tokens, or a decode step's tokens.
    if (step.prefill) {
      detail::copy_tokens(exec, token_range(in.keys, packed, step.after.residual), step.after.residual,
                          cache.key_residual, 0);
      detail::copy_tokens(exec, token_range(in.values, packed, step.after.residual), step.after.residual,
                          cache.value_residual, 0);
    } else if (!step.flush) {
      detail::copy_tokens(exec, in.keys, step.incoming, cache.key_residual, step.before.residual);
      detail::copy_tokens(exec, in.values, step.incoming, cache.value_residual, step.before.residual);
    }
    return status::ok;
  }
};

/// VidKV read on CPU: any output element type and strides.
template <class Arch>
struct backend<vidkv_read, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_read& p, const kv_problem& storage) noexcept {
    if (can_implement(p, storage) != status::ok) return 0;
    detail::arena a;
    detail::key_dequantize_scratch::carve(a, exec, vidkv_key_layout_of(vidkv_keys_of(p.cache), storage.head_dim));
    return a.used();
  }

  /// Checks, in order: exec; can_implement of the storage problem; the cache's views;
  /// `shape_mismatch` for a state outside the cache; the incoming views (both empty, or
  /// (heads, n, head_dim) each, n ≥ 0);
  /// `empty_input` when nothing is held or incoming; the outputs; `invalid_parameter` for a
  /// corrupt channel list (packed keys held); aliasing; the workspace.
  template <class E, class Eout>
  static status apply(const cpu<Arch>& exec, const vidkv_read& p, const vidkv_read_inputs<E>& in,
                      const vidkv_read_outputs<Eout>& out, workspace ws) noexcept {
    if (status s = detail::check_vidkv_read_views(exec, p, in, out); s != status::ok) return s;
    const vidkv& c = p.cache;
    const vidkv_state st = in.state;
    const index_t heads = out.keys.extent(0), dim = out.keys.extent(2), n = detail::vidkv_incoming(in);
    const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(c), dim);
    if (st.packed > 0 && !detail::valid_channel_order(in.cache.keys.channels, l.difficult))
      return status::invalid_parameter;
    if (detail::vidkv_read_overlaps(c, in, out)) return status::aliasing;
    detail::arena counter;
    detail::key_dequantize_scratch::carve(counter, exec, l);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;

    if (st.packed > 0) {
      detail::arena a(ws);
      const auto scratch = detail::key_dequantize_scratch::carve(a, exec, l);
      const detail::dft_twiddles tw =
          l.easy > 0 ? detail::fill_twiddles(scratch.cos, scratch.sin, l.easy) : detail::dft_twiddles{};
      const detail::step_rounding<Arch, E> rnd{c.round_each_op};
      const index_t listed = detail::salient_below(in.cache.salient, st.packed);
      detail::for_each_group(exec, heads, st.packed / c.group, [&](index_t h, index_t g) {
        detail::dequantize_key_group(l, c.vidkv_dequant, rnd, in.cache.keys, h, g, scratch, tw, out.keys);
        const detail::value_group v = detail::value_group_of(in.cache.salient, listed, st.packed, c.group, g);
        const bool salient = v.slot.salient;
        const uniform_format vf = salient ? vidkv_salient_format(c) : vidkv_value_format(c);
        Eout* rows[detail::uniform_max_group] = {};
        for (index_t t = 0; t < c.group; ++t) rows[t] = &out.values(h, v.position[t], 0);
        detail::with_scheme(vf.scheme, [&](auto tag) {
          detail::dequantize_token_unit<decltype(tag)::value, Arch>(
              vf, c.vidkv_dequant, rnd,
              detail::token_group_at<const E>(salient ? in.cache.salient_values : in.cache.values, vf, h, v.slot.row),
              dim, rows, out.values.stride(2));
        });
      });
    }
    detail::copy_tokens(exec, in.cache.key_residual, st.residual, out.keys, st.packed);
    detail::copy_tokens(exec, in.cache.value_residual, st.residual, out.values, st.packed);
    if (n > 0) {
      detail::copy_tokens(exec, in.keys, n, out.keys, st.packed + st.residual);
      detail::copy_tokens(exec, in.values, n, out.values, st.packed + st.residual);
    }
    return status::ok;
  }
};

}  // namespace tokred
