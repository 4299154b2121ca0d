// tokred/cpu/ggml_blocks.hpp — CPU backends of ggml_quantize and ggml_dequantize.
//
// Byte-identical to ggml's reference C functions (`quantize_row_<type>_ref`,
// `dequantize_row_<type>`, ggml-org/ggml @ d99724f) compiled without FMA: every fp32 operation
// they round is rounded here too, in the same order, whatever flags this header is compiled with.
// The hazard is contraction: g++ (-ffp-contract=fast is its default in GNU modes) and clang with
// -ffp-contract=fast fuse a multiply and an add that reads its result into one FMA when the
// target has one (-march=native on x86, any AArch64), which skips the rounding of the product:
// a code changes when x·id + 8.5 lies within an ulp of an integer, iq4_nl's scale when its fp16
// rounding is that close (a few random blocks in a million for q4_0 and q5_0, about one in ten
// thousand for iq4_nl). A round trip through double does not prevent it: the compiler folds it
// back to float operations first. So every product ggml rounds before an add is stored to a
// block-sized array and passed through `keep_rounded` (an empty asm statement that may rewrite
// the array, or volatile copies), and the adds read the array back: the compiler cannot see the
// multiply from there. The loops on either side still vectorise. Dequantization needs none: its
// products (a code of at most 8 bits times an fp16 scale of 11) are exact in fp32, so fusing
// cannot change them. Float-to-integer conversions that C leaves undefined (NaN or an
// overflowing quotient, reachable only when the fp32 scale is so small that 1/d overflows) give
// code 0, as x86 builds of ggml do.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens, and quantizes them block by block through a small float buffer on the stack
// (the rotation block, or 32 channels). No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/hadamard.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {

/// Makes the values of `v` opaque to the optimiser: what the code reads back afterwards is
/// whatever `v` holds in memory, rounded fp32, so no multiply stored there can be fused into an
/// add that reads it (see above). GNU-compatible compilers (g++, clang++) get an empty asm
/// statement that may read and rewrite the array: no instruction, only a store and a reload of
/// the array; other compilers a volatile copy of each value.
template <std::size_t N>
inline void keep_rounded(float (&v)[N]) noexcept {
#if defined(__GNUC__)
  __asm__("" : "+m"(v));
#else
  for (float& e : v) {
    volatile float stored = e;
    e = stored;
  }
#endif
}

/// C's `(int8_t)(v)` / `(uint8_t)(v)` for v ≥ 0 (truncation toward zero), 0 where C is undefined.
inline int truncate_code(float v) noexcept {
  return v >= 0.0f && v < 256.0f ? static_cast<int>(v) : 0;
}

/// `roundf(v)` as an int8 code (half away from zero), 0 where the C conversion is undefined.
inline int round_code(float v) noexcept {
  return v > -128.5f && v < 127.5f ? static_cast<int>(std::round(v)) : 0;
}

inline void store_f16(std::uint8_t* p, float v) noexcept {
  const std::uint16_t h = f32_bits_to_f16_bits(float_bits(v));
  p[0] = static_cast<std::uint8_t>(h & 0xFFu);
  p[1] = static_cast<std::uint8_t>(h >> 8);
}

inline float load_f16(const std::uint8_t* p) noexcept {
  return to_float(f16{static_cast<std::uint16_t>(p[0] | (p[1] << 8))});
}

inline void store_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

inline std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

/// True when one of the 32 values is NaN or ±inf (x − x is 0 exactly for finite x).
inline bool block_non_finite(const float* x) noexcept {
  float acc = 0.0f;
  for (int j = 0; j < 32; ++j) acc += x[j] - x[j];
  return acc != acc;
}

/// The value of largest magnitude, the first of equals (q4_0, q5_0, iq4_nl).
inline float signed_absmax(const float* x, float& amax) noexcept {
  float max = 0.0f;
  amax = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

/// Packs 32 codes of at most 4 bits: element i low nibble, element i + 16 high nibble.
inline void pack_nibbles(const int* q, std::uint8_t* qs) noexcept {
  for (int i = 0; i < 16; ++i) qs[i] = static_cast<std::uint8_t>((q[i] & 0x0F) | (q[i + 16] & 0x0F) << 4);
}

/// Bit 4 of the 32 codes as ggml's qh word: bit j = bit 4 of element j.
inline std::uint32_t high_bits(const int* q) noexcept {
  std::uint32_t qh = 0;
  for (int j = 0; j < 32; ++j) qh |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
  return qh;
}

inline void quantize_q8_0(const float* x, std::uint8_t* out) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(out, d);
  for (int j = 0; j < 32; ++j) {
    const auto q = static_cast<std::int8_t>(round_code(x[j] * id));
    std::memcpy(out + 2 + j, &q, 1);
  }
}

