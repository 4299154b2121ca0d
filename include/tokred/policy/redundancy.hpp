// tokred/policy/redundancy.hpp — STC's Gaussian-kernel redundancy: how much a token looks like
// its frame's average and like everything the stream has shown so far.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/redundancy.hpp>. The score feeds a
// selection like every other score: STC-Pruner keeps the 60 least redundant tokens of every frame,
// `topk{60, scope::per_frame}` on these scores, and returns the full rows of the kept tokens in
// original order.
//
// Unlike the other scores this one is stateful. A video arrives chunk by chunk (a few frames at a
// time), and the score of a chunk depends on a running memory of the chunks before it. The caller
// owns that memory (`redundancy_memory`): zero it when a stream starts, hand the same memory to
// every chunk of the stream in order, and zero it again for the next stream.
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/scores.hpp"

namespace tokred {

/// Redundancy of each token of a chunk against the mean of its frame and against the memory of
/// the stream, on the chunk's least varying channels (STC-Pruner).
///
/// For a chunk of T frames × H·W tokens × D channels:
///
///   1. channels: the C = int(D · channel_ratio) channels with the lowest variance over all N
///      tokens of the chunk (population variance), in ascending order of variance;
///   2. memory:   the chunk mean µ (mean over all N tokens of those C channels, in that order) is
///      added to the memory; m = (Σ of every chunk mean so far, this one included) / chunks;
///   3. x̂_i = x_i / max(‖x_i‖, 1e-12) on the C channels; f_t = mean of x̂ over frame t's tokens
///      (not renormalised); m̂ = m / max(‖m‖, 1e-12);
///   4. g(d²) = Σ_{α ∈ {1/8, 1/4, 1/2, 1, 2}} exp(−d² / 2α), and
///
///      score_i = −( g(‖x̂_i − m̂‖²) + g(‖x̂_i − f_t‖²) ),  i in frame t.
///
/// The score is the NEGATED redundancy, so that, as for every score, higher is kept first: topk
/// keeps the least redundant tokens, which is STC's "k lowest" rule. Scores lie in [−10, 0).
///
/// The memory adds chunk means slot by slot although each chunk picks its own channels: slot p
/// holds the p-th least varying channel of whichever chunk added it. That is the original's
/// behaviour, kept as is; `redundancy_memory::channels` reports the channels of the latest chunk.
///
/// Paper: Wang et al., "Accelerating Streaming Video Large Language Models via Hierarchical Token
/// Compression" (STC, CVPR 2026, arXiv 2512.00891), its STC-Pruner.
struct gaussian_redundancy {
  double channel_ratio = 0.5;  ///< share of the D channels scored, (0, 1]; C = int(D · ratio) ≥ 1
};

/// The stream memory of gaussian_redundancy, owned by the caller, read and updated by every chunk.
/// A fresh stream has `chunks(0) == 0` (the sums are then ignored and overwritten).
template <class Space = host_space>
struct redundancy_memory {
  using space = Space;
  view<double, 1, Space> sums;          // (C,) Σ over the chunks so far of each chunk mean, slot p
  view<std::int64_t, 1, Space> chunks;  // (1,) how many chunk means `sums` holds, ≥ 0
  view<std::int64_t, 1, Space> channels;  // (C,) optional: the channels the latest chunk scored
};

/// Inputs of gaussian_redundancy: one chunk of the stream, (T, H, W) with T the chunk's frames.
template <class E, class Space = host_space>
struct redundancy_inputs {
  using space = Space;
  token_grid grid;                 ///< (T, H, W), N = T·H·W
  view<const E, 2, Space> tokens;  // (tokens, dim) the chunk's features
  redundancy_memory<Space> memory;  // read, then updated with this chunk's mean
};

namespace detail {

/// The memory width C = int(D · ratio), or 0 for a ratio outside (0, 1] or NaN.
constexpr index_t redundancy_width(double ratio, index_t dim) noexcept {
  if (!(ratio > 0.0 && ratio <= 1.0) || dim <= 0) return 0;
  return floor_share(dim, ratio);
}

/// The parameter and the grid: `invalid_ratio` for a ratio outside (0, 1] or NaN, then
/// `shape_mismatch` for a malformed grid, `empty_input` for N = 0.
inline status check_redundancy_grid(const gaussian_redundancy& p, const token_grid& grid) noexcept {
  if (!(p.channel_ratio > 0.0 && p.channel_ratio <= 1.0)) return status::invalid_ratio;
  if (!grid.valid()) return status::shape_mismatch;
  return grid.tokens() == 0 ? status::empty_input : status::ok;
}

/// The row width: `shape_mismatch` for D < 0, `empty_input` for D = 0, `invalid_ratio` when
/// int(D · ratio) is 0.
inline status check_redundancy_width(const gaussian_redundancy& p, index_t dim) noexcept {
  if (dim < 0) return status::shape_mismatch;
  if (dim == 0) return status::empty_input;
  return redundancy_width(p.channel_ratio, dim) == 0 ? status::invalid_ratio : status::ok;
}

/// The memory's shapes for a memory width C: `sums` (C,), `chunks` (1,), `channels` (C,) if
/// requested. Its values are not read.
template <class Space>
status check_redundancy_memory(const redundancy_memory<Space>& m, index_t width) noexcept {
  if (status s = check_view(m.sums, {width}); s != status::ok) return s;
  if (status s = check_view(m.chunks, {index_t{1}}); s != status::ok) return s;
  return check_optional_view(m.channels, {width});
}

/// Every check of gaussian_redundancy, in the documented order: the ratio and the grid, `tokens`
/// against (N, dim), the width, the memory (`sums` (C,), `chunks` (1,), `channels` (C,) if
/// requested), `scores` (N,), then `aliasing` when any written view overlaps the tokens or
/// another written view. The memory's values are not read here (see the backend: only share 0
/// touches them).
template <class E, class Space>
status check_redundancy(const gaussian_redundancy& p, const redundancy_inputs<E, Space>& in,
                        const score_outputs<Space>& out) noexcept {
  if (status s = check_redundancy_grid(p, in.grid); s != status::ok) return s;
  const index_t n = in.grid.tokens(), dim = in.tokens.extent(1);
  if (status s = check_view(in.tokens, {n, dim}); s != status::ok) return s;
  if (status s = check_redundancy_width(p, dim); s != status::ok) return s;
  if (status s = check_redundancy_memory(in.memory, redundancy_width(p.channel_ratio, dim)); s != status::ok)
    return s;
  if (status s = check_scores_output(out, n); s != status::ok) return s;
  const redundancy_memory<Space>& m = in.memory;
  const bool written_over_tokens = overlaps_any(in.tokens, out.scores, m.sums, m.chunks, m.channels);
  return written_over_tokens || any_overlap(out.scores, m.sums, m.chunks, m.channels) ? status::aliasing
                                                                                       : status::ok;
}

}  // namespace detail

/// C = int(D · channel_ratio), the extent of the memory's `sums` and `channels` for rows of
/// width `dim`; 0 when the ratio is outside (0, 1] or rounds the width to nothing.
constexpr index_t redundancy_channels(const gaussian_redundancy& p, index_t dim) noexcept {
  return detail::redundancy_width(p.channel_ratio, dim);
}

/// `ok`, or the status `apply` would return for this chunk shape before looking at any view.
inline status can_implement(const gaussian_redundancy& p, const problem& prob) noexcept {
  if (status s = detail::check_redundancy_grid(p, prob.grid); s != status::ok) return s;
  return detail::check_redundancy_width(p, prob.dim);
}

/// The number of scores `apply` writes: N = T·H·W; 0 exactly when `can_implement` fails.
inline index_t score_count(const gaussian_redundancy& p, const problem& prob) noexcept {
  return can_implement(p, prob) == status::ok ? prob.grid.tokens() : 0;
}

}  // namespace tokred
