// tests/cpu/test_visionzip.cpp — visionzip on CPU: the original's golden outputs, the oracle over
// the shared case table (every element type and thread split, with and without a [CLS] row), the
// merge invariants, the documented results for ties, zero and NaN rows, contextual = 0 and the
// stride rule, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/visionzip.hpp>

#include "io/npy.hpp"
#include "reference/visionzip_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// How far (in double) a fp32 cosine may sit from the oracle's: rows of at most 64 values.
constexpr double rounding_slack = 1e-5;

/// visionzip run as `nth` shares, in reverse order.
template <class Ein, class Eout>
merge_buffers<Eout> run_vzip(const visionzip& p, const visionzip_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  merge_buffers<Eout> out(kept, visionzip_rows(p, prob), dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// The number of token values outside the tolerance of the oracle's double rows: `scale` is the
/// size of the values summed into one (a contextual row adds up to |R| rows).
template <class E>
std::size_t row_mismatches(const std::vector<E>& got, const std::vector<double>& want, double scale) {
  std::size_t bad = got.size() == want.size() ? 0 : got.size() + want.size();
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i)
    bad += !(std::abs(to_float(got[i]) - want[i]) <= 1e-6 * scale + output_eps<E>() * std::abs(want[i]));
  return bad;
}

/// The merge invariants: every slot's source maps to it; each slot stands for `sizes` rows of
/// assign; with contextual tokens every row is assigned and the sizes add up to the rows, without
/// them the remaining rows are dropped.
template <class E>
void check_invariants(const visionzip& p, const merge_buffers<E>& got) {
  // One pass counts each slot's members; the per-slot facts are tallied and checked once (a
  // check per slot would cost more than the facts under the sanitizers).
  std::vector<std::int64_t> members(static_cast<std::size_t>(got.kept), 0);
  const bool assign_in_range =
      std::all_of(got.assign.begin(), got.assign.end(), [&](std::int64_t a) { return a >= -1 && a < got.kept; });
  REQUIRE(assign_in_range);
  for (std::int64_t a : got.assign)
    if (a >= 0) ++members[static_cast<std::size_t>(a)];
  index_t bad_source = 0, bad_home = 0, bad_size = 0, bad_dominant = 0;
  for (index_t q = 0; q < got.kept; ++q) {
    const std::int64_t src = got.source[static_cast<std::size_t>(q)];
    const float size = got.sizes[static_cast<std::size_t>(q)];
    if (src < 0 || src >= got.n) {
      ++bad_source;
      continue;
    }
    bad_home += got.assign[static_cast<std::size_t>(src)] != q;
    bad_size += static_cast<float>(members[static_cast<std::size_t>(q)]) != size;
    bad_dominant += q < p.dominant && size != 1.0f;
  }
  CHECK(bad_source == 0);    // every source is an input row
  CHECK(bad_home == 0);      // every slot's source maps to it
  CHECK(bad_size == 0);      // each slot stands for its members
  CHECK(bad_dominant == 0);  // a dominant slot stands for itself alone
  const double total = std::accumulate(got.sizes.begin(), got.sizes.end(), 0.0);
  const auto dropped = std::count(got.assign.begin(), got.assign.end(), std::int64_t{-1});
  if (p.contextual > 0) {
    CHECK(total == static_cast<double>(got.n));
    CHECK(dropped == 0);
  } else {
    CHECK(total == static_cast<double>(p.dominant));
    CHECK(dropped == got.n - p.dominant);
  }
  if (p.cls_token) CHECK(got.assign[0] == 0);
}

/// One (case, policy) run: the dominant set and targets exactly as the oracle's, each assignment
/// certified against the oracle's cosines, every output against the oracle built from the
/// backend's assignment, the thread splits, and the invariants.
template <class Ein, class Eout>
void check_against_oracle(const visionzip& p, const shape_case& c, bool separate_metric) {
  const index_t n = c.grid.tokens(), rows = n + (p.cls_token ? 1 : 0);
  const std::uint64_t seed = 41 + static_cast<std::uint64_t>(n * 5 + p.dominant * 3 + p.contextual);
  const token_matrix<Ein> x = continuous_rows<Ein>(rows, c.dim, c.rows, seed);
  const token_matrix<Ein> m = continuous_rows<Ein>(rows, c.dim / 2 + 1, c.rows, seed + 1);
  const view<const Ein, 2> metric = separate_metric ? view<const Ein, 2>(m.rows) : view<const Ein, 2>(x.rows);
  const std::vector<float> scores = tie_heavy_scores(n, seed + 2);
  visionzip_inputs<Ein> in{};
  in.grid = c.grid;
  in.tokens = x.rows;
  in.scores = make_view<const float>(scores.data(), n);
  if (separate_metric) in.metric = metric;

  const problem prob{c.grid, c.dim};
  REQUIRE(can_implement(p, prob) == status::ok);
  REQUIRE(retained_count(p, prob) == p.dominant + p.contextual);
  REQUIRE(visionzip_rows(p, prob) == rows);
  const merge_buffers<Eout> got = run_vzip<Ein, Eout>(p, in, c.dim);

  // The dominant rows and the targets: exact.
  ref::visionzip_decisions d = ref::visionzip_select(p, n, scores);
  std::vector<std::int64_t> want_source = d.dominant;
  want_source.insert(want_source.end(), d.targets.begin(), d.targets.end());
  REQUIRE(got.source == want_source);

  // Each row of R joins a best target, up to rounding; the expected outputs follow its choice.
  // Failures are tallied and checked once per run.
  index_t outside = 0, target_elsewhere = 0;
  double worst_shortfall = 0;
  for (std::int64_t i : d.remaining) {
    if (p.contextual == 0) continue;
    const std::int64_t slot = got.assign[static_cast<std::size_t>(i)];
    if (slot < p.dominant || slot >= got.kept) {
      ++outside;
      continue;
    }
    const std::int64_t joined = slot - p.dominant;
    d.joins[static_cast<std::size_t>(i)] = joined;
    if (std::find(d.targets.begin(), d.targets.end(), i) != d.targets.end()) {
      target_elsewhere += d.targets[static_cast<std::size_t>(joined)] != i;
      continue;
    }
    const std::vector<double> cos = ref::target_cosines(metric, d, i);
    double best = -std::numeric_limits<double>::infinity();
    for (double v : cos)
      if (!std::isnan(v)) best = std::max(best, v);
    worst_shortfall = worse(worst_shortfall, best - cos[static_cast<std::size_t>(joined)]);
  }
  REQUIRE(outside == 0);         // every remaining row joins a contextual slot
  CHECK(target_elsewhere == 0);  // a target joins its own slot
  CHECK(worst_shortfall <= rounding_slack);
  const ref::visionzip_result want = ref::visionzip_outputs(p, c.grid, view<const Ein, 2>(x.rows), d);
  CHECK(got.source == want.source);
  CHECK(got.positions == want.positions);
  CHECK(got.assign == want.assign);
  CHECK(std::vector<double>(got.sizes.begin(), got.sizes.end()) == want.sizes);
  CHECK(row_mismatches(got.tokens, want.tokens, 1.0) == 0);
  check_invariants(p, got);

  // Bit-identical for every split.
  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_vzip<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
  }

  // group_mean keeps the sum: Σ sizes·tokens = Σ rows, column by column.
  if (p.merge == contextual_merge::group_mean && p.contextual > 0) {
    for (index_t col = 0; col < c.dim; ++col) {
      double in_sum = 0, in_abs = 0, out_sum = 0;
      for (index_t i = 0; i < rows; ++i) {
        in_sum += to_float(x.rows(i, col));
        in_abs += std::abs(to_float(x.rows(i, col)));
      }
      for (index_t q = 0; q < got.kept; ++q)
        out_sum += got.sizes[static_cast<std::size_t>(q)] * to_float(got.tokens[static_cast<std::size_t>(q * c.dim + col)]);
      CHECK(std::abs(out_sum - in_sum) <= (1e-5 + output_eps<Eout>()) * in_abs);
    }
  }
}

