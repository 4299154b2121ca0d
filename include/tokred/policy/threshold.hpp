// tokred/policy/threshold.hpp — keep the tokens whose score passes a fixed threshold
// (TimeChat-Online's Differential Token Drop and other absolute-threshold rules).
//
// WHAT it computes; the HOW lives in <tokred/cpu/threshold.hpp>. The one selection whose kept
// count depends on the data: `retained_count` is the static upper bound N (every token kept), the
// outputs are sized by it (`counted_outputs`), and `apply` writes the real count to `count`.
// Kept tokens are in original order (ascending source); rows past the count are left as they were.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// Keeps every token whose score passes the threshold `tau`.
///
/// `keep::at_most` keeps s ≤ τ — precisely, every token for which `s > τ` is false, so a NaN score
/// is kept, as TimeChat-Online's `drop if similarity > τ` (strict; torch's `NaN > τ` is false)
/// keeps it. `keep::above` keeps s > τ: exactly the tokens at_most drops, so a NaN score is
/// dropped. ±inf compare as usual. The default is DTD's rule at its evaluation threshold 0.5;
/// with `temporal_similarity::dtd()` scores (frame 0 at −∞) frame 0 is always kept.
///
/// Parameter checks: a NaN `tau` is `invalid_parameter` (the rule would keep everything or
/// nothing by accident); any other τ, infinite included, is accepted. The original restricts τ to
/// [−1, 1] for cosine scores, which is the caller's business here since the score is generic.
struct threshold {
  enum class keep { above, at_most };
  float tau = 0.5f;
  keep keep_if = keep::at_most;

  /// TimeChat-Online DTD's absolute feature rule: drop if cos(previous slot, slot) > τ.
  static constexpr threshold dtd(float tau = 0.5f) noexcept { return {tau, keep::at_most}; }
};

namespace detail {

/// Whether threshold `p` keeps score `s`.
TOKRED_HOST_DEVICE constexpr bool threshold_keeps(const threshold& p, float s) noexcept {
  return p.keep_if == threshold::keep::above ? s > p.tau : !(s > p.tau);
}

/// The parameter and grid checks: `invalid_parameter` for a NaN τ or an unknown `keep_if`, then
/// `shape_mismatch` for a negative grid extent, `empty_input` for N = 0.
inline status check_threshold_problem(const threshold& p, const token_grid& grid) noexcept {
  if (std::isnan(p.tau)) return status::invalid_parameter;
  if (p.keep_if != threshold::keep::above && p.keep_if != threshold::keep::at_most)
    return status::invalid_parameter;
  if (!grid.valid()) return status::shape_mismatch;
  if (grid.tokens() == 0) return status::empty_input;
  return status::ok;
}

/// Every check of threshold, in the documented order: parameters and grid, scores, token rows and
/// outputs against the bound N, the count view, aliasing of the count.
template <class Ein, class Eout, class Space>
status check_threshold(const threshold& p, const selection_inputs<Ein, Space>& in,
                       const counted_outputs<Eout, Space>& out) noexcept {
  if (status s = check_threshold_problem(p, in.grid); s != status::ok) return s;
  const index_t n = in.grid.tokens();
  if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  return check_counted_outputs(in.tokens, n, in.scores, out, n);
}

}  // namespace detail

/// The static upper bound of threshold's kept count: N = T·H·W (the real count is data-dependent
/// and written to `counted_outputs::count`); 0 exactly when `can_implement` fails.
inline index_t retained_count(const threshold& p, const problem& prob) noexcept {
  return detail::check_threshold_problem(p, prob.grid) == status::ok ? prob.grid.tokens() : 0;
}

/// `ok`, or `invalid_parameter` (NaN τ), `shape_mismatch` (negative grid extent), `empty_input`
/// (N = 0): what `apply` returns before looking at any view.
inline status can_implement(const threshold& p, const problem& prob) noexcept {
  return detail::check_threshold_problem(p, prob.grid);
}

}  // namespace tokred
