// tokred/cpu/video_layout.hpp — CPU backends of slowfast and thumbnail_sampling.
//
// Both layouts are compositions: every segment of the output is produced by calling the CPU
// backend of pool, adaptive_pool or gather on row sub-views of the caller's input and output,
// with the caller's exec share. Each of those backends computes every output row alone and splits
// its rows by (ith, nth), so the union over the shares is bit-identical to one call with nth = 1,
// and every row equals what the single policy gives on the same frame. `source`, `positions` and
// `sizes` come from `detail::layout_meta_at`, split by the same rule over all output rows.
//
// No workspace: the sampled-token indices are computed in chunks into a small stack array.
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/pool.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/video_layout.hpp"

namespace tokred {
namespace detail {

/// Writes the requested `source`, `positions` and `sizes` of this share's output rows.
template <class Arch, class Policy, class Layout, class Eout>
void emit_layout_meta(const cpu<Arch>& exec, const Policy& p, const Layout& l,
                      const token_grid& grid, const grid_outputs<Eout>& out) noexcept {
  const bool src = requested(out.source), pos = requested(out.positions),
             siz = requested(out.sizes);
  if (!src && !pos && !siz) return;
  const index_t j1 = share_begin(l.count, exec.ith + 1, exec.nth);
  for (index_t j = share_begin(l.count, exec.ith, exec.nth); j < j1; ++j) {
    const grid_meta m = layout_meta_at(p, l, grid, j);
    if (src) out.source(j) = m.source;
    if (pos) {
      const token_position at = grid.position(m.source);
      out.positions(j, 0) = at.t;
      out.positions(j, 1) = at.h;
      out.positions(j, 2) = at.w;
    }
    if (siz) out.sizes(j) = m.size;
  }
}

/// Sampled tokens gathered per call. 256 indices are 2 KiB of stack; the per-call checks of
/// gather then cost well under 1 % of moving 256 rows of any real width.
inline constexpr index_t sampled_chunk = 256;

}  // namespace detail

/// SlowFast-LLaVA's layout on CPU: S pool calls (one per slow frame, on that frame's rows) and one
/// adaptive_pool call over the whole grid for the fast pathway. No workspace; any strides;
/// fp32/fp16/bf16 in and out, computed in fp32 by the pooling backends.
template <class Arch>
struct backend<slowfast, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const slowfast&, const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const slowfast& p, const grid_inputs<Ein>& in,
                      const grid_outputs<Eout>& out, workspace) noexcept {
    if (status s = check_exec(exec); s != status::ok) return s;
    const slowfast_layout l = detail::check_layout(p, in, out);
    if (l.code != status::ok) return l.code;

    if (detail::requested(out.tokens)) {
      const index_t frame_tokens = in.grid.frame_tokens(), per_frame = l.slow_out.tokens();
      const pool slow = detail::slow_pool(p.slow);
      for (index_t s = 0; s < l.slow_frames; ++s) {
        const index_t f = slow_frame(p, in.grid.frames, s);
        const grid_inputs<Ein> frame{  // (H·W, dim): frame f
            l.slow_frame_grid, detail::row_range(in.tokens, f * frame_tokens, frame_tokens)};
        const grid_outputs<Eout> pooled{  // (per_frame, dim): slow segment s
            detail::row_range(out.tokens, s * per_frame, per_frame), {}, {}, {}};
        if (status st = tokred::apply(exec, slow, frame, pooled); st != status::ok) return st;
      }
      const adaptive_pool fast{pool_kind::average, {in.grid.frames, p.fast_height, p.fast_width}};
      const grid_outputs<Eout> fast_out{  // (T·a·b, dim)
          detail::row_range(out.tokens, l.slow_count, l.fast_count), {}, {}, {}};
      if (status st = tokred::apply(exec, fast, in, fast_out); st != status::ok) return st;
    }
    detail::emit_layout_meta(exec, p, l, in.grid, out);
    return status::ok;
  }
};

