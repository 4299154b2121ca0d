// tokred/cpu/uniform_quant.hpp — CPU backends of uniform_quantize, uniform_dequantize and
// packed_key_scores, and the group kernels the KIVI cache (<tokred/cpu/kivi.hpp>) reuses.
//
// One quantization kernel serves both axes: a group's `group` values are rows, read as a SIMD batch
// of lanes each. Along tokens (per channel) the rows are tokens and the lanes channels; along
// channels (per token) the rows are channels and the lanes tokens. Either way every lane's
// arithmetic runs in group order on every ISA. Along tokens, whole batches of contiguous channels
// are read from the rows themselves, twice: the statistics of four batches run together a row at a
// time (a min-max scheme's extremes of 16-bit floats on x86 as ordered integers, the four batches
// two of 16-bit lanes), then each batch's codes (fp16 without a conversion instruction goes through
// the tile instead, widened once). Other batches are widened into an L1 tile (along channels a
// batch of token rows is transposed in registers) and the statistics run down the tile. Codes are
// packed 32 rows at a time with the code width a compile-time constant for 2, 4 and 8 bits (every
// shift and word position known). On x86, along channels at 2, 4 and 8 bits with contiguous
// channels (fp16 only with a conversion instruction), a token's group is read a lane per channel
// instead: its minima and maxima fold across lanes, a batch of tokens at once, and its codes are
// narrowed to bytes and merged into words (a zero extreme or a sum that is not finite sends a batch
// of tokens back to group-order statistics, so the results stay those of group order). Dequantizing
// along tokens unpacks a batch of channels 32 rows at a time the same way. Along channels, with
// contiguous output channels and 2- or 4-bit codes (8-bit ones with the min-max schemes) on AVX2
// and AVX-512, each token's group is unpacked a lane per channel (every lane shifts its word by its
// own amount, or takes its byte; on AVX-512 a 16-lane permute looks a code of up to 4 bits up in
// the group's table of 2^bits values), its parameters read one token at a time; elsewhere a batch
// of tokens is unpacked a lane per token and transposed back to token rows (a token left over, or
// strided channels, unpack one token's group at a time). A partial batch or a strided row goes
// through the same arithmetic lane by lane through small buffers. No workspace but the scores'
// query products; no allocation.
//
// Shares: quantize and dequantize split (head, token group) units along tokens and (head, run
// of up to 256 tokens) along channels; scores split the
// query heads. Every unit's output is its own, so any split gives the same bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/hadamard.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred {
namespace detail {

/// Rounds every lane to storage type E and back (exact for float). Widening as load_operands
/// does is exact here: the narrowing leaves no signalling NaN to quiet.
template <class Arch, class E>
TOKRED_FORCE_INLINE float_batch<Arch> round_to(const float_batch<Arch>& x) noexcept {
  if constexpr (std::is_same_v<E, float>) {
    return x;
  } else {
    alignas(64) E lanes[float_batch<Arch>::size];
    store_floats<Arch>(lanes, x);
    return load_operands<Arch>(static_cast<const E*>(lanes));
  }
}

/// The per-step rounding of a quantizer: none, or to E after every operation.
template <class Arch, class E>
struct step_rounding {
  bool each_op = false;
  TOKRED_FORCE_INLINE float_batch<Arch> operator()(const float_batch<Arch>& x) const noexcept {
    return each_op ? round_to<Arch, E>(x) : x;
  }
};

/// The statistics of one group, per lane, in group order: min, max and Σx (the min-max
/// schemes) or Σ|x| (the others); then, from close, `bad`: NaN exactly where the group holds a
/// NaN or an infinity.
template <class Arch>
struct group_stats {
  // Parentheses, not braces: a braced float would pick xsimd's initializer-list constructor.
  float_batch<Arch> lo = float_batch<Arch>(std::numeric_limits<float>::infinity());
  float_batch<Arch> hi = float_batch<Arch>(-std::numeric_limits<float>::infinity());
  float_batch<Arch> abs_sum = float_batch<Arch>(0.0f);
  float_batch<Arch> sum = float_batch<Arch>(0.0f);
  float_batch<Arch> bad = float_batch<Arch>(0.0f);

  /// Adds the next value of the group, keeping only what scheme S's parameters read.
  template <kv_scheme S>
  TOKRED_FORCE_INLINE void add(const float_batch<Arch>& x) noexcept {
    if constexpr (S == kv_scheme::asymmetric || S == kv_scheme::symmetric) {
      lo = lane_min<Arch>(lo, x);
      hi = lane_max<Arch>(hi, x);
      sum = sum + x;
    } else {
      abs_sum = abs_sum + xsimd::abs(x);
    }
  }

