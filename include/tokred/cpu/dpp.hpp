// tokred/cpu/dpp.hpp — the CPU backend of cdpruner: conditional-DPP greedy MAP (CDPruner as
// OpenVINO GenAI ships it).
//
// Per group (or per half, with `split`) of n tokens keeping k:
//   1. s_i = 1/sqrt(‖x_i‖² + 1e-6); relevance m from the scores, or the mean cosine to the
//      queries (each normalised the same way), or 0; r from m by the kernel's min-max rule.
//   2. d²_i = K_ii. Each step picks j = argmax d² over the tokens not yet picked (ties to the lower
//      index, NaN last), computes the kernel row K_j· from one pass of dot products of row j
//      against the group (no n × n matrix), orthogonalises it against the previous picks' rows of
//      C (skipping coefficients below 1e-6 in magnitude, as OpenVINO does), scales it by
//      1/sqrt(d²_j + 1e-6), stores it as C's next row and lowers every d²_i by its square.
// O(k·n·D) for the kernel rows and O(k²·n) for the update; O(k·n) memory for C, as the algorithm
// needs. Every share runs the selection of each group its rows fall in (see cpu/diversity.hpp).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/cpu/diversity.hpp"

namespace tokred {
namespace detail {

/// OpenVINO's `numerical_threshold`: the norm, min-max, pivot and coefficient epsilon.
inline constexpr float dpp_epsilon = 1e-6f;

/// The scratch of one cdpruner selection of `n` tokens keeping `k`.
struct dpp_scratch {
  float* scale = nullptr;       // (n,) 1/sqrt(‖x‖² + eps)
  float* relevance = nullptr;   // (n,) r
  float* gain = nullptr;        // (n,) d², the conditional variance left
  bool* picked = nullptr;       // (n,)
  float* coefficients = nullptr;  // (k, n) C, one row per pick
  index_t* picks = nullptr;     // (k,) group-local, pick order
  std::int64_t* kept = nullptr; // (k,) ascending

