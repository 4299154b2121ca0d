// tokred/cpu/framefusion.hpp — the CPU backends of framefusion and framefusion_similarity.
//
// framefusion runs in five steps:
//   1. link     each row's previous row of its slot (slot = source mod H·W), one pass, O(rows);
//   2. sim      cos(m_r, m_prev) of every row with a previous one, O(rows·Dm): the canonical dot
//               kernels (<tokred/cpu/similarity.hpp>), the row and its predecessor in one pass
//               (dot and ‖m_r‖² together), each norm computed once — or the given similarities;
//   3. decide   the rows at or above the threshold, or the top ⌊u·rows⌋ by radix select
//               (`select_largest`: ties to the lower row, NaN last), O(rows);
//   4. chains   every merged row takes its predecessor's head; heads get the output slots in row
//               order, and each slot's group (head, then members in row order) is laid out by a
//               counting sort, O(rows);
//   5. write    each slot's mean row (`weighted_mean_row`, <tokred/cpu/merge.hpp>; a slot of one
//               row is copied), size, source and position, O(rows·D).
//
// Shares. Every output slot depends on decisions about all rows and no share may wait for
// another, so each share runs steps 1–4 in full and writes only slots [K·ith/nth, K·(ith+1)/nth)
// and assign rows [rows·ith/nth, …); share 0 writes count, ratio and phase. A chain holds at most
// T rows, so the slots divide the row reads as evenly as a copy does. Step 2 costs about as much
// as step 5, so to divide it too run framefusion_similarity first: its share ith computes rows
// [rows·ith/nth, rows·(ith+1)/nth) with exactly the kernels of step 2, and framefusion given
// those similarities skips step 2. Every value is computed the same way whatever share computes
// it, so results are bit-identical for every nth.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/merge.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/framefusion.hpp"
#include "tokred/policy/tome_steps.hpp"

namespace tokred {
namespace detail {

/// The similarity of a slot's first row: the original's IGNORE marker, below every threshold.
inline constexpr float framefusion_ignore = -2.0f;

/// Step 1: prev[r] = the previous row of r's slot, −1 for the first (`last`: (H·W,) scratch).
template <class E>
void framefusion_link(const framefusion_inputs<E>& in, index_t rows, index_t* last, index_t* prev) noexcept {
  const index_t hw = in.grid.frame_tokens();
  std::fill(last, last + hw, index_t{-1});
  const bool carried = requested(in.source);
  for (index_t r = 0; r < rows; ++r) {
    const index_t slot = (carried ? static_cast<index_t>(in.source(r)) : r) % hw;
    prev[r] = last[slot];
    last[slot] = r;
  }
}

/// x·y / (‖x‖‖y‖) from the dot product and the squared norms, as the original's hand-written
/// cosine: no epsilon, so a zero row gives NaN; a norm not finite in fp32 gives NaN. Formed as
/// (dot·s_x)·s_y with s = 1/‖·‖, which cannot overflow however small the norms.
inline float framefusion_cosine(float dot, float x_sq, float y_sq) noexcept {
  const bool usable = x_sq > 0.0f && y_sq > 0.0f && std::isfinite(x_sq) && std::isfinite(y_sq);
  if (!usable) return std::numeric_limits<float>::quiet_NaN();
  return scaled_cosine(dot, cosine_scale_of(x_sq), cosine_scale_of(y_sq));
}

/// Step 2 for rows [r0, r1): `write(r, sim)`. ‖m_r‖² is kept in `squares` for the rows after r of
/// its slot; a predecessor before r0 has its norm computed here (the same bits: one kernel).
template <class Arch, class E, class Write>
void framefusion_similarities(const view<const E, 2>& metric,  // (rows, metric_dim)
                              const index_t* prev, float* squares, index_t r0, index_t r1,
                              const Write& write) noexcept {
  const index_t dim = metric.extent(1), stride = metric.stride(1);
  for (index_t r = r0; r < r1; ++r) {
    const index_t p = prev[r];
    if (p < 0) {
      squares[r] = row_squared_norm<Arch>(metric, r);
      write(r, framefusion_ignore);
      continue;
    }
    const float p_sq = p >= r0 ? squares[p] : row_squared_norm<Arch>(metric, p);
    const dot_sq d = dot_and_sq<Arch>(&metric(r, 0), stride, &metric(p, 0), stride, dim);
    squares[r] = d.sq;
    write(r, framefusion_cosine(d.dot, d.sq, p_sq));
  }
}

/// The scratch of framefusion_similarity's shares.
struct framefusion_link_scratch {
  index_t* last = nullptr;   // (H·W,) the last row seen of each slot
  index_t* prev = nullptr;   // (rows,) the previous row of each row's slot, −1 for the first
  float* squares = nullptr;  // (rows,) ‖m_r‖²

