// tests/cpu/test_feature_scores.cpp — token_norm, query_relevance and temporal_similarity on CPU:
// against the double-precision oracle over the shared case table (every element type, 1–3 shares
// compared bit for bit), the documented results for zero rows, NaN, infinity and one frame, and
// every bad input with the scores untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/feature_scores.hpp>
#include <tokred/policy/feature_scores.hpp>

#include "reference/feature_scores_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float sentinel = -4321.0f;
const float nan_value = std::numeric_limits<float>::quiet_NaN();
const float inf = std::numeric_limits<float>::infinity();

/// Runs `p` as `nth` shares (in reverse order) into a sentinel-filled score vector.
template <class P, class E>
std::vector<float> run_shares(const P& p, const feature_score_inputs<E>& in, int nth = 1) {
  const problem prob{in.grid, in.tokens.extent(1)};
  const index_t count = score_count(p, prob);
  REQUIRE(count > 0);
  std::vector<float> scores(static_cast<std::size_t>(count), sentinel);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, score_outputs<>{make_view(scores.data(), count)}, ws.get()) ==
            status::ok);
  return scores;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Every policy on one case: the oracle within the fp32 bound, and the same bits for 1, 2 and 3
/// shares. `queries` rows of query come from a second generator.
template <class E>
void check_case(const shape_case& c, index_t queries) {
  const index_t n = c.grid.tokens();
  const token_matrix<E> rows = continuous_rows<E>(n, c.dim, c.rows, 41 + static_cast<std::uint64_t>(n));
  const token_matrix<E> query = continuous_rows<E>(queries, c.dim, c.rows, 97);
  const feature_score_inputs<E> in{c.grid, rows.rows, query.rows};
  const double tolerance = ref::cosine_tolerance(c.dim);
  INFO(c.name << " " << element_name<E>() << " queries " << queries);

  const auto check = [&](const auto& p, const std::vector<double>& want, double tol, bool relative) {
    const std::vector<float> one = run_shares(p, in, 1);
    CHECK(ref::worst_error(one, want, relative) <= tol);
    CHECK(same_bits(one, run_shares(p, in, 2)));
    CHECK(same_bits(one, run_shares(p, in, 3)));
  };
  check(token_norm{}, ref::token_norms(view<const E, 2>(rows.rows)), tolerance, true);
  for (const temporal_similarity p : {temporal_similarity::evs(), temporal_similarity::dtd(),
                                      temporal_similarity{temporal_similarity::measure::cosine, 7.0f}})
    check(p, ref::temporal(p, c.grid, view<const E, 2>(rows.rows)), tolerance, false);
  const double mean_tolerance = tolerance + std::ldexp(static_cast<double>(queries), -24);
  const view<const E, 2> x(rows.rows), q(query.rows);
  for (const auto level : {query_relevance::level::token, query_relevance::level::frame}) {
    const query_relevance p{level};
    check(p, ref::relevance(p, c.grid, x, q), mean_tolerance, false);
    // Dot products: within the fp32 bound scaled by ‖x‖·‖q‖, and the same bits for any share split.
    const query_relevance dot{level, query_relevance::measure::dot};
    const std::vector<double> want = ref::relevance(dot, c.grid, x, q), scale = ref::relevance(dot, c.grid, x, q, true);
    const std::vector<float> one = run_shares(dot, in, 1);
    REQUIRE(one.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO("score " << i);
      CHECK(std::fabs(one[i] - want[i]) <= mean_tolerance * std::max(1.0, scale[i]));
    }
    CHECK(same_bits(one, run_shares(dot, in, 2)));
    CHECK(same_bits(one, run_shares(dot, in, 3)));
  }
}

}  // namespace

TEMPLATE_TEST_CASE("feature scores match the oracle on every case, for every share split",
                   "[feature_scores]", float, f16, bf16) {
  for (const shape_case& c : shape_cases()) check_case<TestType>(c, 3);
}

TEST_CASE("query_relevance: more query rows than one chunk, and a single query row", "[feature_scores]") {
  for (const shape_case& c : shape_cases()) {
    check_case<float>(c, 1);
    if (c.grid.frames > 1 || c.grid.tokens() == 576) check_case<bf16>(c, 70);  // two chunks of 64
  }
}