  /// Sets `bad` once every value is in. A sum is finite when every value is; where one is not
  /// (a value that is not, or an overflow), Σ(x − x) over the group again (`value(t)`: row t)
  /// tells which.
  template <kv_scheme S, class Value>
  TOKRED_FORCE_INLINE void close(index_t group, const Value& value) noexcept {
    const float_batch<Arch> total = S == kv_scheme::asymmetric || S == kv_scheme::symmetric ? sum : abs_sum;
    bad = total - total;
    if (!xsimd::any(unordered<Arch>(bad, bad))) return;
    bad = float_batch<Arch>(0.0f);
    for (index_t t = 0; t < group; ++t) {
      const float_batch<Arch> x = value(t);
      bad = bad + (x - x);
    }
  }
};

/// A group's scale and zero point per lane, as stored (rounded to E), and its kernel constants.
template <class Arch>
struct group_params {
  float_batch<Arch> scale = float_batch<Arch>(0.0f);
  float_batch<Arch> zero = float_batch<Arch>(0.0f);
};

/// The scale and zero point of a group from its statistics (see kv_scheme). NaN for groups
/// holding a non-finite value.
template <kv_scheme S, class Arch, class E>
TOKRED_FORCE_INLINE group_params<Arch> params_of(const uniform_format& f, const group_stats<Arch>& st,
                             const step_rounding<Arch, E>& rnd) noexcept {
  using fb = float_batch<Arch>;
  group_params<Arch> g;
  if constexpr (S == kv_scheme::asymmetric) {
    g.scale = round_to<Arch, E>(divide<Arch>(rnd(st.hi - st.lo), fb(static_cast<float>((1 << f.bits) - 1))));
    g.zero = st.lo;
  } else if constexpr (S == kv_scheme::symmetric) {
    const fb amax = lane_max<Arch>(xsimd::abs(st.lo), xsimd::abs(st.hi));
    g.scale = round_to<Arch, E>(divide<Arch>(amax, fb(static_cast<float>((1 << (f.bits - 1)) - 1))));
  } else {
    g.scale = round_to<Arch, E>(divide<Arch>(st.abs_sum, fb(static_cast<float>(f.group))));
  }
  const auto bad = unordered<Arch>(st.bad, st.bad);  // NaN (xsimd's != is ordered on AVX)
  const fb nan(std::numeric_limits<float>::quiet_NaN());
  g.scale = xsimd::select(bad, nan, g.scale);
  g.zero = xsimd::select(bad, nan, g.zero);
  return g;
}

/// The codes of a batch of values under a group's parameters. The quotient is clamped to the
/// code range first and then rounded to the nearest integer, ties to even, by the conversion
/// itself (cvtps2dq and its kin, under the default rounding mode): the same codes as rounding
/// first and clamping after.
template <kv_scheme S, class Arch, class E>
TOKRED_FORCE_INLINE u32_batch<Arch> codes_of(int bits, const float_batch<Arch>& x, const group_params<Arch>& g,
                         const step_rounding<Arch, E>& rnd) noexcept {
  using fb = float_batch<Arch>;
  const fb zero_code(0.0f);
  fb q;
  if constexpr (S == kv_scheme::asymmetric) {
    // x − min ≥ 0 and s ≥ 0, so only the top needs a clamp; a scale of 0 or NaN (constant and
    // non-finite groups) gives code 0.
    const fb top(static_cast<float>((1 << bits) - 1));
    q = lane_min<Arch>(rnd(divide<Arch>(rnd(x - g.zero), g.scale)), top);
    return xsimd::bitwise_cast<u32_batch<Arch>>(xsimd::nearbyint_as_int(xsimd::select(g.scale > zero_code, q, zero_code)));
  } else if constexpr (S == kv_scheme::symmetric) {
    // Rounded first, then offset by 2^(b−1) as integers (adding first would round the sum);
    // non-finite groups take −2^(b−1), which the offset makes code 0.
    using ib = xsimd::batch<std::int32_t, simd_arch_t<Arch>>;
    const fb m(static_cast<float>((1 << (bits - 1)) - 1)), mid(static_cast<float>(1 << (bits - 1)));
    q = lane_min<Arch>(lane_max<Arch>(rnd(divide<Arch>(x, g.scale)), -m), m);
    q = xsimd::select(g.scale == zero_code, zero_code, q);
    q = xsimd::select(unordered<Arch>(g.scale, g.scale), -mid, q);
    return xsimd::bitwise_cast<u32_batch<Arch>>(xsimd::nearbyint_as_int(q) + ib(1 << (bits - 1)));
  } else if constexpr (S == kv_scheme::sign) {
    q = xsimd::select(x >= zero_code, fb(1.0f), zero_code);
  } else {
    const fb tau = g.scale * fb(0.5f);
    q = xsimd::select(x > tau, fb(2.0f), xsimd::select(x < -tau, zero_code, fb(1.0f)));
  }
  q = xsimd::select(unordered<Arch>(g.scale, g.scale), zero_code, q);  // non-finite groups: codes 0
  return xsimd::bitwise_cast<u32_batch<Arch>>(xsimd::nearbyint_as_int(q));
}

/// `x̂ = a·q + b` per lane: the scheme's dequantization as an affine map of the code.
template <class Arch>
struct affine_code {
  float_batch<Arch> a, b;
};

template <kv_scheme S, class Arch>
TOKRED_FORCE_INLINE affine_code<Arch> affine_of(int bits, bool vidkv, const group_params<Arch>& g) noexcept {
  using fb = float_batch<Arch>;
  if constexpr (S == kv_scheme::asymmetric) return {g.scale, g.zero};
  if constexpr (S == kv_scheme::symmetric) return {g.scale, -fb(static_cast<float>(1 << (bits - 1))) * g.scale};
  if constexpr (S == kv_scheme::sign)
    return vidkv ? affine_code<Arch>{g.scale, fb(0.0f)} : affine_code<Arch>{g.scale + g.scale, -g.scale};
  if constexpr (S == kv_scheme::ternary)
    return vidkv ? affine_code<Arch>{fb(1.0f), fb(-1.0f)} : affine_code<Arch>{g.scale, -g.scale};
}

/// The dequantized values of a batch of codes: `q·s + z` (asymmetric) with the product and the
/// sum rounded separately, `(q − 2^(b−1))·s`, `(2q − 1)·s` or `(q − 1)·s` — each exactly the
/// affine map, the integer part formed exactly first.
template <kv_scheme S, class Arch, class E>
TOKRED_FORCE_INLINE float_batch<Arch> values_of(int bits, bool vidkv, const float_batch<Arch>& q, const group_params<Arch>& g,
                            const step_rounding<Arch, E>& rnd) noexcept {
  using fb = float_batch<Arch>;
  if constexpr (S == kv_scheme::asymmetric) return rnd(separate_product(q, g.scale)) + g.zero;
  if constexpr (S == kv_scheme::symmetric) return rnd((q - fb(static_cast<float>(1 << (bits - 1)))) * g.scale);
  if constexpr (S == kv_scheme::sign) return vidkv ? rnd(q * g.scale) : rnd((q + q - fb(1.0f)) * g.scale);
  if constexpr (S == kv_scheme::ternary) return vidkv ? q - fb(1.0f) : rnd((q - fb(1.0f)) * g.scale);
}

/// The `n ≤ size` values at p (element stride `stride`) gathered as stored into a stack batch,
/// zero bits (+0) in the missing lanes, then widened by `load` (a whole contiguous batch is
/// widened in place).
template <class Arch, class E, class Load>
TOKRED_FORCE_INLINE float_batch<Arch> gather_lanes(const E* p, index_t stride, index_t n, const Load& load) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  if (n == w && stride == 1) return load(p);
  alignas(64) E lanes[w] = {};
  for (index_t i = 0; i < n; ++i) lanes[i] = p[i * stride];
  return load(static_cast<const E*>(lanes));
}

/// The `n ≤ size` values at p (element stride `stride`) as a batch, zeros in the missing lanes.
template <class Arch, class E>
TOKRED_FORCE_INLINE float_batch<Arch> load_lanes(const E* p, index_t stride, index_t n) noexcept {
  return gather_lanes<Arch>(p, stride, n, [](const E* q) { return load_floats<Arch>(q); });
}

/// load_lanes for values that only enter arithmetic, comparisons with a number, and statistics
/// whose group is refused when a lane is not finite (load_operands: fp16 widens in one
/// instruction where the build has one; a signalling NaN may arrive quiet, which no result of
/// the quantizer can show — a group holding a NaN gets NaN parameters and fixed codes).
template <class Arch, class E>
TOKRED_FORCE_INLINE float_batch<Arch> load_operand_lanes(const E* p, index_t stride, index_t n) noexcept {
  return gather_lanes<Arch>(p, stride, n, [](const E* q) { return load_operands<Arch>(q); });
}

/// Stores the first `n ≤ size` lanes of x to p (element stride `stride`), rounded to E.
template <class Arch, class E>
TOKRED_FORCE_INLINE void store_lanes(E* p, index_t stride, index_t n, const float_batch<Arch>& x) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  if (n == w && stride == 1) return store_floats<Arch>(p, x);
  alignas(64) E lanes[w];
  store_floats<Arch>(lanes, x);
  for (index_t i = 0; i < n; ++i) p[i * stride] = lanes[i];
}

template <class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> load_word_lanes(const std::uint32_t* p, index_t n, index_t stride = 1) noexcept {
  constexpr index_t w = u32_batch<Arch>::size;
  if (n == w && stride == 1) return u32_batch<Arch>::load_unaligned(p);
  alignas(64) std::uint32_t lanes[w] = {};
  for (index_t i = 0; i < n; ++i) lanes[i] = p[i * stride];
  return u32_batch<Arch>::load_aligned(lanes);
}

template <class Arch>
TOKRED_FORCE_INLINE void store_word_lanes(std::uint32_t* p, index_t stride, index_t n, const u32_batch<Arch>& x) noexcept {
  constexpr index_t w = u32_batch<Arch>::size;
  if (n == w && stride == 1) return x.store_unaligned(p);
  alignas(64) std::uint32_t lanes[w];
  x.store_aligned(lanes);
  for (index_t i = 0; i < n; ++i) p[i * stride] = lanes[i];
}

