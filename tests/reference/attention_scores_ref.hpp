// tests/reference/attention_scores_ref.hpp — the scalar oracles of attention_score and
// fused_attention_score, and the softmax that stands in for a model's eager attention.
//
// Written for obviousness, not speed: double precision throughout, the definitions of the policy
// docs evaluated literally. The CPU backend is compared with these within fp32 rounding bounds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>
#include <tokred/policy/attention_scores.hpp>

namespace tokred::ref {

/// A score in double and a bound on the rounding error of any fp32 evaluation that sums the same
/// terms one at a time (Higham's γ bound, with a margin): |fp32 − score| <= bound.
struct bounded_score {
  double score = 0.0;
  double bound = 0.0;
};

/// attention_score: Σ_layers reduce_heads w[row(j), layer, head, first_key + column(j)].
template <class E>
std::vector<bounded_score> attention_score(const tokred::attention_score& p, const token_grid& grid,
                                           const view<const E, 4>& w) {  // (rows, layers, heads, keys)
  const index_t n = grid.tokens(), per_frame = grid.frame_tokens();
  const index_t layers = w.extent(1), heads = w.extent(2);
  const bool mean = p.heads == head_reduce::mean;
  const double unit = std::ldexp(1.0, -24);  // fp32 unit roundoff
  std::vector<bounded_score> out(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) {
    const index_t row = w.extent(0) == 1 ? 0 : j / per_frame;
    const index_t column = p.first_key + (w.extent(0) == 1 ? j : j % per_frame);
    double total = 0.0, magnitude = 0.0;
    for (index_t l = 0; l < layers; ++l) {
      double sum = 0.0, size = 0.0;
      for (index_t h = 0; h < heads; ++h) {
        sum += static_cast<double>(to_float(w(row, l, h, column)));
        size += std::fabs(static_cast<double>(to_float(w(row, l, h, column))));
      }
      total += mean ? sum / static_cast<double>(heads) : sum;
      magnitude += mean ? size / static_cast<double>(heads) : size;
    }
    out[static_cast<std::size_t>(j)] = {total, 2.0 * static_cast<double>(heads + layers + 2) * unit * magnitude};
  }
  return out;
}

/// softmax_k(scale · query[q, h]·keys[h / G, k]) of one query row and head, in double, into
/// `probs` (keys,): the row maximum subtracted first.
template <class E>
void head_probabilities(const view<const E, 3>& query, const view<const E, 3>& keys, index_t q, index_t h,
                        double scale, std::vector<double>& probs) {
  const index_t dim = query.extent(2), group = query.extent(1) / keys.extent(0), count = keys.extent(1);
  probs.resize(static_cast<std::size_t>(count));
  double top = -INFINITY;
  for (index_t k = 0; k < count; ++k) {
    double dot = 0.0;
    for (index_t c = 0; c < dim; ++c)
      dot += static_cast<double>(to_float(query(q, h, c))) * static_cast<double>(to_float(keys(h / group, k, c)));
    probs[static_cast<std::size_t>(k)] = scale * dot;
    top = std::max(top, scale * dot);
  }
  double z = 0.0;
  for (double& x : probs) z += (x = std::exp(x - top));
  for (double& x : probs) x /= z;
}

/// The softmax attention of each query row over all keys, in double, rounded to fp32: the
/// weights an eager attention layer would hand to attention_score. (queries, heads, keys) row-major.
template <class E>
std::vector<float> softmax_weights(const view<const E, 3>& query,  // (queries, heads, head_dim)
                                   const view<const E, 3>& keys,   // (kv_heads, keys, head_dim)
                                   double scale) {
  const index_t queries = query.extent(0), heads = query.extent(1), count = keys.extent(1);
  std::vector<float> out(static_cast<std::size_t>(queries * heads * count));
  std::vector<double> probs;
  for (index_t q = 0; q < queries; ++q)
    for (index_t h = 0; h < heads; ++h) {
      head_probabilities(query, keys, q, h, scale, probs);
      for (index_t k = 0; k < count; ++k)
        out[static_cast<std::size_t>((q * heads + h) * count + k)] = static_cast<float>(probs[static_cast<std::size_t>(k)]);
    }
  return out;
}

/// fused_attention_score: Σ_q Σ_h softmax_k(scale · q·k)[first_key + j] / (Q·H or Q), in double.
template <class E>
std::vector<double> fused_attention_score(const tokred::fused_attention_score& p, const token_grid& grid,
                                          const view<const E, 3>& query,  // (queries, heads, head_dim)
                                          const view<const E, 3>& keys) {  // (kv_heads, keys, head_dim)
  const index_t queries = query.extent(0), heads = query.extent(1), dim = query.extent(2), n = grid.tokens();
  const double scale = p.scale != 0.0f ? static_cast<double>(p.scale) : 1.0 / std::sqrt(static_cast<double>(dim));
  std::vector<double> out(static_cast<std::size_t>(n), 0.0), probs;
  for (index_t q = 0; q < queries; ++q)
    for (index_t h = 0; h < heads; ++h) {
      head_probabilities(query, keys, q, h, scale, probs);
      for (index_t j = 0; j < n; ++j) out[static_cast<std::size_t>(j)] += probs[static_cast<std::size_t>(p.first_key + j)];
    }
  const double rows = static_cast<double>(p.heads == head_reduce::mean ? queries * heads : queries);
  for (double& x : out) x /= rows;
  return out;
}

}  // namespace tokred::ref
