// tokred/policy/uniform_quant.hpp — uniform grouped quantization of a KV cache (KIVI, VidKV):
// 1–8-bit codes packed into 32-bit words, one scale (and zero point) per group, and attention
// scores straight from the packed keys.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/uniform_quant.hpp>. Compiles with the
// standard library alone.
//
// A group is `group` consecutive values of a `(heads, tokens, head_dim)` cache, running along
// one axis:
//
//   axis       a group is                          codes (uint32)                   scale, zero
//   tokens     `group` tokens of one channel       (heads, tokens·bits/32, head_dim) (heads, tokens/group, head_dim)
//   channels   `group` channels of one token       (heads, tokens, head_dim·bits/32) (heads, tokens, head_dim/group)
//
// (KIVI quantizes keys along tokens, "per channel", and values along channels, "per token";
// VidKV quantizes both along tokens.) Codes are a little-endian bit stream along the group's
// axis: the code of the i-th value of a run lies at bits [i·bits, i·bits + bits) of the run,
// word w holding stream bits [32w, 32w + 32). With bits = 1, 2, 4 or 8 that is KIVI's and VidKV's
// layout exactly (32/bits codes per word, the first in the least significant bits); with 3, 5, 6
// or 7 bits a code may straddle two words. `group` is a multiple of 32, so a group starts on a
// word. Codes along tokens are words of one channel, `head_dim` words side by side per row of
// words (KIVI's `[B, H, T/(32/b), D]`): the layout a score kernel reads 32/bits tokens at a time.
//
// Scale and zero point are stored in the cache's element type, as KIVI stores them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {

/// The axis a uniform quantization group runs along.
enum class kv_group_axis {
  tokens,    ///< `group` consecutive tokens of one channel ("per channel": KIVI keys, VidKV)
  channels,  ///< `group` consecutive channels of one token ("per token": KIVI values)
};

/// How the values of a group become codes, with `s` the group's scale and `z` its zero point.
/// `x̂` is the dequantized value; `round` is round-half-to-even (PyTorch's `round`).
enum class kv_scheme {
  /// min–max, KIVI and VidKV at 2–8 bits: `s = (max − min)/(2^b − 1)`, `z = min`,
  /// `q = clamp(round((x − z)/s), 0, 2^b − 1)`, `x̂ = q·s + z`.
  asymmetric,
  /// absmax, b ≥ 2: `m = 2^(b−1) − 1`, `s = max|x|/m`, `q = clamp(round(x/s), −m, m) + 2^(b−1)`,
  /// `x̂ = (q − 2^(b−1))·s`. No zero point.
  symmetric,
  /// 1 bit (VidKV): `q = (x ≥ 0)`, `s = mean|x|`, `x̂ = (2q − 1)·s`, the sign times the
  /// L2-optimal scale as VidKV's paper writes it. `vidkv_dequant` gives VidKV's code instead:
  /// `x̂ = q·s ∈ {0, s}`. No zero point.
  sign,
  /// 1.58 bits in 2-bit codes (VidKV): `s = mean|x|`, `τ = s/2`, `q = 2` if `x > τ`, `0` if
  /// `x < −τ`, else `1`; `x̂ = (q − 1)·s`. `vidkv_dequant` gives VidKV's code instead:
  /// `x̂ = q − 1 ∈ {−1, 0, 1}`, the scale ignored. No zero point.
  ternary,
};

/// The packed format: code width, group size, axis and scheme.
struct uniform_format {
  int bits = 2;        ///< code width, 1 … 8; `sign` needs 1 and `ternary` 2
  index_t group = 32;  ///< values per group: a multiple of 32 in [32, 256] (KIVI: 32, 64, 128)
  kv_group_axis axis = kv_group_axis::tokens;
  kv_scheme scheme = kv_scheme::asymmetric;
};

