// tokred/cuda/visionzip.cuh — the CUDA backend of visionzip.
//
// Stream-ordered launches whose shapes follow from the problem's shapes (a CUDA graph captures
// them), workspace from the caller, no host synchronization:
//   select    the dominant patches: <tokred/cuda/selection.cuh>'s radix select of the scores,
//             ascending (one block)
//   layout    one block: every row's dominant slot (−1 for the rest), the remaining rows R in
//             row order (a block scan), the targets (every step-th row of R)
//   scales    one thread per metric row: 1/‖m‖, the squared norm a multiply-add chain in column
//             order
//   assign    one warp per row of R: lane q takes target q (and q + 32, …), the dot a chain in
//             column order, the cosine (dot·s_r)·s_t; the warp's largest rank key (cosine, then the
//             lower target) is the row's target; a target joins itself
//   offsets   one block: each target's member count and offset, the slots and `assign`
//   members   one block per target: its members in row order (a block scan over R)
//   write     one block per output row: a dominant row copied, a contextual row summed from its
//             members in row order and merged with its target; size, source, position
//
// Values: the bits of the CPU backend `cpu<>` compiled in the same translation unit. The chains
// round as its multiply-add does (`chain_step`, fused where that ISA has FMA), the CPU backend's
// dots and norms are the same column-order chains (<tokred/cpu/visionzip.hpp>), and the rest is
// each step rounded once. Indices therefore match exactly, ties included.
//
// Cost: O(N) to select, O(rows·Dm) for the scales, O(|R|·C·Dm) to assign (each lane one chain),
// O(C·|R|) to place the members (C blocks, each a scan over R), O(rows·D) to write.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cub/block/block_scan.cuh>
#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // select_kernel, convert_element, launch_status, blocks_for
#include "tokred/cuda/tome.cuh"       // cuda_tome::fused
#include "tokred/policy/selection.hpp"
#include "tokred/policy/tome_steps.hpp"
#include "tokred/policy/visionzip.hpp"

namespace tokred {
namespace detail {
namespace cuda_visionzip {

using cuda_tome::fused;

// Tuning. Not measured yet: each comment names the measurement that should set it.

/// Threads of the one-thread-per-item and one-warp-per-item kernels. Measure 128 / 256.
inline constexpr int item_threads = 256;
inline constexpr int item_warps = item_threads / 32;
/// Threads of the layout and members block. Measure 256 / 1024 at 577 and 4609 rows.
inline constexpr int block_threads = 1024;
/// Threads of a write block (columns of one output row).
inline constexpr int write_threads = 256;

/// The scratch of one call.
struct scratch {
  std::uint32_t* keys = nullptr;      // (N,) the select kernel's keys
  std::int64_t* dominant = nullptr;   // (patches,) the dominant patches, ascending (patch indices)
  std::int32_t* slot = nullptr;       // (rows,) every row's output slot, −1 when dropped
  std::int32_t* remaining = nullptr;  // (|R|,) the rows of R, ascending
  std::int32_t* targets = nullptr;    // (C,) the target rows
  float* scale = nullptr;             // (rows,) 1/‖m‖
  std::int32_t* choice = nullptr;     // (rows,) the target a row of R joins
  std::int32_t* offsets = nullptr;    // (C + 1,) target q's members: members[offsets[q] …)
  std::int32_t* members = nullptr;    // (|R|,) each target's members, ascending rows

