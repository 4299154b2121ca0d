// tokred/cpu/dct.hpp — CPU backend of dct_lowpass (Fourier-VLM's DCT low-pass).
//
// The low-pass is linear and separable. Along a transformed axis of n tokens it multiplies by a
// k × n matrix: the kept rows of the orthonormal DCT-II (coefficients), or those rows followed by
// the orthonormal inverse at size k (resampled). Tokens are (tokens, dim) rows with dim
// contiguous, so each axis pass is a small GEMM of that matrix with a panel of token rows. The
// passes run along W, then H, then T; an axis that is not transformed, or is resampled at its
// full size (the identity), has no pass.
//
// Two engines run a pass:
//   kernel  The DCT's even/odd symmetry halves the work. Row l of the DCT-II is symmetric about
//           the middle for even l and antisymmetric for odd l, so with u_j = x_j + x_{n-1-j} and
//           v_j = x_j − x_{n-1-j} the even rows need only u and the odd rows only v: two
//           GEMMs of about k/2 × n/2 instead of one of k × n. The resampling matrix is
//           centrosymmetric for the same reason, and its output pairs (i, k−1−i) come back as
//           a ± b. The GEMMs run on register tiles of xsimd batches straight from the packed
//           rows; the matrices are a few KiB and stay in L1, so nothing else is packed.
//   eigen   The dense k × n matrix and Eigen's GEMM on Maps over the same workspace.
// The kernel engine is faster at every measured size, 1.7–2.3× from 16 × 16 to 64 × 64 and
// 1.2–1.9× at 14 × 14 (docs/policies/dct_lowpass.md gives the table), so
// `backend<dct_lowpass, cpu<Arch>>` uses it.
// `cpu_dct<Arch, dct_engine::eigen>` stays as the measured alternative and a cross-check; it is
// compiled only when TOKRED_DCT_EIGEN is defined before this header, which keeps Eigen (0.5 s
// of compile time per translation unit, and warnings under nvcc) out of every other includer.
//
// Work units: a unit is one channel chunk (64 to 256 channels) of one frame (spatial
// passes only), of one spatial position (a temporal pass only) or of the whole volume (both).
// Share ith of nth runs units [U·ith/nth, U·(ith+1)/nth). A unit is computed the same way
// whichever share runs it (its sizes, and so every blocking decision, depend on the shapes
// alone), so the union is bit-identical to nth = 1.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

// Eigen and xsimd bring in the x86 intrinsics: see TOKRED_INTRINSIC_HEADERS_BEGIN (core/config.hpp).
#include "tokred/core/config.hpp"
TOKRED_INTRINSIC_HEADERS_BEGIN
#if defined(TOKRED_DCT_EIGEN)
#include <Eigen/Core>
#endif
#include <xsimd/xsimd.hpp>
TOKRED_INTRINSIC_HEADERS_END

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/grid_reduce.hpp"

// The per-pair loads and stores sit in the innermost loops; g++ 12 left the bf16 ones out of
// line (SSE2, 27 × 27 × 1152 bf16: the input pass took 375 µs against 197 µs for fp32), hence
// TOKRED_FORCE_INLINE on them.

namespace tokred {
namespace detail {

/// Which GEMM runs the axis passes: the even/odd register-tile kernel or Eigen's dense GEMM.
enum class dct_engine { kernel, eigen };

/// Register tile and work-unit sizes of the DCT kernels for one xsimd architecture.
template <class Arch>
struct dct_tuning {
  static constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  /// Rows of each of the even and odd matrices per register tile, whose columns are one pair
  /// of batches (2 · lanes channels): 2 · pairs · 2 accumulators. 27 × 27 × 1152 → 18 × 18 on
  /// one core, best of 150 runs in each of three rounds: SSE2 with 2 / 3 / 4 pairs took 1.48 /
  /// 1.26–1.30 / 1.39 ms (16 registers: 12 accumulators leave room for the loads); AVX-512 with
  /// 3 / 4 / 5 / 6 pairs 0.59–0.78 / 0.55–0.56 / 0.56–0.57 / 0.58–0.61 ms.
  static constexpr int tile_pairs = lanes >= 16 ? 4 : 3;
  /// Channels per register tile: one pair of batches (the unit bf16 widens in, see load_pair).
  static constexpr index_t tile_width = 2 * lanes;
  /// SSE has no broadcast load: a broadcast costs a load and a shuffle per matrix entry per
  /// tile. Storing each entry already broadcast (lanes copies) feeds the multiply straight from
  /// memory: 1.26–1.30 ms against 1.35–1.39 ms broadcasting (SSE2, the case above). AVX and
  /// later broadcast from memory in one load.
  static constexpr bool expand = lanes == 4;
  /// Channels per work unit: the largest of 64, 128 and 256 whose unit buffers (about H·kw
  /// floats per channel for W and H passes, see dct_plan::unit_floats) stay within
  /// `unit_budget` floats (256 KiB). Larger chunks touch each input row in fewer, longer runs,
  /// which pays when the input streams from DRAM; smaller ones keep the buffers in L2 and split
  /// better across shares. One core, AVX-512, fp32, best of 12, chunk 64 / 128 / 256 / 512:
  /// 8 × 24 × 24 × 3584 → 16 × 16: 26.6 / 17.3 / 14.2 / 13.3 ms; 8 × 24 × 24 × 1152: 3.74 /
  /// 3.58 / 3.66 / 3.70 ms; 27 × 27 × 1152 → 18 × 18 (in cache): 0.54 / 0.55 / 0.58 / 0.62 ms;
  /// 64 × 64 × 1152 → 42 × 42: 5.0 / 5.2 / 5.9 / 5.9 ms. The budget picks 128 for 24 × 24 and
  /// 27 × 27, 64 from 32 × 32 up.
  static constexpr index_t min_chunk = 64, max_chunk = 256, unit_budget = 65536;
};

/// One grid axis of the low-pass: `in` tokens become `out`, and whether a pass runs.
struct dct_axis {
  index_t in = 1;
  index_t out = 1;
  bool active = false;  ///< false: untransformed, or resampled at full size (the identity)
  bool resampled = true;

