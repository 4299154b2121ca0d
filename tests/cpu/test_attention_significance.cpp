// tests/cpu/test_attention_significance.cpp — attention_significance (FoPru's token significance)
// on CPU: against the double-precision oracle over the shared case table (every element type,
// one map or one per frame, offsets, head counts, thread splits), FoPru's variance rule on ties,
// NaN and infinite weights, bad input, and FoPru's rank and row strategies composed from it.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/attention_significance.hpp>

#include "reference/attention_significance_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/score_runs.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float sentinel = score_sentinel;

/// How the weights of a map are drawn.
enum class pattern {
  received,  ///< softmax rows with a salience per key: the column means vary, the row means hardly
  paid,      ///< rows scaled by a mass per query: the row means vary, the column means hardly
};

/// (maps, heads, queries, keys) weights and the view over them.
template <class E>
struct maps_tensor {
  std::vector<E> storage;
  view<E, 4> v;
};

/// Maps in a case layout: contiguous; `strided` pads every query row and reads every second key;
/// `reversed` stores queries and keys back to front (negative strides). Map b follows `first`
/// when b is even and the other pattern when b is odd, so a video mixes both decisions.
template <class E>
maps_tensor<E> make_maps(index_t maps, index_t heads, index_t queries, index_t keys, layout how, pattern first,
                         std::uint64_t seed) {
  maps_tensor<E> t;
  const index_t row = how == layout::strided ? 2 * keys + 5 : keys;
  t.storage.assign(static_cast<std::size_t>(std::max<index_t>(maps * heads * queries * row, 1)), from_float<E>(-9.0f));
  const std::array<index_t, 4> extents{maps, heads, queries, keys};
  if (how == layout::strided)
    t.v = view<E, 4>(t.storage.data(), extents, {heads * queries * row, queries * row, row, 2});
  else if (how == layout::reversed)
    t.v = view<E, 4>(t.storage.data() + (queries - 1) * keys + keys - 1, extents,
                     {heads * queries * keys, queries * keys, -keys, -1});
  else
    t.v = view<E, 4>(t.storage.data(), extents);
  rng r(seed);
  std::vector<float> salience(static_cast<std::size_t>(std::max(queries, keys))), row_values(static_cast<std::size_t>(keys));
  for (index_t b = 0; b < maps; ++b) {
    for (float& s : salience) s = r.uniform();
    const bool received = (b % 2 == 0) == (first == pattern::received);
    for (index_t h = 0; h < heads; ++h)
      for (index_t q = 0; q < queries; ++q) {
        double z = 0.0;
        for (index_t k = 0; k < keys; ++k) {
          const float noise = r.uniform();
          row_values[static_cast<std::size_t>(k)] =
              received ? std::exp(2.0f * salience[static_cast<std::size_t>(k)] + 0.3f * noise)
                       : 0.002f * std::exp(1.5f * salience[static_cast<std::size_t>(q)]) * (1.0f + 0.2f * noise);
          z += row_values[static_cast<std::size_t>(k)];
        }
        for (index_t k = 0; k < keys; ++k)
          t.v(b, h, q, k) = from_float<E>(received ? static_cast<float>(row_values[static_cast<std::size_t>(k)] / z)
                                                   : row_values[static_cast<std::size_t>(k)]);
      }
  }
  return t;
}

/// Tokens whose score lies farther from the oracle than its bound.
std::size_t outside(const std::vector<float>& got, const std::vector<ref::bounded_score>& want) {
  std::size_t count = 0;
  for (std::size_t j = 0; j < got.size(); ++j)
    count += !(std::fabs(static_cast<double>(got[j]) - want[j].score) <= want[j].bound);
  return count;
}

constexpr significance_axis all_axes[] = {significance_axis::column, significance_axis::row,
                                          significance_axis::larger_variance};

struct offsets {
  index_t query, key;
};

