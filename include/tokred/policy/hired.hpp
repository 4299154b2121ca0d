// tokred/policy/hired.hpp — HiRED's budgeted selection over the partitions of a high-resolution
// image: a budget split between the full image and its sub-crops, guided by early-layer
// attention, then a top-k in every partition.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/hired.hpp>. The sub-crops' budgets
// depend on the data, so the outputs are `counted_outputs`: sized by the static upper bound that
// `retained_count` returns, with the real count written to `count`.
//
// Outputs (partition by partition, each partition's kept tokens in raster order):
//   tokens    (bound, dim)  the kept rows
//   source    (bound,)      the original index of each kept token (p·H·W + raster index)
//   positions (bound, 3)    the original (t, h, w) of each kept token, t = the partition
//   count     (1,)          how many rows were written; the rest are left as they were
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// How the full image's tokens map to the sub-crops when the budget is split.
enum class partition_map {
  /// Sub-crop (r, c) of a crop_rows × crop_cols grid takes the full-image tokens of patch row
  /// h and column w with floor(h·crop_rows / H) = r and floor(w·crop_cols / W) = c: the part of
  /// the full image it shows.
  spatial,
  /// The original's reshape: the raster order is cut into P − 1 equal runs, and sub-crop k takes
  /// run k. For a 2 × 2 grid of 24 × 24 tokens that is six rows each, not the quadrants.
  row_bands,
};

/// HiRED (Arif et al., AAAI 2025; arXiv 2408.10945) for LLaVA-NeXT's anyres partitions: the grid's
/// T = P frames are the full (downscaled) image, then its P − 1 sub-crops in row-major crop order.
///
///   total     int(P·H·W · budget)
///   full      min(int(total · alpha), H·W)               kept in the full image
///   sub_total min(total − full, (P − 1)·H·W)              shared by the sub-crops
///   marks     the int(H·W · (1 − alpha)) full-image tokens of highest early score
///   c_i       marks falling in sub-crop i (`partition_map`)
///   budget_i  min(H·W, int(float(c_i / Σc) · sub_total))  float32, as the original's tensors
///
/// Then every partition keeps its budget of highest late scores (ties to the lower index, NaN
/// last). Python's int truncates every product; the products are taken in double like Python's.
/// With no mark (alpha = 1) the sub-crops keep nothing (the original divides 0 by 0).
/// `hired::original(…)` selects the original's row bands; the default maps sub-crops spatially.
/// HiRED on a single image (LLaVA-1.5) is `topk` with `keep_budget::ratio(budget,
/// rounding::floor)`; this policy needs the full image and at least one sub-crop (T ≥ 2).
///
/// The original then lays the sub-crops out as one big grid and unpads it, which can drop kept
/// tokens that fall in padding; that layout is the engine's (LLaVA-NeXT's), not this selection's.
struct hired {
  double budget = 0.2;       ///< token_budget_rate: the share of all P·H·W tokens kept
  double alpha = 0.5;        ///< the share of that budget given to the full image
  index_t crop_rows = 2;     ///< rows of the sub-crop grid; crop_rows · crop_cols = P − 1
  index_t crop_cols = 2;     ///< columns of the sub-crop grid
  partition_map map = partition_map::spatial;

  /// The original's budget split: its scripts' budget 0.2 and alpha 0.5, and its row bands.
  static constexpr hired original(index_t crop_rows, index_t crop_cols, double budget = 0.2,
                                  double alpha = 0.5) noexcept {
    return {budget, alpha, crop_rows, crop_cols, partition_map::row_bands};
  }
};

/// Inputs of hired.
template <class E, class Space = host_space>
struct hired_inputs {
  using space = Space;
  token_grid grid;                           ///< (P, H, W): the full image, then the sub-crops
  view<const float, 1, Space> scores;        // (P·H·W,) late-layer [CLS] attention (block 22, head sum)
  view<const float, 1, Space> early_scores;  // (H·W,) early-layer [CLS] attention of the full image (block 0)
  view<const E, 2, Space> tokens;            // (P·H·W, dim)
};

