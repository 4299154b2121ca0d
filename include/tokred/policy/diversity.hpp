// tokred/policy/diversity.hpp — keep a diverse subset: DivPrune's max-min diversity, k-center
// (farthest-point) coverage, max-min diversity weighted by importance, and CDPruner's
// conditional DPP.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/diversity.hpp> and <tokred/cpu/dpp.hpp>.
// The first three are greedy max-min selections: after the first pick, each step keeps the token
// whose distance to the nearest kept token (times its importance, for `importance_diversity`) is
// largest, ties to the lower index. `cdpruner` is a greedy MAP of a determinantal point process.
// Similarities are computed from `features` (or from the token rows themselves), and whole rows
// are moved.
//
// Outputs, each optional (an empty view means "not requested"):
//   tokens    (kept, dim)  the kept rows, in original order (ascending source)
//   source    (kept,)      the original index of each kept token, ascending
//   positions (kept, 3)    the original (t, h, w) of each kept token
//   picks     (kept,)      the same indices in greedy pick order (the original's return value)
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// DivPrune (Alvar et al., CVPR 2025; vbdi/divprune): greedy max-min diversity over the cosine
/// distance d(i, j) = 1 − cos(x_i, x_j).
///
/// The first pick is the token whose second-smallest distance in its column of the distance
/// matrix — its own ≈ 0 included, so normally the distance to its nearest other token — is
/// largest; every later pick maximises the minimum distance to the tokens already kept. Ties go
/// to the lower index (torch.argmax). The original keeps `round(r · N)` (Python round, half to
/// even) of one global sequence: `divprune::original(r)`.
///
/// The original does not remove kept tokens from the candidates, so with duplicated tokens it
/// can pick the same index twice. tokred never does unless `allow_repeats` asks for the
/// original's behaviour; the count is the same either way, and a repeated index is emitted as
/// many times as it was picked.
///
/// `widen_once` (divprune, kcenter, importance_diversity): widen fp16 rows once per group into an
/// fp32 copy in the workspace and compare the copies. The same picks, bit for bit (widening is
/// exact and the pair kernel sums in the same order); for builds whose ISA has no fp16
/// conversion instruction (x86-64's baseline SSE2), where every pair would widen both rows in
/// software. `workspace_bytes` then counts group × dim floats per share whatever the element
/// type; the copy is made for fp16 rows only, and only in builds without that instruction.
struct divprune {
  keep_budget keep;              ///< no default; the original is ratio(r, rounding::half_even)
  scope within = scope::global;  ///< the original uses one global budget
  bool allow_repeats = false;    ///< compatibility: keep kept tokens among the candidates
  bool widen_once = false;       ///< fp16 rows widened once into the workspace (see above)

  /// The original's budget rule: `round(ratio · N)` over all tokens (0.098 in the paper).
  static constexpr divprune original(double ratio) noexcept {
    return {keep_budget::ratio(ratio, rounding::half_even), scope::global, true};
  }
};

/// k-center greedy (Gonzalez's farthest-point traversal): the coverage baseline. Starts at the
/// group's token `first`, then repeatedly keeps the token farthest (Euclidean distance) from its
/// nearest kept token — a 2-approximation of the minimum covering radius. Ties to the lower index.
struct kcenter {
  keep_budget keep;
  scope within = scope::global;
  index_t first = 0;         ///< group-local index of the first pick
  bool widen_once = false;  ///< fp16 rows widened once into the workspace (see divprune)
};

/// Max-min diversity weighted by importance: the first pick is the most important token, every
/// later pick maximises `score_i · min over kept j of d(i, j)` with DivPrune's cosine distance.
/// Scores come from any scoring policy ([CLS] attention, query relevance, …) and must be ≥ 0;
/// a NaN score ranks last. Ties to the lower index.
struct importance_diversity {
  keep_budget keep;
  scope within = scope::global;
  bool widen_once = false;  ///< fp16 rows widened once into the workspace (see divprune)
};

