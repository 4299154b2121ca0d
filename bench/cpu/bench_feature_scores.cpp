// bench/cpu/bench_feature_scores.cpp — temporal_similarity, token_norm, query_relevance and
// gaussian_redundancy on CPU, the full EVS path (score + topk + gather), DTD path (score +
// threshold), stc_pruner (STC-Pruner in one call: score, per-frame topk, gather) and stc_cacher
// (STC-Cacher's recompute choice in one encoder layer), against a memcpy of the same input bytes
// and the scalar reference (the double-precision oracle of the tests).
//
// Shapes: 32 frames × 729 tokens × 1152 (SigLIP-so400m's 27 × 27 grid and width: a long clip
// before the projector), 8 frames × 144 tokens × 3584 (Qwen2.5-VL-7B's LLM width, 12 × 12 merged
// tokens per temporal grid), 576 × 4096 (one LLaVA image at a 7B LLM width), STC's chunks of
// 1 and 4 LLaVA-OneVision frames (196 tokens × 3584, after the projector and pooling), and
// STC-Cacher's chunks of 1 and 4 frames of keys in one SigLIP layer (729 tokens × 1152).
//
// Every score reads its input once and writes 4 bytes per token: `bytes_per_second` counts the
// input bytes, as does the memcpy baseline's (which also writes them), so the two rates compare
// directly. The target (docs/benchmarks.md): temporal dissimilarity at ≥ 60 % of the memcpy rate.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/feature_scores.hpp>
#include <tokred/cpu/redundancy.hpp>
#include <tokred/cpu/stc_cacher.hpp>
#include <tokred/cpu/stc_pruner.hpp>
#include <tokred/cpu/threshold.hpp>
#include <tokred/policy/feature_scores.hpp>
#include <tokred/policy/redundancy.hpp>
#include <tokred/policy/stc_cacher.hpp>
#include <tokred/policy/stc_pruner.hpp>
#include <tokred/policy/threshold.hpp>

#include "reference/feature_scores_ref.hpp"
#include "reference/redundancy_ref.hpp"
#include "reference/stc_cacher_ref.hpp"

namespace tokred::bench {
namespace {

/// (frames, frame tokens, dim): the two video shapes.
void video_shapes(benchmark::internal::Benchmark* b) {
  b->Args({32, 729, 1152})->Args({8, 144, 3584})->ArgNames({"frames", "hw", "dim"});
  b->Unit(benchmark::kMicrosecond);
}

/// (frames, frame tokens, dim): one 576-token image at 4096.
void image_shape(benchmark::internal::Benchmark* b) {
  b->Args({1, 576, 4096})->ArgNames({"frames", "hw", "dim"})->Unit(benchmark::kMicrosecond);
}

void stc_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 196, 3584})->Args({4, 196, 3584})->ArgNames({"frames", "hw", "dim"})->Unit(benchmark::kMicrosecond);
}

/// (frames, frame tokens, key width): STC-Cacher's chunks of 1 and 4 frames in one layer of
/// LLaVA-OneVision's SigLIP (27 × 27 tokens, width 1152).
void cacher_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 729, 1152})->Args({4, 729, 1152})->ArgNames({"frames", "hw", "dim"})->Unit(benchmark::kMicrosecond);
}

void count_input(benchmark::State& state, index_t n, index_t dim, std::size_t element) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * dim *
                          static_cast<std::int64_t>(element));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
}

/// The floor: one memcpy of the input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const view<const E, 2> rows = video_rows<E>(frames, hw, dim);
  time_memcpy(state, rows);
  count_input(state, frames * hw, dim, sizeof(E));
}

/// Times `step()` (a function returning the status of the calls it makes) per iteration; false,
/// with the benchmark's error set, when it fails.
template <class Step>
bool time_steps(benchmark::State& state, Step step) {
  for (auto _ : state) {
    if (const status s = step(); s != status::ok) {
      state.SkipWithError(to_string(s));
      return false;
    }
    benchmark::ClobberMemory();
  }
  return true;
}

/// The buffers of a score + select + gather path over n tokens keeping at most k: the scores, and
/// the kept rows with their sources and positions.
template <class E>
struct path_buffers {
  index_t n, k, dim;
  std::vector<float> scores;             // (tokens,)
  std::vector<E> kept;                   // (kept, dim)
  std::vector<std::int64_t> source;      // (kept,)
  std::vector<std::int32_t> positions;   // (kept, 3)

  path_buffers(index_t n_, index_t k_, index_t dim_)
      : n(n_), k(k_), dim(dim_), scores(static_cast<std::size_t>(n_)), kept(static_cast<std::size_t>(k_ * dim_)),
        source(static_cast<std::size_t>(k_)), positions(static_cast<std::size_t>(k_ * 3)) {}

  score_outputs<> scored() { return {make_view(scores.data(), n)}; }
  selection_inputs<E> ranked(const token_grid& grid, const view<const E, 2>& rows) const {
    return {grid, make_view<const float>(scores.data(), n), rows};
  }
  selection_outputs<E> outputs() {
    return {make_view(kept.data(), k, dim), make_view(source.data(), k), make_view(positions.data(), k, 3)};
  }
};