/// The `group` token rows of one group along tokens: channel 0 of each and its channel stride
/// (a group may span two buffers, such as a cache's residual and the tokens being appended).
template <class E>
struct token_rows {
  const E* row[uniform_max_group];
  index_t stride[uniform_max_group];
  index_t row_step = 0;  // row[t + 1] − row[t] when every row is that far from the last and shares one stride, else 0

  const E* at(index_t t, index_t c) const noexcept { return row[t] + c * stride[t]; }
};

/// Tokens per unit of work along channels (a share's grain).
inline constexpr index_t uniform_run = 256;

/// The widened values the quantizer holds at once (L1-resident).
inline constexpr std::size_t uniform_tile_bytes = 16384;

/// A code width known only at run time: `value` 0 selects the looping forms of code_block and
/// decode_block.
struct runtime_width {
  static constexpr int value = 0;
  int bits;
  constexpr operator int() const noexcept { return bits; }
};

/// Calls `f(width)` for the code width of scheme S: `std::integral_constant<int, b>` for the
/// widths KIVI uses most, 2 and 4 bits, and for 8 (their blocks unrolled with every shift known;
/// each unrolled width costs compile time), runtime_width for the others. `decltype(width)::value`
/// is the template argument.
template <kv_scheme S, class F>
TOKRED_FORCE_INLINE void with_code_width(int bits, F&& f) {
  switch (bits) {
    case 2: if constexpr (S != kv_scheme::sign) return f(std::integral_constant<int, 2>{}); break;
    case 4: if constexpr (S == kv_scheme::asymmetric || S == kv_scheme::symmetric) return f(std::integral_constant<int, 4>{}); break;
    case 8: if constexpr (S == kv_scheme::asymmetric || S == kv_scheme::symmetric) return f(std::integral_constant<int, 8>{}); break;
    default: break;
  }
  f(runtime_width{bits});
}

template <class F, int... I>
TOKRED_FORCE_INLINE void unrolled_over(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

/// Calls `f(std::integral_constant<int, i>{})` for i = 0 … N − 1, in order.
template <int N, class F>
TOKRED_FORCE_INLINE void unrolled(F&& f) {
  unrolled_over(f, std::make_integer_sequence<int, N>{});
}

/// Calls `f(std::true_type{})` when a batch is whole and its lanes contiguous, else
/// `f(std::false_type{})`, so an unrolled block is compiled for one kind of batch.
template <class F>
TOKRED_FORCE_INLINE void with_whole_batch(bool whole, F&& f) {
  if (whole) return f(std::true_type{});
  f(std::false_type{});
}

/// A block of 32 consecutive values of a group — `bits` words of the code stream — as codes:
/// value i is `col[i]`; word j is stored at `words + j·ws` (lane stride `wl`, `n` lanes). `Bits`
/// is `bits` at compile time (a divisor of 32; each word's codes unrolled), or 0.
template <int Bits, kv_scheme S, class Arch, class E, class Values>
TOKRED_FORCE_INLINE void code_block(const Values& col, const group_params<Arch>& g,
                                    const step_rounding<Arch, E>& rnd, std::uint32_t* words, index_t ws,
                                    index_t wl, index_t n, int bits) noexcept {
  using ub = u32_batch<Arch>;
  ub word(0u);
  if constexpr (Bits == 0) {
    for (index_t i = 0; i < 32; ++i) {
      const code_slot at = slot_of(i, bits);
      const ub q = codes_of<S, Arch, E>(bits, col(i), g, rnd);
      word = word | (q << at.shift);
      if (at.shift + bits >= 32) {  // the word is complete
        store_word_lanes<Arch>(words + at.word * ws, wl, n, word);
        word = at.spills ? ub(q >> (32 - at.shift)) : ub(0u);
      }
    }
  } else {  // Bits divides 32: a word at a time, its 32/Bits codes unrolled
    constexpr int per = 32 / Bits;
    for (index_t j = 0; j < Bits; ++j) {
      word = codes_of<S, Arch, E>(Bits, col(j * per), g, rnd);
      unrolled<per - 1>([&](auto i) {
        constexpr int at = decltype(i)::value + 1;
        word = word | (codes_of<S, Arch, E>(Bits, col(j * per + at), g, rnd) << (at * Bits));
      });
      store_word_lanes<Arch>(words + j * ws, wl, n, word);
    }
  }
}

/// The codes of value t of a group along tokens, from the group's word rows (word stride `ws`,
/// lane stride `wl`).
template <class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> token_codes(const std::uint32_t* words, index_t ws, index_t n, index_t t, int bits,
                                                index_t wl = 1) noexcept {
  const code_slot at = slot_of(t, bits);
  u32_batch<Arch> q = load_word_lanes<Arch>(words + at.word * ws, n, wl) >> at.shift;
  if (at.spills) q = q | (load_word_lanes<Arch>(words + (at.word + 1) * ws, n, wl) << (32 - at.shift));
  return q & u32_batch<Arch>((1u << bits) - 1u);
}

/// Code `At` (0-based) of the 32/B codes of `B` bits packed in each lane of `word`.
template <int B, int At, class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> code_field(const u32_batch<Arch>& word) noexcept {
  const u32_batch<Arch> q = word >> (At * B);
  if constexpr (At * B + B == 32) return q;  // no bits above the code
  else return q & u32_batch<Arch>((1u << B) - 1u);
}

/// The codes of a block of 32 consecutive values (see code_block) from its `bits` words (word j
/// at `words + j·ws`, lane stride `wl`), value i passed to `f(i, codes)` as floats, in order.
template <int Bits, class Arch, class F>
TOKRED_FORCE_INLINE void decode_block(const std::uint32_t* words, index_t ws, index_t n, int bits, F&& f,
                                      index_t wl = 1) noexcept {
  using ub = u32_batch<Arch>;
  if constexpr (Bits == 0) {
    for (index_t i = 0; i < 32; ++i) f(i, code_floats<Arch>(token_codes<Arch>(words, ws, n, i, bits, wl)));
  } else {  // Bits divides 32: a word at a time, its 32/Bits codes unrolled
    constexpr int per = 32 / Bits;
    for (index_t j = 0; j < Bits; ++j) {
      const ub word = load_word_lanes<Arch>(words + j * ws, n, wl);
      unrolled<per>([&](auto i) {
        constexpr int at = decltype(i)::value;
        f(j * per + at, code_floats<Arch>(code_field<Bits, at, Arch>(word)));
      });
    }
  }
}

/// Where each lane of a batch finds its code among values C0 … C0 + w − 1 of a code stream of
/// `Bits` bits (a divisor of 32): its word and its shift, as lane constants.
template <int Bits, int C0, int W>
struct stream_lanes {
  alignas(64) std::uint32_t word[W] = {};
  alignas(64) std::uint32_t shift[W] = {};
  constexpr stream_lanes() noexcept {
    for (int l = 0; l < W; ++l) word[l] = (C0 + l) / (32 / Bits), shift[l] = (C0 + l) % (32 / Bits) * Bits;
  }
};

template <int Bits, int C0, int W>
inline constexpr stream_lanes<Bits, C0, W> stream_lanes_v{};

/// 0, 1, …, W − 1: lane numbers as a constant.
template <int W>
struct lane_numbers {
  alignas(64) std::uint32_t value[W] = {};
  constexpr lane_numbers() noexcept {
    for (int l = 0; l < W; ++l) value[l] = static_cast<std::uint32_t>(l);
  }
};

template <int W>
inline constexpr lane_numbers<W> lane_numbers_v{};

/// The codes of values C0 … C0 + w − 1 of a code stream of `Bits` bits (a divisor of 32) at
/// `words`, a lane per value, each in the low `Bits` bits of its lane with the stream's later
/// bits above it: each lane takes its word (broadcast; a batch spans w·Bits/32 words where a
/// word holds fewer codes than the batch has lanes) and shifts it by its own amount (vpsrlvd;
/// only where has_lane_shifts<Arch>()). Reads only the words holding them.
template <int Bits, int C0, class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> stream_codes(const std::uint32_t* words) noexcept {
  using ub = u32_batch<Arch>;
  constexpr int per = 32 / Bits, w = static_cast<int>(ub::size);
  if constexpr (Bits == 8) {  // bytes: zero-extended into lanes (the stream is little-endian)
#if XSIMD_WITH_AVX512F
    if constexpr (lane_isa_of<Arch>() == lane_isa::avx512)
      return ub(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(words + C0 / per))));
#endif
#if XSIMD_WITH_AVX2
    if constexpr (lane_isa_of<Arch>() == lane_isa::avx2)
      return ub(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(words + C0 / per))));
