// tests/cpu/test_positions_mrope.cpp — M-RoPE ids of kept tokens in llama.cpp's planar llama_pos
// layout and as Qwen-VL (3, L) ids, the advance after a visual span under each engine's rule, and
// the bad inputs. Every expected array is written out by hand from the engines' rules (see
// docs/positions.md), never recomputed with the functions' own formulas.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/policy/mrope.hpp>

#include "support/catch.hpp"

using namespace tokred;

namespace {

using ints = std::vector<std::int32_t>;
using longs = std::vector<std::int64_t>;

/// A (kept, 3) view over a flat list of (t, h, w) triples.
view<const std::int32_t, 2> thw(const ints& flat) {
  return make_view(flat.data(), static_cast<index_t>(flat.size() / 3), 3);
}

constexpr std::int32_t untouched32 = -7;
constexpr std::int64_t untouched64 = -7;

}  // namespace

// ------------------------------------------------------------------------------------------------
// llama.cpp / libmtmd
// ------------------------------------------------------------------------------------------------

TEST_CASE("mtmd: an image chunk gets (pos0, pos0 + y, pos0 + x, 0), plane by plane", "[positions][mrope][mtmd]") {
  // A 2 x 3 image (after the merger) at position 5, every token kept.
  const token_grid grid = image_grid(2, 3);
  const ints kept = {0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2};
  ints pos(4 * 6, untouched32);
  REQUIRE(mtmd_positions(grid, thw(kept), 5, make_view(pos.data(), 4, 6)) == status::ok);
  CHECK(pos == ints{5, 5, 5, 5, 5, 5,    // t: the image sits at one temporal position
                    5, 5, 5, 6, 6, 6,    // y
                    5, 6, 7, 5, 6, 7,    // x
                    0, 0, 0, 0, 0, 0});  // unused plane
  CHECK(mtmd_n_pos(grid) == 3);  // max(2, 3): the text after the image starts at 8

  ints text(4 * 2, untouched32);
  REQUIRE(mtmd_text_positions(5 + mtmd_n_pos(grid), make_view(text.data(), 4, 2)) == status::ok);
  CHECK(text == ints{8, 9, 8, 9, 8, 9, 0, 0});
}

TEST_CASE("mtmd: a pruned video chunk keeps its frame and grid ids and its advance", "[positions][mrope][mtmd]") {
  // 3 frames of 2 x 2 at position 10: frame 0 whole, (1, 0, 1) of frame 1, (2, 1, 0) of frame 2.
  const token_grid grid{3, 2, 2};
  const ints kept = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 2, 1, 0};
  ints pos(4 * 6, untouched32);
  REQUIRE(mtmd_positions(grid, thw(kept), 10, make_view(pos.data(), 4, 6)) == status::ok);
  CHECK(pos == ints{10, 10, 10, 10, 11, 12,  // t = pos0 + frame, unscaled
                    10, 10, 11, 11, 10, 11,  // y
                    10, 11, 10, 11, 11, 10,  // x
                    0, 0, 0, 0, 0, 0});
  // libmtmd advances n_past by max(T, H, W) of the chunk's grid, pruned or not.
  CHECK(mtmd_n_pos(grid) == 3);
  CHECK(mtmd_n_pos(token_grid{2, 5, 3}) == 5);
  CHECK(mtmd_n_pos(token_grid{9, 5, 3}) == 9);
}

TEST_CASE("mtmd: text, a pruned image, text, a pruned video, text in one planar batch", "[positions][mrope][mtmd]") {
  // One llama_batch of 13 tokens; each part writes its columns of the 4 planes (stride 13).
  constexpr index_t n = 13;
  ints pos(4 * n, untouched32);
  auto columns = [&](index_t first, index_t count) {
    return view<std::int32_t, 2>(pos.data() + first, {4, count}, {n, 1});
  };
  const token_grid image = image_grid(2, 3), video{3, 2, 2};
  const ints image_kept = {0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 1, 1};
  const ints video_kept = {0, 0, 0, 0, 1, 1, 1, 0, 0, 2, 1, 1};

  std::int64_t p = 0;
  REQUIRE(mtmd_text_positions(p, columns(0, 3)) == status::ok);
  p += 3;
  REQUIRE(mtmd_positions(image, thw(image_kept), p, columns(3, 4)) == status::ok);
  p += mtmd_n_pos(image);
  REQUIRE(mtmd_text_positions(p, columns(7, 1)) == status::ok);
  p += 1;
  REQUIRE(mtmd_positions(video, thw(video_kept), p, columns(8, 4)) == status::ok);
  p += mtmd_n_pos(video);
  REQUIRE(mtmd_text_positions(p, columns(12, 1)) == status::ok);

  CHECK(pos == ints{0, 1, 2, 3, 3, 3, 3, 6, 7, 7, 8, 9, 10,    // t
                    0, 1, 2, 3, 3, 4, 4, 6, 7, 8, 7, 8, 10,    // y
                    0, 1, 2, 3, 5, 3, 4, 6, 7, 8, 7, 8, 10,    // x
                    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});   // unused
}

