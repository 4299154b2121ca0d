// tokred/cpu/attention_scores.hpp — CPU backends of attention_score and fused_attention_score.
//
// attention_score reads rows·layers·heads·N weights once. Shares own output tokens
// [N·ith/nth, N·(ith+1)/nth); SIMD lanes hold consecutive tokens, so each token's sum runs over
// (layer, head) in the same order in a lane as in the scalar tail, and the bits never depend on
// the split.
//
// fused_attention_score computes, per (query, head) row, the dot products of the query with every
// key, one softmax over them and the probabilities of the span. Its cost is the dot products:
// queries·heads·keys·head_dim multiply-adds, one per key element loaded when one query row reads
// each key. Rows are scored `fused_rows_per_pass` at a time, in row order (heads ascending,
// queries within a head), reading the keys in chunks of `fused_key_chunk` that stay in L1 while
// every row of the pass multiplies them: rows sharing a kv head (GQA groups, several queries)
// read its keys once, and rows of consecutive heads read adjacent slices of token-major key rows
// (8 heads of FastV's keys, 651 × 32 × 128 read in place: 1.10–1.51× faster than one head per
// pass, the speed of a head-major copy of the same keys without the copy) (software
// prefetching of the next chunk measured no gain over the hardware prefetcher, 9216 keys × 128
// fp32, 1 and 4 rows). Only the span's dot products are stored (one row of N per row of
// the pass); the keys outside the span feed a running maximum and sum, so the workspace depends
// on N and head_dim alone, as `workspace_bytes(exec, policy, problem)` requires.
//
// A softmax row needs its maximum and its sum over every key before any probability exists, and
// the score of a token sums the rows of all heads: either split (keys or heads across shares)
// needs a reduction across shares, i.e. one share waiting for the others, and a split of the
// output tokens would make every share compute every dot product. So share 0 computes everything
// and the other shares check the inputs and return having written nothing. An engine should
// give this policy one thread (the work is one pass over the keys, bandwidth-bound for a single
// query row; measurements in docs/policies/fused_attention_score.md).
//
// Summation order of the fused score, fixed (independent of chunking, passes and shares):
//   d_k    the dot product q·k in cpu/similarity.hpp's canonical order;
//   keys outside the span, ascending: a running maximum m' (from −FLT_MAX) and a running sum z'
//          in double, z' ← z'·exp(s·(m'_old − m'_new)) when the maximum rises, then
//          z' ← z' + exp_f(s·(d_k − m')), exp_f being xsimd's fp32 exp;
//   span   m = max(m', max of the span's d), e_j = exp_f(s·(d_j − m)); Z = Σ e_j in double over eight
//          interleaved partial sums (j mod 8), combined pairwise, plus z'·exp(s·(m' − m));
//   p_j    = fp32(e_j · (1/Z)) in double; the rows add p_j into an fp32 sum per token, heads
//          ascending, queries ascending within a head; the sum is divided by H·Q (mean) or Q (sum).
// Summing in double keeps a 9216-key softmax within 10⁻⁶ of an exact one, where a sequential
// fp32 sum of 9216 terms can lose 10⁻⁶–10⁻⁵.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/attention_scores.hpp"

namespace tokred {
namespace detail {

// ---- attention_score: weights already given ------------------------------------------------------

/// Sums the (layer, head) weights of one weights row for consecutive key columns.
template <class Arch, class E>
struct weights_row {
  view<const E, 4> weights;  // (rows, layers, heads, keys)
  index_t row;
  bool mean;

  /// The score of column c (weights_column_score).
  float scalar(index_t c) const noexcept { return weights_column_score(weights, row, c, mean); }

