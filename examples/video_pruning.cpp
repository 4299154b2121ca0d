// video_pruning.cpp — feature-based scores and the two video recipes built on them: vLLM's
// Efficient Video Sampling (temporal dissimilarity + topk) and TimeChat-Online's Differential Token
// Drop (temporal cosine + threshold), with the positions an engine needs for M-RoPE, and DTD on a
// live stream one frame at a time (temporal_stream); then the L2
// norm and query-relevance scores, and STC-Pruner's streaming redundancy score. The docs quote
// the regions between the example markers verbatim; the checks around them make sure the
// comments in those regions tell the truth.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

namespace {

/// A 4-frame clip of 3 x 4 tokens, 8 values each: a still background, and an object (a row of
/// alternating signs, nearly orthogonal to the background) at slot 5, 6, 10 and 11 of frames 0–3.
/// So only the slots the object leaves or enters change from one frame to the next: slots 5 and 6
/// in frame 1, 6 and 10 in frame 2, 10 and 11 in frame 3.
struct clip {
  static constexpr tokred::index_t frames = 4, height = 3, width = 4, dim = 8;
  static constexpr tokred::index_t n = frames * height * width;
  std::vector<float> rows = std::vector<float>(n * dim);  // (tokens, dim) = [T, H, W, D] in C order
  clip() {
    const tokred::index_t object_at[frames] = {5, 6, 10, 11};
    for (tokred::index_t i = 0; i < n; ++i) {
      const tokred::index_t t = i / (height * width), slot = i % (height * width);
      for (tokred::index_t c = 0; c < dim; ++c)
        rows[static_cast<std::size_t>(i * dim + c)] =
            slot == object_at[t] ? (c % 2 == 0 ? 3.0f : -3.0f)
                                 : 1.0f + 0.25f * static_cast<float>((3 * slot + c) % 5);
    }
  }
};

/// The tokens the object's moves change, after all of frame 0.
const std::vector<std::int64_t> moving = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17, 18, 30, 34, 46, 47};

void evs_scene() {
  std::printf("evs\n");
  const clip x;
  // example-begin evs
  // vLLM EVS at pruning rate q = 0.625 on a clip of T = 4 frames of 3 x 4 tokens (dim 8).
  const tokred::problem prob{tokred::token_grid{4, 3, 4}, 8};
  const double q = 0.625;
  const tokred::temporal_similarity score = tokred::temporal_similarity::evs();  // 1 − cos, frame 0 at 255
  const tokred::topk select{tokred::evs_budget(q, prob.grid.frame_tokens())};     // global top k
  // The count is known before the encoder runs: max(H·W, int(T·H·W · (1 − q))) = max(12, 18).
  const tokred::index_t k = tokred::retained_count(select, prob);  // 18

  std::vector<float> dissimilarity(prob.grid.tokens());  // (tokens,)
  const tokred::feature_score_inputs<float> frames{prob.grid, tokred::make_view(x.rows.data(), 48, 8), {}};
  tokred::status s = tokred::apply(tokred::cpu{}, score, frames,
                                   tokred::score_outputs<>{tokred::make_view(dissimilarity.data(), 48)});

  std::vector<float> kept(k * 8);              // (kept, dim)
  std::vector<std::int64_t> source(k);         // (kept,) ascending
  std::vector<std::int32_t> positions(k * 3);  // (kept, 3) original (t, h, w)
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, select, prob));
  const tokred::selection_inputs<float> ranked{prob.grid, tokred::make_view(dissimilarity.data(), 48),
                                               frames.tokens};
  s = tokred::apply(tokred::cpu{}, select, ranked,
                    tokred::selection_outputs<float>{tokred::make_view(kept.data(), k, 8),
                                                     tokred::make_view(source.data(), k),
                                                     tokred::make_view(positions.data(), k, 3)},
                    {scratch.data(), scratch.size()});
  // s == ok. source: frame 0 (tokens 0–11), then the 6 slots the object left or entered:
  // 17, 18 (frame 1), 30, 34 (frame 2), 46, 47 (frame 3). Equal scores rank by lower index,
  // as vLLM's stable argsort does.
  // example-end evs
  SCENE_CHECK(s == tokred::status::ok && k == 18);
  SCENE_CHECK(source == moving);
  SCENE_CHECK(kept[12 * 8] == x.rows[17 * 8] && positions[12 * 3] == 1 && positions[12 * 3 + 2] == 1);

  // example-begin evs-mrope
  // Qwen2.5-VL M-RoPE ids of the kept tokens, as vLLM's compute_mrope_for_media stores them:
  // (t · tokens_per_second · second_per_grid, h, w), then offset by the position after
  // <|vision_start|>. tokred's positions are the original (t, h, w), so the ids are exact.
  const float tokens_per_second = 2.0f, second_per_grid = 1.0f;  // fps 2, temporal patch 2
  const std::int64_t base = 6;                                   // position of <|vision_start|> + 1
  std::vector<std::int64_t> mrope(k * 3);                        // (kept, 3) as (t, h, w) ids
  for (tokred::index_t j = 0; j < k; ++j) {
    const float t = static_cast<float>(positions[j * 3]);
    mrope[j * 3 + 0] = base + static_cast<std::int64_t>(t * (tokens_per_second * second_per_grid));
    mrope[j * 3 + 1] = base + positions[j * 3 + 1];
    mrope[j * 3 + 2] = base + positions[j * 3 + 2];
  }
  // vLLM (EVS on): the text after the video starts at base + W = 6 + 4 = 10.
  // example-end evs-mrope
  SCENE_CHECK(mrope[12 * 3] == 8 && mrope[12 * 3 + 1] == 7 && mrope[12 * 3 + 2] == 7);  // token 17 = (1, 1, 1)
  SCENE_CHECK(mrope[17 * 3] == 12 && mrope[17 * 3 + 1] == 8 && mrope[17 * 3 + 2] == 9);  // token 47 = (3, 2, 3)
}

