// tokred/cpu/visionzip.hpp — the CPU backend of visionzip.
//
// Four steps:
//   1. dominant  the top `dominant − cls_token` patch scores by radix select (`select_largest`,
//                ties to the lower index, NaN last), which lists them in row order, O(N);
//   2. targets   the rows left (R, in row order) and every step-th of them, O(N);
//   3. assign    every other row of R against the C targets: cosines of the metric rows from the
//                canonical dot kernels (`row_set::pairs`, <tokred/cpu/similarity.hpp>) and the
//                norms of `cosine_scale`, an argmax keeping the lower target, O(|R|·C·Dm);
//   4. write     the dominant rows copied, each contextual row summed from its members, the
//                small outputs, O(rows·D).
//
// Shares. Every output row of step 4 depends on decisions about all of R, and no share may wait
// for another, so each share runs steps 1–3 in full (O(N + |R|·C·Dm): 0.3 M multiply-adds for
// 576 patches, C = 10 and 64-wide keys, against 0.5 M adds for the rows at D = 1024) and then
// writes its own part: columns [D·ith/nth, D·(ith+1)/nth) of every output row, in whole
// 16-column units, so a contextual token with many members divides as evenly as a copy does;
// slots [K·ith/nth, K·(ith+1)/nth) of source, positions and sizes; rows [rows·ith/nth, …) of
// assign. Each column of a row is computed the same way whatever share computes it, so the
// result is bit-identical for every nth.
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
#include "tokred/cpu/tome.hpp"
#include "tokred/policy/visionzip.hpp"

namespace tokred {
namespace detail {

/// The decisions of one visionzip share.
struct visionzip_scratch {
  std::uint32_t* keys = nullptr;     // (rows,) the patches' rank keys (select_largest's scratch)
  std::int64_t* dominant = nullptr;  // (patches,) the dominant patches' rows, ascending
  index_t* slot = nullptr;           // (rows,) output slot of every row, −1 when dropped
  index_t* remaining = nullptr;      // (|R|,) the rows of R, ascending
  index_t* targets = nullptr;        // (C,) the target rows, ascending
  product_scratch product;           // every metric row against the targets (C > 0)
  float* scale = nullptr;            // (rows,) 1/‖m‖ of every row (chain_cosine_scales)
  float* best = nullptr;             // (rows,) a row of R's best cosine so far
  index_t* choice = nullptr;         // (rows,) the target a row of R joins (its own for a target)
  index_t* offsets = nullptr;        // (C + 1,) target q's members: members[offsets[q] … offsets[q+1])
  index_t* cursor = nullptr;         // (C,) where target q's next member goes
  index_t* members = nullptr;        // (|R| − C,) each target's members, ascending

