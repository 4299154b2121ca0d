// tokred/policy/clustering.hpp — merge tokens by clustering: DPC-kNN (density peaks with k nearest
// neighbours) picks cluster centers, every other token joins its nearest center, and each
// cluster becomes one token.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/clustering.hpp>. It reads the
// `merge_inputs` and writes the `merge_outputs` of <tokred/policy/merge.hpp>, each optional:
//   tokens    (clusters, dim)  one token per cluster (cluster_merge)
//   source    (clusters,)      the center's input token (its carried source when given)
//   positions (clusters, 3)    the center's (t, h, w) (its carried position when given)
//   sizes     (clusters,)      the cluster's total size: 1 + its members without carried sizes
//   assign    (tokens,)        the output slot of every input token (never −1)
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// How a cluster's token is formed from its center row x_c and its member rows x_m.
enum class cluster_merge {
  blend,       ///< β·x_c + (1 − β)·mean(x_m); x_c alone when the cluster has no member (HoliTom)
  group_mean,  ///< the mean of center and members, size-weighted with carried sizes (NO_BETA)
};

/// DPC-kNN clustering merge (Du, Ding and Jia, "Study on density peaks clustering based on
/// k-nearest neighbors and principal component analysis", Knowledge-Based Systems 2016; as used
/// by HoliTom, Shao et al., arXiv 2505.21334, cokeshao/HoliTom `cluster_dpc_knn` +
/// `merge_tokens_by_clustering`, which follow TCFormer's `cluster_dpc_knn`), on the N = T·H·W
/// tokens of `grid` as one set, over the compared rows x (`metric`, or the tokens; width C):
///
///   dist      d_ij = ‖x_i − x_j‖ / √C                                   (fp32, d_ii = 0)
///   density   ρ_i = exp(−(1/k)·Σ of the k smallest d_ij² over j), k = min(k, clusters);
///             the k smallest include j = i at 0
///   order     j ranks above i when ρ_j > ρ_i, or ρ_j = ρ_i and j < i (equal density: the lower
///             index counts as denser), a strict total order
///   δ         δ_i = min of d_ij over the j ranking above i; for the top token (no j above it)
///             δ = the largest d_ij over the whole matrix
///   centers   the `clusters` tokens of highest score δ_i·ρ_i, ties to the lower index, NaN
///             last; listed in index order
///   assign    every other token joins the center at the smallest d, the lower center on ties
///   merge     one token per center (cluster_merge), sizes the cluster's total size
///
/// Output order: the centers in index order (as the original's sorted `index_center`).
/// Exactly `clusters` tokens come out. HoliTom's defaults: k = 7, β = 0.6, blend.
///
/// Determinism (the original is not deterministic): the original adds U(0, 1)·10⁻⁶ noise to
/// every density so that no two are equal; tokred adds none and breaks density ties by index as
/// above. The noise also reorders densities closer than about 10⁻⁶, so the original's centers
/// can differ from tokred's (and from one run to the next) on such near-ties; with clusters = 1,
/// k = 1 and every density is exactly 1, so the original's center is whichever token drew the
/// largest noise, tokred's is token 0. The original's `cdist` above 25 rows computes
/// ‖x‖² + ‖y‖² − 2x·y in fp32 (its distances differ from the exact difference form in the
/// last bits, and its d_ii is not always 0); tokred sums (x_i − x_j)² directly.
///
/// Special values: a zero row is an ordinary point (Euclidean distances need no norm). A compared
/// row whose squared norm is not finite in fp32 (a NaN or inf value, or values too large to
/// square) is refused with `invalid_parameter`. Finite rows whose distance still overflows fp32
/// get d = +inf: their density can be 0 and a score inf·0 = NaN, which ranks last.
///
/// With group_mean and carried sizes s, a cluster's token is Σ s·x / Σ s over center and members,
/// so Σ sizes·tokens over the outputs equals Σ s·x over the inputs (ToMe's size tracking); blend
/// (the original's default) does not keep that sum. Blend with carried sizes takes the members'
/// size-weighted mean. Statuses and their check order: `backend<dpc_knn, cpu<Arch>>` and
/// docs/policies/dpc_knn.md.
struct dpc_knn {
  index_t clusters = 0;  ///< output tokens (the original's cluster_num); no default: must be set
  index_t k = 7;         ///< neighbours of the density (the original's K), used as min(k, clusters)
  float beta = 0.6f;     ///< the center's weight in blend, in [0, 1]
  cluster_merge merge = cluster_merge::blend;
};