/// q4_0 (levels 16, offset 8) and q5_0 (levels 32, offset 16).
template <int Levels>
void quantize_symmetric(const float* x, std::uint8_t* out) noexcept {
  float amax;
  const float max = signed_absmax(x, amax);
  const float d = max / static_cast<float>(-Levels / 2);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const float offset = static_cast<float>(Levels / 2) + 0.5f;
  store_f16(out, d);
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = x[j] * id;
  keep_rounded(scaled);
  int q[32];
  for (int j = 0; j < 32; ++j) {
    const int c = truncate_code(scaled[j] + offset);
    q[j] = c < Levels - 1 ? c : Levels - 1;
  }
  if constexpr (Levels == 32) {
    store_u32(out + 2, high_bits(q));
    pack_nibbles(q, out + 6);
  } else {
    pack_nibbles(q, out + 2);
  }
}

/// q4_1 (levels 16, codes clamped to 15) and q5_1 (levels 32, not clamped: a code of 32 keeps
/// its low five bits, 0, as ggml's `(uint8_t)` store does).
template <int Levels>
void quantize_affine(const float* x, std::uint8_t* out) noexcept {
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / static_cast<float>(Levels - 1);
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(out, d);
  store_f16(out + 2, min);
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = (x[j] - min) * id;
  keep_rounded(scaled);
  int q[32];
  for (int j = 0; j < 32; ++j) {
    const int c = truncate_code(scaled[j] + 0.5f);
    q[j] = Levels == 16 ? (c < 15 ? c : 15) : c;
  }
  if constexpr (Levels == 32) {
    store_u32(out + 4, high_bits(q));
    pack_nibbles(q, out + 8);
  } else {
    pack_nibbles(q, out + 4);
  }
}

/// ggml's best_index_int8 for each of 32 values: the nearest codebook level, the upper one on a
/// tie. ggml finds the two levels around v by a binary search; here the upper one's index is 1
/// plus the number of levels 1 … 14 at or below v (so 1 below level 1, 15 from level 14 up), and
/// v takes the lower one if it is strictly nearer: the same index for every v, with no branch,
/// in loops over the block that vectorise (iq4_nl quantization of 8 × 64 × 128 fp32 values:
/// 1.21 ms with the search, 0.49 ms so, AVX-512; 1.22 and 0.44 ms with SSE2).
inline void iq4nl_codes(const float (&v)[32], int (&q)[32]) noexcept {
  for (int j = 0; j < 32; ++j) q[j] = 1;
  for (int i = 1; i < 15; ++i) {
    const auto level = static_cast<float>(iq4nl_levels[i]);
    for (int j = 0; j < 32; ++j) q[j] += v[j] >= level;
  }
  for (int j = 0; j < 32; ++j) {
    const auto below = static_cast<float>(iq4nl_levels[q[j] - 1]);
    const auto above = static_cast<float>(iq4nl_levels[q[j]]);
    q[j] -= v[j] - below < above - v[j];
  }
}