TEST_CASE("mtmd: bad inputs get their status and write nothing", "[positions][mrope][mtmd][bad_input]") {
  const token_grid grid{2, 2, 3};
  const ints kept = {0, 0, 0, 1, 1, 2};
  ints pos(8, untouched32);
  const ints fresh = pos;
  const auto out = make_view(pos.data(), 4, 2);
  constexpr std::int64_t largest = std::numeric_limits<std::int32_t>::max();

  CHECK(mtmd_positions(grid, make_view(kept.data(), 3, 2), 0, make_view(pos.data(), 4, 3)) == status::shape_mismatch);
  CHECK(mtmd_positions(grid, thw(kept), 0, make_view(pos.data(), 2, 4)) == status::shape_mismatch);
  CHECK(mtmd_positions(grid, thw(kept), 0, make_view(pos.data(), 4, 1)) == status::shape_mismatch);
  CHECK(mtmd_positions(grid, thw(kept), -1, out) == status::invalid_parameter);
  CHECK(mtmd_positions(token_grid{2, -2, 3}, thw(kept), 0, out) == status::invalid_parameter);
  // The position after the chunk, pos0 + max(T, H, W) = pos0 + 3, must be a llama_pos.
  CHECK(mtmd_positions(grid, thw(kept), largest - 2, out) == status::invalid_parameter);
  CHECK(mtmd_positions(grid, view<const std::int32_t, 2>(nullptr, {2, 3}), 0, out) == status::null_pointer);
  CHECK(mtmd_positions(grid, thw(kept), 0, view<std::int32_t, 2>(nullptr, {4, 2})) == status::null_pointer);
  for (const ints& outside : {ints{2, 0, 0, 0, 0, 0}, ints{0, 2, 0, 0, 0, 0}, ints{0, 0, 3, 0, 0, 0},
                              ints{0, 0, 0, -1, 0, 0}, ints{0, 0, 0, 0, -1, 0}, ints{0, 0, 0, 0, 0, -1}})
    CHECK(mtmd_positions(grid, thw(outside), 0, out) == status::index_out_of_range);
  CHECK(pos == fresh);

  // The output written over the positions it reads.
  ints both = {0, 0, 0, 1, 1, 2, 9, 9};
  const ints both_before = both;
  CHECK(mtmd_positions(grid, make_view(static_cast<const std::int32_t*>(both.data()), 2, 3), 0,
                       make_view(both.data(), 4, 2)) == status::aliasing);
  CHECK(both == both_before);

  // The largest pos0 that still leaves a llama_pos for the text after the chunk.
  REQUIRE(mtmd_positions(grid, thw(kept), largest - 3, out) == status::ok);
  CHECK(pos == ints{std::numeric_limits<std::int32_t>::max() - 3, std::numeric_limits<std::int32_t>::max() - 2,
                    std::numeric_limits<std::int32_t>::max() - 3, std::numeric_limits<std::int32_t>::max() - 2,
                    std::numeric_limits<std::int32_t>::max() - 3, std::numeric_limits<std::int32_t>::max() - 1, 0, 0});
  // Nothing kept needs no data.
  CHECK(mtmd_positions(grid, view<const std::int32_t, 2>(nullptr, {0, 3}), 4, view<std::int32_t, 2>(nullptr, {4, 0})) ==
        status::ok);

  ints text(8, untouched32);
  CHECK(mtmd_text_positions(0, make_view(text.data(), 3, 2)) == status::shape_mismatch);
  CHECK(mtmd_text_positions(-1, make_view(text.data(), 4, 2)) == status::invalid_parameter);
  CHECK(mtmd_text_positions(largest - 1, make_view(text.data(), 4, 2)) == status::invalid_parameter);
  CHECK(mtmd_text_positions(0, view<std::int32_t, 2>(nullptr, {4, 2})) == status::null_pointer);
  CHECK(text == ints(8, untouched32));
  CHECK(mtmd_text_positions(largest - 2, make_view(text.data(), 4, 2)) == status::ok);
  CHECK(text[1] == std::numeric_limits<std::int32_t>::max() - 1);
}

