// tokred/policy/grid_reduce.hpp — structured reducers: a (T, H, W) token grid in, a smaller grid
// out. Pooling, adaptive pooling, bilinear resampling and the DCT low-pass of Fourier-VLM.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/pool.hpp>, <tokred/cpu/dct.hpp>,
// <tokred/cuda/grid_reduce.cuh> and <tokred/cuda/dct.cuh>. Every reducer maps the input grid (T, H, W) to an output grid
// (T', H', W') known from the shapes alone (`output_grid`), and writes its tokens in raster order
// over that grid: t' slowest, then h', then w'.
//
// Outputs, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the reduced tokens
//   source    (kept,)      the original token each output stands in for: the centre of its window
//   positions (kept, 3)    the (t, h, w) of that original token
//   sizes     (kept,)      how many original tokens the output stands for
// The policy pages in docs/policies/ give each reducer's exact source, position and size rule.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// A size, kernel, stride or padding along the three grid axes (T, H, W).
struct extent3 {
  index_t t = 1;
  index_t h = 1;
  index_t w = 1;
};

/// Axis 0, 1 or 2 of an extent3: t, h or w.
constexpr index_t axis_of(const extent3& e, int axis) noexcept { return axis == 0 ? e.t : axis == 1 ? e.h : e.w; }

/// What a pooling window computes: the mean of its tokens, or their per-channel maximum.
enum class pool_kind { average, max };

/// Pooling over (T, H, W) with torch's semantics: `avg_pool3d` / `max_pool3d` with `kernel`,
/// `stride`, zero `padding`, `ceil_mode` and `count_include_pad` (average only; max pooling never
/// sees the padding). 1-D and 2-D pooling are kernel 1 (stride 1, padding 0) on the other axes.
///
/// The defaults are LLaVA-OneVision's `get_2dPool` "average" mode (2 × 2, stride 2, floor):
/// 27 × 27 → 13 × 13, dropping the last row and column.
/// Output extent per axis: floor((in + 2p − k) / s) + 1, or with `ceil_mode` the ceiling, less
/// one when the last window would start in the right padding (torch's rule).
struct pool {
  pool_kind kind = pool_kind::average;
  extent3 kernel{1, 2, 2};
  extent3 stride{1, 2, 2};
  extent3 padding{0, 0, 0};
  bool ceil_mode = false;
  bool count_include_pad = true;  ///< average only: divide by the window including padding
};

/// Adaptive pooling to a target grid (torch `AdaptiveAvgPool3d` / `AdaptiveMaxPool3d`, PLLaVA):
/// output index o of an axis covers inputs [floor(o·in/out), ceil((o+1)·in/out)). A target
/// larger than the input is allowed (bins then overlap), as in torch.
struct adaptive_pool {
  pool_kind kind = pool_kind::average;
  extent3 size;  ///< (T', H', W')
};

/// Bilinear resampling of every frame to `height × width` (torch `F.interpolate(mode="bilinear",
/// antialias=False)`; LLaVA-OneVision's "bilinear" mode: 27 × 27 → 14 × 14). Sampling
/// coordinates follow torch's CPU kernel exactly (see `detail::bilinear_tap_at`); frames are
/// independent.
struct bilinear {
  index_t height = 0;
  index_t width = 0;
  bool align_corners = false;
};

/// Which grid axes the DCT low-pass transforms.
enum class dct_axes { spatial, temporal, spatiotemporal };

/// What the DCT low-pass returns.
enum class dct_output {
  resampled,     ///< inverse DCT of the kept block at the kept size (Fourier-VLM's output)
  coefficients,  ///< the kept block of orthonormal DCT-II coefficients itself, raster order
};

/// Fourier-VLM's DCT low-pass: orthonormal DCT-II over the transformed axes, per channel; keep
/// the lowest `keep` frequencies of each; then (resampled) the orthonormal inverse at the kept
/// size. Because that inverse is orthonormal at the smaller size, a constant c comes back as
/// c·√(in/out) over the transformed axes (2c for 24 × 24 → 12 × 12): the original's gain,
/// reproduced exactly. Axes not transformed must keep their full size; `spatial` transforms
/// each frame alone (the Qwen2-VL integration).
struct dct_lowpass {
  extent3 keep;  ///< (t, h, w) kept frequencies, each at most the grid's extent
  dct_axes axes = dct_axes::spatial;
  dct_output produce = dct_output::resampled;
};