/// The policies every case runs, those valid on `rows` rows: a paper-like split, contextual only,
/// dominant only, every remaining row a target, and a contextual count just above half of R.
std::vector<visionzip> policies_for(index_t n, bool cls) {
  const index_t c = cls ? 1 : 0, rows = n + c;
  const std::vector<visionzip> all = {
      visionzip{c + n / 10, std::max<index_t>(1, n / 50), cls, contextual_merge::target_plus_mean},
      visionzip{c, std::max<index_t>(1, rows / 3), cls, contextual_merge::group_mean},
      visionzip{c + n / 2, 0, cls, contextual_merge::target_plus_mean},
      visionzip{c + n / 4, rows - c - n / 4, cls, contextual_merge::target_plus_mean},
      visionzip{c + n / 3, (rows - c - n / 3) / 2 + 1, cls, contextual_merge::group_mean},
  };
  std::vector<visionzip> valid;
  for (const visionzip& p : all)
    if (can_implement(p, problem{sequence_grid(n), 1}) == status::ok) valid.push_back(p);
  return valid;
}

}  // namespace

TEST_CASE("visionzip matches the oracle on the case table", "[visionzip]") {
  for (const shape_case& c : shape_cases()) {
    for (bool cls : {true, false}) {
      int variant = 0;
      for (const visionzip& p : policies_for(c.grid.tokens(), cls)) {
        INFO(c.name << (cls ? " cls" : " no cls") << " dominant " << p.dominant << " contextual " << p.contextual
                    << (p.merge == contextual_merge::group_mean ? " group_mean" : " target_plus_mean"));
        const bool metric = variant % 2 == 0;
        check_against_oracle<float, float>(p, c, metric);
        check_against_oracle<bf16, bf16>(p, c, !metric);
        check_against_oracle<f16, float>(p, c, metric);
        if (variant == 0) check_against_oracle<f16, f16>(p, c, !metric);
        ++variant;
      }
    }
  }
}