#endif
  }
  constexpr const stream_lanes<Bits, C0, w>& at = stream_lanes_v<Bits, C0, w>;
  ub word(words[C0 / per]);
  if constexpr ((C0 + w - 1) / per != C0 / per) {
    const ub index = ub::load_aligned(at.word);
    for (int k = C0 / per + 1; k <= (C0 + w - 1) / per; ++k)
      word = xsimd::select(index == ub(static_cast<std::uint32_t>(k)), ub(words[k]), word);
  }
  return shift_right_lanes<Arch>(word, ub::load_aligned(at.shift));  // the code in the low Bits bits
}

/// Whether a min-max group's extremes over 16-bit floats are taken on their bit patterns as
/// ordered integers (ordered_halves): half the lanes' worth of work per value, and no widening.
template <kv_scheme S, class Arch, class E>
constexpr bool extremes_as_integers() noexcept {
  return (S == kv_scheme::asymmetric || S == kv_scheme::symmetric) && sizeof(E) == 2 && has_half_order<Arch>();
}

/// The minima and maxima of four batches of contiguous 16-bit floats, the t-th of `group` rows
/// from rows.row[t] + c0, into st[0 … 3] (and their sum, finite exactly where both are, for
/// group_stats::close). The extremes are those of group order but at a zero: −0 and +0 compare
/// equal as floats and group order keeps the last one it met, where this takes −0 for a minimum
/// and +0 for a maximum.
template <class Arch, class E>
TOKRED_FORCE_INLINE void half_extremes(const token_rows<E>& rows, index_t group, index_t c0,
                                       group_stats<Arch>* st) noexcept {
  using hb = i16_batch<Arch>;
  constexpr index_t w = float_batch<Arch>::size, h = hb::size;
  static_assert(2 * h == 4 * w, "tokred: four batches of floats are two of 16-bit lanes");
  hb lo[2] = {hb(std::numeric_limits<std::int16_t>::max()), hb(std::numeric_limits<std::int16_t>::max())};
  hb hi[2] = {hb(std::numeric_limits<std::int16_t>::min()), hb(std::numeric_limits<std::int16_t>::min())};
  for (index_t t = 0; t < group; ++t) {
    const auto* row = reinterpret_cast<const std::int16_t*>(rows.row[t] + c0);
    for (index_t j = 0; j < 2; ++j) {
      const hb y = ordered_halves<Arch>(hb::load_unaligned(row + j * h));
      lo[j] = xsimd::min(lo[j], y), hi[j] = xsimd::max(hi[j], y);
    }
  }
  alignas(64) E lows[2 * h], highs[2 * h];
  for (index_t j = 0; j < 2; ++j) {
    ordered_halves<Arch>(lo[j]).store_aligned(reinterpret_cast<std::int16_t*>(lows) + j * h);
    ordered_halves<Arch>(hi[j]).store_aligned(reinterpret_cast<std::int16_t*>(highs) + j * h);
  }
  for (index_t i = 0; i < 4; ++i) {
    st[i].lo = load_operands<Arch>(lows + i * w), st[i].hi = load_operands<Arch>(highs + i * w);
    st[i].sum = st[i].lo + st[i].hi;
  }
}

/// Groups whose `group` values lie in the rows of `rows` (value i of lane c at rows.at(i, c)),
/// lanes [c0, c0 + n) a batch at a time: along tokens the rows are tokens and the lanes channels;
/// along channels (quantize_token_run) the rows are channels and the lanes tokens. A batch's
/// statistics run down its column of `group` rows, read from the rows (whole contiguous batches
/// where widening is cheap) or from an L1 tile they were widened into, then it is coded into
/// words shifted together in a register. Writes
/// `group·bits/32` words at `words` (word stride `ws`, lane stride `wl`), and the scale and zero
/// point (lane strides `ss`, `zs`).
template <kv_scheme S, class Arch, class E, class Ep>
void quantize_token_group(const uniform_format& f, const step_rounding<Arch, E>& rnd,
                          const token_rows<E>& rows, index_t n, std::uint32_t* words,
                          index_t ws, index_t wl, Ep* scale, index_t ss, Ep* zero, index_t zs) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size, tile_size = uniform_tile_bytes / sizeof(fb);
  const index_t batches = (n + w - 1) / w, per_pass = std::max<index_t>(1, tile_size / f.group);
  const auto lanes = [&](index_t b) { return std::min(w, n - b * w); };
  // One batch: its statistics down the group, its parameters, then its codes; value(t) is the
  // batch of row t.
  const auto column_stats = [&](const auto& value) TOKRED_INLINE_LAMBDA {
    group_stats<Arch> st;
    for (index_t t = 0; t < f.group; ++t) st.template add<S>(value(t));
    return st;
  };
  const auto code_batch = [&](index_t b, group_stats<Arch> st, const auto& value) TOKRED_INLINE_LAMBDA {
    st.template close<S>(f.group, value);
    const group_params<Arch> g = params_of<S, Arch, E>(f, st, rnd);
    store_lanes<Arch>(scale + b * w * ss, ss, lanes(b), g.scale);
    if constexpr (S == kv_scheme::asymmetric) store_lanes<Arch>(zero + b * w * zs, zs, lanes(b), g.zero);
    with_code_width<S>(f.bits, [&](auto bits) {
      for (index_t k = 0; k < f.group / 32; ++k)
        code_block<decltype(bits)::value, S, Arch, E>([&](index_t i) TOKRED_INLINE_LAMBDA { return value(32 * k + i); },
                                                      g, rnd, words + k * bits * ws + b * w * wl, ws, wl, lanes(b), bits);
    });
  };
  // Whole batches of lanes contiguous in every row (channels along tokens) are read from the
  // rows themselves, twice, where widening costs no more than a load (an L1 tile costs a store
  // per value); the statistics of a few batches run together, a row at a time.
  constexpr bool reread = !std::is_same_v<E, f16> || has_hardware_f16<Arch>();
  bool contiguous = reread && rows.row_step != 1;
  for (index_t t = 0; t < f.group; ++t) contiguous = contiguous && rows.stride[t] == 1;
  index_t first = 0;  // the first batch left to the tile
  if (contiguous) {
    constexpr index_t chunk = 4;
    for (; first + chunk <= n / w; first += chunk) {
      group_stats<Arch> st[chunk];
      if constexpr (extremes_as_integers<S, Arch, E>()) {
        half_extremes<Arch>(rows, f.group, first * w, st);
        for (index_t i = 0; i < chunk; ++i)
          if (xsimd::any((st[i].lo == fb(0.0f)) | (st[i].hi == fb(0.0f))))  // ±0: the sign group order keeps
            st[i] = column_stats([&](index_t t) TOKRED_INLINE_LAMBDA { return load_operands<Arch>(rows.row[t] + (first + i) * w); });
      } else {
        group_stats<Arch> acc[chunk];  // no address taken: a compiler can keep it in registers
        for (index_t t = 0; t < f.group; ++t)
          unrolled<chunk>([&](auto i) TOKRED_INLINE_LAMBDA {
            acc[i].template add<S>(load_operands<Arch>(rows.row[t] + (first + i) * w));
          });
        std::copy(acc, acc + chunk, st);
      }
      for (index_t i = 0; i < chunk; ++i)
        code_batch(first + i, st[i], [&](index_t t) TOKRED_INLINE_LAMBDA { return load_operands<Arch>(rows.row[t] + (first + i) * w); });
    }
    for (; first < n / w; ++first) {
      const auto value = [&](index_t t) TOKRED_INLINE_LAMBDA { return load_operands<Arch>(rows.row[t] + first * w); };
      code_batch(first, column_stats(value), value);
    }
  }
  fb tile[tile_size];
  for (index_t b0 = first; b0 < batches; b0 += per_pass) {
    const index_t b1 = std::min(batches, b0 + per_pass);
    for (index_t b = b0; b < b1; ++b) {
      fb* col = tile + (b - b0) * f.group;
      if (rows.row_step == 1 && lanes(b) == w) {  // w rows of w lanes each: load lanes' rows, transpose
        const E* lane0 = rows.at(0, b * w);
        const index_t lane_stride = rows.stride[0];
        for (index_t t = 0; t < f.group; t += w) {
          for (index_t j = 0; j < w; ++j) col[t + j] = load_operands<Arch>(lane0 + t + j * lane_stride);
          transpose_square<Arch>(col + t);
        }
      } else {
        for (index_t t = 0; t < f.group; ++t) col[t] = load_operand_lanes<Arch>(rows.at(t, b * w), rows.stride[t], lanes(b));
      }
    }
    for (index_t b = b0; b < b1; ++b) {
      const auto value = [col = tile + (b - b0) * f.group](index_t t) TOKRED_INLINE_LAMBDA { return col[t]; };
      code_batch(b, column_stats(value), value);
    }
  }
}

