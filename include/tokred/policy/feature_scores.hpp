// tokred/policy/feature_scores.hpp — scores computed from the token features alone: the L2 norm
// of each token, its cosine relevance to a query embedding, and its similarity to the same
// spatial slot of the previous frame (vLLM EVS, TimeChat-Online DTD).
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/feature_scores.hpp>. A score policy
// keeps nothing: a selection turns its scores into kept tokens — topk for a fixed budget (EVS:
// `temporal_similarity::evs()` then `topk{evs_budget(q, H·W)}`), threshold for a data-dependent
// count (DTD: `temporal_similarity::dtd()` then `threshold{τ}`).
//
// Every cosine here is torch's `F.cosine_similarity` with eps = 1e-8:
//   cos(x, y) = x·y / (max(‖x‖, eps) · max(‖y‖, eps))
// summed in fp32 (fp16 and bf16 rows are widened exactly). A zero row therefore has cosine 0 with
// every row (dissimilarity 1), never NaN. A NaN element makes every score its row enters NaN; an
// infinite one makes them NaN too (∞/∞). Squares are not rescaled: rows whose squared norm
// overflows fp32 (elements near 1.8e19) get infinite norms, as a plain fp32 sum does.
//
// Output: `score_outputs::scores`, one float per token — (tokens,) — except query_relevance at
// frame level, which writes one per frame, (T,). Higher means "keep first" for topk.
//
// `apply` checks, in this order: the exec (`invalid_exec`); the grid (`shape_mismatch` for a
// negative extent, `empty_input` for N = 0); `tokens` against (N, dim) (`shape_mismatch`,
// `null_pointer`, then `empty_input` for dim = 0); for query_relevance `query` (`empty_input` for
// no rows, then against (queries, dim)); `scores` against (N,) or (T,); `aliasing` when `scores`
// overlaps a view it reads; the workspace (frame-level relevance only). Nothing is written unless
// every check passes.
#pragma once

#include <limits>
#include <type_traits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/scores.hpp"

namespace tokred {

/// ‖x_i‖₂ of each token row, summed in fp32: a feature-only importance that needs no attention
/// map (large vision transformers keep global information in a few high-norm tokens; Darcet et
/// al., arXiv 2309.16588). Output (tokens,).
struct token_norm {};

/// Cosine relevance of the visual tokens to a query embedding (e.g. the text prompt projected into
/// the same space), as Free Video-LLM's prompt-guided frame sampling scores frames (arXiv
/// 2410.10441) and as QuoTA-style frame-budget assignment consumes them (arXiv 2503.08689, whose
/// own scorer is a VLM). `query` must hold at least one row of the tokens' width and type.
///
/// `level::token`: s_i = mean over the query rows q of cos(x_i, q), one score per token, (tokens,).
/// `level::frame`: one score per frame, (T,): the frame's mean token m_t (its H·W rows summed in
/// fp32 in index order, divided by H·W, rounded to the element type E) scored the same way,
/// s_t = mean over q of cos(m_t, q). The mean over query rows sums in query order.
///
/// `measure::dot` scores with the raw dot product x·q in place of the cosine: VidKV's saliency of
/// visual tokens, the mean dot product of their LLM input embeddings with the text embeddings
/// (KD-TAO/VidKV `_process_token_mm`, the input of vidkv_salient_tokens).
struct query_relevance {
  enum class level { token, frame };
  enum class measure { cosine, dot };
  level at = level::token;
  measure is = measure::cosine;
};

/// Similarity of each token to the token in the same spatial slot of the previous frame: token
/// (t, h, w) is compared with (t − 1, h, w), the previous frame's ORIGINAL row (never a kept
/// subset), so each frame's scores depend only on the input.
///
/// `measure::cosine` (TimeChat-Online DTD, arXiv 2504.17343): s = cos(x_{t,j}, x_{t−1,j}).
/// `measure::dissimilarity` (vLLM EVS, arXiv 2510.14624): s = 1 − cos(x_{t,j}, x_{t−1,j}).
/// Frame 0 has no previous frame: its tokens get `first_frame` (any value, written as given). The
/// default is EVS's 255, above every dissimilarity (≤ 2), so topk keeps frame 0 whole. With
/// T = 1 every token gets `first_frame`. Output (tokens,).
struct temporal_similarity {
  enum class measure { cosine, dissimilarity };
  measure is = measure::dissimilarity;
  float first_frame = 255.0f;