  static scratch carve(arena& ar, const visionzip_shape& s, index_t patches_n, index_t contextual) {
    scratch v;
    v.keys = ar.take<std::uint32_t>(patches_n);
    v.dominant = ar.take<std::int64_t>(s.patches);
    v.slot = ar.take<std::int32_t>(s.rows);
    v.remaining = ar.take<std::int32_t>(s.remaining);
    v.targets = ar.take<std::int32_t>(contextual);
    v.scale = ar.take<float>(s.rows);
    v.choice = ar.take<std::int32_t>(s.rows);
    v.offsets = ar.take<std::int32_t>(contextual + 1);
    v.members = ar.take<std::int32_t>(s.remaining);
    return v;
  }
};

/// What the kernels need of the call.
struct plan {
  visionzip_shape s;
  index_t cls = 0, dominant = 0, contextual = 0;
  contextual_merge merge = contextual_merge::target_plus_mean;
};

/// Exclusive scan of `count` values (value(t) for t < count) by a whole block, a tile at a time:
/// out(t, before) for every t, and the total returned to every thread. A value is read before
/// its tile is scanned and written after, so out may overwrite the values in place.
template <class Value, class Out>
__device__ index_t block_scan(index_t count, const Value& value, const Out& out) {
  using scan = cub::BlockScan<std::int32_t, block_threads>;
  __shared__ typename scan::TempStorage temp;
  __shared__ std::int32_t carry;
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  for (index_t t0 = 0; t0 < count; t0 += block_threads) {
    const index_t t = t0 + threadIdx.x;
    const std::int32_t x = t < count ? static_cast<std::int32_t>(value(t)) : 0;
    std::int32_t before = 0, total = 0;
    scan(temp).ExclusiveSum(x, before, total);
    if (t < count) out(t, static_cast<index_t>(carry + before));
    __syncthreads();  // every thread has read carry and temp
    if (threadIdx.x == 0) carry += total;
    __syncthreads();
  }
  const index_t total = carry;
  __syncthreads();  // carry is read before the next scan resets it
  return total;
}

/// The dominant slots, R and the targets.
__global__ void __launch_bounds__(block_threads) layout_kernel(plan pl, scratch v) {
  const index_t rows = pl.s.rows;
  for (index_t i = threadIdx.x; i < rows; i += block_threads) v.slot[i] = -1;
  __syncthreads();
  if (pl.cls != 0 && threadIdx.x == 0) v.slot[0] = 0;
  for (index_t k = threadIdx.x; k < pl.s.patches; k += block_threads)
    v.slot[v.dominant[k] + pl.cls] = static_cast<std::int32_t>(pl.cls + k);
  __syncthreads();
  block_scan(
      rows, [&](index_t i) { return v.slot[i] < 0 ? 1 : 0; },
      [&](index_t i, index_t at) {
        if (v.slot[i] < 0) v.remaining[at] = static_cast<std::int32_t>(i);
      });
  for (index_t q = threadIdx.x; q < pl.contextual; q += block_threads) v.targets[q] = v.remaining[q * pl.s.step];
}

template <class E>
__global__ void __launch_bounds__(item_threads) scales_kernel(view<const E, 2, device_space> metric, scratch v) {
  const side_rows<E, device_space> rows{metric, 0, 1};
  for_each_thread_item(metric.extent(0), [&](index_t i) {
    v.scale[i] = cosine_scale_of(chain_dot<fused>(rows, i, rows, i, metric.extent(1)));
  });
}

/// The target of every row of R: one warp per row, lane q on targets q, q + 32, …
template <class E>
__global__ void __launch_bounds__(item_threads)
    assign_kernel(plan pl, view<const E, 2, device_space> metric, scratch v) {
  const side_rows<E, device_space> rows{metric, 0, 1};
  const int lane = static_cast<int>(threadIdx.x % 32);
  const index_t dim = metric.extent(1);
  for (index_t r = blockIdx.x * static_cast<index_t>(item_warps) + threadIdx.x / 32; r < pl.s.remaining;
       r += static_cast<index_t>(gridDim.x) * item_warps) {
    const index_t row = v.remaining[r];
    unsigned long long best = 0ull;
    for (index_t q = lane; q < pl.contextual; q += 32) {
      const index_t t = v.targets[q];
      const float sim = scaled_cosine(chain_dot<fused>(rows, row, rows, t, dim), v.scale[row], v.scale[t]);
      const unsigned long long key = rank_key(sim, q);
      best = key > best ? key : best;
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const unsigned long long other = __shfl_xor_sync(0xFFFFFFFFu, best, offset);
      best = other > best ? other : best;
    }
    if (lane == 0) v.choice[row] = static_cast<std::int32_t>(rank_key_index(best));
  }
}

/// Whether row r of R is a member of target q (assigned to it, and not the target itself).
__device__ inline bool member_of(const scratch& v, index_t r, index_t q) {
  const index_t row = v.remaining[r];
  return v.choice[row] == q && row != v.targets[q];
}

/// One block: each target's member count and offset, every row's slot, and `assign`.
__global__ void __launch_bounds__(block_threads)
    offsets_kernel(plan pl, scratch v, view<std::int64_t, 1, device_space> assign) {
  const index_t c = pl.contextual, remaining = pl.s.remaining;
  if (c > 0) {
    for (index_t q = threadIdx.x; q < c; q += block_threads) v.choice[v.targets[q]] = static_cast<std::int32_t>(q);
    for (index_t q = threadIdx.x; q <= c; q += block_threads) v.offsets[q] = 0;
    __syncthreads();
    for (index_t r = threadIdx.x; r < remaining; r += block_threads) {
      const index_t q = v.choice[v.remaining[r]];
      if (member_of(v, r, q)) atomicAdd(v.offsets + q + 1, 1);
    }
    __syncthreads();
    block_scan(  // counts (at q + 1) to offsets, in place
        c + 1, [&](index_t q) { return v.offsets[q]; },
        [&](index_t q, index_t before) { v.offsets[q] = static_cast<std::int32_t>(before + v.offsets[q]); });
    for (index_t r = threadIdx.x; r < remaining; r += block_threads) {
      const index_t row = v.remaining[r];
      v.slot[row] = static_cast<std::int32_t>(pl.dominant + v.choice[row]);
    }
  }
  if (!requested(assign)) return;
  __syncthreads();
  for (index_t i = threadIdx.x; i < pl.s.rows; i += block_threads) assign(i) = v.slot[i];
}

/// Each target's members in row order: one block per target, a block scan over R.
__global__ void __launch_bounds__(block_threads) members_kernel(plan pl, scratch v) {
  for (index_t q = blockIdx.x; q < pl.contextual; q += gridDim.x)  // uniform per block
    block_scan(
        pl.s.remaining, [&](index_t r) { return member_of(v, r, q); },
        [&](index_t r, index_t at) {
          if (member_of(v, r, q)) v.members[v.offsets[q] + at] = v.remaining[r];
        });
}

/// The input row output slot q stands on: a dominant row, or a contextual token's target.
__device__ inline index_t row_of(const plan& pl, const scratch& v, index_t q) {
  if (q >= pl.dominant) return v.targets[q - pl.dominant];
  return q < pl.cls ? 0 : static_cast<index_t>(v.dominant[q - pl.cls]) + pl.cls;
}

template <class Ein, class Eout>
__global__ void __launch_bounds__(write_threads)
    write_kernel(plan pl, scratch v, visionzip_inputs<Ein, device_space> in, merge_outputs<Eout, device_space> out) {
  const index_t dim = in.tokens.extent(1);
  for (index_t q = blockIdx.x; q < pl.s.kept; q += gridDim.x) {
    const index_t i = row_of(pl, v, q);
    index_t count = 0;
    const std::int32_t* members = nullptr;
    if (q >= pl.dominant) {
      members = v.members + v.offsets[q - pl.dominant];
      count = v.offsets[q - pl.dominant + 1] - v.offsets[q - pl.dominant];
    }
    if (requested(out.tokens)) {
      for (index_t c = threadIdx.x; c < dim; c += write_threads) {
        if (q < pl.dominant) {
          out.tokens(q, c) = convert_element<Eout>(in.tokens(i, c));
          continue;
        }
        const bool plus = pl.merge == contextual_merge::target_plus_mean;
        const float divisor = plus ? static_cast<float>(count > 1 ? count : 1) : static_cast<float>(count + 1);
        const float target = to_float(in.tokens(i, c));
        float acc = plus ? 0.0f : target;
        for (index_t m = 0; m < count; ++m) acc = add_rn(acc, to_float(in.tokens(members[m], c)));
        out.tokens(q, c) = from_float<Eout>(plus ? add_rn(target, div_rn(acc, divisor)) : div_rn(acc, divisor));
      }
    }
    if (threadIdx.x != 0) continue;
    if (requested(out.source)) out.source(q) = i;
    if (requested(out.sizes)) out.sizes(q) = q < pl.dominant ? 1.0f : static_cast<float>(1 + count);
    if (requested(out.positions)) {
      const token_position at = i < pl.cls ? token_position{-1, -1, -1} : in.grid.position(i - pl.cls);
      out.positions(q, 0) = static_cast<std::int32_t>(at.t);
      out.positions(q, 1) = static_cast<std::int32_t>(at.h);
      out.positions(q, 2) = static_cast<std::int32_t>(at.w);
    }
  }
}

}  // namespace cuda_visionzip
}  // namespace detail

/// visionzip on a CUDA stream: the CPU backend's outputs, bit for bit (see
/// <tokred/cuda/visionzip.cuh>). Checks on the host, in the CPU backend's order; nothing is
/// launched when one fails.
template <>
struct backend<visionzip, cuda> {
  static std::size_t workspace_bytes(const cuda& exec, const visionzip& p, const problem& prob) {
    const detail::visionzip_shape s = detail::visionzip_count(p, prob.grid);
    if (s.code != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_visionzip::scratch::carve(counter, s, prob.grid.tokens(), p.contextual);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const visionzip& p, const visionzip_inputs<Ein, device_space>& in,
                      const merge_outputs<Eout, device_space>& out, workspace ws) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>, "tokred: token rows are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_visionzip;
    if (status st = check_exec(exec); st != status::ok) return st;
    const detail::visionzip_shape s = detail::check_visionzip(p, in, out);
    if (s.code != status::ok) return s.code;
    if (status st = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)})); st != status::ok)
      return st;
    detail::arena carver(ws);
    const cu::scratch v = cu::scratch::carve(carver, s, in.grid.tokens(), p.contextual);
    if (!carver.fits()) return status::workspace_too_small;

    const cu::plan pl{s, p.cls_token ? 1 : 0, p.dominant, p.contextual, p.merge};
    if (s.patches > 0)
      detail::select_kernel<<<1, detail::select_threads, 0, exec.stream>>>(
          detail::score_key_of{in.scores}, 1, static_cast<std::uint32_t>(in.grid.tokens()),
          static_cast<std::uint32_t>(s.patches), v.keys, v.dominant);
    cu::layout_kernel<<<1, cu::block_threads, 0, exec.stream>>>(pl, v);
    if (p.contextual > 0) {
      const view<const Ein, 2, device_space> metric = detail::compared_rows(in);
      cu::scales_kernel<Ein><<<detail::blocks_for(s.rows, cu::item_threads), cu::item_threads, 0, exec.stream>>>(
          metric, v);
      cu::assign_kernel<Ein><<<detail::blocks_for(s.remaining, cu::item_warps), cu::item_threads, 0, exec.stream>>>(
          pl, metric, v);
    }
    cu::offsets_kernel<<<1, cu::block_threads, 0, exec.stream>>>(pl, v, out.assign);
    if (p.contextual > 0 && (detail::requested(out.tokens) || detail::requested(out.sizes)))
      cu::members_kernel<<<detail::blocks_for(p.contextual, 1), cu::block_threads, 0, exec.stream>>>(pl, v);
    if (detail::requested(out.tokens) || detail::requested(out.source) || detail::requested(out.sizes) ||
        detail::requested(out.positions))
      cu::write_kernel<Ein, Eout><<<detail::blocks_for(s.kept, 1), cu::write_threads, 0, exec.stream>>>(pl, v, in, out);
    return detail::launch_status();
  }
};

}  // namespace tokred
