// tokred/cpu/pipeline.hpp — the CPU backend of pipeline<Stages...>: each stage runs through its
// own CPU backend, on intermediate buffers carved from the one workspace.
//
// Intermediate tokens are in the input element type, so a chain equals its stages run one by one
// in that type, bit for bit. The workspace holds them at 4 bytes an element whatever the type
// (the size query knows no element type). The last stage writes the caller's output rows
// directly. The provenance (source, sizes, assign) is composed after every stage.
//
// A chain runs on one share: stage i + 1 needs all of stage i, and tokred has no barrier to wait
// on. `apply` with nth > 1 returns `invalid_exec`; run independent images or frames of a batch on
// the engine's threads instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/diversity.hpp"
#include "tokred/cpu/dpp.hpp"
#include "tokred/cpu/dct.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/pool.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/tome.hpp"
#include "tokred/cpu/visionzip.hpp"
#include "tokred/policy/pipeline.hpp"

namespace tokred {
namespace detail {

/// What one stage reads: its tokens and grid, and, carried from the originals, the scores and
/// sizes of those tokens (empty where the stage is the first: the caller's scores, sizes 1).
template <class E>
struct stage_inputs {
  token_grid grid;
  view<const E, 2> tokens;           // (tokens, dim)
  view<const float, 1> scores;       // (tokens,) carried scores; empty if no stage reads them
  view<const float, 1> sizes;        // (tokens,) originals per token; empty: 1 each
  view<const E, 2> query;            // (queries, dim) or empty
};

/// What one stage writes: its tokens (or nothing), and its own source and assign in stage-local
/// indices.
template <class E>
struct stage_outputs {
  view<E, 2> tokens;                  // (kept, dim) or empty
  view<std::int64_t, 1> source;       // (kept,) index into the stage's input tokens
  view<std::int64_t, 1> assign;       // (tokens,) output slot of each input token, or -1
  view<float, 1> scores;              // (tokens,) scratch for a scored<S, Sel> stage
};

/// A selection's assign from its source: its slot for a kept token, −1 for the others.
inline void assign_from_source(const view<const std::int64_t, 1>& source, const view<std::int64_t, 1>& assign) noexcept {
  for (index_t i = 0; i < assign.extent(0); ++i) assign(i) = -1;
  for (index_t j = 0; j < source.extent(0); ++j) assign(source(j)) = j;
}

template <class Arch, class P>
std::size_t stage_workspace_bytes(const P& p, const problem& prob) {
  const cpu<Arch> one{0, 1};
  if constexpr (is_resolved_stage_v<P>) {
    return stage_workspace_bytes<Arch>(resolve(p, prob), prob);
  } else if constexpr (is_grid_stage_v<P> || is_select_stage_v<P> || std::is_same_v<P, tome> ||
                       std::is_same_v<P, visionzip>) {
    return workspace_bytes(one, p, prob);
  } else {
    const std::size_t a = workspace_bytes(one, p.score, prob);
    const std::size_t b = workspace_bytes(one, p.select, prob);
    return a > b ? a : b;  // the score runs, then the selection reuses the same bytes
  }
}

/// Runs one stage on one share into stage-local outputs.
template <class Arch, class P, class Ein, class Eout>
status run_stage(const P& p, const stage_inputs<Ein>& in, const stage_outputs<Eout>& out, workspace ws) {
  const cpu<Arch> one{0, 1};
  const view<const std::int64_t, 1> source = out.source;
  if constexpr (is_resolved_stage_v<P>) {
    return run_stage<Arch>(resolve(p, problem{in.grid, in.tokens.extent(1)}), in, out, ws);
  } else if constexpr (is_grid_stage_v<P>) {
    grid_inputs<Ein> gi;
    gi.grid = in.grid;
    gi.tokens = in.tokens;
    grid_outputs<Eout> go;
    go.tokens = out.tokens;
    go.source = out.source;
    if (status s = apply(one, p, gi, go, ws); s != status::ok) return s;
    const token_grid cells = output_grid(p, in.grid);
    for (index_t i = 0; i < in.grid.tokens(); ++i) out.assign(i) = stage_cell(p, in.grid, cells, i);
    return status::ok;
  } else if constexpr (is_budgeted_selection_v<P>) {
    selection_inputs<Ein> si;
    si.grid = in.grid;
    si.scores = in.scores;
    si.tokens = in.tokens;
    selection_outputs<Eout> so;
    so.tokens = out.tokens;
    so.source = out.source;
    if (status s = apply(one, p, si, so, ws); s != status::ok) return s;
    assign_from_source(source, out.assign);
    return status::ok;
  } else if constexpr (is_diversity_v<P>) {
    diversity_inputs<Ein> di;
    di.grid = in.grid;
    di.tokens = in.tokens;
    di.scores = std::is_same_v<P, importance_diversity> ? in.scores : view<const float, 1>{};
    di.query = in.query;
    diversity_outputs<Eout> dout;
    dout.tokens = out.tokens;
    dout.source = out.source;
    if (status s = apply(one, p, di, dout, ws); s != status::ok) return s;
    assign_from_source(source, out.assign);
    return status::ok;
  } else if constexpr (std::is_same_v<P, tome> || std::is_same_v<P, visionzip>) {
    merge_outputs<Eout> mo;  // both merges write rows, source and assign
    mo.tokens = out.tokens;
    mo.source = out.source;
    mo.assign = out.assign;
    if constexpr (std::is_same_v<P, tome>) {
      merge_inputs<Ein> mi;
      mi.grid = in.grid;
      mi.tokens = in.tokens;
      mi.sizes = in.sizes;
      return apply(one, p, mi, mo, ws);
    } else {
      visionzip_inputs<Ein> vi;  // no metric: the stage's tokens are their own keys
      vi.grid = in.grid;
      vi.tokens = in.tokens;
      vi.scores = in.scores;
      return apply(one, p, vi, mo, ws);
    }
  } else {
    feature_score_inputs<Ein> fi;
    fi.grid = in.grid;
    fi.tokens = in.tokens;
    fi.query = in.query;
    score_outputs<> fo;
    fo.scores = out.scores;
    if (status s = apply(one, p.score, fi, fo, ws); s != status::ok) return s;
    stage_inputs<Ein> ranked = in;
    ranked.scores = out.scores;
    return run_stage<Arch>(p.select, ranked, out, ws);
  }
}

/// The scratch of a chain: intermediate rows (ping-pong, room for fp32), the carried provenance
/// (ping-pong), one stage's own outputs, the running assign of the originals, and the largest
/// stage workspace (stages run one after another and reuse it).
struct chain_scratch {
  std::byte* rows[2] = {nullptr, nullptr};  // (kept, dim) of the input element type
  std::int64_t* source[2] = {nullptr, nullptr};
  float* sizes[2] = {nullptr, nullptr};
  float* scores = nullptr;        // carried scores of the current stage's tokens
  float* stage_scores = nullptr;  // a scored stage's own scores
  std::int64_t* local_source = nullptr;
  std::int64_t* local_assign = nullptr;
  std::int64_t* assign = nullptr;  // (N,) output slot of every original so far
  std::byte* stage_ws = nullptr;
  std::size_t stage_ws_bytes = 0;
  chain_shape shape;
};

/// The one carve-up of a chain's scratch, for `workspace_bytes` (counting arena) and `apply`.
template <class Arch, class Chain>
chain_scratch carve_chain(arena& a, const Chain& chain, const problem& prob) {
  index_t max_rows = 0, max_kept = 0, max_in = 0;
  std::size_t max_ws = 0;
  chain_scratch s;
  s.shape = walk_chain(chain, prob, [&](std::size_t i, const problem& at, const stage_shape& out) {
    if (i + 1 < chain.stage_count() && out.kept * prob.dim > max_rows) max_rows = out.kept * prob.dim;
    if (out.kept > max_kept) max_kept = out.kept;
    if (at.grid.tokens() > max_in) max_in = at.grid.tokens();
    chain.visit(i, [&](const auto& stage) {
      const std::size_t b = stage_workspace_bytes<Arch>(stage, at);
      if (b > max_ws) max_ws = b;
    });
  });
  if (s.shape.code != status::ok) return s;
  for (int k = 0; k < 2; ++k) {
    s.rows[k] = a.take<std::byte>(max_rows * static_cast<index_t>(sizeof(float)));
    s.source[k] = a.take<std::int64_t>(max_kept);
    s.sizes[k] = a.take<float>(max_kept);
  }
  s.scores = a.take<float>(s.shape.reads_scores ? max_in : 0);
  s.stage_scores = a.take<float>(max_in);
  s.local_source = a.take<std::int64_t>(max_kept);
  s.local_assign = a.take<std::int64_t>(max_in);
  s.assign = a.take<std::int64_t>(prob.grid.tokens());
  s.stage_ws = a.take_bytes(max_ws);
  s.stage_ws_bytes = max_ws;
  return s;
}

/// Composes stage `local` provenance onto the carried one. `prev_source`/`prev_sizes` are empty
/// for the first stage (identity, ones).
inline void compose_provenance(const view<const std::int64_t, 1>& local_source,
                               const view<const std::int64_t, 1>& local_assign,
                               const view<const std::int64_t, 1>& prev_source,
                               const view<const float, 1>& prev_sizes, bool first,
                               const view<std::int64_t, 1>& source, const view<float, 1>& sizes,
                               const view<std::int64_t, 1>& assign) noexcept {
  for (index_t j = 0; j < local_source.extent(0); ++j)
    source(j) = first ? local_source(j) : prev_source(local_source(j));
  for (index_t j = 0; j < sizes.extent(0); ++j) sizes(j) = 0.0f;
  for (index_t i = 0; i < local_assign.extent(0); ++i)
    if (const std::int64_t slot = local_assign(i); slot >= 0) sizes(slot) += first ? 1.0f : prev_sizes(i);
  for (index_t o = 0; o < assign.extent(0); ++o) {
    const std::int64_t at = first ? o : assign(o);
    assign(o) = at < 0 ? -1 : local_assign(at);
  }
}

template <class Arch, class Chain, class Ein, class Eout>
status run_chain(const cpu<Arch>& exec, const Chain& chain, const pipeline_inputs<Ein>& in,
                 const pipeline_outputs<Eout>& out, workspace ws) {
  static_assert(sizeof(Ein) <= sizeof(float), "tokred: pipeline rows are fp32, fp16 or bf16");
  if (status s = check_exec(exec); s != status::ok) return s;
  if (exec.nth != 1) return status::invalid_exec;
  if (chain.stage_count() == 0) return status::invalid_parameter;
  const problem prob{in.grid, in.tokens.extent(1)};
  arena counting;
  const chain_scratch need = carve_chain<Arch>(counting, chain, prob);
  if (need.shape.code != status::ok) return need.shape.code;
  if (status s = check_pipeline_views(in, out, need.shape, prob.dim); s != status::ok) return s;
  if (status s = check_workspace(ws, counting.used()); s != status::ok) return s;
  arena carving(ws);
  const chain_scratch s = carve_chain<Arch>(carving, chain, prob);

  const index_t n = in.grid.tokens(), dim = prob.dim;
  const std::size_t stages = chain.stage_count();
  const view<std::int64_t, 1> assign = make_view(s.assign, n);  // (tokens,)
  token_grid grid = in.grid;
  index_t count = n;  // tokens entering the current stage
  int cur = 0;        // which ping-pong half holds the current stage's tokens and provenance
  status result = status::ok;
  for (std::size_t i = 0; i < stages && result == status::ok; ++i) {
    const bool first = i == 0, last = i + 1 == stages;
    stage_shape shape;
    chain.visit(i, [&](const auto& stage) { shape = stage_output(stage, problem{grid, dim}); });
    const index_t kept = shape.kept;
    // The carried provenance of the stage's tokens; empty before the first stage (identity, ones).
    const view<const std::int64_t, 1> prev_source =  // (tokens,)
        first ? view<const std::int64_t, 1>{} : make_view<const std::int64_t>(s.source[cur], count);
    const view<const float, 1> prev_sizes =  // (tokens,)
        first ? view<const float, 1>{} : make_view<const float>(s.sizes[cur], count);

    view<const float, 1> scores;  // (tokens,) the stage's tokens' scores, carried from the originals
    if (need.shape.reads_scores) {
      if (first) {
        scores = in.scores;
      } else {
        for (index_t j = 0; j < count; ++j) s.scores[j] = in.scores(prev_source(j));
        scores = make_view<const float>(s.scores, count);
      }
    }
    const view<std::int64_t, 1> local_source = make_view(s.local_source, kept);  // (kept,)
    const view<std::int64_t, 1> local_assign = make_view(s.local_assign, count);  // (tokens,)
    const view<float, 1> stage_scores = make_view(s.stage_scores, count);         // (tokens,)
    const workspace stage_ws{s.stage_ws, s.stage_ws_bytes};
    const view<Ein, 2> rows = make_view(reinterpret_cast<Ein*>(s.rows[1 - cur]), kept, dim);  // (kept, dim)
    const view<const Ein, 2> tokens =  // (tokens, dim)
        first ? in.tokens : view<const Ein, 2>(make_view(reinterpret_cast<const Ein*>(s.rows[cur]), count, dim));
    const stage_inputs<Ein> si{grid, tokens, scores, prev_sizes, in.query};
    chain.visit(i, [&](const auto& stage) {
      if (last)
        result = run_stage<Arch>(stage, si, stage_outputs<Eout>{out.tokens, local_source, local_assign, stage_scores}, stage_ws);
      else
        result = run_stage<Arch>(stage, si, stage_outputs<Ein>{rows, local_source, local_assign, stage_scores}, stage_ws);
    });
    if (result != status::ok) break;
    compose_provenance(local_source, local_assign, prev_source, prev_sizes, first,
                       make_view(s.source[1 - cur], kept), make_view(s.sizes[1 - cur], kept), assign);
    cur = 1 - cur;
    grid = shape.grid;
    count = kept;
  }
  if (result != status::ok) return result;

  const index_t kept = need.shape.kept;
  for (index_t j = 0; j < kept; ++j) {
    const std::int64_t src = s.source[cur][j];
    if (requested(out.source)) out.source(j) = src;
    if (requested(out.sizes)) out.sizes(j) = s.sizes[cur][j];
    if (requested(out.positions)) {
      const token_position p = in.grid.position(src);
      out.positions(j, 0) = static_cast<std::int32_t>(p.t);
      out.positions(j, 1) = static_cast<std::int32_t>(p.h);
      out.positions(j, 2) = static_cast<std::int32_t>(p.w);
    }
  }
  if (requested(out.assign))
    for (index_t o = 0; o < n; ++o) out.assign(o) = assign(o);
  return status::ok;
}

template <class Arch, class Chain>
std::size_t chain_workspace_bytes(const cpu<Arch>& exec, const Chain& chain, const problem& prob) {
  if (check_exec(exec) != status::ok || exec.nth != 1 || chain.stage_count() == 0) return 0;
  arena counting;
  const chain_scratch s = carve_chain<Arch>(counting, chain, prob);
  return s.shape.code == status::ok ? counting.used() : 0;
}

}  // namespace detail

/// A pipeline on CPU: one share (nth = 1); fp32/fp16/bf16 in and out, the input type between
/// stages.
template <class Arch, class... Stages>
struct backend<pipeline<Stages...>, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const pipeline<Stages...>& p, const problem& prob) {
    return detail::chain_workspace_bytes(exec, detail::as_chain(p), prob);
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const pipeline<Stages...>& p, const pipeline_inputs<Ein>& in,
                      const pipeline_outputs<Eout>& out, workspace ws) {
    return detail::run_chain(exec, detail::as_chain(p), in, out, ws);
  }
};

}  // namespace tokred
