// tokred/cuda/dpp.cuh — the CUDA backend of cdpruner: conditional-DPP greedy MAP (CDPruner as
// OpenVINO GenAI ships it), eager, as OpenVINO runs it.
//
// A DPP runs over each group (a frame under scope::per_frame, else all tokens) or, with `split`,
// over each half of it; all of them in the same launches, whose shapes follow from the
// problem's shapes (a CUDA graph captures them):
//   prepare    one warp per token: ‖x‖², the scale 1/sqrt(‖x‖² + ε); pick keys reset
//   raw relevance  one warp per token: the score, or the mean cosine to the query rows (their
//              scales staged per block in shared memory), or 0
//   relevance  one block per DPP: the minimum and maximum of the raw relevance, r by the kernel's
//              min-max rule, the initial gains K_ii, and the first pick (largest gain, then lowest
//              index)
//   step t     t = 1 … k − 1, one launch each, one warp per token not yet picked: the kernel entry
//              with pick t − 1 (one warp dot), orthogonalised against the earlier picks'
//              coefficients, scaled by the pick's pivot, stored as the token's coefficient t − 1;
//              the gain lowered by its square; each block's largest rank key joins pick t's key by
//              one atomicMax
//   finish     as for divprune (<tokred/cuda/diversity.cuh>), then the row moves
//
// Values: <tokred/policy/diversity_steps.hpp>'s steps, each rounded once, over dot products
// summed by one warp (<tokred/cuda/warp_sums.cuh>). The CPU backend sums in its SIMD lanes, so
// gains agree within fp32 rounding and picks are the CPU's except on near-ties; as for the CPU,
// every pick is certified against the greedy MAP by definition (tests/cpu/test_dpp_replay.cpp
// replays this algorithm on the host, and the GPU test requires the replay's picks exactly).
// The relevance's minimum and maximum ignore NaN on both (`relevance_bounds`).
//
// Cost per DPP of n tokens keeping k: O(n·D) to prepare, O(n·Q·D) for relevance from Q query
// rows, O(k·n·(D + k)) for the steps; memory O(n·k) for the coefficients.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/diversity.cuh"  // cuda_diversity_host, threads, warps, max_grid_y
#include "tokred/cuda/selection.cuh"  // launch_emit, kept_list_index, blocks_for
#include "tokred/cuda/warp_sums.cuh"
#include "tokred/policy/diversity.hpp"
#include "tokred/policy/diversity_steps.hpp"
#include "tokred/policy/selection.hpp"  // rank_key

namespace tokred {
namespace detail {
namespace cuda_dpp {

using cuda_diversity::max_grid_y;
using cuda_diversity::threads;
using cuda_diversity::warps;

/// The DPPs of one call: `parts` per group (1, or 2 with split), each a run of tokens.
template <class E>
struct dpp_runs {
  view<const E, 2, device_space> rows;    // (tokens, dim) compared
  view<const E, 2, device_space> query;   // (queries, dim) or empty
  view<const float, 1, device_space> scores;  // (tokens,) relevance, or empty
  index_t n = 0, groups = 0, k = 0;        // tokens and picks per group
  index_t parts = 1;
  bool openvino = true;
  float weight = 0.5f;

  TOKRED_HOST_DEVICE index_t runs() const noexcept { return groups * parts; }
  /// Run u's first token within its group, its length, its picks and its first pick's slot.
  TOKRED_HOST_DEVICE index_t first(index_t u) const noexcept { return parts == 2 && u % 2 == 1 ? n / 2 : 0; }
  TOKRED_HOST_DEVICE index_t length(index_t u) const noexcept {
    return parts == 1 ? n : (u % 2 == 0 ? n / 2 : n - n / 2);
  }
  TOKRED_HOST_DEVICE index_t picks(index_t u) const noexcept {
    return parts == 1 ? k : (u % 2 == 0 ? k / 2 : k - k / 2);
  }
  TOKRED_HOST_DEVICE index_t slot(index_t u) const noexcept { return (u / parts) * k + (parts == 2 && u % 2 == 1 ? k / 2 : 0); }
  TOKRED_HOST_DEVICE index_t group(index_t u) const noexcept { return u / parts; }
};

/// The scratch of one call.
struct scratch {
  float* scale = nullptr;               // (tokens,) 1/sqrt(‖x‖² + ε)
  float* relevance = nullptr;           // (tokens,) r
  float* gain = nullptr;                // (tokens,) d²; ‖x‖² until the relevance kernel
  std::uint32_t* picked = nullptr;      // (tokens,) 1 once picked; finish: pick counts
  float* coefficients = nullptr;        // (tokens, k) C, token-major
  unsigned long long* keys = nullptr;   // (groups, k) each pick's rank key (group-local index)
  std::int64_t* kept = nullptr;         // (groups, k) ascending token indices

