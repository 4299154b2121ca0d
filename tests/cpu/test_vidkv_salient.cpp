// tests/cpu/test_vidkv_salient.cpp — vidkv_salient_tokens on CPU: VidKV's count rule, the
// positions against a sort-based oracle of both orders (consistent and VidKV's) over sizes,
// ratios, ties and NaN, share splits, the chain from embeddings (query_relevance, measure::dot),
// and every bad input with the positions untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/feature_scores.hpp>
#include <tokred/cpu/vidkv_salient.hpp>
#include <tokred/policy/vidkv_salient.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr std::int64_t sentinel = -77;
const float nan_value = std::numeric_limits<float>::quiet_NaN();

/// The oracle: rank by score descending (NaN last), ties to the lower index; keep the first
/// k − 32 (or VidKV's: the first k sorted ascending, less the last 32); ascending, plus the offset.
std::vector<std::int64_t> oracle(const vidkv_salient_tokens& p, const std::vector<float>& scores) {
  const auto n = static_cast<std::int64_t>(scores.size());
  const std::int64_t top = std::max<std::int64_t>(
      32, static_cast<std::int64_t>(std::floor(static_cast<double>(n) * p.ratio / 32.0)) * 32);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    const float x = scores[static_cast<std::size_t>(a)], y = scores[static_cast<std::size_t>(b)];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  order.resize(static_cast<std::size_t>(p.vidkv_order ? top : top - 32));
  std::sort(order.begin(), order.end());
  order.resize(static_cast<std::size_t>(top - 32));
  for (std::int64_t& i : order) i += p.first_position;
  return order;
}

/// Runs the choice as `nth` shares (in reverse order) into sentinel-filled positions.
std::vector<std::int64_t> run(const vidkv_salient_tokens& p, const std::vector<float>& scores, int nth = 1) {
  const problem prob{sequence_grid(static_cast<index_t>(scores.size())), 0};
  const index_t count = retained_count(p, prob);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(count), sentinel);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p,
                  vidkv_salient_inputs<>{make_view(scores.data(), static_cast<index_t>(scores.size()))},
                  vidkv_salient_outputs<>{make_view(positions.data(), count)}, ws.get()) == status::ok);
  return positions;
}

/// Scores with ties (multiples of 1/8) and, when asked, a NaN every 37 tokens.
std::vector<float> scores_of(index_t n, std::uint64_t seed, bool with_nan) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    float v = std::round(8.0f * r.uniform()) / 8.0f;
    if (with_nan && i % 37 == 5) v = nan_value;
    s[static_cast<std::size_t>(i)] = v;
  }
  return s;
}

}  // namespace

TEST_CASE("vidkv_salient_tokens: VidKV's count, max(32, ⌊N·ratio/32⌋·32) − 32", "[vidkv_salient]") {
  const auto count = [](double ratio, index_t n) {
    return retained_count(vidkv_salient_tokens{ratio}, problem{sequence_grid(n), 0});
  };
  CHECK(count(0.2, 576) == 64);    // 115.2 → 96 → 64
  CHECK(count(0.2, 729) == 96);    // 145.8 → 128
  CHECK(count(0.2, 6272) == 1216);  // 32 frames × 196: 1254.4 → 1248
  CHECK(count(0.2, 100) == 0);     // 20 → 0 → 32
  CHECK(count(0.0, 64) == 0);
  CHECK(count(1.0, 64) == 32);
  CHECK(count(1.0, 63) == 0);      // 63 → 32
  CHECK(count(0.5, 32) == 0);
  CHECK(count(0.2, 31) == 0);      // fewer than 32 visual tokens: refused
  CHECK(can_implement(vidkv_salient_tokens{}, problem{sequence_grid(31), 0}) == status::budget_exceeds_input);
  CHECK(can_implement(vidkv_salient_tokens{}, problem{sequence_grid(32), 0}) == status::ok);
}

TEST_CASE("vidkv_salient_tokens: positions equal the oracle, both orders, any share split", "[vidkv_salient]") {
  for (const index_t n : {32, 33, 95, 160, 576, 729, 1568, 9216})
    for (const double ratio : {0.0, 0.1, 0.2, 0.5, 1.0})
      for (const bool with_nan : {false, true})
        for (const bool vidkv_order : {false, true}) {
          const std::vector<float> scores = scores_of(n, 11 + static_cast<std::uint64_t>(n), with_nan);
          const vidkv_salient_tokens p{ratio, n % 2 ? 14 : 0, vidkv_order};
          INFO("N " << n << " ratio " << ratio << " nan " << with_nan << " vidkv_order " << vidkv_order);
          const std::vector<std::int64_t> got = run(p, scores);
          CHECK(got == oracle(p, scores));
          CHECK(run(p, scores, 3) == got);
        }
}

