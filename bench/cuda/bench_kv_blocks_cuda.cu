// bench/cuda/bench_kv_blocks_cuda.cu — the CUDA ggml block quantizer and dequantizer (llama.cpp's
// cache types, with and without the Hadamard rotation) against one device-to-device cudaMemcpy
// moving the same bytes and against the CPU backend (one share, this build's ISA).
//
// Caches (heads, tokens, 128) of fp16: 8 × 4096 (an 8-kv-head layer) and 28 × 11 648 (the issue's
// 16 × 729-token video at Qwen2-7B's 3584 channels, rounded down to whole groups). Types q8_0,
// q4_0 and iq4_nl; rotation 0 and 128. Bytes processed = fp16 cache bytes + block bytes (read
// and written once); the memcpy baseline copies half of that sum so that it reads and writes as
// many bytes. Items = cache values. Each benchmark checks its bytes (quantize) or values
// (dequantize) once after timing against the CPU backend: they must be equal.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

constexpr index_t head_dim = 128;

/// Args: heads, tokens, type (ggml's number), rotation.
void shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{8}, {4096}, {8, 2, 20}, {0, 128}})->ArgNames({"heads", "tokens", "type", "rotation"});
  b->Args({28, 11648, 2, 0})->Args({28, 11648, 2, 128});
}

struct blocks_case {
  kv_problem p;
  ggml_type type;
  index_t rotation;
  std::vector<f16> cache;
  std::vector<std::uint8_t> blocks;  // the CPU backend's
  bool cpu_ok = false;

  explicit blocks_case(const benchmark::State& s)
      : p{s.range(0), s.range(1), head_dim}, type(static_cast<ggml_type>(s.range(2))), rotation(s.range(3)),
        cache(static_cast<std::size_t>(p.heads * p.tokens * head_dim)),
        blocks(static_cast<std::size_t>(p.heads * p.tokens * ggml_row_bytes(type, head_dim))) {
    for (std::size_t i = 0; i < cache.size(); ++i)
      cache[i] = from_float<f16>(static_cast<float>(static_cast<int>(i * 2654435761ull % 255ull) - 127) / 32.0f);
    cpu_ok = apply(cpu<>{}, ggml_quantize{type, rotation}, kv_inputs<f16>{host_cache()}, kv_block_outputs<>{host_blocks()}) ==
             status::ok;
  }
  index_t row_bytes() const { return ggml_row_bytes(type, head_dim); }
  view<const f16, 3> host_cache() const { return {cache.data(), {p.heads, p.tokens, head_dim}}; }
  view<std::uint8_t, 3> host_blocks() { return {blocks.data(), {p.heads, p.tokens, row_bytes()}}; }
  view<const std::uint8_t, 3> host_blocks() const { return {blocks.data(), {p.heads, p.tokens, row_bytes()}}; }
  std::int64_t bytes() const {
    return static_cast<std::int64_t>(cache.size() * sizeof(f16) + blocks.size());
  }
};

/// The case's cache and its CPU quantization, built once per case (built_once) and shared by
/// the benchmarks: quantizing 28 × 11 648 × 128 values on the host takes a good part of a second.
const blocks_case& case_of(const benchmark::State& state) {
  return built_once<blocks_case>({state.range(0), state.range(1), state.range(2), state.range(3)},
                                 [&] { return blocks_case(state); });
}

void count(benchmark::State& state, const blocks_case& c) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * c.bytes());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(c.cache.size()));
}

void BM_cuda_memcpy_same_bytes(benchmark::State& state) {
  if (!have_device(state)) return;
  const blocks_case& c = case_of(state);
  if (time_copy(state, static_cast<std::size_t>(c.bytes() / 2))) count(state, c);
}

void BM_cuda_ggml_quantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const blocks_case& c = case_of(state);
  device_array<f16> cache(c.cache);
  device_array<std::uint8_t> blocks(c.blocks.size());
  device_timer timer;
  if (!c.cpu_ok || !cache.ok() || !blocks.ok() || !timer.ok()) return state.SkipWithError("setup failed");
  const kv_inputs<f16, device_space> in{view<const f16, 3, device_space>(cache.get(), {c.p.heads, c.p.tokens, head_dim})};
  const kv_block_outputs<device_space> out{view<std::uint8_t, 3, device_space>(blocks.get(), {c.p.heads, c.p.tokens, c.row_bytes()})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, ggml_quantize{c.type, c.rotation}, in, out) == status::ok;
      }))
    return;
  if (!built_once<bool>({state.range(0), state.range(1), state.range(2), state.range(3)},
                        [&] { return blocks.download() == c.blocks; }))
    return state.SkipWithError("the blocks differ from the CPU backend's");
  count(state, c);
}

void BM_cuda_ggml_dequantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const blocks_case& c = case_of(state);
  device_array<std::uint8_t> blocks(c.blocks);
  device_array<f16> values(c.cache.size());
  device_timer timer;
  if (!c.cpu_ok || !blocks.ok() || !values.ok() || !timer.ok()) return state.SkipWithError("setup failed");
  const kv_block_inputs<device_space> in{view<const std::uint8_t, 3, device_space>(blocks.get(), {c.p.heads, c.p.tokens, c.row_bytes()})};
  const kv_outputs<f16, device_space> out{view<f16, 3, device_space>(values.get(), {c.p.heads, c.p.tokens, head_dim})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, ggml_dequantize{c.type, c.rotation}, in, out) == status::ok;
      }))
    return;
  if (!built_once<bool>({state.range(0), state.range(1), state.range(2), state.range(3)}, [&] {
        std::vector<f16> want(c.cache.size());
        const status host = apply(cpu<>{}, ggml_dequantize{c.type, c.rotation}, kv_block_inputs<>{c.host_blocks()},
                                  kv_outputs<f16>{view<f16, 3>(want.data(), {c.p.heads, c.p.tokens, head_dim})});
        const std::vector<f16> got = values.download();
        return host == status::ok && got.size() == want.size() &&
               std::memcmp(got.data(), want.data(), got.size() * sizeof(f16)) == 0;
      }))
    return state.SkipWithError("the values differ from the CPU backend's");
  count(state, c);
}

void BM_cpu_ggml_quantize(benchmark::State& state) {
  blocks_case c = case_of(state);  // a copy: the CPU backend writes its blocks
  const kv_inputs<f16> in{c.host_cache()};
  const kv_block_outputs<> out{c.host_blocks()};
  for (auto _ : state) {
    if (apply(cpu<>{}, ggml_quantize{c.type, c.rotation}, in, out) != status::ok) return state.SkipWithError("quantize failed");
    benchmark::DoNotOptimize(c.blocks.data());
  }
  count(state, c);
}

BENCHMARK(BM_cuda_memcpy_same_bytes)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cuda_ggml_quantize)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cuda_ggml_dequantize)->Apply(shapes)->UseManualTime();
BENCHMARK(BM_cpu_ggml_quantize)->Apply(shapes)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
