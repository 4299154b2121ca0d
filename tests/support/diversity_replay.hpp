// tests/support/diversity_replay.hpp — the CUDA backend of divprune, kcenter and
// importance_diversity (cuda/tokred/cuda/diversity.cuh), replayed on the host step for step with
// the same arithmetic: a warp's sums (32 lane chains of fused multiply-adds, then the xor
// butterfly of cuda/tokred/cuda/warp_sums.cuh) and <tokred/policy/diversity_steps.hpp>. The CPU
// tests certify the replay's picks against the double-precision oracle; the GPU test requires the
// GPU's picks to be the replay's, exactly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <tokred/tokred.hpp>

namespace tokred::testing {

/// warp_sum: the xor butterfly over offsets 16, 8, 4, 2, 1; every lane ends with lane 0's value.
inline float replay_warp_sum(const float (&lanes)[32]) {
  float v[32];
  for (int l = 0; l < 32; ++l) v[l] = lanes[l];
  for (int offset = 16; offset > 0; offset /= 2) {
    float next[32];
    for (int l = 0; l < 32; ++l) next[l] = detail::add_rn(v[l], v[l ^ offset]);
    for (int l = 0; l < 32; ++l) v[l] = next[l];
  }
  return v[0];
}

/// warp_dot (`squared` false) or warp_squared_distance of row i of `x` and row j of `y`.
template <class A, class B>
float replay_warp_pair(const view<const A, 2>& x, index_t i, const view<const B, 2>& y, index_t j, bool squared) {
  float lanes[32] = {};
  for (index_t c = 0; c < x.extent(1); ++c) {
    const float a = to_float(x(i, c)), b = to_float(y(j, c));
    float& acc = lanes[c % 32];
    if (squared) {
      const float d = detail::sub_rn(a, b);
      acc = detail::fma_rn(d, d, acc);
    } else {
      acc = detail::fma_rn(a, b, acc);
    }
  }
  return replay_warp_sum(lanes);
}

/// The same for rows i and j of one matrix.
template <class E>
float replay_warp_pair(const view<const E, 2>& rows, index_t i, index_t j, bool squared) {
  return replay_warp_pair(rows, i, rows, j, squared);
}

/// The CUDA backend's picks of every group, in pick order, as token indices.
template <class P, class E>
std::vector<std::int64_t> replay_maxmin(const P& p, const diversity_inputs<E>& in) {
  constexpr detail::distance_kind kind =
      std::is_same_v<P, kcenter> ? detail::distance_kind::squared_euclidean : detail::distance_kind::cosine;
  const view<const E, 2> rows = detail::compared_rows(in);
  const detail::selection_groups groups = detail::groups_of(p.within, in.grid);
  const index_t n = groups.group_tokens, k = detail::diversity_count(p, in.grid).count / groups.groups;
  bool repeats = false;
  if constexpr (std::is_same_v<P, divprune>) repeats = p.allow_repeats;
  std::vector<std::int64_t> picks;
  for (index_t g = 0; g < groups.groups; ++g) {
    const view<const E, 2> group = detail::row_range(rows, g * n, n);
    std::vector<float> scale(static_cast<std::size_t>(n));
    for (index_t t = 0; t < n; ++t)
      scale[static_cast<std::size_t>(t)] = detail::maxmin_scale<kind>(replay_warp_pair(group, t, t, false));
    const auto valid = [&](index_t t) { return scale[static_cast<std::size_t>(t)] == scale[static_cast<std::size_t>(t)]; };
    const auto distance = [&](index_t i, index_t j) {
      const float raw = replay_warp_pair(group, i, j, kind == detail::distance_kind::squared_euclidean);
      return detail::maxmin_distance<kind>(raw, scale[static_cast<std::size_t>(i)], scale[static_cast<std::size_t>(j)]);
    };
    std::uint64_t first = 0;
    if constexpr (std::is_same_v<P, divprune>) {
      // The bounds from the grid neighbours, then the columns whose bound beats the best so far,
      // each until it is beaten: the exact argmax, whatever order the GPU's blocks take them in.
      const detail::first_pick_neighbours grid_near(in.grid, n);
      const index_t near = grid_near.row, frame = grid_near.frame;
      std::vector<std::uint64_t> bound(static_cast<std::size_t>(n));
      for (index_t j = 0; j < n; ++j) {
        detail::two_smallest column{distance(j, j), detail::positive_infinity()};
        for (const index_t o : {index_t{1}, index_t{-1}, near, -near, frame, -frame})
          if (o != 0 && j + o >= 0 && j + o < n) column.add(distance(j, j + o));
        bound[static_cast<std::size_t>(j)] = detail::rank_key(valid(j) ? column.second : detail::quiet_nan(), j);
      }
      std::vector<std::uint64_t> order = bound;
      std::sort(order.begin(), order.end(), [](std::uint64_t a, std::uint64_t b) { return a > b; });
      for (const std::uint64_t candidate : order) {
        if (candidate <= first) break;
        const index_t j = detail::rank_key_index(candidate);
        detail::two_smallest column{detail::positive_infinity(), detail::positive_infinity()};
        bool beaten = false;
        for (index_t i = 0; i < n && !beaten; ++i) {
          column.add(distance(j, i));
          beaten = valid(j) && first != 0 && detail::rank_key(column.second, j) < first;
        }
        if (!beaten) first = std::max(first, detail::rank_key(valid(j) ? column.second : detail::quiet_nan(), j));
      }
    } else if constexpr (std::is_same_v<P, kcenter>) {
      first = detail::rank_key(0.0f, p.first);
    } else {
      for (index_t t = 0; t < n; ++t) first = std::max(first, detail::rank_key(in.scores(g * n + t), t));
    }
    std::vector<index_t> local{detail::rank_key_index(first)};
    std::vector<float> nearest(static_cast<std::size_t>(n), detail::positive_infinity());
    std::vector<bool> picked(static_cast<std::size_t>(n), false);
    for (index_t t = 1; t < k; ++t) {
      const index_t q = local.back();
      std::uint64_t best = 0;
      for (index_t j = 0; j < n; ++j) {
        const float d = distance(q, j);
        float& near = nearest[static_cast<std::size_t>(j)];
        near = d < near ? d : near;
        const bool was_picked = picked[static_cast<std::size_t>(j)] || j == q;
        if (j == q) picked[static_cast<std::size_t>(j)] = true;
        if (was_picked && !repeats) continue;
        float score = detail::quiet_nan();
        if (valid(j))
          score = std::is_same_v<P, importance_diversity> ? detail::weighted_distance(in.scores(g * n + j), near) : near;
        best = std::max(best, detail::rank_key(score, j));
      }
      local.push_back(detail::rank_key_index(best));
    }
    for (const index_t t : local) picks.push_back(g * n + t);
  }
  return picks;
}

}  // namespace tokred::testing