/// Inputs of every grid reducer.
template <class E, class Space = host_space>
struct grid_inputs {
  using space = Space;
  token_grid grid;                 ///< (T, H, W), N = T·H·W
  view<const E, 2, Space> tokens;  // (tokens, dim)
};

/// Outputs of every grid reducer. Each view is optional: leave it empty to skip it.
template <class E, class Space = host_space>
struct grid_outputs {
  using space = Space;
  view<E, 2, Space> tokens;                // (kept, dim)
  view<std::int64_t, 1, Space> source;     // (kept,)
  view<std::int32_t, 2, Space> positions;  // (kept, 3) as (t, h, w)
  view<float, 1, Space> sizes;             // (kept,)
};

namespace detail {

/// A half-open interval of input indices along one axis.
struct span1 {
  index_t begin = 0;
  index_t end = 0;
};

/// torch's pooling output extent along one axis, or 0 when the parameters are invalid there.
constexpr index_t pool_extent(index_t in, index_t kernel, index_t stride, index_t padding,
                              bool ceil_mode) noexcept {
  if (kernel < 1 || stride < 1 || padding < 0 || 2 * padding > kernel) return 0;
  const index_t room = in + 2 * padding - kernel;
  if (room < 0) return 0;
  index_t out = (room + (ceil_mode ? stride - 1 : 0)) / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + padding) --out;
  return out;
}

/// The input tokens of pooling window `o` along one axis (padding clipped away), and the
/// window's extent counting padding (torch's divisor with `count_include_pad`).
struct pool_window {
  span1 tokens;
  index_t padded = 0;
};

TOKRED_HOST_DEVICE constexpr pool_window pool_window_at(index_t o, index_t in, index_t kernel,
                                                        index_t stride, index_t padding) noexcept {
  const index_t start = o * stride - padding;
  const index_t stop = start + kernel < in + padding ? start + kernel : in + padding;
  return {{start < 0 ? 0 : start, stop < in ? stop : in}, stop - start};
}

/// Adaptive pooling bin `o` of `out` along an axis of `in`: [floor(o·in/out), ceil((o+1)·in/out)).
TOKRED_HOST_DEVICE constexpr span1 adaptive_bin(index_t o, index_t in, index_t out) noexcept {
  return {o * in / out, ((o + 1) * in + out - 1) / out};
}

/// Where output index `o` samples an input axis under bilinear resampling: the two neighbours
/// and the weight of the second, as torch's CPU kernel computes them: the scale in fp32 (in/out,
/// or (in−1)/(out−1) with aligned corners), the source coordinate and its fraction in double,
/// the weight rounded once to fp32. Those double steps are exact (a float times a small integer
/// plus a half), so no compiler can contract them differently on host and device. An axis of
/// unchanged size copies, as torch does: the second neighbour is the first, so an inf or NaN
/// next door never leaks in through a zero weight.
struct bilinear_tap {
  index_t i0 = 0;
  index_t i1 = 0;
  float lambda = 0.0f;
};

/// a / b in fp32, correctly rounded on both sides whatever nvcc's flags (div_rn).
TOKRED_HOST_DEVICE inline float float_ratio(index_t a, index_t b) noexcept {
  return div_rn(static_cast<float>(a), static_cast<float>(b));
}