  /// weights_column_score for B batches of consecutive columns from c (unit key stride only).
  template <int B>
  void batches(index_t c, float_batch<Arch> (&total)[B]) const noexcept {
    using batch = float_batch<Arch>;
    constexpr index_t lanes = static_cast<index_t>(batch::size);
    const index_t layers = weights.extent(1), heads = weights.extent(2);
    const batch divisor(static_cast<float>(heads));
    for (int b = 0; b < B; ++b) total[b] = batch(0.0f);
    for (index_t l = 0; l < layers; ++l) {
      batch acc[B];
      for (int b = 0; b < B; ++b) acc[b] = batch(0.0f);
      for (index_t h = 0; h < heads; ++h) {
        const E* p = &weights(row, l, h, c);
        for (int b = 0; b < B; ++b) acc[b] += load_floats<Arch>(p + b * lanes);
      }
      for (int b = 0; b < B; ++b) total[b] += mean ? divide<Arch>(acc[b], divisor) : acc[b];
    }
  }
};

/// Writes the scores of `count` tokens from output index `j` (columns from `c`) of one row.
template <class Arch, class E>
void score_columns(const weights_row<Arch, E>& w, index_t c, index_t j, index_t count,
                   const view<float, 1>& out) noexcept {  // (tokens,)
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  const auto store = [&](index_t at, const batch& x) {
    if (out.stride(0) == 1) return x.store_unaligned(&out(at));
    alignas(64) float lane[batch::size];
    x.store_aligned(lane);
    for (index_t i = 0; i < lanes; ++i) out(at + i) = lane[i];
  };
  index_t i = 0;
  if (w.weights.stride(3) == 1) {
    // Four batches per pass over the heads: each head's row is visited once per 4·lanes tokens.
    for (; i + 4 * lanes <= count; i += 4 * lanes) {
      batch total[4];
      w.template batches<4>(c + i, total);
      for (int b = 0; b < 4; ++b) store(j + i + b * lanes, total[b]);
    }
    for (; i + lanes <= count; i += lanes) {
      batch total[1];
      w.template batches<1>(c + i, total);
      store(j + i, total[0]);
    }
  }
  for (; i < count; ++i) out(j + i) = w.scalar(c + i);
}

// ---- fused_attention_score: from query rows and keys -------------------------------------------

/// Keys per chunk of the pass over a kv head: 32 keys of 128 fp32 values are 16 KiB, which stay
/// in L1 while every row of the pass multiplies them. Results do not depend on it.
inline constexpr index_t fused_key_chunk = 32;

/// (query, head) rows scored per pass over the keys: a GQA group of up to 8 heads reads each key
/// once, and 8 heads of token-major keys read 8 adjacent slices of each key row. Results do not
/// depend on it.
inline constexpr index_t fused_rows_per_pass = 8;

/// The running softmax state of one row over the keys outside the span.
struct rest_state {
  float max = -FLT_MAX;  // m', the largest dot product seen outside the span
  double sum = 0.0;      // z' = Σ exp(s·(d − m')) over them
};

/// The workspace of the fused score, carved identically for sizing and for use.
struct fused_scratch {
  std::byte* queries = nullptr;  // (rows_per_pass, head_dim) elements of E, contiguous
  float* span = nullptr;         // (rows_per_pass, span_stride) the span's dot products, then exps
  float* total = nullptr;        // (tokens,) the sum of p over rows
  index_t span_stride = 0;       // N rounded up to whole SIMD batches

