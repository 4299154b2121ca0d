// bench/cuda/bench_grid_reduce_cuda.cu — the CUDA grid reducers (pool, adaptive_pool, bilinear,
// dct_lowpass) and the video layouts made of them (slowfast, thumbnail_sampling) against one
// device-to-device cudaMemcpy moving the same bytes.
//
// Each reducer reads the N·D input elements once and writes the K·D outputs once, so its bound
// is a copy of (N·D·sizeof(E) + K·D·sizeof(E)) / 2 bytes, which reads and writes that many
// bytes. A layout reads the rows its pieces read instead of N: slowfast (S + T)·H·W (its slow
// frames twice), thumbnail_sampling n + F·H·W. Bytes processed = input bytes + output bytes for both, so their bytes_per_second
// compare directly (the DCT also moves its fp32 intermediates through the workspace, which are
// not counted: the gap to the baseline shows what they cost). Items processed = input tokens.
//
// Shapes: frames of 24 × 24 (LLaVA-1.5 / PLLaVA), 27 × 27 (LLaVA-OneVision) and 32 × 32 tokens,
// 8 and 64 frames, rows of D = 1024 (a vision tower) and 3584 (Qwen2-VL's LLM), fp32 and bf16.
// The policies are the methods' own settings:
//   pool_avg_2x2          LLaVA-OneVision's get_2dPool "average": 2 × 2, stride 2, floor
//   bilinear_half         LLaVA-OneVision's "bilinear": ceil(side / 2) per axis
//   adaptive_3d           PLLaVA-style AdaptiveAvgPool3d to (T/2, side/2, side/2)
//   dct_spatial           Fourier-VLM's Qwen2-VL rule: keep max(int(side·2/3), 1) per axis
//   dct_spatiotemporal    the low-pass to (T/2, side/2, side/2)
//   slowfast_paper        SlowFast-LLaVA's 1-D max slow pathway and 4 × 4 fast pathway, with the
//                         paper's 1 slow frame in 5 (10 of 50): S = max(1, T/5)
//   thumbnail_v2          TS-LLaVA's V2: n = N/10 sampled tokens (2880 of 28 800), F = 6
// Inputs are filled on the device once per shape (outside the timed region); timing is manual,
// a cudaEvent pair around the enqueued work. Each case checks its result once (the first of its
// calls, after timing; built_once): frame 0 against the double oracles for the frame-local
// policies, and the whole output for the others on their 8-frame shapes; the layouts' whole
// output against their CPU backend on the 8-frame shapes.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <tokred/cuda/tokred.cuh>
#include <tuple>
#include <type_traits>
#include <vector>

#include "reference/dct_ref.hpp"
#include "cuda/cuda_bench.cuh"
#include "reference/pool_ref.hpp"

