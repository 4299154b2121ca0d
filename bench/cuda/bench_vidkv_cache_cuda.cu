// bench/cuda/bench_vidkv_cache_cuda.cu — VidKV's streaming cache on CUDA (vidkv_append,
// vidkv_read) against one device-to-device cudaMemcpy moving the fp16 tokens and against the CPU
// backend (one share, this build's ISA) on the same cache.
//
// The cache: 4 kv heads × head_dim 128 (Qwen2-7B's, the LLM of LLaVA-OneVision-7B that VidKV
// evaluates), fp16, VidKV's paper setting — keys 1.5 bits (64 channels at 2 bits, 64 through the
// DFT), values 1.58 bits, groups of 32, a residual of 128 — with salient-token protection (every
// fifth position from 14, ⌊0.2·T/32⌋·32 − 32 of them, 2-bit values), at T = 4096 and 11 648
// tokens (16 frames × 729, whole groups).
//   prefill   an append of T tokens to an empty cache: keys and values quantized. Bytes = the
//             fp16 keys and values read; the memcpy baseline copies them once (so it moves twice
//             those bytes). Items = tokens.
//   step      one decode step as VidKV's `update` runs it: the read of everything held plus the
//             new token (VidKV dequantizes the whole cache at every step), then the append —
//             into the residual (flush 0: the cache holds T packed tokens and none in the
//             residual), or the flush that re-quantizes all T + R tokens (flush 1: T packed, R − 1
//             in the residual). Each timed step repeats the same calls on the same state (the
//             same work; its result is checked once, before timing). Items = steps.
//   read      the T packed tokens read back as fp16 keys and values. Bytes = the fp16 written.
// Prefill and read check their results after timing against the CPU backend: every byte of the
// cache, every value read.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"
#include "cuda/vidkv_device_cache.cuh"
#include "support/vidkv_buffers.hpp"

namespace tokred::bench {
namespace {

using testing::cache_buffers;
using testing::device_cache;

constexpr index_t kv_heads = 4, head_dim = 128;

vidkv paper_setting() { return vidkv{}; }  // 1.5 / 1.58 bits, G = 32, R = 128, 2-bit salient values

/// Values k/16 with k in [-127, 127] from a hash of the index, and a few wide channels (the
/// outlier channels VidKV quantizes at 2 bits).
std::vector<f16> token_values(index_t count, std::uint64_t salt) {
  std::vector<f16> x(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) {
    const auto k = static_cast<int>((static_cast<std::uint64_t>(i) + salt) * 2654435761ull % 255ull) - 127;
    const float wide = i % head_dim % 8 == 3 ? 8.0f : 1.0f;
    x[static_cast<std::size_t>(i)] = from_float<f16>(wide * static_cast<float>(k) / 16.0f);
  }
  return x;
}

/// VidKV's salient count for T visual tokens at ratio 0.2 (vidkv_salient_tokens), every fifth
/// position from 14.
std::vector<std::int64_t> salient_positions(index_t tokens) {
  const index_t listed = detail::vidkv_salient_top(0.2, tokens) - 32;
  std::vector<std::int64_t> out;
  for (index_t i = 0; i < listed; ++i) out.push_back(14 + 5 * i);
  return out;
}

/// The fp16 tokens of a stream ((kv_heads, T + R, head_dim) keys and values), a cache of
/// capacity T + R on the host, and the CPU backend's step buffers (allocated once).
struct vidkv_stream {
  vidkv config = paper_setting();
  index_t tokens;
  std::vector<f16> keys, values, seen_keys, seen_values;
  cache_buffers<f16> host;
  testing::host_workspace read_ws, append_ws;

  explicit vidkv_stream(index_t t)
      : tokens(t), keys(token_values(kv_heads * (t + config.residual) * head_dim, 1)),
        values(token_values(kv_heads * (t + config.residual) * head_dim, 7)),
        host(config, kv_heads, t + config.residual, head_dim, salient_positions(t), detail::vidkv_salient_top(0.2, t)),
        read_ws(workspace_bytes(cpu<>{}, vidkv_read{config}, host.storage)),
        append_ws(workspace_bytes(cpu<>{}, vidkv_append{config}, host.storage)) {}

