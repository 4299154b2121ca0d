// tokred/cpu/clustering.hpp — the CPU backend of dpc_knn.
//
// Five steps, on one N × N matrix of distances kept in the workspace (4·N² bytes: 37.5 MiB for
// the 3136 tokens of a 16-frame static window, a size the workspace can hold, where recomputing
// would do the O(N²·C) product twice):
//   1. distances  every pair's squared distance from the canonical kernel (`row_set::sweep`,
//                 <tokred/cpu/similarity.hpp>) on the upper triangle, in blocks of rows that stay
//                 in L2, mirrored; d = fp32(√s) / fp32(√C) and the largest d, O(N²·C/2);
//   2. density    per row, the k smallest d (nth_element on a copy of the row, then sorted), their
//                 squares summed in double in ascending order, ρ = fp32(exp(−sum / k)), O(N²);
//   3. δ, score   per row, the smallest d to a token ranking above it, score = δ·ρ, O(N²);
//   4. centers    the top `clusters` scores by radix select (`select_largest`, ties to the lower
//                 index, NaN last), in index order; each other token's nearest center, members
//                 grouped by a stable counting sort, O(N·clusters);
//   5. write      each cluster's row from its members (`weighted_mean_row`, <tokred/cpu/merge.hpp>),
//                 sizes, source, positions, assign, O(N·D).
//
// Summing the squares in double makes every product exact (a float times a float fits a double)
// and a sum of k of them (7 by default) all but exact, so the density has the same bits whether
// or not the compiler fuses a multiply into the add, and a plain loop reproduces it.
//
// Shares. Steps 2–5 read every distance, step 3 every density; dividing step 1 over shares
// would need the others' rows before step 2 can start, i.e. one share waiting for the others.
// So share 0 does all five steps and the other shares check the inputs (values included) and
// return having written nothing. Give this policy one thread, or run several sets (windows,
// frames) on different threads: one set of 3136 tokens of 3584 values is a single task of
// 1.8·10¹⁰ multiply-adds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/merge.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/clustering.hpp"

namespace tokred {
namespace detail {

/// The rows of one block of the distance fill: a block of j rows is reused by every i row of
/// its block while it sits in L2 (32 rows of 3584 fp32 values: 448 KiB). The whole of dpc_knn at
/// N = 784 / 3136, C = 3584 fp32 (AVX-512, 2 MiB L2 a core), in distance flops per second:
/// blocks of 8 rows 28 / 22 G, 32 rows 31 / 29 G, 128 rows 25 / 25 G, no blocking 17 / 16 G.
inline constexpr index_t distance_block = 32;

/// The scratch of dpc_knn (one carve: only share 0 works).
struct dpc_scratch {
  float* dist = nullptr;            // (n, n) d_ij
  float* row = nullptr;             // (n,) a copy of one row, for the k smallest
  float* density = nullptr;         // (n,) ρ
  float* score = nullptr;           // (n,) δ·ρ
  std::uint32_t* keys = nullptr;    // (n,) select_largest's scratch
  std::int64_t* centers = nullptr;  // (clusters,) ascending
  index_t* slot = nullptr;          // (n,) output slot of every token
  index_t* offsets = nullptr;       // (clusters + 1,) cluster q: members[offsets[q] … offsets[q+1])
  index_t* cursor = nullptr;        // (clusters,) where cluster q's next member goes
  index_t* members = nullptr;       // (n,) each cluster: its center, then its members ascending
  float* mean = nullptr;            // (dim,) the members' mean of one blended cluster

