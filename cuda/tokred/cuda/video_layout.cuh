// tokred/cuda/video_layout.cuh — CUDA backends of slowfast and thumbnail_sampling.
//
// Both layouts are made of pieces that already have CUDA kernels, so this file adds no kernel
// and no arithmetic of its own; it adds the row operations that point those kernels at a
// layout's rows. One stream-ordered launch per segment, each shaped by (rows, dim) alone, so a
// CUDA graph can capture the whole call:
//
//   slowfast            slow   grid_reduce's rows kernel with `slow_rows`: output row j pools
//                              slow frame f_s with the slow rule (pool_rows' window on the frame,
//                              moved to frame f_s), all S frames in one launch
//                       fast   the rows kernel with adaptive_rows: adaptive_pool over the grid
//                       meta   grid_reduce's meta kernel over all K rows, through
//                              detail::layout_meta_at (the CPU backend's function)
//   thumbnail_sampling  sampled  selection's emit kernel (gather's row mover) with the pick of
//                                row j computed on the device by `sampled_token`
//                       thumbnail  the rows kernel with `thumbnail_rows`: thumbnail cell k is
//                                adaptive_rows' bin of its tile on the frame the tile shows
//                       meta   as for slowfast
// Threads map to rows as in those kernels: 2^k threads share an output row (the fewest that give
// each one 16-byte chunk of channels per pass), rows grid-stride over the blocks; the meta
// kernel gives each row one thread.
//
// Values are bit-identical to the CPU backend (<tokred/cpu/video_layout.hpp>): its pieces are
// pool, adaptive_pool and gather, whose CUDA kernels match their CPU backends bit for bit, and
// every window here is the one the CPU's piece pools (the same sum order and divisors; a
// thumbnail row on the CPU pools a strip of the frame, which gives the same bins and bits). The
// frame and token picks come from the same host/device functions of
// <tokred/policy/video_layout.hpp>, whose device arithmetic uses explicitly rounded intrinsics,
// so indices, source, positions and sizes agree exactly. NaN payloads follow grid_reduce.cuh
// and selection.cuh: an average returns the GPU's canonical NaN.
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/grid_reduce.cuh"  // rows kernel, window plans, meta kernel
#include "tokred/cuda/selection.cuh"    // emit kernel
#include "tokred/policy/grid_reduce.hpp"
#include "tokred/policy/selection.hpp"
#include "tokred/policy/video_layout.hpp"

namespace tokred {
namespace detail {
namespace cuda_layout {

// ---------------------------------------------------------------------------------------------
// Row operations for grid_reduce's rows kernel: where row j reads, reduced by reduce_window.

/// Slow row j: the slow rule's window on its frame (pool_rows' plan on the frame grid) moved to
/// slow frame f_s. The kernel's input grid is the frame grid stacked T times — (T, 1, H·W) for
/// the 1-D rules, (T, H, W) otherwise — so frame f's window starts at t = f. `policy` is the
/// slow rule; the rows kernel needs it by that name.
template <pool_kind Kind>
struct slow_rows {
  pool policy;
  slowfast layout_policy;
  slowfast_layout layout;

  TOKRED_HOST_DEVICE cuda_grid::window_plan plan(const token_grid& in, const token_grid&,
                                                 index_t j) const noexcept {
    const layout_cell c = slow_cell_at(layout_policy, layout, in.frames, j);
    cuda_grid::window_plan box = cuda_grid::pool_rows<Kind>{policy}.plan(
        layout.slow_frame_grid, layout.slow_out, c.index);
    box.t = {c.frame, c.frame + 1};
    return box;
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid& in,
                              const cuda_grid::window_plan& box, index_t c0,
                              float (&acc)[Width]) const noexcept {
    cuda_grid::reduce_window<Kind>(rows, in, box, c0, acc);
  }
};

/// Thumbnail row k (raster over the thumbnail): adaptive_rows' bin of its tile cell on the frame
/// grid, moved to the frame its tile shows. The kernel's input grid is the whole (T, H, W) grid.
/// `policy` is the tile pool.
struct thumbnail_rows {
  adaptive_pool policy;
  thumbnail_sampling layout_policy;
  thumbnail_layout layout;

