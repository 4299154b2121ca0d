// tests/cpu/test_element.cpp — fp16 and bf16 conversions: exact, round-to-nearest-even, and
// correct for subnormals, infinities and NaN; the SIMD loads/stores agree with the scalar ones.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <type_traits>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/cpu/simd.hpp>

#include "support/catch.hpp"

namespace {

using namespace tokred;

float from_bits(std::uint32_t u) { return detail::bits_float(u); }

/// bf16 oracle: of the two bf16 values around x, the nearer one (in double), ties to even.
std::uint16_t bf16_oracle(float x) {
  const std::uint32_t u = detail::float_bits(x);
  if (std::isnan(x)) return static_cast<std::uint16_t>((u >> 16) | 0x40);
  const std::uint32_t down = u & 0xFFFF0000u;
  const std::uint32_t up = down + 0x10000u;
  const double d_down = std::fabs(static_cast<double>(x) - from_bits(down));
  const double d_up = std::isinf(from_bits(up)) && !std::isinf(x)
                          ? std::fabs(static_cast<double>(x) - std::ldexp(1.0, 128) * ((u >> 31) ? -1 : 1))
                          : std::fabs(static_cast<double>(x) - from_bits(up));
  if (d_down < d_up) return static_cast<std::uint16_t>(down >> 16);
  if (d_up < d_down) return static_cast<std::uint16_t>(up >> 16);
  return static_cast<std::uint16_t>(((down >> 16) & 1u) ? up >> 16 : down >> 16);
}

/// The value of fp16 bits by the format's definition (NaN patterns give NaN).
double f16_value(std::uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double magnitude = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
  return (h & 0x8000u) ? -magnitude : magnitude;
}

/// fp16 oracle for non-NaN x: of the two fp16 magnitudes around |x| (in double; the infinity
/// pattern 0x7C00 stands at 2^16, the step after the largest finite half), the nearer one, ties
/// to even, with x's sign.
std::uint16_t f16_oracle(float x) {
  const double a = std::fabs(static_cast<double>(x));
  const auto magnitude = [](std::uint32_t h) { return h == 0x7C00u ? 65536.0 : f16_value(static_cast<std::uint16_t>(h)); };
  std::uint32_t down = 0, past = 0x7C01u;  // the largest pattern ≤ 0x7C00 whose magnitude is ≤ a
  while (past - down > 1) {
    const std::uint32_t mid = (down + past) / 2;
    (magnitude(mid) <= a ? down : past) = mid;
  }
  std::uint32_t h = down;
  if (down < 0x7C00u) {
    const double below = a - magnitude(down), above = magnitude(down + 1) - a;
    if (above < below || (above == below && (down & 1u))) h = down + 1;
  }
  return static_cast<std::uint16_t>(h | (std::signbit(x) ? 0x8000u : 0u));
}

/// Every 2^k-th fp32 bit pattern plus the neighbourhoods of the interesting boundaries.
std::vector<std::uint32_t> sample_patterns() {
  std::vector<std::uint32_t> p;
  for (std::uint64_t u = 0; u <= 0xFFFFFFFFull; u += 65521) p.push_back(static_cast<std::uint32_t>(u));
  const std::uint32_t edges[] = {0x00000000u, 0x00000001u, 0x33000000u, 0x33000001u, 0x337FFFFFu,
                                 0x38800000u, 0x387FFFFFu, 0x477FE000u, 0x477FEFFFu, 0x477FF000u,
                                 0x477FFFFFu, 0x7F7FFFFFu, 0x7F800000u, 0x7F800001u, 0x7FC00000u,
                                 0x7FFFFFFFu, 0x3F808000u, 0x3F818000u, 0x3F800001u, 0x00800000u};
  for (std::uint32_t e : edges)
    for (std::uint32_t d = 0; d < 64; ++d)
      for (std::uint32_t sign : {0u, 0x80000000u}) {
        p.push_back((e + d) | sign);
        p.push_back((e - d) | sign);
      }
  return p;
}

}  // namespace

