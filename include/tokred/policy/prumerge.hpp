// tokred/policy/prumerge.hpp — LLaVA-PruMerge's merge step: every kept token absorbs the
// tokens nearest to it by key cosine, weighted by their [CLS] attention, and one extra token
// gathers the pruned ones.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/prumerge.hpp>. The kept tokens come in
// as an index list (any selection's `source`; PruMerge's own is `iqr_outliers`), so the output
// count is that list's length plus the extra token. Outputs, each optional (an empty view means
// "not requested"):
//   tokens     (rows, dim)         the merged kept tokens in list order, then the extra token
//   source     (rows,)             the kept token each row stands on; −1 for the extra token
//   positions  (rows, 3)           that token's (t, h, w); (−1, −1, −1) for the extra token
//   neighbours (kept, neighbours)  the tokens merged into each kept token, nearest first
// with rows = kept + extra_token. There are no `sizes` or `assign`: a token is merged into every
// kept token it is near to (and pruned tokens into the extra token as well), so the output rows
// do not partition the input and no token has one output slot.
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// How a kept token's merged row is scaled.
enum class prumerge_weights {
  sum,         ///< x_i + Σ a_j·x_j, unnormalised: the original (merged rows grow in norm)
  normalized,  ///< (x_i + Σ a_j·x_j) / (1 + Σ a_j): the same weights, summing to one
};

/// The merge step of LLaVA-PruMerge and PruMerge+ (Shang et al., "LLaVA-PruMerge: Adaptive Token
/// Reduction for Efficient Large Multimodal Models", ICCV 2025, arXiv 2403.15388;
/// 42Shawn/LLaVA-PruMerge, `CLIPVisionTower.token_prune_merge_advanced[_plus]`), for the N
/// tokens of `grid` with features x_j, keys k_j and [CLS] attention scores a_j:
///
///   for each kept token i, in list order:
///     near(i)  the `neighbours` tokens j ≠ i of highest cos(k_i, k_j), out of all N − 1 others
///              (kept or pruned): descending cosine, ties to the lower index, NaN last
///     row      x_i + Σ_{j ∈ near(i)} a_j·x_j            (prumerge_weights::sum, the original)
///              (x_i + Σ a_j·x_j) / (1 + Σ a_j)          (prumerge_weights::normalized)
///   extra      Σ_{j pruned} a_j·x_j                      (sum; normalized: / Σ_{j pruned} a_j)
///
/// where the pruned tokens are those not in the list. Output order, as the original: the kept
/// tokens in list order, then the extra token (when `extra_token`).
///
/// Cosines are of the keys scaled to unit length; a zero key has cosine 0 with every token (the
/// original's F.normalize gives the same), a key whose squared norm is not finite in fp32 has NaN
/// cosines, which rank last. Every sum runs in a fixed order (the neighbours nearest first, the
/// pruned tokens ascending) in fp32. NaN or infinite features or scores are summed as they are.
/// A normalised row whose divisor is 0 (the extra token with no pruned token or zero scores; a
/// kept token whose scores sum to −1) is left undivided.
///
/// Repeated indices in the list are allowed: each occurrence is an output row (identical
/// rows), a token's neighbours never include the token itself, and a token listed twice is kept,
/// not pruned. (The original's training branch, whose list can repeat tokens, instead counts the
/// other copy as a neighbour and drops the lowest pruned tokens from its extra token; tokred does
/// not reproduce that.) Statuses and their check order: `backend<prumerge_merge, cpu<Arch>>` and
/// docs/policies/prumerge_merge.md.
struct prumerge_merge {
  index_t neighbours = 32;                           ///< tokens merged into each kept token
  prumerge_weights weights = prumerge_weights::sum;  ///< the original's unnormalised sum
  bool extra_token = true;                           ///< append the pruned tokens' weighted sum
};

/// Inputs of prumerge_merge. No [CLS] row: pass the N patch rows (a row range of the encoder's
/// output). `tokens` is read when `out.tokens` is requested or `keys` is empty.
template <class E, class Space = host_space>
struct prumerge_inputs {
  using space = Space;
  token_grid grid;                          ///< (T, H, W), N = T·H·W tokens
  view<const std::int64_t, 1, Space> kept;  // (kept,) token indices in [0, N), in output order
  view<const E, 2, Space> tokens;           // (tokens, dim) the features merged
  view<const float, 1, Space> scores;       // (tokens,) the merge weights: [CLS] attention
  view<const E, 2, Space> keys;             // (tokens, key_dim) the rows compared; empty: tokens
};

