// tokred/cpu/packed_scores.hpp — CPU backend of packed_key_scores: q·k for every key of a
// packed (axis tokens) cache and its full-precision residual, without dequantizing a key.
//
// Per query head and packed group, the query is folded into the group's parameters once:
// `qa_c = q_c·a_c` for each channel and `base = Σ_c q_c·b_c`, with `x̂ = a·code + b` the scheme's
// dequantization. A key's logit is then `base + Σ_c qa_c·code_c`, reading bits/16 of the bytes
// an fp16 key takes. The query heads that read one kv head (grouped-query attention) are scored
// together: a group's codes are decoded once (shift, mask, conversion) into a float tile, and
// each head then costs one load and one multiply-add per channel and token — the arithmetic of
// an fp32 key, on codes decoded once per kv head instead of widened once per query head. SIMD
// lanes hold channels; a batch of tokens is scored at a time, one accumulator per token, and
// their sums are formed together (sums_of_rows), in the same order on every share count.
//
// Shares split the query heads: [Q·ith/nth, Q·(ith+1)/nth). Workspace per share: 8 head_dim rows
// of floats (the widened queries of one run of heads), their products with a group's scales, and
// the decoded group (group × head_dim floats), each row rounded up to whole batches.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

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
  return saturating_round_up(dim, float_batch<Arch>::size);
}

/// Query heads sharing one kv head are scored together, up to this many at a time: a group's
/// codes are decoded once for all of them.
inline constexpr index_t packed_score_heads = 8;

/// A share's scratch: up to packed_score_heads query rows in fp32, their products with a
/// group's scales, and one group's codes decoded to floats (token-major), each row head_dim
/// rounded up to whole batches (the padding lanes stay zero).
struct packed_score_scratch {
  float* query[packed_score_heads] = {};
  float* scaled = nullptr;
  float* tile = nullptr;  // (group, padded head_dim)

  template <class Arch>
  static packed_score_scratch carve(arena& a, const cpu<Arch>& exec, index_t head_dim, index_t group) {
    const index_t padded = padded_lanes<Arch>(head_dim);
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      packed_score_scratch s;
      for (float*& q : s.query) q = b.take<float>(padded);
      s.scaled = b.take<float>(padded);
      s.tile = b.take<float>(group, padded);
      return s;
    });
  }
};

/// The codes of the tokens that share one word row at `words` (32/B of them, B dividing 32), a
/// batch of channels as floats into rows of `tile` `padded` apart: the words are loaded once.
template <int B, class Arch>
TOKRED_FORCE_INLINE void decode_word_row(const std::uint32_t* words, index_t lanes, float* tile, index_t padded) noexcept {
  using ub = u32_batch<Arch>;
  const ub w = load_word_lanes<Arch>(words, lanes);
  const ub mask((1u << B) - 1u);
  for (int j = 0; j < 32 / B; ++j) code_floats<Arch>((w >> (j * B)) & mask).store_aligned(tile + j * padded);
}

/// One group's codes (G tokens × `dim` channels of the word rows at `words`) as floats:
/// `tile[t·padded + c]`, zeros in the padding lanes. Widths that divide 32 load each word once
/// for all its tokens; the others (codes that straddle two words) go token by token.
template <class Arch>
void decode_group(const uniform_format& f, const std::uint32_t* words, index_t word_row, index_t dim, float* tile) noexcept {
  constexpr index_t width = float_batch<Arch>::size;
  const index_t padded = padded_lanes<Arch>(dim), rows = f.group * f.bits / 32;
  const auto whole_words = [&](auto bits) {
    constexpr int B = decltype(bits)::value;
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < dim; c += width)
        decode_word_row<B, Arch>(words + r * word_row + c, std::min(width, dim - c), tile + r * (32 / B) * padded + c,
                                 padded);
  };
  switch (f.bits) {
    case 1: return whole_words(std::integral_constant<int, 1>{});
    case 2: return whole_words(std::integral_constant<int, 2>{});
    case 4: return whole_words(std::integral_constant<int, 4>{});
    case 8: return whole_words(std::integral_constant<int, 8>{});
    default: break;
  }
  for (index_t t = 0; t < f.group; ++t)
    for (index_t c = 0; c < dim; c += width)
      code_floats<Arch>(token_codes<Arch>(words + c, word_row, std::min(width, dim - c), t, f.bits))
          .store_aligned(tile + t * padded + c);
}