// ------------------------------------------------------------------------------------------------
// Qwen-VL (Hugging Face, vLLM)
// ------------------------------------------------------------------------------------------------

TEST_CASE("qwen: a whole video then text, as Hugging Face's get_rope_index numbers it", "[positions][mrope][qwen]") {
  // Qwen2.5-VL: 4 text tokens (0 … 3, the last is <|vision_start|>), a video of 3 temporal grids
  // of 2 x 2 merged tokens, 2 text tokens. tokens_per_second 2, one second per grid: tid = 2t.
  const token_grid grid{3, 2, 2};
  const ints all = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1,
                    1, 1, 0, 1, 1, 1, 2, 0, 0, 2, 0, 1, 2, 1, 0, 2, 1, 1};
  longs ids(3 * 12, untouched64);
  mrope_span_end end{untouched64, untouched64};
  REQUIRE(qwen_mrope_positions(qwen_mrope{}, grid, thw(all), 4, make_view(ids.data(), 3, 12), end) == status::ok);
  CHECK(ids == longs{4, 4, 4, 4, 6, 6, 6, 6, 8, 8, 8, 8,    // t
                     4, 4, 5, 5, 4, 4, 5, 5, 4, 4, 5, 5,    // h
                     4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5});  // w
  CHECK(end.next == 9);  // 4 + max(tid 4, 1, 1) + 1
  CHECK(end.end == 9);

  longs text(3 * 2, untouched64);
  REQUIRE(qwen_text_positions(end.next, make_view(text.data(), 3, 2)) == status::ok);
  CHECK(text == longs{9, 10, 9, 10, 9, 10});
  // mrope_position_delta = max(pos) + 1 - L = 11 - (4 + 12 + 2).
  CHECK(std::max(end.end, text[1] + 1) - (4 + 12 + 2) == -7);
}

TEST_CASE("qwen: the advance after a span whose last row was pruned", "[positions][mrope][qwen]") {
  // A portrait image of 3 x 2 merged tokens at start 2; pruning dropped the whole last row (h = 2).
  const token_grid grid = image_grid(3, 2);
  const ints kept = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1};
  const longs expected = {2, 2, 2, 2,   // t
                          2, 2, 3, 3,   // h
                          2, 3, 2, 3};  // w
  longs ids(3 * 4, untouched64);
  mrope_span_end end{};

  qwen_mrope p;  // Hugging Face: past the full grid, 2 + max(0, 2, 1) + 1, as if nothing was pruned
  REQUIRE(qwen_mrope_positions(p, grid, thw(kept), 2, make_view(ids.data(), 3, 4), end) == status::ok);
  CHECK(ids == expected);
  CHECK(end.next == 5);
  CHECK(end.end == 4);

  p.advance = mrope_advance::kept_max;  // one past the largest kept id: the dropped row is gone
  REQUIRE(qwen_mrope_positions(p, grid, thw(kept), 2, make_view(ids.data(), 3, 4), end) == status::ok);
  CHECK(ids == expected);
  CHECK(end.next == 4);

  p.advance = mrope_advance::span_width;  // vLLM EVS: start + W, below the image's last h id 4
  REQUIRE(qwen_mrope_positions(p, grid, thw(kept), 2, make_view(ids.data(), 3, 4), end) == status::ok);
  CHECK(end.next == 4);
  CHECK(end.end == 4);
}

