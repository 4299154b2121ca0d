// tokred/cpu/prumerge.hpp — the CPU backend of prumerge_merge.
//
// Per kept token i:
//   1. cosines  k_i against every key with the canonical dot kernels (<tokred/cpu/similarity.hpp>),
//               four kept tokens per pass over the keys, scaled by the norms of `cosine_scale`,
//               O(N·key_dim);
//   2. nearest  the `neighbours` largest among the N − 1 others by radix select
//               (`select_largest`, ties to the lower index, NaN last), then sorted nearest
//               first, O(N + m log m);
//   3. row      x_i + Σ a_j·x_j over them, nearest first, in fp32 multiply-adds, O(m·D).
// The extra token sums the pruned rows in ascending order, O(N·D).
//
// Shares. The output rows (the kept tokens, then the extra token) are split evenly: share ith
// writes rows [R·ith/nth, R·(ith+1)/nth) and everything about them. A row depends only on its
// own token's cosines, so no share needs another's work; each share that writes a kept row
// computes the N key norms itself (O(N·key_dim), the cost of one more kept token). Every row is
// computed by the same code whichever share owns it: bit-identical for every nth.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/tome.hpp"
#include "tokred/policy/prumerge.hpp"
#include "tokred/policy/tome_steps.hpp"

namespace tokred {
namespace detail {

/// Kept tokens whose cosines one pass over the keys computes: each key row read from memory
/// serves four kept keys held in L1 (the canonical kernel's four-row block). Reading the N keys
/// once per kept token instead, the cosines of 50 kept tokens against 576 keys of 1024 floats
/// took 5.5 ms (SSE2; the keys stream from L3).
inline constexpr index_t prumerge_group = 4;

/// One share's scratch.
struct prumerge_scratch {
  float* scale = nullptr;           // (N,) 1/‖k_j‖ of every key (cosine_scale)
  float* cosine = nullptr;          // (group, N) a group of kept tokens' cosines with every token
  std::uint32_t* keys = nullptr;    // (N,) select_largest's keys, then the extra token's marks
  std::int64_t* members = nullptr;  // (N,) one row's members: its m ≤ N − 1 neighbours, or the pruned

