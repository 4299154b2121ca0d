// tests/reference/pool_ref.hpp — the scalar oracle of pool, adaptive_pool and bilinear.
//
// Written from torch's definitions (avg_pool3d / max_pool3d, AdaptiveAvgPool3d /
// AdaptiveMaxPool3d, F.interpolate(mode="bilinear", antialias=False)) for obviousness, not
// speed: every output element is its own loop over the input, values in double. Only bilinear's
// source coordinates are computed in float, because torch computes them in float and they are
// part of the definition. The oracle uses none of tokred's detail:: helpers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/grid_reduce.hpp>

namespace tokred::ref {

/// Everything a grid reducer outputs, or `valid == false` when torch (or tokred's documented
/// domain) rejects the parameters.
struct grid_result {
  bool valid = false;
  token_grid out;
  std::vector<double> values;           // (kept, dim)
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<float> sizes;             // (kept,)
};

/// One axis of a box: input indices [begin, end).
struct axis_range {
  index_t begin = 0, end = 0;
  index_t count() const { return end - begin; }
  index_t middle() const { return begin + (end - begin - 1) / 2; }
};

/// torch's pooling_output_shape for one axis (dilation 1); 0 when torch rejects the parameters.
/// tokred also rejects a kernel larger than the padded input, which torch's ceil mode would let
/// through (its window then starts inside the input and is clipped).
inline index_t pool_out_size(index_t in, index_t kernel, index_t stride, index_t pad, bool ceil_mode) {
  if (kernel < 1 || stride < 1 || pad < 0 || pad > kernel / 2) return 0;
  if (in + 2 * pad < kernel) return 0;
  const index_t numerator = in + 2 * pad - kernel + (ceil_mode ? stride - 1 : 0);
  index_t out = numerator / stride + 1;  // numerator >= 0: division is floor
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out >= 1 ? out : 0;
}

/// The input token rows as doubles: rows[i][c].
template <class E>
std::vector<std::vector<double>> rows_of(const view<const E, 2>& tokens) {  // (tokens, dim)
  std::vector<std::vector<double>> rows(static_cast<std::size_t>(tokens.extent(0)));
  for (index_t i = 0; i < tokens.extent(0); ++i)
    for (index_t c = 0; c < tokens.extent(1); ++c)
      rows[static_cast<std::size_t>(i)].push_back(static_cast<double>(to_float(tokens(i, c))));
  return rows;
}

inline std::int64_t flat(const token_grid& g, index_t t, index_t h, index_t w) {
  return (t * g.height + h) * g.width + w;
}

inline void add_meta(grid_result& r, const token_grid& g, std::int64_t source, float size) {
  r.source.push_back(source);
  r.positions.push_back(static_cast<std::int32_t>(source / (g.height * g.width)));
  r.positions.push_back(static_cast<std::int32_t>((source / g.width) % g.height));
  r.positions.push_back(static_cast<std::int32_t>(source % g.width));
  r.sizes.push_back(size);
}

/// Mean or max over a box of tokens, per channel; `divisor` for the mean. torch's max: NaN if
/// any value is NaN, otherwise the largest.
inline std::vector<double> reduce_box(const std::vector<std::vector<double>>& rows, const token_grid& g,
                                      axis_range t, axis_range h, axis_range w, pool_kind kind,
                                      double divisor, index_t dim) {
  std::vector<double> out;
  for (index_t c = 0; c < dim; ++c) {
    double sum = 0.0, best = -std::numeric_limits<double>::infinity();
    bool nan = false;
    for (index_t it = t.begin; it < t.end; ++it)
      for (index_t ih = h.begin; ih < h.end; ++ih)
        for (index_t iw = w.begin; iw < w.end; ++iw) {
          const double v = rows[static_cast<std::size_t>(flat(g, it, ih, iw))][static_cast<std::size_t>(c)];
          sum += v;
          nan = nan || std::isnan(v);
          best = std::max(best, v);
        }
    if (kind == pool_kind::max) out.push_back(nan ? std::numeric_limits<double>::quiet_NaN() : best);
    else out.push_back(sum / divisor);
  }
  return out;
}

/// avg_pool3d / max_pool3d on a (T, H, W) grid of `dim` channels.
template <class E>
grid_result pooled(const pool& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  grid_result r;
  r.out = {pool_out_size(g.frames, p.kernel.t, p.stride.t, p.padding.t, p.ceil_mode),
           pool_out_size(g.height, p.kernel.h, p.stride.h, p.padding.h, p.ceil_mode),
           pool_out_size(g.width, p.kernel.w, p.stride.w, p.padding.w, p.ceil_mode)};
  if (g.tokens() <= 0 || r.out.tokens() == 0) return r;
  r.valid = true;
  const auto rows = rows_of(tokens);
  const index_t dim = tokens.extent(1);
  // torch: the window [o·s − p, o·s − p + k), cut at in + p for the divisor, at [0, in) for the sum.
  const auto window = [](index_t o, index_t in, index_t k, index_t s, index_t pad, index_t& padded) {
    const index_t start = o * s - pad;
    const index_t stop = std::min(start + k, in + pad);
    padded = stop - start;
    return axis_range{std::max<index_t>(start, 0), std::min(stop, in)};
  };
  for (index_t ot = 0; ot < r.out.frames; ++ot)
    for (index_t oh = 0; oh < r.out.height; ++oh)
      for (index_t ow = 0; ow < r.out.width; ++ow) {
        index_t pt = 0, ph = 0, pw = 0;
        const axis_range t = window(ot, g.frames, p.kernel.t, p.stride.t, p.padding.t, pt);
        const axis_range h = window(oh, g.height, p.kernel.h, p.stride.h, p.padding.h, ph);
        const axis_range w = window(ow, g.width, p.kernel.w, p.stride.w, p.padding.w, pw);
        const index_t inside = t.count() * h.count() * w.count();
        const double divisor = static_cast<double>(p.count_include_pad ? pt * ph * pw : inside);
        const auto v = reduce_box(rows, g, t, h, w, p.kind, divisor, dim);
        r.values.insert(r.values.end(), v.begin(), v.end());
        add_meta(r, g, flat(g, t.middle(), h.middle(), w.middle()), static_cast<float>(inside));
      }
  return r;
}

/// AdaptiveAvgPool3d / AdaptiveMaxPool3d: output o of an axis covers
/// [floor(o·in/out), ceil((o+1)·in/out)).
template <class E>
grid_result adaptive(const adaptive_pool& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  grid_result r;
  if (g.tokens() <= 0 || p.size.t < 1 || p.size.h < 1 || p.size.w < 1) return r;
  r.valid = true;
  r.out = {p.size.t, p.size.h, p.size.w};
  const auto rows = rows_of(tokens);
  const auto bin = [](index_t o, index_t in, index_t out) {
    return axis_range{static_cast<index_t>(std::floor(static_cast<double>(o * in) / static_cast<double>(out))),
                      static_cast<index_t>(std::ceil(static_cast<double>((o + 1) * in) / static_cast<double>(out)))};
  };
  for (index_t ot = 0; ot < r.out.frames; ++ot)
    for (index_t oh = 0; oh < r.out.height; ++oh)
      for (index_t ow = 0; ow < r.out.width; ++ow) {
        const axis_range t = bin(ot, g.frames, r.out.frames), h = bin(oh, g.height, r.out.height),
                         w = bin(ow, g.width, r.out.width);
        const index_t inside = t.count() * h.count() * w.count();
        const auto v = reduce_box(rows, g, t, h, w, p.kind, static_cast<double>(inside), tokens.extent(1));
        r.values.insert(r.values.end(), v.begin(), v.end());
        add_meta(r, g, flat(g, t.middle(), h.middle(), w.middle()), static_cast<float>(inside));
      }
  return r;
}

/// torch's area_pixel_compute_source_index for linear modes as torch 1.13's CPU kernel runs it:
/// the scale in float, the source coordinate in double (its accumulate type), the weight of the
/// second neighbour rounded to float; an axis of unchanged size is a copy.
struct linear_tap {
  index_t i0, i1;
  float lambda;
};

inline linear_tap linear_source(index_t o, index_t in, index_t out, bool align_corners) {
  if (in == out) return {o, o, 0.0f};
  double src;
  if (align_corners) {
    const float scale = out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
    src = double{scale} * static_cast<double>(o);
  } else {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    src = std::max(double{scale} * (static_cast<double>(o) + 0.5) - 0.5, 0.0);
  }
  const index_t i0 = std::min(static_cast<index_t>(std::floor(src)), in - 1);
  const float lambda = static_cast<float>(std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0));
  return {i0, i0 < in - 1 ? i0 + 1 : i0, lambda};
}

