// tokred/policy/stream.hpp — temporal pruning of a video as it streams in, one frame per call:
// TimeChat-Online's Differential Token Drop and a per-frame EVS, each frame compared with the
// previous one through a caller-owned state one frame large.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/stream.hpp>. Each call takes one frame,
// reduces it against the state and moves the state on to that frame. The concatenated outputs of
// frames 0, 1, … equal, bit for bit, the batch form on the same frames:
//
//   temporal_stream::dtd(τ)    temporal_similarity::dtd()  then  threshold::dtd(τ)
//   temporal_stream::evs(k)    temporal_similarity::evs()  then  topk{k, scope::per_frame}
//
// Outputs (`counted_outputs` of <tokred/policy/selection.hpp>), sized by `retained_count`:
//   tokens    (bound, dim)  the kept rows of this frame, in original order
//   source    (bound,)      each kept token's index in the STREAM: index·H·W + its slot
//   positions (bound, 3)    its (t, h, w) with t = the frame's index
//   count     (1,)          how many rows were written; the rest are left as they were
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/feature_scores.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// The state of one stream, owned by the caller: the previous frame's rows as given, their
/// squared norms, and how many frames the stream has seen. Its size is one frame whatever the
/// stream's length. Set `frames(0) = 0` to start a stream (the rows and norms are then ignored and
/// overwritten); every call moves it on by one frame.
template <class E, class Space = host_space>
struct temporal_state {
  using space = Space;
  view<E, 2, Space> previous;           // (H·W, dim) the last frame's rows
  view<float, 1, Space> norms;          // (H·W,) their squared norms
  view<std::int64_t, 1, Space> frames;  // (1,) frames seen so far
};

/// Frame-by-frame temporal redundancy pruning of a stream of (H, W) frames.
///
/// Each token is scored against the token in the same slot of the previous frame's ORIGINAL rows
/// (`temporal_similarity`, whose `first_frame` value scores frame 0), then:
///
///   rule::threshold       keeps the tokens whose score is not above τ (TimeChat-Online's DTD
///                         drops s > τ; with dtd()'s −∞ for frame 0, frame 0 is kept whole);
///                         the count depends on the data, at most H·W;
///   rule::per_frame_topk  keeps the `keep` highest-scoring tokens of the frame, in original
///                         order (ties to the lower slot, NaN last): EVS's dissimilarity ranking
///                         with one budget per frame.
///
/// vLLM's EVS ranks all frames together under one budget, which needs the whole video; its
/// streaming form is the per-frame budget above (frame 0's scores are all `first_frame`, so it
/// keeps frame 0's first `keep` slots).
///
/// Paper: TimeChat-Online (Yao et al., arXiv 2504.17343), DTD in "feature" mode; vLLM EVS
/// (Bagrov et al., arXiv 2510.14624).
struct temporal_stream {
  enum class rule { threshold, per_frame_topk };
  rule by = rule::threshold;
  float tau = 0.5f;   ///< rule::threshold: drop s > τ
  keep_budget keep;   ///< rule::per_frame_topk: tokens kept per frame, out of H·W
  temporal_similarity score = temporal_similarity::dtd();

  /// TimeChat-Online's DTD: cosine to the previous frame's slot, drop above τ (0.5 in its scripts).
  static constexpr temporal_stream dtd(float tau = 0.5f) noexcept {
    return {rule::threshold, tau, {}, temporal_similarity::dtd()};
  }
  /// EVS's dissimilarity with a budget per frame (e.g. `keep_budget::ratio(1 − q, rounding::floor)`).
  static constexpr temporal_stream evs(keep_budget per_frame) noexcept {
    return {rule::per_frame_topk, 0.5f, per_frame, temporal_similarity::evs()};
  }
};

/// Inputs of temporal_stream: one frame and the stream's state (read, then moved on to it).
template <class E, class Space = host_space>
struct temporal_stream_inputs {
  using space = Space;
  token_grid frame;                 ///< (1, H, W): one frame
  index_t index = 0;                ///< the frame's index in the stream: must be state.frames(0)
  view<const E, 2, Space> tokens;   // (H·W, dim)
  temporal_state<E, Space> state;
};

