// bench/cpu/bench_kv_uniform.cpp — uniform grouped quantization (KIVI keys along tokens, values
// along channels) and attention logits from packed keys, against a memcpy of the cache (the
// bandwidth bound) and the scalar oracle of tests/reference/uniform_quant_ref.hpp.
//
// Shape: (heads, tokens, head_dim) = (8, tokens, 128), contiguous, fp16, bf16 or fp32, every
// buffer starting on a cache line. Bytes processed = float bytes read + packed bytes written
// (quantize) or the reverse (dequantize); memcpy counts the cache twice. Scores: 32 query heads
// over 8 kv heads (grouped-query attention), one query each, keys either packed (4 or 2 bits) or
// fp16 (the same call with every key in the residual).
//
// Two more baselines: the code arithmetic alone (what an exact quantizer must do per value once
// its group's parameters are known, on data in L1: the compute floor, next to memcpy's bandwidth
// floor), and both cores (`threads:2`: each thread runs its share of the same call, as an
// engine's pool would, against a memcpy of the same threads each copying its share).
#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "bench_data.hpp"

#include "reference/uniform_quant_ref.hpp"

namespace tokred::bench {
namespace {

double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

constexpr index_t heads = 8, head_dim = 128, q_heads = 32;

template <class E>
const aligned_buffer<E>& cache_of(index_t tokens) {
  return kv_values<E>(heads, tokens, head_dim);
}


/// A packed cache of the format over (heads, tokens, head_dim).
template <class E>
struct packed {
  aligned_buffer<std::uint32_t> codes;
  aligned_buffer<E> scale, zero;
  uniform_packed<E> views;

  packed(const uniform_format& f, index_t tokens) {
    const kv_problem p{heads, tokens, head_dim};
    const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
    codes.resize(static_cast<std::size_t>(c.heads * c.rows * c.cols));
    scale.resize(static_cast<std::size_t>(s.heads * s.rows * s.cols));
    zero.resize(scale.size());
    views = {make_view(codes.data(), c.heads, c.rows, c.cols), make_view(scale.data(), s.heads, s.rows, s.cols),
             make_view(zero.data(), s.heads, s.rows, s.cols)};
  }
  std::int64_t bytes() const {
    return static_cast<std::int64_t>(codes.size() * 4 + 2 * scale.size() * sizeof(E));
  }
};

uniform_format format_of(const benchmark::State& state) {
  return {static_cast<int>(state.range(1)), 32, state.range(2) == 0 ? kv_group_axis::tokens : kv_group_axis::channels};
}

template <class E>
void BM_memcpy_cache(benchmark::State& state) {
  time_memcpy(state, cache_of<E>(state.range(0)));
}

template <class E>
void BM_quantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const uniform_format f = format_of(state);
  const aligned_buffer<E>& x = cache_of<E>(tokens);
  packed<E> out(f, tokens);
  if (!time_apply(state, uniform_quantize{f}, kv_inputs<E>{make_view(x.data(), heads, tokens, head_dim)}, out.views))
    return;
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(E)) + out.bytes(), static_cast<std::int64_t>(x.size()));
}

template <class E>
void BM_dequantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const uniform_format f = format_of(state);
  const aligned_buffer<E>& x = cache_of<E>(tokens);
  packed<E> in(f, tokens);
  aligned_buffer<E> y(x.size());
  if (apply(cpu<>{}, uniform_quantize{f}, kv_inputs<E>{make_view(x.data(), heads, tokens, head_dim)}, in.views) !=
      status::ok)
    return state.SkipWithError("quantize failed");
  if (!time_apply(state, uniform_dequantize{f}, read_only(in.views),
                  kv_outputs<E>{make_view(y.data(), heads, tokens, head_dim)}))
    return;
  count_per_iteration(state, static_cast<std::int64_t>(y.size() * sizeof(E)) + in.bytes(), static_cast<std::int64_t>(y.size()));
}

/// The compute floor of an exact asymmetric quantizer here: the arithmetic every value needs
/// once its group's parameters are known (widen, subtract the minimum, divide by the scale, clamp,
/// round, shift into its word: the quantizer's own code_block), over 32 token rows × 128 channels
/// already in L1, with no statistics, parameters, second read or layout. Values per second.
template <class E, int Bits>
void BM_code_arithmetic(benchmark::State& state) {
  using Arch = compile_time_arch;
  using fb = detail::float_batch<Arch>;
  constexpr index_t w = fb::size, rows = 32;
  const E* x = cache_of<E>(256).data();
  detail::group_params<Arch> g;
  g.scale = fb(0.25f), g.zero = fb(-2.0f);
  const detail::step_rounding<Arch, E> rnd{};
  aligned_buffer<std::uint32_t> words(static_cast<std::size_t>(Bits * head_dim));
  for (auto _ : state) {
    for (index_t c = 0; c < head_dim; c += w)
      detail::code_block<Bits, kv_scheme::asymmetric, Arch, E>(
          [&](index_t i) TOKRED_INLINE_LAMBDA { return detail::load_operands<Arch>(x + i * head_dim + c); }, g, rnd,
          words.data() + c, head_dim, 1, w, Bits);
    benchmark::DoNotOptimize(words.data());
    benchmark::ClobberMemory();
  }
  count_per_iteration(state, rows * head_dim * static_cast<std::int64_t>(sizeof(E)), rows * head_dim);
}