template <class E>
void check_case(const shape_case& c) {
  const index_t frames = c.grid.frames;
  for (const index_t maps : {index_t{1}, frames}) {
    // One map over a whole video is (T·H·W)² per head: one head count and the CLIP offsets.
    const bool large = maps == 1 && frames > 1;
    for (const index_t heads : large ? std::vector<index_t>{2} : std::vector<index_t>{1, 5})
      for (const offsets at : large ? std::vector<offsets>{{1, 1}} : std::vector<offsets>{{0, 0}, {1, 1}, {3, 0}}) {
        const index_t n = maps == 1 ? c.grid.tokens() : c.grid.frame_tokens();
        const pattern first = (heads + at.query) % 2 == 0 ? pattern::received : pattern::paid;
        const maps_tensor<E> w = make_maps<E>(maps, heads, at.query + n + 2, at.key + n + 1, c.rows, first,
                                              static_cast<std::uint64_t>(17 * heads + 5 * at.query + maps));
        const attention_significance_inputs<E> in{c.grid, w.v};
        const ref::significance_oracle o =
            ref::attention_significance(attention_significance{significance_axis::column, at.query, at.key}, c.grid,
                                        view<const E, 4>(w.v));
        INFO(c.name << " " << element_name<E>() << " maps " << maps << " heads " << heads << " first_query "
                    << at.query << " first_key " << at.key);
        for (index_t b = 0; b < maps && n > 1; ++b) {  // the data decides FoPru's rule by a wide margin
          const bool received = (b % 2 == 0) == (first == pattern::received);
          const double ratio = o.column_variance[static_cast<std::size_t>(b)] / o.row_variance[static_cast<std::size_t>(b)];
          REQUIRE((received ? ratio > 2.0 : ratio < 0.5));
        }
        std::vector<float> by_axis[3];
        for (int a = 0; a < 3; ++a) {
          const attention_significance p{all_axes[a], at.query, at.key};
          INFO("axis " << a);
          by_axis[a] = run_shares(p, in, 0);
          CHECK(outside(by_axis[a], o.scores(all_axes[a])) == 0);
          for (const int nth : {2, 3}) CHECK(bits(run_shares(p, in, 0, nth)) == bits(by_axis[a]));
        }
        // larger_variance writes, map by map, exactly the vector the oracle's rule picks.
        std::vector<float> picked(by_axis[2].size());
        for (std::size_t j = 0; j < picked.size(); ++j)
          picked[j] = by_axis[o.by_column(static_cast<index_t>(j) / n) ? 0 : 1][j];
        CHECK(bits(by_axis[2]) == bits(picked));
      }
    if (frames == 1) break;  // maps = T is maps = 1
  }
}

/// The source indices a selection keeps from `scores`.
template <class Policy>
std::vector<std::int64_t> kept_by(const Policy& policy, const token_grid& grid, const std::vector<float>& scores) {
  const problem prob{grid, 0};
  std::vector<std::int64_t> source(static_cast<std::size_t>(retained_count(policy, prob)));
  host_workspace ws(workspace_bytes(cpu{}, policy, prob));
  selection_outputs<float> out{};
  out.source = make_view(source.data(), static_cast<index_t>(source.size()));
  REQUIRE(apply(cpu{}, policy, selection_inputs<float>{grid, make_view(scores.data(), grid.tokens()), {}}, out,
                ws.get()) == status::ok);
  return source;
}

/// The smallest gap between the k-th and (k+1)-th largest of `s`, over the k given.
double boundary_gap(std::vector<double> s, const std::vector<std::size_t>& ks) {
  std::sort(s.begin(), s.end(), std::greater<double>());
  double gap = std::numeric_limits<double>::infinity();
  for (const std::size_t k : ks) gap = std::min(gap, s[k - 1] - s[k]);
  return gap;
}

}  // namespace

TEMPLATE_TEST_CASE("attention_significance matches the oracle on every case, bit-identical over shares",
                   "[attention][significance]", float, f16, bf16) {
  for (const shape_case& c : shape_cases()) check_case<TestType>(c);
}

