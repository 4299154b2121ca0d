// tests/reference/dymu_ref.hpp — the scalar oracle of dymu's count and of DToMe's threshold
// finding, written from DyMU's description for clarity: a count of the edges above θ with the
// clamps, and a full sort of a batch's edges. The merge itself is tome's (tests/reference/
// tome_ref.hpp), applied with the r counted here.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/view.hpp>

namespace tokred::ref {

/// How many A tokens merge: the unprotected ones (token 2k ≥ protect) whose best similarity is
/// strictly above θ (NaN is not), at most ⌊(N − protect) / 2⌋ (none when that is negative) and
/// at most max_r when max_r > 0.
template <class T>
index_t dymu_merged(const std::vector<T>& best, double theta, index_t n, index_t protect, index_t max_r) {
  index_t above = 0;
  for (std::size_t k = 0; k < best.size(); ++k)
    if (2 * static_cast<index_t>(k) >= protect && static_cast<double>(best[k]) > theta) ++above;
  if ((n > protect ? (n - protect) / 2 : 0) == 0) return 0;  // no pair: the original returns early
  return max_r > 0 ? std::min(above, max_r) : above;  // not clamped to (n − protect) / 2, as the original
}

/// DToMe's batch threshold: every image's A-token scores in one list, sorted descending with NaN
/// last; the entry after the first r·images (the first edge left unmerged), at least 0.
inline double batch_threshold(const std::vector<std::vector<float>>& best, index_t r) {
  std::vector<double> all;
  for (const auto& image : best)
    for (float s : image) all.push_back(s);
  std::sort(all.begin(), all.end(), [](double x, double y) {
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  const double at = all[static_cast<std::size_t>(r * static_cast<index_t>(best.size()))];
  return std::isnan(at) || at < 0 ? 0.0 : at;
}

}  // namespace tokred::ref
