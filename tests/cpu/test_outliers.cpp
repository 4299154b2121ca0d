// tests/cpu/test_outliers.cpp — iqr_outliers (LLaVA-PruMerge, PruMerge+) against its scalar oracle
// on the shared case table, its edge cases and bad inputs, and the original's golden outputs.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tokred/cpu/outliers.hpp>

#include "reference/gather_ref.hpp"
#include "reference/outliers_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Attention-like scores: a smooth positive background with a few sharp peaks (the outliers).
std::vector<float> peaked_scores(index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& x : s) {
    x = 1e-3f * (1.5f + r.uniform());
    if (r.next() % 13 == 0) x *= 4.0f + 4.0f * (r.uniform() + 1.0f);
  }
  return s;
}

/// Runs `p` as `nth` shares and returns the outputs.
template <class Ein, class Eout>
counted_buffers<Eout> run(const iqr_outliers& p, const token_grid& grid, const std::vector<float>& scores,
                          const view<const Ein, 2>& rows, int nth) {
  const problem prob{grid, rows.extent(1)};
  counted_buffers<Eout> got(retained_count(p, prob), rows.extent(1));
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  const selection_inputs<Ein> in{grid, make_view(scores.data(), grid.tokens()), rows};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, got.outputs(), ws.get()) == status::ok);
  return got;
}

/// Checks one run against the oracle: count, order, positions and rows; rows past the count
/// untouched.
template <class Ein, class Eout>
void check_against_oracle(const iqr_outliers& p, const shape_case& c, const std::vector<float>& scores,
                          int nth) {
  const token_matrix<Ein> tokens = make_tokens<Ein>(c.grid.tokens(), c.dim, c.rows, 3);
  const std::vector<std::int64_t> expected = ref::outlier_indices(p, scores);
  const counted_buffers<Eout> got = run<Ein, Eout>(p, c.grid, scores, tokens.rows, nth);
  const auto count = static_cast<std::size_t>(got.count);
  REQUIRE(count == expected.size());
  REQUIRE(static_cast<index_t>(count) <= got.kept);
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + count) == expected);
  for (std::size_t j = count; j < got.source.size(); ++j)
    CHECK(got.source[j] == selection_buffers<Eout>::source_sentinel);
  CHECK(std::vector<std::int32_t>(got.positions.begin(), got.positions.begin() + 3 * count) ==
        ref::positions_of(expected, c.grid));
  const std::vector<Eout> kept_rows(got.tokens.begin(), got.tokens.begin() + count * c.dim);
  CHECK(ref::gather_mismatches<Ein, Eout>(expected, tokens.rows, kept_rows) == 0);
}

std::vector<std::int64_t> kept_by(const iqr_outliers& p, const std::vector<float>& scores) {
  const auto n = static_cast<index_t>(scores.size());
  const counted_buffers<float> got = run<float, float>(p, sequence_grid(n), scores, view<const float, 2>{}, 1);
  return std::vector<std::int64_t>(got.source.begin(), got.source.begin() + got.count);
}

}  // namespace

TEMPLATE_TEST_CASE("iqr_outliers matches the scalar oracle on every case", "[outliers]", float, f16, bf16) {
  for (const shape_case& c : shape_cases())
    for (const iqr_outliers p : {iqr_outliers::prumerge(), iqr_outliers::prumerge_plus()})
      for (int nth = 1; nth <= 3; ++nth) {
        CAPTURE(c.name, p.spatial_extras, nth);
        const index_t n = c.grid.tokens();
        check_against_oracle<TestType, TestType>(p, c, peaked_scores(n, 40 + static_cast<std::uint64_t>(n)), nth);
        check_against_oracle<TestType, float>(p, c, tie_heavy_scores(n, 7), nth);
      }
}

