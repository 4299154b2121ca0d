// bench/cuda/bench_kivi_cuda.cu — KIVI's streaming cache on CUDA (kivi_append, kivi_read)
// against one device-to-device cudaMemcpy moving the same bytes and against the CPU backend (one
// share, this build's ISA) on the same cache.
//
// The cache: 8 kv heads × head_dim 128 (Llama-3-8B's), fp16, KIVI's paper setting — 2-bit keys
// and values, groups of 32, a residual of 128 — at 4096 and 16 384 tokens.
//   prefill   an append of T tokens to an empty cache. Bytes = the fp16 keys and values read +
//             the packed groups and residual rows written; the memcpy baseline copies half of
//             that sum, so its bytes_per_second compare directly. Items = tokens.
//   decode    one token appended to a cache holding T (no key flush: one value token packs) or
//             T + R − 1 (the step that flushes R keys): what one generated token costs. Each
//             timed step repeats the same append, the same work (its result is checked once,
//             before timing, against the CPU backend's). Items = steps.
//   read      the T tokens back as fp16 keys and values. Bytes = packed + residual read + fp16
//             written.
// Each prefill and read checks its result after timing against the CPU backend: every byte of
// the cache, every value read.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"
#include "support/kivi_buffers.hpp"

namespace tokred::bench {
namespace {

using testing::kivi_buffers;

constexpr index_t kv_heads = 8, head_dim = 128;

constexpr kivi paper_setting() { return kivi{2, 2, 32, 128, false}; }

/// Values k/16 with k in [-127, 127] from a hash of the index: exact in fp16, with the spread of
/// real keys between groups.
std::vector<f16> cache_values(index_t count, std::uint64_t salt) {
  std::vector<f16> x(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) {
    const auto k = static_cast<int>((static_cast<std::uint64_t>(i) + salt) * 2654435761ull % 255ull) - 127;
    x[static_cast<std::size_t>(i)] = from_float<f16>(static_cast<float>(k) / 16.0f);
  }
  return x;
}

/// The fp16 tokens of a stream (keys, values: (kv_heads, T + R, head_dim) each) and a KIVI cache
/// of capacity T on the host.
struct kivi_stream {
  kivi config = paper_setting();
  index_t tokens;
  std::vector<f16> keys, values;
  kivi_buffers<f16> host;

  explicit kivi_stream(index_t t)
      : tokens(t), keys(cache_values(kv_heads * (t + config.residual) * head_dim, 1)),
        values(cache_values(kv_heads * (t + config.residual) * head_dim, 7)), host(config, kv_heads, t, head_dim) {}

  /// Tokens [first, first + n) of the stream, appended to a cache holding `first`.
  template <class Space = host_space>
  kivi_append_inputs<f16, Space> tokens_at(const f16* k, const f16* v, index_t first, index_t n) const {
    const index_t all = tokens + config.residual;
    return {token_range(view<const f16, 3, Space>(k, {kv_heads, all, head_dim}), first, n),
            token_range(view<const f16, 3, Space>(v, {kv_heads, all, head_dim}), first, n), first};
  }
  kivi_append_inputs<f16> host_tokens(index_t first, index_t n) const {
    return tokens_at(keys.data(), values.data(), first, n);
  }
  /// The CPU backend's append of tokens [first, first + n).
  bool host_append(index_t first, index_t n) {
    return apply(cpu<>{}, kivi_append{config}, host_tokens(first, n), host.out()) == status::ok;
  }
  /// Bytes of the packed cache and both residuals.
  std::int64_t cache_bytes() const {
    return static_cast<std::int64_t>((host.key_codes.size() + host.value_codes.size()) * 4 +
                                     (host.key_scale.size() + host.key_zero.size() + host.key_residual.size() +
                                      host.value_scale.size() + host.value_zero.size() + host.value_residual.size()) *
                                         sizeof(f16));
  }
  /// Bytes of n tokens' fp16 keys and values.
  static std::int64_t token_bytes(index_t n) { return 2 * kv_heads * n * head_dim * static_cast<std::int64_t>(sizeof(f16)); }
};

/// The stream's tokens and cache on the device.
struct device_stream {
  const kivi_stream& s;
  device_array<f16> keys, values;
  device_array<std::uint32_t> key_codes, value_codes;
  device_array<f16> key_scale, key_zero, key_residual, value_scale, value_zero, value_residual;
  device_timer timer;

