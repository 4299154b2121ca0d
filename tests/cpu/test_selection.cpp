// tests/cpu/test_selection.cpp — the CPU backend of topk, uniform, random and gather against the
// scalar oracle on the shared case table, for every element type, scope, ratio and thread split.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/gather_ref.hpp"
#include "reference/selection_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Runs `policy` as `nth` shares (one call each, in reverse order to show the shares are
/// independent) and checks the union against the oracle, exactly.
template <class Ein, class Eout, class Policy>
void check_against_oracle(const Policy& policy, const shape_case& c, int nth) {
  const index_t n = c.grid.tokens();
  const std::vector<float> scores = tie_heavy_scores(n, 11 + static_cast<std::uint64_t>(n));
  const token_matrix<Ein> tokens = make_tokens<Ein>(n, c.dim, c.rows, 5);
  const std::vector<std::int64_t> expected = ref::kept_indices(policy, c.grid, scores);
  const problem prob{c.grid, c.dim};
  const index_t kept = retained_count(policy, prob);
  REQUIRE(kept == static_cast<index_t>(expected.size()));
  REQUIRE(kept > 0);

  selection_buffers<Eout> got(kept, c.dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, policy, prob));
  const selection_inputs<Ein> in{c.grid, make_view(scores.data(), n), tokens.rows};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, policy, in, got.outputs(), ws.get()) == status::ok);

  REQUIRE(got.source == expected);
  CHECK(std::is_sorted(got.source.begin(), got.source.end()));
  CHECK(std::adjacent_find(got.source.begin(), got.source.end()) == got.source.end());
  CHECK(got.positions == ref::positions_of(expected, c.grid));
  CHECK(ref::gather_mismatches<Ein, Eout>(expected, tokens.rows, got.tokens) == 0);
}

template <class Policy>
Policy make_policy(double ratio, scope within) {
  Policy p{};
  p.keep = keep_budget::ratio(ratio, rounding::floor);
  p.within = within;
  if constexpr (std::is_same_v<Policy, random_subset>) p.seed = 20261121;
  return p;
}

template <class Ein, class Eout>
void check_all_policies(const shape_case& c) {
  for (scope within : {scope::global, scope::per_frame})
    for (double ratio : keep_ratios())
      for (int nth = 1; nth <= 4; ++nth) {
        CAPTURE(c.name, ratio, static_cast<int>(within), nth);
        if (retained_count(make_policy<topk>(ratio, within), problem{c.grid, c.dim}) == 0) continue;
        check_against_oracle<Ein, Eout>(make_policy<topk>(ratio, within), c, nth);
        check_against_oracle<Ein, Eout>(make_policy<uniform>(ratio, within), c, nth);
        check_against_oracle<Ein, Eout>(make_policy<random_subset>(ratio, within), c, nth);
      }
}

}  // namespace

TEMPLATE_TEST_CASE("selections match the scalar oracle on every case", "[selection]", float, f16, bf16) {
  for (const shape_case& c : shape_cases()) check_all_policies<TestType, TestType>(c);
}

TEMPLATE_TEST_CASE("selections convert rows to another element type exactly", "[selection]", float,
                   f16, bf16) {
  for (const shape_case& c : shape_cases()) {
    if (c.grid.tokens() < 4) continue;  // a quarter of fewer than 4 tokens rounds down to none
    check_against_oracle<TestType, float>(topk{keep_budget::ratio(0.5, rounding::floor)}, c, 1);
    check_against_oracle<float, TestType>(topk{keep_budget::ratio(0.5, rounding::floor)}, c, 3);
    check_against_oracle<TestType, bf16>(uniform{keep_budget::ratio(0.25, rounding::ceil)}, c, 2);
    check_against_oracle<TestType, f16>(random_subset{keep_budget::ratio(0.75, rounding::half_even), 7}, c, 1);
  }
}

TEST_CASE("topk ranks NaN last, ties by lower index, and -0 equal to +0", "[selection]") {
  const std::vector<float> scores = {1.0f, NAN, 2.0f, -0.0f, 2.0f, 0.0f, -INFINITY, NAN};
  const token_grid grid = sequence_grid(8);
  const auto kept_for = [&](index_t k) {
    std::vector<std::int64_t> src(static_cast<std::size_t>(k));
    selection_outputs<float> out{{}, make_view(src.data(), k), {}};
    const selection_inputs<float> in{grid, make_view(scores.data(), 8), {}};
    host_workspace ws(workspace_bytes(cpu{}, topk{keep_budget::count(k)}, problem{grid, 0}));
    REQUIRE(apply(cpu{}, topk{keep_budget::count(k)}, in, out, ws.get()) == status::ok);
    return src;
  };
  CHECK(kept_for(1) == std::vector<std::int64_t>{2});
  CHECK(kept_for(2) == std::vector<std::int64_t>{2, 4});
  CHECK(kept_for(4) == std::vector<std::int64_t>{0, 2, 3, 4});     // -0 (index 3) before +0 (5)
  CHECK(kept_for(5) == std::vector<std::int64_t>{0, 2, 3, 4, 5});
  CHECK(kept_for(6) == std::vector<std::int64_t>{0, 2, 3, 4, 5, 6});  // -inf before any NaN
  CHECK(kept_for(7) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6});
}

