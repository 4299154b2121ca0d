// tokred/cuda/uniform_quant.cuh — CUDA backends of uniform_quantize, uniform_dequantize and
// packed_key_scores.
//
// One stream-ordered kernel per call, its launch shape fixed by the shapes alone (so a CUDA
// graph can capture it), no workspace:
//   quantize    one thread per group (uniform_unit_at: along tokens, neighbouring threads take
//               neighbouring channels of one token group, so each of the group's token rows is
//               read, and each word row written, by a warp at once). The thread runs
//               quantize_unit of <tokred/policy/uniform_group.hpp>: statistics in group order,
//               then the codes, each word written once.
//   dequantize  one thread per group, dequantize_unit.
//   scores      one block per (kv head, run of up to 8 query heads, tile of 256 keys): the run's
//               queries are staged in shared memory as fp32, 256 channels at a time; each thread
//               takes one key — packed or residual — and accumulates its logits with every query
//               of the run, channel by channel (accumulate_key_logits).
//
// Codes, scales and zero points are the CPU backend's bit for bit, and so are dequantized values
// but for NaN payloads (the GPU's arithmetic returns its canonical NaN): the per-value arithmetic
// is the one host/device definition both backends follow, each step rounded once
// (<tokred/core/rounded.hpp>). Logits are the dot products with the dequantized keys within fp32
// rounding, as on the CPU, summed in channel order.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_status, blocks_for
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred {
namespace detail {
namespace cuda_uniform {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Threads of one quantize or dequantize block. Provisional: measure 128 / 256 / 512 with
/// bench_uniform_quant_cuda against its device-to-device memcpy of the fp16 cache.
inline constexpr int unit_threads = 256;

/// Keys (threads) of one scores block. Provisional: measure 128 / 256 with
/// bench_uniform_quant_cuda's logits at 4096 and 16384 keys.
inline constexpr int score_threads = 256;

/// Query heads scored together, reading each key once: the CPU backend's run length.
inline constexpr int score_heads = 8;

/// Channels of the run's queries staged per pass (score_heads · score_chunk fp32 = 8 KiB).
inline constexpr index_t score_chunk = 256;

// ---------------------------------------------------------------------------------------------
// Kernels.

template <kv_scheme S, class E>
__global__ void __launch_bounds__(unit_threads)
    quantize_kernel(uniform_format f, bool each_op, kv_problem p, view<const E, 3, device_space> x,
                    uniform_packed<E, device_space> out) {
  for_each_thread_item(uniform_unit_count(f, p),
                       [&](index_t u) { quantize_unit<S>(f, each_op, x, out, uniform_unit_at(f, p, u)); });
}

template <kv_scheme S, class E, class Eout>
__global__ void __launch_bounds__(unit_threads)
    dequantize_kernel(uniform_format f, bool each_op, bool vidkv, kv_problem p,
                      uniform_packed<const E, device_space> in, view<Eout, 3, device_space> y) {
  for_each_thread_item(uniform_unit_count(f, p),
                       [&](index_t u) { dequantize_unit<S>(f, each_op, vidkv, in, y, uniform_unit_at(f, p, u)); });
}

/// The scores launch's blocks: (kv head, run, tile) with the tile fastest.
struct score_blocks {
  index_t per_kv;  // query heads per kv head
  index_t runs;    // runs of up to score_heads per kv head
  index_t tiles;   // tiles of score_threads keys
  index_t kv_heads;

  TOKRED_HOST_DEVICE index_t count() const noexcept { return kv_heads * runs * tiles; }
};

template <kv_scheme S, class E>
__global__ void __launch_bounds__(score_threads)
    scores_kernel(uniform_format f, bool vidkv, score_blocks shape, index_t packed,
                  view<const E, 2, device_space> queries,  // (q_heads, head_dim)
                  uniform_packed<const E, device_space> keys, view<const E, 3, device_space> residual,
                  view<float, 2, device_space> scores) {  // (q_heads, P + R)
  __shared__ float staged[score_heads * score_chunk];     // (run heads, chunk channels)
  const index_t dim = queries.extent(1), keys_total = scores.extent(1);
  for (index_t b = blockIdx.x; b < shape.count(); b += gridDim.x) {  // uniform over the block
    const index_t tile = b % shape.tiles, run = b / shape.tiles % shape.runs, kv = b / (shape.tiles * shape.runs);
    const index_t first = kv * shape.per_kv + run * score_heads;
    const index_t left = shape.per_kv - run * score_heads;
    const int count = static_cast<int>(left < score_heads ? left : score_heads);
    const index_t t = tile * score_threads + threadIdx.x;
    float acc[score_heads] = {};
    for (index_t c0 = 0; c0 < dim; c0 += score_chunk) {
      const index_t n = dim - c0 < score_chunk ? dim - c0 : score_chunk;
      __syncthreads();  // the previous chunk (or block) is no longer read
      for (int i = 0; i < count; ++i)  // row by row: coalesced reads, no division per element
        for (index_t c = threadIdx.x; c < n; c += score_threads)
          staged[i * score_chunk + c] = widen(queries(first + i, c0 + c));
      __syncthreads();
      if (t < keys_total)
        accumulate_key_logits<score_heads, S>(f, vidkv, keys, residual, kv, packed, t, staged, score_chunk, count, c0,
                                              n, acc);
    }
    if (t < keys_total)
#pragma unroll
      for (int i = 0; i < score_heads; ++i)
        if (i < count) scores(first + i, t) = acc[i];
  }
}

}  // namespace cuda_uniform
}  // namespace detail

/// Uniform quantization on a CUDA stream: one thread per group, no workspace; fp32, fp16 and
/// bf16 caches with any strides; the same codes, scales and zero points as the CPU backend.
/// Checks run on the host (nothing is launched when one fails), in the CPU backend's order.
template <>
struct backend<uniform_quantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const uniform_quantize&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const uniform_quantize& p, const kv_inputs<E, device_space>& in,
                      const uniform_packed<E, device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_uniform_io(exec, p.format, in.cache, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const unsigned blocks = detail::blocks_for(detail::uniform_unit_count(p.format, prob),
                                                             detail::cuda_uniform::unit_threads);
    detail::with_scheme(p.format.scheme, [&](auto tag) {
      detail::cuda_uniform::quantize_kernel<decltype(tag)::value, E>
          <<<blocks, detail::cuda_uniform::unit_threads, 0, exec.stream>>>(p.format, p.round_each_op, prob, in.cache,
                                                                           out);
    });
    return detail::launch_status();
  }
};

