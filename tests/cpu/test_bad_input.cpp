// tests/cpu/test_bad_input.cpp — every documented bad input returns its status and writes nothing.
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A valid 6 × 4 problem (N = 24 tokens, dim 8, keep 6) that each section breaks in one way.
struct fixture {
  static constexpr index_t n = 24, dim = 8, kept = 6;
  token_grid grid{1, 6, 4};
  std::vector<float> scores = std::vector<float>(n, 1.0f);
  std::vector<float> rows = std::vector<float>(n * dim, 2.0f);
  selection_buffers<float> out{kept, dim};
  topk policy{keep_budget::count(kept)};
  host_workspace ws{workspace_bytes(cpu{}, topk{keep_budget::count(kept)}, problem{grid, dim})};

  selection_inputs<float> inputs() const {
    return {grid, make_view(scores.data(), n), make_view(rows.data(), n, dim)};
  }
  status run(const selection_inputs<float>& in, const selection_outputs<float>& o) {
    return apply(cpu{}, policy, in, o, ws.get());
  }
};

}  // namespace

TEST_CASE("the fixture itself is valid", "[bad_input]") {
  fixture f;
  REQUIRE(f.run(f.inputs(), f.out.outputs()) == status::ok);
  CHECK_FALSE(f.out.untouched());
}

TEST_CASE("budgets: k = 0, k > N, ratios outside [0, 1] or NaN", "[bad_input]") {
  fixture f;
  const auto expect = [&](keep_budget keep, status want) {
    f.policy.keep = keep;
    CHECK(can_implement(f.policy, problem{f.grid, f.dim}) == want);
    CHECK(retained_count(f.policy, problem{f.grid, f.dim}) == 0);
    CHECK(f.run(f.inputs(), f.out.outputs()) == want);
    CHECK(f.out.untouched());
  };
  expect(keep_budget::count(0), status::invalid_budget);
  expect(keep_budget::count(-3), status::invalid_budget);
  expect(keep_budget::count(25), status::budget_exceeds_input);
  expect(keep_budget::ratio(0.01, rounding::floor), status::invalid_budget);  // floor(0.24) = 0
  expect(keep_budget::ratio(-0.1, rounding::floor), status::invalid_ratio);
  expect(keep_budget::ratio(1.5, rounding::floor), status::invalid_ratio);
  expect(keep_budget::ratio(std::nan(""), rounding::floor), status::invalid_ratio);
  expect(keep_budget::ratio(INFINITY, rounding::ceil), status::invalid_ratio);
}

TEST_CASE("ratio rounding follows Python int, round and ceil", "[bad_input][budget]") {
  CHECK(kept_count(keep_budget::ratio(0.5, rounding::floor), 577).count == 288);
  CHECK(kept_count(keep_budget::ratio(1.0 - 0.77734375, rounding::half_even), 1152).count == 256);  // 256.5
  CHECK(kept_count(keep_budget::ratio(1.0 - 0.78515625, rounding::half_even), 1152).count == 248);  // 247.5
  CHECK(kept_count(keep_budget::ratio(0.001, rounding::half_even), 784).count == 1);                // 0.784
  CHECK(kept_count(keep_budget::ratio(0.25, rounding::ceil), 577).count == 145);
  CHECK(kept_count(keep_budget::ratio(1.0, rounding::floor), 577).count == 577);
}

TEST_CASE("a floor raises the count and is checked against the input", "[bad_input][budget]") {
  // vLLM EVS: max(tokens per frame, int(T·HW·(1 − q))), here 8 frames of 12 × 12 at q = 0.75.
  CHECK(kept_count(keep_budget::ratio(1.0 - 0.75, rounding::floor).at_least(144), 1152).count == 288);
  CHECK(kept_count(keep_budget::ratio(1.0 - 0.95, rounding::floor).at_least(144), 1152).count == 144);
  CHECK(kept_count(keep_budget::ratio(0.0, rounding::floor).at_least(1), 9).count == 1);
  CHECK(kept_count(keep_budget::count(3).at_least(5), 9).count == 5);
  CHECK(kept_count(keep_budget::ratio(0.5, rounding::floor).at_least(10), 9).code ==
        status::budget_exceeds_input);
  CHECK(kept_count(keep_budget::ratio(std::nan(""), rounding::floor).at_least(4), 9).code ==
        status::invalid_ratio);
}