/// Quantizes a `(heads, tokens, head_dim)` cache to the packed `format`.
///
/// Arithmetic: fp32, every step rounded once, in the order the scheme's formula reads
/// (`x − z`, then `/ s`); the scale is rounded to the element type before the codes are formed
/// from it, so dequantizing reproduces the values the codes were chosen for. The group's mean
/// (`sign`, `ternary`) sums |x| in fp32 in group order. With `round_each_op` every intermediate is
/// also rounded to the cache's element type — PyTorch's arithmetic on fp16 and bf16 tensors,
/// which KIVI runs in — so fp16 codes are bit-identical to KIVI's; without it they differ only
/// where a value lies within an fp16 rounding of a half step (the fp32 result is the more
/// accurate). For fp32 caches the switch changes nothing.
///
/// Documented results: a group holding NaN or ±inf gets scale and zero NaN and codes 0 (it
/// dequantizes to NaN); a constant group (`max = min`, or all zero for the absmax and mean
/// schemes) gets scale 0 and codes 0 (`symmetric`: the middle code; `sign` and `ternary`: code
/// 1), and dequantizes exactly to its value, where KIVI divides by zero. A finite group whose
/// scale overflows the element type (an fp16 range past 65504 at 1 bit, an fp32 range past
/// FLT_MAX) stores an infinite scale and dequantizes to NaN (0·inf), as KIVI's arithmetic does.
struct uniform_quantize {
  uniform_format format;
  bool round_each_op = false;  ///< compatibility: round every step to the element type (PyTorch fp16/bf16)
};

/// Dequantizes a packed cache to a `(heads, tokens, head_dim)` cache of any element type.
/// `q·s + z` rounds the product, then the sum (never one fused multiply-add), in fp32, then to
/// the output type; `round_each_op` also rounds the product to the format's element type first,
/// as PyTorch does in fp16.
struct uniform_dequantize {
  uniform_format format;
  bool round_each_op = false;  ///< compatibility: as uniform_quantize::round_each_op
  bool vidkv_dequant = false;  ///< compatibility: VidKV's `sign` ({0, s}) and `ternary` (q − 1)
};

/// Attention logits `q·k` of each query row with every key of a packed (axis `tokens`) key
/// cache, without materializing the keys, followed by the full-precision keys of a residual
/// window: `scores(h, j)` for packed token j < P, then residual token j − P. Unscaled (multiply by
/// 1/√head_dim yourself). Query head h reads kv head `h / (q_heads / kv_heads)` (grouped-query
/// attention). Each packed group contributes `Σ_c (q_c·a_c)·code + Σ_c q_c·b_c` with `x̂ = a·q + b`
/// the scheme's dequantization, in fp32: equal to the dot product of the query with the
/// dequantized keys within fp32 rounding (not bit-identical: the keys are never rounded to E).
struct packed_key_scores {
  uniform_format format;       ///< the keys' format; `axis` must be `tokens`
  bool vidkv_dequant = false;  ///< compatibility: as uniform_dequantize::vidkv_dequant
};

/// A packed cache: codes, scale and zero point. `E` is the cache's element type, const for a
/// packed cache that is read. `zero` is read and written by the `asymmetric` scheme only (for the
/// others it may be an empty view).
template <class E, class Space = host_space>
struct uniform_packed {
  using space = Space;
  using word = std::conditional_t<std::is_const_v<E>, const std::uint32_t, std::uint32_t>;
  view<word, 3, Space> codes;  // see the layout table above; inner stride 1
  view<E, 3, Space> scale;
  view<E, 3, Space> zero;
};

/// The same packed cache, read-only.
template <class E, class Space>
constexpr uniform_packed<const E, Space> read_only(const uniform_packed<E, Space>& p) noexcept {
  return {p.codes, p.scale, p.zero};
}

namespace detail {

/// The first `tokens` tokens of a packed cache of `bits`-bit codes, held in `groups` groups:
/// tokens·bits/32 code rows and `groups` scale and zero rows (what a score call reads).
template <class E, class Space>
constexpr uniform_packed<const E, Space> packed_prefix(const uniform_packed<const E, Space>& p, int bits,
                                                       index_t tokens, index_t groups) noexcept {
  return {token_range(p.codes, 0, tokens * bits / 32), token_range(p.scale, 0, groups), token_range(p.zero, 0, groups)};
}

}  // namespace detail

/// The extents of a 3-D view: (heads, rows, columns).
struct kv_extents {
  index_t heads = 0;
  index_t rows = 0;
  index_t cols = 0;
};

