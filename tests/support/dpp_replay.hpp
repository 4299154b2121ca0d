// tests/support/dpp_replay.hpp — the CUDA backend of cdpruner (cuda/tokred/cuda/dpp.cuh), replayed
// on the host step for step with the same arithmetic: a warp's dot products
// (tests/support/diversity_replay.hpp) and <tokred/policy/diversity_steps.hpp>'s DPP steps. The
// CPU tests certify the replay's picks against the greedy MAP by definition; the GPU test requires
// the GPU's picks to be the replay's, exactly.
#pragma once

#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/diversity_replay.hpp"

namespace tokred::testing {

/// The CUDA backend's picks of every group, in pick order (with split: the first half's, then
/// the second's), as token indices.
template <class E>
std::vector<std::int64_t> replay_dpp(const cdpruner& p, const diversity_inputs<E>& in) {
  const view<const E, 2> rows = detail::compared_rows(in);
  const detail::selection_groups groups = detail::groups_of(p.within, in.grid);
  const index_t n = groups.group_tokens, k = detail::diversity_count(p, in.grid).count / groups.groups;
  const bool openvino = p.kernel == dpp_kernel::openvino;
  const bool scores = detail::reads_scores<cdpruner>(in), from_query = detail::reads_query<cdpruner>(in);
  std::vector<std::int64_t> picks;
  for (index_t g = 0; g < groups.groups; ++g)
    for (int part = 0; part < (p.split ? 2 : 1); ++part) {
      const index_t first = p.split && part == 1 ? n / 2 : 0;
      const index_t len = !p.split ? n : (part == 0 ? n / 2 : n - n / 2);
      const index_t kk = !p.split ? k : (part == 0 ? k / 2 : k - k / 2);
      if (kk == 0) continue;
      const index_t base = g * n + first;
      const auto at = [](std::vector<float>& v, index_t i) -> float& { return v[static_cast<std::size_t>(i)]; };
      std::vector<float> scale(static_cast<std::size_t>(len)), gain(static_cast<std::size_t>(len)),
          rel(static_cast<std::size_t>(len)), coefficients(static_cast<std::size_t>(len * kk));
      float low = detail::positive_infinity(), high = -detail::positive_infinity();
      for (index_t t = 0; t < len; ++t) {
        const float sq = replay_warp_pair(rows, base + t, base + t, false);
        at(gain, t) = sq;
        at(scale, t) = detail::dpp_scale(sq);
        float m = scores ? in.scores(base + t) : 0.0f;
        if (from_query) {
          for (index_t q = 0; q < in.query.extent(0); ++q) {
            const float qq = replay_warp_pair(in.query, q, q, false);
            const float dot = replay_warp_pair(rows, base + t, in.query, q, false);
            m = detail::add_rn(m, detail::mul_rn(dot, detail::mul_rn(at(scale, t), detail::dpp_scale(qq))));
          }
          m = detail::div_rn(m, static_cast<float>(in.query.extent(0)));
        }
        if (!openvino) m = -m;
        at(rel, t) = m;
        low = m < low ? m : low;
        high = m > high ? m : high;
      }
      const float range = detail::sub_rn(high, low);
      std::uint64_t best = 0;
      for (index_t t = 0; t < len; ++t) {
        at(rel, t) = detail::dpp_relevance(openvino, at(rel, t), low, range);
        at(gain, t) = detail::dpp_gain(detail::dpp_entry(openvino, p.relevance_weight, at(gain, t), at(scale, t),
                                                         at(scale, t), at(rel, t), at(rel, t)));
        best = std::max(best, detail::rank_key(at(gain, t), t));
      }
      std::vector<index_t> local{detail::rank_key_index(best)};
      std::vector<bool> picked(static_cast<std::size_t>(len), false);
      for (index_t t = 1; t < kk; ++t) {
        const index_t j = local.back();
        picked[static_cast<std::size_t>(j)] = true;
        const float pivot = detail::dpp_scale(at(gain, j));
        best = 0;
        for (index_t i = 0; i < len; ++i) {
          if (picked[static_cast<std::size_t>(i)]) continue;
          const float dot = replay_warp_pair(rows, base + j, base + i, false);
          float e = detail::dpp_entry(openvino, p.relevance_weight, dot, at(scale, j), at(scale, i), at(rel, j), at(rel, i));
          for (index_t c = 0; c < t - 1; ++c)
            e = detail::dpp_orthogonalise(e, at(coefficients, j * kk + c), at(coefficients, i * kk + c));
          e = detail::mul_rn(e, pivot);
          at(coefficients, i * kk + t - 1) = e;
          at(gain, i) = detail::dpp_gain(detail::sub_rn(at(gain, i), detail::mul_rn(e, e)));
          best = std::max(best, detail::rank_key(at(gain, i), i));
        }
        local.push_back(detail::rank_key_index(best));
      }
      for (const index_t t : local) picks.push_back(base + t);
    }
  return picks;
}

}  // namespace tokred::testing
