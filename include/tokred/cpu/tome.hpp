// tokred/cpu/tome.hpp — CPU backends of tome and tome_match.
//
// tome runs in four steps:
//   1. match    every unprotected A token (even index) finds its most similar unprotected B
//               token (odd index): cosine of the compared rows, O(N²·D/4), almost all the work;
//   2. rank     the candidates sorted by (similarity descending, A index ascending, NaN last); the
//               first r_eff merge, O(N log N);
//   3. lay out  the output slots in the policy's order, every token's slot (assign) and each B
//               token's group: itself, then the A tokens merged into it in rank order, O(N);
//   4. write    each slot's size-weighted mean row, size, source and position, O(N·D).
//
// Shares. Steps 1–3 need every similarity before any output row is known, and no share may wait
// for another, so each share of tome runs steps 1–3 in full and writes only its own slots
// [K·ith/nth, K·(ith+1)/nth) and assign entries [N·ith/nth, N·(ith+1)/nth): correct and
// bit-identical for every nth, but step 1 is not divided. To divide it, run tome_match first:
// its share ith computes A tokens [A·ith/nth, A·(ith+1)/nth); after the engine's barrier, tome
// given that matching skips step 1, and its shares repeat only the O(N log N) steps 2–3.
//
// Step 1 is a blocked matrix product of the A rows with the B rows (`cross_dots` in
// <tokred/cpu/merge.hpp>): every dot product is one multiply-add chain in k order, so a
// similarity has the same bits whatever the blocking or the share that computed it.
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
#include "tokred/policy/merge.hpp"
#include "tokred/policy/tome_steps.hpp"

namespace tokred {
namespace detail {

/// 1/‖x_i‖ from the canonical dot of row i with itself: 0 for a zero row (its similarity with
/// everything is then 0), NaN when the squared norm is not finite (its similarities are NaN).
template <class Arch, class E>
float cosine_scale(const view<const E, 2>& rows, index_t i) noexcept {  // (tokens, dim)
  return cosine_scale_of(row_squared_norm<Arch>(rows, i));
}

/// `cosine_scale_of` for every row of `rows`, into `scale`, each squared norm a multiply-add chain
/// in k order from 0 — the order of cross_dots' dots, and one a CUDA kernel can follow, so ToMe's
/// similarities have the same bits on every ISA that fuses (and on every one that does not).
/// Rows go `lanes` at a time through `panel` (lanes × product_kc floats), k-major, so each lane
/// runs one row's chain.
template <class Arch, class E>
void chain_cosine_scales(const view<const E, 2>& rows,  // (count, dim)
                         float* panel, float* scale) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  const index_t count = rows.extent(0), dim = rows.extent(1);
  alignas(64) float sums[lanes];
  for (index_t r0 = 0; r0 < count; r0 += lanes) {
    const index_t rows_here = std::min(lanes, count - r0);
    batch acc(0.0f);
    for (index_t k0 = 0; k0 < dim; k0 += product_kc) {
      const index_t kc = std::min(product_kc, dim - k0);
      pack_panels<Arch>(rows, r0, rows_here, k0, kc, lanes, panel);
      for (index_t k = 0; k < kc; ++k) {
        const batch x = batch::load_aligned(panel + k * lanes);
        acc = multiply_add<Arch>(x, x, acc);
      }
    }
    acc.store_aligned(sums);
    for (index_t t = 0; t < rows_here; ++t) scale[r0 + t] = cosine_scale_of(sums[t]);
  }
}

/// Step 1 for A tokens [k0, k1): best[k] and arg[k] (B index) for each, −inf and −1 for a
/// protected one or when no B token may receive. `scale` (tokens,) gets 1/‖x‖ of the A tokens
/// used at [0, a) and of the B tokens at [a, a + b); `product` is sized for all A and B tokens.
///
/// The argmax visits B tokens in ascending order and takes only a strictly larger similarity,
/// so ties keep the lower B index; starting from −inf, it skips NaN for free (a comparison with
/// NaN is false). Similarities are finite or NaN — a finite row's dot products are bounded by its
/// finite norms — so a best still at −inf afterwards means none was a number: it becomes NaN,
/// with the lowest unprotected B token as the partner.
template <class Arch, class E>
void match_range(const view<const E, 2>& rows,  // (tokens, dim)
                 const bipartite_split& s, index_t k0, index_t k1, const product_scratch& product,
                 float* scale, float* best, std::int64_t* arg) noexcept {
  const index_t j0 = s.b_protected, kfirst = std::max(k0, j0 < s.b ? s.a_protected : k1);
  const float inf = std::numeric_limits<float>::infinity();
  for (index_t k = k0; k < std::min(k1, kfirst); ++k) {
    best[k] = -inf;
    arg[k] = -1;
  }
  if (kfirst >= k1) return;
  float* scale_a = scale;
  float* scale_b = scale + s.a;
  const index_t dim = rows.extent(1);
  // The A and B rows are every other row of `rows`: views with twice its row stride.
  const view<const E, 2> a(&rows(2 * kfirst, 0), {k1 - kfirst, dim}, {2 * rows.stride(0), rows.stride(1)});
  const view<const E, 2> b(&rows(2 * j0 + 1, 0), {s.b - j0, dim}, {2 * rows.stride(0), rows.stride(1)});
  chain_cosine_scales<Arch>(b, product.b_panels, scale_b + j0);
  chain_cosine_scales<Arch>(a, product.b_panels, scale_a + kfirst);
  for (index_t k = kfirst; k < k1; ++k) {
    best[k] = -inf;
    arg[k] = j0;
  }
  cross_dots<Arch>(a, b, product, [&](index_t x, index_t y, const float* dots, index_t count) {
    const index_t k = kfirst + x;
    const float sa = scale_a[k];
    const float* sb = scale_b + j0 + y;
    float top = best[k];
    index_t at = -1;
    for (index_t c = 0; c < count; ++c) {
      const float sim = scaled_cosine(dots[c], sa, sb[c]);
      if (sim > top) top = sim, at = c;
    }
    if (at >= 0) best[k] = top, arg[k] = j0 + y + at;
  });
  for (index_t k = kfirst; k < k1; ++k)
    if (best[k] == -inf) best[k] = std::numeric_limits<float>::quiet_NaN();
}

/// The scratch of one tome_match share: the norms it needs and its range of the matching.
struct match_scratch {
  product_scratch product;
  float* scale = nullptr;           // (tokens,) 1/‖x‖ of the A tokens, then of the B tokens
  float* best = nullptr;            // (a,)
  std::int64_t* partner = nullptr;  // (a,)

