// bench/cuda/bench_diversity_cuda.cu — the CUDA divprune, kcenter, importance_diversity and
// cdpruner (relevance from the scores, no split) against
// one device-to-device cudaMemcpy of their input rows and against the CPU backend (one share,
// this build's ISA).
//
// Shapes: the issue's, N = 576 (k = 56), 2304 (k = 230) and 9216 (k = 922) tokens of D = 4096,
// bf16, one global group; rows are smooth fields over a square grid plus noise (image-like: few
// first-pick candidates survive their bound). Counters: bytes processed = the rows once;
// `eager_TFLOPs` = 2·N·k·D, the multiply-adds of the k distance updates (kernel rows for the DPP).
// At N = 576 the picks are checked after timing against the host replay of the algorithm
// (tests/support/diversity_replay.hpp, dpp_replay.hpp).
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "cuda/cuda_bench.cuh"
#include "support/diversity_replay.hpp"
#include "support/dpp_replay.hpp"

namespace tokred::bench {
namespace {

constexpr index_t dim = 4096;

/// Args: tokens, k.
void shapes(benchmark::internal::Benchmark* b) {
  b->Args({576, 56})->Args({2304, 230})->Args({9216, 922})->ArgNames({"tokens", "k"});
}

struct diversity_case {
  index_t n, k, side;
  std::vector<bf16> rows;
  std::vector<float> scores;

  explicit diversity_case(const benchmark::State& s)
      : n(s.range(0)), k(s.range(1)), side(static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(s.range(0)))))),
        rows(static_cast<std::size_t>(n * dim)), scores(static_cast<std::size_t>(n)) {
    for (index_t i = 0; i < n; ++i) {
      const float h = static_cast<float>(i / side), w = static_cast<float>(i % side);
      for (index_t c = 0; c < dim; ++c) {
        const float field = std::sin(0.3f * h + 0.01f * static_cast<float>(c)) * std::cos(0.2f * w - 0.02f * static_cast<float>(c));
        const float noise = static_cast<float>(static_cast<int>((i * dim + c) * 2654435761ull % 255ull) - 127) / 512.0f;
        rows[static_cast<std::size_t>(i * dim + c)] = from_float<bf16>(0.2f + field + noise);
      }
      scores[static_cast<std::size_t>(i)] = 0.5f + static_cast<float>(i * 40503ull % 1000ull) / 2000.0f;
    }
  }
  token_grid grid() const { return image_grid(side, side); }
  std::int64_t bytes() const { return n * dim * 2; }
  diversity_inputs<bf16> host() const {
    return {grid(), view<const bf16, 2>(rows.data(), {n, dim}), {}, view<const float, 1>(scores.data(), {n}), {}};
  }
};

/// The case's rows and scores, built once per case (built_once) and shared by the benchmarks:
/// the sine field of 9216 rows of 4096 takes about a second on the host.
const diversity_case& case_of(const benchmark::State& state) {
  return built_once<diversity_case>({state.range(0), state.range(1)}, [&] { return diversity_case(state); });
}

void count(benchmark::State& state, const diversity_case& c) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * c.bytes());
  state.counters["eager_TFLOPs"] = benchmark::Counter(2.0 * c.n * c.k * dim * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_cuda_memcpy_rows(benchmark::State& state) {
  if (!have_device(state)) return;
  const diversity_case& c = case_of(state);
  if (time_copy(state, static_cast<std::size_t>(c.bytes()))) count(state, c);
}

template <class P>
void BM_cuda_diversity(benchmark::State& state) {
  if (!have_device(state)) return;
  const diversity_case& c = case_of(state);
  const P p{keep_budget::count(c.k)};
  const problem prob{c.grid(), dim};
  device_array<bf16> rows(c.rows), kept(static_cast<std::size_t>(c.k * dim));
  device_array<float> scores(c.scores);
  device_array<std::int64_t> picks(static_cast<std::size_t>(c.k));
  device_array<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  device_timer timer;
  if (!rows.ok() || !kept.ok() || !scores.ok() || !picks.ok() || !ws.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  diversity_inputs<bf16, device_space> in{prob.grid, view<const bf16, 2, device_space>(rows.get(), {c.n, dim}), {},
                                          view<const float, 1, device_space>(scores.get(), {c.n}), {}};
  diversity_outputs<bf16, device_space> out{};
  out.tokens = view<bf16, 2, device_space>(kept.get(), {c.k, dim});
  out.picks = view<std::int64_t, 1, device_space>(picks.get(), {c.k});
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, p, in, out, workspace{ws.get(), ws.size()}) == status::ok;
      }))
    return;
  if (c.n == 576 && !built_once<bool>({c.n, c.k}, [&] {  // once per case: the replay takes seconds
        if constexpr (std::is_same_v<P, cdpruner>) return picks.download() == testing::replay_dpp(p, c.host());
        else return picks.download() == testing::replay_maxmin(p, c.host());
      }))
    return state.SkipWithError("picks differ from the host replay's");
  count(state, c);
}

template <class P>
void BM_cpu_diversity(benchmark::State& state) {
  const diversity_case& c = case_of(state);
  const P p{keep_budget::count(c.k)};
  const problem prob{c.grid(), dim};
  std::vector<std::int64_t> source(static_cast<std::size_t>(c.k));
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, prob));
  diversity_outputs<bf16> out{};
  out.source = view<std::int64_t, 1>(source.data(), {c.k});
  for (auto _ : state) {
    if (apply(cpu<>{}, p, c.host(), out, workspace{ws.data(), ws.size()}) != status::ok)
      return state.SkipWithError("CPU selection failed");
    benchmark::DoNotOptimize(source.data());
  }
  count(state, c);
}

BENCHMARK(BM_cuda_memcpy_rows)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_cuda_diversity, divprune)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_cuda_diversity, kcenter)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_cuda_diversity, importance_diversity)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_cuda_diversity, cdpruner)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_cpu_diversity, divprune)->Args({576, 56})->ArgNames({"tokens", "k"})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
