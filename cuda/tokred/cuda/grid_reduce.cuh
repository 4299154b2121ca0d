// tokred/cuda/grid_reduce.cuh — CUDA backends of pool, adaptive_pool and bilinear, and the
// pieces every grid reducer's kernels share: rows read and written a chunk of channels at a
// time, and the writer of `source`, `positions` and `sizes`.
//
// One stream-ordered kernel per call, its launch shape fixed by the shapes alone (so a CUDA
// graph can capture it):
//   rows   2^k threads share an output row (the fewest that give each one chunk of channels
//          per pass); each computes its row's window, or its four bilinear taps, with the
//          host/device functions of <tokred/policy/grid_reduce.hpp>, reduces its chunk in
//          fp32 registers and stores it; lane 0 writes the row's source, positions and sizes.
//
// Values match the CPU backend (<tokred/cpu/pool.hpp>) bit for bit, because every rounding
// step is the same and in the same order:
//   average   fp32 sum in window order (t, then h, then w), starting from +0; then one
//             division by the pooling divisor, or (adaptive) by the bin's T, H and W extents in
//             turn, as torch's `sum / kT / kH / kW`
//   max       m starts at -inf; m = v whenever v > m or v is NaN (torch's rule)
//   bilinear  (1-λh)·((1-λw)·x00 + λw·x01) + λh·((1-λw)·x10 + λw·x11)
// The arithmetic is <tokred/core/rounded.hpp>'s: each step rounded once, whatever nvcc's flags.
// NaN payloads are not kept by arithmetic: the GPU returns its canonical NaN where an x86 CPU
// returns the payload of an operand.
//
// Bilinear's taps and λ come from detail::bilinear_tap_at, shared with the CPU: the scale is a
// correctly rounded fp32 quotient (div_rn), and the source coordinate scale·(o + ½) − ½ is formed
// in double, where the product of a float and a half-integer below 2^28 is exact. A fused
// multiply-add (nvcc contracts by default, g++ with -mfma) therefore rounds it as the separate
// steps do, and λ, the taps and the nearest-tap `source` are the CPU's bits.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_status, max_grid_blocks
#include "tokred/policy/grid_reduce.hpp"

/// `#pragma unroll` for the device pass only: the host compiler sees the same host/device
/// functions and would warn about an unknown pragma.
#if defined(__CUDA_ARCH__)
#define TOKRED_GRID_UNROLL _Pragma("unroll")
#else
#define TOKRED_GRID_UNROLL
#endif

