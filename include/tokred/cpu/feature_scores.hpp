// tokred/cpu/feature_scores.hpp — CPU backends of token_norm, query_relevance and
// temporal_similarity.
//
// Every dot product and squared norm is the canonical pair kernel of <tokred/cpu/similarity.hpp>,
// so a pair's value has the same bits whichever kernel computed it (alone, or in a block sharing
// one row): no score depends on the thread count, on the blocking below, or on which share
// computed a norm first. Shares own disjoint ranges of the output and never wait on each other:
//   token_norm, query_relevance (token level), temporal_similarity   tokens [N·ith/nth, N·(ith+1)/nth)
//   query_relevance (frame level)                                    frames [T·ith/nth, T·(ith+1)/nth)
//
// temporal_similarity reads each row once from memory. Tokens are visited in blocks of
// consecutive slots of one frame, and a block is followed through every frame of the share
// before the next block starts, so the previous frame's rows of the block are still in cache
// when they are compared, and each row's squared norm is kept from the step where it was the
// current row. A share whose range starts mid-video computes the norms of the frame before its
// first tokens itself.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/feature_scores.hpp"

namespace tokred {
namespace detail {

/// Dot products of the row at `a` (element stride `sa`) with query rows [q0, q0 + count), into
/// `out`: four query rows per pass when both sides are contiguous, so `a` is read once for four.
template <class Arch, class E>
void query_dots(const E* a, index_t sa, const view<const E, 2>& query,  // (queries, dim)
                index_t q0, index_t count, float* out) noexcept {
  const index_t dim = query.extent(1);
  index_t c = 0;
  if (sa == 1 && query.stride(1) == 1) {
    const auto block = [&](auto m_count) {
      constexpr int M = decltype(m_count)::value;
      const E* b[M];
      for (int m = 0; m < M; ++m) b[m] = &query(q0 + c + m, 0);
      float values[M];
      combine_contiguous<Arch, pair_op::dot, M>(a, b, dim, values);
      for (int m = 0; m < M; ++m) out[c + m] = values[m];
      c += M;
    };
    while (c + 4 <= count) block(std::integral_constant<int, 4>{});
    switch (count - c) {
      case 3: block(std::integral_constant<int, 3>{}); break;
      case 2: block(std::integral_constant<int, 2>{}); break;
      case 1: block(std::integral_constant<int, 1>{}); break;
      default: break;
    }
    return;
  }
  for (; c < count; ++c)
    out[c] = combine<Arch, pair_op::dot>(a, sa, &query(q0 + c, 0), query.stride(1), dim);
}

/// Query rows are handled this many at a time, their squared norms on the stack.
inline constexpr index_t query_chunk = 64;

/// `sum` plus the relevance of `a` to the query rows q in [q0, q0 + query_chunk) (up to the last
/// row), added in query order: cos(a, q), or the dot product itself for `measure::dot`. For the
/// cosine `a` has squared norm `a_sq` and `q_sq` holds those query rows' squared norms (neither
/// is read for the dot product).
template <class Arch, class E>
float relevance_sum(query_relevance::measure is, const E* a, index_t sa, float a_sq,
                    const view<const E, 2>& query,  // (queries, dim)
                    index_t q0, float sum, const float* q_sq) noexcept {
  const index_t count = std::min(query_chunk, query.extent(0) - q0);
  float dots[query_chunk];
  query_dots<Arch>(a, sa, query, q0, count, dots);
  if (is == query_relevance::measure::dot) {
    for (index_t m = 0; m < count; ++m) sum += dots[m];
  } else {
    for (index_t m = 0; m < count; ++m) sum += cosine_of(dots[m], a_sq, q_sq[m]);
  }
  return sum;
}

/// Squared norms of query rows [q0, q0 + query_chunk) (or up to the last row) into `q_sq`; nothing
/// for `measure::dot`, which needs none.
template <class Arch, class E>
void query_norms(query_relevance::measure is, const view<const E, 2>& query, index_t q0,  // query: (queries, dim)
                 float* q_sq) noexcept {
  if (is == query_relevance::measure::dot) return;
  const index_t count = std::min(query_chunk, query.extent(0) - q0);
  for (index_t m = 0; m < count; ++m) q_sq[m] = row_squared_norm<Arch>(query, q0 + m);
}

/// Rows of one slot block: about 16 KiB of them (at most 64), so that a block's rows of the
/// previous frame are still in L1 when the current frame's are compared with them. 32 frames ×
/// 729 × 1152 fp32, best of 15 alternating runs on this machine (48 KiB L1d): AVX-512 build
/// 8.8–10.6 ms with 9–18 KiB blocks, 14–15 ms with 31 KiB to whole frames (memcpy 9.9 ms); SSE2
/// build 16 ms with one-row blocks, 18–23 ms with larger ones.
inline constexpr index_t temporal_block_bytes = 16 * 1024;
inline constexpr index_t temporal_block_max = 64;

/// temporal_similarity's score of one row against the row in its slot of the previous frame,
/// whose squared norm is `prev_sq`; `cur_sq` gets the row's own squared norm (the next frame's
/// `prev_sq`). Unit-stride rows take one pass of the pair kernel for the dot product and the norm
/// (`dot_and_sq`). The batch scores and temporal_stream both score through this, so they agree
/// bit for bit.
template <class Arch, class E>
float temporal_pair(const temporal_similarity& p, const E* cur, index_t cur_stride, const E* prev,
                    index_t prev_stride, index_t dim, float prev_sq, float& cur_sq) noexcept {
  const dot_sq d = dot_and_sq<Arch>(cur, cur_stride, prev, prev_stride, dim);
  cur_sq = d.sq;
  const float c = cosine_of(d.dot, cur_sq, prev_sq);
  return p.is == temporal_similarity::measure::dissimilarity ? 1.0f - c : c;
}

/// temporal_similarity's scores of tokens [i0, i1).
template <class Arch, class E>
void temporal_scores(const temporal_similarity& p, const token_grid& grid,
                     const view<const E, 2>& rows,  // (tokens, dim)
                     const view<float, 1>& scores,  // (tokens,)
                     index_t i0, index_t i1) noexcept {
  const index_t hw = grid.frame_tokens(), dim = rows.extent(1);
  const index_t row_bytes = dim * static_cast<index_t>(sizeof(E));
  const index_t block = std::clamp<index_t>(temporal_block_bytes / row_bytes, 1, temporal_block_max);
  float sq[temporal_block_max];  // ‖x‖² of the block's rows in the frame visited last
  for (index_t j0 = 0; j0 < hw; j0 += block) {
    const index_t j1 = std::min(j0 + block, hw);
    for (index_t t = i0 / hw; t * hw < i1; ++t) {
      const index_t lo = std::max(t * hw + j0, i0), hi = std::min(t * hw + j1, i1);
      for (index_t i = lo; i < hi; ++i) {
        float& slot_sq = sq[i - t * hw - j0];
        if (t == 0) {
          scores(i) = p.first_frame;
          if (grid.frames > 1) slot_sq = row_squared_norm<Arch>(rows, i);
          continue;
        }
        // The previous frame's row was this share's current row one frame ago, unless it lies
        // before the share's range.
        const float prev_sq = i - hw >= i0 ? slot_sq : row_squared_norm<Arch>(rows, i - hw);
        scores(i) = temporal_pair<Arch>(p, &rows(i, 0), rows.stride(1), &rows(i - hw, 0), rows.stride(1), dim,
                                        prev_sq, slot_sq);
      }
    }
  }
}

/// query_relevance's token scores of tokens [i0, i1): one pass over the share's rows per chunk of
/// query rows; the running sum waits in `scores` between chunks (nothing can fail by then).
template <class Arch, class E>
void relevance_token_scores(query_relevance::measure is,
                            const view<const E, 2>& rows,   // (tokens, dim)
                            const view<const E, 2>& query,  // (queries, dim)
                            const view<float, 1>& scores,   // (tokens,)
                            index_t i0, index_t i1) noexcept {
  const index_t queries = query.extent(0);
  const bool norms = is == query_relevance::measure::cosine;
  float q_sq[query_chunk];
  for (index_t q0 = 0; q0 < queries; q0 += query_chunk) {
    query_norms<Arch>(is, query, q0, q_sq);
    const bool last = q0 + query_chunk >= queries;
    for (index_t i = i0; i < i1; ++i) {
      const float sum = relevance_sum<Arch>(is, &rows(i, 0), rows.stride(1), norms ? row_squared_norm<Arch>(rows, i) : 0.0f,
                                            query, q0, q0 == 0 ? 0.0f : scores(i), q_sq);
      scores(i) = last ? sum / static_cast<float>(queries) : sum;
    }
  }
}

/// The scratch one share of query_relevance at frame level needs: the column sums of a frame and
/// its mean token in the element type.
template <class E>
struct frame_mean_scratch {
  float* sums = nullptr;  // (dim,)
  E* mean = nullptr;      // (dim,)
};

/// query_relevance's frame scores of frames [t0, t1).
template <class Arch, class E>
void relevance_frame_scores(query_relevance::measure is, const token_grid& grid,
                            const view<const E, 2>& rows,  // (tokens, dim)
                            const view<const E, 2>& query,                          // (queries, dim)
                            const view<float, 1>& scores,                           // (frames,)
                            index_t t0, index_t t1, const frame_mean_scratch<E>& s) noexcept {
  const index_t hw = grid.frame_tokens(), dim = rows.extent(1), queries = query.extent(0);
  const view<const E, 2> mean(s.mean, {1, dim});  // (1, dim)
  float q_sq[query_chunk];
  for (index_t t = t0; t < t1; ++t) {
    frame_column_sums<Arch>(rows, t * hw, hw, s.sums);
    for (index_t c = 0; c < dim; ++c) s.mean[c] = from_float<E>(s.sums[c] / static_cast<float>(hw));
    const float mean_sq = is == query_relevance::measure::cosine ? row_squared_norm<Arch>(mean, 0) : 0.0f;
    float sum = 0.0f;
    for (index_t q0 = 0; q0 < queries; q0 += query_chunk) {
      // One chunk of query rows (the usual case): its norms, taken before the first frame, stay.
      if (t == t0 || queries > query_chunk) query_norms<Arch>(is, query, q0, q_sq);
      sum = relevance_sum<Arch>(is, s.mean, 1, mean_sq, query, q0, sum, q_sq);
    }
    scores(t) = sum / static_cast<float>(queries);
  }
}

/// The CPU backend the three feature scores share: checks, the per-share carve, the share's scores.
template <class Arch, class P>
struct cpu_feature_scores {
  static constexpr bool frame_level(const P& p) noexcept {
    if constexpr (std::is_same_v<P, query_relevance>) return p.at == query_relevance::level::frame;
    else return false;
  }