  explicit device_stream(const kivi_stream& stream)
      : s(stream), keys(s.keys), values(s.values), key_codes(s.host.key_codes), value_codes(s.host.value_codes),
        key_scale(s.host.key_scale), key_zero(s.host.key_zero), key_residual(s.host.key_residual),
        value_scale(s.host.value_scale), value_zero(s.host.value_zero), value_residual(s.host.value_residual) {}

  bool ok() const {
    return keys.ok() && values.ok() && key_codes.ok() && value_codes.ok() && key_scale.ok() && key_zero.ok() &&
           key_residual.ok() && value_scale.ok() && value_zero.ok() && value_residual.ok() && timer.ok();
  }
  kivi_append_inputs<f16, device_space> tokens(index_t first, index_t n) const {
    return s.tokens_at<device_space>(keys.get(), values.get(), first, n);
  }
  kivi_cache<f16, device_space> cache() const {
    return s.host.views<device_space>(key_codes.get(), value_codes.get(), key_scale.get(), key_zero.get(),
                                      key_residual.get(), value_scale.get(), value_zero.get(), value_residual.get());
  }
  status append(index_t first, index_t n) {
    return apply(tokred::cuda{timer.stream()}, kivi_append{s.config}, tokens(first, n), cache());
  }
  /// Copies the host cache to the device and waits for it.
  bool upload() const {
    const auto put = [](const auto& d, const auto& h) {
      return cudaMemcpy(d.get(), h.data(), h.size() * sizeof(h[0]), cudaMemcpyHostToDevice) == cudaSuccess;
    };
    const kivi_buffers<f16>& h = s.host;
    return put(key_codes, h.key_codes) && put(value_codes, h.value_codes) && put(key_scale, h.key_scale) &&
           put(key_zero, h.key_zero) && put(key_residual, h.key_residual) && put(value_scale, h.value_scale) &&
           put(value_zero, h.value_zero) && put(value_residual, h.value_residual) && cudaDeviceSynchronize() == cudaSuccess;
  }
  /// Every byte of the device cache equals the host cache's.
  bool matches() const {
    const auto same = [](const auto& d, const auto& h) {
      const auto got = d.download();
      return got.size() == h.size() && std::memcmp(got.data(), h.data(), h.size() * sizeof(h[0])) == 0;
    };
    const kivi_buffers<f16>& h = s.host;
    return same(key_codes, h.key_codes) && same(value_codes, h.value_codes) && same(key_scale, h.key_scale) &&
           same(key_zero, h.key_zero) && same(key_residual, h.key_residual) && same(value_scale, h.value_scale) &&
           same(value_zero, h.value_zero) && same(value_residual, h.value_residual);
  }
};

void count(benchmark::State& state, std::int64_t bytes, std::int64_t items) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

void token_counts(benchmark::internal::Benchmark* b) { b->Arg(4096)->Arg(16384)->ArgName("tokens"); }

// ---------------------------------------------------------------------------------------------
// Prefill.

/// One device-to-device copy that reads and writes as many bytes as the prefill.
void BM_cuda_memcpy_same_bytes(benchmark::State& state) {
  if (!have_device(state)) return;
  const kivi_stream s(state.range(0));
  const std::int64_t bytes = kivi_stream::token_bytes(s.tokens) + s.cache_bytes();
  if (time_copy(state, static_cast<std::size_t>(bytes / 2))) count(state, bytes, s.tokens);
}

void BM_cuda_prefill(benchmark::State& state) {
  if (!have_device(state)) return;
  kivi_stream s(state.range(0));
  device_stream d(s);
  if (!d.ok()) return state.SkipWithError("device setup failed");
  if (!time_iterations(state, d.timer, [&] { return d.append(0, s.tokens) == status::ok; })) return;
  if (!s.host_append(0, s.tokens) || !d.matches())
    return state.SkipWithError("the device cache differs from the CPU backend's");
  count(state, kivi_stream::token_bytes(s.tokens) + s.cache_bytes(), s.tokens);
}

/// The CPU backend's prefill of the same tokens: what the CUDA path replaces.
void BM_cpu_prefill(benchmark::State& state) {
  kivi_stream s(state.range(0));
  for (auto _ : state) {
    if (!s.host_append(0, s.tokens)) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, kivi_stream::token_bytes(s.tokens) + s.cache_bytes(), s.tokens);
}

// ---------------------------------------------------------------------------------------------
// Decode steps.

/// Args: tokens T, flush (0: the step appended at T, which packs one value token; 1: the step
/// appended at T − 1, which also flushes the last R keys).
void step_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{4096, 16384}, {0, 1}})->ArgNames({"tokens", "flush"});
}

