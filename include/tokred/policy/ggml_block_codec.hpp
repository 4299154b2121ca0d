// tokred/policy/ggml_block_codec.hpp — one ggml block quantized and dequantized byte for byte,
// and the block Walsh–Hadamard transform, as host/device functions: what the CPU backends
// (<tokred/cpu/ggml_blocks.hpp>, <tokred/cpu/hadamard.hpp>) run on each block and what one CUDA
// thread (<tokred/cuda/ggml_blocks.cuh>) runs on its block.
//
// Byte-identical to ggml's reference C functions (`quantize_row_<type>_ref`,
// `dequantize_row_<type>`, ggml-org/ggml @ d99724f) compiled without FMA: every fp32 operation
// they round is rounded here too, in the same order, whatever flags this header is compiled with.
// The hazard is contraction: g++ (-ffp-contract=fast is its default in GNU modes), clang with
// -ffp-contract=fast and nvcc (--fmad=true is its default) fuse a multiply and an add that reads
// its result into one FMA when the target has one (-march=native on x86, any AArch64, every GPU),
// which skips the rounding of the product: a code changes when x·id + 8.5 lies within an ulp of
// an integer, iq4_nl's scale when its fp16 rounding is that close (a few random blocks in a
// million for q4_0 and q5_0, about one in ten thousand for iq4_nl). A round trip through double
// does not prevent it: the compiler folds it back to float operations first. So every product
// ggml rounds before an add is formed with `array_product` and stored to a block-sized array
// that passes through `keep_rounded`: on the host an empty asm statement that may rewrite the
// array (or volatile copies), so the adds read the array back and the compiler cannot see the
// multiply from there, while the loops on either side still vectorise; on the device the
// product is `__fmul_rn`, which nvcc never fuses. Dequantization needs none: its products (a
// code of at most 8 bits times an fp16 scale of 11) are exact in fp32, so fusing cannot change
// them. Float-to-integer conversions that C leaves undefined (NaN or an overflowing quotient,
// reachable only when the fp32 scale is so small that 1/d overflows) give code 0, as x86 builds
// of ggml do.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/rounded.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred::detail {

// ---------------------------------------------------------------------------------------------
// fp32 steps.

