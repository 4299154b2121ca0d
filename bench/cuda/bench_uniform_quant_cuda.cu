// bench/cuda/bench_uniform_quant_cuda.cu — the CUDA uniform quantizer (KIVI, VidKV), its
// dequantizer and logits from packed keys, against one device-to-device cudaMemcpy moving the
// same bytes and against the CPU backend (one share, this build's ISA) on the same cache.
//
// Bytes processed = cache bytes read + packed bytes (codes, scales, zero points) written for
// quantize, the reverse for dequantize; the memcpy baseline copies half of that sum, so it reads
// and writes as many bytes and its bytes_per_second compare directly. Items = cache values.
//
// Caches (heads, tokens, 128) of fp16 and bf16: 28 heads × 128 = 3584 channels, Qwen2-7B's
// hidden size (issue: 16 frames × 729 tokens × 3584 dims), at 4096 and 11 648 tokens (16 × 729
// = 11 664 rounded down to whole groups of 32); 2- and 4-bit asymmetric, group 32, along tokens
// (KIVI's keys) and along channels (KIVI's values).
//
// Logits: 32 query heads over 8 kv heads, head_dim 128, 4096 and 16 384 keys, fp16; 2- and
// 4-bit packed keys, and (bits = 16) the same keys all in fp16 as the residual — the dense
// baseline the packed keys must beat. Items = logits.
//
// Each benchmark checks its result once after timing against the CPU backend: packed bytes
// equal, dequantized values equal, logits within 1e-4 of the largest.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

// ---------------------------------------------------------------------------------------------
// Inputs.

constexpr index_t head_dim = 128;

/// Values k/16 with k in [-127, 127] from a hash of the index: exact in every type, with the
/// spread of real keys between groups.
template <class E>
std::vector<E> cache_values(index_t count) {
  std::vector<E> x(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) {
    const auto k = static_cast<int>(static_cast<std::uint64_t>(i) * 2654435761ull % 255ull) - 127;
    x[static_cast<std::size_t>(i)] = from_float<E>(static_cast<float>(k) / 16.0f);
  }
  return x;
}

uniform_format format_of(int bits, kv_group_axis axis) { return {bits, 32, axis, kv_scheme::asymmetric}; }

/// A packed cache's three arrays, sized for the format and problem.
struct packed_sizes {
  std::size_t codes, params;
  packed_sizes(const uniform_format& f, const kv_problem& p) {
    const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
    codes = static_cast<std::size_t>(c.heads * c.rows * c.cols);
    params = static_cast<std::size_t>(s.heads * s.rows * s.cols);
  }
};

template <class E>
uniform_packed<E, device_space> device_packed(const uniform_format& f, const kv_problem& p, std::uint32_t* codes,
                                              E* scale, E* zero) {
  const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
  return {view<std::uint32_t, 3, device_space>(codes, {c.heads, c.rows, c.cols}),
          view<E, 3, device_space>(scale, {s.heads, s.rows, s.cols}), view<E, 3, device_space>(zero, {s.heads, s.rows, s.cols})};
}

/// Host views of a packed cache's three arrays: read-only where the vectors are const.
template <class Codes, class Params>
auto host_packed(const uniform_format& f, const kv_problem& p, Codes& codes, Params& scale, Params& zero) {
  using E = std::remove_pointer_t<decltype(scale.data())>;  // const for a const vector
  using packed = uniform_packed<E>;
  const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
  return packed{view<typename packed::word, 3>(codes.data(), {c.heads, c.rows, c.cols}),
                view<E, 3>(scale.data(), {s.heads, s.rows, s.cols}), view<E, 3>(zero.data(), {s.heads, s.rows, s.cols})};
}

template <class E>
std::int64_t moved_bytes(const uniform_format& f, const kv_problem& p) {
  const packed_sizes n(f, p);
  return (p.heads * p.tokens * p.head_dim + 2 * static_cast<index_t>(n.params)) * static_cast<std::int64_t>(sizeof(E)) +
         static_cast<std::int64_t>(n.codes * sizeof(std::uint32_t));
}

