// tokred/cpu/attention_significance.hpp — CPU backend of attention_significance.
//
// Every mode walks query rows of a map's patch block. For each row it writes the head means of
// the keys it needs into a row buffer: attention_score's head mean (heads ascending from 0.0f,
// then ÷ heads, in fp32, SIMD lanes over consecutive keys), so the two policies agree on every
// m[q, k] bit for bit. Then it folds the buffer:
//   column sums  col[k] += m[q, k] in double, queries ascending;
//   row sums     Σ_k m[q, k] in double, in interleaved_sum's fixed order (eight partial sums
//                over k mod 8, combined pairwise);
//   means        fp32(sum / n), one rounding;
//   variances    of those fp32 means, in double, ascending (sample_variance), rounded to fp32.
// Summing in double keeps a 576-term mean within one fp32 rounding of the exact mean of the
// head means; none of these orders depends on the SIMD width or on the share split.
//
// Shares. `column` and `row` split the output tokens: share ith owns [N·ith/nth, N·(ith+1)/nth);
// for its tokens it reads, in every query row, the key columns of those tokens (column) or the
// query rows of those tokens (row), so the shares together read each weight once. A token's
// column mean needs every query row and its row mean every key, and each is computed whole by
// the share that owns the token: the bits do not depend on nth.
// `larger_variance` needs both complete vectors of a map before it can write any token of that
// map, i.e. every weight of the map. Splitting a map would make every share read all of it (nth
// times the memory traffic) or wait for the others (which a share never does), so shares own
// whole maps: map b belongs to share ⌊b·nth / maps⌋. With one map (an image) share 0 computes it
// and the others check the inputs and return `ok` having written nothing; an engine that wants
// several threads on one image asks for `column`, which FoPru's rule usually picks on softmax
// maps (their row means are nearly constant).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/attention_scores.hpp"
#include "tokred/policy/attention_significance.hpp"

namespace tokred {
namespace detail {

/// A share's buffers, carved identically for sizing and for use; n is the most patches one map
/// can have (N), so the size follows from the problem alone.
struct significance_scratch {
  float* means = nullptr;     // (n,) the head means of one query row
  double* columns = nullptr;  // (n,) column sums: column and larger_variance
  float* rows = nullptr;      // (n,) row means: larger_variance

