// tests/reference/stc_cacher_ref.hpp — the scalar oracle of stc_cacher (STC-Cacher's choice of the
// tokens a layer recomputes).
//
// Written for obviousness, not speed, from the definition in <tokred/policy/stc_cacher.hpp>: for
// every frame, the similarity of each key to the reference key in its slot, then a full sort
// (lowest similarity first, ties to the lower slot, NaN last) and the first u in slot order.
//
// The dot products and squared norms are summed in double. On rows whose products and sums are
// exact in fp32 (the case table's values, multiples of 1/16 below 8, in short rows) they equal
// the library's fp32 sums whatever its summation order, and the cosine is then rounded exactly as
// torch's fp32 F.cosine_similarity rounds it, so the oracle's similarities are the library's bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/stc_cacher.hpp>

namespace tokred::ref {

/// torch's fp32 cosine from exact sums: x·y / (max(‖x‖, 1e-8) · max(‖y‖, 1e-8)).
inline float stc_cosine(double dot, double x_sq, double y_sq) {
  const float nx = std::max(std::sqrt(static_cast<float>(x_sq)), 1e-8f);
  const float ny = std::max(std::sqrt(static_cast<float>(y_sq)), 1e-8f);
  return static_cast<float>(dot) / (nx * ny);
}

/// The similarity of every key of the chunk (F·T,) to the reference key in its slot.
template <class E>
std::vector<float> stc_similarities(const token_grid& chunk, const view<const E, 2>& keys,  // (F·T, C)
                                    const view<const E, 2>& reference) {                     // (T, C)
  const index_t slots = chunk.frame_tokens(), width = keys.extent(1);
  std::vector<float> sim(static_cast<std::size_t>(chunk.tokens()));
  for (index_t i = 0; i < chunk.tokens(); ++i) {
    double dot = 0.0, x_sq = 0.0, y_sq = 0.0;
    for (index_t c = 0; c < width; ++c) {
      const double x = to_float(keys(i, c)), y = to_float(reference(i % slots, c));
      dot += x * y;
      x_sq += x * x;
      y_sq += y * y;
    }
    sim[static_cast<std::size_t>(i)] = stc_cosine(dot, x_sq, y_sq);
  }
  return sim;
}

/// The chosen tokens' indices in the chunk (f·T + slot), frame by frame, slot order within a
/// frame: the u least similar of every frame, u = max(1, min(int(T·ratio), T)).
inline std::vector<std::int64_t> stc_recompute(const stc_cacher& p, const token_grid& chunk,
                                               const std::vector<float>& similarity) {
  const index_t slots = chunk.frame_tokens();
  const auto u = std::max<index_t>(
      1, std::min<index_t>(static_cast<index_t>(static_cast<double>(slots) * p.update_ratio), slots));
  std::vector<std::int64_t> chosen;
  for (index_t f = 0; f < chunk.frames; ++f) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(slots));
    std::iota(order.begin(), order.end(), f * slots);
    std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      const float sa = similarity[static_cast<std::size_t>(a)], sb = similarity[static_cast<std::size_t>(b)];
      if (std::isnan(sa) != std::isnan(sb)) return std::isnan(sb);
      if (!std::isnan(sa) && sa != sb) return sa < sb;
      return a < b;
    });
    std::sort(order.begin(), order.begin() + u);
    chosen.insert(chosen.end(), order.begin(), order.begin() + u);
  }
  return chosen;
}

}  // namespace tokred::ref
