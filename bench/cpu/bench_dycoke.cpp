// bench/cpu/bench_dycoke.cpp — dycoke on CPU, against a memcpy of its input rows (the floor of one
// pass: every row of a pruned frame and of its reference is read once for the similarities, a
// whole frame once to be copied), a memcpy of the kept rows alone (the floor of the output), and
// the scalar reference (the oracle: the original's loops, sums in double, stable sorts).
//
// Shapes: 32 frames of 14 × 14 at D = 3584 (LLaVA-OneVision-7B's pooled video tokens in
// Qwen2-7B's width, where the original runs TTM: 6272 rows, 3098 kept at k = 0.7) and 16 frames
// of 27 × 27 at D = 1152 (the unpooled SigLIP grid at its own width: 11664 rows, 5·729 + 11·218 = 6043 kept).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/dycoke.hpp>

#include "reference/dycoke_ref.hpp"

namespace tokred::bench {
namespace {

/// (frames, side, dim).
void shape_grid(benchmark::internal::Benchmark* b) {
  b->Args({32, 14, 3584})->Args({16, 27, 1152});
  b->ArgNames({"frames", "side", "dim"})->Unit(benchmark::kMicrosecond);
}

token_grid grid_of(const benchmark::State& state) { return {state.range(0), state.range(1), state.range(1)}; }

/// The whole policy, every output requested, one share, in the default (original) order.
template <class E>
void BM_dycoke(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  const dycoke policy{};
  const index_t kept = retained_count(policy, problem{grid, dim});
  dycoke_inputs<E> in{};
  in.grid = grid;
  in.tokens = token_rows<E>(n, dim);
  merge_storage<E> storage(kept, n, dim);
  const merge_outputs<E> out = storage.outputs();
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{grid, dim}));
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  state.counters["kept"] = static_cast<double>(kept);
}

/// The floor of one pass: a memcpy of the input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  time_memcpy(state, token_rows<E>(grid.tokens(), state.range(2)));
}

/// The floor of the output: one memcpy per kept row (dycoke's own kept list).
void BM_memcpy_kept_rows(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const index_t dim = state.range(2);
  const view<const float, 2> rows = token_rows<float>(grid.tokens(), dim);
  const std::vector<std::int64_t> kept = ref::dycoke_run(0.7, merge_order::original, grid, rows).source;
  std::vector<float> out(kept.size() * static_cast<std::size_t>(dim));
  for (auto _ : state) {
    memcpy_rows(kept, rows.data_handle(), out.data(), dim);
    benchmark::ClobberMemory();
  }
}

/// The scalar reference: the oracle's loops and double sums (kept indices only, no rows moved).
void BM_dycoke_scalar_reference(benchmark::State& state) {
  const token_grid grid = grid_of(state);
  const view<const float, 2> rows = token_rows<float>(grid.tokens(), state.range(2));
  for (auto _ : state) {
    const ref::dycoke_result r = ref::dycoke_run(0.7, merge_order::original, grid, rows);
    benchmark::DoNotOptimize(r.source.data());
  }
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(shape_grid);
BENCHMARK(BM_memcpy_kept_rows)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_dycoke, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_dycoke, bf16)->Apply(shape_grid);
BENCHMARK(BM_dycoke_scalar_reference)->Apply(shape_grid)->Iterations(3);

}  // namespace
}  // namespace tokred::bench
