// tests/reference/row_selection_ref.hpp — the scalar oracle of top_rows: sum each patch row,
// sort the rows by the documented ranking, keep the best, list their tokens in order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/policy/row_selection.hpp>

#include "reference/selection_ref.hpp"

namespace tokred::ref {

inline std::vector<std::int64_t> row_indices(const top_rows& p, const token_grid& grid,
                                             const std::vector<float>& scores) {
  std::vector<std::int64_t> kept;
  const index_t rows_kept = retained_count(p, problem{grid, 0}) / (grid.width * grid.frames);
  for (index_t t = 0; t < grid.frames; ++t) {
    std::vector<float> sums(static_cast<std::size_t>(grid.height), 0.0f);
    for (index_t h = 0; h < grid.height; ++h)
      for (index_t w = 0; w < grid.width; ++w)
        sums[static_cast<std::size_t>(h)] += scores[static_cast<std::size_t>((t * grid.height + h) * grid.width + w)];
    std::vector<std::int64_t> order(static_cast<std::size_t>(grid.height));
    for (index_t h = 0; h < grid.height; ++h) order[static_cast<std::size_t>(h)] = h;
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return ranks_before(sums[static_cast<std::size_t>(a)], a, sums[static_cast<std::size_t>(b)], b);
    });
    std::sort(order.begin(), order.begin() + rows_kept);
    for (index_t r = 0; r < rows_kept; ++r)
      for (index_t w = 0; w < grid.width; ++w)
        kept.push_back((t * grid.height + order[static_cast<std::size_t>(r)]) * grid.width + w);
  }
  return kept;
}

}  // namespace tokred::ref
