// tokred/cuda/selection.cuh — CUDA backends of topk, uniform, random_subset and gather.
//
// Two stream-ordered kernels, their launch shapes fixed by the problem's shapes alone, so a
// CUDA graph can capture them:
//   select  (topk, random_subset) one block per group finds the exact k-th ranked key by
//           radix select over the 32-bit keys and writes the group's kept indices, ascending,
//           to the workspace. The ranking is the CPU backend's: key descending, then index
//           ascending.
//   emit    every selection: moves each kept row's `source`, `positions` and `tokens`.
// Uniform computes its picks in closed form inside `emit` and gather reads the caller's index
// list there, so neither launches `select` nor needs workspace.
//
// Indices and values match the CPU backend bit for bit: keys come from the same host/device
// functions of <tokred/policy/selection.hpp>, rows are copied, or converted through fp32 with
// the integer-only rounding of <tokred/core/element.hpp>.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {
namespace detail {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Threads of one select block. A whole group (up to ~100k tokens for a long video under
/// global scope) is ranked by one block, so it wants many threads; 512 leaves room for two
/// blocks per SM when per-frame scope launches many groups. Provisional: measure select time
/// for N = 576 … 100k, global and per-frame, at 256 / 512 / 1024.
inline constexpr int select_threads = 512;

/// Keys per thread in one compaction tile (blocked arrangement, so a tile of
/// select_threads · select_items keys needs one block scan). Provisional: 4 amortises the scan's
/// two barriers; measure 1 / 4 / 8 on a 100k-token group.
inline constexpr int select_items = 4;

/// Bits resolved per radix pass: 8 gives 4 passes over 256 shared-memory bins. 11 bits (3
/// passes, 2048 bins) saves one pass over the keys but makes the digit scan 8× wider.
/// Provisional: measure both on 576-token and 100k-token groups.
inline constexpr int radix_bits = 8;
inline constexpr int radix_bins = 1 << radix_bits;
inline constexpr int radix_passes = 32 / radix_bits;
static_assert(32 % radix_bits == 0, "the radix passes must cover the 32-bit key exactly");
static_assert(select_threads >= radix_bins, "the digit scan gives each bin its own thread");

/// Threads of one emit block; rows are spread over it `threads_per_row` at a time. 256 keeps
/// a 4096-wide fp32 row to 4 16-byte vectors per thread. Provisional: measure 128 / 256 / 512
/// on the benchmark's D = 1024 and 4096 rows.
inline constexpr int emit_threads = 256;

/// 16-byte vectors one thread loads before it stores any, so that several loads are in flight.
/// Provisional: measure 1 / 2 / 4 / 8 against a device-to-device memcpy of the kept bytes.
inline constexpr int emit_unroll = 4;

/// Largest grid x-extent; kernels stride over whatever does not fit.
inline constexpr index_t max_grid_blocks = std::numeric_limits<std::int32_t>::max();

/// Calls `f(i)` for each of `count` items this thread owns: one item per thread of the grid, the
/// grid striding over what does not fit.
template <class F>
__device__ inline void for_each_thread_item(index_t count, const F& f) {
  for (index_t i = blockIdx.x * static_cast<index_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<index_t>(gridDim.x) * blockDim.x)
    f(i);
}

/// Blocks for `items` work items at `per_block` items a block, at least one, at most the
/// largest grid (kernels stride over the rest).
inline unsigned blocks_for(index_t items, index_t per_block) noexcept {
  index_t blocks = (items + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > max_grid_blocks) blocks = max_grid_blocks;
  return static_cast<unsigned>(blocks);
}

// ---------------------------------------------------------------------------------------------
// select: the k largest keys of each group, ascending indices, into the workspace.

/// Ranking key of token `i` for topk: the score mapped to an order-preserving unsigned key.
struct score_key_of {
  view<const float, 1, device_space> scores;  // (tokens,)
  __device__ std::uint32_t operator()(index_t i) const { return score_key(float_bits(scores(i))); }
};

/// Ranking key of token `i` for random_subset: the counter-based hash of (seed, i).
struct random_key_of {
  std::uint64_t seed;
  __device__ std::uint32_t operator()(index_t i) const { return random_key(seed, i); }
};

using select_scan = cub::BlockScan<unsigned long long, select_threads>;

/// Shared memory of one select block.
struct select_shared {
  typename select_scan::TempStorage scan;
  std::uint32_t histogram[radix_bins];  // (bins,) keys per digit among those matching the prefix
  std::uint32_t digit;                  // the digit holding the k-th key
  std::uint32_t above;                  // matching keys with a larger digit
};

/// The k-th largest key and how many keys equal to it are kept (the lowest-indexed ones).
struct radix_threshold {
  std::uint32_t key;
  std::uint32_t equal_kept;
};

/// Finds the bin, scanned from the largest digit down, in which the `remaining`-th key lies.
/// Exactly one bin qualifies: counts are non-negative and the matching keys number at least
/// `remaining`, so the running count crosses `remaining` once, in a non-empty bin.
__device__ inline void choose_digit(select_shared& sh, std::uint32_t remaining) {
  const int bin = radix_bins - 1 - static_cast<int>(threadIdx.x);
  const unsigned long long count = bin >= 0 ? sh.histogram[bin] : 0ull;
  unsigned long long above = 0;
  select_scan(sh.scan).ExclusiveSum(count, above);
  if (bin >= 0 && above < remaining && above + count >= remaining) {
    sh.digit = static_cast<std::uint32_t>(bin);
    sh.above = static_cast<std::uint32_t>(above);
  }
  __syncthreads();
}

/// Radix select of the k-th largest key among the group's `n` keys. The first pass computes
/// every key once into `keys` (the random hash costs two 64-bit mixes and strided scores load
/// uncoalesced, so later passes re-read the compact copy instead). A thread re-reads only the
/// keys it wrote itself, so the passes need no barrier for the global buffer.
template <class KeyOf>
__device__ radix_threshold find_threshold(const KeyOf& key_of, index_t first, std::uint32_t n,
                                          std::uint32_t k, std::uint32_t* keys,  // (n,)
                                          select_shared& sh) {
  std::uint32_t prefix = 0, mask = 0, remaining = k;
  for (int pass = 0; pass < radix_passes; ++pass) {
    const int shift = 32 - radix_bits * (pass + 1);
    for (int b = static_cast<int>(threadIdx.x); b < radix_bins; b += select_threads)
      sh.histogram[b] = 0;
    __syncthreads();
    for (std::uint32_t i = threadIdx.x; i < n; i += select_threads) {
      std::uint32_t key;
      if (pass == 0) {
        key = key_of(first + static_cast<index_t>(i));
        keys[i] = key;
      } else {
        key = keys[i];
      }
      // Integer adds commute, so the histogram (and all that follows) is deterministic.
      if ((key & mask) == prefix) atomicAdd(&sh.histogram[(key >> shift) & (radix_bins - 1)], 1u);
    }
    __syncthreads();
    choose_digit(sh, remaining);
    prefix |= sh.digit << shift;
    mask |= static_cast<std::uint32_t>(radix_bins - 1) << shift;
    remaining -= sh.above;
    __syncthreads();  // all have read digit, above and the histogram before the next pass
  }
  return {prefix, remaining};
}

/// Writes the kept indices in ascending order: every key above the threshold, and the first
/// `equal_kept` keys equal to it. Output slot = (keys above before i) + min(equal before i,
/// equal_kept), both counted by one block scan of a packed (above << 32 | equal) pair; a
/// group of at most 2^31 - 1 tokens keeps each half below 2^32. Tiles are read in blocked
/// order (thread t owns keys t·items …), so threads read keys others wrote: the barrier that
/// closes `find_threshold` makes them visible.
__device__ inline void compact_kept(const std::uint32_t* keys, std::uint32_t n,  // (n,)
                                    radix_threshold t, index_t first,
                                    std::int64_t* kept, std::uint32_t k,  // (k,)
                                    select_shared& sh) {
  constexpr std::uint32_t tile = select_threads * select_items;
  constexpr unsigned long long above_one = 1ull << 32;
  unsigned long long carry = 0;  // the packed counts of all earlier tiles
  for (std::uint32_t base = 0; base < n; base += tile) {
    const std::uint32_t mine = base + threadIdx.x * select_items;
    unsigned long long flags[select_items];
    unsigned long long before[select_items];
#pragma unroll
    for (int j = 0; j < select_items; ++j) {
      const std::uint32_t i = mine + static_cast<std::uint32_t>(j);
      const std::uint32_t key = i < n ? keys[i] : 0u;
      flags[j] = i >= n ? 0ull : key > t.key ? above_one : key == t.key ? 1ull : 0ull;
    }
    unsigned long long tile_total = 0;
    select_scan(sh.scan).ExclusiveSum(flags, before, tile_total);
#pragma unroll
    for (int j = 0; j < select_items; ++j) {
      const unsigned long long counts = carry + before[j];
      const auto greater = static_cast<std::uint32_t>(counts >> 32);
      const auto equal = static_cast<std::uint32_t>(counts & 0xFFFFFFFFull);
      const bool keep = flags[j] == above_one || (flags[j] == 1ull && equal < t.equal_kept);
      const std::uint32_t slot = greater + (equal < t.equal_kept ? equal : t.equal_kept);
      // slot < k always holds for an exact threshold; the test only fences the workspace.
      if (keep && slot < k)
        kept[slot] = first + static_cast<index_t>(mine + static_cast<std::uint32_t>(j));
    }
    carry += tile_total;
    __syncthreads();  // the next tile reuses the scan's shared memory
  }
}

/// One block per group (striding when there are more groups than blocks): group g's tokens are
/// [g·n, (g+1)·n), its kept indices go to kept[g·k, (g+1)·k).
template <class KeyOf>
__global__ void __launch_bounds__(select_threads)
    select_kernel(KeyOf key_of, index_t groups, std::uint32_t n, std::uint32_t k,
                  std::uint32_t* keys,   // (tokens,)
                  std::int64_t* kept) {  // (kept,)
  __shared__ select_shared sh;
  for (index_t g = blockIdx.x; g < groups; g += gridDim.x) {
    const index_t first = g * static_cast<index_t>(n);
    const radix_threshold t = find_threshold(key_of, first, n, k, keys + first, sh);
    compact_kept(keys + first, n, t, first, kept + g * static_cast<index_t>(k), k, sh);
  }
}

// ---------------------------------------------------------------------------------------------
// emit: kept row j's source, positions and tokens, for whichever of them are requested.

/// Row j's original index from the select kernel's list.
struct kept_list_index {
  const std::int64_t* kept;  // (kept,)
  __device__ index_t operator()(index_t j) const { return kept[j]; }
};

/// Row j's original index for uniform, in closed form (no workspace, no select kernel).
struct uniform_index {
  index_t group_kept;
  index_t group_tokens;
  __device__ index_t operator()(index_t j) const {
    const index_t g = j / group_kept;
    return g * group_tokens + uniform_pick(j - g * group_kept, group_kept, group_tokens);
  }
};

/// Row j's original index from the caller's list (gather).
struct listed_index {
  view<const std::int64_t, 1, device_space> index;  // (kept,)
  __device__ index_t operator()(index_t j) const { return index(j); }
};

/// Which outputs a call writes.
struct emit_flags {
  bool tokens;
  bool source;
  bool positions;
};

/// How rows map onto an emit block: 2^log2_threads_per_row threads share a row.
struct emit_shape {
  int log2_threads_per_row;
  unsigned blocks;
};

/// One element in the output type: the same bits when the types agree, else through fp32.
template <class Eout, class Ein>
__device__ inline Eout convert_element(Ein x) {
  if constexpr (std::is_same_v<Ein, Eout>)
    return x;  // bit copy: NaN payloads survive
  else
    return from_float<Eout>(to_float(x));
}

/// Copies one row whose source and destination are both contiguous, 16-byte aligned and of the
/// same type, as 16-byte vectors plus an element tail.
template <class E>
__device__ inline void copy_row_vectorised(const E* src, E* dst, index_t dim, int lane,
                                           int threads_per_row) {
  constexpr index_t per_vector = 16 / static_cast<index_t>(sizeof(E));
  const index_t vectors = dim / per_vector;
  const auto* src_v = reinterpret_cast<const uint4*>(src);
  auto* dst_v = reinterpret_cast<uint4*>(dst);
  const index_t step = threads_per_row;
  for (index_t u = lane; u < vectors; u += step * emit_unroll) {
    uint4 v[emit_unroll];
#pragma unroll
    for (int r = 0; r < emit_unroll; ++r)
      if (u + r * step < vectors) v[r] = src_v[u + r * step];
#pragma unroll
    for (int r = 0; r < emit_unroll; ++r)
      if (u + r * step < vectors) dst_v[u + r * step] = v[r];
  }
  for (index_t c = vectors * per_vector + lane; c < dim; c += step) dst[c] = src[c];
}

/// Copies one row of any strides, converting the element type through fp32 if it differs.
template <class Ein, class Eout>
__device__ inline void copy_row_strided(
    const view<const Ein, 2, device_space>& in,  // (tokens, dim)
    const view<Eout, 2, device_space>& out,      // (kept, dim)
    index_t i, index_t j, int lane, int threads_per_row) {
  const index_t dim = in.extent(1);
  for (index_t c = lane; c < dim; c += threads_per_row) out(j, c) = convert_element<Eout>(in(i, c));
}

/// Moves kept rows. An index outside [0, N) — possible only for a caller's gather list, which
/// the host cannot read without a sync — leaves that output row unwritten and reads nothing.
template <bool Vectorised, class Ein, class Eout, class IndexOf>
__global__ void __launch_bounds__(emit_threads)
    emit_kernel(IndexOf index_of, index_t kept, token_grid grid,
                view<const Ein, 2, device_space> tokens,  // (tokens, dim)
                selection_outputs<Eout, device_space> out, emit_flags want,
                int log2_threads_per_row) {
  const int threads_per_row = 1 << log2_threads_per_row;
  const int lane = static_cast<int>(threadIdx.x) & (threads_per_row - 1);
  const index_t rows_per_block = emit_threads >> log2_threads_per_row;
  const index_t n = grid.tokens();
  for (index_t j = blockIdx.x * rows_per_block + (threadIdx.x >> log2_threads_per_row); j < kept;
       j += static_cast<index_t>(gridDim.x) * rows_per_block) {
    const index_t i = index_of(j);
    if (i < 0 || i >= n) continue;
    if (lane == 0) {
      if (want.source) out.source(j) = i;
      if (want.positions) {
        const token_position p = grid.position(i);
        out.positions(j, 0) = p.t;
        out.positions(j, 1) = p.h;
        out.positions(j, 2) = p.w;
      }
    }
    if (!want.tokens) continue;
    if constexpr (Vectorised)
      copy_row_vectorised(&tokens(i, 0), &out.tokens(j, 0), tokens.extent(1), lane,
                          threads_per_row);
    else
      copy_row_strided(tokens, out.tokens, i, j, lane, threads_per_row);
  }
}

/// True when rows can move as 16-byte vectors: same type, unit inner strides, and every row
/// start of both views 16-byte aligned (base address and row stride in bytes).
template <class Ein, class Eout>
bool rows_vectorisable(const view<const Ein, 2, device_space>& tokens,  // (tokens, dim)
                       const view<Eout, 2, device_space>& out) {        // (kept, dim)
  if constexpr (!std::is_same_v<Ein, Eout>) {
    return false;
  } else {
    const auto aligned = [](const auto& v) {
      const index_t row_bytes = v.stride(0) * static_cast<index_t>(sizeof(Ein));
      return v.has_unit_inner_stride() && row_bytes % 16 == 0 &&
             reinterpret_cast<std::uintptr_t>(v.data_handle()) % 16 == 0;
    };
    return aligned(tokens) && aligned(out);
  }
}

/// The emit launch shape, from the row width alone: the fewest threads per row (a power of two,
/// at most a block) that give every thread one unit (a vector, or an element) per pass.
inline emit_shape emit_shape_for(index_t kept, index_t units_per_row) {
  int log2_tpr = 0;
  while ((index_t{1} << log2_tpr) < units_per_row && (1 << log2_tpr) < emit_threads) ++log2_tpr;
  const index_t rows_per_block = emit_threads >> log2_tpr;
  index_t blocks = (kept + rows_per_block - 1) / rows_per_block;
  if (blocks > max_grid_blocks) blocks = max_grid_blocks;
  return {log2_tpr, static_cast<unsigned>(blocks)};
}

/// `device_error` if the runtime reports an error for the launches so far.
inline status launch_status() {
  return cudaGetLastError() == cudaSuccess ? status::ok : status::device_error;
}

/// Launches the emit kernel for `kept` rows on the exec's stream.
template <class Ein, class Eout, class IndexOf>
status launch_emit(const cuda& exec, const IndexOf& index_of, index_t kept, const token_grid& grid,
                   const view<const Ein, 2, device_space>& tokens,  // (tokens, dim)
                   const selection_outputs<Eout, device_space>& out) {
  const emit_flags want{requested(out.tokens), requested(out.source), requested(out.positions)};
  if (kept == 0 || (!want.tokens && !want.source && !want.positions)) return status::ok;  // no launch of 0 blocks
  const index_t dim = want.tokens ? tokens.extent(1) : 0;
  const bool vectorised = want.tokens && rows_vectorisable(tokens, out.tokens);
  const index_t units = vectorised ? (dim * static_cast<index_t>(sizeof(Ein)) + 15) / 16 : dim;
  const emit_shape shape = emit_shape_for(kept, units);
  if constexpr (std::is_same_v<Ein, Eout>) {
    if (vectorised) {
      emit_kernel<true, Ein, Eout><<<shape.blocks, emit_threads, 0, exec.stream>>>(
          index_of, kept, grid, tokens, out, want, shape.log2_threads_per_row);
      return launch_status();
    }
  }
  emit_kernel<false, Ein, Eout><<<shape.blocks, emit_threads, 0, exec.stream>>>(
      index_of, kept, grid, tokens, out, want, shape.log2_threads_per_row);
  return launch_status();
}

// ---------------------------------------------------------------------------------------------
// The backends.

/// The workspace one budgeted selection needs on CUDA.
struct cuda_selection_scratch {
  std::uint32_t* keys = nullptr;  // (tokens,) every token's ranking key
  std::int64_t* kept = nullptr;   // (kept,) kept indices, ascending within each group
};

/// The CUDA implementation shared by the budgeted selections; `Policy` is topk, uniform or
/// random_subset.
template <class Policy>
struct cuda_budgeted_selection {
  static constexpr bool ranks = !std::is_same_v<Policy, uniform>;  // uniform needs no scratch

  /// The one carve-up, run by `workspace_bytes` (counting) and by `apply` (carving).
  static cuda_selection_scratch carve(arena& a, const Policy& p, const token_grid& grid) {
    cuda_selection_scratch scratch;
    if constexpr (ranks) {
      scratch.keys = a.take<std::uint32_t>(grid.tokens());
      scratch.kept = a.take<std::int64_t>(selection_count(p.keep, p.within, grid).count);
    }
    return scratch;
  }

  static std::size_t workspace_bytes(const cuda& exec, const Policy& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    arena counter;
    carve(counter, p, prob.grid);
    return counter.used();
  }

  /// Checks on the host (nothing is launched when a check fails), then one select launch
  /// (topk, random_subset) and one emit launch on `exec.stream`.
  template <class Ein, class Eout>
  static status apply(const cuda& exec, const Policy& p,
                      const selection_inputs<Ein, device_space>& in,
                      const selection_outputs<Eout, device_space>& out, workspace ws) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = check_selection(p, std::is_same_v<Policy, topk>, in, out); s != status::ok)
      return s;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    arena carver(ws);
    const cuda_selection_scratch scratch = carve(carver, p, in.grid);
    if (!carver.fits()) return status::workspace_too_small;

    const selection_groups g = groups_of(p.within, in.grid);
    const index_t kept_total = selection_count(p.keep, p.within, in.grid).count;
    const index_t group_kept = kept_total / g.groups;
    if constexpr (ranks) {
      if (!requested(out.tokens) && !requested(out.source) && !requested(out.positions))
        return status::ok;
      const unsigned blocks =
          static_cast<unsigned>(g.groups < max_grid_blocks ? g.groups : max_grid_blocks);
      const auto n = static_cast<std::uint32_t>(g.group_tokens);
      const auto k = static_cast<std::uint32_t>(group_kept);
      if constexpr (std::is_same_v<Policy, topk>)
        select_kernel<<<blocks, select_threads, 0, exec.stream>>>(score_key_of{in.scores}, g.groups,
                                                                  n, k, scratch.keys, scratch.kept);
      else
        select_kernel<<<blocks, select_threads, 0, exec.stream>>>(random_key_of{p.seed}, g.groups,
                                                                  n, k, scratch.keys, scratch.kept);
      if (status s = launch_status(); s != status::ok) return s;
      return launch_emit(exec, kept_list_index{scratch.kept}, kept_total, in.grid, in.tokens, out);
    } else {
      return launch_emit(exec, uniform_index{group_kept, g.group_tokens}, kept_total, in.grid,
                         in.tokens, out);
    }
  }
};

}  // namespace detail

