// tests/cpu/test_threshold.cpp — the threshold selection on CPU: against the oracle on the shared
// case table (tie-heavy scores with NaN, ±0 and ±inf; every element type; 1–4 shares), the count,
// the rows past it left untouched, the NaN rule of each side, and every bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/feature_scores.hpp>
#include <tokred/cpu/threshold.hpp>
#include <tokred/policy/feature_scores.hpp>
#include <tokred/policy/threshold.hpp>

#include "reference/feature_scores_ref.hpp"
#include "reference/gather_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf = std::numeric_limits<float>::infinity();

/// Runs threshold as `nth` shares (in reverse order, so no share can rely on another's output).
template <class Ein, class Eout>
counted_buffers<Eout> run_shares(const threshold& p, const selection_inputs<Ein>& in, index_t dim, int nth) {
  const index_t bound = retained_count(p, problem{in.grid, dim});
  REQUIRE(bound == in.grid.tokens());
  counted_buffers<Eout> out(bound, dim);
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs()) == status::ok);
  return out;
}

template <class Ein, class Eout>
void check_against_oracle(const threshold& p, const shape_case& c, int nth) {
  const index_t n = c.grid.tokens();
  const std::vector<float> scores = tie_heavy_scores(n, 23 + static_cast<std::uint64_t>(n));
  const token_matrix<Ein> tokens = make_tokens<Ein>(n, c.dim, c.rows, 8);
  const selection_inputs<Ein> in{c.grid, make_view(scores.data(), n), tokens.rows};
  const counted_buffers<Eout> got = run_shares<Ein, Eout>(p, in, c.dim, nth);
  const std::vector<std::int64_t> want = ref::threshold_kept(p, scores);
  const auto k = static_cast<index_t>(want.size());
  REQUIRE(got.count == k);
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + k) == want);
  CHECK(std::vector<std::int32_t>(got.positions.begin(), got.positions.begin() + 3 * k) ==
        ref::positions_of(want, c.grid));
  CHECK(ref::gather_mismatches<Ein, Eout>(
            want, tokens.rows, std::vector<Eout>(got.tokens.begin(), got.tokens.begin() + k * c.dim)) == 0);
  // Rows past the count keep the sentinels.
  const counted_buffers<Eout> fresh(n, c.dim);
  CHECK(std::equal(got.source.begin() + k, got.source.end(), fresh.source.begin() + k));
  CHECK(std::equal(got.positions.begin() + 3 * k, got.positions.end(), fresh.positions.begin() + 3 * k));
  CHECK(std::all_of(got.tokens.begin() + k * c.dim, got.tokens.end(),
                    [](Eout x) { return to_float(x) == -3.5f; }));
}

}  // namespace

TEMPLATE_TEST_CASE("threshold matches the oracle on every case and share split", "[threshold]", float,
                   f16, bf16) {
  // The tie-heavy scores sit on multiples of 1/8 in [-1, 1]: 0.5 and 0 are exact ties.
  for (const shape_case& c : shape_cases())
    for (const float tau : {0.5f, 0.0f, -0.25f, inf, -inf})
      for (const auto side : {threshold::keep::at_most, threshold::keep::above})
        for (int nth = 1; nth <= 4; ++nth) {
          CAPTURE(c.name, tau, static_cast<int>(side), nth);
          check_against_oracle<TestType, TestType>(threshold{tau, side}, c, nth);
        }
}

TEST_CASE("threshold converts rows to another element type", "[threshold]") {
  for (const shape_case& c : shape_cases()) {
    check_against_oracle<bf16, float>(threshold{0.25f}, c, 3);
    check_against_oracle<float, f16>(threshold{0.0f, threshold::keep::above}, c, 2);
  }
}

TEST_CASE("threshold: strict comparison, NaN kept by at_most and dropped by above", "[threshold]") {
  const std::vector<float> s = {0.5f, nan_value, 0.75f, 0.25f, -inf, inf, -0.0f, 0.5f};
  const selection_inputs<float> in{sequence_grid(8), make_view(s.data(), 8), {}};
  const auto kept = [&](const threshold& p, int nth) {
    const counted_buffers<float> out = run_shares<float, float>(p, in, 0, nth);
    return std::vector<std::int64_t>(out.source.begin(), out.source.begin() + out.count);
  };
  for (int nth = 1; nth <= 8; ++nth) {
    // DTD drops s > 0.5: 0.5 itself is kept (strict), NaN is kept (NaN > 0.5 is false).
    CHECK(kept(threshold::dtd(0.5f), nth) == std::vector<std::int64_t>{0, 1, 3, 4, 6, 7});
    CHECK(kept(threshold{0.5f, threshold::keep::above}, nth) == std::vector<std::int64_t>{2, 5});
    CHECK(kept(threshold{0.0f, threshold::keep::above}, nth) == std::vector<std::int64_t>{0, 2, 3, 5, 7});
    CHECK(kept(threshold{-inf, threshold::keep::at_most}, nth) == std::vector<std::int64_t>{1, 4});
  }
  // Nothing kept: the count is 0 and no row is written.
  const threshold above_inf{inf, threshold::keep::above};
  const counted_buffers<float> none = run_shares<float, float>(above_inf, in, 0, 3);
  CHECK(none.count == 0);
  CHECK(none.selection_buffers<float>::untouched());
}

