// tokred/cpu/holitom.hpp — the CPU backend of holitom.
//
//   1. sim       every token's cosine with its slot in the previous frame (`temporal_scores`,
//                <tokred/cpu/feature_scores.hpp>), O(N·dim);
//   2. windows   the segmentation DP, each window's still positions grown from its last frame
//                back (one AND per position and step, stopping once nothing is still), then
//                read back from the last frame, O(T·min(T, max_window)·H·W) at worst;
//   3. per window, in frame order:
//      static    the still positions' means over the window (`weighted_mean_row`), clustered by
//                dpc_knn's steps (<tokred/cpu/clustering.hpp>) on an S × S distance matrix,
//                O(S²·dim);
//      dynamic   per frame, the dominant tokens by radix select on the attention
//                (`select_largest`), then with D > 0 the others copied to fp32 and clustered the
//                same way, O(n·dim) (O(n²·dim) with D > 0);
//      write     the frame's items in the layout's order, each row copied or formed from its
//                cluster (`cluster_row`), a newline row after each non-empty grid row in the
//                frame_rows layout, then assign.
//
// Shares. The output rows of a window depend on the count of every window before it, and the
// windows on the similarities of the whole video, so share 0 does every step and the other
// shares check the inputs (values included) and return having written nothing. Give holitom one
// thread, or run several videos on different threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/clustering.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/merge.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/holitom.hpp"

namespace tokred {
namespace detail {

/// What one output row of a frame is.
enum class holitom_item_kind : std::int32_t { still_cluster, dominant, contextual };

/// One output row of a frame before it is written: its position in the frame, its kind and the
/// cluster (still_cluster, contextual) or dynamic-list index (dominant) it comes from.
struct holitom_item {
  index_t p;
  holitom_item_kind kind;
  index_t id;
};

/// The scratch of holitom (one carve: only share 0 works).
struct holitom_scratch {
  float* sim = nullptr;                // (N,) cos of token (t, p) with (t − 1, p); frame 0 unread
  unsigned char* still = nullptr;      // (H·W,) still over the window grown so far
  std::int64_t* dp = nullptr;          // (T,) tokens saved by the best segmentation of frames ≤ i
  index_t* first = nullptr;            // (T,) the first frame of frame i's window (dp's choice,
                                       //   then the read-back segmentation)
  index_t* statics = nullptr;          // (H·W,) the window's still positions, ascending
  index_t* dynamics = nullptr;         // (H·W,) its other positions, ascending
  index_t* frames = nullptr;           // (T,) token indices of one position over the window
  float* means = nullptr;              // (H·W, dim) the still positions' means
  dpc_scratch still_clusters;          // clusters of the means
  index_t* still_slot = nullptr;       // (H·W,) output row of still cluster q
  std::uint32_t* keys = nullptr;       // (H·W,) select_largest's scratch
  std::int64_t* dominant = nullptr;    // (H·W,) dynamic-list indices of the dominant tokens
  index_t* dynamic_slot = nullptr;     // (H·W,) output row of each dynamic-list index, −1: none yet
  index_t* others = nullptr;           // (H·W,) dynamic-list index of each contextual row
  float* gathered = nullptr;           // (H·W, dim) contextual: the frame's non-dominant rows
  dpc_scratch context_clusters;        // clusters of the gathered rows
  index_t* context_slot = nullptr;     // (H·W,) output row of contextual cluster c
  holitom_item* items = nullptr;       // (H·W,) one frame's output rows