namespace {

/// One golden case of the original: the dominant set, targets, assignments and sizes exactly,
/// the tokens within 1e-5 relative; the same from scores recomputed by attention_score.
void check_golden(const std::string& name) {
  const std::string dir = golden_case("visionzip", name);
  const io::npy_array input = load_npy(dir + "input.npy");    // (1 + N, D) float32, [CLS] row 0
  const io::npy_array metric = load_npy(dir + "metric.npy");  // (1 + N, 64) head-mean keys
  const io::npy_array scores = load_npy(dir + "scores.npy");  // (N,) head-sum [CLS] attention
  const io::npy_array attn = load_npy(dir + "attn.npy");      // (heads, 1 + N) [CLS] query rows
  REQUIRE(input.dtype == "<f4");
  REQUIRE(metric.dtype == "<f4");
  REQUIRE(scores.dtype == "<f4");
  REQUIRE(attn.dtype == "<f4");
  const std::vector<double> thw = json_numbers(dir, "grid_THW");
  const token_grid grid{static_cast<index_t>(thw.at(0)), static_cast<index_t>(thw.at(1)), static_cast<index_t>(thw.at(2))};
  const index_t n = grid.tokens(), rows = input.shape.at(0), dim = input.shape.at(1);
  REQUIRE(rows == n + 1);
  REQUIRE(json_int(dir, "N_patches") == n);
  const visionzip p{static_cast<index_t>(json_int(dir, "dominant")), static_cast<index_t>(json_int(dir, "contextual"))};
  REQUIRE(json_int(dir, "k") == retained_count(p, problem{grid, dim}));

  const std::vector<float> x = input.as<float>(), keys = metric.as<float>(), s = scores.as<float>();
  visionzip_inputs<float> in{};
  in.grid = grid;
  in.tokens = make_view<const float>(x.data(), rows, dim);
  in.metric = make_view<const float>(keys.data(), rows, metric.shape.at(1));
  in.scores = make_view<const float>(s.data(), n);
  const merge_buffers<float> got = run_vzip<float, float>(p, in, dim, 1);
  for (int nth : {2, 3}) CHECK(run_vzip<float, float>(p, in, dim, nth).same_bits(got));

  CHECK(got.source == load_npy(dir + "kept_indices.npy").as<std::int64_t>());
  CHECK(got.assign == load_npy(dir + "assign.npy").as<std::int64_t>());
  CHECK(got.sizes == load_npy(dir + "sizes.npy").as<float>());
  const std::vector<std::uint8_t> mask = load_npy(dir + "mask.npy").as<std::uint8_t>();  // dominant rows
  REQUIRE(static_cast<index_t>(mask.size()) == rows);
  for (index_t i = 0; i < rows; ++i) {
    INFO("row " << i);
    CHECK((mask[static_cast<std::size_t>(i)] != 0) == (got.assign[static_cast<std::size_t>(i)] < p.dominant));
  }
  const std::vector<float> want = load_npy(dir + "tokens.npy").as<float>();
  REQUIRE(want.size() == got.tokens.size());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i)
    worst = worse(worst, std::abs(static_cast<double>(want[i]) - got.tokens[i]) / std::max(1.0, std::abs(static_cast<double>(want[i]))));
  INFO("largest relative difference " << worst);
  CHECK(worst <= 1e-5);
  check_invariants(p, got);