TOKRED_HOST_DEVICE inline bilinear_tap bilinear_tap_at(index_t o, index_t in, index_t out,
                                                       bool align_corners) noexcept {
  if (in == out) return {o, o, 0.0f};
  double src;
  if (align_corners) {
    const float scale = out > 1 ? float_ratio(in - 1, out - 1) : 0.0f;
    src = static_cast<double>(scale) * static_cast<double>(o);
  } else {
    const float scale = float_ratio(in, out);
    src = static_cast<double>(scale) * (static_cast<double>(o) + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
  }
  const auto i0 = static_cast<index_t>(src);  // src >= 0: truncation is floor
  return {i0, i0 < in - 1 ? i0 + 1 : i0, static_cast<float>(src - static_cast<double>(i0))};
}

/// The middle token of an interval (the lower of the two middles for an even length).
TOKRED_HOST_DEVICE constexpr index_t middle(span1 s) noexcept {
  return s.begin + (s.end - s.begin - 1) / 2;
}

/// What output token j of a grid reducer stands for: its representative original token (the
/// `source` output, whose (t, h, w) is the `positions` output) and how many originals it covers
/// (the `sizes` output).
struct grid_meta {
  index_t source = 0;
  float size = 0.0f;
};

/// The (t', h', w') of output token j on the output grid.
TOKRED_HOST_DEVICE constexpr token_position output_cell(const token_grid& out, index_t j) noexcept {
  return out.position(j);
}

TOKRED_HOST_DEVICE constexpr index_t flat_index(const token_grid& g, index_t t, index_t h,
                                                index_t w) noexcept {
  return (t * g.height + h) * g.width + w;
}

/// Pooling window j: its input tokens along each axis (padding clipped away) and torch's
/// divisor for the average (the padded window with `count_include_pad`, else its tokens).
struct pool_cell {
  span1 t, h, w;
  index_t divisor = 1;
};

TOKRED_HOST_DEVICE constexpr pool_cell pool_cell_at(const pool& p, const token_grid& in,
                                                    const token_grid& out, index_t j) noexcept {
  const token_position o = output_cell(out, j);
  const pool_window t = pool_window_at(o.t, in.frames, p.kernel.t, p.stride.t, p.padding.t);
  const pool_window h = pool_window_at(o.h, in.height, p.kernel.h, p.stride.h, p.padding.h);
  const pool_window w = pool_window_at(o.w, in.width, p.kernel.w, p.stride.w, p.padding.w);
  const index_t inside = (t.tokens.end - t.tokens.begin) * (h.tokens.end - h.tokens.begin) *
                         (w.tokens.end - w.tokens.begin);
  return {t.tokens, h.tokens, w.tokens,
          p.count_include_pad ? t.padded * h.padded * w.padded : inside};
}

/// Pooling: the middle token of the window (padding clipped away); size = the tokens in it.
TOKRED_HOST_DEVICE constexpr grid_meta meta_at(const pool& p, const token_grid& in,
                                               const token_grid& out, index_t j) noexcept {
  const pool_cell c = pool_cell_at(p, in, out, j);
  return {flat_index(in, middle(c.t), middle(c.h), middle(c.w)),
          static_cast<float>((c.t.end - c.t.begin) * (c.h.end - c.h.begin) * (c.w.end - c.w.begin))};
}

/// Adaptive pooling: the middle token of the bin; size = the tokens in it.
TOKRED_HOST_DEVICE constexpr grid_meta meta_at(const adaptive_pool&, const token_grid& in,
                                               const token_grid& out, index_t j) noexcept {
  const token_position o = output_cell(out, j);
  const span1 t = adaptive_bin(o.t, in.frames, out.frames);
  const span1 h = adaptive_bin(o.h, in.height, out.height);
  const span1 w = adaptive_bin(o.w, in.width, out.width);
  return {flat_index(in, middle(t), middle(h), middle(w)),
          static_cast<float>((t.end - t.begin) * (h.end - h.begin) * (w.end - w.begin))};
}

/// Bilinear, along one axis: the nearest of output index o's two taps (the second on a tie,
/// lambda = 0.5). Nondecreasing in o.
TOKRED_HOST_DEVICE inline index_t bilinear_nearest_tap(index_t o, index_t in, index_t out,
                                                       bool align_corners) noexcept {
  const bilinear_tap tap = bilinear_tap_at(o, in, out, align_corners);
  return tap.lambda >= 0.5f ? tap.i1 : tap.i0;
}

/// Bilinear: the nearest of the four taps; size = the area ratio H·W / (H'·W') (below 1 when
/// upsampling).
TOKRED_HOST_DEVICE inline grid_meta meta_at(const bilinear& p, const token_grid& in,
                                            const token_grid& out, index_t j) noexcept {
  const token_position o = output_cell(out, j);
  return {flat_index(in, o.t, bilinear_nearest_tap(o.h, in.height, out.height, p.align_corners),
                     bilinear_nearest_tap(o.w, in.width, out.width, p.align_corners)),
          float_ratio(in.frame_tokens(), out.frame_tokens())};
}

/// The DCT low-pass, along one axis: output index o stands for the centre of the o-th of `out`
/// equal stretches of `in` indices, floor((2o + 1)·in / (2·out)). Nondecreasing in o; o itself
/// on an axis kept whole.
TOKRED_HOST_DEVICE constexpr index_t stretch_centre(index_t o, index_t in, index_t out) noexcept {
  return (2 * o + 1) * in / (2 * out);
}

/// DCT low-pass (both outputs): the stretch centre along each axis; size = the token ratio N / N'.
TOKRED_HOST_DEVICE inline grid_meta meta_at(const dct_lowpass&, const token_grid& in,
                                               const token_grid& out, index_t j) noexcept {
  const token_position o = output_cell(out, j);
  return {flat_index(in, stretch_centre(o.t, in.frames, out.frames), stretch_centre(o.h, in.height, out.height),
                     stretch_centre(o.w, in.width, out.width)),
          float_ratio(in.tokens(), out.tokens())};
}

/// The (T', H', W') a policy produces from `grid`, and the status if it produces none.
struct grid_result {
  status code = status::ok;
  token_grid grid;
};

inline status check_input_grid(const token_grid& grid) noexcept {
  if (!grid.valid()) return status::shape_mismatch;
  return grid.tokens() == 0 ? status::empty_input : status::ok;
}

inline grid_result reduced_grid(const pool& p, const token_grid& g) noexcept {
  if (status s = check_input_grid(g); s != status::ok) return {s, {}};
  const token_grid out{
      pool_extent(g.frames, p.kernel.t, p.stride.t, p.padding.t, p.ceil_mode),
      pool_extent(g.height, p.kernel.h, p.stride.h, p.padding.h, p.ceil_mode),
      pool_extent(g.width, p.kernel.w, p.stride.w, p.padding.w, p.ceil_mode)};
  if (out.tokens() == 0) return {status::invalid_parameter, {}};
  return {status::ok, out};
}

/// A target grid of positive extents whose token count T·H·W fits `index_t` (a larger one
/// could not be counted, let alone stored).
constexpr bool countable_target(index_t t, index_t h, index_t w) noexcept {
  constexpr index_t most = std::numeric_limits<index_t>::max();
  return t >= 1 && h >= 1 && w >= 1 && h <= most / w && t <= most / (h * w);
}

inline grid_result reduced_grid(const adaptive_pool& p, const token_grid& g) noexcept {
  if (status s = check_input_grid(g); s != status::ok) return {s, {}};
  if (!countable_target(p.size.t, p.size.h, p.size.w)) return {status::invalid_parameter, {}};
  return {status::ok, {p.size.t, p.size.h, p.size.w}};
}

inline grid_result reduced_grid(const bilinear& p, const token_grid& g) noexcept {
  if (status s = check_input_grid(g); s != status::ok) return {s, {}};
  if (!countable_target(g.frames, p.height, p.width)) return {status::invalid_parameter, {}};
  return {status::ok, {g.frames, p.height, p.width}};
}

inline grid_result reduced_grid(const dct_lowpass& p, const token_grid& g) noexcept {
  if (status s = check_input_grid(g); s != status::ok) return {s, {}};
  const bool spatial = p.axes != dct_axes::temporal;
  const bool temporal = p.axes != dct_axes::spatial;
  const auto fits = [](index_t keep, index_t in, bool transformed) {
    return transformed ? keep >= 1 && keep <= in : keep == in;
  };
  if (!fits(p.keep.t, g.frames, temporal) || !fits(p.keep.h, g.height, spatial) ||
      !fits(p.keep.w, g.width, spatial))
    return {status::invalid_parameter, {}};
  return {status::ok, {p.keep.t, p.keep.h, p.keep.w}};
}

/// The view checks of every grid reducer and layout, in the documented order: token rows
/// against the grid, requested outputs against `kept`, then no output overlapping the input or
/// another output.
template <class Ein, class Eout, class Space>
status check_grid_views(const grid_inputs<Ein, Space>& in, const grid_outputs<Eout, Space>& out,
                        index_t kept) noexcept {
  if (status s = check_row_output(in.tokens, in.grid.tokens(), out.tokens, kept); s != status::ok) return s;
  if (status s = check_optional_view(out.source, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.positions, {kept, index_t{3}}); s != status::ok) return s;
  if (status s = check_optional_view(out.sizes, {kept}); s != status::ok) return s;

  // The input rows are read only for the tokens output; outputs left empty overlap nothing.
  const bool hit = (requested(out.tokens) &&
                    overlaps_any(in.tokens, out.tokens, out.source, out.positions, out.sizes)) ||
                   any_overlap(out.tokens, out.source, out.positions, out.sizes);
  return hit ? status::aliasing : status::ok;
}

/// Every check of a grid reducer: parameters and grid, then `check_grid_views`. Returns the
/// output grid on success.
template <class Policy, class Ein, class Eout, class Space>
grid_result check_grid_reduce(const Policy& p, const grid_inputs<Ein, Space>& in,
                              const grid_outputs<Eout, Space>& out) noexcept {
  const grid_result r = reduced_grid(p, in.grid);
  if (r.code != status::ok) return r;
  if (status s = check_grid_views(in, out, r.grid.tokens()); s != status::ok) return {s, {}};
  return r;
}

}  // namespace detail

