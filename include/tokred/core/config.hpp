// tokred/core/config.hpp — version, the host/device function marker and the index type.
//
// Everything in core/ and policy/ compiles with nothing but the standard library, with g++ and
// with a bare `nvcc -std=c++17 -I include`, and with `-fno-exceptions -fno-rtti`.
#pragma once

#include <cstddef>
#include <cstdint>

#define TOKRED_VERSION_MAJOR 0
#define TOKRED_VERSION_MINOR 1
#define TOKRED_VERSION_PATCH 0

/// Marks a function callable from host and device code when compiled by nvcc; empty otherwise.
#if defined(__CUDACC__)
#define TOKRED_HOST_DEVICE __host__ __device__
#else
#define TOKRED_HOST_DEVICE
#endif

/// Placed before a host/device function template that calls a callable it is given: nvcc then
/// accepts a host-only callable where the template is instantiated for host code only (a CPU
/// backend passing its SIMD kernel to a unit function the CUDA threads also run).
#if defined(__CUDACC__)
#define TOKRED_CALLABLE_MAY_BE_HOST_ONLY _Pragma("nv_exec_check_disable")
#else
#define TOKRED_CALLABLE_MAY_BE_HOST_ONLY
#endif

/// Forces inlining of a small helper that sits in an innermost loop, where g++ would otherwise
/// leave it out of line (it did for the bf16 loads of the DCT and the code extraction of the
/// uniform dequantizer: a call per batch of lanes).
///
/// Defining TOKRED_NO_FORCE_INLINE leaves those helpers plain `inline`, for builds that trade speed
/// for compile time: the sanitizer build of tokred's tests compiles its quantizer tests in about
/// 40 % less time this way (test_kivi: 98 s -> 58 s) and runs them about 25 % slower. Results do not
/// change; only where the compiler inlines does.
#if defined(TOKRED_NO_FORCE_INLINE)
#define TOKRED_FORCE_INLINE inline
#elif defined(__GNUC__)
#define TOKRED_FORCE_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define TOKRED_FORCE_INLINE __forceinline
#else
#define TOKRED_FORCE_INLINE inline
#endif

/// The same for a lambda passed to such a helper, written after its parameter list.
#if defined(__GNUC__) && !defined(TOKRED_NO_FORCE_INLINE)
#define TOKRED_INLINE_LAMBDA __attribute__((always_inline))
#else
#define TOKRED_INLINE_LAMBDA
#endif

namespace tokred {

/// Signed index type for extents, strides and token indices (strides may be negative, as in DLPack).
using index_t = std::ptrdiff_t;

}  // namespace tokred

/// Bracket the first #include of a header that brings in x86 intrinsics (xsimd, Eigen):
/// g++ 12 reports the `_mm512_undefined_*` placeholders inside its own AVX-512 intrinsics as
/// (maybe-)uninitialized wherever they are inlined (GCC bug 105593). The reports are located in
/// the intrinsic headers, so ignoring them while those are first included silences exactly these
/// and nothing of the includer's.
#if defined(__GNUC__) && !defined(__clang__)
#define TOKRED_INTRINSIC_HEADERS_BEGIN                             \
  _Pragma("GCC diagnostic push")                                   \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")     \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define TOKRED_INTRINSIC_HEADERS_END _Pragma("GCC diagnostic pop")
#else
#define TOKRED_INTRINSIC_HEADERS_BEGIN
#define TOKRED_INTRINSIC_HEADERS_END
#endif
