// tests/cpu/test_framefusion.cpp — framefusion and framefusion_similarity on CPU: the original's
// golden outputs (threshold and top-k branch), the oracle over the shared case table (every
// element type and thread split, both branches, carried source and sizes), the merge invariants,
// the budget, the documented results for chains, ties, zero and NaN rows, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/framefusion.hpp>

#include "io/npy.hpp"
#include "reference/framefusion_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Sentinel-filled outputs of framefusion, sized by the bound: a merge's five outputs plus the
/// count, ratio and phase; `untouched()` tells whether anything was written.
template <class E>
struct ff_buffers : merge_buffers<E> {
  std::int64_t count = -99;
  double ratio = -1.0;
  std::int32_t phase = -1;
  index_t rows = 0;

  ff_buffers(index_t rows_, index_t dim_) : merge_buffers<E>(rows_, rows_, dim_), rows(rows_) {}

  framefusion_outputs<E> outputs() {
    framefusion_outputs<E> o = merge_buffers<E>::template outputs<framefusion_outputs<E>>();
    o.count = make_view(&count, 1);
    o.ratio = make_view(&ratio, 1);
    o.phase = make_view(&phase, 1);
    return o;
  }
  bool untouched() const {
    return count == -99 && ratio == -1.0 && phase == -1 && merge_buffers<E>::untouched();
  }
  /// Every output, bit for bit (rows past the count included: they must stay untouched).
  bool same_bits(const ff_buffers& o) const {
    return merge_buffers<E>::same_bits(o) && count == o.count && ratio == o.ratio && phase == o.phase;
  }
  /// The first `count` token values, as floats.
  std::vector<float> kept_tokens() const {
    std::vector<float> t;
    for (std::int64_t i = 0; i < count * this->dim; ++i) t.push_back(to_float(this->tokens[static_cast<std::size_t>(i)]));
    return t;
  }
};

