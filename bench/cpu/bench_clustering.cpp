// bench/cpu/bench_clustering.cpp — dpc_knn on CPU, against a memcpy of its input rows and the
// scalar reference (the oracle: distances in double, the ranking by sorts, the rows in double).
//
// Shapes: the static tokens of HoliTom windows, N = 196 (one 14 × 14 frame), 784 (4 frames) and
// 3136 (16 frames), at C = 1024 and 3584 (Qwen2-7B's width: LLaVA-OneVision-7B's projected
// features); a quarter of the tokens kept (HoliTom's retain ratio 0.25), k = 7, β = 0.6. The
// distance matrix is N·(N − 1)/2·C subtractions and multiply-adds: the `dist_flops` counter
// gives its rate (3 flops a pair element) against the one-core FMA peak in `peak_flops`.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/clustering.hpp>

#include "reference/dpc_knn_ref.hpp"

namespace tokred::bench {
namespace {

/// (tokens, dim) of the static tokens of 1, 4 and 16 frames of 14 × 14.
void shape_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{196, 784, 3136}, {1024, 3584}})->ArgNames({"tokens", "dim"})->Unit(benchmark::kMillisecond);
}

dpc_knn policy_of(index_t n) { return dpc_knn{n / 4}; }

/// The distance matrix's flops (a subtraction and a multiply-add per element of each pair) per
/// iteration, as a rate, with the FMA peak beside it.
void count_distance_flops(benchmark::State& state, index_t n, index_t dim) {
  const double flops = 3.0 * static_cast<double>(n) * static_cast<double>(n - 1) / 2.0 * static_cast<double>(dim);
  state.counters["dist_flops"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_flops"] = fma_peak();
}

/// The whole policy, every output requested, one share.
template <class E>
void BM_dpc_knn(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const dpc_knn policy = policy_of(n);
  const problem prob{sequence_grid(n), dim};
  const index_t kept = retained_count(policy, prob);
  merge_storage<E> storage(kept, n, dim);
  const merge_outputs<E> out = storage.outputs();
  merge_inputs<E> in{};
  in.grid = prob.grid;
  in.tokens = token_rows<E>(n, dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  count_distance_flops(state, n, dim);
}

/// The floor: one memcpy of the N input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const view<const E, 2> rows = token_rows<E>(state.range(0), state.range(1));
  time_memcpy(state, rows);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * rows.size() *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The scalar reference: the oracle's decisions and rows, in double.
void BM_dpc_knn_scalar_reference(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const dpc_knn policy = policy_of(n);
  const view<const float, 2> rows = token_rows<float>(n, dim);
  for (auto _ : state) {
    const ref::dpc_knn_decisions d = ref::dpc_knn_decide(policy, rows);
    const ref::dpc_knn_result r = ref::dpc_knn_rows(policy, rows, d, {});
    benchmark::DoNotOptimize(r.tokens.data());
  }
  count_distance_flops(state, n, dim);
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_dpc_knn, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_dpc_knn, bf16)->Apply(shape_grid);
// The oracle costs N²·C double operations (about 40 s at N = 3136, C = 3584): the two smaller
// sizes only, one iteration each.
BENCHMARK(BM_dpc_knn_scalar_reference)
    ->ArgsProduct({{196, 784}, {1024, 3584}})
    ->ArgNames({"tokens", "dim"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace tokred::bench
