// policy_tour.cpp — one short scene per idea: views, budgets, statuses, workspace and each
// selection policy. The docs quote the regions between the example markers verbatim; the checks
// around them make sure the comments in those regions tell the truth.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

namespace {

/// A two-frame clip: 2 frames of 3 x 4 tokens, 8 fp32 values per token; token i's row holds
/// 100·i + c in column c, so a kept row tells which token it came from.
struct clip {
  static constexpr tokred::index_t n = 24, dim = 8;
  std::vector<float> rows = std::vector<float>(n * dim);  // (tokens, dim)
  std::vector<float> scores = std::vector<float>(n);      // (tokens,)
  clip() {
    for (tokred::index_t i = 0; i < n; ++i) {
      for (tokred::index_t c = 0; c < dim; ++c)
        rows[static_cast<std::size_t>(i * dim + c)] = static_cast<float>(100 * i + c);
      scores[static_cast<std::size_t>(i)] = static_cast<float>((i * 7) % 24);
    }
  }
};

void views() {
  std::printf("views\n");
  // example-begin views
  float data[24 * 8] = {};                                              // 24 tokens of 8 values
  const tokred::view<float, 2> rows = tokred::make_view(data, 24, 8);  // (tokens, dim), strides (8, 1)
  const tokred::view<const float, 2> read_only = rows;                 // mutable converts to const
  rows(5, 2) = 1.5f;                                                    // element 2 of token 5

  // The first 4 columns of every row, e.g. the part of a wider row that a score looks at.
  const tokred::view<const float, 2> head = tokred::make_strided_view(  // (tokens, 4)
      static_cast<const float*>(data), std::array<tokred::index_t, 2>{24, 4},
      std::array<tokred::index_t, 2>{8, 1});
  // The tokens in reverse order: a negative stride, as DLPack allows.
  const tokred::view<const float, 2> reversed = tokred::make_strided_view(  // (tokens, dim)
      static_cast<const float*>(data + 23 * 8), std::array<tokred::index_t, 2>{24, 8},
      std::array<tokred::index_t, 2>{-8, 1});
  // example-end views
  SCENE_CHECK(read_only(5, 2) == 1.5f && head(5, 2) == 1.5f && reversed(18, 2) == 1.5f);
  SCENE_CHECK(rows.rank() == 2 && rows.extent(0) == 24 && rows.stride(0) == 8 && rows.stride(1) == 1);
  SCENE_CHECK(head.required_span_size() == 23 * 8 + 4 && reversed.required_span_size() == 24 * 8);

  // example-begin frames-view
  // An encoder output of shape [T, H, W, D] in C order is already N = T·H·W token rows of D
  // values, frame-major then row-major: the order a token_grid describes.
  const tokred::token_grid grid{2, 3, 4};                        // (T, H, W): 2 frames of 3 x 4
  static float video[2 * 3 * 4 * 8];                             // [T, H, W, D] with D = 8
  const tokred::view<const float, 2> tokens = tokred::make_view(  // (tokens, dim) = (24, 8)
      static_cast<const float*>(video), grid.tokens(), 8);
  const tokred::token_position p = grid.position(17);            // (t, h, w) = (1, 1, 1)
  // example-end frames-view
  SCENE_CHECK(tokens.extent(0) == 24 && p.t == 1 && p.h == 1 && p.w == 1);
}

void budgets() {
  std::printf("budgets\n");
  // example-begin budgets
  using tokred::keep_budget;
  using tokred::rounding;
  // A budget is a count, or a ratio with an explicit rounding rule. For N = 576 (24 x 24):
  const auto a = tokred::kept_count(keep_budget::count(144), 576);                        // 144
  const auto b = tokred::kept_count(keep_budget::ratio(0.5, rounding::floor), 576);       // 288
  const auto c = tokred::kept_count(keep_budget::ratio(1 - 0.75, rounding::half_even), 576);  // 144
  // Where the rules differ: 290 · 0.25 = 72.5 and 294 · 0.25 = 73.5.
  const auto d = tokred::kept_count(keep_budget::ratio(0.25, rounding::floor), 290);      // 72
  const auto e = tokred::kept_count(keep_budget::ratio(0.25, rounding::half_even), 290);  // 72, as Python round
  const auto f = tokred::kept_count(keep_budget::ratio(0.25, rounding::half_even), 294);  // 74
  const auto g = tokred::kept_count(keep_budget::ratio(0.25, rounding::ceil), 290);       // 73
  const auto h = tokred::kept_count(keep_budget::count(600), 576);  // status budget_exceeds_input
  // example-end budgets
  SCENE_CHECK(a.count == 144 && b.count == 288 && c.count == 144);
  SCENE_CHECK(d.count == 72 && e.count == 72 && f.count == 74 && g.count == 73);
  SCENE_CHECK(h.code == tokred::status::budget_exceeds_input);
}

void topk_scene() {
  std::printf("topk\n");
  const clip x;
  // example-begin topk
  const tokred::problem prob{tokred::token_grid{2, 3, 4}, 8};  // 2 frames of 3 x 4 tokens, dim 8
  const tokred::topk policy{tokred::keep_budget::count(6)};    // scope::global by default
  const tokred::index_t k = tokred::retained_count(policy, prob);  // 6

  std::vector<float> kept(k * 8);                  // (kept, dim)
  std::vector<std::int64_t> source(k);             // (kept,)
  std::vector<std::int32_t> positions(k * 3);      // (kept, 3)
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  const tokred::selection_inputs<float> in{prob.grid,
                                           tokred::make_view(x.scores.data(), 24),    // (tokens,)
                                           tokred::make_view(x.rows.data(), 24, 8)};  // (tokens, dim)
  const tokred::selection_outputs<float> out{tokred::make_view(kept.data(), k, 8),
                                             tokred::make_view(source.data(), k),
                                             tokred::make_view(positions.data(), k, 3)};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok; source holds the 6 best-scoring tokens in ascending order
  // example-end topk
  SCENE_CHECK(s == tokred::status::ok && k == 6);
  // scores are (7·i) mod 24, a permutation of 0..23: the kept tokens are those scoring 18..23.
  std::vector<std::int64_t> expect;
  for (std::int64_t i = 0; i < 24; ++i)
    if (x.scores[static_cast<std::size_t>(i)] >= 18.0f) expect.push_back(i);
  SCENE_CHECK(source == expect);
  SCENE_CHECK(kept[8] == 100.0f * static_cast<float>(source[1]));

  // example-begin topk-per-frame
  // The same budget per frame: 3 of each frame's 12 tokens (k from the frame's H·W).
  const tokred::topk per_frame{tokred::keep_budget::ratio(0.25, tokred::rounding::floor),
                               tokred::scope::per_frame};
  const tokred::index_t k2 = tokred::retained_count(per_frame, prob);  // 2 frames · 3 = 6
  // example-end topk-per-frame
  SCENE_CHECK(k2 == 6);
  std::vector<std::byte> scratch2(tokred::workspace_bytes(tokred::cpu{}, per_frame, prob));
  SCENE_CHECK(tokred::apply(tokred::cpu{}, per_frame, in, out, {scratch2.data(), scratch2.size()}) ==
             tokred::status::ok);
  SCENE_CHECK(std::count_if(source.begin(), source.end(), [](std::int64_t i) { return i < 12; }) == 3);

  // example-begin topk-ties
  // Ties rank by index, NaN below every number: keep 2 of {1, NaN, 3, 3, -inf}.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float tie_scores[5] = {1.0f, nan, 3.0f, 3.0f, -std::numeric_limits<float>::infinity()};
  std::int64_t winners[2];  // (kept,) = {2, 3}
  const tokred::selection_inputs<float> tie_in{tokred::sequence_grid(5), tokred::make_view(tie_scores, 5), {}};
  const tokred::selection_outputs<float> tie_out{{}, tokred::make_view(winners, 2), {}};
  // example-end topk-ties
  std::byte tie_scratch[1024];
  const tokred::topk keep2{tokred::keep_budget::count(2)};
  SCENE_CHECK(tokred::workspace_bytes(tokred::cpu{}, keep2, {tokred::sequence_grid(5), 0}) <= sizeof tie_scratch);
  SCENE_CHECK(tokred::apply(tokred::cpu{}, keep2, tie_in, tie_out, {tie_scratch, sizeof tie_scratch}) ==
             tokred::status::ok);
  SCENE_CHECK(winners[0] == 2 && winners[1] == 3);
  const tokred::topk keep4{tokred::keep_budget::count(4)};
  std::int64_t four[4];
  SCENE_CHECK(tokred::apply(tokred::cpu{}, keep4, tie_in,
                           tokred::selection_outputs<float>{{}, tokred::make_view(four, 4), {}},
                           {tie_scratch, sizeof tie_scratch}) == tokred::status::ok);
  SCENE_CHECK(four[0] == 0 && four[1] == 2 && four[2] == 3 && four[3] == 4);  // NaN (1) is last
}

void uniform_scene() {
  std::printf("uniform\n");
  const clip x;
  // example-begin uniform
  // 6 of 24 tokens, evenly spaced: floor((2j + 1) · 24 / 12) = 2, 6, 10, 14, 18, 22.
  const tokred::uniform policy{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)};
  const tokred::problem prob{tokred::sequence_grid(24), 8};
  std::int64_t picked[6];                           // (kept,)
  const tokred::selection_inputs<float> in{prob.grid, {}, tokred::make_view(x.rows.data(), 24, 8)};
  const tokred::selection_outputs<float> out{{}, tokred::make_view(picked, 6), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out);  // no scores, no workspace
  // example-end uniform
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(tokred::workspace_bytes(tokred::cpu{}, policy, prob) == 0);
  const std::int64_t expect[6] = {2, 6, 10, 14, 18, 22};
  SCENE_CHECK(std::equal(picked, picked + 6, expect));
}

