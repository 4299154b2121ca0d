// tests/cpu/test_hired.cpp — hired (HiRED's partition budgets) against its scalar oracle, its
// budget arithmetic and bad inputs, and the original's selection on a LLaVA-NeXT 2 × 2 case.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tokred/cpu/hired.hpp>

#include "reference/gather_ref.hpp"
#include "reference/hired_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

std::vector<float> smooth_scores(index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& x : s) x = 1e-3f * (2.0f + r.uniform());
  return s;
}

template <class Ein, class Eout>
counted_buffers<Eout> run(const hired& p, const token_grid& grid, const std::vector<float>& scores,
                          const std::vector<float>& early, const view<const Ein, 2>& rows, int nth) {
  const problem prob{grid, rows.extent(1)};
  counted_buffers<Eout> got(retained_count(p, prob), rows.extent(1));
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  const hired_inputs<Ein> in{grid, make_view(scores.data(), grid.tokens()),
                             make_view(early.data(), grid.frame_tokens()), rows};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, got.outputs(), ws.get()) == status::ok);
  return got;
}

struct hired_case {
  token_grid grid;
  index_t dim, crop_rows, crop_cols;
  layout rows;
};

}  // namespace

TEMPLATE_TEST_CASE("hired matches the scalar oracle", "[hired]", float, f16, bf16) {
  const std::vector<hired_case> cases = {
      {{5, 24, 24}, 16, 2, 2, layout::contiguous},  // LLaVA-NeXT 672 × 672
      {{4, 24, 24}, 9, 1, 3, layout::strided},      // a wide image: 1 × 3 crops
      {{4, 6, 8}, 17, 3, 1, layout::reversed},      // a tall image: 3 × 1 crops
      {{3, 5, 7}, 8, 2, 1, layout::contiguous},     // odd sides: spatial only (35 tokens, 2 bands)
      {{2, 1, 1}, 4, 1, 1, layout::contiguous},     // one token per partition
  };
  for (const hired_case& c : cases)
    for (partition_map map : {partition_map::spatial, partition_map::row_bands})
      for (const auto& [budget, alpha] : std::vector<std::pair<double, double>>{
               {0.2, 0.5}, {0.1, 0.3}, {0.05, 0.8}, {0.5, 0.0}, {0.6, 1.0}, {1.0, 0.25}})
        for (int nth = 1; nth <= 3; ++nth) {
          const hired p{budget, alpha, c.crop_rows, c.crop_cols, map};
          const problem prob{c.grid, c.dim};
          if (can_implement(p, prob) != status::ok) continue;
          CAPTURE(c.grid.frames, c.grid.height, c.grid.width, static_cast<int>(map), budget, alpha, nth);
          const index_t n = c.grid.tokens();
          const std::vector<float> scores = tie_heavy_scores(n, 3 + static_cast<std::uint64_t>(n));
          const std::vector<float> early = smooth_scores(c.grid.frame_tokens(), 8);
          const token_matrix<TestType> tokens = make_tokens<TestType>(n, c.dim, c.rows, 2);
          const std::vector<std::int64_t> expected = ref::hired_indices(p, c.grid, scores, early);
          const counted_buffers<TestType> got = run<TestType, TestType>(p, c.grid, scores, early, tokens.rows, nth);
          const auto count = static_cast<std::size_t>(got.count);
          REQUIRE(count == expected.size());
          REQUIRE(static_cast<index_t>(count) <= retained_count(p, prob));
          CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + count) == expected);
          CHECK(std::vector<std::int32_t>(got.positions.begin(), got.positions.begin() + 3 * count) ==
                ref::positions_of(expected, c.grid));
          const std::vector<TestType> rows(got.tokens.begin(), got.tokens.begin() + count * c.dim);
          CHECK(ref::gather_mismatches<TestType, TestType>(expected, tokens.rows, rows) == 0);
          for (std::size_t j = count; j < got.source.size(); ++j)
            CHECK(got.source[j] == selection_buffers<TestType>::source_sentinel);
        }
}