  static framefusion_link_scratch carve(arena& ar, index_t rows, index_t hw) {
    framefusion_link_scratch v;
    v.last = ar.take<index_t>(hw);
    v.prev = ar.take<index_t>(rows);
    v.squares = ar.take<float>(rows);
    return v;
  }
};

/// The decisions of one framefusion share (sized for N rows, the bound).
struct framefusion_scratch {
  framefusion_link_scratch link;
  float* sim = nullptr;              // (rows,) each row's similarity, −2 for a slot's first
  std::uint32_t* keys = nullptr;     // (rows,) select_largest's rank keys
  std::int64_t* picks = nullptr;     // (rows,) the top-k rows, ascending
  index_t* head = nullptr;           // (rows,) each row's chain head (−1 while undecided)
  index_t* slot = nullptr;           // (rows,) each row's output slot
  index_t* offsets = nullptr;        // (rows + 1,) slot q's group: groups[offsets[q] … offsets[q+1])
  index_t* cursor = nullptr;         // (rows,) where slot q's next group row goes
  index_t* groups = nullptr;         // (rows,) each slot's head, then its members in row order

  static framefusion_scratch carve(arena& ar, index_t rows, index_t hw) {
    framefusion_scratch v;
    v.link = framefusion_link_scratch::carve(ar, rows, hw);
    v.sim = ar.take<float>(rows);
    v.keys = ar.take<std::uint32_t>(rows);
    v.picks = ar.take<std::int64_t>(rows);
    v.head = ar.take<index_t>(rows);
    v.slot = ar.take<index_t>(rows);
    v.offsets = ar.take<index_t>(rows + 1);
    v.cursor = ar.take<index_t>(rows);
    v.groups = ar.take<index_t>(rows);
    return v;
  }
};

/// What step 3 decided.
struct framefusion_decision {
  index_t kept = 0;  ///< output slots (chain heads)
  double ratio = 0;  ///< |M| / rows
  framefusion_phase phase = framefusion_phase::merging;
};

/// Step 3: marks the merged rows (head = −1) and every other row as its own head.
inline framefusion_decision framefusion_decide(const framefusion& p, double bound, index_t rows,
                                               const framefusion_scratch& v) noexcept {
  index_t above = 0;
  for (index_t r = 0; r < rows; ++r) above += v.sim[r] >= p.threshold;
  framefusion_decision d;
  d.ratio = static_cast<double>(above) / static_cast<double>(rows);
  for (index_t r = 0; r < rows; ++r) v.head[r] = r;
  if (d.ratio < bound) {
    d.phase = d.ratio < p.ratio_lower_bound ? framefusion_phase::pruning : framefusion_phase::merging;
    for (index_t r = 0; r < rows; ++r)
      if (v.sim[r] >= p.threshold) v.head[r] = -1;
  } else {
    d.phase = framefusion_phase::finished;
    const auto k = static_cast<index_t>(bound * static_cast<double>(rows));  // Python int(): ≥ 0
    if (k > 0) {
      const auto key_of = [&](index_t r) { return score_key(float_bits(v.sim[r])); };
      select_largest(key_of, rows, k, 0, v.keys, v.picks);
      for (index_t j = 0; j < k; ++j) v.head[v.picks[j]] = -1;
    }
  }
  return d;
}

/// Step 4: heads, slots and groups; returns the number of slots. A slot's first row never merges
/// (its similarity −2 is below every threshold, and ranks below all |M| ≥ k candidates).
inline index_t framefusion_chains(index_t rows, const framefusion_scratch& v) noexcept {
  const index_t* prev = v.link.prev;
  index_t kept = 0;
  for (index_t r = 0; r < rows; ++r) {
    if (v.head[r] < 0 && prev[r] >= 0) {
      v.head[r] = v.head[prev[r]];  // the predecessor's head: a run collapses into its first
    } else {
      v.head[r] = r;
      v.slot[r] = kept++;
    }
  }
  for (index_t r = 0; r < rows; ++r) v.slot[r] = v.slot[v.head[r]];
  // Rows ascend in each group, so its head comes first.
  group_layout(
      kept, rows, [&](index_t r) { return v.slot[r]; }, [](index_t r) { return r; }, no_head, v.offsets, v.cursor,
      v.groups);
  return kept;
}

/// Step 5 for slots [q0, q1) and assign rows [i0, i1).
template <class Arch, class Ein, class Eout>
void framefusion_write(const framefusion& p, const framefusion_inputs<Ein>& in,
                       const framefusion_outputs<Eout>& out, const framefusion_scratch& v, index_t q0,
                       index_t q1, index_t i0, index_t i1) noexcept {
  const auto size_of = carried_weight(in.sizes);
  const auto one = [](index_t) { return 1.0f; };
  for (index_t q = q0; q < q1; ++q) {
    const index_t* group = v.groups + v.offsets[q];
    const index_t count = v.offsets[q + 1] - v.offsets[q], head = group[0];
    const float size = total_weight(group, count, size_of);
    if (requested(out.sizes)) out.sizes(q) = size;
    if (requested(out.tokens)) {
      Eout* row = &out.tokens(q, 0);
      const index_t stride = out.tokens.stride(1);
      if (count == 1)
        copy_row<Arch>(&in.tokens(head, 0), in.tokens.stride(1), row, stride, in.tokens.extent(1));
      else if (p.weights == merge_weights::by_size)
        weighted_mean_row<Arch>(in.tokens, group, count, size_of, size, row, stride);
      else
        weighted_mean_row<Arch>(in.tokens, group, count, one, static_cast<float>(count), row, stride);
    }
    const index_t source = requested(in.source) ? static_cast<index_t>(in.source(head)) : head;
    if (requested(out.source)) out.source(q) = source;
    if (requested(out.positions)) write_position(out.positions, q, in.grid, source);
  }
  if (requested(out.assign))
    for (index_t i = i0; i < i1; ++i) out.assign(i) = v.slot[i];
}

/// The value checks of both policies, made by every share before anything is written:
/// `index_out_of_range` for a carried source outside [0, N), then (framefusion) `invalid_parameter`
/// for a carried size that is not a positive finite number.
template <class E>
status check_framefusion_values(const framefusion_inputs<E>& in, bool sizes) noexcept {
  const index_t n = in.grid.tokens(), rows = framefusion_rows(in);
  if (requested(in.source))
    for (index_t r = 0; r < rows; ++r)
      if (in.source(r) < 0 || in.source(r) >= n) return status::index_out_of_range;
  return sizes ? check_carried_sizes(in.sizes) : status::ok;
}

}  // namespace detail

/// framefusion on CPU. See the top of this file for the steps and what the shares do. Checks, in
/// order: the exec (`invalid_exec`); `detail::check_framefusion` (parameters, budget and grid;
/// source and compared rows; token rows and out.tokens; carried sizes and given similarity; the
/// outputs; overlaps); the workspace; the values (`detail::check_framefusion_values`). No
/// similarity value makes it fail: NaN never merges and ranks last.
template <class Arch>
struct backend<framefusion, cpu<Arch>> {
  static detail::framefusion_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& one) {
      return detail::framefusion_scratch::carve(one, grid.tokens(), grid.frame_tokens());
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const framefusion& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const framefusion& p, const framefusion_inputs<Ein>& in,
                      const framefusion_outputs<Eout>& out, workspace ws) {
    if (status st = check_exec(exec); st != status::ok) return st;
    const sparsity_result bound = detail::check_framefusion(p, in, out);
    if (bound.code != status::ok) return bound.code;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status st = check_workspace(ws, need); st != status::ok) return st;
    detail::arena carver(ws);
    const detail::framefusion_scratch v = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;
    if (status st = detail::check_framefusion_values(in, true); st != status::ok) return st;