/// Unpacks `count` codes of `bits` bits from their little-endian stream of words. Widths
/// dividing 32 take whole words of 32/bits codes, unrolled; 3, 5, 6 and 7 bits walk the stream.
template <int Bits>
void unpack_words(const std::uint32_t* words, index_t count, std::uint32_t* q) noexcept {
  constexpr int per = 32 / Bits;
  constexpr std::uint32_t mask = (1u << Bits) - 1u;
  for (index_t w = 0; w < count / per; ++w)
    for (int i = 0; i < per; ++i) q[w * per + i] = (words[w] >> (i * Bits)) & mask;
}

inline void unpack_codes(const std::uint32_t* words, index_t count, int bits, std::uint32_t* q) noexcept {
  switch (bits) {
    case 1: return unpack_words<1>(words, count, q);
    case 2: return unpack_words<2>(words, count, q);
    case 4: return unpack_words<4>(words, count, q);
    case 8: return unpack_words<8>(words, count, q);
    default: break;
  }
  for (index_t i = 0; i < count; ++i) q[i] = code_at(words, 1, i, bits);
}

/// Where a run of consecutive tokens' groups along channels is packed: the first token's word 0,
/// scale and zero point of group 0, with their token strides and the parameters' group strides.
template <class Ep>
struct token_run_out {
  std::conditional_t<std::is_const_v<Ep>, const std::uint32_t, std::uint32_t>* words;
  index_t word_token_stride;
  Ep* scale;
  index_t scale_token_stride, scale_group_stride;
  Ep* zero;  // null for the schemes without one
  index_t zero_token_stride, zero_group_stride;
};

/// Every group along channels of `count` consecutive tokens (the first at `x`, token stride `ts`,
/// contiguous channels) a lane per channel, `Bits` (2, 4 or 8) and S min-max (only where
/// has_code_packing<Arch>()), a batch of tokens at a time. Each token's group folds into one
/// batch of minima and one of maxima, and folds_of_rows turns the tokens' batches into lanes
/// per token, so the parameters of the batch form at once; then each token's codes are formed
/// along its row and packed 32 at a time. A fold's order is not group order, which only a zero
/// can show (±0 compare equal): batches with a zero extreme, or whose sum is not finite (a
/// value that is not, or an fp32 overflow), take their statistics again in group order, a lane
/// per token.
template <int Bits, kv_scheme S, class Arch, class E, class Ep>
void quantize_channel_lanes(const uniform_format& f, const step_rounding<Arch, E> rnd, const E* x, index_t ts,
                            index_t count, index_t dim, const token_run_out<Ep> o) noexcept {
  // rnd and o by value: the packed stores may alias anything a reference reaches.
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  static_assert(32 % w == 0, "tokred: a block of 32 channels is whole batches");
  const index_t group = f.group, words_per_group = group * Bits / 32;
  alignas(64) float scale[w], zero[w];
  for (index_t t0 = 0; t0 < count; t0 += w) {
    const index_t n = std::min(w, count - t0);
    for (index_t g = 0; g < dim / group; ++g) {
      const E* first = x + t0 * ts + g * group;
      fb lo[w], hi[w], sum(0.0f);  // Σx: not finite where a value is not, or where the sum overflows
      for (index_t j = 0; j < n; ++j) {
        const E* row = first + j * ts;
        fb l = load_operands<Arch>(row), h = l;
        sum = sum + l;
        for (index_t c = w; c < group; c += w) {
          const fb v = load_operands<Arch>(row + c);
          l = lane_min<Arch>(l, v), h = lane_max<Arch>(h, v), sum = sum + v;
        }
        lo[j] = l, hi[j] = h;
      }
      group_stats<Arch> st;
      if (4 * n <= w) {  // a few tokens (a decode step's): each token's batch reduced on its own
        st.lo = fb(lanes_extreme<false, Arch>(lo[n - 1]));  // the last token's in every lane, then
        st.hi = fb(lanes_extreme<true, Arch>(hi[n - 1]));   // the others' in theirs
        for (index_t j = 0; j + 1 < n; ++j) {
          const auto lane = lane_indices<Arch>() == fb(static_cast<float>(j));
          st.lo = xsimd::select(lane, fb(lanes_extreme<false, Arch>(lo[j])), st.lo);
          st.hi = xsimd::select(lane, fb(lanes_extreme<true, Arch>(hi[j])), st.hi);
        }
      } else {
        for (index_t j = n; j < w; ++j) lo[j] = lo[n - 1], hi[j] = hi[n - 1];  // past the last token: a copy
        st.lo = folds_of_rows<Arch>(lo, [](const fb& a, const fb& b) TOKRED_INLINE_LAMBDA { return lane_min<Arch>(a, b); });
        st.hi = folds_of_rows<Arch>(hi, [](const fb& a, const fb& b) TOKRED_INLINE_LAMBDA { return lane_max<Arch>(a, b); });
      }
      const fb none(0.0f);
      const fb finite = sum - sum;  // NaN where sum is not finite
      if (xsimd::any(unordered<Arch>(finite, finite) | (st.lo == none) | (st.hi == none))) {
        const auto value = [&](index_t c) TOKRED_INLINE_LAMBDA { return load_operand_lanes<Arch>(first + c, ts, n); };
        st = group_stats<Arch>{};
        for (index_t c = 0; c < group; ++c) st.template add<S>(value(c));
        st.template close<S>(group, value);
      }
      const group_params<Arch> p = params_of<S, Arch, E>(f, st, rnd);
      store_lanes<Arch>(o.scale + g * o.scale_group_stride + t0 * o.scale_token_stride, o.scale_token_stride, n,
                        p.scale);
      if constexpr (S == kv_scheme::asymmetric)
        store_lanes<Arch>(o.zero + g * o.zero_group_stride + t0 * o.zero_token_stride, o.zero_token_stride, n, p.zero);
      p.scale.store_aligned(scale), p.zero.store_aligned(zero);
      for (index_t j = 0; j < n; ++j) {
        group_params<Arch> pj;
        pj.scale = fb(scale[j]), pj.zero = fb(zero[j]);
        const E* row = first + j * ts;
        std::uint32_t* words = o.words + (t0 + j) * o.word_token_stride + g * words_per_group;
        for (index_t k = 0; k < group / 32; ++k) {
          u32_batch<Arch> codes[32 / w];
          for (index_t i = 0; i < 32 / w; ++i)
            codes[i] = codes_of<S, Arch, E>(Bits, load_operands<Arch>(row + 32 * k + i * w), pj, rnd);
          pack_code_block<Bits, Arch>(codes, words + k * Bits);
        }
      }
    }
  }
}

