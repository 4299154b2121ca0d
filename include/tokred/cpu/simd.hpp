// tokred/cpu/simd.hpp — the one header that names xsimd. CPU backends use these few shims.
//
// Everything computes in fp32. Loads widen fp32/bf16/fp16 storage to a batch of floats and
// stores narrow it back with the exact rounding of <tokred/core/element.hpp>, so the SIMD path
// and the scalar reference agree bit for bit. bf16 moves between 16- and 32-bit lanes with one
// x86 instruction family per architecture (SSE2, AVX2, AVX-512F), everything else is xsimd.
// Two kinds of loads: `load_floats` gives exactly to_float's bits (copies, comparisons);
// `load_operands` gives values that only enter arithmetic, which lets fp16 take the x86
// conversion instruction where the build has one (see there).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

// xsimd brings in the x86 intrinsics: see TOKRED_INTRINSIC_HEADERS_BEGIN (core/config.hpp).
#include "tokred/core/config.hpp"
TOKRED_INTRINSIC_HEADERS_BEGIN
#include <xsimd/xsimd.hpp>
TOKRED_INTRINSIC_HEADERS_END

#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"

namespace tokred::detail {

/// The xsimd architecture an exec's `Arch` names (`compile_time_arch` = xsimd's default_arch).
template <class Arch>
using simd_arch_t =
    std::conditional_t<std::is_same_v<Arch, compile_time_arch>, xsimd::default_arch, Arch>;

template <class Arch>
using float_batch = xsimd::batch<float, simd_arch_t<Arch>>;
template <class Arch>
using u32_batch = xsimd::batch<std::uint32_t, simd_arch_t<Arch>>;
template <class Arch>
using i16_batch = xsimd::batch<std::int16_t, simd_arch_t<Arch>>;

// bf16 widening and narrowing. xsimd 8.1 has no conversion between 16- and 32-bit lanes: its
// `u32_batch::load_unaligned(const uint16_t*)` and `store_unaligned(uint16_t*)` copy one lane at
// a time through a stack buffer (GCC vectorises that copy only under -march flags). The helpers
// below use one x86 instruction family per xsimd architecture for the lane moves and keep the
// arithmetic in plain xsimd; other architectures take the generic xsimd code.

/// The x86 integer instruction family the bf16 helpers may use for an xsimd architecture.
enum class lane_isa { generic, sse2, avx2, avx512 };

template <class Arch>
constexpr lane_isa lane_isa_of() noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_base_of_v<xsimd::avx512f, simd_arch_t<Arch>>) return lane_isa::avx512;
#endif
#if XSIMD_WITH_AVX2
  if constexpr (std::is_base_of_v<xsimd::avx2, simd_arch_t<Arch>>) return lane_isa::avx2;
#endif
#if XSIMD_WITH_SSE2
  if constexpr (std::is_base_of_v<xsimd::sse2, simd_arch_t<Arch>>) return lane_isa::sse2;
#endif
  return lane_isa::generic;
}

/// a·b + c per lane, rounded once on every ISA with FMA: xsimd 8.1 has fused kernels for its
/// fma3 architectures, but for AVX-512 its `fma` is the expression a·b + c, which g++ 12 fuses
/// in some loops and not in others (its FMA-chain heuristics): the similarity product fused it,
/// the same chain in a test loop did not, and 312 of 750 dot products of 300 values differed
/// in the last bits. ISAs without FMA round the product and the sum separately.
template <class Arch>
float_batch<Arch> multiply_add(const float_batch<Arch>& a, const float_batch<Arch>& b,
                               const float_batch<Arch>& c) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) return _mm512_fmadd_ps(a, b, c);
#endif
  return xsimd::fma(a, b, c);
}

/// a / b per lane, correctly rounded on every ISA. xsimd 8.1 divides float batches on AArch64
/// with its 32-bit NEON kernel: a reciprocal estimate and two Newton steps, up to an ulp or so
/// off the quotient (KIVI's scales and codes, pooled means). AArch64's own vdivq_f32 is IEEE
/// division, as divps is on x86. Every quotient of float batches in the CPU kernels goes through
/// here, so that the scalar oracles, the tails and the CUDA bodies see the same bits (double
/// batches divide with vdivq_f64 already).
template <class Arch>
float_batch<Arch> divide(const float_batch<Arch>& a, const float_batch<Arch>& b) noexcept {
#if XSIMD_WITH_NEON64
  if constexpr (std::is_base_of_v<xsimd::neon64, simd_arch_t<Arch>>) return vdivq_f32(a, b);
  else
#endif
    return a / b;
}

/// a < b ? a : b and a > b ? a : b per lane: b where they are equal (+0 and −0) or either is
/// NaN, as the scalar oracles write min and max. On x86 one instruction (MINPS and MAXPS return
/// their second operand unless the first is less, or greater); NEON's min and max propagate NaN
/// and order −0 below +0, so there the select.
template <class Arch>
float_batch<Arch> lane_min(const float_batch<Arch>& a, const float_batch<Arch>& b) noexcept {
  if constexpr (lane_isa_of<Arch>() != lane_isa::generic) return xsimd::min(a, b);
  else return xsimd::select(a < b, a, b);
}
template <class Arch>
float_batch<Arch> lane_max(const float_batch<Arch>& a, const float_batch<Arch>& b) noexcept {
  if constexpr (lane_isa_of<Arch>() != lane_isa::generic) return xsimd::max(a, b);
  else return xsimd::select(a > b, a, b);
}

/// Whether `multiply_add<Arch>` rounds once: AVX-512, xsimd's fma3 architectures, and NEON where
/// the target has fused multiply-add (xsimd's NEON `fma` is `vfmaq_f32` then: every AArch64).
template <class Arch>
constexpr bool multiply_add_fuses() noexcept {
  using A = simd_arch_t<Arch>;
#if XSIMD_WITH_NEON && defined(__ARM_FEATURE_FMA)
  if constexpr (std::is_base_of_v<xsimd::neon, A>) return true;
#endif
  return lane_isa_of<Arch>() == lane_isa::avx512 || std::is_base_of_v<xsimd::fma3<xsimd::sse4_2>, A> ||
         std::is_base_of_v<xsimd::fma3<xsimd::avx>, A> || std::is_base_of_v<xsimd::fma3<xsimd::avx2>, A>;
}

/// The scalar form of `multiply_add<Arch>`, for tails and strided rows: one rounding where the
/// ISA fuses (std::fma), two where it does not. Caveat: with `Arch` pinned below the translation
/// unit's ISA (e.g. `cpu<xsimd::sse2>` in a `-march=native` build), GCC's default
/// `-ffp-contract=fast` may still fuse the two-rounding forms here and in xsimd's generic `fma`.
template <class Arch>
float multiply_add(float a, float b, float c) noexcept {
  if constexpr (multiply_add_fuses<Arch>()) {
    return std::fma(a, b, c);
  } else {
    const float product = a * b;
    return product + c;
  }
}

