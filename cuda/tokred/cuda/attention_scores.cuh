// tokred/cuda/attention_scores.cuh — CUDA backends of attention_score and fused_attention_score.
//
// attention_score: one launch, one thread per token, no workspace. The thread runs
// weights_column_score of <tokred/policy/attention_scores.hpp> — per layer the heads ascending,
// every step rounded once — so the scores are the CPU backend's bit for bit (but NaN payloads).
// Neighbouring threads read neighbouring key columns of each (row, layer, head).
//
// fused_attention_score: the rows (query, head), heads ascending and queries within a head, are
// taken in chunks of `fused_chunk_rows(head_dim)`, each chunk two launches:
//   stats       one block per row: the row's query staged in shared memory as fp32, each thread
//               computing the logits of keys t, t + T, … in channel order and folding them into
//               a softmax_state; the block's states merged pairwise (merge_level) into the row's
//               maximum and Σ exp in double, written to the workspace.
//   accumulate  one thread per token: the chunk's queries staged in shared memory; the thread
//               recomputes its key's logit for each row of the chunk, rows ascending, and adds
//               the probability to its running fp32 total (the workspace; from 0 in the first
//               chunk); the last chunk divides by Q·H (mean) or Q (sum) into the scores.
// No atomics, fixed launch shapes and a fixed merge tree: the same bits on every run. The
// workspace, N + 4·chunk floats, depends on N and head_dim alone. Launch shapes follow from the
// shapes, so a CUDA graph captures the whole call. Logits and exponentials round differently
// from the CPU backend's SIMD ones: the scores agree with it within the tolerance both meet
// against the exact softmax (10⁻⁶ relative, plus the logits' own rounding).
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_status, blocks_for
#include "tokred/policy/attention_scores.hpp"
#include "tokred/policy/scores.hpp"

namespace tokred {
namespace detail {
namespace cuda_attention {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Threads of every attention launch (a power of two: the merge tree halves it). Provisional:
/// measure 128 / 256 / 512 with bench_attention_scores_cuda's FastV shapes (1 query row, 28
/// heads over 4 kv heads, 576 … 11 664 image keys of 128).
inline constexpr int threads = 256;
static_assert((threads & (threads - 1)) == 0, "the merge tree halves the block");

/// fp32 values of staged queries per accumulate block (32 KiB of shared memory).
inline constexpr index_t staged_floats = 8192;

/// The largest head_dim: one query row and the merge states (4 KiB) must fit the stats block's
/// 48 KiB of shared memory.
inline constexpr index_t max_head_dim = 11264;
static_assert(max_head_dim * sizeof(float) + threads * sizeof(softmax_state) <= 48 * 1024,
              "the stats block's query row and merge states fit 48 KiB of shared memory");
static_assert(staged_floats * sizeof(float) <= 48 * 1024 && max_head_dim * sizeof(float) <= 48 * 1024,
              "the accumulate block's staged queries fit 48 KiB of shared memory");

}  // namespace cuda_attention

/// Rows per chunk of the fused score: as many queries as fit `staged_floats`, at least one.
constexpr index_t fused_chunk_rows(index_t head_dim) noexcept {
  return head_dim <= 0 ? 1 : (cuda_attention::staged_floats / head_dim > 0 ? cuda_attention::staged_floats / head_dim : 1);
}

namespace cuda_attention {

template <class E>
__global__ void __launch_bounds__(threads)
    weights_kernel(attention_score p, attention_score_inputs<E, device_space> in, score_outputs<device_space> out) {
  for_each_thread_item(in.grid.tokens(), [&](index_t j) { attention_score_at(p, in, out, j); });
}

/// The softmax state of rows [r0, r0 + gridDim.x), one block per row, into `states`.
template <class E>
__global__ void __launch_bounds__(threads)
    stats_kernel(fused_attention_inputs<E, device_space> in, index_t r0, float s, softmax_state* states) {
  extern __shared__ float query[];  // (head_dim,)
  __shared__ softmax_state part[threads];
  const index_t dim = in.query.extent(2), keys = in.keys.extent(1);
  const fused_row row = fused_row_at(r0 + blockIdx.x, in.query.extent(0), in.query.extent(1), in.keys.extent(0));
  for (index_t c = threadIdx.x; c < dim; c += threads) query[c] = widen(in.query(row.query, row.head, c));
  __syncthreads();
  softmax_state st;
  for (index_t k = threadIdx.x; k < keys; k += threads)
    st.add(staged_dot(query, &in.keys(row.kv_head, k, 0), in.keys.stride(2), dim), s);
  part[threadIdx.x] = st;
  __syncthreads();
  for (int width = threads / 2; width > 0; width /= 2) {
    merge_level(part, width, static_cast<int>(threadIdx.x), s);
    __syncthreads();
  }
  if (threadIdx.x == 0) states[blockIdx.x] = part[0];
}

/// What one accumulate launch does with its totals.
struct chunk_role {
  bool first;      // start every total from 0 (otherwise from the workspace)
  bool last;       // write total / divisor to the scores (otherwise to the workspace)
  float divisor;   // Q·H (mean) or Q (sum)
};

template <class E>
__global__ void __launch_bounds__(threads)
    accumulate_kernel(fused_attention_inputs<E, device_space> in, index_t first_key, index_t r0, index_t count,
                      float s, const softmax_state* states, float* total, chunk_role role,
                      view<float, 1, device_space> scores) {
  extern __shared__ float staged[];  // (count, head_dim)
  const index_t dim = in.query.extent(2), n = in.grid.tokens();
  for (index_t i = 0; i < count; ++i) {  // row by row: coalesced reads, no division per element
    const fused_row row = fused_row_at(r0 + i, in.query.extent(0), in.query.extent(1), in.keys.extent(0));
    for (index_t c = threadIdx.x; c < dim; c += threads)
      staged[i * dim + c] = widen(in.query(row.query, row.head, c));
  }
  __syncthreads();
  for_each_thread_item(n, [&](index_t j) {
    const float acc = add_token_probabilities(in, first_key, r0, count, staged, states, s, j, role.first ? 0.0f : total[j]);
    if (role.last) scores(j) = div_rn(acc, role.divisor);
    else total[j] = acc;
  });
}

/// The fused score's workspace: the running totals and one chunk's softmax states.
struct fused_scratch {
  float* total = nullptr;           // (tokens,)
  softmax_state* states = nullptr;  // (chunk rows,)