  template <class Space = host_space>
  view<const f16, 3, Space> tokens_of(const f16* x, index_t first, index_t n) const {
    return token_range(view<const f16, 3, Space>(x, {kv_heads, tokens + config.residual, head_dim}), first, n);
  }
  /// The CPU backend's `update` of tokens [first, first + n) on a cache in `state`: the read into
  /// the step buffers, then the append that reads them; the host state advanced.
  bool host_step(vidkv_state state, index_t first, index_t n) {
    const index_t total = state.packed + state.residual + n;
    const std::size_t size = static_cast<std::size_t>(kv_heads * total * head_dim);
    if (seen_keys.size() != size) seen_keys.assign(size, f16{}), seen_values.assign(size, f16{});
    const view<f16, 3> sk(seen_keys.data(), {kv_heads, total, head_dim}), sv(seen_values.data(), {kv_heads, total, head_dim});
    const view<const f16, 3> k = tokens_of(keys.data(), first, n), v = tokens_of(values.data(), first, n);
    if (apply(cpu<>{}, vidkv_read{config}, vidkv_read_inputs<f16>{host.in(), state, k, v}, vidkv_read_outputs<f16>{sk, sv},
              read_ws.get()) != status::ok ||
        apply(cpu<>{}, vidkv_append{config}, vidkv_append_inputs<f16>{k, v, state, sk, sv}, host.out(),
              append_ws.get()) != status::ok)
      return false;
    host.state = vidkv_after(config, state, n);
    return true;
  }
  /// Bytes of n tokens' fp16 keys and values.
  static std::int64_t token_bytes(index_t n) { return 2 * kv_heads * n * head_dim * static_cast<std::int64_t>(sizeof(f16)); }
};

/// The stream's tokens, the cache and a step's read outputs on the device.
struct device_stream {
  const vidkv_stream& s;
  device_array<f16> keys, values, seen_keys, seen_values;
  device_cache<f16> cache;
  device_array<std::byte> ws;
  device_timer timer;

  device_stream(const vidkv_stream& stream, index_t seen_tokens)
      : s(stream), keys(s.keys), values(s.values),
        seen_keys(static_cast<std::size_t>(kv_heads * seen_tokens * head_dim)), seen_values(seen_keys.size()),
        cache(s.host), ws(workspace_bytes(tokred::cuda{}, vidkv_append{s.config}, s.host.storage)) {}

  bool ok() const { return keys.ok() && values.ok() && seen_keys.ok() && seen_values.ok() && ws.ok() && timer.ok(); }
  vidkv_read_outputs<f16, device_space> seen(index_t total) const {
    return {view<f16, 3, device_space>(seen_keys.get(), {kv_heads, total, head_dim}),
            view<f16, 3, device_space>(seen_values.get(), {kv_heads, total, head_dim})};
  }
  status read(vidkv_state state, index_t first, index_t n) const {
    return apply(tokred::cuda{timer.stream()}, vidkv_read{s.config},
                 vidkv_read_inputs<f16, device_space>{cache.in(), state, s.tokens_of<device_space>(keys.get(), first, n),
                                                      s.tokens_of<device_space>(values.get(), first, n)},
                 seen(state.packed + state.residual + n));
  }
  status append(vidkv_state state, index_t first, index_t n) const {
    const vidkv_read_outputs<f16, device_space> o = seen(state.packed + state.residual + n);
    return apply(tokred::cuda{timer.stream()}, vidkv_append{s.config},
                 vidkv_append_inputs<f16, device_space>{s.tokens_of<device_space>(keys.get(), first, n),
                                                        s.tokens_of<device_space>(values.get(), first, n), state, o.keys,
                                                        o.values},
                 cache.out(), workspace{ws.get(), ws.size()});
  }
  /// One `update`: the read, then the append that reads it.
  bool step(vidkv_state state, index_t first, index_t n) const {
    return read(state, first, n) == status::ok && append(state, first, n) == status::ok;
  }
};

void count(benchmark::State& state, std::int64_t bytes, std::int64_t items) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

void token_counts(benchmark::internal::Benchmark* b) { b->Arg(4096)->Arg(11648)->ArgName("tokens"); }

// ---------------------------------------------------------------------------------------------
// Prefill.

/// One device-to-device copy of the prefill's fp16 keys and values.
void BM_cuda_memcpy_tokens(benchmark::State& state) {
  if (!have_device(state)) return;
  const std::int64_t bytes = vidkv_stream::token_bytes(state.range(0));
  if (time_copy(state, static_cast<std::size_t>(bytes))) count(state, bytes, state.range(0));
}

void BM_cuda_prefill(benchmark::State& state) {
  if (!have_device(state)) return;
  vidkv_stream s(state.range(0));
  device_stream d(s, 0);
  if (!d.ok()) return state.SkipWithError("device setup failed");
  if (!time_iterations(state, d.timer, [&] { return d.append({}, 0, s.tokens) == status::ok; })) return;
  if (!s.host_step({}, 0, s.tokens) || !(d.cache.download(s.host.state) == s.host))
    return state.SkipWithError("the device cache differs from the CPU backend's");
  count(state, vidkv_stream::token_bytes(s.tokens), s.tokens);
}

/// The CPU backend's prefill of the same tokens: what the CUDA path replaces.
void BM_cpu_prefill(benchmark::State& state) {
  vidkv_stream s(state.range(0));
  for (auto _ : state) {
    if (!s.host_step({}, 0, s.tokens)) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, vidkv_stream::token_bytes(s.tokens), s.tokens);
}

// ---------------------------------------------------------------------------------------------
// Decode steps.

/// Args: tokens T, flush (0: T packed, an empty residual; 1: T packed, R − 1 in the residual,
/// so the step re-quantizes all T + R).
void step_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{4096, 11648}, {0, 1}})->ArgNames({"tokens", "flush"});
}