/// a·b for a product that `keep_rounded` then keeps out of fused multiply-adds: a plain product
/// on the host (the array pass does it), `__fmul_rn` on the device.
TOKRED_HOST_DEVICE inline float array_product(float a, float b) noexcept {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// Makes the values of `v` opaque to the host optimiser: what the code reads back afterwards is
/// whatever `v` holds in memory, rounded fp32, so no multiply stored there can be fused into an
/// add that reads it (see above). GNU-compatible compilers (g++, clang++) get an empty asm
/// statement that may read and rewrite the array: no instruction, only a store and a reload of
/// the array; other compilers a volatile copy of each value. Nothing on the device, where
/// `array_product` rounded each product already.
template <std::size_t N>
TOKRED_HOST_DEVICE inline void keep_rounded(float (&v)[N]) noexcept {
#if defined(__CUDA_ARCH__)
  (void)v;
#elif defined(__GNUC__)
  __asm__("" : "+m"(v));
#else
  for (float& e : v) {
    volatile float stored = e;
    e = stored;
  }
#endif
}

/// |x| (std::fabs on the host, where loops of it vectorise; fabsf on the device).
TOKRED_HOST_DEVICE inline float magnitude(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return fabsf(x);
#else
  return std::fabs(x);
#endif
}

/// v where `keep` holds, else +0, by masking its bits. Where a select feeds a conversion, g++
/// turns it into a branch around the conversion, and a loop of it then does not vectorise.
TOKRED_HOST_DEVICE inline float kept_or_zero(float v, bool keep) noexcept {
  return bits_float(float_bits(v) & mask_of(keep));
}

/// C's `(int8_t)(v)` / `(uint8_t)(v)` for v ≥ 0 (truncation toward zero), 0 where C is undefined.
TOKRED_HOST_DEVICE inline int truncate_code(float v) noexcept {
  return static_cast<int>(kept_or_zero(v, (v >= 0.0f) & (v < 256.0f)));
}

/// `roundf(v)` as an int8 code (half away from zero), 0 where the C conversion is undefined
/// (NaN too). Truncation plus a carry: v − trunc(v) is exact (Sterbenz), so the carry is
/// roundf's, and a loop of it vectorises, where g++ calls roundf once per value.
TOKRED_HOST_DEVICE inline int round_code(float v) noexcept {
  const float w = kept_or_zero(v, (v > -128.5f) & (v < 127.5f));
  const int whole = static_cast<int>(w);
  const float rest = w - static_cast<float>(whole);
  return whole + (rest >= 0.5f) - (rest <= -0.5f);
}

// ---------------------------------------------------------------------------------------------
// Bytes.

TOKRED_HOST_DEVICE inline void store_f16(std::uint8_t* p, float v) noexcept {
  const std::uint16_t h = f32_bits_to_f16_bits(float_bits(v));
  p[0] = static_cast<std::uint8_t>(h & 0xFFu);
  p[1] = static_cast<std::uint8_t>(h >> 8);
}

TOKRED_HOST_DEVICE inline float load_f16(const std::uint8_t* p) noexcept {
  return widen(f16{static_cast<std::uint16_t>(p[0] | (p[1] << 8))});
}

TOKRED_HOST_DEVICE inline void store_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

TOKRED_HOST_DEVICE inline std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

/// Level i of iq4_nl's codebook (`iq4nl_levels[i]`), readable in device code too.
TOKRED_HOST_DEVICE constexpr float iq4nl_level(int i) noexcept {
  constexpr std::int8_t levels[16] = {TOKRED_IQ4NL_LEVELS};
  return static_cast<float>(levels[i]);
}

// ---------------------------------------------------------------------------------------------
// Block layout.

/// Where the fields of a block of `type` start after its fp16 d (byte 0) and, for q4_1 and q5_1,
/// its fp16 m (byte 2): the 32-bit qh word of q5_0 and q5_1 (bit j = bit 4 of code j) and the
/// codes (q8_0's 32 bytes; the others' 16 bytes of nibbles, code j low and code j + 16 high).
struct ggml_block_fields {
  index_t qh;
  index_t codes;
};
TOKRED_HOST_DEVICE constexpr ggml_block_fields ggml_fields_of(ggml_type type) noexcept {
  const index_t head = type == ggml_type::q4_1 || type == ggml_type::q5_1 ? 4 : 2;
  return {head, type == ggml_type::q5_0 || type == ggml_type::q5_1 ? head + 4 : head};
}

// ---------------------------------------------------------------------------------------------
// One block.

/// The largest |x[j]| of the block: the largest of the magnitudes' bit patterns, which are
/// ordered as their values are, so NaN's patterns lie above +inf's and a block holding NaN or
/// ±inf gives one of them (see finite_magnitude). An integer maximum vectorises; g++ keeps a
/// float one in order.
TOKRED_HOST_DEVICE inline float block_amax(const float* x) noexcept {
  std::uint32_t largest = 0;
  for (int j = 0; j < 32; ++j) {
    const std::uint32_t bits = float_bits(x[j]) & 0x7FFFFFFFu;
    largest = largest > bits ? largest : bits;
  }
  return bits_float(largest);
}

/// Whether a block's block_amax is finite, that is, whether every value of the block is.
TOKRED_HOST_DEVICE inline bool finite_magnitude(float amax) noexcept { return float_bits(amax) < 0x7F800000u; }

/// The value of largest magnitude `amax` (the block's block_amax), the first of equals, and +0
/// for a block of zeros (q4_0, q5_0, iq4_nl: ggml keeps the first value whose magnitude beats
/// the largest so far, from 0).
TOKRED_HOST_DEVICE inline float signed_absmax(const float* x, float amax) noexcept {
  if (amax == 0.0f) return 0.0f;
  for (int j = 0; j < 32; ++j)
    if (magnitude(x[j]) == amax) return x[j];
  return 0.0f;  // not reached: amax is one of the magnitudes
}

/// Packs 32 codes of at most 4 bits: element i low nibble, element i + 16 high nibble.
TOKRED_HOST_DEVICE inline void pack_nibbles(const int* q, std::uint8_t* qs) noexcept {
  for (int i = 0; i < 16; ++i) qs[i] = static_cast<std::uint8_t>((q[i] & 0x0F) | (q[i + 16] & 0x0F) << 4);
}

/// Bit 4 of the 32 codes as ggml's qh word: bit j = bit 4 of element j.
TOKRED_HOST_DEVICE inline std::uint32_t high_bits(const int* q) noexcept {
  std::uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
  return qh;
}

TOKRED_HOST_DEVICE inline void quantize_q8_0(const float* x, float amax, std::uint8_t* out) noexcept {
  const float d = div_rn(amax, 127.0f);
  const float id = d != 0.0f ? div_rn(1.0f, d) : 0.0f;
  store_f16(out, d);
  for (int j = 0; j < 32; ++j) out[2 + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(round_code(array_product(x[j], id))));
}

/// q4_0 (levels 16, offset 8) and q5_0 (levels 32, offset 16).
template <int Levels>
TOKRED_HOST_DEVICE void quantize_symmetric(const float* x, float amax, std::uint8_t* out) noexcept {
  const float max = signed_absmax(x, amax);
  const float d = div_rn(max, static_cast<float>(-Levels / 2));
  const float id = d != 0.0f ? div_rn(1.0f, d) : 0.0f;
  const float offset = static_cast<float>(Levels / 2) + 0.5f;
  store_f16(out, d);
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = array_product(x[j], id);
  keep_rounded(scaled);
  int q[32];
  for (int j = 0; j < 32; ++j) {
    const int c = truncate_code(scaled[j] + offset);
    q[j] = c < Levels - 1 ? c : Levels - 1;
  }
  constexpr ggml_block_fields at = ggml_fields_of(Levels == 32 ? ggml_type::q5_0 : ggml_type::q4_0);
  if constexpr (Levels == 32) store_u32(out + at.qh, high_bits(q));
  pack_nibbles(q, out + at.codes);
}

/// q4_1 (levels 16, codes clamped to 15) and q5_1 (levels 32, not clamped: a code of 32 keeps
/// its low five bits, 0, as ggml's `(uint8_t)` store does).
template <int Levels>
TOKRED_HOST_DEVICE void quantize_affine(const float* x, std::uint8_t* out) noexcept {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = div_rn(max - min, static_cast<float>(Levels - 1));
  const float id = d != 0.0f ? div_rn(1.0f, d) : 0.0f;
  store_f16(out, d);
  store_f16(out + 2, min);
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = array_product(x[j] - min, id);
  keep_rounded(scaled);
  int q[32];
  for (int j = 0; j < 32; ++j) {
    const int c = truncate_code(scaled[j] + 0.5f);
    q[j] = Levels == 16 ? (c < 15 ? c : 15) : c;
  }
  constexpr ggml_block_fields at = ggml_fields_of(Levels == 32 ? ggml_type::q5_1 : ggml_type::q4_1);
  if constexpr (Levels == 32) store_u32(out + at.qh, high_bits(q));
  pack_nibbles(q, out + at.codes);
}

/// ggml's best_index_int8 for each of 32 values: the nearest codebook level, the upper one on a
/// tie. ggml finds the two levels around v by a binary search; here the upper one's index is 1
/// plus the number of levels 1 … 14 at or below v (so 1 below level 1, 15 from level 14 up), and
/// v takes the lower one if it is strictly nearer: the same index for every v, with no branch,
/// in loops over the block that vectorise (iq4_nl quantization of 8 × 64 × 128 fp32 values:
/// 1.21 ms with the search, 0.49 ms so, AVX-512; 1.22 and 0.44 ms with SSE2).
TOKRED_HOST_DEVICE inline void iq4nl_codes(const float (&v)[32], int (&q)[32]) noexcept {
  for (int j = 0; j < 32; ++j) q[j] = 1;
  for (int i = 1; i < 15; ++i) {
    const float level = iq4nl_level(i);
    for (int j = 0; j < 32; ++j) q[j] += v[j] >= level;
  }
  for (int j = 0; j < 32; ++j) {
    const float below = iq4nl_level(q[j] - 1), above = iq4nl_level(q[j]);
    q[j] -= v[j] - below < above - v[j];
  }
}

/// iq4_nl as llama.cpp writes the KV cache (`quantize_row_iq4_nl_ref`, no scale search): codes
/// from d0 = v / −127, then the weighted least-squares scale Σ w·K·x / Σ w·K², w = x².
TOKRED_HOST_DEVICE inline void quantize_iq4_nl(const float* x, float amax, std::uint8_t* out) noexcept {
  const float max = signed_absmax(x, amax);
  if (amax < 1e-15f) {  // ggml's GROUP_MAX_EPS
    store_f16(out, 0.0f);
    for (int i = 0; i < 16; ++i) out[2 + i] = 0x88;
    return;
  }
  const float id = div_rn(1.0f, div_rn(max, -127.0f));
  // id·x is rounded before the level search subtracts levels from it; each product is rounded
  // before the running sums add it.
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = array_product(id, x[j]);
  keep_rounded(scaled);
  int q[32];
  iq4nl_codes(scaled, q);
  float wqx[32], wqq[32];
  for (int j = 0; j < 32; ++j) {
    const float level = iq4nl_level(q[j]);
    const float wq = array_product(array_product(x[j], x[j]), level);
    wqx[j] = array_product(wq, x[j]);
    wqq[j] = array_product(wq, level);
  }
  keep_rounded(wqx);
  keep_rounded(wqq);
  float sumqx = 0.0f, sumq2 = 0.0f;
  for (int j = 0; j < 32; ++j) {
    sumqx += wqx[j];
    sumq2 += wqq[j];
  }
  store_f16(out, sumq2 > 0.0f ? div_rn(sumqx, sumq2) : 0.0f);
  pack_nibbles(q, out + ggml_fields_of(ggml_type::iq4_nl).codes);
}

/// The documented result for a block holding NaN or ±inf: d (and m) NaN, every other byte 0.
TOKRED_HOST_DEVICE inline void quantize_non_finite(ggml_type type, std::uint8_t* out) noexcept {
  for (index_t i = 0; i < ggml_block_bytes(type); ++i) out[i] = 0;
  store_f16(out, quiet_nan());
  if (type == ggml_type::q4_1 || type == ggml_type::q5_1) store_f16(out + 2, quiet_nan());
}

TOKRED_HOST_DEVICE inline void quantize_block(ggml_type type, const float* x, std::uint8_t* out) noexcept {
  const float amax = block_amax(x);  // one pass: the finiteness check and the scale's input
  if (!finite_magnitude(amax)) return quantize_non_finite(type, out);
  switch (type) {
    case ggml_type::q8_0: return quantize_q8_0(x, amax, out);
    case ggml_type::q4_0: return quantize_symmetric<16>(x, amax, out);
    case ggml_type::q4_1: return quantize_affine<16>(x, out);
    case ggml_type::q5_0: return quantize_symmetric<32>(x, amax, out);
    case ggml_type::q5_1: return quantize_affine<32>(x, out);
    case ggml_type::iq4_nl: return quantize_iq4_nl(x, amax, out);
  }
}

/// Code j (0 … 31) of a 4-bit block's nibbles, with bit 4 from qh for 5-bit types.
TOKRED_HOST_DEVICE inline int nibble(const std::uint8_t* qs, int j) noexcept {
  return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
}

/// dequantize_row_<type> of one block: integers times the stored fp16 d (plus m), in fp32. Each
/// product is exact (at most 5 + 11 significant bits, 8 + 11 for q8_0), so q·d + m has the same
/// bits fused or not.
TOKRED_HOST_DEVICE inline void dequantize_block(ggml_type type, const std::uint8_t* in, float* y) noexcept {
  const float d = load_f16(in);
  const std::uint8_t* const codes = in + ggml_fields_of(type).codes;
  switch (type) {
    case ggml_type::q8_0:
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(codes[j])) * d;
      return;
    case ggml_type::q4_0:
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(codes, j) - 8) * d;
      return;
    case ggml_type::q5_0: {
      const std::uint32_t qh = load_u32(in + ggml_fields_of(type).qh);
      for (int j = 0; j < 32; ++j)
        y[j] = static_cast<float>((nibble(codes, j) | static_cast<int>((qh >> j) & 1u) << 4) - 16) * d;
      return;
    }
    case ggml_type::q4_1: {
      const float m = load_f16(in + 2);
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(codes, j)) * d + m;
      return;
    }
    case ggml_type::q5_1: {
      const float m = load_f16(in + 2);
      const std::uint32_t qh = load_u32(in + ggml_fields_of(type).qh);
      for (int j = 0; j < 32; ++j) {
        const int q = nibble(codes, j) | static_cast<int>((qh >> j) & 1u) << 4;
        y[j] = static_cast<float>(q) * d + m;
      }
      return;
    }
    case ggml_type::iq4_nl:
      for (int j = 0; j < 32; ++j) y[j] = d * iq4nl_level(nibble(codes, j));
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// The block Walsh–Hadamard transform, and rows read and written a run of channels at a time.

