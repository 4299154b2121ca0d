// tests/cpu/test_diversity_replay.cpp — the CUDA backend of divprune, kcenter and
// importance_diversity, replayed on the host (tests/support/diversity_replay.hpp), against the
// double-precision oracle: every pick is a best candidate of its step up to fp32 rounding, as
// the CPU backend's are (tests/cpu/test_diversity.cpp), over the shared case table, fp32/bf16/
// fp16, both scopes, with repeats allowed or not; and the documented results for duplicates,
// zero rows and NaN rows. The GPU test then requires the GPU's picks to be the replay's.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/diversity_ref.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/diversity_replay.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// As in test_diversity.cpp: rounding of a distance between rows of at most 64 values.
constexpr double rounding_slack = 1e-5;

template <class P, class E>
void certify(const P& p, const shape_case& c) {
  const index_t n = c.grid.tokens();
  const token_matrix<E> rows = continuous_rows<E>(n, c.dim, c.rows, 3 + static_cast<std::uint64_t>(n));
  const std::vector<float> w = importance(n, 17);
  const diversity_inputs<E> in{c.grid, rows.rows, {}, make_view(w.data(), n), {}};
  const std::vector<std::int64_t> picks = replay_maxmin(p, in);
  REQUIRE(static_cast<index_t>(picks.size()) == retained_count(p, problem{c.grid, c.dim}));
  CHECK(ref::worst_group_shortfall(p, c.grid, view<const E, 2>(rows.rows), w, picks) <= rounding_slack);
  bool repeats = false;
  if constexpr (std::is_same_v<P, divprune>) repeats = p.allow_repeats;
  const index_t k = static_cast<index_t>(picks.size()) / detail::groups_of(p.within, c.grid).groups;
  for (index_t at = 0; at < static_cast<index_t>(picks.size()) && !repeats; at += k) {
    std::vector<std::int64_t> group(picks.begin() + at, picks.begin() + at + k);
    std::sort(group.begin(), group.end());
    CHECK(std::adjacent_find(group.begin(), group.end()) == group.end());
  }
}

template <class E>
void certify_all(const shape_case& c, const std::vector<double>& ratios) {
  for (const double ratio : ratios)
    for (const scope within : {scope::global, scope::per_frame}) {
      // Keeping all tokens: global scope and small groups only (the replay emulates every lane).
      if (ratio == 1.0 && (within == scope::per_frame || c.grid.tokens() > 200)) continue;
      INFO(c.name << " ratio " << ratio << (within == scope::global ? " global" : " per-frame"));
      const divprune dp = ratio_policy<divprune>(ratio, within);
      if (can_implement(dp, problem{c.grid, c.dim}) != status::ok) continue;
      certify<divprune, E>(dp, c);
      divprune repeats = dp;
      repeats.allow_repeats = true;
      if (ratio == 0.25) certify<divprune, E>(repeats, c);
      kcenter kc = ratio_policy<kcenter>(ratio, within);
      kc.first = detail::groups_of(within, c.grid).group_tokens / 2;
      certify<kcenter, E>(kc, c);
      certify<importance_diversity, E>(ratio_policy<importance_diversity>(ratio, within), c);
    }
}

}  // namespace

TEST_CASE("diversity's CUDA algorithm, replayed on the host, picks as the oracle does", "[diversity][cuda-replay]") {
  // The 16-bit types read through the same replay as fp32 (exact widening): the small cases suffice.
  for (const shape_case& c : shape_cases()) {
    certify_all<float>(c, {0.25, 1.0});
    if (c.grid.tokens() > 300) continue;
    certify_all<bf16>(c, {0.25});
    certify_all<f16>(c, {0.25});
  }
}

TEST_CASE("diversity replay: duplicates, zero rows and NaN rows", "[diversity][cuda-replay]") {
  const index_t n = 30, dim = 10;
  token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 5);
  for (index_t c = 0; c < dim; ++c) {
    rows.rows(4, c) = rows.rows(9, c);  // duplicates: distance 0
    rows.rows(12, c) = 0.0f;            // a zero row: at distance 1 from every row
  }
  rows.rows(20, 2) = std::numeric_limits<float>::quiet_NaN();  // ranks last
  const diversity_inputs<float> in{sequence_grid(n), rows.rows, {}, {}, {}};
  divprune p{keep_budget::count(n)};
  const std::vector<std::int64_t> all = replay_maxmin(p, in);
  CHECK(all.back() == 20);  // the NaN row comes last
  std::vector<std::int64_t> sorted = all;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  p.allow_repeats = true;
  const std::vector<std::int64_t> repeated = replay_maxmin(p, in);
  CHECK(std::count(repeated.begin(), repeated.end(), 20) == 0);  // a NaN row is never picked with repeats
}
