// tokred/policy/outliers.hpp — keep the tokens whose score is an outlier: LLaVA-PruMerge's
// interquartile-range rule, and PruMerge+'s spatially uniform extras.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/outliers.hpp>. The kept count depends
// on the data, so the outputs are `counted_outputs`: sized by the static upper bound that
// `retained_count` returns, with the real count written to `count`.
//
// PruMerge's merge step, which takes this selection's `source` as its kept list, is
// `prumerge_merge` in <tokred/policy/prumerge.hpp>.
//
// Outputs (kept rows first, in the original's order — see `iqr_outliers`):
//   tokens    (bound, dim)  the kept rows
//   source    (bound,)      the original index of each kept token
//   positions (bound, 3)    the original (t, h, w) of each kept token
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

/// LLaVA-PruMerge (Shang et al., arXiv 2403.15388) adaptive selection over one group of all N
/// tokens, from their scores s (PruMerge's [CLS] attention):
///
///   Q1, Q3  the 25th and 75th percentiles of s, NumPy's default linear interpolation
///   fence   Q3 + 1.5·(Q3 − Q1)
///   c       #{i : s_i > fence}, the outliers;   ratio = c / N
///   k       int(N · ratio), the Python int of a double product: c, or c − 1 where the product
///           rounds below c (c = 1, N = 49)
///   kept    the k highest scores, in descending score order (ties: lower index first)
///
/// With `spatial_extras` (PruMerge+), the uniform positions 0, s, 2s, … below N − 1, where
/// s = int(int(1 / ratio) / 3), that are not already kept follow in ascending order.
///
/// Exactly as the original computes it: the quartiles are formed in double precision from the
/// float scores (NumPy 1.x: the difference of the two neighbours in float, the interpolation in
/// double, from the upper neighbour when the fraction is ≥ 0.5), and each score is compared with
/// the fence rounded to float (NumPy 1.x casts the double fence to the array's float type).
/// Non-finite scores follow the same arithmetic: a NaN anywhere makes the quartiles NaN and
/// nothing an outlier. With no outlier the count is 0 and nothing is kept; PruMerge+ then adds
/// no extras (the original divides by zero there). The original hard-codes the extras' end as
/// 575 = N − 1 for its 576 tokens; tokred uses N − 1.
struct iqr_outliers {
  bool spatial_extras = false;  ///< PruMerge+: add the spatially uniform tokens

  /// PruMerge: the outliers alone.
  static constexpr iqr_outliers prumerge() noexcept { return {false}; }
  /// PruMerge+: the outliers, then the uniform extras (the variant the original enables).
  static constexpr iqr_outliers prumerge_plus() noexcept { return {true}; }
};

namespace detail {

/// The index, in ascending sorted order, of the lower neighbour of NumPy's linear percentile
/// `quarter`·25 % of n values: floor(quarter · (n − 1) / 4).
constexpr index_t quartile_floor(index_t n, int quarter) noexcept {
  return quarter * (n - 1) / 4;
}

/// The most tokens `iqr_outliers` keeps out of n: every outlier exceeds the value at the lower
/// neighbour of Q3, so at most n − 1 − floor(3(n − 1)/4) are outliers; the extras can add up to
/// every other token.
constexpr index_t outlier_bound(const iqr_outliers& p, index_t n) noexcept {
  return p.spatial_extras ? n : n - 1 - quartile_floor(n, 3);
}

inline count_result outlier_count(const iqr_outliers& p, const token_grid& grid) noexcept {
  if (status s = check_group_grid(grid, scope::global); s != status::ok) return {s, 0};
  return {status::ok, outlier_bound(p, grid.tokens())};
}

/// Every check of `iqr_outliers`, in the documented order: grid, scores, token rows and the
/// outputs against the upper bound, the count, aliasing.
template <class Ein, class Eout, class Space>
status check_outliers(const iqr_outliers& p, const selection_inputs<Ein, Space>& in,
                      const counted_outputs<Eout, Space>& out) noexcept {
  const count_result bound = outlier_count(p, in.grid);
  if (bound.code != status::ok) return bound.code;
  const index_t n = in.grid.tokens();
  if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  return check_counted_outputs(in.tokens, n, in.scores, out, bound.count);
}

}  // namespace detail

/// The static upper bound of the count `iqr_outliers` keeps on `prob` (the rows to allocate);
/// the real count is known only from the scores. 0 when `can_implement` fails, and for N = 1
/// without the spatial extras (one score cannot lie above its own upper fence).
inline index_t retained_count(const iqr_outliers& p, const problem& prob) noexcept {
  return detail::outlier_count(p, prob.grid).count;
}

/// `ok`, or `empty_input` / `shape_mismatch` for the grid.
inline status can_implement(const iqr_outliers& p, const problem& prob) noexcept {
  return detail::outlier_count(p, prob.grid).code;
}

}  // namespace tokred
