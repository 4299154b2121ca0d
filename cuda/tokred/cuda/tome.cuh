// tokred/cuda/tome.cuh — CUDA backends of tome_match and tome.
//
// Stream-ordered launches whose shapes follow from N and the row width alone (a CUDA graph
// captures them), workspace from the caller, no host synchronization:
//   scales     one thread per compared row: 1/‖x‖, its squared norm a multiply-add chain in k
//              order; every A token's match key set to 0
//   tiles      32 × 32 (A, B) pairs a block, 4 × 4 a thread, k-slices of the rows staged in
//              shared memory as fp32; each dot a multiply-add chain in k order. Each A row's best
//              B of the tile, as a 64-bit key (similarity key, then lower B index), goes to the
//              row's key by atomicMax: the maximum is the same whatever order the tiles finish in
//   finish     one thread per A token: the partner from its key and the similarity recomputed
//              for that pair (the same chain, the same bits), NaN with the lowest receiving B when
//              no similarity was a number
// tome then (nothing merges: only `write`):
//   rank       one thread per candidate: its rank among all candidates (similarity descending,
//              A index ascending), counted against every other key staged in shared memory
//   layout     one block: each B token's source count, their offsets, the slot of every token in
//              the policy's order (a block scan over the A tokens where the order needs one), the
//              sources' slots, and `assign`
//   members    one thread per merged source: its place in its B token's group, after the sources
//              that rank above it (counted over the merged sources of higher rank)
//   write      one block per output slot: the size-weighted mean of its group, column by column,
//              members in the CPU backend's order; size, source, position
//
// Values: the bits of the CPU backend `cpu<>` compiled in the same translation unit. Every chain
// follows `multiply_add<compile_time_arch>` (fused where that ISA has FMA, else the product
// rounded first: `chain_step`), the CPU backend's norms and dots are the same k-order chains
// (<tokred/cpu/tome.hpp>), and the rest is <tokred/policy/tome_steps.hpp>, each step rounded
// once. Indices therefore match exactly, ties included.
//
// Cost: the tiles are O(N²·D/4) multiply-adds on CUDA cores (fp32 chains: the tensor cores'
// summation order is not the CPU's); rank is O(A²) comparisons, members O(r²/2) in the worst
// case (all sources on one B token), both negligible next to the tiles for image-sized N.
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
#include "tokred/cpu/simd.hpp"            // multiply_add_fuses: the rounding cpu<> uses here
#include "tokred/cuda/selection.cuh"      // launch_status, blocks_for, for_each_thread_item
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"    // rank_key, score_key
#include "tokred/policy/tome_steps.hpp"

