// bench/cpu/bench_vidkv.cpp — VidKV's mixed-precision keys (difficult channels at 2 bits, the
// rest through a DFT at 1 bit) against a memcpy of the cache (the bandwidth bound), the 2-bit
// per-channel quantizer it falls back to (bits = 2: no DFT) and the scalar oracle of
// tests/reference/vidkv_ref.hpp; and attention logits from the packed keys (vidkv_key_scores)
// against the same logits from fp16 keys (every key in the residual: the canonical dot product,
// bits100 = 1600 in the arguments), 32 query heads. Items are logits there.
//
// Shape: (heads, tokens, head_dim) = (8, tokens, 128), contiguous. bits×100 in the arguments:
// 100 (every channel through the DFT, n = 128), 150 (VidKV's 1.5: 64 and 64), 200 (2-bit
// per channel). Items are key values.
#include <algorithm>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/vidkv.hpp>
#include <tokred/cpu/vidkv_scores.hpp>

#include "reference/vidkv_ref.hpp"

namespace tokred::bench {
namespace {

double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

constexpr index_t heads = 8, head_dim = 128;

/// Packed keys of (heads, tokens, head_dim).
template <class E>
struct packed_keys {
  std::vector<std::int64_t> channels;
  aligned_buffer<std::uint32_t> dcodes, scodes;
  aligned_buffer<E> dscale, dzero, sscale;
  vidkv_packed_keys<E> views;

  packed_keys(const vidkv_keys& k, index_t tokens) : channels(head_dim) {
    const vidkv_key_extents x = vidkv_packed_key_extents(k, {heads, tokens, head_dim});
    const auto size = [](const kv_extents& e) { return static_cast<std::size_t>(e.heads * e.rows * e.cols); };
    const auto at = [](auto& v, const kv_extents& e) { return make_view(v.data(), e.heads, e.rows, e.cols); };
    dcodes.resize(size(x.difficult_codes));
    scodes.resize(size(x.spectral_codes));
    dscale.resize(size(x.difficult_params));
    dzero.resize(dscale.size());
    sscale.resize(size(x.spectral_params));
    views = {make_view(channels.data(), head_dim),
             {at(dcodes, x.difficult_codes), at(dscale, x.difficult_params), at(dzero, x.difficult_params)},
             {at(scodes, x.spectral_codes), at(sscale, x.spectral_params), {}}};
  }
};

vidkv_keys keys_of(const benchmark::State& state) {
  return {static_cast<double>(state.range(1)) / 100.0, true, 32, false};
}

template <class E>
void BM_memcpy_cache(benchmark::State& state) {
  time_memcpy(state, kv_values<E>(heads, state.range(0), head_dim));
}

template <class E>
void BM_key_quantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const vidkv_keys k = keys_of(state);
  const aligned_buffer<E>& x = kv_values<E>(heads, tokens, head_dim);
  packed_keys<E> out(k, tokens);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, kv_problem{heads, tokens, head_dim}));
  if (!time_apply(state, vidkv_key_quantize{k}, kv_inputs<E>{make_view(x.data(), heads, tokens, head_dim)}, out.views,
                  workspace{ws.data(), ws.size()}))
    return;
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(E)), static_cast<std::int64_t>(x.size()));
}

template <class E>
void BM_key_dequantize(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const vidkv_keys k = keys_of(state);
  const aligned_buffer<E>& x = kv_values<E>(heads, tokens, head_dim);
  packed_keys<E> in(k, tokens);
  const kv_problem p{heads, tokens, head_dim};
  std::vector<std::byte> ws(std::max(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, p),
                                     workspace_bytes(cpu<>{}, vidkv_key_dequantize{k}, p)));
  if (apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<E>{make_view(x.data(), heads, tokens, head_dim)}, in.views,
            workspace{ws.data(), ws.size()}) != status::ok)
    return state.SkipWithError("quantize failed");
  aligned_buffer<E> y(x.size());
  if (!time_apply(state, vidkv_key_dequantize{k}, read_only(in.views),
                  kv_outputs<E>{make_view(y.data(), heads, tokens, head_dim)}, workspace{ws.data(), ws.size()}))
    return;
  count_per_iteration(state, static_cast<std::int64_t>(y.size() * sizeof(E)), static_cast<std::int64_t>(y.size()));
}

