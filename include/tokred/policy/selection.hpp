// tokred/policy/selection.hpp — keep a subset of tokens: top-k by score, uniform, random_subset and
// the gather that applies any kept-index list.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/selection.hpp> and
// <tokred/cuda/selection.cuh>. Every selection keeps whole rows: scores may have been computed
// from the first d columns only (Qwen3-VL deepstack rows), the rows moved are `dim` wide.
//
// Outputs, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the kept rows, converted to the output element type if it differs
//   source    (kept,)      the original index of each kept token
//   positions (kept, 3)    the original (t, h, w) of each kept token
// Kept tokens are in original order (ascending source) for topk, uniform and random_subset; gather
// follows the order of its index list.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"

namespace tokred {

/// Where a budget applies: once over all T·H·W tokens, or to each frame's H·W tokens.
enum class scope { global, per_frame };

/// Keeps the `k` highest-scoring tokens (FastV, FasterVLM, PyramidDrop, … select this way).
///
/// Ties break by (score descending, index ascending); NaN scores rank below every number and
/// among themselves by index; -0 and +0 tie. Deterministic, and identical on every backend.
/// Per-frame scope keeps `k` of each frame's H·W tokens (k from the ratio of H·W).
struct topk {
  keep_budget keep;              ///< how many to keep (no default: a count or a ratio)
  scope within = scope::global;  ///< one budget for all tokens, or one per frame
};

/// Keeps `k` evenly spaced tokens: token `floor((2j + 1)·n / (2k))` for j = 0 … k-1 — the
/// centre of each of k equal stretches (the "downsample" baseline). Exact integer arithmetic.
struct uniform {
  keep_budget keep;
  scope within = scope::global;
};

/// Keeps `k` tokens chosen uniformly at random: the top k of a counter-based 32-bit hash of
/// (seed, token index). The same seed gives the same subset on every platform, backend and
/// thread count; different frames draw independently.
struct random_subset {
  keep_budget keep;
  std::uint64_t seed = 0;
  scope within = scope::global;
};

/// Copies the rows named by a caller's index list (any order, repeats allowed), with their
/// `source` and `positions`, converting the element type if input and output types differ.
struct gather {};

/// Inputs of topk / uniform / random_subset. `scores` is read by topk only; `tokens` only when the
/// `tokens` output is requested.
template <class E, class Space = host_space>
struct selection_inputs {
  using space = Space;
  token_grid grid;                      ///< (T, H, W), N = T·H·W
  view<const float, 1, Space> scores;   // (tokens,) higher is kept first
  view<const E, 2, Space> tokens;       // (tokens, dim)
};

/// Inputs of gather.
template <class E, class Space = host_space>
struct gather_inputs {
  using space = Space;
  token_grid grid;                           ///< (T, H, W) of the tokens indexed
  view<const std::int64_t, 1, Space> index;  // (kept,) token indices in [0, N)
  view<const E, 2, Space> tokens;            // (tokens, dim)
};

/// Outputs of every selection. Each view is optional: leave it empty to skip it.
template <class E, class Space = host_space>
struct selection_outputs {
  using space = Space;
  view<E, 2, Space> tokens;                // (kept, dim)
  view<std::int64_t, 1, Space> source;     // (kept,)
  view<std::int32_t, 2, Space> positions;  // (kept, 3) as (t, h, w)
};

/// Outputs of a selection whose kept count depends on the data (threshold and outlier rules):
/// those of every selection, sized by the static upper bound that `retained_count` returns, plus
/// `count`, where `apply` writes how many rows it filled. Rows past the count are left as they
/// were. Engines size buffers from the bound before the data exists and read the count after.
template <class E, class Space = host_space>
struct counted_outputs : selection_outputs<E, Space> {
  view<std::int64_t, 1, Space> count;  // (1,) required: the number of kept tokens
};

namespace detail {

/// Tokens one budget applies to, and how many such groups there are.
struct selection_groups {
  index_t groups = 0;
  index_t group_tokens = 0;
};

constexpr selection_groups groups_of(scope within, const token_grid& grid) noexcept {
  return within == scope::per_frame ? selection_groups{grid.frames, grid.frame_tokens()}
                                    : selection_groups{1, grid.tokens()};
}

/// The group size tokred supports: token indices are 32-bit inside the selection kernels.
inline constexpr index_t max_group_tokens = std::numeric_limits<std::int32_t>::max();

/// The grid of a selection whose groups are all its tokens (`scope::global`) or each frame's,
/// plus `extra` rows (a [CLS] row): `shape_mismatch` for a malformed grid (`token_grid::valid`),
/// `empty_input` for N = 0, `shape_mismatch` for a group above 2³¹ − 1 rows. The group is
/// counted only once the grid is known to be valid.
inline status check_group_grid(const token_grid& grid, scope within, index_t extra = 0) noexcept {
  if (!grid.valid()) return status::shape_mismatch;
  if (grid.tokens() == 0) return status::empty_input;
  const index_t group = within == scope::per_frame ? grid.frame_tokens() : grid.tokens();
  return group > max_group_tokens - extra ? status::shape_mismatch : status::ok;
}

/// The exact kept count of a budgeted selection, or why there is none.
inline count_result selection_count(const keep_budget& keep, scope within,
                                    const token_grid& grid) noexcept {
  if (status s = check_group_grid(grid, within); s != status::ok) return {s, 0};
  const selection_groups g = groups_of(within, grid);
  const count_result per_group = kept_count(keep, g.group_tokens);
  if (per_group.code != status::ok) return per_group;
  return {status::ok, per_group.count * g.groups};
}

/// Shared checks of the outputs and the token rows: shapes against `kept` and the input rows,
/// and no output overlapping an input or another output. `scores` may be empty.
template <class Ein, class Eout, class Space>
status check_rows_and_outputs(const view<const Ein, 2, Space>& tokens_in, index_t n,
                              const view<const float, 1, Space>& scores,
                              const view<const std::int64_t, 1, Space>& index,
                              const selection_outputs<Eout, Space>& out, index_t kept) noexcept {
  if (status s = check_row_output(tokens_in, n, out.tokens, kept); s != status::ok) return s;
  if (status s = check_optional_view(out.source, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.positions, {kept, index_t{3}}); s != status::ok) return s;

  const bool tok = requested(out.tokens), src = requested(out.source),
             pos = requested(out.positions);
  const auto hits_input = [&](const auto& o) {
    return may_overlap(o, scores) || may_overlap(o, index) ||
           (tok && may_overlap(o, tokens_in));
  };
  if ((tok && hits_input(out.tokens)) || (src && hits_input(out.source)) ||
      (pos && hits_input(out.positions)))
    return status::aliasing;
  if ((tok && src && may_overlap(out.tokens, out.source)) ||
      (tok && pos && may_overlap(out.tokens, out.positions)) ||
      (src && pos && may_overlap(out.source, out.positions)))
    return status::aliasing;
  return status::ok;
}

/// Every check of a budgeted selection, in the documented order: budget and grid, scores (topk),
/// token rows and outputs, aliasing.
template <class Policy, class Ein, class Eout, class Space>
status check_selection(const Policy& policy, bool reads_scores,
                       const selection_inputs<Ein, Space>& in,
                       const selection_outputs<Eout, Space>& out) noexcept {
  const count_result kept = selection_count(policy.keep, policy.within, in.grid);
  if (kept.code != status::ok) return kept.code;
  const index_t n = in.grid.tokens();
  if (reads_scores)
    if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  const view<const float, 1, Space> scores = reads_scores ? in.scores : view<const float, 1, Space>{};
  return check_rows_and_outputs(in.tokens, n, scores, {}, out, kept.count);
}

/// The checks of a data-dependent selection's outputs: those of every selection against the
/// static upper bound `bound`, then the required `count` (1,), which may overlap nothing.
template <class Ein, class Eout, class Space>
status check_counted_outputs(const view<const Ein, 2, Space>& tokens_in, index_t n,
                             const view<const float, 1, Space>& scores,
                             const counted_outputs<Eout, Space>& out, index_t bound) noexcept {
  const selection_outputs<Eout, Space>& rows = out;
  if (status s = check_rows_and_outputs(tokens_in, n, scores, {}, rows, bound); s != status::ok)
    return s;
  if (status s = check_view(out.count, {index_t{1}}); s != status::ok) return s;
  if (may_overlap(out.count, scores) || may_overlap(out.count, out.source) ||
      may_overlap(out.count, out.positions) ||
      (requested(out.tokens) && (may_overlap(out.count, out.tokens) || may_overlap(out.count, tokens_in))))
    return status::aliasing;
  return status::ok;
}

/// The checks of gather that need no access to the index values.
template <class Ein, class Eout, class Space>
status check_gather(const gather_inputs<Ein, Space>& in,
                    const selection_outputs<Eout, Space>& out) noexcept {
  if (!in.grid.valid()) return status::shape_mismatch;
  const index_t n = in.grid.tokens();
  if (n == 0) return status::empty_input;
  const index_t kept = in.index.extent(0);
  if (kept < 0) return status::shape_mismatch;
  if (kept == 0) return status::invalid_budget;
  if (in.index.data_handle() == nullptr) return status::null_pointer;
  return check_rows_and_outputs(in.tokens, n, {}, in.index, out, kept);
}

}  // namespace detail

namespace detail {
/// The selections whose count comes from a `keep_budget` (everything but gather).
template <class P>
inline constexpr bool is_budgeted_selection_v =
    std::is_same_v<P, topk> || std::is_same_v<P, uniform> || std::is_same_v<P, random_subset>;
}  // namespace detail

/// Exact number of tokens topk, uniform or random_subset keeps on `prob`; 0 exactly when
/// `can_implement` fails.
template <class P, std::enable_if_t<detail::is_budgeted_selection_v<P>, int> = 0>
index_t retained_count(const P& p, const problem& prob) noexcept {
  return detail::selection_count(p.keep, p.within, prob.grid).count;
}

/// `ok`, or the status `apply` would return for the budget on this grid (`empty_input`,
/// `invalid_ratio`, `invalid_budget`, `budget_exceeds_input`, `shape_mismatch`).
template <class P, std::enable_if_t<detail::is_budgeted_selection_v<P>, int> = 0>
status can_implement(const P& p, const problem& prob) noexcept {
  return detail::selection_count(p.keep, p.within, prob.grid).code;
}

/// Gather takes its count from its index list; on a grid it fails only when the grid is empty.
inline status can_implement(const gather&, const problem& prob) noexcept {
  if (!prob.grid.valid()) return status::shape_mismatch;
  return prob.grid.tokens() == 0 ? status::empty_input : status::ok;
}

namespace detail {

/// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
TOKRED_HOST_DEVICE constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  return x;
}

/// The random_subset policy's draw for token `i`: the high half of mix64(seed, i). Integer-only, so
/// every backend gets the same bits.
TOKRED_HOST_DEVICE constexpr std::uint32_t random_key(std::uint64_t seed, index_t i) noexcept {
  return static_cast<std::uint32_t>(
      mix64(mix64(seed) + 0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(i + 1)) >> 32);
}

/// A score mapped to an unsigned key whose order is the ranking order: larger key = kept first.
/// NaN maps to 0 (below -inf, whose key is 0x007FFFFF); -0 and +0 map to the same key.
TOKRED_HOST_DEVICE constexpr std::uint32_t score_key(std::uint32_t bits) noexcept {
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return 0u;
  if ((bits & 0x7FFFFFFFu) == 0u) bits = 0u;
  // Negative: flip every bit; positive: set the sign bit. Branch-free, since random scores
  // mispredict a branch on the sign half the time.
  const std::uint32_t negative = 0u - (bits >> 31);
  return bits ^ (negative | 0x80000000u);
}

/// A key whose order is the ranking order: score descending, then index ascending; NaN last
/// (indices below 2³²). `rank_key_index` recovers the index.
TOKRED_HOST_DEVICE inline std::uint64_t rank_key(float score, index_t i) noexcept {
  return (std::uint64_t{score_key(float_bits(score))} << 32) |
         (0xFFFFFFFFu - static_cast<std::uint32_t>(i));
}
TOKRED_HOST_DEVICE inline index_t rank_key_index(std::uint64_t key) noexcept {
  return static_cast<index_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(key));
}

/// `i` of group `g`'s uniform pick `j` of `k` among `n`: floor((2j + 1)·n / (2k)).
TOKRED_HOST_DEVICE constexpr index_t uniform_pick(index_t j, index_t k, index_t n) noexcept {
  return static_cast<index_t>((static_cast<std::uint64_t>(2 * j + 1) * static_cast<std::uint64_t>(n)) /
                              static_cast<std::uint64_t>(2 * k));
}

}  // namespace detail
}  // namespace tokred