TEST_CASE("iqr_outliers keeps the outliers in descending score order, then the extras", "[outliers]") {
  // Sorted: 1 1 2 2 3 3 4 4 5 8 9 12. NumPy's linear percentiles: Q1 = 2 (index 2.75 between two
  // 2s), Q3 = 5 + 0.25·(8 − 5) = 5.75; fence = 5.75 + 1.5·3.75 = 11.375: only 12 is an outlier.
  const std::vector<float> s = {1, 2, 3, 4, 9, 1, 2, 3, 4, 8, 12, 5};
  CHECK(kept_by(iqr_outliers::prumerge(), s) == std::vector<std::int64_t>{10});
  // ratio = 1/12: step int(int(12.000000000000002)/3) = 4, positions 0, 4, 8 below N − 1 = 11.
  CHECK(kept_by(iqr_outliers::prumerge_plus(), s) == std::vector<std::int64_t>{10, 0, 4, 8});
  // Two outliers come in descending score order, not index order.
  const std::vector<float> two = {1, 2, 3, 4, 30, 1, 2, 3, 4, 8, 12, 5};
  CHECK(kept_by(iqr_outliers::prumerge(), two) == std::vector<std::int64_t>{4, 10});
  const std::vector<float> swapped = {1, 2, 3, 4, 12, 1, 2, 3, 4, 8, 30, 5};
  CHECK(kept_by(iqr_outliers::prumerge(), swapped) == std::vector<std::int64_t>{10, 4});
}

TEST_CASE("iqr_outliers keeps the original's arithmetic at its edges", "[outliers]") {
  // One outlier among 49: int(49 · (1/49)) = int(0.9999999999999999) = 0, so PruMerge keeps
  // nothing; PruMerge+ still adds its extras, every int(int(49.0)/3) = 16th position.
  std::vector<float> s(49, 1.0f);
  for (std::size_t i = 0; i < s.size(); ++i) s[i] += 0.01f * static_cast<float>(i % 7);
  s[20] = 50.0f;
  CHECK(kept_by(iqr_outliers::prumerge(), s).empty());
  CHECK(kept_by(iqr_outliers::prumerge_plus(), s) == std::vector<std::int64_t>{0, 16, 32});

  // No outlier (equal scores), a NaN anywhere: nothing is kept, with or without extras.
  CHECK(kept_by(iqr_outliers::prumerge_plus(), std::vector<float>(30, 0.5f)).empty());
  std::vector<float> with_nan = {1, 2, 3, 4, 9, 1, 2, 3, 4, 8, 12, 5};
  with_nan[3] = NAN;
  CHECK(kept_by(iqr_outliers::prumerge(), with_nan).empty());

  // +inf is an outlier of finite quartiles; an infinite neighbour of Q3 makes NumPy's
  // interpolation inf − inf = NaN, and then nothing is.
  CHECK(kept_by(iqr_outliers::prumerge(), {1, 2, 3, 4, 1, 2, 3, 4, 2, INFINITY, 3, 1}) ==
        std::vector<std::int64_t>{9});
  CHECK(kept_by(iqr_outliers::prumerge(), {1, 2, 3, INFINITY, INFINITY, INFINITY, 1, 2}).empty());

  // A single token is never an outlier of itself; bounds hold for tiny inputs.
  CHECK(kept_by(iqr_outliers::prumerge_plus(), {3.0f}).empty());
  CHECK(retained_count(iqr_outliers::prumerge(), problem{sequence_grid(1), 0}) == 0);
  CHECK(retained_count(iqr_outliers::prumerge(), problem{image_grid(24, 24), 0}) == 144);
  CHECK(retained_count(iqr_outliers::prumerge_plus(), problem{image_grid(24, 24), 0}) == 576);
  for (index_t n = 2; n <= 9; ++n) {
    std::vector<float> few(static_cast<std::size_t>(n), 1.0f);
    few.back() = 100.0f;
    CAPTURE(n);
    const auto kept = kept_by(iqr_outliers::prumerge_plus(), few);
    CHECK(kept == ref::outlier_indices(iqr_outliers::prumerge_plus(), few));
    CHECK(static_cast<index_t>(kept_by(iqr_outliers::prumerge(), few).size()) <=
          retained_count(iqr_outliers::prumerge(), problem{sequence_grid(n), 0}));
  }
}

