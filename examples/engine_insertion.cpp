// engine_insertion.cpp — where tokred sits in an inference engine: between encoder and LLM.
//
// The steps an engine takes for one video prompt:
//   1. Before encoding: from the frame count and the patch grid alone, compute how many visual
//      tokens will reach the LLM (retained_count) and lay out the prompt with that many
//      placeholder slots. Size the workspace once.
//   2. Encode. Here: made-up fp32 features and one made-up score per token.
//   3. Reduce straight into the placeholder rows of the LLM's bf16 input-embedding buffer, on the
//      engine's own threads (tokred::cpu{ith, nth}); tokred converts fp32 to bf16 on the way.
//   4. Build M-RoPE position ids for the whole prompt from the kept tokens' (t, h, w): the
//      Qwen-VL (3, L) ids of Hugging Face and vLLM, and llama.cpp's planar llama_pos array.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <tokred/policy/mrope.hpp>
#include <tokred/tokred.hpp>

namespace {

constexpr tokred::index_t frames = 4, rows = 6, cols = 8;  // (T, H, W) after the encoder's merger
constexpr tokred::index_t dim = 64;                         // LLM hidden size (tiny, for the demo)
constexpr tokred::index_t text_before = 4, text_after = 5;  // prompt text around the video

/// Stand-in for the vision encoder: features (T·H·W, dim) in fp32 and a score per token that
/// peaks on an object moving left to right across the frames.
void encode(std::vector<float>& features, std::vector<float>& scores) {
  const tokred::token_grid grid{frames, rows, cols};
  features.resize(static_cast<std::size_t>(grid.tokens() * dim));  // (tokens, dim)
  scores.resize(static_cast<std::size_t>(grid.tokens()));          // (tokens,)
  for (tokred::index_t i = 0; i < grid.tokens(); ++i) {
    const tokred::token_position p = grid.position(i);
    for (tokred::index_t c = 0; c < dim; ++c)
      features[static_cast<std::size_t>(i * dim + c)] =
          std::sin(0.1f * static_cast<float>(c + 1) * static_cast<float>(p.h + 2 * p.w + 3 * p.t));
    const float dh = static_cast<float>(p.h) - 2.5f;
    const float dw = static_cast<float>(p.w) - 1.5f - 1.5f * static_cast<float>(p.t);
    scores[static_cast<std::size_t>(i)] = std::exp(-0.15f * (dh * dh + dw * dw));
  }
}

/// A stand-in for the LLM's embedding lookup of text token `id`.
void embed_text(int id, tokred::bf16* row) {
  for (tokred::index_t c = 0; c < dim; ++c)
    row[c] = tokred::from_float<tokred::bf16>(0.01f * static_cast<float>(id * 7 + c));
}

}  // namespace