TEST_CASE("DTD: temporal cosine then threshold keeps frame 0 and drops repeated slots", "[threshold]") {
  // 3 frames of 2 slots. Slot 0 never changes (cos 1, dropped after frame 0); slot 1 turns by 90°
  // in frame 1 (cos 0, kept) and by 45° in frame 2 (cos 0.707, dropped at τ = 0.5).
  const float x[6 * 2] = {1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1};
  const token_grid grid{3, 1, 2};
  std::vector<float> sim(6);
  REQUIRE(apply(cpu{}, temporal_similarity::dtd(), feature_score_inputs<float>{grid, make_view(x, 6, 2), {}},
                score_outputs<>{make_view(sim.data(), 6)}) == status::ok);
  const selection_inputs<float> scored{grid, make_view<const float>(sim.data(), 6), make_view(x, 6, 2)};
  const counted_buffers<float> out = run_shares<float, float>(threshold::dtd(0.5f), scored, 2, 2);
  REQUIRE(out.count == 3);
  CHECK(std::vector<std::int64_t>(out.source.begin(), out.source.begin() + 3) ==
        std::vector<std::int64_t>{0, 1, 3});
  CHECK(std::vector<std::int32_t>(out.positions.begin(), out.positions.begin() + 9) ==
        std::vector<std::int32_t>{0, 0, 0, 0, 0, 1, 1, 0, 1});
  CHECK(std::vector<float>(out.tokens.begin(), out.tokens.begin() + 6) == std::vector<float>{1, 1, 1, 0, 0, 1});
}

TEST_CASE("threshold: problem facts", "[threshold]") {
  const problem video{token_grid{8, 12, 12}, 64};
  CHECK(retained_count(threshold{}, video) == 1152);
  CHECK(can_implement(threshold{}, video) == status::ok);
  CHECK(can_implement(threshold{nan_value}, video) == status::invalid_parameter);
  CHECK(retained_count(threshold{nan_value}, video) == 0);
  CHECK(can_implement(threshold{0.5f, static_cast<threshold::keep>(7)}, video) == status::invalid_parameter);
  CHECK(can_implement(threshold{}, problem{token_grid{8, -1, 12}, 64}) == status::shape_mismatch);
  CHECK(can_implement(threshold{}, problem{token_grid{0, 12, 12}, 64}) == status::empty_input);
  CHECK(workspace_bytes(cpu{0, 4}, threshold{}, video) == 0);
}

TEST_CASE("threshold: bad input returns its status and writes nothing", "[threshold][bad-input]") {
  const index_t n = 12, dim = 4;
  const token_grid grid{3, 2, 2};
  const std::vector<float> scores = tie_heavy_scores(n, 5);
  const token_matrix<float> tokens = make_tokens<float>(n, dim, layout::contiguous, 2);
  const selection_inputs<float> in{grid, make_view(scores.data(), n), tokens.rows};
  counted_buffers<float> out(n, dim);
  const auto run = [&](const threshold& p, const selection_inputs<float>& i, const counted_outputs<float>& o) {
    return apply(cpu{}, p, i, o);
  };

  SECTION("parameters, exec, grid") {
    CHECK(run(threshold{nan_value}, in, out.outputs()) == status::invalid_parameter);
    CHECK(apply(cpu{1, 1}, threshold{}, in, out.outputs()) == status::invalid_exec);
    CHECK(run(threshold{}, {token_grid{3, 2, -2}, in.scores, in.tokens}, out.outputs()) ==
          status::shape_mismatch);
    CHECK(run(threshold{}, {token_grid{0, 2, 2}, in.scores, in.tokens}, out.outputs()) == status::empty_input);
  }
  SECTION("scores and rows") {
    const view<const float, 1> short_scores = make_view(scores.data(), n - 1), null_scores(nullptr, {n});
    CHECK(run(threshold{}, {grid, short_scores, in.tokens}, out.outputs()) == status::shape_mismatch);
    CHECK(run(threshold{}, {grid, null_scores, in.tokens}, out.outputs()) == status::null_pointer);
    CHECK(run(threshold{}, {grid, in.scores, view<const float, 2>(tokens.rows.data_handle(), {n - 1, dim})},
              out.outputs()) == status::shape_mismatch);
  }
  SECTION("outputs are sized by the bound N") {
    counted_outputs<float> o = out.outputs();
    o.source = make_view(out.source.data(), n - 1);
    CHECK(run(threshold{}, in, o) == status::shape_mismatch);
    o = out.outputs();
    o.positions = make_view(out.positions.data(), n, 2);
    CHECK(run(threshold{}, in, o) == status::shape_mismatch);
  }
  SECTION("the count is required") {
    counted_outputs<float> o = out.outputs();
    o.count = {};
    CHECK(run(threshold{}, in, o) == status::shape_mismatch);
    o.count = view<std::int64_t, 1>(nullptr, {1});
    CHECK(run(threshold{}, in, o) == status::null_pointer);
    o.count = make_view(out.source.data(), 2);
    CHECK(run(threshold{}, in, o) == status::shape_mismatch);
  }
  SECTION("aliasing") {
    counted_outputs<float> o = out.outputs();
    o.count = make_view(out.source.data() + 3, 1);
    CHECK(run(threshold{}, in, o) == status::aliasing);
    o = out.outputs();
    o.count = make_view(reinterpret_cast<std::int64_t*>(out.positions.data()), 1);
    CHECK(run(threshold{}, in, o) == status::aliasing);
    std::vector<float> shared(static_cast<std::size_t>(n * dim + n));
    o = out.outputs();
    o.tokens = make_view(shared.data(), n, dim);
    CHECK(run(threshold{}, {grid, make_view<const float>(shared.data() + n * dim - 1, n), in.tokens}, o) ==
          status::aliasing);
  }
  CHECK(out.untouched());
}
