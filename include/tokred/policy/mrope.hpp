// tokred/policy/mrope.hpp — M-RoPE position ids of kept visual tokens, in the two formats engines
// feed their LLM, and the position the text after a visual span continues from.
//
// Every reduction returns `positions` (kept, 3): the original (t, h, w) of each kept token on the
// grid the reduction ran on. For Qwen2-VL, Qwen2.5-VL and Qwen3-VL that grid must be the LLM-side
// grid, one token per merged patch: (T, H, W) = (grid_t, grid_h / m, grid_w / m), with m the
// vision encoder's spatial_merge_size (qwen_llm_grid builds it from `image_grid_thw` /
// `video_grid_thw`). Two formats are written from it:
//
//   llama.cpp (libmtmd)  llama_pos, 4 planes of n: [t…][y…][x…][0…]; visual token (t, h, w) of a
//                        chunk at pos0 gets (pos0 + t, pos0 + h, pos0 + w, 0), text (p, p, p, 0);
//                        the chunk consumes max(T, H, W) positions whatever was kept.
//   Qwen-VL (HF, vLLM)   int64 ids (3, L); visual token (t, h, w) of a span starting at `start`
//                        gets (start + tid(t), start + h, start + w), text (p, p, p); tid scales
//                        t by tokens_per_second · second_per_grid, and the text after the span
//                        starts where `mrope_advance` says.
//
// docs/positions.md compares the engines and their advance rules. Every function here checks its
// views and writes nothing unless it returns `ok`; none allocates.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/core/checks.hpp"
#include "tokred/core/config.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

// ------------------------------------------------------------------------------------------------
// llama.cpp / libmtmd
// ------------------------------------------------------------------------------------------------

/// The positions a media chunk of grid `grid` consumes in llama.cpp's M-RoPE models, as
/// `mtmd_input_chunk_get_n_pos` reports it: max(T, H, W) of the full grid (max(H, W) for an
/// image). Pruning does not change it, so the text after a pruned chunk starts at
/// `pos0 + mtmd_n_pos(grid)` exactly as libmtmd's helpers advance `n_past`.
constexpr std::int64_t mtmd_n_pos(const token_grid& grid) noexcept {
  return static_cast<std::int64_t>(std::max({grid.frames, grid.height, grid.width}));
}

/// Writes the llama.cpp M-RoPE positions of the kept tokens of one image or video chunk that
/// starts at position `pos0`, in libmtmd's planar layout: `out` is (4, kept) — t, y, x and an
/// unused plane — so a contiguous `llama_pos` array of 4·kept is `make_view(pos, 4, kept)`, and
/// tokens [offset, offset + kept) of a batch of n are `view<std::int32_t, 2>(pos + offset,
/// {4, kept}, {n, 1})`. Kept token j at original (t, h, w) gets (pos0 + t, pos0 + h, pos0 + w, 0): libmtmd's
/// 2-D image layout (t = 0) and its 3-D video layout, gathered at the kept tokens. libmtmd does
/// not scale t by time.
///
/// Checks, in order: `shape_mismatch` when `positions` is not (kept, 3) or `out` not (4, kept);
/// `invalid_parameter` for a grid with a negative extent, `pos0 < 0`, or
/// `pos0 + mtmd_n_pos(grid)` (the position after the chunk) above INT32_MAX, the largest
/// `llama_pos`; then nothing kept is `ok`; `null_pointer` for a view with no data;
/// `aliasing` when `out` overlaps `positions`; `index_out_of_range` when a kept (t, h, w) lies
/// outside the grid. Nothing is written unless the result is `ok`.
inline status mtmd_positions(const token_grid& grid, const view<const std::int32_t, 2>& positions,  // (kept, 3)
                             std::int64_t pos0, const view<std::int32_t, 2>& out) noexcept {     // (4, kept)
  const index_t kept = positions.extent(0);
  if (positions.extent(1) != 3 || out.extent(0) != 4 || out.extent(1) != kept) return status::shape_mismatch;
  if (!grid.valid() || pos0 < 0 || mtmd_n_pos(grid) > std::numeric_limits<std::int32_t>::max() - pos0)
    return status::invalid_parameter;
  if (kept == 0) return status::ok;  // nothing kept, nothing to write
  if (status s = detail::check_view(positions, {kept, 3}); s != status::ok) return s;
  if (status s = detail::check_view(out, {4, kept}); s != status::ok) return s;
  if (may_overlap(out, positions)) return status::aliasing;
  for (index_t j = 0; j < kept; ++j)
    if (positions(j, 0) < 0 || positions(j, 0) >= grid.frames || positions(j, 1) < 0 ||
        positions(j, 1) >= grid.height || positions(j, 2) < 0 || positions(j, 2) >= grid.width)
      return status::index_out_of_range;
  const auto base = static_cast<std::int32_t>(pos0);  // every id below is < pos0 + n_pos: no overflow
  for (index_t j = 0; j < kept; ++j) {
    out(0, j) = base + positions(j, 0);
    out(1, j) = base + positions(j, 1);
    out(2, j) = base + positions(j, 2);
    out(3, j) = 0;
  }
  return status::ok;
}

