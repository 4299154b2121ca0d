// tokred/cpu/redundancy.hpp — CPU backend of gaussian_redundancy (STC-Pruner's score).
//
// Share 0 scores the whole chunk; the other shares check the views and return `ok` without
// reading or writing anything. Two steps need every token of the chunk before any token can be
// scored — the channel variances and the chunk mean that enters the memory — and shares never
// wait on each other, so splitting would make every share repeat them; they cost as much as the
// scoring itself (each is one pass over the chunk).
//
// The passes, in order: the population variances of all D channels (one pass in double, token
// order); the C lowest variances, ranked by (variance rounded to fp32 ascending, channel
// ascending; NaN last); the C chosen channels of every token gathered into fp32 rows, whose
// column sums (double, token order) give the chunk mean, rounded to fp32 and added to the
// memory; then per frame: each row divided by its norm (fp32, the canonical pair kernel), the
// column mean of the normalised rows (fp32, rows in order), and each row's two squared distances
// from one pass of the pair kernel. The order of every sum is fixed, so scores have the same bits
// whatever `nth` is.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/redundancy.hpp"

namespace tokred {
namespace detail {

/// The floor F.normalize puts under a norm.
inline constexpr float normalize_eps = 1e-12f;

/// STC's kernel sum g(d²) = Σ_α exp(−d² / 2α), α = 1/8, 1/4, 1/2, 1, 2, added in that order.
inline float gaussian_kernel_sum(float squared_distance) noexcept {
  constexpr float twice_alpha[] = {0.25f, 0.5f, 1.0f, 2.0f, 4.0f};
  float g = 0.0f;
  for (float a : twice_alpha) g += std::exp(-squared_distance / a);
  return g;
}

/// The scratch of one chunk.
struct redundancy_scratch {
  std::uint64_t* order = nullptr;  // (D,) ranking keys (fp32 variance bits, channel); first C used
  double* sum = nullptr;           // (D,) Σ (x − x_0) per channel, then the chunk sums of the C
  double* square = nullptr;        // (D,) Σ (x − x_0)² per channel
  float* memory = nullptr;         // (C,) the normalised memory m̂
  float* frame_mean = nullptr;     // (C,) f_t
  float* rows = nullptr;           // (N, C) the chunk's chosen channels, normalised in place