/// The largest rotation block: 256 floats, one kilobyte of stack per row in flight.
inline constexpr index_t hadamard_max_block = 256;

/// fp32(1/√n) for the supported blocks (n = 32 … 256): 1/√64 = 1/8 and 1/√256 = 1/16 are exact;
/// the others are the correctly rounded float of the exact value.
TOKRED_HOST_DEVICE inline float hadamard_scale(index_t n) noexcept {
  return static_cast<float>(1.0 / ::sqrt(static_cast<double>(n)));
}

/// In place: x ← (H/√n)·x for n a power of two ≥ 4, H Sylvester's Hadamard matrix in natural
/// order. Butterfly spans 1, 2, 4, …, n/2; each pair (a, b) becomes (a + b, a − b). Spans 1 and 2
/// run together on each group of four (the same sums in the same order: loops of one or two
/// butterflies do not vectorise). The scaled values are products: a caller that adds to them
/// passes the array through keep_rounded first.
TOKRED_HOST_DEVICE inline void hadamard_transform(float* x, index_t n) noexcept {
  for (index_t g = 0; g < n; g += 4) {
    const float s0 = x[g] + x[g + 1], d0 = x[g] - x[g + 1], s1 = x[g + 2] + x[g + 3], d1 = x[g + 2] - x[g + 3];
    x[g] = s0 + s1;
    x[g + 1] = d0 + d1;
    x[g + 2] = s0 - s1;
    x[g + 3] = d0 - d1;
  }
  for (index_t span = 4; span < n; span *= 2)
    for (index_t i = 0; i < n; i += 2 * span)
      for (index_t j = i; j < i + span; ++j) {
        const float a = x[j], b = x[j + span];
        x[j] = a + b;
        x[j + span] = a - b;
      }
  const float s = hadamard_scale(n);
  for (index_t i = 0; i < n; ++i) x[i] = array_product(x[i], s);
}