  static scratch carve(arena& ar, index_t tokens, index_t groups, index_t k) {
    scratch s;
    s.scale = ar.take<float>(tokens);
    s.relevance = ar.take<float>(tokens);
    s.gain = ar.take<float>(tokens);
    s.picked = ar.take<std::uint32_t>(tokens);
    s.coefficients = ar.take<float>(tokens, k);
    s.keys = ar.take<unsigned long long>(groups, k);
    s.kept = ar.take<std::int64_t>(groups, k);
    return s;
  }
};

template <class E>
__global__ void __launch_bounds__(threads) prepare_kernel(dpp_runs<E> r, scratch s) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t stride = r.rows.stride(1), dim = r.rows.extent(1), tokens = r.groups * r.n;
  for (index_t i = blockIdx.x * static_cast<index_t>(warps) + threadIdx.x / 32; i < tokens;
       i += static_cast<index_t>(gridDim.x) * warps) {
    const float sq = warp_dot(&r.rows(i, 0), stride, &r.rows(i, 0), stride, dim, lane);
    if (lane != 0) continue;
    s.gain[i] = sq;
    s.scale[i] = dpp_scale(sq);
    s.picked[i] = 0;
    if (i % r.n < r.k) s.keys[(i / r.n) * r.k + i % r.n] = 0ull;
  }
}

/// Query rows whose scales a relevance block stages at once.
inline constexpr index_t query_chunk = 64;

/// Every token's raw relevance m: its score, or the mean cosine to the query rows (each scaled by
/// 1/sqrt(‖q‖² + ε), staged per block a chunk of queries at a time), or 0; negated for the
/// original kernel. One warp per token, tiles of `warps` tokens per block.
template <class E>
__global__ void __launch_bounds__(threads) raw_relevance_kernel(dpp_runs<E> r, scratch s) {
  __shared__ float query_scale[query_chunk];
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  const index_t dim = r.rows.extent(1), stride = r.rows.stride(1), queries = r.query.extent(0);
  const index_t tokens = r.groups * r.n;
  const bool from_query = !requested(r.scores) && requested(r.query);
  for (index_t tile = blockIdx.x * static_cast<index_t>(warps); tile < tokens;
       tile += static_cast<index_t>(gridDim.x) * warps) {  // uniform per block
    const index_t i = tile + warp;
    float m = i < tokens && requested(r.scores) ? r.scores(i) : 0.0f;
    if (from_query) {
      for (index_t q0 = 0; q0 < queries; q0 += query_chunk) {
        const index_t count = queries - q0 < query_chunk ? queries - q0 : query_chunk;
        __syncthreads();  // the previous chunk's scales are no longer read
        for (index_t q = warp; q < count; q += warps) {
          const float qq = warp_dot(&r.query(q0 + q, 0), r.query.stride(1), &r.query(q0 + q, 0), r.query.stride(1), dim, lane);
          if (lane == 0) query_scale[q] = dpp_scale(qq);
        }
        __syncthreads();
        if (i < tokens)
          for (index_t q = 0; q < count; ++q) {
            const float dot = warp_dot(&r.rows(i, 0), stride, &r.query(q0 + q, 0), r.query.stride(1), dim, lane);
            m = add_rn(m, mul_rn(dot, mul_rn(s.scale[i], query_scale[q])));
          }
      }
      m = div_rn(m, static_cast<float>(queries));
    }
    if (i < tokens && lane == 0) s.relevance[i] = r.openvino ? m : -m;
  }
}

/// Each DPP's relevance by the kernel's min-max rule, its initial gains and its first pick, one
/// block per DPP.
template <class E>
__global__ void __launch_bounds__(threads) relevance_kernel(dpp_runs<E> r, scratch s) {
  __shared__ float low_of[threads], high_of[threads];
  __shared__ unsigned long long best;
  for (index_t u = blockIdx.x; u < r.runs(); u += gridDim.x) {  // uniform per block
    if (r.picks(u) == 0) continue;  // the first half of a split group of one token keeps none
    const index_t g = r.group(u), base = g * r.n + r.first(u), len = r.length(u);
    relevance_bounds bounds;
    for (index_t t = threadIdx.x; t < len; t += threads) bounds.add(s.relevance[base + t]);
    low_of[threadIdx.x] = bounds.low;
    high_of[threadIdx.x] = bounds.high;
    if (threadIdx.x == 0) best = 0ull;
    __syncthreads();
    for (int w = 0; w < threads; ++w) bounds.merge({low_of[w], high_of[w]});
    const float low = bounds.low, range = sub_rn(bounds.high, bounds.low);
    unsigned long long mine = 0ull;
    for (index_t t = threadIdx.x; t < len; t += threads) {
      const index_t i = base + t;
      const float rel = dpp_relevance(r.openvino, s.relevance[i], low, range);
      s.relevance[i] = rel;
      const float gain = dpp_gain(dpp_entry(r.openvino, r.weight, s.gain[i], s.scale[i], s.scale[i], rel, rel));
      s.gain[i] = gain;
      const unsigned long long key = rank_key(gain, r.first(u) + t);
      mine = key > mine ? key : mine;
    }
    atomicMax(&best, mine);
    __syncthreads();
    if (threadIdx.x == 0) s.keys[r.slot(u)] = best;
    __syncthreads();  // low_of, high_of and best are read before the next run's
  }
}

/// Step t: pick t − 1 of every DPP that has one, applied to its tokens not yet picked.
template <class E>
__global__ void __launch_bounds__(threads) step_kernel(dpp_runs<E> r, index_t t, scratch s) {
  __shared__ unsigned long long block_best;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t warp = blockIdx.x * static_cast<index_t>(warps) + threadIdx.x / 32;
  const index_t dim = r.rows.extent(1), stride = r.rows.stride(1);
  for (index_t u = blockIdx.y; u < r.runs(); u += gridDim.y) {  // uniform per block
    if (t >= r.picks(u)) continue;
    if (threadIdx.x == 0) block_best = 0ull;
    __syncthreads();
    const index_t g = r.group(u), slot = r.slot(u), len = r.length(u);
    const index_t j = g * r.n + rank_key_index(s.keys[slot + t - 1]);  // pick t − 1's token
    const float pivot = dpp_scale(s.gain[j]);  // j's gain is final: picked tokens are not updated
    if (blockIdx.x == 0 && threadIdx.x == 0) s.picked[j] = 1;
    const float* cj = s.coefficients + j * r.k;
    unsigned long long mine = 0ull;
    for (index_t q = warp; q < len; q += static_cast<index_t>(gridDim.x) * warps) {
      const index_t i = g * r.n + r.first(u) + q;
      if (i == j || s.picked[i] != 0) continue;  // uniform per warp
      const float dot = warp_dot(&r.rows(j, 0), stride, &r.rows(i, 0), stride, dim, lane);
      if (lane != 0) continue;
      float* ci = s.coefficients + i * r.k;
      float e = dpp_entry(r.openvino, r.weight, dot, s.scale[j], s.scale[i], s.relevance[j], s.relevance[i]);
      for (index_t c = 0; c < t - 1; ++c) e = dpp_orthogonalise(e, cj[c], ci[c]);
      e = mul_rn(e, pivot);
      ci[t - 1] = e;
      const float gain = dpp_gain(sub_rn(s.gain[i], mul_rn(e, e)));
      s.gain[i] = gain;
      const unsigned long long key = rank_key(gain, r.first(u) + q);
      mine = key > mine ? key : mine;
    }
    if (lane == 0 && mine != 0ull) atomicMax(&block_best, mine);
    __syncthreads();
    if (threadIdx.x == 0 && block_best != 0ull) atomicMax(s.keys + slot + t, block_best);
    __syncthreads();  // block_best is read before the next run resets it
  }
}

}  // namespace cuda_dpp
}  // namespace detail

