// tokred/cpu/pool.hpp — CPU backends of pool, adaptive_pool and bilinear.
//
// Every share (ith of nth) owns the output rows [K·ith/nth, K·(ith+1)/nth) and computes each of
// them alone from the input rows its window (or its four bilinear taps) covers: no share reads
// what another writes, so the union is bit-identical to one call with nth = 1.
//
// Values follow torch's CPU kernels for contiguous (N, C, T, H, W) tensors, which is how LLaVA,
// PLLaVA and SlowFast-LLaVA call them:
//   pool, average   fp32 sum in window order (t, then h, then w), then one division by the
//                   divisor (the padded window with count_include_pad, else the tokens in it)
//   adaptive, avg   the same sum, then divided by the bin's T, H and W extents in turn (torch's
//                   `sum / kT / kH / kW`, which rounds differently from one division)
//   max, either     m starts at -inf; m = v whenever v > m or v is NaN: a NaN anywhere in the
//                   window gives NaN (the last NaN in window order), +0 and -0 keep the first
//                   (SIMD blocks take lane_max, one x86 max per step, and redo a block that
//                   met a NaN with the exact select: see reduce_pairs)
//   bilinear        (1-λh)·((1-λw)·x00 + λw·x01) + λh·((1-λw)·x10 + λw·x11) in fp32, with the
//                   taps and λ of detail::bilinear_tap_at and torch's order of operations (see
//                   bilinear_mix); an inf tap under a zero weight gives NaN, as in torch
// A row whose input and output are unit-stride runs over channels in blocks of SIMD batches
// (bf16 split into even and odd elements by <tokred/cpu/simd.hpp>'s pair loads), visiting the
// window's rows from a pointer list built once per output row; any other layout (negative row
// strides are fine on either path) runs the same arithmetic one element at a time, so both
// give the same bits. No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/grid_reduce.hpp"

