// tokred/cuda/dct.cuh — CUDA backend of dct_lowpass (Fourier-VLM's DCT low-pass).
//
// The low-pass is linear and separable: along each transformed axis of n inputs with k kept
// frequencies, the tokens are multiplied by one k × n matrix,
//   coefficients  A = C_n[:k, :]                 the first k rows of the orthonormal DCT-II
//   resampled     A = C_k^T · C_n[:k, :]         then the orthonormal inverse at size k
// where C_n[f][x] = s_f · cos(π (2x + 1) f / (2n)), s_0 = √(1/n), s_f = √(2/n). So one call is
//   matrices  one small launch computes every transformed axis's A into the workspace: each
//             entry in double (cospi of an exactly reduced angle, the inverse's sum over f in
//             double), rounded once to fp32, so every entry is within half an fp32 ulp of the
//             exact value (plus ~k·1e-16 from the double arithmetic);
//   passes    one launch per transformed axis, W then H (spatial) then T (temporal), except an
//             axis resampled at its full size (the identity, skipped as on the CPU): a batched
//             GEMM over (n × columns) panels, out(a, y, m, c) = Σ_r A(y, r) · in(a, r, m, c), in
//             fp32 FMAs over r in ascending order. Between passes the tokens live in the
//             workspace as fp32 rows padded to a multiple of 4 channels; the first pass reads
//             the caller's rows (any strides, any element type), the last writes the outputs;
//   meta      one launch writes source, positions and sizes, when requested.
// Everything is enqueued on `exec.stream` with shapes fixed by the problem's shapes (CUDA graph
// capturable); the matrices are recomputed on every call, as they live in the caller's workspace.
//
// Accuracy: let S be the sum of absolute terms of the textbook evaluation of an output (per
// transformed axis |C_k^T|·|C_n[:k]|, applied to |x|); |A| ≤ |C_k^T|·|C_n[:k]| entrywise. Each
// pass adds at most n fp32 roundings and each matrix half an ulp, so against a double evaluation
// the error stays below about (n_w + n_h + n_t + 3)·2^-24·S: under 1e-5·S while the transformed
// extents add up to less than ~160 (51·2^-24 ≈ 3e-6 for 24 × 24). The CPU backend evaluates the
// same matrices in another order, so the two agree within that bound, not bit for
// bit. NaN and ±inf spread along every axis a pass runs along, as in the original's FFT; an
// axis resampled at its full size has no pass, so there they stay in place (as on the CPU).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/cuda/grid_reduce.cuh"