/// The rotation the unit functions below apply: hadamard_transform. A backend may pass its own
/// with the same results (the CPU's runs a batch of SIMD lanes at a time).
struct scalar_rotation {
  TOKRED_HOST_DEVICE void operator()(float* x, index_t n) const noexcept { hadamard_transform(x, n); }
};

/// Reads `n` channels starting at `p` (element stride `stride`) as floats.
template <class E>
TOKRED_HOST_DEVICE void load_channels(const E* p, index_t stride, index_t n, float* out) noexcept {
  if (stride == 1)
    for (index_t c = 0; c < n; ++c) out[c] = widen(p[c]);
  else
    for (index_t c = 0; c < n; ++c) out[c] = widen(p[c * stride]);
}

/// Writes `n` floats to channels starting at `p` (element stride `stride`), rounding to E.
template <class E>
TOKRED_HOST_DEVICE void store_channels(const float* in, index_t n, E* p, index_t stride) noexcept {
  if (stride == 1)
    for (index_t c = 0; c < n; ++c) p[c] = from_float<E>(in[c]);
  else
    for (index_t c = 0; c < n; ++c) p[c * stride] = from_float<E>(in[c]);
}

/// The (head, token) of row r of a (heads, tokens, ·) cache.
struct kv_row {
  index_t head = 0;
  index_t token = 0;
};
TOKRED_HOST_DEVICE constexpr kv_row kv_row_at(index_t r, index_t tokens) noexcept { return {r / tokens, r % tokens}; }