TEST_CASE("fp16 narrowing rounds to nearest even on sampled and edge patterns", "[element]") {
  std::size_t mismatches = 0;
  for (std::uint32_t u : sample_patterns()) {
    const float x = from_bits(u);
    const std::uint16_t got = from_float<f16>(x).bits;
    if (std::isnan(x)) mismatches += !((got & 0x7C00u) == 0x7C00u && (got & 0x3FFu) && (got & 0x8000u) == (u >> 31 << 15));
    else mismatches += got != f16_oracle(x);
  }
  CHECK(mismatches == 0);
  CHECK(from_float<f16>(65519.996f).bits == 0x7BFF);                    // below the midpoint to 2^16
  CHECK(from_float<f16>(65520.0f).bits == 0x7C00);                      // the midpoint: to even, inf
  CHECK(from_float<f16>(std::ldexp(1.0f, -25)).bits == 0x0000);         // half the smallest step: to even, 0
  CHECK(from_float<f16>(std::ldexp(3.0f, -25)).bits == 0x0002);         // 1.5 steps: to even, 2
  CHECK(from_float<f16>(-std::ldexp(1.0f, -26)).bits == 0x8000);        // −0 keeps its sign
}

TEST_CASE("fp16 widening is exact for all 65536 patterns and round-trips", "[element]") {
  std::size_t mismatches = 0;
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const std::uint16_t bits = static_cast<std::uint16_t>(b);
    const float want = static_cast<float>(f16_value(bits));
    const float got = to_float(f16{bits});
    if (std::isnan(want)) mismatches += !std::isnan(got);
    else mismatches += detail::float_bits(got) != detail::float_bits(want);
    if (!std::isnan(want)) mismatches += from_float<f16>(got).bits != bits;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("bf16 narrowing rounds to nearest even on sampled and edge patterns", "[element]") {
  std::size_t mismatches = 0;
  for (std::uint32_t u : sample_patterns()) mismatches += from_float<bf16>(from_bits(u)).bits != bf16_oracle(from_bits(u));
  CHECK(mismatches == 0);
  CHECK(from_float<bf16>(from_bits(0x3F808000u)).bits == 0x3F80);  // tie, even stays
  CHECK(from_float<bf16>(from_bits(0x3F818000u)).bits == 0x3F82);  // tie, odd goes up
  CHECK(from_float<bf16>(from_bits(0x7F7FFFFFu)).bits == 0x7F80);  // overflows to inf
  CHECK(from_float<bf16>(from_bits(0x00000001u)).bits == 0x0000);  // subnormal rounds to 0
  CHECK(from_float<bf16>(from_bits(0x00008000u)).bits == 0x0000);  // tie at the smallest step
  CHECK(from_float<bf16>(from_bits(0x00018000u)).bits == 0x0002);
  CHECK((from_float<bf16>(NAN).bits & 0x7FC0) == 0x7FC0);
}

TEST_CASE("SIMD loads and stores agree with the scalar conversions bit for bit", "[element][simd]") {
  using lanes = detail::float_batch<compile_time_arch>;
  const std::vector<std::uint32_t> patterns = sample_patterns();
  // Whole batches plus a ragged tail of 3, so both the vector loop and the scalar tail run.
  std::vector<float> src((patterns.size() - 3) / lanes::size * lanes::size + 3);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = from_bits(patterns[i]);
  const index_t n = static_cast<index_t>(src.size());

  std::vector<bf16> as_bf16(static_cast<std::size_t>(n));
  std::vector<f16> as_f16(static_cast<std::size_t>(n));
  detail::convert_contiguous<compile_time_arch>(src.data(), as_bf16.data(), n);
  detail::convert_contiguous<compile_time_arch>(src.data(), as_f16.data(), n);
  std::vector<float> back_bf16(static_cast<std::size_t>(n)), back_f16(static_cast<std::size_t>(n));
  detail::convert_contiguous<compile_time_arch>(as_bf16.data(), back_bf16.data(), n);
  detail::convert_contiguous<compile_time_arch>(as_f16.data(), back_f16.data(), n);
  std::size_t mismatches = 0;
  for (index_t i = 0; i < n; ++i) {
    const float x = src[static_cast<std::size_t>(i)];
    mismatches += as_bf16[static_cast<std::size_t>(i)].bits != from_float<bf16>(x).bits;
    mismatches += as_f16[static_cast<std::size_t>(i)].bits != from_float<f16>(x).bits;
    mismatches += detail::float_bits(back_bf16[static_cast<std::size_t>(i)]) != detail::float_bits(to_float(as_bf16[static_cast<std::size_t>(i)]));
    mismatches += detail::float_bits(back_f16[static_cast<std::size_t>(i)]) != detail::float_bits(to_float(as_f16[static_cast<std::size_t>(i)]));
  }
  CHECK(mismatches == 0);
}

namespace tokred::testing {
namespace {

TEST_CASE("SIMD fp16 widening equals to_float for all 65536 patterns", "[element][simd]") {
  using lanes = detail::float_batch<compile_time_arch>;
  std::vector<f16> all(65536);
  for (std::size_t i = 0; i < all.size(); ++i) all[i].bits = static_cast<std::uint16_t>(i);
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < all.size(); i += lanes::size) {
    alignas(64) float got[lanes::size];
    detail::load_floats<compile_time_arch>(all.data() + i).store_aligned(got);
    for (std::size_t j = 0; j < lanes::size; ++j)
      mismatches += detail::float_bits(got[j]) != detail::float_bits(to_float(all[i + j]));
  }
  CHECK(mismatches == 0);
}

TEST_CASE("SIMD fp16 narrowing equals from_float for every sign, exponent and top mantissa", "[element][simd]") {
  // Every upper half of a float pattern with low halves that cover rounding: exact, just below,
  // at and above the half step of fp16's 13 dropped bits, and the extremes (also what a subnormal
  // half rounds at, whose dropped bits reach into the upper half).
  using lanes = detail::float_batch<compile_time_arch>;
  constexpr std::uint32_t lows[] = {0x0000u, 0x0001u, 0x0FFFu, 0x1000u, 0x1001u, 0x1FFFu, 0x2000u,
                                    0x3000u, 0x5A5Au, 0x7FFFu, 0x8000u, 0xF000u, 0xFFFFu, 0x9001u,
                                    0x6000u, 0xE000u};
  std::size_t mismatches = 0, tested = 0;
  for (std::uint32_t high = 0; high < 65536u; ++high)
    for (std::size_t i = 0; i < std::size(lows); i += lanes::size) {
      alignas(64) float in[lanes::size];
      for (std::size_t j = 0; j < lanes::size; ++j) in[j] = from_bits(high << 16 | lows[(i + j) % std::size(lows)]);
      f16 out[lanes::size];
      detail::store_floats<compile_time_arch>(out, lanes::load_aligned(in));
      for (std::size_t j = 0; j < lanes::size; ++j, ++tested) mismatches += out[j].bits != from_float<f16>(in[j]).bits;
    }
  CHECK(tested >= 65536u * std::size(lows));
  CHECK(mismatches == 0);
}

TEST_CASE("SIMD bf16 narrowing equals from_float for every sign, exponent and top mantissa", "[element][simd]") {
  // Every upper half of a float pattern (subnormals, infinities and NaN included) with low halves
  // that cover rounding to nearest even: below, at and above the half step of the 16 dropped
  // bits. A batch holds one upper half, so batches of normal values take the fast path where the
  // build has one (AVX512_BF16), and batches of subnormals or NaN the exact one; one and two
  // batches at a time.
  using lanes = detail::float_batch<compile_time_arch>;
  constexpr std::uint32_t lows[] = {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu, 0x3C00u, 0xC3FFu};
  std::size_t mismatches = 0, tested = 0;
  for (std::uint32_t high = 0; high < 65536u; ++high) {
    alignas(64) float in[2 * lanes::size];
    for (std::size_t j = 0; j < 2 * lanes::size; ++j) in[j] = from_bits(high << 16 | lows[j % std::size(lows)]);
    bf16 one[lanes::size], two[2 * lanes::size];
    detail::store_floats<compile_time_arch>(one, lanes::load_aligned(in));
    detail::store_floats<compile_time_arch>(two, lanes::load_aligned(in), lanes::load_aligned(in + lanes::size));
    for (std::size_t j = 0; j < lanes::size; ++j, ++tested) mismatches += one[j].bits != from_float<bf16>(in[j]).bits;
    for (std::size_t j = 0; j < 2 * lanes::size; ++j, ++tested) mismatches += two[j].bits != from_float<bf16>(in[j]).bits;
  }
  CHECK(tested >= 65536u * 3 * 4);
  CHECK(mismatches == 0);
}

}  // namespace
}  // namespace tokred::testing