/// TS-LLaVA's layout on CPU: gather calls over chunks of the sampled indices, and for the
/// thumbnail one adaptive_pool call per (tile, tile row) — the input strip that row's bins cover,
/// pooled to one row of `tile_width` tokens, which is bit-identical to pooling the whole frame
/// and lets the tiles be written straight into the thumbnail's raster order. No workspace; any
/// strides; fp32/fp16/bf16 in and out.
template <class Arch>
struct backend<thumbnail_sampling, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const thumbnail_sampling&,
                                     const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const thumbnail_sampling& p,
                      const grid_inputs<Ein>& in, const grid_outputs<Eout>& out,
                      workspace) noexcept {
    if (status s = check_exec(exec); s != status::ok) return s;
    const thumbnail_layout l = detail::check_layout(p, in, out);
    if (l.code != status::ok) return l.code;

    if (detail::requested(out.tokens)) {
      if (status s = sampled_rows(exec, p, l, in, out); s != status::ok) return s;
      if (status s = thumbnail_rows(exec, p, l, in, out); s != status::ok) return s;
    }
    detail::emit_layout_meta(exec, p, l, in.grid, out);
    return status::ok;
  }

 private:
  template <class Ein, class Eout>
  static status sampled_rows(const cpu<Arch>& exec, const thumbnail_sampling& p,
                             const thumbnail_layout& l, const grid_inputs<Ein>& in,
                             const grid_outputs<Eout>& out) noexcept {
    std::int64_t picks[detail::sampled_chunk];  // (chunk,)
    const index_t n = in.grid.tokens();
    for (index_t first = 0; first < l.sampled_count; first += detail::sampled_chunk) {
      const index_t len = l.sampled_count - first < detail::sampled_chunk
                              ? l.sampled_count - first
                              : detail::sampled_chunk;
      for (index_t k = 0; k < len; ++k) picks[k] = sampled_token(p, n, first + k);
      const gather_inputs<Ein> g{  // index (len,), tokens (N, dim)
          in.grid, make_view(static_cast<const std::int64_t*>(picks), len), in.tokens};
      const selection_outputs<Eout> rows{  // (len, dim)
          detail::row_range(out.tokens, l.sampled_offset + first, len), {}, {}};
      if (status s = tokred::apply(exec, gather{}, g, rows); s != status::ok) return s;
    }
    return status::ok;
  }

  template <class Ein, class Eout>
  static status thumbnail_rows(const cpu<Arch>& exec, const thumbnail_sampling& p,
                               const thumbnail_layout& l, const grid_inputs<Ein>& in,
                               const grid_outputs<Eout>& out) noexcept {
    if (l.thumbnail_count == 0) return status::ok;
    const index_t width = in.grid.width, frame_tokens = in.grid.frame_tokens();
    const adaptive_pool row_pool{pool_kind::average, {1, 1, l.tile_width}};
    for (index_t tile = 0; tile < p.thumbnail_frames; ++tile) {
      const index_t f = thumbnail_frame(p, in.grid.frames, tile);
      const index_t tile_row = tile / l.tiles.cols, tile_col = tile % l.tiles.cols;
      for (index_t y = 0; y < l.tile_height; ++y) {
        const detail::span1 band = detail::adaptive_bin(y, in.grid.height, l.tile_height);
        const index_t band_rows = band.end - band.begin;
        const grid_inputs<Ein> strip{  // (band_rows·W, dim): the rows tile row y pools
            {1, band_rows, width},
            detail::row_range(in.tokens, f * frame_tokens + band.begin * width,
                              band_rows * width)};
        // Thumbnail row tile_row·th + y, columns from tile_col·tw: raster over the whole thumbnail.
        const index_t row = tile_row * l.tile_height + y;
        const index_t first =
            l.thumbnail_offset + (row * l.tiles.cols + tile_col) * l.tile_width;
        const grid_outputs<Eout> cells{  // (tile_width, dim)
            detail::row_range(out.tokens, first, l.tile_width), {}, {}, {}};
        if (status s = tokred::apply(exec, row_pool, strip, cells); s != status::ok) return s;
      }
    }
    return status::ok;
  }
};

}  // namespace tokred