  static fused_scratch carve(arena& a, index_t tokens, index_t head_dim) {
    fused_scratch s;
    s.total = a.take<float>(tokens);
    s.states = a.take<softmax_state>(fused_chunk_rows(head_dim));
    return s;
  }
};

}  // namespace cuda_attention
}  // namespace detail

/// attention_score on a CUDA stream: one thread per token, no workspace; the CPU backend's bits.
template <>
struct backend<attention_score, cuda> {
  static std::size_t workspace_bytes(const cuda&, const attention_score&, const problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const attention_score& p, const attention_score_inputs<E, device_space>& in,
                      const score_outputs<device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: weights are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_attention_score(p, in, out); s != status::ok) return s;
    constexpr int threads = detail::cuda_attention::threads;
    detail::cuda_attention::weights_kernel<E>
        <<<detail::blocks_for(in.grid.tokens(), threads), threads, 0, exec.stream>>>(p, in, out);
    return detail::launch_status();
  }
};

/// fused_attention_score on a CUDA stream: 2·⌈Q·H / chunk⌉ launches (see the file comment);
/// workspace `workspace_bytes(exec, p, problem{grid, head_dim})`, about 4·N + 16·chunk bytes;
/// head_dim up to 11 264 (`invalid_parameter` beyond: one query row must fit shared memory).
template <>
struct backend<fused_attention_score, cuda> {
  static std::size_t workspace_bytes(const cuda&, const fused_attention_score& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || prob.dim <= 0) return 0;
    detail::arena counter;
    detail::cuda_attention::fused_scratch::carve(counter, prob.grid.tokens(), prob.dim);
    return counter.used();
  }

  template <class E>
  static status apply(const cuda& exec, const fused_attention_score& p, const fused_attention_inputs<E, device_space>& in,
                      const score_outputs<device_space>& out, workspace ws) {
    static_assert(is_element_v<E>, "tokred: queries and keys are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_attention;
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_fused_attention(p, in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens(), dim = in.query.extent(2);
    if (dim > cu::max_head_dim) return status::invalid_parameter;
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, dim})); s != status::ok) return s;
    detail::arena carver(ws);
    const cu::fused_scratch scratch = cu::fused_scratch::carve(carver, n, dim);
    if (!carver.fits()) return status::workspace_too_small;

    const float s = detail::fused_scale(p, dim);
    const index_t rows = in.query.extent(0) * in.query.extent(1), chunk = detail::fused_chunk_rows(dim);
    const float divisor = static_cast<float>(p.heads == head_reduce::mean ? rows : in.query.extent(0));
    for (index_t r0 = 0; r0 < rows; r0 += chunk) {
      const index_t count = rows - r0 < chunk ? rows - r0 : chunk;
      cu::stats_kernel<E><<<static_cast<unsigned>(count), cu::threads, static_cast<std::size_t>(dim) * sizeof(float),
                            exec.stream>>>(in, r0, s, scratch.states);
      if (status st = detail::launch_status(); st != status::ok) return st;
      const cu::chunk_role role{r0 == 0, r0 + count == rows, divisor};
      cu::accumulate_kernel<E><<<detail::blocks_for(n, cu::threads), cu::threads, static_cast<std::size_t>(count * dim) * sizeof(float),
                                 exec.stream>>>(in, p.first_key, r0, count, s, scratch.states, scratch.total, role,
                                                out.scores);
      if (status st = detail::launch_status(); st != status::ok) return st;
    }
    return status::ok;
  }
};

}  // namespace tokred