/// a·b per lane (float or double batches), rounded on its own: an empty asm statement that
/// claims to change the product stops the compiler from fusing it into a following add (GCC's
/// default `-ffp-contract=fast` would), so `separate_product(a, b) + c` rounds twice on every ISA
/// and with every flag.
template <class Batch>
Batch separate_product(const Batch& a, const Batch& b) noexcept {
  Batch product = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  auto lanes = product.data;
  __asm__("" : "+v"(lanes));
  product = lanes;
#elif defined(__GNUC__) && defined(__aarch64__)
  auto lanes = product.data;
  __asm__("" : "+w"(lanes));
  product = lanes;
#else
  volatile typename Batch::value_type one = 1;  // a factor the compiler cannot see through
  product = product * Batch(static_cast<typename Batch::value_type>(one));
#endif
  return product;
}

/// The horizontal sums of `float_batch<Arch>::size` batches, as one batch: lane j is the sum of
/// the lanes of `rows[j]` (xsimd::haddp). xsimd 8.1's AVX-512 kernel of haddp swaps lanes 2–3
/// with 4–5 and 10–11 with 12–13; for AVX-512 each row is folded to 8 lanes (low half + high
/// half) and the two sets of 8 are reduced with AVX's pairwise adds instead.
template <class Arch>
float_batch<Arch> sums_of_rows(const float_batch<Arch>* rows) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) {
    const auto eight = [&](int first) {
      __m256 h[8];
      for (int j = 0; j < 8; ++j) {
        const __m512 a = rows[first + j];
        h[j] = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
      }
      // hadd(hadd(h0, h1), hadd(h2, h3)) holds rows 0–3 in each 128-bit half: add the halves.
      const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
      const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(h[4], h[5]), _mm256_hadd_ps(h[6], h[7]));
      return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    };
    const __m256 lo = eight(0), hi = eight(8);
    return float_batch<Arch>(_mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lo)), _mm256_castps_pd(hi), 1)));
  }
#endif
  return xsimd::haddp(rows);
}

/// Transposes `float_batch<Arch>::size` batches in place: lane j of rows[i] becomes lane i of
/// rows[j]. x86 forms: the 4 × 4 transpose within each 128-bit lane (unpack, then shuffle),
/// then, for AVX2 and AVX-512, the 128-bit blocks across batches (permute2f128, shuffle_f32x4).
/// Other architectures go through memory.
template <class Arch>
void transpose_square(float_batch<Arch>* rows) noexcept {
  constexpr index_t w = float_batch<Arch>::size;
#if XSIMD_WITH_SSE2
  if constexpr (lane_isa_of<Arch>() != lane_isa::generic) {
    using reg = typename float_batch<Arch>::register_type;
    // Within 128-bit lanes: batch c of quad q holds element 4k + c of rows 4q … 4q + 3 in lane k.
    reg quad[w];
    for (index_t q = 0; q < w / 4; ++q) {
      const reg r0 = rows[4 * q], r1 = rows[4 * q + 1], r2 = rows[4 * q + 2], r3 = rows[4 * q + 3];
      reg* out = quad + 4 * q;
#if XSIMD_WITH_AVX512F
      if constexpr (w == 16) {
        const reg lo01 = _mm512_unpacklo_ps(r0, r1), hi01 = _mm512_unpackhi_ps(r0, r1);
        const reg lo23 = _mm512_unpacklo_ps(r2, r3), hi23 = _mm512_unpackhi_ps(r2, r3);
        out[0] = _mm512_shuffle_ps(lo01, lo23, 0x44), out[1] = _mm512_shuffle_ps(lo01, lo23, 0xEE);
        out[2] = _mm512_shuffle_ps(hi01, hi23, 0x44), out[3] = _mm512_shuffle_ps(hi01, hi23, 0xEE);
      }
#endif
#if XSIMD_WITH_AVX
      if constexpr (w == 8) {
        const reg lo01 = _mm256_unpacklo_ps(r0, r1), hi01 = _mm256_unpackhi_ps(r0, r1);
        const reg lo23 = _mm256_unpacklo_ps(r2, r3), hi23 = _mm256_unpackhi_ps(r2, r3);
        out[0] = _mm256_shuffle_ps(lo01, lo23, 0x44), out[1] = _mm256_shuffle_ps(lo01, lo23, 0xEE);
        out[2] = _mm256_shuffle_ps(hi01, hi23, 0x44), out[3] = _mm256_shuffle_ps(hi01, hi23, 0xEE);
      }
#endif
      if constexpr (w == 4) {
        const reg lo01 = _mm_unpacklo_ps(r0, r1), hi01 = _mm_unpackhi_ps(r0, r1);
        const reg lo23 = _mm_unpacklo_ps(r2, r3), hi23 = _mm_unpackhi_ps(r2, r3);
        out[0] = _mm_movelh_ps(lo01, lo23), out[1] = _mm_movehl_ps(lo23, lo01);
        out[2] = _mm_movelh_ps(hi01, hi23), out[3] = _mm_movehl_ps(hi23, hi01);
      }
    }
    // Across 128-bit blocks: row 4k + c is block k of batch c of every quad, quad q in block q.
    for (index_t c = 0; c < 4; ++c) {
#if XSIMD_WITH_AVX512F
      if constexpr (w == 16) {
        const reg y0 = _mm512_shuffle_f32x4(quad[c], quad[4 + c], 0x44);
        const reg y1 = _mm512_shuffle_f32x4(quad[c], quad[4 + c], 0xEE);
        const reg y2 = _mm512_shuffle_f32x4(quad[8 + c], quad[12 + c], 0x44);
        const reg y3 = _mm512_shuffle_f32x4(quad[8 + c], quad[12 + c], 0xEE);
        rows[c] = _mm512_shuffle_f32x4(y0, y2, 0x88), rows[4 + c] = _mm512_shuffle_f32x4(y0, y2, 0xDD);
        rows[8 + c] = _mm512_shuffle_f32x4(y1, y3, 0x88), rows[12 + c] = _mm512_shuffle_f32x4(y1, y3, 0xDD);
      }
#endif
#if XSIMD_WITH_AVX
      if constexpr (w == 8) {
        rows[c] = _mm256_permute2f128_ps(quad[c], quad[4 + c], 0x20);
        rows[4 + c] = _mm256_permute2f128_ps(quad[c], quad[4 + c], 0x31);
      }
#endif
      if constexpr (w == 4) rows[c] = quad[c];
    }
  } else  // the other ISAs go through memory
#endif
  {
    alignas(64) float lanes[w][w];
    for (index_t i = 0; i < w; ++i) rows[i].store_aligned(lanes[i]);
    for (index_t j = 0; j < w; ++j) {
      alignas(64) float column[w];
      for (index_t i = 0; i < w; ++i) column[i] = lanes[i][j];
      rows[j] = float_batch<Arch>::load_aligned(column);
    }
  }
}

/// 0, 1, 2, … in the lanes of a float batch.
template <class Arch>
float_batch<Arch> lane_indices() noexcept {
  constexpr index_t w = float_batch<Arch>::size;
  alignas(64) float v[w];
  for (index_t i = 0; i < w; ++i) v[i] = static_cast<float>(i);
  return float_batch<Arch>::load_aligned(v);
}

