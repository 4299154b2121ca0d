// tokred/cpu/stream.hpp — the CPU backend of temporal_stream.
//
// One call reads the frame's rows once for the scores (each row's dot product with the previous
// frame's row and its own squared norm in one pass, the canonical pair kernels of
// <tokred/cpu/similarity.hpp>, so every score has the bits the batch `temporal_similarity`
// computes), copying each row into the state as soon as it is compared, then selects with the
// threshold or topk backend (which reads the kept rows again).
//
// A frame is one small unit of work whose three steps depend on each other (the selection reads
// every score, the state may only move on once nothing reads it), so share 0 does all of it and
// the other shares check the inputs and return having written nothing. Give it one thread; run
// several streams in parallel instead.
//
// Workspace: the frame's scores (H·W floats), then the top-k selection's scratch.
#pragma once

#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/threshold.hpp"
#include "tokred/policy/stream.hpp"

namespace tokred {

template <class Arch>
struct backend<temporal_stream, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const temporal_stream& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, prob);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const temporal_stream& p, const temporal_stream_inputs<Ein>& in,
                      const counted_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_stream(p, in, out, exec.ith == 0); s != status::ok) return s;
    const problem prob{in.frame, in.tokens.extent(1)};
    const std::size_t need = workspace_bytes(cpu<Arch>{}, p, prob);
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    // The scratch is written before the state moves on: one that overlaps a view would corrupt it.
    if (detail::workspace_overlaps<host_space>(ws, need, in.tokens, in.state.previous, in.state.norms, in.state.frames,
                                               out.tokens, out.source, out.positions, out.count))
      return status::aliasing;
    if (exec.ith != 0) return status::ok;

    detail::arena a(ws);
    const scratch buffers = carve(a, p, prob);
    const index_t n = in.frame.tokens();
    const view<float, 1> scores = make_view(buffers.scores, n);
    score_frame(p.score, in, scores);

    // The frame's selection in its own terms (slots 0 … H·W − 1, t = 0), then in the stream's.
    const selection_inputs<Ein> frame{in.frame, view<const float, 1>(scores), in.tokens};
    // The checks above are the selection's own (the frame, the outputs, and the scores in a
    // workspace that overlaps neither), so it returns ok. Were it to fail, its status is passed
    // on, with the state's rows and norms already moved on and `frames` not.
    index_t kept = 0;
    if (p.by == temporal_stream::rule::threshold) {
      const threshold rule{p.tau, threshold::keep::at_most};
      if (status s = backend<threshold, cpu<Arch>>::apply(cpu<Arch>{}, rule, frame, out, {}); s != status::ok) return s;
      kept = static_cast<index_t>(out.count(0));
    } else {
      const topk rule{p.keep, scope::global};
      const selection_outputs<Eout>& rows = out;
      if (status s = backend<topk, cpu<Arch>>::apply(cpu<Arch>{}, rule, frame, rows, buffers.selection); s != status::ok)
        return s;
      kept = retained_count(p, prob);
      out.count(0) = kept;
    }
    const index_t first = in.index * n;
    for (index_t j = 0; j < kept; ++j) {
      if (detail::requested(out.source)) out.source(j) += first;
      if (detail::requested(out.positions)) out.positions(j, 0) = static_cast<std::int32_t>(in.index);
    }

    in.state.frames(0) = in.index + 1;  // its rows and norms moved on while scoring
    return status::ok;
  }

 private:
  struct scratch {
    float* scores = nullptr;
    workspace selection;
  };

  /// The one carve-up: the scores, then what the top-k rule's selection needs (single share).
  static scratch carve(detail::arena& a, const temporal_stream& p, const problem& prob) {
    scratch s;
    s.scores = a.take<float>(prob.grid.tokens());
    if (p.by == temporal_stream::rule::per_frame_topk) {
      const topk rule{p.keep, scope::global};
      const std::size_t bytes = backend<topk, cpu<Arch>>::workspace_bytes(cpu<Arch>{}, rule, prob);
      s.selection = {a.take_bytes(bytes), bytes};
    }
    return s;
  }

  /// The scores of the frame against the state, and the state's rows and norms moved on to the
  /// frame: each row is copied into the state right after its comparison, while it is in cache
  /// (the previous frame's row in that slot is not read again).
  template <class E>
  static void score_frame(const temporal_similarity& score, const temporal_stream_inputs<E>& in,
                          const view<float, 1>& scores) noexcept {
    const index_t n = in.frame.tokens(), dim = in.tokens.extent(1);
    const view<const E, 2> previous = in.state.previous;
    const bool first = in.state.frames(0) == 0;
    for (index_t i = 0; i < n; ++i) {
      if (first) {
        scores(i) = score.first_frame;
        in.state.norms(i) = detail::row_squared_norm<Arch>(in.tokens, i);
      } else {
        scores(i) = detail::temporal_pair<Arch>(score, &in.tokens(i, 0), in.tokens.stride(1), &previous(i, 0),
                                                previous.stride(1), dim, in.state.norms(i), in.state.norms(i));
      }
      keep_row(in, i);
    }
  }

  /// Row i of the frame into the state.
  template <class E>
  static void keep_row(const temporal_stream_inputs<E>& in, index_t i) noexcept {
    detail::copy_row<Arch>(&in.tokens(i, 0), in.tokens.stride(1), &in.state.previous(i, 0), in.state.previous.stride(1),
                           in.tokens.extent(1));
  }
};

}  // namespace tokred
