// tokred/policy/framefusion.hpp — FrameFusion: merge each video token into the same patch slot of
// the previous frame while they stay similar, under a compute budget, then prune by importance.
//
// WHAT the policies compute; the HOW lives in <tokred/cpu/framefusion.hpp>. `framefusion` is one
// merge layer. It writes the `merge_outputs` of <tokred/policy/merge.hpp>, each optional, sized by
// the static upper bound (the input rows: the merged count depends on the data), plus `count`:
//   tokens    (rows, dim)  rows [0, count): each chain's mean row, in input order
//   source    (rows,)      the chain's head: its earliest frame's token, in original terms
//   positions (rows, 3)    the original (t, h, w) of that token
//   sizes     (rows,)      the originals the chain stands for (its carried sizes summed)
//   assign    (rows,)      the output slot of every input row (merging drops nothing)
//   count     (1,)         how many rows were written
// Rows past the count are left as they were. The pruning half is a top-k over the visual tokens
// left (`topk` of <tokred/policy/selection.hpp> with `framefusion_prune_budget`).
#pragma once

#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// How a chain's rows are averaged.
enum class merge_weights {
  uniform,  ///< (x_head + Σ members) / (1 + members): the original, whatever the carried sizes
  by_size,  ///< Σ s·x / Σ s with the carried sizes: a cascade of merges stays a mean of originals
};

/// Where FrameFusion stands after a merge layer (the original's two `finish_*` flags).
enum class framefusion_phase : std::int32_t {
  merging = 0,   ///< merge again after the next layer (ratio ≥ ratio_lower_bound, under the bound)
  pruning = 1,   ///< merging finished; prune once at the next layer (`framefusion_prune_budget`)
  finished = 2,  ///< the top-k branch ran: merging and pruning are both finished
};

/// FrameFusion's merge layer (Fu et al., "FrameFusion: Combining Similarity and Importance for
/// Video Token Reduction on Large Vision Language Models", ICCV 2025, arXiv 2501.01986;
/// thu-nics/FrameFusion, `FrameFusion.forward`), on the visual rows of one video:
///
///   slots     row r holds original token src(r) (`source`, or r itself), slot(r) = src(r) mod H·W:
///             its patch position (h, w). Rows of one slot in row order are its frames in order.
///   sim(r)    cos(m_r, m_prev), prev = the previous row of r's slot, computed in fp32 without an
///             epsilon: a zero row gives NaN, as the original's x·y / (‖x‖‖y‖); −2 (the original's
///             IGNORE) for the first row of each slot, which therefore never merges
///   M         the rows with sim ≥ threshold (NaN never passes); ratio = |M| / rows, in double
///   bound     u = `framefusion_sparsity(cost, history, layers)`
///   branch    ratio < u: merge M; phase `pruning` if ratio < ratio_lower_bound, else `merging`.
///             ratio ≥ u: merge only the ⌊u·rows⌋ rows of highest sim (ties to the lower row,
///             NaN last; torch's topk leaves ties open and ranks NaN first); phase `finished`.
///   chains    every merged row joins its slot's previous row, so a run of merged frames
///             collapses into the frame just before it (the chain's head); each head's row
///             becomes the mean of its chain, head first then members in frame order, summed in
///             fp32 (`merge_weights`), and the members are removed.
///
/// Output order: input order with the members gone (the original keeps the head in place and
/// its RoPE position). `ratio` is the value the original appends to its sparsity list: the caller
/// appends it to `history` for the next layer when the phase is not `finished`.
///
/// Defaults are the original's: cost 0.3, similarity 0.6 (LLaVA-Video; the paper uses 0.5 for
/// Qwen2-VL and InternVL2.5, the scripts 0.7 for MiniCPM-V and NVILA), ratio_lower_bound 0.1,
/// layers 28 (the original hard-codes Qwen2-7B's 28 layers for every model: set the LLM's own to
/// fix the budget). With an empty history the bound is 1 − cost = 0.7.
///
/// Statuses and their check order: `backend<framefusion, cpu<Arch>>` and docs/policies/framefusion.md.
struct framefusion {
  float threshold = 0.6f;          ///< similarity_lower_bound: sim ≥ threshold merges; > −2
  double cost = 0.3;               ///< the share of the visual-token × layer compute to spend
  double ratio_lower_bound = 0.1;  ///< a merged fraction below this finishes merging
  index_t layers = 28;             ///< LLM layers in the budget (the original's hard-coded 28)
  view<const double, 1> history;   ///< (layers merged so far,) the sparsity list; empty: first
  merge_weights weights = merge_weights::uniform;
};

/// The similarity step of framefusion alone: sim(r) of every input row, as framefusion computes
/// it. framefusion computes the same itself unless given them; run this first when several
/// threads should share that O(rows·D) work (each share computes its own range of rows).
struct framefusion_similarity {};

