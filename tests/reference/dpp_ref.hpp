// tests/reference/dpp_ref.hpp — the oracle of cdpruner: the DPP kernel built in double, and the
// greedy MAP by its definition — at every step, each candidate's gain det(K[S ∪ {i}]) / det(K[S])
// = K_ii − k_iᵀ K_SS⁻¹ k_i from a fresh Cholesky factorisation of K_SS, the first maximal index
// picked. O(k·(k³ + n·k²)); no incremental update, no epsilon tricks.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/policy/diversity.hpp>

#include "reference/diversity_ref.hpp"

namespace tokred::ref {

/// A dense symmetric kernel, (n, n) row-major.
struct dpp_kernel_matrix {
  index_t n = 0;
  std::vector<double> k;
  double at(index_t i, index_t j) const { return k[static_cast<std::size_t>(i * n + j)]; }
};

/// cdpruner's kernel of one group (or half): rows (n, d), raw relevance `m` (n,).
inline dpp_kernel_matrix dpp_kernel_of(const cdpruner& p, const double_rows& x, std::vector<double> m) {
  const double eps = 1e-6;
  std::vector<double> scale(static_cast<std::size_t>(x.n));
  for (index_t i = 0; i < x.n; ++i) {
    double s = 0;
    for (index_t c = 0; c < x.d; ++c) s += x.at(i, c) * x.at(i, c);
    scale[static_cast<std::size_t>(i)] = 1.0 / std::sqrt(s + eps);
  }
  if (p.kernel == dpp_kernel::original)
    for (double& v : m) v = -v;
  const double low = *std::min_element(m.begin(), m.end()), high = *std::max_element(m.begin(), m.end());
  std::vector<double> r(m.size());
  for (std::size_t i = 0; i < m.size(); ++i)
    r[i] = p.kernel == dpp_kernel::openvino ? (m[i] - low) / (high - low + eps)
                                            : (high > low ? (m[i] - low + eps) / (high - low) : 1.0);
  dpp_kernel_matrix kernel{x.n, std::vector<double>(static_cast<std::size_t>(x.n * x.n))};
  const double w = p.relevance_weight;
  for (index_t i = 0; i < x.n; ++i)
    for (index_t j = 0; j < x.n; ++j) {
      double dot = 0;
      for (index_t c = 0; c < x.d; ++c) dot += x.at(i, c) * x.at(j, c);
      const double sim = dot * scale[static_cast<std::size_t>(i)] * scale[static_cast<std::size_t>(j)];
      const double coupled = r[static_cast<std::size_t>(i)] * sim * r[static_cast<std::size_t>(j)];
      kernel.k[static_cast<std::size_t>(i * x.n + j)] =
          p.kernel == dpp_kernel::openvino ? (1 - w) * sim + w * coupled : coupled;
    }
  return kernel;
}

/// The raw relevance m of rows (n, d) to queries (q, d): the mean cosine, norms with +1e-6.
inline std::vector<double> dpp_relevance(const double_rows& x, const double_rows& query) {
  std::vector<double> m(static_cast<std::size_t>(x.n), 0.0);
  const auto norm = [](const double_rows& a, index_t i) {
    double s = 0;
    for (index_t c = 0; c < a.d; ++c) s += a.at(i, c) * a.at(i, c);
    return std::sqrt(s + 1e-6);
  };
  for (index_t q = 0; q < query.n; ++q)
    for (index_t i = 0; i < x.n; ++i) {
      double dot = 0;
      for (index_t c = 0; c < x.d; ++c) dot += x.at(i, c) * query.at(q, c);
      m[static_cast<std::size_t>(i)] += dot / (norm(x, i) * norm(query, q)) / static_cast<double>(query.n);
    }
  return m;
}

/// Every candidate's gain after `picks` (−inf for a picked token): K_ii − k_iᵀ K_SS⁻¹ k_i.
inline std::vector<double> dpp_gains(const dpp_kernel_matrix& kernel, const std::vector<std::int64_t>& picks) {
  const std::size_t t = picks.size();
  std::vector<double> chol(t * t, 0.0);  // K_SS = L·Lᵀ
  for (std::size_t a = 0; a < t; ++a)
    for (std::size_t b = 0; b <= a; ++b) {
      double s = kernel.at(picks[a], picks[b]);
      for (std::size_t c = 0; c < b; ++c) s -= chol[a * t + c] * chol[b * t + c];
      chol[a * t + b] = a == b ? std::sqrt(s) : s / chol[b * t + b];
    }
  std::vector<double> gain(static_cast<std::size_t>(kernel.n), -std::numeric_limits<double>::infinity());
  for (index_t i = 0; i < kernel.n; ++i) {
    if (std::find(picks.begin(), picks.end(), i) != picks.end()) continue;
    std::vector<double> v(t);  // L⁻¹ k_S,i
    double g = kernel.at(i, i);
    for (std::size_t a = 0; a < t; ++a) {
      double s = kernel.at(picks[a], i);
      for (std::size_t c = 0; c < a; ++c) s -= chol[a * t + c] * v[c];
      v[a] = s / chol[a * t + a];
      g -= v[a] * v[a];
    }
    gain[static_cast<std::size_t>(i)] = g;
  }
  return gain;
}

/// The greedy MAP's picks: the first maximal gain at every step.
inline std::vector<std::int64_t> dpp_picks(const dpp_kernel_matrix& kernel, index_t k) {
  std::vector<std::int64_t> picks;
  while (static_cast<index_t>(picks.size()) < k) {
    const std::vector<double> gain = dpp_gains(kernel, picks);
    picks.push_back(std::max_element(gain.begin(), gain.end()) - gain.begin());
  }
  return picks;
}

/// How far the worst of `picks` fell short of the best gain at its step (as for max-min). Once
/// the best gain is below `exhausted`, the kernel's rank is used up (k above the rank of S, e.g.
/// more picks than the row width): every later gain is rounding noise, and the rest of the picks
/// are not judged.
inline double dpp_worst_shortfall(const dpp_kernel_matrix& kernel, const std::vector<std::int64_t>& picks,
                                  double exhausted = 1e-3) {
  double worst = 0;
  std::vector<std::int64_t> before;
  for (std::int64_t p : picks) {
    const std::vector<double> gain = dpp_gains(kernel, before);
    const double best = *std::max_element(gain.begin(), gain.end());
    if (best < exhausted) break;
    const double mine = gain[static_cast<std::size_t>(p)];
    if (mine == -std::numeric_limits<double>::infinity()) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, best - mine);
    before.push_back(p);
  }
  return worst;
}

