// tests/reference/framefusion_ref.hpp — the scalar oracle of framefusion.
//
// Written from FrameFusion's description, for clarity, in the original's own terms: the visual
// rows listed slot by slot (each slot's rows in row order), the cosine of each with the one
// before it in that list in double, the merge set by threshold or by a sorted top-k, maximal runs
// of merged rows collapsing into the row before the run, and each run's mean in double. The
// similarities are an input of the decisions, so a test can certify the backend's fp32 values
// against `framefusion_cosines` and then take the decisions from the backend's own values.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/framefusion.hpp>

namespace tokred::ref {

/// The rows in slot order: slot 0's rows in row order, then slot 1's, … (`src[r]` = row r's
/// original token; slot = src mod H·W).
inline std::vector<std::int64_t> rows_by_slot(const token_grid& grid, const std::vector<std::int64_t>& src) {
  std::vector<std::int64_t> order;
  const std::int64_t hw = grid.height * grid.width;
  for (std::int64_t slot = 0; slot < hw; ++slot)
    for (std::size_t r = 0; r < src.size(); ++r)
      if (src[r] % hw == slot) order.push_back(static_cast<std::int64_t>(r));
  return order;
}

/// Each row's cosine with the row before it in its slot, in double, without an epsilon (NaN for
/// a zero row); −2 for a slot's first row. Indexed by row.
template <class E>
std::vector<double> framefusion_cosines(const token_grid& grid, const std::vector<std::int64_t>& src,
                                        const view<const E, 2>& m) {
  const std::int64_t hw = grid.height * grid.width;
  const std::vector<std::int64_t> order = rows_by_slot(grid, src);
  std::vector<double> sim(src.size(), -2.0);
  for (std::size_t k = 1; k < order.size(); ++k) {
    const std::int64_t a = order[k - 1], b = order[k];
    if (src[static_cast<std::size_t>(a)] % hw != src[static_cast<std::size_t>(b)] % hw) continue;
    double dot = 0, na = 0, nb = 0;
    for (index_t c = 0; c < m.extent(1); ++c) {
      const double x = to_float(m(a, c)), y = to_float(m(b, c));
      dot += x * y, na += x * x, nb += y * y;
    }
    sim[static_cast<std::size_t>(b)] = dot / (std::sqrt(na) * std::sqrt(nb));
  }
  return sim;
}

/// What framefusion decides and writes; rows in double.
struct framefusion_result {
  std::vector<bool> merged;             // (rows,)
  double ratio = 0;
  framefusion_phase phase = framefusion_phase::merging;
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<double> sizes;            // (kept,)
  std::vector<double> tokens;           // (kept, dim)
  std::vector<std::int64_t> assign;     // (rows,)
};

/// framefusion with bound `u` on given similarities (indexed by row; a slot's first row must hold
/// −2 or less). `sizes` empty: 1 each.
template <class E>
framefusion_result framefusion_run(const framefusion& p, double u, const token_grid& grid,
                                   const std::vector<std::int64_t>& src, const std::vector<float>& sim,
                                   const std::vector<float>& sizes, const view<const E, 2>& tokens) {
  const std::size_t rows = src.size();
  const auto size_of = [&](std::size_t r) { return sizes.empty() ? 1.0 : static_cast<double>(sizes[r]); };
  framefusion_result out;
  out.merged.assign(rows, false);
  std::size_t above = 0;
  for (float s : sim) above += s >= p.threshold;
  out.ratio = static_cast<double>(above) / static_cast<double>(rows);
  if (out.ratio < u) {
    out.phase = out.ratio < p.ratio_lower_bound ? framefusion_phase::pruning : framefusion_phase::merging;
    for (std::size_t r = 0; r < rows; ++r) out.merged[r] = sim[r] >= p.threshold;
  } else {
    out.phase = framefusion_phase::finished;
    std::vector<std::size_t> order(rows);
    for (std::size_t r = 0; r < rows; ++r) order[r] = r;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      if (std::isnan(sim[a]) || std::isnan(sim[b])) return !std::isnan(sim[a]) && std::isnan(sim[b]);
      return sim[a] > sim[b];
    });
    const auto k = static_cast<std::size_t>(std::floor(u * static_cast<double>(rows)));
    for (std::size_t j = 0; j < k; ++j) out.merged[order[j]] = true;
  }
  // Runs in slot order: a merged row belongs to the run head before it.
  std::vector<std::int64_t> head(rows);
  const std::vector<std::int64_t> order = rows_by_slot(grid, src);
  for (std::size_t k = 0; k < order.size(); ++k) {
    const auto r = static_cast<std::size_t>(order[k]);
    head[r] = out.merged[r] ? head[static_cast<std::size_t>(order[k - 1])] : static_cast<std::int64_t>(r);
  }
  out.assign.assign(rows, -1);
  const std::int64_t dim = tokens.extent(1);
  for (std::size_t h = 0; h < rows; ++h) {
    if (head[h] != static_cast<std::int64_t>(h)) continue;
    const std::int64_t q = static_cast<std::int64_t>(out.source.size());
    out.source.push_back(src[h]);
    const token_position at = grid.position(src[h]);
    out.positions.insert(out.positions.end(), {at.t, at.h, at.w});
    double size = 0, weight = 0;
    std::vector<double> sum(static_cast<std::size_t>(dim), 0.0);
    for (std::size_t r = 0; r < rows; ++r) {
      if (head[r] != static_cast<std::int64_t>(h)) continue;
      out.assign[r] = q;
      size += size_of(r);
      const double w = p.weights == merge_weights::by_size ? size_of(r) : 1.0;
      weight += w;
      for (std::int64_t c = 0; c < dim; ++c) sum[static_cast<std::size_t>(c)] += w * to_float(tokens(static_cast<index_t>(r), c));
    }
    out.sizes.push_back(size);
    for (double s : sum) out.tokens.push_back(s / weight);
  }
  return out;
}

}  // namespace tokred::ref
