// engine_mtmd.cpp — a reduction between llama.cpp's multimodal encoder (libmtmd) and llama_decode.
//
// libmtmd's flow for one media chunk: mtmd_encode_chunk(ctx, chunk) runs the encoder;
// mtmd_get_output_embd(ctx) hands out its output, mtmd_input_chunk_get_n_tokens(chunk) rows of
// llama_model_n_embd_inp(model) floats; its helper decodes those rows in batches of at most
// n_batch, each a llama_batch with `embd` set and M-RoPE positions stored plane by plane, and
// advances n_past by mtmd_input_chunk_get_n_pos(chunk). After a reduction there are fewer rows
// and they no longer fill the chunk's dense grid, so the engine builds those batches itself.
//
// This program plays that engine, with stand-ins for the encoder and the decoder (no llama.cpp
// needed), in the order the calls happen:
//   1. startup: parse the reduction from the engine's command line, once;
//   2. tokenizing the prompt: the chunk's grid gives the number of rows the LLM will receive, so
//      the prompt is checked against the context size with the count that will really arrive;
//   3. after the encoder: reduce its fp32 rows straight into the embedding buffer of the batches;
//   4. decode in batches of n_batch rows; tokred writes each batch's four position planes for
//      exactly its rows, so no plane has to be re-sliced;
//   5. advance n_past by the full grid's n_pos, as libmtmd does, whatever was kept.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/policy/mrope.hpp>
#include <tokred/tokred.hpp>

namespace {

/// A video chunk as libmtmd describes it after the projector: nt frames of ny × nx rows.
constexpr tokred::index_t nt = 4, ny = 12, nx = 16;
constexpr tokred::index_t n_embd = 64;   // llama_model_n_embd_inp: the width of the rows
constexpr tokred::index_t n_batch = 32;  // the most rows one decode call takes
constexpr tokred::index_t n_ctx = 160;   // the context the prompt has to fit in
constexpr tokred::index_t text_before = 6, text_after = 9;

/// Stand-in for mtmd_encode_chunk + mtmd_get_output_embd: one contiguous fp32 buffer of
/// (nt·ny·nx, n_embd) rows, frame after frame, row-major within a frame.
std::vector<float> encode(const tokred::token_grid& grid) {
  std::vector<float> embd(static_cast<std::size_t>(grid.tokens() * n_embd));  // (tokens, n_embd)
  for (tokred::index_t i = 0; i < grid.tokens(); ++i) {
    const tokred::token_position p = grid.position(i);
    for (tokred::index_t c = 0; c < n_embd; ++c)
      embd[static_cast<std::size_t>(i * n_embd + c)] =
          std::cos(0.05f * static_cast<float>((c + 1) * (p.h + 1)) + 0.3f * static_cast<float>(p.w * (c % 3))) +
          0.1f * static_cast<float>(p.t);
  }
  return embd;
}

/// The fields of a llama_batch that carry embeddings: `n_tokens` rows of `embd` (n_embd floats
/// each) and, for an M-RoPE model, `pos` holding 4·n_tokens positions, plane by plane.
struct embd_batch {
  std::int32_t n_tokens = 0;
  const float* embd = nullptr;
  const std::int32_t* pos = nullptr;
};

/// Stand-in for llama_decode on an M-RoPE model: it takes batches and keeps what a KV cache
/// would: how many rows it holds and the positions they were given, in order.
struct stand_in_llm {
  tokred::index_t cached = 0;
  std::vector<std::int32_t> t, y, x;  // the positions of every cached row

  bool decode(const embd_batch& b) {
    if (b.n_tokens <= 0 || b.n_tokens > n_batch || cached + b.n_tokens > n_ctx) return false;
    for (std::int32_t i = 0; i < b.n_tokens; ++i) {
      t.push_back(b.pos[i]);
      y.push_back(b.pos[b.n_tokens + i]);
      x.push_back(b.pos[2 * b.n_tokens + i]);
      if (b.pos[3 * b.n_tokens + i] != 0) return false;  // the fourth plane is unused
    }
    cached += b.n_tokens;
    return true;
  }
};

}  // namespace

