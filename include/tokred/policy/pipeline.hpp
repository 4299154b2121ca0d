// tokred/policy/pipeline.hpp — a chain of reductions as one policy: pool → merge → select, with
// the provenance of every output token traced back to the original tokens.
//
// `pipeline<Stages...>` has the contract of a single policy: `retained_count` of the whole chain
// exact from the shapes, one `workspace_bytes` holding every intermediate buffer, one `apply`.
// The HOW lives in <tokred/cpu/pipeline.hpp>. A stage is any of
//   grid reducers   pool, adaptive_pool, bilinear, dct_lowpass     a smaller grid out
//   selections      topk, uniform, random_subset                    a subset, original order
//   diversity       divprune, kcenter, importance_diversity, cdpruner
//   merges          tome, tome_share                                tome_share: r as a share of N
//                   visionzip (cls_token = false)                   dominant by the carried scores,
//                                                                   the rest merged into contextual
//   dct_share       Fourier-VLM's low-pass with its side-ratio rule, on whatever grid arrives
//   scored<S, Sel>  a feature score S computed on the stage's tokens, then the selection Sel
// Data-dependent counts (threshold, iqr_outliers) and policies with their own input layouts
// (hired) are not stages: run them before or after a chain. Nor are the video layouts (slowfast,
// thumbnail_sampling): they read some originals twice (a slow frame feeds both pathways; a
// thumbnail frame feeds the thumbnail and the sampled tokens), which one `assign` slot per
// original cannot describe.
//
// What flows between stages: the tokens (in the input element type), their grid, and for every
// token the original token it stands for (`source`) and how many originals it stands for
// (`sizes`). Each stage sees the grid the previous one produced:
//   grid reducers        their output grid (T', H', W')
//   per-frame selections (T, 1, k): k tokens in each of the T frames
//   everything else      the sequence grid (1, 1, K)
//
// Outputs, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the last stage's tokens
//   source    (kept,)      the original token each output stands for: the stage-by-stage
//                          composition of every stage's own source (a merge's or a pool's
//                          representative, a selection's kept index)
//   positions (kept, 3)    the original (t, h, w) of that source token
//   sizes     (kept,)      how many original tokens the output stands for: the originals whose
//                          `assign` is that slot (0 for an upsampled cell that no original maps to)
//   assign    (tokens,)    for every original token, its output slot, or −1 if a stage dropped it
// Every stage's own assignment composes into `assign`: a selection maps a kept token to its slot
// and drops the rest; a merge maps as it merged; a grid reducer maps each input token to the
// output cell, of those that take it in, whose representative token is nearest (`stage_cell`), so
// an output is assigned its own source and pooling's floor mode drops the cut-off border.
// Sizes therefore always sum to the originals not dropped. ToMe inside a chain weighs its averages
// by these sizes, as repeated ToMe layers do.
//
// Scores: topk, importance_diversity and visionzip read the caller's `scores` of the ORIGINAL
// tokens; after an earlier stage each token carries the score of its source token. `scored<S,
// Sel>` computes fresh scores on the stage's own tokens instead.
//
// VisionZip in a chain: the stage's tokens are patches with no [CLS] row, so the stage takes
// `cls_token = false` (`invalid_parameter` otherwise) and all `dominant` tokens are patches. The
// carried scores stand in for the [CLS] attention and the stage's tokens are their own keys. Its
// contextual tokens average stage tokens as VisionZip does, unweighted by `sizes`; their sizes in
// the chain count the originals they stand for.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/diversity.hpp"
#include "tokred/policy/feature_scores.hpp"
#include "tokred/policy/grid_reduce.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"
#include "tokred/policy/visionzip.hpp"

