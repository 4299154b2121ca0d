// tokred/policy/dycoke.hpp — DyCoke's temporal token "merging" (TTM): within pairs and groups of
// frames, drop the tokens most similar to the same patch slot of an earlier frame.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/dycoke.hpp>. Despite the name the
// original averages nothing: it PRUNES the most similar tokens and keeps the others unchanged,
// so this is a selection with merge bookkeeping. It writes the `merge_outputs` of
// <tokred/policy/merge.hpp>, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the kept rows, converted to the output element type if it differs
//   source    (kept,)      the original index of each kept row
//   positions (kept, 3)    its original (t, h, w)
//   sizes     (kept,)      1 for every row (nothing is averaged)
//   assign    (tokens,)    the output slot of every input token, −1 for a dropped one
// The kept count is known from the shapes (`retained_count`).
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// DyCoke's temporal token merging, TTM (Tao et al., "DyCoke: Dynamic Compression of Tokens for
/// Fast Video Large Language Models", CVPR 2025, arXiv 2411.15024; KD-TAO/DyCoke
/// `llava_arch.py: dycole_ttm`), on T frames of n = H·W tokens, frame-major:
///
///   keep      n_keep = int((1 − k)·n), the product in double as Python computes it (so k = 0.9,
///             n = 10 keeps int(0.9999999999999998) = 0); k = `merging_ratio`
///   pairs     frames (0, 1), (2, 3), …: frame 2j + 1 is pruned against frame 2j
///   groups    i = 0, 4, 8, … while i < T − 4: frame i + 2 is pruned against frame i
///   pruned    frame f against reference r keeps the n_keep slots p of LOWEST
///             s_p = cos(x_{f,p}, x_{r,p}) and drops the rest (the most similar)
///   output    frames 0 … 2⌊T/2⌋ − 1 in frame order, each whole or its kept tokens
///
/// Every other frame of index below 2⌊T/2⌋ stays whole. A reference is compared with its
/// original rows, also where it is itself pruned (for T > 4 frame 3 is compared with frame 2,
/// which is pruned against frame 0). Two quirks of the original are reproduced:
///   * odd T: the last frame is never appended — it is dropped entirely (assign −1);
///   * the group loop stops at i < T − 4, so the last group's frame i + 2 stays whole: at T = 32
///     frames 0, 4, …, 28 and 30 stay whole and 23 frames keep n_keep each, 9·196 + 23·58 = 3098
///     of 6272 tokens at n = 196, k = 0.7.
/// T = 2, 3, 4: the original crashes (`torch.stack` of the group step's empty list); tokred runs
/// the pair step alone, the natural reading of an empty loop. T = 1: no pair exists and the one
/// frame is the dropped odd last frame, so nothing would be kept: `invalid_budget`.
///
/// Cosine: torch's `F.cosine_similarity`, x·y / (max(‖x‖, ε)·max(‖y‖, ε)), ε = 1e-8, summed in
/// fp32 (f16 and bf16 rows widened exactly) by the kernels temporal_similarity uses. A zero row
/// has cosine 0 with everything. (The original normalises first in the pair step, which differs
/// only in the last bits, and for rows of norm below ε.) Ranking: similarity ascending, ties to
/// the lower slot, −0 and +0 equal; a NaN similarity ranks after every number, so its token is
/// kept only when fewer than n_keep slots of the frame have a number, and then last (torch's
/// `topk(largest=False)` leaves ties open and also takes NaN last).
///
/// Output order (merge_order::original, the default, as the original): frame order; within a
/// pruned frame the kept tokens by ascending similarity (`topk(largest=False)` sorts them).
/// merge_order::by_position puts each pruned frame's kept tokens in slot order instead, so the
/// whole output is in ascending original index.
///
/// Defaults: k = 0.7 (LightCompress `merging_ratio`, lmms-eval `dycoke_k`, the README's example;
/// the builder's signature defaults to 0.3). The original's `num_tokens_per_frame` is the grid's
/// H·W (196 = 14 × 14 for LLaVA-OneVision after its 2 × 2 pooling).
///
/// Statuses and their check order: `backend<dycoke, cpu<Arch>>` and docs/policies/dycoke.md.
struct dycoke {
  double merging_ratio = 0.7;  ///< k in [0, 1]: a pruned frame keeps int((1 − k)·n) tokens
  merge_order order = merge_order::original;
};

/// Inputs of dycoke. `tokens` is compared unless `metric` is given, and copied only when the
/// tokens output is requested.
template <class E, class Space = host_space>
struct dycoke_inputs {
  using space = Space;
  token_grid grid;                 ///< (T, H, W), N = T·H·W tokens, frame-major
  view<const E, 2, Space> tokens;  // (tokens, dim) the rows kept
  view<const E, 2, Space> metric;  // (tokens, metric_dim) the rows compared; empty: tokens
};