/// iq4_nl as llama.cpp writes the KV cache (`quantize_row_iq4_nl_ref`, no scale search): codes
/// from d0 = v / −127, then the weighted least-squares scale Σ w·K·x / Σ w·K², w = x².
inline void quantize_iq4_nl(const float* x, std::uint8_t* out) noexcept {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  if (amax < 1e-15f) {  // ggml's GROUP_MAX_EPS
    store_f16(out, 0.0f);
    std::memset(out + 2, 0x88, 16);
    return;
  }
  const float id = 1.0f / (max / -127.0f);
  // id·x is rounded before the level search subtracts levels from it; each product is rounded
  // before the running sums add it.
  float scaled[32];
  for (int j = 0; j < 32; ++j) scaled[j] = id * x[j];
  keep_rounded(scaled);
  int q[32];
  iq4nl_codes(scaled, q);
  float wqx[32], wqq[32];
  for (int j = 0; j < 32; ++j) {
    const auto level = static_cast<float>(iq4nl_levels[q[j]]);
    const float wq = (x[j] * x[j]) * level;
    wqx[j] = wq * x[j];
    wqq[j] = wq * level;
  }
  keep_rounded(wqx);
  keep_rounded(wqq);
  float sumqx = 0.0f, sumq2 = 0.0f;
  for (int j = 0; j < 32; ++j) {
    sumqx += wqx[j];
    sumq2 += wqq[j];
  }
  store_f16(out, sumq2 > 0.0f ? sumqx / sumq2 : 0.0f);
  pack_nibbles(q, out + 2);
}

/// The documented result for a block holding NaN or ±inf: d (and m) NaN, every other byte 0.
inline void quantize_non_finite(ggml_type type, std::uint8_t* out) noexcept {
  std::memset(out, 0, static_cast<std::size_t>(ggml_block_bytes(type)));
  store_f16(out, NAN);
  if (type == ggml_type::q4_1 || type == ggml_type::q5_1) store_f16(out + 2, NAN);
}

inline void quantize_block(ggml_type type, const float* x, std::uint8_t* out) noexcept {
  if (block_non_finite(x)) return quantize_non_finite(type, out);
  switch (type) {
    case ggml_type::q8_0: return quantize_q8_0(x, out);
    case ggml_type::q4_0: return quantize_symmetric<16>(x, out);
    case ggml_type::q4_1: return quantize_affine<16>(x, out);
    case ggml_type::q5_0: return quantize_symmetric<32>(x, out);
    case ggml_type::q5_1: return quantize_affine<32>(x, out);
    case ggml_type::iq4_nl: return quantize_iq4_nl(x, out);
  }
}

/// Code j (0 … 31) of a 4-bit block's nibbles, with bit 4 from qh for 5-bit types.
inline int nibble(const std::uint8_t* qs, int j) noexcept {
  return j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
}

/// dequantize_row_<type> of one block: integers times the stored fp16 d (plus m), in fp32. Each
/// product is exact (at most 5 + 11 significant bits, 8 + 11 for q8_0), so q·d + m has the same
/// bits fused or not.
inline void dequantize_block(ggml_type type, const std::uint8_t* in, float* y) noexcept {
  const float d = load_f16(in);
  switch (type) {
    case ggml_type::q8_0:
      for (int j = 0; j < 32; ++j) {
        std::int8_t q;
        std::memcpy(&q, in + 2 + j, 1);
        y[j] = static_cast<float>(q) * d;
      }
      return;
    case ggml_type::q4_0:
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(in + 2, j) - 8) * d;
      return;
    case ggml_type::q5_0: {
      const std::uint32_t qh = load_u32(in + 2);
      for (int j = 0; j < 32; ++j)
        y[j] = static_cast<float>((nibble(in + 6, j) | static_cast<int>((qh >> j) & 1u) << 4) - 16) * d;
      return;
    }
    case ggml_type::q4_1: {
      const float m = load_f16(in + 2);
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(nibble(in + 4, j)) * d + m;
      return;
    }
    case ggml_type::q5_1: {
      const float m = load_f16(in + 2);
      const std::uint32_t qh = load_u32(in + 4);
      for (int j = 0; j < 32; ++j) {
        const int q = nibble(in + 8, j) | static_cast<int>((qh >> j) & 1u) << 4;
        y[j] = static_cast<float>(q) * d + m;
      }
      return;
    }
    case ggml_type::iq4_nl:
      for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(iq4nl_levels[nibble(in + 2, j)]);
      return;
  }
}

/// Channels per pass over a row: the rotation block, else the largest power of two up to 256
/// dividing head_dim (at least one 32-block; 256 fills the buffer once per eight blocks).
inline index_t ggml_chunk(index_t rotation_block, index_t head_dim) noexcept {
  return rotation_block != 0 ? rotation_block : hadamard_block_for(0, head_dim);
}