  constexpr index_t half() const noexcept { return in / 2; }       ///< pairs (j, n−1−j)
  constexpr index_t mid() const noexcept { return in % 2; }        ///< 1: a middle token
  constexpr index_t even_rows() const noexcept { return (out + 1) / 2; }
  constexpr index_t odd_rows() const noexcept { return out / 2; }
  constexpr index_t even_depth() const noexcept { return half() + mid(); }
};

/// How the tokens of a problem are cut into independent work units.
enum class dct_units {
  frame_chunks,     ///< spatial passes only: (frame, chunk)
  position_chunks,  ///< a temporal pass only: (h·W + w, chunk)
  volume_chunks,    ///< spatial and temporal passes: (chunk)
};

/// Everything about a run that follows from the shapes: axes (W, H, T), chunks, buffer sizes.
struct dct_plan {
  dct_axis axis[3];  // W, H, T
  token_grid in, out;
  index_t dim = 0;
  index_t chunk = 1, chunks = 0;
  index_t widest = 0;  ///< padded width of the widest chunk
  dct_units units = dct_units::frame_chunks;

  constexpr const dct_axis& w() const noexcept { return axis[0]; }
  constexpr const dct_axis& h() const noexcept { return axis[1]; }
  constexpr const dct_axis& t() const noexcept { return axis[2]; }
  constexpr bool spatial() const noexcept { return axis[0].active || axis[1].active; }

  index_t unit_count() const noexcept {
    switch (units) {
      case dct_units::frame_chunks: return in.frames * chunks;
      case dct_units::position_chunks: return in.frame_tokens() * chunks;
      case dct_units::volume_chunks: return chunks;
    }
    return 0;
  }
  /// Floats between the W and H passes of one frame: (H, kw, chunk).
  index_t line_floats() const noexcept {
    return w().active && h().active ? in.height * out.width * widest : 0;
  }
  /// Floats between the spatial passes and the T pass: (T, kh, kw, chunk).
  index_t frame_floats() const noexcept {
    return units == dct_units::volume_chunks ? in.frames * out.height * out.width * widest : 0;
  }
  /// The floats per channel the kernel engine's unit buffers hold: those between passes, or
  /// the scratch of the largest pass that has its own (the H pass after a W pass reads the
  /// buffer between them in place).
  index_t unit_floats() const noexcept {
    const bool fused = w().active && h().active;
    index_t f = fused ? in.height * out.width : 0;
    if (units == dct_units::volume_chunks) f += in.frames * out.height * out.width;
    for (int a = 0; a < 3; ++a)
      if (axis[a].active && !(fused && a == 1))
        f = std::max(f, (axis[a].in + axis[a].out / 2) * groups_of(a));
    return f;
  }
  /// Groups (tokens side by side) in a row of the pass along axis `a`.
  index_t groups_of(int a) const noexcept {
    if (a == 0 || units == dct_units::position_chunks) return 1;
    if (a == 1) return w().active ? out.width : in.width;
    return out.height * out.width;
  }
  /// Columns (groups × chunk) of the pass along axis `a`.
  index_t pass_columns(int a) const noexcept { return groups_of(a) * widest; }
};

/// The plan of `p` on `grid` with rows of `dim`; `p` must fit `grid` (reduced_grid is ok).
template <class Arch>
dct_plan plan_dct(const dct_lowpass& p, const token_grid& grid, index_t dim) noexcept {
  dct_plan plan;
  plan.in = grid;
  plan.out = output_grid(p, grid);
  plan.dim = dim;
  const bool resampled = p.produce == dct_output::resampled;
  const bool spatial = p.axes != dct_axes::temporal, temporal = p.axes != dct_axes::spatial;
  const index_t ins[3] = {grid.width, grid.height, grid.frames};
  const index_t outs[3] = {p.keep.w, p.keep.h, p.keep.t};
  const bool transformed[3] = {spatial, spatial, temporal};
  for (int a = 0; a < 3; ++a)
    plan.axis[a] = {ins[a], outs[a], transformed[a] && !(resampled && outs[a] == ins[a]),
                    resampled};
  plan.units = !plan.t().active ? dct_units::frame_chunks
               : plan.spatial() ? dct_units::volume_chunks
                                : dct_units::position_chunks;
  using tuning = dct_tuning<Arch>;
  plan.chunk = tuning::max_chunk;
  while (plan.chunk > tuning::min_chunk && plan.chunk * plan.unit_floats() > tuning::unit_budget)
    plan.chunk /= 2;
  plan.chunks = dim > 0 ? ceil_div(dim, plan.chunk) : 0;
  plan.widest = saturating_round_up(std::min(dim, plan.chunk), tuning::tile_width);
  return plan;
}

// --- the matrices --------------------------------------------------------------------------------

/// cos(π·m / (2n)), exactly 0 at the quarter periods (the middle token of an odd axis under an
/// odd frequency, whose basis entry is exactly 0).
inline double dct_cos(index_t m, index_t n) noexcept {
  m %= 4 * n;
  if (m == n || m == 3 * n) return 0.0;
  return std::cos(3.14159265358979323846 * static_cast<double>(m) / static_cast<double>(2 * n));
}

/// The orthonormal DCT-II basis of size n, from a table of cos(π·m/(2n)), m < 4n.
struct dct_basis {
  const double* cosines = nullptr;  // (4n,)
  index_t n = 1;

