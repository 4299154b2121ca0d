// tokred/cpu/stc_cacher.hpp — the CPU backend of stc_cacher.
//
// The reference frame's squared key norms first (T rows), then each key's cosine to the reference
// key in its slot exactly as temporal_similarity scores a slot against the previous frame
// (`temporal_pair`: the dot product and the key's squared norm in one pass of the pair kernel),
// negated so that the topk backend, per frame, keeps the least similar tokens with its ties and
// NaN rule.
//
// One chunk of one layer is a small unit of work (a frame of 729 keys × 1152 is under a million
// products), so share 0 does all of it and the other shares check the inputs and return having
// written nothing.
//
// Workspace: the T reference norms, the F·T scores, then the per-frame selection's scratch.
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/stc_cacher.hpp"

namespace tokred {

template <class Arch>
struct backend<stc_cacher, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const stc_cacher& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, prob);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const stc_cacher& p, const stc_cacher_inputs<Ein>& in,
                      const selection_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_stc_cacher(p, in, out); s != status::ok) return s;
    const problem prob{in.chunk, in.keys.extent(1)};
    if (status s = check_workspace(ws, workspace_bytes(cpu<Arch>{}, p, prob)); s != status::ok) return s;
    if (exec.ith != 0) return status::ok;

    detail::arena a(ws);
    const scratch buffers = carve(a, p, prob);
    const index_t slots = in.chunk.frame_tokens(), n = in.chunk.tokens(), width = in.keys.extent(1);
    for (index_t j = 0; j < slots; ++j) buffers.reference_sq[j] = detail::row_squared_norm<Arch>(in.reference, j);
    constexpr temporal_similarity cosine{temporal_similarity::measure::cosine, 0.0f};
    for (index_t i = 0; i < n; ++i) {
      const index_t j = i % slots;
      float key_sq = 0.0f;  // not needed again
      buffers.scores[i] = -detail::temporal_pair<Arch>(cosine, &in.keys(i, 0), in.keys.stride(1), &in.reference(j, 0),
                                                       in.reference.stride(1), width, buffers.reference_sq[j], key_sq);
    }

    const topk least_similar{detail::stc_recompute_budget(p), scope::per_frame};
    const selection_inputs<Ein> ranked{in.chunk, make_view<const float>(buffers.scores, n), in.keys};
    return backend<topk, cpu<Arch>>::apply(cpu<Arch>{}, least_similar, ranked, out, buffers.selection);
  }

 private:
  struct scratch {
    float* reference_sq = nullptr;  // (T,)
    float* scores = nullptr;        // (F·T,) −cos
    workspace selection;
  };

  static scratch carve(detail::arena& a, const stc_cacher& p, const problem& prob) {
    scratch s;
    s.reference_sq = a.take<float>(prob.grid.frame_tokens());
    s.scores = a.take<float>(prob.grid.tokens());
    const topk least_similar{detail::stc_recompute_budget(p), scope::per_frame};
    const std::size_t bytes = backend<topk, cpu<Arch>>::workspace_bytes(cpu<Arch>{}, least_similar, prob);
    s.selection = {a.take_bytes(bytes), bytes};
    return s;
  }
};

}  // namespace tokred