/// A score policy over the rows (and, for query_relevance, `state.range(3)` query rows).
template <class P, class E>
void BM_score(benchmark::State& state, const P& policy) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const token_grid grid = video_grid(frames, hw);
  feature_score_inputs<E> in{grid, video_rows<E>(frames, hw, dim), {}};
  if constexpr (std::is_same_v<P, query_relevance>) in.query = video_rows<E>(1, state.range(3), dim);
  const problem prob{grid, dim};
  std::vector<float> scores(static_cast<std::size_t>(score_count(policy, prob)));  // (tokens,) or (T,)
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  const score_outputs<> out{make_view(scores.data(), static_cast<index_t>(scores.size()))};
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  count_input(state, grid.tokens(), dim, sizeof(E));
}

template <class E>
void BM_temporal_dissimilarity(benchmark::State& state) {
  BM_score<temporal_similarity, E>(state, temporal_similarity::evs());
}
template <class E>
void BM_token_norm(benchmark::State& state) {
  BM_score<token_norm, E>(state, token_norm{});
}
template <class E>
void BM_query_relevance_token(benchmark::State& state) {
  BM_score<query_relevance, E>(state, query_relevance{});
}
template <class E>
void BM_query_relevance_frame(benchmark::State& state) {
  BM_score<query_relevance, E>(state, query_relevance{query_relevance::level::frame});
}

/// The scalar reference: the tests' oracle (double, one token at a time).
void BM_temporal_scalar_reference(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const view<const float, 2> rows = video_rows<float>(frames, hw, dim);
  for (auto _ : state) {
    const std::vector<double> s = ref::temporal(temporal_similarity::evs(), video_grid(frames, hw), rows);
    benchmark::DoNotOptimize(s.data());
  }
  count_input(state, frames * hw, dim, sizeof(float));
}

/// vLLM EVS end to end at q = 0.75: dissimilarity scores, the global top k, the kept rows moved
/// with their positions.
template <class E>
void BM_evs_path(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const token_grid grid = video_grid(frames, hw);
  const index_t n = grid.tokens();
  const view<const E, 2> rows = video_rows<E>(frames, hw, dim);
  const topk select{evs_budget(0.75, hw)};
  const problem prob{grid, dim};
  const index_t k = retained_count(select, prob);
  path_buffers<E> b(n, k, dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, select, prob));
  const feature_score_inputs<E> in{grid, rows, {}};
  const score_outputs<> scored = b.scored();
  const selection_inputs<E> ranked = b.ranked(grid, rows);
  const selection_outputs<E> out = b.outputs();
  const bool timed = time_steps(state, [&] {
    const status s = apply(cpu<>{}, temporal_similarity::evs(), in, scored);
    return s != status::ok ? s : apply(cpu<>{}, select, ranked, out, {scratch.data(), scratch.size()});
  });
  if (!timed) return;
  count_input(state, n, dim, sizeof(E));
}

/// TimeChat-Online DTD end to end at τ = 0.5: cosine scores, the threshold, the kept rows moved
/// with their positions (how many depends on the data; the count is reported).
template <class E>
void BM_dtd_path(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const token_grid grid = video_grid(frames, hw);
  const index_t n = grid.tokens();
  const view<const E, 2> rows = video_rows<E>(frames, hw, dim);
  path_buffers<E> b(n, n, dim);  // the static bound: every token
  std::int64_t count = 0;
  const feature_score_inputs<E> in{grid, rows, {}};
  const score_outputs<> scored = b.scored();
  const selection_inputs<E> thresholded = b.ranked(grid, rows);
  const counted_outputs<E> out{b.outputs(), make_view(&count, 1)};
  const bool timed = time_steps(state, [&] {
    const status s = apply(cpu<>{}, temporal_similarity::dtd(), in, scored);
    return s != status::ok ? s : apply(cpu<>{}, threshold::dtd(0.5f), thresholded, out);
  });
  if (!timed) return;
  state.counters["kept"] = static_cast<double>(count);
  count_input(state, n, dim, sizeof(E));
}

/// A stream memory for `width` channels; it keeps growing over the iterations, as a stream's does.
struct stream_memory {
  std::vector<double> sums;
  std::int64_t chunks = 0;
  explicit stream_memory(index_t width) : sums(static_cast<std::size_t>(width)) {}
  redundancy_memory<> view() {
    return {make_view(sums.data(), static_cast<index_t>(sums.size())), make_view(&chunks, 1), {}};
  }
};

/// STC-Pruner's score of one chunk.
template <class E>
void BM_stc_score(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const token_grid grid = video_grid(frames, hw);
  const gaussian_redundancy policy{};
  stream_memory memory(redundancy_channels(policy, dim));
  const redundancy_inputs<E> in{grid, video_rows<E>(frames, hw, dim), memory.view()};
  std::vector<float> scores(static_cast<std::size_t>(grid.tokens()));
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{grid, dim}));
  const score_outputs<> out{make_view(scores.data(), grid.tokens())};
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  count_input(state, grid.tokens(), dim, sizeof(E));
}

