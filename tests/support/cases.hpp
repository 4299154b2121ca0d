// tests/support/cases.hpp — the one table of shapes and layouts that the CPU tests, the CUDA
// tests and the benchmarks all run, and the deterministic data generator they share.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>

namespace tokred::testing {

/// How a case lays its token rows out in memory.
enum class layout {
  contiguous,  ///< (tokens, dim) row-major
  strided,     ///< padded rows and an inner stride of 2: non-contiguous in both dimensions
  reversed,    ///< negative row stride: row 0 is stored last
};

struct shape_case {
  const char* name;
  token_grid grid;
  index_t dim;
  layout rows;
};

/// Tokens and dims around the SIMD widths (4, 8, 16 floats), the LLaVA grids, a video grid.
inline const std::vector<shape_case>& shape_cases() {
  static const std::vector<shape_case> cases = {
      {"one_token", image_grid(1, 1), 8, layout::contiguous},
      {"lanes_minus_1", sequence_grid(15), 15, layout::contiguous},
      {"lanes_plus_1", sequence_grid(17), 17, layout::contiguous},
      {"llava_24x24", image_grid(24, 24), 64, layout::contiguous},
      {"onevision_27x27", image_grid(27, 27), 33, layout::contiguous},
      {"video_8x14x14", token_grid{8, 14, 14}, 16, layout::contiguous},
      {"strided_24x24", image_grid(24, 24), 17, layout::strided},
      {"reversed_27x27", image_grid(27, 27), 16, layout::reversed},
      {"strided_video_4x7x7", token_grid{4, 7, 7}, 9, layout::strided},
      {"reversed_video_3x5x5", token_grid{3, 5, 5}, 31, layout::reversed},
  };
  return cases;
}

/// Keep ratios every selection test runs: a single token, floor-rounded fractions, all tokens.
inline const std::vector<double>& keep_ratios() {
  static const std::vector<double> ratios = {0.1, 0.25, 0.5, 0.75, 1.0};
  return ratios;
}

/// A small counter-based generator (SplitMix64): same numbers on every platform.
class rng {
 public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  /// Uniform in [-1, 1).
  float uniform() { return static_cast<float>(next() >> 40) / 8388608.0f - 1.0f; }

 private:
  std::uint64_t state_;
};

/// Scores with deliberate ties (values on a coarse grid), a few NaN, ±0 and ±inf.
inline std::vector<float> tie_heavy_scores(index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& x : s) {
    const std::uint64_t pick = r.next() % 64;
    if (pick == 0) x = std::nanf("");
    else if (pick == 1) x = -0.0f;
    else if (pick == 2) x = 0.0f;
    else if (pick == 3) x = INFINITY;
    else if (pick == 4) x = -INFINITY;
    else x = std::round(r.uniform() * 8.0f) / 8.0f;  // 17 levels: many exact ties
  }
  return s;
}

/// Storage for a (tokens, dim) matrix of element type E in one of the case layouts.
template <class E>
struct token_matrix {
  std::vector<E> storage;
  view<E, 2> rows;  // (tokens, dim)
};

/// Allocates and fills token rows: value = a deterministic function of (token, column), exactly
/// representable in every element type, so conversions can be checked exactly.
template <class E>
token_matrix<E> make_tokens(index_t n, index_t dim, layout how, std::uint64_t seed) {
  token_matrix<E> m;
  index_t row_stride = dim, inner = 1, rows_span = n * dim;
  if (how == layout::strided) {
    inner = 2;
    row_stride = 2 * dim + 3;
    rows_span = n * row_stride;
  }
  m.storage.assign(static_cast<std::size_t>(rows_span > 0 ? rows_span : 1), from_float<E>(-7.0f));
  E* base = m.storage.data();
  if (how == layout::reversed && n > 0) {
    base += (n - 1) * dim;
    row_stride = -dim;
  }
  m.rows = view<E, 2>(base, {n, dim}, {row_stride, inner});
  rng r(seed);
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < dim; ++c)
      m.rows(i, c) = from_float<E>(std::ldexp(static_cast<float>(static_cast<int>(r.next() % 255) - 127), -4));
  return m;
}

}  // namespace tokred::testing