/// Every group along channels of `count` consecutive tokens (the first at `x`, token stride `ts`,
/// channel stride `cs`): quantize_channel_lanes where it applies (contiguous channels, 2, 4 or
/// 8 bits, min-max schemes, widening no dearer than a load), else SIMD lanes holding tokens — a
/// group's channels are the rows of quantize_token_group, so a token's statistics run in
/// channel order and its codes fill its words in order, whatever the lanes.
template <kv_scheme S, class Arch, class E, class Ep>
void quantize_token_run(const uniform_format& f, const step_rounding<Arch, E>& rnd, const E* x, index_t ts,
                        index_t cs, index_t count, index_t dim, const token_run_out<Ep>& o) noexcept {
  constexpr bool min_max = S == kv_scheme::asymmetric || S == kv_scheme::symmetric;
  constexpr bool widens_in_one = !std::is_same_v<E, f16> || has_hardware_f16<Arch>();
  constexpr bool lanes_per_channel = has_code_packing<Arch>() && min_max && widens_in_one;
  if constexpr (lanes_per_channel) {
    if (cs == 1) {
      switch (f.bits) {
        case 2: return quantize_channel_lanes<2, S, Arch>(f, rnd, x, ts, count, dim, o);
        case 4: return quantize_channel_lanes<4, S, Arch>(f, rnd, x, ts, count, dim, o);
        case 8: return quantize_channel_lanes<8, S, Arch>(f, rnd, x, ts, count, dim, o);
        default: break;  // 1, 3, 5, 6 and 7 bits: the lanes hold tokens
      }
    }
  }
  const index_t words_per_group = f.group * f.bits / 32;
  for (index_t g = 0; g < dim / f.group; ++g) {
    token_rows<E> rows;
    for (index_t i = 0; i < f.group; ++i) rows.row[i] = x + (g * f.group + i) * cs, rows.stride[i] = ts;
    rows.row_step = cs;
    quantize_token_group<S, Arch>(f, rnd, rows, count, o.words + g * words_per_group, 1, o.word_token_stride,
                                  o.scale + g * o.scale_group_stride, o.scale_token_stride,
                                  S == kv_scheme::asymmetric ? o.zero + g * o.zero_group_stride : nullptr,
                                  o.zero_token_stride);
  }
}

/// Where tokens [t, …) of head h are packed along channels in a packed cache.
template <class Ep, class Packed>
token_run_out<Ep> token_run_at(const Packed& packed, const uniform_format& f, index_t h, index_t t) noexcept {
  const bool zero = f.scheme == kv_scheme::asymmetric;
  return {&packed.codes(h, t, 0),       packed.codes.stride(1), &packed.scale(h, t, 0),
          packed.scale.stride(1),       packed.scale.stride(2), zero ? &packed.zero(h, t, 0) : nullptr,
          packed.zero.stride(1),        packed.zero.stride(2)};
}

/// One group along channels back to `group` channels at `y` (stride `cs`).
template <kv_scheme S, class Arch, class E, class Eout>
void dequantize_channel_group(const uniform_format& f, bool vidkv, const step_rounding<Arch, E>& rnd,
                              const std::uint32_t* words, E scale, E zero, Eout* y, index_t cs) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  alignas(64) std::uint32_t q[uniform_max_group];
  unpack_codes(words, f.group, f.bits, q);
  group_params<Arch> g;
  g.scale = fb(to_float(scale));
  if constexpr (S == kv_scheme::asymmetric) g.zero = fb(to_float(zero));
  for (index_t i = 0; i < f.group; i += w)
    store_lanes<Arch>(y + i * cs, cs, w,
                      values_of<S, Arch, E>(f.bits, vidkv, code_floats<Arch>(u32_batch<Arch>::load_aligned(q + i)), g, rnd));
}