void dtd_scene() {
  std::printf("dtd\n");
  const clip x;
  // example-begin dtd
  // TimeChat-Online DTD: drop a token when its cosine to the same slot of the previous frame is
  // above τ = 0.5. The count depends on the data: buffers are sized by the bound N, and apply
  // writes the real count.
  const tokred::problem prob{tokred::token_grid{4, 3, 4}, 8};
  const tokred::temporal_similarity score = tokred::temporal_similarity::dtd();  // cos, frame 0 at −inf
  const tokred::threshold select = tokred::threshold::dtd(0.5f);                 // keep if !(cos > 0.5)
  const tokred::index_t bound = tokred::retained_count(select, prob);           // 48 = N

  std::vector<float> similarity(48);  // (tokens,)
  const tokred::feature_score_inputs<float> frames{prob.grid, tokred::make_view(x.rows.data(), 48, 8), {}};
  tokred::status s = tokred::apply(tokred::cpu{}, score, frames,
                                   tokred::score_outputs<>{tokred::make_view(similarity.data(), 48)});

  std::vector<std::int64_t> source(bound);         // (bound,) the first `count` rows are filled
  std::vector<std::int32_t> positions(bound * 3);  // (bound, 3) original (t, h, w): M-RoPE ids kept
  std::int64_t count = 0;                          // (1,)
  tokred::counted_outputs<float> out{};
  out.source = tokred::make_view(source.data(), bound);
  out.positions = tokred::make_view(positions.data(), bound, 3);
  out.count = tokred::make_view(&count, 1);
  const tokred::selection_inputs<float> scored{prob.grid, tokred::make_view(similarity.data(), 48), {}};
  s = tokred::apply(tokred::cpu{}, select, scored, out);  // no workspace
  // s == ok, count == 18: frame 0 and the 6 changed slots, the tokens EVS keeps at q = 0.625.
  // Every still background token (cosine 1) is dropped.
  // example-end dtd
  SCENE_CHECK(s == tokred::status::ok && bound == 48 && count == 18);
  SCENE_CHECK(std::equal(moving.begin(), moving.end(), source.begin()));
  SCENE_CHECK(tokred::workspace_bytes(tokred::cpu{}, select, prob) == 0);
}

