// tokred/cpu/dymu.hpp — the CPU backend of dymu: tome's steps with r decided between the first
// and the second.
//
//   1. match    tome's matching (`detail::tome_matching`), or the given tome_match result;
//   2. count    r = the unprotected A tokens strictly above θ, capped by max_r (`detail::dymu_r`), O(N);
//   3. merge    tome's ranking, layout and write for tome{r, protect, order} (`detail::tome_merge`).
//
// Shares: as tome's. Every share runs steps 1–3 in full and writes only its own slots
// [K·ith/nth, K·(ith+1)/nth) of the K = N − r outputs and its assign entries
// [N·ith/nth, N·(ith+1)/nth); the last share writes `count`. Every share computes the same r
// from the same similarities, so the results are bit-identical for every nth. To divide the
// O(N²·D) matching over the shares, run tome_match first and give dymu its result.
#pragma once

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/tome.hpp"
#include "tokred/policy/dymu.hpp"

namespace tokred {

/// dymu on CPU. Checks, in order: the exec (`invalid_exec`); `detail::check_dymu` (parameters
/// and grid, then tome's checks with the outputs against the bound N, then `count`); the
/// workspace; after the matching, `detail::check_merge_values` for r_eff (carried sizes, and a
/// given partner of every unprotected A token when something merges). The workspace is tome's.
template <class Arch>
struct backend<dymu, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const dymu& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    backend<tome, cpu<Arch>>::carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const dymu& p, const merge_inputs<Ein>& in,
                      const counted_merge_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_dymu(p, in, out); s != status::ok) return s;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    detail::arena carver(ws);
    const detail::tome_scratch t = backend<tome, cpu<Arch>>::carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t n = in.grid.tokens();
    const tome most{n, p.protect, p.order};  // the clamp alone: can anything merge?
    index_t r = 0;
    if (effective_r(most, n) > 0) {
      detail::tome_matching<Arch>(p.protect, in, t);
      r = detail::dymu_r(p, n, [&](index_t k) { return t.match.best[k]; });
    }
    const tome step{r, p.protect, p.order};
    if (status s = detail::check_merge_values(step, in, r); s != status::ok) return s;
    detail::tome_merge(exec, step, in, out, r, t);
    if (exec.ith == exec.nth - 1) out.count(0) = n - r;
    return status::ok;
  }
};

}  // namespace tokred
