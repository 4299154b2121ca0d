// tokred/cpu/holitom_inner.hpp — the CPU backend of holitom_inner.
//
//   1. keep     the K kept tokens by radix select on the attention (`select_largest`), then
//               ranked (attention descending, index ascending), O(L + K log K);
//   2. gather   the kept rows in rank order and the other rows in index order, as fp32, with
//               their norms, O(L·dim);
//   3. target   every other row's most similar kept row: the blocked product (`cross_dots`,
//               <tokred/cpu/merge.hpp>) with a running first-maximum per row, O((L − K)·K·dim);
//   4. merge    the halvings in index order on the fp32 copies of the kept rows, each rounded to
//               the element type, O((L − K)·dim);
//   5. write    the kept rows in index order, source, sizes, assign, O(K·dim).
//
// Shares. Step 4 needs every target, so share 0 does every step and the other shares check the
// inputs (values included) and return having written nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/merge.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/holitom_inner.hpp"

namespace tokred {
namespace detail {

/// The scratch of holitom_inner (one carve: only share 0 works).
struct holitom_inner_scratch {
  std::uint32_t* keys = nullptr;    // (L,) attention rank keys
  std::int64_t* kept = nullptr;     // (K,) ascending
  std::int64_t* ranked = nullptr;   // (K,) the kept tokens in rank order
  index_t* slot = nullptr;          // (L,) output row of a kept token
  std::int64_t* others = nullptr;   // (L − K,) ascending
  float* kept_rows = nullptr;       // (K, dim) rank order; the merged states after step 4
  float* other_rows = nullptr;      // (L − K, dim)
  float* kept_norm = nullptr;       // (K,)
  float* other_norm = nullptr;      // (L − K,)
  float* best = nullptr;            // (L − K,) the running maximum cosine
  index_t* target = nullptr;        // (L − K,) the rank of its target
  float* sizes = nullptr;           // (K,) by rank
  product_scratch product;

  template <class Arch>
  static holitom_inner_scratch carve(arena& ar, index_t n, index_t kept, index_t dim) {
    const index_t rest = n - kept;
    holitom_inner_scratch s;
    s.keys = ar.take<std::uint32_t>(n);
    s.kept = ar.take<std::int64_t>(kept);
    s.ranked = ar.take<std::int64_t>(kept);
    s.slot = ar.take<index_t>(n);
    s.others = ar.take<std::int64_t>(rest);
    s.kept_rows = ar.take<float>(kept, dim);
    s.other_rows = ar.take<float>(rest, dim);
    s.kept_norm = ar.take<float>(kept);
    s.other_norm = ar.take<float>(rest);
    s.best = ar.take<float>(rest);
    s.target = ar.take<index_t>(rest);
    s.sizes = ar.take<float>(kept);
    s.product = product_scratch::carve<Arch>(ar, rest, kept);
    return s;
  }
};

/// `v` rounded to the element type E and back: what a tensor op of that type stores.
template <class E>
float rounded_to(float v) noexcept {
  if constexpr (std::is_same_v<E, float>) return v;
  else return to_float(from_float<E>(v));
}

/// Copies row `i` of `rows` to `out` as fp32 and returns its norm.
template <class Arch, class E>
float gather_row(const view<const E, 2>& rows, index_t i, float* out) noexcept {
  copy_row<Arch>(&rows(i, 0), rows.stride(1), out, 1, rows.extent(1));
  return std::sqrt(row_squared_norm<Arch>(rows, i));
}

/// Step 3: each other row's target among the kept rows, the first maximum in rank order, a NaN
/// cosine (a zero row) taken as the maximum the first time it appears.
template <class Arch>
void inner_targets(index_t rest, index_t kept, index_t dim, const holitom_inner_scratch& s) noexcept {
  for (index_t x = 0; x < rest; ++x) {
    s.best[x] = -std::numeric_limits<float>::infinity();
    s.target[x] = 0;
  }
  const view<const float, 2> a = make_view<const float>(s.other_rows, rest, dim);
  const view<const float, 2> b = make_view<const float>(s.kept_rows, kept, dim);
  cross_dots<Arch>(a, b, s.product, [&](index_t x, index_t y, const float* dots, index_t count) {
    float top = s.best[x];
    if (std::isnan(top)) return;  // a NaN already won
    index_t at = -1;
    for (index_t c = 0; c < count; ++c) {
      const float sim = dots[c] / (s.other_norm[x] * s.kept_norm[y + c]);
      if (std::isnan(sim)) {
        top = sim, at = c;
        break;
      }
      if (sim > top) top = sim, at = c;
    }
    if (at >= 0) s.best[x] = top, s.target[x] = y + at;
  });
}

}  // namespace detail

/// holitom_inner on CPU. See the top of this file for the steps; share 0 does all the work, the
/// other shares check and return. Checks, in order: the exec (`invalid_exec`);
/// `detail::check_holitom_inner` (count; token rows and out.tokens; attention; outputs;
/// overlaps); the workspace; `detail::check_finite_rows` (non-finite token rows,
/// `invalid_parameter`), made by every share before anything is written.
/// Workspace: 4·L·dim bytes of fp32 rows, the product's panels and about 40·L, for any nth.
template <class Arch>
struct backend<holitom_inner, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const holitom_inner& p, const problem& prob) {
    const index_t kept = retained_count(p, prob);
    if (kept == 0 || check_exec(exec) != status::ok || prob.dim < 0) return 0;
    detail::arena counter;
    detail::holitom_inner_scratch::carve<Arch>(counter, prob.grid.tokens(), kept, prob.dim);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const holitom_inner& p, const holitom_inner_inputs<Ein>& in,
                      const holitom_inner_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    const count_result c = detail::check_holitom_inner(p, in, out);
    if (c.code != status::ok) return c.code;
    const index_t n = in.tokens.extent(0), dim = in.tokens.extent(1), kept = c.count, rest = n - kept;
    const std::size_t need = workspace_bytes(exec, p, problem{sequence_grid(n), dim});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    if (status s = detail::check_finite_rows<Arch>(in.tokens); s != status::ok) return s;
    if (exec.ith != 0) return status::ok;