TEST_CASE("qwen: vLLM EVS on a long video continues the text at start + W", "[positions][mrope][qwen]") {
  // 4 temporal grids of 2 x 2 at start 4, tid = 2t; EVS kept frame 0 and (3, 0, 1), then one text token.
  const token_grid grid{4, 2, 2};
  const ints kept = {0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 3, 0, 1};
  longs ids(3 * 5, untouched64);
  mrope_span_end end{};
  REQUIRE(qwen_mrope_positions(qwen_mrope::vllm_evs(2.0, 1.0), grid, thw(kept), 4, make_view(ids.data(), 3, 5), end) ==
          status::ok);
  CHECK(ids == longs{4, 4, 4, 4, 10,   // t
                     4, 4, 5, 5, 4,    // h
                     4, 5, 4, 5, 5});  // w
  CHECK(end.next == 6);  // 4 + W: inside the video's temporal range 4 … 10
  CHECK(end.end == 11);
  longs text(3, untouched64);
  REQUIRE(qwen_text_positions(end.next, make_view(text.data(), 3, 1)) == status::ok);
  CHECK(text == longs{6, 6, 6});
  // vLLM's delta takes the max over the whole prompt: the video's 10, not the text's 6.
  CHECK(std::max(end.end, text[0] + 1) - (4 + 5 + 1) == 1);

  // Hugging Face would continue past the full grid: 4 + max(6, 1, 1) + 1; keeping (3, 0, 1)
  // keeps the last frame, so the largest kept id gives the same here.
  qwen_mrope hf;
  REQUIRE(qwen_mrope_positions(hf, grid, thw(kept), 4, make_view(ids.data(), 3, 5), end) == status::ok);
  CHECK(end.next == 11);
  hf.advance = mrope_advance::kept_max;
  REQUIRE(qwen_mrope_positions(hf, grid, thw(kept), 4, make_view(ids.data(), 3, 5), end) == status::ok);
  CHECK(end.next == 11);
}

TEST_CASE("qwen: an image, then a pruned video, then text", "[positions][mrope][qwen]") {
  // L = 2 text + 6 image + 2 text + 3 video + 1 text = 14 tokens.
  const token_grid image = image_grid(2, 3), video{2, 2, 2};
  const ints image_kept = {0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2};
  const ints video_kept = {0, 0, 0, 0, 1, 1, 1, 0, 1};
  longs ids(3 * 14, untouched64);
  auto columns = [&](index_t first, index_t count) {
    return view<std::int64_t, 2>(ids.data() + first, {3, count}, {14, 1});
  };
  mrope_span_end image_end{}, video_end{};
  REQUIRE(qwen_text_positions(0, columns(0, 2)) == status::ok);
  REQUIRE(qwen_mrope_positions(qwen_mrope{}, image, thw(image_kept), 2, columns(2, 6), image_end) == status::ok);
  REQUIRE(qwen_text_positions(image_end.next, columns(8, 2)) == status::ok);
  REQUIRE(qwen_mrope_positions(qwen_mrope{}, video, thw(video_kept), image_end.next + 2, columns(10, 3), video_end) ==
          status::ok);
  REQUIRE(qwen_text_positions(video_end.next, columns(13, 1)) == status::ok);
  CHECK(image_end.next == 5);   // 2 + max(0, 1, 2) + 1
  CHECK(video_end.next == 10);  // 7 + max(tid 2, 1, 1) + 1
  CHECK(ids == longs{0, 1, 2, 2, 2, 2, 2, 2, 5, 6, 7, 7, 9, 10,    // t
                     0, 1, 2, 2, 2, 3, 3, 3, 5, 6, 7, 8, 7, 10,    // h
                     0, 1, 2, 3, 4, 2, 3, 4, 5, 6, 7, 8, 8, 10});  // w
  CHECK(video_end.end == 10);
  CHECK(std::max(video_end.end, ids[13] + 1) - 14 == -3);  // delta: max(pos) + 1 - L
}