void dtd_stream_scene() {
  std::printf("dtd stream\n");
  const clip x;
  // example-begin dtd-stream
  // The same DTD on a live stream: one frame per call, compared with the previous frame kept in a
  // caller-owned state of one frame, whatever the stream's length. Frame t's kept tokens come out
  // as soon as it arrives, with stream indices t·H·W + slot and positions (t, h, w).
  const tokred::temporal_stream dtd = tokred::temporal_stream::dtd(0.5f);
  const tokred::token_grid frame{1, 3, 4};                        // one frame of H × W = 3 × 4
  const tokred::problem prob{frame, 8};
  const tokred::index_t bound = tokred::retained_count(dtd, prob);  // 12: a frame can keep all

  std::vector<float> previous(12 * 8), norms(12);  // the state: the last frame's rows, their norms
  std::int64_t frames_seen = 0;                      // 0 starts a stream
  const tokred::temporal_state<float> state{tokred::make_view(previous.data(), 12, 8),
                                            tokred::make_view(norms.data(), 12),
                                            tokred::make_view(&frames_seen, 1)};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, dtd, prob));
  std::vector<std::int64_t> source(bound), kept;
  std::int64_t count = 0;
  tokred::counted_outputs<float> out{};
  out.source = tokred::make_view(source.data(), bound);
  out.count = tokred::make_view(&count, 1);
  tokred::status s = tokred::status::ok;
  for (tokred::index_t t = 0; t < 4 && s == tokred::status::ok; ++t) {  // frames as they arrive
    const tokred::temporal_stream_inputs<float> arrived{
        frame, t, tokred::make_view(x.rows.data() + t * 12 * 8, 12, 8), state};
    s = tokred::apply(tokred::cpu{}, dtd, arrived, out, {scratch.data(), scratch.size()});
    kept.insert(kept.end(), source.begin(), source.begin() + count);  // hand frame t's tokens on
  }
  // s == ok; kept holds the 18 tokens the batch DTD above keeps, in the same order.
  // example-end dtd-stream
  SCENE_CHECK(s == tokred::status::ok && bound == 12 && frames_seen == 4);
  SCENE_CHECK(kept == moving);
}

void shares_scene() {
  std::printf("shares\n");
  const clip x;
  const tokred::problem prob{tokred::token_grid{4, 3, 4}, 8};
  const tokred::feature_score_inputs<float> frames{prob.grid, tokred::make_view(x.rows.data(), 48, 8), {}};
  std::vector<float> one(48), three(48);
  SCENE_CHECK(tokred::apply(tokred::cpu{}, tokred::temporal_similarity::evs(), frames,
                            tokred::score_outputs<>{tokred::make_view(one.data(), 48)}) == tokred::status::ok);
  // example-begin shares
  // An engine's three threads each score a third of the tokens; no thread waits for another,
  // and the scores have the same bits as one call.
  for (int ith = 0; ith < 3; ++ith)  // in the engine: one call per thread, concurrently
    (void)tokred::apply(tokred::cpu{ith, 3}, tokred::temporal_similarity::evs(), frames,
                        tokred::score_outputs<>{tokred::make_view(three.data(), 48)});
  // example-end shares
  SCENE_CHECK(one == three);
}

void norm_scene() {
  std::printf("token_norm\n");
  const clip x;
  // example-begin token-norm
  // The L2 norm of every token; keep the 2 largest of frame 0 (its first 12 tokens).
  const tokred::problem prob{tokred::image_grid(3, 4), 8};
  std::vector<float> norms(12);  // (tokens,)
  const tokred::feature_score_inputs<float> in{prob.grid, tokred::make_view(x.rows.data(), 12, 8), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::token_norm{}, in,
                                         tokred::score_outputs<>{tokred::make_view(norms.data(), 12)});
  // s == ok; the object (token 5, eight values of ±3) has norm sqrt(72) ≈ 8.49, the largest.
  const tokred::topk two{tokred::keep_budget::count(2)};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, two, prob));
  std::int64_t loudest[2];  // (kept,) ascending
  (void)tokred::apply(tokred::cpu{}, two,
                      tokred::selection_inputs<float>{prob.grid, tokred::make_view(norms.data(), 12), {}},
                      tokred::selection_outputs<float>{{}, tokred::make_view(loudest, 2), {}},
                      {scratch.data(), scratch.size()});
  // loudest == {4, 5}: the object, and slot 4, whose norm ties with slot 9's (lower index wins).
  // example-end token-norm
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(std::fabs(norms[5] - std::sqrt(72.0f)) < 1e-5f);
  SCENE_CHECK(loudest[0] == 4 && loudest[1] == 5 && norms[4] == norms[9]);
}

