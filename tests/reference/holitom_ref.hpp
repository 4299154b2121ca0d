// tests/reference/holitom_ref.hpp — the scalar oracle of holitom.
//
// Written from the original's steps, for clarity: the consecutive-frame cosines in double, the
// table of still counts for every (start, end) pair built the way `select_static_windows` builds
// it (a running product per start frame), its dynamic programme and read-back as written there,
// the still means in fp32 in frame order (the fp32 rounding the definition prescribes), the
// attention ranking by a stable sort, DPC-kNN from dpc_knn's oracle, and the output lists
// assembled per window as `holitom` and `add_newline_token` assemble them, rows in double.
//
// A cosine within 1e-4 of τ makes the result depend on rounding; the oracle reports such a case
// (`ambiguous`) so a test can refuse it rather than pass or fail by chance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/holitom.hpp>

#include "reference/dpc_knn_ref.hpp"

namespace tokred::ref {

/// What holitom writes, rows and sizes in double.
struct holitom_result {
  std::vector<double> tokens;           // (count, dim)
  std::vector<std::int64_t> source;     // (count,)
  std::vector<std::int32_t> positions;  // (count, 3)
  std::vector<double> sizes;            // (count,)
  std::vector<std::int64_t> assign;     // (N,)
  std::vector<std::int64_t> window_start;  // (T,)
  double ratio = 0;
  bool ambiguous = false;
  std::int64_t count() const { return static_cast<std::int64_t>(source.size()); }
};

/// holitom `p` on the tokens `x` (N, dim) of `grid` with attention `attn` (N,); `newline` (dim,)
/// or empty.
template <class E>
holitom_result holitom_run(const holitom& p, const token_grid& grid, const view<const E, 2>& x,
                           const std::vector<float>& attn, const std::vector<double>& newline) {
  using idx = std::int64_t;
  const idx frames = grid.frames, hw = grid.frame_tokens(), dim = x.extent(1), width = grid.width;
  const auto value = [&](idx t, idx q, idx c) { return static_cast<double>(to_float(x(t * hw + q, c))); };
  holitom_result out;
  out.assign.assign(static_cast<std::size_t>(frames * hw), -1);

  // sim[t][q] = cos(x_t[q], x_{t+1}[q]); still[t][q] = sim > τ.
  std::vector<std::vector<bool>> still(static_cast<std::size_t>(std::max<idx>(frames - 1, 0)));
  for (idx t = 0; t + 1 < frames; ++t)
    for (idx q = 0; q < hw; ++q) {
      double dot = 0, a = 0, b = 0;
      for (idx c = 0; c < dim; ++c) {
        dot += value(t, q, c) * value(t + 1, q, c);
        a += value(t, q, c) * value(t, q, c);
        b += value(t + 1, q, c) * value(t + 1, q, c);
      }
      const double cos = dot / (std::max(std::sqrt(a), 1e-8) * std::max(std::sqrt(b), 1e-8));
      out.ambiguous |= std::abs(cos - static_cast<double>(p.tau)) < 1e-4;
      still[static_cast<std::size_t>(t)].push_back(cos > static_cast<double>(p.tau));
    }

  // count[s][e] = #{q : still over [s, e]}·(e − s), from a running product per start.
  std::vector<std::vector<double>> count(static_cast<std::size_t>(frames), std::vector<double>(static_cast<std::size_t>(frames), 0.0));
  for (idx s = 0; s + 1 < frames; ++s) {
    std::vector<int> run(static_cast<std::size_t>(hw), 1);
    for (idx e = s + 1; e < frames; ++e) {
      idx n = 0;
      for (idx q = 0; q < hw; ++q) n += run[static_cast<std::size_t>(q)] &= still[static_cast<std::size_t>(e - 1)][static_cast<std::size_t>(q)];
      count[static_cast<std::size_t>(s)][static_cast<std::size_t>(e)] = static_cast<double>(n * (e - s));
    }
  }
  std::vector<double> dp(static_cast<std::size_t>(frames), 0.0);
  std::vector<idx> prev(static_cast<std::size_t>(frames), 0);
  for (idx i = 0; i < frames; ++i) {
    double best = i > 0 ? dp[static_cast<std::size_t>(i - 1)] : 0.0;
    idx best_j = i;
    for (idx w = 2; w <= std::min(i + 1, p.max_window); ++w) {
      const idx j = i - w;
      const double v = (j >= 0 ? dp[static_cast<std::size_t>(j)] : 0.0) + count[static_cast<std::size_t>(j + 1)][static_cast<std::size_t>(i)];
      if (v > best) best = v, best_j = j + 1;
    }
    dp[static_cast<std::size_t>(i)] = best;
    prev[static_cast<std::size_t>(i)] = best_j;
  }
  std::vector<std::pair<idx, idx>> windows;
  for (idx i = frames - 1; i >= 0; i = prev[static_cast<std::size_t>(i)] - 1) windows.insert(windows.begin(), {prev[static_cast<std::size_t>(i)], i});
  const double total = static_cast<double>(frames * hw);
  out.ratio = std::min(p.retain_ratio / ((total - dp.back()) / total), 1.0);
  for (const auto& [s, e] : windows)
    for (idx t = s; t <= e; ++t) out.window_start.push_back(s);

  // One output row: its values, provenance and size.
  struct item {
    idx q;
    std::vector<double> row;
    idx source;
    double size;
  };
  const auto emit = [&](idx t, const item& it) {
    out.tokens.insert(out.tokens.end(), it.row.begin(), it.row.end());
    out.source.push_back(it.source);
    out.positions.insert(out.positions.end(), {static_cast<std::int32_t>(t), static_cast<std::int32_t>(it.q / width),
                                               static_cast<std::int32_t>(it.q % width)});
    out.sizes.push_back(it.size);
    return out.count() - 1;
  };
  const auto emit_frame = [&](idx t, std::vector<item> items) {
    if (p.layout == holitom_layout::frame_rows)
      std::stable_sort(items.begin(), items.end(), [](const item& a, const item& b) { return a.q < b.q; });
    for (std::size_t m = 0; m < items.size(); ++m) {
      emit(t, items[m]);
      const idx h = items[m].q / width;
      if (p.layout == holitom_layout::frame_rows && !newline.empty() &&
          (m + 1 == items.size() || items[m + 1].q / width != h)) {
        out.tokens.insert(out.tokens.end(), newline.begin(), newline.end());
        out.source.push_back(-1);
        out.positions.insert(out.positions.end(), {static_cast<std::int32_t>(t), static_cast<std::int32_t>(h),
                                                   static_cast<std::int32_t>(width)});
        out.sizes.push_back(0.0);
      }
    }
  };
  // The clusters of `rows` (n, dim) as items: center position, row, size·weight.
  const auto clusters_of = [&](const std::vector<float>& rows, const std::vector<idx>& where, idx clusters, idx t,
                               double weight, std::vector<idx>& member_of) {
    std::vector<item> items;
    const auto n = static_cast<idx>(where.size());
    const view<const float, 2> v = make_view<const float>(rows.data(), n, dim);
    const dpc_knn dp_policy{clusters, p.k, p.beta, p.merge};
    const dpc_knn_decisions d = dpc_knn_decide(dp_policy, v);
    const dpc_knn_result r = dpc_knn_rows(dp_policy, v, d, {});
    for (idx c = 0; c < clusters; ++c) {
      const idx q = where[static_cast<std::size_t>(d.centers[static_cast<std::size_t>(c)])];
      items.push_back({q, std::vector<double>(r.tokens.begin() + c * dim, r.tokens.begin() + (c + 1) * dim), t * hw + q,
                       weight * r.sizes[static_cast<std::size_t>(c)]});
    }
    member_of = d.assign;
    return items;
  };

  // The output row of a source (each source is written once).
  const auto slot_of = [&](idx source) {
    for (idx r = out.count() - 1; r >= 0; --r)
      if (out.source[static_cast<std::size_t>(r)] == source) return r;
    return idx{-1};
  };

  for (const auto& [s, e] : windows) {
    const idx w = e - s + 1;
    std::vector<idx> statics, dynamics;
    for (idx q = 0; q < hw; ++q) {
      bool all = w >= 2;
      for (idx t = s; t < e && all; ++t) all = still[static_cast<std::size_t>(t)][static_cast<std::size_t>(q)];
      (all ? statics : dynamics).push_back(q);
    }
    // Still positions: fp32 means over the window's frames, clustered.
    std::vector<item> static_items;
    std::vector<idx> static_member_of;
    const auto static_clusters = static_cast<idx>(std::nearbyint(static_cast<double>(statics.size()) * out.ratio));
    if (static_clusters > 0) {
      std::vector<float> means;
      for (idx q : statics)
        for (idx c = 0; c < dim; ++c) {
          float sum = to_float(x(s * hw + q, c));
          for (idx t = s + 1; t <= e; ++t) sum += to_float(x(t * hw + q, c));
          means.push_back(sum / static_cast<float>(w));
        }
      static_items = clusters_of(means, statics, static_clusters, s, static_cast<double>(w), static_member_of);
    }
    if (p.layout == holitom_layout::windows) emit_frame(s, static_items);

    const auto n = static_cast<idx>(dynamics.size());
    const auto budget = static_cast<idx>(std::ceil(static_cast<double>(n) * out.ratio));
    const auto dominant = static_cast<idx>(std::nearbyint(static_cast<double>(budget) * (1.0 - p.contextual)));
    const idx contextual = budget - dominant;
    for (idx t = s; t <= e; ++t) {
      std::vector<idx> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      const auto a = [&](idx j) { return attn[static_cast<std::size_t>(t * hw + dynamics[static_cast<std::size_t>(j)])]; };
      std::stable_sort(order.begin(), order.end(), [&](idx i, idx j) {
        if (std::isnan(a(i)) || std::isnan(a(j))) return !std::isnan(a(i)) && std::isnan(a(j));
        return a(i) > a(j);
      });
      std::vector<bool> is_dominant(static_cast<std::size_t>(n), false);
      for (idx m = 0; m < dominant; ++m) is_dominant[static_cast<std::size_t>(order[static_cast<std::size_t>(m)])] = true;
      std::vector<item> items;
      if (p.layout == holitom_layout::frame_rows && t == s) items = static_items;
      std::vector<idx> kept;
      for (idx j = 0; j < n; ++j)
        if (is_dominant[static_cast<std::size_t>(j)]) {
          const idx q = dynamics[static_cast<std::size_t>(j)];
          std::vector<double> row;
          for (idx c = 0; c < dim; ++c) row.push_back(value(t, q, c));
          items.push_back({q, row, t * hw + q, 1.0});
          kept.push_back(t * hw + q);
        }
      std::vector<idx> rest, rest_member_of;
      std::vector<item> context_items;
      if (contextual > 0) {
        std::vector<float> rows;
        for (idx j = 0; j < n; ++j)
          if (!is_dominant[static_cast<std::size_t>(j)]) {
            rest.push_back(dynamics[static_cast<std::size_t>(j)]);
            for (idx c = 0; c < dim; ++c) rows.push_back(to_float(x(t * hw + rest.back(), c)));
          }
        context_items = clusters_of(rows, rest, contextual, t, 1.0, rest_member_of);
        items.insert(items.end(), context_items.begin(), context_items.end());
      }
      emit_frame(t, items);
      for (idx i : kept) out.assign[static_cast<std::size_t>(i)] = slot_of(i);
      for (std::size_t m = 0; m < rest.size(); ++m) {
        const idx center = context_items[static_cast<std::size_t>(rest_member_of[m])].q;
        out.assign[static_cast<std::size_t>(t * hw + rest[m])] = slot_of(t * hw + center);
      }
    }
    for (std::size_t i = 0; i < statics.size() && static_clusters > 0; ++i) {
      const idx center = static_items[static_cast<std::size_t>(static_member_of[i])].q;
      for (idx t = s; t <= e; ++t) out.assign[static_cast<std::size_t>(t * hw + statics[i])] = slot_of(s * hw + center);
    }
  }
  return out;
}

}  // namespace tokred::ref