TEST_CASE("attention_significance: equal variances pick the row means, as the original's strict >",
          "[attention][significance]") {
  const token_grid grid = image_grid(1, 2);
  // One head, m = [[a, b], [c, d]]: column means ((a+c)/2, (b+d)/2), row means ((a+b)/2, (c+d)/2).
  const auto scores = [&](float d, significance_axis axis) {
    const float w[4] = {0.25f, 0.5f, 0.125f, d};
    return run_shares(attention_significance{axis, 0, 0},
                      attention_significance_inputs<float>{grid, make_view(static_cast<const float*>(w), 1, 1, 2, 2)}, 0);
  };
  // d = a: the row means are the column means reversed, so the variances are equal: rows.
  CHECK(scores(0.25f, significance_axis::column) == std::vector<float>{0.1875f, 0.375f});
  CHECK(scores(0.25f, significance_axis::row) == std::vector<float>{0.375f, 0.1875f});
  CHECK(scores(0.25f, significance_axis::larger_variance) == std::vector<float>{0.375f, 0.1875f});
  // d a little larger: the column means spread a little more: columns.
  const float d = 0.25f + 0x1p-10f;
  CHECK(scores(d, significance_axis::larger_variance) == std::vector<float>{0.1875f, (0.5f + d) / 2.0f});
  CHECK(scores(d, significance_axis::larger_variance) == scores(d, significance_axis::column));
  // d a little smaller: rows.
  CHECK(scores(0.25f - 0x1p-10f, significance_axis::larger_variance) ==
        scores(0.25f - 0x1p-10f, significance_axis::row));
  // One token: both means are the head mean (and the variances NaN).
  const float one[3] = {0.5f, 0.25f, 0.125f};  // three heads of a 1 × 1 block
  const attention_significance_inputs<float> single{image_grid(1, 1), make_view(one + 0, 1, 3, 1, 1)};
  for (const significance_axis axis : all_axes)
    CHECK(run_shares(attention_significance{axis, 0, 0}, single, 0) == std::vector<float>{0.875f / 3.0f});
}

TEST_CASE("attention_significance: NaN and infinite weights", "[attention][significance]") {
  const token_grid grid = image_grid(4, 4);
  const maps_tensor<float> clean = make_maps<float>(1, 2, 17, 17, layout::contiguous, pattern::received, 3);
  const auto run = [&](const maps_tensor<float>& w, significance_axis axis) {
    return run_shares(attention_significance{axis, 1, 1}, attention_significance_inputs<float>{grid, w.v}, 0);
  };
  const std::vector<float> column = run(clean, significance_axis::column), row = run(clean, significance_axis::row);
  REQUIRE(bits(run(clean, significance_axis::larger_variance)) == bits(column));
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    INFO("weight " << bad);
    maps_tensor<float> w = clean;
    w.v = view<float, 4>(w.storage.data(), {1, 2, 17, 17});
    w.v(0, 1, 1 + 5, 1 + 9) = bad;  // query patch 5, key patch 9
    const std::vector<float> c = run(w, significance_axis::column), r = run(w, significance_axis::row);
    for (std::size_t j = 0; j < 16; ++j) {
      CHECK((j == 9 ? std::isnan(c[j]) == std::isnan(bad) && std::isinf(c[j]) == std::isinf(bad) : c[j] == column[j]));
      CHECK((j == 5 ? std::isnan(r[j]) == std::isnan(bad) && std::isinf(r[j]) == std::isinf(bad) : r[j] == row[j]));
    }
    // Both variances are NaN, and the rule's comparison is false: the row means.
    CHECK(bits(run(w, significance_axis::larger_variance)) == bits(r));
  }
  // Weights outside the patch block ([CLS]'s row and column) are never read.
  maps_tensor<float> cls = clean;
  cls.v = view<float, 4>(cls.storage.data(), {1, 2, 17, 17});
  cls.v(0, 0, 0, 4) = cls.v(0, 1, 7, 0) = std::numeric_limits<float>::quiet_NaN();
  for (const significance_axis axis : all_axes) CHECK(bits(run(cls, axis)) == bits(run(clean, axis)));
}

TEST_CASE("attention_significance: larger_variance gives whole maps to shares", "[attention][significance]") {
  const maps_tensor<float> one = make_maps<float>(1, 2, 10, 10, layout::contiguous, pattern::paid, 4);
  const attention_significance p{};
  const attention_significance_inputs<float> image{image_grid(3, 3), one.v};
  std::vector<float> scores(9, sentinel);
  host_workspace ws(workspace_bytes(cpu{0, 3}, p, problem{image.grid, 0}));
  for (const int ith : {1, 2}) {  // one map: share 0 computes it, the others write nothing
    CHECK(apply(cpu{ith, 3}, p, image, score_outputs<>{make_view(scores.data(), 9)}, ws.get()) == status::ok);
    CHECK(untouched(scores));
  }
  CHECK(apply(cpu{0, 3}, p, image, score_outputs<>{make_view(scores.data(), 9)}, ws.get()) == status::ok);
  CHECK(bits(scores) == bits(run_shares(p, image, 0)));
  // Five frames over three shares: frames 0, 1 | 2, 3 | 4 (map b to share b·3/5).
  const maps_tensor<float> five = make_maps<float>(5, 2, 9, 9, layout::contiguous, pattern::received, 5);
  const attention_significance_inputs<float> video{token_grid{5, 3, 3}, five.v};
  std::vector<float> frames(45, sentinel);
  host_workspace video_ws(workspace_bytes(cpu{0, 3}, p, problem{video.grid, 0}));
  CHECK(apply(cpu{1, 3}, p, video, score_outputs<>{make_view(frames.data(), 45)}, video_ws.get()) == status::ok);
  for (std::size_t j = 0; j < 45; ++j) CHECK((frames[j] == sentinel) == (j < 18 || j >= 36));
}

