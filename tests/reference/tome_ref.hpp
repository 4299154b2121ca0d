// tests/reference/tome_ref.hpp — the scalar oracle of tome, tome_match and unmerge.
//
// Written from ToMe's description, for clarity: the full A × B cosine matrix in double, the
// argmax of each row, a stable sort of the candidates, and each output as the size-weighted
// mean of its group in double. The steps are separate so that a test can certify the backend's
// fp32 matching against the double one (within rounding) and then build the exact expected
// outputs from the backend's own decisions, where near-ties could make fp32 and double differ.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/merge.hpp>

namespace tokred::ref {

/// The cosine of token rows i and j in double: 0 when either row is zero, NaN when either
/// holds a non-finite value.
template <class E>
double cosine(const view<const E, 2>& rows, index_t i, index_t j) {
  double dot = 0, ni = 0, nj = 0;
  for (index_t c = 0; c < rows.extent(1); ++c) {
    const double a = to_float(rows(i, c)), b = to_float(rows(j, c));
    dot += a * b;
    ni += a * a;
    nj += b * b;
  }
  if (!std::isfinite(ni) || !std::isfinite(nj)) return std::numeric_limits<double>::quiet_NaN();
  if (ni == 0 || nj == 0) return 0;
  return dot / (std::sqrt(ni) * std::sqrt(nj));
}

/// ToMe's matching: for every A token k (token 2k), the first B token j (token 2j + 1) of
/// highest cosine among the B tokens not protected, NaN skipped; protected A tokens get −inf and
/// −1, as all do when no B token may receive.
struct matching {
  std::vector<double> similarity;    // (a,)
  std::vector<std::int64_t> partner; // (a,)
};

template <class E>
matching match(const view<const E, 2>& rows, index_t protect) {  // (tokens, dim)
  const index_t n = rows.extent(0);
  const index_t a = (n + 1) / 2, b = n / 2;
  matching m;
  for (index_t k = 0; k < a; ++k) {
    double best = -std::numeric_limits<double>::infinity();
    std::int64_t arg = -1;
    if (2 * k >= protect) {
      for (index_t j = 0; j < b; ++j) {
        if (2 * j + 1 < protect) continue;
        const double s = cosine(rows, 2 * k, 2 * j + 1);
        if (arg < 0) best = std::numeric_limits<double>::quiet_NaN(), arg = j;
        if (!std::isnan(s) && (std::isnan(best) || s > best)) best = s, arg = j;
      }
    }
    m.similarity.push_back(best);
    m.partner.push_back(arg);
  }
  return m;
}

/// The unprotected A tokens in rank order: similarity descending, NaN last, ties (−0 = +0
/// included) by ascending index — a stable sort.
template <class T>
std::vector<std::int64_t> rank_candidates(const std::vector<T>& similarity, index_t protect) {
  std::vector<std::int64_t> order;
  for (std::int64_t k = 0; k < static_cast<std::int64_t>(similarity.size()); ++k)
    if (2 * k >= protect) order.push_back(k);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t x, std::int64_t y) {
    const T sx = similarity[static_cast<std::size_t>(x)], sy = similarity[static_cast<std::size_t>(y)];
    if (std::isnan(sx) || std::isnan(sy)) return !std::isnan(sx) && std::isnan(sy);
    return sx > sy;
  });
  return order;
}

/// What tome writes, in double for the rows and sizes.
struct tome_result {
  std::vector<std::int64_t> rep;         // (kept,) representative input token of each slot
  std::vector<std::int64_t> source;      // (kept,)
  std::vector<std::int32_t> positions;   // (kept, 3)
  std::vector<double> sizes;             // (kept,)
  std::vector<double> tokens;            // (kept, dim)
  std::vector<std::int64_t> assign;      // (tokens,)
};

/// The inputs tome may carry from an earlier merge (each empty when not given).
struct carried {
  std::vector<double> sizes;
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;  // (tokens, 3)
};

