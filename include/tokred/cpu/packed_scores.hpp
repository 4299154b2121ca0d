// tokred/cpu/packed_scores.hpp — CPU backend of packed_key_scores: q·k for every key of a
// packed (axis tokens) cache and its full-precision residual, without dequantizing a key.
//
// Per query head and packed group, the query is folded into the group's parameters once:
// `qa_c = q_c·a_c` for each channel and `base = Σ_c q_c·b_c`, with `x̂ = a·code + b` the scheme's
// dequantization. A key's logit is then `base + Σ_c qa_c·code_c`: per channel one shift, one
// mask, one conversion and one multiply-add, reading bits/16 of the bytes an fp16 key takes.
// SIMD lanes hold channels (the packed words of 8 or 16 channels are one load); each logit is a
// lane-wise sum then one horizontal add, in the same order on every share count.
//
// Shares split the query heads: [Q·ith/nth, Q·(ith+1)/nth). Workspace: two head_dim rows of
// floats per share (the widened query and its products with the group's scales).
#pragma once

#include <algorithm>
#include <cstddef>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/uniform_quant.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred {
namespace detail {

/// `dim` fp32 values rounded up to whole batches of the architecture.
template <class Arch>
constexpr index_t padded_lanes(index_t dim) noexcept {
  constexpr index_t width = float_batch<Arch>::size;
  return (dim + width - 1) / width * width;
}

/// A share's scratch: the query widened to fp32 and its per-group products, head_dim rounded up
/// to whole batches (the padding lanes stay zero).
struct packed_score_scratch {
  float* query = nullptr;
  float* scaled = nullptr;

  template <class Arch>
  static packed_score_scratch carve(arena& a, const cpu<Arch>& exec, index_t head_dim) {
    const index_t padded = padded_lanes<Arch>(head_dim);
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      packed_score_scratch s;
      s.query = b.take<float>(padded);
      s.scaled = b.take<float>(padded);
      return s;
    });
  }
};

/// The logits of one query row against every packed token of kv head `kv` of `keys` (P tokens):
/// written to `scores(h, j)`, j < P, or added to what is there (`accumulate`). `query` holds the
/// row in fp32, `dim` values then zeros to a whole number of batches; `scaled` is scratch of the
/// same size.
template <kv_scheme S, class Arch, class E>
void packed_logits(const uniform_format& f, bool vidkv_dequant, const float* query, float* scaled, index_t dim,
                   const uniform_packed<const E>& keys, index_t kv, index_t packed, const view<float, 2>& scores,
                   index_t h, bool accumulate) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t width = fb::size;
  for (index_t g = 0; g < packed / f.group; ++g) {
    fb base(0.0f);
    for (index_t c = 0; c < dim; c += width) {
      const index_t n = std::min(width, dim - c);
      group_params<Arch> gp;
      gp.scale = load_lanes<Arch>(&keys.scale(kv, g, c), keys.scale.stride(2), n);
      if constexpr (S == kv_scheme::asymmetric) gp.zero = load_lanes<Arch>(&keys.zero(kv, g, c), keys.zero.stride(2), n);
      const affine_code<Arch> ab = affine_of<S, Arch>(f.bits, vidkv_dequant, gp);
      const fb q = fb::load_aligned(query + c);
      (q * ab.a).store_aligned(scaled + c);
      base = multiply_add<Arch>(q, ab.b, base);
    }
    const float group_base = xsimd::hadd(base);
    const std::uint32_t* words = &keys.codes(kv, g * f.group * f.bits / 32, 0);
    const index_t word_row = keys.codes.stride(1);
    for (index_t t = 0; t < f.group; ++t) {
      fb acc(0.0f);
      for (index_t c = 0; c < dim; c += width) {
        const auto code = code_floats<Arch>(token_codes<Arch>(words + c, word_row, std::min(width, dim - c), t, f.bits));
        acc = multiply_add<Arch>(fb::load_aligned(scaled + c), code, acc);
      }
      float& out = scores(h, g * f.group + t);
      out = (accumulate ? out : 0.0f) + (xsimd::hadd(acc) + group_base);
    }
  }
}

/// Row h of `rows` widened to fp32 into `out` (padded_lanes(dim) floats; the padding is zero).
template <class Arch, class E>
void widen_row(const view<const E, 2>& rows, index_t h, float* out) noexcept {
  constexpr index_t width = float_batch<Arch>::size;
  const index_t dim = rows.extent(1);
  for (index_t c = 0; c < dim; c += width)
    load_lanes<Arch>(&rows(h, c), rows.stride(1), std::min(width, dim - c)).store_aligned(out + c);
}

