// tests/reference/feature_scores_ref.hpp — the scalar oracle of token_norm, query_relevance,
// temporal_similarity and threshold.
//
// Written for obviousness, not speed: every dot product and norm in double, one token at a time,
// straight from the formulas in <tokred/policy/feature_scores.hpp>. The CPU backend is compared
// with it within the fp32 rounding bound of its own sums (`cosine_tolerance`).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/feature_scores.hpp>
#include <tokred/policy/threshold.hpp>

namespace tokred::ref {

/// Σ_c a(i, c)·b(j, c) in double.
template <class E>
double dot(const view<const E, 2>& a, index_t i, const view<const E, 2>& b, index_t j) {
  double sum = 0.0;
  for (index_t c = 0; c < a.extent(1); ++c)
    sum += static_cast<double>(to_float(a(i, c))) * static_cast<double>(to_float(b(j, c)));
  return sum;
}

/// torch's F.cosine_similarity: x·y / (max(‖x‖, eps) · max(‖y‖, eps)), eps = 1e-8.
inline double cosine(double xy, double xx, double yy) {
  const double eps = static_cast<double>(detail::cosine_eps);
  return xy / (std::max(std::sqrt(xx), eps) * std::max(std::sqrt(yy), eps));
}

template <class E>
double cosine(const view<const E, 2>& a, index_t i, const view<const E, 2>& b, index_t j) {
  return cosine(dot(a, i, b, j), dot(a, i, a, i), dot(b, j, b, j));
}

/// The largest |fp32 − exact| tokred's cosine of rows `dim` wide may show: each of the three sums
/// errs by at most (dim + 1)·u relative to Σ|a·b| ≤ ‖a‖‖b‖ (u = 2⁻²⁴, Cauchy–Schwarz), each
/// square root, product and the division by one more u; 2·dim + 8 units covers them all.
inline double cosine_tolerance(index_t dim) { return std::ldexp(2.0 * static_cast<double>(dim) + 8.0, -24); }

/// ‖x_i‖ of every row.
template <class E>
std::vector<double> token_norms(const view<const E, 2>& rows) {  // (tokens, dim)
  std::vector<double> out;
  for (index_t i = 0; i < rows.extent(0); ++i) out.push_back(std::sqrt(dot(rows, i, rows, i)));
  return out;
}

/// temporal_similarity: frame 0 gets first_frame, token (t, j) the cosine (or 1 − cosine) with
/// (t − 1, j).
template <class E>
std::vector<double> temporal(const temporal_similarity& p, const token_grid& grid,
                             const view<const E, 2>& rows) {  // (tokens, dim)
  const index_t hw = grid.frame_tokens();
  std::vector<double> out;
  for (index_t i = 0; i < grid.tokens(); ++i) {
    if (i < hw) {
      out.push_back(static_cast<double>(p.first_frame));
      continue;
    }
    const double c = cosine(rows, i, rows, i - hw);
    out.push_back(p.is == temporal_similarity::measure::cosine ? c : 1.0 - c);
  }
  return out;
}

/// The documented mean token of frame t: each column summed in fp32 in row order, divided by
/// H·W in fp32, rounded to E.
template <class E>
std::vector<E> frame_mean(const token_grid& grid, const view<const E, 2>& rows, index_t t) {
  const index_t hw = grid.frame_tokens();
  std::vector<E> mean;
  for (index_t c = 0; c < rows.extent(1); ++c) {
    float sum = 0.0f;
    for (index_t i = t * hw; i < (t + 1) * hw; ++i) sum += to_float(rows(i, c));
    mean.push_back(from_float<E>(sum / static_cast<float>(hw)));
  }
  return mean;
}

/// query_relevance: the mean over query rows of the cosine (or the dot product, `measure::dot`)
/// of each token (or frame mean) with it. With `magnitude`, the mean of ‖x‖·‖q‖ instead: the
/// scale of a dot product's rounding error (Cauchy–Schwarz bounds Σ|x_c·q_c| by it).
template <class E>
std::vector<double> relevance(const query_relevance& p, const token_grid& grid,
                              const view<const E, 2>& rows,    // (tokens, dim)
                              const view<const E, 2>& query,   // (queries, dim)
                              bool magnitude = false) {
  const index_t queries = query.extent(0);
  const auto mean_relevance = [&](const view<const E, 2>& a, index_t i) {
    double sum = 0.0;
    for (index_t q = 0; q < queries; ++q) {
      if (magnitude) sum += std::sqrt(dot(a, i, a, i) * dot(query, q, query, q));
      else sum += p.is == query_relevance::measure::dot ? dot(a, i, query, q) : cosine(a, i, query, q);
    }
    return sum / static_cast<double>(queries);
  };
  std::vector<double> out;
  if (p.at == query_relevance::level::token) {
    for (index_t i = 0; i < grid.tokens(); ++i) out.push_back(mean_relevance(rows, i));
  } else {
    for (index_t t = 0; t < grid.frames; ++t) {
      const std::vector<E> mean = frame_mean(grid, rows, t);
      out.push_back(mean_relevance(view<const E, 2>(mean.data(), {1, rows.extent(1)}), 0));
    }
  }
  return out;
}

/// The largest |got − want|, relative to max(1, |want|) when `relative`; infinite when a value is
/// NaN on one side only or the sizes differ.
inline double worst_error(const std::vector<float>& got, const std::vector<double>& want, bool relative = false) {
  const double inf = std::numeric_limits<double>::infinity();
  if (got.size() != want.size()) return inf;
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) {
      if (std::isnan(got[i]) != std::isnan(want[i])) return inf;
      continue;
    }
    if (got[i] == want[i]) continue;  // equal infinities
    const double scale = relative ? std::max(1.0, std::fabs(want[i])) : 1.0;
    worst = std::max(worst, std::fabs(static_cast<double>(got[i]) - want[i]) / scale);
  }
  return worst;
}

/// threshold: the ascending indices of the tokens whose score passes.
inline std::vector<std::int64_t> threshold_kept(const threshold& p, const std::vector<float>& scores) {
  std::vector<std::int64_t> kept;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const float s = scores[i];
    const bool keep = p.keep_if == threshold::keep::above ? s > p.tau : !(s > p.tau);
    if (keep) kept.push_back(static_cast<std::int64_t>(i));
  }
  return kept;
}

}  // namespace tokred::ref