namespace tokred {
namespace detail {
namespace cuda_tome {

/// Whether `cpu<>`'s multiply-add rounds once in this translation unit: every chain follows it.
inline constexpr bool fused = multiply_add_fuses<compile_time_arch>();

// Tuning. Not measured yet: each comment names the measurement that should set it.

/// Threads of the one-thread-per-item kernels (scales, finish, rank, members).
inline constexpr int item_threads = 256;
/// Pairs of one tile block along each side, and per thread along each side: 32 × 32 pairs, 64
/// threads of 4 × 4. Small tiles fill the GPU on one 576-token image (81 blocks); measure
/// 32 / 64 per side at N = 576 and 9216, D = 1024.
inline constexpr int tile_side = 32;
inline constexpr int tile_micro = 4;
inline constexpr int tile_threads = (tile_side / tile_micro) * (tile_side / tile_micro);
/// Columns of one k-slice staged in shared memory. Measure 16 / 32.
inline constexpr int tile_depth = 32;
/// Threads of the layout block and of a write block (columns of one output row).
inline constexpr int layout_threads = 1024;
inline constexpr int write_threads = 256;
/// The grid's largest y extent; the tiles kernel strides over the B tiles beyond it.
inline constexpr unsigned max_grid_y = 65535;

template <class E>
__global__ void __launch_bounds__(item_threads)
    scales_kernel(side_rows<E, device_space> a, side_rows<E, device_space> b, match_span m, float* scale,  // (a + b,)
                  unsigned long long* keys) {                                   // (a,)
  const index_t dim = a.rows.extent(1);
  for_each_thread_item(m.a + m.b, [&](index_t item) {
    const bool is_a = item < m.a;
    const index_t k = is_a ? item : item - m.a;
    if (is_a) keys[k] = 0ull;
    if (is_a ? k < m.kfirst : k < m.j0) return;
    const side_rows<E, device_space> side = is_a ? a : b;
    scale[item] = cosine_scale_of(chain_dot<fused>(side, k, side, k, dim));
  });
}

/// 32 × 32 tiles of (A, B) pairs: block x takes A rows a0 … a0 + 31 and, striding over the B
/// tiles by the grid's y extent, B rows b0 … b0 + 31. Thread (tx, ty) owns A rows ty + 8·x and
/// B rows tx + 8·y, x, y < 4, so that neighbouring threads read neighbouring shared-memory words.
template <class E>
__global__ void __launch_bounds__(tile_threads)
    tiles_kernel(side_rows<E, device_space> a, side_rows<E, device_space> b, match_span m,
                 const float* scale,            // (a + b,)
                 unsigned long long* keys) {    // (a,)
  constexpr int lanes = tile_side / tile_micro;
  __shared__ float a_slice[tile_depth][tile_side + 1];
  __shared__ float b_slice[tile_depth][tile_side + 1];
  __shared__ unsigned long long row_best[tile_side];
  const index_t dim = a.rows.extent(1);
  const index_t a0 = m.kfirst + static_cast<index_t>(blockIdx.x) * tile_side;
  const int tx = static_cast<int>(threadIdx.x) % lanes, ty = static_cast<int>(threadIdx.x) / lanes;
  for (index_t b0 = m.j0 + static_cast<index_t>(blockIdx.y) * tile_side; b0 < m.b;
       b0 += static_cast<index_t>(gridDim.y) * tile_side) {  // uniform per block
    // Thread t resets the row_best[t] it read last time; the first barrier below publishes it.
    if (threadIdx.x < tile_side) row_best[threadIdx.x] = 0ull;
    float acc[tile_micro][tile_micro] = {};
    for (index_t c0 = 0; c0 < dim; c0 += tile_depth) {
      const index_t depth = dim - c0 < tile_depth ? dim - c0 : tile_depth;
      __syncthreads();  // the previous slice is no longer read; row_best is reset
      for (int e = static_cast<int>(threadIdx.x); e < tile_side * tile_depth; e += tile_threads) {
        const int row = e / tile_depth, c = e % tile_depth;  // consecutive threads: consecutive columns
        a_slice[c][row] = a0 + row < m.a && c < depth ? a.at(a0 + row, c0 + c) : 0.0f;
        b_slice[c][row] = b0 + row < m.b && c < depth ? b.at(b0 + row, c0 + c) : 0.0f;
      }
      __syncthreads();
      for (index_t c = 0; c < depth; ++c) {
        float av[tile_micro], bv[tile_micro];
        for (int x = 0; x < tile_micro; ++x) av[x] = a_slice[c][ty + lanes * x];
        for (int y = 0; y < tile_micro; ++y) bv[y] = b_slice[c][tx + lanes * y];
        for (int x = 0; x < tile_micro; ++x)
          for (int y = 0; y < tile_micro; ++y) acc[x][y] = chain_step<fused>(av[x], bv[y], acc[x][y]);
      }
    }
    for (int x = 0; x < tile_micro; ++x) {
      const index_t k = a0 + ty + lanes * x;
      if (k >= m.a) continue;
      unsigned long long best = 0ull;
      for (int y = 0; y < tile_micro; ++y) {
        const index_t j = b0 + tx + lanes * y;
        if (j >= m.b) continue;
        const unsigned long long key = rank_key(scaled_cosine(acc[x][y], scale[k], scale[m.a + j]), j);
        best = key > best ? key : best;
      }
      atomicMax(&row_best[ty + lanes * x], best);
    }
    __syncthreads();
    if (threadIdx.x < tile_side && a0 + static_cast<index_t>(threadIdx.x) < m.a)
      atomicMax(&keys[a0 + threadIdx.x], row_best[threadIdx.x]);
  }
}

/// Every A token's (similarity, partner): the tile keys' winner, its similarity recomputed.
template <class E>
__global__ void __launch_bounds__(item_threads)
    finish_kernel(side_rows<E, device_space> a, side_rows<E, device_space> b, match_span m, const float* scale,  // (a + b,)
                  const unsigned long long* keys,                                     // (a,)
                  view<float, 1, device_space> similarity, view<std::int64_t, 1, device_space> partner) {
  const index_t dim = a.rows.extent(1);
  for_each_thread_item(m.a, [&](index_t k) {
    best_match best = no_match();
    if (k >= m.kfirst) {
      const unsigned long long key = keys[k];
      best = {-positive_infinity(), rank_key_index(key)};
      if ((key >> 32) != 0ull)
        best.similarity = scaled_cosine(chain_dot<fused>(a, k, b, best.partner, dim), scale[k], scale[m.a + best.partner]);
      best = finished_match(best, m.j0);
    }
    similarity(k) = best.similarity;
    partner(k) = best.partner;
  });
}

/// The scratch of both backends; tome_match uses the first three.
struct scratch {
  float* scale = nullptr;               // (a + b,) 1/‖x‖ of the A rows, then of the B rows
  unsigned long long* keys = nullptr;   // (a,) each A row's best-B key
  float* similarity = nullptr;          // (a,) tome: the matching
  std::int64_t* partner = nullptr;      // (a,)
  std::int32_t* rank = nullptr;         // (a,) each candidate's rank
  std::int32_t* order = nullptr;        // (a,) order[q]: the candidate of rank q < r
  std::int32_t* prefix = nullptr;       // (a + 1,) exclusive prefix over A of the layout's flag
  std::int32_t* sources = nullptr;      // (b,) sources of each B token
  std::int32_t* offsets = nullptr;      // (b + 1,) where each B token's sources start in members
  std::int32_t* members = nullptr;      // (a,) the sources' tokens, B token by B token, in rank order
  std::int32_t* slot = nullptr;         // (n,) every token's output slot
  std::int32_t* rep = nullptr;          // (n,) every slot's representative token

