// tests/cpu/test_dpp.cpp — cdpruner on CPU against the greedy MAP by definition (a fresh Cholesky
// factorisation of K_SS per step, in double) over the shared case table: both kernels, relevance
// from queries, from scores or none, the split variant, every element type, scope and thread
// split; OpenVINO's count rule and test vector; bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/dpp_ref.hpp"
#include "reference/gather_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

using ref::relevance_from;

/// How far below the best gain (in double) a fp32 pick may fall: rounding, plus OpenVINO's 1e-6
/// pivot shift and skipped coefficients, with a wide margin.
constexpr double gain_slack = 1e-4;

template <class Ein, class Eout>
void check_against_oracle(const cdpruner& p, const shape_case& c, relevance_from from, int nth) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> rows = continuous_rows<Ein>(n, c.dim, c.rows, 5 + static_cast<std::uint64_t>(n));
  const token_matrix<Ein> query = continuous_rows<Ein>(2, c.dim, layout::contiguous, 77);
  const std::vector<float> scores = importance(n, 31);
  diversity_inputs<Ein> in{c.grid, rows.rows, {}, {}, {}};
  if (from == relevance_from::query) in.query = query.rows;
  if (from == relevance_from::scores) in.scores = make_view(scores.data(), n);
  const diversity_buffers<Eout> got = run_shares<Ein, Eout>(p, in, c.dim, nth);
  INFO("relevance " << static_cast<int>(from) << " kernel " << static_cast<int>(p.kernel) << " w "
                    << p.relevance_weight << " nth " << nth);

  CHECK(ref::dpp_worst_group_shortfall(p, c.grid, view<const Ein, 2>(rows.rows), scores,
                                       view<const Ein, 2>(query.rows), from, got.picks) <= gain_slack);
  const detail::selection_groups g = detail::groups_of(p.within, c.grid);
  const index_t k = got.kept / g.groups;
  std::vector<std::int64_t> kept = got.picks;
  for (index_t group = 0; group < g.groups; ++group) {
    const index_t first = group * g.group_tokens, middle = g.group_tokens / 2;
    if (p.split) {  // the first half's picks come first, and from the first half; the rest from the second
      CHECK(std::all_of(kept.begin() + group * k, kept.begin() + group * k + k / 2,
                        [&](std::int64_t i) { return i >= first && i < first + middle; }));
      CHECK(std::all_of(kept.begin() + group * k + k / 2, kept.begin() + (group + 1) * k,
                        [&](std::int64_t i) { return i >= first + middle && i < first + g.group_tokens; }));
    }
    std::sort(kept.begin() + group * k, kept.begin() + (group + 1) * k);
  }
  CHECK(got.source == kept);
  CHECK(std::adjacent_find(kept.begin(), kept.end()) == kept.end());
  CHECK(got.positions == ref::positions_of(kept, c.grid));
  CHECK(ref::gather_mismatches<Ein, Eout>(kept, rows.rows, got.tokens) == 0);
}

template <class Ein, class Eout>
void check_variants(const shape_case& c) {
  for_each_dpp_layout(c, [&](cdpruner p) {
    INFO(c.name << (p.within == scope::global ? " global" : " per-frame") << (p.split ? " split" : ""));
    check_against_oracle<Ein, Eout>(p, c, relevance_from::query, p.split ? 3 : 1);
    check_against_oracle<Ein, Eout>(p, c, relevance_from::scores, 1);
    check_against_oracle<Ein, Eout>(p, c, relevance_from::none, 1);
    for (const float w : {0.0f, 1.0f}) {
      p.relevance_weight = w;
      check_against_oracle<Ein, Eout>(p, c, relevance_from::query, 1);
    }
    p.kernel = dpp_kernel::original;
    check_against_oracle<Ein, Eout>(p, c, relevance_from::scores, 2);
  });
}

}  // namespace