/// Every group along channels of `count` consecutive tokens packed at `in` back to contiguous
/// channels (the first token's channel 0 at `y`, token stride `ys`), a lane per channel
/// (`Bits` dividing 32; only where has_lane_shifts<Arch>()): each token's parameters read as
/// one element, then its group decoded 32 channels per block of words.
template <int Bits, kv_scheme S, class Arch, class E, class Eout>
void dequantize_channel_lanes(const uniform_format& f, bool vidkv, const step_rounding<Arch, E> rnd,
                              const token_run_out<const E> in, index_t count, index_t dim, Eout* y,
                              index_t ys) noexcept {
  // rnd and in by value, the group size copied: the stores to y may alias anything a reference
  // reaches, which would reload them for every token.
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  static_assert(32 % w == 0, "tokred: a block of 32 channels is whole batches");
  const index_t group = f.group, words_per_group = group * Bits / 32;
  // Blocks of 16 tokens, group by group within a block: 1.2–1.8× faster than token by token
  // for caches in L2, and 1.1× for fp16 outputs of 4096 tokens; fp32 outputs of 4096 tokens
  // (16 MB) wrote faster token by token, 0.5 against 0.7–1.0 ms (docs/benchmarks.md).
  constexpr index_t block = 16;
  for (index_t t0 = 0; t0 < count; t0 += block)
    for (index_t g = 0; g < dim / group; ++g)
      for (index_t t = t0; t < std::min(count, t0 + block); ++t) {
        // Each token's parameters one at a time: a batch of them gathered a token stride apart
        // would reach the registers through a stack buffer, a load that waits on every store.
        group_params<Arch> p;
        p.scale = fb(operand_of<Arch>(in.scale[g * in.scale_group_stride + t * in.scale_token_stride]));
        if constexpr (S == kv_scheme::asymmetric)
          p.zero = fb(operand_of<Arch>(in.zero[g * in.zero_group_stride + t * in.zero_token_stride]));
        const std::uint32_t* words = in.words + t * in.word_token_stride + g * words_per_group;
        Eout* out = y + t * ys + g * group;
        // Up to 4 bits on AVX-512: the group's values as a table (lane i: the value of code
        // i mod 2^Bits), looked up by each lane's low 4 bits; else each code's value computed.
        constexpr bool by_table = Bits <= 4 && has_lookup16<Arch>();
        fb table(0.0f);
        if constexpr (by_table) {
          const u32_batch<Arch> codes = u32_batch<Arch>::load_aligned(lane_numbers_v<w>.value) & u32_batch<Arch>((1u << Bits) - 1u);
          table = values_of<S, Arch, E>(Bits, vidkv, code_floats<Arch>(codes), p, rnd);
        }
        const auto value = [&](const u32_batch<Arch>& q) TOKRED_INLINE_LAMBDA {
          if constexpr (by_table) {
            return lookup16<Arch>(table, q);
          } else {
            return values_of<S, Arch, E>(Bits, vidkv, code_floats<Arch>(q & u32_batch<Arch>((1u << Bits) - 1u)), p, rnd);
          }
        };
        // fp16 and bf16 outputs at 2 and 4 bits with AVX-512BW: the table narrowed once, then
        // looked up 32 codes at a time in 16-bit lanes (the values narrow exactly as one by one).
        constexpr bool by_words = by_table && sizeof(Eout) == 2 && (Bits == 2 || Bits == 4) && has_word_lookup<Arch>();
        if constexpr (by_words) {
          alignas(64) Eout narrowed[w];
          store_floats<Arch>(narrowed, table);
          std::uint16_t entries[16];
          std::memcpy(entries, narrowed, sizeof(entries));
          for (index_t k = 0; k < group / 32; ++k)
            lookup_codes32<Bits, Arch>(words + k * Bits, entries, reinterpret_cast<std::uint16_t*>(out + 32 * k));
        } else {
          for (index_t k = 0; k < group / 32; ++k)
            unrolled<32 / w>([&](auto i) TOKRED_INLINE_LAMBDA {
              constexpr int c0 = decltype(i)::value * static_cast<int>(w);
              store_floats<Arch>(out + 32 * k + c0, value(stream_codes<Bits, c0, Arch>(words + k * Bits)));
            });
        }
      }
}

/// Every group along channels of `count` consecutive tokens packed at `in` back to their rows
/// (the first token's channel 0 at `y`, token stride `ys`, channel stride `cs`). With contiguous
/// channels a whole batch of tokens is decoded a lane per token, 32 channels per block of words,
/// and transposed back to token rows; the other tokens go one at a time.
template <kv_scheme S, class Arch, class E, class Eout>
void dequantize_token_run(const uniform_format& f, bool vidkv, const step_rounding<Arch, E>& rnd,
                          const token_run_out<const E>& in, index_t count, index_t dim, Eout* y, index_t ys,
                          index_t cs) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
  constexpr bool zero = S == kv_scheme::asymmetric;
  const index_t words_per_group = f.group * f.bits / 32;
  index_t t = 0;
  if (cs == 1)
    with_code_width<S>(f.bits, [&](auto bits) {
      if constexpr (decltype(bits)::value != 0 && has_lane_shifts<Arch>()) {
        dequantize_channel_lanes<decltype(bits)::value, S, Arch>(f, vidkv, rnd, in, count, dim, y, ys);
        t = count;
        return;
      }
      for (; t + w <= count; t += w)
        for (index_t g = 0; g < dim / f.group; ++g) {
          group_params<Arch> p;
          p.scale = load_lanes<Arch>(in.scale + g * in.scale_group_stride + t * in.scale_token_stride,
                                     in.scale_token_stride, w);
          if constexpr (zero)
            p.zero = load_lanes<Arch>(in.zero + g * in.zero_group_stride + t * in.zero_token_stride,
                                      in.zero_token_stride, w);
          for (index_t k = 0; k < f.group / 32; ++k) {
            fb block[32];
            decode_block<decltype(bits)::value, Arch>(
                in.words + g * words_per_group + k * bits + t * in.word_token_stride, 1, w, bits,
                [&](index_t i, const fb& q) TOKRED_INLINE_LAMBDA { block[i] = values_of<S, Arch, E>(bits, vidkv, q, p, rnd); },
                in.word_token_stride);
            for (index_t c = 0; c < 32; c += w) {
              transpose_square<Arch>(block + c);
              for (index_t j = 0; j < w; ++j) store_floats<Arch>(y + (t + j) * ys + g * f.group + 32 * k + c, block[c + j]);
            }
          }
        }
    });
  for (; t < count; ++t)
    for (index_t g = 0; g < dim / f.group; ++g)
      dequantize_channel_group<S, Arch>(
          f, vidkv, rnd, in.words + t * in.word_token_stride + g * words_per_group,
          in.scale[t * in.scale_token_stride + g * in.scale_group_stride],
          zero ? in.zero[t * in.zero_token_stride + g * in.zero_group_stride] : E{}, y + t * ys + g * f.group * cs, cs);
}

/// Where one group along tokens is packed: its first word row (channel 0), the row stride, and
/// its scale and zero point rows (channel 0) with their channel strides.
template <class Ep>
struct token_group_out {
  std::conditional_t<std::is_const_v<Ep>, const std::uint32_t, std::uint32_t>* words;
  index_t word_stride;
  Ep* scale;
  index_t scale_stride;
  Ep* zero;  // null for the schemes without one
  index_t zero_stride;
};

/// A whole group along tokens, every channel.
template <kv_scheme S, class Arch, class E, class Ep>
void quantize_token_unit(const uniform_format& f, const step_rounding<Arch, E>& rnd, const token_rows<E>& rows,
                         index_t dim, const token_group_out<Ep>& o) noexcept {
  quantize_token_group<S, Arch>(f, rnd, rows, dim, o.words, o.word_stride, 1, o.scale, o.scale_stride, o.zero,
                                o.zero_stride);
}

