// tests/reference/holitom_inner_ref.hpp — the scalar oracle of holitom_inner.
//
// Written from the original's steps, for clarity: the kept tokens by a stable sort of the
// attention, the cosine matrix of every other token with the kept ones in fp32 (the dot products
// summed in double and rounded once: exact for the tests' rows, multiples of 1/16, so the
// decisions have the backend's bits), the argmax by a scan that takes the first maximum or the
// first NaN, and the halvings in index order with the element type's rounding after each op.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/holitom_inner.hpp>

namespace tokred::ref {

/// What holitom_inner writes; tokens as fp32 values of the element type.
struct holitom_inner_result {
  std::vector<float> tokens;          // (kept, dim)
  std::vector<std::int64_t> source;   // (kept,)
  std::vector<float> sizes;           // (kept,)
  std::vector<std::int64_t> assign;   // (tokens,)
};

template <class E>
holitom_inner_result holitom_inner_run(const holitom_inner& p, const view<const E, 2>& x,
                                       const std::vector<float>& attn) {
  using idx = std::int64_t;
  const idx n = x.extent(0), dim = x.extent(1);
  const auto kept = static_cast<idx>(std::nearbyint(static_cast<double>(n) * (1.0 - p.r)));
  const auto at = [](idx i) { return static_cast<std::size_t>(i); };
  const auto round_e = [](float v) { return to_float(from_float<E>(v)); };

  std::vector<idx> rank(at(n));
  std::iota(rank.begin(), rank.end(), 0);
  std::stable_sort(rank.begin(), rank.end(), [&](idx a, idx b) {
    if (std::isnan(attn[at(a)]) || std::isnan(attn[at(b)])) return !std::isnan(attn[at(a)]) && std::isnan(attn[at(b)]);
    return attn[at(a)] > attn[at(b)];
  });
  rank.resize(at(kept));  // the kept tokens in rank order
  std::vector<bool> is_kept(at(n), false);
  for (idx i : rank) is_kept[at(i)] = true;

  const auto norm = [&](idx i) {
    double s = 0;
    for (idx c = 0; c < dim; ++c) s += static_cast<double>(to_float(x(i, c))) * to_float(x(i, c));
    return std::sqrt(static_cast<float>(s));
  };
  std::vector<std::vector<float>> state;  // the kept rows in rank order, as they are merged
  for (idx m : rank) {
    std::vector<float> row;
    for (idx c = 0; c < dim; ++c) row.push_back(to_float(x(m, c)));
    state.push_back(row);
  }
  std::vector<idx> target(at(n), -1);
  for (idx j = 0; j < n; ++j) {
    if (is_kept[at(j)]) continue;
    float best = -INFINITY;
    idx arg = 0;
    for (idx r = 0; r < kept; ++r) {
      double dot = 0;
      for (idx c = 0; c < dim; ++c) dot += static_cast<double>(to_float(x(j, c))) * to_float(x(rank[at(r)], c));
      const float sim = static_cast<float>(dot) / (norm(j) * norm(rank[at(r)]));
      if (std::isnan(sim)) {
        arg = r;
        break;
      }
      if (sim > best) best = sim, arg = r;
    }
    target[at(j)] = arg;
  }
  std::vector<float> sizes(at(kept), 1.0f);
  for (idx j = 0; j < n; ++j) {  // the halvings, in index order, on the states
    if (is_kept[at(j)]) continue;
    std::vector<float>& h = state[at(target[at(j)])];
    for (idx c = 0; c < dim; ++c) h[at(c)] = round_e(round_e(h[at(c)] + to_float(x(j, c))) / 2.0f);
    sizes[at(target[at(j)])] += 1.0f;
  }

  holitom_inner_result out;
  std::vector<idx> order(at(kept));  // ranks by ascending token index
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](idx a, idx b) { return rank[at(a)] < rank[at(b)]; });
  std::vector<idx> row_of_rank(at(kept));
  for (idx q = 0; q < kept; ++q) {
    const idx r = order[at(q)];
    row_of_rank[at(r)] = q;
    out.tokens.insert(out.tokens.end(), state[at(r)].begin(), state[at(r)].end());
    out.source.push_back(rank[at(r)]);
    out.sizes.push_back(sizes[at(r)]);
  }
  out.assign.assign(at(n), -1);
  for (idx q = 0; q < kept; ++q) out.assign[at(out.source[at(q)])] = q;
  for (idx j = 0; j < n; ++j)
    if (!is_kept[at(j)]) out.assign[at(j)] = row_of_rank[at(target[at(j)])];
  return out;
}

}  // namespace tokred::ref
