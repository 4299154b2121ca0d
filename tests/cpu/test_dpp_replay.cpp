// tests/cpu/test_dpp_replay.cpp — the CUDA backend of cdpruner, replayed on the host
// (tests/support/dpp_replay.hpp), against the greedy MAP by definition: every pick is a best gain
// of its step up to fp32 rounding and OpenVINO's epsilons, as the CPU backend's are
// (tests/cpu/test_dpp.cpp), over the shared case table, fp32/bf16/fp16, both kernels, relevance
// from query rows, scores or none, split or not, both scopes. The GPU test then requires the GPU's
// picks to be the replay's.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/dpp_ref.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/dpp_replay.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;
using ref::relevance_from;

/// As in test_dpp.cpp: rounding, plus OpenVINO's 1e-6 pivot shift and skipped coefficients.
constexpr double gain_slack = 1e-4;

template <class E>
void certify(const cdpruner& p, const shape_case& c, relevance_from from) {
  const index_t n = c.grid.tokens();
  const token_matrix<E> rows = continuous_rows<E>(n, c.dim, c.rows, 5 + static_cast<std::uint64_t>(n));
  const token_matrix<E> query = continuous_rows<E>(2, c.dim, layout::contiguous, 77);
  const std::vector<float> scores = importance(n, 31);
  diversity_inputs<E> in{c.grid, rows.rows, {}, {}, {}};
  if (from == relevance_from::query) in.query = query.rows;
  if (from == relevance_from::scores) in.scores = make_view(scores.data(), n);
  const std::vector<std::int64_t> picks = replay_dpp(p, in);
  REQUIRE(static_cast<index_t>(picks.size()) == retained_count(p, problem{c.grid, c.dim}));
  CHECK(ref::dpp_worst_group_shortfall(p, c.grid, view<const E, 2>(rows.rows), scores, view<const E, 2>(query.rows),
                                       from, picks) <= gain_slack);
  const index_t k = static_cast<index_t>(picks.size()) / detail::groups_of(p.within, c.grid).groups;
  for (index_t at = 0; at < static_cast<index_t>(picks.size()); at += k) {
    std::vector<std::int64_t> group(picks.begin() + at, picks.begin() + at + k);
    std::sort(group.begin(), group.end());
    CHECK(std::adjacent_find(group.begin(), group.end()) == group.end());
  }
}

template <class E>
void certify_variants(const shape_case& c) {
  for_each_dpp_layout(c, [&](cdpruner p) {
    INFO(c.name << (p.within == scope::global ? " global" : " per-frame") << (p.split ? " split" : ""));
    certify<E>(p, c, relevance_from::query);
    certify<E>(p, c, relevance_from::scores);
    certify<E>(p, c, relevance_from::none);
    p.relevance_weight = 1.0f;
    certify<E>(p, c, relevance_from::query);
    p.kernel = dpp_kernel::original;
    certify<E>(p, c, relevance_from::scores);
  });
}

}  // namespace

TEST_CASE("cdpruner's CUDA algorithm, replayed on the host, picks as the greedy MAP does", "[dpp][cuda-replay]") {
  for (const shape_case& c : shape_cases()) {
    certify_variants<float>(c);
    certify_variants<bf16>(c);
    certify_variants<f16>(c);
  }
}