int main() {
  // example-begin count-before-encoding
  // Step 1, before the encoder runs: the shapes decide the placeholder count.
  const tokred::problem prob{tokred::token_grid{frames, rows, cols}, dim};  // 4 frames of 6 x 8
  const tokred::topk policy{tokred::keep_budget::ratio(0.25, tokred::rounding::floor),
                            tokred::scope::per_frame};                      // 12 of each frame's 48
  if (tokred::status s = tokred::can_implement(policy, prob); s != tokred::status::ok) {
    std::printf("cannot reduce this video: %s\n", tokred::to_string(s));
    return 1;
  }
  const tokred::index_t visual = tokred::retained_count(policy, prob);  // exactly 48
  const tokred::index_t prompt = text_before + visual + text_after;     // placeholder slots sized

  const int nth = 2;  // the engine's worker threads; the workspace holds one slice per share
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{0, nth}, policy, prob));
  // example-end count-before-encoding

  // The LLM's input embeddings, one bf16 row per prompt token; text rows are filled now.
  std::vector<tokred::bf16> embeddings(static_cast<std::size_t>(prompt * dim));  // (prompt, dim)
  for (tokred::index_t i = 0; i < text_before; ++i)
    embed_text(static_cast<int>(i), &embeddings[static_cast<std::size_t>(i * dim)]);
  for (tokred::index_t i = 0; i < text_after; ++i)
    embed_text(static_cast<int>(100 + i),
               &embeddings[static_cast<std::size_t>((text_before + visual + i) * dim)]);

  // Step 2: the encoder runs.
  std::vector<float> features, scores;
  encode(features, scores);

  // example-begin threads
  // Step 3: reduce into the placeholder rows, one share per engine thread. The shares write
  // disjoint output rows; together they give exactly what a single call with nth = 1 gives.
  std::vector<std::int32_t> thw(static_cast<std::size_t>(visual * 3));  // (visual, 3)
  const tokred::selection_inputs<float> in{
      prob.grid, tokred::make_view(scores.data(), prob.grid.tokens()),  // (tokens,)
      tokred::make_view(features.data(), prob.grid.tokens(), dim)};     // (tokens, dim)
  const tokred::selection_outputs<tokred::bf16> out{
      tokred::make_view(embeddings.data() + text_before * dim, visual, dim),  // (visual, dim)
      {},                                                                     // source: not needed
      tokred::make_view(thw.data(), visual, 3)};                              // (visual, 3)
  const tokred::workspace ws{scratch.data(), scratch.size()};

  std::vector<tokred::status> result(nth, tokred::status::ok);
  std::vector<std::thread> workers;
  for (int ith = 0; ith < nth; ++ith)
    workers.emplace_back([&, ith] { result[ith] = tokred::apply(tokred::cpu{ith, nth}, policy, in, out, ws); });
  for (std::thread& w : workers) w.join();
  for (tokred::status s : result)
    if (s != tokred::status::ok) {
      std::printf("reduction failed: %s\n", tokred::to_string(s));
      return 1;
    }
  // example-end threads

  // example-begin mrope
  // Step 4: M-RoPE ids for the whole prompt, as Qwen2-VL numbers them: rows t, h, w of (3, L).
  // Text counts up on all three rows; a kept token gets its original (t, h, w) plus the span's
  // start; the text after the video continues past the full grid, whichever tokens were kept.
  std::vector<std::int64_t> ids(static_cast<std::size_t>(3 * prompt));  // (3, prompt)
  auto columns = [&](tokred::index_t first, tokred::index_t count) {     // (3, count) of them
    return tokred::view<std::int64_t, 2>(ids.data() + first, {3, count}, {prompt, 1});
  };
  const tokred::view<const std::int32_t, 2> kept_thw = tokred::make_view(thw.data(), visual, 3);  // (visual, 3)
  tokred::mrope_span_end video_end;
  tokred::status s = tokred::qwen_text_positions(0, columns(0, text_before));
  if (s == tokred::status::ok)
    s = tokred::qwen_mrope_positions(tokred::qwen_mrope::qwen2_vl(), prob.grid, kept_thw, text_before,
                                     columns(text_before, visual), video_end);
  if (s == tokred::status::ok)
    s = tokred::qwen_text_positions(video_end.next, columns(text_before + visual, text_after));
  // example-end mrope
  // example-begin mtmd
  // The same prompt for llama.cpp's M-RoPE models: a llama_pos array of 4 planes (t, y, x,
  // unused), and n_past advanced past the video by max(T, H, W), as libmtmd advances it.
  std::vector<std::int32_t> llama_pos(static_cast<std::size_t>(4 * prompt));  // (4, prompt)
  auto planes = [&](tokred::index_t first, tokred::index_t count) {           // (4, count) of them
    return tokred::view<std::int32_t, 2>(llama_pos.data() + first, {4, count}, {prompt, 1});
  };
  std::int64_t n_past = 0;
  if (s == tokred::status::ok) s = tokred::mtmd_text_positions(n_past, planes(0, text_before));
  n_past += text_before;
  if (s == tokred::status::ok) s = tokred::mtmd_positions(prob.grid, kept_thw, n_past, planes(text_before, visual));
  n_past += tokred::mtmd_n_pos(prob.grid);
  if (s == tokred::status::ok) s = tokred::mtmd_text_positions(n_past, planes(text_before + visual, text_after));
  // example-end mtmd
  if (s != tokred::status::ok) {
    std::printf("positions failed: %s\n", tokred::to_string(s));
    return 1;
  }

  // The same reduction in one call, to show that the thread count does not change a bit.
  std::vector<tokred::bf16> single(static_cast<std::size_t>(visual * dim));  // (visual, dim)
  std::vector<std::byte> scratch1(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  const tokred::selection_outputs<tokred::bf16> out1{
      tokred::make_view(single.data(), visual, dim), {}, {}};  // (visual, dim) only
  if (tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out1, {scratch1.data(), scratch1.size()});
      s != tokred::status::ok) {
    std::printf("reduction failed: %s\n", tokred::to_string(s));
    return 1;
  }
  const bool same = std::memcmp(single.data(), embeddings.data() + text_before * dim,
                                single.size() * sizeof(tokred::bf16)) == 0;

  std::printf("video: %lld frames of %lld x %lld tokens = %lld tokens of %lld values (fp32)\n",
              static_cast<long long>(frames), static_cast<long long>(rows),
              static_cast<long long>(cols), static_cast<long long>(prob.grid.tokens()),
              static_cast<long long>(dim));
  std::printf("policy: topk, keep 25 %% of each frame, rounded down -> %lld visual tokens\n",
              static_cast<long long>(visual));
  std::printf("prompt: %lld text + %lld visual placeholders + %lld text = %lld embedding rows (bf16)\n",
              static_cast<long long>(text_before), static_cast<long long>(visual),
              static_cast<long long>(text_after), static_cast<long long>(prompt));
  std::printf("workspace: %zu bytes for %d shares; %d threads vs one call: %s\n", scratch.size(),
              nth, nth, same ? "bit-identical" : "DIFFERENT");

  std::printf("\nkept tokens per frame ('#' kept):\n");
  for (tokred::index_t h = 0; h < rows; ++h) {
    std::printf("  ");
    for (tokred::index_t t = 0; t < frames; ++t) {
      std::string line(static_cast<std::size_t>(cols), '.');
      for (tokred::index_t j = 0; j < visual; ++j) {
        const std::int32_t* p = &thw[static_cast<std::size_t>(j * 3)];
        if (p[0] == t && p[1] == h) line[static_cast<std::size_t>(p[2])] = '#';
      }
      std::printf("%s%s", line.c_str(), t + 1 < frames ? "   " : "\n");
    }
  }

  std::printf("\nM-RoPE position ids (t, h, w) of the prompt:\n");
  for (tokred::index_t i = 0; i < prompt; ++i) {
    const bool shown = i < text_before + 3 || i >= text_before + visual - 2;
    if (!shown) {
      if (i == text_before + 3) std::printf("  ...\n");
      continue;
    }
    const auto id = [&](tokred::index_t row) {  // row t, h or w of token i
      return static_cast<long long>(ids[static_cast<std::size_t>(row * prompt + i)]);
    };
    const bool is_visual = i >= text_before && i < text_before + visual;
    std::printf("  %3lld  %-6s (%2lld, %2lld, %2lld)\n", static_cast<long long>(i),
                is_visual ? "visual" : "text", id(0), id(1), id(2));
  }

  // Qwen2-VL's temporal id is the frame index and its text resumes at start + max(T, H, W): the
  // very numbers libmtmd writes, so the two layouts must agree token for token.
  bool agree = video_end.next == text_before + std::max({frames, rows, cols});
  for (tokred::index_t i = 0; i < prompt; ++i) {
    for (tokred::index_t row = 0; row < 3; ++row)
      agree = agree && ids[static_cast<std::size_t>(row * prompt + i)] ==
                           llama_pos[static_cast<std::size_t>(row * prompt + i)];
    agree = agree && llama_pos[static_cast<std::size_t>(3 * prompt + i)] == 0;
  }
  std::printf("text after the video starts at %lld; Qwen2-VL ids and llama.cpp planes %s\n",
              static_cast<long long>(video_end.next), agree ? "agree" : "DIFFER");
  return same && agree ? 0 : 1;
}
