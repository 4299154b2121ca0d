// tests/reference/diversity_ref.hpp — the scalar oracle of divprune, kcenter and
// importance_diversity.
//
// A literal transcription of the original DivPrune: the full n × n distance matrix in double,
// the first pick from each column's second-smallest entry (a full sort), then at every step the
// minimum over the picks recomputed from scratch and the first maximal index. O(n²·d + k²·n).
// Besides its own picks it certifies another's: at every step of a given pick sequence, how far
// the pick's score fell short of the best candidate's, which stays at rounding level for any
// correct fp32 implementation even where near-ties make the two choose differently.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <tokred/policy/diversity.hpp>

namespace tokred::ref {

/// Rows of one group as doubles: (n, d) row-major.
struct double_rows {
  index_t n = 0, d = 0;
  std::vector<double> x;
  double at(index_t i, index_t c) const { return x[static_cast<std::size_t>(i * d + c)]; }
};

template <class E>
double_rows to_double(const view<const E, 2>& rows) {
  double_rows r{rows.extent(0), rows.extent(1), {}};
  r.x.resize(static_cast<std::size_t>(r.n * r.d));
  for (index_t i = 0; i < r.n; ++i)
    for (index_t c = 0; c < r.d; ++c) r.x[static_cast<std::size_t>(i * r.d + c)] = to_float(rows(i, c));
  return r;
}

/// The full distance matrix: cosine distance (a zero row at distance 1 from every row) or the
/// squared Euclidean distance.
inline std::vector<double> distance_matrix(const double_rows& r, bool cosine) {
  std::vector<double> norm(static_cast<std::size_t>(r.n));
  for (index_t i = 0; i < r.n; ++i) {
    double s = 0;
    for (index_t c = 0; c < r.d; ++c) s += r.at(i, c) * r.at(i, c);
    norm[static_cast<std::size_t>(i)] = std::sqrt(s);
  }
  std::vector<double> dist(static_cast<std::size_t>(r.n * r.n));
  for (index_t i = 0; i < r.n; ++i)
    for (index_t j = 0; j < r.n; ++j) {
      double s = 0;
      for (index_t c = 0; c < r.d; ++c) {
        const double a = r.at(i, c), b = r.at(j, c);
        s += cosine ? a * b : (a - b) * (a - b);
      }
      if (cosine) {
        const double ni = norm[static_cast<std::size_t>(i)], nj = norm[static_cast<std::size_t>(j)];
        s = ni > 0 && nj > 0 ? 1.0 - s / (ni * nj) : 1.0;
      }
      dist[static_cast<std::size_t>(i * r.n + j)] = s;
    }
  return dist;
}

/// The greedy rule of one policy on one group, with its distance matrix precomputed.
struct greedy_rule {
  index_t n = 0;
  std::vector<double> dist;     // (n, n)
  std::int64_t first = -1;      // the first pick, or -1 for DivPrune's most-isolated rule
  bool allow_repeats = false;
  std::vector<double> weights;  // empty: unweighted

  double d(std::size_t i, std::size_t j) const { return dist[i * static_cast<std::size_t>(n) + j]; }

  /// The score of every candidate after the picks so far, kept up to date pick by pick: the
  /// minimum distance to the picks, times the weight; -inf for a token that may not be picked.
  struct state {
    const greedy_rule* rule;
    std::vector<double> nearest;
    std::vector<bool> picked;
    std::size_t count = 0;

    explicit state(const greedy_rule& r)
        : rule(&r), nearest(static_cast<std::size_t>(r.n), std::numeric_limits<double>::infinity()),
          picked(static_cast<std::size_t>(r.n), false) {}

    std::vector<double> scores() const {
      const auto n = static_cast<std::size_t>(rule->n);
      std::vector<double> score(n, -std::numeric_limits<double>::infinity());
      for (std::size_t j = 0; j < n; ++j) {
        if (count == 0) {
          if (rule->first >= 0) {
            if (static_cast<std::int64_t>(j) == rule->first) score[j] = 0.0;
          } else {
            std::vector<double> column(n);
            for (std::size_t i = 0; i < n; ++i) column[i] = rule->d(i, j);
            std::sort(column.begin(), column.end());
            score[j] = n > 1 ? column[1] : std::numeric_limits<double>::infinity();
          }
        } else if (!picked[j] || rule->allow_repeats) {
          score[j] = rule->weights.empty() ? nearest[j] : rule->weights[j] * nearest[j];
        }
      }
      return score;
    }

