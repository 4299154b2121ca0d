// tests/reference/attention_significance_ref.hpp — the scalar oracle of attention_significance,
// and FoPru's rank and row strategies on its scores.
//
// Written for obviousness, not speed: double precision throughout, the definitions of the policy
// doc evaluated literally, map by map. The CPU backend is compared with it within fp32 rounding
// bounds; the rule of `larger_variance` is decided here on exact (double) variances.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/attention_significance.hpp>

#include "reference/attention_scores_ref.hpp"

namespace tokred::ref {

/// The two candidate vectors of every map, with their variances.
struct significance_oracle {
  std::vector<bounded_score> column, row;           // (tokens,) column and row means
  std::vector<double> column_variance, row_variance;  // (maps,)
  index_t map_tokens = 0;

  /// FoPru's rule for map b: the column means when their variance is strictly larger.
  bool by_column(index_t b) const {
    return column_variance[static_cast<std::size_t>(b)] > row_variance[static_cast<std::size_t>(b)];
  }

  /// The scores `axis` selects, token by token.
  std::vector<bounded_score> scores(significance_axis axis) const {
    std::vector<bounded_score> out(column.size());
    for (std::size_t j = 0; j < out.size(); ++j) {
      const bool col = axis == significance_axis::column ||
                       (axis == significance_axis::larger_variance && by_column(static_cast<index_t>(j) / map_tokens));
      out[j] = col ? column[j] : row[j];
    }
    return out;
  }
};

/// torch.var (unbiased) in double; NaN for fewer than two values.
inline double unbiased_variance(const std::vector<double>& x) {
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  double mu = 0.0;
  for (const double v : x) mu += v;
  mu /= static_cast<double>(x.size());
  double squares = 0.0;
  for (const double v : x) squares += (v - mu) * (v - mu);
  return squares / static_cast<double>(x.size() - 1);
}

/// Column and row means of the head mean of every map's n × n patch block. Bounds: the head mean
/// of each weight in fp32 (heads − 1 additions and a division), one more rounding of the mean,
/// with a margin: 2·(heads + 3)·u times the mean magnitude.
template <class E>
significance_oracle attention_significance(const tokred::attention_significance& p, const token_grid& grid,
                                           const view<const E, 4>& w) {  // (maps, heads, queries, keys)
  const index_t maps = w.extent(0), heads = w.extent(1);
  const index_t n = maps == 1 ? grid.tokens() : grid.frame_tokens();
  const double unit = std::ldexp(1.0, -24), slack = 2.0 * static_cast<double>(heads + 3) * unit;
  significance_oracle o;
  o.map_tokens = n;
  for (index_t b = 0; b < maps; ++b) {
    std::vector<double> m(static_cast<std::size_t>(n * n)), size(static_cast<std::size_t>(n * n));
    for (index_t q = 0; q < n; ++q)
      for (index_t k = 0; k < n; ++k) {
        double sum = 0.0, magnitude = 0.0;
        for (index_t h = 0; h < heads; ++h) {
          const double x = static_cast<double>(to_float(w(b, h, p.first_query + q, p.first_key + k)));
          sum += x;
          magnitude += std::fabs(x);
        }
        m[static_cast<std::size_t>(q * n + k)] = sum / static_cast<double>(heads);
        size[static_cast<std::size_t>(q * n + k)] = magnitude / static_cast<double>(heads);
      }
    std::vector<double> col(static_cast<std::size_t>(n)), row(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) {
      double c = 0.0, c_size = 0.0, r = 0.0, r_size = 0.0;
      for (index_t x = 0; x < n; ++x) {
        c += m[static_cast<std::size_t>(x * n + i)];
        c_size += size[static_cast<std::size_t>(x * n + i)];
        r += m[static_cast<std::size_t>(i * n + x)];
        r_size += size[static_cast<std::size_t>(i * n + x)];
      }
      col[static_cast<std::size_t>(i)] = c / static_cast<double>(n);
      row[static_cast<std::size_t>(i)] = r / static_cast<double>(n);
      o.column.push_back({c / static_cast<double>(n), slack * c_size / static_cast<double>(n)});
      o.row.push_back({r / static_cast<double>(n), slack * r_size / static_cast<double>(n)});
    }
    o.column_variance.push_back(unbiased_variance(col));
    o.row_variance.push_back(unbiased_variance(row));
  }
  return o;
}

/// The plain values of bounded scores.
inline std::vector<double> values(const std::vector<bounded_score>& s) {
  std::vector<double> v;
  for (const bounded_score& x : s) v.push_back(x.score);
  return v;
}

/// FoPru's rank strategy: the floor(n·ratio) highest significances (ties by lower index),
/// listed in ascending token order.
inline std::vector<std::int64_t> fopru_rank(const std::vector<double>& s, double ratio) {
  std::vector<std::int64_t> order(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return s[static_cast<std::size_t>(a)] > s[static_cast<std::size_t>(b)];
  });
  order.resize(static_cast<std::size_t>(std::floor(static_cast<double>(s.size()) * ratio)));
  std::sort(order.begin(), order.end());
  return order;
}

/// FoPru's row strategy on a side × side image: each patch row's significances summed, the
/// floor(side·ratio) best rows (ties by upper row) kept whole, tokens in ascending order.
inline std::vector<std::int64_t> fopru_rows(const std::vector<double>& s, index_t side, double ratio) {
  std::vector<double> sums(static_cast<std::size_t>(side), 0.0);
  for (index_t r = 0; r < side; ++r)
    for (index_t c = 0; c < side; ++c) sums[static_cast<std::size_t>(r)] += s[static_cast<std::size_t>(r * side + c)];
  std::vector<std::int64_t> rows;
  for (const std::int64_t r : fopru_rank(sums, ratio))
    for (index_t c = 0; c < side; ++c) rows.push_back(r * side + c);
  return rows;
}

}  // namespace tokred::ref