/// topk on a CUDA stream: workspace of N keys and K indices; see `tokred::topk`.
template <>
struct backend<topk, cuda> : detail::cuda_budgeted_selection<topk> {};
/// uniform on a CUDA stream: no workspace, one launch; see `tokred::uniform`.
template <>
struct backend<uniform, cuda> : detail::cuda_budgeted_selection<uniform> {};
/// random_subset on a CUDA stream: workspace of N keys and K indices; see `tokred::random_subset`.
template <>
struct backend<random_subset, cuda> : detail::cuda_budgeted_selection<random_subset> {};

/// Gather on a CUDA stream: one launch, no workspace.
///
/// The host checks everything it can without reading device memory (grid, shapes, null
/// pointers, aliasing). It cannot check the index values without a sync, so they are checked
/// on the device instead: an index outside [0, N) leaves that output row's tokens, source and
/// positions unwritten (and reads no token memory), the other rows are written, and the status
/// is still `ok`. Callers that need `index_out_of_range` validate the list with the CPU backend
/// or on the device themselves.
template <>
struct backend<gather, cuda> {
  static std::size_t workspace_bytes(const cuda&, const gather&, const problem&) { return 0; }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const gather&, const gather_inputs<Ein, device_space>& in,
                      const selection_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_gather(in, out); s != status::ok) return s;
    return detail::launch_emit(exec, detail::listed_index{in.index}, in.index.extent(0), in.grid,
                               in.tokens, out);
  }
};

}  // namespace tokred