namespace tokred {
namespace detail {
namespace cuda_grid {

// ---------------------------------------------------------------------------------------------
// Tuning. None of these is measured yet: each comment names the measurement that should set it.

/// Threads of one rows block. 256 is emit's choice: a D = 3584 fp32 row is 896 chunks, so a
/// whole block shares it and loops 3.5 times. Provisional: measure 128 / 256 / 512 with
/// bench_grid_reduce_cuda's 27 × 27 → 13 × 13 average and bilinear rows, D = 1024 and 3584.
inline constexpr int rows_threads = 256;

/// Rows blocks an SM should hold at once: 4 caps the kernel at 64 registers, for half of the
/// SM's threads in flight on a load-bound kernel (unbounded, ptxas chose 60–200 registers:
/// 198 for bf16 bilinear). Provisional: measure 2 / 4 / 6 against the memcpy baseline of
/// bench_grid_reduce_cuda, watching ptxas's spill report.
inline constexpr int rows_min_blocks = 4;

/// Channels one rows thread reduces per pass: one 16-byte load of the input type (4 fp32,
/// 8 fp16/bf16). Not a free choice: it follows from the widest vector load.
template <class E>
inline constexpr int chunk_width = static_cast<int>(16 / sizeof(E));

// ---------------------------------------------------------------------------------------------
// fp32 steps (add_rn, mul_rn, div_rn and widen come from <tokred/core/rounded.hpp>).

/// torch's max step: take v when it is larger or NaN, so a NaN sticks and the first of +0 and
/// -0 stays. (`v != v` is the NaN test that needs no math header on either side.)
TOKRED_HOST_DEVICE inline float max_step(float m, float v) noexcept {
  return v > m || v != v ? v : m;
}

// ---------------------------------------------------------------------------------------------
// Rows read and written `Width` channels at a time.

/// Copies `Bytes` bytes between two addresses aligned to min(Bytes, 16), as 16-byte (or, for an
/// 8-byte chunk, 8-byte) words.
template <int Bytes>
TOKRED_HOST_DEVICE inline void copy_words(void* dst, const void* src) noexcept {
  if constexpr (Bytes % 16 == 0) {
    TOKRED_GRID_UNROLL
    for (int i = 0; i < Bytes / 16; ++i)
      static_cast<uint4*>(dst)[i] = static_cast<const uint4*>(src)[i];
  } else {
    static_assert(Bytes == 8, "a chunk is 8 bytes or a multiple of 16");
    *static_cast<uint2*>(dst) = *static_cast<const uint2*>(src);
  }
}

/// `Width` stored elements in registers, aligned so that they move as whole words.
template <class E, int Width>
struct alignas(16) chunk_bits {
  E v[Width];
};

/// The byte alignment a chunk of `width` elements of `bytes_each` needs for its word moves.
constexpr index_t chunk_alignment(int width, std::size_t bytes_each) noexcept {
  const auto bytes = static_cast<index_t>(width) * static_cast<index_t>(bytes_each);
  return bytes < 16 ? bytes : 16;
}

/// True when every full chunk of every row of `v` can move as words: unit inner stride, and
/// the base address and the row stride in bytes both multiples of the chunk alignment (a
/// negative stride included).
template <class T>
bool chunks_aligned(const view<T, 2, device_space>& v, int width) noexcept {
  const index_t align = chunk_alignment(width, sizeof(T));
  const index_t row_bytes = v.stride(0) * static_cast<index_t>(sizeof(T));
  return v.data_handle() != nullptr && v.has_unit_inner_stride() && row_bytes % align == 0 &&
         reinterpret_cast<std::uintptr_t>(v.data_handle()) % static_cast<std::uintptr_t>(align) ==
             0;
}

/// Reads `Width` channels of a row, widened to fp32. Full chunks of a vectorisable view load
/// as words; the last partial chunk, and any other layout, load element by element (channels
/// past the row's end read as 0 and are never stored).
template <class E, int Width>
struct chunk_reader {
  view<const E, 2, device_space> rows;  // (rows, dim)
  bool vectorised = false;

  TOKRED_HOST_DEVICE void load(index_t i, index_t c0, float (&x)[Width]) const noexcept {
    const index_t dim = rows.extent(1);
    const E* first = &rows(i, c0);
    if (vectorised && c0 + Width <= dim) {
      chunk_bits<E, Width> raw;
      copy_words<Width * static_cast<int>(sizeof(E))>(raw.v, first);
      TOKRED_GRID_UNROLL
      for (int e = 0; e < Width; ++e) x[e] = widen(raw.v[e]);
    } else {
      const index_t step = rows.stride(1);
      TOKRED_GRID_UNROLL
      for (int e = 0; e < Width; ++e) x[e] = c0 + e < dim ? widen(first[e * step]) : 0.0f;
    }
  }
};

/// Writes `Width` fp32 channels of a row, narrowed to the storage type (round to nearest even).
template <class E, int Width>
struct chunk_writer {
  view<E, 2, device_space> rows;  // (rows, dim)
  bool vectorised = false;

