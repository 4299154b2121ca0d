// tokred/policy/diversity_steps.hpp — the value-by-value arithmetic of the max-min diversity
// selections (divprune, kcenter, importance_diversity) that the CPU backend and the CUDA kernels
// share: a row's scale from its squared norm, a distance from the pair kernel's raw sum, and the
// two smallest values of a column. Each fp32 step is rounded once (<tokred/core/rounded.hpp>),
// whatever the compiler would contract.
#pragma once

#include "tokred/core/config.hpp"
#include "tokred/core/rounded.hpp"

namespace tokred::detail {

/// The distance a max-min selection maximises.
enum class distance_kind {
  cosine,             ///< 1 − x_i·x_j / (‖x_i‖‖x_j‖); a zero row is at distance 1 from every row
  squared_euclidean,  ///< ‖x_i − x_j‖² (ranks as the Euclidean distance does)
};

/// Row i's scale from its squared norm `sq`: 1/‖x_i‖ (cosine; 0 for a zero row) or 1
/// (Euclidean), and NaN when `sq` is not finite: such a row is at distance NaN from everything.
template <distance_kind Kind>
TOKRED_HOST_DEVICE inline float maxmin_scale(float sq) noexcept {
  if (!(abs_bits(sq) < positive_infinity())) return quiet_nan();
  if constexpr (Kind == distance_kind::cosine) return sq > 0.0f ? div_rn(1.0f, sqrt_rn(sq)) : 0.0f;
  else return 1.0f;
}

/// d(i, j) from the pair kernel's raw sum (the dot, or the squared distance) and both scales:
/// symmetric in (i, j) to the last bit.
template <distance_kind Kind>
TOKRED_HOST_DEVICE inline float maxmin_distance(float raw, float scale_i, float scale_j) noexcept {
  const float product = mul_rn(raw, mul_rn(scale_i, scale_j));
  if constexpr (Kind == distance_kind::cosine) return sub_rn(1.0f, product);
  else return product;  // scale is 1, or NaN for a non-finite row
}

/// The two smallest distances seen so far in one column: the second is DivPrune's score. NaN
/// is ignored; the result depends only on the multiset of values added, not on their order.
struct two_smallest {
  float lowest, second;
  TOKRED_HOST_DEVICE void add(float x) noexcept {  // NaN compares false and is ignored
    if (x < lowest) second = lowest, lowest = x;
    else if (x < second) second = x;
  }
  /// Adds the two values another column part kept.
  TOKRED_HOST_DEVICE void merge(const two_smallest& other) noexcept {
    add(other.lowest);
    add(other.second);
  }
};

}  // namespace tokred::detail