/// framefusion run as `nth` shares, in reverse order.
template <class Ein, class Eout>
ff_buffers<Eout> run_ff(const framefusion& p, const framefusion_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  REQUIRE(retained_count(p, prob) == in.grid.tokens());
  ff_buffers<Eout> out(detail::framefusion_rows(in), dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// framefusion_similarity run as `nth` shares.
template <class E>
std::vector<float> run_similarity(const framefusion_inputs<E>& in, int nth = 1) {
  const problem prob{in.grid, 1};
  std::vector<float> sim(static_cast<std::size_t>(detail::framefusion_rows(in)), -5.0f);
  host_workspace ws(workspace_bytes(cpu{0, nth}, framefusion_similarity{}, prob));
  const framefusion_similarity_outputs<> out{make_view(sim.data(), static_cast<index_t>(sim.size()))};
  for (int ith = 0; ith < nth; ++ith)
    REQUIRE(apply(cpu{ith, nth}, framefusion_similarity{}, in, out, ws.get()) == status::ok);
  return sim;
}

/// Video rows as FrameFusion meets them: each slot an AR(1) chain over frames, x_t = c·x_{t−1} +
/// √(1 − c²)·noise, c from 0.3 to 0.98 by slot, so some slots merge most frames and others few.
template <class E>
token_matrix<E> video_rows(const token_grid& grid, index_t dim, layout how, std::uint64_t seed) {
  token_matrix<E> m = make_tokens<E>(grid.tokens(), dim, how, seed);
  rng r(seed * 11 + 3);
  const index_t hw = grid.frame_tokens();
  for (index_t i = 0; i < grid.tokens(); ++i) {
    const float c = 0.3f + 0.68f * static_cast<float>((i % hw) * 7 % 11) / 10.0f;
    for (index_t k = 0; k < dim; ++k) {
      const float noise = r.uniform() * 1.7f;
      const float x = i < hw ? noise : c * to_float(m.rows(i - hw, k)) + std::sqrt(1.0f - c * c) * noise;
      m.rows(i, k) = from_float<E>(x);
    }
  }
  return m;
}

/// The merge invariants: every slot's source maps to it and comes first among its rows; sizes
/// count the originals assigned to a slot (unit input sizes) and add up to the rows; with uniform
/// weights Σ_q size_q·x_q = Σ_r x_r (mass conservation), in double, within fp32 rounding.
template <class E>
void check_invariants(const ff_buffers<E>& got, const std::vector<double>& column_sums) {
  REQUIRE(got.count >= 1);
  REQUIRE(got.count <= got.rows);
  std::vector<double> mass(static_cast<std::size_t>(got.dim), 0.0), slack(mass.size(), 0.0);
  for (index_t q = 0; q < got.count; ++q) {
    INFO("slot " << q);
    const std::int64_t src = got.source[static_cast<std::size_t>(q)];
    CHECK(got.assign[static_cast<std::size_t>(src)] == q);
    const auto first = std::find(got.assign.begin(), got.assign.end(), q) - got.assign.begin();
    CHECK(first == src);
    const auto members = std::count(got.assign.begin(), got.assign.end(), static_cast<std::int64_t>(q));
    CHECK(static_cast<float>(members) == got.sizes[static_cast<std::size_t>(q)]);
    if (q > 0) CHECK(src > got.source[static_cast<std::size_t>(q - 1)]);
    for (index_t c = 0; c < got.dim; ++c) {
      const double v = static_cast<double>(members) * to_float(got.tokens[static_cast<std::size_t>(q * got.dim + c)]);
      mass[static_cast<std::size_t>(c)] += v;
      slack[static_cast<std::size_t>(c)] += std::abs(v) * (1e-5 + output_eps<E>());  // each stored row's rounding
    }
  }
  CHECK(std::accumulate(got.sizes.begin(), got.sizes.begin() + got.count, 0.0) == static_cast<double>(got.rows));
  CHECK(std::all_of(got.assign.begin(), got.assign.end(), [&](std::int64_t a) { return a >= 0 && a < got.count; }));
  std::size_t bad = 0;
  for (std::size_t c = 0; c < mass.size(); ++c) bad += !(std::abs(mass[c] - column_sums[c]) <= slack[c] + 1e-6);
  CHECK(bad == 0);
}

/// One (case, policy) run: the similarities certified against the oracle's doubles; decisions and
/// outputs exactly as the oracle's on the backend's own similarities; the thread splits and the
/// given-similarity path bit-identical; the invariants.
template <class Ein, class Eout>
std::int32_t check_against_oracle(const framefusion& p, const shape_case& c) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> x = video_rows<Ein>(c.grid, c.dim, c.rows, 17 + static_cast<std::uint64_t>(n));
  framefusion_inputs<Ein> in{};
  in.grid = c.grid;
  in.tokens = x.rows;
  const problem prob{c.grid, c.dim};
  REQUIRE(can_implement(p, prob) == status::ok);

  std::vector<std::int64_t> src(static_cast<std::size_t>(n));
  std::iota(src.begin(), src.end(), 0);
  const std::vector<float> sim = run_similarity(in, 1);
  const std::vector<double> want_sim = ref::framefusion_cosines(c.grid, src, view<const Ein, 2>(x.rows));
  for (index_t r = 0; r < n; ++r) {
    const double w = want_sim[static_cast<std::size_t>(r)], g = sim[static_cast<std::size_t>(r)];
    INFO("row " << r << " sim " << g << " want " << w);
    CHECK(std::abs(g - w) <= 1e-5);
  }
  CHECK(run_similarity(in, 3) == sim);

  const ff_buffers<Eout> got = run_ff<Ein, Eout>(p, in, c.dim);
  const ref::framefusion_result want =
      ref::framefusion_run(p, framefusion_sparsity(p).sparsity, c.grid, src, sim, {}, view<const Ein, 2>(x.rows));
  CHECK(got.ratio == want.ratio);
  CHECK(got.phase == static_cast<std::int32_t>(want.phase));
  REQUIRE(got.count == static_cast<std::int64_t>(want.source.size()));
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + got.count) == want.source);
  CHECK(std::vector<std::int32_t>(got.positions.begin(), got.positions.begin() + 3 * got.count) == want.positions);
  CHECK(got.assign == want.assign);
  for (index_t q = 0; q < got.count; ++q) CHECK(got.sizes[static_cast<std::size_t>(q)] == want.sizes[static_cast<std::size_t>(q)]);
  const std::vector<float> t = got.kept_tokens();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < t.size(); ++i)
    bad += !(std::abs(t[i] - want.tokens[i]) <= 1e-6 * (1 + std::abs(want.tokens[i])) * 4 + output_eps<Eout>() * std::abs(want.tokens[i]));
  CHECK(bad == 0);
  CHECK(std::all_of(got.source.begin() + got.count, got.source.end(), [](std::int64_t s) { return s == -12345; }));

  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_ff<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
  }
  framefusion_inputs<Ein> given = in;
  given.similarity = make_view<const float>(sim.data(), n);
  CHECK(run_ff<Ein, Eout>(p, given, c.dim, 2).same_bits(got));

  std::vector<double> sums(static_cast<std::size_t>(c.dim), 0.0);
  for (index_t r = 0; r < n; ++r)
    for (index_t k = 0; k < c.dim; ++k) sums[static_cast<std::size_t>(k)] += to_float(x.rows(r, k));
  check_invariants(got, sums);
  return got.phase;
}