/// tome's outputs for given decisions: `ranked` = the unprotected A tokens in rank order (the
/// first r merge), `partner` = the B partner of each A token. r is tome's `effective_r`, or
/// `given_r` when given (dymu may merge every unprotected A token).
template <class E>
tome_result merge_from(const tome& p, const token_grid& grid, const view<const E, 2>& tokens,
                       const carried& in, const std::vector<std::int64_t>& ranked,
                       const std::vector<std::int64_t>& partner, index_t given_r = -1) {
  const index_t n = grid.tokens();
  const index_t r = given_r >= 0 ? given_r : effective_r(p, n);
  std::vector<bool> merged(static_cast<std::size_t>(n), false);
  for (index_t q = 0; q < r; ++q) merged[static_cast<std::size_t>(2 * ranked[static_cast<std::size_t>(q)])] = true;

  tome_result out;
  if (r == 0) {
    for (index_t i = 0; i < n; ++i) out.rep.push_back(i);
  } else if (p.order == merge_order::by_position) {
    for (index_t i = 0; i < n; ++i)
      if (!merged[static_cast<std::size_t>(i)]) out.rep.push_back(i);
  } else if (p.protect == 0) {
    for (std::size_t q = static_cast<std::size_t>(r); q < ranked.size(); ++q) out.rep.push_back(2 * ranked[q]);
    for (index_t i = 1; i < n; i += 2) out.rep.push_back(i);
  } else {
    for (index_t i = 0; i < std::min(p.protect, n); ++i) out.rep.push_back(i);
    for (index_t i = p.protect + (p.protect % 2); i < n; i += 2)  // A tokens from the first even ≥ protect
      if (!merged[static_cast<std::size_t>(i)]) out.rep.push_back(i);
    for (index_t i = p.protect + 1 - (p.protect % 2); i < n; i += 2) out.rep.push_back(i);  // odd ≥ protect
  }

  // Every token's slot: its own, or its partner's.
  out.assign.assign(static_cast<std::size_t>(n), -1);
  for (std::size_t q = 0; q < out.rep.size(); ++q) out.assign[static_cast<std::size_t>(out.rep[q])] = static_cast<std::int64_t>(q);
  for (index_t i = 0; i < n; i += 2)
    if (merged[static_cast<std::size_t>(i)])
      out.assign[static_cast<std::size_t>(i)] = out.assign[static_cast<std::size_t>(2 * partner[static_cast<std::size_t>(i / 2)] + 1)];

  const auto size_of = [&](index_t i) { return in.sizes.empty() ? 1.0 : in.sizes[static_cast<std::size_t>(i)]; };
  const index_t dim = tokens.extent(1);
  for (std::size_t q = 0; q < out.rep.size(); ++q) {
    const std::int64_t rep = out.rep[q];
    double total = 0;
    std::vector<double> sum(static_cast<std::size_t>(dim), 0.0);
    for (index_t i = 0; i < n; ++i) {
      if (out.assign[static_cast<std::size_t>(i)] != static_cast<std::int64_t>(q)) continue;
      total += size_of(i);
      for (index_t c = 0; c < dim; ++c) sum[static_cast<std::size_t>(c)] += size_of(i) * to_float(tokens(i, c));
    }
    out.sizes.push_back(total);
    for (double s : sum) out.tokens.push_back(s / total);
    out.source.push_back(in.source.empty() ? rep : in.source[static_cast<std::size_t>(rep)]);
    if (in.positions.empty()) {
      const index_t hw = grid.height * grid.width;
      out.positions.push_back(static_cast<std::int32_t>(rep / hw));
      out.positions.push_back(static_cast<std::int32_t>((rep % hw) / grid.width));
      out.positions.push_back(static_cast<std::int32_t>(rep % grid.width));
    } else {
      for (int c = 0; c < 3; ++c) out.positions.push_back(in.positions[static_cast<std::size_t>(3 * rep + c)]);
    }
  }
  return out;
}

/// The whole of tome decided in double: the oracle's own matching and ranking.
template <class E>
tome_result tome_all(const tome& p, const token_grid& grid, const view<const E, 2>& metric,
                     const view<const E, 2>& tokens, const carried& in = {}) {
  const matching m = match(metric, p.protect);
  return merge_from(p, grid, tokens, in, rank_candidates(m.similarity, p.protect), m.partner);
}

}  // namespace tokred::ref
