// tokred/cpu/stc_pruner.hpp — the CPU backend of stc_pruner.
//
// One call scores the chunk with the gaussian_redundancy backend (which updates the memory), keeps
// each frame's least redundant tokens with the topk backend, and moves `source` and `positions`
// from the chunk's terms into the stream's. The scores never leave the workspace.
//
// The redundancy needs every token of the chunk before any token is scored (the channel variances
// and the chunk mean), and shares never wait on each other, so share 0 does all of it and the
// other shares check the inputs and return having written nothing. Give it one thread; run
// several streams in parallel instead.
//
// Workspace: the chunk's scores (T·H·W floats), then the larger of the redundancy's scratch and
// the per-frame selection's.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/redundancy.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/stc_pruner.hpp"

namespace tokred {

template <class Arch>
struct backend<stc_pruner, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const stc_pruner& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, prob);
    return counter.used();
  }

  /// Checks everything; then share 0 scores the chunk (`invalid_parameter` for a negative
  /// `memory.chunks(0)`, nothing written), updates the memory and writes every output.
  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const stc_pruner& p, const stc_pruner_inputs<Ein>& in,
                      const selection_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_stc_pruner(p, in, out); s != status::ok) return s;
    const problem prob{in.chunk, in.tokens.extent(1)};
    const std::size_t need = workspace_bytes(cpu<Arch>{}, p, prob);
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    // The scores in the scratch are written before the memory is: it must overlap no view.
    if (detail::workspace_overlaps<host_space>(ws, need, in.tokens, in.memory.sums, in.memory.chunks,
                                               in.memory.channels, out.tokens, out.source, out.positions))
      return status::aliasing;
    if (exec.ith != 0) return status::ok;

    detail::arena a(ws);
    const scratch buffers = carve(a, p, prob);
    const index_t n = in.chunk.tokens();
    const view<float, 1> scores = make_view(buffers.scores, n);
    const redundancy_inputs<Ein> chunk{in.chunk, in.tokens, in.memory};
    if (status s = backend<gaussian_redundancy, cpu<Arch>>::apply(cpu<Arch>{}, p.score, chunk, score_outputs<>{scores},
                                                                 buffers.steps);
        s != status::ok)
      return s;

    // The selection's checks passed above (its scores live in the workspace, which overlaps no
    // output): it returns ok.
    const topk per_frame{p.keep, scope::per_frame};
    const selection_inputs<Ein> ranked{in.chunk, view<const float, 1>(scores), in.tokens};
    if (status s = backend<topk, cpu<Arch>>::apply(cpu<Arch>{}, per_frame, ranked, out, buffers.steps); s != status::ok)
      return s;

    const index_t kept = retained_count(p, prob), first = in.first_frame * in.chunk.frame_tokens();
    for (index_t j = 0; j < kept; ++j) {
      if (detail::requested(out.source)) out.source(j) += first;
      if (detail::requested(out.positions)) out.positions(j, 0) += static_cast<std::int32_t>(in.first_frame);
    }
    return status::ok;
  }

 private:
  struct scratch {
    float* scores = nullptr;
    workspace steps;  // the redundancy's scratch, then the selection's
  };

  /// The one carve-up: the scores, then room for either step (they run one after the other).
  static scratch carve(detail::arena& a, const stc_pruner& p, const problem& prob) {
    scratch s;
    s.scores = a.take<float>(prob.grid.tokens());
    const std::size_t bytes = std::max(
        backend<gaussian_redundancy, cpu<Arch>>::workspace_bytes(cpu<Arch>{}, p.score, prob),
        backend<topk, cpu<Arch>>::workspace_bytes(cpu<Arch>{}, topk{p.keep, scope::per_frame}, prob));
    s.steps = {a.take_bytes(bytes), bytes};
    return s;
  }
};

}  // namespace tokred