  /// C[l][j] = s_l · cos(π (2j + 1) l / (2n)), s_0 = √(1/n), s_l = √(2/n).
  double operator()(index_t l, index_t j) const noexcept {
    const double s = std::sqrt((l == 0 ? 1.0 : 2.0) / static_cast<double>(n));
    return s * cosines[((2 * j + 1) * l) % (4 * n)];
  }
};

/// Matrix entry (i, j) of axis `ax` restricted to frequencies of one parity (`parity` 0 or 1)
/// or to all of them (`parity` < 0), in double: resampled Σ_l C_k[l][i]·C_n[l][j]; coefficients
/// C_n[i][j].
inline double dct_entry(const dct_axis& ax, const dct_basis& cn, const dct_basis& ck, index_t i,
                        index_t j, int parity) noexcept {
  if (!ax.resampled) return cn(i, j);
  double sum = 0.0;
  for (index_t l = parity < 0 ? 0 : parity; l < ax.out; l += parity < 0 ? 1 : 2)
    sum += ck(l, i) * cn(l, j);
  return sum;
}

/// Fills the cosine tables of axis `ax` into `cosines` ((4n + 4k,)) and sets the two bases.
inline void dct_bases(const dct_axis& ax, double* cosines, dct_basis& cn, dct_basis& ck) noexcept {
  for (index_t m = 0; m < 4 * ax.in; ++m) cosines[m] = dct_cos(m, ax.in);
  for (index_t m = 0; m < 4 * ax.out; ++m) cosines[4 * ax.in + m] = dct_cos(m, ax.out);
  cn = {cosines, ax.in};
  ck = {cosines + 4 * ax.in, ax.out};
}

/// The kernel engine's matrices of axis `ax`: even (even_rows, even_depth) acting on u, odd
/// (odd_rows, half) acting on v; each entry repeated `copies` times (pre-broadcast for SSE).
///   resampled:     even[i][j] = Σ_{l even} C_k[l][i]·C_n[l][j], odd: the same over odd l
///   coefficients:  even[i][j] = C_n[2i][j],                  odd[i][j] = C_n[2i+1][j]
inline void build_split_matrices(const dct_axis& ax, double* cosines, float* even, float* odd,
                                 index_t copies) noexcept {
  dct_basis cn, ck;
  dct_bases(ax, cosines, cn, ck);
  const auto put = [copies](float* m, index_t at, double value) {
    for (index_t c = 0; c < copies; ++c) m[at * copies + c] = static_cast<float>(value);
  };
  const index_t de = ax.even_depth(), dod = ax.half();
  for (index_t i = 0; i < ax.even_rows(); ++i)
    for (index_t j = 0; j < de; ++j)
      put(even, i * de + j, ax.resampled ? dct_entry(ax, cn, ck, i, j, 0) : cn(2 * i, j));
  for (index_t i = 0; i < ax.odd_rows(); ++i)
    for (index_t j = 0; j < dod; ++j)
      put(odd, i * dod + j, ax.resampled ? dct_entry(ax, cn, ck, i, j, 1) : cn(2 * i + 1, j));
}

#if defined(TOKRED_DCT_EIGEN)
/// The Eigen engine's dense (out, in) matrix of axis `ax`, column-major.
inline void build_dense_matrix(const dct_axis& ax, double* cosines, float* dense) noexcept {
  dct_basis cn, ck;
  dct_bases(ax, cosines, cn, ck);
  for (index_t i = 0; i < ax.out; ++i)
    for (index_t j = 0; j < ax.in; ++j)
      dense[j * ax.out + i] = static_cast<float>(dct_entry(ax, cn, ck, i, j, -1));
}
#endif

// --- panels of token rows ----------------------------------------------------------------------

/// Rows of (group, channel) panels: element (row, group, c) at
/// data + row·row_stride + group·group_stride + c·inner. Channels at or past `valid` are the
/// chunk's padding: they read as 0 and are never stored.
template <class E>
struct panel_ref {
  E* data = nullptr;
  index_t row_stride = 0;
  index_t group_stride = 0;
  index_t inner = 1;
  index_t valid = 0;

  E* at(index_t row, index_t group, index_t c) const noexcept {
    return data + row * row_stride + group * group_stride + c * inner;
  }
  /// Row `row` of this panel as a panel whose rows are its groups.
  panel_ref line(index_t row) const noexcept {
    return {data + row * row_stride, group_stride, 0, inner, valid};
  }
};

// Both engines move channels in pairs of batches, [c, c + 2·lanes). For bf16 input the
// pair holds the even channels first and the odd ones second ("interleaved"): that is how
// bf16 widens with a shift and a mask (`load_float_pair`), where xsimd 8.1's widening load is a
// scalar loop (27 × 27 × 1152 bf16, SSE2: 2.7 ms with load_floats, against 1.5 ms for fp32).
// Every step between the first load and the last store treats channels alike, so the
// workspace keeps that order and only the final store puts each channel back in its place.

/// Slot of channel c + l in an (interleaved) pair.
template <class Arch, bool Interleaved>
constexpr index_t pair_slot(index_t l) noexcept {
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  return Interleaved ? (l % 2) * lanes + l / 2 : l;
}

/// load_pair for a pair that is strided or runs into the padding: one channel at a time.
template <class Arch, bool Interleaved, class E>
float_pair<Arch> load_pair_edge(const panel_ref<const E>& s, const E* p, index_t c) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  alignas(64) float x[2 * lanes];
  for (index_t l = 0; l < 2 * lanes; ++l)
    x[pair_slot<Arch, Interleaved>(l)] = c + l < s.valid ? to_float(p[l * s.inner]) : 0.0f;
  return {batch::load_aligned(x), batch::load_aligned(x + lanes)};
}

/// Channels [c, c + 2·lanes) of (row, group) as a pair, interleaved or in order. The edge
/// cases live in their own function so that this one stays small enough to inline (with them
/// inside, g++ called it for every pair: SSE2 bf16 input pass of 27 × 27 × 1152, 600 µs
/// against 150 µs inlined).
template <class Arch, bool Interleaved, class E>
TOKRED_FORCE_INLINE float_pair<Arch> load_pair(const panel_ref<const E>& s, index_t row,
                                             index_t group, index_t c) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  if (c >= s.valid) return {batch(0.0f), batch(0.0f)};
  const E* p = s.at(row, group, c);
  if (s.inner != 1 || c + 2 * lanes > s.valid) return load_pair_edge<Arch, Interleaved>(s, p, c);
  if constexpr (Interleaved) {
    static_assert(std::is_same_v<E, bf16>, "tokred: only bf16 input is interleaved");
    return load_float_pair<Arch>(p);
  } else {
    return {load_floats<Arch>(p), load_floats<Arch>(p + lanes)};
  }
}

