// tests/cuda/grid_tests.cuh — what the CUDA tests of the grid policies (the reducers in
// test_grid_reduce_cuda, the video layouts in test_video_layout_cuda) share: the sweep of the case
// table over element types and the padded tails, the rows with NaN and inf, the sentinel-filled
// device outputs, the exact comparison of the bookkeeping, and the storage type's ulp in the
// token rows' tolerance.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/policy/grid_reduce.hpp>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"

namespace tokred::testing {

/// An element type passed as a value, so that one generic callable serves every (Ein, Eout).
template <class E>
struct element_tag {
  using type = E;
};

/// Calls `each(c, how)` for every case `c` of the table in its own layout `how`.
template <class Each>
void for_each_case(const Each& each) {
  for (const shape_case& c : shape_cases()) each(c, layout_of(c.rows));
}

/// Calls `sweep(element_tag<E>{}, element_tag<E>{}, c, how, name)` for every case `c` of the
/// table in its own layout `how`, with E = fp32, fp16 and bf16 in and out.
template <class Sweep>
void sweep_same_types(const Sweep& sweep) {
  for_each_case([&](const shape_case& c, rows_layout how) {
    sweep(element_tag<float>{}, element_tag<float>{}, c, how, "fp32");
    sweep(element_tag<f16>{}, element_tag<f16>{}, c, how, "fp16");
    sweep(element_tag<bf16>{}, element_tag<bf16>{}, c, how, "bf16");
  });
}

/// Calls `sweep` like sweep_same_types on each of `tails` in the padded layout (vector loads
/// with a partial last chunk), in fp32, bf16 and fp16 → fp32.
template <std::size_t N, class Sweep>
void sweep_padded(const shape_case (&tails)[N], const Sweep& sweep) {
  for (const shape_case& c : tails) {
    sweep(element_tag<float>{}, element_tag<float>{}, c, rows_layout::padded, "fp32");
    sweep(element_tag<bf16>{}, element_tag<bf16>{}, c, rows_layout::padded, "bf16");
    sweep(element_tag<f16>{}, element_tag<float>{}, c, rows_layout::padded, "fp16->fp32");
  }
}

/// The rows of the non-finite checks: a 3 × 6 × 6 grid (dim 9, contiguous) with NaN, +inf and
/// -inf at a few places.
template <class E>
struct non_finite_case {
  token_grid grid{3, 6, 6};
  index_t dim = 9;
  rows_on_device<E> rows{grid.tokens(), dim, rows_layout::contiguous, 31};

  non_finite_case() {
    rows.set(7, 2, from_float<E>(std::numeric_limits<float>::quiet_NaN()));
    rows.set(20, 5, from_float<E>(std::numeric_limits<float>::infinity()));
    rows.set(21, 5, from_float<E>(-std::numeric_limits<float>::infinity()));
    rows.set(50, 0, from_float<E>(std::numeric_limits<float>::infinity()));
    rows.set(88, 8, from_float<E>(-std::numeric_limits<float>::quiet_NaN()));
    rows.sync();
  }
};

/// Which outputs of a grid policy a run asks for.
enum class request { all, tokens, meta };

/// Sentinel-filled device outputs of a grid policy, laid out like the inputs (positions are
/// never padded: three columns leave no vector tail to test).
template <class E>
struct outputs_on_device {
  static constexpr float token_fill = -3.5f;
  static constexpr std::int64_t source_fill = -12345;
  static constexpr std::int32_t position_fill = -777;
  static constexpr float size_fill = -1.25f;

  placed<E> tokens;               // (kept, dim)
  placed<std::int64_t> source;    // (kept,)
  placed<std::int32_t> positions;  // (kept, 3)
  placed<float> sizes;            // (kept,)

  outputs_on_device(index_t kept, index_t dim, rows_layout how)
      : tokens(place(kept, dim, how), kept, dim, from_float<E>(token_fill)),
        source(place_vector(kept, how), kept, 1, source_fill),
        positions(place(kept, 3, how == rows_layout::padded ? rows_layout::contiguous : how), kept,
                  3, position_fill),
        sizes(place_vector(kept, how), kept, 1, size_fill) {}

  grid_outputs<E, device_space> views(request what = request::all) const {
    grid_outputs<E, device_space> o;
    if (what != request::meta) o.tokens = tokens.matrix();
    if (what != request::tokens) {
      o.source = source.vector();
      o.positions = positions.matrix();
      o.sizes = sizes.vector();
    }
    return o;
  }
  /// True when nothing was written to any output, padding included.
  bool untouched() const {
    return tokens.untouched() && source.untouched() && positions.untouched() && sizes.untouched();
  }
};

/// Compares the bookkeeping outputs of `kept` tokens exactly with `want`'s: any type with
/// vectors `source` (kept,), `positions` (kept, 3) row-major and `sizes` (kept,) — the oracle's
/// expectation or the CPU backend's grid_buffers; sizes bit for bit. The storage around each
/// view must be untouched.
template <class E, class Expected>
void compare_meta(const outputs_on_device<E>& out, index_t kept, const Expected& want,
                  const std::string& label) {
  const std::vector<std::int64_t> source = out.source.buffer.download();
  const std::vector<std::int32_t> positions = out.positions.buffer.download();
  const std::vector<float> sizes = out.sizes.buffer.download();
  index_t bad_source = 0, bad_positions = 0, bad_sizes = 0;
  for (index_t j = 0; j < kept; ++j) {
    const auto u = static_cast<std::size_t>(j);
    bad_source += out.source.at(source, j, 0) != want.source[u];
    for (index_t a = 0; a < 3; ++a)
      bad_positions +=
          out.positions.at(positions, j, a) != want.positions[3 * u + static_cast<std::size_t>(a)];
    bad_sizes += bits_of(out.sizes.at(sizes, j, 0)) != bits_of(want.sizes[u]);
  }
  check(bad_source == 0 && out.source.untouched(source, false),
        label + ": source (" + str(bad_source) + " differ)");
  check(bad_positions == 0 && out.positions.untouched(positions, false),
        label + ": positions (" + str(bad_positions) + " differ)");
  check(bad_sizes == 0 && out.sizes.untouched(sizes, false),
        label + ": sizes (" + str(bad_sizes) + " differ)");
}

/// One unit in the last place of storage type E at |v| (0 for fp32: its error is the 1e-5 of
/// the tolerance both tests use, relative, plus this ulp).
template <class E>
double storage_ulp(double v) {
  if constexpr (std::is_same_v<E, float>) {
    return 0.0;
  } else {
    constexpr int digits = std::is_same_v<E, f16> ? 11 : 8;  // significand bits
    constexpr int min_exponent = std::is_same_v<E, f16> ? -13 : -125;
    int exponent = 0;
    std::frexp(std::fabs(v), &exponent);
    return std::ldexp(1.0, std::max(exponent, min_exponent) - digits);
  }
}

}  // namespace tokred::testing
