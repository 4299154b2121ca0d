// tests/reference/hired_ref.hpp — the scalar oracle of hired, following the original's steps:
// split the budget, mark the full image's top early-attention tokens, count them per sub-crop,
// share the sub-crop budget in float32, then a sorted top-k per partition.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/policy/hired.hpp>

#include "reference/selection_ref.hpp"

namespace tokred::ref {

/// The indices (group-local) of the k best scores of `scores`, ascending.
inline std::vector<std::int64_t> top_indices(const std::vector<float>& scores, index_t k) {
  std::vector<std::int64_t> order(scores.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return ranks_before(scores[static_cast<std::size_t>(a)], a, scores[static_cast<std::size_t>(b)], b);
  });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

/// Every partition's budget, full image first.
inline std::vector<index_t> hired_partition_budgets(const hired& p, const token_grid& grid,
                                                    const std::vector<float>& early) {
  const index_t per = grid.frame_tokens(), parts = grid.frames;
  const auto total = static_cast<index_t>(static_cast<double>(parts * per) * p.budget);
  const index_t full = std::min(static_cast<index_t>(static_cast<double>(total) * p.alpha), per);
  const index_t sub_total = std::min(total - full, (parts - 1) * per);
  std::vector<index_t> budgets(static_cast<std::size_t>(parts), 0);
  budgets[0] = full;
  const auto marks = static_cast<index_t>(static_cast<double>(per) * (1.0 - p.alpha));
  if (sub_total == 0 || marks == 0) return budgets;

  std::vector<index_t> counts(static_cast<std::size_t>(parts - 1), 0);
  for (std::int64_t i : top_indices(early, marks)) {
    const index_t h = i / grid.width, w = i % grid.width;
    index_t crop = 0;
    if (p.map == partition_map::row_bands) {
      crop = i / (per / (parts - 1));
    } else {
      for (index_t r = 0; r < p.crop_rows; ++r)
        for (index_t c = 0; c < p.crop_cols; ++c)
          if (h * p.crop_rows / grid.height == r && w * p.crop_cols / grid.width == c) crop = r * p.crop_cols + c;
    }
    ++counts[static_cast<std::size_t>(crop)];
  }
  index_t sum = 0;
  for (index_t c : counts) sum += c;
  index_t used = 0;
  for (index_t c = 0; c < parts - 1; ++c) {
    const float share = static_cast<float>(counts[static_cast<std::size_t>(c)]) / static_cast<float>(sum) *
                        static_cast<float>(sub_total);
    const index_t b = std::min({static_cast<index_t>(share), per, sub_total - used});
    budgets[static_cast<std::size_t>(c + 1)] = b;
    used += b;
  }
  return budgets;
}

/// The kept indices of hired in output order.
inline std::vector<std::int64_t> hired_indices(const hired& p, const token_grid& grid,
                                               const std::vector<float>& scores,
                                               const std::vector<float>& early) {
  const std::vector<index_t> budgets = hired_partition_budgets(p, grid, early);
  const index_t per = grid.frame_tokens();
  std::vector<std::int64_t> kept;
  for (index_t part = 0; part < grid.frames; ++part) {
    const std::vector<float> own(scores.begin() + part * per, scores.begin() + (part + 1) * per);
    for (std::int64_t i : top_indices(own, budgets[static_cast<std::size_t>(part)])) kept.push_back(part * per + i);
  }
  return kept;
}

}  // namespace tokred::ref