namespace tokred {

/// ToMe with r given as a share of the stage's input tokens: r = floor(share · N), then ToMe's
/// own clamp. A chain's stage counts are known only once the shapes are, so this is how a
/// pipeline says "merge a quarter of whatever arrives here".
struct tome_share {
  double share = 0.0;   ///< in [0, 1]; r = floor(share · N), the product in double
  index_t protect = 0;  ///< as tome::protect
};

/// Fourier-VLM's DCT low-pass with its ratio rule: `dct_lowpass_for_ratio(grid, ratio)` on the
/// stage's grid (each frame's sides scaled by the ratio, frames kept whole).
struct dct_share {
  double ratio = 2.0 / 3.0;  ///< in (0, 1]
};

/// A selection that ranks by a feature score computed on the stage's own tokens: S is
/// token_norm, query_relevance (token level) or temporal_similarity; Sel is topk or
/// importance_diversity.
template <class Score, class Select>
struct scored {
  Score score{};
  Select select{};
};

/// A chain of reduction stages, applied left to right.
template <class... Stages>
struct pipeline {
  static_assert(sizeof...(Stages) > 0, "tokred: a pipeline needs at least one stage");
  std::tuple<Stages...> stages;
};

template <class... Stages>
constexpr pipeline<std::decay_t<Stages>...> make_pipeline(Stages&&... stages) {
  return {std::tuple<std::decay_t<Stages>...>(std::forward<Stages>(stages)...)};
}

/// Inputs of a pipeline. `query`, when given, reaches every cdpruner stage (its relevance) and
/// scored<query_relevance, …>, which requires it.
template <class E, class Space = host_space>
struct pipeline_inputs {
  using space = Space;
  token_grid grid;                     ///< (T, H, W), N = T·H·W original tokens
  view<const E, 2, Space> tokens;      // (tokens, dim)
  view<const float, 1, Space> scores;  // (tokens,) of the originals: for topk and
                                       //   importance_diversity stages (required by them only)
  view<const E, 2, Space> query;       // (queries, dim) for cdpruner and scored<query_relevance, …>
};

/// Outputs of a pipeline. Each view is optional: leave it empty to skip it.
template <class E, class Space = host_space>
struct pipeline_outputs {
  using space = Space;
  view<E, 2, Space> tokens;                // (kept, dim)
  view<std::int64_t, 1, Space> source;     // (kept,)
  view<std::int32_t, 2, Space> positions;  // (kept, 3) as (t, h, w)
  view<float, 1, Space> sizes;             // (kept,)
  view<std::int64_t, 1, Space> assign;     // (tokens,)
};

namespace detail {

/// What a stage makes of its input problem: a status, its output count and output grid, and
/// what it reads besides the tokens.
struct stage_shape {
  status code = status::ok;
  index_t kept = 0;
  token_grid grid;         ///< the grid the next stage sees
  bool reads_scores = false;  ///< the caller's scores, carried to the stage's tokens (required)
  bool reads_query = false;   ///< the caller's query rows (required)
};

constexpr stage_shape failed_stage(status s) noexcept { return {s, 0, {}, false, false}; }

/// The grid after a budgeted selection of `kept` tokens.
constexpr token_grid selected_grid(scope within, const token_grid& in, index_t kept) noexcept {
  return within == scope::per_frame ? token_grid{in.frames, 1, kept / in.frames} : sequence_grid(kept);
}

template <class P>
inline constexpr bool is_grid_stage_v = std::is_same_v<P, pool> || std::is_same_v<P, adaptive_pool> ||
                                        std::is_same_v<P, bilinear> || std::is_same_v<P, dct_lowpass>;

template <class P>
inline constexpr bool is_select_stage_v = is_budgeted_selection_v<P> || is_diversity_v<P>;

template <class S>
inline constexpr bool is_stage_score_v = std::is_same_v<S, token_norm> ||
                                         std::is_same_v<S, query_relevance> ||
                                         std::is_same_v<S, temporal_similarity>;

/// The concrete policy of a stage given the problem it meets: ToMe's r from its share, the DCT's
/// kept block from its ratio; every other stage is its own policy.
inline tome resolve(const tome_share& p, const problem& prob) noexcept {
  return {static_cast<index_t>(p.share * static_cast<double>(prob.grid.tokens())), p.protect};
}
inline dct_lowpass resolve(const dct_share& p, const problem& prob) noexcept {
  return dct_lowpass_for_ratio(prob.grid, p.ratio);
}
template <class P>
const P& resolve(const P& p, const problem&) noexcept {
  return p;
}

template <class P>
inline constexpr bool is_resolved_stage_v = std::is_same_v<P, tome_share> || std::is_same_v<P, dct_share>;

template <class P>
stage_shape stage_output(const P& p, const problem& prob) noexcept;
template <class Score, class Select>
stage_shape stage_output_scored(const scored<Score, Select>& p, const problem& prob) noexcept;
template <class P>
stage_shape stage_output_scored(const P&, const problem&) noexcept;

template <class P>
stage_shape stage_output(const P& p, const problem& prob) noexcept {
  if (prob.dim <= 0) return failed_stage(prob.dim == 0 ? status::empty_input : status::shape_mismatch);
  if constexpr (is_grid_stage_v<P>) {
    const grid_result r = reduced_grid(p, prob.grid);
    if (r.code != status::ok) return failed_stage(r.code);
    return {status::ok, r.grid.tokens(), r.grid, false, false};
  } else if constexpr (is_select_stage_v<P>) {
    if (status s = can_implement(p, prob); s != status::ok) return failed_stage(s);
    const index_t kept = retained_count(p, prob);
    return {status::ok, kept, selected_grid(p.within, prob.grid, kept),
            std::is_same_v<P, topk> || std::is_same_v<P, importance_diversity>, false};
  } else if constexpr (std::is_same_v<P, tome>) {
    if (status s = can_implement(p, prob); s != status::ok) return failed_stage(s);
    const index_t kept = retained_count(p, prob);
    return {status::ok, kept, sequence_grid(kept), false, false};
  } else if constexpr (std::is_same_v<P, visionzip>) {
    if (p.cls_token) return failed_stage(status::invalid_parameter);  // a chain's tokens have no [CLS] row
    if (status s = can_implement(p, prob); s != status::ok) return failed_stage(s);
    const index_t kept = retained_count(p, prob);
    return {status::ok, kept, sequence_grid(kept), true, false};
  } else if constexpr (std::is_same_v<P, tome_share>) {
    if (!(p.share >= 0.0 && p.share <= 1.0)) return failed_stage(status::invalid_ratio);
    return stage_output(resolve(p, prob), prob);
  } else if constexpr (std::is_same_v<P, dct_share>) {
    if (!(p.ratio > 0.0 && p.ratio <= 1.0)) return failed_stage(status::invalid_ratio);
    return stage_output(resolve(p, prob), prob);
  } else {
    return stage_output_scored(p, prob);
  }
}

template <class Score, class Select>
stage_shape stage_output_scored(const scored<Score, Select>& p, const problem& prob) noexcept {
  static_assert(is_stage_score_v<Score>,
                "tokred: scored<S, Sel> takes token_norm, query_relevance or temporal_similarity");
  static_assert(std::is_same_v<Select, topk> || std::is_same_v<Select, importance_diversity>,
                "tokred: scored<S, Sel> selects with topk or importance_diversity");
  if constexpr (std::is_same_v<Score, query_relevance>) {
    if (p.score.at != query_relevance::level::token) return failed_stage(status::invalid_parameter);
  }
  if (status s = can_implement(p.score, prob); s != status::ok) return failed_stage(s);
  stage_shape shape = stage_output(p.select, prob);
  shape.reads_scores = false;
  shape.reads_query = std::is_same_v<Score, query_relevance>;
  return shape;
}

/// Fallback for a type that is no stage: one readable error instead of a page of overloads.
template <class P>
stage_shape stage_output_scored(const P&, const problem&) noexcept {
  static_assert(dependent_false<P>,
                "tokred: not a pipeline stage (see the list in <tokred/policy/pipeline.hpp>)");
  return failed_stage(status::invalid_parameter);
}

/// Of the output indices o in [lo, hi] along one axis, the lowest whose representative rep(o)
/// is nearest to input index x; −1 when the range is empty. `rep` must be nondecreasing in o (every
/// grid reducer's is): two binary searches, O(log(hi − lo + 1)) calls of `rep`.
template <class Rep>
index_t nearest_representative(index_t x, index_t lo, index_t hi, const Rep& rep) noexcept {
  if (lo > hi) return -1;
  const auto first_reaching = [&rep](index_t a, index_t b, index_t v) {  // first o in [a, b] with rep(o) >= v, or b + 1
    ++b;
    while (a < b) {
      const index_t m = a + (b - a) / 2;
      if (rep(m) < v) a = m + 1;
      else b = m;
    }
    return a;
  };
  const index_t above = first_reaching(lo, hi, x);
  if (above == lo) return lo;
  const index_t below = rep(above - 1);  // < x
  if (above <= hi && rep(above) - x < x - below) return above;
  return first_reaching(lo, above - 1, below);  // ties go to the lower: the first of that representative
}

/// The output index along one axis that input index x goes to (the `assign` of a grid stage):
/// of the cells that take x in, the one whose representative (the `source` of the stage, per
/// axis) is nearest, ties to the lower; −1 when none takes it in (the border a pooling floor mode
/// cuts off). So every output whose representative no other output shares is assigned its own
/// source. Pooling: the windows holding x, [o·s − p, o·s − p + k) ∋ x; adaptive pooling: the bins
/// holding x; bilinear and the DCT: every output (each reads every input of its axis or its
/// neighbourhood).
template <class P>
index_t cell_along(const P& p, int axis, index_t x, index_t in, index_t out) noexcept {
  if constexpr (std::is_same_v<P, pool>) {
    const index_t k = axis_of(p.kernel, axis), s = axis_of(p.stride, axis), pad = axis_of(p.padding, axis);
    const index_t reach = x + pad - k;  // window o holds x iff reach < o·s <= x + pad
    const index_t lo = reach < 0 ? 0 : reach / s + 1;
    const index_t hi = std::min((x + pad) / s, out - 1);
    return nearest_representative(x, lo, hi, [&](index_t o) { return middle(pool_window_at(o, in, k, s, pad).tokens); });
  } else if constexpr (std::is_same_v<P, adaptive_pool>) {
    // Bin o = [⌊o·in/out⌋, ⌈(o+1)·in/out⌉) holds x iff ⌊x·out/in⌋ <= o < (x+1)·out/in.
    const index_t hi = std::min(((x + 1) * out + in - 1) / in - 1, out - 1);
    return nearest_representative(x, x * out / in, hi, [&](index_t o) { return middle(adaptive_bin(o, in, out)); });
  } else if constexpr (std::is_same_v<P, bilinear>) {
    if (axis == 0) return x;  // frames are resampled one by one
    return nearest_representative(x, 0, out - 1, [&](index_t o) { return bilinear_nearest_tap(o, in, out, p.align_corners); });
  } else {
    static_assert(std::is_same_v<P, dct_lowpass>, "tokred: cell_along takes a grid stage");
    return nearest_representative(x, 0, out - 1, [&](index_t o) { return stretch_centre(o, in, out); });
  }
}

/// The output cell of a grid stage that input token i goes to (its `assign`), or −1: the
/// `cell_along` of each axis.
template <class P>
index_t stage_cell(const P& p, const token_grid& in, const token_grid& out, index_t i) noexcept {
  const token_position x = in.position(i);
  const index_t t = cell_along(p, 0, x.t, in.frames, out.frames);
  const index_t h = cell_along(p, 1, x.h, in.height, out.height);
  const index_t w = cell_along(p, 2, x.w, in.width, out.width);
  if (t < 0 || h < 0 || w < 0) return -1;
  return flat_index(out, t, h, w);
}

/// Calls f(stage) for stage `index` of the tuple.
template <class Tuple, class F, std::size_t... I>
void visit_stage_at(const Tuple& stages, std::size_t index, F&& f, std::index_sequence<I...>) {
  ((I == index ? (void)f(std::get<I>(stages)) : (void)0), ...);
}

/// The shape of every stage of a chain, in order, and the chain's result: the first failed
/// stage's status, or the final count and grid. `Chain` offers `stage_count()` and
/// `visit(i, f)`.
struct chain_shape {
  status code = status::ok;
  std::size_t failed_stage = 0;  ///< the stage that failed (when code != ok)
  index_t kept = 0;
  token_grid grid;
  bool reads_scores = false;
  bool reads_query = false;
};

/// Whether a stage that maps `in` to `s` may leave an output that stands for no original (a
/// carried size of 0): a grid stage that enlarges an axis (its ⌊x·out/in⌋ cells skip some
/// outputs), or divprune with the original's repeated picks (the repeats' earlier slots).
template <class P>
bool may_leave_empty_outputs(const P& p, const token_grid& in, const stage_shape& s) noexcept {
  if constexpr (is_grid_stage_v<P> || std::is_same_v<P, dct_share>) {
    return s.grid.frames > in.frames || s.grid.height > in.height || s.grid.width > in.width;
  } else if constexpr (std::is_same_v<P, divprune>) {
    return p.allow_repeats;
  } else {
    return false;
  }
}

template <class Chain, class OnStage>
chain_shape walk_chain(const Chain& chain, const problem& prob, OnStage&& on_stage) {
  chain_shape out{status::ok, 0, prob.grid.tokens(), prob.grid, false, false};
  if (!prob.grid.valid()) return {status::shape_mismatch, 0, 0, {}, false, false};
  if (prob.grid.tokens() == 0) return {status::empty_input, 0, 0, {}, false, false};
  problem at = prob;
  bool empty_outputs = false;  // whether an earlier stage may leave outputs of size 0
  for (std::size_t i = 0; i < chain.stage_count(); ++i) {
    stage_shape s;
    chain.visit(i, [&](const auto& stage) {
      using P = std::decay_t<decltype(stage)>;
      // ToMe weighs tokens by their carried sizes and refuses a size of 0.
      if ((std::is_same_v<P, tome> || std::is_same_v<P, tome_share>) && empty_outputs) {
        s = failed_stage(status::invalid_parameter);
        return;
      }
      s = stage_output(stage, at);
      if (s.code == status::ok) empty_outputs = empty_outputs || may_leave_empty_outputs(stage, at.grid, s);
    });
    if (s.code != status::ok) return {s.code, i, 0, {}, false, false};
    // Every stage's rows are kept as kept · dim floats, addressed by an index.
    if (s.kept > std::numeric_limits<index_t>::max() / prob.dim / static_cast<index_t>(sizeof(float)))
      return {status::shape_mismatch, i, 0, {}, false, false};
    on_stage(i, at, s);
    out.reads_scores = out.reads_scores || s.reads_scores;
    out.reads_query = out.reads_query || s.reads_query;
    out.kept = s.kept;
    out.grid = s.grid;
    at = {s.grid, prob.dim};
  }
  return out;
}

template <class Chain>
chain_shape chain_output(const Chain& chain, const problem& prob) {
  return walk_chain(chain, prob, [](std::size_t, const problem&, const stage_shape&) {});
}

/// A typed pipeline seen through the chain interface.
template <class... Stages>
struct tuple_chain {
  const std::tuple<Stages...>& stages;
  static constexpr std::size_t stage_count() noexcept { return sizeof...(Stages); }
  template <class F>
  void visit(std::size_t i, F&& f) const {
    visit_stage_at(stages, i, std::forward<F>(f), std::index_sequence_for<Stages...>{});
  }
};

template <class... Stages>
tuple_chain<Stages...> as_chain(const pipeline<Stages...>& p) noexcept {
  return {p.stages};
}

/// The view checks of a pipeline, in order: tokens against the grid, scores (when a stage reads
/// them), query (when one does), the outputs against `kept` and N, then no output overlapping an
/// input or another output.
template <class Ein, class Eout, class Space>
status check_pipeline_views(const pipeline_inputs<Ein, Space>& in, const pipeline_outputs<Eout, Space>& out,
                            const chain_shape& shape, index_t dim) noexcept {
  const index_t n = in.grid.tokens();
  if (status s = check_view(in.tokens, {n, dim}); s != status::ok) return s;
  if (shape.reads_scores)
    if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  if (shape.reads_query || requested(in.query)) {  // cdpruner reads a query when one is given
    if (status s = check_view(in.query, {in.query.extent(0), dim}); s != status::ok) return s;
    if (in.query.extent(0) == 0) return status::empty_input;
  }
  const index_t kept = shape.kept;
  if (status s = check_optional_view(out.tokens, {kept, dim}); s != status::ok) return s;
  if (status s = check_optional_view(out.source, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.positions, {kept, index_t{3}}); s != status::ok) return s;
  if (status s = check_optional_view(out.sizes, {kept}); s != status::ok) return s;
  if (status s = check_optional_view(out.assign, {n}); s != status::ok) return s;
  const view<const float, 1, Space> scores = shape.reads_scores ? in.scores : view<const float, 1, Space>{};
  const view<const Ein, 2, Space>& query = in.query;
  const auto hits_input = [&](const auto& o) {
    return requested(o) && overlaps_any(o, in.tokens, scores, query);
  };
  if (hits_input(out.tokens) || hits_input(out.source) || hits_input(out.positions) ||
      hits_input(out.sizes) || hits_input(out.assign))
    return status::aliasing;
  return any_overlap(out.tokens, out.source, out.positions, out.sizes, out.assign) ? status::aliasing
                                                                                   : status::ok;
}

}  // namespace detail

/// Exact number of tokens the whole chain returns on `prob`; 0 exactly when `can_implement` fails.
template <class... Stages>
index_t retained_count(const pipeline<Stages...>& p, const problem& prob) {
  return detail::chain_output(detail::as_chain(p), prob).kept;
}

/// `ok`, or the status of the first stage that cannot run on the shape the chain gives it.
template <class... Stages>
status can_implement(const pipeline<Stages...>& p, const problem& prob) {
  return detail::chain_output(detail::as_chain(p), prob).code;
}

/// The grid the chain's last stage produces (all zero when it cannot run).
template <class... Stages>
token_grid output_grid(const pipeline<Stages...>& p, const problem& prob) {
  return detail::chain_output(detail::as_chain(p), prob).grid;
}

}  // namespace tokred
