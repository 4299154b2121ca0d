// tokred/core/rounded.hpp — fp32 (and double) steps rounded exactly once, the same bits on host
// and device whatever the compiler's flags, for the host/device functions that the CUDA kernels
// run and the CPU backends (or their tests) run beside them.
//
// On the device: the explicitly rounded intrinsics (__fadd_rn, __fsub_rn, __fmul_rn,
// __fdiv_rn and their double forms __dadd_rn, …), which nvcc never contracts into fused multiply-adds and which ignore
// -prec-div=false (-ftz=true, part of --use_fast_math, still flushes subnormal results to zero).
// On the host: plain IEEE operations, the product kept out of reach of -ffp-contract=fast, which
// g++ applies by default where the target has FMA (-march=native).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"

namespace tokred::detail {

/// A step's operands: fp32 or double.
template <class T>
inline constexpr bool is_rounded_operand_v = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
TOKRED_HOST_DEVICE inline T add_rn(T a, T b) noexcept {
  static_assert(is_rounded_operand_v<T>, "tokred: rounded steps take float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>) return __dadd_rn(a, b);
  else return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

template <class T>
TOKRED_HOST_DEVICE inline T sub_rn(T a, T b) noexcept {
  static_assert(is_rounded_operand_v<T>, "tokred: rounded steps take float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>) return __dsub_rn(a, b);
  else return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

/// a·b rounded, never fused with an addition that follows.
template <class T>
TOKRED_HOST_DEVICE inline T mul_rn(T a, T b) noexcept {
  static_assert(is_rounded_operand_v<T>, "tokred: rounded steps take float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>) return __dmul_rn(a, b);
  else return __fmul_rn(a, b);
#else
  T product = a * b;
#if defined(__GNUC__) && defined(__x86_64__)
  __asm__("" : "+x"(product));  // the compiler cannot see through it, so it cannot fuse it
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(product));
#else
  volatile T kept = product;
  product = kept;
#endif
  return product;
#endif
}

template <class T>
TOKRED_HOST_DEVICE inline T div_rn(T a, T b) noexcept {
  static_assert(is_rounded_operand_v<T>, "tokred: rounded steps take float or double");
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, double>) return __ddiv_rn(a, b);
  else return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

/// a·b + c rounded once (fused), on host and device alike.
TOKRED_HOST_DEVICE inline float fma_rn(float a, float b, float c) noexcept {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// acc + a·b as the CPU kernels' `multiply_add<Arch>` computes it: rounded once when `Fused`
/// (ISAs with FMA), else the product rounded on its own first. The steps of the multiply-add
/// chains that a CUDA kernel runs to give the bits of a CPU backend.
template <bool Fused>
TOKRED_HOST_DEVICE inline float chain_step(float a, float b, float acc) noexcept {
  if constexpr (Fused) return fma_rn(a, b, acc);
  else return add_rn(mul_rn(a, b), acc);
}

/// √x correctly rounded (IEEE), whatever -prec-sqrt says on the device.
TOKRED_HOST_DEVICE inline float sqrt_rn(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(x);
#else
  return std::sqrt(x);
#endif
}

/// fp32 constants that need no <limits> on the device.
TOKRED_HOST_DEVICE inline float positive_infinity() noexcept { return bits_float(0x7F800000u); }
TOKRED_HOST_DEVICE inline float quiet_nan() noexcept { return bits_float(0x7FC00000u); }

/// |x|: the sign bit cleared (NaN payloads kept), as SIMD `abs` does it.
TOKRED_HOST_DEVICE inline float abs_bits(float x) noexcept {
  return bits_float(float_bits(x) & 0x7FFFFFFFu);
}

/// x rounded to the nearest integer, ties to even, for |x| < 2^31 (cvtps2dq under the default
/// rounding mode; cvt.rni on the device).
TOKRED_HOST_DEVICE inline std::int32_t round_to_int(float x) noexcept {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(x);
#else
  return static_cast<std::int32_t>(std::nearbyint(x));
#endif
}

/// A stored element widened to fp32, the same bits as `to_float`. On the device fp16 takes the
/// hardware conversion for finite values (exact) and, for inf and NaN, to_float's formula
/// (payload kept).
template <class E>
TOKRED_HOST_DEVICE inline float widen(E x) noexcept {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<E, f16>) {
    const std::uint32_t bits = x.bits;
    if ((bits & 0x7C00u) != 0x7C00u) {
      float out;
      asm("cvt.f32.f16 %0, %1;" : "=f"(out) : "h"(x.bits));
      return out;
    }
    return __uint_as_float(((bits & 0x8000u) << 16) | 0x7F800000u | ((bits & 0x3FFu) << 13));
  }
#endif
  return to_float(x);
}

}  // namespace tokred::detail