/// F.interpolate(size=(height, width), mode="bilinear") of every frame.
template <class E>
grid_result resampled(const bilinear& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  grid_result r;
  if (g.tokens() <= 0 || p.height < 1 || p.width < 1) return r;
  r.valid = true;
  r.out = {g.frames, p.height, p.width};
  const auto rows = rows_of(tokens);
  const float area = static_cast<float>(g.height * g.width) / static_cast<float>(p.height * p.width);
  for (index_t t = 0; t < g.frames; ++t)
    for (index_t oh = 0; oh < p.height; ++oh)
      for (index_t ow = 0; ow < p.width; ++ow) {
        const linear_tap h = linear_source(oh, g.height, p.height, p.align_corners);
        const linear_tap w = linear_source(ow, g.width, p.width, p.align_corners);
        const double lh = h.lambda, lw = w.lambda;
        for (index_t c = 0; c < tokens.extent(1); ++c) {
          const auto x = [&](index_t ih, index_t iw) {
            return rows[static_cast<std::size_t>(flat(g, t, ih, iw))][static_cast<std::size_t>(c)];
          };
          r.values.push_back((1 - lh) * ((1 - lw) * x(h.i0, w.i0) + lw * x(h.i0, w.i1)) +
                             lh * ((1 - lw) * x(h.i1, w.i0) + lw * x(h.i1, w.i1)));
        }
        // The nearest tap stands for the output; on a tie (λ = 0.5) the second.
        add_meta(r, g, flat(g, t, h.lambda >= 0.5f ? h.i1 : h.i0, w.lambda >= 0.5f ? w.i1 : w.i0), area);
      }
  return r;
}

/// The oracle of any of the three policies.
template <class E>
grid_result reduced(const pool& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  return pooled(p, g, tokens);
}
template <class E>
grid_result reduced(const adaptive_pool& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  return adaptive(p, g, tokens);
}
template <class E>
grid_result reduced(const bilinear& p, const token_grid& g, const view<const E, 2>& tokens) {  // (tokens, dim)
  return resampled(p, g, tokens);
}

}  // namespace tokred::ref