/// Writes llama.cpp M-RoPE positions for `n = out.extent(1)` text tokens from `pos0` on, in the
/// same planar (4, n) layout: token i gets (pos0 + i, pos0 + i, pos0 + i, 0), as libmtmd gives
/// text and audio in M-RoPE models. The text after them starts at `pos0 + n`.
///
/// Checks, in order: `shape_mismatch` when `out` does not have 4 planes; `invalid_parameter`
/// when `pos0 < 0` or `pos0 + n` is above INT32_MAX; then `n = 0` is `ok`; `null_pointer`.
inline status mtmd_text_positions(std::int64_t pos0, const view<std::int32_t, 2>& out) noexcept {  // (4, n)
  const index_t n = out.extent(1);
  if (out.extent(0) != 4 || n < 0) return status::shape_mismatch;
  if (pos0 < 0 || n > std::numeric_limits<std::int32_t>::max() - pos0) return status::invalid_parameter;
  if (n == 0) return status::ok;
  if (out.data_handle() == nullptr) return status::null_pointer;
  for (index_t i = 0; i < n; ++i) {
    const auto p = static_cast<std::int32_t>(pos0 + i);
    out(0, i) = p;
    out(1, i) = p;
    out(2, i) = p;
    out(3, i) = 0;
  }
  return status::ok;
}

// ------------------------------------------------------------------------------------------------
// Qwen2-VL / Qwen2.5-VL as Hugging Face and vLLM build them
// ------------------------------------------------------------------------------------------------

/// How the temporal id of frame `t` is rounded. Both compute tid(t) = t · tokens_per_second ·
/// second_per_grid and truncate toward zero; they differ in where.
enum class mrope_seconds {
  /// trunc(second_per_grid) first, then t · (tokens_per_second · that) in float, truncated:
  /// Hugging Face's Qwen2.5-VL `get_rope_index` (seconds cast to the integer index type) and
  /// vLLM's EVS path (`_postprocess_video_embeds_evs` casts `second_per_grid_ts` with `.long()`
  /// before `compute_mrope_for_media`). Fractional seconds per grid (fps 4 → 0.5) make every
  /// temporal id 0.
  truncate_first,
  /// ((float)t · second_per_grid) · tokens_per_second in float, then truncated: vLLM's
  /// `get_mrope_input_positions` without pruning (float tensor product, `.long()` after).
  scale_then_truncate,
};

/// Where the text after a visual span starts (the span starts at `start`).
enum class mrope_advance {
  /// start + max(tid(T − 1), H − 1, W − 1) + 1, from the full grid: Hugging Face's
  /// `get_rope_index` and vLLM without pruning; what the model was trained with. Independent of
  /// which tokens were kept.
  full_grid,
  /// One past the largest id of the kept tokens: "max(pos) + 1" taken over what is actually in
  /// the sequence. It drops with the pruned tokens: a dropped last row or last frame lowers it.
  kept_max,
  /// start + W: vLLM's `recompute_mrope_positions` (EVS), which continues the text from the
  /// stored span width. Equals `full_grid` only when W − 1 is the largest extent; a long video
  /// or a portrait image gets text ids that overlap the span's t or h ids.
  span_width,
};

/// Parameters of the Qwen-VL M-RoPE ids of one visual span. Defaults: Qwen2.5-VL's
/// `tokens_per_second` = 2, one second per temporal grid (fps 2 with temporal_patch_size 2),
/// seconds truncated first and the full-grid advance, as Hugging Face computes them. Images have
/// T = 1, so their temporal id is 0 whatever the time parameters.
struct qwen_mrope {
  double tokens_per_second = 2.0;  ///< vision_config.tokens_per_second (Qwen2.5-VL: 2)
  double second_per_grid = 1.0;    ///< the video's second_per_grid_ts: temporal_patch_size / fps
  mrope_seconds seconds = mrope_seconds::truncate_first;
  mrope_advance advance = mrope_advance::full_grid;