/// A whole packed group along tokens back to its `group` output rows (channel 0 of each, channel
/// stride `cs`), 32 rows per block of words. Where the channels are contiguous and the codes 2 or
/// 4 bits wide: the rows of one word row of codes (16 or 8 rows) are finished before the next
/// ones, two batches of channels at a time (a 64-byte line of fp16 with AVX-512) across them,
/// the parameters staged as floats once per group (a chunk of channels at a time). Writing a
/// band of rows at a time rather than all 32 halves the time once the output is far larger than
/// the caches, and is as fast within them. The other channels go a batch at a time.
template <kv_scheme S, class Arch, class E, class Eout>
void dequantize_token_unit(const uniform_format& f, bool vidkv, const step_rounding<Arch, E>& rnd,
                           const token_group_out<const E>& in, index_t dim, Eout* const* rows, index_t cs) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  index_t c0 = 0;
  if (cs == 1)
    with_code_width<S>(f.bits, [&](auto bits) {
      constexpr int B = decltype(bits)::value;
      if constexpr (B != 0) {
        using fb = float_batch<Arch>;
        using ub = u32_batch<Arch>;
        constexpr int per = 32 / B;
        constexpr index_t chunk = 256;  // channels whose parameters are staged at once
        alignas(64) float scales[chunk];
        [[maybe_unused]] alignas(64) float zeros[chunk];  // asymmetric schemes only
        const index_t pairs_end = dim - dim % (2 * w);
        for (index_t base = 0; base < pairs_end; base += chunk) {
          const index_t end = std::min(base + chunk, pairs_end);
          for (index_t c = base; c < end; c += w) {
            load_lanes<Arch>(in.scale + c * in.scale_stride, in.scale_stride, w).store_aligned(scales + (c - base));
            if constexpr (S == kv_scheme::asymmetric)
              load_lanes<Arch>(in.zero + c * in.zero_stride, in.zero_stride, w).store_aligned(zeros + (c - base));
          }
          for (index_t k = 0; k < f.group / 32; ++k)
            for (index_t j = 0; j < B; ++j) {
              const std::uint32_t* words = in.words + (k * B + j) * in.word_stride;
              for (index_t c = base; c < end; c += 2 * w) {
                group_params<Arch> g[2];
                for (int h = 0; h < 2; ++h) {
                  g[h].scale = fb::load_aligned(scales + (c - base) + h * w);
                  if constexpr (S == kv_scheme::asymmetric) g[h].zero = fb::load_aligned(zeros + (c - base) + h * w);
                }
                const ub w0 = ub::load_unaligned(words + c), w1 = ub::load_unaligned(words + c + w);
                unrolled<per>([&](auto i) TOKRED_INLINE_LAMBDA {
                  constexpr int at = decltype(i)::value;
                  Eout* row = rows[32 * k + j * per + at] + c;
                  store_floats<Arch>(row, values_of<S, Arch, E>(B, vidkv, code_floats<Arch>(code_field<B, at, Arch>(w0)), g[0], rnd));
                  store_floats<Arch>(row + w, values_of<S, Arch, E>(B, vidkv, code_floats<Arch>(code_field<B, at, Arch>(w1)), g[1], rnd));
                });
              }
            }
        }
        c0 = pairs_end;
      }
    });
  for (index_t c = c0; c < dim; c += w) {
    const index_t lanes = std::min(w, dim - c);
    group_params<Arch> g;
    g.scale = load_lanes<Arch>(in.scale + c * in.scale_stride, in.scale_stride, lanes);
    if constexpr (S == kv_scheme::asymmetric) g.zero = load_lanes<Arch>(in.zero + c * in.zero_stride, in.zero_stride, lanes);
    with_code_width<S>(f.bits, [&](auto bits) {
      with_whole_batch(lanes == w && cs == 1, [&](auto whole) {
        const index_t n = whole ? w : lanes, stride = whole ? 1 : cs;
        constexpr int unrolled_bits = whole ? decltype(bits)::value : 0;  // a ragged batch loops
        for (index_t k = 0; k < f.group / 32; ++k)
          decode_block<unrolled_bits, Arch>(in.words + k * bits * in.word_stride + c, in.word_stride, n, bits,
                                   [&](index_t i, const float_batch<Arch>& q) TOKRED_INLINE_LAMBDA {
                                     store_lanes<Arch>(rows[32 * k + i] + c * stride, stride, n,
                                                       values_of<S, Arch, E>(bits, vidkv, q, g, rnd));
                                   });
      });
    });
  }
}

/// Runs share `ith` of `nth` of a problem's units, with the scheme as a compile-time tag:
/// `group(tag, h, g)` for each (head, token group) along tokens, `run(tag, h, t, count)` for each
/// run of `run_length` tokens (the last may be shorter) of a head along channels, in order.
template <class Arch, class Group, class Run>
void for_each_unit(const cpu<Arch>& exec, const uniform_format& f, const kv_problem& p, index_t run_length,
                   const Group& group, const Run& run) noexcept {
  const bool along_tokens = f.axis == kv_group_axis::tokens;
  const index_t per_head = along_tokens ? p.tokens / f.group : (p.tokens + run_length - 1) / run_length;
  const index_t units = p.heads * per_head;
  const index_t u0 = share_begin(units, exec.ith, exec.nth), u1 = share_begin(units, exec.ith + 1, exec.nth);
  with_scheme(f.scheme, [&](auto tag) {
    for (index_t u = u0; u < u1; ++u) {
      const index_t h = u / per_head, i = u % per_head;
      if (along_tokens) group(tag, h, i);
      else run(tag, h, i * run_length, std::min(run_length, p.tokens - i * run_length));
    }
  });
}

}  // namespace detail

namespace detail {

/// The packed place of group `g` of head `h` along tokens, in a packed cache.
template <class Ep, class Packed>
token_group_out<Ep> token_group_at(const Packed& packed, const uniform_format& f, index_t h, index_t g) noexcept {
  const bool zero = f.scheme == kv_scheme::asymmetric;
  return {&packed.codes(h, g * f.group * f.bits / 32, 0), packed.codes.stride(1), &packed.scale(h, g, 0),
          packed.scale.stride(2), zero ? &packed.zero(h, g, 0) : nullptr, packed.zero.stride(2)};
}

}  // namespace detail

/// Uniform quantization on CPU: no workspace; fp32, fp16 and bf16 caches with any strides;
/// packed codes with inner stride 1.
template <class Arch>
struct backend<uniform_quantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const uniform_quantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const uniform_quantize& p, const kv_inputs<E>& in,
                      const uniform_packed<E>& out, workspace) noexcept {
    const uniform_format& f = p.format;
    if (status s = detail::check_uniform_io(exec, f, in.cache, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const detail::step_rounding<Arch, E> rnd{p.round_each_op};
    const auto& x = in.cache;
    detail::for_each_unit(
        exec, f, prob, detail::uniform_run,
        [&](auto tag, index_t h, index_t g) {
          detail::token_rows<E> rows;
          for (index_t t = 0; t < f.group; ++t) rows.row[t] = &x(h, g * f.group + t, 0), rows.stride[t] = x.stride(2);
          detail::quantize_token_unit<decltype(tag)::value, Arch>(f, rnd, rows, prob.head_dim,
                                                                  detail::token_group_at<E>(out, f, h, g));
        },
        [&](auto tag, index_t h, index_t t, index_t count) {
          detail::quantize_token_run<decltype(tag)::value, Arch>(f, rnd, &x(h, t, 0), x.stride(1), x.stride(2), count,
                                                                 prob.head_dim, detail::token_run_at<E>(out, f, h, t));
        });
    return status::ok;
  }
};

/// Uniform dequantization on CPU: no workspace; any output element type and strides.
template <class Arch>
struct backend<uniform_dequantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const uniform_dequantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E, class Eout>
  static status apply(const cpu<Arch>& exec, const uniform_dequantize& p, const uniform_packed<const E>& in,
                      const kv_outputs<Eout>& out, workspace) noexcept {
    const uniform_format& f = p.format;
    if (status s = detail::check_uniform_io(exec, f, out.cache, in); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const detail::step_rounding<Arch, E> rnd{p.round_each_op};
    const auto& y = out.cache;
    detail::for_each_unit(
        exec, f, prob, detail::uniform_run,
        [&](auto tag, index_t h, index_t g) {
          Eout* rows[detail::uniform_max_group];
          for (index_t t = 0; t < f.group; ++t) rows[t] = &y(h, g * f.group + t, 0);
          detail::dequantize_token_unit<decltype(tag)::value, Arch>(
              f, p.vidkv_dequant, rnd, detail::token_group_at<const E>(in, f, h, g), prob.head_dim, rows, y.stride(2));
        },
        [&](auto tag, index_t h, index_t t, index_t count) {
          detail::dequantize_token_run<decltype(tag)::value, Arch>(f, p.vidkv_dequant, rnd,
                                                                   detail::token_run_at<const E>(in, f, h, t), count,
                                                                   prob.head_dim, &y(h, t, 0), y.stride(1), y.stride(2));
        });
    return status::ok;
  }
};

}  // namespace tokred
