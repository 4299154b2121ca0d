// tokred/policy/merge.hpp — merge tokens instead of dropping them: ToMe's bipartite soft matching
// (`tome`), its matching step alone (`tome_match`, for splitting the expensive part over
// threads), and `unmerge`, which copies merged rows back to every original slot (ToMe-SD).
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/tome.hpp> and <tokred/cpu/merge.hpp>.
// A merging policy emits, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  each output token: the size-weighted mean of the tokens merged into it
//   source    (kept,)      its representative: the input token whose slot it keeps
//   positions (kept, 3)    the original (t, h, w) of that representative
//   sizes     (kept,)      how many original tokens it stands for
//   assign    (tokens,)    the output slot of every input token
// Inputs may carry what an earlier merge produced (sizes, source, positions), so that merges
// chain across layers with the provenance kept in original terms; `assign` is per application
// and chains with `compose_assign` (<tokred/cpu/merge.hpp>).
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// The order of a merge's output tokens.
enum class merge_order {
  original,     ///< the method's own order (for tome: the protected tokens, unmerged A, then B)
  by_position,  ///< ascending representative index: input order with the merged-away tokens gone
};

/// ToMe's bipartite soft matching (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023,
/// arXiv 2210.09461; facebookresearch/ToMe `bipartite_soft_matching` + `merge_wavg`).
///
/// The N tokens split by parity into A (even indices) and B (odd indices). Every A token finds
/// its most similar B token by cosine similarity of the `metric` rows; the `r` A tokens with the
/// highest such similarity merge into their B partners (several may merge into one), every
/// other token passes through. Each output row is the size-weighted mean of the rows merged into
/// it and its size their total size. Exactly N − r_eff tokens come out, with
///   r_eff = min(r, ⌊(N − protect) / 2⌋), and r_eff = 0 (nothing merged) when that is ≤ 0.
///
/// `protect` leading tokens never merge: an A token below `protect` is never a source, a B token
/// below it never a destination. protect = 1 is the original's `class_token=True`, protect = 2
/// its `class_token=True, distill_token=True` (DeiT); larger values protect e.g. register
/// tokens the same way. (The original's `distill_token` without `class_token` has no equivalent.)
///
/// Output order (merge_order::original, the default, as the original):
///   protect = 0:  [unmerged A in descending-similarity order, then every B in index order]
///   protect ≥ 1:  [the protected tokens in index order, unmerged A ascending, B ascending]
/// (for protect = 1 and 2 exactly the original's `cat([unm, dst])` and
/// `cat([unm[:1], dst[:1], unm[1:], dst[1:]])`). When r_eff = 0 the original returns its input
/// unchanged, and so does tome: input order, whatever the order setting. merge_order::by_position
/// puts the outputs in ascending representative order instead.
///
/// Ties and special values (the original leaves these to torch): an A token's argmax over B
/// keeps the lower B index on ties (torch's first maximum); equal similarities rank by lower A
/// index; NaN
/// similarities are skipped by the argmax, and an A token with no number among them ranks after
/// every other. A metric row of zero norm has similarity 0 with everything (the original divides
/// by the norm and gets NaN); a row whose squared norm is not finite in fp32 has NaN similarity.
/// Statuses and their check order: `backend<tome, cpu<Arch>>` and docs/policies/tome.md.
struct tome {
  index_t r = 0;        ///< tokens to remove (the original's r), clamped as above; no default merge
  index_t protect = 0;  ///< leading tokens that never merge (class token: 1)
  merge_order order = merge_order::original;
};

/// ToMe's matching step alone: for every A token (even index), its best B partner and their
/// cosine similarity — the original's `node_idx` and `node_max`. `tome` computes the same itself
/// unless given them; run this first when several threads should share that O(N²·D) work (each
/// share computes its own range of A tokens), then `tome` with the result. Protected A tokens get
/// similarity −inf and partner −1, as do all when no unprotected B token exists.
struct tome_match {
  index_t protect = 0;  ///< as tome::protect
};

/// Copies each merged row back to every original slot it stands for: out[i] = merged[assign[i]]
/// (ToMe-SD's unmerge; the original's `unmerge` closure for one application, any chain of
/// applications with the composed assign).
struct unmerge {};

/// Inputs of tome and tome_match. tome_match reads `grid` and the compared rows only.
template <class E, class Space = host_space>
struct merge_inputs {
  using space = Space;
  token_grid grid;                                // (T, H, W), N = T·H·W input tokens
  view<const E, 2, Space> tokens;                 // (tokens, dim) rows merged
  view<const E, 2, Space> metric;                 // (tokens, metric_dim) compared; empty: tokens
  view<const float, 1, Space> sizes;              // (tokens,) originals each stands for; empty: 1
  view<const std::int64_t, 1, Space> source;      // (tokens,) an earlier merge's source; empty: i
  view<const std::int32_t, 2, Space> positions;   // (tokens, 3) an earlier merge's positions;
                                                  //   empty: grid.position(i)
  view<const float, 1, Space> similarity;         // (a_tokens,) tome_match's output; empty: computed
  view<const std::int64_t, 1, Space> partner;     // (a_tokens,) tome_match's output; with similarity
};