/// Uniform dequantization on a CUDA stream: one thread per group, no workspace; any output
/// element type and strides.
template <>
struct backend<uniform_dequantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const uniform_dequantize&, const kv_problem&) { return 0; }

  template <class E, class Eout>
  static status apply(const cuda& exec, const uniform_dequantize& p, const uniform_packed<const E, device_space>& in,
                      const kv_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<E> && is_element_v<Eout>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_uniform_io(exec, p.format, out.cache, in); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const unsigned blocks = detail::blocks_for(detail::uniform_unit_count(p.format, prob),
                                                             detail::cuda_uniform::unit_threads);
    detail::with_scheme(p.format.scheme, [&](auto tag) {
      detail::cuda_uniform::dequantize_kernel<decltype(tag)::value, E, Eout>
          <<<blocks, detail::cuda_uniform::unit_threads, 0, exec.stream>>>(p.format, p.round_each_op, p.vidkv_dequant,
                                                                           prob, in, out.cache);
    });
    return detail::launch_status();
  }
};

/// Scores from packed keys on a CUDA stream: one launch, no workspace; fp32/fp16/bf16 caches and
/// queries of the same type, any strides; codes with inner stride 1.
template <>
struct backend<packed_key_scores, cuda> {
  static std::size_t workspace_bytes(const cuda&, const packed_key_scores&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const packed_key_scores& p, const packed_score_inputs<E, device_space>& in,
                      const packed_score_outputs<device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_packed_score_call(exec, p, in, out); s != status::ok) return s;
    namespace cu = detail::cuda_uniform;
    const kv_problem prob = detail::packed_score_problem(p, in);
    const index_t per_kv = in.queries.extent(0) / prob.heads;
    const cu::score_blocks shape{per_kv, (per_kv + cu::score_heads - 1) / cu::score_heads,
                                 (out.scores.extent(1) + cu::score_threads - 1) / cu::score_threads, prob.heads};
    const unsigned blocks = detail::blocks_for(shape.count(), 1);
    detail::with_scheme(p.format.scheme, [&](auto tag) {
      cu::scores_kernel<decltype(tag)::value, E><<<blocks, cu::score_threads, 0, exec.stream>>>(
          p.format, p.vidkv_dequant, shape, prob.tokens, in.queries, in.keys, in.residual, out.scores);
    });
    return detail::launch_status();
  }
};

}  // namespace tokred
