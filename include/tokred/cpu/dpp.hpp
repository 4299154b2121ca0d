// tokred/cpu/dpp.hpp — the CPU backend of cdpruner: conditional-DPP greedy MAP (CDPruner as
// OpenVINO GenAI ships it).
//
// Per group (or per half, with `split`) of n tokens keeping k:
//   1. s_i = 1/sqrt(‖x_i‖² + 1e-6); relevance m from the scores, or the mean cosine to the
//      queries (each normalised the same way), or 0; r from m by the kernel's min-max rule.
//   2. d²_i = K_ii. Each step picks j = argmax d² over the tokens not yet picked (ties to the lower
//      index, NaN last). OpenVINO then computes the kernel row K_j·, orthogonalises it against the
//      previous picks' coefficients (skipping those below 1e-6 in magnitude), scales it by
//      1/sqrt(d²_j + 1e-6), stores it as C's next row and lowers every d²_i by its square.
//      tokred runs that update lazily, token by token: d² only falls, so the candidates wait in a
//      max-heap keyed by their possibly stale d², and only the top is brought up to date — each
//      element with exactly OpenVINO's operations in OpenVINO's order, so the picks are the eager
//      algorithm's. No n × n matrix: a kernel entry is one dot product when it is needed.
// At most O(k·n·D) for the kernel entries and O(k²·n) for the update, far less when few tokens
// come near the top; O(k·n) memory for C, as the algorithm needs, and O(k·D) for a copy of the
// picks' rows (row_copies). Every share runs the selection of each group its rows fall in (see
// cpu/diversity.hpp).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/cpu/diversity.hpp"

namespace tokred {
namespace detail {

/// The most picks one pass of a token's row brings it up to date with: a SIMD batch of them.
inline constexpr index_t pick_lanes = 16;

/// The scratch of one cdpruner selection of `n` tokens keeping `k`.
struct dpp_scratch {
  float* scale = nullptr;          // (n,) 1/sqrt(‖x‖² + eps)
  float* relevance = nullptr;      // (n,) r
  float* gain = nullptr;           // (n,) d², the conditional variance left (an upper bound when stale)
  std::int32_t* applied = nullptr; // (n,) how many picks `gain` and the coefficients cover
  std::uint64_t* heap = nullptr;   // (n,) rank keys of the candidates
  float* coefficients = nullptr;   // (n, k) C, token-major: token i's coefficient for each pick
  float* pick_coefficients = nullptr;  // (k, k) + padding: row q holds each pick's coefficient
                                       //   for pick q (the picks' rows of C, pick-major)
  float* pivot = nullptr;          // (k,) 1/sqrt(d²_j + eps) of each pick
  index_t* picks = nullptr;        // (k,) group-local, pick order
  std::int64_t* kept = nullptr;    // (k,) ascending
  void* pick_rows = nullptr;       // (k, dim) the picks' rows in pick order (row_copies)