template <class Ein, class Eout>
void run_case_table() {
  // The default (threshold branch on these rows), a low threshold (top-k branch for T ≥ 4), and a
  // history that leaves a small bound (top-k with few merges).
  const double history[1] = {0.5};
  framefusion low{};
  low.threshold = -0.5f;
  framefusion late{};
  late.threshold = 0.3f;
  late.history = make_view(history, 1);
  std::vector<int> phases(3, 0);
  for (const shape_case& c : shape_cases())
    for (const framefusion& p : {framefusion{}, low, late}) {
      INFO(c.name << " threshold " << p.threshold << " history " << p.history.extent(0));
      ++phases.at(static_cast<std::size_t>(check_against_oracle<Ein, Eout>(p, c)));
    }
  // Both branches ran, and both outcomes of the threshold branch.
  CHECK(phases[0] > 0);
  CHECK(phases[1] > 0);
  CHECK(phases[2] > 0);
}

/// A golden case: the text prefix and suffix pass through, the visual rows go through framefusion.
void check_golden(const std::string& name, std::int32_t want_phase) {
  const std::string dir = golden_case("framefusion", name);
  const index_t frames = json_int(dir, "T"), h = json_int(dir, "H"), w = json_int(dir, "W");
  const index_t prefix = json_int(dir, "text_prefix_len (image_token_start_index)");
  const io::npy_array input = load_npy(dir + "input.npy");
  const index_t q_len = input.shape.at(0), dim = input.shape.at(1);
  const std::vector<float> x = input.as<float>();
  const token_grid grid{frames, h, w};
  const index_t n = grid.tokens(), suffix = q_len - prefix - n;
  // The slots the original read: patch_type of visual token i is i mod H·W.
  const std::vector<std::int64_t> patch_type = load_npy(dir + "patch_type.npy").as<std::int64_t>();
  for (index_t i = 0; i < q_len; ++i) {
    const bool visual = i >= prefix && i < prefix + n;
    REQUIRE(patch_type[static_cast<std::size_t>(i)] == (visual ? (i - prefix) % (h * w) : -1));
  }

  framefusion_inputs<float> in{};
  in.grid = grid;
  in.tokens = make_view<const float>(x.data() + prefix * dim, n, dim);
  framefusion p{};
  p.threshold = static_cast<float>(json_number(dir, "similarity_lower_bound"));
  p.cost = json_number(dir, "cost");
  p.ratio_lower_bound = json_number(dir, "ratio_lower_bound");
  p.layers = json_int(dir, "num_layers (hard-coded in _compute_pruning_ratio)");
  const ff_buffers<float> got = run_ff<float, float>(p, in, dim, 2);
  CHECK(got.phase == want_phase);

  // similarity_by_patch: the rows in slot order.
  const std::vector<float> sim = run_similarity(in, 2);
  const std::vector<float> want_sim = load_npy(dir + "similarity_step0.npy").as<float>();
  const std::vector<std::int64_t> by_patch = load_npy(dir + "token_index_by_patch_step0.npy").as<std::int64_t>();
  REQUIRE(want_sim.size() == static_cast<std::size_t>(n));
  for (std::size_t k = 0; k < want_sim.size(); ++k) {
    const std::int64_t r = by_patch[k] - prefix;
    INFO("slot-order " << k << " row " << r);
    CHECK(std::abs(sim[static_cast<std::size_t>(r)] - want_sim[k]) <= 1e-6f);
  }

  // The whole sequence: text rows keep their place around the merged visual rows.
  std::vector<std::int64_t> kept, assign(static_cast<std::size_t>(q_len));
  for (index_t i = 0; i < prefix; ++i) kept.push_back(i), assign[static_cast<std::size_t>(i)] = i;
  for (index_t q = 0; q < got.count; ++q) kept.push_back(prefix + got.source[static_cast<std::size_t>(q)]);
  for (index_t r = 0; r < n; ++r) assign[static_cast<std::size_t>(prefix + r)] = prefix + got.assign[static_cast<std::size_t>(r)];
  for (index_t j = 0; j < suffix; ++j) {
    kept.push_back(prefix + n + j);
    assign[static_cast<std::size_t>(prefix + n + j)] = prefix + got.count + j;
  }
  CHECK(kept == load_npy(dir + "kept_indices.npy").as<std::int64_t>());
  CHECK(assign == load_npy(dir + "assign.npy").as<std::int64_t>());

  const std::vector<float> want = load_npy(dir + "tokens.npy").as<float>();
  REQUIRE(want.size() == kept.size() * static_cast<std::size_t>(dim));
  double worst = 0;
  for (std::size_t k = 0; k < kept.size(); ++k) {
    const auto q = static_cast<index_t>(k);
    for (index_t c = 0; c < dim; ++c) {
      const float g = q < prefix ? x[static_cast<std::size_t>(q * dim + c)]
                      : q < prefix + got.count ? got.tokens[static_cast<std::size_t>((q - prefix) * dim + c)]
                                               : x[static_cast<std::size_t>((kept[k]) * dim + c)];
      const float e = want[k * static_cast<std::size_t>(dim) + static_cast<std::size_t>(c)];
      worst = worse(worst, std::abs(static_cast<double>(g) - e) / std::max(1.0, std::abs(static_cast<double>(e))));
    }
  }
  INFO("largest relative difference " << worst);
  CHECK(worst <= 1e-5);
  std::vector<double> sums(static_cast<std::size_t>(dim), 0.0);
  for (index_t r = 0; r < n; ++r)
    for (index_t c = 0; c < dim; ++c) sums[static_cast<std::size_t>(c)] += x[static_cast<std::size_t>((prefix + r) * dim + c)];
  check_invariants(got, sums);
}

}  // namespace