namespace {

using arch = tokred::compile_time_arch;
using simd_lanes = tokred::detail::float_batch<arch>;
using simd_words = tokred::detail::u32_batch<arch>;  // as many lanes as simd_lanes
constexpr std::size_t simd_width = simd_lanes::size;

/// A square of batches whose row i holds 100·i + j in lane j: small integers, so every order of
/// adds is exact and a lane that lands in the wrong place shows.
struct numbered_rows {
  simd_lanes rows[simd_width];
  numbered_rows() {
    for (std::size_t i = 0; i < simd_width; ++i) {
      alignas(64) float lanes[simd_width];
      for (std::size_t j = 0; j < simd_width; ++j) lanes[j] = value(i, j);
      rows[i] = simd_lanes::load_aligned(lanes);
    }
  }
  static float value(std::size_t i, std::size_t j) { return static_cast<float>(100 * i + j); }
};

}  // namespace

TEST_CASE("transpose_square: lane j of row i becomes lane i of row j", "[simd]") {
  numbered_rows square;
  tokred::detail::transpose_square<tokred::compile_time_arch>(square.rows);
  std::size_t misplaced = 0;
  for (std::size_t j = 0; j < simd_width; ++j) {
    alignas(64) float got[simd_width];
    square.rows[j].store_aligned(got);
    for (std::size_t i = 0; i < simd_width; ++i) misplaced += got[i] != numbered_rows::value(i, j);
  }
  CHECK(misplaced == 0);
}