TEST_CASE("attention_significance: bad input leaves the scores untouched", "[attention][significance][bad-input]") {
  const maps_tensor<float> w = make_maps<float>(2, 4, 12, 11, layout::contiguous, pattern::received, 1);
  const token_grid grid{2, 3, 3};  // 9 patches per frame from query 1, key 1
  const attention_significance_inputs<float> in{grid, w.v};
  std::vector<float> scores(18, sentinel);
  const score_outputs<> out{make_view(scores.data(), 18)};
  const attention_significance ok{significance_axis::larger_variance, 1, 1};
  host_workspace ws(workspace_bytes(cpu{}, ok, problem{grid, 0}));
  const auto run = [&](const attention_significance& p, const attention_significance_inputs<float>& i,
                       const score_outputs<>& o, workspace space, cpu<> exec = cpu{}) {
    return apply(exec, p, i, o, space);
  };
  const auto maps = [&](const float* data, index_t m, index_t h, index_t q, index_t k) {
    return attention_significance_inputs<float>{grid, view<const float, 4>(data, {m, h, q, k})};
  };
  const float* data = w.storage.data();

  CHECK(run(ok, in, out, ws.get(), cpu{2, 2}) == status::invalid_exec);
  CHECK(run(attention_significance{significance_axis::column, -1, 1}, in, out, ws.get()) == status::invalid_parameter);
  CHECK(run(attention_significance{significance_axis::row, 1, -1}, in, out, ws.get()) == status::invalid_parameter);
  CHECK(run(attention_significance{static_cast<significance_axis>(3), 1, 1}, in, out, ws.get()) ==
        status::invalid_parameter);
  CHECK(run(ok, {token_grid{2, 3, -3}, w.v}, out, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, {token_grid{2, 0, 3}, w.v}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {token_grid{3, 3, 3}, w.v}, out, ws.get()) == status::shape_mismatch);  // 2 maps, 3 frames
  CHECK(run(ok, maps(data, 1, 4, 12, 11), out, ws.get()) == status::shape_mismatch);    // one map needs 1 + 18 rows
  CHECK(run(ok, maps(data, 2, 0, 12, 11), out, ws.get()) == status::empty_input);
  CHECK(run(attention_significance{significance_axis::larger_variance, 4, 1}, in, out, ws.get()) ==
        status::shape_mismatch);  // 4 + 9 > 12 queries
  CHECK(run(attention_significance{significance_axis::larger_variance, 1, 3}, in, out, ws.get()) ==
        status::shape_mismatch);  // 3 + 9 > 11 keys
  CHECK(run(ok, maps(nullptr, 2, 4, 12, 11), out, ws.get()) == status::null_pointer);
  CHECK(run(ok, in, score_outputs<>{make_view(scores.data(), 17)}, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, in, score_outputs<>{make_view(static_cast<float*>(nullptr), 18)}, ws.get()) == status::null_pointer);
  // Scores written over the weights they read.
  std::vector<float> shared(w.storage);
  CHECK(run(ok, maps(shared.data(), 2, 4, 12, 11), score_outputs<>{make_view(shared.data() + 700, 18)}, ws.get()) ==
        status::aliasing);
  CHECK(shared == w.storage);
  const workspace short_ws{ws.get().data, ws.get().bytes - 1};
  CHECK(run(ok, in, out, short_ws) == status::workspace_too_small);
  CHECK(run(ok, in, out, short_ws, cpu{1, 2}) == status::workspace_too_small);  // a share with nothing to do agrees
  CHECK(run(ok, in, out, workspace{nullptr, ws.get().bytes}) == status::null_pointer);
  CHECK(untouched(scores));
  // The largest offsets that fit: 3 + 9 <= 12 queries, 2 + 9 <= 11 keys.
  CHECK(run(attention_significance{significance_axis::column, 3, 2}, in, out, ws.get()) == status::ok);
  // The documented order: parameters, grid, maps, heads, extents, data, output, aliasing, workspace.
  CHECK(run(attention_significance{significance_axis::row, -1, 1}, {token_grid{0, 3, 3}, w.v}, out, ws.get()) ==
        status::invalid_parameter);
  CHECK(run(ok, {token_grid{3, 3, 3}, view<const float, 4>(data, {2, 0, 12, 11})}, out, ws.get()) ==
        status::shape_mismatch);
  CHECK(run(ok, maps(data, 2, 0, 2, 11), out, ws.get()) == status::empty_input);
  CHECK(run(ok, maps(nullptr, 2, 4, 5, 11), out, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, maps(nullptr, 2, 4, 12, 11), score_outputs<>{}, workspace{}) == status::null_pointer);
  CHECK(run(ok, in, score_outputs<>{make_view(scores.data(), 17)}, workspace{}) == status::shape_mismatch);
  CHECK(can_implement(ok, problem{grid, 0}) == status::ok);
  CHECK(can_implement(ok, problem{token_grid{1, 0, 4}, 0}) == status::empty_input);
  CHECK(can_implement(attention_significance{significance_axis::column, 0, -2}, problem{grid, 0}) ==
        status::invalid_parameter);
  CHECK(workspace_bytes(cpu{}, attention_significance{significance_axis::column, -1, 0}, problem{grid, 0}) == 0);
  CHECK(workspace_bytes(cpu{0, 0}, ok, problem{grid, 0}) == 0);
  // Each share carves its own slice: the size grows with nth.
  CHECK(workspace_bytes(cpu{0, 3}, ok, problem{grid, 0}) == 3 * workspace_bytes(cpu{}, ok, problem{grid, 0}));
}

