// tests/reference/prumerge_ref.hpp — the scalar oracle of prumerge_merge.
//
// Written from PruMerge's description, for clarity: every cosine in double, a full stable sort
// of the other tokens for each kept token's neighbours, and every row summed in double. The
// neighbours and the rows are separate steps, so that a test can certify the backend's fp32
// neighbours against the double cosines (within rounding) and then build the expected rows from
// the backend's own neighbours, where a near-tie could make fp32 and double choose differently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/prumerge.hpp>

#include "reference/tome_ref.hpp"

namespace tokred::ref {

/// The cosines of token i's key with every token's key, in double (ref::cosine: 0 for a zero
/// row, NaN for a non-finite one); entry i is unused.
template <class E>
std::vector<double> key_cosines(const view<const E, 2>& keys, index_t i) {
  std::vector<double> c(static_cast<std::size_t>(keys.extent(0)), 0.0);
  for (index_t j = 0; j < keys.extent(0); ++j)
    if (j != i) c[static_cast<std::size_t>(j)] = cosine(keys, i, j);
  return c;
}

/// The `m` tokens j ≠ i of highest cosine: cosine descending, then index ascending, NaN last.
template <class E>
std::vector<std::int64_t> nearest(const view<const E, 2>& keys, index_t i, index_t m) {
  const std::vector<double> c = key_cosines(keys, i);
  std::vector<std::int64_t> others;
  for (index_t j = 0; j < keys.extent(0); ++j)
    if (j != i) others.push_back(j);
  std::stable_sort(others.begin(), others.end(), [&](std::int64_t a, std::int64_t b) {
    const double x = c[static_cast<std::size_t>(a)], y = c[static_cast<std::size_t>(b)];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  others.resize(static_cast<std::size_t>(m));
  return others;
}

/// What prumerge_merge writes; the rows in double.
struct prumerge_result {
  std::vector<std::int64_t> source;      // (rows,)
  std::vector<std::int32_t> positions;   // (rows, 3)
  std::vector<std::int64_t> neighbours;  // (kept, m)
  std::vector<double> tokens;            // (rows, dim)
  std::vector<double> magnitude;         // (rows, dim) Σ |term| of each value, for error bounds
  std::vector<std::int64_t> terms;       // (rows,) the number of terms summed into each row
};

/// The rows for given neighbours (`near[q]` of kept token q): x_i + Σ a_j·x_j (or its normalised
/// form) per kept token, then the pruned tokens' Σ a_j·x_j. A zero divisor leaves a row undivided.
template <class E>
prumerge_result prumerge_outputs_for(const prumerge_merge& p, const token_grid& grid,
                                     const std::vector<std::int64_t>& kept, const view<const E, 2>& tokens,
                                     const std::vector<float>& scores,
                                     const std::vector<std::vector<std::int64_t>>& near) {
  const index_t dim = tokens.extent(1), n = tokens.extent(0);
  const bool normalized = p.weights == prumerge_weights::normalized;
  prumerge_result out;
  const auto position = [&](std::int64_t token) {
    const std::int64_t hw = grid.height * grid.width;
    const bool none = token < 0;
    out.positions.push_back(none ? -1 : static_cast<std::int32_t>(token / hw));
    out.positions.push_back(none ? -1 : static_cast<std::int32_t>((token % hw) / grid.width));
    out.positions.push_back(none ? -1 : static_cast<std::int32_t>(token % grid.width));
  };
  const auto add_row = [&](std::int64_t base, const std::vector<std::int64_t>& members) {
    double total = base >= 0 ? 1.0 : 0.0;
    for (std::int64_t j : members) total += scores[static_cast<std::size_t>(j)];
    const double divisor = normalized && total != 0 ? total : 1.0;
    for (index_t c = 0; c < dim; ++c) {
      double v = base >= 0 ? static_cast<double>(to_float(tokens(base, c))) : 0.0;
      double size = std::abs(v);
      for (std::int64_t j : members) {
        const double term = static_cast<double>(scores[static_cast<std::size_t>(j)]) * to_float(tokens(j, c));
        v += term;
        size += std::abs(term);
      }
      out.tokens.push_back(v / divisor);
      out.magnitude.push_back(size / std::abs(divisor));
    }
    out.terms.push_back(static_cast<std::int64_t>(members.size()) + 1);
  };
  for (std::size_t q = 0; q < kept.size(); ++q) {
    out.source.push_back(kept[q]);
    position(kept[q]);
    out.neighbours.insert(out.neighbours.end(), near[q].begin(), near[q].end());
    add_row(kept[q], near[q]);
  }
  if (p.extra_token) {
    std::vector<bool> is_kept(static_cast<std::size_t>(n), false);
    for (std::int64_t i : kept) is_kept[static_cast<std::size_t>(i)] = true;
    std::vector<std::int64_t> pruned;
    for (index_t j = 0; j < n; ++j)
      if (!is_kept[static_cast<std::size_t>(j)]) pruned.push_back(j);
    out.source.push_back(-1);
    position(-1);
    add_row(-1, pruned);
  }
  return out;
}

/// The whole of prumerge_merge in double.
template <class E>
prumerge_result prumerge(const prumerge_merge& p, const token_grid& grid, const std::vector<std::int64_t>& kept,
                         const view<const E, 2>& tokens, const std::vector<float>& scores, const view<const E, 2>& keys) {
  std::vector<std::vector<std::int64_t>> near;
  for (std::int64_t i : kept) near.push_back(nearest(keys, i, p.neighbours));
  return prumerge_outputs_for(p, grid, kept, tokens, scores, near);
}

}  // namespace tokred::ref
