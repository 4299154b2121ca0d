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

/// A share's scratch: the query widened to fp32 and its per-group products, head_dim rounded up
/// to whole batches (the padding lanes stay zero).
struct packed_score_scratch {
  float* query = nullptr;
  float* scaled = nullptr;

  template <class Arch>
  static packed_score_scratch carve(arena& a, const cpu<Arch>& exec, index_t head_dim) {
    const index_t padded = (head_dim + float_batch<Arch>::size - 1) / float_batch<Arch>::size * float_batch<Arch>::size;
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      packed_score_scratch s;
      s.query = b.take<float>(padded);
      s.scaled = b.take<float>(padded);
      return s;
    });
  }
};

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
    using fb = detail::float_batch<Arch>;
    constexpr index_t width = fb::size;
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
      for (index_t c = 0; c < dim; c += width)
        detail::load_lanes<Arch>(&in.queries(h, c), in.queries.stride(1), std::min(width, dim - c))
            .store_aligned(scratch.query + c);
      for (index_t g = 0; g < prob.tokens / f.group; ++g) {
        fb base(0.0f);
        for (index_t c = 0; c < dim; c += width) {
          const index_t n = std::min(width, dim - c);
          detail::group_params<Arch> gp;
          gp.scale = detail::load_lanes<Arch>(&in.keys.scale(kv, g, c), in.keys.scale.stride(2), n);
          if constexpr (S == kv_scheme::asymmetric) gp.zero = detail::load_lanes<Arch>(&in.keys.zero(kv, g, c), in.keys.zero.stride(2), n);
          const detail::affine_code<Arch> ab = detail::affine_of<S, Arch>(f.bits, p.vidkv_dequant, gp);
          const fb q = fb::load_aligned(scratch.query + c);
          (q * ab.a).store_aligned(scratch.scaled + c);
          base = detail::multiply_add<Arch>(q, ab.b, base);
        }
        const float group_base = xsimd::hadd(base);
        const std::uint32_t* words = &in.keys.codes(kv, g * f.group * f.bits / 32, 0);
        const index_t ws_row = in.keys.codes.stride(1);
        for (index_t t = 0; t < f.group; ++t) {
          fb acc(0.0f);
          for (index_t c = 0; c < dim; c += width) {
            const auto code = detail::code_floats<Arch>(
                detail::token_codes<Arch>(words + c, ws_row, std::min(width, dim - c), t, f.bits));
            acc = detail::multiply_add<Arch>(fb::load_aligned(scratch.scaled + c), code, acc);
          }
          out.scores(h, g * f.group + t) = xsimd::hadd(acc) + group_base;
        }
      }
      for (index_t r = 0; r < in.residual.extent(1); ++r)
        out.scores(h, prob.tokens + r) = detail::combine<Arch, detail::pair_op::dot>(
            &in.queries(h, 0), in.queries.stride(1), &in.residual(kv, r, 0), in.residual.stride(2), dim);
    }
    });
    return status::ok;
  }
};

}  // namespace tokred
