// bench/cpu/bench_kv_blocks.cpp — ggml block quantization and dequantization of a KV cache, and
// the Hadamard rotation, against two baselines: a memcpy of the float cache (the bandwidth bound)
// and the scalar oracle of tests/reference/ggml_blocks_ref.hpp (written like ggml's reference C
// functions, block by block, one rounded fp32 step at a time).
//
// Shape: (heads, tokens, head_dim) = (8, tokens, 128), llama.cpp's cell layout is not used (the
// cache is contiguous). Bytes processed = float bytes read + packed bytes written (quantize), or
// the reverse (dequantize); memcpy counts the float cache twice. Items = values.
#include <algorithm>
#include <cstring>
#include <vector>

#include "bench_data.hpp"

#include "reference/ggml_blocks_ref.hpp"

namespace tokred::bench {
namespace {

double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

constexpr index_t heads = 8, head_dim = 128;

void kv_shapes(benchmark::internal::Benchmark* b) {
  b->Arg(512)->Arg(4096)->ArgName("tokens")->MinTime(0.1)->ComputeStatistics("min", fastest);
}

template <class E>
const aligned_buffer<E>& cache_of(index_t tokens) {
  return kv_values<E>(heads, tokens, head_dim);
}


template <class E>
void BM_memcpy_cache(benchmark::State& state) {
  time_memcpy(state, cache_of<E>(state.range(0)));
}

template <ggml_type T, class E>
void BM_quantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const aligned_buffer<E>& x = cache_of<E>(tokens);
  const index_t row = ggml_row_bytes(T, head_dim);
  aligned_buffer<std::uint8_t> packed(static_cast<std::size_t>(heads * tokens * row));
  const kv_inputs<E> in{make_view(x.data(), heads, tokens, head_dim)};
  const kv_block_outputs<> out{make_view(packed.data(), heads, tokens, row)};
  const ggml_quantize policy{T, state.range(1)};
  if (!time_apply(state, policy, in, out)) return;
  if (policy.rotation == 0) {
    std::vector<float> row0(static_cast<std::size_t>(head_dim));
    for (index_t c = 0; c < head_dim; ++c) row0[static_cast<std::size_t>(c)] = to_float(x[static_cast<std::size_t>(c)]);
    if (ref::quantize_row(T, row0.data(), head_dim) != std::vector<std::uint8_t>(packed.begin(), packed.begin() + row))
      state.SkipWithError("disagrees with the reference");
  }
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(E) + packed.size()), static_cast<std::int64_t>(x.size()));
}

template <ggml_type T, class E>
void BM_dequantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const aligned_buffer<E>& x = cache_of<E>(tokens);
  const index_t row = ggml_row_bytes(T, head_dim);
  aligned_buffer<std::uint8_t> packed(static_cast<std::size_t>(heads * tokens * row));
  aligned_buffer<E> y(x.size());
  if (apply(cpu<>{}, ggml_quantize{T}, kv_inputs<E>{make_view(x.data(), heads, tokens, head_dim)},
            kv_block_outputs<>{make_view(packed.data(), heads, tokens, row)}) != status::ok) {
    state.SkipWithError("quantize failed");
    return;
  }
  const kv_block_inputs<> in{make_view(static_cast<const std::uint8_t*>(packed.data()), heads, tokens, row)};
  const kv_outputs<E> out{make_view(y.data(), heads, tokens, head_dim)};
  const ggml_dequantize policy{T, state.range(1)};
  if (!time_apply(state, policy, in, out)) return;
  count_per_iteration(state, static_cast<std::int64_t>(y.size() * sizeof(E) + packed.size()), static_cast<std::int64_t>(y.size()));
}

/// The oracle, fp32 input: ggml's reference algorithm, one block at a time.
template <ggml_type T>
void BM_quantize_ref(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const aligned_buffer<float>& x = cache_of<float>(tokens);
  for (auto _ : state) {
    std::vector<std::uint8_t> packed = ref::quantize_row(T, x.data(), static_cast<index_t>(x.size()));
    benchmark::DoNotOptimize(packed.data());
  }
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(float) + x.size() / 32 * ggml_block_bytes(T)),
        static_cast<std::int64_t>(x.size()));
}

template <class E>
void BM_hadamard(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const aligned_buffer<E>& x = cache_of<E>(tokens);
  aligned_buffer<E> y(x.size());
  const kv_inputs<E> in{make_view(x.data(), heads, tokens, head_dim)};
  const kv_outputs<E> out{make_view(y.data(), heads, tokens, head_dim)};
  if (!time_apply(state, hadamard{}, in, out)) return;
  count_per_iteration(state, static_cast<std::int64_t>(2 * x.size() * sizeof(E)), static_cast<std::int64_t>(x.size()));
}

void no_rotation(benchmark::internal::Benchmark* b) {
  b->Args({512, 0})->Args({4096, 0})->ArgNames({"tokens", "rotation"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}
void with_rotation(benchmark::internal::Benchmark* b) {
  b->Args({4096, 0})->Args({4096, 128})->ArgNames({"tokens", "rotation"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}

BENCHMARK_TEMPLATE(BM_memcpy_cache, float)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_cache, f16)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q8_0, float)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q4_0, float)->Apply(with_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q4_1, float)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q5_0, float)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q5_1, float)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::iq4_nl, float)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q8_0, f16)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_quantize, ggml_type::q4_0, f16)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_dequantize, ggml_type::q8_0, f16)->Apply(no_rotation);
BENCHMARK_TEMPLATE(BM_dequantize, ggml_type::q4_0, f16)->Apply(with_rotation);
BENCHMARK_TEMPLATE(BM_quantize_ref, ggml_type::q8_0)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_quantize_ref, ggml_type::q4_0)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_quantize_ref, ggml_type::iq4_nl)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_hadamard, float)->Apply(kv_shapes);
BENCHMARK_TEMPLATE(BM_hadamard, f16)->Apply(kv_shapes);

}  // namespace
}  // namespace tokred::bench