/// The scalar oracle: quantize and dequantize one value at a time (fp32 cache).
void BM_roundtrip_ref(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const uniform_format f = format_of(state);
  const aligned_buffer<float>& x = cache_of<float>(tokens);
  for (auto _ : state) {
    const ref::uniform_result r = ref::uniform_roundtrip<float>(
        f, false, false, heads, tokens, head_dim,
        [&](index_t h, index_t t, index_t c) { return x[static_cast<std::size_t>((h * tokens + t) * head_dim + c)]; });
    benchmark::DoNotOptimize(r.values.data());
  }
  count_per_iteration(state, static_cast<std::int64_t>(2 * x.size() * sizeof(float)), static_cast<std::int64_t>(x.size()));
}

/// Logits of 32 query heads over `tokens` keys: packed at `bits` (range 1), or fp16 (bits 16:
/// every key in the residual, the canonical dot product).
void BM_scores(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const int bits = static_cast<int>(state.range(1));
  const aligned_buffer<f16>& keys = cache_of<f16>(tokens);
  const view<const f16, 3> k = make_view(keys.data(), heads, tokens, head_dim);
  std::vector<f16> queries(static_cast<std::size_t>(q_heads * head_dim), from_float<f16>(0.25f));
  const uniform_format f{bits == 16 ? 4 : bits, 32, kv_group_axis::tokens};
  const index_t packed_tokens = bits == 16 ? 0 : tokens;
  packed<f16> p(f, packed_tokens);
  if (packed_tokens > 0 && apply(cpu<>{}, uniform_quantize{f}, kv_inputs<f16>{k}, p.views) != status::ok)
    return state.SkipWithError("quantize failed");
  std::vector<float> scores(static_cast<std::size_t>(q_heads * tokens));
  const packed_key_scores policy{f};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, policy, kv_problem{heads, packed_tokens, head_dim}));
  const packed_score_inputs<f16> in{make_view(static_cast<const f16*>(queries.data()), q_heads, head_dim),
                                    read_only(p.views), token_range(k, packed_tokens, tokens - packed_tokens)};
  if (!time_apply(state, policy, in, packed_score_outputs<>{make_view(scores.data(), q_heads, tokens)},
                  workspace{ws.data(), ws.size()}))
    return;
  const std::int64_t key_bytes = bits == 16 ? static_cast<std::int64_t>(keys.size() * 2) : p.bytes();
  count_per_iteration(state, key_bytes, static_cast<std::int64_t>(q_heads * tokens));
}

/// Caches of 4096 tokens (8 MB of fp16: within this machine's 32 MB L3) and 32 768 (64 MB: in
/// DRAM, as a long video's cache is); the formats also at 256 (512 KB: in L2).
void memcpy_shapes(benchmark::internal::Benchmark* b) {
  b->Arg(4096)->Arg(32768)->ArgName("tokens")->MinTime(0.1)->ComputeStatistics("min", fastest);
}
void formats(benchmark::internal::Benchmark* b) {
  for (int bits : {2, 4, 8})
    for (int axis : {0, 1}) b->Args({4096, bits, axis})->Args({256, bits, axis});
  for (int bits : {2, 4})
    for (int axis : {0, 1}) b->Args({32768, bits, axis});
  b->ArgNames({"tokens", "bits", "per_token"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}
/// Both cores: each thread runs its share of every call (threads:2; compare items per second,
/// which Google Benchmark sums over the threads, not the time column).
void both_cores(benchmark::internal::Benchmark* b) {
  for (int bits : {2, 4})
    for (int axis : {0, 1}) b->Args({4096, bits, axis});
  b->ArgNames({"tokens", "bits", "per_token"})->Threads(2)->UseRealTime()->MinTime(0.1);
}
void ref_formats(benchmark::internal::Benchmark* b) {
  b->Args({512, 2, 0})->ArgNames({"tokens", "bits", "per_token"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}
void score_shapes(benchmark::internal::Benchmark* b) {
  for (int tokens : {4096, 16384})
    for (int bits : {16, 4, 2}) b->Args({tokens, bits});
  b->ArgNames({"tokens", "bits"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}

BENCHMARK_TEMPLATE(BM_memcpy_cache, f16)->Apply(memcpy_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_cache, float)->Apply(memcpy_shapes);
BENCHMARK_TEMPLATE(BM_quantize, f16)->Apply(formats);
BENCHMARK_TEMPLATE(BM_quantize, bf16)->Apply(formats);
BENCHMARK_TEMPLATE(BM_quantize, float)->Apply(formats);
BENCHMARK_TEMPLATE(BM_dequantize, f16)->Apply(formats);
BENCHMARK_TEMPLATE(BM_dequantize, bf16)->Apply(formats);
BENCHMARK_TEMPLATE(BM_dequantize, float)->Apply(formats);
BENCHMARK_TEMPLATE(BM_code_arithmetic, f16, 2)->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_code_arithmetic, f16, 4)->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_memcpy_cache, f16)->Arg(4096)->ArgName("tokens")->Threads(2)->UseRealTime()->MinTime(0.1);
BENCHMARK_TEMPLATE(BM_quantize, f16)->Apply(both_cores);
BENCHMARK_TEMPLATE(BM_dequantize, f16)->Apply(both_cores);
BENCHMARK(BM_roundtrip_ref)->Apply(ref_formats);
BENCHMARK(BM_scores)->Apply(score_shapes);

}  // namespace
}  // namespace tokred::bench
