// tokred/cpu/dycoke.hpp — the CPU backend of dycoke.
//
// Two passes over a share's frames (each frame's first output slot is the sum of the counts of
// the frames before it, O(T)):
//   1. sweep   slot blocks of about 16 KiB of rows (at most 64 slots), each followed through all
//              of the share's frames in frame order, so that a reference frame's rows are still in
//              cache when the frames pruned against it read them (frame i serves i + 1 and i + 2):
//              every input row is read from memory once. A whole frame's block is copied out and
//              its squared norms kept; a pruned frame gets s_p = cos(x_{f,p}, x_{r,p}) by
//              temporal_similarity's pair kernel (<tokred/cpu/feature_scores.hpp>: the dot product
//              and ‖x_{f,p}‖² in one pass of the canonical kernels of <tokred/cpu/similarity.hpp>,
//              so a norm has the same bits whichever kernel computed it) and the rank key
//              (−s_p, p), NaN last. O(rows·D).
//   2. select  per pruned frame, the n_keep largest keys (`std::partial_sort` of distinct keys:
//              one result), put in slot order for merge_order::by_position, and their rows
//              copied, O(n log n_keep + n_keep·D). A dropped frame only gets assign −1.
// Against a memcpy of the input, which reads and writes every row, this reads every row once,
// re-reads the kept rows of pruned frames and writes the kept rows.
//
// Shares. Share ith owns frames [T·ith/nth, T·(ith+1)/nth): their output slots and their assign
// rows. A pruned frame costs about what a whole one does (one frame read, n_keep rows written,
// against one read and one written), so frames divide the work evenly enough; a frame is never
// split, and no share reads what another writes. A reference frame before the share's first
// frame has its norms computed by the share itself. Every value is computed by the same kernels
// in the same order whichever share computes it, so results are bit-identical for every nth.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/dycoke.hpp"

namespace tokred {
namespace detail {

/// The most frames one share of `frames` split `nth` ways owns.
constexpr index_t dycoke_share_frames(index_t frames, int nth) noexcept { return ceil_div(frames, nth); }

/// The scratch of one share, sized for the most frames a share owns (`span`).
struct dycoke_scratch {
  std::uint64_t* keys = nullptr;  // (span, n) each pruned frame's rank keys, then its kept slots
  float* squares = nullptr;       // (span, temporal_block_max) ‖x_{f,p}‖² of the block's rows
  index_t* first = nullptr;       // (span,) each frame's first output slot

