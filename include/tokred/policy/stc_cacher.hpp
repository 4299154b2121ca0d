// tokred/policy/stc_cacher.hpp — STC-Cacher's choice, inside a vision encoder running over a video
// stream, of the tokens each layer recomputes: the ones whose keys moved furthest from the cached
// reference frame's keys. Every other token reuses the reference frame's attention and MLP outputs.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/stc_cacher.hpp>. The layer itself (the
// projections, attention, the MLP, the cache of the reference frame's outputs) is the engine's;
// tokred decides which chunks are reference chunks and which tokens of the others are recomputed.
//
// Outputs (`selection_outputs` of <tokred/policy/selection.hpp>), F·u rows for a chunk of F frames:
//   tokens    (F·u, C)  the chosen tokens' key rows (optional, rarely needed)
//   source    (F·u,)    each chosen token's index in the chunk's key rows: f·T + its slot
//   positions (F·u, 3)  its (f, h, w)
// frame by frame, slot order within a frame.
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// STC-Cacher's selective recomputation in a vision encoder layer.
///
/// Chunk c of a stream is a REFERENCE chunk when c mod `interval` = 0: every layer runs in full
/// and caches, for the chunk's last frame, its keys, values, attention output and MLP output. In
/// any other chunk each layer computes the keys K (F frames × T tokens × C, the full hidden
/// width, before the split into heads) and, for every frame, recomputes the
///
///   u = max(1, min(int(T · update_ratio), T))
///
/// tokens with the LOWEST cosine similarity cos(K_{f,j}, K_ref_j) to the reference frame's key in
/// the same slot j. Ties go to the lower slot; a NaN similarity ranks after every number (it is
/// chosen only when fewer than u numbers remain), as a NaN ranks in torch.topk(largest=False).
/// The cosine is torch's F.cosine_similarity: x·y / (max(‖x‖, 1e-8) · max(‖y‖, 1e-8)).
///
/// Paper: Wang et al., "Accelerating Streaming Video Large Language Models via Hierarchical Token
/// Compression" (STC, CVPR 2026, arXiv 2512.00891), STC-Cacher.
struct stc_cacher {
  double update_ratio = 0.25;  ///< share of each frame's T tokens recomputed, [0, 1]; u ≥ 1
  index_t interval = 2;        ///< every `interval`-th chunk is a reference chunk, ≥ 1
};

/// Inputs of stc_cacher: one layer's keys for the frames of a non-reference chunk, and the same
/// layer's cached keys of the reference frame.
template <class E, class Space = host_space>
struct stc_cacher_inputs {
  using space = Space;
  token_grid chunk;                   ///< (F, H, W): the chunk's F frames of T = H·W tokens
  view<const E, 2, Space> keys;       // (F·T, C) this layer's keys
  view<const E, 2, Space> reference;  // (T, C) this layer's keys of the reference frame
};

namespace detail {

/// u of every frame as a budget: int(T · ratio), at least 1 (at most T for a ratio in [0, 1]).
inline keep_budget stc_recompute_budget(const stc_cacher& p) noexcept {
  return keep_budget::ratio(p.update_ratio, rounding::floor).at_least(1);
}

/// The rows stc_cacher chooses in a chunk, or why there are none: the interval, then the ratio
/// and the grid.
inline count_result stc_cacher_count(const stc_cacher& p, const token_grid& chunk) noexcept {
  if (p.interval < 1) return {status::invalid_parameter, 0};
  return selection_count(stc_recompute_budget(p), scope::per_frame, chunk);
}

/// Every check of stc_cacher, in the documented order: parameters and grid, the key width, the
/// keys and the reference, the outputs, then `aliasing` when an output overlaps the keys, the
/// reference or another output.
template <class Ein, class Eout, class Space>
status check_stc_cacher(const stc_cacher& p, const stc_cacher_inputs<Ein, Space>& in,
                        const selection_outputs<Eout, Space>& out) noexcept {
  const count_result chosen = stc_cacher_count(p, in.chunk);
  if (chosen.code != status::ok) return chosen.code;
  const index_t n = in.chunk.tokens(), width = in.keys.extent(1);
  if (status s = check_view(in.keys, {n, width}); s != status::ok) return s;
  if (width == 0) return status::empty_input;
  if (status s = check_view(in.reference, {in.chunk.frame_tokens(), width}); s != status::ok) return s;
  if (status s = check_rows_and_outputs(in.keys, n, {}, {}, out, chosen.count); s != status::ok) return s;
  return overlaps_any(in.reference, out.tokens, out.source, out.positions) ||
                 overlaps_any(in.keys, out.source, out.positions)
             ? status::aliasing
             : status::ok;
}

}  // namespace detail

/// Whether chunk `chunk_index` (0, 1, … in stream order) is a reference chunk, which runs every
/// layer in full and refreshes the cache: chunk_index mod interval = 0. False for a negative index
/// or an interval below 1.
constexpr bool is_reference_chunk(const stc_cacher& p, index_t chunk_index) noexcept {
  return p.interval >= 1 && chunk_index >= 0 && chunk_index % p.interval == 0;
}

/// F·u: the tokens a non-reference chunk `prob.grid` = (F, H, W) recomputes in each layer; 0
/// exactly when `can_implement` fails. `prob.dim` (the key width C) is not needed.
inline index_t retained_count(const stc_cacher& p, const problem& prob) noexcept {
  return detail::stc_cacher_count(p, prob.grid).count;
}

/// `ok`, or what `apply` would return for the parameters and the chunk's grid alone:
/// `invalid_parameter` (interval < 1), `invalid_ratio` (a ratio outside [0, 1] or NaN),
/// `shape_mismatch` (a malformed grid), `empty_input` (N = 0).
inline status can_implement(const stc_cacher& p, const problem& prob) noexcept {
  return detail::stc_cacher_count(p, prob.grid).code;
}

}  // namespace tokred
