// tokred/cpu/threshold.hpp — the CPU backend of the threshold selection.
//
// Share ith of nth owns the input tokens [N·ith/nth, N·(ith+1)/nth). It first counts the kept
// tokens before its range — one branch-free pass over the scores, far cheaper than moving a row —
// so it knows the output row of its first kept token without waiting for any other share, then
// moves its kept rows in order. The last share has counted every token and is the one that
// writes `count`; no other share touches it. No workspace.
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/threshold.hpp"

namespace tokred {

template <class Arch>
struct backend<threshold, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const threshold&, const problem&) { return 0; }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const threshold& p, const selection_inputs<Ein>& in,
                      const counted_outputs<Eout>& out, workspace) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_threshold(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens();
    const index_t i0 = detail::share_begin(n, exec.ith, exec.nth);
    const index_t i1 = detail::share_begin(n, exec.ith + 1, exec.nth);
    index_t row = 0;  // output row of the next kept token
    for (index_t i = 0; i < i0; ++i) row += detail::threshold_keeps(p, in.scores(i));
    const selection_outputs<Eout>& rows = out;
    for (index_t i = i0; i < i1; ++i) {
      if (!detail::threshold_keeps(p, in.scores(i))) continue;
      detail::emit_rows<Arch>([i](index_t) { return i; }, row, row + 1, in.grid, in.tokens, rows);
      ++row;
    }
    if (exec.ith == exec.nth - 1) out.count(0) = row;
    return status::ok;
  }
};

}  // namespace tokred
