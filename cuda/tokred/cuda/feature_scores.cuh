// tokred/cuda/feature_scores.cuh — CUDA backends of token_norm, query_relevance and
// temporal_similarity.
//
// One launch per call, no workspace, launch shapes from the shapes alone (a CUDA graph captures
// it). Rows are read by warps: lane l sums channels l, l + 32, … of a row in order, and the 32
// partial sums are combined by an xor butterfly, which gives every lane the same bits (fp32
// addition commutes). The arithmetic after the sums — square roots, torch's cosine with each norm
// clamped to 1e-8, the mean over query rows in query order — is <tokred/policy/feature_scores.hpp>'s
// host/device cosine_of, each step rounded once.
//   token_norm            one warp per token: √(Σ x²)
//   temporal_similarity   one warp per token: x·p, ‖x‖² and ‖p‖² in one pass over the token and
//                         its previous frame's slot; frame 0 gets first_frame
//   query_relevance       token level: blocks of 8 warps take 64 tokens, 8 a warp, each token's
//                         ‖x‖² first; per chunk of 64 query rows the block stages their squared
//                         norms in shared memory, then each warp adds its tokens' relevance to
//                         each query of the chunk, in query order (the running sums wait in
//                         shared memory between chunks)
//                         frame level: one block per frame; the frame's mean token (columns summed
//                         in fp32 in row order, one thread per channel, divided by H·W, rounded to
//                         E — the CPU backend's bits) in shared memory, the relevance to each query
//                         row by a warp, summed in query order by one thread
// Every sum runs in a fixed order, so runs give the same bits; the dot products and norms sum in
// another order than the CPU backend's SIMD lanes, so the two agree within the fp32 bound the
// tests hold both to, not bit for bit (frame means excepted).
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_status, blocks_for
#include "tokred/cuda/warp_sums.cuh"
#include "tokred/policy/feature_scores.hpp"

