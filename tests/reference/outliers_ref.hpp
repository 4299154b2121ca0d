// tests/reference/outliers_ref.hpp — the scalar oracle of iqr_outliers (LLaVA-PruMerge and
// PruMerge+), written the way the original reads: sort, percentiles, fence, count, topk, extras.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/policy/outliers.hpp>

#include "reference/selection_ref.hpp"

namespace tokred::ref {

/// numpy.percentile(values, q) with the default linear method, as NumPy 1.24 computes it for a
/// float32 array: neighbours' difference in float, interpolation in double.
inline double numpy_percentile(std::vector<float> values, double q) {
  for (float v : values)
    if (std::isnan(v)) return std::nan("");
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  const double virtual_index = static_cast<double>(n - 1) * (q / 100.0);
  const auto lo = static_cast<std::size_t>(std::floor(virtual_index));
  const std::size_t hi = std::min(lo + 1, n - 1);
  const double gamma = virtual_index - static_cast<double>(lo);
  const float diff = values[hi] - values[lo];
  double result = static_cast<double>(values[lo]) + static_cast<double>(diff) * gamma;
  if (gamma >= 0.5) result = static_cast<double>(values[hi]) - static_cast<double>(diff) * (1.0 - gamma);
  return result;
}

/// The kept indices of iqr_outliers in output order.
inline std::vector<std::int64_t> outlier_indices(const iqr_outliers& p, const std::vector<float>& scores) {
  const auto n = static_cast<std::int64_t>(scores.size());
  const double q1 = numpy_percentile(scores, 25.0), q3 = numpy_percentile(scores, 75.0);
  const double upper = q3 + 1.5 * (q3 - q1);
  std::int64_t outliers = 0;
  for (float s : scores) {
    const bool above = std::fabs(upper) <= FLT_MAX ? s > static_cast<float>(upper)
                                                   : static_cast<double>(s) > upper;
    outliers += above;
  }
  if (outliers == 0) return {};
  const double ratio = static_cast<double>(outliers) / static_cast<double>(n);
  const auto k = static_cast<std::int64_t>(static_cast<double>(n) * ratio);

  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return ranks_before(scores[static_cast<std::size_t>(a)], a, scores[static_cast<std::size_t>(b)], b);
  });
  std::vector<std::int64_t> kept(order.begin(), order.begin() + k);
  if (!p.spatial_extras) return kept;
  const auto step_length = static_cast<std::int64_t>(1.0 / ratio);
  const std::int64_t step = std::max<std::int64_t>(1, static_cast<std::int64_t>(step_length / 3.0));
  const std::vector<std::int64_t> topk = kept;
  for (std::int64_t i = 0; i < n - 1; i += step)
    if (std::find(topk.begin(), topk.end(), i) == topk.end()) kept.push_back(i);
  return kept;
}

}  // namespace tokred::ref