TEMPLATE_TEST_CASE("FoPru: rank and row strategies from the significance of a CLIP map", "[attention][significance][fopru]",
                   float, f16) {
  // LLaVA-1.5's CLIP block 22: [1, 16, 577, 577] with [CLS] at query 0 and key 0; 24 × 24 patches.
  const token_grid grid = image_grid(24, 24);
  const maps_tensor<TestType> w = make_maps<TestType>(1, 16, 577, 577, layout::contiguous, pattern::received, 22);
  const attention_significance fopru{significance_axis::larger_variance, 1, 1};
  const ref::significance_oracle o = ref::attention_significance(fopru, grid, view<const TestType, 4>(w.v));
  CHECK(o.by_column(0));  // a softmax map: the attention received varies, the attention paid hardly
  const std::vector<float> significance = run_shares(fopru, attention_significance_inputs<TestType>{grid, w.v}, 0);
  const std::vector<ref::bounded_score> want = o.scores(significance_axis::larger_variance);
  REQUIRE(outside(significance, want) == 0);
  const std::vector<double> exact = ref::values(want);
  double bound = 0.0;
  for (const ref::bounded_score& s : want) bound = std::max(bound, s.bound);
  for (const double ratio : {0.125, 0.25, 0.5}) {
    INFO("ratio " << ratio);
    // Rank: the floor(576·ratio) most significant tokens, in original order. The oracle's k-th
    // and (k+1)-th scores lie farther apart than two rounding bounds, so the kept set is exact.
    const std::size_t k = static_cast<std::size_t>(std::floor(576 * ratio));
    REQUIRE(boundary_gap(exact, {k}) > 2.0 * bound);
    const std::vector<std::int64_t> rank = kept_by(topk{keep_budget::ratio(ratio, rounding::floor)}, grid, significance);
    CHECK(rank.size() == k);
    CHECK(rank == ref::fopru_rank(exact, ratio));
    // Row: the floor(24·ratio) patch rows with the largest summed significance, whole.
    std::vector<double> row_sums(24, 0.0);
    for (std::size_t j = 0; j < 576; ++j) row_sums[j / 24] += exact[j];
    const std::size_t rows = static_cast<std::size_t>(std::floor(24 * ratio));
    REQUIRE(boundary_gap(row_sums, {rows}) > 24.0 * (2.0 * bound + 1e-6 * *std::max_element(row_sums.begin(), row_sums.end())));
    const std::vector<std::int64_t> kept_rows = kept_by(top_rows{keep_budget::ratio(ratio, rounding::floor)}, grid, significance);
    CHECK(kept_rows.size() == rows * 24);
    CHECK(kept_rows == ref::fopru_rows(exact, 24, ratio));
  }
}