  /// Qwen2-VL: the temporal id is the frame index itself.
  static constexpr qwen_mrope qwen2_vl() noexcept {
    return {1.0, 1.0, mrope_seconds::truncate_first, mrope_advance::full_grid};
  }
  /// vLLM with EVS (`--video-pruning-rate`): seconds truncated first, text resumes at start + W.
  static constexpr qwen_mrope vllm_evs(double tokens_per_second, double second_per_grid) noexcept {
    return {tokens_per_second, second_per_grid, mrope_seconds::truncate_first, mrope_advance::span_width};
  }
  /// vLLM without pruning: float product truncated after, full-grid advance.
  static constexpr qwen_mrope vllm(double tokens_per_second, double second_per_grid) noexcept {
    return {tokens_per_second, second_per_grid, mrope_seconds::scale_then_truncate, mrope_advance::full_grid};
  }
};

/// What a span leaves behind for the positions after it.
struct mrope_span_end {
  std::int64_t next = 0;  ///< the position of the first text token after the span (`advance`)
  std::int64_t end = 0;   ///< one past the largest id written (`start` when nothing was kept)
};

/// The Qwen-VL LLM-side grid of a media item from its patch grid (`image_grid_thw` or
/// `video_grid_thw`, in patches) and the encoder's `spatial_merge_size`: (t, h / merge, w / merge).
/// tokred's `positions` and the functions below refer to this grid. Returns `invalid_parameter`
/// (and leaves `grid` alone) for a negative extent, `merge < 1`, or h or w not a multiple of
/// `merge` (Qwen's processor never produces one).
inline status qwen_llm_grid(index_t t, index_t h, index_t w, index_t merge, token_grid& grid) noexcept {
  if (t < 0 || h < 0 || w < 0 || merge < 1 || h % merge != 0 || w % merge != 0)
    return status::invalid_parameter;
  grid = token_grid{t, h / merge, w / merge};
  return status::ok;
}

namespace detail {

/// The temporal id of frame `t` before truncation, in float as torch's default dtype computes it
/// (the integer products of Hugging Face and vLLM's EVS path agree with it below 2^24).
inline float qwen_time_value(const qwen_mrope& p, index_t t) noexcept {
  if (p.seconds == mrope_seconds::truncate_first)
    return static_cast<float>(t) * static_cast<float>(p.tokens_per_second * std::trunc(p.second_per_grid));
  return static_cast<float>(static_cast<float>(t) * static_cast<float>(p.second_per_grid)) *
         static_cast<float>(p.tokens_per_second);
}

/// The temporal id of frame `t`; `qwen_time_value(p, t)` must be below 2^31 (checked by callers).
inline std::int64_t qwen_time_id(const qwen_mrope& p, index_t t) noexcept {
  return static_cast<std::int64_t>(qwen_time_value(p, t));  // truncation toward zero, as .long()
}

}  // namespace detail