/// Where a test's relevance comes from.
enum class relevance_from { query, scores, none };

/// The worst shortfall, over every DPP of `p` (each group, or each half of it with split), of
/// `picks` (k per group, token indices, pick order; with split the first half's picks first).
/// `scores` (tokens,) and `query` (queries, d) are read as `from` says.
template <class E>
double dpp_worst_group_shortfall(const cdpruner& p, const token_grid& grid, const view<const E, 2>& rows,
                                 const std::vector<float>& scores, const view<const E, 2>& query,
                                 relevance_from from, const std::vector<std::int64_t>& picks) {
  const detail::selection_groups g = detail::groups_of(p.within, grid);
  const index_t k = static_cast<index_t>(picks.size()) / g.groups;
  double worst = 0;
  const auto run = [&](index_t first, index_t count, index_t pick0, index_t picked) {
    const double_rows x = to_double(detail::row_range(rows, first, count));
    std::vector<double> m(static_cast<std::size_t>(count), 0.0);
    if (from == relevance_from::query) m = dpp_relevance(x, to_double(query));
    if (from == relevance_from::scores)
      for (index_t i = 0; i < count; ++i) m[static_cast<std::size_t>(i)] = scores[static_cast<std::size_t>(first + i)];
    std::vector<std::int64_t> local(picks.begin() + pick0, picks.begin() + pick0 + picked);
    for (std::int64_t& i : local) i -= first;
    worst = std::max(worst, dpp_worst_shortfall(dpp_kernel_of(p, x, m), local));
  };
  for (index_t group = 0; group < g.groups; ++group) {
    const index_t first = group * g.group_tokens;
    if (!p.split) {
      run(first, g.group_tokens, group * k, k);
    } else {
      const index_t middle = g.group_tokens / 2, k1 = k / 2;
      run(first, middle, group * k, k1);
      run(first + middle, g.group_tokens - middle, group * k + k1, k - k1);
    }
  }
  return worst;
}

}  // namespace tokred::ref