  // The scores as an engine computes them: attention_score{sum, 1} of the [CLS] query rows.
  const std::vector<float> a = attn.as<float>();
  const index_t heads = attn.shape.at(0);
  std::vector<float> computed(static_cast<std::size_t>(n));
  const attention_score_inputs<float> w{grid, view<const float, 4>(a.data(), {1, 1, heads, rows})};
  REQUIRE(apply(cpu{}, attention_score{head_reduce::sum, 1}, w, score_outputs<>{make_view(computed.data(), n)}) ==
          status::ok);
  for (index_t j = 0; j < n; ++j)
    CHECK(std::abs(computed[static_cast<std::size_t>(j)] - s[static_cast<std::size_t>(j)]) <=
          1e-6f * std::abs(s[static_cast<std::size_t>(j)]));
  in.scores = make_view<const float>(computed.data(), n);
  const merge_buffers<float> again = run_vzip<float, float>(p, in, dim, 2);
  CHECK(again.source == got.source);
  CHECK(again.assign == got.assign);
}

}  // namespace

TEST_CASE("VisionZip original: 54 + 10 of 576 patches (the paper's 64-token setting)", "[golden][visionzip]") {
  check_golden("c01_n576_d64_dom54_ctx10");
}

TEST_CASE("VisionZip original: 32 + 8 of 196 patches (CLIP-B/16 at 224)", "[golden][visionzip]") {
  check_golden("c06_n196_d64_dom32_ctx8");
}