  static dycoke_scratch carve(arena& a, index_t n, index_t span) {
    dycoke_scratch s;
    s.keys = a.take<std::uint64_t>(span, n);
    s.squares = a.take<float>(span, temporal_block_max);
    s.first = a.take<index_t>(span);
    return s;
  }
};

/// Output rows [o, o + count): the rows of original index `index_of(j)`, their source and
/// position, and size 1.
template <class Arch, class Ein, class Eout, class IndexOf>
void dycoke_emit(const IndexOf& index_of, index_t o, index_t count, const dycoke_inputs<Ein>& in,
                 const merge_outputs<Eout>& out) noexcept {
  emit_rows<Arch>(index_of, o, o + count, in.grid, in.tokens,
                  selection_outputs<Eout>{out.tokens, out.source, out.positions});
  if (requested(out.sizes))
    for (index_t j = o; j < o + count; ++j) out.sizes(j) = 1.0f;
}

/// Pass 1 for frames [f0, f1) and slots [p0, p1): whole frames copied (with assign) and their
/// norms kept, pruned frames' rank keys.
template <class Arch, class Ein, class Eout>
void dycoke_sweep(const dycoke_inputs<Ein>& in, const merge_outputs<Eout>& out, index_t f0, index_t f1,
                  index_t p0, index_t p1, const dycoke_scratch& s) noexcept {
  constexpr temporal_similarity cosine{temporal_similarity::measure::cosine, 0.0f};
  const view<const Ein, 2> rows = compared_rows(in);  // (tokens, metric_dim)
  const index_t frames = in.grid.frames, n = in.grid.frame_tokens(), dim = rows.extent(1), stride = rows.stride(1);
  for (index_t f = f0; f < f1; ++f) {
    const dycoke_frame_role role = dycoke_role(frames, f);
    float* sq = s.squares + (f - f0) * temporal_block_max;  // sq[p − p0]: ‖x_{f,p}‖²
    if (role.kind == dycoke_frame_kind::whole) {
      const index_t o = s.first[f - f0], first = f * n;
      dycoke_emit<Arch>([&](index_t j) { return first + (j - o); }, o + p0, p1 - p0, in, out);
      if (requested(out.assign))
        for (index_t p = p0; p < p1; ++p) out.assign(first + p) = o + p;
      for (index_t p = p0; p < p1; ++p) sq[p - p0] = row_squared_norm<Arch>(rows, first + p);
    } else if (role.kind == dycoke_frame_kind::pruned) {
      const index_t r = role.reference;
      const float* ref_sq = r >= f0 ? s.squares + (r - f0) * temporal_block_max : nullptr;
      std::uint64_t* keys = s.keys + (f - f0) * n;
      for (index_t p = p0; p < p1; ++p) {
        const index_t i = f * n + p, j = r * n + p;
        const float reference_sq = ref_sq ? ref_sq[p - p0] : row_squared_norm<Arch>(rows, j);
        const float sim =
            temporal_pair<Arch>(cosine, &rows(i, 0), stride, &rows(j, 0), stride, dim, reference_sq, sq[p - p0]);
        keys[p] = rank_key(-sim, p);  // lowest similarity first; NaN stays NaN: last
      }
    }
  }
}

/// Pass 2 for pruned frame `f` (the share's frame number `local`): its kept slots, rows, assign.
template <class Arch, class Ein, class Eout>
void dycoke_select(const dycoke& p, const dycoke_inputs<Ein>& in, const merge_outputs<Eout>& out, index_t f,
                   index_t local, index_t keep, const dycoke_scratch& s) noexcept {
  const index_t n = in.grid.frame_tokens(), o = s.first[local], first = f * n;
  std::uint64_t* keys = s.keys + local * n;
  std::partial_sort(keys, keys + keep, keys + n, std::greater<std::uint64_t>());
  for (index_t j = 0; j < keep; ++j) keys[j] = static_cast<std::uint64_t>(rank_key_index(keys[j]));
  if (p.order == merge_order::by_position) std::sort(keys, keys + keep);
  dycoke_emit<Arch>([&](index_t j) { return first + static_cast<index_t>(keys[j - o]); }, o, keep, in, out);
  if (requested(out.assign)) {
    for (index_t slot = 0; slot < n; ++slot) out.assign(first + slot) = -1;
    for (index_t j = 0; j < keep; ++j) out.assign(first + static_cast<index_t>(keys[j])) = o + j;
  }
}

}  // namespace detail

/// dycoke on CPU. See the top of this file for the steps and what the shares do. Checks, in
/// order: the exec (`invalid_exec`); `detail::check_dycoke` (parameters, grid and count; compared
/// rows; token rows and out.tokens; the other outputs; overlaps); the workspace
/// (`workspace_too_small`, `null_pointer`). No value makes it fail: NaN similarities rank last.
template <class Arch>
struct backend<dycoke, cpu<Arch>> {
  /// The one carve-up: `nth` slices, each sized for the most frames a share owns.
  static detail::dycoke_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    const index_t span = detail::dycoke_share_frames(grid.frames, nth);
    return detail::carve_shares(a, ith, nth, [&](detail::arena& one) {
      return detail::dycoke_scratch::carve(one, grid.frame_tokens(), span);
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const dycoke& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const dycoke& p, const dycoke_inputs<Ein>& in,
                      const merge_outputs<Eout>& out, workspace ws) {
    if (status st = check_exec(exec); st != status::ok) return st;
    if (status st = detail::check_dycoke(p, in, out).code; st != status::ok) return st;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status st = check_workspace(ws, need); st != status::ok) return st;
    detail::arena carver(ws);
    const detail::dycoke_scratch s = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t frames = in.grid.frames, n = in.grid.frame_tokens(), keep = dycoke_frame_keep(p, n);
    const index_t f0 = detail::share_begin(frames, exec.ith, exec.nth);
    const index_t f1 = detail::share_begin(frames, exec.ith + 1, exec.nth);
    for (index_t f = 0, o = 0; f < f1; ++f) {
      if (f >= f0) s.first[f - f0] = o;
      const dycoke_frame_kind kind = dycoke_role(frames, f).kind;
      o += kind == dycoke_frame_kind::whole ? n : kind == dycoke_frame_kind::pruned ? keep : 0;
    }

    const view<const Ein, 2> compared = detail::compared_rows(in);
    const index_t row_bytes = compared.extent(1) * static_cast<index_t>(sizeof(Ein));
    const index_t block = std::clamp<index_t>(detail::temporal_block_bytes / row_bytes, 1, detail::temporal_block_max);
    for (index_t p0 = 0; p0 < n; p0 += block)
      detail::dycoke_sweep<Arch>(in, out, f0, f1, p0, std::min(p0 + block, n), s);
    for (index_t f = f0; f < f1; ++f) {
      const dycoke_frame_kind kind = dycoke_role(frames, f).kind;
      if (kind == dycoke_frame_kind::pruned) detail::dycoke_select<Arch>(p, in, out, f, f - f0, keep, s);
      if (kind == dycoke_frame_kind::dropped && detail::requested(out.assign))
        for (index_t slot = 0; slot < n; ++slot) out.assign(f * n + slot) = -1;
    }
    return status::ok;
  }
};

}  // namespace tokred