/// How CDPruner's kernel combines the cosine similarity S with the relevance r.
enum class dpp_kernel {
  /// OpenVINO GenAI's CDPruner: K_ij = S_ij·(1 − w) + S_ij·r_i·r_j·w with relevance weight w, and
  /// r = (m − min m) / (max m − min m + 1e-6) from the relevance m.
  openvino,
  /// The original research code (Theia-4869/CDPruner): K_ij = r_i·S_ij·r_j, with
  /// r = (−m − min(−m) + 1e-6) / (max(−m) − min(−m)) (it negates CLIP relevance); no weight.
  original,
};

/// CDPruner (Zhang et al., 2025), conditional DPP as OpenVINO GenAI ships it: the greedy MAP of a
/// determinantal point process whose kernel couples diversity (cosine similarity S between the
/// compared rows, each normalised as x / sqrt(‖x‖² + 1e-6)) with relevance to the instruction
/// (`dpp_kernel`). Greedy MAP by the incremental Cholesky update of Chen et al. (2018), as
/// OpenVINO computes it: the pivot is 1/sqrt(d² + 1e-6), coefficients below 1e-6 in magnitude are
/// skipped, a NaN gain becomes −FLT_MAX; ties to the lower index. Kept tokens in original order.
///
/// `split` runs the DPP on the two halves [0, ⌊n/2⌋) and [⌊n/2⌋, n) of each group independently
/// (each with its own relevance normalisation), keeping ⌊k/2⌋ and ⌈k/2⌉ — OpenVINO's CPU split,
/// on by default there. `cdpruner::openvino(ratio)` gives OpenVINO's parameters.
struct cdpruner {
  keep_budget keep;
  float relevance_weight = 0.5f;  ///< w in [0, 1] (openvino kernel; the original has none)
  dpp_kernel kernel = dpp_kernel::openvino;
  bool split = false;
  scope within = scope::global;  ///< per_frame = OpenVINO's frame chunking (one DPP per frame)

  /// OpenVINO GenAI's `pruning_ratio` (percent pruned, 0–99) and `relevance_weight`: keeps
  /// std::round(n · (1 − ratio/100)) of each frame, split into halves (its defaults).
  static constexpr cdpruner openvino(int pruning_ratio, float relevance_weight = 0.5f) noexcept {
    return {keep_budget::ratio(1.0 - pruning_ratio / 100.0, rounding::half_away), relevance_weight,
            dpp_kernel::openvino, true, scope::per_frame};
  }
};

/// Inputs of the diversity selections.
template <class E, class Space = host_space>
struct diversity_inputs {
  using space = Space;
  token_grid grid;                      ///< (T, H, W), N = T·H·W
  view<const E, 2, Space> tokens;       // (tokens, dim) the rows moved
  view<const E, 2, Space> features;     // (tokens, feature_dim) compared; empty: compare `tokens`
  view<const float, 1, Space> scores;   // (tokens,) importance_diversity: importance (required);
                                        //   cdpruner: relevance m (optional, instead of `query`)
  view<const E, 2, Space> query;        // (queries, feature_dim) cdpruner: m_i = mean over queries
                                        //   of the cosine to row i; neither given: m = 0
};

/// Outputs of the diversity selections: those of every selection, plus the pick order.
template <class E, class Space = host_space>
struct diversity_outputs : selection_outputs<E, Space> {
  view<std::int64_t, 1, Space> picks;  // (kept,) greedy pick order
};