  static prumerge_scratch carve(arena& ar, index_t n) {
    prumerge_scratch s;
    s.scale = ar.take<float>(n);
    s.cosine = ar.take<float>(prumerge_group, n);
    s.keys = ar.take<std::uint32_t>(n);
    s.members = ar.take<std::int64_t>(n);
    return s;
  }
};

/// Step 1 for the `count` ≤ prumerge_group kept tokens `ids`: cosine[m·N + j] = cos(k_ids[m], k_j),
/// the dot scaled by both keys' cosine_scale (`scale`); entry ids[m] of row m is unused. Every key
/// row j is the shared row of one `row_set::pairs` pass against the kept keys (held in L1); the
/// canonical order makes each pair's bits those of any other kernel.
template <class Arch, class E>
void group_cosines(const view<const E, 2>& keys,  // (tokens, key_dim)
                   const index_t* ids, index_t count, const float* scale, float* cosine) noexcept {
  const row_set<Arch, E> rows{keys};
  const index_t n = rows.size();
  for (index_t j = 0; j < n; ++j) {
    float dots[prumerge_group];
    rows.template pairs<pair_op::dot>(j, ids, count, dots);
    for (index_t m = 0; m < count; ++m) cosine[m * n + j] = scaled_cosine(dots[m], scale[ids[m]], scale[j]);
  }
}

/// Step 2 for token i from its cosines with every token (`cosine`, (N,)): its `m` nearest other
/// tokens into `near`, nearest first (cosine descending, then index ascending, NaN last).
inline void prumerge_nearest(const float* cosine, index_t n, index_t i, index_t m, std::uint32_t* keys,
                             std::int64_t* near) noexcept {
  // Candidates are the N − 1 others: local index l is token l below i, token l + 1 from i on.
  const auto token_of = [i](index_t l) { return l < i ? l : l + 1; };
  const auto key_of = [&](index_t l) { return score_key(float_bits(cosine[token_of(l)])); };
  select_largest(key_of, n - 1, m, 0, keys, near);  // ascending local = ascending token
  for (index_t k = 0; k < m; ++k) near[k] = token_of(near[k]);
  std::sort(near, near + m, [&](std::int64_t a, std::int64_t b) {
    return rank_key(cosine[a], a) > rank_key(cosine[b], b);
  });
}

/// Floats one pass over a row's members accumulates in registers (as visionzip's contextual
/// rows: a block of 64 floats, whole batches).
inline constexpr index_t prumerge_block_floats = 64;

/// How one output row is finished from the weighted sum of its members.
struct prumerge_finish {
  index_t base = -1;     ///< the kept token's row added to the sum; −1 for none (the extra token)
  bool divide = false;   ///< divide by `divisor` afterwards (normalized, non-zero total)
  float divisor = 1.0f;
};

/// `Unroll` batches of one row from column c: Σ a_m·x_m over the members in order from 0
/// (multiply_add), then x_base + sum, then / divisor — the scalar loop's operations exactly.
template <class Arch, int Unroll, class Ein, class Eout>
void merged_batches(const view<const Ein, 2>& tokens,    // (tokens, dim), unit inner stride
                    const view<const float, 1>& scores,  // (tokens,)
                    const std::int64_t* members, index_t count, const prumerge_finish& f, index_t c,
                    Eout* out) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  batch acc[Unroll];
  for (int u = 0; u < Unroll; ++u) acc[u] = batch(0.0f);
  for (index_t k = 0; k < count; ++k) {
    const Ein* row = &tokens(members[k], c);
    const batch w(scores(members[k]));
    for (int u = 0; u < Unroll; ++u) acc[u] = multiply_add<Arch>(load_operands<Arch>(row + u * lanes), w, acc[u]);
  }
  for (int u = 0; u < Unroll; ++u) {
    batch value = f.base >= 0 ? load_floats<Arch>(&tokens(f.base, c + u * lanes)) + acc[u] : acc[u];
    if (f.divide) value = divide<Arch>(value, batch(f.divisor));
    store_floats<Arch>(out + c + u * lanes, value);
  }
}

/// One output row: the weighted sum of `members` finished by `f`, written to `out` (its
/// element stride `out_stride`). Whole blocks, then single batches, then single columns, each
/// column by the same operations.
template <class Arch, class Ein, class Eout>
void merged_row(const view<const Ein, 2>& tokens,    // (tokens, dim)
                const view<const float, 1>& scores,  // (tokens,)
                const std::int64_t* members, index_t count, const prumerge_finish& f, Eout* out,
                index_t out_stride) noexcept {
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  constexpr int unroll = prumerge_block_floats / lanes > 0 ? static_cast<int>(prumerge_block_floats / lanes) : 1;
  const index_t dim = tokens.extent(1);
  index_t c = 0;
  if (tokens.stride(1) == 1 && out_stride == 1) {
    for (; c + unroll * lanes <= dim; c += unroll * lanes)
      merged_batches<Arch, unroll>(tokens, scores, members, count, f, c, out);
    for (; c + lanes <= dim; c += lanes) merged_batches<Arch, 1>(tokens, scores, members, count, f, c, out);
  }
  for (; c < dim; ++c) {
    float acc = 0.0f;
    for (index_t k = 0; k < count; ++k)
      acc = multiply_add<Arch>(to_float(tokens(members[k], c)), scores(members[k]), acc);
    float value = f.base >= 0 ? to_float(tokens(f.base, c)) + acc : acc;
    if (f.divide) value = value / f.divisor;
    out[c * out_stride] = from_float<Eout>(value);
  }
}

/// The weights' total in member order from 0, and how the row is finished with it.
inline prumerge_finish finish_of(const prumerge_merge& p, const view<const float, 1>& scores,
                                 const std::int64_t* members, index_t count, index_t base) noexcept {
  prumerge_finish f;
  f.base = base;
  if (p.weights != prumerge_weights::normalized) return f;
  float total = 0.0f;
  for (index_t k = 0; k < count; ++k) total += scores(members[k]);
  f.divisor = base >= 0 ? 1.0f + total : total;
  f.divide = f.divisor != 0.0f;
  return f;
}

/// Output rows [q0, q1) of the kept tokens (q1 ≤ kept).
template <class Arch, class Ein, class Eout>
void prumerge_kept_rows(const prumerge_merge& p, const prumerge_inputs<Ein>& in, const prumerge_outputs<Eout>& out,
                        index_t q0, index_t q1, const prumerge_scratch& s) noexcept {
  const index_t m = p.neighbours;
  const view<const Ein, 2> keys = compared_rows(in);
  const bool search = m > 0 && (requested(out.tokens) || requested(out.neighbours));
  if (search && q0 < q1)
    for (index_t j = 0; j < keys.extent(0); ++j) s.scale[j] = cosine_scale<Arch>(keys, j);
  const index_t n = keys.extent(0);
  for (index_t g = q0; g < q1; g += prumerge_group) {
    const index_t count = std::min(prumerge_group, q1 - g);
    index_t ids[prumerge_group];
    for (index_t t = 0; t < count; ++t) ids[t] = in.kept(g + t);
    if (search) group_cosines<Arch>(keys, ids, count, s.scale, s.cosine);
    for (index_t q = g; q < g + count; ++q) {
      const index_t i = in.kept(q);
      if (search) prumerge_nearest(s.cosine + (q - g) * n, n, i, m, s.keys, s.members);
      if (requested(out.neighbours))
        for (index_t k = 0; k < m; ++k) out.neighbours(q, k) = s.members[k];
      if (requested(out.tokens))
        merged_row<Arch>(in.tokens, in.scores, s.members, m, finish_of(p, in.scores, s.members, m, i),
                         &out.tokens(q, 0), out.tokens.stride(1));
      if (requested(out.source)) out.source(q) = i;
      if (requested(out.positions)) write_position(out.positions, q, in.grid, i);
    }
  }
}

/// The extra token's row (row `kept`): the pruned tokens, ascending, summed.
template <class Arch, class Ein, class Eout>
void prumerge_extra_row(const prumerge_merge& p, const prumerge_inputs<Ein>& in, const prumerge_outputs<Eout>& out,
                        const prumerge_scratch& s) noexcept {
  const index_t n = in.grid.tokens(), kept = in.kept.extent(0);
  if (requested(out.tokens)) {
    std::fill(s.keys, s.keys + n, 0u);
    for (index_t q = 0; q < kept; ++q) s.keys[in.kept(q)] = 1u;
    index_t count = 0;
    for (index_t j = 0; j < n; ++j)
      if (s.keys[j] == 0u) s.members[count++] = j;
    merged_row<Arch>(in.tokens, in.scores, s.members, count, finish_of(p, in.scores, s.members, count, -1),
                     &out.tokens(kept, 0), out.tokens.stride(1));
  }
  if (requested(out.source)) out.source(kept) = -1;
  if (requested(out.positions)) write_position(out.positions, kept, in.grid, -1);
}

}  // namespace detail