/// cdpruner on a CUDA stream (see <tokred/cuda/dpp.cuh>): OpenVINO's eager greedy MAP, every DPP of
/// the call in the same launches; picks certified as the CPU backend's are.
template <>
struct backend<cdpruner, cuda> : detail::cuda_diversity::cuda_diversity_host<cdpruner, detail::cuda_dpp::scratch> {
  template <class Ein, class Eout>
  static status apply(const cuda& exec, const cdpruner& p, const diversity_inputs<Ein, device_space>& in,
                      const diversity_outputs<Eout, device_space>& out, workspace ws) {
    namespace cu = detail::cuda_dpp;
    cu::scratch s;
    if (status st = checked_scratch(exec, p, in, out, ws, s); st != status::ok) return st;

    const detail::selection_groups groups = detail::groups_of(p.within, in.grid);
    const index_t k = detail::diversity_count(p, in.grid).count / groups.groups;
    cu::dpp_runs<Ein> r;
    r.rows = detail::compared_rows(in);
    if (detail::reads_scores<cdpruner>(in)) r.scores = in.scores;
    if (detail::reads_query<cdpruner>(in)) r.query = in.query;
    r.n = groups.group_tokens;
    r.groups = groups.groups;
    r.k = k;
    r.parts = p.split ? 2 : 1;
    r.openvino = p.kernel == dpp_kernel::openvino;
    r.weight = p.relevance_weight;
    const unsigned y = r.runs() < cu::max_grid_y ? static_cast<unsigned>(r.runs()) : cu::max_grid_y;
    const index_t longest = r.parts == 1 ? r.n : r.n - r.n / 2, most = r.parts == 1 ? k : k - k / 2;
    cu::prepare_kernel<Ein><<<detail::blocks_for(in.grid.tokens(), cu::warps), cu::threads, 0, exec.stream>>>(r, s);
    cu::raw_relevance_kernel<Ein><<<detail::blocks_for(in.grid.tokens(), cu::warps), cu::threads, 0, exec.stream>>>(r, s);
    cu::relevance_kernel<Ein><<<detail::blocks_for(r.runs(), 1), cu::threads, 0, exec.stream>>>(r, s);
    const dim3 per_token(detail::blocks_for(longest, cu::warps), y);
    for (index_t t = 1; t < most; ++t) cu::step_kernel<Ein><<<per_token, cu::threads, 0, exec.stream>>>(r, t, s);
    return finish_and_emit(exec, p, in, out, s);
  }
};

}  // namespace tokred