TEST_CASE("visionzip: order, step, target + mean, positions, sizes on a small image", "[visionzip]") {
  // [CLS] and 3 x 4 patches, 3 values each (row i holds 10·i + column). Patch j has score j % 5:
  // patches 4 and 9 score 4, patches 3 and 8 tie at 3 and the lower index wins, so dominant =
  // [CLS] and patches 3, 4, 9 (patch j is row j + 1): rows 0, 4, 5, 10, in row order.
  const index_t n = 12, rows = 13;
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) scores[static_cast<std::size_t>(j)] = static_cast<float>(j % 5);
  // Metric: rows 0, 3, 6, 9, 12 point along y, (0.1, 1); row i of the others is (1, 0.1·i).
  std::vector<float> keys(static_cast<std::size_t>(rows * 2)), x(static_cast<std::size_t>(rows * 3));
  for (index_t i = 0; i < rows; ++i) {
    const bool along_y = i % 3 == 0;
    keys[static_cast<std::size_t>(2 * i)] = along_y ? 0.1f : 1.0f;
    keys[static_cast<std::size_t>(2 * i + 1)] = along_y ? 1.0f : 0.1f * static_cast<float>(i);
    for (index_t c = 0; c < 3; ++c) x[static_cast<std::size_t>(3 * i + c)] = static_cast<float>(10 * i + c);
  }
  visionzip_inputs<float> in{};
  in.grid = image_grid(3, 4);
  in.tokens = make_view<const float>(x.data(), rows, 3);
  in.metric = make_view<const float>(keys.data(), rows, 2);
  in.scores = make_view<const float>(scores.data(), n);
  const visionzip p{4, 2};
  const merge_buffers<float> got = run_vzip<float, float>(p, in, 3, 2);
  // R = rows 1 2 3 6 7 8 9 11 12 (|R| = 9, C = 2, step 4): targets R[0] = row 1, (1, 0.1), and
  // R[4] = row 7, (1, 0.7). Row 2 at 11° lies nearest row 1 (6°); rows 8 and 11 (39°, 48°) and
  // the rows along y nearest row 7 (35°).
  CHECK(got.source == std::vector<std::int64_t>{0, 4, 5, 10, 1, 7});
  CHECK(got.positions == std::vector<std::int32_t>{-1, -1, -1, 0, 0, 3, 0, 1, 0, 0, 2, 1, 0, 0, 0, 0, 1, 2});
  CHECK(got.assign == std::vector<std::int64_t>{0, 4, 4, 5, 1, 2, 5, 5, 5, 5, 3, 5, 5});
  const ref::visionzip_decisions d = ref::visionzip_decide(p, n, scores, view<const float, 2>(make_view<const float>(keys.data(), rows, 2)));
  for (index_t i = 0; i < rows; ++i) {
    const std::int64_t joins = d.joins[static_cast<std::size_t>(i)];
    if (joins >= 0) CHECK(got.assign[static_cast<std::size_t>(i)] == p.dominant + joins);
  }
  CHECK(got.sizes == std::vector<float>{1, 1, 1, 1, 2, 7});
  // Contextual token 0: row 1 + mean(row 2); token 1: row 7 + mean(rows 3, 6, 8, 9, 11, 12).
  for (index_t c = 0; c < 3; ++c) {
    const float fc = static_cast<float>(c);
    CHECK(got.tokens[static_cast<std::size_t>(4 * 3 + c)] == (10 + fc) + (20 + fc) / 1.0f);
    CHECK(got.tokens[static_cast<std::size_t>(5 * 3 + c)] == (70 + fc) + (490 + 6 * fc) / 6.0f);
    CHECK(got.tokens[static_cast<std::size_t>(c)] == fc);  // [CLS] copied
    CHECK(got.tokens[static_cast<std::size_t>(3 * 3 + c)] == 100 + fc);  // row 10
  }
  // group_mean: the plain mean of the group, target included; same decisions.
  const merge_buffers<float> mean = run_vzip<float, float>(visionzip{4, 2, true, contextual_merge::group_mean}, in, 3, 3);
  CHECK(mean.assign == got.assign);
  for (index_t c = 0; c < 3; ++c)
    CHECK(mean.tokens[static_cast<std::size_t>(5 * 3 + c)] == static_cast<float>(70 + 490 + 7 * c) / 7.0f);

  // Without a [CLS] row: the same rows minus row 0, all 4 dominant tokens chosen by score.
  visionzip_inputs<float> patches = in;
  patches.tokens = make_view<const float>(x.data() + 3, n, 3);
  patches.metric = make_view<const float>(keys.data() + 2, n, 2);
  const merge_buffers<float> plain = run_vzip<float, float>(visionzip{4, 2, false}, patches, 3, 1);
  CHECK(std::vector<std::int64_t>(plain.source.begin(), plain.source.begin() + 4) == std::vector<std::int64_t>{3, 4, 8, 9});
  CHECK(plain.positions[0] == 0);
  CHECK(plain.positions[2] == 3);  // patch 3 at (0, 0, 3)
}

TEST_CASE("visionzip: ties, zero and NaN metric rows, empty targets", "[visionzip]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // No [CLS]; 6 tokens, dominant 1, contextual 2. Scores: NaN ranks last; token 5 (score 1)
  // ties token 2 (score 1) and the lower index wins. R = rows 0 1 3 4 5, step 2: targets R[0] =
  // row 0 and R[2] = row 3.
  const std::vector<float> scores = {nan, 0.5f, 1.0f, -1.0f, 0.0f, 1.0f};
  // Metric: targets rows 0 and 3 are identical (a cosine tie: the first target wins); row 1 is
  // zero (cosine 0 with both: the tie again); row 4 holds a NaN (joins target 0); row 5 is the
  // opposite of both targets (-1 with both: still target 0).
  const float keys[6 * 2] = {1, 1, 0, 0, 9, 9, 1, 1, nan, 1, -1, -1};
  const float x[6 * 1] = {1, 2, 3, 4, 5, 6};
  visionzip_inputs<float> in{};
  in.grid = sequence_grid(6);
  in.tokens = make_view(x, 6, 1);
  in.metric = make_view(keys, 6, 2);
  in.scores = make_view(scores.data(), 6);
  const merge_buffers<float> got = run_vzip<float, float>(visionzip{1, 2, false}, in, 1, 2);
  CHECK(got.source == std::vector<std::int64_t>{2, 0, 3});
  CHECK(got.assign == std::vector<std::int64_t>{1, 1, 0, 2, 1, 1});
  CHECK(got.sizes == std::vector<float>{1, 4, 1});
  CHECK(got.tokens == std::vector<float>{3, 1 + (2 + 5 + 6) / 3.0f, 4});  // target row 3 has no member: its row

  // A target with no member, target_plus_mean: exactly its row (+0); group_mean: the same.
  const merge_buffers<float> mean = run_vzip<float, float>(visionzip{1, 2, false, contextual_merge::group_mean}, in, 1, 1);
  CHECK(mean.tokens == std::vector<float>{3, (1 + 2 + 5 + 6) / 4.0f, 4});

  // contextual = 0: the dominant tokens alone, the rest dropped.
  const merge_buffers<float> pruned = run_vzip<float, float>(visionzip{3, 0, false}, in, 1, 3);
  CHECK(pruned.source == std::vector<std::int64_t>{1, 2, 5});
  CHECK(pruned.assign == std::vector<std::int64_t>{-1, 0, 1, -1, -1, 2});
  CHECK(pruned.tokens == std::vector<float>{2, 3, 6});

  // dominant + contextual = rows: every row kept as itself.
  const merge_buffers<float> all = run_vzip<float, float>(visionzip{2, 4, false}, in, 1, 2);
  CHECK(all.source == std::vector<std::int64_t>{2, 5, 0, 1, 3, 4});
  CHECK(all.sizes == std::vector<float>(6, 1.0f));
}