TEST_CASE("hired splits the budget as the original does", "[hired]") {
  const token_grid grid{5, 24, 24};
  // total = int(2880 · 0.2) = 576, full = min(int(576 · 0.5), 576) = 288, sub_total = 288.
  const detail::hired_split s = detail::hired_budgets(hired{}, grid);
  CHECK(s.full == 288);
  CHECK(s.sub_total == 288);
  CHECK(s.marks == 288);
  CHECK(retained_count(hired{}, problem{grid, 0}) == 576);
  // alpha = 0: the full image keeps nothing; budget 1: sub_total is capped at the sub-crops' 2304.
  CHECK(detail::hired_budgets(hired{1.0, 0.0, 2, 2}, grid).sub_total == 2304);
  CHECK(detail::hired_budgets(hired{1.0, 0.0, 2, 2}, grid).full == 0);

  // The early attention marks 288 tokens: the left half of the full image (top-left quadrant
  // highest). Spatially they are the two left quadrants; the original's row bands see a quarter
  // in each band of six rows.
  std::vector<float> early(576, 0.0f);
  for (index_t h = 0; h < 24; ++h)
    for (index_t w = 0; w < 12; ++w) early[static_cast<std::size_t>(h * 24 + w)] = h < 12 ? 3.0f : 2.0f;
  CHECK(ref::hired_partition_budgets(hired{}, grid, early) == std::vector<index_t>{288, 144, 0, 144, 0});
  CHECK(ref::hired_partition_budgets(hired::original(2, 2), grid, early) ==
        std::vector<index_t>{288, 72, 72, 72, 72});
  // The backend splits the same way: count the kept tokens of each partition.
  const std::vector<float> scores = smooth_scores(grid.tokens(), 4);
  for (const hired& p : {hired{}, hired::original(2, 2)}) {
    const counted_buffers<float> got = run<float, float>(p, grid, scores, early, view<const float, 2>{}, 1);
    std::vector<index_t> per_part(5, 0);
    for (std::int64_t j = 0; j < got.count; ++j) ++per_part[static_cast<std::size_t>(got.source[static_cast<std::size_t>(j)] / 576)];
    CHECK(per_part == ref::hired_partition_budgets(p, grid, early));
  }
  // No mark at all (alpha = 1): the sub-crops keep nothing.
  const std::vector<index_t> none = ref::hired_partition_budgets(hired{0.6, 1.0, 2, 2}, grid, early);
  CHECK(none == std::vector<index_t>{576, 0, 0, 0, 0});
}

