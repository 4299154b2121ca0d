// tokred/core/element.hpp — storage element types and their exact conversions to and from fp32.
//
// tokred stores tokens as fp32, fp16 or bf16 and always computes in fp32. The conversions are
// exact bit manipulations (and one correctly rounded fp32 addition for subnormal halves), so host,
// device and every ISA produce the same bits: fp32 -> fp16/bf16 rounds to
// nearest, ties to even; subnormals, infinities and NaN (kept quiet, sign and top payload bits
// preserved) are handled exactly as IEEE 754 and `torch.Tensor.to` do.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tokred/core/config.hpp"

namespace tokred {

/// IEEE 754 binary16, stored as its bit pattern. Convert with `to_float` / `from_float<f16>`.
struct f16 {
  std::uint16_t bits;
};

/// bfloat16 (the upper half of an fp32), stored as its bit pattern.
struct bf16 {
  std::uint16_t bits;
};

namespace detail {

TOKRED_HOST_DEVICE inline std::uint32_t float_bits(float f) noexcept {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

TOKRED_HOST_DEVICE inline float bits_float(std::uint32_t u) noexcept {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/// All ones where `b` holds, else 0: for picking among values computed on every path, where a
/// select would let the compiler branch and keep a loop of it from vectorising.
TOKRED_HOST_DEVICE constexpr std::uint32_t mask_of(bool b) noexcept { return 0u - static_cast<std::uint32_t>(b); }

/// fp32 bits to fp16 bits, to nearest even: NaN stays NaN (quiet bit forced, top payload bits
/// kept); from 65520, halfway past the largest half (65504), to inf; normal halves rebias the
/// exponent and round the 13 low bits (adding 0xFFF and the kept part's lowest bit carries exactly
/// when the dropped bits are past half, or half with an odd kept part); subnormal and zero halves
/// come from one fp32 addition of 0.5, whose ulp (2^-24) is the smallest half's, so the adder
/// rounds them to nearest even, carrying into the smallest normal where it should (F. Giesen's
/// conversion; fp32 subnormal inputs give 0 whether or not the FPU reads them as zero).
///
/// Every case is computed and the result picked by masks, with no shift by a count of the lane's
/// own: loops of it vectorise for every ISA, SSE2 included (ggml dequantization to fp16).
/// The subnormal case assumes the default rounding mode, as all of tokred's fp32 arithmetic does.
TOKRED_HOST_DEVICE inline std::uint16_t f32_bits_to_f16_bits(std::uint32_t x) noexcept {
  const std::uint32_t sign = (x & 0x80000000u) >> 16;
  const std::uint32_t ax = x & 0x7FFFFFFFu;
  const std::uint32_t nan = 0x7E00u | ((ax >> 13) & 0x3FFu);
  const std::uint32_t normal = (ax + 0xC8000FFFu + ((ax >> 13) & 1u)) >> 13;
  constexpr std::uint32_t one_half = 126u << 23;
  const std::uint32_t subnormal = float_bits(bits_float(ax) + bits_float(one_half)) - one_half;
  const std::uint32_t is_nan = mask_of(ax > 0x7F800000u), is_inf = mask_of(ax >= 0x477FF000u);
  const std::uint32_t is_normal = mask_of(ax >= 0x38800000u);
  const std::uint32_t finite = (normal & is_normal) | (subnormal & ~is_normal);
  return static_cast<std::uint16_t>(sign | (nan & is_nan) | (0x7C00u & is_inf & ~is_nan) | (finite & ~is_inf));
}

TOKRED_HOST_DEVICE constexpr std::uint16_t f32_bits_to_bf16_bits(std::uint32_t x) noexcept {
  if ((x & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: quiet it, keep sign and top payload
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

}  // namespace detail

/// Widens a stored element to fp32 (exact for all three types).
TOKRED_HOST_DEVICE inline float to_float(float x) noexcept { return x; }
/// fp16: normal halves rebias their exponent, inf and NaN keep their payload, and subnormals
/// are their mantissa times 2^-24 (exact in fp32). The cases are picked by masks, not branches,
/// so that loops of it vectorise.
TOKRED_HOST_DEVICE inline float to_float(f16 x) noexcept {
  const std::uint32_t magnitude = x.bits & 0x7FFFu, sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t special = detail::mask_of(magnitude >= 0x7C00u), subnormal = detail::mask_of(magnitude < 0x0400u);
  const std::uint32_t rebiased = (magnitude << 13) + (112u << 23) + (special & (112u << 23));
  const std::uint32_t scaled = detail::float_bits(static_cast<float>(static_cast<std::int32_t>(magnitude)) * 0x1p-24f);
  return detail::bits_float(sign | (rebiased & ~subnormal) | (scaled & subnormal));
}
TOKRED_HOST_DEVICE inline float to_float(bf16 x) noexcept {
  return detail::bits_float(static_cast<std::uint32_t>(x.bits) << 16);
}

/// Narrows fp32 to the storage type `T`, rounding to nearest, ties to even.
template <class T>
TOKRED_HOST_DEVICE inline T from_float(float x) noexcept {
  if constexpr (std::is_same_v<T, f16>) {
    return f16{detail::f32_bits_to_f16_bits(detail::float_bits(x))};
  } else if constexpr (std::is_same_v<T, bf16>) {
    return bf16{detail::f32_bits_to_bf16_bits(detail::float_bits(x))};
  } else {
    static_assert(std::is_same_v<T, float>, "tokred: element types are float, f16 and bf16");
    return x;
  }
}

/// x stored as `Eout`: the same bits when the types agree (a NaN's payload included), otherwise
/// widened to fp32 and narrowed, rounding to nearest, ties to even.
template <class Eout, class Ein>
TOKRED_HOST_DEVICE inline Eout element_cast(Ein x) noexcept {
  if constexpr (std::is_same_v<Ein, Eout>) {
    return x;
  } else {
    return from_float<Eout>(to_float(x));
  }
}

/// True for the element types tokred stores tokens in.
template <class T>
inline constexpr bool is_element_v =
    std::is_same_v<std::remove_cv_t<T>, float> || std::is_same_v<std::remove_cv_t<T>, f16> ||
    std::is_same_v<std::remove_cv_t<T>, bf16>;

/// A printable name ("fp32", "fp16", "bf16") for diagnostics and benchmark labels.
template <class T>
constexpr const char* element_name() noexcept {
  using U = std::remove_cv_t<T>;
  if constexpr (std::is_same_v<U, f16>) return "fp16";
  else if constexpr (std::is_same_v<U, bf16>) return "bf16";
  else return "fp32";
}

}  // namespace tokred