  static dpp_scratch carve(arena& a, index_t n, index_t k, index_t dim) {
    dpp_scratch s;
    s.scale = a.take<float>(n);
    s.relevance = a.take<float>(n);
    s.gain = a.take<float>(n);
    s.applied = a.take<std::int32_t>(n);
    s.heap = a.take<std::uint64_t>(n);
    s.coefficients = a.take<float>(n, k);
    s.pick_coefficients = a.take<float>(k * k + pick_lanes);
    s.pivot = a.take<float>(k);
    s.picks = a.take<index_t>(k);
    s.kept = a.take<std::int64_t>(k);
    s.pick_rows = a.take<std::byte>(row_copies_bytes(k, dim));
    return s;
  }
};

/// One DPP over `rows` (n, dim), keeping k, into s.picks[0, k) (group-local, pick order).
template <class Arch, class E>
void dpp_greedy(const cdpruner& p, const view<const E, 2>& rows,  // (n, dim)
                const view<const float, 1>& scores,                // (n,) relevance, or empty
                const view<const E, 2>& query,                     // (queries, dim), or empty
                index_t k, const dpp_scratch& s, index_t* picks) noexcept {
  const row_set<Arch, E> set{rows};
  const index_t n = rows.extent(0), dim = rows.extent(1);
  if (k == 0) return;  // the first half of a split group of one token
  for (index_t i = 0; i < n; ++i) {
    s.gain[i] = set.template pair<pair_op::dot>(i, i);  // ‖x_i‖², kept for K_ii below
    s.scale[i] = dpp_scale(s.gain[i]);
  }

  // Relevance m, then r by the kernel's min-max rule.
  float* r = s.relevance;
  for (index_t i = 0; i < n; ++i) r[i] = requested(scores) ? scores(i) : 0.0f;
  if (!requested(scores) && requested(query)) {
    const index_t queries = query.extent(0);
    for (index_t q = 0; q < queries; ++q) {
      const float qq = combine<Arch, pair_op::dot>(&query(q, 0), query.stride(1), &query(q, 0),
                                                   query.stride(1), dim);
      const float q_scale = dpp_scale(qq);
      for (index_t i = 0; i < n; ++i)
        r[i] = add_rn(r[i], mul_rn(combine<Arch, pair_op::dot>(&rows(i, 0), rows.stride(1), &query(q, 0),
                                                               query.stride(1), dim),
                                   mul_rn(s.scale[i], q_scale)));
    }
    for (index_t i = 0; i < n; ++i) r[i] = div_rn(r[i], static_cast<float>(queries));
  }
  if (p.kernel == dpp_kernel::original)
    for (index_t i = 0; i < n; ++i) r[i] = -r[i];
  relevance_bounds bounds;
  for (index_t i = 0; i < n; ++i) bounds.add(r[i]);
  const float low = bounds.low, range = sub_rn(bounds.high, bounds.low);
  const bool openvino = p.kernel == dpp_kernel::openvino;
  for (index_t i = 0; i < n; ++i) r[i] = dpp_relevance(openvino, r[i], low, range);

  const auto kernel = [&](index_t i, index_t j, float dot) {
    return dpp_entry(openvino, p.relevance_weight, dot, s.scale[i], s.scale[j], r[i], r[j]);
  };
  // Gains, NaN read as -FLT_MAX from the start: the first update maps NaN there anyway, and a NaN
  // gain ranks below every number, as -FLT_MAX does below every finite gain.
  for (index_t i = 0; i < n; ++i) {
    s.gain[i] = dpp_gain(kernel(i, i, s.gain[i]));
    s.applied[i] = 0;
    s.heap[i] = rank_key(s.gain[i], i);
  }
  key_heap heap(s.heap, n);

  // Token i's coefficients for picks from … from + count − 1 (count ≤ a batch), and its gain
  // after them: OpenVINO's eager update restricted to one element, each coefficient's terms in
  // the same order of operations, so the lazy result is the eager one. Each coefficient is a chain
  // of dependent subtractions: a lane each, the chains run together over the picks before
  // `from` (their terms from the pick-major copy of the picks' coefficients), then each takes its
  // terms for the picks among them in turn.
  using fb = float_batch<Arch>;
  constexpr index_t lanes = fb::size;
  static_assert(lanes <= pick_lanes, "tokred: a batch of picks fits the padding");
  float* const pick_c = s.pick_coefficients;
  std::fill(pick_c, pick_c + k * k + pick_lanes, 0.0f);  // lanes past the picks made read zeros
  const auto apply_picks = [&](index_t i, index_t from, index_t count, const float* dots) {
    float* ci = s.coefficients + i * k;
    alignas(64) float e[lanes];
    for (index_t c = 0; c < lanes; ++c) e[c] = c < count ? kernel(picks[from + c], i, dots[c]) : 0.0f;
    fb chains = fb::load_aligned(e);
    const fb epsilon(dpp_epsilon);
    for (index_t q = 0; q < from; ++q) {  // dpp_orthogonalise, a lane per pick
      const fb c = fb::load_unaligned(pick_c + q * k + from);
      chains = xsimd::select(xsimd::abs(c) < epsilon, chains, chains - separate_product(c, fb(ci[q])));
    }
    chains.store_aligned(e);
    for (index_t c = 0; c < count; ++c) {
      const float* cj = s.coefficients + picks[from + c] * k;
      for (index_t q = from; q < from + c; ++q) e[c] = dpp_orthogonalise(e[c], cj[q], ci[q]);
      e[c] = mul_rn(e[c], s.pivot[from + c]);
      ci[from + c] = e[c];
      s.gain[i] = dpp_gain(sub_rn(s.gain[i], mul_rn(e[c], e[c])));
    }
  };

  // Lazy greedy (cpu/diversity.hpp's lazy_argmax): gains only fall, so a stale gain bounds the
  // current one from above; the top is brought up to date a few picks per pass of its row, the
  // picks' rows read from their copies.
  const row_copies<E> pick_rows(s.pick_rows, dim);
  const auto advance = [&](index_t i, index_t up_to) {
    // Eight picks a pass while the dot products dominate (a token that falls below the runner-up
    // wastes the picks applied past that point, but each pass reads its row from memory once: 8
    // against 4 measured 1.1 - 1.2x faster from 2304 rows of 4096 on, the same at 576); a batch
    // once the orthogonalisations do (`from` dependent steps of a few cycles each against dim/16
    // multiply-adds of 16 lanes).
    const index_t from = s.applied[i], batch = 64 * from > dim ? lanes : std::min<index_t>(8, lanes);
    const index_t count = std::min<index_t>(batch, up_to - from);
    float dots[lanes];
    set.template pairs<pair_op::dot>(i, pick_rows.at(from), pick_rows.stride, count, dots);
    apply_picks(i, from, count, dots);
    s.applied[i] = static_cast<std::int32_t>(from + count);
    return rank_key(s.gain[i], i);
  };
  for (index_t picked = 0; picked < k; ++picked) {
    const index_t i = lazy_argmax(heap, s.applied, picked, [](index_t) { return false; }, advance);
    picks[picked] = i;
    pick_rows.store(picked, rows, i);
    for (index_t q = 0; q < picked; ++q) pick_c[q * k + picked] = s.coefficients[i * k + q];
    s.pivot[picked] = dpp_scale(s.gain[i]);
    heap.pop();
  }
}

/// cdpruner's selection of one group: one DPP, or one per half with `split`.
template <class Arch>
struct diversity_selector<Arch, cdpruner> {
  using scratch = dpp_scratch;