void random_scene() {
  std::printf("random_subset\n");
  const clip x;
  // example-begin random
  // 6 of 24 tokens drawn at random; the seed fixes the draw on every machine and backend.
  const tokred::random_subset policy{tokred::keep_budget::count(6), /*seed=*/42};
  const tokred::problem prob{tokred::sequence_grid(24), 8};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::int64_t picked[6];                           // (kept,) ascending
  const tokred::selection_inputs<float> in{prob.grid, {}, tokred::make_view(x.rows.data(), 24, 8)};
  const tokred::selection_outputs<float> out{{}, tokred::make_view(picked, 6), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // example-end random
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(std::is_sorted(picked, picked + 6) && std::adjacent_find(picked, picked + 6) == picked + 6);
  std::int64_t again[6];
  SCENE_CHECK(tokred::apply(tokred::cpu{}, policy, in,
                           tokred::selection_outputs<float>{{}, tokred::make_view(again, 6), {}},
                           {scratch.data(), scratch.size()}) == tokred::status::ok);
  SCENE_CHECK(std::equal(picked, picked + 6, again));
  const std::int64_t documented[6] = {4, 8, 10, 11, 12, 15};  // docs/policies/random_subset.md
  SCENE_CHECK(std::equal(picked, picked + 6, documented));
  std::printf("  seed 42 keeps");
  for (std::int64_t i : picked) std::printf(" %lld", static_cast<long long>(i));
  std::printf("\n");
}

void gather_scene() {
  std::printf("gather\n");
  const clip x;
  std::vector<float> layer2(x.rows.size());  // a second tensor with the same token order
  for (std::size_t i = 0; i < layer2.size(); ++i) layer2[i] = -x.rows[i];
  const tokred::token_grid grid{2, 3, 4};
  std::vector<std::byte> scratch(tokred::workspace_bytes(
      tokred::cpu{}, tokred::topk{tokred::keep_budget::count(6)}, {grid, 8}));

  // example-begin gather
  // Select once on the main features, then move the same rows of another tensor of the same
  // tokens (e.g. the deepstack features of another encoder layer) with gather.
  std::int64_t source[6];                                   // (kept,)
  const tokred::selection_inputs<float> in{grid, tokred::make_view(x.scores.data(), 24),
                                           tokred::make_view(x.rows.data(), 24, 8)};
  tokred::status s = tokred::apply(tokred::cpu{}, tokred::topk{tokred::keep_budget::count(6)}, in,
                                   tokred::selection_outputs<float>{{}, tokred::make_view(source, 6), {}},
                                   {scratch.data(), scratch.size()});

  std::vector<tokred::bf16> kept2(6 * 8);                   // (kept, dim), converted to bf16
  const tokred::gather_inputs<float> again{grid, tokred::make_view(source, 6),
                                           tokred::make_view(layer2.data(), 24, 8)};
  if (s == tokred::status::ok)
    s = tokred::apply(tokred::cpu{}, tokred::gather{}, again,
                      tokred::selection_outputs<tokred::bf16>{tokred::make_view(kept2.data(), 6, 8), {}, {}});
  // example-end gather
  SCENE_CHECK(s == tokred::status::ok);
  for (int j = 0; j < 6; ++j)
    SCENE_CHECK(tokred::to_float(kept2[static_cast<std::size_t>(j * 8 + 1)]) ==
               tokred::to_float(tokred::from_float<tokred::bf16>(-100.0f * static_cast<float>(source[j]) - 1.0f)));

  const std::int64_t bad[2] = {3, 24};
  const tokred::gather_inputs<float> bad_in{grid, tokred::make_view(bad, 2), tokred::make_view(x.rows.data(), 24, 8)};
  SCENE_CHECK(tokred::apply(tokred::cpu{}, tokred::gather{}, bad_in,
                           tokred::selection_outputs<float>{{}, tokred::make_view(source, 2), {}}) ==
             tokred::status::index_out_of_range);
}

void status_scene() {
  std::printf("status\n");
  const clip x;
  std::vector<float> kept(30 * 8);
  const tokred::selection_inputs<float> in{tokred::sequence_grid(24), tokred::make_view(x.scores.data(), 24),
                                           tokred::make_view(x.rows.data(), 24, 8)};
  const tokred::selection_outputs<float> out{tokred::make_view(kept.data(), 30, 8), {}, {}};
  // example-begin status
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::topk{tokred::keep_budget::count(30)}, in, out);
  if (s != tokred::status::ok)  // nothing was written to `out`
    std::printf("  topk: %s\n", tokred::to_string(s));  // "topk: budget_exceeds_input"
  // example-end status
  SCENE_CHECK(s == tokred::status::budget_exceeds_input);
}

