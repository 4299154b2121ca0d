// tokred/cpu/simd.hpp — the one header that names xsimd. CPU backends use these few shims.
//
// Everything computes in fp32. Loads widen fp32/bf16/fp16 storage to a batch of floats and
// stores narrow it back with the exact rounding of <tokred/core/element.hpp>, so the SIMD path
// and the scalar reference agree bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <xsimd/xsimd.hpp>

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

/// Loads `float_batch<Arch>::size` elements of storage type E from `p` as floats.
template <class Arch, class E>
float_batch<Arch> load_floats(const E* p) noexcept {
  if constexpr (std::is_same_v<E, float>) {
    return float_batch<Arch>::load_unaligned(p);
  } else if constexpr (std::is_same_v<E, bf16>) {
    // bf16 is the top half of an fp32: widen the 16-bit patterns and shift them up.
    const auto bits = u32_batch<Arch>::load_unaligned(reinterpret_cast<const std::uint16_t*>(p));
    return xsimd::bitwise_cast<float_batch<Arch>>(bits << 16);
  } else {
    alignas(64) float lanes[float_batch<Arch>::size];
    for (std::size_t i = 0; i < float_batch<Arch>::size; ++i) lanes[i] = to_float(p[i]);
    return float_batch<Arch>::load_aligned(lanes);
  }
}

/// The bf16 bit patterns of a batch of floats, each in the low half of its 32-bit lane, rounded
/// to nearest even (NaN kept quiet), as from_float<bf16> does.
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

/// Stores a batch of floats to `p` as storage type E, rounding to nearest even.
template <class Arch, class E>
void store_floats(E* p, const float_batch<Arch>& x) noexcept {
  if constexpr (std::is_same_v<E, float>) {
    x.store_unaligned(p);
  } else if constexpr (std::is_same_v<E, bf16>) {
    bf16_bits<Arch>(x).store_unaligned(reinterpret_cast<std::uint16_t*>(p));
  } else {
    alignas(64) float lanes[float_batch<Arch>::size];
    x.store_aligned(lanes);
    for (std::size_t i = 0; i < float_batch<Arch>::size; ++i) p[i] = from_float<E>(lanes[i]);
  }
}

/// Two batches of floats holding the 2·size elements at `p`, in an order `store_float_pair`
/// undoes; element-wise arithmetic between pairs is indifferent to that order. For bf16 the
/// order is even elements, then odd: one 32-bit load splits into its two halves with a shift and
/// a mask on every ISA, where xsimd 8.1's widening load is a scalar loop (2 × 2 pooling of
/// 24 × 24 × 1024 bf16 rows: SSE2 build 323 µs with load_floats/store_floats, 108 µs in pairs;
/// AVX-512 build 66 and 47 µs).
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

/// Stores a pair from `load_float_pair` (or arithmetic on such pairs) back to 2·size elements.
template <class Arch, class E>
void store_float_pair(E* p, const float_pair<Arch>& x) noexcept {
  if constexpr (std::is_same_v<E, bf16>) {
    const auto words = bf16_bits<Arch>(x.first) | (bf16_bits<Arch>(x.second) << 16);
    words.store_unaligned(reinterpret_cast<std::uint32_t*>(p));
  } else {
    store_floats<Arch>(p, x.first);
    store_floats<Arch>(p + float_batch<Arch>::size, x.second);
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
    for (; i + lanes <= n; i += lanes) store_floats<Arch>(dst + i, load_floats<Arch>(src + i));
    for (; i < n; ++i) dst[i] = from_float<Eout>(to_float(src[i]));
  }
}

/// Copies `n` elements between two rows of any inner stride, converting the element type.
template <class Arch, class Ein, class Eout>
void copy_row(const Ein* src, index_t src_stride, Eout* dst, index_t dst_stride,
              index_t n) noexcept {
  if (src_stride == 1 && dst_stride == 1) return convert_contiguous<Arch>(src, dst, n);
  for (index_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<Ein, Eout>)
      dst[i * dst_stride] = src[i * src_stride];
    else
      dst[i * dst_stride] = from_float<Eout>(to_float(src[i * src_stride]));
  }
}

}  // namespace tokred::detail
