// bench/cpu/bench_framefusion.cpp — framefusion on CPU, against a memcpy of its input rows (every
// row is read twice: once for its similarity, once to be copied or summed into its chain) and the
// scalar reference (the oracle: the rows listed slot by slot, the cosines in double, the runs and
// their means in double).
//
// Shapes: 16 frames of 14 × 14 (LLaVA-Video's pooled 27 × 27 SigLIP grid without the newline
// column; 3136 rows) and 16 frames of 27 × 27 (the unpooled grid; 11664 rows), D = 1024 and 3584
// (Qwen2-7B's width, the LLM FrameFusion runs in). The rows are per-slot AR(1) chains over the
// frames with correlations from 0.3 to 0.98, so that at the default threshold 0.6 about half the
// rows merge (1620 of 3136: the threshold branch, under the first layer's bound of 0.7).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <map>
#include <numeric>
#include <tuple>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/framefusion.hpp>

#include "reference/framefusion_ref.hpp"

namespace tokred::bench {
namespace {

/// (frames, side, dim).
void shape_grid(benchmark::internal::Benchmark* b) {
  for (const std::int64_t side : {14, 27})
    for (const std::int64_t dim : {1024, 3584}) b->Args({16, side, dim});
  b->ArgNames({"frames", "side", "dim"})->Unit(benchmark::kMicrosecond);
}

/// Video rows, built once per shape: slot j's rows follow x_t = c_j·x_{t−1} + √(1 − c_j²)·noise.
template <class E>
view<const E, 2> video_rows(const token_grid& grid, index_t dim) {
  static std::map<std::tuple<index_t, index_t, index_t>, std::vector<E>> cache;
  auto [it, fresh] = cache.try_emplace({grid.frames, grid.height, dim});
  const index_t n = grid.tokens(), hw = grid.frame_tokens();
  if (fresh) {
    std::vector<float> x(static_cast<std::size_t>(n * dim));
    testing::rng r(0xF4A3Eu + static_cast<std::uint64_t>(n * dim));
    for (index_t i = 0; i < n; ++i) {
      const float c = 0.3f + 0.68f * static_cast<float>((i % hw) * 7 % 11) / 10.0f;
      for (index_t k = 0; k < dim; ++k) {
        const float noise = r.uniform() * 1.7f;
        float& v = x[static_cast<std::size_t>(i * dim + k)];
        v = i < hw ? noise : c * x[static_cast<std::size_t>((i - hw) * dim + k)] + std::sqrt(1.0f - c * c) * noise;
      }
    }
    it->second.resize(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) it->second[i] = from_float<E>(x[i]);
  }
  return make_view<const E>(it->second.data(), n, dim);
}

token_grid grid_of(const benchmark::State& state) { return {state.range(0), state.range(1), state.range(1)}; }

/// The whole policy, every output requested, one share.
template <class E>
void BM_framefusion(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  framefusion_inputs<E> in{};
  in.grid = grid;
  in.tokens = video_rows<E>(grid, dim);
  const framefusion policy{};
  merge_storage<E> storage(n, n, dim);  // sized by the bound: every row
  framefusion_outputs<E> out{};
  storage.attach(out);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{grid, dim}));
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  state.counters["kept"] = static_cast<double>(storage.count);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * (2 * n + storage.count) * dim *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The similarity step alone (framefusion_similarity, one share): one pass over the rows.
template <class E>
void BM_framefusion_similarity(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  framefusion_inputs<E> in{};
  in.grid = grid;
  in.tokens = video_rows<E>(grid, dim);
  std::vector<float> sim(static_cast<std::size_t>(n));
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, framefusion_similarity{}, problem{grid, dim}));
  if (!time_apply(state, framefusion_similarity{}, in, framefusion_similarity_outputs<>{make_view(sim.data(), n)},
                  {scratch.data(), scratch.size()}))
    return;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * dim *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The floor of one pass: a memcpy of the input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  time_memcpy(state, video_rows<E>(grid_of(state), state.range(2)));
}

/// The scalar reference: the oracle's cosines and merge, in double.
void BM_framefusion_scalar_reference(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  const view<const float, 2> rows = video_rows<float>(grid, dim);
  const framefusion policy{};
  std::vector<std::int64_t> src(static_cast<std::size_t>(n));
  std::iota(src.begin(), src.end(), 0);
  for (auto _ : state) {
    const std::vector<double> cos = ref::framefusion_cosines(grid, src, rows);
    const std::vector<float> sim(cos.begin(), cos.end());
    const ref::framefusion_result r = ref::framefusion_run(policy, 0.7, grid, src, sim, {}, rows);
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_framefusion_similarity, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_framefusion, float)->Apply(shape_grid);
BENCHMARK(BM_framefusion_scalar_reference)->Args({16, 14, 1024})->ArgNames({"frames", "side", "dim"})
    ->Unit(benchmark::kMicrosecond)->Iterations(2);
BENCHMARK_TEMPLATE(BM_framefusion, bf16)->Args({16, 14, 1024})->Args({16, 27, 1024})
    ->ArgNames({"frames", "side", "dim"})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokred::bench