/// store_pair for a pair that is strided, runs into the padding or changes order: one channel
/// at a time.
template <class Arch, bool Interleaved, class E>
void store_pair_edge(const panel_ref<E>& d, E* p, index_t c, const float_pair<Arch>& x) noexcept {
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  alignas(64) float y[2 * lanes];
  x.first.store_aligned(y);
  x.second.store_aligned(y + lanes);
  for (index_t l = 0; l < 2 * lanes && c + l < d.valid; ++l)
    p[l * d.inner] = from_float<E>(y[pair_slot<Arch, Interleaved>(l)]);
}

/// Stores a pair (interleaved or in order) to channels [c, c + 2·lanes) of (row, group),
/// rounding to E; padding channels are dropped.
template <class Arch, bool Interleaved, class E>
TOKRED_FORCE_INLINE void store_pair(const panel_ref<E>& d, index_t row, index_t group, index_t c,
                                  const float_pair<Arch>& x) noexcept {
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  if (c >= d.valid) return;
  E* p = d.at(row, group, c);
  if (d.inner == 1 && c + 2 * lanes <= d.valid) {
    if constexpr (!Interleaved) {
      store_floats<Arch>(p, x.first);
      return store_floats<Arch>(p + lanes, x.second);
    } else if constexpr (std::is_same_v<E, bf16>) {
      return store_float_pair<Arch>(p, x);
    }
  }
  store_pair_edge<Arch, Interleaved>(d, p, c, x);
}

template <class Arch>
float_pair<Arch> operator+(const float_pair<Arch>& a, const float_pair<Arch>& b) noexcept {
  return {a.first + b.first, a.second + b.second};
}
template <class Arch>
float_pair<Arch> operator-(const float_pair<Arch>& a, const float_pair<Arch>& b) noexcept {
  return {a.first - b.first, a.second - b.second};
}

/// Stores a pair to a contiguous fp32 buffer as it is (first at p, second at p + lanes).
template <class Arch>
void store_buffer(float* p, const float_pair<Arch>& x) noexcept {
  x.first.store_aligned(p);
  x.second.store_aligned(p + static_cast<index_t>(float_batch<Arch>::size));
}

// --- the kernel engine ---------------------------------------------------------------------------

/// Where a pass writes its output rows: a contiguous fp32 workspace buffer, stored as is.
struct buffer_sink {
  float* data = nullptr;
  index_t row_stride = 0;    ///< floats between output rows
  index_t group_stride = 0;  ///< floats between the groups of a row

  float* at(index_t row, index_t group, index_t c) const noexcept {
    return data + row * row_stride + group * group_stride + c;
  }
  template <class Arch>
  void store(index_t row, index_t group, index_t c, const float_pair<Arch>& x) const noexcept {
    store_buffer<Arch>(at(row, group, c), x);
  }
  /// Row `row` as a sink whose rows are its groups.
  buffer_sink line(index_t row) const noexcept { return {data + row * row_stride, group_stride, 0}; }
};

/// Where a pass writes its output rows: the caller's view, rounded to E, padding dropped, pairs
/// put back in channel order when `Interleaved`.
template <class E, bool Interleaved>
struct panel_sink {
  panel_ref<E> panel;

  template <class Arch>
  void store(index_t row, index_t group, index_t c, const float_pair<Arch>& x) const noexcept {
    store_pair<Arch, Interleaved>(panel, row, group, c, x);
  }
  panel_sink line(index_t row) const noexcept { return {panel.line(row)}; }
};

/// An axis's even/odd matrices as the kernel reads them (entries repeated when pre-broadcast).
struct split_matrices {
  const float* even = nullptr;  // (even_rows, even_depth)
  const float* odd = nullptr;   // (odd_rows, half)
};

/// The register tile: for `Pairs` rows of each matrix and one pair of batches of channels,
/// e[r] = Σ_j even[r][j]·u[j] and (with `Odd`) o[r] = Σ_j odd[r][j]·v[j], each summed in order
/// of j; then put(r, e, o). Both halves stay in registers, so the epilogue combines them
/// without a round trip through memory.
template <class Arch, int Pairs, bool Odd>
struct pair_tile {
  using batch = float_batch<Arch>;
  static constexpr index_t lanes = static_cast<index_t>(batch::size);

  static batch entry(const float* m, index_t at) noexcept {
    if constexpr (dct_tuning<Arch>::expand) return batch::load_aligned(m + at * lanes);
    else return batch(m[at]);
  }

  /// acc[r] += m[r][j] · x for one j; m is (rows, depth).
  static void accumulate(batch (&acc)[Pairs][2], const float* m, index_t depth, index_t j,
                         const float* x) noexcept {
    const batch b0 = batch::load_aligned(x), b1 = batch::load_aligned(x + lanes);
    for (int r = 0; r < Pairs; ++r) {
      const batch a = entry(m, r * depth + j);
      acc[r][0] = xsimd::fma(a, b0, acc[r][0]);
      acc[r][1] = xsimd::fma(a, b1, acc[r][1]);
    }
  }

  template <class Put>
  static void run(const split_matrices& m, index_t even_depth, index_t odd_depth, const float* u,
                  const float* v, index_t ld, const Put& put) noexcept {
    batch e[Pairs][2], o[Pairs][2];
    for (int r = 0; r < Pairs; ++r) e[r][0] = e[r][1] = o[r][0] = o[r][1] = batch(0.0f);
    index_t j = 0;
    if constexpr (Odd)
      for (; j < odd_depth; ++j) {
        accumulate(e, m.even, even_depth, j, u + j * ld);
        accumulate(o, m.odd, odd_depth, j, v + j * ld);
      }
    for (; j < even_depth; ++j) accumulate(e, m.even, even_depth, j, u + j * ld);
    for (int r = 0; r < Pairs; ++r)
      put(r, float_pair<Arch>{e[r][0], e[r][1]}, float_pair<Arch>{o[r][0], o[r][1]});
  }
};

