// tokred/cpu/vidkv_salient.hpp — the CPU backend of vidkv_salient_tokens.
//
// The choice is the topk backend's over the N scores (its order: score descending, ties to the
// lower index, NaN last), which emits indices ascending: k − 32 of them, or with `vidkv_order`
// all k, of which the first k − 32 are kept. Each is then shifted by first_position.
//
// One choice per video is a small unit of work (a radix select over N floats), so share 0 does
// all of it and the other shares check the inputs and return having written nothing.
//
// Workspace: the k chosen indices, then the topk's own scratch.
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/selection.hpp"
#include "tokred/policy/vidkv_salient.hpp"

namespace tokred {

template <class Arch>
struct backend<vidkv_salient_tokens, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_salient_tokens& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, prob);
    return counter.used();
  }

  /// Checks, in order: exec; can_implement of the scores' length; the scores (N,); the positions
  /// (retained_count,); `aliasing` when they overlap; the workspace.
  static status apply(const cpu<Arch>& exec, const vidkv_salient_tokens& p, const vidkv_salient_inputs<>& in,
                      const vidkv_salient_outputs<>& out, workspace ws) {
    if (status s = detail::check_vidkv_salient(exec, p, in, out); s != status::ok) return s;
    const problem prob{sequence_grid(in.scores.extent(0)), 0};
    const index_t count = retained_count(p, prob);
    if (status s = check_workspace(ws, workspace_bytes(cpu<Arch>{}, p, prob)); s != status::ok) return s;
    if (exec.ith != 0 || count == 0) return status::ok;

    detail::arena a(ws);
    const scratch buffers = carve(a, p, prob);
    const index_t chosen = detail::vidkv_salient_chosen(p, prob);
    const selection_inputs<float> ranked{prob.grid, in.scores, {}};
    const selection_outputs<float> indices{{}, make_view(buffers.chosen, chosen), {}};
    if (status s = backend<topk, cpu<Arch>>::apply(cpu<Arch>{}, chooser(chosen), ranked, indices, buffers.selection);
        s != status::ok)
      return s;
    for (index_t j = 0; j < count; ++j) out.positions(j) = p.first_position + buffers.chosen[j];
    return status::ok;
  }

 private:
  struct scratch {
    std::int64_t* chosen = nullptr;  // (chosen_count,) ascending indices
    workspace selection;
  };


  static topk chooser(index_t chosen) noexcept { return topk{keep_budget::count(chosen)}; }

  static scratch carve(detail::arena& a, const vidkv_salient_tokens& p, const problem& prob) {
    scratch s;
    const index_t chosen = detail::vidkv_salient_chosen(p, prob);
    s.chosen = a.take<std::int64_t>(chosen);
    const std::size_t bytes = backend<topk, cpu<Arch>>::workspace_bytes(cpu<Arch>{}, chooser(chosen), prob);
    s.selection = {a.take_bytes(bytes), bytes};
    return s;
  }
};

}  // namespace tokred
