// tests/reference/aim_ref.hpp — the scalar oracle of aim, written from AIM's description for
// clarity: per frame, the ToMe steps applied literally in double — cosines of the current rows,
// each A token's first best B token, a stable ranking, r_s = n >> s of the original n clamped to
// half the current count, outputs [unmerged A in rank order, every B], each B row the mean of
// itself and its merged A tokens (plain, or weighted by the originals each stands for).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>

namespace tokred::ref {

struct aim_result {
  std::vector<std::int64_t> source;     // (kept,) original index of each output's representative
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<double> sizes;            // (kept,) originals each output stands for
  std::vector<double> tokens;           // (kept, dim)
  std::vector<std::int64_t> assign;     // (tokens,) output row of every input token
};

template <class E>
aim_result aim_all(const token_grid& grid, const view<const E, 2>& tokens, index_t steps, bool size_weighted) {
  const index_t n = grid.frame_tokens(), dim = tokens.extent(1);
  aim_result out;
  out.assign.assign(static_cast<std::size_t>(grid.tokens()), -1);
  for (index_t f = 0; f < grid.frames; ++f) {
    std::vector<std::vector<double>> rows;  // the frame's current tokens
    std::vector<std::int64_t> source;       // their representatives
    std::vector<double> sizes;              // the originals each stands for
    std::vector<std::int64_t> slot;         // each original's current token
    for (index_t i = 0; i < n; ++i) {
      std::vector<double> row;
      for (index_t c = 0; c < dim; ++c) row.push_back(to_float(tokens(f * n + i, c)));
      rows.push_back(row);
      source.push_back(f * n + i);
      sizes.push_back(1.0);
      slot.push_back(i);
    }
    for (index_t s = 1; s <= steps; ++s) {
      const index_t m = static_cast<index_t>(rows.size());
      const index_t r = std::min(n >> s, m / 2);
      if (r <= 0) continue;
      const index_t a = (m + 1) / 2, b = m / 2;
      std::vector<double> best(static_cast<std::size_t>(a));
      std::vector<index_t> partner(static_cast<std::size_t>(a));
      const auto norm = [&](index_t i) {
        double q = 0;
        for (double v : rows[static_cast<std::size_t>(i)]) q += v * v;
        return std::sqrt(q);
      };
      for (index_t k = 0; k < a; ++k) {
        best[static_cast<std::size_t>(k)] = -2;
        for (index_t j = 0; j < b; ++j) {
          double dot = 0;
          for (index_t c = 0; c < dim; ++c)
            dot += rows[static_cast<std::size_t>(2 * k)][static_cast<std::size_t>(c)] *
                   rows[static_cast<std::size_t>(2 * j + 1)][static_cast<std::size_t>(c)];
          const double na = norm(2 * k), nb = norm(2 * j + 1);
          const double cosine = na == 0 || nb == 0 ? 0.0 : dot / (na * nb);
          if (cosine > best[static_cast<std::size_t>(k)]) best[static_cast<std::size_t>(k)] = cosine, partner[static_cast<std::size_t>(k)] = j;
        }
      }
      std::vector<index_t> order(static_cast<std::size_t>(a));
      for (index_t k = 0; k < a; ++k) order[static_cast<std::size_t>(k)] = k;
      std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) {
        return best[static_cast<std::size_t>(x)] > best[static_cast<std::size_t>(y)];
      });
      // The new tokens: unmerged A in rank order, then every B with its merged A tokens.
      std::vector<std::int64_t> step_slot(static_cast<std::size_t>(m));
      std::vector<std::vector<double>> next_rows;
      std::vector<std::int64_t> next_source;
      std::vector<double> next_sizes;
      for (index_t q = r; q < a; ++q) {
        const index_t i = 2 * order[static_cast<std::size_t>(q)];
        step_slot[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(next_rows.size());
        next_rows.push_back(rows[static_cast<std::size_t>(i)]);
        next_source.push_back(source[static_cast<std::size_t>(i)]);
        next_sizes.push_back(sizes[static_cast<std::size_t>(i)]);
      }
      for (index_t j = 0; j < b; ++j) {
        std::vector<index_t> group{2 * j + 1};
        for (index_t q = 0; q < r; ++q)
          if (partner[static_cast<std::size_t>(order[static_cast<std::size_t>(q)])] == j) group.push_back(2 * order[static_cast<std::size_t>(q)]);
        std::vector<double> sum(static_cast<std::size_t>(dim), 0.0);
        double weight = 0, originals = 0;
        for (index_t i : group) {
          const double w = size_weighted ? sizes[static_cast<std::size_t>(i)] : 1.0;
          for (index_t c = 0; c < dim; ++c) sum[static_cast<std::size_t>(c)] += w * rows[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)];
          weight += w;
          originals += sizes[static_cast<std::size_t>(i)];
          step_slot[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(next_rows.size());
        }
        for (double& v : sum) v /= weight;
        next_rows.push_back(sum);
        next_source.push_back(source[static_cast<std::size_t>(2 * j + 1)]);
        next_sizes.push_back(originals);
      }
      for (std::int64_t& t : slot) t = step_slot[static_cast<std::size_t>(t)];
      rows = next_rows;
      source = next_source;
      sizes = next_sizes;
    }
    const std::int64_t base = static_cast<std::int64_t>(out.source.size());
    for (std::size_t q = 0; q < rows.size(); ++q) {
      out.source.push_back(source[q]);
      const token_position at = grid.position(source[q]);
      out.positions.insert(out.positions.end(), {static_cast<std::int32_t>(at.t), static_cast<std::int32_t>(at.h),
                                                 static_cast<std::int32_t>(at.w)});
      out.sizes.push_back(sizes[q]);
      out.tokens.insert(out.tokens.end(), rows[q].begin(), rows[q].end());
    }
    for (index_t i = 0; i < n; ++i) out.assign[static_cast<std::size_t>(f * n + i)] = base + slot[static_cast<std::size_t>(i)];
  }
  return out;
}

}  // namespace tokred::ref