TEST_CASE("cdpruner: f16 rows and queries select as fp32 ones of the same values", "[dpp]") {
  // The documented contract: fp32 arithmetic from exact conversions, in the order fp32 rows are
  // summed in, so the picks are the fp32 picks and the rows moved the same values.
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    const token_matrix<f16> half = continuous_rows<f16>(n, c.dim, c.rows, 5 + static_cast<std::uint64_t>(n));
    const token_matrix<f16> half_query = continuous_rows<f16>(3, c.dim, c.rows, 78);
    const token_matrix<float> full = widened(half, c.rows), full_query = widened(half_query, c.rows);
    const std::vector<float> scores = importance(n, 31);
    for (const scope within : {scope::global, scope::per_frame})
      for (const bool split : {false, true})
        for (const relevance_from from : {relevance_from::query, relevance_from::scores, relevance_from::none}) {
          INFO(c.name << (within == scope::global ? " global" : " per-frame") << (split ? " split" : "")
                      << " relevance " << static_cast<int>(from));
          cdpruner p{keep_budget::ratio(0.25, rounding::half_away)};
          p.within = within;
          p.split = split;
          if (from == relevance_from::none) p.kernel = dpp_kernel::original;
          if (can_implement(p, problem{c.grid, c.dim}) != status::ok) continue;
          diversity_inputs<f16> in_half{c.grid, half.rows, {}, {}, {}};
          diversity_inputs<float> in_full{c.grid, full.rows, {}, {}, {}};
          if (from == relevance_from::query) in_half.query = half_query.rows, in_full.query = full_query.rows;
          if (from == relevance_from::scores)
            in_half.scores = in_full.scores = make_view(scores.data(), n);
          const diversity_buffers<float> a = run_shares<f16, float>(p, in_half, c.dim, 2);
          const diversity_buffers<float> b = run_shares<float, float>(p, in_full, c.dim, 2);
          CHECK(a.picks == b.picks);
          CHECK(a.source == b.source);
          CHECK(a.tokens == b.tokens);
        }
  }
}

TEST_CASE("cdpruner matches the greedy MAP by definition on the case table", "[dpp]") {
  for (const shape_case& c : shape_cases()) {
    check_variants<float, float>(c);
    check_variants<bf16, bf16>(c);
    check_variants<f16, float>(c);
  }
}

TEST_CASE("cdpruner's lazy greedy gives the eager greedy's picks, pivots and coefficients, bit for bit",
          "[dpp]") {
  // OpenVINO's eager greedy in fp32, written here from the library's own steps in its order of
  // operations: every token not yet picked takes each pick's coefficient as it is made. The lazy
  // greedy brings tokens up to date out of order, a batch of picks at a time, and must land on
  // the same bits. D 40 takes the wide batches (the chains outweigh the dot products from the
  // second pick on), D 1024 four picks a pass for the first 16 picks.
  using namespace detail;
  for (const index_t dim : {40, 1024}) {
    const index_t n = 150, k = 60;
    rng r(91 + static_cast<std::uint64_t>(dim));
    std::vector<float> x(static_cast<std::size_t>(n * dim)), m(static_cast<std::size_t>(n));
    for (float& v : x) v = 0.3f + r.uniform();
    for (float& v : m) v = r.uniform();
    const view<const float, 2> rows = make_view(static_cast<const float*>(x.data()), n, dim);
    cdpruner p{keep_budget::count(k)};
    p.kernel = dpp_kernel::openvino;
    p.relevance_weight = 0.3f;
    INFO("D " << dim);

    // The lazy greedy, its scratch kept for the coefficients.
    arena counting;
    dpp_scratch::carve(counting, n, k, dim);
    std::vector<std::byte> bytes(counting.used());
    arena carver(workspace{bytes.data(), bytes.size()});
    const dpp_scratch s = dpp_scratch::carve(carver, n, k, dim);
    REQUIRE(carver.fits());
    dpp_greedy<compile_time_arch>(p, rows, make_view(static_cast<const float*>(m.data()), n), view<const float, 2>{}, k, s,
                                  s.picks);

    // The eager greedy.
    const row_set<compile_time_arch, float> set{rows};
    std::vector<float> scale(static_cast<std::size_t>(n)), rel(static_cast<std::size_t>(n)), gain(static_cast<std::size_t>(n));
    std::vector<float> c(static_cast<std::size_t>(n * k)), pivot(static_cast<std::size_t>(k));
    const float low = *std::min_element(m.begin(), m.end()), range = sub_rn(*std::max_element(m.begin(), m.end()), low);
    for (index_t i = 0; i < n; ++i) {
      const std::size_t u = static_cast<std::size_t>(i);
      scale[u] = dpp_scale(set.template pair<pair_op::dot>(i, i));
      rel[u] = dpp_relevance(true, m[u], low, range);
    }
    const auto kernel = [&](index_t i, index_t j, float dot) {
      return dpp_entry(true, p.relevance_weight, dot, scale[static_cast<std::size_t>(i)], scale[static_cast<std::size_t>(j)],
                       rel[static_cast<std::size_t>(i)], rel[static_cast<std::size_t>(j)]);
    };
    for (index_t i = 0; i < n; ++i)
      gain[static_cast<std::size_t>(i)] = dpp_gain(kernel(i, i, set.template pair<pair_op::dot>(i, i)));
    std::vector<bool> picked(static_cast<std::size_t>(n), false);
    std::vector<index_t> picks;
    for (index_t t = 0; t < k; ++t) {
      index_t j = -1;
      for (index_t i = 0; i < n; ++i)
        if (!picked[static_cast<std::size_t>(i)] &&
            (j < 0 || rank_key(gain[static_cast<std::size_t>(i)], i) > rank_key(gain[static_cast<std::size_t>(j)], j)))
          j = i;
      picks.push_back(j);
      picked[static_cast<std::size_t>(j)] = true;
      pivot[static_cast<std::size_t>(t)] = dpp_scale(gain[static_cast<std::size_t>(j)]);
      for (index_t i = 0; i < n; ++i) {
        if (picked[static_cast<std::size_t>(i)]) continue;
        float e = kernel(j, i, set.template pair<pair_op::dot>(i, j));
        for (index_t q = 0; q < t; ++q)
          e = dpp_orthogonalise(e, c[static_cast<std::size_t>(j * k + q)], c[static_cast<std::size_t>(i * k + q)]);
        e = mul_rn(e, pivot[static_cast<std::size_t>(t)]);
        c[static_cast<std::size_t>(i * k + t)] = e;
        gain[static_cast<std::size_t>(i)] = dpp_gain(sub_rn(gain[static_cast<std::size_t>(i)], mul_rn(e, e)));
      }
    }

    std::size_t pick_mismatches = 0, bit_mismatches = 0;
    for (index_t t = 0; t < k; ++t) {
      pick_mismatches += s.picks[t] != picks[static_cast<std::size_t>(t)];
      bit_mismatches += float_bits(s.pivot[t]) != float_bits(pivot[static_cast<std::size_t>(t)]);
      const index_t j = picks[static_cast<std::size_t>(t)];
      for (index_t q = 0; q < t; ++q)
        bit_mismatches += float_bits(s.coefficients[j * k + q]) != float_bits(c[static_cast<std::size_t>(j * k + q)]);
    }
    CHECK(pick_mismatches == 0);
    CHECK(bit_mismatches == 0);
  }
}