  static holitom_scratch carve(arena& ar, const token_grid& grid, index_t dim, bool contextual) {
    const index_t hw = grid.frame_tokens(), t = grid.frames;
    holitom_scratch s;
    s.sim = ar.take<float>(grid.tokens());
    s.still = ar.take<unsigned char>(hw);
    s.dp = ar.take<std::int64_t>(t);
    s.first = ar.take<index_t>(t);
    s.statics = ar.take<index_t>(hw);
    s.dynamics = ar.take<index_t>(hw);
    s.frames = ar.take<index_t>(t);
    s.means = ar.take<float>(hw, dim);
    s.still_clusters = dpc_scratch::carve(ar, hw, hw, dim);
    s.still_slot = ar.take<index_t>(hw);
    s.keys = ar.take<std::uint32_t>(hw);
    s.dominant = ar.take<std::int64_t>(hw);
    s.dynamic_slot = ar.take<index_t>(hw);
    if (contextual) {
      s.others = ar.take<index_t>(hw);
      s.gathered = ar.take<float>(hw, dim);
      s.context_clusters = dpc_scratch::carve(ar, hw, hw, dim);
      s.context_slot = ar.take<index_t>(hw);
    }
    s.items = ar.take<holitom_item>(hw);
    return s;
  }
};

/// dpc_knn's decisions (steps 1–4) on the n rows of `rows`: `clusters` centers, each row's
/// cluster and each cluster's group in `s`.
template <class Arch>
void cluster_rows(const view<const float, 2>& rows, index_t clusters, index_t k, const dpc_scratch& s) noexcept {
  const index_t n = rows.extent(0);
  const float largest = fill_distances<Arch>(rows, s.dist);
  densities(s.dist, n, std::min(k, clusters), s.row, s.density);
  scores(s.dist, n, s.density, largest, s.score);
  cluster_layout(s.dist, n, clusters, s);
}

/// Step 2: the segmentation of the T frames from the similarities (frame 0's never read) into
/// `s.first`, every frame's window start; returns dp[T − 1], the tokens the windows save.
inline std::int64_t holitom_windows(const holitom& p, const token_grid& grid, const holitom_scratch& s) noexcept {
  const index_t t_count = grid.frames, hw = grid.frame_tokens();
  for (index_t i = 0; i < t_count; ++i) {
    std::int64_t best = i > 0 ? s.dp[i - 1] : 0;
    index_t first = i;
    std::fill(s.still, s.still + hw, static_cast<unsigned char>(1));
    index_t still = hw;
    const index_t longest = std::min(i + 1, p.max_window);
    for (index_t w = 2; w <= longest && still > 0; ++w) {
      const index_t start = i - w + 1;  // the window [start, i] adds the pair (start, start + 1)
      const float* sim = s.sim + (start + 1) * hw;
      for (index_t q = 0; q < hw; ++q) {
        const bool stays = s.still[q] && sim[q] > p.tau;
        still -= s.still[q] && !stays;
        s.still[q] = stays;
      }
      const std::int64_t value = (start > 0 ? s.dp[start - 1] : 0) + static_cast<std::int64_t>(still) * (w - 1);
      if (value > best) best = value, first = start;
    }
    s.dp[i] = best;
    s.first[i] = first;
  }
  // Read back from the last frame: frame i's window starts at first[i]; every frame of it gets
  // that start.
  for (index_t i = t_count - 1; i >= 0;) {
    const index_t start = s.first[i];
    for (index_t t = start; t < i; ++t) s.first[t] = start;
    i = start - 1;
  }
  return s.dp[t_count - 1];
}

/// r' = min(r / ((T·N' − saved) / (T·N')), 1), in the original's order of operations.
inline double holitom_rescaled(const holitom& p, const token_grid& grid, std::int64_t saved) noexcept {
  const double total = static_cast<double>(grid.tokens());
  return std::min(p.retain_ratio / ((total - static_cast<double>(saved)) / total), 1.0);
}

/// Writes holitom's output rows one at a time, keeping the running count.
template <class Arch, class Ein, class Eout>
struct holitom_writer {
  const holitom_inputs<Ein>& in;
  const holitom_outputs<Eout>& out;
  index_t row = 0;

  /// The provenance of the next row; returns its index.
  index_t place(std::int64_t source, std::int32_t t, std::int32_t h, std::int32_t w, float size) noexcept {
    if (requested(out.source)) out.source(row) = source;
    if (requested(out.positions)) {
      out.positions(row, 0) = t;
      out.positions(row, 1) = h;
      out.positions(row, 2) = w;
    }
    if (requested(out.sizes)) out.sizes(row) = size;
    return row++;
  }

  /// Input token i as it is.
  index_t copy(index_t i) noexcept {
    if (requested(out.tokens))
      copy_row<Arch>(&in.tokens(i, 0), in.tokens.stride(1), &out.tokens(row, 0), out.tokens.stride(1), in.tokens.extent(1));
    const token_position at = in.grid.position(i);
    return place(i, at.t, at.h, at.w, 1.0f);
  }

  /// Cluster q of `s` over `rows`, represented by input token `source`; each row stands for
  /// `weight` originals.
  index_t cluster(const dpc_knn& p, const view<const float, 2>& rows, const dpc_scratch& s, index_t q,
                  index_t source, float weight) noexcept {
    const index_t* group = s.members + s.offsets[q];
    const index_t count = s.offsets[q + 1] - s.offsets[q];
    if (requested(out.tokens)) {
      const auto unit = [](index_t) { return 1.0f; };
      cluster_row<Arch>(p, rows, group, count, unit, static_cast<float>(count), s.mean, &out.tokens(row, 0),
                        out.tokens.stride(1));
    }
    const token_position at = in.grid.position(source);
    return place(source, at.t, at.h, at.w, weight * static_cast<float>(count));
  }

