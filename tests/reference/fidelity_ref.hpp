// tests/reference/fidelity_ref.hpp — the scalar oracle of the bench's token fidelity metrics
// (tools/bench/fidelity.hpp): nearest outputs, reconstruction, attention fidelity, coverage.
//
// Written for obviousness from the definitions: every value is read into a double, every
// distance is Σ (x − y)² over all pairs (no GEMM, no candidate search), the attention
// probabilities are materialised row by row. Uses nothing of the bench header or of tokred's
// detail:: helpers.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/view.hpp>

namespace tokred::ref {

struct nearest {
  index_t index = -1;
  double distance = 0.0;
};

inline double squared_distance(const view<const float, 2>& a, index_t i, const view<const float, 2>& b, index_t j) {
  double s = 0.0;
  for (index_t c = 0; c < a.extent(1); ++c) {
    const double e = static_cast<double>(a(i, c)) - static_cast<double>(b(j, c));
    s += e * e;
  }
  return s;
}

/// The nearest row of y for every row of x: least Euclidean distance, the lowest index on ties.
inline std::vector<nearest> nearest_outputs(const view<const float, 2>& x, const view<const float, 2>& y) {
  std::vector<nearest> out(static_cast<std::size_t>(x.extent(0)));
  for (index_t i = 0; i < x.extent(0); ++i) {
    nearest best;
    for (index_t j = 0; j < y.extent(0); ++j) {
      const double d = squared_distance(x, i, y, j);
      if (best.index < 0 || d < best.distance) best = {j, d};
    }
    out[static_cast<std::size_t>(i)] = {best.index, std::sqrt(best.distance)};
  }
  return out;
}

struct reconstruction {
  double relative_l2 = 0.0;
  double mean_cosine = 0.0;
  index_t nearest = 0;
};

/// x̂_i = y[assign[i]] (assign[i] ≥ 0), else the nearest row of y; assign may be empty (none).
inline reconstruction reconstruct(const view<const float, 2>& x, const view<const float, 2>& y,
                                  const std::vector<std::int64_t>& assign) {
  const std::vector<nearest> near = nearest_outputs(x, y);
  reconstruction r;
  double error = 0.0, total = 0.0, cosines = 0.0;
  for (index_t i = 0; i < x.extent(0); ++i) {
    const bool assigned = !assign.empty() && assign[static_cast<std::size_t>(i)] >= 0;
    const auto at = static_cast<std::size_t>(i);
    const index_t j = assigned ? static_cast<index_t>(assign[at]) : near[at].index;
    r.nearest += assigned ? 0 : 1;
    double dot = 0.0, xx = 0.0, yy = 0.0;
    for (index_t c = 0; c < x.extent(1); ++c) {
      const double a = x(i, c), b = y(j, c);
      dot += a * b;
      xx += a * a;
      yy += b * b;
      error += (a - b) * (a - b);
    }
    total += xx;
    if (xx == 0.0 && yy == 0.0) cosines += 1.0;
    else if (xx > 0.0 && yy > 0.0) cosines += std::fmax(-1.0, std::fmin(1.0, dot / (std::sqrt(xx) * std::sqrt(yy))));
  }
  r.relative_l2 = total == 0.0 ? (error == 0.0 ? 0.0 : INFINITY) : std::sqrt(error) / std::sqrt(total);
  r.mean_cosine = cosines / static_cast<double>(x.extent(0));
  return r;
}

/// softmax(q·vᵀ/√D + log sizes)·v for every row of q, (M, D) row-major; sizes empty: all 1.
inline std::vector<double> attend(const view<const float, 2>& q, const view<const float, 2>& v,
                                  const std::vector<float>& sizes) {
  const index_t m = q.extent(0), k = v.extent(0), d = v.extent(1);
  std::vector<double> out(static_cast<std::size_t>(m * d), 0.0), p(static_cast<std::size_t>(k));
  for (index_t r = 0; r < m; ++r) {
    double top = -INFINITY;
    for (index_t j = 0; j < k; ++j) {
      double dot = 0.0;
      for (index_t c = 0; c < d; ++c) dot += static_cast<double>(q(r, c)) * static_cast<double>(v(j, c));
      double logit = dot / std::sqrt(static_cast<double>(d));
      if (!sizes.empty()) logit += std::log(static_cast<double>(sizes[static_cast<std::size_t>(j)]));
      p[static_cast<std::size_t>(j)] = logit;
      top = std::fmax(top, logit);
    }
    double z = 0.0;
    for (double& w : p) z += (w = std::exp(w - top));
    for (index_t j = 0; j < k; ++j)
      for (index_t c = 0; c < d; ++c)
        out[static_cast<std::size_t>(r * d + c)] += p[static_cast<std::size_t>(j)] / z * static_cast<double>(v(j, c));
  }
  return out;
}

/// ‖A − Â‖_F / ‖A‖_F with A = attend(q, x), Â = attend(q, y, sizes).
inline double attention_error(const view<const float, 2>& x, const view<const float, 2>& y,
                              const std::vector<float>& sizes, const view<const float, 2>& q) {
  const std::vector<double> a = attend(q, x, {}), b = attend(q, y, sizes);
  double gap = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    gap += (a[i] - b[i]) * (a[i] - b[i]);
    norm += a[i] * a[i];
  }
  return norm == 0.0 ? (gap == 0.0 ? 0.0 : INFINITY) : std::sqrt(gap / norm);
}

struct coverage {
  double max_distance = 0.0;
  double relative = 0.0;
  index_t token = -1;
  index_t output = -1;
};

/// max over x of the distance to the nearest row of y (the lowest token on ties), and that over
/// the mean row norm of x.
inline coverage cover(const view<const float, 2>& x, const view<const float, 2>& y) {
  const std::vector<nearest> near = nearest_outputs(x, y);
  coverage c;
  double norms = 0.0;
  for (index_t i = 0; i < x.extent(0); ++i) {
    if (c.token < 0 || near[static_cast<std::size_t>(i)].distance > c.max_distance)
      c = {near[static_cast<std::size_t>(i)].distance, 0.0, i, near[static_cast<std::size_t>(i)].index};
    double xx = 0.0;
    for (index_t k = 0; k < x.extent(1); ++k) xx += static_cast<double>(x(i, k)) * static_cast<double>(x(i, k));
    norms += std::sqrt(xx);
  }
  const double mean = norms / static_cast<double>(x.extent(0));
  c.relative = mean == 0.0 ? (c.max_distance == 0.0 ? 0.0 : INFINITY) : c.max_distance / mean;
  return c;
}

}  // namespace tokred::ref