/// Runs the tile of `pairs` (1 ..= Pairs) rows.
template <class Arch, int Pairs, class Put>
void pair_tile_rows(index_t pairs, const split_matrices& m, index_t even_depth, index_t odd_depth,
                    const float* u, const float* v, index_t ld, const Put& put) noexcept {
  if constexpr (Pairs > 1) {
    if (pairs < Pairs)
      return pair_tile_rows<Arch, Pairs - 1>(pairs, m, even_depth, odd_depth, u, v, ld, put);
  }
  pair_tile<Arch, Pairs, true>::run(m, even_depth, odd_depth, u, v, ld, put);
}

/// The even/odd GEMMs of axis `ax` over u (even_depth, groups × width) and v (half, groups ×
/// width), contiguous fp32. Output pair i < odd_rows gets put(i, group, c, e, o, true); the
/// extra even row of an odd `out` gets put(odd_rows, group, c, e, ·, false). Column tiles
/// outside, row tiles inside: a tile of u and v serves every matrix row from L1.
template <class Arch, class Put>
void pair_gemm(const dct_axis& ax, const split_matrices& m, const float* u, const float* v,
               index_t groups, index_t width, const Put& put) noexcept {
  using tuning = dct_tuning<Arch>;
  using pair = float_pair<Arch>;
  constexpr int tile_pairs = tuning::tile_pairs;
  const index_t de = ax.even_depth(), dod = ax.half(), pairs = ax.odd_rows();
  const index_t step = tuning::expand ? tuning::lanes : 1, ld = groups * width;
  for (index_t g = 0; g < groups; ++g)
    for (index_t c = 0; c < width; c += tuning::tile_width) {
      const index_t at = g * width + c;
      for (index_t i = 0; i < pairs; i += tile_pairs) {
        const auto both = [&](int r, const pair& e, const pair& o) { put(i + r, g, c, e, o, true); };
        pair_tile_rows<Arch, tile_pairs>(std::min<index_t>(tile_pairs, pairs - i),
                                         {m.even + i * de * step, m.odd + i * dod * step}, de, dod,
                                         u + at, v + at, ld, both);
      }
      if (ax.even_rows() > pairs) {
        const auto even = [&](int, const pair& e, const pair& o) { put(pairs, g, c, e, o, false); };
        pair_tile<Arch, 1, false>::run({m.even + pairs * de * step, nullptr}, de, 0, u + at,
                                       v + at, ld, even);
      }
    }
}

/// One axis pass on packed halves: resampled pairs give y_i = e + o and y_{k−1−i} = e − o
/// (the middle row of an odd k is e alone); coefficients give rows 2i = e and 2i + 1 = o.
template <class Arch, class Sink>
void pair_pass(const dct_axis& ax, const split_matrices& m, const float* u, const float* v,
               index_t groups, index_t width, const Sink& sink) noexcept {
  using pair = float_pair<Arch>;
  const index_t k = ax.out;
  if (ax.resampled)
    pair_gemm<Arch>(ax, m, u, v, groups, width,
                    [&](index_t i, index_t g, index_t c, const pair& e, const pair& o, bool both) {
                      if (!both) return sink.template store<Arch>(i, g, c, e);
                      sink.template store<Arch>(i, g, c, e + o);
                      sink.template store<Arch>(k - 1 - i, g, c, e - o);
                    });
  else
    pair_gemm<Arch>(ax, m, u, v, groups, width,
                    [&](index_t i, index_t g, index_t c, const pair& e, const pair& o, bool both) {
                      sink.template store<Arch>(2 * i, g, c, e);
                      if (both) sink.template store<Arch>(2 * i + 1, g, c, o);
                    });
}

/// The even/odd halves of `n` rows of `src`: u_j = x_j + x_{n−1−j} and v_j = x_j − x_{n−1−j}
/// for j < n/2, and u_{n/2} = the middle row of an odd n; contiguous fp32 (rows, groups × width).
template <class Arch, bool Interleaved, class E>
void butterfly(const panel_ref<const E>& src, index_t n, index_t groups, index_t width, float* u,
               float* v) noexcept {
  using pair = float_pair<Arch>;
  constexpr index_t step = 2 * static_cast<index_t>(float_batch<Arch>::size);
  const index_t ld = groups * width, half = n / 2;
  for (index_t j = 0; j < half; ++j)
    for (index_t g = 0; g < groups; ++g)
      for (index_t c = 0; c < width; c += step) {
        const pair x = load_pair<Arch, Interleaved>(src, j, g, c);
        const pair y = load_pair<Arch, Interleaved>(src, n - 1 - j, g, c);
        store_buffer<Arch>(u + j * ld + g * width + c, x + y);
        store_buffer<Arch>(v + j * ld + g * width + c, x - y);
      }
  if (n % 2)
    for (index_t g = 0; g < groups; ++g)
      for (index_t c = 0; c < width; c += step)
        store_buffer<Arch>(u + half * ld + g * width + c,
                           load_pair<Arch, Interleaved>(src, half, g, c));
}