/// Writes the Qwen-VL M-RoPE ids of the kept tokens of one visual span (image or video) that
/// starts at position `start` — the text position right after `<|vision_start|>` — and reports
/// where the text after the span continues (`end.next`) and one past the largest id written
/// (`end.end`). `ids` is (3, kept): row 0 temporal, row 1 height, row 2 width, the layout of
/// vLLM's and Hugging Face's `position_ids[:, i]`. Kept token j at original (t, h, w) gets
/// (start + tid(t), start + h, start + w), tid per `p.seconds`: the rows of vLLM's
/// `compute_mrope_for_media` at the kept tokens plus `start`, as `recompute_mrope_positions`
/// places them. The prompt's `mrope_position_delta` is max(pos) + 1 − L over the whole prompt:
/// the larger of the last text position + 1 and every span's `end.end`, minus the prompt length.
///
/// Checks, in order: `shape_mismatch` when `positions` is not (kept, 3) or `ids` not (3, kept);
/// `invalid_parameter` for a grid with a negative extent, `start < 0`, a tokens_per_second or
/// second_per_grid that is negative or not finite, or a full-grid position past the span
/// (start + max(tid(T − 1) + 1, H, W)) above INT32_MAX; then nothing kept is `ok` (with
/// `end.end = start`); `null_pointer` for a view with no data; `aliasing` when `ids` overlaps
/// `positions`; `index_out_of_range` when a kept (t, h, w) lies outside the grid. Nothing is
/// written, `end` included, unless the result is `ok`.
inline status qwen_mrope_positions(const qwen_mrope& p, const token_grid& grid,
                                   const view<const std::int32_t, 2>& positions,  // (kept, 3)
                                   std::int64_t start, const view<std::int64_t, 2>& ids,  // (3, kept)
                                   mrope_span_end& end) noexcept {
  const index_t kept = positions.extent(0);
  if (positions.extent(1) != 3 || ids.extent(0) != 3 || ids.extent(1) != kept) return status::shape_mismatch;
  constexpr std::int64_t largest = std::numeric_limits<std::int32_t>::max();
  const bool time_ok = std::isfinite(p.tokens_per_second) && std::isfinite(p.second_per_grid) &&
                       p.tokens_per_second >= 0 && p.second_per_grid >= 0;
  if (!grid.valid() || start < 0 || start > largest || !time_ok) return status::invalid_parameter;
  // Temporal ids grow with t, so the last frame's is the largest; bound it before converting.
  const float last_time = grid.frames > 0 ? detail::qwen_time_value(p, grid.frames - 1) : 0.0f;
  if (!(last_time < static_cast<float>(largest))) return status::invalid_parameter;
  const std::int64_t last_tid = grid.frames > 0 ? static_cast<std::int64_t>(last_time) : -1;
  const std::int64_t span = std::max<std::int64_t>({last_tid + 1, grid.height, grid.width});
  if (span > largest - start) return status::invalid_parameter;

  mrope_span_end result{start, start};
  if (p.advance == mrope_advance::full_grid) result.next = start + span;
  if (p.advance == mrope_advance::span_width) result.next = start + grid.width;
  if (kept == 0) {  // nothing kept, no ids to write
    end = result;
    return status::ok;
  }
  if (status s = detail::check_view(positions, {kept, 3}); s != status::ok) return s;
  if (status s = detail::check_view(ids, {3, kept}); s != status::ok) return s;
  if (may_overlap(ids, positions)) return status::aliasing;
  for (index_t j = 0; j < kept; ++j)
    if (positions(j, 0) < 0 || positions(j, 0) >= grid.frames || positions(j, 1) < 0 ||
        positions(j, 1) >= grid.height || positions(j, 2) < 0 || positions(j, 2) >= grid.width)
      return status::index_out_of_range;
  std::int64_t largest_id = start - 1;
  for (index_t j = 0; j < kept; ++j) {
    const std::int64_t t = start + detail::qwen_time_id(p, positions(j, 0));
    const std::int64_t h = start + positions(j, 1);
    const std::int64_t w = start + positions(j, 2);
    ids(0, j) = t;
    ids(1, j) = h;
    ids(2, j) = w;
    largest_id = std::max({largest_id, t, h, w});
  }
  result.end = largest_id + 1;
  if (p.advance == mrope_advance::kept_max) result.next = result.end;
  end = result;
  return status::ok;
}

/// Writes Qwen-VL M-RoPE ids for `n = ids.extent(1)` text tokens from `start` on: token i gets
/// (start + i, start + i, start + i). The text continues at `start + n`.
///
/// Checks, in order: `shape_mismatch` when `ids` does not have 3 rows; `invalid_parameter` when
/// `start < 0` or `start + n` is above INT32_MAX; then `n = 0` is `ok`; `null_pointer`.
inline status qwen_text_positions(std::int64_t start, const view<std::int64_t, 2>& ids) noexcept {  // (3, n)
  const index_t n = ids.extent(1);
  if (ids.extent(0) != 3 || n < 0) return status::shape_mismatch;
  if (start < 0 || n > std::numeric_limits<std::int32_t>::max() - start) return status::invalid_parameter;
  if (n == 0) return status::ok;
  if (ids.data_handle() == nullptr) return status::null_pointer;
  for (index_t i = 0; i < n; ++i) {
    ids(0, i) = start + i;
    ids(1, i) = start + i;
    ids(2, i) = start + i;
  }
  return status::ok;
}

}  // namespace tokred