  TOKRED_HOST_DEVICE void store(index_t j, index_t c0, const float (&x)[Width]) const noexcept {
    const index_t dim = rows.extent(1);
    E* first = &rows(j, c0);
    if (vectorised && c0 + Width <= dim) {
      chunk_bits<E, Width> raw;
      TOKRED_GRID_UNROLL
      for (int e = 0; e < Width; ++e) raw.v[e] = from_float<E>(x[e]);
      copy_words<Width * static_cast<int>(sizeof(E))>(first, raw.v);
    } else {
      const index_t step = rows.stride(1);
      TOKRED_GRID_UNROLL
      for (int e = 0; e < Width; ++e)
        if (c0 + e < dim) first[e * step] = from_float<E>(x[e]);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// source, positions and sizes.

/// The requested bookkeeping outputs of a grid reducer (an empty view is not written).
struct meta_views {
  view<std::int64_t, 1, device_space> source;     // (kept,)
  view<std::int32_t, 2, device_space> positions;  // (kept, 3)
  view<float, 1, device_space> sizes;             // (kept,)
  bool want_source = false;
  bool want_positions = false;
  bool want_sizes = false;

  constexpr bool any() const noexcept { return want_source || want_positions || want_sizes; }
};

template <class Eout>
meta_views meta_views_of(const grid_outputs<Eout, device_space>& out) noexcept {
  return {out.source,
          out.positions,
          out.sizes,
          requested(out.source),
          requested(out.positions),
          requested(out.sizes)};
}

/// Output j's source (detail::meta_at), its (t, h, w) on the input grid, and its size.
template <class Policy>
TOKRED_HOST_DEVICE inline void write_meta(const Policy& p, const token_grid& in,
                                          const token_grid& out, index_t j,
                                          const meta_views& meta) noexcept {
  const grid_meta m = meta_at(p, in, out, j);
  if (meta.want_source) meta.source(j) = m.source;
  if (meta.want_positions) {
    const token_position at = in.position(m.source);
    meta.positions(j, 0) = at.t;
    meta.positions(j, 1) = at.h;
    meta.positions(j, 2) = at.w;
  }
  if (meta.want_sizes) meta.sizes(j) = m.size;
}

/// One thread per output row (grid-stride): the bookkeeping of reducers whose tokens are
/// computed by other kernels (the DCT low-pass).
template <class Policy>
__global__ void __launch_bounds__(rows_threads)
    meta_kernel(Policy p, token_grid in, token_grid out, meta_views meta) {
  const index_t kept = out.tokens();
  for (index_t j = static_cast<index_t>(blockIdx.x) * rows_threads + threadIdx.x; j < kept;
       j += static_cast<index_t>(gridDim.x) * rows_threads)
    write_meta(p, in, out, j, meta);
}

/// Launches `meta_kernel` when any bookkeeping output is requested.
template <class Policy>
status launch_meta(const cuda& exec, const Policy& p, const token_grid& in, const token_grid& out,
                   const meta_views& meta) {
  if (!meta.any()) return status::ok;
  meta_kernel<<<blocks_for(out.tokens(), rows_threads), rows_threads, 0, exec.stream>>>(p, in, out,
                                                                                      meta);
  return launch_status();
}

// ---------------------------------------------------------------------------------------------
// The row operations: where output row j reads, and how it combines what it reads.

/// The box of input tokens one pooled output reduces, and the divisions an average ends with.
struct window_plan {
  span1 t, h, w;
  float divisors[3];  ///< average: the sum is divided by each in turn (x / 1 is exact)
};

/// Reduces channels [c0, c0 + Width) of a box: average or max, per the rules above.
template <pool_kind Kind, class Reader, int Width>
TOKRED_HOST_DEVICE inline void reduce_window(const Reader& rows, const token_grid& in,
                                             const window_plan& box, index_t c0,
                                             float (&acc)[Width]) noexcept {
  TOKRED_GRID_UNROLL
  for (int e = 0; e < Width; ++e) acc[e] = Kind == pool_kind::average ? 0.0f : -INFINITY;
  for (index_t t = box.t.begin; t < box.t.end; ++t)
    for (index_t h = box.h.begin; h < box.h.end; ++h)
      for (index_t w = box.w.begin; w < box.w.end; ++w) {
        float x[Width];
        rows.load(flat_index(in, t, h, w), c0, x);
        TOKRED_GRID_UNROLL
        for (int e = 0; e < Width; ++e)
          acc[e] = Kind == pool_kind::average ? add_rn(acc[e], x[e]) : max_step(acc[e], x[e]);
      }
  if constexpr (Kind == pool_kind::average) {
    TOKRED_GRID_UNROLL
    for (int e = 0; e < Width; ++e)
      acc[e] = div_rn(div_rn(div_rn(acc[e], box.divisors[0]), box.divisors[1]), box.divisors[2]);
  }
}

/// torch's avg_pool3d / max_pool3d windows.
template <pool_kind Kind>
struct pool_rows {
  pool policy;

  TOKRED_HOST_DEVICE window_plan plan(const token_grid& in, const token_grid& out,
                                      index_t j) const noexcept {
    const pool_cell c = pool_cell_at(policy, in, out, j);
    return {c.t, c.h, c.w, {static_cast<float>(c.divisor), 1.0f, 1.0f}};
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid& in, const window_plan& box,
                              index_t c0, float (&acc)[Width]) const noexcept {
    reduce_window<Kind>(rows, in, box, c0, acc);
  }
};

/// torch's AdaptiveAvgPool3d / AdaptiveMaxPool3d bins.
template <pool_kind Kind>
struct adaptive_rows {
  adaptive_pool policy;

  TOKRED_HOST_DEVICE window_plan plan(const token_grid& in, const token_grid& out,
                                      index_t j) const noexcept {
    const token_position o = output_cell(out, j);
    const span1 t = adaptive_bin(o.t, in.frames, out.frames);
    const span1 h = adaptive_bin(o.h, in.height, out.height);
    const span1 w = adaptive_bin(o.w, in.width, out.width);
    return {t,
            h,
            w,
            {static_cast<float>(t.end - t.begin), static_cast<float>(h.end - h.begin),
             static_cast<float>(w.end - w.begin)}};
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid& in, const window_plan& box,
                              index_t c0, float (&acc)[Width]) const noexcept {
    reduce_window<Kind>(rows, in, box, c0, acc);
  }
};

/// The four taps of a bilinear output, (h0, w0), (h0, w1), (h1, w0), (h1, w1), and λh, λw.
struct tap_plan {
  index_t x00, x01, x10, x11;
  float lambda_h, lambda_w;
};

/// torch's upsample_bilinear2d (antialias off), frame by frame.
struct bilinear_rows {
  bilinear policy;

  TOKRED_HOST_DEVICE tap_plan plan(const token_grid& in, const token_grid& out,
                                   index_t j) const noexcept {
    const token_position o = output_cell(out, j);
    const bilinear_tap h = bilinear_tap_at(o.h, in.height, out.height, policy.align_corners);
    const bilinear_tap w = bilinear_tap_at(o.w, in.width, out.width, policy.align_corners);
    return {flat_index(in, o.t, h.i0, w.i0), flat_index(in, o.t, h.i0, w.i1),
            flat_index(in, o.t, h.i1, w.i0), flat_index(in, o.t, h.i1, w.i1), h.lambda, w.lambda};
  }

  template <class Reader, int Width>
  TOKRED_HOST_DEVICE void run(const Reader& rows, const token_grid&, const tap_plan& taps,
                              index_t c0, float (&acc)[Width]) const noexcept {
    float x00[Width], x01[Width], x10[Width], x11[Width];
    rows.load(taps.x00, c0, x00);
    rows.load(taps.x01, c0, x01);
    rows.load(taps.x10, c0, x10);
    rows.load(taps.x11, c0, x11);
    const float h1 = taps.lambda_h, h0 = 1.0f - h1;
    const float w1 = taps.lambda_w, w0 = 1.0f - w1;
    TOKRED_GRID_UNROLL
    for (int e = 0; e < Width; ++e) {
      const float top = add_rn(mul_rn(x00[e], w0), mul_rn(x01[e], w1));
      const float bottom = add_rn(mul_rn(x10[e], w0), mul_rn(x11[e], w1));
      acc[e] = add_rn(mul_rn(top, h0), mul_rn(bottom, h1));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The rows kernel.

/// Output row j, the chunks [lane, lane + threads_per_row, …) of it: what one thread does for
/// one row (kept apart from the kernel so that the host can run the same steps).
template <class Op, class Ein, class Eout, int Width>
TOKRED_HOST_DEVICE inline void reduce_row(const Op& op, const token_grid& in,
                                          const token_grid& out,
                                          const chunk_reader<Ein, Width>& reader,
                                          const chunk_writer<Eout, Width>& writer,
                                          const meta_views& meta, index_t j, int lane,
                                          int threads_per_row) noexcept {
  if (lane == 0) write_meta(op.policy, in, out, j, meta);
  const index_t dim = writer.rows.extent(1);  // 0 when no tokens are requested
  if (dim == 0) return;
  const auto plan = op.plan(in, out, j);
  const index_t chunks = (dim + Width - 1) / Width;
  for (index_t u = lane; u < chunks; u += threads_per_row) {
    float acc[Width];
    op.run(reader, in, plan, u * Width, acc);
    writer.store(j, u * Width, acc);
  }
}

/// 2^log2_threads_per_row threads per output row; rows grid-stride over the blocks.
template <class Op, class Ein, class Eout, int Width>
__global__ void __launch_bounds__(rows_threads, rows_min_blocks)
    rows_kernel(Op op, token_grid in, token_grid out, chunk_reader<Ein, Width> reader,
                chunk_writer<Eout, Width> writer, meta_views meta, int log2_threads_per_row) {
  const int threads_per_row = 1 << log2_threads_per_row;
  const int lane = static_cast<int>(threadIdx.x) & (threads_per_row - 1);
  const index_t rows_per_block = rows_threads >> log2_threads_per_row;
  const index_t kept = out.tokens();
  for (index_t j = static_cast<index_t>(blockIdx.x) * rows_per_block +
                   static_cast<index_t>(threadIdx.x >> log2_threads_per_row);
       j < kept; j += static_cast<index_t>(gridDim.x) * rows_per_block)
    reduce_row(op, in, out, reader, writer, meta, j, lane, threads_per_row);
}

/// The rows launch shape from the row width alone: the fewest threads per row (a power of two,
/// at most a block) that give every thread one chunk per pass.
struct rows_shape {
  int log2_threads_per_row;
  unsigned blocks;
};

inline rows_shape rows_shape_for(index_t kept, index_t chunks_per_row) noexcept {
  int log2_tpr = 0;
  while ((index_t{1} << log2_tpr) < chunks_per_row && (1 << log2_tpr) < rows_threads) ++log2_tpr;
  return {log2_tpr, blocks_for(kept, rows_threads >> log2_tpr)};
}

/// Launches the rows kernel of `op` for the requested outputs (nothing when none is).
template <class Op, class Ein, class Eout>
status launch_rows(const cuda& exec, const Op& op, const token_grid& in_grid,
                   const token_grid& out_grid, const grid_inputs<Ein, device_space>& in,
                   const grid_outputs<Eout, device_space>& out) {
  constexpr int width = chunk_width<Ein>;
  const meta_views meta = meta_views_of(out);
  const bool tokens = requested(out.tokens);
  if (!tokens && !meta.any()) return status::ok;
  chunk_reader<Ein, width> reader;
  chunk_writer<Eout, width> writer;
  if (tokens) {
    reader = {in.tokens, chunks_aligned(in.tokens, width)};
    writer = {out.tokens, chunks_aligned(out.tokens, width)};
  }
  const index_t chunks = tokens ? (out.tokens.extent(1) + width - 1) / width : 0;
  const rows_shape shape = rows_shape_for(out_grid.tokens(), chunks);
  rows_kernel<<<shape.blocks, rows_threads, 0, exec.stream>>>(op, in_grid, out_grid, reader, writer,
                                                             meta, shape.log2_threads_per_row);
  return launch_status();
}

/// What the three row-wise backends share: no workspace; host checks, then one launch.
template <class Policy>
struct row_reduce_backend {
  static std::size_t workspace_bytes(const cuda&, const Policy&, const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const Policy& p, const grid_inputs<Ein, device_space>& in,
                      const grid_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>,
                  "tokred: token rows are float, tokred::f16 or tokred::bf16");
    if (status s = check_exec(exec); s != status::ok) return s;
    const grid_result r = check_grid_reduce(p, in, out);
    if (r.code != status::ok) return r.code;
    if constexpr (std::is_same_v<Policy, bilinear>) {
      return launch_rows(exec, bilinear_rows{p}, in.grid, r.grid, in, out);
    } else if constexpr (std::is_same_v<Policy, pool>) {
      if (p.kind == pool_kind::max)
        return launch_rows(exec, pool_rows<pool_kind::max>{p}, in.grid, r.grid, in, out);
      return launch_rows(exec, pool_rows<pool_kind::average>{p}, in.grid, r.grid, in, out);
    } else {
      if (p.kind == pool_kind::max)
        return launch_rows(exec, adaptive_rows<pool_kind::max>{p}, in.grid, r.grid, in, out);
      return launch_rows(exec, adaptive_rows<pool_kind::average>{p}, in.grid, r.grid, in, out);
    }
  }
};

}  // namespace cuda_grid
}  // namespace detail

/// Pooling on a CUDA stream: no workspace, one launch; any strides, fp32/fp16/bf16 in and out,
/// computed in fp32, bit-identical to the CPU backend. See `tokred::pool`.
template <>
struct backend<pool, cuda> : detail::cuda_grid::row_reduce_backend<pool> {};

/// Adaptive pooling on a CUDA stream: no workspace, one launch; bit-identical to the CPU
/// backend. See `tokred::adaptive_pool`.
template <>
struct backend<adaptive_pool, cuda> : detail::cuda_grid::row_reduce_backend<adaptive_pool> {};

/// Bilinear resampling on a CUDA stream: no workspace, one launch; bit-identical to the CPU
/// backend (see the file comment). See `tokred::bilinear`.
template <>
struct backend<bilinear, cuda> : detail::cuda_grid::row_reduce_backend<bilinear> {};

}  // namespace tokred
