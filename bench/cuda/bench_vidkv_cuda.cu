// bench/cuda/bench_vidkv_cuda.cu — VidKV's key quantizer, dequantizer and logits on CUDA against one
// device-to-device cudaMemcpy of the fp16 keys and against the CPU backend (one share, this
// build's ISA) on the same chunk.
//
// Chunks (28 heads, 4096 or 11 648 tokens, 128) of fp16 keys — Qwen2-7B's 28 × 128 channels, 16
// frames × 729 tokens rounded down to whole groups of 32 — at VidKV's 1.5 bits (64 channels at
// 2 bits, 64 through the DFT) and at 1 bit (all 128 through the DFT), groups of 32. Bytes = the
// fp16 keys (read by quantize, written by dequantize); the memcpy baseline copies them once, so it
// moves twice those bytes: read its bytes_per_second as the bound for a kernel that reads or
// writes the keys once. Items = key values. Scores: one query per kv head (28) against every
// packed key; items = logits. Each benchmark checks its result once after timing against the
// CPU backend: packed keys byte for byte, dequantized keys bit for bit, logits within 1e-4 of the
// largest.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
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

using testing::device_keys;
using testing::key_buffers;

constexpr index_t heads = 28, head_dim = 128;

/// Keys k/16 with k in [-127, 127] from a hash of the index, and a few wide channels (the
/// outlier channels VidKV quantizes at 2 bits).
std::vector<f16> chunk_values(index_t tokens) {
  std::vector<f16> x(static_cast<std::size_t>(heads * tokens * head_dim));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto k = static_cast<int>(static_cast<std::uint64_t>(i) * 2654435761ull % 255ull) - 127;
    const float wide = i % head_dim % 8 == 3 ? 8.0f : 1.0f;
    x[i] = from_float<f16>(wide * static_cast<float>(k) / 16.0f);
  }
  return x;
}

/// Args: tokens, bits ×100 (150: VidKV's 1.5, 100: every channel through the DFT).
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{4096, 11648}, {150, 100}})->ArgNames({"tokens", "bits100"});
}

/// A chunk and its packed keys from the CPU backend.
struct key_case {
  vidkv_keys keys;
  kv_problem p;
  std::vector<f16> chunk;
  key_buffers<f16> packed;
  bool cpu_ok = false;

  explicit key_case(const benchmark::State& s)
      : keys{static_cast<double>(s.range(1)) / 100.0, true, 32, false}, p{heads, s.range(0), head_dim},
        chunk(chunk_values(p.tokens)), packed(keys, p) {
    cpu_ok = testing::quantize_keys(keys, host_chunk(), packed) == status::ok;
  }
  view<const f16, 3> host_chunk() const { return {chunk.data(), {p.heads, p.tokens, p.head_dim}}; }
  std::int64_t key_bytes() const { return p.heads * p.tokens * p.head_dim * 2; }
};

/// The case's key_case, built once per case (built_once): its CPU quantization takes seconds.
const key_case& case_of(const benchmark::State& state) {
  return built_once<key_case>({state.range(0), state.range(1)}, [&] { return key_case(state); });
}

void count(benchmark::State& state, const key_case& c) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * c.key_bytes());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * c.key_bytes() / 2);
}

/// One device-to-device copy of the fp16 keys.
void BM_cuda_memcpy_keys(benchmark::State& state) {
  if (!have_device(state)) return;
  const std::int64_t bytes = heads * state.range(0) * head_dim * 2;
  if (time_copy(state, static_cast<std::size_t>(bytes))) {
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * bytes / 2);
  }
}

void BM_cuda_quantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const key_case& c = case_of(state);
  const device_array<f16> chunk(c.chunk);
  const key_buffers<f16> sentinels(c.keys, c.p);
  const device_keys<f16> dev(sentinels);
  device_array<std::byte> ws(workspace_bytes(tokred::cuda{}, vidkv_key_quantize{c.keys}, c.p));
  device_timer timer;
  if (!c.cpu_ok || !chunk.ok() || !ws.ok() || !timer.ok()) return state.SkipWithError("setup failed");
  const kv_inputs<f16, device_space> in{view<const f16, 3, device_space>(chunk.get(), {c.p.heads, c.p.tokens, c.p.head_dim})};
  const vidkv_packed_keys<f16, device_space> out = dev.out();
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, vidkv_key_quantize{c.keys}, in, out,
                     workspace{ws.get(), ws.size()}) == status::ok;
      }))
    return;
  if (!(dev.download() == c.packed)) return state.SkipWithError("the packed keys differ from the CPU backend's");
  count(state, c);
}