/// The 2-D butterfly of rows j and m = H−1−j of a frame (rows h, groups w): s = x_j + x_m and
/// d = x_j − x_m, each split into its even/odd halves along W, as `butterfly` does. By
/// linearity the W pass of s and d is the H pass's u and v row j, so the H pass needs no
/// butterfly of its own.
template <class Arch, bool Interleaved, class E>
void butterfly_2d(const panel_ref<const E>& frame, index_t j, index_t m, index_t w, index_t width,
                  float* su, float* sv, float* du, float* dv) noexcept {
  using pair = float_pair<Arch>;
  constexpr index_t step = 2 * static_cast<index_t>(float_batch<Arch>::size);
  const panel_ref<const E> a = frame.line(j), b = frame.line(m);  // rows w
  for (index_t i = 0; i < w / 2; ++i)
    for (index_t c = 0; c < width; c += step) {
      const pair a0 = load_pair<Arch, Interleaved>(a, i, 0, c);
      const pair a1 = load_pair<Arch, Interleaved>(a, w - 1 - i, 0, c);
      const pair b0 = load_pair<Arch, Interleaved>(b, i, 0, c);
      const pair b1 = load_pair<Arch, Interleaved>(b, w - 1 - i, 0, c);
      const pair s0 = a0 + b0, s1 = a1 + b1, d0 = a0 - b0, d1 = a1 - b1;
      store_buffer<Arch>(su + i * width + c, s0 + s1);
      store_buffer<Arch>(sv + i * width + c, s0 - s1);
      store_buffer<Arch>(du + i * width + c, d0 + d1);
      store_buffer<Arch>(dv + i * width + c, d0 - d1);
    }
  if (w % 2)
    for (index_t c = 0; c < width; c += step) {
      const pair a0 = load_pair<Arch, Interleaved>(a, w / 2, 0, c);
      const pair b0 = load_pair<Arch, Interleaved>(b, w / 2, 0, c);
      store_buffer<Arch>(su + (w / 2) * width + c, a0 + b0);
      store_buffer<Arch>(du + (w / 2) * width + c, a0 - b0);
    }
}

/// Copies `rows` rows of `groups` groups (every axis is the identity).
template <class Arch, bool Interleaved, class E, class Sink>
void copy_rows(const panel_ref<const E>& src, const Sink& sink, index_t rows, index_t groups,
               index_t width) noexcept {
  constexpr index_t step = 2 * static_cast<index_t>(float_batch<Arch>::size);
  for (index_t r = 0; r < rows; ++r)
    for (index_t g = 0; g < groups; ++g)
      for (index_t c = 0; c < width; c += step)
        sink.template store<Arch>(r, g, c, load_pair<Arch, Interleaved>(src, r, g, c));
}

/// The scratch of one axis pass. Kernel engine: the even/odd halves u (even_depth, cols) and
/// v (half, cols), and for the 2-D butterfly those of the difference rows, du and dv. Eigen
/// engine: the packed input (in, cols) in u and the result (out, cols) in v.
struct dct_pass_scratch {
  float* u = nullptr;
  float* v = nullptr;
  float* du = nullptr;
  float* dv = nullptr;
};

// --- the Eigen engine (with TOKRED_DCT_EIGEN) -------------------------------------------------

#if defined(TOKRED_DCT_EIGEN)
/// Columns per Eigen product for an axis of `n` inputs. Eigen packs each operand of a product
/// into a buffer it places on the stack while it fits EIGEN_STACK_ALLOCATION_LIMIT (128 KiB)
/// and on the heap beyond. Products of at most 16384 / n columns pack the token panel into
/// 64 KiB and the matrix into n·k floats, so they never allocate for axes up to 128 tokens (the
/// test checks it under EIGEN_RUNTIME_NO_MALLOC).
constexpr index_t eigen_columns(index_t n, index_t multiple) noexcept {
  const index_t most = 16384 / n / multiple * multiple;
  return most > multiple ? most : multiple;
}

/// One axis pass as a dense GEMM with Eigen: sink = A · src. Reads and writes fp32 workspace
/// buffers in place; any other source is packed first and any other sink stored after, in
/// pairs as the kernel engine does (so the two engines differ in their GEMMs alone).
template <class Arch, class Es, class Sink>
void eigen_pass(const dct_axis& ax, const float* dense, const panel_ref<const Es>& src,
                const Sink& sink, index_t groups, index_t width,
                const dct_pass_scratch& s) noexcept {
  using batch = float_batch<Arch>;
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using strided = Eigen::OuterStride<>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  const index_t n = ax.in, k = ax.out, cols = groups * width;
  const float* x = s.u;  // (in, cols)
  if constexpr (std::is_same_v<Es, float>)
    if (src.inner == 1 && src.valid == width && (groups == 1 || src.group_stride == width) &&
        src.row_stride == cols)
      x = src.data;
  if (x == s.u)
    for (index_t j = 0; j < n; ++j)
      for (index_t g = 0; g < groups; ++g)
        for (index_t c = 0; c < width; c += 2 * lanes)
          store_buffer<Arch>(s.u + j * cols + g * width + c,
                             load_pair<Arch, std::is_same_v<Es, bf16>>(src, j, g, c));
  float* y = s.v;  // (out, cols)
  if constexpr (std::is_same_v<Sink, buffer_sink>)
    if ((groups == 1 || sink.group_stride == width) && sink.row_stride == cols) y = sink.data;

  const Eigen::Map<const Eigen::MatrixXf> a(dense, k, n);
  const index_t block = eigen_columns(n, 2 * lanes);
  for (index_t c0 = 0; c0 < cols; c0 += block) {
    const index_t w = std::min(block, cols - c0);
    const Eigen::Map<const row_major, Eigen::Unaligned, strided> xb(x + c0, n, w, strided(cols));
    Eigen::Map<row_major, Eigen::Unaligned, strided> yb(y + c0, k, w, strided(cols));
    yb.noalias() = a * xb;
  }
  if (y == s.v)
    for (index_t i = 0; i < k; ++i)
      for (index_t g = 0; g < groups; ++g)
        for (index_t c = 0; c < width; c += 2 * lanes) {
          const float* r = s.v + i * cols + g * width + c;
          sink.template store<Arch>(i, g, c, float_pair<Arch>{batch::load_aligned(r),
                                                              batch::load_aligned(r + lanes)});
        }
}
#else
/// Without TOKRED_DCT_EIGEN the Eigen engine exists only as these two names.
template <class Arch, class... Args>
void eigen_pass(Args&&...) noexcept {
  static_assert(dependent_false<Arch>,
                "tokred: define TOKRED_DCT_EIGEN before including <tokred/cpu/dct.hpp> to use "
                "the Eigen engine of dct_lowpass");
}
template <class... Args>
void build_dense_matrix(Args&&...) noexcept {}
#endif

// --- the backend -----------------------------------------------------------------------------------