TEST_CASE("hired rejects bad input and writes nothing", "[hired][bad_input]") {
  const token_grid grid{5, 4, 4};
  CHECK(can_implement(hired{0.2, 0.5, 2, 2}, problem{grid, 0}) == status::ok);
  CHECK(can_implement(hired{1.5, 0.5, 2, 2}, problem{grid, 0}) == status::invalid_ratio);
  CHECK(can_implement(hired{0.2, NAN, 2, 2}, problem{grid, 0}) == status::invalid_ratio);
  CHECK(can_implement(hired{0.2, 0.5, 1, 3}, problem{grid, 0}) == status::invalid_parameter);
  CHECK(can_implement(hired{0.2, 0.5, 0, 4}, problem{grid, 0}) == status::invalid_parameter);
  // A partition whose rows · cols overflows (2^62 · 4 wraps to 0 = T − 1 on one frame): no product.
  CHECK(can_implement(hired{0.2, 0.5, index_t{1} << 62, 4}, problem{token_grid{1, 4, 4}, 0}) == status::invalid_parameter);
  CHECK(can_implement(hired{0.2, 0.5, index_t{1} << 62, 4}, problem{grid, 0}) == status::invalid_parameter);
  CHECK(can_implement(hired::original(1, 2), problem{token_grid{3, 5, 7}, 0}) == status::invalid_parameter);
  CHECK(can_implement(hired{0.01, 0.5, 2, 2}, problem{grid, 0}) == status::invalid_budget);  // int(80 · 0.01) = 0
  CHECK(can_implement(hired{0.2, 0.5, 1, 1}, problem{token_grid{1, 4, 4}, 0}) == status::invalid_parameter);
  CHECK(can_implement(hired{}, problem{token_grid{0, 4, 4}, 0}) == status::empty_input);

  const index_t n = grid.tokens(), dim = 3;
  const std::vector<float> scores = smooth_scores(n, 1), early = smooth_scores(16, 2);
  std::vector<float> rows(static_cast<std::size_t>(n * dim), 1.0f);
  const hired p{0.5, 0.5, 2, 2};
  counted_buffers<float> out(retained_count(p, problem{grid, dim}), dim);
  host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
  const hired_inputs<float> good{grid, make_view(scores.data(), n), make_view(early.data(), 16),
                                 make_view(rows.data(), n, dim)};
  hired_inputs<float> in = good;
  in.early_scores = make_view(early.data(), 15);
  CHECK(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::shape_mismatch);
  in = good;
  in.scores = view<const float, 1>(nullptr, {n});
  CHECK(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::null_pointer);
  counted_outputs<float> o = out.outputs();
  o.count = view<std::int64_t, 1>(reinterpret_cast<std::int64_t*>(const_cast<float*>(early.data())), {1});
  CHECK(apply(cpu{}, p, good, o, ws.get()) == status::aliasing);
  o = out.outputs();
  o.source = {};
  o.count = {};
  CHECK(apply(cpu{}, p, good, o, ws.get()) == status::shape_mismatch);
  CHECK(apply(cpu{}, p, good, out.outputs(), workspace{ws.bytes.data(), ws.bytes.size() - 1}) ==
        status::workspace_too_small);
  CHECK(out.untouched());
  CHECK(out.count == counted_buffers<float>::count_sentinel);
  REQUIRE(apply(cpu{}, p, good, out.outputs(), ws.get()) == status::ok);
  CHECK(out.count > 0);
}

TEST_CASE("HiRED LLaVA-NeXT 2 x 2: the original's budgets and per-partition selections", "[hired][golden]") {
  const std::string dir = golden_case("hired", "c02_next_672x672_d64_b02_a05");
  const io::npy_array late = load_npy(dir + "attn_block22.npy");   // (P, 16, 577) [CLS] rows
  const io::npy_array early = load_npy(dir + "attn_block0.npy");   // (P, 16, 577)
  const io::npy_array masks = load_npy(dir + "selection_mask.npy");  // (P, 576) bool
  REQUIRE(late.dtype == "<f4");
  REQUIRE(masks.dtype == "|b1");
  const index_t parts = late.shape.at(0), heads = late.shape.at(1), keys = late.shape.at(2), per = 576;
  // The original sums the heads of the last 576 keys (the test forms these model-side scores).
  const auto head_sum = [&](const std::vector<float>& attn, index_t part) {
    std::vector<float> s(static_cast<std::size_t>(per), 0.0f);
    for (index_t h = 0; h < heads; ++h)
      for (index_t j = 0; j < per; ++j)
        s[static_cast<std::size_t>(j)] += attn[static_cast<std::size_t>((part * heads + h) * keys + keys - per + j)];
    return s;
  };
  const std::vector<float> late_all = late.as<float>(), early_all = early.as<float>();
  std::vector<float> scores;
  for (index_t part = 0; part < parts; ++part) {
    const std::vector<float> s = head_sum(late_all, part);
    scores.insert(scores.end(), s.begin(), s.end());
  }
  const std::vector<float> early_full = head_sum(early_all, 0);

  const token_grid grid{parts, 24, 24};
  const hired p = hired::original(2, 2, 0.2, 0.5);
  CHECK(ref::hired_partition_budgets(p, grid, early_full) == std::vector<index_t>{288, 69, 69, 78, 72});
  const counted_buffers<float> got = run<float, float>(p, grid, scores, early_full, view<const float, 2>{}, 2);
  REQUIRE(got.count == json_int(dir, "k_selected"));
  std::vector<unsigned char> selected(static_cast<std::size_t>(parts * per), 0);
  for (std::int64_t j = 0; j < got.count; ++j) selected[static_cast<std::size_t>(got.source[static_cast<std::size_t>(j)])] = 1;
  CHECK(selected == masks.as<unsigned char>());
}