void relevance_scene() {
  std::printf("query_relevance\n");
  const clip x;
  // example-begin query-relevance
  // How relevant is each token, and each frame, to a query embedding? Here the query is the
  // object's own row (e.g. a text prompt projected into the visual feature space).
  const tokred::problem prob{tokred::token_grid{4, 3, 4}, 8};
  const float* object_row = x.rows.data() + 5 * 8;                      // token 5 of frame 0
  tokred::feature_score_inputs<float> in{prob.grid, tokred::make_view(x.rows.data(), 48, 8),
                                         tokred::make_view(object_row, 1, 8)};  // (queries, dim)
  std::vector<float> per_token(48);  // (tokens,) mean over query rows of cos(x_i, q)
  tokred::status s = tokred::apply(tokred::cpu{}, tokred::query_relevance{}, in,
                                   tokred::score_outputs<>{tokred::make_view(per_token.data(), 48)});
  // s == ok; per_token is 1 where the object is (tokens 5, 18, 34, 47), near 0 elsewhere.

  // Frame level: one score per frame, the cosine of the frame's mean token with the query.
  const tokred::query_relevance frames{tokred::query_relevance::level::frame};
  std::vector<float> per_frame(tokred::score_count(frames, prob));  // (T,) = 4
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, frames, prob));
  s = tokred::apply(tokred::cpu{}, frames, in, tokred::score_outputs<>{tokred::make_view(per_frame.data(), 4)},
                    {scratch.data(), scratch.size()});
  // example-end query-relevance
  SCENE_CHECK(s == tokred::status::ok && per_frame.size() == 4);
  for (std::size_t i : {5, 18, 34, 47}) SCENE_CHECK(std::fabs(per_token[i] - 1.0f) < 1e-6f);
  SCENE_CHECK(std::fabs(per_token[0]) < 0.1f);
  // Every frame holds the object once over the same background: the frame scores are close.
  SCENE_CHECK(*std::max_element(per_frame.begin(), per_frame.end()) -
                  *std::min_element(per_frame.begin(), per_frame.end()) < 0.05f);
}

/// One frame of a stream: 3 x 4 tokens of 4 values. Channels 0 and 1 are loud noise that varies
/// from token to token; channels 2 and 3 are quiet: (1, 0) for the background, (0, 1) for an
/// object at slot `object`.
std::vector<float> stream_frame(int frame, tokred::index_t object) {
  std::vector<float> rows(12 * 4);
  for (tokred::index_t slot = 0; slot < 12; ++slot) {
    float* row = &rows[static_cast<std::size_t>(slot * 4)];
    row[0] = static_cast<float>((5 * slot + 3 * frame) % 7) - 3.0f;
    row[1] = static_cast<float>((3 * slot + frame) % 5) * 1.5f - 3.0f;
    row[2] = slot == object ? 0.0f : 1.0f;
    row[3] = slot == object ? 1.0f : 0.0f;
  }
  return rows;
}

