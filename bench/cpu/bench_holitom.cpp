// bench/cpu/bench_holitom.cpp — holitom on CPU, against a memcpy of its input rows and the
// scalar reference (the oracle: similarities in double, the original's table of still counts,
// DPC-kNN by sorts, rows in double).
//
// Shapes: LLaVA-OneVision's pooled video tokens, T = 8 and 32 frames of 14 × 14, at C = 1024 and
// 3584 (Qwen2-7B's width); `video_rows` keeps about five patches in six of every frame still
// (cosine ≈ 0.99), so windows form at τ = 0.8. r = 0.25 (the paper's 25 % setting), D = 0 (the
// default: dynamic tokens by attention alone) and D = 0.5 (half of them DPC-kNN clusters).
// Counters: `kept` the output rows, `windows` the windows found.
//
// holitom_inner: the merge inside the LLM on L = 1568 and 3136 image tokens (8 and 16 frames of
// 196) of width 3584, r = 0.5; the product of the L/2 other rows with the L/2 kept ones is
// L²/4·C multiply-adds: `flops` gives its rate against the one-core FMA peak in `peak_flops`.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/holitom.hpp>
#include <tokred/cpu/holitom_inner.hpp>

#include "reference/holitom_inner_ref.hpp"
#include "reference/holitom_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t frame_patches = 196;  // 14 × 14

/// (frames, dim, D in percent).
void shape_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{8, 32}, {1024, 3584}, {0, 50}})->ArgNames({"frames", "dim", "D%"})->Unit(benchmark::kMillisecond);
}

holitom policy_of(std::int64_t contextual_pct) {
  holitom p{};
  p.retain_ratio = 0.25;
  p.contextual = static_cast<double>(contextual_pct) / 100.0;
  return p;
}

/// Per-token attention, fixed per token count.
const std::vector<float>& attention_of(index_t n) {
  static std::map<index_t, std::vector<float>> cache;
  auto [it, fresh] = cache.try_emplace(n);
  if (fresh) {
    testing::rng r(0xA77u + static_cast<std::uint64_t>(n));
    for (index_t i = 0; i < n; ++i) it->second.push_back(r.uniform() + 1.0f);
  }
  return it->second;
}

/// The whole policy, every output requested, one share.
template <class E>
void BM_holitom(benchmark::State& state) {
  const index_t frames = state.range(0), dim = state.range(1), n = frames * frame_patches;
  const holitom policy = policy_of(state.range(2));
  const problem prob{video_grid(frames, frame_patches), dim};
  const index_t bound = retained_count(policy, prob);
  merge_storage<E> storage(bound, n, dim);
  std::vector<std::int64_t> window_start(static_cast<std::size_t>(frames));
  holitom_outputs<E> out{};
  storage.attach(out);
  out.window_start = make_view(window_start.data(), frames);
  holitom_inputs<E> in{prob.grid, video_rows<E>(frames, frame_patches, dim),
                       make_view<const float>(attention_of(n).data(), n), {}};
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  std::int64_t windows = 0;
  for (index_t t = 0; t < frames; ++t) windows += window_start[static_cast<std::size_t>(t)] == t;
  state.counters["kept"] = static_cast<double>(storage.count);
  state.counters["windows"] = static_cast<double>(windows);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
}

/// The floor: one memcpy of the N input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const view<const E, 2> rows = video_rows<E>(state.range(0), frame_patches, state.range(1));
  time_memcpy(state, rows);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * rows.size() *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The scalar reference: the oracle, in double.
void BM_holitom_scalar_reference(benchmark::State& state) {
  const index_t frames = state.range(0), dim = state.range(1), n = frames * frame_patches;
  const holitom policy = policy_of(state.range(2));
  const view<const float, 2> rows = video_rows<float>(frames, frame_patches, dim);
  for (auto _ : state) {
    const ref::holitom_result r = ref::holitom_run(policy, video_grid(frames, frame_patches), rows, attention_of(n), {});
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

/// (image tokens, dim) of the inner merge.
void inner_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{1568, 3136}, {3584}})->ArgNames({"tokens", "dim"})->Unit(benchmark::kMillisecond);
}

/// The product's multiply-adds as a rate, with the FMA peak beside it.
void count_inner_flops(benchmark::State& state, index_t n, index_t dim) {
  const double kept = static_cast<double>(n / 2), rest = static_cast<double>(n) - kept;
  state.counters["flops"] = benchmark::Counter(2.0 * kept * rest * static_cast<double>(dim), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_flops"] = fma_peak();
}

/// holitom_inner, every output requested, one share.
template <class E>
void BM_holitom_inner(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const holitom_inner policy{0.5};
  const problem prob{sequence_grid(n), dim};
  const index_t kept = retained_count(policy, prob);
  merge_storage<E> storage(kept, n, dim);
  const holitom_inner_outputs<E> out{make_view(storage.tokens.data(), kept, dim), make_view(storage.source.data(), kept),
                                     make_view(storage.sizes.data(), kept), make_view(storage.assign.data(), n)};
  const holitom_inner_inputs<E> in{token_rows<E>(n, dim), make_view<const float>(attention_of(n).data(), n)};
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  count_inner_flops(state, n, dim);
}

/// The floor of holitom_inner: one memcpy of its input rows.
template <class E>
void BM_memcpy_inner_input(benchmark::State& state) {
  const view<const E, 2> rows = token_rows<E>(state.range(0), state.range(1));
  time_memcpy(state, rows);
}

/// The scalar reference of holitom_inner: the oracle.
void BM_holitom_inner_scalar_reference(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const view<const float, 2> rows = token_rows<float>(n, dim);
  for (auto _ : state) {
    const ref::holitom_inner_result r = ref::holitom_inner_run(holitom_inner{0.5}, rows, attention_of(n));
    benchmark::DoNotOptimize(r.tokens.data());
  }
  count_inner_flops(state, n, dim);
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->ArgsProduct({{8, 32}, {1024, 3584}})->ArgNames({"frames", "dim"})->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_holitom, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_holitom, bf16)->Apply(shape_grid);
BENCHMARK(BM_holitom_scalar_reference)->Apply(shape_grid)->Iterations(1);
BENCHMARK_TEMPLATE(BM_memcpy_inner_input, float)->Apply(inner_grid);
BENCHMARK_TEMPLATE(BM_holitom_inner, float)->Apply(inner_grid);
BENCHMARK_TEMPLATE(BM_holitom_inner, bf16)->Apply(inner_grid);
// The oracle is O(L²·C) in double with the norms recomputed per pair: the smaller size, once.
BENCHMARK(BM_holitom_inner_scalar_reference)->Args({1568, 3584})->ArgNames({"tokens", "dim"})->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace tokred::bench
