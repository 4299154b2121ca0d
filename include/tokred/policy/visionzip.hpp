// tokred/policy/visionzip.hpp — VisionZip: keep the tokens the [CLS] query attends to most
// (dominant), and merge the rest into a few contextual tokens by key similarity.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/visionzip.hpp>. It writes the
// `merge_outputs` of <tokred/policy/merge.hpp>, each optional:
//   tokens    (kept, dim)  dominant rows copied, then the contextual rows
//   source    (kept,)      the input row each output stands on: the dominant row, or the
//                          contextual token's target row
//   positions (kept, 3)    the (t, h, w) of that row; (−1, −1, −1) for the [CLS] row
//   sizes     (kept,)      1 for a dominant token, 1 + its members for a contextual one
//   assign    (rows,)      the output slot of every input row (−1: dropped, contextual = 0 only)
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// How a contextual token is formed from its target row x_t and the m rows assigned to it.
enum class contextual_merge {
  target_plus_mean,  ///< x_t + (Σ members) / max(m, 1): the original (x_t alone when m = 0)
  group_mean,        ///< (x_t + Σ members) / (1 + m): the plain mean of the group, as its size says
};

/// VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language
/// Models", CVPR 2025, arXiv 2412.04467; dvlab-research/VisionZip,
/// `CLIPVisionTower_VisionZip.forward`), on the rows of one image (or one frame):
///
///   rows      the N = T·H·W patch rows of `grid`, after a leading [CLS] row when `cls_token`
///             (row 0 is [CLS], patch j is row j + 1; without it patch j is row j)
///   dominant  the [CLS] row (when present), then the `dominant − cls_token` patches of highest
///             score, ties to the lower index, NaN last; emitted in row order
///   R         every other row, in row order;  step = max(1, ⌊|R| / contextual⌋)
///   targets   R[0], R[step], R[2·step], … — the first `contextual` of them (a stride over the
///             remaining list, not over the 2-D grid)
///   assign    every other row r of R joins the target t of highest cosine of the metric rows,
///             m_r·m_t / (‖m_r‖‖m_t‖), the lowest target on ties
///   context   per target, `merge` of its row and its members' rows (contextual_merge)
///
/// Output order, as the original: the dominant tokens in row order ([CLS] first), then the
/// contextual tokens in target order. Exactly `dominant + contextual` tokens come out.
///
/// The default, 54 + 10 of 576 patches plus [CLS], is the paper's 64-token LLaVA-1.5 setting
/// (also 108 + 20 and 162 + 30); `dominant` counts [CLS] as the original's `visionzip(model,
/// dominant, contextual)` does (it selects `dominant − 1` patches). `contextual = 0` keeps the
/// dominant tokens alone and drops the rest (assign −1; the original divides by zero).
///
/// Special values (the original leaves them to torch): a metric row of zero norm has cosine 0
/// with every row (the original gets NaN); a row whose squared norm is not finite in fp32 has
/// NaN cosine; NaN cosines are skipped by the argmax, and a row with no number among them joins
/// the first target (torch's argmax would take the first NaN). Statuses and their check order:
/// `backend<visionzip, cpu<Arch>>` and docs/policies/visionzip.md.
struct visionzip {
  index_t dominant = 54;    ///< dominant tokens, the [CLS] row included when `cls_token`
  index_t contextual = 10;  ///< contextual (merged) tokens
  bool cls_token = true;    ///< the rows start with a [CLS] row, kept as the first dominant token
  contextual_merge merge = contextual_merge::target_plus_mean;
};

/// Inputs of visionzip. `tokens` is read when `out.tokens` is requested or `metric` is empty.
template <class E, class Space = host_space>
struct visionzip_inputs {
  using space = Space;
  token_grid grid;                     // (T, H, W), N = T·H·W patch tokens
  view<const E, 2, Space> tokens;      // (rows, dim), rows = N + cls_token; [CLS] is row 0
  view<const float, 1, Space> scores;  // (N,) per patch: the [CLS] row's attention, summed over heads
  view<const E, 2, Space> metric;      // (rows, metric_dim) the rows compared (keys); empty: tokens
};

