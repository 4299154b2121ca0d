// bench/cuda/bench_feature_scores_cuda.cu — the CUDA feature scores (token_norm,
// temporal_similarity — vLLM EVS —, query_relevance) against one device-to-device cudaMemcpy
// moving the same bytes, and against the CPU backend (one share, this build's ISA).
//
// Shape: the issue's memory-bound target, 16 frames × 729 tokens (27 × 27) × 3584 channels,
// bf16 (Qwen2-VL-7B's merged visual tokens), and 8 frames × 576 × 1024 (a vision tower's output).
// Each score reads the N·D token values once from memory (temporal_similarity reads every row
// twice, as the current row and as the next frame's previous one; the second read should hit
// L2); bytes processed = N·D·2, and the memcpy baseline copies half of that so that it reads and
// writes as many bytes. query_relevance scores against 8 query rows. Items = tokens scored. Each
// benchmark checks its scores once after timing against the CPU backend (within 10⁻⁴ of the
// largest score).
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

/// Args: frames, side, dim.
void shapes(benchmark::internal::Benchmark* b) {
  b->Args({16, 27, 3584})->Args({8, 24, 1024})->ArgNames({"frames", "side", "dim"});
}

struct feature_case {
  token_grid grid;
  index_t dim;
  std::vector<bf16> rows, query;

  explicit feature_case(const benchmark::State& s)
      : grid{s.range(0), s.range(1), s.range(1)}, dim(s.range(2)),
        rows(static_cast<std::size_t>(grid.tokens() * dim)), query(static_cast<std::size_t>(8 * dim)) {
    for (std::size_t i = 0; i < rows.size(); ++i)
      rows[i] = from_float<bf16>(static_cast<float>(static_cast<int>(i * 2654435761ull % 255ull) - 127) / 64.0f);
    for (std::size_t i = 0; i < query.size(); ++i)
      query[i] = from_float<bf16>(static_cast<float>(static_cast<int>(i * 40503ull % 255ull) - 127) / 64.0f);
  }
  std::int64_t bytes() const { return grid.tokens() * dim * 2; }
  feature_score_inputs<bf16> host() const {
    return {grid, view<const bf16, 2>(rows.data(), {grid.tokens(), dim}), view<const bf16, 2>(query.data(), {8, dim})};
  }
};

void count(benchmark::State& state, std::int64_t bytes, index_t tokens) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * tokens);
}

void BM_cuda_memcpy_same_bytes(benchmark::State& state) {
  if (!have_device(state)) return;
  const feature_case c(state);
  if (time_copy(state, static_cast<std::size_t>(c.bytes() / 2))) count(state, c.bytes(), c.grid.tokens());
}

template <class P>
P policy() {
  if constexpr (std::is_same_v<P, temporal_similarity>) return temporal_similarity::evs();
  else return P{};
}

template <class P>
void BM_cuda_feature_score(benchmark::State& state) {
  if (!have_device(state)) return;
  const feature_case c(state);
  const P p = policy<P>();
  const index_t count_scores = score_count(p, problem{c.grid, c.dim});
  device_array<bf16> rows(c.rows), query(c.query);
  device_array<float> scores(static_cast<std::size_t>(count_scores));
  device_timer timer;
  if (!rows.ok() || !query.ok() || !scores.ok() || !timer.ok()) return state.SkipWithError("device setup failed");
  const feature_score_inputs<bf16, device_space> in{c.grid, view<const bf16, 2, device_space>(rows.get(), {c.grid.tokens(), c.dim}),
                                                    view<const bf16, 2, device_space>(query.get(), {8, c.dim})};
  const score_outputs<device_space> out{view<float, 1, device_space>(scores.get(), {count_scores})};
  if (!time_iterations(state, timer, [&] { return apply(tokred::cuda{timer.stream()}, p, in, out) == status::ok; })) return;
  std::vector<float> want(static_cast<std::size_t>(count_scores));
  const status host = apply(cpu<>{}, p, c.host(), score_outputs<>{view<float, 1>(want.data(), {count_scores})});
  const std::vector<float> got = scores.download();
  float largest = 0.0f, worst = 0.0f;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    if (std::is_same_v<P, temporal_similarity> && want[i] == 255.0f) continue;  // frame 0
    largest = std::max(largest, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  if (host != status::ok || got.size() != want.size() || !(worst <= 1e-4f * std::max(largest, 1.0f)))
    return state.SkipWithError("scores differ from the CPU backend's");
  count(state, c.bytes(), c.grid.tokens());
}

template <class P>
void BM_cpu_feature_score(benchmark::State& state) {
  const feature_case c(state);
  const P p = policy<P>();
  const index_t count_scores = score_count(p, problem{c.grid, c.dim});
  std::vector<float> scores(static_cast<std::size_t>(count_scores));
  const feature_score_inputs<bf16> in = c.host();
  for (auto _ : state) {
    if (apply(cpu<>{}, p, in, score_outputs<>{view<float, 1>(scores.data(), {count_scores})}) != status::ok)
      return state.SkipWithError("CPU score failed");
    benchmark::DoNotOptimize(scores.data());
  }
  count(state, c.bytes(), c.grid.tokens());
}

BENCHMARK(BM_cuda_memcpy_same_bytes)->Apply(shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_feature_score, temporal_similarity)->Apply(shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_feature_score, token_norm)->Apply(shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_feature_score, query_relevance)->Apply(shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cpu_feature_score, temporal_similarity)->Apply(shapes)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
