// tokred/policy/holitom.hpp — HoliTom's outer-LLM stage: cut a video into windows of frames that
// stay still, merge each window's still tokens over time and then over space, keep the moving
// tokens by attention.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/holitom.hpp>. The merged count depends
// on the data, so the outputs are `counted_merge_outputs` (<tokred/policy/merge.hpp>) sized by
// the static upper bound `retained_count` returns, plus what the segmentation decided:
//   tokens       (bound, dim)  rows [0, count): the output tokens in the layout's order
//   source       (bound,)      each token's representative input token (−1 for a newline row)
//   positions    (bound, 3)    its (t, h, w); a newline row has (t, h, W): one past its row
//   sizes        (bound,)      the original tokens it stands for (0 for a newline row)
//   assign       (tokens,)     every input token's output row, −1 for a dropped token
//   count        (1,)          rows written
//   window_start (T,)          the first frame of every frame's window
//   retain_ratio (1,)          the retain ratio after the rescale, r'
// Rows past the count are left as they were.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/clustering.hpp"
#include "tokred/policy/merge.hpp"

namespace tokred {

/// The order of holitom's output tokens: the original's two `mm_newline_position` settings.
enum class holitom_layout {
  windows,     ///< per window: its static clusters (center order), then each frame's dynamic
               ///< tokens (position order; dominant before contextual) — "one_token" (LLaVA-OV)
  frame_rows,  ///< per frame in position order, a window's static clusters in its first frame,
               ///< a newline row after every non-empty grid row when one is given — "grid"
               ///< (LLaVA-Video)
};

/// HoliTom's outer-LLM stage (Shao et al., "HoliTom: Holistic Token Merging for Fast Video Large
/// Language Models", arXiv 2505.21334; cokeshao/HoliTom `LlavaMetaForCausalLM_holitom`:
/// `select_static_windows`, `get_static_dynamic_features`, `holitom`,
/// `merge_tokens_by_attention_density`, `merge_tokens_by_density`), on the T frames of H·W tokens
/// of `grid` (the pooled features: LLaVA's bilinear 27 → 14 pool first, `pool` of
/// <tokred/policy/pool.hpp>, the attention pooled the same way):
///
///   sim          sim_t[p] = cos(x_t[p], x_{t+1}[p]) for t < T − 1 (`temporal_similarity`)
///   still        still(s, e)[p] = sim_t[p] > τ for every t in [s, e − 1]; gain(s, e) =
///                #{p : still(s, e)[p]}·(e − s): the tokens a window [s, e] saves
///   windows      dp[i] = max(dp[i − 1], dp[i − w] + gain(i − w + 1, i) for w = 2 … min(i + 1,
///                max_window)), dp[−1] = 0, taking a window only when strictly better and the
///                shorter one on ties; the windows are read back from the last frame
///   rescale      r' = min(r / ((T·N' − dp[T − 1]) / (T·N')), 1) in double, N' = H·W
///   static       in a window of two or more frames, the S positions still over the whole
///                window; each becomes the mean of its w frames (fp32, frame order), and those
///                S rows are clustered by DPC-kNN (`dpc_knn`{round(S·r'), k, β, merge}, round
///                half to even) into the window's static tokens, listed in center order
///   dynamic      every other token, frame by frame (all H·W of a one-frame window): of the n
///                in the frame, ⌈n·r'⌉ are kept; round(⌈n·r'⌉·(1 − D)) dominant ones by highest
///                attention (ties to the lower position, NaN last), in position order; the
///                rest, ⌈n·r'⌉ − dominant, are DPC-kNN clusters of the n − dominant others
///                (contextual tokens, center order); with the default D = 0 there are none and
///                every other dynamic token is dropped
///   output       `holitom_layout` orders the tokens; the count is the sum over windows and
///                frames (plus the newline rows)
///
/// Sizes: a static token stands for w·(the positions of its cluster), a contextual token for
/// its cluster's tokens, a dominant one for itself. Sources and positions: a cluster's center
/// (a static center at the window's first frame).
///
/// Differences from the original, each documented where it matters: DPC-kNN adds no random
/// noise to the densities (`dpc_knn`: density ties go to the lower index; with one cluster the
/// original's center is random, tokred's the first); D > 0 runs the contextual clustering the
/// paper describes, where the released code stops with a shape error; the rows of the
/// frame_rows layout are the grid's own (the original takes √(H·W) as the row length, the same
/// for the square grids it runs on); dp is counted in 64-bit integers (the original's fp32 is
/// exact up to 2²⁴ saved tokens).
///
/// Defaults are the original's environment defaults: RETAIN_RATIO 0.1, T (τ) 0.8, D 0, K 7,
/// BETA 0.6 with the blend, MAX_WINDOW_SIZE 1024. Its evaluation scripts use τ = 0.65 at
/// r = 0.10 and τ = 0.8 at r = 0.15 … 0.25. Statuses and their check order:
/// `backend<holitom, cpu<Arch>>` and docs/policies/holitom.md.
struct holitom {
  double retain_ratio = 0.1;  ///< r, the share of tokens kept before the rescale, in [0, 1]
  float tau = 0.8f;           ///< τ: a position is still across frames t, t+1 when sim > τ
  double contextual = 0.0;    ///< D: the share of a frame's dynamic budget given to clusters, in [0, 1]
  index_t k = 7;              ///< DPC-kNN's neighbours (the original's K), min(k, clusters) used
  float beta = 0.6f;          ///< the center's weight in a blended cluster, in [0, 1]
  index_t max_window = 1024;  ///< the longest window in frames (1: no window merges frames)
  cluster_merge merge = cluster_merge::blend;  ///< blend (the default) or group_mean (NO_BETA=1)
  holitom_layout layout = holitom_layout::windows;
};

/// Inputs of holitom.
template <class E, class Space = host_space>
struct holitom_inputs {
  using space = Space;
  token_grid grid;                      // (T, H, W), N = T·H·W
  view<const E, 2, Space> tokens;       // (tokens, dim) the pooled features of every frame
  view<const float, 1, Space> attention;  // (tokens,) each token's received vision attention
  view<const E, 1, Space> newline;      // (dim,) frame_rows: written after every non-empty grid
                                        //   row (the model's image_newline); empty: none
};

/// Outputs of holitom: a counted merge's, sized by `retained_count`, plus the segmentation.
template <class E, class Space = host_space>
struct holitom_outputs : counted_merge_outputs<E, Space> {
  view<std::int64_t, 1, Space> window_start;  // (T,) optional: the first frame of t's window
  view<double, 1, Space> retain_ratio;        // (1,) optional: r' after the rescale
};

namespace detail {

/// The checks of holitom's parameters and grid, in order: `invalid_ratio` (r or D outside
/// [0, 1], NaN), `invalid_parameter` (NaN τ, k < 1, β outside [0, 1], max_window < 1, an
/// unknown merge or layout), the grid (`shape_mismatch`, also above 2²⁴ tokens a frame;
/// `empty_input`).
inline status check_holitom_problem(const holitom& p, const token_grid& grid) noexcept {
  if (!(p.retain_ratio >= 0.0 && p.retain_ratio <= 1.0)) return status::invalid_ratio;
  if (!(p.contextual >= 0.0 && p.contextual <= 1.0)) return status::invalid_ratio;
  const bool known_merge = p.merge == cluster_merge::blend || p.merge == cluster_merge::group_mean;
  const bool known_layout = p.layout == holitom_layout::windows || p.layout == holitom_layout::frame_rows;
  if (std::isnan(p.tau) || p.k < 1 || !(p.beta >= 0.0f && p.beta <= 1.0f) || p.max_window < 1 ||
      !known_merge || !known_layout)
    return status::invalid_parameter;
  if (status s = check_merge_grid(grid); s != status::ok) return s;
  return grid.frame_tokens() > max_cluster_tokens ? status::shape_mismatch : status::ok;
}

/// holitom's bound: N, plus one newline row per grid row of every frame in the frame_rows layout.
inline index_t holitom_bound(const holitom& p, const token_grid& grid) noexcept {
  const index_t rows = p.layout == holitom_layout::frame_rows ? grid.frames * grid.height : 0;
  return grid.tokens() + rows;
}

/// Every check of holitom that needs no access to values, in the documented order: parameters
/// and grid (`check_holitom_problem`), the token rows (N, dim ≥ 1; always read), out.tokens
/// (bound, dim) when requested, attention (N,), newline (dim,) when given, the outputs (source, positions,
/// sizes against the bound; assign (N,); count (1,) required; window_start (T,);
/// retain_ratio (1,)), overlaps.
template <class Ein, class Eout, class Space>
status check_holitom(const holitom& p, const holitom_inputs<Ein, Space>& in,
                     const holitom_outputs<Eout, Space>& out) noexcept {
  if (status s = check_holitom_problem(p, in.grid); s != status::ok) return s;
  const index_t n = in.grid.tokens(), bound = holitom_bound(p, in.grid);
  if (status s = check_rows(in.tokens, n); s != status::ok) return s;
  if (status s = check_optional_view(out.tokens, {bound, in.tokens.extent(1)}); s != status::ok) return s;
  if (status s = check_view(in.attention, {n}); s != status::ok) return s;
  if (status s = check_optional_view(in.newline, {in.tokens.extent(1)}); s != status::ok) return s;
  if (status s = check_optional_view(out.source, {bound}); s != status::ok) return s;
  if (status s = check_optional_view(out.positions, {bound, index_t{3}}); s != status::ok) return s;
  if (status s = check_optional_view(out.sizes, {bound}); s != status::ok) return s;
  if (status s = check_optional_view(out.assign, {n}); s != status::ok) return s;
  if (status s = check_view(out.count, {index_t{1}}); s != status::ok) return s;
  if (status s = check_optional_view(out.window_start, {in.grid.frames}); s != status::ok) return s;
  if (status s = check_optional_view(out.retain_ratio, {index_t{1}}); s != status::ok) return s;

  const auto hits_input = [&](const auto& o) {
    return overlaps_any(o, in.tokens, in.attention, in.newline);
  };
  const bool hit = hits_input(out.tokens) || hits_input(out.source) || hits_input(out.positions) ||
                   hits_input(out.sizes) || hits_input(out.assign) || hits_input(out.count) ||
                   hits_input(out.window_start) || hits_input(out.retain_ratio) ||
                   any_overlap(out.tokens, out.source, out.positions, out.sizes, out.assign, out.count,
                               out.window_start, out.retain_ratio);
  return hit ? status::aliasing : status::ok;
}

}  // namespace detail

/// The static upper bound of holitom's output count: N = T·H·W (nothing reduced), plus T·H
/// newline rows in the frame_rows layout. The real count depends on the data and is written to
/// `count`. 0 exactly when `can_implement` fails.
inline index_t retained_count(const holitom& p, const problem& prob) noexcept {
  return detail::check_holitom_problem(p, prob.grid) == status::ok ? detail::holitom_bound(p, prob.grid) : 0;
}

/// `ok`, or why holitom cannot run on this grid: `invalid_ratio`, `invalid_parameter`,
/// `shape_mismatch`, `empty_input` (see `detail::check_holitom_problem`).
inline status can_implement(const holitom& p, const problem& prob) noexcept {
  return detail::check_holitom_problem(p, prob.grid);
}

}  // namespace tokred
