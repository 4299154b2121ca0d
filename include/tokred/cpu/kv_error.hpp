// tokred/cpu/kv_error.hpp — how far a reconstructed KV cache is from its reference: element
// error statistics, and the KL divergence between the attention distributions the two key caches
// give the same queries.
//
// Host metrics for a benchmark harness, not policies: plain functions, single-threaded, no
// allocation, no exceptions. Both compare a reference `(heads, tokens, head_dim)` cache with a
// reconstruction of the same extents (e.g. `ggml_quantize` then `ggml_dequantize`, see
// <tokred/cpu/ggml_blocks.hpp>); the two may have different element types and any strides.
//
// Everything is computed in double, in a fixed order (heads, then tokens, then channels; each
// function says how it sums), so one build gives the same bits on every run and for every memory
// layout of the inputs. The last bits may differ between builds whose compilers fuse
// multiply-adds differently and between libm versions (exp, log).
// Double, not the fp32 kernels of <tokred/cpu/similarity.hpp>: the metric must resolve changes
// as small as fp16 rounding (about 5e-4 relative per element), which fp32 dot products of a few
// hundred terms blur.
#pragma once

#include <cmath>
#include <limits>

#include "tokred/core/checks.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/attention_scores.hpp"  // detail::valid_scale
#include "tokred/policy/kv_quant.hpp"  // kv_problem and its checks