/// The least lane of a batch (`Max`: the greatest), in an unspecified order: exact but for the
/// sign of a zero and which NaN, as folds_of_rows. For the few rows where a whole fold tree is
/// more than is needed.
template <bool Max, class Arch>
float lanes_extreme(const float_batch<Arch>& x) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) {
    if constexpr (Max) return _mm512_reduce_max_ps(x);
    else return _mm512_reduce_min_ps(x);
  }
#endif
  constexpr index_t w = float_batch<Arch>::size;
  alignas(64) float v[w];
  x.store_aligned(v);
  float e = v[0];
  for (index_t i = 1; i < w; ++i) e = Max ? (e > v[i] ? e : v[i]) : (e < v[i] ? e : v[i]);
  return e;
}

/// Bit i set where `test(v[i])` holds: the generic form of lane_mask and sign_lanes, through memory.
template <class T, std::size_t W, class Test>
std::uint32_t bits_where(const T (&v)[W], const Test& test) noexcept {
  std::uint32_t m = 0;
  for (std::size_t i = 0; i < W; ++i) m |= static_cast<std::uint32_t>(test(v[i])) << i;
  return m;
}

/// Bit i set where lane i of `b` holds (i < size): the lanes of a float comparison as an integer.
template <class Arch>
TOKRED_FORCE_INLINE std::uint32_t lane_mask(const xsimd::batch_bool<float, simd_arch_t<Arch>>& b) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) return static_cast<__mmask16>(b);
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) return static_cast<std::uint32_t>(_mm256_movemask_ps(b));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) return static_cast<std::uint32_t>(_mm_movemask_ps(b));
#endif
  alignas(64) bool v[float_batch<Arch>::size];
  b.store_aligned(v);
  return bits_where(v, [](bool lane) { return lane; });
}

/// Bit i set where lane i of `x` has its sign bit set (−0 and negative NaNs too).
template <class Arch>
TOKRED_FORCE_INLINE std::uint32_t sign_lanes(const float_batch<Arch>& x) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) return _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512());
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) return static_cast<std::uint32_t>(_mm256_movemask_ps(x));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) return static_cast<std::uint32_t>(_mm_movemask_ps(x));
#endif
  alignas(64) float v[float_batch<Arch>::size];
  x.store_aligned(v);
  return bits_where(v, [](float lane) { return std::signbit(lane); });
}

/// One level of folds_of_rows' tree: out[i] = fold(low(a, b), high(a, b)) for the pair a, b =
/// in[2i], in[2i + 1], i < n.
template <class Reg, class Fold, class Low, class High>
TOKRED_FORCE_INLINE void fold_pairs(const Reg* in, Reg* out, int n, const Fold& fold, const Low& low,
                                    const High& high) noexcept {
  for (int i = 0; i < n; ++i) out[i] = fold(low(in[2 * i], in[2 * i + 1]), high(in[2 * i], in[2 * i + 1]));
}

/// The folds of `float_batch<Arch>::size` batches, as one batch: lane j is `op` folded over the
/// lanes of `rows[j]`, in an unspecified order (for min and max exact, but for the sign of a
/// zero and which NaN). AVX-512 and AVX2 fold pairs of batches into one holding half as many
/// lanes of each (halves, then 128-bit blocks, then lanes within blocks: 45 instructions for 16
/// rows, 21 for 8); other ISAs transpose and fold down the columns.
template <class Arch, class Op>
float_batch<Arch> folds_of_rows(const float_batch<Arch>* rows, const Op& op) noexcept {
  using fb = float_batch<Arch>;
  constexpr index_t w = fb::size;
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) {
    // The tree leaves the fold of slot k + 4m in lane 4k + m, so slot p takes row 4(p mod 4) + p/4.
    using reg = __m512;
    const auto fold = [&](reg a, reg b) -> reg { return op(fb(a), fb(b)); };
    reg slots[16], halves[8], blocks[4], pairs[2], folded[1];
    for (int p = 0; p < 16; ++p) slots[p] = rows[4 * (p % 4) + p / 4];
    fold_pairs(slots, halves, 8, fold, [](reg a, reg b) { return _mm512_shuffle_f32x4(a, b, 0x44); },
               [](reg a, reg b) { return _mm512_shuffle_f32x4(a, b, 0xEE); });  // 8 lanes of each slot
    fold_pairs(halves, blocks, 4, fold, [](reg a, reg b) { return _mm512_shuffle_f32x4(a, b, 0x88); },
               [](reg a, reg b) { return _mm512_shuffle_f32x4(a, b, 0xDD); });  // a 128-bit block each
    fold_pairs(blocks, pairs, 2, fold, [](reg a, reg b) { return _mm512_shuffle_ps(a, b, 0x44); },
               [](reg a, reg b) { return _mm512_shuffle_ps(a, b, 0xEE); });  // 2 lanes in every block
    fold_pairs(pairs, folded, 1, fold, [](reg a, reg b) { return _mm512_shuffle_ps(a, b, 0x88); },
               [](reg a, reg b) { return _mm512_shuffle_ps(a, b, 0xDD); });
    return fb(folded[0]);
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx2) {
    // The same tree for 8 lanes: the fold of slot 2m + k lands in lane 4k + m, so slot p takes
    // row 4(p mod 2) + p/2.
    using reg = __m256;
    const auto fold = [&](reg a, reg b) -> reg { return op(fb(a), fb(b)); };
    reg slots[8], halves[4], pairs[2], folded[1];
    for (int p = 0; p < 8; ++p) slots[p] = rows[4 * (p % 2) + p / 2];
    fold_pairs(slots, halves, 4, fold, [](reg a, reg b) { return _mm256_permute2f128_ps(a, b, 0x20); },
               [](reg a, reg b) { return _mm256_permute2f128_ps(a, b, 0x31); });  // a 128-bit half each
    fold_pairs(halves, pairs, 2, fold, [](reg a, reg b) { return _mm256_shuffle_ps(a, b, 0x44); },
               [](reg a, reg b) { return _mm256_shuffle_ps(a, b, 0xEE); });  // 2 lanes in every half
    fold_pairs(pairs, folded, 1, fold, [](reg a, reg b) { return _mm256_shuffle_ps(a, b, 0x88); },
               [](reg a, reg b) { return _mm256_shuffle_ps(a, b, 0xDD); });
    return fb(folded[0]);
  }
#endif
  fb columns[w];
  for (index_t i = 0; i < w; ++i) columns[i] = rows[i];
  transpose_square<Arch>(columns);
  fb folded = columns[0];
  for (index_t i = 1; i < w; ++i) folded = op(folded, columns[i]);
  return folded;
}

/// Whether `pack_code_block<Bits, Arch>` has a vector form (x86: the codes narrowed to bytes,
/// then merged).
template <class Arch>
constexpr bool has_code_packing() noexcept {
  return lane_isa_of<Arch>() != lane_isa::generic;
}