  /// vLLM EVS (`compute_retention_mask`): dissimilarity, frame 0 filled with 255.
  static constexpr temporal_similarity evs() noexcept { return {measure::dissimilarity, 255.0f}; }
  /// TimeChat-Online DTD (`token_drop`, feature mode): cosine, frame 0 filled with −∞ so that
  /// the "drop if similarity > τ" rule (threshold with keep::at_most) keeps it for every τ.
  static constexpr temporal_similarity dtd() noexcept {
    return {measure::cosine, -std::numeric_limits<float>::infinity()};
  }
};

/// vLLM EVS's retained count `max(H·W, int(T·H·W · (1 − q)))` for pruning rate `q`, as a budget
/// over all tokens: `topk{evs_budget(q, grid.frame_tokens())}`. The product T·H·W·(1 − q) is taken
/// in double in vLLM's order (integer count first), so e.g. 720 · (1 − 0.3) = 503.99999999999994
/// keeps 503; a q outside [0, 1] gives `invalid_ratio`.
constexpr keep_budget evs_budget(double q, index_t frame_tokens) noexcept {
  return keep_budget::ratio(1.0 - q, rounding::floor).at_least(frame_tokens);
}

/// Inputs of the feature scores. `query` is read by query_relevance only.
template <class E, class Space = host_space>
struct feature_score_inputs {
  using space = Space;
  token_grid grid;                 ///< (T, H, W), N = T·H·W
  view<const E, 2, Space> tokens;  // (tokens, dim) the features scored
  view<const E, 2, Space> query;   // (queries, dim) query_relevance: the query embedding rows
};

namespace detail {

/// The eps of torch's F.cosine_similarity, applied to each norm.
inline constexpr float cosine_eps = 1e-8f;

/// torch's F.cosine_similarity from the pair's dot product and the two squared norms: each norm
/// clamped to eps on its own; a NaN norm stays NaN. Host and device, each step rounded once.
TOKRED_HOST_DEVICE inline float cosine_of(float dot, float x_sq, float y_sq) noexcept {
  const float rx = sqrt_rn(x_sq), ry = sqrt_rn(y_sq);
  const float nx = rx < cosine_eps ? cosine_eps : rx;  // std::max(rx, eps): NaN stays
  const float ny = ry < cosine_eps ? cosine_eps : ry;
  return div_rn(dot, mul_rn(nx, ny));
}

template <class P>
inline constexpr bool is_feature_score_v = std::is_same_v<P, token_norm> ||
                                           std::is_same_v<P, query_relevance> ||
                                           std::is_same_v<P, temporal_similarity>;

/// Scores written: N, or T for query_relevance at frame level.
template <class P>
constexpr index_t feature_score_extent(const P& p, const token_grid& grid) noexcept {
  if constexpr (std::is_same_v<P, query_relevance>)
    if (p.at == query_relevance::level::frame) return grid.frames;
  return grid.tokens();
}

/// The shape checks that need no views: grid, token count, row width.
inline status check_feature_problem(const token_grid& grid, index_t dim) noexcept {
  if (!grid.valid() || dim < 0) return status::shape_mismatch;
  if (grid.tokens() == 0 || dim == 0) return status::empty_input;
  return status::ok;
}

/// Every check of a feature score, in the documented order: grid and N, token rows and their
/// width, query rows (query_relevance), the scores output, aliasing.
template <class P, class E, class Space>
status check_feature_scores(const P& p, const feature_score_inputs<E, Space>& in,
                            const score_outputs<Space>& out) noexcept {
  const bool reads_query = std::is_same_v<P, query_relevance>;
  // A negative width before N = 0, as can_implement reads them (check_feature_problem).
  if (!in.grid.valid() || has_negative_extent(in.tokens) || (reads_query && has_negative_extent(in.query)))
    return status::shape_mismatch;
  const index_t n = in.grid.tokens();
  if (n == 0) return status::empty_input;
  if (status s = check_rows(in.tokens, n); s != status::ok) return s;
  const index_t dim = in.tokens.extent(1);
  if (reads_query) {
    if (in.query.extent(0) == 0) return status::empty_input;  // also a query never given
    if (status s = check_view(in.query, {in.query.extent(0), dim}); s != status::ok) return s;
  }
  if (status s = check_scores_output(out, feature_score_extent(p, in.grid)); s != status::ok) return s;
  if (may_overlap(out.scores, in.tokens) || (reads_query && may_overlap(out.scores, in.query)))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

/// `ok`, or the status `apply` would return for this grid and row width (`shape_mismatch` for a
/// negative extent, `empty_input` for N = 0 or dim = 0). query_relevance also needs at least one
/// query row, which `apply` checks.
template <class P, std::enable_if_t<detail::is_feature_score_v<P>, int> = 0>
status can_implement(const P&, const problem& prob) noexcept {
  return detail::check_feature_problem(prob.grid, prob.dim);
}

/// The number of scores `apply` writes: N = T·H·W, or T for query_relevance at frame level; 0
/// exactly when `can_implement` fails.
template <class P, std::enable_if_t<detail::is_feature_score_v<P>, int> = 0>
index_t score_count(const P& p, const problem& prob) noexcept {
  if (can_implement(p, prob) != status::ok) return 0;
  return detail::feature_score_extent(p, prob.grid);
}

}  // namespace tokred