namespace tokred {

/// Element-wise error of a reconstructed cache against its reference, e = ref − rec per element.
///
/// A pair in which either value is NaN or ±inf (even an infinity reconstructed exactly) is
/// counted in `non_finite` and makes `mse` and `max_abs` NaN: a reconstruction that loses a
/// value has no meaningful mean error, and a harness printing only `mse` still sees it.
struct kv_error_stats {
  double mse = 0.0;        ///< Σ e² / (heads·tokens·head_dim)
  double max_abs = 0.0;    ///< max |e|
  index_t non_finite = 0;  ///< pairs holding a NaN or an infinity
};

/// The attention KL divergence over all (query head, query) rows, see `attention_kl`.
///
/// A row whose scores hold a NaN or ±inf (its query or a key it reads holds one) is counted in
/// `non_finite` and makes `mean` and `max` NaN.
struct attention_kl_stats {
  double mean = 0.0;       ///< mean of the rows' KL(P‖P̂), in nats
  double max = 0.0;        ///< the largest row KL
  index_t non_finite = 0;  ///< rows with a non-finite score
};

namespace detail {

/// Σ a[i]·b[i] in double, in four interleaved partial sums (i mod 4, ascending), added as
/// (s0 + s1) + (s2 + s3): a fixed order with four independent add chains, twice as fast as
/// one (fp32 rows, head_dim 128: 1.4 → 0.7 ns per term). Each product of two floats is
/// exact in double, so the sum has the same bits whether or not the compiler fuses multiply-adds.
template <class A, class B>
double dot_double(const A* a, index_t sa, const B* b, index_t sb, index_t n) noexcept {
  const auto term = [&](index_t i) {
    return static_cast<double>(to_float(a[i * sa])) * static_cast<double>(to_float(b[i * sb]));
  };
  double s[4] = {0.0, 0.0, 0.0, 0.0};
  index_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int r = 0; r < 4; ++r) s[r] += term(i + r);
  for (int r = 0; i < n; ++i, ++r) s[r] += term(i);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/// The checks of `kv_error`, in its documented order.
template <class R, class Q>
status check_kv_error(const view<R, 3>& reference, const view<Q, 3>& reconstructed) noexcept {
  const kv_problem p = kv_problem_of(reference);
  if (status s = check_kv_problem(p); s != status::ok) return s;
  if (status s = check_view(read_only(reference), {p.heads, p.tokens, p.head_dim}); s != status::ok) return s;
  return check_view(read_only(reconstructed), {p.heads, p.tokens, p.head_dim});
}

/// The checks of `attention_kl`, in its documented order.
template <class Q, class K, class KH>
status check_attention_kl(const view<Q, 3>& queries, const view<K, 3>& keys,
                          const view<KH, 3>& keys_hat, float scale) noexcept {
  if (!valid_scale(scale)) return status::invalid_parameter;
  const kv_problem p = kv_problem_of(keys);
  if (status s = check_kv_problem(p); s != status::ok) return s;
  const index_t q_heads = queries.extent(0), n_queries = queries.extent(1);
  if (q_heads < 0 || n_queries < 0 || queries.extent(2) != p.head_dim || q_heads % p.heads != 0)
    return status::shape_mismatch;
  if (q_heads == 0 || n_queries == 0) return status::empty_input;
  if (status s = check_view(read_only(keys), {p.heads, p.tokens, p.head_dim}); s != status::ok) return s;
  if (status s = check_view(read_only(keys_hat), {p.heads, p.tokens, p.head_dim}); s != status::ok) return s;
  return check_view(read_only(queries), {q_heads, n_queries, p.head_dim});
}

/// KL(P‖P̂) of one row from its unscaled dot products d_i = q·k_i, d̂_i = q·k̂_i, scale σ:
/// P = softmax(σ·d), P̂ = softmax(σ·d̂). With m, m̂ the maxima, w_i = e^{σ(d_i − m)},
/// Z = Σ w_i, Ẑ = Σ e^{σ(d̂_i − m̂)} (every exponent ≤ 0, so nothing overflows):
///
///   log p_i − log p̂_i = σ(d_i − d̂_i) − σ(m − m̂) − log Z + log Ẑ
///   KL = σ·Σ w_i (d_i − d̂_i) / Z + σ(m̂ − m) + log(Ẑ / Z)
///
/// Two passes over the keys (maxima, then sums), recomputing the dot products rather than storing
/// them. Identical inputs give exactly 0: every term is then 0 or log 1. Rounding can leave
/// −1e−16 where the exact value is 0; the result is clamped at 0. NaN for a non-finite score.
template <class Q, class K, class KH>
double row_kl(const Q* q, index_t sq, const view<K, 3>& keys, const view<KH, 3>& keys_hat,
              index_t g, double sigma) noexcept {
  const index_t tokens = keys.extent(1), dim = keys.extent(2);
  const auto dots = [&](index_t t, double& d, double& d_hat) {
    d = dot_double(q, sq, &keys(g, t, 0), keys.stride(2), dim);
    d_hat = dot_double(q, sq, &keys_hat(g, t, 0), keys_hat.stride(2), dim);
  };
  double m = -std::numeric_limits<double>::infinity(), m_hat = m;
  for (index_t t = 0; t < tokens; ++t) {
    double d, d_hat;
    dots(t, d, d_hat);
    if (!std::isfinite(d) || !std::isfinite(d_hat)) return std::numeric_limits<double>::quiet_NaN();
    m = d > m ? d : m;
    m_hat = d_hat > m_hat ? d_hat : m_hat;
  }
  double z = 0.0, z_hat = 0.0, weighted = 0.0;
  for (index_t t = 0; t < tokens; ++t) {
    double d, d_hat;
    dots(t, d, d_hat);
    const double w = std::exp(sigma * (d - m));
    z += w;
    z_hat += std::exp(sigma * (d_hat - m_hat));
    weighted += w * (d - d_hat);
  }
  const double kl = sigma * weighted / z + sigma * (m_hat - m) + std::log(z_hat / z);
  return kl < 0.0 ? 0.0 : kl;
}

}  // namespace detail

/// Element error of `reconstructed` against `reference`: mean squared error, largest absolute
/// error and the count of non-finite pairs (see `kv_error_stats`). fp16/bf16 values are widened
/// exactly; e is formed and squared in double. The squares of each (head, token) row are summed
/// over channels ascending in one double, and the row sums are added in (head, token) order.
///
/// `reference`, `reconstructed`: `(heads, tokens, head_dim)`, element types `float`, `f16` or
/// `bf16` (each its own), const or not, any strides (negative too).
///
/// Checks, first failure returned, `out` written only on `ok`: the reference's extents (a negative
/// one: `shape_mismatch`; a zero: `empty_input`), its data (`null_pointer`), then the
/// reconstruction's extents against the reference's (`shape_mismatch`) and its data
/// (`null_pointer`). Cost: one pass over both caches.
template <class R, class Q>
status kv_error(const view<R, 3>& reference, const view<Q, 3>& reconstructed,
                kv_error_stats& out) noexcept {
  static_assert(is_element_v<R> && is_element_v<Q>, "tokred: element types are float, f16 and bf16");
  if (status s = detail::check_kv_error(reference, reconstructed); s != status::ok) return s;
  const index_t heads = reference.extent(0), tokens = reference.extent(1), dim = reference.extent(2);
  const index_t sr = reference.stride(2), sq = reconstructed.stride(2);
  double sum = 0.0, max_abs = 0.0;
  index_t non_finite = 0;
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < tokens; ++t) {
      const R* a = &reference(h, t, 0);
      const Q* b = &reconstructed(h, t, 0);
      double row = 0.0;
      for (index_t c = 0; c < dim; ++c) {
        // Finite floats give a finite e; a NaN or an infinity on either side does not.
        const double e = static_cast<double>(to_float(a[c * sr])) - static_cast<double>(to_float(b[c * sq]));
        non_finite += std::isfinite(e) ? 0 : 1;
        row += e * e;
        max_abs = std::fabs(e) > max_abs ? std::fabs(e) : max_abs;
      }
      sum += row;
    }
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  out = non_finite == 0
            ? kv_error_stats{sum / static_cast<double>(heads * tokens * dim), max_abs, 0}
            : kv_error_stats{nan, nan, non_finite};
  return status::ok;
}

