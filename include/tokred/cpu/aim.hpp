// tokred/cpu/aim.hpp — the CPU backend of aim: per frame, tome's matching and merge once per
// step, each step's rows the next step's tokens and metric.
//
// Frame by frame, step s runs tome{r_s} (`detail::tome_matching`, `detail::tome_merge`) on the
// frame's current m tokens: the first step on the input rows, later ones on the previous step's
// fp32 rows in the workspace, the last one writing the output rows directly. Between steps the
// provenance is carried: each step's `source` goes in as the next step's `source` (so it stays
// the original index), and every original token's slot is composed with the step's `assign`.
// With size_weighted the step's sizes go in as the next step's sizes too. After the last step,
// `sizes` counts the originals of each slot and `positions` is the grid position of `source`.
//
// Shares: share ith takes the frames [T·ith/nth, T·(ith+1)/nth) whole and writes their output
// rows and assign entries; frames are independent, so no share waits and every nth gives the
// same bits. A single frame is not divided (its steps depend on each other).
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/tome.hpp"
#include "tokred/policy/aim.hpp"

namespace tokred {
namespace detail {

/// The scratch of one aim share, for frames of n tokens of `dim` values.
struct aim_scratch {
  tome_scratch merge;                // tome's, for n tokens
  float* rows[2] = {};               // (n, dim) each: a step's rows, alternately
  std::int64_t* source[2] = {};      // (n,) each: a step's sources (original indices)
  float* sizes[2] = {};              // (n,) each: a step's sizes (size_weighted only)
  std::int64_t* step_assign = nullptr;  // (n,) a step's slot of each of its input tokens
  std::int64_t* total = nullptr;        // (n,) the current slot of each original token

  template <class Arch>
  static aim_scratch carve(arena& ar, index_t n, index_t dim) {
    aim_scratch s;
    s.merge = tome_scratch::carve<Arch>(ar, n);
    for (int b = 0; b < 2; ++b) {
      s.rows[b] = ar.take<float>(n, dim);
      s.source[b] = ar.take<std::int64_t>(n);
      s.sizes[b] = ar.take<float>(n);
    }
    s.step_assign = ar.take<std::int64_t>(n);
    s.total = ar.take<std::int64_t>(n);
    return s;
  }
};

/// Every step on frame `f`, its output rows [f·K, (f + 1)·K) and assign entries written.
template <class Arch, class Ein, class Eout>
void aim_frame(const aim& p, const aim_inputs<Ein>& in, const merge_outputs<Eout>& out, index_t kept,
               index_t f, const aim_scratch& s) noexcept {
  const index_t n = in.grid.frame_tokens(), dim = in.tokens.extent(1), first = f * n;
  const cpu<Arch> one{0, 1};
  for (index_t i = 0; i < n; ++i) {
    s.source[0][i] = first + i;
    s.total[i] = i;
  }
  index_t m = n;
  int cur = 0;  // the buffers holding the current step's inputs (after the first step)
  for (index_t step = 1; step <= p.steps; ++step) {
    const index_t r = aim_step_r(n, m, step), next_m = m - r;
    const bool last = step == p.steps;
    merge_outputs<Eout> final_out{};
    merge_outputs<float> mid{};
    const view<std::int64_t, 1> step_source = make_view(s.source[1 - cur], next_m);
    const view<float, 1> step_sizes = p.size_weighted ? make_view(s.sizes[1 - cur], next_m) : view<float, 1>{};
    const view<std::int64_t, 1> step_assign = make_view(s.step_assign, m);
    const tome merge{r, 0, merge_order::original};
    const auto run = [&](const auto& step_in) {
      if (r > 0) tome_matching<Arch>(0, step_in, s.merge);
      if (last) {
        if (requested(out.tokens))
          final_out.tokens = view<Eout, 2>(&out.tokens(f * kept, 0), {kept, dim}, {out.tokens.stride(0), out.tokens.stride(1)});
        final_out.source = step_source;
        final_out.sizes = step_sizes;
        final_out.assign = step_assign;
        tome_merge(one, merge, step_in, final_out, r, s.merge);
      } else {
        mid.tokens = make_view(s.rows[1 - cur], next_m, dim);
        mid.source = step_source;
        mid.sizes = step_sizes;
        mid.assign = step_assign;
        tome_merge(one, merge, step_in, mid, r, s.merge);
      }
    };
    if (step == 1) {
      merge_inputs<Ein> step_in{};
      step_in.grid = sequence_grid(m);
      step_in.tokens = view<const Ein, 2>(&in.tokens(first, 0), {n, dim}, {in.tokens.stride(0), in.tokens.stride(1)});
      step_in.source = make_view<const std::int64_t>(s.source[0], m);
      run(step_in);
    } else {
      merge_inputs<float> step_in{};
      step_in.grid = sequence_grid(m);
      step_in.tokens = make_view<const float>(s.rows[cur], m, dim);
      step_in.source = make_view<const std::int64_t>(s.source[cur], m);
      if (p.size_weighted) step_in.sizes = make_view<const float>(s.sizes[cur], m);
      run(step_in);
    }
    for (index_t i = 0; i < n; ++i) s.total[i] = s.step_assign[s.total[i]];
    m = next_m;
    cur = 1 - cur;
  }
  // m == kept. s.source[cur]: the original index of each slot.
  const std::int64_t* source = s.source[cur];
  if (requested(out.source))
    for (index_t q = 0; q < kept; ++q) out.source(f * kept + q) = source[q];
  if (requested(out.positions))
    for (index_t q = 0; q < kept; ++q) write_position(out.positions, f * kept + q, in.grid, source[q]);
  if (requested(out.sizes)) {
    for (index_t q = 0; q < kept; ++q) out.sizes(f * kept + q) = 0.0f;
    for (index_t i = 0; i < n; ++i) out.sizes(f * kept + s.total[i]) += 1.0f;
  }
  if (requested(out.assign))
    for (index_t i = 0; i < n; ++i) out.assign(first + i) = f * kept + s.total[i];
}

}  // namespace detail

/// aim on CPU. Checks, in order: the exec (`invalid_exec`); `detail::check_aim` (steps, grid,
/// token rows, outputs, overlaps); the workspace. No value makes it fail.
template <class Arch>
struct backend<aim, cpu<Arch>> {
  static detail::aim_scratch carve(detail::arena& a, const token_grid& grid, index_t dim, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::aim_scratch::carve<Arch>(s, grid.frame_tokens(), dim);
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const aim& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, prob.dim, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const aim& p, const aim_inputs<Ein>& in,
                      const merge_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_aim(p, in, out); s != status::ok) return s;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    detail::arena carver(ws);
    const detail::aim_scratch scratch = carve(carver, in.grid, in.tokens.extent(1), exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t kept = detail::aim_frame_count(p, in.grid).count;
    const index_t f0 = detail::share_begin(in.grid.frames, exec.ith, exec.nth);
    const index_t f1 = detail::share_begin(in.grid.frames, exec.ith + 1, exec.nth);
    for (index_t f = f0; f < f1; ++f) detail::aim_frame<Arch>(p, in, out, kept, f, scratch);
    return status::ok;
  }
};

}  // namespace tokred