  static scratch carve(arena& a, const cdpruner&, index_t n, index_t k, index_t dim) {
    return dpp_scratch::carve(a, n, k, dim);
  }

  template <class E>
  static void select(const cdpruner& p, const diversity_group<E>& g, index_t k, const scratch& s) noexcept {
    const index_t n = g.rows.extent(0);
    const auto half_scores = [&](index_t first, index_t count) {
      return requested(g.scores)
                 ? view<const float, 1>(&g.scores(first), {count}, {g.scores.stride(0)})
                 : view<const float, 1>{};
    };
    if (!p.split) {
      dpp_greedy<Arch>(p, g.rows, g.scores, g.query, k, s, s.picks);
    } else {
      const index_t middle = n / 2, k1 = k / 2;
      dpp_greedy<Arch>(p, row_range(g.rows, 0, middle), half_scores(0, middle), g.query, k1, s, s.picks);
      dpp_greedy<Arch>(p, row_range(g.rows, middle, n - middle), half_scores(middle, n - middle),
                       g.query, k - k1, s, s.picks + k1);
      for (index_t t = k1; t < k; ++t) s.picks[t] += middle;
    }
    for (index_t t = 0; t < k; ++t) s.kept[t] = s.picks[t];
    std::sort(s.kept, s.kept + k);
  }
};

}  // namespace detail

template <class Arch>
struct backend<cdpruner, cpu<Arch>> : detail::cpu_diversity<Arch, cdpruner> {};

}  // namespace tokred