TEST_CASE("uniform picks the centre of each stretch", "[selection]") {
  const token_grid grid = sequence_grid(10);
  std::vector<std::int64_t> src(4);
  const selection_outputs<float> out{{}, make_view(src.data(), 4), {}};
  const selection_inputs<float> in{grid, {}, {}};
  REQUIRE(apply(cpu{}, uniform{keep_budget::count(4)}, in, out) == status::ok);
  CHECK(src == std::vector<std::int64_t>{1, 3, 6, 8});  // floor((2j+1)·10/8)
}

TEST_CASE("random is reproducible and its frames draw independently", "[selection]") {
  const token_grid grid{2, 4, 4};
  const auto draw = [&](std::uint64_t seed) {
    std::vector<std::int64_t> src(8);
    const selection_outputs<float> out{{}, make_view(src.data(), 8), {}};
    const random_subset p{keep_budget::count(4), seed, scope::per_frame};
    host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, 0}));
    REQUIRE(apply(cpu{}, p, selection_inputs<float>{grid, {}, {}}, out, ws.get()) == status::ok);
    return src;
  };
  const std::vector<std::int64_t> a = draw(1);
  CHECK(a == draw(1));
  CHECK(a != draw(2));
  std::vector<std::int64_t> second_frame(a.begin() + 4, a.end());
  for (auto& i : second_frame) i -= 16;
  CHECK(second_frame != std::vector<std::int64_t>(a.begin(), a.begin() + 4));
  // Pinned draws: the hash is part of the contract (same subset on every platform and release).
  CHECK(detail::random_key(0, 0) == 3793791033u);
  CHECK(detail::random_key(42, 7) == 656671904u);
  CHECK(draw(42) == std::vector<std::int64_t>{4, 11, 12, 15, 19, 25, 27, 28});
}

TEMPLATE_TEST_CASE("gather moves any index list, repeats and all, on every case", "[gather]", float, f16,
                   bf16) {
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    const token_matrix<TestType> tokens = make_tokens<TestType>(n, c.dim, c.rows, 9);
    rng r(static_cast<std::uint64_t>(n));
    std::vector<std::int64_t> index(static_cast<std::size_t>(n + 3));
    for (auto& i : index) i = static_cast<std::int64_t>(r.next() % static_cast<std::uint64_t>(n));
    const index_t kept = static_cast<index_t>(index.size());
    std::vector<TestType> want(static_cast<std::size_t>(kept * c.dim));
    ref::gather_rows<TestType, TestType>(index, tokens.rows, make_view(want.data(), kept, c.dim));
    for (int nth = 1; nth <= 4; ++nth) {
      CAPTURE(c.name, nth);
      selection_buffers<TestType> got(kept, c.dim);
      const gather_inputs<TestType> in{c.grid, make_view(index.data(), kept), tokens.rows};
      for (int ith = 0; ith < nth; ++ith)
        REQUIRE(apply(cpu{ith, nth}, gather{}, in, got.outputs()) == status::ok);
      CHECK(got.source == index);
      CHECK(got.positions == ref::positions_of(index, c.grid));
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < want.size(); ++i) mismatches += bits_of(want[i]) != bits_of(got.tokens[i]);
      CHECK(mismatches == 0);
    }
  }
}

TEST_CASE("rows wider than the scored columns move whole", "[selection]") {
  // Scores come from the first 4 of 12 columns; all 12 columns of the kept rows move.
  const index_t n = 6, dim = 12, scored = 4;
  std::vector<float> rows(static_cast<std::size_t>(n * dim));
  for (index_t i = 0; i < n * dim; ++i) rows[static_cast<std::size_t>(i)] = static_cast<float>(i);
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < scored; ++c) scores[static_cast<std::size_t>(i)] += rows[static_cast<std::size_t>(i * dim + c)] * ((i % 2) ? 1.f : -1.f);
  selection_buffers<float> got(3, dim);
  const selection_inputs<float> in{sequence_grid(n), make_view(scores.data(), n), make_view(rows.data(), n, dim)};
  host_workspace ws(workspace_bytes(cpu{}, topk{keep_budget::count(3)}, problem{in.grid, dim}));
  REQUIRE(apply(cpu{}, topk{keep_budget::count(3)}, in, got.outputs(), ws.get()) == status::ok);
  CHECK(got.source == std::vector<std::int64_t>{1, 3, 5});
  CHECK(got.tokens[11] == 23.0f);  // the last (unscored) column of row 1
}