#if XSIMD_WITH_SSE2
/// 32 codes (each below 256), code i in lane i mod size of `codes[i / size]`, as bytes in code
/// order: codes 0–15 in `b0`, 16–31 in `b1` (only where has_code_packing<Arch>()).
template <class Arch>
TOKRED_FORCE_INLINE void code_bytes(const u32_batch<Arch>* codes, __m128i& b0, __m128i& b1) noexcept {
  constexpr lane_isa isa = lane_isa_of<Arch>();
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) b0 = _mm512_cvtepi32_epi8(codes[0]), b1 = _mm512_cvtepi32_epi8(codes[1]);
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) {
    // The packs work within 128-bit lanes: dword k of the result holds codes 4k' … 4k' + 3 of
    // batch k mod 4 (k' = k / 4 in lane order); one permute puts the dwords in code order.
    const __m256i bytes =
        _mm256_packus_epi16(_mm256_packus_epi32(codes[0], codes[1]), _mm256_packus_epi32(codes[2], codes[3]));
    const __m256i ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    b0 = _mm256_castsi256_si128(ordered), b1 = _mm256_extracti128_si256(ordered, 1);
  }
#endif
  if constexpr (isa == lane_isa::sse2) {
    const auto bytes = [&](int h) {  // codes 16h … 16h + 15, in order (the codes fit any pack)
      return _mm_packus_epi16(_mm_packs_epi32(codes[4 * h], codes[4 * h + 1]),
                              _mm_packs_epi32(codes[4 * h + 2], codes[4 * h + 3]));
    };
    b0 = bytes(0), b1 = bytes(1);
  }
}
#endif

/// Packs 32 codes of `Bits` bits (2, 4 or 8), code i in lane i mod size of `codes[i / size]`,
/// each below 2^Bits, into the `Bits` little-endian words of their code stream: code i at bit
/// Bits·i (only where has_code_packing<Arch>()).
template <int Bits, class Arch>
TOKRED_FORCE_INLINE void pack_code_block([[maybe_unused]] const u32_batch<Arch>* codes,
                                         [[maybe_unused]] std::uint32_t* words) noexcept {
  static_assert(has_code_packing<Arch>(), "tokred: no vector code packing for this architecture");
  static_assert(Bits == 2 || Bits == 4 || Bits == 8, "tokred: packs 2-, 4- and 8-bit codes");
#if XSIMD_WITH_SSE2
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // the VBMI and SSSE3 forms
#if XSIMD_WITH_AVX512F && defined(__AVX512VBMI__) && defined(__AVX512BITALG__)
  if constexpr (isa == lane_isa::avx512 && Bits == 2) {
    // One byte permute puts codes 4k … 4k + 3 (byte 0 of their dword lanes, bytes 4i of the two
    // batches) in bytes 0–3 of qword k; one bit gather per qword then takes their two low bits
    // each in code order: mask bit 2i + b is bit b of code i, the 64 bits of the stream. (4- and
    // 8-bit codes gained 0–2 % from a permute of their own; they keep the narrowing below.)
    alignas(64) static constexpr std::uint8_t quads[64] = {
        0,  4,  8,  12,  0, 0, 0, 0, 16, 20, 24, 28,  0, 0, 0, 0, 32, 36, 40, 44,  0, 0, 0, 0,
        48, 52, 56, 60,  0, 0, 0, 0, 64, 68, 72, 76,  0, 0, 0, 0, 80, 84, 88, 92,  0, 0, 0, 0,
        96, 100, 104, 108, 0, 0, 0, 0, 112, 116, 120, 124, 0, 0, 0, 0};
    const __m512i bytes = _mm512_permutex2var_epi8(codes[0], _mm512_load_si512(quads), codes[1]);
    const std::uint64_t stream = _mm512_bitshuffle_epi64_mask(bytes, _mm512_set1_epi64(0x1918111009080100LL));
    std::memcpy(words, &stream, sizeof stream);
    return;
  }
#endif
  __m128i b0, b1;  // codes 0–15, 16–31 as bytes
  code_bytes<Arch>(codes, b0, b1);
  if constexpr (Bits == 8) {  // the bytes are the stream
    _mm_storeu_si128(reinterpret_cast<__m128i*>(words), b0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(words + 4), b1);
  } else {
    // Byte pairs merged into 16-bit lanes as b + 2^Bits·b' (pmaddubsw where the build has
    // SSSE3, else a shift, an or and a mask), for 2 bits then pairs of those into 32-bit lanes
    // as p + 16·p' (pmaddwd); the sums, below 256, saturate to themselves when packed.
    const auto pairs = [](__m128i b) {
#if XSIMD_WITH_SSSE3
      if constexpr (isa != lane_isa::sse2)
        return _mm_maddubs_epi16(b, _mm_set1_epi16(static_cast<short>(1 | (1 << Bits) << 8)));
#endif
      return _mm_and_si128(_mm_or_si128(b, _mm_srli_epi16(b, 8 - Bits)), _mm_set1_epi16((1 << 2 * Bits) - 1));
    };
    const __m128i p0 = pairs(b0), p1 = pairs(b1);
    if constexpr (Bits == 4) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(words), _mm_packus_epi16(p0, p1));
    } else {
      const __m128i quad_weights = _mm_set1_epi32(1 | 16 << 16);
      const __m128i q = _mm_packs_epi32(_mm_madd_epi16(p0, quad_weights), _mm_madd_epi16(p1, quad_weights));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(words), _mm_packus_epi16(q, q));
    }
  }
#endif
}

/// Integer codes (below 2³¹, or negative ones as two's complement) as floats, exactly.
template <class Arch>
TOKRED_FORCE_INLINE float_batch<Arch> code_floats(const u32_batch<Arch>& q) noexcept {
  return xsimd::to_float(xsimd::bitwise_cast<xsimd::batch<std::int32_t, simd_arch_t<Arch>>>(q));
}

/// `u32_batch<Arch>::size` bytes at `p`, each zero-extended into a lane (one x86 instruction
/// family per architecture, as for bf16; xsimd's converting load elsewhere).
template <class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> widen_bytes(const std::uint8_t* p) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // x86 builds only
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512)
    return u32_batch<Arch>(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2)
    return u32_batch<Arch>(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) {
    std::int32_t four;
    std::memcpy(&four, p, sizeof four);
    const __m128i zero = _mm_setzero_si128();
    return u32_batch<Arch>(_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), zero), zero));
  }
#endif
  return u32_batch<Arch>::load_unaligned(p);
}

/// Whether `shift_right_lanes<Arch>` is one instruction (vpsrlvd: AVX2 and AVX-512). xsimd 8.1
/// shifts by a batch one lane at a time on other ISAs (and on AVX-512, hence the intrinsic).
template <class Arch>
constexpr bool has_lane_shifts() noexcept {
  return lane_isa_of<Arch>() == lane_isa::avx2 || lane_isa_of<Arch>() == lane_isa::avx512;
}

/// Lane i of x shifted right (logically) by lane i of s, each shift below 32.
template <class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> shift_right_lanes(const u32_batch<Arch>& x, const u32_batch<Arch>& s) noexcept {
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) return u32_batch<Arch>(_mm512_srlv_epi32(x, s));
#endif
#if XSIMD_WITH_AVX2
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx2) return u32_batch<Arch>(_mm256_srlv_epi32(x, s));
#endif
  return x >> s;
}