/// One share's slice of the workspace.
struct dct_slice {
  float* even[3] = {};   // kernel engine: (even_rows, even_depth) per axis
  float* odd[3] = {};    // kernel engine: (odd_rows, half) per axis
  float* dense[3] = {};  // eigen engine: (out, in) per axis
  double* cosines = nullptr;  // (4n + 4k,) of the longest axis, while the matrices are built
  float* lines = nullptr;     // (H, kw, chunk): the W pass's output, the H pass's input
  float* frames = nullptr;    // (T, kh, kw, chunk): the spatial passes' output, the T pass's input
  dct_pass_scratch pass;
};

/// The CPU implementation of dct_lowpass with the given engine.
template <class Arch, dct_engine Engine>
struct cpu_dct {
  using tuning = dct_tuning<Arch>;
  static constexpr bool kernel = Engine == dct_engine::kernel;

  /// The one carve-up: `nth` slices; returns slice `ith` (null pointers when counting).
  static dct_slice carve(arena& a, const dct_plan& plan, int ith, int nth) {
    index_t cosines = 0, u = 0, v = 0, d = 0;
    const bool fused = kernel && plan.w().active && plan.h().active;  // H reads `lines` in place
    for (int x = 0; x < 3; ++x) {
      const dct_axis& ax = plan.axis[x];
      if (!ax.active) continue;
      const index_t cols = fused && x == 1 ? 0 : plan.pass_columns(x);
      cosines = std::max(cosines, 4 * (ax.in + ax.out));
      u = std::max(u, (kernel ? ax.even_depth() : ax.in) * cols);
      v = std::max(v, (kernel ? ax.half() : ax.out) * cols);
    }
    if (fused) d = plan.w().even_depth() * plan.widest;
    const index_t copies = tuning::expand ? tuning::lanes : 1;
    dct_slice mine;
    for (int share = 0; share < nth; ++share) {
      dct_slice slice;
      for (int x = 0; x < 3; ++x) {
        const dct_axis& ax = plan.axis[x];
        if (!ax.active) continue;
        if constexpr (kernel) {
          slice.even[x] = a.take<float>(ax.even_rows() * ax.even_depth() * copies);
          slice.odd[x] = a.take<float>(ax.odd_rows() * ax.half() * copies);
        } else {
          slice.dense[x] = a.take<float>(ax.out, ax.in);
        }
      }
      slice.cosines = a.take<double>(cosines);
      slice.lines = a.take<float>(plan.line_floats());
      slice.frames = a.take<float>(plan.frame_floats());
      slice.pass = {a.take<float>(u), a.take<float>(v), a.take<float>(d), a.take<float>(d)};
      if (share == ith) mine = slice;
    }
    return mine;
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const dct_lowpass& p,
                                     const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok || prob.dim <= 0)
      return 0;
    arena counter;
    carve(counter, plan_dct<Arch>(p, prob.grid, prob.dim), 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const dct_lowpass& p, const grid_inputs<Ein>& in,
                      const grid_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    const grid_result r = check_grid_reduce(p, in, out);
    if (r.code != status::ok) return r.code;
    const bool tokens = requested(out.tokens);
    dct_slice slice;
    dct_plan plan;
    if (tokens) {
      const index_t dim = in.tokens.extent(1);
      const std::size_t need = workspace_bytes(exec, p, problem{in.grid, dim});
      if (ws.bytes < need) return status::workspace_too_small;
      if (need > 0 && ws.data == nullptr) return status::null_pointer;
      arena carver(ws);
      plan = plan_dct<Arch>(p, in.grid, dim);
      slice = carve(carver, plan, exec.ith, exec.nth);
      if (!carver.fits()) return status::workspace_too_small;
    }
    write_meta(p, in.grid, r.grid, out, share_begin(r.grid.tokens(), exec.ith, exec.nth),
               share_begin(r.grid.tokens(), exec.ith + 1, exec.nth));
    if (!tokens) return status::ok;
    const index_t units = plan.unit_count();
    const index_t first = share_begin(units, exec.ith, exec.nth);
    const index_t last = share_begin(units, exec.ith + 1, exec.nth);
    if (first < last) build_matrices(plan, slice);
    for (index_t unit = first; unit < last; ++unit)
      run_unit(plan, slice, unit, in.tokens, out.tokens);
    return status::ok;
  }

 private:
  template <class Eout>
  static void write_meta(const dct_lowpass& p, const token_grid& in, const token_grid& out,
                         const grid_outputs<Eout>& o, index_t j0, index_t j1) noexcept {
    const bool src = requested(o.source), pos = requested(o.positions),
               siz = requested(o.sizes);
    for (index_t j = j0; j < j1; ++j) {
      const grid_meta m = meta_at(p, in, out, j);
      if (src) o.source(j) = m.source;
      if (pos) {
        const token_position at = in.position(m.source);
        o.positions(j, 0) = at.t;
        o.positions(j, 1) = at.h;
        o.positions(j, 2) = at.w;
      }
      if (siz) o.sizes(j) = m.size;
    }
  }

  static void build_matrices(const dct_plan& plan, const dct_slice& s) noexcept {
    for (int x = 0; x < 3; ++x) {
      if (!plan.axis[x].active) continue;
      if constexpr (kernel)
        build_split_matrices(plan.axis[x], s.cosines, s.even[x], s.odd[x],
                             tuning::expand ? tuning::lanes : 1);
      else
        build_dense_matrix(plan.axis[x], s.cosines, s.dense[x]);
    }
  }

  /// One axis pass (`x`: 0 = W, 1 = H, 2 = T) from `src` (in rows) to `sink` (out rows).
  template <class Es, class Sink>
  static void pass(const dct_plan& plan, const dct_slice& s, int x, const panel_ref<const Es>& src,
                   const Sink& sink, index_t groups, index_t width) noexcept {
    const dct_axis& ax = plan.axis[x];
    if constexpr (kernel) {
      butterfly<Arch, std::is_same_v<Es, bf16>>(src, ax.in, groups, width, s.pass.u, s.pass.v);
      pair_pass<Arch>(ax, {s.even[x], s.odd[x]}, s.pass.u, s.pass.v, groups, width, sink);
    } else {
      eigen_pass<Arch>(ax, s.dense[x], src, sink, groups, width, s.pass);
    }
  }