/// The output grid (T', H', W') of a grid reducer on `grid`; all zero when it cannot run.
inline token_grid output_grid(const pool& p, const token_grid& grid) noexcept {
  return detail::reduced_grid(p, grid).grid;
}
inline token_grid output_grid(const adaptive_pool& p, const token_grid& grid) noexcept {
  return detail::reduced_grid(p, grid).grid;
}
inline token_grid output_grid(const bilinear& p, const token_grid& grid) noexcept {
  return detail::reduced_grid(p, grid).grid;
}
inline token_grid output_grid(const dct_lowpass& p, const token_grid& grid) noexcept {
  return detail::reduced_grid(p, grid).grid;
}

/// Exact number of output tokens, T'·H'·W'; 0 exactly when `can_implement` fails.
inline index_t retained_count(const pool& p, const problem& prob) noexcept {
  return output_grid(p, prob.grid).tokens();
}
inline index_t retained_count(const adaptive_pool& p, const problem& prob) noexcept {
  return output_grid(p, prob.grid).tokens();
}
inline index_t retained_count(const bilinear& p, const problem& prob) noexcept {
  return output_grid(p, prob.grid).tokens();
}
inline index_t retained_count(const dct_lowpass& p, const problem& prob) noexcept {
  return output_grid(p, prob.grid).tokens();
}

