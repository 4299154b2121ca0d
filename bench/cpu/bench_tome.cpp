// bench/cpu/bench_tome.cpp — tome and tome_match on CPU, against a memcpy of their input, an
// Eigen GEMM of the same shape as the similarity product (A·Bᵀ: N/2 × N/2 × D, the hardware's
// practical limit for that work) and the scalar reference (the oracle: the A × B cosine matrix in
// double, then the merge).
//
// The rows are the tokens themselves (metric = tokens, D wide), r = N/4, one share. Counters:
// `GFLOPs` is 2·(N/2)²·D per second of the whole call — the similarity product's multiply-adds,
// so tome_match and the GEMM compare directly. Targets (docs/benchmarks.md): tome_match at
// ≥ 50 % of the GEMM, the whole merge ≥ 10 × faster than the scalar reference.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include <Eigen/Core>

#include "bench_data.hpp"

#include <tokred/cpu/tome.hpp>

#include "reference/tome_ref.hpp"

namespace tokred::bench {
namespace {

/// (tokens, dim): N = 9216 at D = 4096 is a 174 GFLOP product (1.5 s a call with AVX-512, 7 s
/// with SSE2), so the grid stops at D = 1024 for it unless `full` is asked for.
void tome_grid(benchmark::internal::Benchmark* b) {
  for (const std::int64_t n : token_counts)
    for (const std::int64_t dim : row_dims)
      if (n < 9216 || dim < 4096) b->Args({n, dim});
  b->ArgNames({"tokens", "dim"})->Unit(benchmark::kMillisecond);
}

void similarity_flops(benchmark::State& state, index_t n, index_t dim) {
  const double half = static_cast<double>(n / 2);
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * half * half * static_cast<double>(dim) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

/// The whole merge: matching, ranking, layout and the size-weighted rows, every output requested.
template <class E>
void BM_tome(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const tome policy{n / 4, 0};
  merge_storage<E> storage(retained_count(policy, problem{grid_of(n), dim}), n, dim);
  if (!time_on_rows<E>(state, policy, n, dim, storage.outputs())) return;
  similarity_flops(state, n, dim);
}

/// The matching alone: the similarity product with each A row's argmax.
template <class E>
void BM_tome_match(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  std::vector<float> similarity(static_cast<std::size_t>(a_tokens(n)));
  std::vector<std::int64_t> partner(similarity.size());
  const match_outputs<> out{make_view(similarity.data(), a_tokens(n)), make_view(partner.data(), a_tokens(n))};
  if (!time_on_rows<E>(state, tome_match{0}, n, dim, out)) return;
  similarity_flops(state, n, dim);
}

/// The hardware's practical limit for the product: Eigen's GEMM of the even rows against the odd
/// rows, C = A·Bᵀ (N/2 × N/2, fp32, one thread), into a preallocated C.
void BM_eigen_gemm(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const view<const float, 2> rows = token_rows<float>(n, dim);
  // The even and odd rows are every other row of the token matrix: a row stride of 2·dim.
  const Eigen::Map<const matrix, 0, Eigen::OuterStride<>> a(rows.data_handle(), n / 2, dim, Eigen::OuterStride<>(2 * dim));
  const Eigen::Map<const matrix, 0, Eigen::OuterStride<>> b(rows.data_handle() + dim, n / 2, dim, Eigen::OuterStride<>(2 * dim));
  matrix c(n / 2, n / 2);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  similarity_flops(state, n, dim);
}

/// The floor of any merge of this input: one memcpy of the N × D rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const view<const E, 2> rows = token_rows<E>(n, dim);
  time_memcpy(state, rows);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * n * dim *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The scalar reference: the oracle's A × B cosines in double, then its merge (N ≤ 2304 at
/// D = 1024 and N = 576 at D = 4096: it is O(N²·D) with three products per element).
void BM_tome_scalar_reference(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const view<const float, 2> rows = token_rows<float>(n, dim);
  for (auto _ : state) {
    const ref::tome_result r = ref::tome_all(tome{n / 4, 0}, grid_of(n), rows, rows);
    benchmark::DoNotOptimize(r.tokens.data());
  }
  similarity_flops(state, n, dim);
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(tome_grid);
BENCHMARK(BM_eigen_gemm)->Apply(tome_grid);
BENCHMARK_TEMPLATE(BM_tome_match, float)->Apply(tome_grid);
BENCHMARK_TEMPLATE(BM_tome, float)->Apply(tome_grid);
/// The 16-bit rows at a vision-tower shape and at the GEMM target's, against the fp32 rows above.
void half_grid(benchmark::internal::Benchmark* b) {
  b->Args({576, 1024})->Args({2304, 4096})->ArgNames({"tokens", "dim"})->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_tome_match, bf16)->Apply(half_grid);
BENCHMARK_TEMPLATE(BM_tome, bf16)->Apply(half_grid);
BENCHMARK_TEMPLATE(BM_tome_match, f16)->Apply(half_grid);
BENCHMARK_TEMPLATE(BM_tome, f16)->Apply(half_grid);
BENCHMARK(BM_tome_scalar_reference)
    ->Args({576, 1024})
    ->Args({576, 4096})
    ->Args({2304, 1024})
    ->ArgNames({"tokens", "dim"})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace
}  // namespace tokred::bench