/// Extents of the packed codes for a cache (see the layout table).
constexpr kv_extents uniform_code_extents(const uniform_format& f, const kv_problem& p) noexcept {
  if (f.axis == kv_group_axis::tokens) return {p.heads, p.tokens * f.bits / 32, p.head_dim};
  return {p.heads, p.tokens, p.head_dim * f.bits / 32};
}

/// Extents of the scale and zero point for a cache (see the layout table).
constexpr kv_extents uniform_param_extents(const uniform_format& f, const kv_problem& p) noexcept {
  if (f.axis == kv_group_axis::tokens) return {p.heads, f.group > 0 ? p.tokens / f.group : 0, p.head_dim};
  return {p.heads, p.tokens, f.group > 0 ? p.head_dim / f.group : 0};
}

/// Inputs of `uniform_quantize`: the float cache (kv_inputs). Outputs: a `uniform_packed<E>`.
/// Inputs of `uniform_dequantize`: a `uniform_packed<const E>`. Outputs: kv_outputs.

/// Inputs of `packed_key_scores`.
template <class E, class Space = host_space>
struct packed_score_inputs {
  using space = Space;
  view<const E, 2, Space> queries;      // (q_heads, head_dim)
  uniform_packed<const E, Space> keys;  // P packed tokens, axis tokens
  view<const E, 3, Space> residual;     // (kv_heads, R, head_dim); R may be 0 (an empty view)
};

/// Outputs of `packed_key_scores`.
template <class Space = host_space>
struct packed_score_outputs {
  using space = Space;
  view<float, 2, Space> scores;  // (q_heads, P + R)
};

