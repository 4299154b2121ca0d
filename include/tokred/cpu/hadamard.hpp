// tokred/cpu/hadamard.hpp — CPU backend of the block Walsh–Hadamard rotation, and the row
// transform <tokred/cpu/ggml_blocks.hpp> fuses into its quantizer and dequantizer.
//
// Every share (ith of nth) owns the (head, token) rows [R·ith/nth, R·(ith+1)/nth), R =
// heads·tokens. A row is rotated one block of `block` channels at a time through a 256-float
// buffer on the stack: load (widening fp16/bf16 exactly), butterflies, scale, store. Only adds,
// subtracts and one multiply per element, each rounded on its own, so every ISA and every
// auto-vectorisation gives the same bits (no multiply-add exists for a compiler to fuse).
// No workspace, no allocation.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {

/// The largest rotation block: 256 floats, one kilobyte of stack per row in flight.
inline constexpr index_t hadamard_max_block = 256;

/// fp32(1/√n) for the supported blocks (n = 32 … 256): 1/√64 = 1/8 and 1/√256 = 1/16 are exact;
/// the others are the correctly rounded float of the exact value.
inline float hadamard_scale(index_t n) noexcept {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
}

/// In place: x ← (H/√n)·x for n a power of two, H Sylvester's Hadamard matrix in natural order.
/// Butterfly spans 1, 2, 4, …, n/2; each pair (a, b) becomes (a + b, a − b).
inline void hadamard_transform(float* x, index_t n) noexcept {
  for (index_t span = 1; span < n; span *= 2)
    for (index_t i = 0; i < n; i += 2 * span)
      for (index_t j = i; j < i + span; ++j) {
        const float a = x[j], b = x[j + span];
        x[j] = a + b;
        x[j + span] = a - b;
      }
  const float s = hadamard_scale(n);
  for (index_t i = 0; i < n; ++i) x[i] *= s;
}

/// Reads `n` channels starting at `p` (element stride `stride`) as floats.
template <class E>
void load_channels(const E* p, index_t stride, index_t n, float* out) noexcept {
  if (stride == 1)
    for (index_t c = 0; c < n; ++c) out[c] = to_float(p[c]);
  else
    for (index_t c = 0; c < n; ++c) out[c] = to_float(p[c * stride]);
}

/// Writes `n` floats to channels starting at `p` (element stride `stride`), rounding to E.
template <class E>
void store_channels(const float* in, index_t n, E* p, index_t stride) noexcept {
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
constexpr kv_row kv_row_at(index_t r, index_t tokens) noexcept { return {r / tokens, r % tokens}; }

/// True when `out` is `in` itself (same address, strides and element type): in-place use.
template <class Ein, class Eout>
bool same_cache(const view<const Ein, 3>& in, const view<Eout, 3>& out) noexcept {
  if constexpr (!std::is_same_v<Ein, Eout>) {
    return false;
  } else {
    if (static_cast<const void*>(in.data_handle()) != static_cast<const void*>(out.data_handle()))
      return false;
    for (int r = 0; r < 3; ++r)
      if (in.stride(r) != out.stride(r) || in.extent(r) != out.extent(r)) return false;
    return true;
  }
}

/// Every check of `hadamard`, in the documented order; the rotation block on success.
template <class Arch, class Ein, class Eout>
status check_hadamard(const cpu<Arch>& exec, const hadamard& p, const kv_inputs<Ein>& in,
                      const kv_outputs<Eout>& out, index_t& block) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(in.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (status s = check_view(out.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (!same_cache(in.cache, out.cache) && may_overlap(in.cache, out.cache)) return status::aliasing;
  block = hadamard_block_for(p.block, prob.head_dim);
  return status::ok;
}

}  // namespace detail

/// Hadamard rotation on CPU: no workspace; any strides; fp32/fp16/bf16 in and out (computed in
/// fp32); in place when `out.cache` is `in.cache` itself (same pointer, strides, element type).
template <class Arch>
struct backend<hadamard, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const hadamard&, const kv_problem&) noexcept {
    return 0;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const hadamard& p, const kv_inputs<Ein>& in,
                      const kv_outputs<Eout>& out, workspace) noexcept {
    index_t block = 0;
    if (status s = detail::check_hadamard(exec, p, in, out, block); s != status::ok) return s;
    const index_t tokens = in.cache.extent(1), dim = in.cache.extent(2);
    const index_t rows = in.cache.extent(0) * tokens;
    const index_t r0 = detail::share_begin(rows, exec.ith, exec.nth);
    const index_t r1 = detail::share_begin(rows, exec.ith + 1, exec.nth);
    float buf[detail::hadamard_max_block];
    for (index_t r = r0; r < r1; ++r) {
      const detail::kv_row at = detail::kv_row_at(r, tokens);
      const Ein* src = &in.cache(at.head, at.token, 0);
      Eout* dst = &out.cache(at.head, at.token, 0);
      for (index_t c = 0; c < dim; c += block) {
        detail::load_channels(src + c * in.cache.stride(2), in.cache.stride(2), block, buf);
        detail::hadamard_transform(buf, block);
        detail::store_channels(buf, block, dst + c * out.cache.stride(2), out.cache.stride(2));
      }
    }
    return status::ok;
  }
};

}  // namespace tokred
