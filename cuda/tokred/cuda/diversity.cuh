// tokred/cuda/diversity.cuh — CUDA backends of divprune, kcenter and importance_diversity.
//
// The greedy max-min selection of <tokred/cpu/diversity.hpp>, eager: every step updates every
// token's distance to its nearest pick. Each group (a frame under scope::per_frame, else all
// tokens) is selected independently, all groups in the same launches. Launches, their shapes
// from the problem's shapes alone (a CUDA graph captures them; the test does):
//   prepare   one warp per token: ‖x‖² → the row's scale and self-distance; the pick keys reset
//   first     divprune: `bounds` (one warp per token: each column's two smallest among itself and
//             its grid neighbours at ±1, ±W and, where a group spans frames, ±H·W: an upper bound
//             of its score), `seed` (one block
//             per group: the column of the largest bound scanned in full, its key the best so
//             far), `scan` (blocks stride over the candidates; a candidate whose bound is above
//             the best has its column scanned, stopping once it is beaten, and its key joins
//             the best by atomicMax) — the exact argmax, whatever order the blocks run in;
//             kcenter: the `first` token; importance_diversity: the top score (`first` kernel)
//   step t    t = 1 … k − 1, one launch each, one warp per token: the distance to pick t − 1,
//             the running minimum, the score, and the candidate's 64-bit rank key into pick t's
//             key by atomicMax (largest score, then lowest index)
//   finish    one block per group: the picks in pick order, and ascending by a scan of each
//             token's pick count
//   emit      the kept rows, sources and positions (<tokred/cuda/selection.cuh>)
//
// Distances: a dot product or squared distance by one warp (<tokred/cuda/warp_sums.cuh>), then the
// host/device arithmetic of <tokred/policy/diversity_steps.hpp>. The sums run in another order
// than the CPU backend's SIMD lanes, so distances agree with the CPU's within fp32 rounding and
// the picks are the CPU's except where two candidates' scores agree to within that rounding: as
// for the CPU backend, every pick is certified against the double-precision oracle
// (tests/cpu/test_diversity_replay.cpp replays this algorithm on the host, and the GPU test
// requires the replay's picks exactly).
//
// Cost per group of n tokens, dim D, k picks: O(n·D) to prepare, O(k·n·D) for the steps (every
// row read once per step), and for divprune's first pick O(n·D) plus O(n·D) per candidate whose
// bound beats the best (few on image-like rows; O(n²·D) at worst).
#pragma once

#include <cstdint>
#include <type_traits>

#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_emit, kept_list_index, blocks_for
#include "tokred/cuda/warp_sums.cuh"
#include "tokred/policy/diversity.hpp"
#include "tokred/policy/diversity_steps.hpp"
#include "tokred/policy/selection.hpp"  // rank_key

namespace tokred {
namespace detail {
namespace cuda_diversity {

// Tuning. Not measured yet: each comment names the measurement that should set it.

/// Threads of every block: 8 warps. Measure 128 / 256 / 512 on N = 576 and 9216, D = 1024.
inline constexpr int threads = 256;
inline constexpr int warps = threads / 32;
/// Blocks of the divprune scan, striding over a group's candidates. Measure 64 … 1024 with
/// i.i.d. rows (many candidates survive their bound) and image-like ones (few do).
inline constexpr unsigned scan_blocks = 128;
/// The grid's largest y extent; kernels stride over the groups beyond it.
inline constexpr unsigned max_grid_y = 65535;

/// The groups of one call and the rows compared.
template <class E>
struct group_rows {
  view<const E, 2, device_space> rows;  // (tokens, dim) compared
  index_t n = 0;                        // tokens per group
  index_t groups = 0;
  index_t k = 0;                        // picks per group

  __device__ const E* row(index_t g, index_t t) const { return &rows(g * n + t, 0); }
};

/// The scratch of one call.
struct scratch {
  float* scale = nullptr;               // (tokens,) maxmin_scale of every row
  float* self = nullptr;                // (tokens,) d(i, i)
  float* nearest = nullptr;             // (tokens,) distance to the nearest pick so far
  std::uint32_t* picked = nullptr;      // (tokens,) 1 once picked (picks before the current one);
                                        //   finish: each token's pick count
  unsigned long long* bound = nullptr;  // (tokens,) divprune: each column's bound key
  unsigned long long* keys = nullptr;   // (groups, k) each pick's rank key
  std::int64_t* kept = nullptr;         // (groups, k) the picks, ascending, as token indices

