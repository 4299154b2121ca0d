// tests/reference/kv_error_ref.hpp — the scalar oracle of kv_error and attention_kl.
//
// Written for obviousness from the definitions: the caches are read element by element into
// doubles, the attention probabilities of each row are materialised (softmax with the maximum
// subtracted), and KL(P‖P̂) = Σ p_i · log(p_i / p̂_i) is summed term by term. Uses none of tokred's
// detail:: helpers (only the exact widening of core/element.hpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/view.hpp>

namespace tokred::ref {

struct element_error {
  double mse = 0.0;
  double max_abs = 0.0;
};

/// Mean squared and largest absolute difference of two finite caches of the same extents.
template <class A, class B>
element_error kv_error(const view<A, 3>& a, const view<B, 3>& b) {
  double sum = 0.0, max_abs = 0.0, count = 0.0;
  for (index_t h = 0; h < a.extent(0); ++h)
    for (index_t t = 0; t < a.extent(1); ++t)
      for (index_t c = 0; c < a.extent(2); ++c) {
        const double e = static_cast<double>(to_float(a(h, t, c))) - static_cast<double>(to_float(b(h, t, c)));
        sum += e * e;
        max_abs = std::fabs(e) > max_abs ? std::fabs(e) : max_abs;
        count += 1.0;
      }
  return {sum / count, max_abs};
}

/// softmax over tokens of scale · (query row · each key row of kv head g), as probabilities.
template <class Q, class K>
std::vector<double> attention_row(const view<Q, 3>& queries, index_t h, index_t i, const view<K, 3>& keys,
                                  index_t g, double scale) {
  std::vector<double> p(static_cast<std::size_t>(keys.extent(1)));
  double max = -INFINITY;
  for (index_t t = 0; t < keys.extent(1); ++t) {
    double dot = 0.0;
    for (index_t c = 0; c < keys.extent(2); ++c)
      dot += static_cast<double>(to_float(queries(h, i, c))) * static_cast<double>(to_float(keys(g, t, c)));
    p[static_cast<std::size_t>(t)] = scale * dot;
    max = std::fmax(max, scale * dot);
  }
  double z = 0.0;
  for (double& x : p) z += (x = std::exp(x - max));
  for (double& x : p) x /= z;
  return p;
}

/// KL(P‖P̂) of every (query head, query) row, head-major; query head h reads kv head
/// h / (q_heads / kv_heads).
template <class Q, class K, class KH>
std::vector<double> attention_kl_rows(const view<Q, 3>& queries, const view<K, 3>& keys,
                                      const view<KH, 3>& keys_hat, double scale) {
  std::vector<double> rows;
  const index_t group = queries.extent(0) / keys.extent(0);
  for (index_t h = 0; h < queries.extent(0); ++h)
    for (index_t i = 0; i < queries.extent(1); ++i) {
      const std::vector<double> p = attention_row(queries, h, i, keys, h / group, scale);
      const std::vector<double> p_hat = attention_row(queries, h, i, keys_hat, h / group, scale);
      double kl = 0.0;
      for (std::size_t t = 0; t < p.size(); ++t)
        if (p[t] > 0.0) kl += p[t] * std::log(p[t] / p_hat[t]);
      rows.push_back(kl);
    }
  return rows;
}

}  // namespace tokred::ref