    const index_t rows = detail::framefusion_rows(in);
    detail::framefusion_link(in, rows, v.link.last, v.link.prev);
    if (detail::requested(in.similarity)) {
      for (index_t r = 0; r < rows; ++r) v.sim[r] = v.link.prev[r] < 0 ? detail::framefusion_ignore : in.similarity(r);
    } else {
      detail::framefusion_similarities<Arch>(detail::compared_rows(in), v.link.prev, v.link.squares, 0, rows,
                                             [&](index_t r, float s) { v.sim[r] = s; });
    }
    const detail::framefusion_decision d = detail::framefusion_decide(p, bound.sparsity, rows, v);
    const index_t kept = detail::framefusion_chains(rows, v);
    detail::framefusion_write<Arch>(p, in, out, v, detail::share_begin(kept, exec.ith, exec.nth),
                                    detail::share_begin(kept, exec.ith + 1, exec.nth),
                                    detail::share_begin(rows, exec.ith, exec.nth),
                                    detail::share_begin(rows, exec.ith + 1, exec.nth));
    if (exec.ith == 0) {
      out.count(0) = kept;
      if (detail::requested(out.ratio)) out.ratio(0) = d.ratio;
      if (detail::requested(out.phase)) out.phase(0) = static_cast<std::int32_t>(d.phase);
    }
    return status::ok;
  }
};