TEST_CASE("iqr_outliers rejects bad input and writes nothing", "[outliers][bad_input]") {
  const token_grid grid = image_grid(6, 4);
  const index_t n = grid.tokens(), dim = 5;
  const std::vector<float> scores = peaked_scores(n, 3);
  std::vector<float> rows(static_cast<std::size_t>(n * dim), 1.0f);
  const iqr_outliers p = iqr_outliers::prumerge_plus();
  const problem prob{grid, dim};
  counted_buffers<float> out(retained_count(p, prob), dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  const selection_inputs<float> good{grid, make_view(scores.data(), n), make_view(rows.data(), n, dim)};
  const auto expect = [&](const selection_inputs<float>& in, const counted_outputs<float>& o, status want,
                          workspace w) {
    CHECK(apply(cpu{}, p, in, o, w) == want);
    CHECK(out.untouched());
    CHECK(out.count == counted_buffers<float>::count_sentinel);
  };

  selection_inputs<float> in = good;
  in.grid = token_grid{0, 6, 4};
  expect(in, out.outputs(), status::empty_input, ws.get());
  in.grid = token_grid{1, -6, 4};
  expect(in, out.outputs(), status::shape_mismatch, ws.get());
  in = good;
  in.scores = make_view(scores.data(), n - 1);
  expect(in, out.outputs(), status::shape_mismatch, ws.get());
  in.scores = view<const float, 1>(nullptr, {n});
  expect(in, out.outputs(), status::null_pointer, ws.get());
  counted_outputs<float> o = out.outputs();
  o.count = {};
  expect(good, o, status::shape_mismatch, ws.get());
  o = out.outputs();
  o.source = make_view(out.source.data(), n - 1);
  expect(good, o, status::shape_mismatch, ws.get());
  o = out.outputs();
  o.count = make_view(out.source.data(), 1);
  expect(good, o, status::aliasing, ws.get());
  o = out.outputs();
  o.count = view<std::int64_t, 1>(reinterpret_cast<std::int64_t*>(rows.data()), {1});
  expect(good, o, status::aliasing, ws.get());
  expect(good, out.outputs(), status::workspace_too_small, workspace{ws.bytes.data(), ws.bytes.size() - 1});
  CHECK(apply(cpu{2, 2}, p, good, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(can_implement(p, problem{token_grid{0, 1, 1}, 1}) == status::empty_input);
}

namespace {

void check_golden(const std::string& name, const iqr_outliers& p) {
  const std::string dir = golden_case("prumerge", name);
  const io::npy_array scores = load_npy(dir + "scores.npy");         // (N,) float32 cls_attn
  const io::npy_array kept = load_npy(dir + "kept_indices.npy");     // upstream idx order
  const std::vector<float> s = scores.as<float>();
  const token_grid grid = image_grid(24, 24);
  REQUIRE(grid.tokens() == static_cast<index_t>(s.size()));
  const counted_buffers<float> got = run<float, float>(p, grid, s, view<const float, 2>{}, 2);
  CHECK(got.count == json_int(dir, "k"));
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + got.count) ==
        kept.as<std::int64_t>());
}

}  // namespace

TEST_CASE("PruMerge+: the original's idx, outliers by attention then uniform extras", "[outliers][golden]") {
  check_golden("c01_plus_n576_d64", iqr_outliers::prumerge_plus());  // 26 outliers + 82 extras
}

TEST_CASE("PruMerge: the original's idx, the 50 IQR outliers in descending attention", "[outliers][golden]") {
  check_golden("c02_prumerge_n576_d64", iqr_outliers::prumerge());
}