/// The scalar oracle: rank, DFT one token at a time in double, the uniform oracle, inverse DFT.
void BM_key_roundtrip_ref(benchmark::State& state) {
  const index_t tokens = state.range(0);
  const vidkv_keys k = keys_of(state);
  const aligned_buffer<float>& x = kv_values<float>(heads, tokens, head_dim);
  ref::tensor3 t(heads, tokens, head_dim);
  t.v.assign(x.begin(), x.end());
  for (auto _ : state) {
    const ref::key_result r = ref::key_roundtrip<float>(k, t, false);
    benchmark::DoNotOptimize(r.values.v.data());
  }
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(float)), static_cast<std::int64_t>(x.size()));
}

/// Logits of 32 query heads (GQA over the 8 kv heads) against `tokens` keys, packed at
/// bits100/100 or, for 1600, all fp16 in the residual.
void BM_key_scores(benchmark::State& state) {
  constexpr index_t q_heads = 32;
  const index_t tokens = state.range(0);
  const bool fp16 = state.range(1) == 1600;
  const vidkv_keys k = fp16 ? vidkv_keys{} : keys_of(state);
  const index_t packed = fp16 ? 0 : tokens;
  const aligned_buffer<f16>& x = kv_values<f16>(heads, tokens, head_dim);
  const view<const f16, 3> all = make_view(x.data(), heads, tokens, head_dim);
  packed_keys<f16> keys(k, packed);
  const kv_problem p{heads, packed, head_dim};
  std::vector<std::byte> ws(std::max(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, p),
                                     workspace_bytes(cpu<>{}, vidkv_key_scores{k}, p)));
  if (packed > 0 && apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<f16>{all}, keys.views,
                          workspace{ws.data(), ws.size()}) != status::ok)
    return state.SkipWithError("quantize failed");
  const std::vector<f16> queries(static_cast<std::size_t>(q_heads * head_dim), from_float<f16>(0.25f));
  std::vector<float> scores(static_cast<std::size_t>(q_heads * tokens));
  const vidkv_score_inputs<f16> in{make_view(queries.data(), q_heads, head_dim), read_only(keys.views),
                                   token_range(all, packed, tokens - packed)};
  if (!time_apply(state, vidkv_key_scores{k}, in, packed_score_outputs<>{make_view(scores.data(), q_heads, tokens)},
                  workspace{ws.data(), ws.size()}))
    return;
  count_per_iteration(state, static_cast<std::int64_t>(x.size() * sizeof(f16)), static_cast<std::int64_t>(q_heads * tokens));
}

void memcpy_shapes(benchmark::internal::Benchmark* b) {
  b->Arg(4096)->ArgName("tokens")->MinTime(0.1)->ComputeStatistics("min", fastest);
}
void key_shapes(benchmark::internal::Benchmark* b) {
  for (int bits : {100, 150, 200}) b->Args({4096, bits});
  b->ArgNames({"tokens", "bits100"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}
void ref_shapes(benchmark::internal::Benchmark* b) {
  b->Args({256, 150})->ArgNames({"tokens", "bits100"})->MinTime(0.1)->ComputeStatistics("min", fastest);
}

BENCHMARK_TEMPLATE(BM_memcpy_cache, f16)->Apply(memcpy_shapes);
BENCHMARK_TEMPLATE(BM_key_quantize, f16)->Apply(key_shapes);
BENCHMARK_TEMPLATE(BM_key_quantize, float)->Apply(key_shapes);
BENCHMARK_TEMPLATE(BM_key_dequantize, f16)->Apply(key_shapes);
BENCHMARK_TEMPLATE(BM_key_dequantize, float)->Apply(key_shapes);
BENCHMARK(BM_key_roundtrip_ref)->Apply(ref_shapes);
BENCHMARK(BM_key_scores)->Apply([](benchmark::internal::Benchmark* b) {
  for (int bits : {1600, 100, 150, 200}) b->Args({4096, bits});
  b->ArgNames({"tokens", "bits100"})->MinTime(0.1)->ComputeStatistics("min", fastest);
});

}  // namespace
}  // namespace tokred::bench