/// The residual keys' logits: `scores(h, first + r)` = q·k_r for each of kv head `kv`'s rows, the
/// canonical fp32-accumulated dot product.
template <class Arch, class E>
void residual_logits(const view<const E, 2>& queries, index_t h, const view<const E, 3>& residual, index_t kv,
                     const view<float, 2>& scores, index_t first) noexcept {
  for (index_t r = 0; r < residual.extent(1); ++r)
    scores(h, first + r) = combine<Arch, pair_op::dot>(&queries(h, 0), queries.stride(1), &residual(kv, r, 0),
                                                       residual.stride(2), queries.extent(1));
}

/// The shape facts of a packed score call: kv heads, packed tokens P (scale rows × group) and
/// head_dim from the queries.
template <class E>
kv_problem packed_score_problem(const packed_key_scores& p, const packed_score_inputs<E>& in) noexcept {
  return {in.keys.scale.extent(0), in.keys.scale.extent(1) * p.format.group, in.queries.extent(1)};
}

/// Every check, in the documented order.
template <class Arch, class E>
status check_packed_scores(const cpu<Arch>& exec, const packed_key_scores& p, const packed_score_inputs<E>& in,
                           const packed_score_outputs<>& out, const workspace& ws) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = packed_score_problem(p, in);
  const index_t q_heads = in.queries.extent(0), residual = in.residual.extent(1);
  if (prob.heads == 0 || q_heads == 0 || prob.head_dim == 0 || prob.tokens + residual == 0) return status::empty_input;
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.queries, {q_heads, prob.head_dim}); s != status::ok) return s;
  if (q_heads % prob.heads != 0) return status::shape_mismatch;
  if (status s = check_packed(in.keys, p.format, prob); s != status::ok) return s;
  if (status s = check_view_or_empty(in.residual, {prob.heads, residual, prob.head_dim}); s != status::ok) return s;
  if (status s = check_view(out.scores, {q_heads, prob.tokens + residual}); s != status::ok) return s;
  if (overlaps_any(out.scores, in.queries, in.keys.codes, in.keys.scale, in.keys.zero, in.residual))
    return status::aliasing;
  arena counter;
  packed_score_scratch::carve(counter, exec, prob.head_dim);
  return ws.bytes >= counter.used() ? status::ok : status::workspace_too_small;
}

}  // namespace detail

/// Scores from packed keys on CPU: fp32/fp16/bf16 caches and queries of the same type, any
/// strides on queries, scales, zero points and the residual; codes with inner stride 1.
template <class Arch>
struct backend<packed_key_scores, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const packed_key_scores&, const kv_problem& prob) noexcept {
    detail::arena counter;
    detail::packed_score_scratch::carve(counter, exec, prob.head_dim);
    return counter.used();
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const packed_key_scores& p, const packed_score_inputs<E>& in,
                      const packed_score_outputs<>& out, workspace ws) noexcept {
    if (status s = detail::check_packed_scores(exec, p, in, out, ws); s != status::ok) return s;
    const uniform_format& f = p.format;
    const kv_problem prob = detail::packed_score_problem(p, in);
    const index_t dim = prob.head_dim, q_heads = in.queries.extent(0), per_kv = q_heads / prob.heads;
    detail::arena carver(ws);
    const detail::packed_score_scratch scratch = detail::packed_score_scratch::carve(carver, exec, dim);
    const index_t h0 = detail::share_begin(q_heads, exec.ith, exec.nth);
    const index_t h1 = detail::share_begin(q_heads, exec.ith + 1, exec.nth);
    detail::with_scheme(f.scheme, [&](auto scheme) {
      constexpr kv_scheme S = decltype(scheme)::value;
      for (index_t h = h0; h < h1; ++h) {
        const index_t kv = h / per_kv;
        detail::widen_row<Arch>(in.queries, h, scratch.query);
        detail::packed_logits<S, Arch>(f, p.vidkv_dequant, scratch.query, scratch.scaled, dim, in.keys, kv,
                                       prob.tokens, out.scores, h, false);
        detail::residual_logits<Arch>(in.queries, h, in.residual, kv, out.scores, prob.tokens);
      }
    });
    return status::ok;
  }
};

}  // namespace tokred