TEST_CASE("sums_of_rows: lane j is the sum of row j's lanes, in lane order", "[simd]") {
  constexpr std::size_t w = simd_width;
  numbered_rows square;
  const simd_lanes* rows = square.rows;
  alignas(64) float sums[w];
  tokred::detail::sums_of_rows<tokred::compile_time_arch>(rows).store_aligned(sums);
  for (std::size_t j = 0; j < w; ++j) {
    INFO("lane " << j);
    CHECK(sums[j] == static_cast<float>(100 * j * w + w * (w - 1) / 2));
  }
}

TEST_CASE("divide: each lane is the correctly rounded quotient, as scalar division gives it", "[simd]") {
  // Quotients of sampled bit patterns (normals of every exponent, subnormals, zeros, infinities,
  // NaN) and of random mantissas, where an estimate refined by Newton steps misses by an ulp.
  const std::vector<std::uint32_t> patterns = sample_patterns();
  std::vector<float> a, b;
  std::uint32_t state = 12345u;
  const auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (std::size_t i = 0; i < patterns.size(); ++i) {
    a.push_back(from_bits(patterns[i]));
    b.push_back(from_bits(patterns[(i * 7 + 3) % patterns.size()]));
  }
  for (int i = 0; i < 4096; ++i) {
    a.push_back(from_bits((next() & 0x807FFFFFu) | (static_cast<std::uint32_t>(100 + next() % 56) << 23)));
    b.push_back(from_bits((next() & 0x807FFFFFu) | (static_cast<std::uint32_t>(100 + next() % 56) << 23)));
  }
  std::size_t wrong = 0;
  for (std::size_t i = 0; i + simd_width <= a.size(); i += simd_width) {
    alignas(64) float q[simd_width];
    tokred::detail::divide<arch>(simd_lanes::load_unaligned(&a[i]), simd_lanes::load_unaligned(&b[i])).store_aligned(q);
    for (std::size_t j = 0; j < simd_width; ++j) {
      const float want = a[i + j] / b[i + j];
      wrong += std::isnan(want) ? !std::isnan(q[j]) : tokred::detail::float_bits(q[j]) != tokred::detail::float_bits(want);
    }
  }
  CHECK(wrong == 0);
}

TEST_CASE("shift_right_lanes: each lane by its own amount, 0 to 31", "[simd]") {
  using words = simd_words;
  constexpr std::size_t w = simd_width;
  std::size_t wrong = 0;
  for (std::uint32_t first = 0; first < 32; ++first) {
    alignas(64) std::uint32_t x[w], s[w], got[w];
    for (std::size_t i = 0; i < w; ++i) x[i] = 0x9E3779B9u * static_cast<std::uint32_t>(i + 1) | 0x80000000u, s[i] = (first + 7 * i) % 32;
    tokred::detail::shift_right_lanes<arch>(words::load_aligned(x), words::load_aligned(s)).store_aligned(got);
    for (std::size_t i = 0; i < w; ++i) wrong += got[i] != x[i] >> s[i];
  }
  CHECK(wrong == 0);
}