TEST_CASE("visionzip: the stride runs over the remaining list (|R| = 77, C = 70: step 1)", "[visionzip]") {
  // The golden set's c07 shape: 576 patches, dominant 500 ([CLS] + 499), contextual 70.
  const index_t n = 576;
  const token_matrix<float> x = continuous_rows<float>(n + 1, 8, layout::contiguous, 5);
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) scores[static_cast<std::size_t>(j)] = static_cast<float>((j * 37) % n);
  visionzip_inputs<float> in{};
  in.grid = image_grid(24, 24);
  in.tokens = x.rows;
  in.scores = make_view<const float>(scores.data(), n);
  const visionzip p{500, 70};
  const merge_buffers<float> got = run_vzip<float, float>(p, in, 8, 3);
  const ref::visionzip_decisions d = ref::visionzip_select(p, n, scores);
  REQUIRE(d.remaining.size() == 77);
  CHECK(std::vector<std::int64_t>(got.source.begin() + 500, got.source.end()) ==
        std::vector<std::int64_t>(d.remaining.begin(), d.remaining.begin() + 70));
  check_invariants(p, got);
  // |R| = 523, C = 10 (the paper's setting): step 52, targets R[0], R[52], …, R[468].
  const visionzip paper{};
  const merge_buffers<float> tens = run_vzip<float, float>(paper, in, 8, 1);
  const ref::visionzip_decisions e = ref::visionzip_select(paper, n, scores);
  REQUIRE(e.remaining.size() == 523);
  for (std::size_t q = 0; q < 10; ++q) CHECK(tens.source[54 + q] == e.remaining[52 * q]);
}

