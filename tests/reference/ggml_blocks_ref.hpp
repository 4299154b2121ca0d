// tests/reference/ggml_blocks_ref.hpp — the scalar oracle of ggml_quantize, ggml_dequantize and
// hadamard.
//
// Written from the research spec (reference/merge_pool_dct_kv.md §13.2–13.3) for obviousness:
// one 32-value block at a time, the formula of each format as the spec's table states it, bytes
// assembled one field at a time. Every fp32 step ggml rounds is rounded here through `f32()`, a
// volatile store, so no compiler can fuse a multiply and an add. On request (`mul_add::fused`)
// the quantizer computes each of ggml's multiply-then-add steps with one rounding instead
// (std::fma), as ggml's C does when a compiler contracts it: the tests build inputs on which the
// two differ with it. The Hadamard oracle is the matrix product with
// H[i][j] = (−1)^popcount(i & j) / √n in double. Uses none of tokred's detail:: helpers (only the
// fp16 conversion of core/element.hpp).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/policy/kv_quant.hpp>

namespace tokred::ref {

/// Rounds to fp32 storage: the value a C `float` variable holds.
inline float f32(float v) {
  volatile float r = v;
  return r;
}

inline std::uint16_t half_bits(float v) { return from_float<f16>(v).bits; }
inline float half_value(std::uint16_t bits) { return to_float(f16{bits}); }

/// One quantized block and the fp32 d and min it was computed with (for error bounds).
struct block_result {
  std::vector<std::uint8_t> bytes;
  float d = 0.0f;
  float min = 0.0f;
};

inline void put_half(std::vector<std::uint8_t>& out, float v) {
  const std::uint16_t h = half_bits(v);
  out.push_back(static_cast<std::uint8_t>(h & 0xFF));
  out.push_back(static_cast<std::uint8_t>(h >> 8));
}

/// qs bytes: element i in the low nibble of byte i, element i + 16 in the high nibble.
inline void put_nibbles(std::vector<std::uint8_t>& out, const int (&q)[32]) {
  for (int i = 0; i < 16; ++i) out.push_back(static_cast<std::uint8_t>((q[i] & 15) + 16 * (q[i + 16] & 15)));
}

/// qh, little-endian uint32: bit j = bit 4 of element j.
inline void put_high_bits(std::vector<std::uint8_t>& out, const int (&q)[32]) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 32; ++j)
    if (q[j] & 16) qh |= 1u << j;
  for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(qh >> (8 * b)));
}

/// How ggml's multiply-then-add steps (x·id + 8.5, 16.5 or 0.5; the iq4_nl sums) are rounded:
/// `separate`, ggml's reference (the product rounded to fp32, then the sum); `fused`, the same C
/// code contracted into fused multiply-adds (one rounding), which is not the reference.
enum class mul_add { separate, fused };

/// a·b + c rounded as `how` says.
inline float rounded_mul_add(float a, float b, float c, mul_add how) {
  return how == mul_add::fused ? f32(std::fma(a, b, c)) : f32(f32(a * b) + c);
}

/// The (uint8_t) conversion of a code: truncation, 0 where C leaves it undefined (t outside
/// [0, 256), ±inf and NaN once 1/d overflows), as tokred documents and x86 builds of ggml give.
inline int truncated_code(float t) { return t >= 0.0f && t < 256.0f ? static_cast<int>(std::trunc(t)) : 0; }

inline bool any_non_finite(const float* x) {
  for (int j = 0; j < 32; ++j)
    if (!std::isfinite(x[j])) return true;
  return false;
}