TEST_CASE("lookup16: lane i is table lane index[i] mod 16", "[simd]") {
  if constexpr (tokred::detail::has_lookup16<arch>()) {
    using words = simd_words;
    constexpr std::size_t w = simd_width;
    numbered_rows square;
    std::size_t wrong = 0;
    for (std::uint32_t first = 0; first < 64; ++first) {
      alignas(64) std::uint32_t index[w];
      alignas(64) float got[w];
      for (std::size_t i = 0; i < w; ++i) index[i] = first * 5 + 11 * static_cast<std::uint32_t>(i);
      tokred::detail::lookup16<arch>(square.rows[1], words::load_aligned(index)).store_aligned(got);
      for (std::size_t i = 0; i < w; ++i) wrong += got[i] != numbered_rows::value(1, index[i] % 16);
    }
    CHECK(wrong == 0);
  } else {
    SUCCEED("no 16-lane permute in this build");
  }
}

TEST_CASE("folds_of_rows: lane j is the minimum (maximum) of row j's lanes", "[simd]") {
  constexpr std::size_t w = simd_width;
  const auto min = [](const simd_lanes& a, const simd_lanes& b) { return xsimd::min(a, b); };
  const auto max = [](const simd_lanes& a, const simd_lanes& b) { return xsimd::max(a, b); };
  // Rows whose extremes move through every lane: row j holds 100·j + (i·7 + j·3 + round) mod w
  // in lane i, so each lane position carries the minimum of some row in some round.
  std::size_t wrong = 0;
  for (std::size_t round = 0; round < w; ++round) {
    simd_lanes rows[w];
    for (std::size_t j = 0; j < w; ++j) {
      alignas(64) float lanes[w];
      for (std::size_t i = 0; i < w; ++i) lanes[i] = static_cast<float>(100 * j + (i * 7 + j * 3 + round) % w);
      rows[j] = simd_lanes::load_aligned(lanes);
    }
    alignas(64) float lo[w], hi[w];
    tokred::detail::folds_of_rows<arch>(rows, min).store_aligned(lo);
    tokred::detail::folds_of_rows<arch>(rows, max).store_aligned(hi);
    for (std::size_t j = 0; j < w; ++j)
      wrong += lo[j] != static_cast<float>(100 * j) || hi[j] != static_cast<float>(100 * j + w - 1);
  }
  CHECK(wrong == 0);
}

TEST_CASE("pack_code_block: 32 codes of 2, 4 or 8 bits into their little-endian words", "[simd]") {
  if constexpr (tokred::detail::has_code_packing<arch>()) {
    using words = simd_words;
    constexpr std::size_t w = simd_width;
    // `-> void`: no return type to deduce, so the discarded branch never instantiates the body.
    const auto check = [](auto bits_constant) -> void {
      constexpr int bits = decltype(bits_constant)::value;
      std::size_t wrong = 0;
      std::uint32_t state = 12345u;
      for (int round = 0; round < 64; ++round) {
        alignas(64) std::uint32_t codes[32];
        for (std::uint32_t& c : codes) state = state * 1664525u + 1013904223u, c = (state >> 20) & ((1u << bits) - 1u);
        if (round == 0) std::fill(std::begin(codes), std::end(codes), (1u << bits) - 1u);  // every bit set
        words batches[32 / w];
        for (std::size_t i = 0; i < 32 / w; ++i) batches[i] = words::load_aligned(codes + i * w);
        std::uint32_t got[bits + 1], want[bits + 1] = {};
        got[bits] = 0xA5A5A5A5u;  // the word after the block stays as it was
        tokred::detail::pack_code_block<bits, arch>(batches, got);
        for (int i = 0; i < 32; ++i) want[i * bits / 32] |= codes[i] << (i * bits % 32);
        for (int j = 0; j < bits; ++j) wrong += got[j] != want[j];
        wrong += got[bits] != 0xA5A5A5A5u;
      }
      CHECK(wrong == 0);
    };
    check(std::integral_constant<int, 2>{});
    check(std::integral_constant<int, 4>{});
    check(std::integral_constant<int, 8>{});
  } else {
    SUCCEED("no vector code packing in this build");
  }
}