/// Whether `lookup16<Arch>` is one instruction (vpermps over 16 lanes: AVX-512).
template <class Arch>
constexpr bool has_lookup16() noexcept {
  return lane_isa_of<Arch>() == lane_isa::avx512;
}

/// Lane i is lane (index[i] mod 16) of `table` (only where has_lookup16<Arch>()).
template <class Arch>
TOKRED_FORCE_INLINE float_batch<Arch> lookup16([[maybe_unused]] const float_batch<Arch>& table,
                                               [[maybe_unused]] const u32_batch<Arch>& index) noexcept {
  static_assert(has_lookup16<Arch>(), "tokred: no 16-lane permute for this architecture");
#if XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) return float_batch<Arch>(_mm512_permutexvar_ps(index, table));
#endif
}

/// Whether ordered_halves<Arch> and the minima and maxima of i16_batch<Arch> are single
/// instructions: x86 (on AVX-512, with BW).
template <class Arch>
constexpr bool has_half_order() noexcept {
  constexpr lane_isa isa = lane_isa_of<Arch>();
#if XSIMD_WITH_AVX512BW
  if constexpr (isa == lane_isa::avx512) return std::is_base_of_v<xsimd::avx512bw, simd_arch_t<Arch>>;
#endif
  return isa == lane_isa::avx2 || isa == lane_isa::sse2;
}

/// 16-bit float patterns (fp16, bf16: a sign bit over the magnitude's bits) as signed integers
/// in the order of their values: a negative pattern's magnitude bits are flipped, so magnitude m
/// of either sign maps to ±m − (sign ? 1 : 0). Its own inverse. −0 and +0 map to −1 and 0, the
/// one pair of equal values it tells apart; NaN patterns lie beyond the infinity of their sign.
template <class Arch>
TOKRED_FORCE_INLINE i16_batch<Arch> ordered_halves(const i16_batch<Arch>& x) noexcept {
  return x ^ ((x >> 15) & i16_batch<Arch>(static_cast<std::int16_t>(0x7FFF)));
}

/// Whether `lookup_codes32<Bits, Arch>` exists: AVX-512BW's permutes and shifts of 16-bit lanes.
template <class Arch>
constexpr bool has_word_lookup() noexcept {
#if XSIMD_WITH_AVX512BW
  return std::is_base_of_v<xsimd::avx512bw, simd_arch_t<Arch>>;
#else
  return false;
#endif
}

/// For each of 32 16-bit lanes, the byte of a code stream holding its `Bits`-bit code and the
/// code's shift within that byte, as lane constants.
template <int Bits>
struct code_byte_lanes {
  alignas(64) std::uint16_t byte[32] = {};
  alignas(64) std::uint16_t shift[32] = {};
  constexpr code_byte_lanes() noexcept {
    for (int i = 0; i < 32; ++i) byte[i] = static_cast<std::uint16_t>(i / (8 / Bits)), shift[i] = static_cast<std::uint16_t>(i % (8 / Bits) * Bits);
  }
};

template <int Bits>
inline constexpr code_byte_lanes<Bits> code_byte_lanes_v{};

/// out[i] = table[code i] for the 32 codes of `Bits` bits (2 or 4) at `codes`, code i in bits
/// [Bits·i, Bits·(i + 1)) of the little-endian stream: 16-bit entries (fp16 or bf16 values) looked
/// up by code, 32 at once, in five instructions (only where has_word_lookup<Arch>()).
template <int Bits, class Arch>
TOKRED_FORCE_INLINE void lookup_codes32([[maybe_unused]] const std::uint32_t* codes,
                                        [[maybe_unused]] const std::uint16_t (&table)[16],
                                        [[maybe_unused]] std::uint16_t* out) noexcept {
  static_assert(has_word_lookup<Arch>(), "tokred: no 16-bit lane permute for this architecture");
  static_assert(Bits == 2 || Bits == 4, "tokred: looks up 2- and 4-bit codes");
#if XSIMD_WITH_AVX512BW
  const __m128i bytes = Bits == 4 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes))
                                  : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  const __m512i spread = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(bytes));  // byte b in lane b
  const __m512i lane_bytes = _mm512_permutexvar_epi16(
      _mm512_load_si512(reinterpret_cast<const __m512i*>(code_byte_lanes_v<Bits>.byte)), spread);
  const __m512i index = _mm512_and_si512(
      _mm512_srlv_epi16(lane_bytes, _mm512_load_si512(reinterpret_cast<const __m512i*>(code_byte_lanes_v<Bits>.shift))),
      _mm512_set1_epi16((1 << Bits) - 1));
  const __m512i entries = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(table)));
  _mm512_storeu_si512(reinterpret_cast<__m512i*>(out), _mm512_permutexvar_epi16(index, entries));
#endif
}

/// `float_batch<Arch>::size` bf16 at `p`, each zero-extended into the high half of a float lane.
template <class Arch>
float_batch<Arch> widen_bf16(const bf16* p) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // x86 builds only
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return float_batch<Arch>(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return float_batch<Arch>(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) {
    const __m128i h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return float_batch<Arch>(_mm_castsi128_ps(_mm_unpacklo_epi16(_mm_setzero_si128(), h)));
  }
#endif
  const auto bits = u32_batch<Arch>::load_unaligned(reinterpret_cast<const std::uint16_t*>(p));
  return xsimd::bitwise_cast<float_batch<Arch>>(bits << 16);
}

/// `float_batch<Arch>::size` fp16 at `p`, widened exactly as to_float(f16) does, NaN payloads
/// included: the 16-bit patterns move into 32-bit lanes as for bf16, then exponent and mantissa
/// shift into place and the exponent is rebiased; subnormals are normalised by one exact float
/// subtraction (F. Giesen's branch-free conversion), infinities and NaNs rebiased once more.
template <class Arch>
float_batch<Arch> widen_f16(const f16* p) noexcept {
  using ub = u32_batch<Arch>;
  using fb = float_batch<Arch>;
  const ub h = xsimd::bitwise_cast<ub>(widen_bf16<Arch>(reinterpret_cast<const bf16*>(p))) >> 16;
  const ub shifted = (h & ub(0x7FFFu)) << 13;  // exponent and mantissa, at fp32's positions
  const ub exponent = shifted & ub(0x0F800000u);
  const ub rebiased = shifted + ub(0x38000000u);  // (127 − 15) << 23
  const ub special = rebiased + ub(0x38000000u);  // inf / NaN: the fp32 exponent all ones
  const fb small = xsimd::bitwise_cast<fb>(rebiased + ub(0x00800000u)) - xsimd::bitwise_cast<fb>(ub(113u << 23));
  ub bits = xsimd::select(exponent == ub(0x0F800000u), special, rebiased);
  bits = xsimd::select(exponent == ub(0u), xsimd::bitwise_cast<ub>(small), bits);
  return xsimd::bitwise_cast<fb>(bits | ((h & ub(0x8000u)) << 16));
}