namespace tokred::bench {
namespace {

// ---------------------------------------------------------------------------------------------
// Inputs.

/// Token values k/16, k in [-127, 127]: exact in fp32, fp16 and bf16, so the storage type
/// changes the bytes moved, not the values.
template <class E>
__global__ void fill_tokens(E* x, index_t count) {  // (tokens · dim,)
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x) {
    const auto k = static_cast<int>(static_cast<std::uint64_t>(i) * 2654435761ull % 255ull) - 127;
    x[i] = from_float<E>(static_cast<float>(k) / 16.0f);
  }
}

/// The (tokens, dim) rows of a shape on the device, filled once and kept until the shape
/// changes (the largest, 64 × 32 × 32 × 3584 fp32, is 940 MB).
template <class E>
view<const E, 2, device_space> device_rows(const token_grid& grid, index_t dim) {
  static std::tuple<index_t, index_t, index_t, index_t> shape{-1, -1, -1, -1};
  static std::unique_ptr<device_array<E>> rows;
  const index_t n = grid.tokens();
  const auto want = std::make_tuple(grid.frames, grid.height, grid.width, dim);
  if (shape != want) {
    rows.reset();  // free the previous shape first
    rows = std::make_unique<device_array<E>>(static_cast<std::size_t>(n * dim));
    if (!rows->ok()) return {};
    fill_tokens<<<1024, 256>>>(rows->get(), n * dim);
    if (cudaDeviceSynchronize() != cudaSuccess) return {};
    shape = want;
  }
  return make_device_view<const E>(rows->get(), n, dim);  // (tokens, dim)
}

// ---------------------------------------------------------------------------------------------
// The policies, each as its method sets it up for a (T, side, side) grid.

struct pool_avg_2x2 {
  static pool policy(const token_grid&) { return pool{}; }
  static constexpr bool frame_local = true;
};
struct bilinear_half {
  static bilinear policy(const token_grid& g) {
    return {(g.height + 1) / 2, (g.width + 1) / 2, false};
  }
  static constexpr bool frame_local = true;
};
struct adaptive_3d {
  static adaptive_pool policy(const token_grid& g) {
    return {pool_kind::average, {std::max<index_t>(1, g.frames / 2), g.height / 2, g.width / 2}};
  }
  static constexpr bool frame_local = false;
};
struct dct_spatial {
  static dct_lowpass policy(const token_grid& g) { return dct_lowpass_for_ratio(g); }
  static constexpr bool frame_local = true;
};
struct dct_spatiotemporal {
  static dct_lowpass policy(const token_grid& g) {
    return {{std::max<index_t>(1, g.frames / 2), g.height / 2, g.width / 2},
            dct_axes::spatiotemporal,
            dct_output::resampled};
  }
  static constexpr bool frame_local = false;
};

struct slowfast_paper {
  static slowfast policy(const token_grid& g) {
    slowfast p;
    p.slow_frames = std::max<index_t>(1, g.frames / 5);
    return p;
  }
  static index_t tokens_read(const token_grid& g) {
    return (policy(g).slow_frames + g.frames) * g.frame_tokens();
  }
};
struct thumbnail_v2 {
  static thumbnail_sampling policy(const token_grid& g) {
    thumbnail_sampling p;
    p.sampled_tokens = std::max<index_t>(1, g.tokens() / 10);
    return p;
  }
  static index_t tokens_read(const token_grid& g) {
    const thumbnail_sampling p = policy(g);
    return p.sampled_tokens + p.thumbnail_frames * g.frame_tokens();
  }
};

/// The input rows a case reads: `Case::tokens_read` where it says, else every token once.
template <class Case, class = void>
struct reads_own_count : std::false_type {};
template <class Case>
struct reads_own_count<Case, std::void_t<decltype(Case::tokens_read(token_grid{}))>>
    : std::true_type {};

template <class Case>
index_t tokens_read(const token_grid& g) {
  if constexpr (reads_own_count<Case>::value) return Case::tokens_read(g);
  else return g.tokens();
}

/// (side, frames, dim): the grid every benchmark runs.
void grid_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{24, 27, 32}, {8, 64}, {1024, 3584}})->ArgNames({"side", "frames", "dim"});
}

token_grid grid_of(const benchmark::State& state) {
  return {state.range(1), state.range(0), state.range(0)};
}

/// Counters: input + output bytes, input tokens.
void count(benchmark::State& state, std::int64_t bytes, index_t tokens) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * tokens);
}

// ---------------------------------------------------------------------------------------------
// The check after timing.

template <class E>
std::vector<double> oracle(const pool& p, const token_grid& g, const view<const E, 2>& x) {
  return ref::pooled(p, g, x).values;
}
template <class E>
std::vector<double> oracle(const adaptive_pool& p, const token_grid& g, const view<const E, 2>& x) {
  return ref::adaptive(p, g, x).values;
}
template <class E>
std::vector<double> oracle(const bilinear& p, const token_grid& g, const view<const E, 2>& x) {
  return ref::resampled(p, g, x).values;
}
template <class E>
std::vector<double> oracle(const dct_lowpass& p, const token_grid& g, const view<const E, 2>& x) {
  return ref::dct_lowpass(p, g, x);
}