namespace detail {

template <class P>
inline constexpr bool is_diversity_v = std::is_same_v<P, divprune> || std::is_same_v<P, kcenter> ||
                                       std::is_same_v<P, importance_diversity> ||
                                       std::is_same_v<P, cdpruner>;

/// The kept count of a diversity policy (the budgeted selections' rule), or why there is none.
template <class P>
count_result diversity_count(const P& p, const token_grid& grid) noexcept {
  const count_result c = selection_count(p.keep, p.within, grid);
  if constexpr (std::is_same_v<P, kcenter>) {
    if (c.code == status::ok &&
        (p.first < 0 || p.first >= groups_of(p.within, grid).group_tokens))
      return {status::invalid_parameter, 0};
  }
  if constexpr (std::is_same_v<P, cdpruner>) {
    if (c.code == status::ok && !(p.relevance_weight >= 0.0f && p.relevance_weight <= 1.0f))
      return {status::invalid_parameter, 0};
  }
  return c;
}

/// The rows distances are computed from: `features` when given, else the tokens.
template <class E, class Space>
view<const E, 2, Space> compared_rows(const diversity_inputs<E, Space>& in) noexcept {
  return requested(in.features) ? in.features : in.tokens;
}

/// Whether `P` reads `in.scores`: importance_diversity always, cdpruner when they are given.
template <class P, class E, class Space>
bool reads_scores(const diversity_inputs<E, Space>& in) noexcept {
  return std::is_same_v<P, importance_diversity> || (std::is_same_v<P, cdpruner> && requested(in.scores));
}

/// Whether `P` reads `in.query`: cdpruner, when it is given and no scores are.
template <class P, class E, class Space>
bool reads_query(const diversity_inputs<E, Space>& in) noexcept {
  return std::is_same_v<P, cdpruner> && !reads_scores<P>(in) && requested(in.query);
}

/// Every check of a diversity selection, in the documented order: budget and grid, compared
/// rows, scores (importance_diversity), outputs, aliasing.
template <class P, class Ein, class Eout, class Space>
status check_diversity(const P& p, const diversity_inputs<Ein, Space>& in,
                       const diversity_outputs<Eout, Space>& out) noexcept {
  const count_result kept = diversity_count(p, in.grid);
  if (kept.code != status::ok) return kept.code;
  const index_t n = in.grid.tokens();
  const view<const Ein, 2, Space> rows = compared_rows(in);
  if (status s = check_view(rows, {n, rows.extent(1)}); s != status::ok) return s;
  if (rows.extent(1) == 0) return status::empty_input;
  if (reads_scores<P>(in))
    if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  const view<const float, 1, Space> scores = reads_scores<P>(in) ? in.scores : view<const float, 1, Space>{};
  if (reads_query<P>(in)) {
    if (status s = check_view(in.query, {in.query.extent(0), rows.extent(1)}); s != status::ok) return s;
    if (in.query.extent(0) == 0) return status::empty_input;
  }
  const view<const Ein, 2, Space> query = reads_query<P>(in) ? in.query : view<const Ein, 2, Space>{};
  const selection_outputs<Eout, Space>& base = out;
  if (status s = check_rows_and_outputs(in.tokens, n, scores, {}, base, kept.count); s != status::ok)
    return s;
  if (requested(out.picks)) {
    if (status s = check_view(out.picks, {kept.count}); s != status::ok) return s;
    if (may_overlap(out.picks, scores) || may_overlap(out.picks, out.source) ||
        may_overlap(out.picks, out.positions) ||
        (requested(out.tokens) && may_overlap(out.picks, out.tokens)) ||
        may_overlap(out.picks, rows) || may_overlap(out.picks, query) ||
        (requested(out.tokens) && may_overlap(out.picks, in.tokens)))
      return status::aliasing;
  }
  const auto hits = [&](const auto& o) {
    return requested(o) && (may_overlap(o, rows) || may_overlap(o, query));
  };
  if (hits(out.source) || hits(out.positions) || hits(out.tokens)) return status::aliasing;
  return status::ok;
}

}  // namespace detail

/// Exact number of tokens a diversity selection keeps on `prob`; 0 exactly when
/// `can_implement` fails.
template <class P, std::enable_if_t<detail::is_diversity_v<P>, int> = 0>
index_t retained_count(const P& p, const problem& prob) noexcept {
  return detail::diversity_count(p, prob.grid).count;
}

/// `ok`, or the status `apply` would return for the budget on this grid.
template <class P, std::enable_if_t<detail::is_diversity_v<P>, int> = 0>
status can_implement(const P& p, const problem& prob) noexcept {
  return detail::diversity_count(p, prob.grid).code;
}

}  // namespace tokred