/// Outputs of prumerge_merge, each optional.
template <class E, class Space = host_space>
struct prumerge_outputs {
  using space = Space;
  view<E, 2, Space> tokens;                   // (rows, dim), rows = kept + extra_token
  view<std::int64_t, 1, Space> source;        // (rows,) −1 for the extra token
  view<std::int32_t, 2, Space> positions;     // (rows, 3) as (t, h, w); −1s for the extra token
  view<std::int64_t, 2, Space> neighbours;    // (kept, neighbours) nearest first
};

namespace detail {

/// The shape facts of one prumerge_merge problem.
struct prumerge_shape {
  status code = status::ok;
  index_t tokens = 0;  ///< N
  index_t kept = 0;    ///< the index list's length
  index_t rows = 0;    ///< kept + extra_token, the output rows
};

/// Whether `p` can run on `grid`, checked in this order: `invalid_parameter` (a negative
/// neighbour count, an unknown weighting), the grid (`shape_mismatch`, `empty_input`),
/// `budget_exceeds_input` (more neighbours than the N − 1 other tokens).
inline status prumerge_check(const prumerge_merge& p, const token_grid& grid) noexcept {
  const bool known = p.weights == prumerge_weights::sum || p.weights == prumerge_weights::normalized;
  if (p.neighbours < 0 || !known) return status::invalid_parameter;
  if (status s = check_merge_grid(grid); s != status::ok) return s;
  return p.neighbours > grid.tokens() - 1 ? status::budget_exceeds_input : status::ok;
}

/// The rows compared: `keys` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const prumerge_inputs<E, Space>& in) noexcept {
  return requested(in.keys) ? in.keys : in.tokens;
}

/// Every check of prumerge_merge that needs no index value, in the documented order: the policy
/// on the grid (`prumerge_check`); the index list (`null_pointer`; `invalid_budget` when there
/// is no output row); scores (N,); the compared rows (N, key_dim ≥ 1); the token rows and
/// out.tokens (when requested); the other outputs; overlaps. Returns the shape on success.
template <class Ein, class Eout, class Space>
prumerge_shape check_prumerge(const prumerge_merge& p, const prumerge_inputs<Ein, Space>& in,
                              const prumerge_outputs<Eout, Space>& out) noexcept {
  const auto fail = [](status s) { return prumerge_shape{s}; };
  if (status s = prumerge_check(p, in.grid); s != status::ok) return fail(s);
  const index_t n = in.grid.tokens(), kept = in.kept.extent(0), rows = kept + (p.extra_token ? 1 : 0);
  if (kept > 0 && in.kept.data_handle() == nullptr) return fail(status::null_pointer);
  if (rows == 0) return fail(status::invalid_budget);
  if (status s = check_view(in.scores, {n}); s != status::ok) return fail(s);
  if (status s = check_rows(compared_rows(in), n); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, n, out.tokens, rows); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.source, {rows}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.positions, {rows, index_t{3}}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.neighbours, {kept, p.neighbours}); s != status::ok) return fail(s);

  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const auto hits_input = [&](const auto& o) { return overlaps_any(o, in.kept, in.scores, compared_rows(in), read_tokens); };
  const bool hit = hits_input(out.tokens) || hits_input(out.source) || hits_input(out.positions) ||
                   hits_input(out.neighbours) || any_overlap(out.tokens, out.source, out.positions, out.neighbours);
  return hit ? fail(status::aliasing) : prumerge_shape{status::ok, n, kept, rows};
}

}  // namespace detail

/// `ok`, or why prumerge_merge cannot run on this grid: `invalid_parameter`, `shape_mismatch`,
/// `empty_input`, `budget_exceeds_input` (see `detail::prumerge_check`).
inline status can_implement(const prumerge_merge& p, const problem& prob) noexcept {
  return detail::prumerge_check(p, prob.grid);
}

/// The number of rows prumerge_merge writes for a list of `kept` indices: kept + extra_token.
/// The count follows the list (as gather's does), so this takes its length; 0 when
/// `can_implement` fails, `kept` is negative, or nothing would come out.
inline index_t retained_count(const prumerge_merge& p, const problem& prob, index_t kept) noexcept {
  if (can_implement(p, prob) != status::ok || kept < 0) return 0;
  return kept + (p.extra_token ? 1 : 0);
}

}  // namespace tokred
