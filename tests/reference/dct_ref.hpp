// tests/reference/dct_ref.hpp — the scalar oracle of dct_lowpass, in double, from the textbook
// definition of the orthonormal DCT-II:
//
//   X_k = s_k Σ_{n<N} x_n cos(π (2n + 1) k / 2N),   s_0 = √(1/N), s_k = √(2/N)
//   x_n = Σ_{k<N} s_k X_k cos(π (2n + 1) k / 2N)     (the orthonormal inverse, DCT-III)
//
// Each transformed axis (W, then H, then T) gets the direct O(N·keep) sums of the first `keep`
// coefficients; resampling then applies the inverse at size `keep`. Written for obviousness, not
// speed: no symmetry, no tables, no blocking. The CPU backend is compared with it.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/grid_reduce.hpp>

namespace tokred::ref {

/// s_k cos(π (2n + 1) k / 2N): entry (k, n) of the orthonormal DCT-II of size N.
inline double dct_basis(index_t big_n, index_t k, index_t n) {
  const double pi = 3.14159265358979323846;
  const double s = std::sqrt((k == 0 ? 1.0 : 2.0) / static_cast<double>(big_n));
  return s * std::cos(pi * static_cast<double>((2 * n + 1) * k) / static_cast<double>(2 * big_n));
}

/// A (T, H, W, D) block of doubles, row-major.
struct volume {
  index_t t = 0, h = 0, w = 0, d = 0;
  std::vector<double> v;

  volume(index_t t_, index_t h_, index_t w_, index_t d_)
      : t(t_), h(h_), w(w_), d(d_), v(static_cast<std::size_t>(t_ * h_ * w_ * d_), 0.0) {}
  double& at(index_t a, index_t b, index_t c, index_t e) {
    return v[static_cast<std::size_t>(((a * h + b) * w + c) * d + e)];
  }
  index_t extent(int axis) const { return axis == 0 ? w : axis == 1 ? h : t; }
};

/// Element i along `axis` of the line through (t, h, w) (that axis's own coordinate ignored).
inline double& along(volume& x, int axis, index_t i, index_t t, index_t h, index_t w, index_t c) {
  return axis == 0 ? x.at(t, h, i, c) : axis == 1 ? x.at(t, i, w, c) : x.at(i, h, w, c);
}

/// Along `axis` (0 = W, 1 = H, 2 = T): the first `keep` DCT-II coefficients of `x`,
/// y_k = Σ_n C[k][n] x_n; or with `inverse` (keep = x.extent(axis)) the orthonormal inverse,
/// y_n = Σ_k C[k][n] x_k.
inline volume transform_axis(volume& x, int axis, index_t keep, bool inverse) {
  const index_t n_in = x.extent(axis);
  volume y(axis == 2 ? keep : x.t, axis == 1 ? keep : x.h, axis == 0 ? keep : x.w, x.d);
  std::vector<double> c(static_cast<std::size_t>(n_in * keep));  // c[o][i]: the weight of x_i in y_o
  for (index_t o = 0; o < keep; ++o)
    for (index_t i = 0; i < n_in; ++i)
      c[static_cast<std::size_t>(o * n_in + i)] = inverse ? dct_basis(n_in, i, o) : dct_basis(n_in, o, i);
  for (index_t t = 0; t < y.t; ++t)
    for (index_t h = 0; h < y.h; ++h)
      for (index_t w = 0; w < y.w; ++w)
        for (index_t ch = 0; ch < x.d; ++ch) {
          const index_t o = axis == 0 ? w : axis == 1 ? h : t;
          double sum = 0.0;
          for (index_t i = 0; i < n_in; ++i)
            sum += c[static_cast<std::size_t>(o * n_in + i)] * along(x, axis, i, t, h, w, ch);
          y.at(t, h, w, ch) = sum;
        }
  return y;
}

/// Fourier-VLM's low-pass of `tokens` on `grid`, in double: (kept, dim) row-major, or empty when
/// the policy does not fit the grid.
template <class E>
std::vector<double> dct_lowpass(const tokred::dct_lowpass& p, const token_grid& grid,
                                const view<const E, 2>& tokens) {  // (tokens, dim)
  if (output_grid(p, grid).tokens() == 0) return {};
  const index_t dim = tokens.extent(1);
  volume x(grid.frames, grid.height, grid.width, dim);
  for (index_t i = 0; i < grid.tokens(); ++i)
    for (index_t c = 0; c < dim; ++c) x.v[static_cast<std::size_t>(i * dim + c)] = to_float(tokens(i, c));
  const bool transformed[3] = {p.axes != dct_axes::temporal, p.axes != dct_axes::temporal,
                               p.axes != dct_axes::spatial};
  const index_t keep[3] = {p.keep.w, p.keep.h, p.keep.t};
  for (int axis = 0; axis < 3; ++axis) {
    if (!transformed[axis]) continue;
    x = transform_axis(x, axis, keep[axis], false);
    if (p.produce == dct_output::resampled) x = transform_axis(x, axis, keep[axis], true);
  }
  return x.v;
}

/// The original token output j of a DCT low-pass stands for: per transformed axis, the centre
/// floor((2o + 1)·n / (2·n')) of the o-th of n' equal stretches.
inline std::int64_t dct_source(const token_grid& in, const token_grid& out, index_t j) {
  const index_t t = j / (out.height * out.width), h = (j / out.width) % out.height, w = j % out.width;
  const auto centre = [](index_t o, index_t n, index_t m) { return (2 * o + 1) * n / (2 * m); };
  return (centre(t, in.frames, out.frames) * in.height + centre(h, in.height, out.height)) * in.width +
         centre(w, in.width, out.width);
}

}  // namespace tokred::ref