TEST_CASE("cdpruner: a NaN relevance is picked last and leaves the min-max bounds to the others, wherever it sits",
          "[dpp]") {
  // Its gain is NaN, read as -FLT_MAX: no other token's kernel entry involves it until it is
  // picked, so the picks are those of the tokens without it. Before, the CPU took the bounds by
  // std::minmax_element, whose answer with a NaN depends on where it sits.
  const index_t n = 6, dim = 3;
  const token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 8);
  const std::vector<float> base = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f};
  for (const dpp_kernel kernel : {dpp_kernel::openvino, dpp_kernel::original}) {
    for (index_t nan_at = 0; nan_at < n; ++nan_at) {
      INFO("kernel " << static_cast<int>(kernel) << " NaN at " << nan_at);
      std::vector<float> scores = base, others_scores, others_rows;
      scores[static_cast<std::size_t>(nan_at)] = std::numeric_limits<float>::quiet_NaN();
      for (index_t i = 0; i < n; ++i) {
        if (i == nan_at) continue;
        others_scores.push_back(base[static_cast<std::size_t>(i)]);
        for (index_t d = 0; d < dim; ++d) others_rows.push_back(rows.rows(i, d));
      }
      cdpruner p{keep_budget::count(3)};
      p.kernel = kernel;
      diversity_inputs<float> in{sequence_grid(n), rows.rows, {}, make_view(scores.data(), n), {}};
      const diversity_buffers<float> got = run_shares<float, float>(p, in, dim);
      diversity_inputs<float> without{sequence_grid(n - 1), make_view(static_cast<const float*>(others_rows.data()), n - 1, dim),
                                      {}, make_view(others_scores.data(), n - 1), {}};
      std::vector<std::int64_t> want = run_shares<float, float>(p, without, dim).picks;
      for (std::int64_t& i : want) i += i >= nan_at;
      CHECK(got.picks == want);
    }
  }
}

