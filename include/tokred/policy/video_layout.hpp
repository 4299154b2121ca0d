// tokred/policy/video_layout.hpp — two training-free video token layouts built from the grid
// reducers and gather: SlowFast-LLaVA's slow/fast pathways and TS-LLaVA's thumbnail-and-sampling.
//
// WHAT each layout computes; the HOW lives in <tokred/cpu/video_layout.hpp>, which composes the
// CPU backends of pool, adaptive_pool and gather. Both layouts take a (T, H, W) token grid and
// write a fixed number of tokens, known from the shapes alone, as a concatenation of segments
// whose order the layout defines (below).
//
// Outputs (`grid_outputs`), each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the layout's tokens
//   source    (kept,)      the original token each output stands in for: itself for a sampled or
//                          copied token, the centre of the window for a pooled one
//   positions (kept, 3)    the (t, h, w) of that original token
//   sizes     (kept,)      how many original tokens the output stands for (1 for a sampled token)
//
// Frame and token picks follow the originals' index rules exactly, including their float32
// arithmetic: both call `torch.linspace` with its default float32 dtype on the CPU. See
// `linspace_arithmetic` and docs/policies/slowfast.md, docs/policies/thumbnail_sampling.md.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/grid_reduce.hpp"

namespace tokred {

/// How a `linspace`-based index rule is evaluated.
///
/// Both originals call `torch.linspace(start, end, steps)` on the CPU in float32 (torch 2.1 /
/// 2.2). Its kernel computes `step = (end − start) / (steps − 1)` in float32, then element i as
/// `start + step·i` for i < steps/2 and `end − step·(steps − 1 − i)` after. torch's AVX2 and
/// AVX-512 kernels (those an x86 server runs) evaluate each of these as one fused multiply-add;
/// its baseline kernel rounds the product first. The results differ in the last bit, which moves
/// a truncated or rounded index by one now and then (e.g. T = 16, S = 14: frame 7 or 8).
enum class linspace_arithmetic {
  torch_fma,    ///< torch's CPU float32 linspace with fused multiply-adds (AVX2/AVX-512): default
  torch_plain,  ///< the same kernel with the product rounded first (CPUs without AVX2)
  exact,        ///< exact rational arithmetic (the indices the formula means)
};

/// How SlowFast-LLaVA's slow pathway aggregates each of its frames (the original's names).
enum class slow_aggregation {
  spatial_1d_max_pool,  ///< MaxPool1d(2, 2) over the frame's flattened H·W tokens (default)
  spatial_1d_avg_pool,  ///< AvgPool1d(2, 2) over the flattened tokens
  spatial_2d_max_pool,  ///< MaxPool2d(2, 2) over (H, W), floor mode
  spatial_2d_avg_pool,  ///< AvgPool2d(2, 2) over (H, W), floor mode
  concat,               ///< every token of the frame, unpooled
};

/// SlowFast-LLaVA's training-free input layout (apple/ml-slowfast-llava, `prepare_slowfast`).
///
/// Slow pathway: S frames, frame s = int32(linspace(0, T, S + 1)[s]) for s < S (float32,
/// truncated; the last point, T, dropped), each aggregated by `slow`. Fast pathway: every frame
/// adaptive-average-pooled to `fast_height × fast_width`. Output: the slow tokens (frame order,
/// raster within a frame), then the fast tokens (frame order, raster). Defaults are the paper's
/// 7B/34B configuration: 50 frames of 24 × 24 give 10 · 288 + 50 · 16 = 3680 tokens.
struct slowfast {
  index_t slow_frames = 10;                                       ///< S, 1 <= S <= T
  slow_aggregation slow = slow_aggregation::spatial_1d_max_pool;  ///< per-frame aggregation
  index_t fast_height = 4;                                        ///< a, >= 1
  index_t fast_width = 4;                                         ///< b, >= 1
  linspace_arithmetic arithmetic = linspace_arithmetic::torch_fma;
};

/// Where TS-LLaVA's thumbnail goes relative to the sampled tokens.
enum class thumbnail_order {
  sampled_first,    ///< [sampled, thumbnail]: the README's V* methods (default)
  thumbnail_first,  ///< [thumbnail, sampled]: the Y* methods
};

/// TS-LLaVA's thumbnail-and-sampling layout (tingyu215/TS-LLaVA, `grid_aggregation`), in token
/// space.
///
/// Sampled tokens: token round(linspace(0, N − 1, n)[j]) of the N = T·H·W frame-major tokens
/// (float32, round half to even, clamped to [0, N − 1]). Thumbnail: F frames at
/// round(linspace(0, T − 1, F)), tiled row-major in a rows × cols grid (the factor pair of F
/// closest to square, rows >= cols). The original resizes those frames' PIXELS into one image
/// and encodes it again; tokred cannot encode, so each chosen frame is adaptive-average-pooled to
/// a tile of (H / rows) × (W / cols) tokens (floor) and the tiles form a thumbnail grid of
/// (rows · H/rows) × (cols · W/cols) tokens, written in raster order over that grid. That is an
/// approximation of the original's thumbnail: an engine that can re-encode should set
/// `include_thumbnail = false` and build the image itself from `thumbnail_frame` and
/// `thumbnail_tile_grid`. Defaults are the README's V2: 50 frames of 24 × 24 give
/// 2880 + 576 = 3456 tokens.
struct thumbnail_sampling {
  index_t sampled_tokens = 2880;  ///< n, 1 <= n <= T·H·W
  index_t thumbnail_frames = 6;   ///< F, 1 <= F <= T
  thumbnail_order order = thumbnail_order::sampled_first;
  bool include_thumbnail = true;  ///< false: only the sampled tokens (the engine adds its own)
  linspace_arithmetic arithmetic = linspace_arithmetic::torch_fma;
};

/// The rows × cols tile arrangement of a thumbnail (frame f sits at row f / cols, column f % cols).
struct tile_grid {
  index_t rows = 0;
  index_t cols = 0;
};

/// The segments of a slowfast output, or the status when the policy cannot run on the grid.
struct slowfast_layout {
  status code = status::ok;
  index_t slow_frames = 0;  ///< S
  token_grid slow_frame_grid;  ///< the grid one slow frame is pooled on: (1, 1, H·W) or (1, H, W)
  token_grid slow_out;         ///< what one slow frame becomes: (1, 1, H·W/2), (1, H/2, W/2), …
  token_grid fast_out;         ///< (T, a, b)
  index_t slow_count = 0;      ///< S · slow_out.tokens()
  index_t fast_count = 0;      ///< T · a · b
  index_t count = 0;           ///< slow_count + fast_count
};

/// The segments of a thumbnail_sampling output, or the status when it cannot run on the grid.
struct thumbnail_layout {
  status code = status::ok;
  index_t sampled_count = 0;  ///< n
  tile_grid tiles;            ///< rows × cols
  index_t tile_height = 0;    ///< H / rows (floor)
  index_t tile_width = 0;     ///< W / cols (floor)
  token_grid thumbnail;       ///< (1, rows · tile_height, cols · tile_width); empty when excluded
  index_t thumbnail_count = 0;
  index_t sampled_offset = 0;    ///< first output row of the sampled tokens
  index_t thumbnail_offset = 0;  ///< first output row of the thumbnail
  index_t count = 0;             ///< sampled_count + thumbnail_count
};

namespace detail {

/// float32 `a·b + c` rounded once (torch_fma) or with the product rounded first (torch_plain),
/// whatever the compiler contracts (<tokred/core/rounded.hpp>'s steps). Not through double:
/// g++ 12 narrows a product and a sum of floats taken in double back to float arithmetic and then
/// fuses them where the target has FMA (-march=native), which made torch_plain torch_fma.
TOKRED_HOST_DEVICE inline float f32_mul_add(float a, float b, float c, bool fused) noexcept {
  return fused ? chain_step<true>(a, b, c) : chain_step<false>(a, b, c);
}

/// Element i of torch's CPU float32 `linspace(start, end, steps)` (torch >= 2.0's scalar kernel:
/// the first half counts up from `start`, the second half down from `end`).
TOKRED_HOST_DEVICE inline float torch_linspace_f32(index_t start, index_t end, index_t steps,
                                                   index_t i, bool fused) noexcept {
  const auto s = static_cast<float>(start);
  const auto e = static_cast<float>(end);
  if (steps == 1) return s;
  const float step = div_rn(sub_rn(e, s), static_cast<float>(steps - 1));  // IEEE, any flags
  if (i < steps / 2) return f32_mul_add(step, static_cast<float>(i), s, fused);
  return f32_mul_add(-step, static_cast<float>(steps - 1 - i), e, fused);
}

/// A non-negative float rounded half to even, as `torch.round` does. Exact for every float
/// (x − floor(x) is exact) and independent of the floating-point environment.
TOKRED_HOST_DEVICE inline index_t round_half_even(float x) noexcept {
#if defined(__CUDA_ARCH__)
  const float whole = floorf(x);
#else
  const float whole = std::floor(x);
#endif
  const float frac = x - whole;
  const auto q = static_cast<index_t>(whole);
  return frac > 0.5f || (frac == 0.5f && (q & 1)) ? q + 1 : q;
}

/// floor(num / den) rounded half to even, for num >= 0, den > 0 (the exact rule).
TOKRED_HOST_DEVICE constexpr index_t div_round_half_even(index_t num, index_t den) noexcept {
  const index_t q = num / den, r = num - q * den;
  if (2 * r > den || (2 * r == den && (q & 1))) return q + 1;
  return q;
}

/// round(linspace(0, last, steps)[i]) clamped to [0, last], by `how` (TS-LLaVA's rule).
TOKRED_HOST_DEVICE inline index_t rounded_linspace(index_t last, index_t steps, index_t i,
                                                  linspace_arithmetic how) noexcept {
  if (steps == 1) return 0;
  index_t v;
  if (how == linspace_arithmetic::exact)
    v = div_round_half_even(i * last, steps - 1);
  else
    v = round_half_even(
        torch_linspace_f32(0, last, steps, i, how == linspace_arithmetic::torch_fma));
  return v < 0 ? 0 : (v > last ? last : v);
}

/// The pooling that one slow frame gets, on the grid `slow_frame_grid` describes.
TOKRED_HOST_DEVICE constexpr pool slow_pool(slow_aggregation a) noexcept {
  switch (a) {
    case slow_aggregation::spatial_1d_max_pool:
      return {pool_kind::max, {1, 1, 2}, {1, 1, 2}, {0, 0, 0}, false, true};
    case slow_aggregation::spatial_1d_avg_pool:
      return {pool_kind::average, {1, 1, 2}, {1, 1, 2}, {0, 0, 0}, false, true};
    case slow_aggregation::spatial_2d_max_pool:
      return {pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true};
    case slow_aggregation::spatial_2d_avg_pool:
      return {pool_kind::average, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true};
    case slow_aggregation::concat: break;
  }
  // A 1-token max window copies every value bit for bit (NaN payloads and -0 included).
  return {pool_kind::max, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, false, true};
}

constexpr bool flattens(slow_aggregation a) noexcept {
  return a == slow_aggregation::spatial_1d_max_pool || a == slow_aggregation::spatial_1d_avg_pool;
}

/// How a frame count is checked against the T frames it is taken from.
inline status check_pick(index_t picks, index_t from) noexcept {
  if (picks < 1) return status::invalid_budget;
  return picks > from ? status::budget_exceeds_input : status::ok;
}

}  // namespace detail

/// The segments of `p` on `grid`; `code` is `ok` or the status `apply` would return: grid
/// (`shape_mismatch`, `empty_input`), then S (`invalid_budget` for S < 1,
/// `budget_exceeds_input` for S > T), then `invalid_parameter` for a, b < 1 or a frame too small
/// for the slow pooling (H·W < 2 in 1-D, H or W < 2 in 2-D).
inline slowfast_layout layout_of(const slowfast& p, const token_grid& grid) noexcept {
  slowfast_layout l;
  const auto fail = [](status s) {
    slowfast_layout f;
    f.code = s;
    return f;
  };
  if (status s = detail::check_input_grid(grid); s != status::ok) return fail(s);
  if (status s = detail::check_pick(p.slow_frames, grid.frames); s != status::ok) return fail(s);
  if (p.fast_height < 1 || p.fast_width < 1) return fail(status::invalid_parameter);
  l.slow_frames = p.slow_frames;
  l.slow_frame_grid = detail::flattens(p.slow) ? token_grid{1, 1, grid.frame_tokens()}
                                               : token_grid{1, grid.height, grid.width};
  const detail::grid_result slow =
      detail::reduced_grid(detail::slow_pool(p.slow), l.slow_frame_grid);
  if (slow.code != status::ok) return fail(slow.code);
  l.slow_out = slow.grid;
  l.fast_out = {grid.frames, p.fast_height, p.fast_width};
  l.slow_count = l.slow_frames * l.slow_out.tokens();
  l.fast_count = l.fast_out.tokens();
  l.count = l.slow_count + l.fast_count;
  return l;
}

/// The rows × cols grid TS-LLaVA tiles `frames` images in (`find_best_grid`): the factor pair
/// closest to square, the larger factor as rows. 6 → 3 × 2, 4 → 2 × 2, 8 → 4 × 2, 5 → 5 × 1.
constexpr tile_grid thumbnail_tile_grid(index_t frames) noexcept {
  if (frames < 1) return {};
  index_t small = 1;
  for (index_t i = 1; i * i <= frames; ++i)
    if (frames % i == 0) small = i;
  return {frames / small, small};
}

/// The segments of `p` on `grid`; `code` is `ok` or the status `apply` would return: grid
/// (`shape_mismatch`, `empty_input`), then n (`invalid_budget` for n < 1,
/// `budget_exceeds_input` for n > T·H·W), then F (the same two for F < 1 and F > T), then
/// `invalid_parameter` when a tile would be empty (H < rows or W < cols) and the thumbnail is
/// included.
inline thumbnail_layout layout_of(const thumbnail_sampling& p, const token_grid& grid) noexcept {
  thumbnail_layout l;
  const auto fail = [](status s) {
    thumbnail_layout f;
    f.code = s;
    return f;
  };
  if (status s = detail::check_input_grid(grid); s != status::ok) return fail(s);
  if (status s = detail::check_pick(p.sampled_tokens, grid.tokens()); s != status::ok)
    return fail(s);
  if (status s = detail::check_pick(p.thumbnail_frames, grid.frames); s != status::ok)
    return fail(s);
  l.sampled_count = p.sampled_tokens;
  l.tiles = thumbnail_tile_grid(p.thumbnail_frames);
  l.tile_height = grid.height / l.tiles.rows;
  l.tile_width = grid.width / l.tiles.cols;
  if (p.include_thumbnail) {
    if (l.tile_height < 1 || l.tile_width < 1) return fail(status::invalid_parameter);
    l.thumbnail = {1, l.tiles.rows * l.tile_height, l.tiles.cols * l.tile_width};
    l.thumbnail_count = l.thumbnail.tokens();
  } else {
    l.thumbnail = {1, 0, 0};
  }
  const bool thumb_first = p.order == thumbnail_order::thumbnail_first;
  l.thumbnail_offset = thumb_first ? 0 : l.sampled_count;
  l.sampled_offset = thumb_first ? l.thumbnail_count : 0;
  if (l.sampled_count > PTRDIFF_MAX - l.thumbnail_count) return fail(status::shape_mismatch);  // rows past index_t
  l.count = l.sampled_count + l.thumbnail_count;
  return l;
}

/// Slow frame s (0 <= s < S) of `p` among `frames` frames: int32(linspace(0, T, S + 1)[s]),
/// SlowFast-LLaVA's `prepare_slowfast` rule. Requires 1 <= S (S <= T for distinct frames).
TOKRED_HOST_DEVICE inline index_t slow_frame(const slowfast& p, index_t frames,
                                             index_t s) noexcept {
  if (p.arithmetic == linspace_arithmetic::exact) return s * frames / p.slow_frames;
  // float -> int32 in torch truncates toward zero; the values are >= 0, so this is floor.
  return static_cast<index_t>(detail::torch_linspace_f32(
      0, frames, p.slow_frames + 1, s, p.arithmetic == linspace_arithmetic::torch_fma));
}

/// Sampled token j (0 <= j < n) of `p` among `tokens` = T·H·W frame-major tokens:
/// round(linspace(0, N − 1, n)[j]), TS-LLaVA's `sample_tokens` rule.
TOKRED_HOST_DEVICE inline index_t sampled_token(const thumbnail_sampling& p, index_t tokens,
                                                index_t j) noexcept {
  return detail::rounded_linspace(tokens - 1, p.sampled_tokens, j, p.arithmetic);
}

/// Thumbnail frame f (0 <= f < F) of `p` among `frames` frames: round(linspace(0, T − 1, F)[f]),
/// TS-LLaVA's `uniformly_sample_frames` rule. Frame f is tile (f / cols, f % cols).
TOKRED_HOST_DEVICE inline index_t thumbnail_frame(const thumbnail_sampling& p, index_t frames,
                                                  index_t f) noexcept {
  return detail::rounded_linspace(frames - 1, p.thumbnail_frames, f, p.arithmetic);
}

/// Exact number of output tokens; 0 exactly when `can_implement` fails.
inline index_t retained_count(const slowfast& p, const problem& prob) noexcept {
  return layout_of(p, prob.grid).count;
}
inline index_t retained_count(const thumbnail_sampling& p, const problem& prob) noexcept {
  return layout_of(p, prob.grid).count;
}

/// `ok`, or the status `apply` would return for these parameters on this grid (see `layout_of`).
inline status can_implement(const slowfast& p, const problem& prob) noexcept {
  return layout_of(p, prob.grid).code;
}
inline status can_implement(const thumbnail_sampling& p, const problem& prob) noexcept {
  return layout_of(p, prob.grid).code;
}

namespace detail {

/// Every check of a layout, as both backends make them: parameters and grid (`layout_of`), then
/// `check_grid_views`. Returns the layout, its `code` the first failure.
template <class Policy, class Ein, class Eout, class Space>
auto check_layout(const Policy& p, const grid_inputs<Ein, Space>& in,
                  const grid_outputs<Eout, Space>& out) noexcept {
  auto l = layout_of(p, in.grid);
  if (l.code == status::ok) l.code = check_grid_views(in, out, l.count);
  return l;
}

/// Where a pooled output row of a layout comes from: the input frame it pools and its index on
/// the output grid of that frame's pooling (`slow_out` for a slow row, the tile for a thumbnail
/// row). Both backends take a layout's index math from here.
struct layout_cell {
  index_t frame = 0;
  index_t index = 0;
};

/// Slow output j (0 <= j < slow_count): slow frame s = j / (tokens per slow frame) and j's place
/// in that frame's pooled output.
TOKRED_HOST_DEVICE inline layout_cell slow_cell_at(const slowfast& p, const slowfast_layout& l,
                                                   index_t frames, index_t j) noexcept {
  const index_t per_frame = l.slow_out.tokens();
  const index_t s = j / per_frame;
  return {slow_frame(p, frames, s), j - s * per_frame};
}

/// Output token j of a slowfast layout: the centre of its pooling window, as `meta_at` of the
/// pool (slow) or adaptive pool (fast) that produced it, in the whole grid's flat indices.
TOKRED_HOST_DEVICE inline grid_meta layout_meta_at(const slowfast& p, const slowfast_layout& l,
                                                   const token_grid& grid, index_t j) noexcept {
  if (j < l.slow_count) {
    const layout_cell c = slow_cell_at(p, l, grid.frames, j);
    grid_meta m = meta_at(slow_pool(p.slow), l.slow_frame_grid, l.slow_out, c.index);
    m.source += c.frame * grid.frame_tokens();
    return m;
  }
  return meta_at(adaptive_pool{pool_kind::average, {grid.frames, p.fast_height, p.fast_width}},
                 grid, l.fast_out, j - l.slow_count);
}

/// The adaptive pooling that turns one thumbnail frame into its tile.
TOKRED_HOST_DEVICE inline adaptive_pool tile_pool(const thumbnail_layout& l) noexcept {
  return {pool_kind::average, {1, l.tile_height, l.tile_width}};
}

/// Thumbnail token k (0 <= k < thumbnail_count, raster over the thumbnail grid): the frame of
/// the tile it falls in, and its raster index within that tile_height × tile_width tile.
TOKRED_HOST_DEVICE inline layout_cell thumbnail_cell_at(const thumbnail_sampling& p,
                                                        const thumbnail_layout& l, index_t frames,
                                                        index_t k) noexcept {
  const token_position cell = l.thumbnail.position(k);
  const index_t tile_row = cell.h / l.tile_height, tile_col = cell.w / l.tile_width;
  return {thumbnail_frame(p, frames, tile_row * l.tiles.cols + tile_col),
          (cell.h - tile_row * l.tile_height) * l.tile_width + (cell.w - tile_col * l.tile_width)};
}

/// Output token j of a thumbnail_sampling layout: a sampled token itself (size 1), or the centre
/// of the adaptive-pooling bin its thumbnail cell covers in the chosen frame.
TOKRED_HOST_DEVICE inline grid_meta layout_meta_at(const thumbnail_sampling& p,
                                                   const thumbnail_layout& l,
                                                   const token_grid& grid, index_t j) noexcept {
  const index_t k = j - l.sampled_offset;
  if (k >= 0 && k < l.sampled_count) return {sampled_token(p, grid.tokens(), k), 1.0f};
  const layout_cell c = thumbnail_cell_at(p, l, grid.frames, j - l.thumbnail_offset);
  const token_grid frame_grid{1, grid.height, grid.width};
  const token_grid tile{1, l.tile_height, l.tile_width};
  grid_meta m = meta_at(tile_pool(l), frame_grid, tile, c.index);
  m.source += c.frame * grid.frame_tokens();
  return m;
}

}  // namespace detail
}  // namespace tokred
