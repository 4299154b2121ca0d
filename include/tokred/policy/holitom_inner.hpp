// tokred/policy/holitom_inner.hpp — HoliTom's inner-LLM merge: at one decoder layer keep the image
// tokens the last query attends to most and fold every other one into its most similar kept
// token.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/holitom_inner.hpp>. The count is known
// before any data exists (`retained_count`). Outputs, each optional:
//   tokens  (kept, dim)  the kept hidden states after the merge, in index order
//   source  (kept,)      each kept token's index among the image tokens (its RoPE position is
//                        the image start plus this)
//   sizes   (kept,)      1 + the tokens folded into it
//   assign  (tokens,)    every image token's output row: its own, or its target's
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"

namespace tokred {

/// HoliTom's inner-LLM merge (Shao et al., arXiv 2505.21334; cokeshao/HoliTom
/// `holitom/modeling_qwen2.py`, `Qwen2Model_holitom.forward` at layer HOLITOM_k, prefill only),
/// on the L image tokens (newline rows included) of one sequence:
///
///   kept      the K = round(L·(1 − r)) tokens of highest `attention` (the last query's attention
///             at the layer before, mean over heads; round half to even), ranked by attention
///             descending, ties to the lower index, NaN last
///   target    every other token j: argmax over the kept m, in rank order, of
///             cos(h_j, h_m) = h_j·h_m / (‖h_j‖·‖h_m‖) in fp32, no epsilon, all computed before
///             any update; the first maximum wins, and a NaN (a zero row) wins as torch.max's
///             NaN does: the first NaN in rank order
///   merge     for j in increasing index: h_m ← (h_m + h_j) / 2 for its target m, rounded to the
///             element type after the sum and after the halving, as the original's tensor ops
///   output    the kept tokens in index order
///
/// The sequential halving weights a target's later partners more than its earlier ones, and its
/// own state by 2⁻ᵖ after p partners: an order-dependent average, not a mean (HoliTom's own
/// rule). The caller drops the other rows of its sequence, gives the kept ones the positions
/// image start + `source` (RoPE gaps kept) and shortens its cache positions, as the original.
///
/// Defaults: r = 0.5 (HOLITOM_r; its scripts merge at layer HOLITOM_k = 18 of Qwen2-7B's 28).
/// Statuses and their check order: `backend<holitom_inner, cpu<Arch>>` and
/// docs/policies/holitom_inner.md.
struct holitom_inner {
  double r = 0.5;  ///< the share of image tokens merged away, in [0, 1); K = round(L·(1 − r))
};

/// Inputs of holitom_inner.
template <class E, class Space = host_space>
struct holitom_inner_inputs {
  using space = Space;
  view<const E, 2, Space> tokens;         // (tokens, dim) the image tokens' hidden states
  view<const float, 1, Space> attention;  // (tokens,) the last query's attention to them
};

/// Outputs of holitom_inner, each optional.
template <class E, class Space = host_space>
struct holitom_inner_outputs {
  using space = Space;
  view<E, 2, Space> tokens;             // (kept, dim)
  view<std::int64_t, 1, Space> source;  // (kept,)
  view<float, 1, Space> sizes;          // (kept,)
  view<std::int64_t, 1, Space> assign;  // (tokens,)
};

namespace detail {

/// holitom_inner's count on L image tokens, or why there is none, in this order:
/// `shape_mismatch` (L above 2³¹ − 1), `empty_input` (L = 0), `invalid_ratio` (r outside [0, 1]
/// or NaN), `invalid_budget` (K = 0, e.g. r = 1: the original's topk(0) leaves nothing to merge
/// into).
inline count_result holitom_inner_count(const holitom_inner& p, index_t tokens) noexcept {
  if (tokens < 0 || tokens > index_t{0x7FFFFFFF}) return {status::shape_mismatch, 0};
  if (tokens == 0) return {status::empty_input, 0};
  return kept_count(keep_budget::ratio(1.0 - p.r, rounding::half_even), tokens);
}

/// Every check of holitom_inner that needs no access to values, in order: the count, the token
/// rows (L, dim ≥ 1; always read), out.tokens (K, dim) when requested, attention (L,), the outputs,
/// overlaps.
template <class Ein, class Eout, class Space>
count_result check_holitom_inner(const holitom_inner& p, const holitom_inner_inputs<Ein, Space>& in,
                                 const holitom_inner_outputs<Eout, Space>& out) noexcept {
  const index_t n = in.tokens.extent(0);
  const count_result c = holitom_inner_count(p, n);
  if (c.code != status::ok) return c;
  const auto fail = [](status s) { return count_result{s, 0}; };
  if (status s = check_rows(in.tokens, n); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.tokens, {c.count, in.tokens.extent(1)}); s != status::ok) return fail(s);
  if (status s = check_view(in.attention, {n}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.source, {c.count}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.sizes, {c.count}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.assign, {n}); s != status::ok) return fail(s);
  const auto hits_input = [&](const auto& o) { return overlaps_any(o, in.tokens, in.attention); };
  const bool hit = hits_input(out.tokens) || hits_input(out.source) || hits_input(out.sizes) ||
                   hits_input(out.assign) || any_overlap(out.tokens, out.source, out.sizes, out.assign);
  return hit ? fail(status::aliasing) : c;
}

}  // namespace detail

/// Exact number of tokens holitom_inner keeps of the `prob.grid.tokens()` image tokens:
/// round(L·(1 − r)). 0 exactly when `can_implement` fails.
inline index_t retained_count(const holitom_inner& p, const problem& prob) noexcept {
  if (!prob.grid.valid()) return 0;
  return detail::holitom_inner_count(p, prob.grid.tokens()).count;
}

/// `ok`, or why holitom_inner cannot run on these tokens: `invalid_ratio`, `shape_mismatch`,
/// `empty_input`, `invalid_budget` (see `detail::holitom_inner_count`).
inline status can_implement(const holitom_inner& p, const problem& prob) noexcept {
  if (!prob.grid.valid()) return status::shape_mismatch;
  return detail::holitom_inner_count(p, prob.grid.tokens()).code;
}

}  // namespace tokred