  static scratch carve(arena& ar, index_t tokens, index_t groups, index_t k) {
    scratch s;
    s.scale = ar.take<float>(tokens);
    s.self = ar.take<float>(tokens);
    s.nearest = ar.take<float>(tokens);
    s.picked = ar.take<std::uint32_t>(tokens);
    s.bound = ar.take<unsigned long long>(tokens);
    s.keys = ar.take<unsigned long long>(groups, k);
    s.kept = ar.take<std::int64_t>(groups, k);
    return s;
  }
};

/// d(i, j) of group g's tokens i and j, by one warp (every lane gets it).
template <distance_kind Kind, class E>
__device__ float pair_distance(const group_rows<E>& r, index_t g, index_t i, index_t j, const float* scale, int lane) {
  const index_t stride = r.rows.stride(1), dim = r.rows.extent(1);
  const float raw = Kind == distance_kind::cosine
                        ? warp_dot(r.row(g, i), stride, r.row(g, j), stride, dim, lane)
                        : warp_squared_distance(r.row(g, i), stride, r.row(g, j), stride, dim, lane);
  return maxmin_distance<Kind>(raw, scale[g * r.n + i], scale[g * r.n + j]);
}

/// Calls f(g, t, lane) for every (group, token) this warp owns: warps stride over a group's
/// tokens along x and over the groups along y.
template <class E, class F>
__device__ void for_each_warp_token(const group_rows<E>& r, const F& f) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t warp = blockIdx.x * static_cast<index_t>(warps) + threadIdx.x / 32;
  for (index_t g = blockIdx.y; g < r.groups; g += gridDim.y)
    for (index_t t = warp; t < r.n; t += static_cast<index_t>(gridDim.x) * warps) f(g, t, lane);
}

template <distance_kind Kind, class E>
__global__ void __launch_bounds__(threads) prepare_kernel(group_rows<E> r, scratch s) {
  const index_t stride = r.rows.stride(1), dim = r.rows.extent(1);
  for_each_warp_token(r, [&](index_t g, index_t t, int lane) {
    const float sq = warp_dot(r.row(g, t), stride, r.row(g, t), stride, dim, lane);
    if (lane != 0) return;
    const index_t i = g * r.n + t;
    const float scale = maxmin_scale<Kind>(sq);
    s.scale[i] = scale;
    s.self[i] = Kind == distance_kind::squared_euclidean && scale == scale ? 0.0f
                                                                             : maxmin_distance<Kind>(sq, scale, scale);
    s.picked[i] = 0;
    if (t < r.k) s.keys[g * r.k + t] = 0ull;
  });
}

/// divprune: every column's two smallest among itself and its neighbours at ±1, ±`near` and
/// ±`frame` (0: none).
template <class E>
__global__ void __launch_bounds__(threads) bounds_kernel(group_rows<E> r, index_t near, index_t frame, scratch s) {
  for_each_warp_token(r, [&](index_t g, index_t t, int lane) {
    const index_t i = g * r.n + t;
    two_smallest column{s.self[i], positive_infinity()};
    const index_t offsets[6] = {1, -1, near, -near, frame, -frame};
    for (const index_t o : offsets)
      if (o != 0 && t + o >= 0 && t + o < r.n)
        column.add(pair_distance<distance_kind::cosine>(r, g, t, t + o, s.scale, lane));
    if (lane == 0) s.bound[i] = rank_key(s.scale[i] == s.scale[i] ? column.second : quiet_nan(), t);
  });
}

/// The key of group g's column j (its second-smallest distance, a NaN row ranking last),
/// scanned by the whole block; 0 when `beat` (the best key so far, re-read as it grows) stops
/// it first. The warps take rows in turn; a warp's running second smallest only falls as rows
/// are added, so once its key is below the best the column cannot win.
template <class E>
__device__ unsigned long long column_key(const group_rows<E>& r, index_t g, index_t j, const float* scale,
                                         const volatile unsigned long long* beat) {
  __shared__ two_smallest parts[warps];
  __shared__ int beaten;
  const int lane = static_cast<int>(threadIdx.x % 32), warp = static_cast<int>(threadIdx.x / 32);
  if (threadIdx.x == 0) beaten = 0;
  __syncthreads();
  two_smallest column{positive_infinity(), positive_infinity()};
  const bool valid = scale[g * r.n + j] == scale[g * r.n + j];
  // Rows outward from j (j, j + 1, j − 1, j + 2, …), nearest first: the ones likeliest to be
  // close, so that a column that cannot win is beaten early.
  for (index_t q = warp; q < 2 * r.n - 1; q += warps) {
    const index_t i = (q & 1) != 0 ? j + (q + 1) / 2 : j - q / 2;
    if (i < 0 || i >= r.n) continue;
    // Lane 0 decides for its warp: the distance below is a warp-wide collective.
    const int stop = __shfl_sync(0xFFFFFFFFu, lane == 0 ? *static_cast<volatile int*>(&beaten) : 0, 0);
    if (stop) break;
    column.add(pair_distance<distance_kind::cosine>(r, g, j, i, scale, lane));
    if (lane == 0 && valid && beat && rank_key(column.second, j) < *beat) *static_cast<volatile int*>(&beaten) = 1;
  }
  if (lane == 0) parts[warp] = column;
  __syncthreads();
  unsigned long long key = 0ull;
  if (!beaten) {
    two_smallest all = parts[0];
    for (int w = 1; w < warps; ++w) all.merge(parts[w]);
    key = rank_key(valid ? all.second : quiet_nan(), j);
  }
  __syncthreads();  // parts and beaten are read before the next column reuses them
  return key;
}

/// divprune: per group, the column with the largest bound scanned in full: pick 0's key so far.
template <class E>
__global__ void __launch_bounds__(threads) seed_kernel(group_rows<E> r, scratch s) {
  __shared__ unsigned long long top;
  for (index_t g = blockIdx.x; g < r.groups; g += gridDim.x) {  // uniform per block
    if (threadIdx.x == 0) top = 0ull;
    __syncthreads();
    unsigned long long mine = 0ull;
    for (index_t t = threadIdx.x; t < r.n; t += threads) mine = s.bound[g * r.n + t] > mine ? s.bound[g * r.n + t] : mine;
    atomicMax(&top, mine);
    __syncthreads();
    const unsigned long long key = column_key(r, g, rank_key_index(top), s.scale, nullptr);
    if (threadIdx.x == 0) s.keys[g * r.k] = key;
    __syncthreads();  // top is read before the next group resets it
  }
}

/// divprune: every candidate whose bound is above the best key so far, scanned; the exact argmax.
template <class E>
__global__ void __launch_bounds__(threads) scan_kernel(group_rows<E> r, scratch s) {
  __shared__ int skip;
  for (index_t g = blockIdx.y; g < r.groups; g += gridDim.y)
    for (index_t j = blockIdx.x; j < r.n; j += gridDim.x) {  // uniform per block
      const volatile unsigned long long* best = s.keys + g * r.k;
      // Thread 0 decides for the block: the best may grow between two threads' reads.
      if (threadIdx.x == 0) skip = s.bound[g * r.n + j] <= *best;
      __syncthreads();
      const bool skipped = skip != 0;
      __syncthreads();  // skip is read before thread 0 writes the next one
      if (skipped) continue;
      const unsigned long long key = column_key(r, g, j, s.scale, best);
      if (threadIdx.x == 0 && key != 0ull) atomicMax(s.keys + g * r.k, key);
    }
}

/// kcenter and importance_diversity: pick 0 of every group.
template <class P>
__global__ void __launch_bounds__(threads)
    first_kernel(P p, index_t n, index_t groups, index_t k, view<const float, 1, device_space> scores, scratch s) {
  __shared__ unsigned long long top;
  for (index_t g = blockIdx.x; g < groups; g += gridDim.x) {  // uniform per block
    if constexpr (std::is_same_v<P, kcenter>) {
      if (threadIdx.x == 0) s.keys[g * k] = rank_key(0.0f, p.first);
    } else {
      if (threadIdx.x == 0) top = 0ull;
      __syncthreads();
      unsigned long long mine = 0ull;
      for (index_t t = threadIdx.x; t < n; t += threads) {
        const unsigned long long key = rank_key(scores(g * n + t), t);
        mine = key > mine ? key : mine;
      }
      atomicMax(&top, mine);
      __syncthreads();
      if (threadIdx.x == 0) s.keys[g * k] = top;
      __syncthreads();  // top is read before the next group resets it
    }
  }
}

/// Greedy step t: every token's distance to pick t − 1, its running minimum and, for a
/// candidate, its rank key; the block's largest key joins pick t's key by one atomicMax.
template <distance_kind Kind, bool Weighted, class E>
__global__ void __launch_bounds__(threads)
    step_kernel(group_rows<E> r, index_t t, bool allow_repeats, view<const float, 1, device_space> scores, scratch s) {
  __shared__ unsigned long long block_best;
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t warp = blockIdx.x * static_cast<index_t>(warps) + threadIdx.x / 32;
  for (index_t g = blockIdx.y; g < r.groups; g += gridDim.y) {  // uniform per block
    if (threadIdx.x == 0) block_best = 0ull;
    __syncthreads();
    const index_t p = rank_key_index(s.keys[g * r.k + t - 1]);
    unsigned long long mine = 0ull;  // lane 0's: the largest key of its warp's tokens
    for (index_t j = warp; j < r.n; j += static_cast<index_t>(gridDim.x) * warps) {
      const float d = pair_distance<Kind>(r, g, p, j, s.scale, lane);
      if (lane != 0) continue;
      const index_t i = g * r.n + j;
      const float before = t == 1 ? positive_infinity() : s.nearest[i];
      const float nearest = d < before ? d : before;  // NaN distances are ignored
      s.nearest[i] = nearest;
      const bool picked = s.picked[i] != 0 || j == p;
      if (j == p) s.picked[i] = 1;
      if (picked && !allow_repeats) continue;
      const bool valid = s.scale[i] == s.scale[i];
      const float score = !valid ? quiet_nan() : Weighted ? weighted_distance(scores(i), nearest) : nearest;
      const unsigned long long key = rank_key(score, j);
      mine = key > mine ? key : mine;
    }
    if (lane == 0 && mine != 0ull) atomicMax(&block_best, mine);
    __syncthreads();
    if (threadIdx.x == 0 && block_best != 0ull) atomicMax(s.keys + g * r.k + t, block_best);
    __syncthreads();  // block_best is read before the next group resets it
  }
}

/// Every group's picks, from their keys (group-local indices): in pick order to `picks` (when
/// requested), and ascending, repeats included, to `kept`, both as token indices: each token's
/// pick count (in `counts`), an exclusive scan of the counts, then each token written at its
/// offset as many times as it was picked. O(n + k) per group.
__global__ void __launch_bounds__(threads)
    finish_kernel(index_t n, index_t groups, index_t k, const unsigned long long* keys,  // (groups, k)
                  std::uint32_t* counts,                                                 // (groups·n,)
                  std::int64_t* kept,                                                    // (groups, k)
                  view<std::int64_t, 1, device_space> picks) {
  using scan = cub::BlockScan<std::uint32_t, threads>;
  __shared__ typename scan::TempStorage temp;
  __shared__ std::uint32_t carry;
  for (index_t g = blockIdx.x; g < groups; g += gridDim.x) {  // uniform per block
    std::uint32_t* count = counts + g * n;
    for (index_t t = threadIdx.x; t < n; t += threads) count[t] = 0;
    if (threadIdx.x == 0) carry = 0;
    __syncthreads();
    for (index_t t = threadIdx.x; t < k; t += threads) {
      const index_t mine = rank_key_index(keys[g * k + t]);
      atomicAdd(count + mine, 1u);
      if (requested(picks)) picks(g * k + t) = g * n + mine;
    }
    __syncthreads();
    for (index_t t0 = 0; t0 < n; t0 += threads) {
      const index_t t = t0 + threadIdx.x;
      const std::uint32_t times = t < n ? count[t] : 0u;
      std::uint32_t before = 0, total = 0;
      scan(temp).ExclusiveSum(times, before, total);
      for (std::uint32_t c = 0; c < times; ++c) kept[g * k + carry + before + c] = g * n + t;
      __syncthreads();  // every thread has read carry and temp
      if (threadIdx.x == 0) carry += total;
      __syncthreads();
    }
  }
}

/// What every CUDA diversity backend (the max-min ones here, cdpruner in <tokred/cuda/dpp.cuh>)
/// does on the host: its scratch `Scratch::carve(arena, tokens, groups, picks per group)`,
/// `workspace_bytes`, the checks before any launch, and the finish and row moves after the picks.
template <class P, class Scratch>
struct cuda_diversity_host {
  static Scratch carve(arena& a, const P& p, const token_grid& grid) {
    const selection_groups g = groups_of(p.within, grid);
    return Scratch::carve(a, grid.tokens(), g.groups, diversity_count(p, grid).count / (g.groups ? g.groups : 1));
  }

