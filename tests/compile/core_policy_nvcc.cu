// core/ and policy/ need nothing but the standard library, also under nvcc: this file is compiled
// with a bare `nvcc -std=c++17 -I include -c` (no CMake CUDA flags), and uses the host/device
// parts of those headers in a kernel.
#include <tokred/core/config.hpp>
#include <tokred/core/contract.hpp>
#include <tokred/core/element.hpp>
#include <tokred/core/exec.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/status.hpp>
#include <tokred/core/view.hpp>
#include <tokred/core/workspace.hpp>
#include <tokred/policy/budget.hpp>
#include <tokred/policy/selection.hpp>

#include <cstdint>
#include <type_traits>

#if defined(XSIMD_VERSION_MAJOR) || defined(EIGEN_WORLD_VERSION)
#error "tokred/core and tokred/policy must not include xsimd or Eigen"
#endif

namespace {

using device_rows = tokred::view<const tokred::bf16, 2, tokred::device_space>;  // (tokens, dim)
using device_f16_rows = tokred::view<tokred::f16, 2, tokred::device_space>;     // (tokens, dim)
using device_keys = tokred::view<std::uint32_t, 1, tokred::device_space>;       // (tokens,)
using device_positions = tokred::view<std::int32_t, 2, tokred::device_space>;   // (tokens, 3)

static_assert(std::is_trivially_copyable_v<device_rows>, "views are passed to kernels by value");

// Converts bf16 rows to fp16, ranks each token's first value and records its (t, h, w): the
// element conversions, the ranking keys, the grid and view access, all in device code.
__global__ void touch_core(device_rows in, device_f16_rows out, device_keys keys,
                           device_positions positions, tokred::token_grid grid,
                           std::uint64_t seed) {
  const tokred::index_t i = static_cast<tokred::index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= in.extent(0)) return;
  for (tokred::index_t c = 0; c < in.extent(1); ++c)
    out(i, c) = tokred::from_float<tokred::f16>(tokred::to_float(in(i, c)));
  const std::uint32_t score =
      tokred::detail::score_key(tokred::detail::float_bits(tokred::to_float(in(i, 0))));
  keys(i) = score ^ tokred::detail::random_key(seed, i);
  const tokred::token_position p = grid.position(i);
  positions(i, 0) = p.t;
  positions(i, 1) = p.h;
  positions(i, 2) = p.w;
  if (i == 0)
    keys(0) += static_cast<std::uint32_t>(tokred::detail::uniform_pick(1, 4, grid.tokens()));
}

}  // namespace

// Host side: the policy and shape queries next to a launch on the stream of a tokred::cuda exec.
tokred::status launch_touch_core(const tokred::cuda& exec, device_rows in, device_f16_rows out,
                                 device_keys keys, device_positions positions,
                                 tokred::token_grid grid) {
  const tokred::topk policy{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)};
  const tokred::problem prob{grid, in.extent(1)};
  if (const tokred::status s = tokred::can_implement(policy, prob); s != tokred::status::ok)
    return s;
  const unsigned blocks = static_cast<unsigned>((in.extent(0) + 127) / 128);
  touch_core<<<blocks, 128, 0, exec.stream>>>(in, out, keys, positions, grid, 42);
  return tokred::retained_count(policy, prob) > 0 ? tokred::status::ok
                                                  : tokred::status::invalid_budget;
}