int main() {
  // example-begin startup
  // Step 1, once at startup: the reduction comes from the engine's command line, e.g.
  //   --visual-reduction "pool(2x2) | divprune(keep=0.5, within=frame)"
  // and is rejected there, with the offending token named, before any request arrives.
  const tokred::spec_result parsed = tokred::parse_pipeline("pool(2x2) | divprune(keep=0.5, within=frame)");
  if (!parsed.ok()) {
    std::printf("--visual-reduction: %s (at offset %zu)\n", parsed.error.c_str(), parsed.offset);
    return 1;
  }
  const tokred::any_pipeline& reduction = parsed.pipeline;
  // example-end startup

  // example-begin prompt
  // Step 2, while the prompt is tokenized: the chunk's grid (mtmd_image_tokens_get_nt / _ny / _nx)
  // decides how many rows the LLM will get; libmtmd would count nt·ny·nx of them.
  const tokred::problem chunk{tokred::token_grid{nt, ny, nx}, n_embd};
  if (tokred::status s = tokred::can_implement(reduction, chunk); s != tokred::status::ok) {
    std::printf("the reduction does not fit this chunk: %s\n", tokred::to_string(s));
    return 1;
  }
  const tokred::index_t visual = tokred::retained_count(reduction, chunk);  // 96 of 768
  if (text_before + visual + text_after > n_ctx) {
    std::printf("prompt too long for the context\n");
    return 1;
  }
  // One buffer for the batches' embeddings and one for the kept rows' (t, h, w), sized now, and
  // the workspace: an engine keeps all three from request to request.
  std::vector<float> batch_embd(static_cast<std::size_t>(visual * n_embd));  // (visual, n_embd)
  std::vector<std::int32_t> kept_thw(static_cast<std::size_t>(visual * 3));   // (visual, 3)
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu<>{}, reduction, chunk));
  // example-end prompt

  stand_in_llm llm;
  std::vector<std::int32_t> text_pos(static_cast<std::size_t>(4 * std::max(text_before, text_after)));
  auto decode_text = [&](tokred::index_t n, std::int64_t n_past) {  // text rows: (p, p, p, 0)
    const tokred::view<std::int32_t, 2> planes(text_pos.data(), {4, n}, {n, 1});  // (4, n)
    std::vector<float> rows(static_cast<std::size_t>(n * n_embd), 0.5f);          // (n, n_embd)
    return tokred::mtmd_text_positions(n_past, planes) == tokred::status::ok &&
           llm.decode({static_cast<std::int32_t>(n), rows.data(), text_pos.data()});
  };

  std::int64_t n_past = 0;
  bool ok = decode_text(text_before, n_past);
  n_past += text_before;

  const std::vector<float> encoder_out = encode(chunk.grid);  // what mtmd_get_output_embd returns

  // example-begin reduce
  // Step 3, after mtmd_encode_chunk: reduce the encoder's rows into the batch buffer. A pipeline
  // runs on one thread (cpu<>{0, 1}); an engine's threads take different images or frames.
  tokred::pipeline_inputs<float> in;
  in.grid = chunk.grid;
  in.tokens = tokred::make_view(encoder_out.data(), chunk.grid.tokens(), n_embd);  // (tokens, n_embd)
  tokred::pipeline_outputs<float> out;
  out.tokens = tokred::make_view(batch_embd.data(), visual, n_embd);  // (visual, n_embd)
  out.positions = tokred::make_view(kept_thw.data(), visual, 3);      // (visual, 3) original (t, h, w)
  if (tokred::status s = tokred::apply(tokred::cpu<>{}, reduction, in, out, {scratch.data(), scratch.size()});
      s != tokred::status::ok) {
    std::printf("reduction failed: %s\n", tokred::to_string(s));
    return 1;
  }
  // example-end reduce

  // example-begin decode
  // Step 4: decode in batches of at most n_batch rows. Each batch's four planes [t…][y…][x…][0…]
  // are written for its own rows: row j of the chunk at original (t, h, w) gets
  // (n_past + t, n_past + h, n_past + w, 0), the position libmtmd gives that grid cell.
  std::vector<std::int32_t> pos(static_cast<std::size_t>(4 * n_batch));  // (4, n) for n ≤ n_batch
  for (tokred::index_t first = 0; ok && first < visual; first += n_batch) {
    const tokred::index_t n = std::min(n_batch, visual - first);
    const tokred::view<const std::int32_t, 2> rows_thw =
        tokred::make_view(static_cast<const std::int32_t*>(kept_thw.data()) + first * 3, n, 3);  // (n, 3)
    const tokred::view<std::int32_t, 2> planes(pos.data(), {4, n}, {n, 1});                // (4, n)
    ok = tokred::mtmd_positions(chunk.grid, rows_thw, n_past, planes) == tokred::status::ok &&
         llm.decode({static_cast<std::int32_t>(n), batch_embd.data() + first * n_embd, pos.data()});
  }
  // Step 5: the next text continues max(nt, ny, nx) past the chunk's start, as libmtmd's
  // mtmd_input_chunk_get_n_pos reports, so text positions do not depend on what was kept.
  n_past += tokred::mtmd_n_pos(chunk.grid);
  // example-end decode

  ok = ok && decode_text(text_after, n_past);

  // What the stand-in LLM saw: the kept rows, each at its own grid cell's position, then text
  // starting 16 = max(4, 12, 16) past the chunk's start.
  const tokred::index_t video_start = text_before;
  for (tokred::index_t j = 0; ok && j < visual; ++j) {
    const std::size_t row = static_cast<std::size_t>(video_start + j);
    const std::int32_t* thw = &kept_thw[static_cast<std::size_t>(j * 3)];
    ok = llm.t[row] == text_before + thw[0] && llm.y[row] == text_before + thw[1] &&
         llm.x[row] == text_before + thw[2];
  }
  const std::int32_t after = llm.t[static_cast<std::size_t>(text_before + visual)];
  ok = ok && after == text_before + std::max({nt, ny, nx}) &&
       llm.cached == text_before + visual + text_after;

  std::printf("reduction: %s\n", reduction.spec().c_str());
  std::printf("chunk: %lld frames of %lld x %lld = %lld rows of %lld floats; the LLM receives %lld\n",
              static_cast<long long>(nt), static_cast<long long>(ny), static_cast<long long>(nx),
              static_cast<long long>(chunk.grid.tokens()), static_cast<long long>(n_embd),
              static_cast<long long>(visual));
  std::printf("decoded %lld rows in batches of at most %lld; KV cache holds %lld of %lld\n",
              static_cast<long long>(visual), static_cast<long long>(n_batch),
              static_cast<long long>(llm.cached), static_cast<long long>(n_ctx));
  std::printf("first video row at (t, y, x) = (%d, %d, %d); text after the video starts at %d\n",
              llm.t[static_cast<std::size_t>(video_start)], llm.y[static_cast<std::size_t>(video_start)],
              llm.x[static_cast<std::size_t>(video_start)], after);
  std::printf("%s\n", ok ? "positions and counts as libmtmd would give them: ok" : "MISMATCH");
  return ok ? 0 : 1;
}