/// `ok`, or why the parameters do not fit the grid: `empty_input`, `shape_mismatch` (a negative
/// grid extent) or `invalid_parameter`.
inline status can_implement(const pool& p, const problem& prob) noexcept {
  return detail::reduced_grid(p, prob.grid).code;
}
inline status can_implement(const adaptive_pool& p, const problem& prob) noexcept {
  return detail::reduced_grid(p, prob.grid).code;
}
inline status can_implement(const bilinear& p, const problem& prob) noexcept {
  return detail::reduced_grid(p, prob.grid).code;
}
inline status can_implement(const dct_lowpass& p, const problem& prob) noexcept {
  return detail::reduced_grid(p, prob.grid).code;
}

/// Fourier-VLM's Qwen2-VL rule for the kept block of one frame: max(int(side · ratio), 1) per
/// spatial axis (default ratio 2/3), the frames kept whole.
inline dct_lowpass dct_lowpass_for_ratio(const token_grid& grid, double ratio = 2.0 / 3.0) noexcept {
  const auto side = [ratio](index_t n) {
    const auto k = static_cast<index_t>(static_cast<double>(n) * ratio);
    return k < 1 ? index_t{1} : k;
  };
  return {{grid.frames, side(grid.height), side(grid.width)}, dct_axes::spatial,
          dct_output::resampled};
}

}  // namespace tokred