TEST_CASE("temporal_similarity: long frames, narrow frames and share boundaries inside a slot block",
          "[feature_scores]") {
  // 256-wide fp32 rows make slot blocks of 16 tokens; 7 frames of 5 × 13 tokens put every share
  // boundary of 2 to 5 shares inside a block and inside a frame.
  for (const token_grid grid : {token_grid{7, 5, 13}, token_grid{9, 1, 1}, token_grid{3, 1, 70}}) {
    const index_t n = grid.tokens();
    const token_matrix<float> rows = continuous_rows<float>(n, 256, layout::contiguous, 5);
    const feature_score_inputs<float> in{grid, rows.rows, {}};
    const temporal_similarity p = temporal_similarity::evs();
    const std::vector<float> one = run_shares(p, in, 1);
    CHECK(ref::worst_error(one, ref::temporal(p, grid, view<const float, 2>(rows.rows))) <=
          ref::cosine_tolerance(256));
    for (int nth = 2; nth <= 5; ++nth) CHECK(same_bits(one, run_shares(p, in, nth)));
  }
}

TEST_CASE("temporal_similarity: the first frame gets first_frame, also when it is the only frame",
          "[feature_scores]") {
  const token_matrix<float> rows = continuous_rows<float>(12, 8, layout::contiguous, 3);
  const feature_score_inputs<float> one_frame{image_grid(3, 4), rows.rows, {}};
  CHECK(run_shares(temporal_similarity::evs(), one_frame) == std::vector<float>(12, 255.0f));
  CHECK(run_shares(temporal_similarity::dtd(), one_frame, 3) == std::vector<float>(12, -inf));
  const feature_score_inputs<float> two_frames{token_grid{2, 2, 3}, rows.rows, {}};
  const temporal_similarity quarter{temporal_similarity::measure::cosine, 0.25f};
  const std::vector<float> s = run_shares(quarter, two_frames);
  CHECK(std::vector<float>(s.begin(), s.begin() + 6) == std::vector<float>(6, 0.25f));
  for (std::size_t i = 6; i < 12; ++i) CHECK(std::fabs(s[i]) <= 1.0f + 1e-6f);
}

TEST_CASE("feature scores: zero rows score cosine 0 (dissimilarity 1), never NaN", "[feature_scores]") {
  // Frame 0: a zero row and an ordinary one; frame 1: an ordinary row, then a zero row.
  const float x[4 * 3] = {0, 0, 0, 1, 2, 2, 3, 4, 0, 0, 0, 0};
  const feature_score_inputs<float> in{token_grid{2, 1, 2}, make_view(x, 4, 3), make_view(x, 1, 3)};
  CHECK(run_shares(temporal_similarity::evs(), in) == std::vector<float>{255, 255, 1, 1});
  CHECK(run_shares(temporal_similarity::dtd(), in) == std::vector<float>{-inf, -inf, 0, 0});
  CHECK(run_shares(token_norm{}, in) == std::vector<float>{0, 3, 5, 0});
  // The query is the zero row itself: every cosine is 0.
  CHECK(run_shares(query_relevance{}, in) == std::vector<float>{0, 0, 0, 0});
  CHECK(run_shares(query_relevance{query_relevance::level::frame}, in) == std::vector<float>{0, 0});
}

TEST_CASE("query_relevance, dot: the mean raw dot product with the query rows, by hand", "[feature_scores]") {
  // Two frames of two tokens; query rows (1, 0, 2) and (0, 1, 0).
  const float x[4 * 3] = {0, 0, 0, 1, 2, 2, 3, 4, 0, -1, 0, 5};
  const float q[2 * 3] = {1, 0, 2, 0, 1, 0};
  const feature_score_inputs<float> in{token_grid{2, 1, 2}, make_view(x, 4, 3), make_view(q, 2, 3)};
  const query_relevance dot{query_relevance::level::token, query_relevance::measure::dot};
  // Token 1: (5 + 2) / 2; token 2: (3 + 4) / 2; token 3: (9 + 0) / 2. A zero row scores 0.
  CHECK(run_shares(dot, in, 2) == std::vector<float>{0.0f, 3.5f, 3.5f, 4.5f});
  // Frame means (0.5, 1, 1) and (1, 2, 2.5): (2.5 + 1) / 2 and (6 + 2) / 2.
  const query_relevance frames{query_relevance::level::frame, query_relevance::measure::dot};
  CHECK(run_shares(frames, in) == std::vector<float>{1.75f, 4.0f});
  // Unlike the cosine, the dot product is not scale-free: a doubled query doubles every score.
  const float q2[3] = {2, 0, 4};
  const feature_score_inputs<float> doubled{in.grid, in.tokens, make_view(q2, 1, 3)};
  CHECK(run_shares(dot, doubled) == std::vector<float>{0.0f, 10.0f, 6.0f, 18.0f});
}