/// A stream prefilled by the CPU backend with T tokens, then R − 1 single steps when `flush`.
struct prefilled_stream {
  vidkv_stream s;
  bool ok = false;
};

/// The case's prefilled stream, built once per case (built_once): the R − 1 steps of a flush
/// case each read the whole cache, seconds in all. Each call steps a copy.
const prefilled_stream& prefilled(const benchmark::State& state) {
  return built_once<prefilled_stream>({state.range(0), state.range(1)}, [&] {
    prefilled_stream p{vidkv_stream(state.range(0))};
    p.ok = p.s.host_step({}, 0, p.s.tokens);
    if (state.range(1) != 0)
      for (index_t t = 0; p.ok && t + 1 < p.s.config.residual; ++t) p.ok = p.s.host_step(p.s.host.state, p.s.tokens + t, 1);
    return p;
  });
}

void BM_cuda_decode_step(benchmark::State& state) {
  if (!have_device(state)) return;
  const prefilled_stream& p = prefilled(state);
  if (!p.ok) return state.SkipWithError("the CPU prefill failed");
  vidkv_stream s = p.s;
  const vidkv_state held = s.host.state;
  const index_t next = held.packed + held.residual;
  device_stream d(s, next + 1);
  if (!d.ok()) return state.SkipWithError("device setup failed");
  // The step once, checked against the CPU backend's; the timed steps repeat its calls.
  if (!d.step(held, next, 1) || cudaStreamSynchronize(d.timer.stream()) != cudaSuccess || !s.host_step(held, next, 1) ||
      !(d.cache.download(s.host.state) == s.host))
    return state.SkipWithError("the step differs from the CPU backend's");
  if (!time_iterations(state, d.timer, [&] { return d.step(held, next, 1); })) return;
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_cpu_decode_step(benchmark::State& state) {
  const prefilled_stream& p = prefilled(state);
  if (!p.ok) return state.SkipWithError("the CPU prefill failed");
  vidkv_stream s = p.s;
  const vidkv_state held = s.host.state;
  const index_t next = held.packed + held.residual;
  for (auto _ : state) {
    if (!s.host_step(held, next, 1)) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// ---------------------------------------------------------------------------------------------
// Read.

/// The cache holding T packed tokens read back as fp16 keys and values (no incoming tokens).
void BM_cuda_read(benchmark::State& state) {
  if (!have_device(state)) return;
  vidkv_stream s(state.range(0));
  if (!s.host_step({}, 0, s.tokens)) return state.SkipWithError("the CPU prefill failed");
  device_stream d(s, s.tokens);
  if (!d.ok()) return state.SkipWithError("device setup failed");
  if (!time_iterations(state, d.timer, [&] { return d.read(s.host.state, 0, 0) == status::ok; })) return;
  std::vector<f16> keys, values;
  if (s.host.read({}, {}, keys, values) != status::ok) return state.SkipWithError("the CPU read failed");
  const std::vector<f16> got_keys = d.seen_keys.download(), got_values = d.seen_values.download();
  if (got_keys.size() != keys.size() || got_values.size() != values.size() ||
      std::memcmp(got_keys.data(), keys.data(), keys.size() * 2) != 0 ||
      std::memcmp(got_values.data(), values.data(), values.size() * 2) != 0)
    return state.SkipWithError("the values read differ from the CPU backend's");
  count(state, vidkv_stream::token_bytes(s.tokens), s.tokens);
}

void BM_cpu_read(benchmark::State& state) {
  vidkv_stream s(state.range(0));
  if (!s.host_step({}, 0, s.tokens)) return state.SkipWithError("the CPU prefill failed");
  std::vector<f16> keys, values;
  for (auto _ : state) {
    if (s.host.read({}, {}, keys, values) != status::ok) return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, vidkv_stream::token_bytes(s.tokens), s.tokens);
}

BENCHMARK(BM_cuda_memcpy_tokens)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cuda_prefill)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cpu_prefill)->Apply(token_counts)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cuda_decode_step)->Apply(step_shapes)->UseManualTime();
BENCHMARK(BM_cpu_decode_step)->Apply(step_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cuda_read)->Apply(token_counts)->UseManualTime();
BENCHMARK(BM_cpu_read)->Apply(token_counts)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
