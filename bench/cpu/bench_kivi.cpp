// bench/cpu/bench_kivi.cpp — KIVI's streaming cache on CPU (kivi_append): what one generated
// token costs, against a memcpy of that token's keys and values (the least an append that stores
// them can do) and the scalar oracle quantizing the same values.
//
// The cache: 8 kv heads × head_dim 128 (Llama-3-8B's), fp16 or fp32, KIVI's paper setting — 2-bit
// keys and values, groups of 32, a residual of 128 — holding T = 4096 tokens (capacity T).
//   step     one token appended at T (no key flush: the oldest value token in the window is
//            quantized, the new token stored) or at T − 1 (the step that also flushes R keys);
//            each timed step repeats the same append, the same work
//   prefill  an append of all T tokens to an empty cache
// Items = tokens appended. The scalar oracle (tests/reference/uniform_quant_ref.hpp) quantizes
// and dequantizes the step's value token (fp32) one value at a time.
#include <cstdint>
#include <cstring>
#include <vector>

#include "bench_data.hpp"

#include "reference/uniform_quant_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t heads = 8, head_dim = 128, held = 4096;

constexpr kivi paper_setting() { return kivi{2, 2, 32, 128, false}; }

/// A KIVI cache of capacity `held` in cache-line-aligned buffers, and the stream of keys and
/// values (heads, held + R, head_dim) appended to it (the same numbers for both).
template <class E>
struct kivi_stream {
  kivi config = paper_setting();
  aligned_buffer<std::uint32_t> key_codes, value_codes;
  aligned_buffer<E> key_scale, key_zero, key_residual, value_scale, value_zero, value_residual;
  const aligned_buffer<E>& keys;  // the values are the same numbers
  kivi_cache<E> cache;

  kivi_stream() : keys(kv_values<E>(heads, held + paper_setting().residual, head_dim)) {
    const kv_problem storage{heads, held, head_dim};
    const auto extents = [&](const kv_extents& e, auto& buffer) {
      buffer.resize(static_cast<std::size_t>(e.heads * e.rows * e.cols));
      return make_view(buffer.data(), e.heads, e.rows, e.cols);
    };
    const uniform_format kf = kivi_key_format(config), vf = kivi_value_format(config);
    cache.keys = {extents(uniform_code_extents(kf, storage), key_codes), extents(uniform_param_extents(kf, storage), key_scale),
                  extents(uniform_param_extents(kf, storage), key_zero)};
    cache.values = {extents(uniform_code_extents(vf, storage), value_codes),
                    extents(uniform_param_extents(vf, storage), value_scale),
                    extents(uniform_param_extents(vf, storage), value_zero)};
    cache.key_residual = extents(kv_extents{heads, config.residual, head_dim}, key_residual);
    cache.value_residual = extents(kv_extents{heads, config.residual, head_dim}, value_residual);
  }
  /// Tokens [first, first + n) of the stream, appended to a cache holding `first`.
  kivi_append_inputs<E> tokens(index_t first, index_t n) const {
    const index_t all = held + config.residual;
    return {token_range(make_view(keys.data(), heads, all, head_dim), first, n),
            token_range(make_view(keys.data(), heads, all, head_dim), first, n), first};
  }
  bool append(index_t first, index_t n) const {
    return apply(cpu<>{}, kivi_append{config}, tokens(first, n), cache) == status::ok;
  }
};

/// Args: flush (0: the step at T, 1: the step at T − 1, which flushes R keys).
template <class E>
void BM_step(benchmark::State& state) {
  const kivi_stream<E> s;
  const index_t at = state.range(0) != 0 ? held - 1 : held;
  if (!s.append(0, at)) return state.SkipWithError("the prefill failed");
  for (auto _ : state) {
    if (!s.append(at, 1)) return state.SkipWithError("the step failed");
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

/// A memcpy of one token's keys and values (each head's row of head_dim elements).
template <class E>
void BM_memcpy_token(benchmark::State& state) {
  const kivi_stream<E> s;
  aligned_buffer<E> to(static_cast<std::size_t>(2 * heads * head_dim));
  const std::size_t row = static_cast<std::size_t>(head_dim) * sizeof(E);
  for (auto _ : state) {
    for (index_t h = 0; h < heads; ++h) {
      std::memcpy(to.data() + 2 * h * head_dim, &s.tokens(held, 1).keys(h, 0, 0), row);
      std::memcpy(to.data() + (2 * h + 1) * head_dim, &s.tokens(held, 1).values(h, 0, 0), row);
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

/// The scalar oracle on the step's value token: quantize and dequantize each value (fp32).
void BM_step_value_ref(benchmark::State& state) {
  const aligned_buffer<float>& x = kv_values<float>(heads, 1, head_dim);
  for (auto _ : state) {
    const ref::uniform_result r = ref::uniform_roundtrip<float>(
        kivi_value_format(paper_setting()), false, false, heads, 1, head_dim,
        [&](index_t h, index_t, index_t c) { return x[static_cast<std::size_t>(h * head_dim + c)]; });
    benchmark::DoNotOptimize(r.values.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

template <class E>
void BM_prefill(benchmark::State& state) {
  const kivi_stream<E> s;
  for (auto _ : state) {
    if (!s.append(0, held)) return state.SkipWithError("the prefill failed");
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * held);
}

BENCHMARK_TEMPLATE(BM_memcpy_token, f16);
BENCHMARK_TEMPLATE(BM_step, f16)->Arg(0)->Arg(1)->ArgName("flush");
BENCHMARK_TEMPLATE(BM_step, float)->Arg(0)->Arg(1)->ArgName("flush");
BENCHMARK(BM_step_value_ref);
BENCHMARK_TEMPLATE(BM_prefill, f16)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