namespace detail {

/// The most tokens dpc_knn clusters in one call: its N × N distances (4·N² bytes) stay addressable.
inline constexpr index_t max_cluster_tokens = index_t{1} << 24;

/// dpc_knn's counts: clusters and the k used, or why there are none.
struct cluster_count {
  status code = status::ok;
  index_t kept = 0;       ///< clusters
  index_t neighbours = 0; ///< min(k, clusters)
};

/// The counts of `p` on `grid`, checked in this order: `invalid_parameter` (clusters or k
/// negative, k = 0, β outside [0, 1] or NaN, an unknown merge), the grid (`shape_mismatch`,
/// also above 2²⁴ tokens; `empty_input`), `invalid_budget` (clusters = 0),
/// `budget_exceeds_input` (clusters > N).
inline cluster_count dpc_knn_count(const dpc_knn& p, const token_grid& grid) noexcept {
  const bool known = p.merge == cluster_merge::blend || p.merge == cluster_merge::group_mean;
  if (p.clusters < 0 || p.k <= 0 || !(p.beta >= 0.0f && p.beta <= 1.0f) || !known)
    return {status::invalid_parameter};
  if (status s = check_merge_grid(grid); s != status::ok) return {s};
  if (grid.tokens() > max_cluster_tokens) return {status::shape_mismatch};
  if (p.clusters == 0) return {status::invalid_budget};
  if (p.clusters > grid.tokens()) return {status::budget_exceeds_input};
  return {status::ok, p.clusters, p.k < p.clusters ? p.k : p.clusters};
}

/// Every check of dpc_knn that needs no access to values, in the documented order: the counts
/// (`dpc_knn_count`), the compared rows (N, C ≥ 1), the token rows and out.tokens (when
/// requested), the carried inputs (sizes, source, positions; a tome matching given in
/// `similarity` or `partner` is `invalid_parameter`), the outputs, overlaps.
template <class Ein, class Eout, class Space>
cluster_count check_dpc_knn(const dpc_knn& p, const merge_inputs<Ein, Space>& in,
                            const merge_outputs<Eout, Space>& out) noexcept {
  const cluster_count c = dpc_knn_count(p, in.grid);
  if (c.code != status::ok) return c;
  const auto fail = [](status s) { return cluster_count{s}; };
  const index_t n = in.grid.tokens(), kept = c.kept;
  if (status s = check_compared_rows(in); s != status::ok) return fail(s);
  if (status s = check_row_output(in.tokens, n, out.tokens, kept); s != status::ok) return fail(s);
  if (status s = check_carried(in); s != status::ok) return fail(s);
  if (requested(in.similarity) || requested(in.partner)) return fail(status::invalid_parameter);
  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const status s = check_merge_outputs(out, kept, n, compared_rows(in), read_tokens, in.sizes, in.source,
                                       in.positions);
  return s != status::ok ? fail(s) : c;
}

}  // namespace detail

/// Exact number of tokens dpc_knn returns on `prob`: `clusters`. 0 exactly when `can_implement`
/// fails.
inline index_t retained_count(const dpc_knn& p, const problem& prob) noexcept {
  return detail::dpc_knn_count(p, prob.grid).kept;
}

/// `ok`, or why dpc_knn cannot run on this grid: `invalid_parameter`, `shape_mismatch`,
/// `empty_input`, `invalid_budget`, `budget_exceeds_input` (see `detail::dpc_knn_count`).
inline status can_implement(const dpc_knn& p, const problem& prob) noexcept {
  return detail::dpc_knn_count(p, prob.grid).code;
}

}  // namespace tokred