void count(benchmark::State& state, std::int64_t bytes, std::int64_t items) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

/// Args: heads, tokens, bits, axis (0 tokens, 1 channels).
void cache_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{28}, {4096, 11648}, {2, 4}, {0, 1}})->ArgNames({"heads", "tokens", "bits", "channels"});
}

struct cache_case {
  uniform_format f;
  kv_problem p;
  explicit cache_case(const benchmark::State& s)
      : f(format_of(static_cast<int>(s.range(2)), s.range(3) ? kv_group_axis::channels : kv_group_axis::tokens)),
        p{s.range(0), s.range(1), head_dim} {}
};

// ---------------------------------------------------------------------------------------------
// Quantize and dequantize.

/// One device-to-device copy that reads and writes as many bytes as the quantizer.
template <class E>
void BM_cuda_memcpy_same_bytes(benchmark::State& state) {
  if (!have_device(state)) return;
  const cache_case c(state);
  const std::int64_t bytes = moved_bytes<E>(c.f, c.p);
  if (time_copy(state, static_cast<std::size_t>(bytes / 2))) count(state, bytes, c.p.heads * c.p.tokens * c.p.head_dim);
}

/// The case's cache and its packed form made by the CPU backend, built once per case
/// (built_once) and shared by the benchmarks: the CPU quantization of 28 × 11 648 × 128 values
/// takes a good part of a second.
template <class E>
struct host_quant_case {
  cache_case c;
  packed_sizes n;
  std::vector<E> x;
  std::vector<std::uint32_t> codes;
  std::vector<E> scale, zero;
  bool cpu_ok = false;

  explicit host_quant_case(const benchmark::State& s)
      : c(s), n(c.f, c.p), x(cache_values<E>(c.p.heads * c.p.tokens * c.p.head_dim)), codes(n.codes),
        scale(n.params), zero(n.params) {
    cpu_ok = apply(cpu<>{}, uniform_quantize{c.f}, kv_inputs<E>{host_cache()}, host_packed(c.f, c.p, codes, scale, zero)) ==
             status::ok;
  }
  view<const E, 3> host_cache() const { return {x.data(), {c.p.heads, c.p.tokens, c.p.head_dim}}; }
  index_t values() const { return c.p.heads * c.p.tokens * c.p.head_dim; }
};

template <class E>
const host_quant_case<E>& host_case_of(const benchmark::State& s) {
  return built_once<host_quant_case<E>>({s.range(0), s.range(1), s.range(2), s.range(3)},
                                        [&] { return host_quant_case<E>(s); });
}

/// The CPU backend quantizing the same cache on the host: what the CUDA path replaces.
template <class E>
void BM_cpu_quantize(benchmark::State& state) {
  const host_quant_case<E>& h = host_case_of<E>(state);
  std::vector<std::uint32_t> codes(h.n.codes);
  std::vector<E> scale(h.n.params), zero(h.n.params);
  const kv_inputs<E> in{h.host_cache()};
  const uniform_packed<E> out = host_packed(h.c.f, h.c.p, codes, scale, zero);
  for (auto _ : state) {
    if (apply(cpu<>{}, uniform_quantize{h.c.f}, in, out) != status::ok) return state.SkipWithError("quantize failed");
    benchmark::DoNotOptimize(codes.data());
  }
  count(state, moved_bytes<E>(h.c.f, h.c.p), h.values());
}

/// A case's device cache and packed arrays, beside its host case.
template <class E>
struct device_quant_case {
  const host_quant_case<E>& h;
  device_array<E> dx, dy;
  device_array<std::uint32_t> dcodes;
  device_array<E> dscale, dzero;