  template <class Arch>
  static visionzip_scratch carve(arena& ar, const visionzip_shape& s, index_t contextual) {
    visionzip_scratch v;
    v.keys = ar.take<std::uint32_t>(s.rows);
    v.dominant = ar.take<std::int64_t>(s.patches);
    v.slot = ar.take<index_t>(s.rows);
    v.remaining = ar.take<index_t>(s.remaining);
    v.targets = ar.take<index_t>(contextual);
    if (contextual > 0) {
      v.product = product_scratch::carve<Arch>(ar, s.rows, contextual);
      v.scale = ar.take<float>(s.rows);
      v.best = ar.take<float>(s.rows);
      v.choice = ar.take<index_t>(s.rows);
    }
    v.offsets = ar.take<index_t>(contextual + 1);
    v.cursor = ar.take<index_t>(contextual);
    v.members = ar.take<index_t>(s.remaining - contextual);
    return v;
  }
};

/// Steps 1 and 2: the dominant rows, every row's dominant slot (−1 for R), R and the targets.
template <class E>
void visionzip_layout(const visionzip& p, const visionzip_inputs<E>& in, const visionzip_shape& s,
                      const visionzip_scratch& v) noexcept {
  const index_t cls = p.cls_token ? 1 : 0, n = in.grid.tokens();
  if (s.patches > 0) {
    const auto key_of = [&](index_t j) { return score_key(float_bits(in.scores(j))); };
    select_largest(key_of, n, s.patches, cls, v.keys, v.dominant);  // rows j + cls, ascending
  }
  std::fill(v.slot, v.slot + s.rows, index_t{-1});
  if (cls) v.slot[0] = 0;
  for (index_t k = 0; k < s.patches; ++k) v.slot[v.dominant[k]] = cls + k;
  index_t r = 0;
  for (index_t i = 0; i < s.rows; ++i)
    if (v.slot[i] < 0) v.remaining[r++] = i;
  for (index_t q = 0; q < p.contextual; ++q) v.targets[q] = v.remaining[q * s.step];
}

/// Step 3: the target every row of R joins, and each target's members in row order. A row's
/// cosine with target t is (dot·s_r)·s_t (`scaled_cosine`), each dot and squared norm one
/// multiply-add chain in column order (the product of <tokred/cpu/merge.hpp> against the target
/// rows, and `chain_cosine_scales`: the order of tome's similarities, which the CUDA backend
/// follows); the argmax visits the targets in order and takes only a strictly larger cosine, so
/// ties keep the lower target and NaN is skipped (a row with no number among its cosines keeps
/// target 0).
template <class Arch, class E>
void visionzip_assign(const visionzip& p, const view<const E, 2>& metric,  // (rows, metric_dim)
                      const visionzip_shape& s, const visionzip_scratch& v) noexcept {
  const index_t c = p.contextual;
  chain_cosine_scales<Arch>(metric, v.product.b_panels, v.scale);
  for (index_t i = 0; i < s.rows; ++i) {
    v.best[i] = -std::numeric_limits<float>::infinity();
    v.choice[i] = 0;
  }
  cross_dots<Arch>(metric, indexed_rows<E>{metric, v.targets, c}, v.product,
                   [&](index_t x, index_t y, const float* dots, index_t count) {
                     if (v.slot[x] >= 0) return;  // a dominant row
                     float top = v.best[x];
                     index_t at = -1;
                     for (index_t q = 0; q < count; ++q) {
                       const float sim = scaled_cosine(dots[q], v.scale[x], v.scale[v.targets[y + q]]);
                       if (sim > top) top = sim, at = q;
                     }
                     if (at >= 0) v.best[x] = top, v.choice[x] = y + at;
                   });
  for (index_t q = 0; q < c; ++q) v.choice[v.targets[q]] = q;  // a target joins itself
  // Each target's members (itself left out) in row order.
  group_layout(
      c, s.remaining,
      [&](index_t r) {
        const index_t row = v.remaining[r], q = v.choice[row];
        return row != v.targets[q] ? q : index_t{-1};
      },
      [&](index_t r) { return v.remaining[r]; }, no_head, v.offsets, v.cursor, v.members);
  for (index_t r = 0; r < s.remaining; ++r) v.slot[v.remaining[r]] = p.dominant + v.choice[v.remaining[r]];
}

/// Floats one pass over a contextual token's members accumulates in registers (as the pooling
/// kernels: a block of 64 floats, whole batches).
inline constexpr index_t visionzip_block_floats = 64;

/// `Unroll` batches of one contextual token from column c: the members summed from 0 in member
/// order, then t + sum / divisor (`plus`) or (t + sum) / divisor.
template <class Arch, int Unroll, class Ein, class Eout>
void contextual_batches(const view<const Ein, 2>& tokens,  // (rows, dim), unit inner stride
                        index_t t, const index_t* members, index_t m, bool plus, float divisor, index_t c,
                        Eout* out) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  batch acc[Unroll];
  for (int u = 0; u < Unroll; ++u) acc[u] = plus ? batch(0.0f) : load_floats<Arch>(&tokens(t, c + u * lanes));
  for (index_t k = 0; k < m; ++k) {
    const Ein* row = &tokens(members[k], c);
    for (int u = 0; u < Unroll; ++u) acc[u] = acc[u] + load_floats<Arch>(row + u * lanes);
  }
  const batch div(divisor);
  for (int u = 0; u < Unroll; ++u) {
    const batch quotient = divide<Arch>(acc[u], div);
    const batch value = plus ? load_floats<Arch>(&tokens(t, c + u * lanes)) + quotient : quotient;
    store_floats<Arch>(out + c + u * lanes, value);
  }
}

/// Columns [c0, c1) of one contextual token: its target row `t` and members[0 … m), summed in
/// member order from 0 (adds only, so blocks, single batches and single columns round alike),
/// then t + sum / max(m, 1) (target_plus_mean) or (t + sum) / (1 + m) (group_mean).
template <class Arch, class Ein, class Eout>
void contextual_row(const view<const Ein, 2>& tokens,  // (rows, dim)
                    index_t t, const index_t* members, index_t m, contextual_merge merge, index_t c0,
                    index_t c1, Eout* out, index_t out_stride) noexcept {
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  constexpr int unroll = visionzip_block_floats / lanes > 0 ? static_cast<int>(visionzip_block_floats / lanes) : 1;
  const bool plus = merge == contextual_merge::target_plus_mean;
  const float divisor = plus ? static_cast<float>(m > 1 ? m : 1) : static_cast<float>(m + 1);
  index_t c = c0;
  if (tokens.stride(1) == 1 && out_stride == 1) {
    for (; c + unroll * lanes <= c1; c += unroll * lanes)
      contextual_batches<Arch, unroll>(tokens, t, members, m, plus, divisor, c, out);
    for (; c + lanes <= c1; c += lanes) contextual_batches<Arch, 1>(tokens, t, members, m, plus, divisor, c, out);
  }
  for (; c < c1; ++c) {
    float acc = plus ? 0.0f : to_float(tokens(t, c));
    for (index_t k = 0; k < m; ++k) acc += to_float(tokens(members[k], c));
    out[c * out_stride] = from_float<Eout>(plus ? to_float(tokens(t, c)) + acc / divisor : acc / divisor);
  }
}

/// The input row output slot q stands on: a dominant row, or a contextual token's target.
inline index_t visionzip_row_of(const visionzip& p, const visionzip_scratch& v, index_t q) noexcept {
  const index_t cls = p.cls_token ? 1 : 0;
  if (q >= p.dominant) return v.targets[q - p.dominant];
  return q < cls ? 0 : static_cast<index_t>(v.dominant[q - cls]);
}

/// Columns of every output row are written in units of this many (a 64-byte line of floats).
inline constexpr index_t visionzip_column_unit = 16;

/// Step 4 for columns [c0, c1) of every output row, slots [q0, q1) and assign rows [i0, i1).
template <class Arch, class Ein, class Eout>
void visionzip_write(const visionzip& p, const visionzip_inputs<Ein>& in, const merge_outputs<Eout>& out,
                     const visionzip_shape& s, const visionzip_scratch& v, index_t c0, index_t c1, index_t q0,
                     index_t q1, index_t i0, index_t i1) noexcept {
  const index_t cls = p.cls_token ? 1 : 0;
  if (requested(out.tokens) && c0 < c1) {
    for (index_t q = 0; q < s.kept; ++q) {
      if (q < p.dominant) {
        const index_t i = visionzip_row_of(p, v, q);
        copy_row<Arch>(&in.tokens(i, c0), in.tokens.stride(1), &out.tokens(q, c0), out.tokens.stride(1), c1 - c0);
      } else {
        const index_t t = q - p.dominant, first = v.offsets[t];
        contextual_row<Arch>(in.tokens, v.targets[t], v.members + first, v.offsets[t + 1] - first, p.merge, c0,
                             c1, &out.tokens(q, 0), out.tokens.stride(1));
      }
    }
  }
  for (index_t q = q0; q < q1; ++q) {
    const index_t i = visionzip_row_of(p, v, q);
    if (requested(out.source)) out.source(q) = i;
    if (requested(out.sizes))
      out.sizes(q) = q < p.dominant ? 1.0f : static_cast<float>(1 + v.offsets[q - p.dominant + 1] - v.offsets[q - p.dominant]);
    if (requested(out.positions)) write_position(out.positions, q, in.grid, i - cls);  // [CLS]: −1
  }
  if (requested(out.assign))
    for (index_t i = i0; i < i1; ++i) out.assign(i) = v.slot[i];
}

}  // namespace detail

