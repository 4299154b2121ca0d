// tokred/policy/row_selection.hpp — keep whole patch rows: FoPru's row strategy.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/row_selection.hpp>.
//
// Outputs, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the rows of the kept patch rows, in original order (ascending source)
//   source    (kept,)      the original index of each kept token
//   positions (kept, 3)    the original (t, h, w) of each kept token
#pragma once

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// FoPru's row strategy (Jiang et al., arXiv 2411.14164): keeps, in every frame, the `k` patch
/// rows whose summed token score is highest, with all W tokens of each — whole rows keep the
/// image's horizontal structure. `keep` counts rows of H (FoPru: `floor(H · ratio)`). A row's
/// score is the float sum of its W scores from left to right; rows rank as topk ranks tokens
/// (higher sum first, ties to the upper row, NaN last). Kept tokens are in original order.
/// FoPru's other strategy, "rank", is `topk` on the same scores.
struct top_rows {
  keep_budget keep;  ///< patch rows to keep per frame, out of H (no default)
};

namespace detail {

/// The kept count of top_rows: rows per frame times W times T, or why there is none.
inline count_result row_count(const top_rows& p, const token_grid& grid) noexcept {
  if (status s = check_group_grid(grid, scope::per_frame); s != status::ok) return {s, 0};
  const count_result rows = kept_count(p.keep, grid.height);
  if (rows.code != status::ok) return rows;
  return {status::ok, rows.count * grid.width * grid.frames};
}

/// Every check of top_rows, in the documented order: budget and grid, scores, token rows and
/// outputs, aliasing.
template <class Ein, class Eout, class Space>
status check_top_rows(const top_rows& p, const selection_inputs<Ein, Space>& in,
                      const selection_outputs<Eout, Space>& out) noexcept {
  const count_result kept = row_count(p, in.grid);
  if (kept.code != status::ok) return kept.code;
  const index_t n = in.grid.tokens();
  if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  return check_rows_and_outputs(in.tokens, n, in.scores, {}, out, kept.count);
}

}  // namespace detail

/// Exact number of tokens top_rows keeps on `prob`; 0 exactly when `can_implement` fails.
inline index_t retained_count(const top_rows& p, const problem& prob) noexcept {
  return detail::row_count(p, prob.grid).count;
}

/// `ok`, or the status `apply` would return for the budget on this grid.
inline status can_implement(const top_rows& p, const problem& prob) noexcept {
  return detail::row_count(p, prob.grid).code;
}

}  // namespace tokred