/// Quantizes 32 values to one block of `type`.
inline block_result quantize_block(ggml_type type, const float* x, mul_add how = mul_add::separate) {
  block_result r;
  if (any_non_finite(x)) {  // tokred's documented result: d (and m) NaN, other bytes 0
    r.bytes.assign(static_cast<std::size_t>(ggml_block_bytes(type)), 0);
    r.bytes[0] = 0x00;
    r.bytes[1] = 0x7E;
    if (type == ggml_type::q4_1 || type == ggml_type::q5_1) r.bytes[3] = 0x7E;
    r.d = NAN;
    return r;
  }
  // v: the value of largest magnitude, the first one on ties.
  float amax = 0.0f, v = 0.0f, lo = FLT_MAX, hi = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (std::fabs(x[j]) > amax) {
      amax = std::fabs(x[j]);
      v = x[j];
    }
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  int q[32];
  switch (type) {
    case ggml_type::q8_0: {
      r.d = f32(amax / 127.0f);
      const float id = r.d != 0.0f ? f32(1.0f / r.d) : 0.0f;
      put_half(r.bytes, r.d);
      for (int j = 0; j < 32; ++j) {
        // roundf, half away from zero; 0 where the int8 conversion is undefined (x·id = ±inf
        // or NaN once 1/d overflows), as tokred documents and x86 builds of ggml give.
        const float p = f32(x[j] * id);
        const long c = p > -128.5f && p < 127.5f ? std::lround(p) : 0;
        r.bytes.push_back(static_cast<std::uint8_t>(c & 0xFF));
      }
      return r;
    }
    case ggml_type::q4_0:
    case ggml_type::q5_0: {
      const int half = type == ggml_type::q4_0 ? 8 : 16;
      r.d = f32(v / static_cast<float>(-half));
      const float id = r.d != 0.0f ? f32(1.0f / r.d) : 0.0f;
      for (int j = 0; j < 32; ++j) {
        const float t = rounded_mul_add(x[j], id, static_cast<float>(half) + 0.5f, how);
        const int c = truncated_code(t);
        q[j] = c > 2 * half - 1 ? 2 * half - 1 : c;
      }
      put_half(r.bytes, r.d);
      if (type == ggml_type::q5_0) put_high_bits(r.bytes, q);
      put_nibbles(r.bytes, q);
      return r;
    }
    case ggml_type::q4_1:
    case ggml_type::q5_1: {
      const int levels = type == ggml_type::q4_1 ? 16 : 32;
      r.min = lo;
      r.d = f32(f32(hi - lo) / static_cast<float>(levels - 1));
      const float id = r.d != 0.0f ? f32(1.0f / r.d) : 0.0f;
      for (int j = 0; j < 32; ++j) {
        const float t = rounded_mul_add(f32(x[j] - lo), id, 0.5f, how);
        const int c = truncated_code(t);
        // q4_1 clamps to 15; q5_1 does not clamp and keeps the low bits of its uint8 code.
        q[j] = levels == 16 ? (c > 15 ? 15 : c) : (c & 0xFF);
      }
      put_half(r.bytes, r.d);
      put_half(r.bytes, lo);
      if (type == ggml_type::q5_1) put_high_bits(r.bytes, q);
      put_nibbles(r.bytes, q);
      return r;
    }
    case ggml_type::iq4_nl: {
      if (amax < 1e-15f) {  // tokred writes d = 0 and codes 8 (ggml leaves them unset)
        put_half(r.bytes, 0.0f);
        for (int i = 0; i < 16; ++i) r.bytes.push_back(0x88);
        return r;
      }
      const float d0 = f32(v / -127.0f);
      const float id = f32(1.0f / d0);
      float sumqx = 0.0f, sumq2 = 0.0f;
      for (int j = 0; j < 32; ++j) {
        const float a = f32(id * x[j]);
        // Nearest level; on an exact tie between two levels, the upper one.
        int best = 0;
        for (int l = 1; l < 16; ++l) {
          const float dist_best = std::fabs(a - static_cast<float>(iq4nl_levels[best]));
          const float dist = std::fabs(a - static_cast<float>(iq4nl_levels[l]));
          if (dist <= dist_best) best = l;
        }
        q[j] = best;
        const float k = static_cast<float>(iq4nl_levels[best]);
        const float w = f32(x[j] * x[j]);
        sumqx = rounded_mul_add(f32(w * k), x[j], sumqx, how);
        sumq2 = rounded_mul_add(f32(w * k), k, sumq2, how);
      }
      r.d = sumq2 > 0.0f ? f32(sumqx / sumq2) : 0.0f;
      put_half(r.bytes, r.d);
      put_nibbles(r.bytes, q);
      return r;
    }
  }
  return r;
}