// ---------------------------------------------------------------------------------------------
// Units: what one CUDA thread, or one step of a CPU share, quantizes, dequantizes or rotates.

/// Channels of one unit: the rotation block, or one ggml block without rotation.
TOKRED_HOST_DEVICE constexpr index_t ggml_unit_channels(index_t rotation_block) noexcept {
  return rotation_block != 0 ? rotation_block : ggml_block_elems;
}

/// Where unit u of a (heads, tokens, head_dim) cache lies: its row and first channel, the units
/// of a row side by side.
struct ggml_unit {
  kv_row row;
  index_t channel;
};
TOKRED_HOST_DEVICE constexpr ggml_unit ggml_unit_at(index_t u, index_t tokens, index_t head_dim, index_t width) noexcept {
  return {kv_row_at(u / (head_dim / width), tokens), u % (head_dim / width) * width};
}

/// The first of the blocks of the unit at `at` in a (heads, tokens, bytes) block cache.
template <class B, class Space>
TOKRED_HOST_DEVICE B* ggml_unit_blocks(const view<B, 3, Space>& blocks, ggml_type type, const ggml_unit& at) noexcept {
  return &blocks(at.row.head, at.row.token, at.channel / ggml_block_elems * ggml_block_bytes(type));
}

/// The block quantizer the unit functions below apply: quantize_block. A backend may pass its own
/// with the same bytes (the CPU's runs a batch of SIMD lanes at a time).
struct scalar_block_quantizer {
  TOKRED_HOST_DEVICE void operator()(ggml_type type, const float* x, std::uint8_t* out) const noexcept {
    quantize_block(type, x, out);
  }
};