TEST_CASE("FrameFusion original: threshold branch, 4 frames of 4 x 4", "[golden][framefusion]") {
  check_golden("small_T4_g4x4", static_cast<std::int32_t>(framefusion_phase::merging));
}

TEST_CASE("FrameFusion original: top-k branch, 6 frames of 7 x 7", "[golden][framefusion]") {
  check_golden("topk_branch_T6_g7x7", static_cast<std::int32_t>(framefusion_phase::finished));
}

TEST_CASE("framefusion: the oracle over the case table, fp32", "[framefusion]") { run_case_table<float, float>(); }
TEST_CASE("framefusion: the oracle over the case table, f16", "[framefusion]") { run_case_table<f16, f16>(); }
TEST_CASE("framefusion: the oracle over the case table, bf16 to fp32", "[framefusion]") { run_case_table<bf16, float>(); }

TEST_CASE("framefusion: the budget (_compute_pruning_ratio)", "[framefusion]") {
  const auto bound = [](double cost, std::vector<double> h, index_t layers = 28) {
    return framefusion_sparsity(cost, make_view<const double>(h.data(), static_cast<index_t>(h.size())), layers);
  };
  CHECK(bound(0.3, {}).sparsity == 1.0 - 28 * 0.3 / 28.0);
  // After one layer at 0.296875: remain = 8.4 − 0.703125, over 27 layers of 0.703125.
  const double u = 1.0 - (28 * 0.3 - 0.703125) / (27 * 0.703125);
  CHECK(bound(0.3, {0.296875}).sparsity == u);
  const double p1 = 0.8, p2 = 0.8 * 0.6;
  CHECK(bound(0.3, {0.2, 0.4}).sparsity == 1.0 - (28 * 0.3 - (p1 + p2)) / (26 * p2));
  CHECK(bound(2.0, {}).sparsity == 0.0);  // quotient above 1
  CHECK(bound(0.3, {}, 10).sparsity == 1.0 - 3.0 / 10.0);
  CHECK(bound(0.01, {0.1}).code == status::invalid_budget);  // 0.28 − 0.9 < 0: "cost is too small"
  CHECK(bound(0.3, {1.0}).code == status::invalid_ratio);
  CHECK(bound(0.3, {-0.1}).code == status::invalid_ratio);
  CHECK(bound(0.3, {std::nan("")}).code == status::invalid_ratio);
  CHECK(bound(std::nan(""), {}).code == status::invalid_parameter);
  CHECK(bound(0.3, {0.1, 0.1}, 2).code == status::invalid_parameter);  // no layer left
  CHECK(bound(0.3, {}, 0).code == status::invalid_parameter);
  CHECK(framefusion_sparsity(0.3, view<const double, 1>(nullptr, {2}), 28).code == status::null_pointer);
  // The prune budget: round(n·(1 − u)), half to even.
  CHECK(kept_count(framefusion_prune_budget(0.5), 5).count == 2);  // 2.5 → 2
  CHECK(kept_count(framefusion_prune_budget(0.5), 7).count == 4);  // 3.5 → 4
  CHECK(kept_count(framefusion_prune_budget(0.7), 50).count == 15);
  CHECK(kept_count(framefusion_prune_budget(0.99), 20).code == status::invalid_budget);  // 0.2 → 0
}

