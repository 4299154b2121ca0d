// tests/cpu/test_golden_stc.cpp — STC-Pruner on outputs recorded from the original code, chunk
// after chunk of one stream sharing one memory: gaussian_redundancy's channels and scores, the
// kept indices and rows of gaussian_redundancy followed by a per-frame topk, and the same kept
// indices and rows from stc_pruner in one call per chunk (in the stream's terms).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/redundancy.hpp>
#include <tokred/policy/redundancy.hpp>
#include <tokred/policy/stc_pruner.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// The rows of chunk `c` of an [chunks, rows, cols] array.
template <class T>
std::vector<T> chunk_of(const std::vector<T>& all, std::size_t c, std::size_t per_chunk) {
  return {all.begin() + static_cast<std::ptrdiff_t>(c * per_chunk),
          all.begin() + static_cast<std::ptrdiff_t>((c + 1) * per_chunk)};
}

/// One case: every chunk through one memory, as the original's single STC_Pruner instance.
void check_stc(const std::string& name, index_t side) {
  INFO(name);
  const std::string dir = golden_case("stc_pruner", name);
  const io::npy_array input = load_npy(dir + "input.npy");  // [chunks, frames·tpf, D]
  REQUIRE(input.dtype == "<f4");
  REQUIRE(input.shape.size() == 3);
  const auto chunks = static_cast<std::size_t>(input.shape[0]);
  const index_t rows = input.shape[1], dim = input.shape[2];
  const index_t tpf = static_cast<index_t>(json_int(dir, "tokens_per_frame"));
  REQUIRE(tpf == side * side);
  const token_grid grid{rows / tpf, side, side};
  REQUIRE(grid.tokens() == rows);
  const index_t k = static_cast<index_t>(json_int(dir, "k"));

  const std::vector<float> features = input.as<float>();
  const std::vector<std::int64_t> channels = load_npy(dir + "channels.npy").as<std::int64_t>();
  const std::vector<float> scores = load_npy(dir + "scores.npy").as<float>();
  const std::vector<std::int64_t> kept = load_npy(dir + "kept_indices.npy").as<std::int64_t>();
  const std::vector<float> tokens = load_npy(dir + "tokens.npy").as<float>();

  const gaussian_redundancy score{};
  const index_t width = redundancy_channels(score, dim);
  REQUIRE(width == dim / 2);
  const topk select{keep_budget::count(k), scope::per_frame};
  const index_t kept_per_chunk = retained_count(select, problem{grid, dim});
  REQUIRE(kept_per_chunk == grid.frames * k);
  REQUIRE(kept.size() == chunks * static_cast<std::size_t>(kept_per_chunk));

  std::vector<double> sums(static_cast<std::size_t>(width));
  std::int64_t seen = 0;
  std::vector<std::int64_t> picked(static_cast<std::size_t>(width));
  const redundancy_memory<> memory{make_view(sums.data(), width), make_view(&seen, 1),
                                   make_view(picked.data(), width)};
  host_workspace ws(workspace_bytes(cpu{}, score, problem{grid, dim}));
  host_workspace select_ws(workspace_bytes(cpu{}, select, problem{grid, dim}));
  const stc_pruner pruner{score, keep_budget::count(k)};
  redundancy_memory_buffers pruner_memory(width);  // the one-call form's own stream
  host_workspace pruner_ws(workspace_bytes(cpu{}, pruner, problem{grid, dim}));
  for (std::size_t c = 0; c < chunks; ++c) {
    INFO("chunk " << c);
    const std::vector<float> x = chunk_of(features, c, static_cast<std::size_t>(rows * dim));
    const view<const float, 2> chunk = make_view<const float>(x.data(), rows, dim);
    std::vector<float> s(static_cast<std::size_t>(rows));
    REQUIRE(apply(cpu{}, score, redundancy_inputs<float>{grid, chunk, memory},
                  score_outputs<>{make_view(s.data(), rows)}, ws.get()) == status::ok);
    CHECK(seen == static_cast<std::int64_t>(c + 1));

    // The lowest-variance channels in the original's order (exact: boundary gaps ≥ 2.9e-3).
    CHECK(picked == chunk_of(channels, c, static_cast<std::size_t>(width)));

    // The redundancy, negated: within fp32 rounding of the original's (its margins are ≥ 4e-4).
    const std::vector<float> want = chunk_of(scores, c, static_cast<std::size_t>(rows));
    double worst = 0.0;
    for (std::size_t i = 0; i < s.size(); ++i)
      worst = worse(worst, std::fabs(-static_cast<double>(s[i]) - want[i]));
    CHECK(worst <= 2e-6);

    // The k lowest per frame, ascending within the frame: the original's indices and rows.
    selection_buffers<float> out(kept_per_chunk, dim);
    REQUIRE(apply(cpu{}, select, selection_inputs<float>{grid, make_view<const float>(s.data(), rows), chunk},
                  out.outputs(), select_ws.get()) == status::ok);
    CHECK(out.source == chunk_of(kept, c, static_cast<std::size_t>(kept_per_chunk)));
    CHECK(out.tokens == chunk_of(tokens, c, static_cast<std::size_t>(kept_per_chunk * dim)));

    // In one call: the same rows, sources in the stream (chunk c starts at frame c·T).
    const index_t first_frame = static_cast<index_t>(c) * grid.frames;
    selection_buffers<float> one(kept_per_chunk, dim);
    REQUIRE(apply(cpu{}, pruner, stc_pruner_inputs<float>{grid, first_frame, chunk, pruner_memory.view()},
                  one.outputs(), pruner_ws.get()) == status::ok);
    std::vector<std::int64_t> in_chunk = one.source;
    for (std::int64_t& i : in_chunk) i -= first_frame * tpf;
    CHECK(in_chunk == out.source);
    CHECK(one.tokens == out.tokens);
    CHECK(pruner_memory.sums == sums);
    CHECK(pruner_memory.channels == picked);
  }
}

TEST_CASE("STC-Pruner golden: LLaVA-OneVision, four chunks of one frame, 60 of 196 kept", "[golden][stc]") {
  check_stc("c01_llava_ov_4chunks_f1_d64_k60", 14);
}

TEST_CASE("STC-Pruner golden: CLIP 12 x 12, three chunks, one token per frame", "[golden][stc]") {
  check_stc("c04_clip_3chunks_f1_d64_k1", 12);
}

}  // namespace
