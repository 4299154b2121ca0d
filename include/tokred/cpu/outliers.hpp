// tokred/cpu/outliers.hpp — CPU backend of iqr_outliers (LLaVA-PruMerge / PruMerge+).
//
// Deciding what to keep is a few passes over N floats; moving the rows is the work. So every
// share decides the whole kept list itself (the same bits in each, no waiting) and then moves
// its own part of the output rows, as the budgeted selections do.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/outliers.hpp"

namespace tokred {
namespace detail {

/// NumPy 1.x's linear interpolation between the sorted neighbours `lo` ≤ `hi` at fraction `t`:
/// the difference is a float operation, the interpolation a double one, taken from the upper
/// neighbour when t ≥ 0.5 (NumPy's `_lerp`).
inline double numpy_lerp(float lo, float hi, double t) noexcept {
  const double diff = static_cast<double>(hi - lo);
  return t < 0.5 ? static_cast<double>(lo) + diff * t : static_cast<double>(hi) - diff * (1.0 - t);
}

/// NumPy's default (linear) percentile `quarter`·25 % of the n finite-or-infinite values in
/// `values`, which it reorders. `values` holds no NaN.
inline double numpy_quartile(float* values, index_t n, int quarter) noexcept {
  const index_t lo = quartile_floor(n, quarter);
  const double t = static_cast<double>(quarter) * static_cast<double>(n - 1) / 4.0 -
                   static_cast<double>(lo);  // exact: (n − 1)·quarter/4 is a multiple of 1/4
  std::nth_element(values, values + lo, values + n);
  const float below = values[lo];
  const float above = lo + 1 < n ? *std::min_element(values + lo + 1, values + n) : below;
  return numpy_lerp(below, above, t);
}

/// Whether score `x` exceeds the double `fence` as NumPy 1.x compares a float array with a
/// double scalar: in float when the fence fits the float range, in double otherwise.
inline bool exceeds_fence(float x, double fence) noexcept {
  if (std::fabs(fence) <= static_cast<double>(FLT_MAX)) return x > static_cast<float>(fence);
  return static_cast<double>(x) > fence;
}

/// One share's scratch: a copy of the scores to partition, the ranking keys, the kept list.
struct outlier_scratch {
  float* values = nullptr;         // (n,)
  std::uint32_t* keys = nullptr;   // (n,) ranking keys, then the "already kept" marks
  std::int64_t* kept = nullptr;    // (bound,)
};

/// Decides the kept list of `iqr_outliers` into `scratch.kept`, in output order; returns its
/// length.
inline index_t decide_outliers(const iqr_outliers& p, const view<const float, 1>& scores,
                               const outlier_scratch& scratch) {
  const index_t n = scores.extent(0);
  for (index_t i = 0; i < n; ++i) {
    scratch.values[i] = scores(i);
    if (std::isnan(scratch.values[i])) return 0;  // NaN quartiles: no outlier
  }
  const double q1 = numpy_quartile(scratch.values, n, 1);
  const double q3 = numpy_quartile(scratch.values, n, 3);
  const double fence = q3 + 1.5 * (q3 - q1);
  index_t outliers = 0;
  for (index_t i = 0; i < n; ++i) outliers += exceeds_fence(scores(i), fence);
  if (outliers == 0) return 0;

  const double ratio = static_cast<double>(outliers) / static_cast<double>(n);
  const auto k = static_cast<index_t>(static_cast<double>(n) * ratio);
  if (k > 0) {
    const auto key_of = [&](index_t i) { return score_key(float_bits(scores(i))); };
    select_largest(key_of, n, k, 0, scratch.keys, scratch.kept);
    // The original emits torch.topk's order: descending score, here ties to the lower index.
    std::sort(scratch.kept, scratch.kept + k, [&](std::int64_t a, std::int64_t b) {
      return rank_key(scores(a), a) > rank_key(scores(b), b);
    });
  }
  if (!p.spatial_extras) return k;

  const auto step_length = static_cast<index_t>(1.0 / ratio);
  const index_t step = std::max<index_t>(1, static_cast<index_t>(static_cast<double>(step_length) / 3.0));
  std::uint32_t* taken = scratch.keys;  // the keys are no longer needed
  std::fill(taken, taken + n, 0u);
  for (index_t j = 0; j < k; ++j) taken[scratch.kept[j]] = 1u;
  index_t count = k;
  for (index_t i = 0; i < n - 1; i += step)
    if (!taken[i]) scratch.kept[count++] = i;
  return count;
}

}  // namespace detail

/// iqr_outliers on CPU. Every share decides the kept list (O(N) expected) and moves its part of
/// the rows; share 0 writes the count.
template <class Arch>
struct backend<iqr_outliers, cpu<Arch>> {
  static detail::outlier_scratch carve(detail::arena& a, const iqr_outliers& p, index_t n, int ith,
                                       int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::outlier_scratch{s.take<float>(n), s.take<std::uint32_t>(n),
                                     s.take<std::int64_t>(detail::outlier_bound(p, n))};
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const iqr_outliers& p,
                                     const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, prob.grid.tokens(), 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const iqr_outliers& p, const selection_inputs<Ein>& in,
                      const counted_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_outliers(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens();
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)}));
        s != status::ok)
      return s;
    detail::arena carver(ws);
    const detail::outlier_scratch scratch = carve(carver, p, n, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t count = detail::decide_outliers(p, in.scores, scratch);
    const auto index_of = [&](index_t j) -> index_t { return scratch.kept[j]; };
    detail::emit_rows<Arch>(index_of, detail::share_begin(count, exec.ith, exec.nth),
                            detail::share_begin(count, exec.ith + 1, exec.nth), in.grid, in.tokens,
                            out);
    if (exec.ith == 0) out.count(0) = count;
    return status::ok;
  }
};

}  // namespace tokred