TEST_CASE("zero tokens and malformed grids", "[bad_input]") {
  fixture f;
  f.grid = token_grid{0, 6, 4};
  CHECK(f.run(f.inputs(), f.out.outputs()) == status::empty_input);
  f.grid = token_grid{1, -6, 4};
  CHECK(f.run(f.inputs(), f.out.outputs()) == status::shape_mismatch);
  CHECK(f.out.untouched());
  CHECK(can_implement(uniform{keep_budget::count(1)}, problem{token_grid{1, 0, 9}, 4}) == status::empty_input);
  // More tokens than index_t counts: T·H·W would overflow (it wrapped to 0 or went negative).
  const index_t big = index_t{1} << 40;
  for (const token_grid g : {token_grid{3, index_t{1} << 62, 1}, token_grid{big, 4096, 4096}, token_grid{1, index_t{1} << 32, index_t{1} << 32}}) {
    CHECK_FALSE(g.valid());
    for (const scope within : {scope::global, scope::per_frame}) {
      CHECK(can_implement(topk{keep_budget::count(1), within}, problem{g, 4}) == status::shape_mismatch);
      CHECK(retained_count(divprune{keep_budget::count(1), within}, problem{g, 4}) == 0);
    }
    f.grid = g;
    CHECK(f.run(f.inputs(), f.out.outputs()) == status::shape_mismatch);
    CHECK(f.out.untouched());
  }
  CHECK(token_grid{1, index_t{1} << 31, index_t{1} << 31}.valid());
  CHECK_FALSE(token_grid{0, index_t{1} << 62, index_t{1} << 62}.valid());  // no frame, but H·W overflows
  CHECK(token_grid{index_t{1} << 62, 0, index_t{1} << 62}.valid());        // every product is 0
}

TEST_CASE("null pointers with a non-zero extent", "[bad_input]") {
  fixture f;
  selection_inputs<float> in = f.inputs();
  in.scores = view<const float, 1>(nullptr, {fixture::n});
  CHECK(f.run(in, f.out.outputs()) == status::null_pointer);
  in = f.inputs();
  in.tokens = view<const float, 2>(nullptr, {fixture::n, fixture::dim});
  CHECK(f.run(in, f.out.outputs()) == status::null_pointer);
  selection_outputs<float> out = f.out.outputs();
  out.positions = view<std::int32_t, 2>(nullptr, {fixture::kept, 3});
  CHECK(f.run(f.inputs(), out) == status::null_pointer);
  CHECK(f.out.untouched());
}

TEST_CASE("mismatched shapes", "[bad_input]") {
  fixture f;
  selection_inputs<float> in = f.inputs();
  in.scores = make_view(f.scores.data(), fixture::n - 1);
  CHECK(f.run(in, f.out.outputs()) == status::shape_mismatch);
  in = f.inputs();
  in.tokens = {};  // tokens requested but no input rows
  CHECK(f.run(in, f.out.outputs()) == status::shape_mismatch);
  selection_outputs<float> out = f.out.outputs();
  out.tokens = make_view(f.out.tokens.data(), fixture::kept - 1, fixture::dim);
  CHECK(f.run(f.inputs(), out) == status::shape_mismatch);
  out = f.out.outputs();
  out.tokens = make_view(f.out.tokens.data(), fixture::kept, fixture::dim - 1);
  CHECK(f.run(f.inputs(), out) == status::shape_mismatch);
  out = f.out.outputs();
  out.source = make_view(f.out.source.data(), fixture::kept - 1);
  CHECK(f.run(f.inputs(), out) == status::shape_mismatch);
  out = f.out.outputs();
  out.positions = make_view(f.out.positions.data(), fixture::kept, 2);
  CHECK(f.run(f.inputs(), out) == status::shape_mismatch);
  CHECK(f.out.untouched());
}