void workspace_scene() {
  std::printf("workspace\n");
  // example-begin workspace-shared
  // One buffer for several policies and thread counts: size it for the largest, once.
  const tokred::problem prob{tokred::image_grid(24, 24), 1024};
  const tokred::topk top{tokred::keep_budget::count(144)};
  const tokred::random_subset baseline{tokred::keep_budget::count(144), /*seed=*/7};
  std::size_t bytes = 0;
  for (int nth : {1, 2, 4, 8}) {
    bytes = std::max(bytes, tokred::workspace_bytes(tokred::cpu{0, nth}, top, prob));
    bytes = std::max(bytes, tokred::workspace_bytes(tokred::cpu{0, nth}, baseline, prob));
  }
  std::vector<std::byte> scratch(bytes);  // any alignment will do
  // example-end workspace-shared
  // nth slices of (4·N + 63) + (8·k + 63) bytes each.
  SCENE_CHECK(bytes == 8 * (4 * 576 + 63 + 8 * 144 + 63));
  SCENE_CHECK(scratch.size() == bytes);
}

/// Six tokens of dim 2 in three near-copy pairs: (0, 1) along +x, (2, 3) along +y, (4, 5) along
/// −x; the copies drift by 0.1, 0.2 and 0.3, so the −x pair is the most spread.
constexpr float pairs[6 * 2] = {1, 0, 1, 0.1f, 0, 1, 0.2f, 1, -1, 0, -1, -0.3f};