TEST_CASE("framefusion: chains, ≥ at the threshold, zero and NaN rows, by hand", "[framefusion]") {
  // 5 frames of 1 x 2 (slots 0 and 1), 2 values per row. Slot 0: frames 0 1 2 equal (sim 1),
  // frame 3 orthogonal, frame 4 equal to frame 3: chains {0,1,2} and {3,4}. Slot 1: frame 1 at
  // cosine exactly 0.5 to frame 0 (merges at threshold 0.5: ≥), frame 2 zero (NaN: never
  // merges), frame 3 equal to frame 2's zero row (NaN), frame 4 holds a NaN.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float x[10 * 2] = {1, 0, 1, 0,  //
                           1, 0, 0.5f, 0.8660254f,  // sim(1, 0) of slot 1 = 0.5 (rounded in fp32)
                           1, 0, 0, 0,  //
                           0, 2, 0, 0,  //
                           0, 3, nan, 1};
  framefusion_inputs<float> in{};
  in.grid = token_grid{5, 1, 2};
  in.tokens = make_view(x, 10, 2);
  const std::vector<float> sim = run_similarity(in, 2);
  CHECK(sim[0] == -2.0f);
  CHECK(sim[1] == -2.0f);
  CHECK(sim[2] == 1.0f);
  CHECK(sim[6] == 0.0f);  // slot 0 frame 3 against frame 2: orthogonal
  CHECK(sim[8] == 1.0f);
  CHECK(std::isnan(sim[5]));  // zero row: NaN, as the original's x·y/(‖x‖‖y‖)
  CHECK(std::isnan(sim[7]));
  CHECK(std::isnan(sim[9]));
  framefusion p{};
  p.threshold = sim[3];  // the fp32 cosine of slot 1, frames 0 and 1: exactly at the threshold
  REQUIRE(sim[3] > 0.49f);
  REQUIRE(sim[3] < 0.51f);
  const ff_buffers<float> got = run_ff<float, float>(p, in, 2, 3);
  // Merged: rows 2, 4, 8 (slot 0 frames 1, 2, 4) and 3 (slot 1 frame 1): 4 of 10, under 0.7.
  CHECK(got.ratio == 0.4);
  CHECK(got.phase == static_cast<std::int32_t>(framefusion_phase::merging));
  CHECK(got.count == 6);
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + 6) == std::vector<std::int64_t>{0, 1, 5, 6, 7, 9});
  CHECK(got.assign == std::vector<std::int64_t>{0, 1, 0, 1, 0, 2, 3, 4, 3, 5});
  CHECK(std::vector<float>(got.sizes.begin(), got.sizes.begin() + 6) == std::vector<float>{3, 2, 1, 2, 1, 1});
  CHECK(got.positions[3 * 2 + 0] == 2);  // row 5: frame 2, (0, 1)
  CHECK(got.positions[3 * 2 + 2] == 1);
  // Slot 0's chain {0, 2, 4}: (1, 0) three times; slot 1's {1, 3}: ((1 + 0.5) / 2, 0.8660254 / 2);
  // {6, 8}: (0, (2 + 3) / 2).
  CHECK(std::vector<float>(got.tokens.begin(), got.tokens.begin() + 8) ==
        std::vector<float>{1, 0, 0.75f, 0.8660254f / 2, 0, 0, 0, 2.5f});

  // Above the bound: the top ⌊u·rows⌋ by similarity, ties to the lower row. A bound of 0.3 (cost
  // 0.7): 4 of 10 ≥ 0.3 → top 3: rows 2 and 8 (1.0, the tie), then row 4 (1.0): all three tie at
  // 1 and row 3 (0.5) is left.
  framefusion tight = p;
  tight.cost = 0.7;
  REQUIRE(framefusion_sparsity(tight).sparsity == 1.0 - 0.7);
  const ff_buffers<float> top = run_ff<float, float>(tight, in, 2, 2);
  CHECK(top.phase == static_cast<std::int32_t>(framefusion_phase::finished));
  CHECK(top.ratio == 0.4);
  CHECK(top.count == 7);
  CHECK(top.assign == std::vector<std::int64_t>{0, 1, 0, 2, 0, 3, 4, 5, 4, 6});
  // Cost 0.8: u = 1 − 0.8 = 0.19999999999999996 in double, so int(u·10) = 1 (as the original),
  // one of the three tied at 1: row 2, the lowest.
  tight.cost = 0.8;
  const ff_buffers<float> one = run_ff<float, float>(tight, in, 2, 1);
  CHECK(one.count == 9);
  CHECK(one.assign == std::vector<std::int64_t>{0, 1, 0, 2, 3, 4, 5, 6, 7, 8});

  // Below ratio_lower_bound: merging finishes (pruning next).
  framefusion few = p;
  few.ratio_lower_bound = 0.5;
  CHECK(run_ff<float, float>(few, in, 2, 1).phase == static_cast<std::int32_t>(framefusion_phase::pruning));
}

