// tests/reference/selection_ref.hpp — the scalar oracle of topk, uniform and random.
//
// Written for obviousness, not speed: a full sort with the documented ranking, per group. The
// SIMD CPU backend and the CUDA backend are compared with it on the shared case table.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/policy/selection.hpp>

namespace tokred::ref {

/// True when score a at index ia ranks before score b at index ib: higher score first, NaN
/// last, equal scores (including -0 == +0, NaN == NaN) by lower index.
inline bool ranks_before(float a, std::int64_t ia, float b, std::int64_t ib) {
  const bool na = std::isnan(a), nb = std::isnan(b);
  if (na != nb) return nb;
  if (!na && a != b) return a > b;
  return ia < ib;
}

/// Sorted kept indices of a budgeted selection; empty if the budget is invalid for the grid.
/// `scores` is read for topk only.
template <class Policy>
std::vector<std::int64_t> kept_indices(const Policy& p, const token_grid& grid,
                                       const std::vector<float>& scores) {
  const index_t total = retained_count(p, problem{grid, 0});
  std::vector<std::int64_t> kept;
  if (total == 0) return kept;
  const bool per_frame = p.within == scope::per_frame;
  const index_t groups = per_frame ? grid.frames : 1;
  const index_t n = per_frame ? grid.frame_tokens() : grid.tokens();
  const index_t k = total / groups;
  for (index_t g = 0; g < groups; ++g) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = g * n + i;
    if constexpr (std::is_same_v<Policy, uniform>) {
      for (index_t j = 0; j < k; ++j)
        kept.push_back(g * n + static_cast<std::int64_t>(std::floor((2.0 * j + 1.0) * n / (2.0 * k))));
      continue;
    } else if constexpr (std::is_same_v<Policy, random_subset>) {
      std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        const auto ka = detail::random_key(p.seed, a), kb = detail::random_key(p.seed, b);
        return ka != kb ? ka > kb : a < b;
      });
    } else {
      std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        return ranks_before(scores[static_cast<std::size_t>(a)], a,
                            scores[static_cast<std::size_t>(b)], b);
      });
    }
    std::sort(order.begin(), order.begin() + k);
    kept.insert(kept.end(), order.begin(), order.begin() + k);
  }
  return kept;
}

}  // namespace tokred::ref