namespace detail {

/// The rows temporal_stream keeps of one frame (its bound for the threshold rule), or why there
/// are none: the parameters, then the frame (T must be 1).
inline count_result stream_count(const temporal_stream& p, const token_grid& frame) noexcept {
  if (p.by != temporal_stream::rule::threshold && p.by != temporal_stream::rule::per_frame_topk)
    return {status::invalid_parameter, 0};
  if (p.score.is != temporal_similarity::measure::cosine && p.score.is != temporal_similarity::measure::dissimilarity)
    return {status::invalid_parameter, 0};
  if (p.by == temporal_stream::rule::threshold && std::isnan(p.tau)) return {status::invalid_parameter, 0};
  if (!frame.valid() || frame.frames != 1) return {status::shape_mismatch, 0};
  const index_t n = frame.tokens();
  if (n == 0) return {status::empty_input, 0};
  if (p.by == temporal_stream::rule::threshold) return {status::ok, n};
  return kept_count(p.keep, n);
}

/// Every check of temporal_stream, in the documented order: parameters and frame, the frame's
/// index, the token rows, the state, the outputs, aliasing. The frame's place in the stream is
/// checked against `state.frames` only with `reads_frame_count`: the share that advances the
/// count (share 0) reads it, the others may run beside that write.
template <class Ein, class Eout, class Space>
status check_stream(const temporal_stream& p, const temporal_stream_inputs<Ein, Space>& in,
                    const counted_outputs<Eout, Space>& out, bool reads_frame_count) noexcept {
  const count_result bound = stream_count(p, in.frame);
  if (bound.code != status::ok) return bound.code;
  const index_t n = in.frame.tokens();
  if (status s = check_view(in.state.frames, {index_t{1}}); s != status::ok) return s;
  // The next frame of the stream, with a flat index and a t that fit their outputs.
  if (!stream_frames_fit(in.frame, in.index) || (reads_frame_count && in.state.frames(0) != in.index))
    return status::index_out_of_range;
  if (status s = check_view(in.tokens, {n, in.tokens.extent(1)}); s != status::ok) return s;
  const index_t dim = in.tokens.extent(1);
  if (dim == 0) return status::empty_input;
  if (status s = check_view(in.state.previous, {n, dim}); s != status::ok) return s;
  if (status s = check_view(in.state.norms, {n}); s != status::ok) return s;
  if (status s = check_counted_outputs(in.tokens, n, view<const float, 1, Space>{}, out, bound.count); s != status::ok)
    return s;
  const auto hits_state = [&](const auto& v) {
    return requested(v) && (may_overlap(v, in.state.previous) || may_overlap(v, in.state.norms) ||
                            may_overlap(v, in.state.frames));
  };
  if (hits_state(in.tokens) || hits_state(out.tokens) || hits_state(out.source) || hits_state(out.positions) ||
      hits_state(out.count) || may_overlap(in.state.previous, in.state.norms) ||
      may_overlap(in.state.previous, in.state.frames) || may_overlap(in.state.norms, in.state.frames))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

/// The rows to allocate for one frame of `prob.grid` = (1, H, W): H·W for the threshold rule
/// (its real count is written to `count`), the per-frame budget for the top-k rule. 0 exactly
/// when `can_implement` fails.
inline index_t retained_count(const temporal_stream& p, const problem& prob) noexcept {
  return detail::stream_count(p, prob.grid).count;
}

/// `ok`, or what `apply` would return for the parameters and the frame's grid alone:
/// `invalid_parameter` (an unknown rule or measure, a NaN τ), `shape_mismatch` (T ≠ 1 or a
/// malformed grid), `empty_input`, or the budget's status for the top-k rule.
inline status can_implement(const temporal_stream& p, const problem& prob) noexcept {
  return detail::stream_count(p, prob.grid).code;
}

}  // namespace tokred