void divprune_scene() {
  std::printf("divprune\n");
  // example-begin divprune
  // Keep 3 of the 6 paired tokens: DivPrune keeps one token of each pair.
  const tokred::divprune policy{tokred::keep_budget::count(3)};  // scope::global, no repeats
  const tokred::problem prob{tokred::sequence_grid(6), 2};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::int64_t source[3];  // (kept,) ascending: {0, 2, 4}
  std::int64_t picks[3];   // (kept,) pick order: {4, 0, 2}
  tokred::diversity_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(pairs, 6, 2);  // (tokens, dim); also the compared rows
  tokred::diversity_outputs<float> out{};
  out.source = tokred::make_view(source, 3);
  out.picks = tokred::make_view(picks, 3);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Token 4 is picked first: its nearest neighbour is the farthest (tie with 5, lower
  // index wins); token 0 is farthest from it, then token 2 is farthest from both.
  // example-end divprune
  SCENE_CHECK(s == tokred::status::ok);
  const std::int64_t want_source[3] = {0, 2, 4}, want_picks[3] = {4, 0, 2};
  SCENE_CHECK(std::equal(source, source + 3, want_source));
  SCENE_CHECK(std::equal(picks, picks + 3, want_picks));

  // example-begin divprune-original
  // The original's budget: round(0.098 · 576) = 56 of LLaVA-1.5's 24 x 24 tokens, Python
  // rounding, one global group, and its repeat quirk (allow_repeats) turned on.
  const tokred::divprune original = tokred::divprune::original(0.098);
  const tokred::index_t kept = tokred::retained_count(original, {tokred::image_grid(24, 24), 4096});  // 56
  // example-end divprune-original
  SCENE_CHECK(kept == 56 && original.allow_repeats && original.within == tokred::scope::global);
}

void kcenter_scene() {
  std::printf("kcenter\n");
  // example-begin kcenter
  // Points on a line at x = 0, 1, 2, 10, 11, 5: start at token 0, then the farthest (11), then
  // the one farthest from both (5).
  const float line[6 * 2] = {0, 0, 1, 0, 2, 0, 10, 0, 11, 0, 5, 0};
  const tokred::kcenter policy{tokred::keep_budget::count(3), tokred::scope::global, /*first=*/0};
  const tokred::problem prob{tokred::sequence_grid(6), 2};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::int64_t picks[3];  // (kept,) pick order: {0, 4, 5}
  tokred::diversity_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(line, 6, 2);
  tokred::diversity_outputs<float> out{};
  out.picks = tokred::make_view(picks, 3);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // example-end kcenter
  SCENE_CHECK(s == tokred::status::ok);
  const std::int64_t want[3] = {0, 4, 5};
  SCENE_CHECK(std::equal(picks, picks + 3, want));
}

void importance_diversity_scene() {
  std::printf("importance_diversity\n");
  // example-begin importance-diversity
  // The same paired tokens, with an importance per token (e.g. [CLS] attention): the first pick
  // is the most important token, and each pair gives up its less important member.
  const float importance[6] = {0.1f, 0.9f, 0.2f, 0.3f, 0.5f, 0.4f};  // (tokens,), each >= 0
  const tokred::importance_diversity policy{tokred::keep_budget::count(3)};
  const tokred::problem prob{tokred::sequence_grid(6), 2};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::int64_t source[3];  // (kept,) ascending: {1, 3, 4}
  std::int64_t picks[3];   // (kept,) pick order: {1, 4, 3}
  tokred::diversity_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(pairs, 6, 2);
  in.scores = tokred::make_view(importance, 6);
  tokred::diversity_outputs<float> out{};
  out.source = tokred::make_view(source, 3);
  out.picks = tokred::make_view(picks, 3);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // example-end importance-diversity
  SCENE_CHECK(s == tokred::status::ok);
  const std::int64_t want_source[3] = {1, 3, 4}, want_picks[3] = {1, 4, 3};
  SCENE_CHECK(std::equal(source, source + 3, want_source));
  SCENE_CHECK(std::equal(picks, picks + 3, want_picks));
}

void cdpruner_scene() {
  std::printf("cdpruner\n");
  // example-begin cdpruner
  // The paired tokens again, conditioned on one query row along +y (e.g. the mean of the
  // prompt's embeddings, as OpenVINO uses): relevance m_i is the cosine to the query.
  const float query[1 * 2] = {0, 1};                           // (queries, dim)
  const tokred::cdpruner policy{tokred::keep_budget::count(3)};  // OpenVINO kernel, w = 0.5, no split
  const tokred::problem prob{tokred::sequence_grid(6), 2};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::vector<float> kept(3 * 2);  // (kept, dim)
  std::int64_t source[3];          // (kept,) ascending: {1, 2, 5}
  std::int64_t picks[3];           // (kept,) pick order: {2, 1, 5}
  tokred::diversity_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(pairs, 6, 2);
  in.query = tokred::make_view(query, 1, 2);
  tokred::diversity_outputs<float> out{};
  out.tokens = tokred::make_view(kept.data(), 3, 2);
  out.source = tokred::make_view(source, 3);
  out.picks = tokred::make_view(picks, 3);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Token 2, the most relevant, is picked first; the DPP then keeps one token of each
  // other pair, and the kept rows come out in original order.
  // example-end cdpruner
  SCENE_CHECK(s == tokred::status::ok);
  const std::int64_t want_source[3] = {1, 2, 5}, want_picks[3] = {2, 1, 5};
  SCENE_CHECK(std::equal(source, source + 3, want_source));
  SCENE_CHECK(std::equal(picks, picks + 3, want_picks));
  SCENE_CHECK(kept[0] == 1.0f && kept[1] == 0.1f && kept[5] == -0.3f);  // rows 1, 2, 5 in order

  // example-begin cdpruner-openvino
  // OpenVINO GenAI's settings: pruning_ratio = 70 prunes 70 % of each frame, std::round(100 · 0.3)
  // = 30 of each 10 x 10 frame, split into halves of 15 + 15; relevance_weight 0.5.
  const tokred::cdpruner ov = tokred::cdpruner::openvino(70);
  const tokred::index_t k = tokred::retained_count(ov, {tokred::token_grid{2, 10, 10}, 2});  // 2 · 30 = 60
  // example-end cdpruner-openvino
  SCENE_CHECK(k == 60 && ov.split && ov.within == tokred::scope::per_frame && ov.relevance_weight == 0.5f);
}

/// FoPru's row strategy: whole patch rows, ranked by their summed score.
void top_rows_scene() {
  const clip c;
  // example-begin top-rows
  // Keep the best 2 of each frame's 3 patch rows: 2 rows x 4 tokens x 2 frames = 16 tokens.
  const tokred::top_rows policy{tokred::keep_budget::count(2)};
  const tokred::problem prob{tokred::token_grid{2, 3, 4}, clip::dim};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::int64_t source[16] = {};
  tokred::selection_outputs<float> out{};
  out.source = tokred::make_view(source, 16);
  const tokred::selection_inputs<float> in{prob.grid, tokred::make_view(c.scores.data(), clip::n), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Row sums are 42, 34, 50 in frame 0 and 42, 58, 50 in frame 1: rows 0 and 2 of
  // frame 0 (tokens 0 … 3, 8 … 11) and rows 1 and 2 of frame 1 (tokens 16 … 23) are kept.
  // example-end top-rows
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(source[0] == 0 && source[4] == 8 && source[8] == 16 && source[15] == 23);
}

/// HiRED's budget split over LLaVA-NeXT's partitions: the full image, then 2 x 2 sub-crops.
void hired_scene() {
  constexpr tokred::index_t per = 4 * 4, parts = 5;
  std::vector<float> late(parts * per), early(per);
  for (tokred::index_t i = 0; i < parts * per; ++i) late[static_cast<std::size_t>(i)] = static_cast<float>((i * 5) % 17);
  for (tokred::index_t i = 0; i < per; ++i) early[static_cast<std::size_t>(i)] = i % 4 < 2 ? 1.0f : 0.0f;
  // example-begin hired
  // 5 partitions of 4 x 4 tokens: the full image, then its 2 x 2 sub-crops, row-major.
  const tokred::hired policy{0.25, 0.5, 2, 2};  // keep 25 % of 80 tokens, half in the full image
  const tokred::problem prob{tokred::token_grid{parts, 4, 4}, 0};
  const tokred::index_t bound = tokred::retained_count(policy, prob);  // 20 = 10 full + 10 shared
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<std::int64_t> source(static_cast<std::size_t>(bound));
  std::int64_t count = 0;
  tokred::counted_outputs<float> out{};
  out.source = tokred::make_view(source.data(), bound);
  out.count = tokred::make_view(&count, 1);
  tokred::hired_inputs<float> in{};
  in.grid = prob.grid;
  in.scores = tokred::make_view(late.data(), parts * per);  // block-22 [CLS] attention, every partition
  in.early_scores = tokred::make_view(early.data(), per);   // block-0 [CLS] attention, full image
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. The 8 early marks all lie in the full image's left half, so the two left sub-crops
  // (1 and 3) share the 10 sub-crop tokens, 5 each: count == 20.
  // example-end hired
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(bound == 20 && count == 20);
  SCENE_CHECK(source[10] / per == 1 && source[15] / per == 3);
}

/// PruMerge's adaptive count: the IQR outliers of the scores, then PruMerge+'s uniform extras.
void iqr_outliers_scene() {
  // example-begin iqr-outliers
  // Twelve [CLS] attention scores; 12 and 30 lie above Q3 + 1.5·IQR = 11.375.
  const float attention[12] = {1, 2, 3, 4, 30, 1, 2, 3, 4, 8, 12, 5};
  const tokred::iqr_outliers policy = tokred::iqr_outliers::prumerge();
  const tokred::problem prob{tokred::sequence_grid(12), 0};
  const tokred::index_t bound = tokred::retained_count(policy, prob);  // 3: rows to allocate
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<std::int64_t> source(static_cast<std::size_t>(bound));
  std::int64_t count = 0;
  tokred::counted_outputs<float> out{};
  out.source = tokred::make_view(source.data(), bound);
  out.count = tokred::make_view(&count, 1);
  const tokred::selection_inputs<float> in{prob.grid, tokred::make_view(attention, 12), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok, count == 2, source == {4, 10}: descending attention, as the original's topk.
  // example-end iqr-outliers
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(bound == 3 && count == 2);
  SCENE_CHECK(source[0] == 4 && source[1] == 10);
}

}  // namespace

int main() {
  views();
  budgets();
  topk_scene();
  uniform_scene();
  random_scene();
  gather_scene();
  divprune_scene();
  kcenter_scene();
  importance_diversity_scene();
  cdpruner_scene();
  iqr_outliers_scene();
  top_rows_scene();
  hired_scene();
  status_scene();
  workspace_scene();
  return scene::finish();
}