  template <class Arch>
  static fused_scratch carve(arena& a, index_t n, index_t head_dim) {
    constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
    fused_scratch s;
    s.span_stride = saturating_round_up(n, lanes);
    // Room for fp32 queries; f16 and bf16 use half of it.
    s.queries = a.take<std::byte>(fused_rows_per_pass, head_dim, static_cast<index_t>(sizeof(float)));
    s.span = a.take<float>(fused_rows_per_pass, s.span_stride);
    s.total = a.take<float>(n);
    return s;
  }
};

/// The dot products of contiguous query row `q` with keys [k0, k0 + count) of kv head `g`: four
/// keys per call of the canonical kernel, the rest one by one (same order, same bits).
///
/// Flattened: GCC would otherwise keep the kernel out of line (its runtime-length tail makes it
/// large), and with head_dim 128 the call's prologue and epilogue cost about as much as its four
/// loop iterations (9216 keys × 128 fp32, AVX-512 build, interleaved runs on a shared machine:
/// one query row 15–23 → 13–17 ms, four rows 22–32 → 19–28 ms, GQA 8 kv heads 4.6–7.8 →
/// 3.0–6.8 ms; SSE2 build: no change beyond the noise).
template <class Arch, class E>
#if defined(__GNUC__)
[[gnu::flatten]]
#endif
void key_dots(const E* q, const view<const E, 3>& keys, index_t g, index_t k0, index_t count,
              float* out) noexcept {
  const index_t dim = keys.extent(2);
  if (keys.stride(2) != 1) {
    for (index_t c = 0; c < count; ++c)
      out[c] = combine<Arch, pair_op::dot>(q, 1, &keys(g, k0 + c, 0), keys.stride(2), dim);
    return;
  }
  index_t c = 0;
  for (; c + 4 <= count; c += 4) {
    const E* const b[4] = {&keys(g, k0 + c, 0), &keys(g, k0 + c + 1, 0), &keys(g, k0 + c + 2, 0),
                           &keys(g, k0 + c + 3, 0)};
    float four[4];
    combine_contiguous<Arch, pair_op::dot, 4>(q, b, dim, four);
    for (int m = 0; m < 4; ++m) out[c + m] = four[m];
  }
  for (; c < count; ++c) {
    const E* const b[1] = {&keys(g, k0 + c, 0)};
    float one[1];
    combine_contiguous<Arch, pair_op::dot, 1>(q, b, dim, one);
    out[c] = one[0];
  }
}

/// exp_f(s·(x[i] − m)) for i < count, in place; `count` is a multiple of the batch size.
template <class Arch>
void exp_shifted(float* x, index_t count, float m, float s) noexcept {
  using batch = float_batch<Arch>;
  const batch bm(m), bs(s);
  for (index_t i = 0; i < count; i += static_cast<index_t>(batch::size))
    xsimd::exp((batch::load_aligned(x + i) - bm) * bs).store_aligned(x + i);
}

/// The larger of a and b, ignoring a NaN b (NaN scores reach the sums instead).
inline float max_ignoring_nan(float a, float b) noexcept { return b > a ? b : a; }

/// Adds the dot products of keys outside the span to a row's running state, ascending: key i's
/// term is relative to the running maximum after key i, and what was summed before is rescaled
/// whenever that maximum rises.
template <class Arch>
void add_rest(rest_state& st, const float* dots, index_t count, float s) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  alignas(64) float term[fused_key_chunk + lanes];
  alignas(64) float running[fused_key_chunk + lanes];  // the maximum after each key
  float m = st.max;
  for (index_t i = 0; i < count; ++i) {
    m = max_ignoring_nan(m, dots[i]);
    running[i] = m;
    term[i] = dots[i];
  }
  const index_t padded = (count + lanes - 1) / lanes * lanes;
  for (index_t i = count; i < padded; ++i) term[i] = running[i] = 0.0f;  // exp(0), never summed
  for (index_t i = 0; i < padded; i += lanes)
    xsimd::exp((batch::load_aligned(term + i) - batch::load_aligned(running + i)) * batch(s))
        .store_aligned(term + i);
  double sum = st.sum;
  float before = st.max;
  for (index_t i = 0; i < count; ++i) {
    if (running[i] != before) {  // the maximum rose at key i
      sum *= std::exp(static_cast<double>(s) *
                      (static_cast<double>(before) - static_cast<double>(running[i])));
      before = running[i];
    }
    sum += static_cast<double>(term[i]);
  }
  st.max = m;
  st.sum = sum;
}

/// The largest of `floor` and x[0 … n), ignoring NaN: exact, so lanes may take any order.
template <class Arch>
float largest_ignoring_nan(const float* x, index_t n, float floor) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  batch m0(floor), m1(floor);
  index_t j = 0;
  for (; j + 2 * lanes <= n; j += 2 * lanes) {
    const batch a = batch::load_unaligned(x + j), b = batch::load_unaligned(x + j + lanes);
    m0 = xsimd::select(a > m0, a, m0);
    m1 = xsimd::select(b > m1, b, m1);
  }
  alignas(64) float lane[2 * lanes];
  m0.store_aligned(lane);
  m1.store_aligned(lane + lanes);
  float m = floor;
  for (const float v : lane) m = max_ignoring_nan(m, v);
  for (; j < n; ++j) m = max_ignoring_nan(m, x[j]);
  return m;
}