/// Outputs of a merge. Each view is optional: leave it empty to skip it.
template <class E, class Space = host_space>
struct merge_outputs {
  using space = Space;
  view<E, 2, Space> tokens;                // (kept, dim)
  view<std::int64_t, 1, Space> source;     // (kept,)
  view<std::int32_t, 2, Space> positions;  // (kept, 3) as (t, h, w)
  view<float, 1, Space> sizes;             // (kept,)
  view<std::int64_t, 1, Space> assign;     // (tokens,)
};

/// Outputs of a merge whose count depends on the data (dymu, holitom): `merge_outputs` sized by
/// the policy's static upper bound (`retained_count`), plus `count`, required, where `apply`
/// writes how many rows it filled. Rows and entries past the count are left as they were.
template <class E, class Space = host_space>
struct counted_merge_outputs : merge_outputs<E, Space> {
  view<std::int64_t, 1, Space> count;  // (1,) required: the number of output tokens
};

/// Outputs of tome_match, both required: indexed by A token k (token 2k).
template <class Space = host_space>
struct match_outputs {
  using space = Space;
  view<float, 1, Space> similarity;      // (a_tokens,) cosine to the partner (node_max)
  view<std::int64_t, 1, Space> partner;  // (a_tokens,) B index j of the partner, token 2j + 1
};

/// Inputs of unmerge.
template <class E, class Space = host_space>
struct unmerge_inputs {
  using space = Space;
  view<const E, 2, Space> tokens;               // (kept, dim) merged rows
  view<const std::int64_t, 1, Space> assign;    // (tokens,) slot of every original, in [0, kept)
};

/// Outputs of unmerge.
template <class E, class Space = host_space>
struct unmerge_outputs {
  using space = Space;
  view<E, 2, Space> tokens;  // (tokens, dim)
};

/// How many A tokens (even indices) N tokens have: the length of tome_match's outputs.
TOKRED_HOST_DEVICE constexpr index_t a_tokens(index_t n) noexcept { return (n + 1) / 2; }

/// The A / B split of N tokens and the part of each that `protect` leading tokens cover.
struct bipartite_split {
  index_t a = 0;            ///< |A| = ⌈N/2⌉, tokens 0, 2, 4, …
  index_t b = 0;            ///< |B| = ⌊N/2⌋, tokens 1, 3, 5, …
  index_t a_protected = 0;  ///< A tokens below `protect`: k < a_protected never merge
  index_t b_protected = 0;  ///< B tokens below `protect`: j < b_protected receive nothing
};

/// The split of `n` tokens with `protect` protected.
TOKRED_HOST_DEVICE constexpr bipartite_split split_of(index_t n, index_t protect) noexcept {
  const index_t p = protect < 0 ? 0 : (protect < n ? protect : n);
  return {a_tokens(n), n / 2, (p + 1) / 2, p / 2};
}

/// The original's clamp: min(r, ⌊(N − protect) / 2⌋), and 0 whenever that is not positive.
constexpr index_t effective_r(const tome& p, index_t n) noexcept {
  const index_t room = n > p.protect ? (n - p.protect) / 2 : 0;
  const index_t r = p.r < room ? p.r : room;
  return r > 0 ? r : 0;
}

namespace detail {

/// tome's count: N − r_eff, or why there is none.
struct merge_count {
  status code = status::ok;
  index_t kept = 0;
  index_t r = 0;  ///< r_eff
};

/// The grid of a merge: one group of N tokens, whose indices are 32-bit inside the CPU kernels.
inline status check_merge_grid(const token_grid& grid) noexcept {
  return check_group_grid(grid, scope::global);
}

inline merge_count tome_count(const tome& p, const token_grid& grid) noexcept {
  if (p.r < 0 || p.protect < 0) return {status::invalid_parameter, 0, 0};
  if (status s = check_merge_grid(grid); s != status::ok) return {s, 0, 0};
  const index_t r = effective_r(p, grid.tokens());
  return {status::ok, grid.tokens() - r, r};
}

/// The rows similarities come from: `metric` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const merge_inputs<E, Space>& in) noexcept {
  return requested(in.metric) ? in.metric : in.tokens;
}

/// The checks of the compared rows (tome, tome_match, dpc_knn): (N, metric_dim), metric_dim ≥ 1;
/// token rows of a negative extent are refused too where nothing reads them (tome_match, a
/// merge beside a metric without out.tokens).
template <class E, class Space>
status check_compared_rows(const merge_inputs<E, Space>& in) noexcept {
  if (status s = check_rows(compared_rows(in), in.grid.tokens()); s != status::ok) return s;
  return has_negative_extent(in.tokens) ? status::shape_mismatch : status::ok;
}

/// The checks of the provenance an earlier merge carried in, each optional: sizes and source
/// (N,), positions (N, 3).
template <class E, class Space>
status check_carried(const merge_inputs<E, Space>& in) noexcept {
  const index_t n = in.grid.tokens();
  if (status s = check_optional_view(in.sizes, {n}); s != status::ok) return s;
  if (status s = check_optional_view(in.source, {n}); s != status::ok) return s;
  return check_optional_view(in.positions, {n, index_t{3}});
}

