// tests/reference/vidkv_ref.hpp — scalar oracle of VidKV's mixed-precision keys and of its
// streaming cache: channel ranges and a sort for the difficult channels, a naive DFT in double
// one token at a time, the uniform oracle for the 2-bit and 1-bit groups, and VidKV's `update`
// replayed on whole tensors.
#pragma once

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include <tokred/cpu/vidkv.hpp>
#include <tokred/tokred.hpp>

#include "reference/uniform_quant_ref.hpp"

namespace tokred::ref {

/// A (heads, tokens, dim) tensor of floats, row-major.
struct tensor3 {
  index_t heads = 0, tokens = 0, dim = 0;
  std::vector<float> v;

  tensor3() = default;
  tensor3(index_t h, index_t t, index_t d) : heads(h), tokens(t), dim(d), v(static_cast<std::size_t>(h * t * d), 0.0f) {}
  float& operator()(index_t h, index_t t, index_t d) { return v[static_cast<std::size_t>((h * tokens + t) * dim + d)]; }
  float operator()(index_t h, index_t t, index_t d) const {
    return v[static_cast<std::size_t>((h * tokens + t) * dim + d)];
  }
};

/// a·b in double, rounded on its own (the volatile store keeps the compiler from fusing it).
inline double product(double a, double b) {
  volatile double p = a * b;
  return p;
}

/// cos and sin of 2π·r/n for r < n: std::cos and std::sin of the angle (2π·r)/n below π, −1 and 0
/// at π, and past π the values at 2π minus the angle, cos unchanged and sin negated.
struct twiddle_table {
  std::vector<double> cos, sin;
  explicit twiddle_table(index_t n) : cos(static_cast<std::size_t>(n)), sin(static_cast<std::size_t>(n)) {
    for (index_t r = 0; r < n; ++r) {
      const auto at = static_cast<std::size_t>(r), mirror = static_cast<std::size_t>(n - r);
      if (2 * r < n) {
        const double angle = 2.0 * 3.14159265358979323846 * static_cast<double>(r) / static_cast<double>(n);
        cos[at] = std::cos(angle);
        sin[at] = std::sin(angle);
      } else if (2 * r == n) {
        cos[at] = -1.0;
        sin[at] = 0.0;
      } else {
        cos[at] = cos[mirror];
        sin[at] = -sin[mirror];
      }
    }
  }
};

/// The DFT of n real values as 2n reals (Re X_0, Im X_0, …) in double, bins 0 … n/2 summed in
/// index order over the pairs (j, n − j) — cos is even and sin odd about n/2:
///   Re X_m = x_0 + Σ_{0<j<n−j} (x_j + x_{n−j})·cos(2π·jm/n) + x_{n/2}·cos(πm)   (n even)
///   Im X_m = −Σ_{0<j<n−j} (x_j − x_{n−j})·sin(2π·jm/n)
/// each product rounded on its own; the upper bins are the conjugates, and Im of bins 0 and n/2
/// is +0 (`force_real_bins`) as torch's real-input FFT returns it.
inline std::vector<double> real_dft(const std::vector<double>& x, bool force_real_bins = true) {
  const index_t n = static_cast<index_t>(x.size());
  const twiddle_table w(n);
  const auto at = [&](index_t j) { return x[static_cast<std::size_t>(j)]; };
  std::vector<double> out(static_cast<std::size_t>(2 * n), 0.0);
  for (index_t m = 0; 2 * m <= n; ++m) {
    double re = at(0), sn = 0.0;
    for (index_t j = 1; j < n - j; ++j) {
      const std::size_t r = static_cast<std::size_t>(j * m % n);
      re = re + product(at(j) + at(n - j), w.cos[r]);
      sn = sn + product(at(j) - at(n - j), w.sin[r]);
    }
    if (n % 2 == 0) re = re + product(at(n / 2), w.cos[static_cast<std::size_t>(n / 2 * m % n)]);
    double im = -sn;
    if (force_real_bins && (m == 0 || 2 * m == n)) im = 0.0;
    out[static_cast<std::size_t>(2 * m)] = re;
    out[static_cast<std::size_t>(2 * m + 1)] = im;
    if (m > 0 && 2 * m < n) {
      out[static_cast<std::size_t>(2 * (n - m))] = re;
      out[static_cast<std::size_t>(2 * (n - m) + 1)] = -im;
    }
  }
  return out;
}

/// Re of the inverse DFT of 2n reals (R_m, I_m), over the pairs (m, n − m) in order:
///   y_j = ((R_0 + Σ (R_m + R_{n−m})·cos(2π·jm/n) + R_{n/2}·cos(πj)) − Σ (I_m − I_{n−m})·sin(2π·jm/n)) / n
/// (I_0 and I_{n/2} meet sin = 0).
inline std::vector<double> real_idft(const std::vector<double>& spectrum) {
  const index_t n = static_cast<index_t>(spectrum.size()) / 2;
  const twiddle_table w(n);
  const auto re = [&](index_t m) { return spectrum[static_cast<std::size_t>(2 * m)]; };
  const auto im = [&](index_t m) { return spectrum[static_cast<std::size_t>(2 * m + 1)]; };
  std::vector<double> out(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) {
    double c = re(0), s = 0.0;
    for (index_t m = 1; m < n - m; ++m) {
      const std::size_t r = static_cast<std::size_t>(j * m % n);
      c = c + product(re(m) + re(n - m), w.cos[r]);
      s = s + product(im(m) - im(n - m), w.sin[r]);
    }
    if (n % 2 == 0) c = c + product(re(n / 2), w.cos[static_cast<std::size_t>(n / 2 * j % n)]);
    out[static_cast<std::size_t>(j)] = (c - s) / static_cast<double>(n);
  }
  return out;
}

/// The textbook DFT with std::complex, for checking the two above.
inline std::vector<std::complex<double>> textbook_dft(const std::vector<double>& x) {
  const std::size_t n = x.size();
  std::vector<std::complex<double>> out(n);
  for (std::size_t m = 0; m < n; ++m)
    for (std::size_t j = 0; j < n; ++j)
      out[m] += x[j] * std::polar(1.0, -2.0 * 3.14159265358979323846 * static_cast<double>(j * m % n) / static_cast<double>(n));
  return out;
}

/// VidKV's difficult channels of a chunk: ranges over every (head, token), sorted by range
/// descending then channel ascending, NaN ranges last; the first k, ascending, then the rest
/// ascending.
template <class E>
std::vector<std::int64_t> channel_order(const tensor3& x, index_t k, bool round_range) {
  const index_t dim = x.dim;
  std::vector<float> range(static_cast<std::size_t>(dim));
  for (index_t c = 0; c < dim; ++c) {
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    bool nan = false;
    for (index_t h = 0; h < x.heads; ++h)
      for (index_t t = 0; t < x.tokens; ++t) {
        const float v = x(h, t, c);
        nan = nan || std::isnan(v);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    float r = nan ? std::numeric_limits<float>::quiet_NaN() : hi - lo;
    if (round_range) r = rounded_to<E>(r);
    range[static_cast<std::size_t>(c)] = r;
  }
  std::vector<std::int64_t> by_range(static_cast<std::size_t>(dim));
  std::iota(by_range.begin(), by_range.end(), 0);
  std::sort(by_range.begin(), by_range.end(), [&](std::int64_t a, std::int64_t b) {
    const float ra = range[static_cast<std::size_t>(a)], rb = range[static_cast<std::size_t>(b)];
    if (std::isnan(ra) != std::isnan(rb)) return std::isnan(rb);
    if (!std::isnan(ra) && ra != rb) return ra > rb;
    return a < b;
  });
  std::vector<std::int64_t> order(by_range.begin(), by_range.begin() + k);
  std::sort(order.begin(), order.end());
  std::vector<bool> taken(static_cast<std::size_t>(dim), false);
  for (std::int64_t c : order) taken[static_cast<std::size_t>(c)] = true;
  for (index_t c = 0; c < dim; ++c)
    if (!taken[static_cast<std::size_t>(c)]) order.push_back(c);
  return order;
}

/// Quantized and dequantized keys of a chunk: the channel order, the difficult part over
/// (heads, tokens, k) and the spectral part over (heads, tokens, 2n) as the uniform oracle packs
/// them, the spectrum before quantization, and the dequantized keys (rounded to E).
struct key_result {
  vidkv_key_layout layout;
  std::vector<std::int64_t> channels;
  uniform_result difficult, spectral;
  tensor3 spectrum;  // (heads, tokens, 2n): the spectrum as quantized (rounded to E)
  tensor3 values;    // (heads, tokens, dim)
};

template <class E>
key_result key_roundtrip(const vidkv_keys& keys, const tensor3& x, bool vidkv_dequant, bool force_real_bins = true) {
  key_result r;
  r.layout = vidkv_key_layout_of(keys, x.dim);
  const index_t k = r.layout.difficult, n = r.layout.easy, H = x.heads, T = x.tokens;
  r.channels = k > 0 && n > 0 ? channel_order<E>(x, k, keys.round_each_op) : std::vector<std::int64_t>();
  if (r.channels.empty())
    for (index_t c = 0; c < x.dim; ++c) r.channels.push_back(c);
  const auto channel = [&](index_t j) { return static_cast<index_t>(r.channels[static_cast<std::size_t>(j)]); };
  r.values = tensor3(H, T, x.dim);
  if (k > 0) {
    r.difficult = uniform_roundtrip<E>(r.layout.difficult_format, keys.round_each_op, vidkv_dequant, H, T, k,
                                       [&](index_t h, index_t t, index_t j) { return x(h, t, channel(j)); });
    for (index_t h = 0; h < H; ++h)
      for (index_t t = 0; t < T; ++t)
        for (index_t j = 0; j < k; ++j)
          r.values(h, t, channel(j)) = r.difficult.values[static_cast<std::size_t>((h * T + t) * k + j)];
  }
  if (n == 0) return r;
  r.spectrum = tensor3(H, T, 2 * n);
  for (index_t h = 0; h < H; ++h)
    for (index_t t = 0; t < T; ++t) {
      std::vector<double> easy(static_cast<std::size_t>(n));
      for (index_t j = 0; j < n; ++j) easy[static_cast<std::size_t>(j)] = x(h, t, channel(k + j));
      const std::vector<double> s = real_dft(easy, force_real_bins);
      for (index_t c = 0; c < 2 * n; ++c)
        r.spectrum(h, t, c) = rounded_to<E>(static_cast<float>(s[static_cast<std::size_t>(c)]));
    }
  r.spectral = uniform_roundtrip<E>(r.layout.spectral_format, keys.round_each_op, vidkv_dequant, H, T, 2 * n,
                                    [&](index_t h, index_t t, index_t c) { return r.spectrum(h, t, c); });
  for (index_t h = 0; h < H; ++h)
    for (index_t t = 0; t < T; ++t) {
      std::vector<double> s(static_cast<std::size_t>(2 * n));
      for (index_t c = 0; c < 2 * n; ++c) s[static_cast<std::size_t>(c)] = r.spectral.values[static_cast<std::size_t>((h * T + t) * 2 * n + c)];
      const std::vector<double> y = real_idft(s);
      for (index_t j = 0; j < n; ++j)
        r.values(h, t, channel(k + j)) = rounded_to<E>(static_cast<float>(y[static_cast<std::size_t>(j)]));
    }
  return r;
}

/// Values of a chunk, per channel along tokens, quantized and dequantized (rounded to E). With
/// salient positions (VidKV's `QuantizedCacheVLMSTP._quantize_value`): the listed tokens of the
/// chunk are gathered and quantized in vidkv_salient_format, the others gathered and quantized in
/// the value format, each dequantized back to its tokens.
template <class E>
tensor3 value_roundtrip(const vidkv& p, const tensor3& x, const std::vector<std::int64_t>& salient = {}) {
  std::vector<index_t> listed, others;
  for (index_t t = 0; t < x.tokens; ++t)
    (std::find(salient.begin(), salient.end(), t) != salient.end() ? listed : others).push_back(t);
  tensor3 out(x.heads, x.tokens, x.dim);
  const auto part = [&](const uniform_format& f, const std::vector<index_t>& tokens) {
    if (tokens.empty()) return;
    const index_t n = static_cast<index_t>(tokens.size());
    const auto at = [&](index_t t) { return tokens[static_cast<std::size_t>(t)]; };
    const uniform_result u = uniform_roundtrip<E>(f, p.round_each_op, p.vidkv_dequant, x.heads, n, x.dim,
                                                  [&](index_t h, index_t t, index_t c) { return x(h, at(t), c); });
    for (index_t h = 0; h < x.heads; ++h)
      for (index_t t = 0; t < n; ++t)
        for (index_t c = 0; c < x.dim; ++c)
          out(h, at(t), c) = u.values[static_cast<std::size_t>((h * n + t) * x.dim + c)];
  };
  part(vidkv_value_format(p), others);
  part(vidkv_salient_format(p), listed);
  return out;
}

/// Tokens [first, first + count) of a tensor.
inline tensor3 tokens_of(const tensor3& x, index_t first, index_t count) {
  tensor3 out(x.heads, count, x.dim);
  for (index_t h = 0; h < x.heads; ++h)
    for (index_t t = 0; t < count; ++t)
      for (index_t c = 0; c < x.dim; ++c) out(h, t, c) = x(h, first + t, c);
  return out;
}

/// Tensors concatenated along tokens.
inline tensor3 concat(const std::vector<const tensor3*>& parts, index_t heads, index_t dim) {
  index_t tokens = 0;
  for (const tensor3* p : parts) tokens += p->tokens;
  tensor3 out(heads, tokens, dim);
  index_t at = 0;
  for (const tensor3* p : parts) {
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < p->tokens; ++t)
        for (index_t c = 0; c < dim; ++c) out(h, at + t, c) = (*p)(h, t, c);
    at += p->tokens;
  }
  return out;
}

/// VidKV's `QuantizedCacheVLM.update`, one layer, replayed on whole tensors: the dequantized
/// packed part, the full-precision residual, and what each call returns.
template <class E>
struct cache_replay {
  vidkv config;
  index_t heads, dim;
  std::vector<std::int64_t> salient;  // QuantizedCacheVLMSTP's `low_tokens`; empty: QuantizedCacheVLM
  tensor3 keys, values;          // the dequantized packed tokens
  tensor3 key_res, value_res;    // the residual
  bool started = false;