/// Σ x[0 … n) in double over eight interleaved partial sums (j mod 8), combined pairwise: a fixed
/// order that compilers keep in vector registers.
inline double interleaved_sum(const float* x, index_t n) noexcept {
  double part[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  index_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int r = 0; r < 8; ++r) part[r] += static_cast<double>(x[j + r]);
  for (int r = 0; j < n; ++j, ++r) part[r] += static_cast<double>(x[j]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

/// Turns one row's span dot products into probabilities and adds them to `total`.
template <class Arch>
void add_span_probabilities(float* span, index_t n, index_t padded, const rest_state& rest,
                            float s, float* total) noexcept {
  const float m = largest_ignoring_nan<Arch>(span, n, rest.max);
  for (index_t j = n; j < padded; ++j) span[j] = m;  // exp(0) = 1, never summed
  exp_shifted<Arch>(span, padded, m, s);
  const double z = interleaved_sum(span, n) +
                   rest.sum * std::exp(static_cast<double>(s) *
                                       (static_cast<double>(rest.max) - static_cast<double>(m)));
  const double inverse = 1.0 / z;
  for (index_t j = 0; j < n; ++j) total[j] += static_cast<float>(static_cast<double>(span[j]) * inverse);
}

/// Scores the (query, head) rows [r0, r0 + count) together: row r is head r / Q, query r % Q,
/// reading kv head (r / Q) / G. The rows of a pass read each chunk of keys while it is in L1:
/// the rows of one GQA group share its keys, and the rows of consecutive heads read adjacent
/// slices of each key row when the keys are token-major ([keys, kv_heads, head_dim], as a k
/// projection's output or a paged cache holds them), so each row is read whole.
template <class Arch, class E>
void score_rows(const fused_attention_inputs<E>& in, index_t r0, index_t count, index_t first_key,
                float s, const fused_scratch& scratch) noexcept {
  const index_t queries = in.query.extent(0), heads = in.query.extent(1), dim = in.query.extent(2);
  const index_t group = heads / in.keys.extent(0), keys = in.keys.extent(1), n = in.grid.tokens();
  const index_t span_end = first_key + n;
  E* const qbuf = reinterpret_cast<E*>(scratch.queries);
  index_t kv_head[fused_rows_per_pass];
  for (index_t r = 0; r < count; ++r) {
    const index_t h = (r0 + r) / queries, q = (r0 + r) % queries;
    kv_head[r] = h / group;
    copy_row<Arch>(&in.query(q, h, 0), in.query.stride(2), qbuf + r * dim, index_t{1}, dim);
  }
  rest_state rest[fused_rows_per_pass];
  for (index_t k0 = 0; k0 < keys; k0 += fused_key_chunk) {
    const index_t k1 = std::min(k0 + fused_key_chunk, keys);
    // Keys of this chunk before, inside and after the span.
    const index_t a = std::min(std::max(first_key, k0), k1), b = std::min(std::max(span_end, k0), k1);
    alignas(64) float chunk_dots[fused_rows_per_pass * fused_key_chunk];
    for (index_t r = 0; r < count; ++r)
      key_dots<Arch>(qbuf + r * dim, in.keys, kv_head[r], k0, k1 - k0, chunk_dots + r * fused_key_chunk);
    for (index_t r = 0; r < count; ++r) {
      const float* dots = chunk_dots + r * fused_key_chunk;
      float* span = scratch.span + r * scratch.span_stride;
      if (b > a)
        std::memcpy(span + (a - first_key), dots + (a - k0), static_cast<std::size_t>(b - a) * sizeof(float));
      if (a > k0) add_rest<Arch>(rest[r], dots, a - k0, s);
      if (k1 > b) add_rest<Arch>(rest[r], dots + (b - k0), k1 - b, s);
    }
  }
  for (index_t r = 0; r < count; ++r)
    add_span_probabilities<Arch>(scratch.span + r * scratch.span_stride, n, scratch.span_stride, rest[r],
                                 s, scratch.total);
}

}  // namespace detail

/// attention_score on CPU. Each share scores its own tokens; no workspace.
template <class Arch>
struct backend<attention_score, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const attention_score&, const problem&) {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const attention_score& p,
                      const attention_score_inputs<E>& in, const score_outputs<host_space>& out,
                      workspace) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_attention_score(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens();
    const bool per_frame = in.weights.extent(0) != 1;
    const index_t row_tokens = per_frame ? in.grid.frame_tokens() : n;
    const index_t j1 = detail::share_begin(n, exec.ith + 1, exec.nth);
    for (index_t j = detail::share_begin(n, exec.ith, exec.nth); j < j1;) {
      const index_t row = j / row_tokens, row_first = row * row_tokens;
      const index_t end = std::min(j1, row_first + row_tokens);
      const detail::weights_row<Arch, E> w{in.weights, row, p.heads == head_reduce::mean};
      detail::score_columns(w, p.first_key + (j - row_first), j, end - j, out.scores);
      j = end;
    }
    return status::ok;
  }
};

