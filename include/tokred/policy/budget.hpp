// tokred/policy/budget.hpp — how many tokens a selection keeps, with each paper's rounding rule.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"

namespace tokred {

/// How a keep ratio becomes a count. The originals differ, so the rule is always explicit:
/// `floor` is Python `int(n * r)` (PyramidDrop, HiRED, EVS, PruMerge), `half_even` is Python
/// `round(n * r)` (FastV-HF, DivPrune), `half_away` is C++ `std::round` (OpenVINO's CDPruner),
/// `ceil` rounds up. The product is taken in double precision, as Python and OpenVINO do.
enum class rounding { floor, half_even, ceil, half_away };

/// A keep budget: an absolute count `k`, or a ratio of the tokens selected from, optionally
/// raised to a floor (`at_least`).
struct keep_budget {
  enum class kind { count, ratio };

  kind by = kind::count;
  index_t k = 0;               ///< tokens to keep (when `by == count`)
  double keep_ratio = 0.0;     ///< fraction to keep, in [0, 1] (when `by == ratio`)
  rounding mode = rounding::floor;
  index_t minimum = 0;         ///< the count is at least this (vLLM EVS keeps one frame's worth)

  /// Keep exactly `k` tokens.
  static constexpr keep_budget count(index_t k) noexcept { return {kind::count, k, 0.0, {}, 0}; }
  /// Keep `mode(n · r)` of `n` tokens.
  static constexpr keep_budget ratio(double r, rounding mode) noexcept {
    return {kind::ratio, 0, r, mode, 0};
  }
  /// The same budget, keeping at least `m` tokens: `max(m, count)` (checked against `n` after).
  constexpr keep_budget at_least(index_t m) const noexcept {
    keep_budget b = *this;
    b.minimum = m;
    return b;
  }
};

/// A count, or the reason there is none.
struct count_result {
  status code = status::ok;
  index_t count = 0;
};

/// `x` rounded by `mode`; `x >= 0` and below 2^52, where `x - floor(x)` is exact.
inline double round_by(double x, rounding mode) noexcept {
  const double down = std::floor(x);
  switch (mode) {
    case rounding::floor: return down;
    case rounding::ceil: return std::ceil(x);
    case rounding::half_away: return x - down < 0.5 ? down : down + 1.0;
    case rounding::half_even: {
      const double rest = x - down;
      if (rest > 0.5) return down + 1.0;
      if (rest < 0.5) return down;
      return std::fmod(down, 2.0) == 0.0 ? down : down + 1.0;
    }
  }
  return down;
}

/// ⌊n · share⌋ for a count n ≥ 0 and a share in [0, 1]: Python's `int(n * share)` in double,
/// kept at n where n itself rounds up to 2^63 in double (a cast of 2^63 is out of range).
inline index_t floor_share(index_t n, double share) noexcept {
  const double product = static_cast<double>(n) * share;
  return product >= static_cast<double>(PTRDIFF_MAX) ? n : static_cast<index_t>(product);
}

/// Tokens `budget` keeps out of `n`: `invalid_ratio` for a ratio outside [0, 1] or NaN,
/// `invalid_budget` when the count (after the floor `minimum`) is 0, `budget_exceeds_input` when
/// it is above `n`.
inline count_result kept_count(const keep_budget& budget, index_t n) noexcept {
  index_t k = budget.k;
  if (budget.by == keep_budget::kind::ratio) {
    const double r = budget.keep_ratio;
    if (!(r >= 0.0 && r <= 1.0)) return {status::invalid_ratio, 0};  // also rejects NaN
    k = static_cast<index_t>(round_by(static_cast<double>(n) * r, budget.mode));
  }
  if (k < budget.minimum) k = budget.minimum;
  if (k <= 0) return {status::invalid_budget, 0};
  if (k > n) return {status::budget_exceeds_input, 0};
  return {status::ok, k};
}

}  // namespace tokred