/// prumerge_merge on CPU. See the top of this file for the steps and what the shares do.
/// Checks, in order: the exec (`invalid_exec`); `detail::check_prumerge` (parameters and grid;
/// the index list; scores; compared rows; token rows and out.tokens; the other outputs;
/// overlaps); every index in [0, N) (`index_out_of_range`); the workspace. No value makes it
/// fail: see `prumerge_merge` for zero and non-finite keys, features and scores.
template <class Arch>
struct backend<prumerge_merge, cpu<Arch>> {
  static detail::prumerge_scratch carve(detail::arena& a, index_t n, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& one) { return detail::prumerge_scratch::carve(one, n); });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const prumerge_merge& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid.tokens(), 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const prumerge_merge& p, const prumerge_inputs<Ein>& in,
                      const prumerge_outputs<Eout>& out, workspace ws) {
    if (status st = check_exec(exec); st != status::ok) return st;
    const detail::prumerge_shape shape = detail::check_prumerge(p, in, out);
    if (shape.code != status::ok) return shape.code;
    for (index_t q = 0; q < shape.kept; ++q)
      if (in.kept(q) < 0 || in.kept(q) >= shape.tokens) return status::index_out_of_range;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status st = check_workspace(ws, need); st != status::ok) return st;
    detail::arena carver(ws);
    const detail::prumerge_scratch s = carve(carver, shape.tokens, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t r0 = detail::share_begin(shape.rows, exec.ith, exec.nth);
    const index_t r1 = detail::share_begin(shape.rows, exec.ith + 1, exec.nth);
    detail::prumerge_kept_rows<Arch>(p, in, out, r0, std::min(r1, shape.kept), s);
    if (p.extra_token && r0 <= shape.kept && shape.kept < r1) detail::prumerge_extra_row<Arch>(p, in, out, s);
    return status::ok;
  }
};

}  // namespace tokred
