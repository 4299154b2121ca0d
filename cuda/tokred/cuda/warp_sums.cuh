// tokred/cuda/warp_sums.cuh — sums over a row pair by one warp, in one fixed order: lane l runs
// the chain of elements c ≡ l (mod 32) in order, one rounding per step (fmaf), and the 32 chains
// are combined by an xor butterfly (offsets 16, 8, 4, 2, 1), which gives every lane the same
// bits (fp32 addition commutes). A result therefore depends only on the two rows, not on which
// was which, nor on the launch: the tests replay it on the host (tests/support/diversity_replay.hpp).
#pragma once

#include <cuda_runtime.h>

#include "tokred/core/config.hpp"
#include "tokred/core/rounded.hpp"

namespace tokred::detail {

/// The sum of the 32 lanes' values, the same bits in every lane.
__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = __fadd_rn(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  return v;
}

/// Σ a_c·b_c over a row pair (element strides sa, sb).
template <class A, class B>
__device__ inline float warp_dot(const A* a, index_t sa, const B* b, index_t sb, index_t dim, int lane) {
  float acc = 0.0f;
  for (index_t c = lane; c < dim; c += 32) acc = fmaf(widen(a[c * sa]), widen(b[c * sb]), acc);
  return warp_sum(acc);
}

/// Σ (a_c − b_c)² over a row pair (element strides sa, sb).
template <class A, class B>
__device__ inline float warp_squared_distance(const A* a, index_t sa, const B* b, index_t sb, index_t dim, int lane) {
  float acc = 0.0f;
  for (index_t c = lane; c < dim; c += 32) {
    const float d = __fsub_rn(widen(a[c * sa]), widen(b[c * sb]));
    acc = fmaf(d, d, acc);
  }
  return warp_sum(acc);
}

}  // namespace tokred::detail