  /// W then H with the 2-D butterfly: the W pass of row pair (j, H−1−j)'s sum and difference
  /// writes row j of the H pass's halves straight into `lines`.
  template <class Es, class Sink>
  static void spatial_kernel(const dct_plan& plan, const dct_slice& s,
                             const panel_ref<const Es>& src, const Sink& sink,
                             index_t width) noexcept {
    const dct_axis &aw = plan.w(), &ah = plan.h();
    const index_t h = plan.in.height, row = plan.out.width * width;  // floats per row of lines
    float* u = s.lines;                          // (even_depth of H, kw · width)
    float* v = s.lines + ah.even_depth() * row;  // (half of H, kw · width)
    const split_matrices mw{s.even[0], s.odd[0]};
    const dct_pass_scratch& p = s.pass;
    constexpr bool interleaved = std::is_same_v<Es, bf16>;
    for (index_t j = 0; j < ah.half(); ++j) {
      butterfly_2d<Arch, interleaved>(src, j, h - 1 - j, aw.in, width, p.u, p.v, p.du, p.dv);
      pair_pass<Arch>(aw, mw, p.u, p.v, 1, width, buffer_sink{u + j * row, width, 0});
      pair_pass<Arch>(aw, mw, p.du, p.dv, 1, width, buffer_sink{v + j * row, width, 0});
    }
    if (ah.mid()) {
      butterfly<Arch, interleaved>(src.line(ah.half()), aw.in, 1, width, p.u, p.v);
      pair_pass<Arch>(aw, mw, p.u, p.v, 1, width, buffer_sink{u + ah.half() * row, width, 0});
    }
    pair_pass<Arch>(ah, {s.even[1], s.odd[1]}, u, v, plan.out.width, width, sink);
  }

  /// The W and H passes of one frame's chunk: src rows h of W groups → sink rows h' of kw groups.
  template <class Es, class Sink>
  static void spatial(const dct_plan& plan, const dct_slice& s, const panel_ref<const Es>& src,
                      const Sink& sink, index_t width) noexcept {
    const dct_axis &aw = plan.w(), &ah = plan.h();
    const index_t rows = plan.in.height;
    if (aw.active && ah.active) {
      if constexpr (kernel) {
        spatial_kernel(plan, s, src, sink, width);
      } else {
        const buffer_sink lines{s.lines, plan.out.width * width, width};  // (H, kw · width)
        for (index_t h = 0; h < rows; ++h) pass(plan, s, 0, src.line(h), lines.line(h), 1, width);
        pass(plan, s, 1, panel_ref<const float>{s.lines, lines.row_stride, width, 1, width}, sink,
             plan.out.width, width);
      }
    } else if (aw.active) {
      for (index_t h = 0; h < rows; ++h) pass(plan, s, 0, src.line(h), sink.line(h), 1, width);
    } else if (ah.active) {
      pass(plan, s, 1, src, sink, plan.in.width, width);
    } else {
      copy_rows<Arch, std::is_same_v<Es, bf16>>(src, sink, rows, plan.in.width, width);
    }
  }

  template <class Ein, class Eout>
  static void run_unit(const dct_plan& plan, const dct_slice& s, index_t unit,
                       const view<const Ein, 2>& x,  // (tokens, dim)
                       const view<Eout, 2>& y) noexcept {  // (kept, dim)
    const index_t chunk = unit % plan.chunks, c0 = chunk * plan.chunk;
    const index_t valid = std::min(plan.chunk, plan.dim - c0);
    const index_t width = saturating_round_up(valid, tuning::tile_width);
    const index_t xs = x.stride(0), ys = y.stride(0);
    const index_t hw_in = plan.in.frame_tokens(), hw_out = plan.out.frame_tokens();
    // bf16 input's channel pairs stay interleaved up to this final store.
    using sink = panel_sink<Eout, std::is_same_v<Ein, bf16>>;
    if (plan.units == dct_units::frame_chunks) {
      const index_t t = unit / plan.chunks;
      const panel_ref<const Ein> src{&x(t * hw_in, c0), plan.in.width * xs, xs, x.stride(1), valid};
      const panel_ref<Eout> dst{&y(t * hw_out, c0), plan.out.width * ys, ys, y.stride(1), valid};
      spatial(plan, s, src, sink{dst}, width);
    } else if (plan.units == dct_units::position_chunks) {
      const index_t at = unit / plan.chunks;  // h·W + w, the same in and out
      const panel_ref<const Ein> src{&x(at, c0), hw_in * xs, 0, x.stride(1), valid};
      const panel_ref<Eout> dst{&y(at, c0), hw_out * ys, 0, y.stride(1), valid};
      pass(plan, s, 2, src, sink{dst}, 1, width);
    } else {
      const index_t per_frame = hw_out * width;
      for (index_t t = 0; t < plan.in.frames; ++t) {
        const panel_ref<const Ein> src{&x(t * hw_in, c0), plan.in.width * xs, xs, x.stride(1),
                                       valid};
        spatial(plan, s, src, buffer_sink{s.frames + t * per_frame, plan.out.width * width, width},
                width);
      }
      const panel_ref<const float> frames{s.frames, per_frame, width, 1, width};
      const panel_ref<Eout> dst{&y(0, c0), hw_out * ys, ys, y.stride(1), valid};
      pass(plan, s, 2, frames, sink{dst}, hw_out, width);
    }
  }
};

}  // namespace detail


/// dct_lowpass on the CPU: the even/odd register-tile kernel (see the file comment).
/// Workspace: `workspace_bytes(cpu{ith, nth}, policy, problem)`, needed only when `tokens` is
/// requested. Statuses: those of `detail::check_grid_reduce`, `invalid_exec`,
/// `workspace_too_small` and `null_pointer` (a null workspace that should hold bytes).
template <class Arch>
struct backend<dct_lowpass, cpu<Arch>> : detail::cpu_dct<Arch, detail::dct_engine::kernel> {};

}  // namespace tokred
