// bench/cpu/bench_diversity.cpp — divprune, kcenter, importance_diversity and cdpruner on CPU, against a
// memcpy of their input, the machine's FMA peak, the distance kernel alone and the scalar
// reference (the original's algorithm: the full distance matrix, the minimum recomputed per step).
//
// Inputs are image-like: a few smooth spatial fields, each along a random direction of feature
// space, plus per-token noise and a shared offset (neighbouring tokens are similar, as in real
// encoder features), or plain i.i.d. noise (`field = 0`), where every token is about equally
// isolated and the pruned scans and the lazy greedy save the least.
//
// Counters: `eager_GFLOPs` is 2·N·k·D — the multiply-adds of the k·N distance updates an eager
// max-min greedy makes (and of the k kernel rows the DPP computes) — per second of the whole call; `GFLOPs` of the kernel benchmarks is their
// own multiply-add rate. The targets (docs/benchmarks.md): ≥ 50 % of the measured FMA peak in the
// distance updates, and N = 576, D = 1024, k = 56 in under 1 ms on one core.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "bench_data.hpp"

#include "reference/diversity_ref.hpp"

namespace tokred::bench {
namespace {

/// Token rows of a square grid of `n` tokens: `fields` smooth spatial fields along random
/// directions plus noise, or i.i.d. noise when `fields` is 0. Built once per shape. The first row
/// starts `offset_bytes` past a 64-byte boundary: 0, as an engine's tensors, unless a benchmark
/// measures what misaligned rows cost.
template <class E>
view<const E, 2> diverse_rows(index_t n, index_t dim, int fields, int offset_bytes = 0) {
  static std::map<std::tuple<index_t, index_t, int, int>, aligned_buffer<E>> cache;
  const index_t skip = offset_bytes / static_cast<index_t>(sizeof(E));
  auto [it, fresh] = cache.try_emplace({n, dim, fields, offset_bytes});
  if (fresh) {
    testing::rng r(0xD1CEu + static_cast<std::uint64_t>(n * 31 + dim + fields));
    const index_t side = static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(n))));
    std::vector<float> direction(static_cast<std::size_t>(fields * dim)), phase(static_cast<std::size_t>(3 * fields));
    for (float& v : direction) v = r.uniform();
    for (float& v : phase) v = 3.0f * r.uniform();
    it->second.resize(static_cast<std::size_t>(skip + n * dim));
    E* rows = it->second.data() + skip;
    for (index_t i = 0; i < n; ++i) {
      const float h = static_cast<float>(i / side), w = static_cast<float>(i % side);
      for (index_t c = 0; c < dim; ++c) {
        float x = 0.2f + (fields > 0 ? 0.3f : 1.0f) * r.uniform();
        for (int f = 0; f < fields; ++f) {
          const std::size_t p = static_cast<std::size_t>(3 * f);
          x += std::sin(0.25f * phase[p] * h + 0.25f * phase[p + 1] * w + phase[p + 2]) *
               direction[static_cast<std::size_t>(f * dim + c)];
        }
        rows[static_cast<std::size_t>(i * dim + c)] = from_float<E>(x);
      }
    }
  }
  return make_view<const E>(it->second.data() + skip, n, dim);  // (tokens, dim)
}

/// (tokens, dim, k, fields): the target sizes on image-like and i.i.d. inputs.
void diversity_grid(benchmark::internal::Benchmark* b) {
  for (const auto& [n, k] : {std::pair<int, int>{576, 56}, {2304, 230}, {9216, 922}})
    for (const int fields : {8, 0}) b->Args({n, 4096, k, fields});
  b->Args({576, 1024, 56, 8})->Args({576, 1024, 56, 0});
  b->ArgNames({"tokens", "dim", "k", "fields"})->Unit(benchmark::kMicrosecond);
}

/// The N 576, D 1024 cases alone.
void misaligned_grid(benchmark::internal::Benchmark* b) {
  b->Args({576, 1024, 56, 8})->Args({576, 1024, 56, 0});
  b->ArgNames({"tokens", "dim", "k", "fields"})->Unit(benchmark::kMicrosecond);
}