/// Whether `widen_f16_hardware<Arch>` exists in this translation unit: AVX-512F converts 16
/// halves in one instruction; the 8- and 4-lane forms need F16C (-mf16c, which -march=native
/// implies on every x86 CPU with AVX2).
template <class Arch>
constexpr bool has_hardware_f16() noexcept {
  constexpr lane_isa isa = lane_isa_of<Arch>();
#if defined(__F16C__)
  if constexpr (isa == lane_isa::avx2 || isa == lane_isa::sse2) return true;
#endif
  return isa == lane_isa::avx512;
}

/// x itself, computed where it stands: under clang an empty asm statement takes the register, so
/// no later comparison is folded into the widening it came from. (clang turns a compare of
/// widened fp16 with a float constant into a compare of the fp16 values, which x86 without
/// AVX512-FP16 then makes lane by lane: a scalar conversion and compare per lane.)
template <class Register>
TOKRED_FORCE_INLINE Register materialized(Register x) noexcept {
#if defined(__clang__) && (defined(__x86_64__) || defined(__i386__))  // "v": an x86 vector register
  __asm__("" : "+v"(x));
#endif
  return x;
}

/// from_float<f16>(x)'s bits: one conversion instruction where the build has F16C (the same bits
/// for every input, as narrow_f16_hardware), the integer rounding of f32_bits_to_f16_bits
/// otherwise.
template <class Arch>
TOKRED_FORCE_INLINE std::uint16_t f16_bits_of(float x) noexcept {
#if defined(__F16C__)
  if constexpr (has_hardware_f16<Arch>())
    return static_cast<std::uint16_t>(_mm_cvtsi128_si32(_mm_cvtps_ph(_mm_set_ss(x), _MM_FROUND_TO_NEAREST_INT)));
#endif
  return f32_bits_to_f16_bits(float_bits(x));
}

/// `float_batch<Arch>::size` fp16 at `p` through x86's conversion instruction (vcvtph2ps): the
/// same bits as to_float(f16) for all 65536 patterns but the 1022 signalling NaNs, which it
/// returns quiet (top mantissa bit set). Only where `has_hardware_f16<Arch>()`.
template <class Arch>
float_batch<Arch> widen_f16_hardware([[maybe_unused]] const f16* p) noexcept {
  static_assert(has_hardware_f16<Arch>(), "tokred: no fp16 conversion instruction for this architecture");
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512)
    return float_batch<Arch>(materialized(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))));
#endif
#if defined(__F16C__) && XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2)
    return float_batch<Arch>(materialized(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))));
#endif
#if defined(__F16C__) && XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2)
    return float_batch<Arch>(materialized(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))));
#endif
}

/// Stores a batch of floats to `float_batch<Arch>::size` fp16 at `p` through x86's conversion
/// instruction (vcvtps2ph, nearest even): the same bits as from_float<f16> for every input —
/// overflow to inf, NaN quiet with its top payload bits, subnormal halves rounded once. Only
/// where `has_hardware_f16<Arch>()`.
template <class Arch>
void narrow_f16_hardware([[maybe_unused]] f16* p, [[maybe_unused]] const float_batch<Arch>& x) noexcept {
  static_assert(has_hardware_f16<Arch>(), "tokred: no fp16 conversion instruction for this architecture");
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();
  [[maybe_unused]] constexpr int nearest = 0;  // imm8 0: round to nearest even, whatever MXCSR says
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512)
    return _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(x, nearest));
#endif
#if defined(__F16C__) && XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) return _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, nearest));
#endif
#if defined(__F16C__) && XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) return _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_cvtps_ph(x, nearest));
#endif
}

/// The bf16 bit patterns of a batch of floats, each in the low half of its 32-bit lane, rounded
/// to nearest even (NaN kept quiet), as from_float<bf16> does. Exact for every input; the
/// stores below use it only for batches that hold a NaN.
template <class Arch>
u32_batch<Arch> bf16_bits(const float_batch<Arch>& x) noexcept {
  const auto bits = xsimd::bitwise_cast<u32_batch<Arch>>(x);
  const auto top = bits >> 16;
  const auto rounded = (bits + (top & 1u) + 0x7FFFu) >> 16;
  const auto quiet_nan = top | 0x0040u;
  // One select in the float domain picks per lane (the NaN test is a float comparison).
  return xsimd::bitwise_cast<u32_batch<Arch>>(
      xsimd::select(xsimd::isnan(x), xsimd::bitwise_cast<float_batch<Arch>>(quiet_nan),
                    xsimd::bitwise_cast<float_batch<Arch>>(rounded)));
}

/// from_float<bf16> of every lane that is not NaN, in the high half of the lane (the low half is
/// left over from the rounding): the carry of bits + 0x7FFF + (bit 16) rounds to nearest even,
/// and runs into the exponent exactly when the value rounds up to the next binade or to inf.
template <class Arch>
u32_batch<Arch> bf16_rounded_high(const float_batch<Arch>& x) noexcept {
  const auto bits = xsimd::bitwise_cast<u32_batch<Arch>>(x);
  return bits + ((bits >> 16) & 1u) + 0x7FFFu;
}

/// Per lane: a or b is NaN. One unordered compare on x86 (for two batches, where xsimd's isnan
/// of each costs two compares and an or).
template <class Arch>
xsimd::batch_bool<float, simd_arch_t<Arch>> unordered(const float_batch<Arch>& a,
                                                      const float_batch<Arch>& b) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // x86 builds only
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) return _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) return _mm256_cmp_ps(a, b, _CMP_UNORD_Q);
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) return _mm_cmpunord_ps(a, b);
#endif
  return xsimd::isnan(a) || xsimd::isnan(b);
}

/// True when a or b holds a NaN in some lane.
template <class Arch>
bool any_nan(const float_batch<Arch>& a, const float_batch<Arch>& b) noexcept {
  return xsimd::any(unordered<Arch>(a, b));
}

/// Stores the high halves of the lanes of a and then b to 2·size consecutive 16-bit words.
template <class Arch>
void store_high_halves(std::uint16_t* p, const u32_batch<Arch>& a, const u32_batch<Arch>& b) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // x86 builds only
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(_mm512_srli_epi32(a, 16)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 16), _mm512_cvtepi32_epi16(_mm512_srli_epi32(b, 16)));
    return;
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) {
    // packs works within 128-bit halves; the permute puts a's words before b's. The arithmetic
    // shift makes every word a signed 16-bit value, so the saturating pack keeps it.
    const __m256i packed = _mm256_packs_epi32(_mm256_srai_epi32(a, 16), _mm256_srai_epi32(b, 16));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(packed, 0xD8));
    return;
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) {
    // SSE2 has only the signed-saturating pack (packus_epi32 is SSE4.1): shifting arithmetically
    // sign-extends each half, which packs_epi32 then leaves as it is.
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packs_epi32(_mm_srai_epi32(a, 16), _mm_srai_epi32(b, 16)));
    return;
  }
#endif
  (a >> 16).store_unaligned(p);
  (b >> 16).store_unaligned(p + u32_batch<Arch>::size);
}