/// Quantizes the unit at `at` of `x` into `blocks`: its channels widened to fp32, rotated
/// (`rotation` > 0) and kept rounded, then one ggml block per 32 channels.
TOKRED_CALLABLE_MAY_BE_HOST_ONLY
template <bool Rotated, class E, class Space, class Rotation = scalar_rotation, class Quantize = scalar_block_quantizer>
TOKRED_HOST_DEVICE void ggml_quantize_unit(ggml_type type, index_t rotation, const view<const E, 3, Space>& x,
                                           const view<std::uint8_t, 3, Space>& blocks, const ggml_unit& at,
                                           const Rotation& rotate = {}, const Quantize& quantize = {}) noexcept {
  const index_t width = ggml_unit_channels(rotation);
  float buf[Rotated ? hadamard_max_block : ggml_block_elems];
  load_channels(&x(at.row.head, at.row.token, at.channel), x.stride(2), width, buf);
  if constexpr (Rotated) {
    rotate(buf, rotation);
    keep_rounded(buf);  // the scaled values, before q4_1's x − min reads them
  }
  std::uint8_t* dst = ggml_unit_blocks(blocks, type, at);
  for (index_t b = 0; b < width; b += ggml_block_elems, dst += ggml_block_bytes(type)) quantize(type, buf + b, dst);
}

/// Dequantizes the unit at `at` of `blocks` into `y`: one ggml block per 32 channels, rotated
/// back (`rotation` > 0), rounded to E.
TOKRED_CALLABLE_MAY_BE_HOST_ONLY
template <bool Rotated, class E, class Space, class Rotation = scalar_rotation>
TOKRED_HOST_DEVICE void ggml_dequantize_unit(ggml_type type, index_t rotation, const view<const std::uint8_t, 3, Space>& blocks,
                                             const view<E, 3, Space>& y, const ggml_unit& at,
                                             const Rotation& rotate = {}) noexcept {
  const index_t width = ggml_unit_channels(rotation);
  float buf[Rotated ? hadamard_max_block : ggml_block_elems];
  const std::uint8_t* src = ggml_unit_blocks(blocks, type, at);
  for (index_t b = 0; b < width; b += ggml_block_elems, src += ggml_block_bytes(type)) dequantize_block(type, src, buf + b);
  if constexpr (Rotated) rotate(buf, rotation);
  store_channels(buf, width, &y(at.row.head, at.row.token, at.channel), y.stride(2));
}

/// Rotates the unit at `at` (`block` channels) of `in` into `out`; the unit is read whole before
/// it is written, so `out` may be `in` itself.
TOKRED_CALLABLE_MAY_BE_HOST_ONLY
template <class Ein, class Eout, class Space, class Rotation = scalar_rotation>
TOKRED_HOST_DEVICE void hadamard_unit(index_t block, const view<const Ein, 3, Space>& in, const view<Eout, 3, Space>& out,
                                      const ggml_unit& at, const Rotation& rotate = {}) noexcept {
  float buf[hadamard_max_block];
  load_channels(&in(at.row.head, at.row.token, at.channel), in.stride(2), block, buf);
  rotate(buf, block);
  store_channels(buf, block, &out(at.row.head, at.row.token, at.channel), out.stride(2));
}

/// Units of a cache: rows × head_dim / width.
TOKRED_HOST_DEVICE constexpr index_t ggml_unit_count(const kv_problem& p, index_t width) noexcept {
  return p.heads * p.tokens * (p.head_dim / width);
}

}  // namespace tokred::detail