TEST_CASE("qwen: where the seconds per grid are truncated", "[positions][mrope][qwen]") {
  // One token per temporal grid, 4 grids, start 0, tokens_per_second 2.
  const token_grid grid{4, 1, 1};
  const ints all = {0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0};
  longs ids(3 * 4, untouched64);
  mrope_span_end end{};
  auto time_ids = [&](const qwen_mrope& p) {
    REQUIRE(qwen_mrope_positions(p, grid, thw(all), 0, make_view(ids.data(), 3, 4), end) == status::ok);
    return longs(ids.begin(), ids.begin() + 4);
  };
  // fps 4 with temporal patch 2: 0.5 s per grid. Truncated first it is 0 s: every frame at 0.
  CHECK(time_ids(qwen_mrope{2.0, 0.5}) == longs{0, 0, 0, 0});
  CHECK(end.next == 1);
  CHECK(time_ids(qwen_mrope::vllm(2.0, 0.5)) == longs{0, 1, 2, 3});  // 0, 1.0, 2.0, 3.0
  CHECK(end.next == 4);
  // 0.75 s per grid: 0, 1.5, 3.0, 4.5 truncated; 1.5 s: 0 2 4 6 (1 s) against 0 3 6 9.
  CHECK(time_ids(qwen_mrope::vllm(2.0, 0.75)) == longs{0, 1, 3, 4});
  CHECK(time_ids(qwen_mrope{2.0, 1.5}) == longs{0, 2, 4, 6});
  CHECK(time_ids(qwen_mrope::vllm(2.0, 1.5)) == longs{0, 3, 6, 9});
  CHECK(end.next == 10);
  // Qwen2-VL: the frame index itself.
  CHECK(time_ids(qwen_mrope::qwen2_vl()) == longs{0, 1, 2, 3});
  // Qwen2.5-Omni's 25 tokens per second, 2 s per grid.
  CHECK(time_ids(qwen_mrope{25.0, 2.0}) == longs{0, 50, 100, 150});
}

TEST_CASE("qwen: the LLM grid from a patch grid and the spatial merge size", "[positions][mrope][qwen]") {
  token_grid grid{7, 7, 7};
  REQUIRE(qwen_llm_grid(2, 28, 42, 2, grid) == status::ok);
  CHECK((grid.frames == 2 && grid.height == 14 && grid.width == 21));
  REQUIRE(qwen_llm_grid(1, 36, 24, 1, grid) == status::ok);
  CHECK((grid.frames == 1 && grid.height == 36 && grid.width == 24));
  grid = {7, 7, 7};
  CHECK(qwen_llm_grid(1, 27, 42, 2, grid) == status::invalid_parameter);
  CHECK(qwen_llm_grid(1, 28, 41, 2, grid) == status::invalid_parameter);
  CHECK(qwen_llm_grid(1, 28, 42, 0, grid) == status::invalid_parameter);
  CHECK(qwen_llm_grid(-1, 28, 42, 2, grid) == status::invalid_parameter);
  CHECK((grid.frames == 7 && grid.height == 7 && grid.width == 7));
}