  static scratch carve(arena& ar, index_t n, bool merging) {
    const index_t a = a_tokens(n), b = n / 2;
    scratch s;
    s.scale = ar.take<float>(a + b);
    s.keys = ar.take<unsigned long long>(a);
    if (!merging) return s;
    s.similarity = ar.take<float>(a);
    s.partner = ar.take<std::int64_t>(a);
    s.rank = ar.take<std::int32_t>(a);
    s.order = ar.take<std::int32_t>(a);
    s.prefix = ar.take<std::int32_t>(a + 1);
    s.sources = ar.take<std::int32_t>(b);
    s.offsets = ar.take<std::int32_t>(b + 1);
    s.members = ar.take<std::int32_t>(a);
    s.slot = ar.take<std::int32_t>(n);
    s.rep = ar.take<std::int32_t>(n);
    return s;
  }
};

/// Launches scales, tiles and finish: the matching of every A token into (similarity, partner).
template <class E>
status launch_matching(const cuda& exec, const view<const E, 2, device_space>& rows, index_t protect,
                       const scratch& s, const view<float, 1, device_space>& similarity,
                       const view<std::int64_t, 1, device_space>& partner) {
  const match_span m = match_span_of(rows.extent(0), protect);
  const side_rows<E, device_space> a{rows, 0}, b{rows, 1};
  const bool matches = m.kfirst < m.a && m.j0 < m.b;
  const unsigned b_tiles = blocks_for(m.b - m.j0, tile_side);
  const dim3 tiles(blocks_for(m.a - m.kfirst, tile_side), b_tiles < max_grid_y ? b_tiles : max_grid_y);
  scales_kernel<E><<<blocks_for(m.a + m.b, item_threads), item_threads, 0, exec.stream>>>(a, b, m, s.scale, s.keys);
  if (matches) tiles_kernel<E><<<tiles, tile_threads, 0, exec.stream>>>(a, b, m, s.scale, s.keys);
  finish_kernel<E><<<blocks_for(m.a, item_threads), item_threads, 0, exec.stream>>>(a, b, m, s.scale, s.keys,
                                                                                     similarity, partner);
  return launch_status();
}

/// Rank of every candidate (unprotected A token) among all of them: how many rank keys are
/// larger. Keys are distinct (they hold the index), so the ranks are a permutation.
__global__ void __launch_bounds__(item_threads)
    rank_kernel(index_t a, index_t kfirst, index_t r, const float* similarity,  // (a,)
                std::int32_t* rank, std::int32_t* order) {                       // (a,) each
  __shared__ std::uint64_t staged[item_threads];
  const index_t blocks = (a - kfirst + item_threads - 1) / item_threads;
  for (index_t block = blockIdx.x; block < blocks; block += gridDim.x) {  // uniform per block
    const index_t k = kfirst + block * item_threads + threadIdx.x;
    const std::uint64_t mine = k < a ? rank_key(similarity[k], k) : 0;
    index_t above = 0;
    for (index_t t0 = kfirst; t0 < a; t0 += item_threads) {
      __syncthreads();  // the previous tile is no longer read
      const index_t t = t0 + threadIdx.x;
      staged[threadIdx.x] = t < a ? rank_key(similarity[t], t) : 0;
      __syncthreads();
      const index_t count = a - t0 < item_threads ? a - t0 : item_threads;
      for (index_t e = 0; e < count; ++e) above += staged[e] > mine ? 1 : 0;
    }
    if (k < a) {
      rank[k] = static_cast<std::int32_t>(above);
      if (above < r) order[above] = static_cast<std::int32_t>(k);
    }
  }
}

/// Everything that orders the outputs, in one block.
__global__ void __launch_bounds__(layout_threads)
    layout_kernel(tome_layout_plan plan, const std::int64_t* partner, const std::int32_t* rank,  // (a,) each
                  const scratch s, view<std::int64_t, 1, device_space> assign) {
  using scan = cub::BlockScan<std::int32_t, layout_threads>;
  __shared__ typename scan::TempStorage temp;
  __shared__ std::int32_t carry;
  const index_t a = plan.s.a, b = plan.s.b, n = plan.n;
  const auto merged = [&](index_t k) { return k >= plan.s.a_protected && rank[k] < plan.r; };

  for (index_t j = threadIdx.x; j < b; j += layout_threads) s.sources[j] = 0;
  __syncthreads();
  for (index_t k = plan.s.a_protected + threadIdx.x; k < a; k += layout_threads)
    if (merged(k)) atomicAdd(&s.sources[partner[k]], 1);
  if (threadIdx.x == 0) carry = 0;
  __syncthreads();
  // Exclusive scans, a tile of layout_threads at a time: source counts over B into offsets, then
  // the layout's flag over A into prefix.
  for (int pass = 0; pass < 2; ++pass) {
    const index_t count = pass == 0 ? b : a;
    std::int32_t* out = pass == 0 ? s.offsets : s.prefix;
    for (index_t t0 = 0; t0 < count; t0 += layout_threads) {
      const index_t t = t0 + threadIdx.x;
      std::int32_t x = 0;
      if (t < count) x = pass == 0 ? s.sources[t] : (plan.flag(t, merged(t)) ? 1 : 0);
      std::int32_t before = 0, total = 0;
      scan(temp).ExclusiveSum(x, before, total);
      if (t < count) out[t] = carry + before;
      __syncthreads();  // every thread has read carry and temp
      if (threadIdx.x == 0) carry += total;
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      out[count] = carry;
      carry = 0;
    }
    __syncthreads();
  }
  const auto prefix = [&](index_t k) { return static_cast<index_t>(s.prefix[k]); };
  for (index_t i = threadIdx.x; i < n; i += layout_threads) {
    const bool is_a = (i & 1) == 0;
    if (is_a && merged(i / 2)) continue;
    const index_t q = plan.slot_of(i, is_a && i / 2 >= plan.s.a_protected ? rank[i / 2] : 0, prefix);
    s.slot[i] = static_cast<std::int32_t>(q);
    s.rep[q] = static_cast<std::int32_t>(i);
  }
  __syncthreads();
  for (index_t k = plan.s.a_protected + threadIdx.x; k < a; k += layout_threads)
    if (merged(k)) s.slot[2 * k] = s.slot[2 * partner[k] + 1];
  if (!requested(assign)) return;
  __syncthreads();
  for (index_t i = threadIdx.x; i < n; i += layout_threads) assign(i) = s.slot[i];
}

/// Each merged source's place in its B token's group: after the sources of higher rank.
__global__ void __launch_bounds__(item_threads)
    members_kernel(index_t r, const std::int64_t* partner, const scratch s) {
  for_each_thread_item(r, [&](index_t q) {
    const std::int32_t k = s.order[q];
    const std::int64_t j = partner[k];
    std::int32_t place = 0;
    for (index_t before = 0; before < q; ++before) place += partner[s.order[before]] == j ? 1 : 0;
    s.members[s.offsets[j] + place] = 2 * k;  // the source's token index
  });
}

/// Whether the outputs read the groups' members (the merged rows and their sizes): only then does
/// members_kernel run; source and positions need the representative alone.
template <class Eout>
TOKRED_HOST_DEVICE bool reads_members(const merge_outputs<Eout, device_space>& out) {
  return requested(out.tokens) || requested(out.sizes);
}

/// The group of output slot q: its representative, then (a B token) the sources merged into it.
struct slot_group {
  index_t rep = 0;
  const std::int32_t* sources = nullptr;
  index_t count = 0;  // sources
};

template <class Ein, class Eout>
__global__ void __launch_bounds__(write_threads)
    write_kernel(index_t kept, bool merging, const scratch s, merge_inputs<Ein, device_space> in,
                 merge_outputs<Eout, device_space> out) {
  const index_t dim = in.tokens.extent(1);
  const auto weight = [&](index_t i) { return requested(in.sizes) ? in.sizes(i) : 1.0f; };
  const bool grouped = merging && reads_members(out);
  for (index_t q = blockIdx.x; q < kept; q += gridDim.x) {
    slot_group g{merging ? s.rep[q] : q, nullptr, 0};
    if (grouped && (g.rep & 1) != 0) {
      const index_t j = g.rep / 2;
      g.sources = s.members + s.offsets[j];
      g.count = s.offsets[j + 1] - s.offsets[j];
    }
    float total = weight(g.rep);
    for (index_t m = 0; m < g.count; ++m) total = add_rn(total, weight(g.sources[m]));
    if (requested(out.tokens))
      for (index_t c = threadIdx.x; c < dim; c += write_threads)
        out.tokens(q, c) = from_float<Eout>(group_mean_at<fused>(in.tokens, g.rep, g.sources, g.count, weight, total, c));
    if (threadIdx.x != 0) continue;
    if (requested(out.sizes)) out.sizes(q) = total;
    if (requested(out.source)) out.source(q) = requested(in.source) ? in.source(g.rep) : g.rep;
    if (requested(out.positions)) {
      const bool carried = requested(in.positions);
      const token_position at = in.grid.position(g.rep);
      out.positions(q, 0) = carried ? in.positions(g.rep, 0) : at.t;
      out.positions(q, 1) = carried ? in.positions(g.rep, 1) : at.h;
      out.positions(q, 2) = carried ? in.positions(g.rep, 2) : at.w;
    }
  }
}

/// assign when nothing merges: every token keeps its slot.
__global__ void __launch_bounds__(item_threads) identity_assign_kernel(view<std::int64_t, 1, device_space> assign) {
  for_each_thread_item(assign.extent(0), [&](index_t i) { assign(i) = i; });
}

}  // namespace cuda_tome
}  // namespace detail

/// tome_match on a CUDA stream: the matching of every A token, the CPU backend's bits (see
/// <tokred/cuda/tome.cuh>). Workspace: N floats and ⌈N/2⌉ 64-bit keys. Checks on the host, in the
/// CPU backend's order; nothing is launched when one fails.
template <>
struct backend<tome_match, cuda> {
  static std::size_t workspace_bytes(const cuda& exec, const tome_match& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_tome::scratch::carve(counter, prob.grid.tokens(), false);
    return counter.used();
  }