    void add(std::int64_t p) {
      for (std::size_t j = 0; j < nearest.size(); ++j)
        nearest[j] = std::min(nearest[j], rule->d(static_cast<std::size_t>(p), j));
      picked[static_cast<std::size_t>(p)] = true;
      ++count;
    }
  };
};

/// The oracle's picks: at every step the first maximal index of the scores.
inline std::vector<std::int64_t> greedy_picks(const greedy_rule& rule, index_t k) {
  std::vector<std::int64_t> picks;
  greedy_rule::state at(rule);
  while (static_cast<index_t>(picks.size()) < k) {
    const std::vector<double> score = at.scores();
    picks.push_back(std::max_element(score.begin(), score.end()) - score.begin());
    at.add(picks.back());
  }
  return picks;
}

/// How far the worst of `picks` fell short of the best candidate at its step (0 when every pick
/// was a maximum; +inf when a pick was not allowed at all). A fp32 implementation of the same
/// greedy rule stays within its rounding error of 0, even where near-ties make its choices differ
/// from the oracle's; a wrong rule falls short by far more.
inline double worst_shortfall(const greedy_rule& rule, const std::vector<std::int64_t>& picks) {
  double worst = 0;
  greedy_rule::state at(rule);
  for (std::int64_t p : picks) {
    const std::vector<double> score = at.scores();
    const double best = *std::max_element(score.begin(), score.end());
    const double mine = score[static_cast<std::size_t>(p)];
    if (mine == -std::numeric_limits<double>::infinity()) return std::numeric_limits<double>::infinity();
    if (best != mine) worst = std::max(worst, best - mine);
    at.add(p);
  }
  return worst;
}

/// The greedy rule of `policy` on one group: `rows` (n, d) compared, `weights` importance scores.
template <class P, class E>
greedy_rule rule_of(const P& p, const view<const E, 2>& rows, const std::vector<double>& weights = {}) {
  const double_rows r = to_double(rows);
  greedy_rule rule;
  rule.n = r.n;
  rule.dist = distance_matrix(r, !std::is_same_v<P, kcenter>);
  if constexpr (std::is_same_v<P, kcenter>) {
    rule.first = p.first;
  } else if constexpr (std::is_same_v<P, importance_diversity>) {
    rule.first = std::max_element(weights.begin(), weights.end()) - weights.begin();
    rule.weights = weights;
  } else {
    rule.allow_repeats = p.allow_repeats;
  }
  return rule;
}

/// The worst shortfall, over the groups of `p.within`, of `picks` (k per group, token indices,
/// pick order) against each group's greedy rule; `w` (tokens,) the importance scores.
template <class P, class E>
double worst_group_shortfall(const P& p, const token_grid& grid, const view<const E, 2>& rows,
                             const std::vector<float>& w, const std::vector<std::int64_t>& picks) {
  const detail::selection_groups g = detail::groups_of(p.within, grid);
  const index_t k = static_cast<index_t>(picks.size()) / g.groups;
  double worst = 0;
  for (index_t group = 0; group < g.groups; ++group) {
    const index_t first = group * g.group_tokens;
    std::vector<double> weights;
    if constexpr (std::is_same_v<P, importance_diversity>)
      for (index_t i = 0; i < g.group_tokens; ++i) weights.push_back(w[static_cast<std::size_t>(first + i)]);
    const greedy_rule rule = rule_of(p, detail::row_range(rows, first, g.group_tokens), weights);
    std::vector<std::int64_t> local(picks.begin() + group * k, picks.begin() + (group + 1) * k);
    for (std::int64_t& i : local) i -= first;
    worst = std::max(worst, worst_shortfall(rule, local));
  }
  return worst;
}

}  // namespace tokred::ref