/// Stores the high halves of the lanes of a to `size` consecutive 16-bit words.
template <class Arch>
void store_high_halves(std::uint16_t* p, const u32_batch<Arch>& a) noexcept {
  [[maybe_unused]] constexpr lane_isa isa = lane_isa_of<Arch>();  // x86 builds only
#if XSIMD_WITH_AVX512F
  if constexpr (isa == lane_isa::avx512) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(_mm512_srli_epi32(a, 16)));
    return;
  }
#endif
#if XSIMD_WITH_AVX2
  if constexpr (isa == lane_isa::avx2) {
    const __m256i s = _mm256_srai_epi32(a, 16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm_packs_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1)));
    return;
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (isa == lane_isa::sse2) {
    const __m128i s = _mm_srai_epi32(a, 16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(s, s));
    return;
  }
#endif
  (a >> 16).store_unaligned(p);
}

/// The fp16 bit patterns of a batch of floats, each in the high half of its 32-bit lane, exactly
/// as from_float<f16> rounds them (nearest even; overflow to inf; NaN quiet with its top payload
/// bits): normal halves rebias the exponent and round the 13 dropped bits with the carry trick of
/// f32_bits_to_f16_bits; subnormal and zero halves come from one float addition of 2^-1 scaled
/// magic (F. Giesen's conversion), whose rounding to nearest even is the half's. The magnitude's
/// pattern is below 2³¹, so its three cases are told apart by signed comparisons (one instruction
/// each on SSE2 and AVX2, where unsigned ones take three).
template <class Arch>
TOKRED_FORCE_INLINE u32_batch<Arch> f16_bits_high(const float_batch<Arch>& x) noexcept {
  using ub = u32_batch<Arch>;
  using ib = xsimd::batch<std::int32_t, simd_arch_t<Arch>>;
  using fb = float_batch<Arch>;
  const ub bits = xsimd::bitwise_cast<ub>(x);
  const ub sign = (bits >> 16) & ub(0x8000u);
  const ub ax = bits & ub(0x7FFFFFFFu);
  const ib magnitude = xsimd::bitwise_cast<ib>(ax);
  const ub odd = (ax >> 13) & ub(1u);
  const ub normal = (ax + ub(0xC8000FFFu) + odd) >> 13;
  const fb denorm_magic = xsimd::bitwise_cast<fb>(ub(126u << 23));  // 0.5: the half's ulp lands on bit 0
  const ub subnormal = xsimd::bitwise_cast<ub>(xsimd::bitwise_cast<fb>(ax) + denorm_magic) - ub(126u << 23);
  const ub nan = ub(0x7E00u) | ((ax >> 13) & ub(0x3FFu));
  ib h = xsimd::select(magnitude < ib(0x38800000), xsimd::bitwise_cast<ib>(subnormal), xsimd::bitwise_cast<ib>(normal));
  h = xsimd::select(magnitude >= ib(0x477FF000), ib(0x7C00), h);
  h = xsimd::select(magnitude > ib(0x7F800000), xsimd::bitwise_cast<ib>(nan), h);
  return (xsimd::bitwise_cast<ub>(h) | sign) << 16;
}

/// Stores the batches to bf16 (a's lanes first) with AVX512_BF16's vcvtneps2bf16 (one batch) or
/// vcvtne2ps2bf16 (two), where the build has them: they round to nearest even as from_float<bf16>
/// does, but read subnormal inputs as zero. False, storing nothing, without them or when a lane
/// is a NaN or subnormal (AVX512DQ's vfpclassps finds those): the integer path takes the batch.
template <class Arch, class... Batches>
bool narrow_bf16_by_instruction(std::uint16_t* q, const Batches&... x) noexcept {
  static_assert(sizeof...(Batches) == 1 || sizeof...(Batches) == 2, "tokred: one or two batches");
#if defined(__AVX512BF16__) && defined(__AVX512DQ__) && XSIMD_WITH_AVX512F
  if constexpr (lane_isa_of<Arch>() == lane_isa::avx512) {
    constexpr int nan_or_subnormal = 0x01 | 0x80 | 0x20;  // quiet NaN, signalling NaN, subnormal
    if ((_mm512_fpclass_ps_mask(x, nan_or_subnormal) | ...) != 0) return false;
    const __m512 lanes[] = {x...};
    if constexpr (sizeof...(Batches) == 1) {
      const __m256bh h = _mm512_cvtneps_pbh(lanes[0]);
      std::memcpy(q, &h, sizeof(h));
    } else {
      const __m512bh h = _mm512_cvtne2ps_pbh(lanes[1], lanes[0]);  // the first operand fills the high half
      std::memcpy(q, &h, sizeof(h));
    }
    return true;
  }
#endif
  (void)q, ((void)x, ...);
  return false;
}

/// Stores a batch of floats to `float_batch<Arch>::size` bf16, exactly as from_float<bf16>.
template <class Arch>
void narrow_bf16(bf16* p, const float_batch<Arch>& x) noexcept {
  auto* q = reinterpret_cast<std::uint16_t*>(p);
  if (narrow_bf16_by_instruction<Arch>(q, x)) return;
  if (xsimd::any(xsimd::isnan(x))) return store_high_halves<Arch>(q, bf16_bits<Arch>(x) << 16);
  store_high_halves<Arch>(q, bf16_rounded_high<Arch>(x));
}

/// Loads `float_batch<Arch>::size` elements of storage type E from `p` as floats.
template <class Arch, class E>
float_batch<Arch> load_floats(const E* p) noexcept {
  if constexpr (std::is_same_v<E, float>) {
    return float_batch<Arch>::load_unaligned(p);
  } else if constexpr (std::is_same_v<E, bf16>) {
    return widen_bf16<Arch>(p);
  } else {
    return widen_f16<Arch>(p);
  }
}

/// Stores a batch of floats to `p` as storage type E, rounding to nearest even.
template <class Arch, class E>
TOKRED_FORCE_INLINE void store_floats(E* p, const float_batch<Arch>& x) noexcept {
  if constexpr (std::is_same_v<E, float>) {
    x.store_unaligned(p);
  } else if constexpr (std::is_same_v<E, bf16>) {
    narrow_bf16<Arch>(p, x);
  } else if constexpr (has_hardware_f16<Arch>()) {
    narrow_f16_hardware<Arch>(p, x);
  } else {
    store_high_halves<Arch>(reinterpret_cast<std::uint16_t*>(p), f16_bits_high<Arch>(x));
  }
}

/// store_floats of two batches of bf16 when one holds a NaN: the select of bf16_bits.
template <class Arch>
void narrow_bf16_exact(bf16* p, const float_batch<Arch>& a, const float_batch<Arch>& b) noexcept {
  store_high_halves<Arch>(reinterpret_cast<std::uint16_t*>(p), bf16_bits<Arch>(a) << 16,
                          bf16_bits<Arch>(b) << 16);
}

