// bench/cpu/bench_attention_scores.cpp — fused_attention_score and attention_score on CPU, against
// a memcpy of the bytes they must read, the machine's measured fp32 FMA peak on one core, and
// the scalar reference (the double-precision oracle).
//
// The fused score does 2·queries·heads·keys·head_dim flops, one multiply-add per key element
// loaded when a single query row reads each key (MHA): from DRAM or L3 that is bandwidth-bound,
// so it is quoted both against memcpy of the key bytes and against the FMA peak. GQA groups and
// several query rows reuse each loaded key for several rows. Counters:
//   GFLOPs       the dot products' flop rate over the whole call
//   of_fma_peak  that rate as a fraction of BM_fma_peak's, measured once in this process
//   bytes_per_second  key (or weight) bytes read per second, as for the memcpy baselines
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/attention_scores.hpp>

#include "reference/attention_scores_ref.hpp"

namespace tokred::bench {
namespace {

void BM_fma_peak(benchmark::State& state) {
  double flops = 0.0;
  for (auto _ : state) flops = fma_chains(4096);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

/// (tokens, heads, kv_heads, head_dim, queries): LLaVA-1.5's 576 image tokens and a 96 × 96 span,
/// 32 heads of 128 as in Vicuna-7B / Llama-2-7B, with MHA, GQA 8 and four query rows.
void fused_grid(benchmark::internal::Benchmark* b) {
  for (const int n : {576, 9216})
    for (const auto& [kv, queries] : {std::pair<int, int>{32, 1}, {8, 1}, {32, 4}}) b->Args({n, 32, kv, 128, queries});
  b->ArgNames({"tokens", "heads", "kv_heads", "dim", "queries"})->Unit(benchmark::kMicrosecond);
}

/// Query and key rows of a shape, uniform in [-1, 1), built once per shape (the 9216-key MHA
/// keys are 151 MB in fp32).
template <class E>
struct fused_data {
  std::vector<E> query, keys;
};

template <class E>
const fused_data<E>& fused_inputs(index_t n, index_t heads, index_t kv, index_t dim, index_t queries) {
  static std::map<std::tuple<index_t, index_t, index_t, index_t, index_t>, fused_data<E>> cache;
  auto [it, fresh] = cache.try_emplace({n, heads, kv, dim, queries});
  if (fresh) {
    testing::rng r(0xA77u + static_cast<std::uint64_t>(n + kv + queries));
    it->second.query.resize(static_cast<std::size_t>(queries * heads * dim));
    it->second.keys.resize(static_cast<std::size_t>(kv * n * dim));
    for (E& x : it->second.query) x = from_float<E>(2.0f * r.uniform());
    for (E& x : it->second.keys) x = from_float<E>(r.uniform());
  }
  return it->second;
}

template <class E>
fused_attention_inputs<E> fused_view(const benchmark::State& state) {
  const index_t n = state.range(0), heads = state.range(1), kv = state.range(2), dim = state.range(3),
                queries = state.range(4);
  const fused_data<E>& d = fused_inputs<E>(n, heads, kv, dim, queries);
  return {grid_of(n), make_view(d.query.data(), queries, heads, dim), make_view(d.keys.data(), kv, n, dim)};
}

void count_fused(benchmark::State& state, std::size_t element) {
  const double n = static_cast<double>(state.range(0)), heads = static_cast<double>(state.range(1)),
               kv = static_cast<double>(state.range(2)), dim = static_cast<double>(state.range(3)),
               queries = static_cast<double>(state.range(4));
  const double flops = 2.0 * queries * heads * n * dim;
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_fma_peak"] = benchmark::Counter(flops / fma_peak(), benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kv * n * dim * static_cast<double>(element)));
}

template <class E>
void BM_fused(benchmark::State& state) {
  const fused_attention_inputs<E> in = fused_view<E>(state);
  const index_t n = in.grid.tokens();
  const fused_attention_score policy{};
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{in.grid, in.query.extent(2)}));
  std::vector<float> scores(static_cast<std::size_t>(n));  // (tokens,)
  if (!time_apply(state, policy, in, score_outputs<>{make_view(scores.data(), n)}, {scratch.data(), scratch.size()}))
    return;
  count_fused(state, sizeof(E));
}

/// The floor of any score over these keys: one memcpy of the key bytes.
template <class E>
void BM_memcpy_keys(benchmark::State& state) {
  const fused_attention_inputs<E> in = fused_view<E>(state);
  const std::size_t bytes = static_cast<std::size_t>(in.keys.size()) * sizeof(E);
  std::vector<std::byte> copy(bytes);
  for (auto _ : state) {
    std::memcpy(copy.data(), in.keys.data_handle(), bytes);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(bytes));
}

/// The scalar reference: the oracle's double-precision softmax rows.
void BM_fused_scalar_reference(benchmark::State& state) {
  const fused_attention_inputs<float> in = fused_view<float>(state);
  for (auto _ : state) {
    const std::vector<double> s = ref::fused_attention_score(fused_attention_score{}, in.grid, in.query, in.keys);
    benchmark::DoNotOptimize(s.data());
  }
  count_fused(state, sizeof(float));
}

/// attention_score over the last-row weights of 32 heads: (1, 1, heads, keys), the span from key 35
/// of a sequence with 40 more tokens after it.
template <class E>
struct weight_rows {
  std::vector<E> w;
  attention_score_inputs<E> in;
};

template <class E>
const weight_rows<E>& weights_of(index_t n, index_t heads) {
  static std::map<std::pair<index_t, index_t>, weight_rows<E>> cache;
  auto [it, fresh] = cache.try_emplace({n, heads});
  if (fresh) {
    const index_t keys = 35 + n + 40;
    testing::rng r(0xBEEu + static_cast<std::uint64_t>(n));
    it->second.w.resize(static_cast<std::size_t>(heads * keys));
    for (E& x : it->second.w) x = from_float<E>(0.5f / static_cast<float>(keys) * (1.0f + r.uniform()));
    it->second.in = {grid_of(n), make_view(static_cast<const E*>(it->second.w.data()), 1, 1, heads, keys)};
  }
  return it->second;
}

template <class E>
void BM_attention_score(benchmark::State& state) {
  const index_t n = state.range(0), heads = state.range(1);
  const attention_score_inputs<E>& in = weights_of<E>(n, heads).in;
  std::vector<float> scores(static_cast<std::size_t>(n));  // (tokens,)
  if (!time_apply(state, attention_score{head_reduce::mean, 35}, in, score_outputs<>{make_view(scores.data(), n)}))
    return;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * heads * n * static_cast<std::int64_t>(sizeof(E)));
}