TEST_CASE("feature scores: a NaN or infinite element makes the scores its row enters NaN",
          "[feature_scores]") {
  // 3 frames of 2 tokens; token 2 (frame 1, slot 0) holds NaN, token 5 (frame 2, slot 1) inf.
  float x[6 * 2] = {1, 0, 0, 1, nan_value, 1, 1, 1, 1, 2, inf, 1};
  const feature_score_inputs<float> in{token_grid{3, 1, 2}, make_view<const float>(x, 6, 2),
                                       make_view<const float>(x + 4, 1, 2)};  // query: token 2
  const std::vector<float> dis = run_shares(temporal_similarity::evs(), in);
  CHECK((dis[0] == 255 && dis[1] == 255));
  CHECK(std::isnan(dis[2]));  // NaN against frame 0
  CHECK(std::isnan(dis[4]));  // frame 2 slot 0 against the NaN row
  CHECK(std::isnan(dis[5]));  // inf row: inf / inf
  CHECK(!std::isnan(dis[3]));
  const std::vector<float> norms = run_shares(token_norm{}, in);
  CHECK(std::isnan(norms[2]));
  CHECK(norms[5] == inf);
  // The query holds the NaN: every relevance is NaN.
  for (float r : run_shares(query_relevance{}, in)) CHECK(std::isnan(r));

  // EVS ranks a NaN dissimilarity last: NaN tokens are dropped first, before the most similar
  // finite one. q = 0.5 keeps int(6 · 0.5) = 3: frame 0 (255) and the one finite score.
  const topk evs{evs_budget(0.5, in.grid.frame_tokens())};
  REQUIRE(retained_count(evs, problem{in.grid, 2}) == 3);
  selection_buffers<float> kept(3, 2);
  host_workspace ws(workspace_bytes(cpu{}, evs, problem{in.grid, 2}));
  REQUIRE(apply(cpu{}, evs, selection_inputs<float>{in.grid, make_view<const float>(dis.data(), 6), in.tokens},
                kept.outputs(), ws.get()) == status::ok);
  CHECK(kept.source == std::vector<std::int64_t>{0, 1, 3});
}

TEST_CASE("feature scores: problem facts before any data", "[feature_scores]") {
  const problem video{token_grid{8, 12, 12}, 64};
  CHECK(score_count(token_norm{}, video) == 1152);
  CHECK(score_count(temporal_similarity{}, video) == 1152);
  CHECK(score_count(query_relevance{}, video) == 1152);
  CHECK(score_count(query_relevance{query_relevance::level::frame}, video) == 8);
  CHECK(can_implement(temporal_similarity{}, problem{token_grid{-1, 2, 2}, 4}) == status::shape_mismatch);
  CHECK(can_implement(token_norm{}, problem{token_grid{0, 2, 2}, 4}) == status::empty_input);
  CHECK(can_implement(query_relevance{}, problem{token_grid{1, 2, 2}, 0}) == status::empty_input);
  CHECK(score_count(query_relevance{}, problem{token_grid{1, 2, 2}, 0}) == 0);
  CHECK(workspace_bytes(cpu{}, token_norm{}, video) == 0);
  CHECK(workspace_bytes(cpu{}, temporal_similarity{}, video) == 0);
  CHECK(workspace_bytes(cpu{}, query_relevance{}, video) == 0);
  // Frame level: per share, 64 column sums and the 64-wide mean token, with alignment slack.
  CHECK(workspace_bytes(cpu{0, 2}, query_relevance{query_relevance::level::frame}, video) ==
        2 * 2 * (64 * sizeof(float) + 63));
  CHECK(workspace_bytes(cpu{0, 0}, query_relevance{query_relevance::level::frame}, video) == 0);
}