template <class Arch, class E>
status check_quantize(const cpu<Arch>& exec, const ggml_quantize& p, const kv_inputs<E>& in,
                      const kv_block_outputs<>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(in.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (status s = check_blocks(out.blocks, prob, p.type); s != status::ok) return s;
  return may_overlap(in.cache, out.blocks) ? status::aliasing : status::ok;
}

template <class Arch, class E>
status check_dequantize(const cpu<Arch>& exec, const ggml_dequantize& p,
                        const kv_block_inputs<>& in, const kv_outputs<E>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(out.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_blocks(in.blocks, prob, p.type); s != status::ok) return s;
  if (status s = check_view(out.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  return may_overlap(in.blocks, out.cache) ? status::aliasing : status::ok;
}

}  // namespace detail

/// ggml block quantization on CPU: no workspace; any strides on the float side; fp32, fp16 and
/// bf16 caches (widened exactly to fp32, as ggml quantizes fp32 rows).
template <class Arch>
struct backend<ggml_quantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const ggml_quantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const ggml_quantize& p, const kv_inputs<E>& in,
                      const kv_block_outputs<>& out, workspace) noexcept {
    if (status s = detail::check_quantize(exec, p, in, out); s != status::ok) return s;
    const index_t tokens = in.cache.extent(1), dim = in.cache.extent(2);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, dim) : 0;
    const index_t chunk = detail::ggml_chunk(rot, dim);
    const index_t block_bytes = ggml_block_bytes(p.type), cs = in.cache.stride(2);
    const index_t rows = in.cache.extent(0) * tokens;
    const index_t r0 = detail::share_begin(rows, exec.ith, exec.nth);
    const index_t r1 = detail::share_begin(rows, exec.ith + 1, exec.nth);
    float buf[detail::hadamard_max_block];
    for (index_t r = r0; r < r1; ++r) {
      const detail::kv_row at = detail::kv_row_at(r, tokens);
      const E* src = &in.cache(at.head, at.token, 0);
      std::uint8_t* dst = &out.blocks(at.head, at.token, 0);
      for (index_t c = 0; c < dim; c += chunk) {
        detail::load_channels(src + c * cs, cs, chunk, buf);
        if (rot != 0) {
          detail::hadamard_transform(buf, rot);
          detail::keep_rounded(buf);  // the scaled values, before q4_1's x − min reads them
        }
        for (index_t b = 0; b < chunk; b += ggml_block_elems, dst += block_bytes)
          detail::quantize_block(p.type, buf + b, dst);
      }
    }
    return status::ok;
  }
};

/// ggml block dequantization on CPU: no workspace; any strides on the float side; fp32, fp16 and
/// bf16 outputs (computed in fp32, rounded to nearest even).
template <class Arch>
struct backend<ggml_dequantize, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const ggml_dequantize&, const kv_problem&) noexcept {
    return 0;
  }

  template <class E>
  static status apply(const cpu<Arch>& exec, const ggml_dequantize& p, const kv_block_inputs<>& in,
                      const kv_outputs<E>& out, workspace) noexcept {
    if (status s = detail::check_dequantize(exec, p, in, out); s != status::ok) return s;
    const index_t tokens = out.cache.extent(1), dim = out.cache.extent(2);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, dim) : 0;
    const index_t chunk = detail::ggml_chunk(rot, dim);
    const index_t block_bytes = ggml_block_bytes(p.type), cs = out.cache.stride(2);
    const index_t rows = out.cache.extent(0) * tokens;
    const index_t r0 = detail::share_begin(rows, exec.ith, exec.nth);
    const index_t r1 = detail::share_begin(rows, exec.ith + 1, exec.nth);
    float buf[detail::hadamard_max_block];
    for (index_t r = r0; r < r1; ++r) {
      const detail::kv_row at = detail::kv_row_at(r, tokens);
      const std::uint8_t* src = &in.blocks(at.head, at.token, 0);
      E* dst = &out.cache(at.head, at.token, 0);
      for (index_t c = 0; c < dim; c += chunk) {
        for (index_t b = 0; b < chunk; b += ggml_block_elems, src += block_bytes)
          detail::dequantize_block(p.type, src, buf + b);
        if (rot != 0) detail::hadamard_transform(buf, rot);
        detail::store_channels(buf, chunk, dst + c * cs, cs);
      }
    }
    return status::ok;
  }
};

}  // namespace tokred