/// framefusion_similarity on CPU: share ith writes rows [rows·ith/nth, rows·(ith+1)/nth), each
/// linking all rows to their slots first (O(rows) integers). Checks, in order: the exec, then
/// `detail::check_framefusion_similarity` (grid; source and compared rows; output; overlaps), the
/// workspace, the source values (`index_out_of_range`).
template <class Arch>
struct backend<framefusion_similarity, cpu<Arch>> {
  static detail::framefusion_link_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& one) {
      return detail::framefusion_link_scratch::carve(one, grid.tokens(), grid.frame_tokens());
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const framefusion_similarity& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const framefusion_similarity& p, const framefusion_inputs<E>& in,
                      const framefusion_similarity_outputs<>& out, workspace ws) {
    if (status st = check_exec(exec); st != status::ok) return st;
    if (status st = detail::check_framefusion_similarity(in, out); st != status::ok) return st;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status st = check_workspace(ws, need); st != status::ok) return st;
    detail::arena carver(ws);
    const detail::framefusion_link_scratch v = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;
    if (status st = detail::check_framefusion_values(in, false); st != status::ok) return st;

    const index_t rows = detail::framefusion_rows(in);
    detail::framefusion_link(in, rows, v.last, v.prev);
    detail::framefusion_similarities<Arch>(detail::compared_rows(in), v.prev, v.squares,
                                           detail::share_begin(rows, exec.ith, exec.nth),
                                           detail::share_begin(rows, exec.ith + 1, exec.nth),
                                           [&](index_t r, float s) { out.similarity(r) = s; });
    return status::ok;
  }
};

}  // namespace tokred