  template <class E>
  static status apply(const cuda& exec, const tome_match& p, const merge_inputs<E, device_space>& in,
                      const match_outputs<device_space>& out, workspace ws) {
    static_assert(is_element_v<E>, "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_tome_match(p, in, out); s != status::ok) return s;
    const view<const E, 2, device_space> rows = detail::compared_rows(in);
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, rows.extent(1)})); s != status::ok)
      return s;
    detail::arena carver(ws);
    const auto scratch = detail::cuda_tome::scratch::carve(carver, in.grid.tokens(), false);
    if (!carver.fits()) return status::workspace_too_small;
    return detail::cuda_tome::launch_matching(exec, rows, p.protect, scratch, out.similarity, out.partner);
  }
};

/// tome on a CUDA stream: the CPU backend's outputs, bit for bit (see <tokred/cuda/tome.cuh>).
/// Checks on the host, in the CPU backend's order, except the two that read values: carried
/// sizes are not checked (one that is not a positive finite number gives non-finite means, as
/// the arithmetic goes), and a given matching (`similarity`, `partner`) is refused with
/// `invalid_parameter`, since its partners could not be checked before use — the CUDA backend
/// computes the matching itself, on the whole GPU.
template <>
struct backend<tome, cuda> {
  static std::size_t workspace_bytes(const cuda& exec, const tome& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_tome::scratch::carve(counter, prob.grid.tokens(), true);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const tome& p, const merge_inputs<Ein, device_space>& in,
                      const merge_outputs<Eout, device_space>& out, workspace ws) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>, "tokred: token rows are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_tome;
    if (status s = check_exec(exec); s != status::ok) return s;
    const detail::merge_count c = detail::check_tome(p, in, out);
    if (c.code != status::ok) return c.code;
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)})); s != status::ok)
      return s;
    if (detail::requested(in.similarity) || detail::requested(in.partner)) return status::invalid_parameter;
    detail::arena carver(ws);
    const cu::scratch s = cu::scratch::carve(carver, in.grid.tokens(), true);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t n = in.grid.tokens();
    const bool merging = c.r > 0;
    if (merging) {
      const index_t a = a_tokens(n);
      const detail::tome_layout_plan plan{split_of(n, p.protect), n, c.r, p.protect, p.order};
      const view<float, 1, device_space> similarity(s.similarity, {a});
      const view<std::int64_t, 1, device_space> partner(s.partner, {a});
      if (status st = cu::launch_matching(exec, detail::compared_rows(in), p.protect, s, similarity, partner);
          st != status::ok)
        return st;
      cu::rank_kernel<<<detail::blocks_for(plan.candidates(), cu::item_threads), cu::item_threads, 0, exec.stream>>>(
          a, plan.s.a_protected, c.r, s.similarity, s.rank, s.order);
      cu::layout_kernel<<<1, cu::layout_threads, 0, exec.stream>>>(plan, s.partner, s.rank, s, out.assign);
      if (cu::reads_members(out))
        cu::members_kernel<<<detail::blocks_for(c.r, cu::item_threads), cu::item_threads, 0, exec.stream>>>(
            c.r, s.partner, s);
    } else if (detail::requested(out.assign)) {
      cu::identity_assign_kernel<<<detail::blocks_for(n, cu::item_threads), cu::item_threads, 0, exec.stream>>>(
          out.assign);
    }
    if (detail::requested(out.tokens) || detail::requested(out.sizes) || detail::requested(out.source) || detail::requested(out.positions))
      cu::write_kernel<Ein, Eout><<<detail::blocks_for(c.kept, 1), cu::write_threads, 0, exec.stream>>>(
          c.kept, merging, s, in, out);
    return detail::launch_status();
  }
};

}  // namespace tokred
