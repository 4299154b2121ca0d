// tokred/policy/aim.hpp — AIM's merging before the LLM: repeated ToMe steps within each frame,
// each a plain mean.
//
// WHAT it computes; the HOW lives in <tokred/cpu/aim.hpp>, which runs tome's own matching and
// merge (<tokred/cpu/tome.hpp>) once per step and frame. Outputs are tome's `merge_outputs`,
// frame after frame: tokens (T·K, dim), source (T·K,), positions (T·K, 3), sizes (T·K,),
// assign (N,), each optional.
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

/// AIM's token merging (Zhong et al., "AIM: Adaptive Inference of Multi-Modal LLMs via Token
/// Merging and Pruning", arXiv 2412.03248; LaVi-Lab/AIM `bipartite_soft_matching_merge` as
/// `get_2dPool` calls it): within every frame of n = H·W tokens, `steps` ToMe steps in a row,
///
///   step s = 1 … steps:   r_s = ⌊n / 2^s⌋ of the ORIGINAL n, clamped as tome to ⌊m / 2⌋
///                         (m: the frame's tokens before the step), no protected tokens
///
/// each a tome step (`tome{r_s}`, merge_order::original) whose metric is the current tokens
/// themselves, outputs [unmerged A in similarity order, then every B] as the original's
/// `cat([unm, dst])`. The default, 2 steps, is AIM's: r = n//2 then r = n//4, 196 → 98 → 49 per
/// frame (with an even n the first step merges every A token). K = n − Σ r_s per frame.
///
/// AIM does not track sizes: each step's merged row is the plain mean of its B token and the A
/// tokens merged into it (`scatter_reduce(mean, include_self)`), so after two steps a token
/// standing for 4 originals and one standing for 3 weigh alike. `size_weighted = true` chains
/// the sizes instead (each step weighted by the originals each token stands for: repeated tome,
/// every output the plain mean of its originals). Either way the `sizes` output counts the
/// originals each output token stands for, and `source`, `positions` and `assign` are in
/// original terms (composed over the steps): `assign[i]` is the output row of input token i.
/// Intermediate rows are fp32.
struct aim {
  index_t steps = 2;           ///< halvings per frame, 1 … 30; AIM: 2
  bool size_weighted = false;  ///< false: AIM's plain means; true: sizes chained as repeated tome
};

/// Inputs of aim: the tokens, which are also the metric of the first step.
template <class E, class Space = host_space>
struct aim_inputs {
  using space = Space;
  token_grid grid;                 // (T, H, W), frames of n = H·W tokens
  view<const E, 2, Space> tokens;  // (tokens, dim)
};

namespace detail {

/// The r of step `s` (1-based) on a frame of `n` original tokens holding `m` now.
constexpr index_t aim_step_r(index_t n, index_t m, index_t s) noexcept {
  return effective_r(tome{n >> s, 0}, m);
}

/// aim's tokens per frame, or why there are none: `invalid_parameter` (steps outside 1 … 30),
/// then the grid (`shape_mismatch`, `empty_input`, a frame above 2³¹ − 1 tokens).
inline count_result aim_frame_count(const aim& p, const token_grid& grid) noexcept {
  if (p.steps < 1 || p.steps > 30) return {status::invalid_parameter, 0};
  if (status s = check_group_grid(grid, scope::per_frame); s != status::ok) return {s, 0};
  const index_t n = grid.frame_tokens();
  index_t m = n;
  for (index_t s = 1; s <= p.steps; ++s) m -= aim_step_r(n, m, s);
  return {status::ok, m};
}

/// Every check of aim that needs no access to values, in order: parameters and grid, the token
/// rows, each requested output, overlaps.
template <class Ein, class Eout, class Space>
status check_aim(const aim& p, const aim_inputs<Ein, Space>& in, const merge_outputs<Eout, Space>& out) noexcept {
  const count_result c = aim_frame_count(p, in.grid);
  if (c.code != status::ok) return c.code;
  const index_t n = in.grid.tokens(), kept = c.count * in.grid.frames;
  if (status s = check_rows(in.tokens, n); s != status::ok) return s;
  if (status s = check_optional_view(out.tokens, {kept, in.tokens.extent(1)}); s != status::ok) return s;
  return check_merge_outputs(out, kept, n, in.tokens);
}

}  // namespace detail

/// Exact number of tokens aim returns on `prob`: T · K, K = n − Σ r_s per frame. 0 exactly when
/// `can_implement` fails.
inline index_t retained_count(const aim& p, const problem& prob) noexcept {
  const count_result c = detail::aim_frame_count(p, prob.grid);
  return c.code == status::ok ? c.count * prob.grid.frames : 0;
}

/// `ok`, or why aim cannot run on this grid: `invalid_parameter` (steps outside 1 … 30),
/// `shape_mismatch` (a negative grid extent, a frame above 2³¹ − 1 tokens), `empty_input`.
inline status can_implement(const aim& p, const problem& prob) noexcept {
  return detail::aim_frame_count(p, prob.grid).code;
}

}  // namespace tokred