/// Inputs of framefusion and framefusion_similarity. framefusion_similarity reads `grid`,
/// `source` and the compared rows only.
template <class E, class Space = host_space>
struct framefusion_inputs {
  using space = Space;
  token_grid grid;                            // (T, H, W) of the original video tokens, N = T·H·W
  view<const E, 2, Space> tokens;             // (rows, dim) the visual rows; rows = N without source
  view<const E, 2, Space> metric;             // (rows, metric_dim) compared rows; empty: tokens
  view<const std::int64_t, 1, Space> source;  // (rows,) an earlier merge's source, in [0, N);
                                              //   empty: row r is original token r
  view<const float, 1, Space> sizes;          // (rows,) an earlier merge's sizes; empty: 1
  view<const float, 1, Space> similarity;     // (rows,) framefusion_similarity's output; empty:
                                              //   computed (a slot's first row is never read)
};

/// Outputs of framefusion: those of every merge, sized by the input rows, plus the count and the
/// state the next layer needs.
template <class E, class Space = host_space>
struct framefusion_outputs : merge_outputs<E, Space> {
  view<std::int64_t, 1, Space> count;   // (1,) required: rows written
  view<double, 1, Space> ratio;         // (1,) optional: |M| / rows (the sparsity to append)
  view<std::int32_t, 1, Space> phase;   // (1,) optional: a framefusion_phase
};

/// Outputs of framefusion_similarity.
template <class Space = host_space>
struct framefusion_similarity_outputs {
  using space = Space;
  view<float, 1, Space> similarity;  // (rows,) required
};

/// A budget bound, or why there is none.
struct sparsity_result {
  status code = status::ok;
  double sparsity = 0.0;
};

/// FrameFusion's budget (`_compute_pruning_ratio`): the sparsity the remaining layers need so that
/// the visual tokens cost `cost` of a full run, after merge layers of sparsity s_1 … s_k. With
/// P_i = Π_{j≤i}(1 − s_j) and used = Σ_i P_i, remain = layers·cost − used and
///   u = 1 − remain / ((layers − k)·P_k),  or 0 when that quotient exceeds 1,
/// in double as the original. Returns `invalid_parameter` (NaN cost, layers < 1, k ≥ layers: the
/// original divides by zero), `null_pointer` (a history without data), `invalid_ratio` (an s
/// outside [0, 1) or NaN) or `invalid_budget` (remain < 0: the original's "cost is too small").
inline sparsity_result framefusion_sparsity(double cost, const view<const double, 1>& history,
                                            index_t layers) noexcept {
  const index_t k = history.extent(0);
  if (std::isnan(cost) || layers < 1 || k >= layers) return {status::invalid_parameter};
  if (k > 0 && history.data_handle() == nullptr) return {status::null_pointer};
  double kept = 1.0, used = 0.0;
  for (index_t i = 0; i < k; ++i) {
    const double s = history(i);
    if (!(s >= 0.0 && s < 1.0)) return {status::invalid_ratio};
    kept *= 1.0 - s;
    used += kept;
  }
  const double remain = static_cast<double>(layers) * cost - used;
  if (remain < 0.0) return {status::invalid_budget};
  const double quotient = remain / (static_cast<double>(layers - k) * kept);
  return {status::ok, quotient > 1.0 ? 0.0 : 1.0 - quotient};
}

/// The bound of framefusion `p`: `framefusion_sparsity(p.cost, p.history, p.layers)`.
inline sparsity_result framefusion_sparsity(const framefusion& p) noexcept {
  return framefusion_sparsity(p.cost, p.history, p.layers);
}

/// FrameFusion's pruning budget for the layer after merging finished: of the n visual tokens
/// left, keep round(n·(1 − u)) (Python `round`, half to even, of the product in double) by the
/// last query's head-mean attention, with u = `framefusion_sparsity` of the history then:
/// `topk{framefusion_prune_budget(u)}`. Where that rounds to 0 the original drops every visual
/// token; topk returns `invalid_budget` instead.
constexpr keep_budget framefusion_prune_budget(double sparsity) noexcept {
  return keep_budget::ratio(1.0 - sparsity, rounding::half_even);
}

namespace detail {

/// The checks of framefusion's parameters and grid, in order: `invalid_parameter` (a threshold
/// that is NaN or ≤ −2 — at −2 the original merges across slots —, a NaN ratio_lower_bound, an
/// unknown merge_weights), the budget (`framefusion_sparsity`), the grid (`shape_mismatch`,
/// `empty_input`, more than 2³¹ − 1 tokens).
inline sparsity_result check_framefusion_problem(const framefusion& p, const token_grid& grid) noexcept {
  const bool known = p.weights == merge_weights::uniform || p.weights == merge_weights::by_size;
  if (!(p.threshold > -2.0f) || std::isnan(p.ratio_lower_bound) || !known) return {status::invalid_parameter};
  const sparsity_result bound = framefusion_sparsity(p);
  if (bound.code != status::ok) return bound;
  if (status s = check_group_grid(grid, scope::global); s != status::ok) return {s};
  return bound;
}

/// The input rows: the carried source's length, or N.
template <class E, class Space>
index_t framefusion_rows(const framefusion_inputs<E, Space>& in) noexcept {
  return requested(in.source) ? in.source.extent(0) : in.grid.tokens();
}

/// The rows similarities come from: `metric` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const framefusion_inputs<E, Space>& in) noexcept {
  return requested(in.metric) ? in.metric : in.tokens;
}