namespace tokred {
namespace detail {
namespace cuda_features {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Threads of every feature-score block: 8 warps. Provisional: measure 128 / 256 / 512 with
/// bench_feature_scores_cuda's EVS shape (16 frames × 729 × 3584, bf16) against its memcpy.
inline constexpr int threads = 256;
inline constexpr int warps = threads / 32;

/// Tokens of one query_relevance block (a whole number per warp).
inline constexpr index_t relevance_tokens = 64;
inline constexpr index_t tokens_per_warp = relevance_tokens / warps;

/// Query rows whose squared norms (token level) or relevances (frame level) a block stages at once.
inline constexpr index_t query_chunk = 64;

/// The widest row query_relevance at frame level can score: the frame's mean token in shared
/// memory (44 KiB).
inline constexpr index_t max_frame_dim = 11264;
static_assert(max_frame_dim * sizeof(float) + query_chunk * sizeof(float) + sizeof(float) <= 48 * 1024,
              "the frame block's mean token and relevances fit 48 KiB of shared memory");

/// x·y, x·x and y·y in one pass.
struct dot_norms {
  float xy, xx, yy;
};
template <class A, class B>
__device__ inline dot_norms warp_dot_norms(const A* x, index_t sx, const B* y, index_t sy, index_t dim, int lane) {
  float xy = 0.0f, xx = 0.0f, yy = 0.0f;
  for (index_t c = lane; c < dim; c += 32) {
    const float a = widen(x[c * sx]), b = widen(y[c * sy]);
    xy = fmaf(a, b, xy);
    xx = fmaf(a, a, xx);
    yy = fmaf(b, b, yy);
  }
  return {warp_sum(xy), warp_sum(xx), warp_sum(yy)};
}

// ---------------------------------------------------------------------------------------------
// Kernels.

/// Calls `f(i, lane)` for each row i handled by this warp (grid-stride over warps).
template <class F>
__device__ inline void for_each_warp_row(index_t rows, const F& f) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  for (index_t i = blockIdx.x * static_cast<index_t>(warps) + threadIdx.x / 32; i < rows;
       i += static_cast<index_t>(gridDim.x) * warps)
    f(i, lane);
}

template <class E>
__global__ void __launch_bounds__(threads) norm_kernel(view<const E, 2, device_space> rows, view<float, 1, device_space> scores) {
  for_each_warp_row(rows.extent(0), [&](index_t i, int lane) {
    const float sq = warp_dot(&rows(i, 0), rows.stride(1), &rows(i, 0), rows.stride(1), rows.extent(1), lane);
    if (lane == 0) scores(i) = sqrt_rn(sq);
  });
}

template <class E>
__global__ void __launch_bounds__(threads)
    temporal_kernel(temporal_similarity p, token_grid grid, view<const E, 2, device_space> rows,
                    view<float, 1, device_space> scores) {
  const index_t hw = grid.frame_tokens();
  for_each_warp_row(rows.extent(0), [&](index_t i, int lane) {
    if (i < hw) {
      if (lane == 0) scores(i) = p.first_frame;
      return;
    }
    const dot_norms d = warp_dot_norms(&rows(i, 0), rows.stride(1), &rows(i - hw, 0), rows.stride(1), rows.extent(1), lane);
    const float c = cosine_of(d.xy, d.xx, d.yy);
    if (lane == 0) scores(i) = p.is == temporal_similarity::measure::dissimilarity ? __fsub_rn(1.0f, c) : c;
  });
}

template <class E>
__global__ void __launch_bounds__(threads)
    relevance_token_kernel(query_relevance::measure is, view<const E, 2, device_space> rows,
                           view<const E, 2, device_space> query, view<float, 1, device_space> scores) {
  __shared__ float q_sq[query_chunk];
  __shared__ float token_sq[relevance_tokens], token_sum[relevance_tokens];  // written by lane 0 of the token's warp
  const index_t n = rows.extent(0), dim = rows.extent(1), queries = query.extent(0);
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const bool cosine = is == query_relevance::measure::cosine;
  for (index_t tile = blockIdx.x; tile * relevance_tokens < n; tile += gridDim.x) {  // uniform per block
    const index_t first = tile * relevance_tokens;
    for (index_t k = warp * tokens_per_warp; k < (warp + 1) * tokens_per_warp && first + k < n; ++k) {
      const float sq = cosine ? warp_dot(&rows(first + k, 0), rows.stride(1), &rows(first + k, 0), rows.stride(1), dim, lane)
                              : 0.0f;
      if (lane == 0) token_sq[k] = sq, token_sum[k] = 0.0f;
    }
    for (index_t q0 = 0; q0 < queries; q0 += query_chunk) {
      const index_t count = queries - q0 < query_chunk ? queries - q0 : query_chunk;
      __syncthreads();  // the previous chunk's norms are no longer read
      if (cosine)
        for (index_t m = warp; m < count; m += warps) {
          const float sq = warp_dot(&query(q0 + m, 0), query.stride(1), &query(q0 + m, 0), query.stride(1), dim, lane);
          if (lane == 0) q_sq[m] = sq;
        }
      __syncthreads();
      for (index_t k = warp * tokens_per_warp; k < (warp + 1) * tokens_per_warp && first + k < n; ++k) {
        float sum = token_sum[k];  // lane 0 wrote it; the barrier above published it
        for (index_t m = 0; m < count; ++m) {
          const float d = warp_dot(&rows(first + k, 0), rows.stride(1), &query(q0 + m, 0), query.stride(1), dim, lane);
          sum = __fadd_rn(sum, cosine ? cosine_of(d, token_sq[k], q_sq[m]) : d);
        }
        __syncwarp();
        if (lane == 0) token_sum[k] = sum;
      }
    }
    __syncwarp();
    for (index_t k = warp * tokens_per_warp; k < (warp + 1) * tokens_per_warp && first + k < n; ++k)
      if (lane == 0) scores(first + k) = __fdiv_rn(token_sum[k], static_cast<float>(queries));
    __syncthreads();  // the tile's sums are read before the next tile overwrites them
  }
}

template <class E>
__global__ void __launch_bounds__(threads)
    relevance_frame_kernel(query_relevance::measure is, token_grid grid, view<const E, 2, device_space> rows,
                           view<const E, 2, device_space> query, view<float, 1, device_space> scores) {
  extern __shared__ float mean[];  // (dim,) the frame's mean token, rounded to E
  __shared__ float relevance[query_chunk];
  __shared__ float mean_sq;
  const index_t hw = grid.frame_tokens(), dim = rows.extent(1), queries = query.extent(0);
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const bool cosine = is == query_relevance::measure::cosine;
  for (index_t t = blockIdx.x; t < grid.frames; t += gridDim.x) {  // uniform per block
    __syncthreads();  // the previous frame's mean is no longer read
    for (index_t c = threadIdx.x; c < dim; c += threads) {
      float s = 0.0f;
      for (index_t r = 0; r < hw; ++r) s = __fadd_rn(s, widen(rows(t * hw + r, c)));
      mean[c] = widen(from_float<E>(__fdiv_rn(s, static_cast<float>(hw))));
    }
    __syncthreads();
    if (warp == 0) {
      const float sq = cosine ? warp_dot(mean, index_t{1}, mean, index_t{1}, dim, lane) : 0.0f;
      if (lane == 0) mean_sq = sq;
    }
    float sum = 0.0f;  // thread 0's
    for (index_t q0 = 0; q0 < queries; q0 += query_chunk) {
      const index_t count = queries - q0 < query_chunk ? queries - q0 : query_chunk;
      __syncthreads();  // mean_sq written; the previous chunk's relevances summed
      for (index_t m = warp; m < count; m += warps) {
        if (cosine) {
          const dot_norms d = warp_dot_norms(mean, index_t{1}, &query(q0 + m, 0), query.stride(1), dim, lane);
          if (lane == 0) relevance[m] = cosine_of(d.xy, mean_sq, d.yy);
        } else {
          const float d = warp_dot(mean, index_t{1}, &query(q0 + m, 0), query.stride(1), dim, lane);
          if (lane == 0) relevance[m] = d;
        }
      }
      __syncthreads();
      if (threadIdx.x == 0)
        for (index_t m = 0; m < count; ++m) sum = __fadd_rn(sum, relevance[m]);
    }
    if (threadIdx.x == 0) scores(t) = __fdiv_rn(sum, static_cast<float>(queries));
  }
}

/// The CUDA backend the three feature scores share.
template <class P>
struct cuda_feature_scores {
  static std::size_t workspace_bytes(const cuda&, const P&, const problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const P& p, const feature_score_inputs<E, device_space>& in,
                      const score_outputs<device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = check_feature_scores(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens(), dim = in.tokens.extent(1);
    if constexpr (std::is_same_v<P, token_norm>) {
      norm_kernel<E><<<blocks_for(n, warps), threads, 0, exec.stream>>>(in.tokens, out.scores);
    } else if constexpr (std::is_same_v<P, temporal_similarity>) {
      temporal_kernel<E><<<blocks_for(n, warps), threads, 0, exec.stream>>>(p, in.grid, in.tokens, out.scores);
    } else if (p.at == query_relevance::level::frame) {
      if (dim > max_frame_dim) return status::invalid_parameter;
      relevance_frame_kernel<E><<<blocks_for(in.grid.frames, 1), threads, static_cast<std::size_t>(dim) * sizeof(float),
                                  exec.stream>>>(p.is, in.grid, in.tokens, in.query, out.scores);
    } else {
      relevance_token_kernel<E><<<blocks_for(n, relevance_tokens), threads, 0, exec.stream>>>(p.is, in.tokens, in.query, out.scores);
    }
    return launch_status();
  }
};

}  // namespace cuda_features
}  // namespace detail

/// token_norm on a CUDA stream: one warp per token, no workspace.
template <>
struct backend<token_norm, cuda> : detail::cuda_features::cuda_feature_scores<token_norm> {};
/// query_relevance on a CUDA stream: 64 tokens (token level) or one frame (frame level, rows up
/// to 11 264 wide, `invalid_parameter` beyond) per block, no workspace.
template <>
struct backend<query_relevance, cuda> : detail::cuda_features::cuda_feature_scores<query_relevance> {};
/// temporal_similarity on a CUDA stream: one warp per token, no workspace.
template <>
struct backend<temporal_similarity, cuda> : detail::cuda_features::cuda_feature_scores<temporal_similarity> {};

}  // namespace tokred
