// tokred/policy/attention_significance.hpp — FoPru's token significance: how much attention each
// patch receives (or pays) across a vision encoder's whole patch-to-patch attention map.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/attention_significance.hpp>. It writes
// one float per token to `score_outputs` (<tokred/policy/scores.hpp>); FoPru's two strategies are
// selections of those scores:
//
//   FoPru rank   attention_significance{}  then topk{ratio(r, floor)}      global top tokens
//   FoPru row    attention_significance{}  then top_rows{ratio(r, floor)}  each frame's best patch rows
//
// Where attention_score reads one query row ([CLS], the last prompt token), this policy reads
// every query row of the patch block: its cost is heads·N² weights per image.
#pragma once

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/attention_scores.hpp"
#include "tokred/policy/scores.hpp"

namespace tokred {

/// Which mean of the head-averaged patch attention is a token's significance.
enum class significance_axis {
  column,           ///< the column mean: the attention the token receives from every patch
  row,              ///< the row mean: the attention the token pays to the patches
  larger_variance,  ///< per attention map, whichever of the two has the larger sample variance
};

/// FoPru's token significance (Jiang et al., "FoPru: Focal Pruning for Efficient Large
/// Vision-Language Models", arXiv 2411.14164), from one layer's post-softmax attention.
///
/// For one attention map b restricted to its n × n patch block (queries from `first_query`, keys
/// from `first_key`; CLIP: both 1, after [CLS]):
///
///   m[q, k] = (Σ_h w[b, h, first_query + q, first_key + k]) / heads      the head mean
///   col[k]  = Σ_q m[q, k] / n                                          attention received
///   row[q]  = Σ_k m[q, k] / n                                          attention paid
///   var(x)  = Σ_i (x_i − μ)² / (n − 1),  μ = Σ_i x_i / n                torch.var (unbiased)
///
///   column:          s_j = col[j]
///   row:             s_j = row[j]
///   larger_variance: s = col if fp32(var(col)) > fp32(var(row)), else row
///
/// `larger_variance` is FoPru's rule (the default): decided per map, strictly, so equal
/// variances pick the row means, and so does a NaN variance (a NaN or infinite weight in the
/// block, or n = 1), because the comparison is false. On a softmax map the row means are nearly
/// constant ((1 − attention to [CLS]) / n), so the column means usually win.
///
/// Weights are taken as given (rows need not sum to one). A NaN weight at (q, k) makes col[k]
/// and row[q] NaN: under `column` token k's score is NaN, under `row` and `larger_variance`
/// token q's; topk ranks NaN last.
struct attention_significance {
  significance_axis axis = significance_axis::larger_variance;
  index_t first_query = 0;  ///< query row of patch 0: 1 for CLIP ([CLS] is row 0)
  index_t first_key = 0;    ///< key column of patch 0: 1 for CLIP ([CLS] is key 0)
};

/// Inputs of attention_significance.
///
/// `weights` holds whole attention maps, as HF's `attentions[l]` of shape [B, H, L, L] (rows are
/// queries): `make_view(A, B, H, L, L)`, or any strides. `maps` is 1 or T. With T maps (an encoder
/// run frame by frame), map t's n = H·W block scores frame t's tokens; with one map, its n = N
/// block scores all tokens (one image, or an encoder attending across frames).
template <class E, class Space = host_space>
struct attention_significance_inputs {
  using space = Space;
  token_grid grid;                  ///< (T, H, W), N = T·H·W
  view<const E, 4, Space> weights;  // (maps, heads, queries, keys), maps = 1 or T
};

namespace detail {

/// A known axis and offsets >= 0.
constexpr bool valid_significance_parameters(const attention_significance& p) noexcept {
  return (p.axis == significance_axis::column || p.axis == significance_axis::row ||
          p.axis == significance_axis::larger_variance) &&
         p.first_query >= 0 && p.first_key >= 0;
}

/// The patches per attention map: N for one map, H·W for one map per frame.
template <class E, class Space>
constexpr index_t map_tokens(const attention_significance_inputs<E, Space>& in) noexcept {
  return in.weights.extent(0) == 1 ? in.grid.tokens() : in.grid.frame_tokens();
}

/// Every check of attention_significance, in the documented order: parameters, grid, weights
/// (maps, then heads, then the query and key extents, then data), scores output, aliasing.
template <class E, class Space>
status check_attention_significance(const attention_significance& p,
                                    const attention_significance_inputs<E, Space>& in,
                                    const score_outputs<Space>& out) noexcept {
  if (status s = check_attention_problem(valid_significance_parameters(p), in.grid); s != status::ok)
    return s;
  const index_t maps = in.weights.extent(0);
  if ((maps != 1 && maps != in.grid.frames) || has_negative_extent(in.weights)) return status::shape_mismatch;
  if (in.weights.extent(1) == 0) return status::empty_input;
  const index_t n = map_tokens(in);
  if (!covers_keys(in.weights.extent(2), p.first_query, n) || !covers_keys(in.weights.extent(3), p.first_key, n))
    return status::shape_mismatch;
  if (in.weights.data_handle() == nullptr) return status::null_pointer;
  if (status s = check_scores_output(out, in.grid.tokens()); s != status::ok) return s;
  return may_overlap(out.scores, in.weights) ? status::aliasing : status::ok;
}

}  // namespace detail

/// `ok`, or what `apply` would return for the parameters and grid alone: `invalid_parameter`
/// (an unknown axis, a negative offset), `shape_mismatch` (a negative grid extent) or
/// `empty_input` (N = 0). The views are checked by `apply`.
inline status can_implement(const attention_significance& p, const problem& prob) noexcept {
  return detail::check_attention_problem(detail::valid_significance_parameters(p), prob.grid);
}

}  // namespace tokred