/// How much reconstructing the keys changes attention: for every query head h and query i,
/// KL(P‖P̂) with
///
///   P = softmax_t(σ · queries[h, i] · keys[g, t]),  P̂ = the same over keys_hat[g, t],
///   g = h / (q_heads / kv_heads)   (grouped-query attention, as HF's `repeat_kv` lays heads out)
///
/// and its mean and maximum over the q_heads·n_queries rows (see `attention_kl_stats`). Each row
/// is computed in double with its maxima subtracted (no overflow for any finite input), in two
/// passes over the keys; the row KLs are averaged in (head, query) order. Every query sees every
/// key (no causal mask: pass exactly the keys a query attends to). RoPE, if any, already applied.
///
/// `queries`: `(q_heads, n_queries, head_dim)`; `keys`, `keys_hat`: `(kv_heads, tokens,
/// head_dim)`, q_heads a multiple of kv_heads. Element types `float`, `f16` or `bf16` (each its
/// own), const or not, any strides (negative too). `scale` σ > 0 multiplies the logits; 0 (the
/// default) means 1/√head_dim, as `fused_attention_score` reads it.
///
/// Checks, first failure returned, `out` written only on `ok`: `scale` negative, infinite or NaN
/// (`invalid_parameter`); the keys' extents (a negative one: `shape_mismatch`; no heads, tokens or
/// channels: `empty_input`); the queries' extents (negative, another head_dim, or q_heads not a
/// multiple of kv_heads: `shape_mismatch`; no heads or queries: `empty_input`); then the data of
/// keys (`null_pointer`), keys_hat (`shape_mismatch` against keys, then `null_pointer`) and queries
/// (`null_pointer`). Cost: 4·q_heads·n_queries·tokens·head_dim multiply-adds, O(1) memory.
template <class Q, class K, class KH>
status attention_kl(const view<Q, 3>& queries, const view<K, 3>& keys, const view<KH, 3>& keys_hat,
                    attention_kl_stats& out, float scale = 0.0f) noexcept {
  static_assert(is_element_v<Q> && is_element_v<K> && is_element_v<KH>,
                "tokred: element types are float, f16 and bf16");
  if (status s = detail::check_attention_kl(queries, keys, keys_hat, scale); s != status::ok) return s;
  const index_t q_heads = queries.extent(0), n_queries = queries.extent(1), dim = queries.extent(2);
  const index_t group = q_heads / keys.extent(0);
  const double sigma = scale != 0.0f ? static_cast<double>(scale) : 1.0 / std::sqrt(static_cast<double>(dim));
  double sum = 0.0, max = 0.0;
  index_t non_finite = 0;
  for (index_t h = 0; h < q_heads; ++h)
    for (index_t i = 0; i < n_queries; ++i) {
      const double kl = detail::row_kl(&queries(h, i, 0), queries.stride(2), keys, keys_hat, h / group, sigma);
      non_finite += std::isnan(kl) ? 1 : 0;
      sum += kl;
      max = kl > max ? kl : max;
    }
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  out = non_finite == 0 ? attention_kl_stats{sum / static_cast<double>(q_heads * n_queries), max, 0}
                        : attention_kl_stats{nan, nan, non_finite};
  return status::ok;
}

}  // namespace tokred