  explicit device_quant_case(const benchmark::State& s)
      : h(host_case_of<E>(s)), dx(h.x), dy(h.x.size()), dcodes(h.n.codes), dscale(h.n.params), dzero(h.n.params) {}
  bool ok() const { return h.cpu_ok && dx.ok() && dy.ok() && dcodes.ok() && dscale.ok() && dzero.ok(); }
  view<E, 3, device_space> device_cache(E* p) const { return {p, {h.c.p.heads, h.c.p.tokens, h.c.p.head_dim}}; }
  uniform_packed<E, device_space> packed() const {
    return device_packed(h.c.f, h.c.p, dcodes.get(), dscale.get(), dzero.get());
  }
  bool packed_matches() const {
    const std::vector<std::uint32_t> got = dcodes.download();
    const std::vector<E> s = dscale.download(), z = dzero.download();
    return got == h.codes && std::memcmp(s.data(), h.scale.data(), s.size() * sizeof(E)) == 0 &&
           std::memcmp(z.data(), h.zero.data(), z.size() * sizeof(E)) == 0;
  }
};

/// The case's arguments, the key of its checks (built_once<bool>: once per case).
std::vector<std::int64_t> case_key(const benchmark::State& s) { return {s.range(0), s.range(1), s.range(2), s.range(3)}; }

template <class E>
void BM_cuda_quantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const device_quant_case<E> d(state);
  device_timer timer;
  if (!d.ok() || !timer.ok()) return state.SkipWithError("device setup failed");
  const kv_inputs<E, device_space> in{d.device_cache(d.dx.get())};
  const uniform_packed<E, device_space> out = d.packed();
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, uniform_quantize{d.h.c.f}, in, out) == status::ok;
      }))
    return;
  if (!built_once<bool>(case_key(state), [&] { return d.packed_matches(); }))
    return state.SkipWithError("the packed cache differs from the CPU backend's");
  count(state, moved_bytes<E>(d.h.c.f, d.h.c.p), d.h.values());
}

template <class E>
void BM_cuda_dequantize(benchmark::State& state) {
  if (!have_device(state)) return;
  const device_quant_case<E> d(state);
  const host_quant_case<E>& h = d.h;
  device_timer timer;
  if (!d.ok() || !timer.ok()) return state.SkipWithError("device setup failed");
  if (cudaMemcpy(d.dcodes.get(), h.codes.data(), h.codes.size() * 4, cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(d.dscale.get(), h.scale.data(), h.scale.size() * sizeof(E), cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaMemcpy(d.dzero.get(), h.zero.data(), h.zero.size() * sizeof(E), cudaMemcpyHostToDevice) != cudaSuccess ||
      cudaDeviceSynchronize() != cudaSuccess)  // the copies have landed before the timer's stream reads them
    return state.SkipWithError("upload failed");
  const uniform_packed<E, device_space> p = d.packed();
  const uniform_packed<const E, device_space> in{p.codes, p.scale, p.zero};
  const kv_outputs<E, device_space> out{d.device_cache(d.dy.get())};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, uniform_dequantize{h.c.f}, in, out) == status::ok;
      }))
    return;
  if (!built_once<bool>(case_key(state), [&] {
        std::vector<E> want(h.x.size());
        const status host = apply(cpu<>{}, uniform_dequantize{h.c.f}, host_packed(h.c.f, h.c.p, h.codes, h.scale, h.zero),
                                  kv_outputs<E>{view<E, 3>(want.data(), {h.c.p.heads, h.c.p.tokens, h.c.p.head_dim})});
        const std::vector<E> got = d.dy.download();
        return host == status::ok && got.size() == want.size() &&
               std::memcmp(got.data(), want.data(), got.size() * sizeof(E)) == 0;
      }))
    return state.SkipWithError("the values differ from the CPU backend's");
  count(state, moved_bytes<E>(h.c.f, h.c.p), h.values());
}

// ---------------------------------------------------------------------------------------------
// Logits.

/// Args: keys, bits (16: every key in fp16, as the residual).
void score_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{4096, 16384}, {2, 4, 16}})->ArgNames({"keys", "bits"});
}