  /// The one carve-up: `nth` slices of frame_mean_scratch (frame-level relevance only).
  template <class E>
  static frame_mean_scratch<E> carve(arena& a, const P& p, index_t dim, int ith, int nth) {
    if (!frame_level(p)) return frame_mean_scratch<E>{};
    return carve_shares(a, ith, nth, [&](arena& s) {
      return frame_mean_scratch<E>{s.take<float>(dim), s.take<E>(dim)};
    });
  }

  /// Scratch bytes: frame-level relevance needs a row of column sums and the mean token per
  /// share, counted for fp32 rows (the widest element type; f16/bf16 rows carve less of it); the
  /// other scores need none. 0 when `can_implement` or the exec fails.
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const P& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    arena counter;
    carve<float>(counter, p, prob.dim, 0, exec.nth);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const P& p, const feature_score_inputs<E>& in,
                      const score_outputs<>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = check_feature_scores(p, in, out); s != status::ok) return s;
    const index_t dim = in.tokens.extent(1);
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, dim});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    arena carver(ws);
    const frame_mean_scratch<E> scratch = carve<E>(carver, p, dim, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t count = feature_score_extent(p, in.grid);
    const index_t first = share_begin(count, exec.ith, exec.nth);
    const index_t last = share_begin(count, exec.ith + 1, exec.nth);
    if constexpr (std::is_same_v<P, token_norm>) {
      for (index_t i = first; i < last; ++i) out.scores(i) = std::sqrt(row_squared_norm<Arch>(in.tokens, i));
    } else if constexpr (std::is_same_v<P, temporal_similarity>) {
      temporal_scores<Arch>(p, in.grid, in.tokens, out.scores, first, last);
    } else if (frame_level(p)) {
      relevance_frame_scores<Arch>(p.is, in.grid, in.tokens, in.query, out.scores, first, last, scratch);
    } else {
      relevance_token_scores<Arch>(p.is, in.tokens, in.query, out.scores, first, last);
    }
    return status::ok;
  }
};

}  // namespace detail

template <class Arch>
struct backend<token_norm, cpu<Arch>> : detail::cpu_feature_scores<Arch, token_norm> {};
template <class Arch>
struct backend<query_relevance, cpu<Arch>> : detail::cpu_feature_scores<Arch, query_relevance> {};
template <class Arch>
struct backend<temporal_similarity, cpu<Arch>> : detail::cpu_feature_scores<Arch, temporal_similarity> {};

}  // namespace tokred
