// tests/support/uniform_buffers.hpp — packed caches of the uniform quantizers in contiguous
// buffers, and the formats the tests sweep.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

namespace tokred::testing {

/// A packed cache in contiguous buffers filled with sentinels (codes 0xA5A5A5A5, params −7).
template <class E>
struct packed_buffers {
  kv_extents code_extents, param_extents;
  std::vector<std::uint32_t> codes;
  std::vector<E> scale, zero;

  packed_buffers(const uniform_format& f, const kv_problem& p)
      : code_extents(uniform_code_extents(f, p)), param_extents(uniform_param_extents(f, p)),
        codes(static_cast<std::size_t>(code_extents.heads * code_extents.rows * code_extents.cols), 0xA5A5A5A5u),
        scale(static_cast<std::size_t>(param_extents.heads * param_extents.rows * param_extents.cols), from_float<E>(-7.0f)),
        zero(scale) {}

  uniform_packed<E> out() {
    return {view<std::uint32_t, 3>(codes.data(), {code_extents.heads, code_extents.rows, code_extents.cols}),
            view<E, 3>(scale.data(), {param_extents.heads, param_extents.rows, param_extents.cols}),
            view<E, 3>(zero.data(), {param_extents.heads, param_extents.rows, param_extents.cols})};
  }
  uniform_packed<const E> in() const {
    return {view<const std::uint32_t, 3>(codes.data(), {code_extents.heads, code_extents.rows, code_extents.cols}),
            view<const E, 3>(scale.data(), {param_extents.heads, param_extents.rows, param_extents.cols}),
            view<const E, 3>(zero.data(), {param_extents.heads, param_extents.rows, param_extents.cols})};
  }
};

inline std::string describe(const uniform_format& f) {
  const char* schemes[] = {"asymmetric", "symmetric", "sign", "ternary"};
  return std::string(schemes[static_cast<int>(f.scheme)]) + " b" + std::to_string(f.bits) + " g" +
         std::to_string(f.group) + (f.axis == kv_group_axis::tokens ? " tokens" : " channels");
}

/// Every format the tests sweep: 1 … 8-bit asymmetric, symmetric at 2, 3, 4 and 8, sign and
/// ternary, along both axes, group 32 (and 64 for a few).
inline std::vector<uniform_format> formats() {
  std::vector<uniform_format> out;
  for (kv_group_axis axis : {kv_group_axis::tokens, kv_group_axis::channels}) {
    for (int bits = 1; bits <= 8; ++bits) out.push_back({bits, 32, axis, kv_scheme::asymmetric});
    for (int bits : {2, 3, 4, 8}) out.push_back({bits, 32, axis, kv_scheme::symmetric});
    out.push_back({1, 32, axis, kv_scheme::sign});
    out.push_back({2, 32, axis, kv_scheme::ternary});
    out.push_back({3, 64, axis, kv_scheme::asymmetric});
    out.push_back({4, 64, axis, kv_scheme::symmetric});
  }
  return out;
}

}  // namespace tokred::testing
