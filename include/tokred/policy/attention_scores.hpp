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
#include "tokred/core/rounded.hpp"
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

/// The score of key column `c` of weights row `row`, in the order every backend uses: per layer,
/// the heads ascending from +0 (then divided by the head count for the mean), added to a total
/// from +0; each step one fp32 rounding. The CPU backend computes it for a batch of columns in
/// SIMD lanes, the CUDA backend one column per thread.
template <class E, class Space>
TOKRED_HOST_DEVICE float weights_column_score(const view<const E, 4, Space>& weights, index_t row, index_t c,
                                              bool mean) noexcept {
  const index_t layers = weights.extent(1), heads = weights.extent(2);
  const float divisor = static_cast<float>(heads);
  float total = 0.0f;
  for (index_t l = 0; l < layers; ++l) {
    float acc = 0.0f;
    for (index_t h = 0; h < heads; ++h) acc = add_rn(acc, widen(weights(row, l, h, c)));
    total = add_rn(total, mean ? div_rn(acc, divisor) : acc);
  }
  return total;
}

/// Writes the score of token j (the CUDA kernel's per-thread body): with one weights row token
/// j is column `first_key + j`; with one row per frame, frame j / (H·W) scores its column
/// `first_key + j mod H·W`.
template <class E, class Space>
TOKRED_HOST_DEVICE void attention_score_at(const attention_score& p, const attention_score_inputs<E, Space>& in,
                                           const score_outputs<Space>& out, index_t j) noexcept {
  const bool per_frame = in.weights.extent(0) != 1;
  const index_t row_tokens = per_frame ? in.grid.frame_tokens() : in.grid.tokens();
  out.scores(j) = weights_column_score(in.weights, j / row_tokens, p.first_key + j % row_tokens,
                                       p.heads == head_reduce::mean);
}

// ---- fused_attention_score, step by step (host/device) ------------------------------------------
//
// The CUDA backend's per-thread steps, which the CPU tests also run on the host: a row's softmax
// state built key by key and merged pairwise across threads, then each token's probability from
// the row's final state. Logits and exponentials round differently from the CPU backend's SIMD
// ones, so the two agree within the documented tolerance, not bit for bit.

/// The running softmax state of one (query, head) row: the largest logit seen (NaN ignored)
/// and Σ exp(s·(d − max)) in double over the keys seen.
struct softmax_state {
  float max = -3.40282347e+38f;  // −FLT_MAX: exp(s·(−FLT_MAX − m)) is 0 in double
  double sum = 0.0;

  /// Adds a key's logit d (scale s): the sum is rescaled whenever the maximum rises. A NaN or
  /// infinite logit makes the sum NaN, and so every probability of the row.
  TOKRED_HOST_DEVICE void add(float d, float s) noexcept {
    const float m = d > max ? d : max;
    if (m != max) {
      sum *= ::exp(static_cast<double>(s) * (static_cast<double>(max) - static_cast<double>(m)));
      max = m;
    }
    sum += static_cast<double>(::expf(mul_rn(sub_rn(d, m), s)));
  }

  /// Merges another state over other keys (both over disjoint key sets).
  TOKRED_HOST_DEVICE void merge(const softmax_state& o, float s) noexcept {
    const float m = o.max > max ? o.max : max;
    sum = sum * ::exp(static_cast<double>(s) * (static_cast<double>(max) - static_cast<double>(m))) +
          o.sum * ::exp(static_cast<double>(s) * (static_cast<double>(o.max) - static_cast<double>(m)));
    max = m;
  }

  /// The probability of a key with logit d once every key of the row has been added.
  TOKRED_HOST_DEVICE float probability(float d, float s) const noexcept {
    return static_cast<float>(static_cast<double>(::expf(mul_rn(sub_rn(d, max), s))) / sum);
  }
};

/// q·k over `dim` channels, q staged as fp32 (contiguous), k at `key` with element stride
/// `stride`: eight partial sums (channel mod 8), combined pairwise — eight independent
/// multiply-add chains, and the rounding of a sum of dim/8 terms rather than of dim.
template <class E>
TOKRED_HOST_DEVICE inline float staged_dot(const float* q, const E* key, index_t stride, index_t dim) noexcept {
  float part[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (index_t c = 0; c < dim; c += 8)
    for (int r = 0; r < 8; ++r)  // constant indices once unrolled: the sums stay in registers
      if (c + r < dim) part[r] += q[c + r] * widen(key[(c + r) * stride]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

/// One level of the pairwise merge of `2·width` states: thread t < width merges state t + width
/// into state t. Levels width = T/2, T/4, …, 1 leave the row's state in state 0.
TOKRED_HOST_DEVICE inline void merge_level(softmax_state* states, int width, int t, float s) noexcept {
  if (t < width) states[t].merge(states[t + width], s);
}

/// The (query, head) row r in the order both backends sum rows: heads ascending, queries within
/// a head; and the kv head its keys come from.
struct fused_row {
  index_t query, head, kv_head;
};
TOKRED_HOST_DEVICE constexpr fused_row fused_row_at(index_t r, index_t queries, index_t heads,
                                                    index_t kv_heads) noexcept {
  return {r % queries, r / queries, r / queries / (heads / kv_heads)};
}

/// Token j's share of rows [r0, r0 + count): the probabilities of key `first_key + j` under each
/// row's final state, added to `acc` in row order. `staged` holds the rows' queries in fp32,
/// `dim` apart; `states` their softmax states.
template <class E, class Space>
TOKRED_HOST_DEVICE float add_token_probabilities(const fused_attention_inputs<E, Space>& in, index_t first_key,
                                                 index_t r0, index_t count, const float* staged,
                                                 const softmax_state* states, float s, index_t j,
                                                 float acc) noexcept {
  const index_t dim = in.query.extent(2);
  for (index_t i = 0; i < count; ++i) {
    const fused_row row = fused_row_at(r0 + i, in.query.extent(0), in.query.extent(1), in.keys.extent(0));
    const float d = staged_dot(staged + i * dim, &in.keys(row.kv_head, first_key + j, 0), in.keys.stride(2), dim);
    acc = add_rn(acc, states[i].probability(d, s));
  }
  return acc;
}

/// The logit scale: `scale`, or 1/√head_dim when it is 0.
inline float fused_scale(const fused_attention_score& p, index_t head_dim) noexcept {
  return p.scale != 0.0f ? p.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

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
  if ((rows != 1 && rows != in.grid.frames) || has_negative_extent(in.weights)) return status::shape_mismatch;
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
  if (has_negative_extent(in.query) || has_negative_extent(in.keys)) return status::shape_mismatch;
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