TEST_CASE("outputs overlapping inputs or each other", "[bad_input]") {
  fixture f;
  selection_outputs<float> out = f.out.outputs();
  out.tokens = make_view(f.rows.data() + 8, fixture::kept, fixture::dim);  // inside the input rows
  CHECK(f.run(f.inputs(), out) == status::aliasing);
  out = f.out.outputs();
  out.source = make_view(reinterpret_cast<std::int64_t*>(f.scores.data()), fixture::kept);  // over the scores
  CHECK(f.run(f.inputs(), out) == status::aliasing);
  out = f.out.outputs();
  out.positions = view<std::int32_t, 2>(reinterpret_cast<std::int32_t*>(f.out.source.data()), {fixture::kept, 3}, {2, 1});
  CHECK(f.run(f.inputs(), out) == status::aliasing);  // positions over source
  // An output that reaches one of its own elements twice: every kept row onto one (a broadcast),
  // and position rows 2 apart, 3 wide.
  out = f.out.outputs();
  out.tokens = view<float, 2>(f.out.tokens.data(), {fixture::kept, fixture::dim}, {0, 1});
  CHECK(f.run(f.inputs(), out) == status::aliasing);
  out = f.out.outputs();
  out.positions = view<std::int32_t, 2>(f.out.positions.data(), {fixture::kept, 3}, {2, 1});
  CHECK(f.run(f.inputs(), out) == status::aliasing);
  CHECK(f.out.untouched());
}

TEST_CASE("a workspace that is too small, or missing", "[bad_input]") {
  fixture f;
  REQUIRE(f.ws.bytes.size() > 0);
  const workspace short_ws{f.ws.bytes.data(), f.ws.bytes.size() - 1};
  CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), short_ws) == status::workspace_too_small);
  CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), workspace{}) == status::workspace_too_small);
  CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), workspace{nullptr, 1 << 20}) == status::null_pointer);
  CHECK(f.out.untouched());
}

TEST_CASE("a malformed exec share", "[bad_input]") {
  fixture f;
  CHECK(apply(cpu{0, 0}, f.policy, f.inputs(), f.out.outputs(), f.ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{2, 2}, f.policy, f.inputs(), f.out.outputs(), f.ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{-1, 2}, f.policy, f.inputs(), f.out.outputs(), f.ws.get()) == status::invalid_exec);
  CHECK(f.out.untouched());
}

TEST_CASE("gather rejects empty lists, out-of-range indices and overlaps", "[bad_input][gather]") {
  fixture f;
  std::vector<std::int64_t> index = {0, 5, 23, 7, 7, 1};
  gather_inputs<float> in{f.grid, make_view(index.data(), 6), make_view(f.rows.data(), fixture::n, fixture::dim)};
  for (std::int64_t bad : {std::int64_t{24}, std::int64_t{-1}, std::int64_t{1} << 40}) {
    index[3] = bad;
    CHECK(apply(cpu{}, gather{}, in, f.out.outputs()) == status::index_out_of_range);
  }
  index[3] = 3;
  in.index = {};
  CHECK(apply(cpu{}, gather{}, in, f.out.outputs()) == status::invalid_budget);
  in.index = view<const std::int64_t, 1>(nullptr, {6});
  CHECK(apply(cpu{}, gather{}, in, f.out.outputs()) == status::null_pointer);
  in.index = make_view(index.data(), 6);
  selection_outputs<float> out = f.out.outputs();
  out.source = make_view(const_cast<std::int64_t*>(index.data()), 6);  // writes over the index list
  CHECK(apply(cpu{}, gather{}, in, out) == status::aliasing);
  in.grid = token_grid{0, 1, 1};
  CHECK(apply(cpu{}, gather{}, in, f.out.outputs()) == status::empty_input);
  CHECK(f.out.untouched());
}
