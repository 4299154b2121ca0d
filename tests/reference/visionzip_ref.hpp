// tests/reference/visionzip_ref.hpp — the scalar oracle of visionzip.
//
// Written from VisionZip's description, for clarity: a stable sort of the patch scores for the
// dominant set, the remaining list and its stride, the cosine of every remaining row with every
// target in double, and each contextual row in double. The decisions and the rows are separate
// steps, so that a test can certify the backend's fp32 assignment against the double one (within
// rounding) and then build the exact expected rows from the backend's own assignment, where a
// near-tie could make fp32 and double choose differently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/visionzip.hpp>

#include "reference/tome_ref.hpp"

namespace tokred::ref {

/// VisionZip's decisions: which rows stay, which are targets, which target every row joins.
struct visionzip_decisions {
  std::vector<std::int64_t> dominant;  // (dominant,) rows, ascending ([CLS] = row 0 first)
  std::vector<std::int64_t> remaining; // (|R|,) the other rows, ascending
  std::vector<std::int64_t> targets;   // (C,) target rows, ascending
  std::vector<std::int64_t> joins;     // (rows,) the target number each row of R joins, −1 otherwise
};

/// The dominant rows and the targets; `joins` left at −1.
inline visionzip_decisions visionzip_select(const visionzip& p, index_t n, const std::vector<float>& scores) {
  const std::int64_t cls = p.cls_token ? 1 : 0, rows = n + cls;
  // The patches in ranking order: score descending, NaN last, ties (−0 = +0) by index.
  std::vector<std::int64_t> order;
  for (std::int64_t j = 0; j < n; ++j) order.push_back(j);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) {
    const float sx = scores[static_cast<std::size_t>(x)], sy = scores[static_cast<std::size_t>(y)];
    if (std::isnan(sx) || std::isnan(sy)) return !std::isnan(sx) && std::isnan(sy);
    return sx > sy;
  });
  std::vector<bool> is_dominant(static_cast<std::size_t>(rows), false);
  if (cls) is_dominant[0] = true;
  for (std::int64_t k = 0; k < p.dominant - cls; ++k) is_dominant[static_cast<std::size_t>(order[static_cast<std::size_t>(k)] + cls)] = true;

  visionzip_decisions d;
  for (std::int64_t i = 0; i < rows; ++i) (is_dominant[static_cast<std::size_t>(i)] ? d.dominant : d.remaining).push_back(i);
  d.joins.assign(static_cast<std::size_t>(rows), -1);
  if (p.contextual > 0) {
    const std::int64_t size = static_cast<std::int64_t>(d.remaining.size());
    const std::int64_t step = std::max<std::int64_t>(1, size / p.contextual);
    for (std::int64_t at = 0; at < size && static_cast<std::int64_t>(d.targets.size()) < p.contextual; at += step)
      d.targets.push_back(d.remaining[static_cast<std::size_t>(at)]);
  }
  return d;
}

/// The cosines of row i with every target, in double (ref::cosine: 0 for a zero row, NaN for a
/// non-finite one).
template <class E>
std::vector<double> target_cosines(const view<const E, 2>& metric, const visionzip_decisions& d, std::int64_t i) {
  std::vector<double> c;
  for (std::int64_t t : d.targets) c.push_back(cosine(metric, i, t));
  return c;
}

/// The whole of visionzip's decisions in double: the first target of highest cosine, NaN skipped
/// (target 0 when none is a number); a target joins itself.
template <class E>
visionzip_decisions visionzip_decide(const visionzip& p, index_t n, const std::vector<float>& scores,
                                     const view<const E, 2>& metric) {
  visionzip_decisions d = visionzip_select(p, n, scores);
  for (std::int64_t i : d.remaining) {
    std::int64_t best = 0;
    const auto own = std::find(d.targets.begin(), d.targets.end(), i);
    if (own != d.targets.end()) {
      best = own - d.targets.begin();
    } else if (!d.targets.empty()) {
      const std::vector<double> c = target_cosines(metric, d, i);
      double top = -std::numeric_limits<double>::infinity();
      for (std::size_t q = 0; q < c.size(); ++q)
        if (!std::isnan(c[q]) && c[q] > top) top = c[q], best = static_cast<std::int64_t>(q);
    }
    if (!d.targets.empty()) d.joins[static_cast<std::size_t>(i)] = best;
  }
  return d;
}

/// What visionzip writes, the rows and sizes in double.
struct visionzip_result {
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<double> sizes;            // (kept,)
  std::vector<double> tokens;           // (kept, dim)
  std::vector<std::int64_t> assign;     // (rows,)
};

/// visionzip's outputs for given decisions.
template <class E>
visionzip_result visionzip_outputs(const visionzip& p, const token_grid& grid, const view<const E, 2>& tokens,
                                   const visionzip_decisions& d) {
  const std::int64_t cls = p.cls_token ? 1 : 0, dim = tokens.extent(1);
  const std::int64_t dominant = static_cast<std::int64_t>(d.dominant.size());
  visionzip_result out;
  out.assign.assign(d.joins.size(), -1);
  const auto position = [&](std::int64_t row) {
    if (row < cls) {
      for (int c = 0; c < 3; ++c) out.positions.push_back(-1);
      return;
    }
    const std::int64_t j = row - cls, hw = grid.height * grid.width;
    out.positions.push_back(static_cast<std::int32_t>(j / hw));
    out.positions.push_back(static_cast<std::int32_t>((j % hw) / grid.width));
    out.positions.push_back(static_cast<std::int32_t>(j % grid.width));
  };
  for (std::int64_t q = 0; q < dominant; ++q) {
    const std::int64_t row = d.dominant[static_cast<std::size_t>(q)];
    out.source.push_back(row);
    position(row);
    out.sizes.push_back(1.0);
    for (std::int64_t c = 0; c < dim; ++c) out.tokens.push_back(to_float(tokens(row, c)));
    out.assign[static_cast<std::size_t>(row)] = q;
  }
  for (std::size_t t = 0; t < d.targets.size(); ++t) {
    const std::int64_t target = d.targets[t], q = dominant + static_cast<std::int64_t>(t);
    out.source.push_back(target);
    position(target);
    std::vector<double> sum(static_cast<std::size_t>(dim), 0.0);
    double members = 0;
    for (std::size_t i = 0; i < d.joins.size(); ++i) {
      if (d.joins[i] != static_cast<std::int64_t>(t)) continue;
      out.assign[i] = q;
      if (static_cast<std::int64_t>(i) == target) continue;
      members += 1;
      for (std::int64_t c = 0; c < dim; ++c) sum[static_cast<std::size_t>(c)] += to_float(tokens(static_cast<index_t>(i), c));
    }
    out.sizes.push_back(1 + members);
    for (std::int64_t c = 0; c < dim; ++c) {
      const double x = to_float(tokens(target, c)), s = sum[static_cast<std::size_t>(c)];
      out.tokens.push_back(p.merge == contextual_merge::target_plus_mean ? x + s / std::max(members, 1.0)
                                                                          : (x + s) / (1 + members));
    }
  }
  return out;
}

}  // namespace tokred::ref