void BM_cuda_dequantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const key_case& c = case_of(state);
  const device_keys<f16> dev(c.packed);
  device_array<f16> y(c.chunk.size());
  device_timer timer;
  if (!c.cpu_ok || !y.ok() || !timer.ok()) return state.SkipWithError("setup failed");
  const vidkv_packed_keys<f16, device_space> packed = dev.out();
  const kv_outputs<f16, device_space> out{view<f16, 3, device_space>(y.get(), {c.p.heads, c.p.tokens, c.p.head_dim})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, vidkv_key_dequantize{c.keys}, read_only(packed), out) == status::ok;
      }))
    return;
  std::vector<f16> want(c.chunk.size());
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_dequantize{c.keys}, c.p));
  const status s = apply(cpu<>{}, vidkv_key_dequantize{c.keys}, c.packed.in(),
                         kv_outputs<f16>{view<f16, 3>(want.data(), {c.p.heads, c.p.tokens, c.p.head_dim})},
                         workspace{ws.data(), ws.size()});
  const std::vector<f16> got = y.download();
  if (s != status::ok || got.size() != want.size() || std::memcmp(got.data(), want.data(), got.size() * 2) != 0)
    return state.SkipWithError("the keys differ from the CPU backend's");
  count(state, c);
}

/// Logits of one query per kv head (28) against every packed key: what decoding one token costs.
void BM_cuda_scores(benchmark::State& state) {
  if (!have_device(state)) return;
  const key_case& c = case_of(state);
  const device_keys<f16> dev(c.packed);
  std::vector<f16> queries(static_cast<std::size_t>(heads * head_dim));
  for (std::size_t i = 0; i < queries.size(); ++i) queries[i] = from_float<f16>(static_cast<float>(i % 7) / 8.0f - 0.375f);
  const device_array<f16> dq(queries);
  device_array<float> dscores(static_cast<std::size_t>(heads * c.p.tokens));
  device_timer timer;
  if (!c.cpu_ok || !dq.ok() || !dscores.ok() || !timer.ok()) return state.SkipWithError("setup failed");
  const vidkv_score_inputs<f16, device_space> in{view<const f16, 2, device_space>(dq.get(), {heads, head_dim}), dev.in(),
                                                 {}};
  const packed_score_outputs<device_space> out{view<float, 2, device_space>(dscores.get(), {heads, c.p.tokens})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, vidkv_key_scores{c.keys}, in, out) == status::ok;
      }))
    return;
  const vidkv_score_inputs<f16> host_in{view<const f16, 2>(queries.data(), {heads, head_dim}), c.packed.in(), {}};
  std::vector<float> want(static_cast<std::size_t>(heads * c.p.tokens));
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_scores{c.keys}, c.p));
  if (apply(cpu<>{}, vidkv_key_scores{c.keys}, host_in, packed_score_outputs<>{view<float, 2>(want.data(), {heads, c.p.tokens})},
            workspace{ws.data(), ws.size()}) != status::ok)
    return state.SkipWithError("the CPU logits failed");
  const std::vector<float> got = dscores.download();
  float largest = 1.0f, worst = 0.0f;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    largest = std::max(largest, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  if (got.size() != want.size() || !(worst <= 1e-4f * largest)) return state.SkipWithError("logits differ from the CPU backend's");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * heads * c.p.tokens);
}

/// The CPU backend on the same chunk: what the CUDA path replaces.
void BM_cpu_quantize(benchmark::State& state) {
  key_case c = case_of(state);  // a copy: the timed calls write its packed keys
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{c.keys}, c.p));
  for (auto _ : state) {
    if (apply(cpu<>{}, vidkv_key_quantize{c.keys}, kv_inputs<f16>{c.host_chunk()}, c.packed.out(),
              workspace{ws.data(), ws.size()}) != status::ok)
      return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, c);
}

void BM_cpu_dequantize(benchmark::State& state) {
  const key_case& c = case_of(state);
  std::vector<f16> y(c.chunk.size());
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, vidkv_key_dequantize{c.keys}, c.p));
  const kv_outputs<f16> out{view<f16, 3>(y.data(), {c.p.heads, c.p.tokens, c.p.head_dim})};
  for (auto _ : state) {
    if (apply(cpu<>{}, vidkv_key_dequantize{c.keys}, c.packed.in(), out, workspace{ws.data(), ws.size()}) !=
        status::ok)
      return state.SkipWithError("the CPU backend failed");
    benchmark::ClobberMemory();
  }
  count(state, c);
}

BENCHMARK(BM_cuda_memcpy_keys)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cuda_quantize)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cuda_dequantize)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cuda_scores)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cpu_quantize)->Apply(shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cpu_dequantize)->Apply(shapes)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
