// tokred/policy/diversity_steps.hpp — the value-by-value arithmetic of the max-min diversity
// selections (divprune, kcenter, importance_diversity) that the CPU backend and the CUDA kernels
// share: a row's scale from its squared norm, a distance from the pair kernel's raw sum, and the
// two smallest values of a column. Each fp32 step is rounded once (<tokred/core/rounded.hpp>),
// whatever the compiler would contract.
#pragma once

#include "tokred/core/config.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"

namespace tokred::detail {

/// The distance a max-min selection maximises.
enum class distance_kind {
  cosine,             ///< 1 − x_i·x_j / (‖x_i‖‖x_j‖); a zero row is at distance 1 from every row
  squared_euclidean,  ///< ‖x_i − x_j‖² (ranks as the Euclidean distance does)
};

/// The smallest squared norm of a row that cosine distances normalise, FLT_MIN (‖x‖ ≈ 1.08e−19):
/// below it two rows' scales could multiply past FLT_MAX (a distance of −inf, or NaN from 0·inf),
/// and the squared norm has lost its precision to subnormals anyway.
inline constexpr float smallest_normalised_sq = 0x1p-126f;

/// Row i's scale from its squared norm `sq`: 1/‖x_i‖ (cosine; 0 for a zero row, and for a row
/// whose squared norm is below FLT_MIN, which counts as one) or 1 (Euclidean), and NaN when `sq`
/// is not finite: such a row is at distance NaN from everything.
template <distance_kind Kind>
TOKRED_HOST_DEVICE inline float maxmin_scale(float sq) noexcept {
  if (!(abs_bits(sq) < positive_infinity())) return quiet_nan();
  if constexpr (Kind == distance_kind::cosine) return sq >= smallest_normalised_sq ? div_rn(1.0f, sqrt_rn(sq)) : 0.0f;
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

/// importance_diversity's score of a candidate: its weight times its distance to the nearest
/// pick, except that a weight of 0 scores 0 even while that distance is +inf (no pick yet at a
/// number's distance: after a first pick whose row is not finite). 0·inf would be NaN, which
/// ranks last and would rise to 0 at the next valid pick; a score never rises as picks are added,
/// which the CPU's lazy greedy relies on.
TOKRED_HOST_DEVICE inline float weighted_distance(float weight, float nearest) noexcept {
  return weight == 0.0f ? 0.0f : mul_rn(weight, nearest);
}

/// The two smallest distances seen so far in one column: the second is DivPrune's score. NaN
/// is ignored; the result depends only on the multiset of values added, not on their order.
/// The index offsets of a token's grid neighbours that divprune's first pick compares first,
/// in a group of `n` tokens of `grid` (one frame, or all of them): along h (W) and, where the
/// group spans frames, along t (H·W); 0 where that neighbour is not distinct from the one along w
/// (offset 1) or lies outside every group.
struct first_pick_neighbours {
  index_t row = 0, frame = 0;
  first_pick_neighbours() noexcept = default;
  first_pick_neighbours(const token_grid& grid, index_t n) noexcept
      : row(grid.width > 1 && grid.width < n ? grid.width : 0),
        frame(grid.height > 1 && grid.height * grid.width < n ? grid.height * grid.width : 0) {}
};

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

// ---------------------------------------------------------------------------------------------
// cdpruner: OpenVINO GenAI's conditional DPP, value by value.

/// OpenVINO's `numerical_threshold`: the norm, min-max, pivot and coefficient epsilon.
inline constexpr float dpp_epsilon = 1e-6f;

/// 1/sqrt(‖x‖² + ε): a row's (or a query's) normalisation.
TOKRED_HOST_DEVICE inline float dpp_scale(float sq) noexcept { return div_rn(1.0f, sqrt_rn(add_rn(sq, dpp_epsilon))); }

/// The smallest and largest raw relevance of a group, NaN ignored (+inf and −inf while no number
/// has been added): the bounds of the min-max rule, whatever the order of the values.
struct relevance_bounds {
  float low = positive_infinity(), high = -positive_infinity();
  TOKRED_HOST_DEVICE void add(float m) noexcept {  // NaN compares false and is ignored
    low = m < low ? m : low;
    high = m > high ? m : high;
  }
  /// Adds the bounds another part of the group kept.
  TOKRED_HOST_DEVICE void merge(const relevance_bounds& other) noexcept {
    add(other.low);
    add(other.high);
  }
};

/// r from the raw relevance m by the kernel's min-max rule over the group (`low` its minimum,
/// `range` its maximum minus `low`).
TOKRED_HOST_DEVICE inline float dpp_relevance(bool openvino, float m, float low, float range) noexcept {
  if (openvino) return div_rn(sub_rn(m, low), add_rn(range, dpp_epsilon));
  return range > 0.0f ? div_rn(add_rn(sub_rn(m, low), dpp_epsilon), range) : 1.0f;
}

/// The kernel entry K_ij from the dot product x_i·x_j, both scales and both relevances:
/// S_ij·(1 − w) + r_i·S_ij·r_j·w (openvino) or r_i·S_ij·r_j (original), S_ij = x_i·x_j·s_i·s_j.
TOKRED_HOST_DEVICE inline float dpp_entry(bool openvino, float w, float dot, float scale_i, float scale_j, float r_i,
                                          float r_j) noexcept {
  const float sim = mul_rn(dot, mul_rn(scale_i, scale_j));
  const float coupled = mul_rn(mul_rn(r_i, sim), r_j);
  return openvino ? add_rn(mul_rn(sim, sub_rn(1.0f, w)), mul_rn(coupled, w)) : coupled;
}

/// A gain as OpenVINO keeps it: NaN becomes −FLT_MAX.
TOKRED_HOST_DEVICE inline float dpp_gain(float g) noexcept { return g == g ? g : -3.40282347e+38f; }

/// One term of the orthogonalisation, e − c·c_i, skipped when |c| is below ε (a NaN c is not).
TOKRED_HOST_DEVICE inline float dpp_orthogonalise(float e, float c, float c_i) noexcept {
  return abs_bits(c) < dpp_epsilon ? e : sub_rn(e, mul_rn(c, c_i));
}

}  // namespace tokred::detail