/// The logits of `count` query rows, all reading kv head `kv`, against every packed token of
/// `keys` (P tokens): written to `scores(h_first + i, j)`, j < P, or added to what is there
/// (`accumulate`). `queries[i]` holds row i in fp32, `dim` values then zeros to a whole number of
/// batches. Per group, the codes are decoded once into `tile` (G rows of padded floats); then per
/// row the query is folded
/// into the group's parameters (`scaled` = q·a, `base` = Σ q·b, with x̂ = a·code + b) and a
/// batch of tokens is scored at a time: one accumulator per token, lanes over channels, the
/// batch's sums formed together (sums_of_rows).
template <kv_scheme S, class Arch, class E>
void packed_logits(const uniform_format& f, bool vidkv_dequant, const float* const* queries, index_t count,
                   index_t dim, const uniform_packed<const E>& keys, index_t kv, index_t packed, float* scaled,
                   float* tile, const view<float, 2>& scores, index_t h_first, bool accumulate) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t width = fb::size;
  const index_t padded = padded_lanes<Arch>(dim);
  for (index_t g = 0; g < packed / f.group; ++g) {
    decode_group<Arch>(f, &keys.codes(kv, g * f.group * f.bits / 32, 0), keys.codes.stride(1), dim, tile);
    for (index_t i = 0; i < count; ++i) {
      fb base(0.0f);
      for (index_t c = 0; c < dim; c += width) {
        const index_t n = std::min(width, dim - c);
        group_params<Arch> gp;
        gp.scale = load_lanes<Arch>(&keys.scale(kv, g, c), keys.scale.stride(2), n);
        if constexpr (S == kv_scheme::asymmetric) gp.zero = load_lanes<Arch>(&keys.zero(kv, g, c), keys.zero.stride(2), n);
        const affine_code<Arch> ab = affine_of<S, Arch>(f.bits, vidkv_dequant, gp);
        const fb q = fb::load_aligned(queries[i] + c);
        (q * ab.a).store_aligned(scaled + c);
        base = multiply_add<Arch>(q, ab.b, base);
      }
      const fb group_base(xsimd::hadd(base));
      const index_t h = h_first + i;
      for (index_t t0 = 0; t0 < f.group; t0 += width) {  // G is a multiple of 32, so of the width
        fb acc[width];
        for (index_t j = 0; j < width; ++j) acc[j] = fb(0.0f);
        for (index_t c = 0; c < padded; c += width) {
          const fb a = fb::load_aligned(scaled + c);
          for (index_t j = 0; j < width; ++j)
            acc[j] = multiply_add<Arch>(a, fb::load_aligned(tile + (t0 + j) * padded + c), acc[j]);
        }
        fb sums = sums_of_rows<Arch>(acc) + group_base;
        float* out = &scores(h, g * f.group + t0);
        if (accumulate) sums = sums + load_lanes<Arch>(static_cast<const float*>(out), scores.stride(1), width);
        store_lanes<Arch>(out, scores.stride(1), width, sums);
      }
    }
  }
}

/// Calls `run(kv, first, count)` for the query heads [h0, h1) in runs that read one kv head
/// (`per_kv` query heads each), at most packed_score_heads long.
template <class Run>
void for_each_head_run(index_t h0, index_t h1, index_t per_kv, const Run& run) {
  for (index_t h = h0; h < h1;) {
    const index_t kv = h / per_kv;
    const index_t end = std::min({h1, (kv + 1) * per_kv, h + packed_score_heads});
    run(kv, h, end - h);
    h = end;
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

/// Every check, in the documented order: the views (check_packed_score_call), then the
/// workspace.
template <class Arch, class E>
status check_packed_scores(const cpu<Arch>& exec, const packed_key_scores& p, const packed_score_inputs<E>& in,
                           const packed_score_outputs<>& out, const workspace& ws) noexcept {
  if (status s = check_packed_score_call(exec, p, in, out); s != status::ok) return s;
  arena counter;
  packed_score_scratch::carve(counter, exec, in.queries.extent(1), p.format.group);
  return check_workspace(ws, counter.used());
}

}  // namespace detail

/// Scores from packed keys on CPU: fp32/fp16/bf16 caches and queries of the same type, any
/// strides on queries, scales, zero points and the residual; codes with inner stride 1.
template <class Arch>
struct backend<packed_key_scores, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const packed_key_scores& p, const kv_problem& prob) noexcept {
    if (can_implement(p, prob) != status::ok) return 0;
    detail::arena counter;
    detail::packed_score_scratch::carve(counter, exec, prob.head_dim,
                                        detail::valid_uniform_format(p.format) ? p.format.group : 0);
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
    const detail::packed_score_scratch scratch = detail::packed_score_scratch::carve(carver, exec, dim, f.group);
    const index_t h0 = detail::share_begin(q_heads, exec.ith, exec.nth);
    const index_t h1 = detail::share_begin(q_heads, exec.ith + 1, exec.nth);
    detail::with_scheme(f.scheme, [&](auto scheme) {
      detail::for_each_head_run(h0, h1, per_kv, [&](index_t kv, index_t first, index_t count) {
        for (index_t i = 0; i < count; ++i) detail::widen_row<Arch>(in.queries, first + i, scratch.query[i]);
        detail::packed_logits<decltype(scheme)::value, Arch>(f, p.vidkv_dequant, scratch.query, count, dim, in.keys, kv,
                                                             prob.tokens, scratch.scaled, scratch.tile, out.scores,
                                                             first, false);
        for (index_t i = 0; i < count; ++i)
          detail::residual_logits<Arch>(in.queries, first + i, in.residual, kv, out.scores, prob.tokens);
      });
    });
    return status::ok;
  }
};

}  // namespace tokred