TEST_CASE("the DPP oracle reproduces OpenVINO's own test vector", "[dpp]") {
  // Checks the oracle the other cases compare with, not the library.
  // tests/cpp/test_cdpruner_dpp.cpp of openvinotoolkit/openvino.genai: k = 1 -> {1}, k = 3 -> 1, 0, 3.
  const ref::dpp_kernel_matrix kernel{4, {.8, .3, .1, .2, .3, .9, .4, .1, .1, .4, .7, .5, .2, .1, .5, .6}};
  CHECK(ref::dpp_picks(kernel, 1) == std::vector<std::int64_t>{1});
  CHECK(ref::dpp_picks(kernel, 3) == std::vector<std::int64_t>{1, 0, 3});
  CHECK(ref::dpp_gains(kernel, {1, 0})[2] == Approx(0.5206).margin(1e-4));
}

TEST_CASE("cdpruner::openvino: OpenVINO's pruning_ratio and count rule", "[dpp]") {
  const cdpruner p = cdpruner::openvino(70);
  CHECK(p.split);
  CHECK(p.within == scope::per_frame);
  CHECK(p.relevance_weight == 0.5f);
  CHECK(retained_count(p, problem{image_grid(10, 10), 8}) == 30);    // std::round(100 · 0.3)
  CHECK(retained_count(cdpruner::openvino(50), problem{sequence_grid(5), 8}) == 3);  // 2.5 -> 3
  CHECK(retained_count(cdpruner::openvino(25), problem{token_grid{2, 2, 5}, 8}) == 16);  // 8 per frame
  CHECK(can_implement(cdpruner::openvino(100), problem{sequence_grid(5), 8}) == status::invalid_budget);
  CHECK(can_implement(cdpruner::openvino(120), problem{sequence_grid(5), 8}) == status::invalid_ratio);
}

TEST_CASE("cdpruner: split keeps floor(k/2) from the first half and the rest from the second", "[dpp]") {
  const token_matrix<float> rows = continuous_rows<float>(9, 6, layout::contiguous, 12);
  cdpruner p{keep_budget::count(5)};
  p.split = true;
  const diversity_buffers<float> got = run_shares<float, float>(p, {sequence_grid(9), rows.rows, {}, {}, {}}, 6);
  CHECK(std::count_if(got.source.begin(), got.source.end(), [](std::int64_t i) { return i < 4; }) == 2);
  // One token: the first half is empty and keeps nothing.
  const diversity_buffers<float> one =
      run_shares<float, float>(p = cdpruner{keep_budget::count(1), 0.5f, dpp_kernel::openvino, true},
                               {sequence_grid(1), detail::row_range(view<const float, 2>(rows.rows), 0, 1), {}, {}, {}}, 6);
  CHECK(one.source == std::vector<std::int64_t>{0});
}

TEST_CASE("cdpruner: bad input leaves every output untouched", "[dpp][bad-input]") {
  const token_matrix<float> rows = continuous_rows<float>(16, 8, layout::contiguous, 4);
  const token_matrix<float> query = continuous_rows<float>(2, 8, layout::contiguous, 5);
  diversity_buffers<float> out(4, 8);
  host_workspace ws(1 << 16);
  const token_grid grid = sequence_grid(16);
  for (const float w : {-0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()})
    CHECK(apply(cpu{}, cdpruner{keep_budget::count(4), w}, diversity_inputs<float>{grid, rows.rows, {}, {}, query.rows},
                out.outputs(), ws.get()) == status::invalid_parameter);
  const view<const float, 2> narrow_query(query.rows.data_handle(), {2, 7}, {8, 1});
  CHECK(apply(cpu{}, cdpruner{keep_budget::count(4)}, diversity_inputs<float>{grid, rows.rows, {}, {}, narrow_query},
              out.outputs(), ws.get()) == status::shape_mismatch);
  const view<const float, 2> no_queries(query.rows.data_handle(), {0, 8}, {8, 1});
  CHECK(apply(cpu{}, cdpruner{keep_budget::count(4)}, diversity_inputs<float>{grid, rows.rows, {}, {}, no_queries},
              out.outputs(), ws.get()) == status::empty_input);
  std::vector<float> short_scores(15, 1.0f);
  CHECK(apply(cpu{}, cdpruner{keep_budget::count(4)},
              diversity_inputs<float>{grid, rows.rows, {}, make_view(short_scores.data(), 15), {}}, out.outputs(),
              ws.get()) == status::shape_mismatch);
  CHECK(out.untouched());
}