TEST_CASE("framefusion: a second layer on carried source and sizes (uniform and by size)", "[framefusion]") {
  const token_grid grid{6, 3, 3};
  const token_matrix<float> x = video_rows<float>(grid, 24, layout::contiguous, 9);
  framefusion_inputs<float> in{};
  in.grid = grid;
  in.tokens = x.rows;
  const ff_buffers<float> first = run_ff<float, float>(framefusion{}, in, 24, 1);
  REQUIRE(first.count < grid.tokens());
  REQUIRE(first.phase == static_cast<std::int32_t>(framefusion_phase::merging));

  const index_t rows = first.count;
  const std::vector<double> history = {first.ratio};
  framefusion second{};
  second.threshold = 0.2f;
  second.history = make_view(history.data(), 1);
  framefusion_inputs<float> next{};
  next.grid = grid;
  next.tokens = make_view<const float>(first.tokens.data(), rows, 24);
  next.source = make_view<const std::int64_t>(first.source.data(), rows);
  next.sizes = make_view<const float>(first.sizes.data(), rows);
  for (merge_weights weights : {merge_weights::uniform, merge_weights::by_size}) {
    second.weights = weights;
    const ff_buffers<float> got = run_ff<float, float>(second, next, 24, 1);
    const std::vector<std::int64_t> src(first.source.begin(), first.source.begin() + rows);
    const std::vector<float> sizes(first.sizes.begin(), first.sizes.begin() + rows);
    const std::vector<float> sim = run_similarity(next, 2);
    const ref::framefusion_result want = ref::framefusion_run(second, framefusion_sparsity(second).sparsity, grid,
                                                              src, sim, sizes, view<const float, 2>(next.tokens));
    REQUIRE(got.count == static_cast<std::int64_t>(want.source.size()));
    CHECK(got.count < rows);
    CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.begin() + got.count) == want.source);
    CHECK(std::vector<std::int32_t>(got.positions.begin(), got.positions.begin() + 3 * got.count) == want.positions);
    CHECK(got.assign == want.assign);
    const std::vector<float> t = got.kept_tokens();
    for (std::size_t i = 0; i < t.size(); ++i) CHECK(std::abs(t[i] - want.tokens[i]) <= 1e-5 * (1 + std::abs(want.tokens[i])));
    // The sizes still count originals: they add up to N.
    CHECK(std::accumulate(got.sizes.begin(), got.sizes.begin() + got.count, 0.0) == static_cast<double>(grid.tokens()));
    CHECK(run_ff<float, float>(second, next, 24, 3).same_bits(got));
    if (weights == merge_weights::by_size) {
      // Size-weighted: every output is the plain mean of the originals it stands for.
      std::vector<std::int64_t> total(static_cast<std::size_t>(grid.tokens()));
      REQUIRE(compose_assign(make_view<const std::int64_t>(first.assign.data(), grid.tokens()),
                             make_view<const std::int64_t>(got.assign.data(), rows),
                             make_view(total.data(), grid.tokens())) == status::ok);
      for (index_t q = 0; q < got.count; ++q)
        for (index_t c = 0; c < 24; ++c) {
          double sum = 0, members = 0;
          for (index_t i = 0; i < grid.tokens(); ++i)
            if (total[static_cast<std::size_t>(i)] == q) sum += x.rows(i, c), members += 1;
          CHECK(std::abs(got.tokens[static_cast<std::size_t>(q * 24 + c)] - sum / members) <= 1e-5 * (1 + std::abs(sum / members)));
        }
    }
  }
}