/// The checks both policies make of the rows (after the grid): the source (`empty_input` with
/// no rows, `null_pointer`, `shape_mismatch` above N rows), then the compared rows (rows,
/// metric_dim ≥ 1).
template <class E, class Space>
status check_framefusion_rows(const framefusion_inputs<E, Space>& in) noexcept {
  const index_t rows = framefusion_rows(in);
  if (requested(in.source)) {
    if (rows == 0) return status::empty_input;
    if (status s = check_view(in.source, {rows}); s != status::ok) return s;
    if (rows > in.grid.tokens()) return status::shape_mismatch;
  }
  return check_rows(compared_rows(in), rows);
}

/// Every check of framefusion that needs no access to values, in the documented order: parameters,
/// budget and grid; source and compared rows; token rows and out.tokens (when requested); carried
/// sizes and given similarity; the merge outputs; count, ratio and phase; overlaps. Returns the
/// bound on success.
template <class Ein, class Eout, class Space>
sparsity_result check_framefusion(const framefusion& p, const framefusion_inputs<Ein, Space>& in,
                                  const framefusion_outputs<Eout, Space>& out) noexcept {
  const sparsity_result bound = check_framefusion_problem(p, in.grid);
  if (bound.code != status::ok) return bound;
  const auto fail = [](status s) { return sparsity_result{s}; };
  const index_t rows = framefusion_rows(in);
  if (status s = check_framefusion_rows(in); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, rows, out.tokens, rows); s != status::ok) return fail(s);
  if (status s = check_optional_view(in.sizes, {rows}); s != status::ok) return fail(s);
  if (status s = check_optional_view(in.similarity, {rows}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.source, {rows}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.positions, {rows, index_t{3}}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.sizes, {rows}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.assign, {rows}); s != status::ok) return fail(s);
  if (status s = check_view(out.count, {index_t{1}}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.ratio, {index_t{1}}); s != status::ok) return fail(s);
  if (status s = check_optional_view(out.phase, {index_t{1}}); s != status::ok) return fail(s);

  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const auto hits_input = [&](const auto& o) {
    return overlaps_any(o, compared_rows(in), read_tokens, in.source, in.sizes, in.similarity, p.history);
  };
  const bool hit = hits_input(out.tokens) || hits_input(out.source) || hits_input(out.positions) ||
                   hits_input(out.sizes) || hits_input(out.assign) || hits_input(out.count) ||
                   hits_input(out.ratio) || hits_input(out.phase) ||
                   any_overlap(out.tokens, out.source, out.positions, out.sizes, out.assign, out.count, out.ratio,
                               out.phase);
  return hit ? fail(status::aliasing) : bound;
}

/// Every check of framefusion_similarity, in order: the grid; source and compared rows; the
/// output (rows,); overlaps.
template <class E, class Space>
status check_framefusion_similarity(const framefusion_inputs<E, Space>& in,
                                    const framefusion_similarity_outputs<Space>& out) noexcept {
  if (status s = check_group_grid(in.grid, scope::global); s != status::ok) return s;
  if (status s = check_framefusion_rows(in); s != status::ok) return s;
  if (status s = check_view(out.similarity, {framefusion_rows(in)}); s != status::ok) return s;
  return overlaps_any(out.similarity, compared_rows(in), in.source) ? status::aliasing : status::ok;
}

}  // namespace detail

/// The static upper bound of framefusion's count on `prob`: N = T·H·W (nothing merged; the count
/// is data-dependent and written to `count`). 0 exactly when `can_implement` fails. With a
/// carried source the bound is that source's length.
inline index_t retained_count(const framefusion& p, const problem& prob) noexcept {
  return detail::check_framefusion_problem(p, prob.grid).code == status::ok ? prob.grid.tokens() : 0;
}

/// `ok`, or why framefusion cannot run on this grid with this history: `invalid_parameter`,
/// `null_pointer`, `invalid_ratio`, `invalid_budget`, `shape_mismatch`, `empty_input` (see
/// `detail::check_framefusion_problem`).
inline status can_implement(const framefusion& p, const problem& prob) noexcept {
  return detail::check_framefusion_problem(p, prob.grid).code;
}

/// `ok`, or why framefusion_similarity cannot run on this grid (`shape_mismatch`, `empty_input`).
inline status can_implement(const framefusion_similarity&, const problem& prob) noexcept {
  return detail::check_group_grid(prob.grid, scope::global);
}

}  // namespace tokred