/// The checks of a merge's outputs other than the token rows (which the caller checks against
/// the rows they come from), in order: source, positions, sizes (kept,) and assign (tokens,),
/// each optional; then `aliasing` when any output may overlap one of `inputs` (every view the
/// merge reads) or another output.
template <class E, class Space, class... Inputs>
status check_merge_outputs(const merge_outputs<E, Space>& out, index_t kept, index_t tokens,
                           const Inputs&... inputs) noexcept {
  if (status s = check_optional_view(out.source, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.positions, {kept, index_t{3}}); s != status::ok) return s;
  if (status s = check_optional_view(out.sizes, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.assign, {tokens}); s != status::ok) return s;
  const auto hits_input = [&](const auto& o) { return overlaps_any(o, inputs...); };
  const bool hit = hits_input(out.tokens) || hits_input(out.source) || hits_input(out.positions) ||
                   hits_input(out.sizes) || hits_input(out.assign) ||
                   any_overlap(out.tokens, out.source, out.positions, out.sizes, out.assign);
  return hit ? status::aliasing : status::ok;
}

/// Every check of tome that needs no access to values, in the documented order: parameters and
/// grid, compared rows, token rows (when out.tokens is requested), the carried inputs (sizes,
/// source, positions, the given matching), the outputs, overlaps. Returns the count on success.
template <class Ein, class Eout, class Space>
merge_count check_tome(const tome& p, const merge_inputs<Ein, Space>& in,
                       const merge_outputs<Eout, Space>& out) noexcept {
  const merge_count c = tome_count(p, in.grid);
  if (c.code != status::ok) return c;
  const auto fail = [](status s) { return merge_count{s, 0, 0}; };
  const index_t n = in.grid.tokens(), kept = c.kept, a = a_tokens(n);
  if (status s = check_compared_rows(in); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, n, out.tokens, kept); s != status::ok) return fail(s);
  if (status s = check_carried(in); s != status::ok) return fail(s);
  if (requested(in.similarity) || requested(in.partner)) {  // a given matching: both halves
    if (status s = check_view(in.similarity, {a}); s != status::ok) return fail(s);
    if (status s = check_view(in.partner, {a}); s != status::ok) return fail(s);
  }
  // The token rows are read only when the tokens output is requested.
  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const status s = check_merge_outputs(out, kept, n, compared_rows(in), read_tokens, in.sizes, in.source,
                                       in.positions, in.similarity, in.partner);
  return s != status::ok ? fail(s) : c;
}

/// Every check of tome_match, in order: protect and grid, compared rows, both outputs (a_tokens,),
/// overlaps.
template <class E, class Space>
status check_tome_match(const tome_match& p, const merge_inputs<E, Space>& in,
                        const match_outputs<Space>& out) noexcept {
  if (p.protect < 0) return status::invalid_parameter;
  if (status s = check_merge_grid(in.grid); s != status::ok) return s;
  if (status s = check_compared_rows(in); s != status::ok) return s;
  const index_t a = a_tokens(in.grid.tokens());
  if (status s = check_view(out.similarity, {a}); s != status::ok) return s;
  if (status s = check_view(out.partner, {a}); s != status::ok) return s;
  return any_overlap(compared_rows(in), out.similarity, out.partner) ? status::aliasing : status::ok;
}

/// The checks of unmerge that need no access to values: rows, assign, output, overlaps.
template <class Ein, class Eout, class Space>
status check_unmerge(const unmerge_inputs<Ein, Space>& in, const unmerge_outputs<Eout, Space>& out) noexcept {
  const index_t kept = in.tokens.extent(0), dim = in.tokens.extent(1), n = in.assign.extent(0);
  if (n == 0 || kept == 0) return status::empty_input;
  if (in.assign.data_handle() == nullptr) return status::null_pointer;
  if (status s = check_rows(in.tokens, kept); s != status::ok) return s;
  if (status s = check_view(out.tokens, {n, dim}); s != status::ok) return s;
  return overlaps_any(out.tokens, in.tokens, in.assign) ? status::aliasing : status::ok;
}

}  // namespace detail

/// Exact number of tokens tome returns on `prob`: N − r_eff. 0 exactly when `can_implement` fails.
inline index_t retained_count(const tome& p, const problem& prob) noexcept {
  return detail::tome_count(p, prob.grid).kept;
}

/// `ok`, or why tome cannot run on this grid: `invalid_parameter` (r or protect negative),
/// `shape_mismatch` (a negative grid extent, more than 2³¹ − 1 tokens), `empty_input`.
inline status can_implement(const tome& p, const problem& prob) noexcept {
  return detail::tome_count(p, prob.grid).code;
}

/// `ok`, or why tome_match cannot run on this grid (as for tome).
inline status can_implement(const tome_match& p, const problem& prob) noexcept {
  if (p.protect < 0) return status::invalid_parameter;
  return detail::check_merge_grid(prob.grid);
}

}  // namespace tokred