void stc_scene() {
  std::printf("stc\n");
  const tokred::index_t objects[3] = {5, 6, 10};
  // example-begin stc
  // STC-Pruner on a stream that arrives one frame at a time (3 x 4 tokens, dim 4): each chunk is
  // scored against its frame mean and the stream's memory; topk keeps the least redundant token.
  const tokred::gaussian_redundancy score{};  // the lowest-variance half of the channels
  const tokred::problem chunk{tokred::token_grid{1, 3, 4}, 4};
  const tokred::index_t width = tokred::redundancy_channels(score, chunk.dim);  // 2
  const tokred::topk select{tokred::keep_budget::count(1), tokred::scope::per_frame};

  // The stream's memory belongs to the caller: zero chunks when a stream starts.
  std::vector<double> sums(width);
  std::int64_t chunks = 0;
  std::vector<std::int64_t> channels(width);  // optional: the channels the latest chunk scored
  const tokred::redundancy_memory<> memory{tokred::make_view(sums.data(), width),
                                           tokred::make_view(&chunks, 1),
                                           tokred::make_view(channels.data(), width)};
  std::vector<std::byte> scratch(std::max(tokred::workspace_bytes(tokred::cpu{}, score, chunk),
                                          tokred::workspace_bytes(tokred::cpu{}, select, chunk)));
  std::vector<float> redundancy(12);  // (tokens,) −(memory term + frame term): higher is kept
  std::vector<std::int64_t> kept(3);   // the token kept from each frame
  tokred::status s = tokred::status::ok;
  for (int frame = 0; frame < 3 && s == tokred::status::ok; ++frame) {  // stop at a failure
    const std::vector<float> rows = stream_frame(frame, objects[frame]);  // the encoder's output
    const auto tokens = tokred::make_view(rows.data(), 12, 4);
    s = tokred::apply(tokred::cpu{}, score, tokred::redundancy_inputs<float>{chunk.grid, tokens, memory},
                      tokred::score_outputs<>{tokred::make_view(redundancy.data(), 12)},
                      {scratch.data(), scratch.size()});
    if (s == tokred::status::ok)
      s = tokred::apply(tokred::cpu{}, select,
                        tokred::selection_inputs<float>{chunk.grid, tokred::make_view(redundancy.data(), 12), tokens},
                        tokred::selection_outputs<float>{{}, tokred::make_view(&kept[static_cast<std::size_t>(frame)], 1), {}},
                        {scratch.data(), scratch.size()});
  }
  // s == ok, chunks == 3, channels == {2, 3} (the quiet ones), kept == {5, 6, 10}: the object.
  // example-end stc
  SCENE_CHECK(s == tokred::status::ok && chunks == 3);
  SCENE_CHECK(channels[0] == 2 && channels[1] == 3);
  SCENE_CHECK(kept == std::vector<std::int64_t>({5, 6, 10}));
}

void stc_pruner_scene() {
  std::printf("stc_pruner\n");
  const tokred::index_t objects[3] = {5, 6, 10};
  // example-begin stc-pruner
  // STC-Pruner in one call per chunk: the same stream (3 x 4 tokens, dim 4, one frame a chunk);
  // each call scores its chunk against the frame mean and the stream's memory, keeps the least
  // redundant token of each frame, and names it by its index in the whole stream.
  const tokred::stc_pruner pruner{tokred::gaussian_redundancy{}, tokred::keep_budget::count(1)};
  const tokred::problem chunk{tokred::token_grid{1, 3, 4}, 4};
  const tokred::index_t width = tokred::redundancy_channels(pruner.score, chunk.dim);  // 2

  std::vector<double> sums(width);  // the stream's memory: zero chunks when a stream starts
  std::int64_t chunks = 0;
  const tokred::redundancy_memory<> memory{tokred::make_view(sums.data(), width), tokred::make_view(&chunks, 1), {}};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, pruner, chunk));
  const tokred::index_t per_chunk = tokred::retained_count(pruner, chunk);  // 1 token of 1 frame
  std::vector<float> kept_rows(3 * 4);         // full rows, for the LLM
  std::vector<std::int64_t> kept(3);           // their indices in the stream
  std::vector<std::int32_t> positions(3 * 3);  // their (t, h, w)
  tokred::status s = tokred::status::ok;
  for (int frame = 0; frame < 3 && s == tokred::status::ok; ++frame) {  // stop at a failure
    const std::vector<float> rows = stream_frame(frame, objects[frame]);  // the encoder's output
    const std::size_t at = static_cast<std::size_t>(frame * per_chunk);
    const auto tokens = tokred::make_view(rows.data(), 12, 4);
    s = tokred::apply(tokred::cpu{}, pruner, tokred::stc_pruner_inputs<float>{chunk.grid, frame, tokens, memory},
                      tokred::selection_outputs<float>{tokred::make_view(&kept_rows[at * 4], per_chunk, 4),
                                                       tokred::make_view(&kept[at], per_chunk),
                                                       tokred::make_view(&positions[at * 3], per_chunk, 3)},
                      {scratch.data(), scratch.size()});
  }
  // s == ok, chunks == 3, kept == {5, 18, 34} (frame·12 + the object's slot),
  // positions == {(0, 1, 1), (1, 1, 2), (2, 2, 2)}.
  // example-end stc-pruner
  SCENE_CHECK(s == tokred::status::ok && chunks == 3);
  SCENE_CHECK(kept == std::vector<std::int64_t>({5, 18, 34}));
  SCENE_CHECK(positions == std::vector<std::int32_t>({0, 1, 1, 1, 1, 2, 2, 2, 2}));
  for (std::size_t f = 0; f < 3; ++f) SCENE_CHECK(kept_rows[f * 4 + 2] == 0.0f && kept_rows[f * 4 + 3] == 1.0f);
}