/// Stores two batches of floats to 2·size consecutive elements of E (a's, then b's).
/// `may_hold_nan = false` promises that no lane is NaN (a maximum of NaN-free inputs) and skips
/// the test for the exact path.
template <class Arch, class E>
void store_floats(E* p, const float_batch<Arch>& a, const float_batch<Arch>& b,
                  bool may_hold_nan = true) noexcept {
  if constexpr (std::is_same_v<E, bf16>) {
    auto* q = reinterpret_cast<std::uint16_t*>(p);
    if (narrow_bf16_by_instruction<Arch>(q, a, b)) return;
    if (may_hold_nan && any_nan<Arch>(a, b)) return narrow_bf16_exact<Arch>(p, a, b);
    store_high_halves<Arch>(q, bf16_rounded_high<Arch>(a), bf16_rounded_high<Arch>(b));
  } else {
    store_floats<Arch>(p, a);
    store_floats<Arch>(p + float_batch<Arch>::size, b);
  }
}

/// Two batches of floats holding the 2·size elements at `p`, in an order `store_float_pair`
/// undoes; element-wise arithmetic between pairs is indifferent to that order. For bf16 the
/// order is even elements, then odd: one 32-bit load splits into its two halves with a shift and
/// a mask on every ISA, and the store joins them again with a shift, a mask and an or (2 × 2
/// pooling of 24 × 24 × 1024 bf16 rows: SSE2 build 323 µs with xsimd's widening load and
/// narrowing store, 108 µs in pairs; AVX-512 build 66 and 47 µs).
template <class Arch>
struct float_pair {
  float_batch<Arch> first, second;
};

template <class Arch, class E>
float_pair<Arch> load_float_pair(const E* p) noexcept {
  if constexpr (std::is_same_v<E, bf16>) {
    const auto words = u32_batch<Arch>::load_unaligned(reinterpret_cast<const std::uint32_t*>(p));
    return {xsimd::bitwise_cast<float_batch<Arch>>(words << 16),
            xsimd::bitwise_cast<float_batch<Arch>>(words & 0xFFFF0000u)};
  } else {
    return {load_floats<Arch>(p), load_floats<Arch>(p + float_batch<Arch>::size)};
  }
}

/// Loads `float_batch<Arch>::size` elements of E from `p` as operands of arithmetic: the values
/// of load_floats, except that a signalling NaN may arrive quiet. No arithmetic result can tell:
/// x86's +, −, ×, ÷ and fma pass a NaN operand on with its quiet bit set, whether it was
/// signalling or quiet (Intel SDM vol. 1, table 4-7). (Which of two NaN operands is passed on
/// is not fixed either way: the compiler may order a product's factors as it likes.) Not for
/// copies, comparisons or min/max (MINPS returns its second operand as it is): those take
/// load_floats. What it buys: fp16 widens in one instruction where the build has one
/// (`has_hardware_f16`) instead of about a dozen integer operations. AVX-512, one row's
/// distances to 576 rows of 1024 fp16 values (bench_diversity's distance update): 268 µs with
/// load_floats, 41–48 µs with this, as for bf16 (42–46 µs) and less than for fp32 (75–79 µs).
template <class Arch, class E>
float_batch<Arch> load_operands(const E* p) noexcept {
  if constexpr (std::is_same_v<E, f16> && has_hardware_f16<Arch>()) return widen_f16_hardware<Arch>(p);
  else return load_floats<Arch>(p);
}

/// One element as an operand of arithmetic, as load_operands widens it: fp16 through the
/// conversion instruction where the build has one (a signalling NaN may arrive quiet).
template <class Arch, class E>
TOKRED_FORCE_INLINE float operand_of(E x) noexcept {
#if defined(__F16C__)
  if constexpr (std::is_same_v<E, f16> && has_hardware_f16<Arch>()) return _cvtsh_ss(x.bits);
#endif
  return to_float(x);
}

/// The 2·size elements at `p` as operands of arithmetic, in load_float_pair's order (so bf16
/// pairs hold even elements, then odd): load_operands of a pair.
template <class Arch, class E>
float_pair<Arch> load_operand_pair(const E* p) noexcept {
  if constexpr (std::is_same_v<E, f16> && has_hardware_f16<Arch>())
    return {widen_f16_hardware<Arch>(p), widen_f16_hardware<Arch>(p + float_batch<Arch>::size)};
  else return load_float_pair<Arch>(p);
}

/// store_float_pair of bf16 when the pair holds a NaN: the select of bf16_bits.
template <class Arch>
void store_bf16_pair_exact(bf16* p, const float_pair<Arch>& x) noexcept {
  const auto words = bf16_bits<Arch>(x.first) | (bf16_bits<Arch>(x.second) << 16);
  words.store_unaligned(reinterpret_cast<std::uint32_t*>(p));
}

/// Stores a pair from `load_float_pair` (or arithmetic on such pairs) back to 2·size elements.
/// bf16 rounds with bf16_rounded_high, the exact select of bf16_bits only for pairs holding a
/// NaN (SSE2 build, 2 × 2 average pooling of 24 × 24 × 1024 bf16: 115 µs with bf16_bits for
/// every pair, see docs/benchmarks.md for the figures after).
/// `may_hold_nan` as for store_floats.
template <class Arch, class E>
void store_float_pair(E* p, const float_pair<Arch>& x, bool may_hold_nan = true) noexcept {
  if constexpr (std::is_same_v<E, bf16>) {
    if (may_hold_nan && any_nan<Arch>(x.first, x.second)) return store_bf16_pair_exact<Arch>(p, x);
    const auto words = (bf16_rounded_high<Arch>(x.first) >> 16) |
                       (bf16_rounded_high<Arch>(x.second) & 0xFFFF0000u);
    words.store_unaligned(reinterpret_cast<std::uint32_t*>(p));
  } else {
    store_floats<Arch>(p, x.first, x.second, may_hold_nan);
  }
}

/// Copies `n` contiguous elements, converting Ein to Eout through fp32 when they differ.
template <class Arch, class Ein, class Eout>
void convert_contiguous(const Ein* src, Eout* dst, index_t n) noexcept {
  if constexpr (std::is_same_v<Ein, Eout>) {
    std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(Ein));
  } else {
    constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
    index_t i = 0;
    for (; i + 2 * lanes <= n; i += 2 * lanes)  // two batches: one SSE2/AVX2 pack narrows both
      store_floats<Arch>(dst + i, load_floats<Arch>(src + i), load_floats<Arch>(src + i + lanes));
    for (; i + lanes <= n; i += lanes) store_floats<Arch>(dst + i, load_floats<Arch>(src + i));
    for (; i < n; ++i) dst[i] = from_float<Eout>(to_float(src[i]));
  }
}

/// Copies `n` elements between two rows of any inner stride, converting the element type.
template <class Arch, class Ein, class Eout>
void copy_row(const Ein* src, index_t src_stride, Eout* dst, index_t dst_stride,
              index_t n) noexcept {
  if (src_stride == 1 && dst_stride == 1) return convert_contiguous<Arch>(src, dst, n);
  for (index_t i = 0; i < n; ++i) dst[i * dst_stride] = element_cast<Eout>(src[i * src_stride]);
}

}  // namespace tokred::detail