/// The scalar reference of STC's score: the tests' oracle.
void BM_stc_scalar_reference(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const view<const float, 2> rows = video_rows<float>(frames, hw, dim);
  ref::stc_memory memory;
  for (auto _ : state) {
    const ref::stc_chunk c = ref::gaussian_redundancy(gaussian_redundancy{}, video_grid(frames, hw), rows, memory);
    benchmark::DoNotOptimize(c.scores.data());
  }
  count_input(state, frames * hw, dim, sizeof(float));
}

/// STC-Pruner end to end in one stc_pruner call: the score, the 60 least redundant tokens of
/// every frame, their rows, sources and positions.
template <class E>
void BM_stc_pruner(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const token_grid grid = video_grid(frames, hw);
  const index_t n = grid.tokens();
  const stc_pruner policy{};
  const problem prob{grid, dim};
  stream_memory memory(redundancy_channels(policy.score, dim));
  path_buffers<E> b(n, retained_count(policy, prob), dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  const stc_pruner_inputs<E> in{grid, 0, video_rows<E>(frames, hw, dim), memory.view()};
  if (!time_apply(state, policy, in, b.outputs(), {scratch.data(), scratch.size()})) return;
  count_input(state, n, dim, sizeof(E));
}

/// One layer's keys of a chunk of `frames` frames and the reference frame's keys: frames 1 … F and
/// frame 0 of one clip (about one slot in six changes per frame).
template <class E>
struct cacher_keys {
  view<const E, 2> clip, keys, reference;
  cacher_keys(index_t frames, index_t hw, index_t dim)
      : clip(video_rows<E>(frames + 1, hw, dim)),
        keys(clip.data_handle() + hw * dim, {frames * hw, dim}, {dim, 1}),
        reference(clip.data_handle(), {hw, dim}, {dim, 1}) {}
};

/// STC-Cacher's choice of the tokens one layer recomputes in a chunk.
template <class E>
void BM_stc_cacher(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const cacher_keys<E> k(frames, hw, dim);
  const stc_cacher policy{};
  const problem prob{video_grid(frames, hw), dim};
  std::vector<std::int64_t> chosen(static_cast<std::size_t>(retained_count(policy, prob)));
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  const stc_cacher_inputs<E> in{prob.grid, k.keys, k.reference};
  const selection_outputs<E> out{{}, make_view(chosen.data(), static_cast<index_t>(chosen.size())), {}};
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  count_input(state, frames * hw, dim, sizeof(E));
}

/// The scalar reference of STC-Cacher's choice: the tests' oracle.
void BM_stc_cacher_scalar_reference(benchmark::State& state) {
  const index_t frames = state.range(0), hw = state.range(1), dim = state.range(2);
  const cacher_keys<float> k(frames, hw, dim);
  const token_grid grid = video_grid(frames, hw);
  for (auto _ : state) {
    const std::vector<std::int64_t> chosen =
        ref::stc_recompute(stc_cacher{}, grid, ref::stc_similarities(grid, k.keys, k.reference));
    benchmark::DoNotOptimize(chosen.data());
  }
  count_input(state, frames * hw, dim, sizeof(float));
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_temporal_dissimilarity, float)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_temporal_dissimilarity, bf16)->Apply(video_shapes);
BENCHMARK(BM_temporal_scalar_reference)->Apply(video_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_evs_path, float)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_evs_path, bf16)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_dtd_path, float)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_dtd_path, bf16)->Apply(video_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(image_shape);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(image_shape);
BENCHMARK_TEMPLATE(BM_token_norm, float)->Apply(image_shape);
BENCHMARK_TEMPLATE(BM_token_norm, bf16)->Apply(image_shape);
BENCHMARK_TEMPLATE(BM_query_relevance_token, float)
    ->Args({1, 576, 4096, 1})->Args({1, 576, 4096, 16})->ArgNames({"frames", "hw", "dim", "queries"})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_query_relevance_token, bf16)
    ->Args({1, 576, 4096, 1})->Args({1, 576, 4096, 16})->ArgNames({"frames", "hw", "dim", "queries"})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_query_relevance_frame, float)
    ->Args({4, 144, 4096, 16})->ArgNames({"frames", "hw", "dim", "queries"})->Unit(benchmark::kMicrosecond);

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(stc_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(stc_shapes);
BENCHMARK_TEMPLATE(BM_stc_score, float)->Apply(stc_shapes);
BENCHMARK_TEMPLATE(BM_stc_score, bf16)->Apply(stc_shapes);
BENCHMARK(BM_stc_scalar_reference)->Apply(stc_shapes);
BENCHMARK_TEMPLATE(BM_stc_pruner, float)->Apply(stc_shapes);
BENCHMARK_TEMPLATE(BM_stc_pruner, bf16)->Apply(stc_shapes);

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(cacher_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(cacher_shapes);
BENCHMARK_TEMPLATE(BM_stc_cacher, float)->Apply(cacher_shapes);
BENCHMARK_TEMPLATE(BM_stc_cacher, bf16)->Apply(cacher_shapes);
BENCHMARK(BM_stc_cacher_scalar_reference)->Apply(cacher_shapes);

}  // namespace
}  // namespace tokred::bench