namespace detail {

/// The budgets of hired that shapes alone decide.
struct hired_split {
  index_t full = 0;       ///< tokens kept in the full image
  index_t sub_total = 0;  ///< tokens the sub-crops share
  index_t marks = 0;      ///< full-image tokens marked by early attention
};

inline hired_split hired_budgets(const hired& p, const token_grid& grid) noexcept {
  const index_t per = grid.frame_tokens();
  const index_t total = floor_share(grid.tokens(), p.budget);  // budget and alpha in [0, 1], checked first
  hired_split s;
  s.full = floor_share(total, p.alpha);
  if (s.full > per) s.full = per;
  s.sub_total = total - s.full;
  if (s.sub_total > (grid.frames - 1) * per) s.sub_total = (grid.frames - 1) * per;
  s.marks = floor_share(per, 1.0 - p.alpha);
  return s;
}

/// The static upper bound of hired's count, or why there is none: full + sub_total, since the
/// sub-crop budgets are floors of shares of sub_total (their running sum is also capped there,
/// which float32 shares could otherwise pass above 2^22 tokens).
inline count_result hired_count(const hired& p, const token_grid& grid) noexcept {
  if (status s = check_group_grid(grid, scope::per_frame); s != status::ok) return {s, 0};
  if (!(p.budget >= 0.0 && p.budget <= 1.0) || !(p.alpha >= 0.0 && p.alpha <= 1.0))
    return {status::invalid_ratio, 0};
  if (p.crop_rows < 1 || p.crop_cols < 1 || (grid.frames - 1) % p.crop_cols != 0 ||
      p.crop_rows != (grid.frames - 1) / p.crop_cols)  // rows · cols = T − 1, without the product
    return {status::invalid_parameter, 0};
  if (p.map == partition_map::row_bands && grid.frame_tokens() % (grid.frames - 1) != 0)
    return {status::invalid_parameter, 0};
  const hired_split s = hired_budgets(p, grid);
  if (s.full + s.sub_total == 0) return {status::invalid_budget, 0};
  return {status::ok, s.full + s.sub_total};
}

/// Every check of hired, in the documented order: parameters and grid, scores, early scores,
/// token rows and outputs against the bound, the count, aliasing.
template <class Ein, class Eout, class Space>
status check_hired(const hired& p, const hired_inputs<Ein, Space>& in,
                   const counted_outputs<Eout, Space>& out) noexcept {
  const count_result bound = hired_count(p, in.grid);
  if (bound.code != status::ok) return bound.code;
  const index_t n = in.grid.tokens();
  if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  if (status s = check_view(in.early_scores, {in.grid.frame_tokens()}); s != status::ok) return s;
  if (status s = check_counted_outputs(in.tokens, n, in.scores, out, bound.count); s != status::ok)
    return s;
  const auto hits = [&](const auto& o) { return requested(o) && may_overlap(o, in.early_scores); };
  if (hits(out.tokens) || hits(out.source) || hits(out.positions) || hits(out.count))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

/// The static upper bound of the tokens hired keeps on `prob` (the rows to allocate): the full
/// image's budget plus the sub-crops' total. 0 exactly when `can_implement` fails.
inline index_t retained_count(const hired& p, const problem& prob) noexcept {
  return detail::hired_count(p, prob.grid).count;
}

/// `ok`, or the status `apply` would return for these parameters on this grid: `invalid_ratio`
/// for a budget or alpha outside [0, 1], `invalid_parameter` when the crop grid does not have
/// T − 1 crops (or, for row bands, H·W is not a multiple of T − 1), `invalid_budget` when
/// nothing would be kept, `empty_input` / `shape_mismatch` for the grid.
inline status can_implement(const hired& p, const problem& prob) noexcept {
  return detail::hired_count(p, prob.grid).code;
}

}  // namespace tokred
