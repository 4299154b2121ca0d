// tokred/policy/stc_pruner.hpp — STC-Pruner in one call per chunk of a video stream: score every
// token's redundancy against its frame and the stream's memory, keep the least redundant tokens
// of every frame, and hand back their full rows with their places in the stream.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/stc_pruner.hpp>. One call equals, bit
// for bit, the two-step form on the same chunk and memory:
//
//   gaussian_redundancy{ratio}  then  topk{keep, scope::per_frame}
//
// with `source` and `positions` moved from the chunk's terms into the stream's (see below).
//
// Outputs (`selection_outputs` of <tokred/policy/selection.hpp>), T·k rows for a chunk of T frames:
//   tokens    (T·k, dim)  the kept rows, full width, frame by frame, slot order within a frame
//   source    (T·k,)      each kept token's index in the STREAM: (first_frame + t)·H·W + its slot
//   positions (T·k, 3)    its (first_frame + t, h, w)
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/redundancy.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// STC's streaming pruner: per chunk, the `keep` tokens of every frame with the lowest Gaussian
/// redundancy (`gaussian_redundancy`, whose memory the caller owns), in slot order.
///
/// STC runs it after the projector and pooling of LLaVA-OneVision (196 tokens a frame), one frame
/// per chunk, keeping 60 a frame: `stc_pruner{}` is that setting. A chunk may hold several
/// frames; they share the chunk's channel choice and its one memory update, as in the original.
///
/// Paper: Wang et al., "Accelerating Streaming Video Large Language Models via Hierarchical Token
/// Compression" (STC, CVPR 2026, arXiv 2512.00891), STC-Pruner.
struct stc_pruner {
  gaussian_redundancy score{};                ///< the redundancy and its channel share (0.5)
  keep_budget keep = keep_budget::count(60);  ///< tokens kept per frame, out of H·W
};

/// Inputs of stc_pruner: one chunk of the stream and the stream's memory.
template <class E, class Space = host_space>
struct stc_pruner_inputs {
  using space = Space;
  token_grid chunk;                 ///< (T, H, W): the chunk's T frames
  index_t first_frame = 0;          ///< the stream index of the chunk's first frame, ≥ 0
  view<const E, 2, Space> tokens;   // (T·H·W, dim) the chunk's features
  redundancy_memory<Space> memory;  // read, then updated with this chunk's mean
};

namespace detail {

/// The rows stc_pruner keeps of a chunk, or why there are none: the ratio and the grid, the row
/// width, then the per-frame budget.
inline count_result stc_pruner_count(const stc_pruner& p, const problem& prob) noexcept {
  if (status s = check_redundancy_grid(p.score, prob.grid); s != status::ok) return {s, 0};
  if (status s = check_redundancy_width(p.score, prob.dim); s != status::ok) return {s, 0};
  return selection_count(p.keep, scope::per_frame, prob.grid);
}

/// Every check of stc_pruner, in the documented order: parameters and chunk shape, the frame
/// index, the token rows, the memory, the outputs, then `aliasing` when any written view (an
/// output or the memory) overlaps the tokens or another written view.
template <class Ein, class Eout, class Space>
status check_stc_pruner(const stc_pruner& p, const stc_pruner_inputs<Ein, Space>& in,
                        const selection_outputs<Eout, Space>& out) noexcept {
  const index_t dim = in.tokens.extent(1);
  const count_result kept = stc_pruner_count(p, problem{in.chunk, dim});
  if (kept.code != status::ok) return kept.code;
  if (!stream_frames_fit(in.chunk, in.first_frame)) return status::index_out_of_range;
  const index_t n = in.chunk.tokens();
  if (status s = check_view(in.tokens, {n, dim}); s != status::ok) return s;
  if (status s = check_redundancy_memory(in.memory, redundancy_channels(p.score, dim)); s != status::ok) return s;
  if (status s = check_rows_and_outputs(in.tokens, n, {}, {}, out, kept.count); s != status::ok) return s;
  const redundancy_memory<Space>& m = in.memory;
  const bool hits_tokens = overlaps_any(in.tokens, out.tokens, out.source, out.positions, m.sums, m.chunks, m.channels);
  return hits_tokens || any_overlap(out.tokens, out.source, out.positions, m.sums, m.chunks, m.channels)
             ? status::aliasing
             : status::ok;
}

}  // namespace detail

/// T·k: the rows `apply` writes for a chunk `prob.grid` = (T, H, W) of rows `prob.dim` wide, k the
/// per-frame budget over H·W; 0 exactly when `can_implement` fails.
inline index_t retained_count(const stc_pruner& p, const problem& prob) noexcept {
  return detail::stc_pruner_count(p, prob).count;
}

/// `ok`, or what `apply` would return for the parameters and the chunk's shape alone:
/// `invalid_ratio` (the channel share outside (0, 1], or int(D · share) = 0), `shape_mismatch`
/// (a malformed grid, D < 0), `empty_input` (N = 0 or D = 0), or the budget's status over H·W.
inline status can_implement(const stc_pruner& p, const problem& prob) noexcept {
  return detail::stc_pruner_count(p, prob).code;
}

}  // namespace tokred
