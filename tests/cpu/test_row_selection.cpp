// tests/cpu/test_row_selection.cpp — top_rows (FoPru's row strategy) against its scalar oracle on
// the shared case table, its ranking rules and its bad inputs.
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/cpu/row_selection.hpp>

#include "reference/gather_ref.hpp"
#include "reference/row_selection_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

template <class Ein, class Eout>
void check_against_oracle(const top_rows& p, const shape_case& c, const std::vector<float>& scores, int nth) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> tokens = make_tokens<Ein>(n, c.dim, c.rows, 21);
  const std::vector<std::int64_t> expected = ref::row_indices(p, c.grid, scores);
  const problem prob{c.grid, c.dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept == static_cast<index_t>(expected.size()));
  selection_buffers<Eout> got(kept, c.dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  const selection_inputs<Ein> in{c.grid, make_view(scores.data(), n), tokens.rows};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, got.outputs(), ws.get()) == status::ok);
  CHECK(got.source == expected);
  CHECK(got.positions == ref::positions_of(expected, c.grid));
  CHECK(ref::gather_mismatches<Ein, Eout>(expected, tokens.rows, got.tokens) == 0);
}

std::vector<std::int64_t> kept_rows(const token_grid& grid, const std::vector<float>& scores, index_t k) {
  const top_rows p{keep_budget::count(k)};
  std::vector<std::int64_t> src(static_cast<std::size_t>(retained_count(p, problem{grid, 0})));
  const selection_outputs<float> out{{}, make_view(src.data(), static_cast<index_t>(src.size())), {}};
  host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, 0}));
  REQUIRE(apply(cpu{}, p, selection_inputs<float>{grid, make_view(scores.data(), grid.tokens()), {}}, out,
                ws.get()) == status::ok);
  return src;
}

}  // namespace

TEMPLATE_TEST_CASE("top_rows matches the scalar oracle on every case", "[row_selection]", float, f16, bf16) {
  for (const shape_case& c : shape_cases())
    for (double ratio : keep_ratios())
      for (int nth = 1; nth <= 3; ++nth) {
        const top_rows p{keep_budget::ratio(ratio, rounding::floor)};
        if (retained_count(p, problem{c.grid, c.dim}) == 0) continue;
        CAPTURE(c.name, ratio, nth);
        const index_t n = c.grid.tokens();
        check_against_oracle<TestType, TestType>(p, c, tie_heavy_scores(n, 5 + static_cast<std::uint64_t>(n)), nth);
        check_against_oracle<TestType, float>(p, c, tie_heavy_scores(n, 9), nth);
      }
}

TEST_CASE("top_rows ranks rows by their summed score, ties to the upper row, NaN last", "[row_selection]") {
  const token_grid grid = image_grid(4, 3);
  //                              row 0        row 1          row 2         row 3
  const std::vector<float> s = {1, 1, 1,     0, 0, 4,       3, 0, NAN,    2, 2, 0};
  CHECK(kept_rows(grid, s, 1) == std::vector<std::int64_t>{3, 4, 5});  // 4 ties with row 3's 4: upper row
  CHECK(kept_rows(grid, s, 2) == std::vector<std::int64_t>{3, 4, 5, 9, 10, 11});
  CHECK(kept_rows(grid, s, 3) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 9, 10, 11});  // NaN row last
  // Frames rank their rows independently.
  std::vector<float> two(s);
  two.insert(two.end(), {9, 9, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0});
  CHECK(kept_rows(token_grid{2, 4, 3}, two, 1) == std::vector<std::int64_t>{3, 4, 5, 12, 13, 14});
}

TEST_CASE("top_rows counts rows of H and rejects bad input", "[row_selection][bad_input]") {
  const token_grid grid{2, 6, 4};
  CHECK(retained_count(top_rows{keep_budget::ratio(0.5, rounding::floor)}, problem{grid, 0}) == 24);  // 3 rows × 4 × 2
  CHECK(can_implement(top_rows{keep_budget::count(7)}, problem{grid, 0}) == status::budget_exceeds_input);
  CHECK(can_implement(top_rows{keep_budget::ratio(0.1, rounding::floor)}, problem{grid, 0}) == status::invalid_budget);
  CHECK(can_implement(top_rows{keep_budget::count(1)}, problem{token_grid{0, 6, 4}, 0}) == status::empty_input);

  const index_t n = grid.tokens(), dim = 3;
  const std::vector<float> scores = tie_heavy_scores(n, 1);
  std::vector<float> rows(static_cast<std::size_t>(n * dim), 2.0f);
  const top_rows p{keep_budget::count(2)};
  selection_buffers<float> out(16, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
  selection_inputs<float> in{grid, make_view(scores.data(), n), make_view(rows.data(), n, dim)};
  in.scores = make_view(scores.data(), n - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::shape_mismatch);
  in.scores = make_view(scores.data(), n);
  selection_outputs<float> o = out.outputs();
  o.source = make_view(out.source.data(), 15);
  CHECK(apply(cpu{}, p, in, o, ws.get()) == status::shape_mismatch);
  o = out.outputs();
  o.tokens = make_view(rows.data(), 16, dim);
  CHECK(apply(cpu{}, p, in, o, ws.get()) == status::aliasing);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{ws.bytes.data(), ws.bytes.size() - 1}) ==
        status::workspace_too_small);
  CHECK(out.untouched());
  REQUIRE(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::ok);
}