TEST_CASE("framefusion: bad input leaves every output untouched", "[framefusion][bad-input]") {
  const token_grid grid{4, 3, 3};
  const index_t n = grid.tokens(), dim = 8;
  const token_matrix<float> x = video_rows<float>(grid, dim, layout::contiguous, 4);
  framefusion_inputs<float> in{};
  in.grid = grid;
  in.tokens = x.rows;
  const framefusion p{};
  const problem prob{grid, dim};
  ff_buffers<float> out(n, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  const auto rejects = [&](const framefusion& q, const problem& pr, status want) {
    CHECK(can_implement(q, pr) == want);
    CHECK(retained_count(q, pr) == 0);
    CHECK(workspace_bytes(cpu{}, q, pr) == 0);
    if (pr.grid.tokens() == n) CHECK(apply(cpu{}, q, in, out.outputs(), ws.get()) == want);
  };
  framefusion bad = p;
  bad.threshold = -2.0f;  // the original would merge across slots
  rejects(bad, prob, status::invalid_parameter);
  bad.threshold = std::nanf("");
  rejects(bad, prob, status::invalid_parameter);
  bad = p;
  bad.ratio_lower_bound = std::nan("");
  rejects(bad, prob, status::invalid_parameter);
  bad = p;
  bad.weights = static_cast<merge_weights>(5);
  rejects(bad, prob, status::invalid_parameter);
  bad = p;
  bad.cost = -0.1;
  rejects(bad, prob, status::invalid_budget);
  const double too_much[1] = {1.5};
  bad = p;
  bad.history = make_view(too_much, 1);
  rejects(bad, prob, status::invalid_ratio);
  rejects(p, problem{token_grid{0, 3, 3}, dim}, status::empty_input);
  CHECK(can_implement(p, problem{token_grid{1, -1, 3}, dim}) == status::shape_mismatch);
  CHECK(can_implement(framefusion_similarity{}, problem{token_grid{0, 3, 3}, dim}) == status::empty_input);

  framefusion_inputs<float> wrong_in = in;
  wrong_in.tokens = make_view<const float>(&x.rows(0, 0), n - 1, dim);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);
  wrong_in = in;
  wrong_in.metric = view<const float, 2>(&x.rows(0, 0), {n, 0}, {dim, 1});
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::empty_input);
  wrong_in = in;
  wrong_in.tokens = view<const float, 2>(nullptr, {n, dim}, {dim, 1});
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::null_pointer);
  std::vector<std::int64_t> src(static_cast<std::size_t>(n + 1), 0);
  wrong_in = in;
  wrong_in.source = make_view<const std::int64_t>(src.data(), n + 1);  // more rows than N
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);
  wrong_in.source = make_view<const std::int64_t>(src.data(), 0);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::empty_input);
  std::iota(src.begin(), src.end(), 0);
  src[3] = n;  // outside [0, N)
  wrong_in = in;
  wrong_in.source = make_view<const std::int64_t>(src.data(), n);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::index_out_of_range);
  std::vector<float> sizes(static_cast<std::size_t>(n), 1.0f);
  sizes[2] = 0.0f;
  wrong_in = in;
  wrong_in.sizes = make_view<const float>(sizes.data(), n);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::invalid_parameter);
  wrong_in.sizes = make_view<const float>(sizes.data(), n - 1);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);
  wrong_in = in;
  wrong_in.similarity = make_view<const float>(sizes.data(), n - 1);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);

  framefusion_outputs<float> wrong = out.outputs();
  wrong.count = {};
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);  // count is required
  wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), n - 1, dim);  // sized by the bound, not the count
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.positions = make_view(out.positions.data(), n, 2);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), n);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.count = make_view(out.assign.data() + 3, 1);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  std::vector<float> copy(x.storage.begin(), x.storage.end());
  framefusion_inputs<float> self = in;
  self.tokens = make_view<const float>(copy.data(), n, dim);
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), n, dim);  // in place
  CHECK(apply(cpu{}, p, self, wrong, ws.get()) == status::aliasing);
  double history[1] = {0.2};
  framefusion with_history = p;
  with_history.history = make_view<const double>(history, 1);
  wrong = out.outputs();
  wrong.ratio = make_view(history, 1);  // the ratio written over the history it reads
  CHECK(apply(cpu{}, with_history, in, wrong, ws.get()) == status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());

  std::vector<float> sim(static_cast<std::size_t>(n), -5.0f);
  host_workspace sws(workspace_bytes(cpu{}, framefusion_similarity{}, prob));
  CHECK(apply(cpu{}, framefusion_similarity{}, in, framefusion_similarity_outputs<>{make_view(sim.data(), n - 1)}, sws.get()) ==
        status::shape_mismatch);
  wrong_in = in;
  wrong_in.source = make_view<const std::int64_t>(src.data(), n);
  CHECK(apply(cpu{}, framefusion_similarity{}, wrong_in, framefusion_similarity_outputs<>{make_view(sim.data(), n)}, sws.get()) ==
        status::index_out_of_range);
  CHECK(apply(cpu{}, framefusion_similarity{}, in,
              framefusion_similarity_outputs<>{make_view(reinterpret_cast<float*>(copy.data()), n)},
              sws.get()) == status::ok);  // no overlap with the rows it reads (x, not copy)
  CHECK(std::all_of(sim.begin(), sim.end(), [](float s) { return s == -5.0f; }));
}

TEST_CASE("framefusion: the workspace is the carve-up, per share", "[framefusion]") {
  const problem prob{token_grid{16, 14, 14}, 1024};
  const framefusion p{};
  const std::size_t n = 16 * 196, one = workspace_bytes(cpu{}, p, prob), three = workspace_bytes(cpu{0, 3}, p, prob);
  // 8·H·W + (8 + 4 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8)·N + 8 bytes, and 63 of alignment slack per
  // buffer (11).
  CHECK(one == 8 * 196 + 68 * n + 8 + 11 * 63);
  CHECK(three == 3 * one);
  CHECK(workspace_bytes(cpu{0, 0}, p, prob) == 0);
  CHECK(workspace_bytes(cpu{}, framefusion_similarity{}, prob) == 8 * 196 + 12 * n + 3 * 63);
  std::vector<std::byte> bytes(one + 64);
  for (std::size_t shift = 0; shift < 64; shift += 8) {
    detail::arena carver(workspace{bytes.data() + shift, one});
    (void)backend<framefusion, cpu<>>::carve(carver, prob.grid, 0, 1);
    CHECK(carver.fits());
  }
}