/// Dequantizes one block: integer codes times the stored fp16 d (plus the stored fp16 m).
inline void dequantize_block(ggml_type type, const std::uint8_t* b, float* y) {
  const float d = half_value(static_cast<std::uint16_t>(b[0] | b[1] << 8));
  const bool affine = type == ggml_type::q4_1 || type == ggml_type::q5_1;
  const float m = affine ? half_value(static_cast<std::uint16_t>(b[2] | b[3] << 8)) : 0.0f;
  const bool five = type == ggml_type::q5_0 || type == ggml_type::q5_1;
  const std::uint8_t* after_scales = b + (affine ? 4 : 2);
  std::uint32_t qh = 0;
  if (five)
    for (int i = 0; i < 4; ++i) qh |= static_cast<std::uint32_t>(after_scales[i]) << (8 * i);
  const std::uint8_t* qs = after_scales + (five ? 4 : 0);
  for (int j = 0; j < 32; ++j) {
    if (type == ggml_type::q8_0) {
      y[j] = f32(static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d);
      continue;
    }
    int c = j < 16 ? qs[j] % 16 : qs[j - 16] / 16;
    if (five && (qh >> j & 1u)) c += 16;
    switch (type) {
      case ggml_type::q4_0: y[j] = f32(static_cast<float>(c - 8) * d); break;
      case ggml_type::q5_0: y[j] = f32(static_cast<float>(c - 16) * d); break;
      case ggml_type::iq4_nl: y[j] = f32(d * static_cast<float>(iq4nl_levels[c])); break;
      default: y[j] = f32(f32(static_cast<float>(c) * d) + m); break;
    }
  }
}

/// A whole row of `n` values (n % 32 == 0), block by block.
inline std::vector<std::uint8_t> quantize_row(ggml_type type, const float* x, index_t n) {
  std::vector<std::uint8_t> out;
  for (index_t b = 0; b < n; b += 32) {
    const block_result r = quantize_block(type, x + b);
    out.insert(out.end(), r.bytes.begin(), r.bytes.end());
  }
  return out;
}

inline std::vector<float> dequantize_row(ggml_type type, const std::uint8_t* blocks, index_t n) {
  std::vector<float> y(static_cast<std::size_t>(n));
  for (index_t b = 0; b < n / 32; ++b)
    dequantize_block(type, blocks + b * ggml_block_bytes(type), y.data() + 32 * b);
  return y;
}

/// The orthonormal Walsh–Hadamard rotation of each run of `block` values, as a matrix product in
/// double: y[i] = Σ_j (−1)^popcount(i & j) x[j] / √block.
inline std::vector<double> hadamard_row(const std::vector<double>& x, index_t block) {
  std::vector<double> y(x.size(), 0.0);
  const double s = 1.0 / std::sqrt(static_cast<double>(block));
  for (std::size_t base = 0; base < x.size(); base += static_cast<std::size_t>(block))
    for (index_t i = 0; i < block; ++i) {
      double acc = 0.0;
      for (index_t j = 0; j < block; ++j) {
        int parity = 0;
        for (index_t bits = i & j; bits != 0; bits &= bits - 1) parity ^= 1;
        acc += (parity ? -1.0 : 1.0) * x[base + static_cast<std::size_t>(j)];
      }
      y[base + static_cast<std::size_t>(i)] = acc * s;
    }
  return y;
}

}  // namespace tokred::ref