/// The floor of the weights path: a memcpy of the span's weights, one head row after another.
template <class E>
void BM_memcpy_weights(benchmark::State& state) {
  const index_t n = state.range(0), heads = state.range(1);
  const attention_score_inputs<E>& in = weights_of<E>(n, heads).in;
  std::vector<E> copy(static_cast<std::size_t>(heads * n));
  for (auto _ : state) {
    for (index_t h = 0; h < heads; ++h)
      std::memcpy(copy.data() + h * n, &in.weights(0, 0, h, 35), static_cast<std::size_t>(n) * sizeof(E));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * heads * n * static_cast<std::int64_t>(sizeof(E)));
}

void BM_attention_score_scalar_reference(benchmark::State& state) {
  const index_t n = state.range(0), heads = state.range(1);
  const attention_score_inputs<float>& in = weights_of<float>(n, heads).in;
  for (auto _ : state) {
    const std::vector<ref::bounded_score> s = ref::attention_score(attention_score{head_reduce::mean, 35}, in.grid, in.weights);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * heads * n * static_cast<std::int64_t>(sizeof(float)));
}

void weights_grid(benchmark::internal::Benchmark* b) {
  b->Args({576, 32})->Args({9216, 32})->ArgNames({"tokens", "heads"})->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_fma_peak);
BENCHMARK_TEMPLATE(BM_memcpy_keys, float)->Apply(fused_grid);
BENCHMARK_TEMPLATE(BM_memcpy_keys, bf16)->Apply(fused_grid);
BENCHMARK_TEMPLATE(BM_fused, float)->Apply(fused_grid);
BENCHMARK_TEMPLATE(BM_fused, bf16)->Apply(fused_grid);
BENCHMARK(BM_fused_scalar_reference)
    ->Args({576, 32, 32, 128, 1})
    ->Args({9216, 32, 32, 128, 1})
    ->ArgNames({"tokens", "heads", "kv_heads", "dim", "queries"})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_memcpy_weights, float)->Apply(weights_grid);
BENCHMARK_TEMPLATE(BM_attention_score, float)->Apply(weights_grid);
BENCHMARK_TEMPLATE(BM_attention_score, bf16)->Apply(weights_grid);
BENCHMARK(BM_attention_score_scalar_reference)->Apply(weights_grid);

}  // namespace
}  // namespace tokred::bench
