// tokred/policy/attention_scores.hpp — importance from attention: how much a query row (an LLM's
// last prompt token, a vision encoder's [CLS]) attends to each visual token.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/attention_scores.hpp>. Both write one
// float per token to `score_outputs` (<tokred/policy/scores.hpp>); a selection, usually `topk`,
// turns the scores into a kept set:
//
//   FastV        attention_score{mean, s}        last row of layer K−1's weights, then topk
//   FasterVLM    attention_score{mean, 1}        [CLS] row of the select layer (per frame: rows = T)
//   VTC-CLS      attention_score{mean, 1}        [CLS] rows of several encoder layers, summed
//   HiRED        attention_score{sum, 1}         [CLS] row of encoder block 22
//   PyramidDrop  fused_attention_score{mean, s}  last prompt row of q and the keys of the next block
//
// `attention_score` reads post-softmax weights that the model already produced (eager attention).
// `fused_attention_score` computes the same numbers from the query rows and the keys, so an engine
// running FlashAttention (which never materialises the weights) can still score.
#pragma once

#include <cmath>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/scores.hpp"

namespace tokred {

/// How the per-head values of one token combine. FastV, FasterVLM, VTC-CLS and PyramidDrop take
/// the mean over heads; HiRED and VisionZip the sum. The two rank tokens identically; they differ
/// in scale, which matters only when scores are compared with a threshold or mixed with others.
enum class head_reduce { mean, sum };

/// The attention a query row pays to each visual token, read from post-softmax weights.
///
///   score_j = Σ_layers reduce_heads w[row(j), layer, head, first_key + column(j)]
///
/// With one weights row (`rows == 1`, LLM attention), token j is key `first_key + j`: the image
/// or video span starts at key `first_key` (FastV: the system-prompt length; CLIP: 1, after
/// [CLS]). With one row per frame (`rows == T`, a vision encoder run frame by frame), frame t's
/// row scores its H·W tokens from key `first_key`. Layers are summed after the head reduction
/// (VTC-CLS's ensemble of [CLS] rows); one layer is the usual case.
///
/// The weights are taken as given: rows that do not sum to one (a causal row, a row already
/// head-averaged, any non-negative saliency) are scored all the same. A NaN weight makes the
/// score of its token NaN, which topk ranks last.
///
/// Papers: FastV (Chen et al., ECCV 2024, arXiv 2403.06764), FasterVLM (Zhang et al., arXiv
/// 2412.01818), VTC-CLS (Wang et al., arXiv 2412.05819), HiRED (Arif et al., AAAI 2025, arXiv
/// 2408.10945).
struct attention_score {
  head_reduce heads = head_reduce::mean;
  index_t first_key = 0;  ///< key column of visual token 0: 1 for CLIP ([CLS] is key 0), s for an LLM span
};

/// Inputs of attention_score.
///
/// `weights` is a strided view of the query rows only, taken inside the full attention tensors:
/// for HF's `attentions[l]` of shape [B, H, L, L] and query row r, element (0, l, h, k) is
/// `A_l[0, h, r, k]`, so the view's strides are (–, layer distance, L·L, 1). Separately allocated
/// layers cannot share one view: copy their rows into one (layers, heads, keys) buffer first.
template <class E, class Space = host_space>
struct attention_score_inputs {
  using space = Space;
  token_grid grid;                  ///< (T, H, W), N = T·H·W
  view<const E, 4, Space> weights;  // (rows, layers, heads, keys), rows = 1 or T
};

/// The same score computed from query rows and keys, without any attention matrix:
///
///   p[q, h, k] = softmax over all keys k of (scale · query[q, h] · keys[h / G, k]),  G = heads / kv_heads
///   score_j    = Σ_q Σ_h p[q, h, first_key + j]  /  (Q·H for mean, Q for sum)
///
/// Each softmax runs over every key given, with the row maximum subtracted first; the caller
/// passes exactly the keys the query row sees (a causal mask is not applied: for the last prompt
/// row, every key of the prefix). Token j is key `first_key + j`, j < N. Several query rows are
/// averaged (PyramidDrop's training mode averages the rows before each answer; note that there
/// each row sees only the keys up to itself, which this policy does not model). Grouped-query
/// attention: head h reads kv head h / G, as HF's `repeat_kv` lays the heads out.
///
/// With one query row and `head_reduce::mean` this is `attention_score` of the softmax weights,
/// to fp32 rounding (tests check 10⁻⁶ relative). A NaN or infinite logit in a head's row makes
/// that head's probabilities NaN, so with either reduction every score turns NaN.
///
/// Paper: PyramidDrop (Xing et al., CVPR 2025, arXiv 2410.17247); also FastV's score without an
/// eager layer (its §1.6: only the last query row is needed).
struct fused_attention_score {
  head_reduce heads = head_reduce::mean;
  index_t first_key = 0;  ///< key index of visual token 0 (the image span's start)
  float scale = 0.0f;     ///< logit scale, > 0; 0 means 1/sqrt(head_dim)
};

/// Inputs of fused_attention_score. Rows must have a unit inner stride for the SIMD dot product;
/// other strides work through a scalar loop. RoPE, if the model uses it, is already applied.
template <class E, class Space = host_space>
struct fused_attention_inputs {
  using space = Space;
  token_grid grid;                ///< (T, H, W), N = T·H·W
  view<const E, 3, Space> query;  // (queries, heads, head_dim)
  view<const E, 3, Space> keys;   // (kv_heads, keys, head_dim), heads % kv_heads == 0
};

namespace detail {

/// The parameters both attention scores share: a known head reduction and `first_key >= 0`.
constexpr bool valid_attention_parameters(head_reduce heads, index_t first_key) noexcept {
  return (heads == head_reduce::mean || heads == head_reduce::sum) && first_key >= 0;
}

/// A usable logit scale: 0 (the default) or a finite positive number.
inline bool valid_scale(float scale) noexcept {
  return scale == 0.0f || (scale > 0.0f && std::isfinite(scale));
}

/// `invalid_parameter` for bad parameters, then the grid: `shape_mismatch` if malformed,
/// `empty_input` without tokens.
inline status check_attention_problem(bool parameters_valid, const token_grid& grid) noexcept {
  if (!parameters_valid) return status::invalid_parameter;
  if (!grid.valid()) return status::shape_mismatch;
  return grid.tokens() == 0 ? status::empty_input : status::ok;
}

/// True when `keys` columns hold `span` columns from `first` (no overflow for any first >= 0).
constexpr bool covers_keys(index_t keys, index_t first, index_t span) noexcept {
  return keys >= first && keys - first >= span;
}

/// Every check of attention_score, in the documented order: parameters, grid, weights (rows,
/// then empty layers or heads, then keys, then data), scores output, aliasing.
template <class E, class Space>
status check_attention_score(const attention_score& p, const attention_score_inputs<E, Space>& in,
                             const score_outputs<Space>& out) noexcept {
  if (status s = check_attention_problem(valid_attention_parameters(p.heads, p.first_key), in.grid);
      s != status::ok)
    return s;
  const index_t rows = in.weights.extent(0);
  if (rows != 1 && rows != in.grid.frames) return status::shape_mismatch;
  if (in.weights.extent(1) == 0 || in.weights.extent(2) == 0) return status::empty_input;
  const index_t span = rows == 1 ? in.grid.tokens() : in.grid.frame_tokens();
  if (!covers_keys(in.weights.extent(3), p.first_key, span)) return status::shape_mismatch;
  if (in.weights.data_handle() == nullptr) return status::null_pointer;
  if (status s = check_scores_output(out, in.grid.tokens()); s != status::ok) return s;
  return may_overlap(out.scores, in.weights) ? status::aliasing : status::ok;
}

/// Every check of fused_attention_score, in the documented order: parameters, grid, query
/// (empty extents), keys (empty, head_dim, head grouping, key count), data, scores output,
/// aliasing.
template <class E, class Space>
status check_fused_attention(const fused_attention_score& p,
                             const fused_attention_inputs<E, Space>& in,
                             const score_outputs<Space>& out) noexcept {
  if (status s = check_attention_problem(
          valid_attention_parameters(p.heads, p.first_key) && valid_scale(p.scale), in.grid);
      s != status::ok)
    return s;
  const index_t heads = in.query.extent(1), head_dim = in.query.extent(2);
  const index_t kv_heads = in.keys.extent(0);
  if (in.query.extent(0) == 0 || heads == 0 || head_dim == 0 || kv_heads == 0)
    return status::empty_input;
  if (in.keys.extent(2) != head_dim || heads % kv_heads != 0) return status::shape_mismatch;
  if (!covers_keys(in.keys.extent(1), p.first_key, in.grid.tokens())) return status::shape_mismatch;
  if (in.query.data_handle() == nullptr || in.keys.data_handle() == nullptr)
    return status::null_pointer;
  if (status s = check_scores_output(out, in.grid.tokens()); s != status::ok) return s;
  return may_overlap(out.scores, in.query) || may_overlap(out.scores, in.keys) ? status::aliasing
                                                                                 : status::ok;
}

}  // namespace detail

/// `ok`, or what `apply` would return for the parameters and grid alone: `invalid_parameter`
/// (an unknown head reduction, `first_key < 0`), `shape_mismatch` (a negative grid extent) or
/// `empty_input` (N = 0). The views are checked by `apply`.
inline status can_implement(const attention_score& p, const problem& prob) noexcept {
  return detail::check_attention_problem(detail::valid_attention_parameters(p.heads, p.first_key),
                                         prob.grid);
}

/// As for attention_score, plus `invalid_parameter` for a negative, infinite or NaN `scale`.
/// `prob.dim` is the head dimension (it sizes the workspace).
inline status can_implement(const fused_attention_score& p, const problem& prob) noexcept {
  return detail::check_attention_problem(
      detail::valid_attention_parameters(p.heads, p.first_key) && detail::valid_scale(p.scale),
      prob.grid);
}

}  // namespace tokred