/// One vision-encoder layer's keys for a frame of 3 x 4 tokens (width 4): a background key that
/// varies a little along w, and an object's key at slot `object`.
std::vector<float> layer_keys(tokred::index_t object) {
  std::vector<float> keys(12 * 4);
  for (tokred::index_t slot = 0; slot < 12; ++slot) {
    float* key = &keys[static_cast<std::size_t>(slot * 4)];
    key[0] = 1.0f + 0.1f * static_cast<float>(slot % 4);
    key[1] = 0.5f;
    key[2] = slot == object ? 2.0f : 0.0f;
    key[3] = 0.0f;
  }
  return keys;
}

void stc_cacher_scene() {
  std::printf("stc_cacher\n");
  const tokred::index_t objects[3] = {5, 6, 6};
  std::vector<std::vector<std::int64_t>> recomputed_per_chunk;
  // example-begin stc-cacher
  // STC-Cacher in one vision-encoder layer, one frame a chunk (3 x 4 tokens): a reference chunk
  // runs the layer in full and caches its keys and outputs; in the others the layer computes the
  // keys and recomputes only the tokens whose keys moved away from the cached ones.
  const tokred::stc_cacher cacher{0.2, 2};  // u = int(12 · 0.2) = 2 a frame; chunks 0, 2, … refresh
  const tokred::problem frame{tokred::token_grid{1, 3, 4}, 4};
  std::vector<float> cached_keys;  // the layer's cache of the reference frame (with its outputs)
  std::vector<std::int64_t> recompute(tokred::retained_count(cacher, frame));  // (u,)
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, cacher, frame));
  tokred::status s = tokred::status::ok;
  for (tokred::index_t chunk = 0; chunk < 3 && s == tokred::status::ok; ++chunk) {
    const std::vector<float> keys = layer_keys(objects[chunk]);  // this layer's K projection
    if (tokred::is_reference_chunk(cacher, chunk)) {
      cached_keys = keys;  // ... and the full layer's attention and MLP outputs
      continue;
    }
    s = tokred::apply(tokred::cpu{}, cacher,
                      tokred::stc_cacher_inputs<float>{frame.grid, tokred::make_view(keys.data(), 12, 4),
                                                       tokred::make_view(cached_keys.data(), 12, 4)},
                      tokred::selection_outputs<float>{{}, tokred::make_view(recompute.data(), 2), {}},
                      {scratch.data(), scratch.size()});
    // The engine now computes Q and V for the `recompute` rows, their attention against every
    // fresh key, and their MLP, and takes the cached outputs for the other rows.
    recomputed_per_chunk.push_back(recompute);
  }
  // s == ok; chunk 1 recomputes {5, 6}, where the object left and arrived; chunk 2 is a reference.
  // example-end stc-cacher
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(recomputed_per_chunk.size() == 1);
  SCENE_CHECK(recomputed_per_chunk[0] == std::vector<std::int64_t>({5, 6}));
}

}  // namespace

int main() {
  evs_scene();
  dtd_scene();
  dtd_stream_scene();
  shares_scene();
  norm_scene();
  relevance_scene();
  stc_scene();
  stc_pruner_scene();
  stc_cacher_scene();
  return scene::finish();
}