  static dpc_scratch carve(arena& ar, index_t n, index_t clusters, index_t dim) {
    dpc_scratch s;
    s.dist = ar.take<float>(n, n);
    s.row = ar.take<float>(n);
    s.density = ar.take<float>(n);
    s.score = ar.take<float>(n);
    s.keys = ar.take<std::uint32_t>(n);
    s.centers = ar.take<std::int64_t>(clusters);
    s.slot = ar.take<index_t>(n);
    s.offsets = ar.take<index_t>(clusters + 1);
    s.cursor = ar.take<index_t>(clusters);
    s.members = ar.take<index_t>(n);
    s.mean = ar.take<float>(dim);
    return s;
  }
};

/// Step 1: d_ij for every pair into `dist` (n × n, row-major), d_ii = 0; returns the largest d.
/// Each pair's squared distance is one call of the canonical kernel, whose bits do not depend on
/// which row is the shared one, so the matrix is symmetric to the last bit.
template <class Arch, class E>
float fill_distances(const view<const E, 2>& rows, float* dist) noexcept {  // rows: (n, C)
  const row_set<Arch, E> set{rows};
  const index_t n = set.size();
  const float root_c = static_cast<float>(std::sqrt(static_cast<double>(set.dim())));
  float largest = 0.0f;
  for (index_t i = 0; i < n; ++i) dist[i * n + i] = 0.0f;
  for (index_t i0 = 0; i0 < n; i0 += distance_block) {
    const index_t i1 = std::min(n, i0 + distance_block);
    for (index_t j0 = i0; j0 < n; j0 += distance_block) {
      const index_t j1 = std::min(n, j0 + distance_block);
      for (index_t i = i0; i < i1; ++i)
        set.template sweep<pair_op::squared_distance>(i, std::max(j0, i + 1), j1, [&](index_t j, float s) {
          const float d = std::sqrt(s) / root_c;
          dist[i * n + j] = dist[j * n + i] = d;
          largest = std::max(largest, d);
        });
    }
  }
  return largest;
}

/// Step 2: ρ_i = fp32(exp(−(Σ of the k smallest d_ij²) / k)), the squares summed in double in
/// ascending order of d.
inline void densities(const float* dist, index_t n, index_t k, float* row, float* density) noexcept {
  for (index_t i = 0; i < n; ++i) {
    std::copy(dist + i * n, dist + (i + 1) * n, row);
    std::nth_element(row, row + (k - 1), row + n);
    std::sort(row, row + k);
    double sum = 0.0;
    for (index_t t = 0; t < k; ++t) sum += static_cast<double>(row[t]) * static_cast<double>(row[t]);
    density[i] = static_cast<float>(std::exp(-sum / static_cast<double>(k)));
  }
}

/// Step 3: score_i = δ_i·ρ_i, δ_i the smallest d_ij over the j ranking above i (ρ_j > ρ_i, or
/// ρ_j = ρ_i and j < i), `largest` when none does. Densities are never NaN (exp of a non-positive
/// number or of −inf), so the order is total.
inline void scores(const float* dist, index_t n, const float* density, float largest, float* score) noexcept {
  for (index_t i = 0; i < n; ++i) {
    const float* d = dist + i * n;
    const float rho = density[i];
    float delta = std::numeric_limits<float>::infinity();
    bool above = false;
    for (index_t j = 0; j < i; ++j)
      if (density[j] >= rho) above = true, delta = std::min(delta, d[j]);
    for (index_t j = i + 1; j < n; ++j)
      if (density[j] > rho) above = true, delta = std::min(delta, d[j]);
    score[i] = (above ? delta : largest) * rho;
  }
}

/// Step 4: the centers, every token's slot and each cluster's group (center first, then its
/// members ascending). A token's nearest center is found over the centers in index order,
/// taking only a strictly smaller distance: ties keep the lower center.
inline void cluster_layout(const float* dist, index_t n, index_t clusters, const dpc_scratch& s) noexcept {
  const auto key_of = [&](index_t i) { return score_key(float_bits(s.score[i])); };
  select_largest(key_of, n, clusters, 0, s.keys, s.centers);
  std::fill(s.slot, s.slot + n, index_t{-1});
  for (index_t q = 0; q < clusters; ++q) s.slot[s.centers[q]] = q;
  for (index_t i = 0; i < n; ++i) {
    if (s.slot[i] >= 0) continue;
    const float* d = dist + i * n;
    index_t best = 0;
    float nearest = d[s.centers[0]];
    for (index_t q = 1; q < clusters; ++q)
      if (d[s.centers[q]] < nearest) nearest = d[s.centers[q]], best = q;
    s.slot[i] = ~best;  // a member of cluster `best`, told apart from the centers until placed
  }
  // Each center first, then its members ascending.
  group_layout(
      clusters, n, [&](index_t i) { return s.slot[i] < 0 ? ~s.slot[i] : index_t{-1}; }, [](index_t i) { return i; },
      [&](index_t q) { return s.centers[q]; }, s.offsets, s.cursor, s.members);
  for (index_t i = 0; i < n; ++i)
    if (s.slot[i] < 0) s.slot[i] = ~s.slot[i];
}

/// Step 5 for cluster q: its row from the group `members[0 … count)` (the center first), with
/// the weights of carried sizes or 1.
template <class Arch, class Ein, class Eout, class Weight>
void cluster_row(const dpc_knn& p, const view<const Ein, 2>& tokens,  // (tokens, dim)
                 const index_t* group, index_t count, const Weight& weight, float total, float* mean,
                 Eout* out, index_t out_stride) noexcept {
  const index_t dim = tokens.extent(1);
  if (p.merge == cluster_merge::group_mean)
    return weighted_mean_row<Arch>(tokens, group, count, weight, total, out, out_stride);
  const Ein* center = &tokens(group[0], 0);
  if (count == 1) return copy_row<Arch>(center, tokens.stride(1), out, out_stride, dim);
  weighted_mean_row<Arch>(tokens, group + 1, count - 1, weight, total_weight(group + 1, count - 1, weight), mean, 1);
  const float rest = 1.0f - p.beta;
  for (index_t c = 0; c < dim; ++c) {
    const float x = to_float(center[c * tokens.stride(1)]);
    out[c * out_stride] = from_float<Eout>(multiply_add<Arch>(p.beta, x, rest * mean[c]));
  }
}

/// Step 5: every output.
template <class Arch, class Ein, class Eout>
void cluster_write(const dpc_knn& p, const merge_inputs<Ein>& in, const merge_outputs<Eout>& out,
                   const dpc_scratch& s) noexcept {
  const auto weight = carried_weight(in.sizes);
  for (index_t q = 0; q < p.clusters; ++q) {
    const index_t* group = s.members + s.offsets[q];
    const index_t count = s.offsets[q + 1] - s.offsets[q];
    const float total = total_weight(group, count, weight);
    if (requested(out.sizes)) out.sizes(q) = total;
    if (requested(out.tokens))
      cluster_row<Arch>(p, in.tokens, group, count, weight, total, s.mean, &out.tokens(q, 0), out.tokens.stride(1));
    write_provenance(in, out, q, group[0]);  // the center's
  }
  if (requested(out.assign))
    for (index_t i = 0; i < in.grid.tokens(); ++i) out.assign(i) = s.slot[i];
}

/// The value checks of dpc_knn, made by every share before anything is written:
/// `invalid_parameter` for a compared row whose squared norm is not finite in fp32, then for a
/// carried size that is not a positive finite number.
template <class Arch, class E>
status check_cluster_values(const merge_inputs<E>& in) noexcept {
  if (status s = check_finite_rows<Arch>(compared_rows(in)); s != status::ok) return s;
  return check_carried_sizes(in.sizes);
}

}  // namespace detail

/// dpc_knn on CPU. See the top of this file for the steps; share 0 does all the work, the other
/// shares check and return. Checks, in order: the exec (`invalid_exec`); `detail::check_dpc_knn`
/// (parameters, grid and count; compared rows; token rows and out.tokens; carried inputs;
/// outputs; overlaps); the workspace;
/// `detail::check_cluster_values` (non-finite compared rows, carried sizes).
/// Workspace: 4·N² bytes of distances plus about 40·N + 28·clusters + 4·dim, the same for any nth.
template <class Arch>
struct backend<dpc_knn, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const dpc_knn& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok || prob.dim < 0) return 0;
    detail::arena counter;
    detail::dpc_scratch::carve(counter, prob.grid.tokens(), p.clusters, prob.dim);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const dpc_knn& p, const merge_inputs<Ein>& in,
                      const merge_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    const detail::cluster_count c = detail::check_dpc_knn(p, in, out);
    if (c.code != status::ok) return c.code;
    const index_t n = in.grid.tokens();
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    if (status s = detail::check_cluster_values<Arch>(in); s != status::ok) return s;
    if (exec.ith != 0) return status::ok;

    detail::arena carver(ws);
    const detail::dpc_scratch s = detail::dpc_scratch::carve(carver, n, p.clusters, in.tokens.extent(1));
    if (!carver.fits()) return status::workspace_too_small;
    const float largest = detail::fill_distances<Arch>(detail::compared_rows(in), s.dist);
    detail::densities(s.dist, n, c.neighbours, s.row, s.density);
    detail::scores(s.dist, n, s.density, largest, s.score);
    detail::cluster_layout(s.dist, n, p.clusters, s);
    detail::cluster_write<Arch>(p, in, out, s);
    return status::ok;
  }
};

}  // namespace tokred
