// tests/reference/dycoke_ref.hpp — the scalar oracle of dycoke.
//
// Written from DyCoke's TTM loops as the original runs them, for clarity: a list with one entry
// per frame, filled by the pair loop (frame i whole, frame i + 1's least similar tokens), then
// the group loop replacing entry i + 2 (i = 0, 4, … while i < T − 4), then concatenated. Each
// pruned frame's slots are stably sorted by similarity (NaN last) and the first n_keep taken.
//
// The cosine sums are taken in double and the cosine is formed in fp32 as torch's
// F.cosine_similarity: x·y / (max(‖x‖, eps)·max(‖y‖, eps)). For rows whose three sums are exact
// in fp32 (the tests' rows: multiples of 1/16 below 8 in magnitude, at most 64 wide, so every
// partial sum is a multiple of 1/256 below 2¹² in magnitude) this has the bits of any correct fp32
// evaluation, so the oracle's ties and order are the backend's; on other rows it is within
// rounding.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/merge.hpp>

namespace tokred::ref {

/// cos(rows(i), rows(j)) as described above.
template <class E>
float dycoke_cosine(const view<const E, 2>& rows, index_t i, index_t j) {  // rows: (tokens, dim)
  double xy = 0, xx = 0, yy = 0;
  for (index_t c = 0; c < rows.extent(1); ++c) {
    const double x = to_float(rows(i, c)), y = to_float(rows(j, c));
    xy += x * y;
    xx += x * x;
    yy += y * y;
  }
  const float nx = std::max(std::sqrt(static_cast<float>(xx)), 1e-8f);
  const float ny = std::max(std::sqrt(static_cast<float>(yy)), 1e-8f);
  return static_cast<float>(xy) / (nx * ny);
}

/// Python's `int((1 − k)·n)`.
inline index_t dycoke_keep(double k, index_t n) {
  const double q = 1 - k;
  return static_cast<index_t>(std::trunc(q * static_cast<double>(n)));
}

/// What dycoke writes.
struct dycoke_result {
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<std::int64_t> assign;     // (tokens,)
};

/// The slots of frame `f` least similar to frame `r`, n_keep of them, in ascending-similarity order
/// (ties: lower slot; NaN after every number), or in slot order when `by_position`.
template <class E>
std::vector<std::int64_t> dycoke_least_similar(const view<const E, 2>& rows, index_t n, index_t f, index_t r,
                                               index_t keep, bool by_position) {
  std::vector<float> sim(static_cast<std::size_t>(n));
  for (index_t p = 0; p < n; ++p) sim[static_cast<std::size_t>(p)] = dycoke_cosine(rows, f * n + p, r * n + p);
  std::vector<std::int64_t> slots(static_cast<std::size_t>(n));
  std::iota(slots.begin(), slots.end(), 0);
  std::stable_sort(slots.begin(), slots.end(), [&](std::int64_t a, std::int64_t b) {
    const float x = sim[static_cast<std::size_t>(a)], y = sim[static_cast<std::size_t>(b)];
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x < y;
  });
  slots.resize(static_cast<std::size_t>(keep));
  if (by_position) std::sort(slots.begin(), slots.end());
  for (std::int64_t& s : slots) s += f * n;
  return slots;
}

/// dycoke with merging ratio `k` on the frame-major rows of `grid` (`rows`: the compared rows).
template <class E>
dycoke_result dycoke_run(double k, merge_order order, const token_grid& grid, const view<const E, 2>& rows) {
  const index_t frames = grid.frames, n = grid.height * grid.width, keep = dycoke_keep(k, n);
  const bool by_position = order == merge_order::by_position;
  std::vector<std::vector<std::int64_t>> entries;
  for (index_t i = 0; i < frames - 1; i += 2) {
    std::vector<std::int64_t> whole(static_cast<std::size_t>(n));
    std::iota(whole.begin(), whole.end(), i * n);
    entries.push_back(whole);
    entries.push_back(dycoke_least_similar(rows, n, i + 1, i, keep, by_position));
  }
  for (index_t i = 0; i < frames - 4; i += 4)
    entries[static_cast<std::size_t>(i + 2)] = dycoke_least_similar(rows, n, i + 2, i, keep, by_position);

  dycoke_result out;
  out.assign.assign(static_cast<std::size_t>(frames * n), -1);
  for (const auto& entry : entries)
    for (std::int64_t src : entry) {
      out.assign[static_cast<std::size_t>(src)] = static_cast<std::int64_t>(out.source.size());
      out.source.push_back(src);
      const std::int64_t t = src / n, h = (src % n) / grid.width, w = src % grid.width;
      for (std::int64_t v : {t, h, w}) out.positions.push_back(static_cast<std::int32_t>(v));
    }
  return out;
}

}  // namespace tokred::ref