TEST_CASE("vidkv_salient_tokens: VidKV's order drops the 32 highest positions, not the 32 least salient",
          "[vidkv_salient]") {
  // 96 tokens, ratio 1/2: k = 32·⌊48/32⌋ = 32 → nothing kept; ratio 1: k = 96 → 64 kept.
  // Saliency rises with the index: the consistent order keeps the 64 most salient (32 … 95);
  // VidKV sorts the top 96 ascending and drops the last 32, keeping 0 … 63.
  std::vector<float> rising(96);
  std::iota(rising.begin(), rising.end(), 0.0f);
  std::vector<std::int64_t> low(64), high(64);
  std::iota(low.begin(), low.end(), 14);
  std::iota(high.begin(), high.end(), 32 + 14);
  CHECK(run(vidkv_salient_tokens{1.0, 14, false}, rising) == high);
  CHECK(run(vidkv_salient_tokens{1.0, 14, true}, rising) == low);
  CHECK(run(vidkv_salient_tokens{0.5, 14, true}, rising).empty());
}

TEST_CASE("vidkv_salient_tokens: from embeddings, VidKV's mean dot product with the text", "[vidkv_salient]") {
  // 64 visual embeddings of width 4, token i = (i mod 7, 1, 0, 0) except tokens 10 … 41, which
  // point along the text's direction (0, 0, 3, 0); two text embeddings (0, 0, 1, 0), (0, 0, 2, 1).
  const index_t n = 64, dim = 4;
  std::vector<float> vision(static_cast<std::size_t>(n * dim), 0.0f);
  for (index_t i = 0; i < n; ++i) {
    float* row = vision.data() + i * dim;
    if (i >= 10 && i < 42) row[2] = 3.0f;
    else row[0] = static_cast<float>(i % 7), row[1] = 1.0f;
  }
  const float text[2 * 4] = {0, 0, 1, 0, 0, 0, 2, 1};
  const query_relevance saliency{query_relevance::level::token, query_relevance::measure::dot};
  std::vector<float> scores(static_cast<std::size_t>(n), -1.0f);
  REQUIRE(apply(cpu{}, saliency,
                feature_score_inputs<float>{sequence_grid(n), make_view(vision.data(), n, dim), make_view(text, 2, dim)},
                score_outputs<>{make_view(scores.data(), n)}) == status::ok);
  CHECK(scores[10] == 4.5f);  // (3 + 6) / 2
  CHECK(scores[0] == 0.0f);
  std::vector<std::int64_t> want(32);
  std::iota(want.begin(), want.end(), 10 + 14);
  CHECK(run(vidkv_salient_tokens{1.0, 14, false}, scores) == want);
}

TEST_CASE("vidkv_salient_tokens: bad input returns its status and leaves the positions untouched",
          "[vidkv_salient]") {
  const std::vector<float> scores = scores_of(576, 3, false);
  const vidkv_salient_tokens p;  // 64 positions
  std::vector<std::int64_t> positions(64, sentinel);
  const std::vector<std::int64_t> untouched = positions;
  host_workspace ws(workspace_bytes(cpu{}, p, problem{sequence_grid(576), 0}));
  const auto call = [&](const vidkv_salient_tokens& q, const view<const float, 1>& s, const view<std::int64_t, 1>& out,
                        cpu<> exec = {}, workspace w = {}) {
    return apply(exec, q, vidkv_salient_inputs<>{s}, vidkv_salient_outputs<>{out}, w.data ? w : ws.get());
  };
  const view<const float, 1> in = make_view(scores.data(), 576);
  const view<std::int64_t, 1> out = make_view(positions.data(), 64);
  CHECK(call(p, in, out, cpu<>{2, 2}) == status::invalid_exec);
  CHECK(call(p, make_view(scores.data(), 0), out) == status::empty_input);
  CHECK(call(p, make_view(scores.data(), 31), out) == status::budget_exceeds_input);
  for (const double ratio : {-0.1, 1.5, static_cast<double>(nan_value)})
    CHECK(call(vidkv_salient_tokens{ratio}, in, out) == status::invalid_ratio);
  CHECK(call(vidkv_salient_tokens{0.2, -1}, in, out) == status::invalid_parameter);
  CHECK(call(vidkv_salient_tokens{0.2, std::numeric_limits<index_t>::max() - 100}, in, out) ==
        status::invalid_parameter);
  CHECK(call(p, view<const float, 1>(nullptr, {576}), out) == status::null_pointer);
  CHECK(call(p, in, make_view(positions.data(), 63)) == status::shape_mismatch);
  CHECK(call(p, in, view<std::int64_t, 1>(nullptr, {64})) == status::null_pointer);
  std::vector<std::int64_t> shared(400, sentinel);  // scores and positions in one buffer
  CHECK(call(p, view<const float, 1>(reinterpret_cast<const float*>(shared.data()), {576}),
             view<std::int64_t, 1>(shared.data() + 200, {64})) == status::aliasing);
  CHECK(call(p, in, out, cpu<>{}, workspace{ws.bytes.data(), ws.bytes.size() - 1}) == status::workspace_too_small);
  CHECK(positions == untouched);
  // A share other than 0 checks and writes nothing.
  CHECK(call(p, in, out, cpu<>{1, 2}) == status::ok);
  CHECK(positions == untouched);
  CHECK(call(p, in, out) == status::ok);
  CHECK(positions != untouched);
}