namespace tokred {
namespace detail {
namespace cuda_grid {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Columns (4-channel chunks) of one pass block, one per thread. Provisional: measure 128 / 256
/// with bench_grid_reduce_cuda's 24 × 24 → 16 × 16 spatial low-pass at D = 1024 and 3584.
inline constexpr int dct_threads = 256;

/// Outputs along the axis that one thread accumulates (registers: 4 channels × this). 16
/// covers the common kept sizes (12 of 24, 14 of 27, 16 of 24) in one tile, so each input is
/// read once; larger k re-reads the inputs once per tile. Provisional: measure 8 / 16 / 32 on
/// k = 12, 16 and 18, D = 3584 (32 may spill).
inline constexpr int dct_tile_rows = 16;

/// Inputs along the axis whose matrix column a block stages in shared memory per step.
/// Provisional: 64 holds a whole 64-frame temporal axis; measure 32 / 64 / 128 on n = 64.
inline constexpr int dct_tile_inputs = 64;

/// Channels one pass thread owns: 4 keeps 64 fp32 accumulators per thread and a 16-byte
/// (fp32) or 8-byte (fp16/bf16) load per input row.
inline constexpr int dct_chunk = 4;

/// Pass blocks an SM should hold at once: 2 caps a thread at 128 registers (64 of them the
/// accumulators). Provisional: measure 1 / 2 / 3 with the spatial low-pass benchmark, watching
/// ptxas's spill report.
inline constexpr int dct_min_blocks = 2;

/// Threads of the matrix kernel; it computes a few thousand entries, any size does.
inline constexpr int dct_matrix_threads = 256;

// ---------------------------------------------------------------------------------------------
// The transform matrices.

/// cos(π·x), accurately, on either side (`cospi` is CUDA's; the host has no such function).
TOKRED_HOST_DEVICE inline double cos_pi(double x) noexcept {
#if defined(__CUDA_ARCH__)
  return cospi(x);
#else
  return std::cos(3.14159265358979323846 * x);
#endif
}

/// C_n[f][x] = s_f · cos(π (2x + 1) f / (2n)) of the orthonormal DCT-II, in double. The angle
/// is reduced modulo 2π in integers first ((2x + 1)·f mod 4n steps of π/(2n)), so it stays
/// exact whatever the frequency; (2x + 1)·f must fit in 63 bits (n below 2^31).
TOKRED_HOST_DEVICE inline double dct_basis(index_t f, index_t x, index_t n) noexcept {
  const index_t steps = ((2 * x + 1) * f) % (4 * n);
  const double scale = f == 0 ? sqrt(1.0 / static_cast<double>(n)) : sqrt(2.0 / static_cast<double>(n));
  return scale * cos_pi(static_cast<double>(steps) / static_cast<double>(2 * n));
}

/// Entry (y, x) of an axis's k × n matrix: the kept DCT-II row itself (coefficients), or the
/// inverse at size k of the kept block, Σ_{f<k} C_k[f][y] · C_n[f][x] (resampled).
TOKRED_HOST_DEVICE inline float dct_matrix_entry(index_t y, index_t x, index_t n, index_t k,
                                                 bool resampled) noexcept {
  if (!resampled) return static_cast<float>(dct_basis(y, x, n));
  double sum = 0.0;
  for (index_t f = 0; f < k; ++f) sum += dct_basis(f, y, k) * dct_basis(f, x, n);
  return static_cast<float>(sum);
}

/// The matrices of up to three passes, each (k, n) row-major in the workspace.
struct dct_matrix_job {
  float* a[3];
  index_t n[3];
  index_t k[3];
  bool resampled;
};

/// blockIdx.y picks the pass; the entries grid-stride over blockIdx.x.
__global__ void __launch_bounds__(dct_matrix_threads) dct_matrix_kernel(dct_matrix_job job) {
  const unsigned pass = blockIdx.y;
  const index_t n = job.n[pass], k = job.k[pass];
  float* a = job.a[pass];  // (k, n)
  for (index_t e = static_cast<index_t>(blockIdx.x) * dct_matrix_threads + threadIdx.x; e < k * n;
       e += static_cast<index_t>(gridDim.x) * dct_matrix_threads)
    a[e] = dct_matrix_entry(e / n, e % n, n, k, job.resampled);
}

// ---------------------------------------------------------------------------------------------
// One pass: out(a, y, m, c) = Σ_r A(y, r) · in(a, r, m, c).
//
// The token index of (a, r, m) is (a·n + r)·mid + m on the input side and (a·k + y)·mid + m on
// the output side, so a pass along W has mid = 1 (outer = T·H), along H mid = W' (outer = T),
// along T mid = H'·W' (outer = 1). A column is one (a, m) pair and 4 channels of it.

/// The extents of one pass.
struct dct_pass_shape {
  index_t outer;  ///< independent panels
  index_t n;      ///< inputs along the axis
  index_t k;      ///< outputs along the axis
  index_t mid;    ///< tokens between consecutive axis positions
};

/// Where column q of a pass sits: panel a, token m within the axis step, first channel c0.
struct dct_column {
  index_t a, m, c0;
};

TOKRED_HOST_DEVICE inline dct_column column_at(index_t q, index_t chunks,
                                               const dct_pass_shape& s) noexcept {
  const index_t am = q / chunks;
  const index_t a = am / s.mid;
  return {a, am - a * s.mid, (q - am * chunks) * dct_chunk};
}

/// Stages A(y0 .. y0+16, r0 .. r0+64) transposed into `tile` (r, y): zero past k, unread past
/// n. Consecutive threads read consecutive r, so the global reads coalesce.
TOKRED_HOST_DEVICE inline void stage_matrix_tile(float (*tile)[dct_tile_rows],  // (inputs, rows)
                                                 const float* a,                // (k, n)
                                                 const dct_pass_shape& s, index_t y0, index_t r0,
                                                 int thread) noexcept {
  for (int e = thread; e < dct_tile_inputs * dct_tile_rows; e += dct_threads) {
    const int rr = e % dct_tile_inputs, yy = e / dct_tile_inputs;
    const index_t r = r0 + rr, y = y0 + yy;
    tile[rr][yy] = r < s.n && y < s.k ? a[y * s.n + r] : 0.0f;
  }
}

/// Accumulates inputs r0 .. r0+count of one column into the thread's 16 × 4 outputs.
template <class Ein>
TOKRED_HOST_DEVICE inline void accumulate_tile(const float (*tile)[dct_tile_rows],  // (inputs, rows)
                                               const chunk_reader<Ein, dct_chunk>& src,
                                               const dct_pass_shape& s, const dct_column& col,
                                               index_t r0, int count,
                                               float (&acc)[dct_tile_rows][dct_chunk]) noexcept {
  index_t token = (col.a * s.n + r0) * s.mid + col.m;
  for (int rr = 0; rr < count; ++rr, token += s.mid) {
    float x[dct_chunk];
    src.load(token, col.c0, x);
    TOKRED_GRID_UNROLL
    for (int y = 0; y < dct_tile_rows; ++y)
      TOKRED_GRID_UNROLL
      for (int e = 0; e < dct_chunk; ++e) acc[y][e] = fmaf(tile[rr][y], x[e], acc[y][e]);
  }
}

/// Stores the outputs y0 .. min(y0 + 16, k) of one column.
template <class Eout>
TOKRED_HOST_DEVICE inline void store_tile(const chunk_writer<Eout, dct_chunk>& dst,
                                          const dct_pass_shape& s, const dct_column& col,
                                          index_t y0,
                                          const float (&acc)[dct_tile_rows][dct_chunk]) noexcept {
  TOKRED_GRID_UNROLL
  for (int y = 0; y < dct_tile_rows; ++y)
    if (y0 + y < s.k) dst.store((col.a * s.k + y0 + y) * s.mid + col.m, col.c0, acc[y]);
}

/// Block x covers dct_threads consecutive columns (grid-stride), block y a tile of 16 outputs
/// along the axis (grid-stride). Every thread of a block runs the same loop trip counts, so the
/// barriers are uniform; threads past the last column only help stage the matrix.
template <class Ein, class Eout>
__global__ void __launch_bounds__(dct_threads, dct_min_blocks)
    dct_pass_kernel(const float* a,  // (k, n)
                    dct_pass_shape s, chunk_reader<Ein, dct_chunk> src,
                    chunk_writer<Eout, dct_chunk> dst) {
  __shared__ __align__(16) float tile[dct_tile_inputs][dct_tile_rows];  // (inputs, rows)
  const index_t dim = src.rows.extent(1);
  const index_t chunks = (dim + dct_chunk - 1) / dct_chunk;
  const index_t columns = s.outer * s.mid * chunks;
  const int thread = static_cast<int>(threadIdx.x);
  for (index_t base = static_cast<index_t>(blockIdx.x) * dct_threads; base < columns;
       base += static_cast<index_t>(gridDim.x) * dct_threads) {
    const index_t q = base + thread;
    const bool live = q < columns;
    const dct_column col = column_at(live ? q : 0, chunks, s);
    for (index_t y0 = static_cast<index_t>(blockIdx.y) * dct_tile_rows; y0 < s.k;
         y0 += static_cast<index_t>(gridDim.y) * dct_tile_rows) {
      float acc[dct_tile_rows][dct_chunk] = {};
      for (index_t r0 = 0; r0 < s.n; r0 += dct_tile_inputs) {
        __syncthreads();  // everyone is done with the previous tile
        stage_matrix_tile(tile, a, s, y0, r0, thread);
        __syncthreads();
        const index_t left = s.n - r0;
        if (live)
          accumulate_tile(tile, src, s, col, r0,
                          static_cast<int>(left < dct_tile_inputs ? left : dct_tile_inputs), acc);
      }
      if (live) store_tile(dst, s, col, y0, acc);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The schedule and the workspace.

/// The passes of one low-pass: W then H when spatial, then T when temporal. An axis resampled
/// at its full size is the identity (C_n^T·C_n = I) and gets no pass, as on the CPU; with no
/// pass left the rows are copied (`identity_rows`).
struct dct_schedule {
  int count = 0;
  dct_pass_shape pass[3] = {};
  index_t tokens_after[3] = {};  ///< tokens on the grid each pass leaves
};

inline dct_schedule schedule_of(const dct_lowpass& p, const token_grid& in) noexcept {
  dct_schedule s;
  token_grid now = in;
  const bool resampled = p.produce == dct_output::resampled;
  const auto add = [&](const dct_pass_shape& shape, index_t& extent) {
    extent = shape.k;
    if (resampled && shape.k == shape.n) return;
    s.pass[s.count] = shape;
    s.tokens_after[s.count] = now.tokens();
    ++s.count;
  };
  if (p.axes != dct_axes::temporal) {
    add({now.frames * now.height, now.width, p.keep.w, 1}, now.width);
    add({now.frames, now.height, p.keep.h, now.width}, now.height);
  }
  if (p.axes != dct_axes::spatial) add({1, now.frames, p.keep.t, now.height * now.width}, now.frames);
  return s;
}

/// The low-pass with no pass left: output row j is input row j, converted through fp32 like
/// every other output (so fp16/bf16 NaNs come back quiet, as on the CPU).
struct identity_rows {
  dct_lowpass policy;

  TOKRED_HOST_DEVICE index_t plan(const token_grid&, const token_grid&, index_t j) const noexcept {
    return j;
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid&, index_t i, index_t c0,
                              float (&acc)[Width]) const noexcept {
    rows.load(i, c0, acc);
  }
};

/// Intermediate rows are padded to whole 4-channel chunks, so they always move as vectors.
constexpr index_t dct_pitch(index_t dim) noexcept {
  return (dim + dct_chunk - 1) / dct_chunk * dct_chunk;
}

/// The workspace of one call: each pass's matrix, and the fp32 tokens between passes.
struct dct_scratch {
  float* matrix[3] = {};  // (k, n) per pass
  float* between[2] = {};  // (tokens_after[i], pitch) after pass i, but the last
};

/// The one carve-up, run by `workspace_bytes` (counting) and by `apply` (carving). Nothing is
/// needed when no tokens are requested (dim = 0).
inline dct_scratch carve_dct(arena& a, const dct_schedule& s, index_t dim) noexcept {
  dct_scratch scratch;
  if (dim <= 0) return scratch;
  for (int i = 0; i < s.count; ++i) scratch.matrix[i] = a.take<float>(s.pass[i].k, s.pass[i].n);
  for (int i = 0; i + 1 < s.count; ++i)
    scratch.between[i] = a.take<float>(s.tokens_after[i] * dct_pitch(dim));
  return scratch;
}

/// Launches one pass from `src` to `dst`.
template <class S, class D>
status launch_dct_pass(const cuda& exec, const float* a, const dct_pass_shape& s,
                       const chunk_reader<S, dct_chunk>& src,
                       const chunk_writer<D, dct_chunk>& dst) {
  const index_t chunks = (src.rows.extent(1) + dct_chunk - 1) / dct_chunk;
  index_t tiles = (s.k + dct_tile_rows - 1) / dct_tile_rows;
  if (tiles > 65535) tiles = 65535;  // gridDim.y's limit; the kernel strides over the rest
  const dim3 grid(blocks_for(s.outer * s.mid * chunks, dct_threads), static_cast<unsigned>(tiles));
  dct_pass_kernel<<<grid, dct_threads, 0, exec.stream>>>(a, s, src, dst);
  return launch_status();
}

/// Enqueues the matrices and every pass for a call whose tokens are requested.
template <class Ein, class Eout>
status launch_dct_tokens(const cuda& exec, const dct_lowpass& p, const dct_schedule& s,
                         const dct_scratch& scratch,
                         const view<const Ein, 2, device_space>& tokens,  // (tokens, dim)
                         const view<Eout, 2, device_space>& out) {        // (kept, dim)
  dct_matrix_job job{};
  index_t largest = 0;
  for (int i = 0; i < s.count; ++i) {
    job.a[i] = scratch.matrix[i];
    job.n[i] = s.pass[i].n;
    job.k[i] = s.pass[i].k;
    if (s.pass[i].k * s.pass[i].n > largest) largest = s.pass[i].k * s.pass[i].n;
  }
  job.resampled = p.produce == dct_output::resampled;
  const dim3 grid(blocks_for(largest, dct_matrix_threads), static_cast<unsigned>(s.count));
  dct_matrix_kernel<<<grid, dct_matrix_threads, 0, exec.stream>>>(job);
  if (status st = launch_status(); st != status::ok) return st;

  const index_t dim = tokens.extent(1), pitch = dct_pitch(dim);
  const chunk_reader<Ein, dct_chunk> first{tokens, chunks_aligned(tokens, dct_chunk)};
  const chunk_writer<Eout, dct_chunk> last{out, chunks_aligned(out, dct_chunk)};
  const auto reader_of = [&](int i) {  // the fp32 tokens pass i left
    return chunk_reader<float, dct_chunk>{
        view<const float, 2, device_space>(scratch.between[i], {s.tokens_after[i], dim}, {pitch, 1}),
        true};
  };
  const auto writer_of = [&](int i) {
    return chunk_writer<float, dct_chunk>{
        view<float, 2, device_space>(scratch.between[i], {s.tokens_after[i], dim}, {pitch, 1}), true};
  };
  for (int i = 0; i < s.count; ++i) {
    const float* a = scratch.matrix[i];
    const bool is_first = i == 0, is_last = i + 1 == s.count;
    status st;
    if (is_first && is_last)
      st = launch_dct_pass(exec, a, s.pass[i], first, last);
    else if (is_first)
      st = launch_dct_pass(exec, a, s.pass[i], first, writer_of(i));
    else if (is_last)
      st = launch_dct_pass(exec, a, s.pass[i], reader_of(i - 1), last);
    else
      st = launch_dct_pass(exec, a, s.pass[i], reader_of(i - 1), writer_of(i));
    if (st != status::ok) return st;
  }
  return status::ok;
}

}  // namespace cuda_grid
}  // namespace detail

/// The DCT low-pass on a CUDA stream: workspace for the per-axis matrices (k·n fp32 each) and
/// the fp32 tokens between passes (at most two buffers of ⌈D/4⌉·4 channels per token, needed
/// only when tokens are requested); one matrix launch, one launch per transformed axis (none
/// for an axis resampled at full size), one for source / positions / sizes.
/// Agrees with a double-precision evaluation within the bound in <tokred/cuda/dct.cuh>.
/// See `tokred::dct_lowpass`.
template <>
struct backend<dct_lowpass, cuda> {
  static std::size_t workspace_bytes(const cuda& exec, const dct_lowpass& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_grid::carve_dct(counter, detail::cuda_grid::schedule_of(p, prob.grid), prob.dim);
    return counter.used();
  }

  /// Checks on the host (nothing is launched when a check fails), then the launches above on
  /// `exec.stream`. The workspace is needed only when tokens are requested.
  template <class Ein, class Eout>
  static status apply(const cuda& exec, const dct_lowpass& p,
                      const grid_inputs<Ein, device_space>& in,
                      const grid_outputs<Eout, device_space>& out, workspace ws) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    namespace g = detail::cuda_grid;
    if (status s = check_exec(exec); s != status::ok) return s;
    const detail::grid_result r = detail::check_grid_reduce(p, in, out);
    if (r.code != status::ok) return r.code;
    const bool tokens = detail::requested(out.tokens);
    const g::dct_schedule schedule = g::schedule_of(p, in.grid);
    const index_t dim = tokens ? in.tokens.extent(1) : 0;
    detail::arena counter;
    g::carve_dct(counter, schedule, dim);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;
    detail::arena carver(ws);
    const g::dct_scratch scratch = g::carve_dct(carver, schedule, dim);
    if (!carver.fits()) return status::workspace_too_small;

    if (schedule.count == 0)  // the identity: one rows launch copies tokens and writes meta
      return g::launch_rows(exec, g::identity_rows{p}, in.grid, r.grid, in, out);
    if (tokens)
      if (status s = g::launch_dct_tokens(exec, p, schedule, scratch, in.tokens, out.tokens);
          s != status::ok)
        return s;
    return g::launch_meta(exec, p, in.grid, r.grid, g::meta_views_of(out));
  }
};

}  // namespace tokred