  template <class Arch>
  static match_scratch carve(arena& ar, index_t n) {
    match_scratch m;
    m.product = product_scratch::carve<Arch>(ar, a_tokens(n), n / 2);
    m.scale = ar.take<float>(n);
    m.best = ar.take<float>(a_tokens(n));
    m.partner = ar.take<std::int64_t>(a_tokens(n));
    return m;
  }
};

/// The scratch of one tome share: the matching's, then the merge's.
struct tome_scratch {
  match_scratch match;                // the similarity product, 1/‖x‖, best and partner
  std::uint64_t* keys = nullptr;      // (a,) rank keys of the candidates, sorted
  index_t* rep = nullptr;             // (tokens,) slot -> representative input token (K used)
  index_t* slot = nullptr;            // (tokens,) input token -> slot
  index_t* offsets = nullptr;         // (b + 1,) group of B token j: members[offsets[j] …)
  index_t* members = nullptr;         // (b + a,) each group: the B token, then its sources
  index_t* cursor = nullptr;          // (b,) where the next source of B token j goes

  template <class Arch>
  static tome_scratch carve(arena& ar, index_t n) {
    const bipartite_split s = split_of(n, 0);
    tome_scratch t;
    t.match = match_scratch::carve<Arch>(ar, n);
    t.keys = ar.take<std::uint64_t>(s.a);
    t.rep = ar.take<index_t>(n);
    t.slot = ar.take<index_t>(n);
    t.offsets = ar.take<index_t>(s.b + 1);
    t.members = ar.take<index_t>(s.b + s.a);
    t.cursor = ar.take<index_t>(s.b);
    return t;
  }
};

/// Steps 2 and 3: rank the candidates, choose the r sources, lay out the slots, every token's
/// slot, and each B token's group (itself first, then its sources in rank order).
inline void tome_layout(const tome& p, index_t n, index_t r, const tome_scratch& t) noexcept {
  if (r == 0) {  // the original returns its input unchanged
    for (index_t i = 0; i < n; ++i) t.rep[i] = t.slot[i] = i;
    return;
  }
  const bipartite_split s = split_of(n, p.protect);
  const index_t candidates = s.a - s.a_protected;
  for (index_t k = s.a_protected; k < s.a; ++k) t.keys[k - s.a_protected] = rank_key(t.match.best[k], k);
  std::sort(t.keys, t.keys + candidates, [](std::uint64_t x, std::uint64_t y) { return x > y; });

  constexpr index_t merged = -2;
  for (index_t i = 0; i < n; ++i) t.slot[i] = -1;
  for (index_t q = 0; q < r; ++q) t.slot[2 * rank_key_index(t.keys[q])] = merged;
  index_t k_out = 0;
  if (p.order == merge_order::by_position) {
    for (index_t i = 0; i < n; ++i)
      if (t.slot[i] != merged) t.rep[k_out++] = i;
  } else if (p.protect == 0) {
    for (index_t q = r; q < candidates; ++q) t.rep[k_out++] = 2 * rank_key_index(t.keys[q]);
    for (index_t j = 0; j < s.b; ++j) t.rep[k_out++] = 2 * j + 1;
  } else {
    for (index_t i = 0; i < std::min(p.protect, n); ++i) t.rep[k_out++] = i;
    for (index_t k = s.a_protected; k < s.a; ++k)
      if (t.slot[2 * k] != merged) t.rep[k_out++] = 2 * k;
    for (index_t j = s.b_protected; j < s.b; ++j) t.rep[k_out++] = 2 * j + 1;
  }
  for (index_t q = 0; q < k_out; ++q) t.slot[t.rep[q]] = q;

  // Each B token first, then its sources in rank order.
  const auto source_of = [&](index_t q) { return rank_key_index(t.keys[q]); };
  group_layout(
      s.b, r, [&](index_t q) { return t.match.partner[source_of(q)]; }, [&](index_t q) { return 2 * source_of(q); },
      [](index_t j) { return 2 * j + 1; }, t.offsets, t.cursor, t.members);
  for (index_t q = 0; q < r; ++q) {
    const index_t k = source_of(q);
    t.slot[2 * k] = t.slot[2 * t.match.partner[k] + 1];
  }
}

/// Step 4 for slots [q0, q1) and assign entries [i0, i1).
template <class Arch, class Ein, class Eout>
void tome_write(const merge_inputs<Ein>& in, const merge_outputs<Eout>& out, index_t r,
                const tome_scratch& t, index_t q0, index_t q1, index_t i0, index_t i1) noexcept {
  const auto weight = carried_weight(in.sizes);
  for (index_t q = q0; q < q1; ++q) {
    const index_t i = t.rep[q];
    const index_t* group = t.rep + q;
    index_t count = 1;
    if (r > 0 && (i & 1) != 0) {  // a B token: itself and the A tokens merged into it
      const index_t j = i / 2;
      group = t.members + t.offsets[j];
      count = t.offsets[j + 1] - t.offsets[j];
    }
    const float total = total_weight(group, count, weight);
    if (requested(out.sizes)) out.sizes(q) = total;
    if (requested(out.tokens))
      weighted_mean_row<Arch>(in.tokens, group, count, weight, total, &out.tokens(q, 0), out.tokens.stride(1));
    write_provenance(in, out, q, i);
  }
  if (requested(out.assign))
    for (index_t i = i0; i < i1; ++i) out.assign(i) = t.slot[i];
}

/// The value checks of tome, made by every share before anything is written: `invalid_parameter`
/// for a carried size that is not a positive finite number, then (when something merges)
/// `index_out_of_range` for a given partner of an unprotected A token outside
/// [b_protected, b).
template <class E>
status check_merge_values(const tome& p, const merge_inputs<E>& in, index_t r) noexcept {
  if (status s = check_carried_sizes(in.sizes); s != status::ok) return s;
  if (r > 0 && requested(in.partner)) {
    const bipartite_split s = split_of(in.grid.tokens(), p.protect);
    for (index_t k = s.a_protected; k < s.a; ++k)
      if (in.partner(k) < s.b_protected || in.partner(k) >= s.b) return status::index_out_of_range;
  }
  return status::ok;
}

/// Step 1 for every A token into `t.match`: computed, or the given matching (`in.partner` and
/// `in.similarity`) copied in. Also the first step of the policies built on tome (dymu, aim).
template <class Arch, class E>
void tome_matching(index_t protect, const merge_inputs<E>& in, const tome_scratch& t) noexcept {
  const bipartite_split split = split_of(in.grid.tokens(), protect);
  if (requested(in.partner)) {
    for (index_t k = 0; k < split.a; ++k) {
      t.match.best[k] = in.similarity(k);
      t.match.partner[k] = in.partner(k);
    }
  } else {
    match_range<Arch>(compared_rows(in), split, 0, split.a, t.match.product, t.match.scale, t.match.best,
                      t.match.partner);
  }
}

/// Steps 2–4 once `t.match` holds the matching (or r = 0): the layout of the N − r outputs, then
/// share ith's slots of them and its assign entries.
template <class Arch, class Ein, class Eout>
void tome_merge(const cpu<Arch>& exec, const tome& p, const merge_inputs<Ein>& in,
                const merge_outputs<Eout>& out, index_t r, const tome_scratch& t) noexcept {
  const index_t n = in.grid.tokens(), kept = n - r;
  tome_layout(p, n, r, t);
  tome_write<Arch>(in, out, r, t, share_begin(kept, exec.ith, exec.nth), share_begin(kept, exec.ith + 1, exec.nth),
                   share_begin(n, exec.ith, exec.nth), share_begin(n, exec.ith + 1, exec.nth));
}

}  // namespace detail