TEST_CASE("qwen: bad inputs get their status and write nothing", "[positions][mrope][qwen][bad_input]") {
  const token_grid grid{2, 2, 3};
  const ints kept = {0, 0, 0, 1, 1, 2};
  longs ids(6, untouched64);
  const longs fresh = ids;
  const auto out = make_view(ids.data(), 3, 2);
  const mrope_span_end sentinel{untouched64, untouched64};
  mrope_span_end end = sentinel;
  const qwen_mrope p;
  constexpr std::int64_t largest = std::numeric_limits<std::int32_t>::max();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();

  CHECK(qwen_mrope_positions(p, grid, make_view(kept.data(), 3, 2), 0, make_view(ids.data(), 3, 3), end) ==
        status::shape_mismatch);
  CHECK(qwen_mrope_positions(p, grid, thw(kept), 0, make_view(ids.data(), 2, 3), end) == status::shape_mismatch);
  CHECK(qwen_mrope_positions(p, grid, thw(kept), 0, make_view(ids.data(), 3, 1), end) == status::shape_mismatch);
  CHECK(qwen_mrope_positions(p, grid, thw(kept), -1, out, end) == status::invalid_parameter);
  CHECK(qwen_mrope_positions(p, token_grid{-1, 2, 3}, thw(kept), 0, out, end) == status::invalid_parameter);
  for (const qwen_mrope& bad : {qwen_mrope{nan, 1.0}, qwen_mrope{2.0, nan}, qwen_mrope{inf, 1.0},
                                qwen_mrope{2.0, inf}, qwen_mrope{-2.0, 1.0}, qwen_mrope{2.0, -1.0}})
    CHECK(qwen_mrope_positions(bad, grid, thw(kept), 0, out, end) == status::invalid_parameter);
  // Refused even where no temporal id is computed (an empty grid).
  CHECK(qwen_mrope_positions(qwen_mrope{nan, 1.0}, token_grid{0, 2, 3}, view<const std::int32_t, 2>(nullptr, {0, 3}), 0,
                             view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::invalid_parameter);
  CHECK(qwen_mrope_positions(qwen_mrope{inf, 1.0}, token_grid{0, 2, 3}, view<const std::int32_t, 2>(nullptr, {0, 3}), 0,
                             view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::invalid_parameter);
  CHECK(qwen_mrope_positions(qwen_mrope{2.0, inf}, token_grid{0, 2, 3}, view<const std::int32_t, 2>(nullptr, {0, 3}), 0,
                             view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::invalid_parameter);
  // Temporal ids past INT32_MAX: 3e9 tokens per second puts frame 1 at 3e9.
  CHECK(qwen_mrope_positions(qwen_mrope{3e9, 1.0}, grid, thw(kept), 0, out, end) == status::invalid_parameter);
  CHECK(qwen_mrope_positions(qwen_mrope{1e300, 1e300}, grid, thw(kept), 0, out, end) == status::invalid_parameter);
  // Past the span: start + max(tid(1) + 1, 2, 3) = start + 3.
  CHECK(qwen_mrope_positions(p, grid, thw(kept), largest - 2, out, end) == status::invalid_parameter);
  const view<const std::int32_t, 2> no_positions(nullptr, {2, 3});
  const view<std::int64_t, 2> no_ids(nullptr, {3, 2});
  CHECK(qwen_mrope_positions(p, grid, no_positions, 0, out, end) == status::null_pointer);
  CHECK(qwen_mrope_positions(p, grid, thw(kept), 0, no_ids, end) == status::null_pointer);
  for (const ints& outside : {ints{2, 0, 0, 0, 0, 0}, ints{0, 2, 0, 0, 0, 0}, ints{0, 0, 3, 0, 0, 0},
                              ints{0, 0, 0, -1, 0, 0}, ints{0, 0, 0, 0, -1, 0}, ints{0, 0, 0, 0, 0, -1}})
    CHECK(qwen_mrope_positions(p, grid, thw(outside), 0, out, end) == status::index_out_of_range);
  CHECK(ids == fresh);
  CHECK((end.next == sentinel.next && end.end == sentinel.end));

  // ids written over the positions they are computed from (the int32 triples sit in the same
  // storage; aliasing is reported before anything is read).
  longs storage = {1, 2, 3, 4, 5, 6};
  const longs storage_before = storage;
  const view<const std::int32_t, 2> punned(reinterpret_cast<const std::int32_t*>(storage.data()), {2, 3});
  CHECK(qwen_mrope_positions(p, grid, punned, 0, make_view(storage.data(), 3, 2), end) == status::aliasing);
  CHECK(storage == storage_before);
  CHECK((end.next == sentinel.next && end.end == sentinel.end));

  // The largest start that leaves the position after the span in range.
  REQUIRE(qwen_mrope_positions(p, grid, thw(kept), largest - 3, out, end) == status::ok);
  CHECK(end.next == largest);
  // Nothing kept: no data needed, the advance still follows the grid (or stays at start).
  const token_grid video{3, 2, 2};  // full grid: 8 + max(tid 4 + 1, 2, 2); EVS: 8 + W
  REQUIRE(qwen_mrope_positions(p, video, view<const std::int32_t, 2>(nullptr, {0, 3}), 8,
                               view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::ok);
  CHECK((end.next == 13 && end.end == 8));
  REQUIRE(qwen_mrope_positions(qwen_mrope::vllm_evs(2.0, 1.0), video, view<const std::int32_t, 2>(nullptr, {0, 3}), 8,
                               view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::ok);
  CHECK((end.next == 10 && end.end == 8));
  qwen_mrope by_kept;
  by_kept.advance = mrope_advance::kept_max;
  REQUIRE(qwen_mrope_positions(by_kept, video, view<const std::int32_t, 2>(nullptr, {0, 3}), 8,
                               view<std::int64_t, 2>(nullptr, {3, 0}), end) == status::ok);
  CHECK((end.next == 8 && end.end == 8));

  longs text(6, untouched64);
  CHECK(qwen_text_positions(0, make_view(text.data(), 2, 3)) == status::shape_mismatch);
  CHECK(qwen_text_positions(-1, make_view(text.data(), 3, 2)) == status::invalid_parameter);
  CHECK(qwen_text_positions(largest - 1, make_view(text.data(), 3, 2)) == status::invalid_parameter);
  CHECK(qwen_text_positions(0, view<std::int64_t, 2>(nullptr, {3, 2})) == status::null_pointer);
  CHECK(text == longs(6, untouched64));
}