/// fused_attention_score on CPU. Share 0 computes every score; the other shares check the
/// inputs and return `ok` having written nothing (see the file comment). `prob.dim` is the head
/// dimension; the workspace holds one span row per row of a pass and one sum per token:
/// about 4·(8·N + N + 8·head_dim) bytes.
template <class Arch>
struct backend<fused_attention_score, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const fused_attention_score& p,
                                     const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok || prob.dim < 0)
      return 0;
    detail::arena counter;
    detail::fused_scratch::carve<Arch>(counter, prob.grid.tokens(), prob.dim);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const fused_attention_score& p,
                      const fused_attention_inputs<E>& in, const score_outputs<host_space>& out,
                      workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_fused_attention(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens(), dim = in.query.extent(2);
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, dim})); s != status::ok)
      return s;
    if (exec.ith != 0) return status::ok;
    detail::arena carver(ws);
    const detail::fused_scratch scratch = detail::fused_scratch::carve<Arch>(carver, n, dim);
    if (!carver.fits()) return status::workspace_too_small;

    const float s = detail::fused_scale(p, dim);
    for (index_t j = 0; j < n; ++j) scratch.total[j] = 0.0f;  // (std::fill: a false -Wstringop-overflow in GCC 12)
    const index_t rows = in.query.extent(0) * in.query.extent(1);  // heads ascending, queries within
    for (index_t r0 = 0; r0 < rows; r0 += detail::fused_rows_per_pass)
      detail::score_rows<Arch>(in, r0, std::min(detail::fused_rows_per_pass, rows - r0), p.first_key, s, scratch);
    const float divisor = static_cast<float>(p.heads == head_reduce::mean ? rows : in.query.extent(0));
    for (index_t j = 0; j < n; ++j) out.scores(j) = scratch.total[j] / divisor;
    return status::ok;
  }
};

}  // namespace tokred