/// tome on CPU. See the top of this file for the steps and what the shares do. Checks, in
/// order: the exec (`invalid_exec`); `detail::check_tome` (parameters and grid, compared rows,
/// token rows, carried inputs, outputs, overlaps); the workspace; `detail::check_merge_values`.
template <class Arch>
struct backend<tome, cpu<Arch>> {
  static detail::tome_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::tome_scratch::carve<Arch>(s, grid.tokens());
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const tome& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const tome& p, const merge_inputs<Ein>& in,
                      const merge_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    const detail::merge_count c = detail::check_tome(p, in, out);
    if (c.code != status::ok) return c.code;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    detail::arena carver(ws);
    const detail::tome_scratch t = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;
    if (status s = detail::check_merge_values(p, in, c.r); s != status::ok) return s;

    if (c.r > 0) detail::tome_matching<Arch>(p.protect, in, t);
    detail::tome_merge(exec, p, in, out, c.r, t);
    return status::ok;
  }
};

/// tome_match on CPU: share ith matches A tokens [A·ith/nth, A·(ith+1)/nth) and writes only
/// those entries (each share also computes the norms of every B row it compares with, O(N·D)).
/// Checks, in order: the exec, `detail::check_tome_match`, the workspace.
template <class Arch>
struct backend<tome_match, cpu<Arch>> {
  static detail::match_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::match_scratch::carve<Arch>(s, grid.tokens());
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const tome_match& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const tome_match& p, const merge_inputs<E>& in,
                      const match_outputs<host_space>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_tome_match(p, in, out); s != status::ok) return s;
    const view<const E, 2> rows = detail::compared_rows(in);
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, rows.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    detail::arena carver(ws);
    const detail::match_scratch m = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const bipartite_split split = split_of(in.grid.tokens(), p.protect);
    const index_t k0 = detail::share_begin(split.a, exec.ith, exec.nth);
    const index_t k1 = detail::share_begin(split.a, exec.ith + 1, exec.nth);
    detail::match_range<Arch>(rows, split, k0, k1, m.product, m.scale, m.best, m.partner);
    for (index_t k = k0; k < k1; ++k) {
      out.similarity(k) = m.best[k];
      out.partner(k) = m.partner[k];
    }
    return status::ok;
  }
};

}  // namespace tokred