/// One selection; `WidenOnce` sets the policy's widen_once (fp16 rows copied to fp32 once);
/// the rows start `OffsetBytes` past a 64-byte boundary.
template <class P, class E, bool WidenOnce = false, int OffsetBytes = 0>
void BM_diversity(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1), k = state.range(2);
  P policy{keep_budget::count(k)};
  if constexpr (WidenOnce) policy.widen_once = true;
  const token_grid grid = grid_of(n);
  const view<const E, 2> rows = diverse_rows<E>(n, dim, static_cast<int>(state.range(3)), OffsetBytes);
  std::vector<float> scores(static_cast<std::size_t>(n));  // (tokens,) importance in [0.5, 1)
  testing::rng r(7);
  for (float& s : scores) s = 0.75f + 0.25f * r.uniform();
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{grid, dim}));
  std::vector<std::int64_t> source(static_cast<std::size_t>(k));  // (kept,)
  const diversity_inputs<E> in{grid, rows, {}, make_view<const float>(scores.data(), n), {}};
  diversity_outputs<E> out;
  out.source = make_view(source.data(), k);
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  state.counters["eager_GFLOPs"] = benchmark::Counter(
      2.0 * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(dim) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate);
}

/// The scalar reference: the original's algorithm in double (N = 576 only: it is O(N²·D)).
void BM_divprune_scalar_reference(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1), k = state.range(2);
  const view<const float, 2> rows = diverse_rows<float>(n, dim, static_cast<int>(state.range(3)));
  for (auto _ : state) {
    const std::vector<std::int64_t> picks =
        ref::greedy_picks(ref::rule_of(divprune{keep_budget::count(k)}, rows), k);
    benchmark::DoNotOptimize(picks.data());
  }
}

/// One distance update: a kept row against all N rows (the inner loop of every greedy step).
template <class E>
void BM_distance_update(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const detail::row_set<compile_time_arch, E> set{diverse_rows<E>(n, dim, 8)};
  std::vector<float> nearest(static_cast<std::size_t>(n), 2.0f);
  index_t pick = 0;
  for (auto _ : state) {
    set.template sweep<detail::pair_op::dot>(pick, 0, n, [&](index_t j, float d) {
      nearest[static_cast<std::size_t>(j)] = std::min(nearest[static_cast<std::size_t>(j)], d);
    });
    pick = (pick + 97) % n;
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * dim *
                          static_cast<std::int64_t>(sizeof(E)));
  state.counters["GFLOPs"] = benchmark::Counter(2.0 * static_cast<double>(n * dim) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

/// The machine's FMA peak on one core with this build's ISA: independent accumulators, no loads.
void BM_fma_peak(benchmark::State& state) {
  double flops = 0.0;
  for (auto _ : state) flops = fma_chains(4096);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// The floor of any reduction of this input: one memcpy of the N × D rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const view<const E, 2> rows = diverse_rows<E>(n, dim, static_cast<int>(state.range(3)));
  time_memcpy(state, rows);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * n * dim *
                          static_cast<std::int64_t>(sizeof(E)));
}

BENCHMARK(BM_fma_peak);
BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_distance_update, float)->ArgsProduct({token_counts, {1024, 4096}})->ArgNames({"tokens", "dim"});
// 144 rows of 1024 fp32 (576 KB) stay in L2: the kernel's rate where memory does not bound it.
BENCHMARK_TEMPLATE(BM_distance_update, float)->Args({144, 1024})->ArgNames({"tokens", "dim"});
BENCHMARK_TEMPLATE(BM_distance_update, bf16)->Args({144, 1024})->ArgNames({"tokens", "dim"});
BENCHMARK_TEMPLATE(BM_distance_update, bf16)->ArgsProduct({token_counts, {1024, 4096}})->ArgNames({"tokens", "dim"});
BENCHMARK_TEMPLATE(BM_distance_update, f16)->ArgsProduct({token_counts, {1024, 4096}})->ArgNames({"tokens", "dim"});
BENCHMARK_TEMPLATE(BM_diversity, divprune, float)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, divprune, bf16)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, divprune, f16)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, divprune, f16, true)->Apply(diversity_grid);
// Rows 16 bytes past a cache line, where `std::vector`'s large buffers start: every 64-byte load
// straddles two lines.
BENCHMARK_TEMPLATE(BM_diversity, divprune, float, false, 16)->Apply(misaligned_grid);
BENCHMARK_TEMPLATE(BM_diversity, divprune, bf16, false, 16)->Apply(misaligned_grid);
BENCHMARK_TEMPLATE(BM_diversity, kcenter, float)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, kcenter, bf16)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, kcenter, f16)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, importance_diversity, float)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, cdpruner, float)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, cdpruner, bf16)->Apply(diversity_grid);
BENCHMARK_TEMPLATE(BM_diversity, cdpruner, f16)->Apply(diversity_grid);
BENCHMARK(BM_divprune_scalar_reference)
    ->Args({576, 1024, 56, 8})
    ->ArgNames({"tokens", "dim", "k", "fields"})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