void BM_cuda_scores(benchmark::State& state) {
  if (!have_device(state)) return;
  using E = f16;
  constexpr index_t q_heads = 32, kv_heads = 8;
  const index_t tokens = state.range(0);
  const bool dense = state.range(1) == 16;
  const uniform_format f = format_of(dense ? 2 : static_cast<int>(state.range(1)), kv_group_axis::tokens);
  const index_t packed = dense ? 0 : tokens;
  const kv_problem p{kv_heads, packed, head_dim};
  const std::vector<E> keys = cache_values<E>(kv_heads * tokens * head_dim);
  std::vector<E> queries = cache_values<E>(q_heads * head_dim);
  std::reverse(queries.begin(), queries.end());
  const packed_sizes n(f, p);
  std::vector<std::uint32_t> codes(std::max<std::size_t>(1, n.codes));
  std::vector<E> scale(std::max<std::size_t>(1, n.params)), zero(scale.size());
  const view<const E, 3> host_keys(keys.data(), {kv_heads, tokens, head_dim});
  if (packed > 0 &&
      apply(cpu<>{}, uniform_quantize{f}, kv_inputs<E>{host_keys}, host_packed(f, p, codes, scale, zero)) != status::ok)
    return state.SkipWithError("CPU quantize failed");
  device_array<E> dkeys(keys), dqueries(queries), dscale(scale), dzero(zero);
  device_array<std::uint32_t> dcodes(codes);
  device_array<float> dscores(static_cast<std::size_t>(q_heads * tokens));
  device_timer timer;
  if (!dkeys.ok() || !dqueries.ok() || !dscale.ok() || !dzero.ok() || !dcodes.ok() || !dscores.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const uniform_packed<E, device_space> dp = device_packed(f, p, dcodes.get(), dscale.get(), dzero.get());
  const packed_score_inputs<E, device_space> in{
      view<const E, 2, device_space>(dqueries.get(), {q_heads, head_dim}),
      {dp.codes, dp.scale, dp.zero},
      dense ? view<const E, 3, device_space>(dkeys.get(), {kv_heads, tokens, head_dim}) : view<const E, 3, device_space>()};
  const packed_score_outputs<device_space> out{view<float, 2, device_space>(dscores.get(), {q_heads, tokens})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, packed_key_scores{f}, in, out) == status::ok;
      }))
    return;
  // The CPU backend's logits of the same keys.
  const packed_score_inputs<E> host_in{view<const E, 2>(queries.data(), {q_heads, head_dim}),
                                       read_only(host_packed(f, p, codes, scale, zero)),
                                       dense ? host_keys : view<const E, 3>()};
  std::vector<float> want(static_cast<std::size_t>(q_heads * tokens));
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, packed_key_scores{f}, p));
  if (apply(cpu<>{}, packed_key_scores{f}, host_in, packed_score_outputs<>{view<float, 2>(want.data(), {q_heads, tokens})},
            workspace{ws.data(), ws.size()}) != status::ok)
    return state.SkipWithError("CPU logits failed");
  const std::vector<float> got = dscores.download();
  float largest = 0.0f, worst = 0.0f;
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i) {
    largest = std::max(largest, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  if (got.size() != want.size() || !(worst <= 1e-4f * largest)) return state.SkipWithError("logits differ from the CPU backend's");
  const std::int64_t key_bytes = dense ? kv_heads * tokens * head_dim * 2
                                       : static_cast<std::int64_t>(n.codes * 4 + 2 * n.params * sizeof(E));
  count(state, key_bytes, q_heads * tokens);
}

BENCHMARK_TEMPLATE(BM_cuda_memcpy_same_bytes, f16)->Apply(cache_shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_quantize, f16)->Apply(cache_shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_dequantize, f16)->Apply(cache_shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_quantize, bf16)->Apply(cache_shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_dequantize, bf16)->Apply(cache_shapes)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cpu_quantize, f16)->Apply(cache_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cuda_scores)->Apply(score_shapes)->UseManualTime();

}  // namespace
}  // namespace tokred::bench
