// tokred/policy/tome_steps.hpp — ToMe's arithmetic value by value: the steps that the CPU
// backend and the CUDA kernels both run, so that the two give the same bits.
//
//   squared norms and dots   multiply-add chains in k order from 0 (`chain_step<Fused>` of
//                            <tokred/core/rounded.hpp>), one chain per row or pair;
//   cosine                   (dot·s_a)·s_b with s = `cosine_scale_of(‖x‖²)`;
//   argmax over B            the first maximum in ascending B order, NaN skipped: the largest
//                            `rank_key(similarity, j)` (any order), then `finished_match`;
//   merged rows              `weighted_mean_step`s in member order, then one division.
#pragma once

#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred::detail {

/// 1/‖x‖ from the squared norm `sq`: 0 for a zero row (its similarity with everything is then
/// 0), NaN when `sq` is not finite (its similarities are NaN).
TOKRED_HOST_DEVICE inline float cosine_scale_of(float sq) noexcept {
  if (!(abs_bits(sq) < positive_infinity())) return quiet_nan();
  return sq > 0.0f ? div_rn(1.0f, sqrt_rn(sq)) : 0.0f;
}

/// The cosine of two rows from their dot and scales: (dot·s_a)·s_b, which cannot overflow
/// however small the norms.
TOKRED_HOST_DEVICE inline float scaled_cosine(float dot, float scale_a, float scale_b) noexcept {
  return mul_rn(mul_rn(dot, scale_a), scale_b);
}

/// An A token's best B partner among those seen so far: its similarity and B index (−1, with
/// similarity −inf, before any number was seen).
struct best_match {
  float similarity;
  std::int64_t partner;
};

TOKRED_HOST_DEVICE inline best_match no_match() noexcept { return {-positive_infinity(), -1}; }

/// A finished match: a best still at −inf saw no number, and becomes NaN with `fallback` (the
/// lowest B token that may receive) as the partner.
TOKRED_HOST_DEVICE inline best_match finished_match(best_match best, std::int64_t fallback) noexcept {
  if (best.similarity == -positive_infinity()) return {quiet_nan(), fallback};
  return best;
}

/// One member's term of a size-weighted mean: the first member's product rounded on its own,
/// every later one added by the chain step.
template <bool Fused>
TOKRED_HOST_DEVICE inline float weighted_mean_step(float acc, float x, float weight, bool first) noexcept {
  return first ? mul_rn(x, weight) : chain_step<Fused>(x, weight, acc);
}

/// Every `step`-th row of the compared rows from `first`: one side of the matching (step 2: A from
/// row 0, B from row 1), or all of them (step 1).
template <class E, class Space>
struct side_rows {
  view<const E, 2, Space> rows;  // (tokens, dim) all compared rows
  index_t first = 0;             // row of index 0
  index_t step = 2;

  TOKRED_HOST_DEVICE float at(index_t k, index_t c) const noexcept { return to_float(rows(first + step * k, c)); }
};

/// Σ_c a_kc·b_jc as one multiply-add chain in c order from 0: a dot of the CPU backend's
/// product, and with a = b, k = j, a squared norm of its `chain_cosine_scales`.
template <bool Fused, class E, class Space>
TOKRED_HOST_DEVICE float chain_dot(const side_rows<E, Space>& a, index_t k, const side_rows<E, Space>& b, index_t j,
                                   index_t dim) noexcept {
  float acc = 0.0f;
  for (index_t c = 0; c < dim; ++c) acc = chain_step<Fused>(a.at(k, c), b.at(j, c), acc);
  return acc;
}

/// What the matching needs of the split: the first A token that matches (`kfirst`: the first
/// unprotected one, or a when no B token may receive) and the first B token that may receive.
struct match_span {
  index_t a = 0, b = 0, kfirst = 0, j0 = 0;
};

TOKRED_HOST_DEVICE constexpr match_span match_span_of(index_t n, index_t protect) noexcept {
  const bipartite_split s = split_of(n, protect);
  return {s.a, s.b, s.b_protected < s.b ? s.a_protected : s.a, s.b_protected};
}

/// Where tome's outputs go, token by token, once every candidate (unprotected A token) has its
/// rank (similarity descending, A index ascending) and the r of rank below r are merged.
struct tome_layout_plan {
  bipartite_split s;
  index_t n = 0, r = 0, protect = 0;
  merge_order order = merge_order::original;

  TOKRED_HOST_DEVICE index_t candidates() const noexcept { return s.a - s.a_protected; }
  /// The flag over A tokens whose exclusive prefix `slot_of` reads: merged (by position), or
  /// unprotected and kept (the original order).
  TOKRED_HOST_DEVICE bool flag(index_t k, bool merged) const noexcept {
    return order == merge_order::by_position ? merged : (k >= s.a_protected && !merged);
  }
  /// The slot of token i when it is not merged away. `rank`: an A token's rank (read only
  /// without protection in the original order); `prefix(k)`: the number of A tokens below k
  /// whose `flag` is set.
  template <class Prefix>
  TOKRED_HOST_DEVICE index_t slot_of(index_t i, index_t rank, const Prefix& prefix) const noexcept {
    if (order == merge_order::by_position) return i - prefix((i + 1) / 2);
    if (i < protect) return i;                               // protected, in index order
    if ((i & 1) == 0) return protect == 0 ? rank - r : protect + prefix(i / 2);  // kept A
    return protect + (candidates() - r) + (i / 2 - s.b_protected);               // B, in order
  }
};

/// Column c of a merged row: the size-weighted mean of its representative `rep` and then
/// `count` sources, `weight(i)` each, their total `total` (summed in the same order).
template <bool Fused, class E, class Space, class Weight>
TOKRED_HOST_DEVICE float group_mean_at(const view<const E, 2, Space>& tokens, index_t rep,
                                       const std::int32_t* sources, index_t count, const Weight& weight, float total,
                                       index_t c) noexcept {
  float acc = weighted_mean_step<Fused>(0.0f, to_float(tokens(rep, c)), weight(rep), true);
  for (index_t m = 0; m < count; ++m) {
    const index_t i = sources[m];
    acc = weighted_mean_step<Fused>(acc, to_float(tokens(i, c)), weight(i), false);
  }
  return div_rn(acc, total);
}

}  // namespace tokred::detail