/// True when the device output of the first `frames` frames matches the double oracle on the
/// same frames (within 1e-3 of the largest value: a check that the timed work is right, not
/// the accuracy test, which is tests/cuda/test_grid_reduce_cuda.cu).
template <class E, class Policy>
bool matches_oracle(const Policy& p, const token_grid& g, index_t frames, index_t dim,
                    const E* in, const E* out) {
  const token_grid part{frames, g.height, g.width};
  Policy q = p;
  if constexpr (std::is_same_v<Policy, dct_lowpass>)
    if (p.axes == dct_axes::spatial) q.keep.t = frames;
  const index_t kept = output_grid(q, part).tokens();
  const std::vector<E> x = download(in, part.tokens() * dim), y = download(out, kept * dim);
  if (x.empty() || y.empty()) return false;
  const std::vector<double> want = oracle(q, part, make_view<const E>(x.data(), part.tokens(), dim));
  if (want.size() != y.size()) return false;
  double largest = 0.0;
  for (double v : want) largest = std::max(largest, std::fabs(v));
  for (std::size_t i = 0; i < y.size(); ++i)
    if (!(std::fabs(static_cast<double>(to_float(y[i])) - want[i]) <= 1e-3 * largest)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Benchmarks.

/// Bytes one reducer run reads and writes (token rows only).
template <class E, class Case>
std::int64_t moved_bytes(const token_grid& g, index_t dim) {
  const index_t kept = retained_count(Case::policy(g), problem{g, dim});
  return static_cast<std::int64_t>((tokens_read<Case>(g) + kept) * dim) *
         static_cast<std::int64_t>(sizeof(E));
}

/// One device-to-device copy that reads and writes as many bytes as the reducer of `Case`.
template <class E, class Case>
void BM_cuda_memcpy_same_bytes(benchmark::State& state) {
  if (!have_device(state)) return;
  const token_grid g = grid_of(state);
  const index_t dim = state.range(2);
  const std::int64_t bytes = moved_bytes<E, Case>(g, dim);
  if (time_copy(state, static_cast<std::size_t>(bytes / 2))) count(state, bytes, g.tokens());
}

/// The reducer of `Case` on the device: token rows out (no bookkeeping outputs).
template <class E, class Case>
void BM_cuda_grid_reduce(benchmark::State& state) {
  if (!have_device(state)) return;
  const token_grid g = grid_of(state);
  const index_t dim = state.range(2);
  const auto policy = Case::policy(g);
  const problem prob{g, dim};
  const index_t kept = retained_count(policy, prob);
  const view<const E, 2, device_space> rows = device_rows<E>(g, dim);  // (tokens, dim)
  device_array<E> out_rows(static_cast<std::size_t>(kept * dim));      // (kept, dim)
  const tokred::cuda probe{};
  device_array<std::byte> ws(workspace_bytes(probe, policy, prob));
  device_timer timer;
  if (!rows.data_handle() || !out_rows.ok() || !ws.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const grid_inputs<E, device_space> in{g, rows};
  grid_outputs<E, device_space> out;
  out.tokens = make_device_view(out_rows.get(), kept, dim);  // (kept, dim)
  const bool timed = time_iterations(state, timer, [&] {
    return apply(tokred::cuda{timer.stream()}, policy, in, out, workspace{ws.get(), ws.size()}) ==
           status::ok;
  });
  const index_t checked_frames = Case::frame_local ? 1 : g.frames <= 8 ? g.frames : 0;
  if (timed && checked_frames > 0 && !built_once<bool>({state.range(0), state.range(1), dim}, [&] {
        return matches_oracle(policy, g, checked_frames, dim, rows.data_handle(), out_rows.get());
      }))
    state.SkipWithError("the result disagrees with the reference");
  count(state, moved_bytes<E, Case>(g, dim), g.tokens());
}

/// True when a layout's device output equals its CPU backend on the same rows (within 1e-3 of
/// the largest value, as `matches_oracle`; the parity test is tests/cuda/test_video_layout_cuda.cu).
template <class E, class Policy>
bool matches_cpu(const Policy& p, const token_grid& g, index_t dim, const E* in, const E* out) {
  const index_t kept = retained_count(p, problem{g, dim});
  const std::vector<E> x = download(in, g.tokens() * dim), y = download(out, kept * dim);
  if (x.empty() || y.empty()) return false;
  std::vector<E> want(y.size());
  grid_outputs<E> cpu_out;
  cpu_out.tokens = make_view(want.data(), kept, dim);  // (kept, dim)
  if (apply(tokred::cpu<>{}, p, grid_inputs<E>{g, make_view<const E>(x.data(), g.tokens(), dim)},
            cpu_out) != status::ok)
    return false;
  double largest = 0.0;
  for (const E& v : want) largest = std::max(largest, std::fabs(static_cast<double>(to_float(v))));
  for (std::size_t i = 0; i < y.size(); ++i)
    if (!(std::fabs(static_cast<double>(to_float(y[i])) - to_float(want[i])) <= 1e-3 * largest))
      return false;
  return true;
}

/// The layout of `Case` on the device: token rows out (no bookkeeping outputs).
template <class E, class Case>
void BM_cuda_video_layout(benchmark::State& state) {
  if (!have_device(state)) return;
  const token_grid g = grid_of(state);
  const index_t dim = state.range(2);
  const auto policy = Case::policy(g);
  const index_t kept = retained_count(policy, problem{g, dim});
  const view<const E, 2, device_space> rows = device_rows<E>(g, dim);  // (tokens, dim)
  device_array<E> out_rows(static_cast<std::size_t>(kept * dim));      // (kept, dim)
  device_timer timer;
  if (kept == 0 || !rows.data_handle() || !out_rows.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const grid_inputs<E, device_space> in{g, rows};
  grid_outputs<E, device_space> out;
  out.tokens = make_device_view(out_rows.get(), kept, dim);  // (kept, dim)
  const bool timed = time_iterations(state, timer, [&] {
    return apply(tokred::cuda{timer.stream()}, policy, in, out) == status::ok;  // no workspace
  });
  if (timed && g.frames <= 8 && !built_once<bool>({state.range(0), state.range(1), dim}, [&] {
        return matches_cpu(policy, g, dim, rows.data_handle(), out_rows.get());
      }))
    state.SkipWithError("the result disagrees with the CPU backend");
  count(state, moved_bytes<E, Case>(g, dim), g.tokens());
}

#define TOKRED_LAYOUT_BENCH(E, Case)                                                        \
  BENCHMARK_TEMPLATE(BM_cuda_memcpy_same_bytes, E, Case)->Apply(grid_shapes)->UseManualTime(); \
  BENCHMARK_TEMPLATE(BM_cuda_video_layout, E, Case)->Apply(grid_shapes)->UseManualTime()

#define TOKRED_GRID_BENCH(E, Case)                                                          \
  BENCHMARK_TEMPLATE(BM_cuda_memcpy_same_bytes, E, Case)->Apply(grid_shapes)->UseManualTime(); \
  BENCHMARK_TEMPLATE(BM_cuda_grid_reduce, E, Case)->Apply(grid_shapes)->UseManualTime()

TOKRED_GRID_BENCH(float, pool_avg_2x2);
TOKRED_GRID_BENCH(float, bilinear_half);
TOKRED_GRID_BENCH(float, adaptive_3d);
TOKRED_GRID_BENCH(float, dct_spatial);
TOKRED_GRID_BENCH(float, dct_spatiotemporal);
TOKRED_GRID_BENCH(bf16, pool_avg_2x2);
TOKRED_GRID_BENCH(bf16, bilinear_half);
TOKRED_GRID_BENCH(bf16, adaptive_3d);
TOKRED_GRID_BENCH(bf16, dct_spatial);
TOKRED_GRID_BENCH(bf16, dct_spatiotemporal);
TOKRED_LAYOUT_BENCH(float, slowfast_paper);
TOKRED_LAYOUT_BENCH(float, thumbnail_v2);
TOKRED_LAYOUT_BENCH(bf16, slowfast_paper);
TOKRED_LAYOUT_BENCH(bf16, thumbnail_v2);

}  // namespace
}  // namespace tokred::bench