  cache_replay(const vidkv& p, index_t h, index_t d, std::vector<std::int64_t> listed = {})
      : config(p), heads(h), dim(d), salient(std::move(listed)), keys(h, 0, d), values(h, 0, d), key_res(h, 0, d),
        value_res(h, 0, d) {}

  /// One call of `update` with the new tokens; returns (keys, values) as it returns them.
  std::pair<tensor3, tensor3> update(const tensor3& k, const tensor3& v) {
    const index_t n = k.tokens, G = config.group;
    if (!started) {  // prefill: quantize all but the last n mod G, return the input itself
      started = true;
      const index_t packed = n - n % G;
      if (packed > 0) {
        keys = key_roundtrip<E>(vidkv_keys_of(config), tokens_of(k, 0, packed), config.vidkv_dequant).values;
        values = value_roundtrip<E>(config, tokens_of(v, 0, packed), salient);
      }
      key_res = tokens_of(k, packed, n - packed);
      value_res = tokens_of(v, packed, n - packed);
      return {k, v};
    }
    tensor3 seen_k = concat({&keys, &key_res, &k}, heads, dim), seen_v = concat({&values, &value_res, &v}, heads, dim);
    // VidKV: `key_cache.dim() == 4 and key_cache.shape[-2] + 1 >= residual_length`; its empty
    // residual is a 1-D tensor.
    if (key_res.tokens > 0 && key_res.tokens + 1 >= config.residual) {
      keys = key_roundtrip<E>(vidkv_keys_of(config), seen_k, config.vidkv_dequant).values;
      values = value_roundtrip<E>(config, seen_v, salient);
      key_res = tensor3(heads, 0, dim);
      value_res = tensor3(heads, 0, dim);
    } else {
      key_res = concat({&key_res, &k}, heads, dim);
      value_res = concat({&value_res, &v}, heads, dim);
    }
    return {seen_k, seen_v};
  }
};

}  // namespace tokred::ref