namespace detail {

/// The largest group, in values: one group's values or word rows fit a stack array.
inline constexpr index_t uniform_max_group = 256;

/// A group size the quantizers take: a multiple of 32 in [32, uniform_max_group].
constexpr bool valid_uniform_group(index_t g) noexcept { return g >= 32 && g <= uniform_max_group && g % 32 == 0; }

/// The format's own domain: bits, group, and the schemes' constraints.
constexpr bool valid_uniform_format(const uniform_format& f) noexcept {
  if (f.bits < 1 || f.bits > 8 || !valid_uniform_group(f.group)) return false;
  switch (f.scheme) {
    case kv_scheme::asymmetric: return true;
    case kv_scheme::symmetric: return f.bits >= 2;
    case kv_scheme::sign: return f.bits == 1;
    case kv_scheme::ternary: return f.bits == 2;
  }
  return false;
}

constexpr status check_uniform(const uniform_format& f, const kv_problem& p) noexcept {
  if (status s = check_kv_problem(p); s != status::ok) return s;
  if (!valid_uniform_format(f)) return status::invalid_parameter;
  const index_t along = f.axis == kv_group_axis::tokens ? p.tokens : p.head_dim;
  return along % f.group == 0 ? status::ok : status::invalid_parameter;
}

/// The packed views' checks, in order: codes (extents, null pointer, inner stride 1, 4-byte
/// alignment), scale, then zero for the asymmetric scheme. Views without elements may be null
/// (nothing packed yet).
template <class E, class Space>
status check_packed(const uniform_packed<E, Space>& packed, const uniform_format& f,
                    const kv_problem& p) noexcept {
  const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
  if (status st = check_view_or_empty(packed.codes, {c.heads, c.rows, c.cols}); st != status::ok) return st;
  if (packed.codes.stride(2) != 1 && !packed.codes.empty()) return status::shape_mismatch;
  if (status st = check_alignment(packed.codes); st != status::ok) return st;
  if (status st = check_view_or_empty(packed.scale, {s.heads, s.rows, s.cols}); st != status::ok) return st;
  if (f.scheme != kv_scheme::asymmetric) return status::ok;
  return check_view_or_empty(packed.zero, {s.heads, s.rows, s.cols});
}

/// Shared checks of the three policies' cache sides, in the documented order: exec, the
/// format against the problem, the float cache, the packed views, then overlaps.
template <class Exec, class Ef, class Ep>
status check_uniform_io(const Exec& exec, const uniform_format& f, const Ef& cache,
                        const Ep& packed) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(cache);
  if (status s = check_uniform(f, prob); s != status::ok) return s;
  if (status s = check_view(cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok) return s;
  if (status s = check_packed(packed, f, prob); s != status::ok) return s;
  const bool zero_used = f.scheme == kv_scheme::asymmetric;
  if (overlaps_any(cache, packed.codes, packed.scale) || may_overlap(packed.codes, packed.scale) ||
      (zero_used && overlaps_any(packed.zero, cache, packed.codes, packed.scale)))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

/// `ok`, or why the format does not fit the cache: `shape_mismatch` (a negative extent),
/// `empty_input` (no rows or no channels), `invalid_parameter` (bits outside 1 … 8, a group that
/// is not a multiple of 32 in [32, 256], `symmetric` below 2 bits, `sign` not 1 bit, `ternary`
/// not 2 bits, or tokens — axis `tokens` — or head_dim — axis `channels` — not a multiple of the
/// group).
constexpr status can_implement(const uniform_quantize& p, const kv_problem& prob) noexcept {
  return detail::check_uniform(p.format, prob);
}
constexpr status can_implement(const uniform_dequantize& p, const kv_problem& prob) noexcept {
  return detail::check_uniform(p.format, prob);
}

/// As for uniform_dequantize, for the packed part of `prob` (its `tokens` are the packed tokens
/// P, which may be 0 when the residual holds keys), plus `invalid_parameter` for axis `channels`.
constexpr status can_implement(const packed_key_scores& p, const kv_problem& prob) noexcept {
  if (p.format.axis != kv_group_axis::tokens) return status::invalid_parameter;
  if (prob.tokens == 0 && prob.heads > 0 && prob.head_dim > 0)
    return detail::valid_uniform_format(p.format) ? status::ok : status::invalid_parameter;
  return detail::check_uniform(p.format, prob);
}

namespace detail {

/// The kv heads of a score call: the packed part's (its scale view's), or the residual's when
/// the packed views have no heads (nothing packed; default-constructed views included).
template <class Scale, class Residual>
index_t score_kv_heads(const Scale& scale, const Residual& residual) noexcept {
  return scale.extent(0) > 0 || residual.extent(1) == 0 ? scale.extent(0) : residual.extent(0);
}

/// The shape facts of a packed score call: kv heads (`score_kv_heads`), packed tokens P (scale
/// rows × group) and head_dim from the queries.
template <class E, class Space>
kv_problem packed_score_problem(const packed_key_scores& p, const packed_score_inputs<E, Space>& in) noexcept {
  return {score_kv_heads(in.keys.scale, in.residual), in.keys.scale.extent(1) * p.format.group, in.queries.extent(1)};
}

/// The shape facts every logits call checks first: `shape_mismatch` for a negative extent,
/// `empty_input` without kv heads, query heads or channels, or without any key.
constexpr status check_score_problem(const kv_problem& prob, index_t q_heads, index_t residual) noexcept {
  if (prob.heads < 0 || prob.tokens < 0 || prob.head_dim < 0 || q_heads < 0 || residual < 0) return status::shape_mismatch;
  if (prob.heads == 0 || q_heads == 0 || prob.head_dim == 0 || prob.tokens + residual == 0) return status::empty_input;
  return status::ok;
}

/// Every check of a packed score call but the workspace, in the documented order: exec, the
/// shapes, the format, queries, grouped-query heads, packed keys, residual, scores, overlaps.
template <class Exec, class E, class Space>
status check_packed_score_call(const Exec& exec, const packed_key_scores& p, const packed_score_inputs<E, Space>& in,
                               const packed_score_outputs<Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = packed_score_problem(p, in);
  const index_t q_heads = in.queries.extent(0), residual = in.residual.extent(1);
  if (status s = check_score_problem(prob, q_heads, residual); s != status::ok) return s;
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.queries, {q_heads, prob.head_dim}); s != status::ok) return s;
  if (q_heads % prob.heads != 0) return status::shape_mismatch;
  if (prob.tokens > 0)  // nothing packed: the packed views are not read
    if (status s = check_packed(in.keys, p.format, prob); s != status::ok) return s;
  // No residual: an empty view, default-constructed ones included.
  if (status s = check_optional_view(in.residual, {prob.heads, residual, prob.head_dim}); s != status::ok) return s;
  if (status s = check_view(out.scores, {q_heads, prob.tokens + residual}); s != status::ok) return s;
  if (overlaps_any(out.scores, in.queries, in.keys.codes, in.keys.scale, in.keys.zero, in.residual))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

}  // namespace tokred