TEST_CASE("framefusion: merge layers until the phase says prune, then prune by attention", "[framefusion]") {
  const token_grid grid{8, 3, 3};
  const index_t n = grid.tokens(), dim = 16;
  const token_matrix<float> video = video_rows<float>(grid, dim, layout::contiguous, 21);
  std::vector<float> first(video.storage.begin(), video.storage.end());
  // example-begin framefusion
  // FrameFusion inside the LLM: a merge layer after each decoder layer while the phase says so,
  // then one top-k by attention. Buffers are sized by the bound (N rows); each layer's rows are
  // the first `count` of the previous layer's outputs. (Here no decoder layer runs in between.)
  std::vector<float> rows_a(first), rows_b(n * dim);      // (rows, dim) ping-pong hidden states
  std::vector<std::int64_t> src_a(n), src_b(n), assign(n);
  std::vector<float> size_a(n, 1.0f), size_b(n);
  std::vector<std::int32_t> positions(n * 3);
  std::iota(src_a.begin(), src_a.end(), 0);
  std::vector<double> history;                             // the merged fractions so far
  tokred::index_t rows = n;
  std::int32_t phase = 0;
  for (int layer = 0; phase == static_cast<std::int32_t>(tokred::framefusion_phase::merging); ++layer) {
    tokred::framefusion policy{};                          // cost 0.3, threshold 0.6, 28 layers
    policy.history = tokred::make_view<const double>(history.data(), static_cast<tokred::index_t>(history.size()));
    tokred::framefusion_inputs<float> in{};
    in.grid = grid;                                        // (T, H, W) of the original tokens
    in.tokens = tokred::make_view<const float>(rows_a.data(), rows, dim);
    in.source = tokred::make_view<const std::int64_t>(src_a.data(), rows);
    in.sizes = tokred::make_view<const float>(size_a.data(), rows);
    std::int64_t count = 0;
    double ratio = 0;
    tokred::framefusion_outputs<float> out;
    out.tokens = tokred::make_view(rows_b.data(), rows, dim);
    out.source = tokred::make_view(src_b.data(), rows);
    out.positions = tokred::make_view(positions.data(), rows, 3);
    out.sizes = tokred::make_view(size_b.data(), rows);
    out.assign = tokred::make_view(assign.data(), rows);
    out.count = tokred::make_view(&count, 1);
    out.ratio = tokred::make_view(&ratio, 1);
    out.phase = tokred::make_view(&phase, 1);
    std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, {grid, dim}));
    if (tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()}) != tokred::status::ok) break;
    if (phase != static_cast<std::int32_t>(tokred::framefusion_phase::finished)) history.push_back(ratio);
    rows = count;
    std::swap(rows_a, rows_b), std::swap(src_a, src_b), std::swap(size_a, size_b);
  }
  // Pruning (phase `pruning`): keep round(rows·(1 − u)) of the visual rows by the last query's
  // head-mean attention at the next layer (`attention_score` over that layer's attention row).
  const tokred::sparsity_result u = tokred::framefusion_sparsity(
      0.3, tokred::make_view<const double>(history.data(), static_cast<tokred::index_t>(history.size())), 28);
  const tokred::topk prune{tokred::framefusion_prune_budget(u.sparsity)};
  // example-end framefusion
  REQUIRE(u.code == status::ok);
  REQUIRE(history.size() >= 2);  // at least two merge layers ran
  CHECK(phase == static_cast<std::int32_t>(framefusion_phase::pruning));
  CHECK(history.back() < 0.1);
  CHECK(std::accumulate(size_a.begin(), size_a.begin() + rows, 0.0) == static_cast<double>(n));
  // The prune step on synthetic attention: the kept rows and their originals.
  std::vector<float> attention(static_cast<std::size_t>(rows));
  for (index_t r = 0; r < rows; ++r) attention[static_cast<std::size_t>(r)] = static_cast<float>((r * 37) % 11);
  const index_t keep = kept_count(prune.keep, rows).count;
  CHECK(static_cast<double>(keep) == std::nearbyint(static_cast<double>(rows) * (1.0 - u.sparsity)));
  selection_buffers<float> kept(keep, dim);
  const selection_inputs<float> sel{sequence_grid(rows), make_view<const float>(attention.data(), rows),
                                    make_view<const float>(rows_a.data(), rows, dim)};
  host_workspace ws(workspace_bytes(cpu{}, prune, problem{sequence_grid(rows), dim}));
  REQUIRE(apply(cpu{}, prune, sel, kept.outputs(), ws.get()) == status::ok);
  CHECK(std::is_sorted(kept.source.begin(), kept.source.end()));  // the original sorts the kept indices
  for (index_t j = 0; j + 1 < keep; ++j) CHECK(src_a[static_cast<std::size_t>(kept.source[static_cast<std::size_t>(j)])] <
                                                src_a[static_cast<std::size_t>(kept.source[static_cast<std::size_t>(j + 1)])]);
}