  TOKRED_HOST_DEVICE cuda_grid::window_plan plan(const token_grid& in, const token_grid&,
                                                 index_t k) const noexcept {
    const layout_cell c = thumbnail_cell_at(layout_policy, layout, in.frames, k);
    const token_grid frame_grid{1, in.height, in.width};
    const token_grid tile{1, layout.tile_height, layout.tile_width};
    cuda_grid::window_plan box =
        cuda_grid::adaptive_rows<pool_kind::average>{policy}.plan(frame_grid, tile, c.index);
    box.t = {c.frame, c.frame + 1};
    return box;
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid& in,
                              const cuda_grid::window_plan& box, index_t c0,
                              float (&acc)[Width]) const noexcept {
    cuda_grid::reduce_window<pool_kind::average>(rows, in, box, c0, acc);
  }
};

// ---------------------------------------------------------------------------------------------
// Sampled rows for selection's emit kernel, and the bookkeeping for grid_reduce's meta kernel.

/// Sampled row j's original token, computed where it is used (no index list, no workspace).
struct sampled_index {
  thumbnail_sampling policy;
  index_t tokens;  ///< N = T·H·W
  __device__ index_t operator()(index_t j) const { return sampled_token(policy, tokens, j); }
};

/// A layout and its segments, seen by the meta kernel as one policy: `meta_at` of row j is the
/// layout's `layout_meta_at`, the function the CPU backend writes its bookkeeping with.
template <class Policy, class Layout>
struct layout_meta {
  Policy policy;
  Layout layout;
};

template <class Policy, class Layout>
TOKRED_HOST_DEVICE inline grid_meta meta_at(const layout_meta<Policy, Layout>& m,
                                            const token_grid& in, const token_grid&,
                                            index_t j) noexcept {
  return layout_meta_at(m.policy, m.layout, in, j);
}

/// Launches the meta kernel for the K rows of a layout when any bookkeeping output is requested.
template <class Policy, class Layout, class Eout>
status launch_layout_meta(const cuda& exec, const Policy& p, const Layout& l,
                          const token_grid& grid, const grid_outputs<Eout, device_space>& out) {
  return cuda_grid::launch_meta(exec, layout_meta<Policy, Layout>{p, l}, grid,
                                sequence_grid(l.count), cuda_grid::meta_views_of(out));
}

/// Output rows [first, first + count) as a tokens-only grid reducer output.
template <class Eout>
grid_outputs<Eout, device_space> token_segment(const grid_outputs<Eout, device_space>& out,
                                               index_t first, index_t count) noexcept {
  return {row_range(out.tokens, first, count), {}, {}, {}};
}

}  // namespace cuda_layout
}  // namespace detail

/// SlowFast-LLaVA's layout on a CUDA stream: no workspace; one launch for the slow pathway, one
/// for the fast pathway (when tokens are requested) and one for source/positions/sizes (when
/// any is). Any strides; fp32/fp16/bf16 in and out, computed in fp32; bit-identical to the CPU
/// backend. Statuses as the CPU backend's, checked on the host before anything is launched.
template <>
struct backend<slowfast, cuda> {
  static std::size_t workspace_bytes(const cuda&, const slowfast&, const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const slowfast& p, const grid_inputs<Ein, device_space>& in,
                      const grid_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    const slowfast_layout l = detail::check_layout(p, in, out);
    if (l.code != status::ok) return l.code;

    if (detail::requested(out.tokens)) {
      if (status s = launch_slow(exec, p, l, in, out); s != status::ok) return s;
      const adaptive_pool fast{pool_kind::average, {in.grid.frames, p.fast_height, p.fast_width}};
      if (status s = detail::cuda_grid::launch_rows(
              exec, detail::cuda_grid::adaptive_rows<pool_kind::average>{fast}, in.grid,
              l.fast_out, in, detail::cuda_layout::token_segment(out, l.slow_count, l.fast_count));
          s != status::ok)
        return s;
    }
    return detail::cuda_layout::launch_layout_meta(exec, p, l, in.grid, out);
  }

 private:
  template <class Ein, class Eout>
  static status launch_slow(const cuda& exec, const slowfast& p, const slowfast_layout& l,
                          const grid_inputs<Ein, device_space>& in,
                          const grid_outputs<Eout, device_space>& out) {
    const pool rule = detail::slow_pool(p.slow);
    // The frame grid stacked T times, and the S pooled frames as one output grid.
    const token_grid frames{in.grid.frames, l.slow_frame_grid.height, l.slow_frame_grid.width};
    const token_grid pooled{l.slow_frames, l.slow_out.height, l.slow_out.width};
    const grid_outputs<Eout, device_space> rows =  // (slow_count, dim)
        detail::cuda_layout::token_segment(out, 0, l.slow_count);
    if (rule.kind == pool_kind::max)
      return detail::cuda_grid::launch_rows(
          exec, detail::cuda_layout::slow_rows<pool_kind::max>{rule, p, l}, frames, pooled, in,
          rows);
    return detail::cuda_grid::launch_rows(
        exec, detail::cuda_layout::slow_rows<pool_kind::average>{rule, p, l}, frames, pooled, in,
        rows);
  }
};

/// TS-LLaVA's layout on a CUDA stream: no workspace; one launch moving the sampled rows, one
/// pooling the thumbnail (when tokens are requested and the thumbnail included) and one for
/// source/positions/sizes (when any is). Any strides; fp32/fp16/bf16 in and out; sampled rows
/// copied (converted through fp32 when the types differ), thumbnail rows computed in fp32;
/// bit-identical to the CPU backend. Statuses as the CPU backend's, checked on the host.
template <>
struct backend<thumbnail_sampling, cuda> {
  static std::size_t workspace_bytes(const cuda&, const thumbnail_sampling&,
                                     const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const thumbnail_sampling& p,
                      const grid_inputs<Ein, device_space>& in,
                      const grid_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    const thumbnail_layout l = detail::check_layout(p, in, out);
    if (l.code != status::ok) return l.code;

    if (detail::requested(out.tokens)) {
      const selection_outputs<Eout, device_space> sampled{  // (n, dim)
          detail::row_range(out.tokens, l.sampled_offset, l.sampled_count), {}, {}};
      if (status s = detail::launch_emit(exec,
                                         detail::cuda_layout::sampled_index{p, in.grid.tokens()},
                                         l.sampled_count, in.grid, in.tokens, sampled);
          s != status::ok)
        return s;
      if (l.thumbnail_count > 0) {
        const detail::cuda_layout::thumbnail_rows thumb{detail::tile_pool(l), p, l};
        if (status s = detail::cuda_grid::launch_rows(
                exec, thumb, in.grid, l.thumbnail, in,
                detail::cuda_layout::token_segment(out, l.thumbnail_offset, l.thumbnail_count));
            s != status::ok)
          return s;
      }
    }
    return detail::cuda_layout::launch_layout_meta(exec, p, l, in.grid, out);
  }
};

}  // namespace tokred