  /// The newline row closing grid row h of frame t.
  void newline(index_t t, index_t h) noexcept {
    if (requested(out.tokens))
      copy_row<Arch>(&in.newline(0), in.newline.stride(0), &out.tokens(row, 0), out.tokens.stride(1), in.tokens.extent(1));
    place(-1, static_cast<std::int32_t>(t), static_cast<std::int32_t>(h), static_cast<std::int32_t>(in.grid.width), 0.0f);
  }
};

/// Step 3 for the window [start, end]: every output row of it and the assign of its tokens.
template <class Arch, class Ein, class Eout>
void holitom_window(const holitom& p, double ratio, index_t start, index_t end, const holitom_scratch& s,
                    holitom_writer<Arch, Ein, Eout>& writer) noexcept {
  const holitom_inputs<Ein>& in = writer.in;
  const holitom_outputs<Eout>& out = writer.out;
  const index_t hw = in.grid.frame_tokens(), dim = in.tokens.extent(1), w = end - start + 1;
  const dpc_knn cluster_policy{0, p.k, p.beta, p.merge};  // the row formula of both clusterings

  // Still and dynamic positions: still over every pair of the window (none in a one-frame one).
  index_t still_count = 0, n = 0;
  for (index_t q = 0; q < hw; ++q) {
    bool still = w >= 2;
    for (index_t t = start + 1; t <= end && still; ++t) still = s.sim[t * hw + q] > p.tau;
    if (still) s.statics[still_count++] = q;
    else s.dynamics[n++] = q;
  }

  // The still positions' means over the window, clustered.
  const index_t still_clusters = static_cast<index_t>(round_by(static_cast<double>(still_count) * ratio, rounding::half_even));
  const view<const float, 2> means = make_view<const float>(s.means, still_count, dim);
  if (still_clusters > 0) {
    const auto unit = [](index_t) { return 1.0f; };
    for (index_t i = 0; i < still_count; ++i) {
      for (index_t f = 0; f < w; ++f) s.frames[f] = (start + f) * hw + s.statics[i];
      weighted_mean_row<Arch>(in.tokens, s.frames, w, unit, static_cast<float>(w), s.means + i * dim, 1);
    }
    cluster_rows<Arch>(means, still_clusters, p.k, s.still_clusters);
  }
  const auto still_center = [&](index_t q) { return s.statics[s.still_clusters.members[s.still_clusters.offsets[q]]]; };
  const auto write_still = [&](index_t q) {
    s.still_slot[q] = writer.cluster(cluster_policy, means, s.still_clusters, q, start * hw + still_center(q), static_cast<float>(w));
  };
  if (p.layout == holitom_layout::windows)
    for (index_t q = 0; q < still_clusters; ++q) write_still(q);

  // Each frame's dynamic tokens.
  const index_t budget = static_cast<index_t>(std::ceil(static_cast<double>(n) * ratio));
  const index_t dominant = static_cast<index_t>(round_by(static_cast<double>(budget) * (1.0 - p.contextual), rounding::half_even));
  const index_t contextual = budget - dominant, others = n - dominant;
  const view<const float, 2> gathered = make_view<const float>(s.gathered, contextual > 0 ? others : 0, dim);
  for (index_t t = start; t <= end; ++t) {
    const index_t base = t * hw;
    if (dominant > 0) {
      const auto key_of = [&](index_t j) { return score_key(float_bits(in.attention(base + s.dynamics[j]))); };
      select_largest(key_of, n, dominant, 0, s.keys, s.dominant);
    }
    std::fill(s.dynamic_slot, s.dynamic_slot + n, index_t{-1});
    index_t items = 0;
    if (p.layout == holitom_layout::frame_rows && t == start)
      for (index_t q = 0; q < still_clusters; ++q)
        s.items[items++] = {still_center(q), holitom_item_kind::still_cluster, q};
    for (index_t d = 0; d < dominant; ++d)
      s.items[items++] = {s.dynamics[s.dominant[d]], holitom_item_kind::dominant, static_cast<index_t>(s.dominant[d])};
    if (contextual > 0) {
      constexpr index_t taken = -2;  // marks a dominant token until its row is written
      for (index_t d = 0; d < dominant; ++d) s.dynamic_slot[s.dominant[d]] = taken;
      for (index_t j = 0, m = 0; j < n; ++j) {
        if (s.dynamic_slot[j] == taken) continue;
        s.others[m] = j;
        copy_row<Arch>(&in.tokens(base + s.dynamics[j], 0), in.tokens.stride(1), s.gathered + m * dim, 1, dim);
        ++m;
      }
      cluster_rows<Arch>(gathered, contextual, p.k, s.context_clusters);
      for (index_t c = 0; c < contextual; ++c)
        s.items[items++] = {s.dynamics[s.others[s.context_clusters.members[s.context_clusters.offsets[c]]]],
                            holitom_item_kind::contextual, c};
    }
    if (p.layout == holitom_layout::frame_rows)
      std::sort(s.items, s.items + items, [](const holitom_item& a, const holitom_item& b) { return a.p < b.p; });

    const bool newlines = p.layout == holitom_layout::frame_rows && requested(in.newline);
    for (index_t m = 0; m < items; ++m) {
      const holitom_item& item = s.items[m];
      switch (item.kind) {
        case holitom_item_kind::still_cluster: write_still(item.id); break;
        case holitom_item_kind::dominant: s.dynamic_slot[item.id] = writer.copy(base + item.p); break;
        case holitom_item_kind::contextual:
          s.context_slot[item.id] = writer.cluster(cluster_policy, gathered, s.context_clusters, item.id, base + item.p, 1.0f);
          break;
      }
      const index_t h = item.p / in.grid.width;
      if (newlines && (m + 1 == items || s.items[m + 1].p / in.grid.width != h)) writer.newline(t, h);
    }

    // A dominant token's slot is its own row, a contextual one's its cluster's, a dropped one −1.
    if (!requested(out.assign)) continue;
    for (index_t j = 0; j < n; ++j) out.assign(base + s.dynamics[j]) = s.dynamic_slot[j];
    if (contextual > 0)
      for (index_t m = 0; m < others; ++m)
        out.assign(base + s.dynamics[s.others[m]]) = s.context_slot[s.context_clusters.slot[m]];
  }

  if (requested(out.assign))
    for (index_t t = start; t <= end; ++t)
      for (index_t i = 0; i < still_count; ++i)
        out.assign(t * hw + s.statics[i]) = still_clusters > 0 ? s.still_slot[s.still_clusters.slot[i]] : -1;
}

}  // namespace detail

/// holitom on CPU. See the top of this file for the steps; share 0 does all the work, the other
/// shares check and return. Checks, in order: the exec (`invalid_exec`); `detail::check_holitom`
/// (parameters and grid; token rows and out.tokens; attention; newline; outputs; overlaps); the
/// workspace; `detail::check_finite_rows` (non-finite token rows, `invalid_parameter`), made by
/// every share before anything is written.
/// Workspace: 4·(H·W)² bytes of distances (twice with D > 0) plus about 4·H·W·dim (twice with
/// D > 0), 4·N and 40·H·W, the same for any nth.
template <class Arch>
struct backend<holitom, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const holitom& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok || prob.dim < 0) return 0;
    detail::arena counter;
    detail::holitom_scratch::carve(counter, prob.grid, prob.dim, p.contextual > 0.0);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const holitom& p, const holitom_inputs<Ein>& in,
                      const holitom_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_holitom(p, in, out); s != status::ok) return s;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    if (status s = detail::check_finite_rows<Arch>(in.tokens); s != status::ok) return s;
    if (exec.ith != 0) return status::ok;

    detail::arena carver(ws);
    const detail::holitom_scratch s = detail::holitom_scratch::carve(carver, in.grid, in.tokens.extent(1), p.contextual > 0.0);
    if (!carver.fits()) return status::workspace_too_small;
    const index_t n = in.grid.tokens();
    constexpr temporal_similarity cosine{temporal_similarity::measure::cosine, 0.0f};
    detail::temporal_scores<Arch>(cosine, in.grid, in.tokens, make_view(s.sim, n), 0, n);
    const std::int64_t saved = detail::holitom_windows(p, in.grid, s);
    const double ratio = detail::holitom_rescaled(p, in.grid, saved);

    detail::holitom_writer<Arch, Ein, Eout> writer{in, out};
    for (index_t start = 0; start < in.grid.frames;) {
      index_t end = start;
      while (end + 1 < in.grid.frames && s.first[end + 1] == start) ++end;
      detail::holitom_window(p, ratio, start, end, s, writer);
      start = end + 1;
    }
    out.count(0) = writer.row;
    if (detail::requested(out.window_start))
      for (index_t t = 0; t < in.grid.frames; ++t) out.window_start(t) = s.first[t];
    if (detail::requested(out.retain_ratio)) out.retain_ratio(0) = ratio;
    return status::ok;
  }
};

}  // namespace tokred