/// visionzip on CPU. See the top of this file for the steps and what the shares do. Checks, in
/// order: the exec (`invalid_exec`); `detail::check_visionzip` (parameters, grid and budget;
/// scores; compared rows; token rows and out.tokens; the other outputs; overlaps); the
/// workspace. No value makes it fail: NaN scores rank last, NaN or zero metric rows follow the
/// rules of `visionzip`.
template <class Arch>
struct backend<visionzip, cpu<Arch>> {
  static detail::visionzip_scratch carve(detail::arena& a, const visionzip& p, const detail::visionzip_shape& s,
                                         int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& one) {
      return detail::visionzip_scratch::carve<Arch>(one, s, p.contextual);
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const visionzip& p, const problem& prob) {
    const detail::visionzip_shape s = detail::visionzip_count(p, prob.grid);
    if (s.code != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, p, s, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const visionzip& p, const visionzip_inputs<Ein>& in,
                      const merge_outputs<Eout>& out, workspace ws) {
    if (status st = check_exec(exec); st != status::ok) return st;
    const detail::visionzip_shape s = detail::check_visionzip(p, in, out);
    if (s.code != status::ok) return s.code;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status st = check_workspace(ws, need); st != status::ok) return st;
    detail::arena carver(ws);
    const detail::visionzip_scratch v = carve(carver, p, s, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    detail::visionzip_layout(p, in, s, v);
    if (p.contextual > 0) detail::visionzip_assign<Arch>(p, detail::compared_rows(in), s, v);
    const index_t dim = detail::requested(out.tokens) ? out.tokens.extent(1) : 0;
    const index_t units = (dim + detail::visionzip_column_unit - 1) / detail::visionzip_column_unit;
    const auto column = [&](int share) {
      return std::min(dim, detail::visionzip_column_unit * detail::share_begin(units, share, exec.nth));
    };
    detail::visionzip_write<Arch>(p, in, out, s, v, column(exec.ith), column(exec.ith + 1),
                                  detail::share_begin(s.kept, exec.ith, exec.nth),
                                  detail::share_begin(s.kept, exec.ith + 1, exec.nth),
                                  detail::share_begin(s.rows, exec.ith, exec.nth),
                                  detail::share_begin(s.rows, exec.ith + 1, exec.nth));
    return status::ok;
  }
};

}  // namespace tokred