  static std::size_t workspace_bytes(const cuda& exec, const P& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    arena counter;
    carve(counter, p, prob.grid);
    return counter.used();
  }

  /// Every check, in the CPU backend's order up to the workspace, then the carve into `s`.
  template <class Ein, class Eout>
  static status checked_scratch(const cuda& exec, const P& p, const diversity_inputs<Ein, device_space>& in,
                                const diversity_outputs<Eout, device_space>& out, workspace ws, Scratch& s) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>, "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status st = check_exec(exec); st != status::ok) return st;
    if (status st = check_diversity(p, in, out); st != status::ok) return st;
    if (status st = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, compared_rows(in).extent(1)}));
        st != status::ok)
      return st;
    arena carver(ws);
    s = carve(carver, p, in.grid);
    return carver.fits() ? status::ok : status::workspace_too_small;
  }

  /// After the picks' keys: the picks in pick order and ascending (finish_kernel, the scratch's
  /// `picked` holding the counts, no longer needed), then the kept rows, sources and positions.
  template <class Ein, class Eout>
  static status finish_and_emit(const cuda& exec, const P& p, const diversity_inputs<Ein, device_space>& in,
                                const diversity_outputs<Eout, device_space>& out, const Scratch& s) {
    const selection_groups g = groups_of(p.within, in.grid);
    const index_t total = diversity_count(p, in.grid).count;
    finish_kernel<<<blocks_for(g.groups, 1), threads, 0, exec.stream>>>(g.group_tokens, g.groups, total / g.groups,
                                                                        s.keys, s.picked, s.kept, out.picks);
    if (status st = launch_status(); st != status::ok) return st;
    const selection_outputs<Eout, device_space>& base = out;
    return launch_emit(exec, kept_list_index{s.kept}, total, in.grid, in.tokens, base);
  }
};