    detail::arena carver(ws);
    const auto s = detail::holitom_inner_scratch::carve<Arch>(carver, n, kept, dim);
    if (!carver.fits()) return status::workspace_too_small;

    // 1. keep and rank.
    for (index_t i = 0; i < n; ++i) s.keys[i] = detail::score_key(detail::float_bits(in.attention(i)));
    detail::select_largest([&](index_t i) { return s.keys[i]; }, n, kept, 0, s.keys, s.kept);
    std::copy(s.kept, s.kept + kept, s.ranked);
    std::stable_sort(s.ranked, s.ranked + kept, [&](std::int64_t a, std::int64_t b) { return s.keys[a] > s.keys[b]; });
    std::fill(s.slot, s.slot + n, index_t{-1});
    for (index_t q = 0; q < kept; ++q) s.slot[s.kept[q]] = q;

    // 2. gather.
    for (index_t r = 0; r < kept; ++r) s.kept_norm[r] = detail::gather_row<Arch>(in.tokens, s.ranked[r], s.kept_rows + r * dim);
    for (index_t i = 0, x = 0; i < n; ++i)
      if (s.slot[i] < 0) {
        s.others[x] = i;
        s.other_norm[x] = detail::gather_row<Arch>(in.tokens, i, s.other_rows + x * dim);
        ++x;
      }

    // 3. targets, 4. the halvings in index order.
    if (rest > 0) detail::inner_targets<Arch>(rest, kept, dim, s);
    std::fill(s.sizes, s.sizes + kept, 1.0f);
    for (index_t x = 0; x < rest; ++x) {
      float* h = s.kept_rows + s.target[x] * dim;
      const float* from = s.other_rows + x * dim;
      for (index_t col = 0; col < dim; ++col)
        h[col] = detail::rounded_to<Ein>(detail::rounded_to<Ein>(h[col] + from[col]) / 2.0f);
      s.sizes[s.target[x]] += 1.0f;
    }

    // 5. write, kept tokens in index order.
    for (index_t r = 0; r < kept; ++r) {
      const index_t q = s.slot[s.ranked[r]];
      if (detail::requested(out.tokens)) detail::copy_row<Arch>(s.kept_rows + r * dim, 1, &out.tokens(q, 0), out.tokens.stride(1), dim);
      if (detail::requested(out.source)) out.source(q) = s.ranked[r];
      if (detail::requested(out.sizes)) out.sizes(q) = s.sizes[r];
    }
    if (detail::requested(out.assign)) {
      for (index_t q = 0; q < kept; ++q) out.assign(s.kept[q]) = q;
      for (index_t x = 0; x < rest; ++x) out.assign(s.others[x]) = s.slot[s.ranked[s.target[x]]];
    }
    return status::ok;
  }
};

}  // namespace tokred
