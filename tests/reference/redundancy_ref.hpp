// tests/reference/redundancy_ref.hpp — the scalar oracle of gaussian_redundancy (STC-Pruner).
//
// Written for obviousness, not speed: straight from the steps in <tokred/policy/redundancy.hpp>,
// everything in double except the two roundings the original makes and the policy reproduces:
// the channel variances are ranked as fp32 numbers, and each chunk mean enters the memory as an
// fp32 number.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/redundancy.hpp>

namespace tokred::ref {

/// The stream memory as the oracle keeps it.
struct stc_memory {
  std::vector<double> sums;  // Σ of the fp32 chunk means, slot by slot
  std::int64_t chunks = 0;
};

struct stc_chunk {
  std::vector<double> scores;          // (tokens,) −(memory term + frame term)
  std::vector<std::int64_t> channels;  // (C,) ascending fp32 variance, ties by channel
};

/// Σ_α exp(−d² / 2α) over STC's five bandwidths.
inline double stc_kernel(double squared_distance) {
  double g = 0.0;
  for (double alpha : {0.125, 0.25, 0.5, 1.0, 2.0}) g += std::exp(-squared_distance / (2.0 * alpha));
  return g;
}

/// x / max(‖x‖, 1e-12).
inline std::vector<double> stc_normalized(std::vector<double> x) {
  double sq = 0.0;
  for (double v : x) sq += v * v;
  const double norm = std::max(std::sqrt(sq), 1e-12);
  for (double& v : x) v /= norm;
  return x;
}

inline double squared_distance(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0.0;
  for (std::size_t p = 0; p < a.size(); ++p) sum += (a[p] - b[p]) * (a[p] - b[p]);
  return sum;
}

/// One chunk: scores, the channels chosen, and the memory updated in place.
template <class E>
stc_chunk gaussian_redundancy(const tokred::gaussian_redundancy& p, const token_grid& grid,
                              const view<const E, 2>& tokens, stc_memory& memory) {  // (tokens, dim)
  const index_t n = grid.tokens(), dim = tokens.extent(1), hw = grid.frame_tokens();
  const index_t width = redundancy_channels(p, dim);
  const auto x = [&](index_t i, index_t c) { return static_cast<double>(to_float(tokens(i, c))); };

  // Population variance of every channel; rank the fp32 values, ties by channel.
  std::vector<float> variance(static_cast<std::size_t>(dim));
  for (index_t c = 0; c < dim; ++c) {
    double mean = 0.0, sq = 0.0;
    for (index_t i = 0; i < n; ++i) mean += x(i, c);
    mean /= static_cast<double>(n);
    for (index_t i = 0; i < n; ++i) sq += (x(i, c) - mean) * (x(i, c) - mean);
    variance[static_cast<std::size_t>(c)] = static_cast<float>(sq / static_cast<double>(n));
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(dim));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    const float va = variance[static_cast<std::size_t>(a)], vb = variance[static_cast<std::size_t>(b)];
    if (std::isnan(vb)) return !std::isnan(va);
    return !std::isnan(va) && va < vb;
  });
  order.resize(static_cast<std::size_t>(width));

  // The token rows on those channels, in that order.
  std::vector<std::vector<double>> picked(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    for (std::int64_t c : order) picked[static_cast<std::size_t>(i)].push_back(x(i, static_cast<index_t>(c)));

  // The memory: this chunk's mean joins the chunk means of the stream.
  if (memory.chunks == 0) memory.sums.assign(static_cast<std::size_t>(width), 0.0);
  ++memory.chunks;
  std::vector<double> m(static_cast<std::size_t>(width));
  for (index_t q = 0; q < width; ++q) {
    double sum = 0.0;
    for (index_t i = 0; i < n; ++i) sum += picked[static_cast<std::size_t>(i)][static_cast<std::size_t>(q)];
    memory.sums[static_cast<std::size_t>(q)] += static_cast<float>(sum / static_cast<double>(n));
    m[static_cast<std::size_t>(q)] = memory.sums[static_cast<std::size_t>(q)] / static_cast<double>(memory.chunks);
  }
  const std::vector<double> memory_unit = stc_normalized(m);

  stc_chunk out{std::vector<double>(static_cast<std::size_t>(n)), order};
  for (index_t t = 0; t < grid.frames; ++t) {
    std::vector<std::vector<double>> unit;
    std::vector<double> frame_mean(static_cast<std::size_t>(width), 0.0);
    for (index_t j = 0; j < hw; ++j) {
      unit.push_back(stc_normalized(picked[static_cast<std::size_t>(t * hw + j)]));
      for (index_t q = 0; q < width; ++q)
        frame_mean[static_cast<std::size_t>(q)] += unit.back()[static_cast<std::size_t>(q)] / static_cast<double>(hw);
    }
    for (index_t j = 0; j < hw; ++j) {
      const std::vector<double>& u = unit[static_cast<std::size_t>(j)];
      out.scores[static_cast<std::size_t>(t * hw + j)] =
          -(stc_kernel(squared_distance(u, memory_unit)) + stc_kernel(squared_distance(u, frame_mean)));
    }
  }
  return out;
}

}  // namespace tokred::ref