index_t step_at(const kivi_stream& s, const benchmark::State& state) {
  return state.range(1) != 0 ? s.tokens - 1 : s.tokens;
}

void BM_cuda_decode_step(benchmark::State& state) {
  if (!have_device(state)) return;
  kivi_stream s(state.range(0));
  const index_t held = step_at(s, state);
  if (!s.host_append(0, held)) return state.SkipWithError("the CPU prefill failed");
  device_stream d(s);
  if (!d.ok() || !d.upload()) return state.SkipWithError("device setup failed");
  // The step once, checked against the CPU backend's; the timed steps repeat it (same work).
  if (d.append(held, 1) != status::ok || cudaStreamSynchronize(d.timer.stream()) != cudaSuccess ||
      !s.host_append(held, 1) || !d.matches())
    return state.SkipWithError("the step differs from the CPU backend's");
  if (!time_iterations(state, d.timer, [&] { return d.append(held, 1) == status::ok; })) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_cpu_decode_step(benchmark::State& state) {
  kivi_stream s(state.range(0));
  const index_t held = step_at(s, state);
  if (!s.host_append(0, held)) return state.SkipWithError("the CPU prefill failed");
  for (auto _ : state) {
    if (!s.host_append(held, 1)) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// ---------------------------------------------------------------------------------------------
// Read.

/// The cache holding T tokens (keys all packed, the last R values in the ring), and fp16
/// outputs (kv_heads, T, head_dim) on host and device.
void BM_cuda_read(benchmark::State& state) {
  if (!have_device(state)) return;
  kivi_stream s(state.range(0));
  if (!s.host_append(0, s.tokens)) return state.SkipWithError("the CPU prefill failed");
  device_stream d(s);
  const std::size_t n = static_cast<std::size_t>(kv_heads * s.tokens * head_dim);
  device_array<f16> out_keys(n), out_values(n);
  if (!d.ok() || !d.upload() || !out_keys.ok() || !out_values.ok()) return state.SkipWithError("device setup failed");
  const kivi_read_inputs<f16, device_space> in{read_only(d.cache()), s.tokens};
  const kivi_read_outputs<f16, device_space> out{view<f16, 3, device_space>(out_keys.get(), {kv_heads, s.tokens, head_dim}),
                                                 view<f16, 3, device_space>(out_values.get(), {kv_heads, s.tokens, head_dim})};
  if (!time_iterations(state, d.timer, [&] {
        return apply(tokred::cuda{d.timer.stream()}, kivi_read{s.config}, in, out) == status::ok;
      }))
    return;
  std::vector<f16> keys, values;
  if (s.host.read(s.tokens, keys, values) != status::ok) return state.SkipWithError("the CPU read failed");
  const std::vector<f16> got_keys = out_keys.download(), got_values = out_values.download();
  if (got_keys.size() != n || got_values.size() != n || std::memcmp(got_keys.data(), keys.data(), n * 2) != 0 ||
      std::memcmp(got_values.data(), values.data(), n * 2) != 0)
    return state.SkipWithError("the values read differ from the CPU backend's");
  count(state, kivi_stream::token_bytes(s.tokens) + s.cache_bytes(), s.tokens);
}

void BM_cpu_read(benchmark::State& state) {
  kivi_stream s(state.range(0));
  if (!s.host_append(0, s.tokens)) return state.SkipWithError("the CPU prefill failed");
  std::vector<f16> keys, values;
  for (auto _ : state) {
    if (s.host.read(s.tokens, keys, values) != status::ok) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, kivi_stream::token_bytes(s.tokens) + s.cache_bytes(), s.tokens);
}

BENCHMARK(BM_cuda_memcpy_same_bytes)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cuda_prefill)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cpu_prefill)->Apply(token_counts)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cuda_decode_step)->Apply(step_shapes)->UseManualTime();
BENCHMARK(BM_cpu_decode_step)->Apply(step_shapes);
BENCHMARK(BM_cuda_read)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cpu_read)->Apply(token_counts)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