namespace tokred {
namespace detail {

/// The box of input tokens one pooled output token reduces, and how.
struct pool_box {
  span1 t, h, w;
  pool_kind kind = pool_kind::average;
  float divisors[3] = {1.0f, 1.0f, 1.0f};  ///< average: the sum is divided by each in turn
};

/// Window j of torch's avg/max_pool3d, padding clipped away.
inline pool_box box_at(const pool& p, const token_grid& in, const token_grid& out,
                       index_t j) noexcept {
  const pool_cell c = pool_cell_at(p, in, out, j);
  return {c.t, c.h, c.w, p.kind, {static_cast<float>(c.divisor), 1.0f, 1.0f}};
}

/// Bin j of torch's AdaptiveAvgPool3d / AdaptiveMaxPool3d.
inline pool_box box_at(const adaptive_pool& p, const token_grid& in, const token_grid& out,
                       index_t j) noexcept {
  const token_position o = output_cell(out, j);
  const span1 t = adaptive_bin(o.t, in.frames, out.frames);
  const span1 h = adaptive_bin(o.h, in.height, out.height);
  const span1 w = adaptive_bin(o.w, in.width, out.width);
  return {t, h, w, p.kind,
          {static_cast<float>(t.end - t.begin), static_cast<float>(h.end - h.begin),
           static_cast<float>(w.end - w.begin)}};
}

/// Calls `f(i)` for the flat index of every token in the box, in torch's order (t, h, w).
template <class F>
void for_each_token(const pool_box& box, const token_grid& grid, F&& f) noexcept {
  for (index_t t = box.t.begin; t < box.t.end; ++t)
    for (index_t h = box.h.begin; h < box.h.end; ++h) {
      const index_t first = flat_index(grid, t, h, box.w.begin);
      for (index_t i = first; i < first + (box.w.end - box.w.begin); ++i) f(i);
    }
}

/// torch's max step: take v when it is larger or NaN (so NaN sticks and the first of ±0 stays).
inline float max_step(float m, float v) noexcept { return v > m || std::isnan(v) ? v : m; }

template <class Arch>
float_batch<Arch> max_step(const float_batch<Arch>& m, const float_batch<Arch>& v) noexcept {
  return xsimd::select((v > m) || xsimd::isnan(v), v, m);
}

/// True for 2, 4, 8, …: x / d then equals x · (1 / d) bit for bit (both are the exact quotient,
/// rounded once), and a multiply is several times cheaper than a divide.
inline bool is_power_of_two(float d) noexcept {
  const std::uint32_t bits = float_bits(d);
  return (bits & 0x807FFFFFu) == 0 && bits != 0 && bits < 0x7F800000u;  // +, normal, mantissa 0
}

/// Finishes one channel of a box: the divisions of an average (x / 1 is exact, so the unused
/// divisors cost nothing in precision), nothing for a maximum.
inline float finish(const pool_box& box, float acc) noexcept {
  if (box.kind == pool_kind::max) return acc;
  return acc / box.divisors[0] / box.divisors[1] / box.divisors[2];
}

/// Channel c of a box, any strides: the reference arithmetic every path shares.
template <class Ein>
float reduce_channel(const pool_box& box, const token_grid& grid,
                     const view<const Ein, 2>& tokens,  // (tokens, dim)
                     index_t c) noexcept {
  const bool average = box.kind == pool_kind::average;
  float acc = average ? 0.0f : -std::numeric_limits<float>::infinity();
  for_each_token(box, grid, [&](index_t i) {
    const float v = to_float(tokens(i, c));
    acc = average ? acc + v : max_step(acc, v);
  });
  return finish(box, acc);
}

/// Channels one pass over a box accumulates in registers: 64 floats, 256 bytes of each fp32 row.
/// Measured on 2 × 2 average pooling of 27 × 27 × 3584 rows, fastest of 3 runs of 400, µs, by
/// channels per pass (16 / 32 / 64 / 128):
///   SSE2 build      fp32  415 / 414 / 415 / 458     bf16  559 / 498 / 440 / 491
///   AVX-512 build   fp32  419 / 438 / 440 / 422     bf16  208 / 209 / 213 / 214
/// SSE2 has 16 registers, so 128 channels spill; AVX-512 does not care.
inline constexpr index_t pool_block_floats = 64;

/// Pairs of batches per pass over a box: `pool_block_floats` channels, at least one pair.
template <class Arch>
inline constexpr int pool_unroll =
    static_cast<int>(pool_block_floats / (2 * static_cast<index_t>(float_batch<Arch>::size))) > 0
        ? static_cast<int>(pool_block_floats / (2 * static_cast<index_t>(float_batch<Arch>::size)))
        : 1;

/// True when input and output keep a pair of batches in the same lane order (load_float_pair
/// splits bf16 into even and odd elements, other types into halves). Otherwise a block moves as
/// two batches in element order, through xsimd's slower widening and narrowing of bf16.
template <class Ein, class Eout>
inline constexpr bool pairs_agree = std::is_same_v<Ein, bf16> == std::is_same_v<Eout, bf16>;

/// 2·size channels at `p` as a pair of batches, in pair order when `Paired`, else element order.
template <class Arch, bool Paired, class E>
float_pair<Arch> load_block(const E* p) noexcept {
  if constexpr (Paired) return load_float_pair<Arch>(p);
  else return {load_floats<Arch>(p), load_floats<Arch>(p + float_batch<Arch>::size)};
}

template <class Arch, bool Paired, class E>
void store_block(E* p, const float_pair<Arch>& x, bool may_hold_nan = true) noexcept {
  if constexpr (Paired) store_float_pair<Arch>(p, x, may_hold_nan);
  else store_floats<Arch>(p, x.first, x.second, may_hold_nan);
}

/// acc[u] = step(acc[u], block u of the row) for every row `for_rows` visits, in window order.
template <class Arch, int Unroll, bool Paired, class Ein, class ForRows, class Step>
void fold_rows(const ForRows& for_rows, index_t c, float_pair<Arch> (&acc)[Unroll], const Step& step) noexcept {
  constexpr index_t size = 2 * static_cast<index_t>(float_batch<Arch>::size);
  for_rows([&](const Ein* row) {
    for (int u = 0; u < Unroll; ++u) acc[u] = step(acc[u], load_block<Arch, Paired>(row + c + u * size));
  });
}

/// Reduces `Unroll` pairs of batches of channels, from column c on, over the rows of one box:
/// `for_rows(f)` calls f(row) with a pointer to every row in window order.
template <class Arch, int Unroll, class Ein, class Eout, class ForRows>
void reduce_pairs(const pool_box& box, const ForRows& for_rows, index_t c, Eout* dst) noexcept {
  using batch = float_batch<Arch>;
  using pair = float_pair<Arch>;
  constexpr bool paired = pairs_agree<Ein, Eout>;
  constexpr index_t step = 2 * static_cast<index_t>(batch::size);
  const bool average = box.kind == pool_kind::average;
  const batch start(average ? 0.0f : -std::numeric_limits<float>::infinity());
  float_pair<Arch> acc[Unroll];
  for (int u = 0; u < Unroll; ++u) acc[u] = {start, start};
  if (average) {
    fold_rows<Arch, Unroll, paired, Ein>(for_rows, c, acc, [](const pair& a, const pair& v) {
      return pair{a.first + v.first, a.second + v.second};
    });
    for (const float d : box.divisors) {
      if (d == 1.0f) continue;
      if (is_power_of_two(d)) {
        const batch reciprocal(1.0f / d);
        for (int u = 0; u < Unroll; ++u) acc[u] = {acc[u].first * reciprocal, acc[u].second * reciprocal};
      } else {
        const batch divisor(d);
        for (int u = 0; u < Unroll; ++u) acc[u] = {divide<Arch>(acc[u].first, divisor), divide<Arch>(acc[u].second, divisor)};
      }
    }
    for (int u = 0; u < Unroll; ++u) store_block<Arch, paired>(dst + c + u * step, acc[u]);
  } else {
    // The cheap step, lane_max(v, m) = v > m ? v : m (one max instruction on x86, where
    // max_step is two compares and a blend), drops a NaN v where max_step keeps it; a NaN
    // anywhere in the block (rare) sends the block through max_step again, so the result is
    // max_step's bit for bit, and without one the maximum holds no NaN for the bf16 store to
    // test for.
    xsimd::batch_bool<float, simd_arch_t<Arch>> nan_seen(false);
    fold_rows<Arch, Unroll, paired, Ein>(for_rows, c, acc, [&](const pair& m, const pair& v) {
      nan_seen = nan_seen || unordered<Arch>(v.first, v.second);
      return pair{lane_max<Arch>(v.first, m.first), lane_max<Arch>(v.second, m.second)};
    });
    const bool nan = xsimd::any(nan_seen);
    if (nan) {
      for (int u = 0; u < Unroll; ++u) acc[u] = {start, start};
      fold_rows<Arch, Unroll, paired, Ein>(for_rows, c, acc, [](const pair& m, const pair& v) {
        return pair{max_step<Arch>(m.first, v.first), max_step<Arch>(m.second, v.second)};
      });
    }
    for (int u = 0; u < Unroll; ++u) store_block<Arch, paired>(dst + c + u * step, acc[u], nan);
  }
}

/// All channels of one output row in blocks of pairs, then a scalar tail.
template <class Arch, class Ein, class Eout, class ForRows>
void reduce_channels(const pool_box& box, const token_grid& grid, const ForRows& for_rows,
                     const view<const Ein, 2>& tokens,  // (tokens, dim)
                     Eout* dst) noexcept {
  constexpr index_t step = 2 * static_cast<index_t>(float_batch<Arch>::size);
  constexpr int unroll = pool_unroll<Arch>;
  const index_t dim = tokens.extent(1);
  index_t c = 0;
  for (; c + unroll * step <= dim; c += unroll * step) reduce_pairs<Arch, unroll, Ein>(box, for_rows, c, dst);
  for (; c + step <= dim; c += step) reduce_pairs<Arch, 1, Ein>(box, for_rows, c, dst);
  for (; c < dim; ++c) dst[c] = from_float<Eout>(reduce_channel(box, grid, tokens, c));
}

/// Windows of up to this many tokens (8 × 8; SlowFast's 24 → 4 bins are 6 × 6) have their row
/// pointers listed once per output row rather than recomputed for every block of channels.
/// Listing took 2 × 2 average pooling of 24 × 24 × 1024 fp32 rows (SSE2 build) from 120 to
/// 102 µs, and max pooling of the same rows in bf16 (AVX-512 build) from 90 to 63 µs.
inline constexpr index_t listed_rows = 64;

/// Output row j of a pooling policy: all channels of its box.
template <class Arch, class Ein, class Eout>
void reduce_row(const pool_box& box, const token_grid& grid,
                const view<const Ein, 2>& tokens,  // (tokens, dim)
                const view<Eout, 2>& out,          // (kept, dim)
                index_t j) noexcept {
  const index_t dim = tokens.extent(1);
  if (!tokens.has_unit_inner_stride() || !out.has_unit_inner_stride()) {
    for (index_t c = 0; c < dim; ++c) out(j, c) = from_float<Eout>(reduce_channel(box, grid, tokens, c));
    return;
  }
  const Ein* base = tokens.data_handle();
  const index_t row_stride = tokens.stride(0);
  Eout* dst = &out(j, 0);
  const index_t count = (box.t.end - box.t.begin) * (box.h.end - box.h.begin) * (box.w.end - box.w.begin);
  if (count <= listed_rows) {
    const Ein* rows[listed_rows];
    index_t n = 0;
    for_each_token(box, grid, [&](index_t i) { rows[n++] = base + i * row_stride; });
    const auto listed = [&](const auto& f) {
      for (index_t r = 0; r < n; ++r) f(rows[r]);
    };
    reduce_channels<Arch, Ein>(box, grid, listed, tokens, dst);
  } else {
    const auto walked = [&](const auto& f) {
      for_each_token(box, grid, [&](index_t i) { f(base + i * row_stride); });
    };
    reduce_channels<Arch, Ein>(box, grid, walked, tokens, dst);
  }
}

/// The four taps of bilinear output j and their weights.
struct bilinear_box {
  index_t x00, x01, x10, x11;  // flat input indices: (h0, w0), (h0, w1), (h1, w0), (h1, w1)
  float h0, h1, w0, w1;        // weights 1-λh, λh, 1-λw, λw
};

inline bilinear_box box_at(const bilinear& p, const token_grid& in, const token_grid& out,
                           index_t j) noexcept {
  const token_position o = output_cell(out, j);
  const bilinear_tap h = bilinear_tap_at(o.h, in.height, out.height, p.align_corners);
  const bilinear_tap w = bilinear_tap_at(o.w, in.width, out.width, p.align_corners);
  return {flat_index(in, o.t, h.i0, w.i0), flat_index(in, o.t, h.i0, w.i1),
          flat_index(in, o.t, h.i1, w.i0), flat_index(in, o.t, h.i1, w.i1),
          1.0f - h.lambda, h.lambda, 1.0f - w.lambda, w.lambda};
}

/// torch's separable order: interpolate along W on both rows, then along H, each step
/// `a·wa + b·wb` written fma(a, wa, b·wb). On FMA3 builds that is one fused multiply-add, what
/// torch's AVX2 kernels compute (g++ contracts their `t0 * w0 + t1 * w1` so); on SSE builds a
/// multiply and an add; xsimd 8.1 has no AVX-512 fma, so there the compiler decides. Every
/// channel goes through this one vector function (the tail and strided rows through lane
/// buffers), so channels, layouts and shares always agree bit for bit within a build.
template <class Arch>
float_batch<Arch> bilinear_mix(const float_batch<Arch>& x00, const float_batch<Arch>& x01,
                               const float_batch<Arch>& x10, const float_batch<Arch>& x11,
                               const bilinear_box& b) noexcept {
  using batch = float_batch<Arch>;
  const batch w0(b.w0), w1(b.w1);
  const batch top = xsimd::fma(x00, w0, x01 * w1);
  const batch bottom = xsimd::fma(x10, w0, x11 * w1);
  return xsimd::fma(top, batch(b.h0), bottom * batch(b.h1));
}

/// Channels [c, c + n) of bilinear output j, n <= 2·size, any strides: gathered into lane
/// buffers, mixed by the same vector code as full blocks, written back element by element.
template <class Arch, class Ein, class Eout>
void bilinear_lanes(const bilinear_box& b, const view<const Ein, 2>& tokens,  // (tokens, dim)
                    const view<Eout, 2>& out,                                 // (kept, dim)
                    index_t j, index_t c, index_t n) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  alignas(64) float x[4][2 * lanes] = {};
  const index_t taps[4] = {b.x00, b.x01, b.x10, b.x11};
  for (int k = 0; k < 4; ++k)
    for (index_t e = 0; e < n; ++e) x[k][e] = to_float(tokens(taps[k], c + e));
  alignas(64) float mixed[2 * lanes];
  for (index_t half = 0; half < 2 * lanes; half += lanes) {
    const auto at = [&](int k) { return batch::load_aligned(&x[k][half]); };
    bilinear_mix<Arch>(at(0), at(1), at(2), at(3), b).store_aligned(&mixed[half]);
  }
  for (index_t e = 0; e < n; ++e) out(j, c + e) = from_float<Eout>(mixed[e]);
}

template <class Arch, class Ein, class Eout>
void bilinear_row(const bilinear_box& b, const view<const Ein, 2>& tokens,  // (tokens, dim)
                  const view<Eout, 2>& out,                                 // (kept, dim)
                  index_t j) noexcept {
  constexpr index_t step = 2 * static_cast<index_t>(float_batch<Arch>::size);
  const index_t dim = tokens.extent(1);
  index_t c = 0;
  if (tokens.has_unit_inner_stride() && out.has_unit_inner_stride()) {
    constexpr bool paired = pairs_agree<Ein, Eout>;
    const Ein *r00 = &tokens(b.x00, 0), *r01 = &tokens(b.x01, 0), *r10 = &tokens(b.x10, 0),
              *r11 = &tokens(b.x11, 0);
    Eout* dst = &out(j, 0);
    for (; c + step <= dim; c += step) {
      const float_pair<Arch> x00 = load_block<Arch, paired>(r00 + c), x01 = load_block<Arch, paired>(r01 + c),
                             x10 = load_block<Arch, paired>(r10 + c), x11 = load_block<Arch, paired>(r11 + c);
      store_block<Arch, paired>(dst + c, {bilinear_mix<Arch>(x00.first, x01.first, x10.first, x11.first, b),
                                          bilinear_mix<Arch>(x00.second, x01.second, x10.second, x11.second, b)});
    }
  }
  for (; c < dim; c += step) bilinear_lanes<Arch>(b, tokens, out, j, c, dim - c < step ? dim - c : step);
}

/// Writes the requested `source`, `positions` and `sizes` of output rows [j0, j1).
template <class Policy, class Eout>
void emit_meta(const Policy& p, const token_grid& in, const token_grid& out_grid,
               const grid_outputs<Eout>& out, index_t j0, index_t j1) noexcept {
  const bool src = requested(out.source), pos = requested(out.positions),
             siz = requested(out.sizes);
  if (!src && !pos && !siz) return;
  for (index_t j = j0; j < j1; ++j) {
    const grid_meta m = meta_at(p, in, out_grid, j);
    if (src) out.source(j) = m.source;
    if (pos) {
      const token_position at = in.position(m.source);
      out.positions(j, 0) = at.t;
      out.positions(j, 1) = at.h;
      out.positions(j, 2) = at.w;
    }
    if (siz) out.sizes(j) = m.size;
  }
}

/// The CPU implementation all three policies share: checks, then this share's rows.
template <class Arch, class Policy, class Ein, class Eout>
status run_grid_reduce(const cpu<Arch>& exec, const Policy& p, const grid_inputs<Ein>& in,
                       const grid_outputs<Eout>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const grid_result r = check_grid_reduce(p, in, out);
  if (r.code != status::ok) return r.code;
  const index_t kept = r.grid.tokens();
  const index_t j0 = share_begin(kept, exec.ith, exec.nth);
  const index_t j1 = share_begin(kept, exec.ith + 1, exec.nth);
  emit_meta(p, in.grid, r.grid, out, j0, j1);
  if (!requested(out.tokens)) return status::ok;
  for (index_t j = j0; j < j1; ++j) {
    if constexpr (std::is_same_v<Policy, bilinear>)
      bilinear_row<Arch>(box_at(p, in.grid, r.grid, j), in.tokens, out.tokens, j);
    else
      reduce_row<Arch>(box_at(p, in.grid, r.grid, j), in.grid, in.tokens, out.tokens, j);
  }
  return status::ok;
}

/// What the three backends share: no workspace, and the one driver above.
template <class Arch, class Policy>
struct cpu_grid_reduce {
  static std::size_t workspace_bytes(const cpu<Arch>&, const Policy&, const problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const Policy& p, const grid_inputs<Ein>& in,
                      const grid_outputs<Eout>& out, workspace) noexcept {
    return run_grid_reduce(exec, p, in, out);
  }
};

}  // namespace detail

/// Pooling on CPU: no workspace; any strides; fp32/fp16/bf16 in and out, computed in fp32.
template <class Arch>
struct backend<pool, cpu<Arch>> : detail::cpu_grid_reduce<Arch, pool> {};

/// Adaptive pooling on CPU: no workspace; any strides; fp32/fp16/bf16, computed in fp32.
template <class Arch>
struct backend<adaptive_pool, cpu<Arch>> : detail::cpu_grid_reduce<Arch, adaptive_pool> {};

/// Bilinear resampling on CPU: no workspace; any strides; fp32/fp16/bf16, computed in fp32.
template <class Arch>
struct backend<bilinear, cpu<Arch>> : detail::cpu_grid_reduce<Arch, bilinear> {};

}  // namespace tokred
