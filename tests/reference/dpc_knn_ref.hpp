// tests/reference/dpc_knn_ref.hpp — the scalar oracle of dpc_knn.
//
// Written from the DPC-kNN description, for clarity: the full distance matrix, each density from
// a partial sort of its row, the order of the tokens as an explicit ranking (density descending,
// index ascending) with δ the smallest distance to a token earlier in that ranking, the centers
// from a stable sort of the scores, the nearest center by a first-minimum scan, and the cluster
// rows in double. O(N²·C + N² log N).
//
// The squared distances are summed in double and rounded to fp32 once, then the fp32 steps of
// the definition follow literally (d = √s / √C, ρ = fp32(exp(−Σ d² / k)) with the squares summed
// in double, score = δ·ρ). For rows whose squared distances are exact in fp32 — the tests' rows
// are multiples of 1/16 below 8 in magnitude, at most 128 wide — every decision then has the
// backend's bits, ties included; for other rows the two agree up to rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/clustering.hpp>

namespace tokred::ref {

/// dpc_knn's decisions.
struct dpc_knn_decisions {
  std::vector<float> density;          // (n,)
  std::vector<float> score;            // (n,)
  std::vector<std::int64_t> centers;   // (clusters,) ascending
  std::vector<std::int64_t> assign;    // (n,) the cluster (output slot) of every token
};

/// The decisions of `p` on the compared rows `x` (n, C).
template <class E>
dpc_knn_decisions dpc_knn_decide(const dpc_knn& p, const view<const E, 2>& x) {
  const std::int64_t n = x.extent(0), dim = x.extent(1);
  const std::int64_t k = std::min(p.k, p.clusters);
  const auto at = [n](std::int64_t i, std::int64_t j) { return static_cast<std::size_t>(i * n + j); };
  const float root_c = static_cast<float>(std::sqrt(static_cast<double>(dim)));

  std::vector<float> d(static_cast<std::size_t>(n * n));
  float largest = 0.0f;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < dim; ++c) {
        const double diff = static_cast<double>(to_float(x(i, c))) - to_float(x(j, c));
        s += diff * diff;
      }
      d[at(i, j)] = std::sqrt(static_cast<float>(s)) / root_c;
      largest = std::max(largest, d[at(i, j)]);
    }

  dpc_knn_decisions out;
  for (std::int64_t i = 0; i < n; ++i) {
    std::vector<float> row(d.begin() + static_cast<std::ptrdiff_t>(i * n), d.begin() + static_cast<std::ptrdiff_t>((i + 1) * n));
    std::partial_sort(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(k), row.end());
    double sum = 0;
    for (std::int64_t t = 0; t < k; ++t) sum += static_cast<double>(row[static_cast<std::size_t>(t)]) * row[static_cast<std::size_t>(t)];
    out.density.push_back(static_cast<float>(std::exp(-sum / static_cast<double>(k))));
  }

  // The ranking: density descending, the lower index first among equals.
  std::vector<std::int64_t> rank(static_cast<std::size_t>(n));
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(), [&](std::int64_t a, std::int64_t b) {
    return out.density[static_cast<std::size_t>(a)] > out.density[static_cast<std::size_t>(b)];
  });
  out.score.assign(static_cast<std::size_t>(n), 0.0f);
  for (std::size_t r = 0; r < rank.size(); ++r) {
    const std::int64_t i = rank[r];
    float delta = largest;  // the top of the ranking
    if (r > 0) {
      delta = d[at(i, rank[0])];
      for (std::size_t e = 1; e < r; ++e) delta = std::min(delta, d[at(i, rank[e])]);
    }
    out.score[static_cast<std::size_t>(i)] = delta * out.density[static_cast<std::size_t>(i)];
  }

  // The centers: score descending, NaN last, ties to the lower index; then in index order.
  std::vector<std::int64_t> by_score(static_cast<std::size_t>(n));
  std::iota(by_score.begin(), by_score.end(), 0);
  std::stable_sort(by_score.begin(), by_score.end(), [&](std::int64_t a, std::int64_t b) {
    const float sa = out.score[static_cast<std::size_t>(a)], sb = out.score[static_cast<std::size_t>(b)];
    if (std::isnan(sa) || std::isnan(sb)) return !std::isnan(sa) && std::isnan(sb);
    return sa > sb;
  });
  out.centers.assign(by_score.begin(), by_score.begin() + static_cast<std::ptrdiff_t>(p.clusters));
  std::sort(out.centers.begin(), out.centers.end());

  out.assign.assign(static_cast<std::size_t>(n), -1);
  for (std::size_t q = 0; q < out.centers.size(); ++q) out.assign[static_cast<std::size_t>(out.centers[q])] = static_cast<std::int64_t>(q);
  for (std::int64_t i = 0; i < n; ++i) {
    if (out.assign[static_cast<std::size_t>(i)] >= 0) continue;
    std::int64_t best = 0;
    for (std::size_t q = 1; q < out.centers.size(); ++q)
      if (d[at(i, out.centers[q])] < d[at(i, out.centers[static_cast<std::size_t>(best)])]) best = static_cast<std::int64_t>(q);
    out.assign[static_cast<std::size_t>(i)] = best;
  }
  return out;
}

/// What dpc_knn writes, the rows and sizes in double.
struct dpc_knn_result {
  std::vector<double> tokens;  // (clusters, dim)
  std::vector<double> sizes;   // (clusters,)
};

/// The cluster rows of given decisions: with weights w (carried sizes, or 1), the group mean
/// Σ w·x / Σ w over center and members, or β·x_c + (1 − β)·(Σ w·x / Σ w over the members), x_c
/// when there is none.
template <class E>
dpc_knn_result dpc_knn_rows(const dpc_knn& p, const view<const E, 2>& tokens, const dpc_knn_decisions& d,
                            const std::vector<float>& sizes) {
  const std::int64_t n = tokens.extent(0), dim = tokens.extent(1);
  const auto w = [&](std::int64_t i) { return sizes.empty() ? 1.0 : static_cast<double>(sizes[static_cast<std::size_t>(i)]); };
  dpc_knn_result out;
  for (std::size_t q = 0; q < d.centers.size(); ++q) {
    const std::int64_t c = d.centers[q];
    std::vector<double> sum(static_cast<std::size_t>(dim), 0.0);
    double members = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (d.assign[static_cast<std::size_t>(i)] != static_cast<std::int64_t>(q) || i == c) continue;
      members += w(i);
      for (std::int64_t col = 0; col < dim; ++col) sum[static_cast<std::size_t>(col)] += w(i) * to_float(tokens(i, col));
    }
    out.sizes.push_back(w(c) + members);
    for (std::int64_t col = 0; col < dim; ++col) {
      const double xc = to_float(tokens(c, col)), s = sum[static_cast<std::size_t>(col)];
      if (p.merge == cluster_merge::group_mean) out.tokens.push_back((w(c) * xc + s) / (w(c) + members));
      else out.tokens.push_back(members == 0 ? xc : p.beta * xc + (1.0 - p.beta) * (s / members));
    }
  }
  return out;
}

}  // namespace tokred::ref