TEST_CASE("feature scores: bad input returns its status and leaves the scores untouched",
          "[feature_scores][bad-input]") {
  const token_grid grid{2, 2, 3};
  const token_matrix<float> rows = continuous_rows<float>(12, 8, layout::contiguous, 6);
  const token_matrix<float> query = continuous_rows<float>(2, 8, layout::contiguous, 7);
  const feature_score_inputs<float> good{grid, rows.rows, query.rows};
  std::vector<float> scores(12, sentinel);
  const score_outputs<> out{make_view(scores.data(), 12)};
  const query_relevance frames{query_relevance::level::frame};
  const auto untouched = [&] { return scores == std::vector<float>(12, sentinel); };
  host_workspace ws(workspace_bytes(cpu{}, frames, problem{grid, 8}));
  const auto run = [&](const auto& p, const feature_score_inputs<float>& in, const score_outputs<>& o,
                       workspace w = {}) { return apply(cpu{}, p, in, o, w); };

  SECTION("exec") {
    CHECK(apply(cpu{2, 2}, token_norm{}, good, out) == status::invalid_exec);
    CHECK(apply(cpu{0, 0}, temporal_similarity{}, good, out) == status::invalid_exec);
  }
  SECTION("grid and rows") {
    CHECK(run(token_norm{}, {token_grid{2, -2, 3}, rows.rows, {}}, out) == status::shape_mismatch);
    CHECK(run(token_norm{}, {token_grid{0, 2, 3}, rows.rows, {}}, out) == status::empty_input);
    CHECK(run(temporal_similarity{}, {token_grid{3, 2, 3}, rows.rows, {}}, out) == status::shape_mismatch);
    CHECK(run(temporal_similarity{}, {grid, view<const float, 2>(nullptr, {12, 8}), {}}, out) ==
          status::null_pointer);
    CHECK(run(token_norm{}, {grid, view<const float, 2>(rows.rows.data_handle(), {12, 0}), {}}, out) ==
          status::empty_input);
  }
  SECTION("query rows (query_relevance only)") {
    CHECK(run(query_relevance{}, {grid, rows.rows, {}}, out) == status::empty_input);
    const view<const float, 2> narrow(query.rows.data_handle(), {2, 7});
    CHECK(run(query_relevance{}, {grid, rows.rows, narrow}, out) == status::shape_mismatch);
    CHECK(run(query_relevance{}, {grid, rows.rows, view<const float, 2>(nullptr, {2, 8})}, out) ==
          status::null_pointer);
    // The other scores never read the query, whatever it is.
    CHECK(run(token_norm{}, {grid, rows.rows, view<const float, 2>(nullptr, {2, 7})}, out) == status::ok);
    scores.assign(12, sentinel);
  }
  SECTION("scores output") {
    CHECK(run(token_norm{}, good, {make_view(scores.data(), 11)}) == status::shape_mismatch);
    CHECK(run(token_norm{}, good, {}) == status::shape_mismatch);
    CHECK(run(token_norm{}, good, {view<float, 1>(nullptr, {12})}) == status::null_pointer);
    CHECK(run(frames, good, out, ws.get()) == status::shape_mismatch);  // frame level writes (T,)
  }
  SECTION("aliasing") {
    std::vector<float> shared(12 * 8 + 12);
    const view<const float, 2> in_place(shared.data(), {12, 8});
    CHECK(run(token_norm{}, {grid, in_place, {}}, {make_view(shared.data() + 90, 12)}) == status::aliasing);
    CHECK(run(query_relevance{}, {grid, rows.rows, view<const float, 2>(scores.data(), {1, 8})}, out) ==
          status::aliasing);
    CHECK(run(temporal_similarity{}, {grid, in_place, {}}, {make_view(shared.data() + 96, 12)}) == status::ok);
    scores.assign(12, sentinel);
  }
  SECTION("workspace") {
    const score_outputs<> two{make_view(scores.data(), 2)};
    CHECK(run(frames, good, two, {ws.get().data, ws.get().bytes - 1}) == status::workspace_too_small);
    CHECK(run(frames, good, two, {nullptr, ws.get().bytes}) == status::null_pointer);
  }
  CHECK(untouched());
}