/// What DyCoke does with one frame.
enum class dycoke_frame_kind {
  whole,    ///< kept entirely
  pruned,   ///< keeps n_keep tokens, by similarity to its reference frame
  dropped,  ///< removed entirely (the last frame of an odd T)
};

/// One frame's treatment: its kind and, for a pruned frame, the frame it is compared with.
struct dycoke_frame_role {
  dycoke_frame_kind kind = dycoke_frame_kind::whole;
  index_t reference = -1;  ///< the earlier frame compared with (pruned only), else −1
};

/// The role of frame `f` of `frames` (0 ≤ f < frames): dropped at and after 2⌊T/2⌋, pruned
/// against f − 1 when odd, pruned against f − 2 when f ≡ 2 (mod 4) and f − 2 < T − 4 (the group
/// loop's bound), whole otherwise.
constexpr dycoke_frame_role dycoke_role(index_t frames, index_t f) noexcept {
  if (f >= frames / 2 * 2) return {dycoke_frame_kind::dropped, -1};
  if (f % 2 == 1) return {dycoke_frame_kind::pruned, f - 1};
  if (f % 4 == 2 && f - 2 < frames - 4) return {dycoke_frame_kind::pruned, f - 2};
  return {dycoke_frame_kind::whole, -1};
}

/// Tokens a pruned frame of `n` keeps: int((1 − k)·n), both steps in double as the original's
/// `int(merging_ratio * num_tokens_per_frame)` after `merging_ratio = 1 − merging_ratio`.
/// `k` must lie in [0, 1] (checked by `can_implement`).
inline index_t dycoke_frame_keep(const dycoke& p, index_t n) noexcept {
  return static_cast<index_t>((1.0 - p.merging_ratio) * static_cast<double>(n));
}

namespace detail {

/// dycoke's count on a grid, or why there is none. Checks, in order: `invalid_ratio` (k outside
/// [0, 1] or NaN), `invalid_parameter` (an unknown merge_order), the grid (`shape_mismatch` for a
/// negative extent, `empty_input` for N = 0, `shape_mismatch` for a frame above 2³¹ − 1 tokens),
/// `invalid_budget` for T = 1.
inline count_result dycoke_count(const dycoke& p, const token_grid& grid) noexcept {
  if (!(p.merging_ratio >= 0.0 && p.merging_ratio <= 1.0)) return {status::invalid_ratio, 0};
  if (p.order != merge_order::original && p.order != merge_order::by_position) return {status::invalid_parameter, 0};
  if (status s = check_group_grid(grid, scope::per_frame); s != status::ok) return {s, 0};
  if (grid.frames < 2) return {status::invalid_budget, 0};
  const index_t n = grid.frame_tokens(), pairs = grid.frames / 2;
  const index_t groups = grid.frames > 4 ? (grid.frames - 4 + 3) / 4 : 0;  // i = 0, 4, … < T − 4
  const index_t pruned = pairs + groups, whole = pairs - groups;
  return {status::ok, whole * n + pruned * dycoke_frame_keep(p, n)};
}

/// The rows similarities come from: `metric` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const dycoke_inputs<E, Space>& in) noexcept {
  return requested(in.metric) ? in.metric : in.tokens;
}

/// Every check of dycoke that needs no access to values, in the documented order: parameters,
/// grid and count (`dycoke_count`); the compared rows (N, metric_dim ≥ 1); the token rows and
/// out.tokens (when requested); source, positions, sizes (kept,) and assign (N,); overlaps.
/// Returns the count on success.
template <class Ein, class Eout, class Space>
count_result check_dycoke(const dycoke& p, const dycoke_inputs<Ein, Space>& in,
                          const merge_outputs<Eout, Space>& out) noexcept {
  const count_result c = dycoke_count(p, in.grid);
  if (c.code != status::ok) return c;
  const auto fail = [](status s) { return count_result{s, 0}; };
  const index_t n = in.grid.tokens(), kept = c.count;
  if (status s = check_rows(compared_rows(in), n); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, n, out.tokens, kept); s != status::ok) return fail(s);
  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const status s = check_merge_outputs(out, kept, n, compared_rows(in), read_tokens);
  return s != status::ok ? fail(s) : c;
}

}  // namespace detail

/// Exact number of tokens dycoke keeps on `prob`: with P = ⌊T/2⌋ pairs and G = ⌈(T − 4)/4⌉
/// groups (0 for T ≤ 4), (P − G)·n whole-frame tokens plus (P + G)·n_keep. 0 exactly when
/// `can_implement` fails.
inline index_t retained_count(const dycoke& p, const problem& prob) noexcept {
  return detail::dycoke_count(p, prob.grid).count;
}

/// `ok`, or why dycoke cannot run on this grid: `invalid_ratio`, `invalid_parameter`,
/// `shape_mismatch`, `empty_input`, `invalid_budget` (T = 1), in that order.
inline status can_implement(const dycoke& p, const problem& prob) noexcept {
  return detail::dycoke_count(p, prob.grid).code;
}

}  // namespace tokred