  static dpp_scratch carve(arena& a, index_t n, index_t k) {
    dpp_scratch s;
    s.scale = a.take<float>(n);
    s.relevance = a.take<float>(n);
    s.gain = a.take<float>(n);
    s.picked = a.take<bool>(n);
    s.coefficients = a.take<float>(k * n);
    s.picks = a.take<index_t>(k);
    s.kept = a.take<std::int64_t>(k);
    return s;
  }
};

/// One DPP over `rows` (n, dim), keeping k, into s.picks[0, k) (group-local, pick order).
template <class Arch, class E>
void dpp_greedy(const cdpruner& p, const view<const E, 2>& rows,  // (n, dim)
                const view<const float, 1>& scores,                // (n,) relevance, or empty
                const view<const E, 2>& query,                     // (queries, dim), or empty
                index_t k, const dpp_scratch& s, index_t* picks) noexcept {
  const row_set<Arch, E> set{rows};
  const index_t n = rows.extent(0), dim = rows.extent(1);
  if (k == 0) return;  // the first half of a split group of one token
  for (index_t i = 0; i < n; ++i)
    s.scale[i] = 1.0f / std::sqrt(set.template pair<pair_op::dot>(i, i) + dpp_epsilon);

  // Relevance m, then r by the kernel's min-max rule.
  float* r = s.relevance;
  for (index_t i = 0; i < n; ++i) r[i] = requested(scores) ? scores(i) : 0.0f;
  if (!requested(scores) && requested(query)) {
    const index_t queries = query.extent(0);
    for (index_t q = 0; q < queries; ++q) {
      const float qq = combine<Arch, pair_op::dot>(&query(q, 0), query.stride(1), &query(q, 0),
                                                   query.stride(1), dim);
      const float q_scale = 1.0f / std::sqrt(qq + dpp_epsilon);
      for (index_t i = 0; i < n; ++i)
        r[i] += combine<Arch, pair_op::dot>(&rows(i, 0), rows.stride(1), &query(q, 0),
                                            query.stride(1), dim) * (s.scale[i] * q_scale);
    }
    for (index_t i = 0; i < n; ++i) r[i] /= static_cast<float>(queries);
  }
  if (p.kernel == dpp_kernel::original)
    for (index_t i = 0; i < n; ++i) r[i] = -r[i];
  const auto [lo, hi] = std::minmax_element(r, r + n);
  const float low = *lo, range = *hi - *lo;
  for (index_t i = 0; i < n; ++i) {
    if (p.kernel == dpp_kernel::openvino) r[i] = (r[i] - low) / (range + dpp_epsilon);
    else r[i] = range > 0.0f ? (r[i] - low + dpp_epsilon) / range : 1.0f;
  }

  const float w = p.relevance_weight;
  const auto kernel = [&](index_t i, index_t j, float dot) {
    const float sim = dot * (s.scale[i] * s.scale[j]);
    const float coupled = r[i] * sim * r[j];
    return p.kernel == dpp_kernel::openvino ? sim * (1.0f - w) + coupled * w : coupled;
  };
  for (index_t i = 0; i < n; ++i) {
    s.gain[i] = kernel(i, i, set.template pair<pair_op::dot>(i, i));
    s.picked[i] = false;
  }

  for (index_t t = 0; t < k; ++t) {
    index_t j = -1;
    for (index_t i = 0; i < n; ++i)
      if (!s.picked[i] && (j < 0 || rank_key(s.gain[i], i) > rank_key(s.gain[j], j))) j = i;
    picks[t] = j;
    s.picked[j] = true;
    const float pivot = 1.0f / std::sqrt(s.gain[j] + dpp_epsilon);
    float* e = s.coefficients + t * n;
    set.template sweep<pair_op::dot>(j, 0, n, [&](index_t i, float dot) { e[i] = kernel(j, i, dot); });
    for (index_t q = 0; q < t; ++q) {
      const float* row = s.coefficients + q * n;
      const float c = row[j];
      if (std::fabs(c) < dpp_epsilon) continue;
      for (index_t i = 0; i < n; ++i) e[i] -= c * row[i];
    }
    for (index_t i = 0; i < n; ++i) {
      e[i] *= pivot;
      const float left = s.gain[i] - e[i] * e[i];
      s.gain[i] = std::isnan(left) ? -FLT_MAX : left;
    }
  }
}

/// cdpruner's selection of one group: one DPP, or one per half with `split`.
template <class Arch>
struct diversity_selector<Arch, cdpruner> {
  using scratch = dpp_scratch;

  static scratch carve(arena& a, const cdpruner&, index_t n, index_t k) { return dpp_scratch::carve(a, n, k); }

  template <class E>
  static void select(const cdpruner& p, const diversity_group<E>& g, index_t k, const scratch& s) noexcept {
    const index_t n = g.rows.extent(0);
    const auto half_scores = [&](index_t first, index_t count) {
      return requested(g.scores)
                 ? view<const float, 1>(&g.scores(first), {count}, {g.scores.stride(0)})
                 : view<const float, 1>{};
    };
    if (!p.split) {
      dpp_greedy<Arch>(p, g.rows, g.scores, g.query, k, s, s.picks);
    } else {
      const index_t middle = n / 2, k1 = k / 2;
      dpp_greedy<Arch>(p, row_range(g.rows, 0, middle), half_scores(0, middle), g.query, k1, s, s.picks);
      dpp_greedy<Arch>(p, row_range(g.rows, middle, n - middle), half_scores(middle, n - middle),
                       g.query, k - k1, s, s.picks + k1);
      for (index_t t = k1; t < k; ++t) s.picks[t] += middle;
    }
    for (index_t t = 0; t < k; ++t) s.kept[t] = s.picks[t];
    std::sort(s.kept, s.kept + k);
  }
};

}  // namespace detail

template <class Arch>
struct backend<cdpruner, cpu<Arch>> : detail::cpu_diversity<Arch, cdpruner> {};

}  // namespace tokred