TEST_CASE("visionzip: bad input leaves every output untouched", "[visionzip][bad-input]") {
  const index_t n = 16, rows = 17, dim = 8;
  const token_matrix<float> x = continuous_rows<float>(rows, dim, layout::contiguous, 4);
  std::vector<float> scores(static_cast<std::size_t>(n), 0.5f);
  visionzip_inputs<float> in{};
  in.grid = image_grid(4, 4);
  in.tokens = x.rows;
  in.scores = make_view<const float>(scores.data(), n);
  const visionzip p{5, 3};
  const problem prob{in.grid, dim};
  merge_buffers<float> out(8, rows, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  // Parameters, grid and budget, through can_implement, retained_count and apply alike.
  const auto rejects = [&](const visionzip& q, const problem& pr, status want) {
    CHECK(can_implement(q, pr) == want);
    CHECK(retained_count(q, pr) == 0);
    CHECK(workspace_bytes(cpu{}, q, pr) == 0);
  };
  rejects(visionzip{-1, 3, false}, prob, status::invalid_parameter);
  rejects(visionzip{5, -1}, prob, status::invalid_parameter);
  rejects(visionzip{0, 3, true}, prob, status::invalid_parameter);  // [CLS] is always dominant
  rejects(visionzip{5, 3, true, static_cast<contextual_merge>(7)}, prob, status::invalid_parameter);
  rejects(visionzip{0, 0, false}, prob, status::invalid_budget);
  rejects(visionzip{10, 8}, prob, status::budget_exceeds_input);     // 18 > 17 rows
  rejects(visionzip{18, 0}, prob, status::budget_exceeds_input);
  rejects(visionzip{16, 1, false}, prob, status::budget_exceeds_input);
  rejects(p, problem{sequence_grid(0), dim}, status::empty_input);
  rejects(p, problem{token_grid{1, -1, 4}, dim}, status::shape_mismatch);
  CHECK(can_implement(visionzip{17, 0}, prob) == status::ok);  // every row dominant
  CHECK(can_implement(visionzip{1, 16}, prob) == status::ok);  // every patch a target
  CHECK(apply(cpu{}, visionzip{10, 8}, in, out.outputs(), ws.get()) == status::budget_exceeds_input);
  CHECK(apply(cpu{}, visionzip{0, 0, false}, in, out.outputs(), ws.get()) == status::invalid_budget);

  visionzip_inputs<float> bad = in;
  bad.scores = make_view<const float>(scores.data(), n - 1);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad.scores = view<const float, 1>(nullptr, {n});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad = in;
  bad.tokens = make_view<const float>(&x.rows(0, 0), n, dim);  // without the [CLS] row
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad = in;
  bad.metric = view<const float, 2>(&x.rows(0, 0), {rows, 0}, {dim, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::empty_input);
  bad.metric = view<const float, 2>(nullptr, {rows, 4}, {4, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad.metric = make_view<const float>(&x.rows(0, 0), n, dim);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);

  merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 7, dim);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.assign = make_view(out.assign.data(), n);  // the rows are N + 1
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.positions = make_view(out.positions.data(), 8, 2);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  std::vector<float> copy(x.storage.begin(), x.storage.end());
  visionzip_inputs<float> self = in;
  self.tokens = make_view<const float>(copy.data(), rows, dim);
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), 8, dim);  // in place
  CHECK(apply(cpu{}, p, self, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.assign = make_view(reinterpret_cast<std::int64_t*>(copy.data()), rows);
  self = in;
  self.metric = make_view<const float>(copy.data(), rows, dim);  // assign over the compared rows
  CHECK(apply(cpu{}, p, self, wrong, ws.get()) == status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());

  // NaN everywhere is no error: the documented results.
  std::vector<float> nan_scores(static_cast<std::size_t>(n), std::numeric_limits<float>::quiet_NaN());
  bad = in;
  bad.scores = make_view<const float>(nan_scores.data(), n);
  const merge_buffers<float> all_nan = run_vzip<float, float>(p, bad, dim, 2);
  CHECK(std::vector<std::int64_t>(all_nan.source.begin(), all_nan.source.begin() + 5) ==
        std::vector<std::int64_t>{0, 1, 2, 3, 4});  // all tie: the lowest patches
}

TEST_CASE("visionzip: the workspace is the carve-up, per share", "[visionzip]") {
  const problem prob{image_grid(24, 24), 1024};
  const visionzip p{};
  const std::size_t one = workspace_bytes(cpu{}, p, prob), three = workspace_bytes(cpu{0, 3}, p, prob);
  // 28·rows + 8·(dominant − 1) + 16·|R| + 16·C + 8 bytes and the product's panels and tiles (rows
  // against the C targets), with 63 of alignment slack per buffer (11 and the product's 3).
  detail::arena product;
  (void)detail::product_scratch::carve<compile_time_arch>(product, 577, 10);
  CHECK(one == 28 * 577 + 8 * 53 + 16 * 523 + 16 * 10 + 8 + 11 * 63 + product.used());
  CHECK(three == 3 * one);
  CHECK(workspace_bytes(cpu{0, 0}, p, prob) == 0);
  // The count covers any alignment of the buffer: carve at every offset in a cache line.
  std::vector<std::byte> bytes(one + 64);
  for (std::size_t shift = 0; shift < 64; shift += 8) {
    detail::arena carver(workspace{bytes.data() + shift, one});
    (void)backend<visionzip, cpu<>>::carve(carver, p, detail::visionzip_count(p, prob.grid), 0, 1);
    CHECK(carver.fits());
  }
}