  static significance_scratch carve(arena& a, significance_axis axis, index_t n, int ith, int nth) {
    return carve_shares(a, ith, nth, [&](arena& s) {
      significance_scratch x;
      x.means = s.take<float>(n);
      if (axis != significance_axis::row) x.columns = s.take<double>(n);
      if (axis == significance_axis::larger_variance) x.rows = s.take<float>(n);
      return x;
    });
  }
};

/// The head means m[query, key … key + count) of map b into `out`: attention_score's head mean of
/// that query row, read through a (1, 1, heads, keys) view of it.
template <class Arch, class E>
void head_means(const view<const E, 4>& w, index_t b, index_t query, index_t key, index_t count,  // (maps, heads, queries, keys)
                float* out) noexcept {
  const view<const E, 4> row(&w(b, 0, query, 0), {1, 1, w.extent(1), w.extent(3)},  // (1, 1, heads, keys)
                             {0, 0, w.stride(1), w.stride(3)});
  score_columns(weights_row<Arch, E>{row, 0, true}, key, 0, count, make_view(out, count));
}

/// A sum of n terms as their mean, rounded once to fp32.
inline float mean_of(double sum, index_t n) noexcept {
  return static_cast<float>(sum / static_cast<double>(n));
}

/// torch.var (unbiased) of value(0 … n), rounded to fp32: μ = Σ x / n, then Σ (x − μ)² / (n − 1),
/// both sums in double, ascending. NaN for n = 1 (torch's 0 / 0) and for any non-finite x.
/// Each square is added by std::fma, written out: a compiler may contract `s + d * d` into a
/// fused multiply-add on FMA targets only, which would make the rule's bits depend on -march.
template <class Value>
float sample_variance(index_t n, const Value& value) noexcept {
  if (n < 2) return std::numeric_limits<float>::quiet_NaN();
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) sum += static_cast<double>(value(i));
  const double mu = sum / static_cast<double>(n);
  double squares = 0.0;
  for (index_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(value(i)) - mu;
    squares = std::fma(d, d, squares);
  }
  return static_cast<float>(squares / static_cast<double>(n - 1));
}

/// The inputs every fold reads: one map's n × n block.
template <class E>
struct patch_block {
  view<const E, 4> weights;  // (maps, heads, queries, keys)
  index_t map, first_query, first_key, n;
};

/// Column means of block keys [k0, k0 + count), written to out(j …).
template <class Arch, class E>
void column_means(const patch_block<E>& blk, index_t k0, index_t count, const significance_scratch& s,
                  const view<float, 1>& out, index_t j) noexcept {  // (tokens,)
  std::fill(s.columns, s.columns + count, 0.0);
  for (index_t q = 0; q < blk.n; ++q) {
    head_means<Arch>(blk.weights, blk.map, blk.first_query + q, blk.first_key + k0, count, s.means);
    for (index_t c = 0; c < count; ++c) s.columns[c] += static_cast<double>(s.means[c]);
  }
  for (index_t c = 0; c < count; ++c) out(j + c) = mean_of(s.columns[c], blk.n);
}

/// Row means of block queries [q0, q0 + count), written to out(j …).
template <class Arch, class E>
void row_means(const patch_block<E>& blk, index_t q0, index_t count, const significance_scratch& s,
               const view<float, 1>& out, index_t j) noexcept {  // (tokens,)
  for (index_t i = 0; i < count; ++i) {
    head_means<Arch>(blk.weights, blk.map, blk.first_query + q0 + i, blk.first_key, blk.n, s.means);
    out(j + i) = mean_of(interleaved_sum(s.means, blk.n), blk.n);
  }
}

/// FoPru's rule on one map: both mean vectors in one pass over the block, then the one whose
/// fp32 variance is strictly larger (the column means), else the row means, to out(j … j + n).
template <class Arch, class E>
void larger_variance_means(const patch_block<E>& blk, const significance_scratch& s,
                           const view<float, 1>& out, index_t j) noexcept {  // (tokens,)
  const index_t n = blk.n;
  std::fill(s.columns, s.columns + n, 0.0);
  for (index_t q = 0; q < n; ++q) {
    head_means<Arch>(blk.weights, blk.map, blk.first_query + q, blk.first_key, n, s.means);
    for (index_t c = 0; c < n; ++c) s.columns[c] += static_cast<double>(s.means[c]);
    s.rows[q] = mean_of(interleaved_sum(s.means, n), n);
  }
  const auto column = [&](index_t k) { return mean_of(s.columns[k], n); };
  const auto row = [&](index_t q) { return s.rows[q]; };
  const bool by_column = sample_variance(n, column) > sample_variance(n, row);  // NaN: rows
  for (index_t i = 0; i < n; ++i) out(j + i) = by_column ? column(i) : row(i);
}

}  // namespace detail

/// attention_significance on CPU. `column` and `row` split the output tokens over the shares;
/// `larger_variance` gives each share whole maps (share 0 the only map of an image), see the file
/// comment. Workspace per share: N head means, plus N double column sums (column,
/// larger_variance) and N row means (larger_variance): at most 16·N bytes and alignment padding.
template <class Arch>
struct backend<attention_significance, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const attention_significance& p,
                                     const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::significance_scratch::carve(counter, p.axis, prob.grid.tokens(), 0, exec.nth);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const attention_significance& p,
                      const attention_significance_inputs<E>& in, const score_outputs<host_space>& out,
                      workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_attention_significance(p, in, out); s != status::ok) return s;
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, 0})); s != status::ok)
      return s;
    detail::arena carver(ws);
    const detail::significance_scratch scratch =
        detail::significance_scratch::carve(carver, p.axis, in.grid.tokens(), exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t n = detail::map_tokens(in), maps = in.weights.extent(0);
    const auto block = [&](index_t b) {
      return detail::patch_block<E>{in.weights, b, p.first_query, p.first_key, n};
    };
    if (p.axis == significance_axis::larger_variance) {
      for (index_t b = 0; b < maps; ++b)
        if (b * exec.nth / maps == exec.ith) detail::larger_variance_means<Arch>(block(b), scratch, out.scores, b * n);
      return status::ok;
    }
    const index_t total = in.grid.tokens();
    const index_t j1 = detail::share_begin(total, exec.ith + 1, exec.nth);
    for (index_t j = detail::share_begin(total, exec.ith, exec.nth); j < j1;) {
      const index_t b = j / n, end = std::min(j1, (b + 1) * n);
      if (p.axis == significance_axis::column)
        detail::column_means<Arch>(block(b), j - b * n, end - j, scratch, out.scores, j);
      else
        detail::row_means<Arch>(block(b), j - b * n, end - j, scratch, out.scores, j);
      j = end;
    }
    return status::ok;
  }
};

}  // namespace tokred