  static redundancy_scratch carve(arena& a, index_t dim, index_t width, index_t tokens) {
    redundancy_scratch s;
    s.order = a.take<std::uint64_t>(dim);
    s.sum = a.take<double>(dim);
    s.square = a.take<double>(dim);
    s.memory = a.take<float>(width);
    s.frame_mean = a.take<float>(width);
    s.rows = a.take<float>(tokens, width);
    return s;
  }
};

/// The channel of a ranking key (its low half).
constexpr index_t channel_of(std::uint64_t key) noexcept { return static_cast<index_t>(key & 0xFFFFFFFFu); }

/// Ranks the channels by population variance over all rows: the first `width` keys of `s.order`,
/// in order, name the lowest variances as fp32 numbers (what the original's fp32 `var` returns),
/// ties by channel ascending. One pass in double over rows shifted by row 0 (so the sums do not
/// cancel), var = (Σd² − (Σd)²/N) / N. A key is the variance's fp32 bits above the channel: for
/// the non-negative floats that a variance is, the bits order as the numbers do, and any NaN
/// (a NaN input in that channel) orders after +∞.
template <class E>
void rank_channels(const view<const E, 2>& tokens, index_t width, const redundancy_scratch& s) noexcept {
  const index_t n = tokens.extent(0), dim = tokens.extent(1);
  std::fill(s.sum, s.sum + dim, 0.0);
  std::fill(s.square, s.square + dim, 0.0);
  for (index_t i = 1; i < n; ++i)
    for (index_t c = 0; c < dim; ++c) {
      const double d = static_cast<double>(to_float(tokens(i, c))) - static_cast<double>(to_float(tokens(0, c)));
      s.sum[c] += d;
      s.square[c] += d * d;
    }
  const double count = static_cast<double>(n);
  for (index_t c = 0; c < dim; ++c) {
    const double spread = s.square[c] - s.sum[c] * s.sum[c] / count;
    const auto variance = static_cast<float>((spread < 0.0 ? 0.0 : spread) / count);  // NaN stays NaN
    s.order[c] = std::uint64_t{float_bits(variance)} << 32 | static_cast<std::uint64_t>(c);
  }
  std::nth_element(s.order, s.order + (width - 1), s.order + dim);
  std::sort(s.order, s.order + width);
}

/// Gathers the chosen channels of every row into `s.rows` (N, C), adds this chunk's mean of them
/// to the memory, and leaves m̂ in `s.memory`.
template <class Arch, class E>
void update_memory(const view<const E, 2>& tokens, index_t width, const redundancy_memory<>& m,
                   const redundancy_scratch& s) noexcept {
  const index_t n = tokens.extent(0);
  double* sums = s.sum;
  std::fill(sums, sums + width, 0.0);
  for (index_t i = 0; i < n; ++i) {
    float* row = s.rows + i * width;
    for (index_t p = 0; p < width; ++p) row[p] = to_float(tokens(i, channel_of(s.order[p])));
    for (index_t p = 0; p < width; ++p) sums[p] += static_cast<double>(row[p]);
  }
  const std::int64_t chunks = m.chunks(0) + 1;
  for (index_t p = 0; p < width; ++p) {
    const float chunk_mean = static_cast<float>(sums[p] / static_cast<double>(n));
    m.sums(p) = (chunks == 1 ? 0.0 : m.sums(p)) + static_cast<double>(chunk_mean);
    s.memory[p] = static_cast<float>(m.sums(p) / static_cast<double>(chunks));
    if (requested(m.channels)) m.channels(p) = static_cast<std::int64_t>(channel_of(s.order[p]));
  }
  m.chunks(0) = chunks;
  const view<const float, 2> memory(s.memory, {1, width});
  const float norm = std::max(std::sqrt(row_squared_norm<Arch>(memory, 0)), normalize_eps);
  for (index_t p = 0; p < width; ++p) s.memory[p] /= norm;
}

/// The scores of frame t from its gathered rows: normalise, frame mean, two distances per token.
template <class Arch>
void frame_redundancy(index_t t, index_t frame_tokens, index_t width, const redundancy_scratch& s,
                      const view<float, 1>& scores) noexcept {
  const view<float, 2> rows(s.rows + t * frame_tokens * width, {frame_tokens, width});  // (H·W, C)
  const view<const float, 2> frame(rows);
  for (index_t j = 0; j < frame_tokens; ++j) {
    const float norm = std::max(std::sqrt(row_squared_norm<Arch>(frame, j)), normalize_eps);
    for (index_t p = 0; p < width; ++p) rows(j, p) /= norm;
  }
  frame_column_sums<Arch>(frame, 0, frame_tokens, s.frame_mean);
  for (index_t p = 0; p < width; ++p) s.frame_mean[p] /= static_cast<float>(frame_tokens);
  const float* const centres[2] = {s.memory, s.frame_mean};
  for (index_t j = 0; j < frame_tokens; ++j) {
    float d[2];
    combine_contiguous<Arch, pair_op::squared_distance, 2>(&frame(j, 0), centres, width, d);
    scores(t * frame_tokens + j) = -(gaussian_kernel_sum(d[0]) + gaussian_kernel_sum(d[1]));
  }
}

}  // namespace detail

/// gaussian_redundancy on CPU. Share 0 does all the work (see the file comment); the workspace
/// holds the channel statistics and the chunk's gathered channels: 24·D + 4·(2 + N)·C bytes.
template <class Arch>
struct backend<gaussian_redundancy, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const gaussian_redundancy& p,
                                     const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    detail::redundancy_scratch::carve(counter, prob.dim, redundancy_channels(p, prob.dim),
                                      prob.grid.tokens());
    return counter.used();
  }

  /// Checks everything; then share 0 reads `memory.chunks(0)` (`invalid_parameter` if negative,
  /// nothing written), updates the memory and writes every score.
  template <class E>
  static status apply(const cpu<Arch>& exec, const gaussian_redundancy& p,
                      const redundancy_inputs<E>& in, const score_outputs<>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_redundancy(p, in, out); s != status::ok) return s;
    const index_t dim = in.tokens.extent(1), width = redundancy_channels(p, dim);
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, dim});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    // The scratch is written before the memory is: one that overlaps a view would corrupt it.
    if (detail::workspace_overlaps<host_space>(ws, need, in.tokens, in.memory.sums, in.memory.chunks,
                                               in.memory.channels, out.scores))
      return status::aliasing;
    if (exec.ith != 0) return status::ok;
    if (in.memory.chunks(0) < 0) return status::invalid_parameter;
    detail::arena carver(ws);
    const auto scratch = detail::redundancy_scratch::carve(carver, dim, width, in.grid.tokens());
    if (!carver.fits()) return status::workspace_too_small;

    detail::rank_channels(in.tokens, width, scratch);
    detail::update_memory<Arch>(in.tokens, width, in.memory, scratch);
    for (index_t t = 0; t < in.grid.frames; ++t)
      detail::frame_redundancy<Arch>(t, in.grid.frame_tokens(), width, scratch, out.scores);
    return status::ok;
  }
};

}  // namespace tokred