/// The CUDA backend the three max-min policies share.
template <class P>
struct cuda_maxmin : cuda_diversity_host<P, scratch> {
  static constexpr distance_kind kind =
      std::is_same_v<P, kcenter> ? distance_kind::squared_euclidean : distance_kind::cosine;
  using host = cuda_diversity_host<P, scratch>;

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const P& p, const diversity_inputs<Ein, device_space>& in,
                      const diversity_outputs<Eout, device_space>& out, workspace ws) {
    scratch s;
    if (status st = host::checked_scratch(exec, p, in, out, ws, s); st != status::ok) return st;

    const selection_groups groups = groups_of(p.within, in.grid);
    const index_t k = diversity_count(p, in.grid).count / groups.groups;
    const group_rows<Ein> r{compared_rows(in), groups.group_tokens, groups.groups, k};
    const unsigned y = groups.groups < max_grid_y ? static_cast<unsigned>(groups.groups) : max_grid_y;
    const dim3 per_token(blocks_for(r.n, warps), y);
    const unsigned per_group = blocks_for(groups.groups, 1);
    prepare_kernel<kind, Ein><<<per_token, threads, 0, exec.stream>>>(r, s);
    if constexpr (std::is_same_v<P, divprune>) {
      const first_pick_neighbours near(in.grid, r.n);
      bounds_kernel<Ein><<<per_token, threads, 0, exec.stream>>>(r, near.row, near.frame, s);
      seed_kernel<Ein><<<per_group, threads, 0, exec.stream>>>(r, s);
      const dim3 scan(r.n < scan_blocks ? static_cast<unsigned>(r.n) : scan_blocks, y);
      scan_kernel<Ein><<<scan, threads, 0, exec.stream>>>(r, s);
    } else {
      first_kernel<P><<<per_group, threads, 0, exec.stream>>>(p, r.n, r.groups, k, in.scores, s);
    }
    bool repeats = false;
    if constexpr (std::is_same_v<P, divprune>) repeats = p.allow_repeats;
    constexpr bool weighted = std::is_same_v<P, importance_diversity>;
    for (index_t t = 1; t < k; ++t)
      step_kernel<kind, weighted, Ein><<<per_token, threads, 0, exec.stream>>>(r, t, repeats, in.scores, s);
    return host::finish_and_emit(exec, p, in, out, s);
  }
};

}  // namespace cuda_diversity
}  // namespace detail

/// divprune on a CUDA stream (see <tokred/cuda/diversity.cuh>): picks certified as the CPU
/// backend's are, workspace from `workspace_bytes`.
template <>
struct backend<divprune, cuda> : detail::cuda_diversity::cuda_maxmin<divprune> {};
/// kcenter on a CUDA stream.
template <>
struct backend<kcenter, cuda> : detail::cuda_diversity::cuda_maxmin<kcenter> {};
/// importance_diversity on a CUDA stream; its scores are not checked on the host (a negative or
/// infinite one ranks by the arithmetic, NaN last).
template <>
struct backend<importance_diversity, cuda> : detail::cuda_diversity::cuda_maxmin<importance_diversity> {};

}  // namespace tokred