namespace detail {

/// The shape facts of one visionzip problem.
struct visionzip_shape {
  status code = status::ok;
  index_t rows = 0;       ///< N + cls_token input rows
  index_t patches = 0;    ///< dominant patches chosen by score: dominant − cls_token
  index_t remaining = 0;  ///< |R| = rows − dominant
  index_t step = 0;       ///< the targets' stride over R (0 when contextual = 0)
  index_t kept = 0;       ///< dominant + contextual
};

/// The counts of `p` on `grid`, or why there are none, checked in this order: `invalid_parameter`
/// (a negative count, dominant = 0 with a [CLS] row, an unknown merge), the grid (`shape_mismatch`,
/// `empty_input`), `invalid_budget` (nothing kept), `budget_exceeds_input` (dominant + contextual
/// above the rows: the original fails there).
inline visionzip_shape visionzip_count(const visionzip& p, const token_grid& grid) noexcept {
  const index_t cls = p.cls_token ? 1 : 0;
  const bool known = p.merge == contextual_merge::target_plus_mean || p.merge == contextual_merge::group_mean;
  if (p.dominant < cls || p.contextual < 0 || !known) return {status::invalid_parameter};
  if (status s = check_group_grid(grid, scope::global, cls); s != status::ok) return {s};
  const index_t rows = grid.tokens() + cls;
  if (p.dominant == 0 && p.contextual == 0) return {status::invalid_budget};
  if (p.dominant > rows || p.contextual > rows - p.dominant) return {status::budget_exceeds_input};  // no overflow
  const index_t kept = p.dominant + p.contextual;
  const index_t remaining = rows - p.dominant;
  const index_t step = p.contextual == 0 ? 0 : (remaining / p.contextual > 1 ? remaining / p.contextual : 1);
  return {status::ok, rows, p.dominant - cls, remaining, step, kept};
}

/// The rows similarities come from: `metric` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const visionzip_inputs<E, Space>& in) noexcept {
  return requested(in.metric) ? in.metric : in.tokens;
}

/// Every check of visionzip that needs no access to values, in the documented order: the counts
/// (`visionzip_count`), the scores (N,), the compared rows (rows, metric_dim ≥ 1), the token rows
/// and out.tokens (when requested), the other outputs, overlaps. Returns the shape on success.
template <class Ein, class Eout, class Space>
visionzip_shape check_visionzip(const visionzip& p, const visionzip_inputs<Ein, Space>& in,
                                const merge_outputs<Eout, Space>& out) noexcept {
  const visionzip_shape shape = visionzip_count(p, in.grid);
  if (shape.code != status::ok) return shape;
  const auto fail = [](status s) { return visionzip_shape{s}; };
  const index_t rows = shape.rows, kept = shape.kept;
  if (status s = check_view(in.scores, {in.grid.tokens()}); s != status::ok) return fail(s);
  if (status s = check_rows(compared_rows(in), rows); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, rows, out.tokens, kept); s != status::ok) return fail(s);
  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const status s = check_merge_outputs(out, kept, rows, in.scores, compared_rows(in), read_tokens);
  return s != status::ok ? fail(s) : shape;
}

}  // namespace detail

/// Exact number of tokens visionzip returns on `prob`: dominant + contextual. 0 exactly when
/// `can_implement` fails.
inline index_t retained_count(const visionzip& p, const problem& prob) noexcept {
  return detail::visionzip_count(p, prob.grid).kept;
}

/// `ok`, or why visionzip cannot run on this grid: `invalid_parameter`, `shape_mismatch`,
/// `empty_input`, `invalid_budget`, `budget_exceeds_input` (see `detail::visionzip_count`).
inline status can_implement(const visionzip& p, const problem& prob) noexcept {
  return detail::visionzip_count(p, prob.grid).code;
}

/// The number of input rows visionzip reads on `prob` (the length of `assign`): N, plus one for
/// the [CLS] row when `cls_token`.
constexpr index_t visionzip_rows(const visionzip& p, const problem& prob) noexcept {
  return prob.grid.tokens() + (p.cls_token ? 1 : 0);
}

}  // namespace tokred
