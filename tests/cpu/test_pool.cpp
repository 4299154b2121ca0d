// tests/cpu/test_pool.cpp — the CPU backends of pool, adaptive_pool and bilinear against the
// scalar oracle on the shared case table (every layout, element type and thread split), against
// the outputs of LLaVA-OneVision's original get_2dPool, and on properties and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "io/npy.hpp"
#include "reference/pool_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float token_sentinel = -3.5f;
constexpr std::int64_t source_sentinel = -12345;
constexpr std::int32_t position_sentinel = -777;
constexpr float size_sentinel = -1.25f;

/// Sentinel-filled outputs of a grid reducer, the token rows laid out like a case's input (so
/// strided and reversed outputs are written too); `untouched()` tells whether anything changed.
template <class E>
struct layout_grid_buffers {
  token_matrix<E> tokens;               // (kept, dim) in the case's layout
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<float> sizes;             // (kept,)
  index_t kept = 0;

  layout_grid_buffers(index_t kept_, index_t dim, layout how = layout::contiguous)
      : tokens(make_tokens<E>(kept_, dim, how, 1)),
        source(static_cast<std::size_t>(kept_), source_sentinel),
        positions(static_cast<std::size_t>(kept_ * 3), position_sentinel),
        sizes(static_cast<std::size_t>(kept_), size_sentinel),
        kept(kept_) {
    std::fill(tokens.storage.begin(), tokens.storage.end(), from_float<E>(token_sentinel));
  }

  grid_outputs<E> outputs() {
    return {tokens.rows, make_view(source.data(), kept), make_view(positions.data(), kept, 3),
            make_view(sizes.data(), kept)};
  }

  bool untouched() const {
    for (auto s : source) if (s != source_sentinel) return false;
    for (auto p : positions) if (p != position_sentinel) return false;
    for (auto s : sizes) if (s != size_sentinel) return false;
    for (auto t : tokens.storage) if (to_float(t) != token_sentinel) return false;
    return true;
  }
};

/// Distance in units in the last place of E between two stored values (0 for two NaNs).
template <class E>
std::int64_t ulps(E a, E b) {
  const float fa = to_float(a), fb = to_float(b);
  if (std::isnan(fa) || std::isnan(fb)) return std::isnan(fa) && std::isnan(fb) ? 0 : 1 << 30;
  const auto ordered = [](std::uint32_t bits, int width) {
    const std::int64_t magnitude = bits & ((std::uint32_t{1} << (width - 1)) - 1u);
    return (bits >> (width - 1)) ? -magnitude : magnitude;
  };
  constexpr int width = std::is_same_v<E, float> ? 32 : 16;
  const std::int64_t d = ordered(bits_of(a), width) - ordered(bits_of(b), width);
  return d < 0 ? -d : d;
}

/// True when `got` matches the oracle's `want`: fp32 within 1e-5 relative (absolute below 1);
/// fp16/bf16 within one unit in the last place of the storage type, or within 1e-6 absolute
/// (bilinear results near 0 come from cancellation: their fp32 error, some 2^-24 of the inputs'
/// magnitude of up to 8, is many storage ulps of a tiny result); `exact` asks for the bits.
template <class E>
bool close(E got, double want, bool exact) {
  const E rounded = from_float<E>(static_cast<float>(want));
  if (exact) return ulps(got, rounded) == 0;
  if constexpr (std::is_same_v<E, float>) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isinf(want)) return got == static_cast<float>(want);
    return std::fabs(static_cast<double>(got) - want) <= 1e-5 * std::max(1.0, std::fabs(want));
  } else {
    return ulps(got, rounded) <= 1 || std::fabs(static_cast<double>(to_float(got)) - want) <= 1e-6;
  }
}

template <class Policy>
bool exact_values(const Policy& p) {
  if constexpr (std::is_same_v<Policy, bilinear>) return false;
  else return p.kind == pool_kind::max;  // a maximum is one of the inputs, bit for bit
}

/// Runs `policy` on case `c` as `nth` shares (in reverse order) and checks every output against
/// the oracle; returns the output storage so that callers can compare thread splits bit for bit.
template <class Ein, class Eout, class Policy>
std::vector<Eout> check_against_oracle(const Policy& policy, const shape_case& c, int nth,
                                       const ref::grid_result& want, const token_matrix<Ein>& in_rows) {
  const problem prob{c.grid, c.dim};
  const index_t kept = retained_count(policy, prob);
  REQUIRE(kept == want.out.tokens());
  CHECK(output_grid(policy, c.grid).frames == want.out.frames);
  CHECK(output_grid(policy, c.grid).height == want.out.height);
  CHECK(output_grid(policy, c.grid).width == want.out.width);
  CHECK(workspace_bytes(cpu{0, nth}, policy, prob) == 0);

  layout_grid_buffers<Eout> got(kept, c.dim, c.rows);
  const grid_inputs<Ein> in{c.grid, in_rows.rows};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, policy, in, got.outputs()) == status::ok);

  CHECK(got.source == want.source);
  CHECK(got.positions == want.positions);
  CHECK(got.sizes == want.sizes);
  std::size_t mismatches = 0;
  for (index_t j = 0; j < kept; ++j)
    for (index_t d = 0; d < c.dim; ++d) {
      const double w = want.values[static_cast<std::size_t>(j * c.dim + d)];
      if (!close(got.tokens.rows(j, d), w, exact_values(policy))) {
        if (mismatches == 0) UNSCOPED_INFO("first mismatch at row " << j << " column " << d << ": got "
                                           << to_float(got.tokens.rows(j, d)) << ", want " << w);
        ++mismatches;
      }
    }
  CHECK(mismatches == 0);
  return got.tokens.storage;
}

/// Every layout, thread split 1 … 4 (bit-identical to nth = 1, gaps of strided outputs untouched).
template <class Ein, class Eout, class Policy>
int check_case(const Policy& policy, const shape_case& c, int max_nth = 4) {
  const token_matrix<Ein> rows = make_tokens<Ein>(c.grid.tokens(), c.dim, c.rows, 5);
  const ref::grid_result want = ref::reduced(policy, c.grid, view<const Ein, 2>(rows.rows));
  const problem prob{c.grid, c.dim};
  CHECK((can_implement(policy, prob) == status::ok) == want.valid);
  if (!want.valid) {
    CHECK(retained_count(policy, prob) == 0);
    return 0;
  }
  const std::vector<Eout> single = check_against_oracle<Ein, Eout>(policy, c, 1, want, rows);
  for (int nth = 2; nth <= max_nth; ++nth) {
    CAPTURE(nth);
    const std::vector<Eout> split = check_against_oracle<Ein, Eout>(policy, c, nth, want, rows);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < single.size(); ++i) differ += bits_of(single[i]) != bits_of(split[i]);
    CHECK(differ == 0);
  }
  return 1;
}

/// Pooling parameter sets: LLaVA's 2 × 2 average and max, padding with and without
/// count_include_pad, ceil mode, 1-D, 2-D and 3-D kernels, overlapping and gapped windows.
std::vector<pool> pool_params() {
  std::vector<pool> ps;
  ps.push_back(pool{});                                                                     // avg 2x2 s2
  ps.push_back(pool{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true});         // max 2x2 s2
  ps.push_back(pool{pool_kind::average, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, true, true});      // pad, ceil
  ps.push_back(pool{pool_kind::average, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, true, false});     // ... excl. pad
  ps.push_back(pool{pool_kind::max, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, true, true});          // max pad ceil
  ps.push_back(pool{pool_kind::max, {1, 1, 2}, {1, 1, 2}, {0, 0, 0}, false, true});         // 1-D (SlowFast)
  ps.push_back(pool{pool_kind::average, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, false, true});     // 3-D
  ps.push_back(pool{pool_kind::average, {3, 2, 2}, {2, 1, 2}, {1, 1, 0}, true, false});     // 3-D pad ceil
  ps.push_back(pool{pool_kind::average, {1, 3, 3}, {1, 1, 1}, {0, 0, 0}, false, true});     // overlapping
  ps.push_back(pool{pool_kind::max, {2, 3, 1}, {1, 2, 1}, {1, 1, 0}, false, true});         // 3-D max pad
  ps.push_back(pool{pool_kind::average, {1, 2, 3}, {1, 3, 2}, {0, 1, 1}, true, true});      // gaps, ceil
  ps.push_back(pool{pool_kind::average, {1, 1, 3}, {1, 1, 2}, {0, 0, 1}, true, true});      // 1-D pad ceil
  return ps;
}

/// Adaptive targets relative to the grid: down (integer and not), up, 3-D, global.
std::vector<adaptive_pool> adaptive_params(const token_grid& g) {
  const auto at_least_1 = [](index_t x) { return x < 1 ? index_t{1} : x; };
  return {
      {pool_kind::average, {g.frames, (g.height + 1) / 2, (g.width + 1) / 2}},
      {pool_kind::max, {g.frames, at_least_1(g.height / 3), at_least_1(g.width / 2)}},
      {pool_kind::average, {g.frames, g.height + 3, 2 * g.width + 1}},
      {pool_kind::max, {g.frames + 1, g.height + 1, g.width + 2}},
      {pool_kind::average, {at_least_1((g.frames + 1) / 2), 3, 5}},
      {pool_kind::average, {1, 1, 1}},
      {pool_kind::max, {1, at_least_1(g.height / 2), 1}},
  };
}

/// Bilinear targets: LLaVA's ceil(H/2), upsampling, 1 × 1, identity; both corner rules.
std::vector<bilinear> bilinear_params(const token_grid& g) {
  std::vector<bilinear> ps;
  for (bool align : {false, true}) {
    ps.push_back({(g.height + 1) / 2, (g.width + 1) / 2, align});
    ps.push_back({2 * g.height + 1, g.width + 3, align});
    ps.push_back({1, 1, align});
    ps.push_back({g.height, g.width, align});
    ps.push_back({g.height > 1 ? g.height - 1 : 1, 2 * g.width, align});
  }
  return ps;
}

template <class Ein, class Eout>
int check_all_policies(const shape_case& c, int max_nth) {
  int runs = 0;
  for (const pool& p : pool_params()) {
    CAPTURE(c.name, static_cast<int>(p.kind), p.kernel.t, p.kernel.h, p.kernel.w, p.stride.t, p.stride.h,
            p.stride.w, p.padding.t, p.padding.h, p.padding.w, p.ceil_mode, p.count_include_pad);
    runs += check_case<Ein, Eout>(p, c, max_nth);
  }
  for (const adaptive_pool& p : adaptive_params(c.grid)) {
    CAPTURE(c.name, static_cast<int>(p.kind), p.size.t, p.size.h, p.size.w);
    runs += check_case<Ein, Eout>(p, c, max_nth);
  }
  for (const bilinear& p : bilinear_params(c.grid)) {
    CAPTURE(c.name, p.height, p.width, p.align_corners);
    runs += check_case<Ein, Eout>(p, c, max_nth);
  }
  return runs;
}

/// A grid of one value everywhere.
struct constant_grid {
  token_grid grid{3, 9, 11};
  index_t dim = 37;  // two SIMD batches and a tail on every ISA
  std::vector<float> rows;  // (tokens, dim)
  explicit constant_grid(float v) : rows(static_cast<std::size_t>(grid.tokens() * dim), v) {}
  grid_inputs<float> inputs() const { return {grid, make_view(rows.data(), grid.tokens(), dim)}; }
};

template <class Policy>
std::vector<float> run_tokens(const Policy& p, const grid_inputs<float>& in) {
  const index_t kept = retained_count(p, problem{in.grid, in.tokens.extent(1)});
  std::vector<float> out(static_cast<std::size_t>(kept * in.tokens.extent(1)));  // (kept, dim)
  grid_outputs<float> o;
  o.tokens = make_view(out.data(), kept, in.tokens.extent(1));
  REQUIRE(apply(cpu{}, p, in, o) == status::ok);
  return out;
}


/// Runs `policy` on a golden case's input [T, H·W, D] and compares with tokens.npy [T, h·w, D].
template <class Policy>
double golden_max_error(const std::string& name, const Policy& policy, const token_grid& grid) {
  const io::npy_array input = load_npy(golden_case("pooling", name) + "input.npy");
  const io::npy_array expected = load_npy(golden_case("pooling", name) + "tokens.npy");
  REQUIRE(input.dtype == "<f4");
  REQUIRE(expected.dtype == "<f4");
  REQUIRE(input.shape.size() == 3);
  const index_t dim = input.shape[2];
  REQUIRE(input.shape[0] * input.shape[1] == grid.tokens());
  const std::vector<float> x = input.as<float>();        // (tokens, dim)
  const std::vector<float> want = expected.as<float>();  // (kept, dim)
  const std::vector<float> got = run_tokens(policy, grid_inputs<float>{grid, make_view(x.data(), grid.tokens(), dim)});
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = worse(worst, std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i])));
  return worst;
}

}  // namespace

TEMPLATE_TEST_CASE("pool, adaptive_pool and bilinear match the oracle on every case", "[pool]", float, f16, bf16) {
  int runs = 0;
  for (const shape_case& c : shape_cases()) runs += check_all_policies<TestType, TestType>(c, 4);
  CHECK(runs > 200);  // most parameter sets fit most shapes; a wrong validity rule would drop them
}

TEMPLATE_TEST_CASE("grid reducers convert the element type through fp32", "[pool]", f16, bf16) {
  for (const shape_case& c : shape_cases()) {
    check_all_policies<TestType, float>(c, 2);
    check_all_policies<float, TestType>(c, 1);
  }
}

TEST_CASE("LLaVA-OneVision get_2dPool average: 2 frames of 27 x 27 -> 13 x 13", "[pool][golden]") {
  // F.avg_pool2d(x, 2) drops the last row and column; same sum order and divisor as torch.
  CHECK(golden_max_error("llava_average_27to13", pool{}, token_grid{2, 27, 27}) <= 1e-6);
}

TEST_CASE("LLaVA-OneVision get_2dPool bilinear: 2 frames of 27 x 27 -> 14 x 14", "[pool][golden]") {
  // torch fuses its weighted sums (AVX2/AVX-512 kernels); the default SSE2 build rounds the
  // product first, so the outputs may differ in the last bits (measured: below 5e-7).
  CHECK(golden_max_error("llava_bilinear_27to14", bilinear{14, 14, false}, token_grid{2, 27, 27}) <= 1e-6);
}

TEST_CASE("a constant grid reduces to the constant", "[pool][property]") {
  const float v = 1.375f;
  const constant_grid g(v);
  const auto all_equal = [&](const std::vector<float>& out, float tolerance) {
    for (float x : out)
      if (std::fabs(x - v) > tolerance) return false;
    return !out.empty();
  };
  CHECK(all_equal(run_tokens(pool{}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(pool{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(pool{pool_kind::average, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, true, false}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(pool{pool_kind::max, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, true, true}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(adaptive_pool{pool_kind::average, {2, 4, 5}}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(adaptive_pool{pool_kind::average, {5, 13, 17}}, g.inputs()), 0.0f));
  CHECK(all_equal(run_tokens(adaptive_pool{pool_kind::max, {1, 4, 5}}, g.inputs()), 0.0f));
  // Bilinear weights (1 − λ) + λ sum to 1 only up to fp32 rounding.
  for (bool align : {false, true}) {
    CHECK(all_equal(run_tokens(bilinear{5, 6, align}, g.inputs()), 4e-7f));
    CHECK(all_equal(run_tokens(bilinear{19, 23, align}, g.inputs()), 4e-7f));
  }
}

TEST_CASE("count_include_pad divides edge windows by the padded size", "[pool][property]") {
  const constant_grid g(2.0f);
  pool p{pool_kind::average, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, false, true};
  const std::vector<float> with_pad = run_tokens(p, g.inputs());  // (kept, dim)
  p.count_include_pad = false;
  const std::vector<float> without = run_tokens(p, g.inputs());   // (kept, dim)
  const index_t dim = g.dim, w = g.grid.width;
  const auto at = [&](const std::vector<float>& out, index_t h, index_t x) {
    return out[static_cast<std::size_t>((h * w + x) * dim)];
  };
  CHECK(at(with_pad, 0, 0) == 2.0f * 4.0f / 9.0f);  // corner: 4 of 9 cells are inside
  CHECK(at(with_pad, 0, 5) == 2.0f * 6.0f / 9.0f);  // edge: 6 of 9
  CHECK(at(with_pad, 4, 5) == 2.0f);                // interior
  CHECK(at(without, 0, 0) == 2.0f);
  CHECK(at(without, 0, 5) == 2.0f);
}

TEST_CASE("non-overlapping full-cover pooling accounts for every token once", "[pool][property]") {
  const token_grid grid{4, 6, 9};
  const auto check_cover = [&](const auto& policy) {
    const index_t kept = retained_count(policy, problem{grid, 0});
    std::vector<float> sizes(static_cast<std::size_t>(kept));           // (kept,)
    std::vector<std::int64_t> source(static_cast<std::size_t>(kept));   // (kept,)
    const grid_outputs<float> out{{}, make_view(source.data(), kept), {}, make_view(sizes.data(), kept)};
    REQUIRE(apply(cpu{}, policy, grid_inputs<float>{grid, {}}, out) == status::ok);  // no rows needed
    double total = 0;
    for (float s : sizes) total += s;
    CHECK(total == static_cast<double>(grid.tokens()));
    CHECK(std::is_sorted(source.begin(), source.end()));
  };
  check_cover(pool{pool_kind::average, {2, 3, 3}, {2, 3, 3}, {0, 0, 0}, false, true});
  check_cover(pool{pool_kind::max, {1, 2, 3}, {1, 2, 3}, {0, 0, 0}, true, true});
  check_cover(adaptive_pool{pool_kind::average, {2, 3, 3}});
  check_cover(adaptive_pool{pool_kind::max, {4, 1, 9}});
}

TEST_CASE("source is the middle of the window, positions its (t, h, w)", "[pool][property]") {
  const token_grid grid{2, 27, 27};
  const index_t kept = retained_count(pool{}, problem{grid, 0});
  REQUIRE(kept == 2 * 13 * 13);
  std::vector<std::int64_t> source(static_cast<std::size_t>(kept));         // (kept,)
  std::vector<std::int32_t> positions(static_cast<std::size_t>(kept * 3));  // (kept, 3)
  std::vector<float> sizes(static_cast<std::size_t>(kept));                 // (kept,)
  const grid_outputs<float> out{{}, make_view(source.data(), kept), make_view(positions.data(), kept, 3),
                                make_view(sizes.data(), kept)};
  REQUIRE(apply(cpu{}, pool{}, grid_inputs<float>{grid, {}}, out) == status::ok);
  CHECK(source[0] == 0);              // window rows 0-1, columns 0-1: the lower middle is (0, 0)
  CHECK(source[1] == 2);              // columns 2-3
  CHECK(source[13] == 2 * 27);        // rows 2-3
  CHECK(source[169] == 729);          // frame 1
  CHECK(positions[3 * 168 + 1] == 24);  // last window of frame 0 starts at row 24; row 26 is dropped
  CHECK(sizes[0] == 4.0f);

  // Bilinear 27 -> 14: output 1 samples 27/14·1.5 − 0.5 = 2.39, so taps 2 and 3, nearer 2.
  const index_t k2 = retained_count(bilinear{14, 14}, problem{grid, 0});
  std::vector<std::int64_t> src2(static_cast<std::size_t>(k2));
  REQUIRE(apply(cpu{}, bilinear{14, 14}, grid_inputs<float>{grid, {}},
                grid_outputs<float>{{}, make_view(src2.data(), k2), {}, {}}) == status::ok);
  CHECK(src2[1] == 2);
  CHECK(src2[14] == 2 * 27);
}

TEST_CASE("NaN and infinity propagate as in torch", "[pool][property]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // One frame of 2 x 4 tokens: windows {0, 1, 4, 5} and {2, 3, 6, 7}. Each token's value fills
  // its whole row of 37 columns (SIMD batches and a scalar tail), every column must agree.
  const token_grid grid{1, 2, 4};
  const index_t dim = 37;
  const auto run = [&](const auto& policy, const std::vector<float>& x) {
    std::vector<float> rows;  // (tokens, dim)
    for (float v : x) rows.insert(rows.end(), static_cast<std::size_t>(dim), v);
    const std::vector<float> out = run_tokens(policy, grid_inputs<float>{grid, make_view(rows.data(), 8, dim)});  // (kept, dim)
    std::vector<float> first;  // (kept,) column 0
    for (std::size_t j = 0; j < out.size(); j += static_cast<std::size_t>(dim)) {
      for (std::size_t c = 1; c < static_cast<std::size_t>(dim); ++c)
        CHECK(bits_of(out[j + c]) == bits_of(out[j]));
      first.push_back(out[j]);
    }
    return first;
  };
  const pool avg{};
  const pool max{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true};
  std::vector<float> out = run(max, {1, nan, 3, 4, 5, 6, 7, 8});
  CHECK(std::isnan(out[0]));  // a NaN anywhere in the window wins, as torch's (v > m || isnan(v))
  CHECK(out[1] == 8.0f);
  out = run(max, {nan, 9, -inf, -inf, 5, 6, -inf, -inf});
  CHECK(std::isnan(out[0]));  // even when a larger value follows it
  CHECK(out[1] == -inf);
  out = run(avg, {inf, 1, -inf, 1, 1, 1, inf, 1});
  CHECK(out[0] == inf);
  CHECK(std::isnan(out[1]));  // inf + (−inf)
  out = run(adaptive_pool{pool_kind::max, {1, 1, 1}}, {1, 2, 3, nan, 5, 6, 7, 8});
  CHECK(std::isnan(out[0]));
  out = run(bilinear{2, 2, true}, {1, 2, 3, nan, 5, 6, 7, 8});  // corners only: (0, 0), (0, 3), (1, 0), (1, 3)
  CHECK(out[0] == 1.0f);
  CHECK(std::isnan(out[1]));
  // +0 and −0 compare equal: the maximum keeps the first one met, as torch does.
  out = run(max, {-0.0f, 0.0f, 0.0f, -0.0f, -1, -1, -1, -1});
  CHECK(std::signbit(out[0]));
  CHECK(!std::signbit(out[1]));
}

TEST_CASE("the SIMD path and the element-wise path give the same bits", "[pool]") {
  // Same rows twice: once contiguous (SIMD batches), once with an inner stride of 2 (scalar).
  const token_grid grid{2, 7, 9};
  const index_t n = grid.tokens(), dim = 53;
  const token_matrix<float> dense = make_tokens<float>(n, dim, layout::contiguous, 3);
  const token_matrix<float> sparse = make_tokens<float>(n, dim, layout::strided, 3);
  const auto both = [&](const auto& policy) {
    const index_t kept = retained_count(policy, problem{grid, dim});
    layout_grid_buffers<float> a(kept, dim, layout::contiguous), b(kept, dim, layout::strided);
    REQUIRE(apply(cpu{}, policy, grid_inputs<float>{grid, dense.rows}, a.outputs()) == status::ok);
    REQUIRE(apply(cpu{}, policy, grid_inputs<float>{grid, sparse.rows}, b.outputs()) == status::ok);
    std::size_t differ = 0;
    for (index_t j = 0; j < kept; ++j)
      for (index_t c = 0; c < dim; ++c) differ += bits_of(a.tokens.rows(j, c)) != bits_of(b.tokens.rows(j, c));
    return differ;
  };
  CHECK(both(pool{pool_kind::average, {2, 3, 3}, {1, 2, 2}, {1, 1, 1}, true, false}) == 0);
  CHECK(both(pool{pool_kind::max, {1, 3, 2}, {1, 2, 2}, {0, 1, 1}, true, true}) == 0);
  CHECK(both(adaptive_pool{pool_kind::average, {1, 4, 5}}) == 0);
  CHECK(both(bilinear{4, 13, false}) == 0);
  CHECK(both(bilinear{11, 5, true}) == 0);
}

TEST_CASE("the SIMD shim's bf16 pairs convert exactly like the scalar conversions", "[pool][simd]") {
  using arch = compile_time_arch;
  constexpr std::size_t lanes = detail::float_batch<arch>::size;
  // Ties to even, values that round up into the next binade or to infinity, subnormals, NaN.
  const std::uint32_t patterns[] = {0x3F808000u, 0x3F818000u, 0x3F80FFFFu, 0x7F7FFFFFu, 0xFF7F8000u,
                                    0x00008000u, 0x80018000u, 0x7FC00001u, 0xFF800001u, 0x7F800000u,
                                    0x00000000u, 0x80000000u, 0x3F7FFFFFu, 0x4049FFFFu, 0xC0490FDBu};
  std::vector<float> values;  // (4·lanes,)
  for (std::size_t i = 0; values.size() < 4 * lanes; ++i)
    values.push_back(detail::bits_float(patterns[i % std::size(patterns)] + static_cast<std::uint32_t>(i / std::size(patterns))));

  // bf16_bits: each lane as from_float<bf16>.
  for (std::size_t i = 0; i < values.size(); i += lanes) {
    alignas(64) std::uint32_t got[lanes];
    detail::bf16_bits<arch>(detail::float_batch<arch>::load_unaligned(values.data() + i)).store_aligned(got);
    for (std::size_t k = 0; k < lanes; ++k) CHECK(got[k] == from_float<bf16>(values[i + k]).bits);
  }
  // Pairs: bf16 in, arithmetic, bf16 out gives the scalar result element by element.
  std::vector<bf16> in, out(values.size());  // (4·lanes,) each
  for (float v : values) in.push_back(from_float<bf16>(v));
  const detail::float_batch<arch> scale(1.00390625f);  // 1 + 2^-8: half a bf16 ulp, so ties round
  for (std::size_t i = 0; i < in.size(); i += 2 * lanes) {
    const detail::float_pair<arch> x = detail::load_float_pair<arch>(in.data() + i);
    detail::store_float_pair<arch>(out.data() + i, {x.first * scale, x.second * scale});
  }
  for (std::size_t i = 0; i < in.size(); ++i)
    CHECK(out[i].bits == from_float<bf16>(to_float(in[i]) * 1.00390625f).bits);
  // fp32 pairs are two plain batches.
  std::vector<float> copy(values.size());  // (4·lanes,)
  for (std::size_t i = 0; i < values.size(); i += 2 * lanes)
    detail::store_float_pair<arch>(copy.data() + i, detail::load_float_pair<arch>(values.data() + i));
  CHECK(std::memcmp(copy.data(), values.data(), values.size() * sizeof(float)) == 0);
}

/// Mismatches of the SIMD shim's bf16 conversions under architecture Arch against to_float and
/// from_float<bf16>: every bf16 pattern widened; fp32 patterns (every top half with the low
/// halves that decide the rounding: 0, 1, ties 0x8000, just below and above them, 0xFFFF, so
/// NaN payloads, infinities, max finite, subnormals and ties to even) narrowed one batch, two
/// batches and a pair at a time.
template <class Arch>
std::size_t bf16_shim_mismatches() {
  using batch = detail::float_batch<Arch>;
  constexpr std::size_t lanes = batch::size;
  std::size_t bad = 0;
  std::vector<bf16> all(1u << 16);  // (65536,)
  for (std::uint32_t b = 0; b < all.size(); ++b) all[b] = bf16{static_cast<std::uint16_t>(b)};
  alignas(64) float wide[lanes];
  for (std::size_t i = 0; i < all.size(); i += lanes) {
    detail::load_floats<Arch>(all.data() + i).store_aligned(wide);
    for (std::size_t k = 0; k < lanes; ++k) bad += bits_of(wide[k]) != bits_of(to_float(all[i + k]));
  }
  std::vector<float> values;  // (6 · 65536,)
  for (std::uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu})
    for (std::uint32_t top = 0; top < (1u << 16); ++top) values.push_back(detail::bits_float((top << 16) | low));
  std::vector<bf16> one(values.size()), two(values.size()), paired(values.size());  // (6 · 65536,) each
  for (std::size_t i = 0; i < values.size(); i += 2 * lanes) {
    const batch a = batch::load_unaligned(values.data() + i), b = batch::load_unaligned(values.data() + i + lanes);
    detail::store_floats<Arch>(one.data() + i, a);
    detail::store_floats<Arch>(one.data() + i + lanes, b);
    detail::store_floats<Arch>(two.data() + i, a, b);
    alignas(64) float even[lanes], odd[lanes];  // a bf16 pair holds even elements, then odd
    for (std::size_t k = 0; k < lanes; ++k) even[k] = values[i + 2 * k], odd[k] = values[i + 2 * k + 1];
    detail::store_float_pair<Arch>(paired.data() + i, {batch::load_aligned(even), batch::load_aligned(odd)});
  }
  for (std::size_t i = 0; i < values.size(); ++i) {
    const std::uint16_t want = from_float<bf16>(values[i]).bits;
    bad += one[i].bits != want;
    bad += two[i].bits != want;
    bad += paired[i].bits != want;
  }
  // bf16 pairs interleave even and odd elements: widen every pattern, scale, narrow.
  std::vector<bf16> out(2 * lanes);  // (2·lanes,)
  const batch scale(1.00390625f);  // 1 + 2^-8: turns bf16 values into ties and near-ties
  for (std::size_t i = 0; i + 2 * lanes <= all.size(); i += 2 * lanes) {
    const detail::float_pair<Arch> x = detail::load_float_pair<Arch>(all.data() + i);
    detail::store_float_pair<Arch>(out.data(), {x.first * scale, x.second * scale});
    for (std::size_t k = 0; k < 2 * lanes; ++k)
      bad += out[k].bits != from_float<bf16>(to_float(all[i + k]) * 1.00390625f).bits;
  }
  return bad;
}

TEST_CASE("the SIMD shim's bf16 widening and narrowing are exact on every ISA of the build", "[pool][simd]") {
  CHECK(bf16_shim_mismatches<compile_time_arch>() == 0);
#if XSIMD_WITH_SSE2
  CHECK(bf16_shim_mismatches<xsimd::sse2>() == 0);
#endif
#if XSIMD_WITH_AVX2
  CHECK(bf16_shim_mismatches<xsimd::avx2>() == 0);
#endif
#if XSIMD_WITH_AVX512BW
  CHECK(bf16_shim_mismatches<xsimd::avx512bw>() == 0);
#endif
}

TEST_CASE("max pooling's NaN-free fast step and its NaN fallback agree with the oracle", "[pool][simd]") {
  // 64 channels (a full block on every ISA) plus a tail; one NaN in one channel of one token
  // sends only that block through the exact step, the rest keeps the fast one.
  const token_grid grid{1, 4, 4};
  const index_t dim = 64 + 64 + 5;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  token_matrix<bf16> in = make_tokens<bf16>(grid.tokens(), dim, layout::contiguous, 7);
  in.rows(5, 70) = from_float<bf16>(nan);
  in.rows(0, 3) = from_float<bf16>(-0.0f);
  in.rows(1, 3) = from_float<bf16>(0.0f);
  const pool max{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true};
  std::vector<bf16> out(static_cast<std::size_t>(4 * dim));  // (kept, dim)
  grid_outputs<bf16> o;
  o.tokens = make_view(out.data(), 4, dim);
  REQUIRE(apply(cpu{}, max, grid_inputs<bf16>{grid, in.rows}, o) == status::ok);
  for (index_t j = 0; j < 4; ++j)
    for (index_t c = 0; c < dim; ++c) {
      const index_t t = (j / 2) * 8 + (j % 2) * 2;  // top-left token of window j
      float m = -std::numeric_limits<float>::infinity();
      for (index_t i : {t, t + 1, t + 4, t + 5}) m = detail::max_step(m, to_float(in.rows(i, c)));
      CHECK(out[static_cast<std::size_t>(j * dim + c)].bits == from_float<bf16>(m).bits);
    }
  CHECK(std::isnan(to_float(out[static_cast<std::size_t>(70)])));
  CHECK(std::signbit(to_float(out[3])));  // -0 met first
}

// ---------------------------------------------------------------------------------------------
// Bad input: every case returns its documented status and writes nothing.

namespace {

/// A valid problem (2 frames of 6 x 4 tokens, dim 8) that each section breaks in one way.
template <class Policy>
struct bad_fixture {
  static constexpr index_t dim = 8;
  token_grid grid{2, 6, 4};
  Policy policy;
  std::vector<float> rows = std::vector<float>(static_cast<std::size_t>(48 * dim), 2.0f);  // (tokens, dim)
  index_t kept;
  layout_grid_buffers<float> out;

  explicit bad_fixture(const Policy& p)
      : policy(p), kept(retained_count(p, problem{grid, dim})), out(kept, dim) {}

  grid_inputs<float> inputs() const { return {grid, make_view(rows.data(), grid.tokens(), dim)}; }
  status run(const grid_inputs<float>& in, const grid_outputs<float>& o) const {
    return apply(cpu{}, policy, in, o);
  }
};

/// The checks every grid reducer shares: grids, views, aliasing, the exec.
template <class Policy>
void check_common_bad_input(const Policy& p) {
  bad_fixture<Policy> f(p);
  REQUIRE(f.kept > 0);
  const index_t n = f.grid.tokens(), k = f.kept, dim = f.dim;
  const grid_outputs<float> good = f.out.outputs();
  const auto expect = [&](const grid_inputs<float>& in, const grid_outputs<float>& o, status want) {
    CHECK(f.run(in, o) == want);
    CHECK(f.out.untouched());
  };

  grid_inputs<float> in = f.inputs();
  in.grid = token_grid{0, 6, 4};
  expect(in, good, status::empty_input);
  in.grid = token_grid{2, 0, 4};
  expect(in, good, status::empty_input);
  CHECK(can_implement(p, problem{token_grid{2, 6, 0}, dim}) == status::empty_input);
  in.grid = token_grid{2, -6, 4};
  expect(in, good, status::shape_mismatch);
  CHECK(can_implement(p, problem{token_grid{-1, 6, 4}, dim}) == status::shape_mismatch);

  in = f.inputs();
  in.tokens = view<const float, 2>(nullptr, {n, dim});
  expect(in, good, status::null_pointer);
  grid_outputs<float> o = good;
  o.tokens = view<float, 2>(nullptr, {k, dim});
  expect(f.inputs(), o, status::null_pointer);
  o = good;
  o.source = view<std::int64_t, 1>(nullptr, {k});
  expect(f.inputs(), o, status::null_pointer);
  o = good;
  o.positions = view<std::int32_t, 2>(nullptr, {k, 3});
  expect(f.inputs(), o, status::null_pointer);
  o = good;
  o.sizes = view<float, 1>(nullptr, {k});
  expect(f.inputs(), o, status::null_pointer);

  in = f.inputs();
  in.tokens = make_view(f.rows.data(), n - 1, dim);
  expect(in, good, status::shape_mismatch);
  in.tokens = {};  // tokens requested but no input rows
  expect(in, good, status::shape_mismatch);
  in.tokens = make_view(f.rows.data(), n, index_t{0});
  o = good;
  o.tokens = make_view(f.out.tokens.storage.data(), k, index_t{0});
  expect(in, o, status::empty_input);
  o = good;
  o.tokens = make_view(f.out.tokens.storage.data(), k - 1, dim);
  expect(f.inputs(), o, status::shape_mismatch);
  o.tokens = make_view(f.out.tokens.storage.data(), k, dim - 1);
  expect(f.inputs(), o, status::shape_mismatch);
  o = good;
  o.source = make_view(f.out.source.data(), k - 1);
  expect(f.inputs(), o, status::shape_mismatch);
  o = good;
  o.positions = make_view(f.out.positions.data(), k, 2);
  expect(f.inputs(), o, status::shape_mismatch);
  o = good;
  o.sizes = make_view(f.out.sizes.data(), k + 1);
  expect(f.inputs(), o, status::shape_mismatch);

  std::vector<float> overlap(f.rows);  // (tokens, dim)
  const grid_inputs<float> shared{f.grid, make_view(overlap.data(), n, dim)};
  o = good;
  o.tokens = make_view(overlap.data() + dim, k, dim);  // inside the input rows
  expect(shared, o, status::aliasing);
  o = good;
  o.sizes = make_view(reinterpret_cast<float*>(f.out.source.data()), k);  // over source
  expect(f.inputs(), o, status::aliasing);
  o = good;
  o.positions = view<std::int32_t, 2>(reinterpret_cast<std::int32_t*>(f.out.tokens.storage.data()), {k, 3}, {3, 1});
  expect(f.inputs(), o, status::aliasing);  // positions over tokens
  CHECK(overlap == f.rows);

  CHECK(apply(cpu{0, 0}, p, f.inputs(), good) == status::invalid_exec);
  CHECK(apply(cpu{3, 3}, p, f.inputs(), good) == status::invalid_exec);
  CHECK(apply(cpu{-1, 2}, p, f.inputs(), good) == status::invalid_exec);
  CHECK(f.out.untouched());
}

/// A parameter outside the policy's domain: invalid_parameter everywhere, nothing written.
template <class Policy>
void check_invalid(const Policy& p) {
  const token_grid grid{2, 6, 4};
  bad_fixture<pool> f(pool{});  // valid outputs of 12 rows; the parameter check comes first
  CHECK(can_implement(p, problem{grid, 8}) == status::invalid_parameter);
  CHECK(retained_count(p, problem{grid, 8}) == 0);
  CHECK(output_grid(p, grid).tokens() == 0);
  CHECK(apply(cpu{}, p, f.inputs(), f.out.outputs()) == status::invalid_parameter);
  CHECK(f.out.untouched());
}

}  // namespace

TEST_CASE("grid reducers reject malformed grids, views, overlaps and shares", "[pool][bad_input]") {
  check_common_bad_input(pool{});
  check_common_bad_input(pool{pool_kind::max, {2, 3, 3}, {1, 2, 2}, {1, 1, 1}, true, false});
  check_common_bad_input(adaptive_pool{pool_kind::average, {1, 3, 3}});
  check_common_bad_input(bilinear{3, 2, false});
}

TEST_CASE("pooling parameters outside torch's domain", "[pool][bad_input]") {
  const auto with = [](extent3 kernel, extent3 stride, extent3 padding, bool ceil_mode = false) {
    return pool{pool_kind::average, kernel, stride, padding, ceil_mode, true};
  };
  check_invalid(with({1, 7, 1}, {1, 1, 1}, {0, 0, 0}));        // kernel larger than the input
  check_invalid(with({1, 9, 1}, {1, 1, 1}, {0, 1, 0}));        // … than the padded input
  check_invalid(with({1, 1, 5}, {1, 1, 2}, {0, 0, 0}, true));  // … even in ceil mode
  check_invalid(with({3, 1, 1}, {1, 1, 1}, {0, 0, 0}));        // 3 frames of 2
  check_invalid(with({1, 2, 2}, {1, 0, 2}, {0, 0, 0}));        // zero stride
  check_invalid(with({1, 2, 2}, {1, 2, -1}, {0, 0, 0}));       // negative stride
  check_invalid(with({0, 2, 2}, {1, 2, 2}, {0, 0, 0}));        // zero kernel
  check_invalid(with({1, -2, 2}, {1, 2, 2}, {0, 0, 0}));       // negative kernel
  check_invalid(with({1, 2, 2}, {1, 2, 2}, {0, 2, 0}));        // padding above kernel / 2
  check_invalid(with({1, 3, 3}, {1, 2, 2}, {0, 0, 2}));        // padding 2 of kernel 3
  check_invalid(with({1, 2, 2}, {1, 2, 2}, {-1, 0, 0}));       // negative padding
}

TEST_CASE("adaptive and bilinear target sizes below 1", "[pool][bad_input]") {
  check_invalid(adaptive_pool{pool_kind::average, {0, 3, 3}});
  check_invalid(adaptive_pool{pool_kind::max, {1, 3, -2}});
  check_invalid(bilinear{0, 4, false});
  check_invalid(bilinear{4, -1, true});
}

TEST_CASE("adaptive and bilinear targets whose token count overflows index_t", "[pool][bad_input]") {
  const index_t big = std::numeric_limits<index_t>::max() / 2;
  check_invalid(adaptive_pool{pool_kind::max, {199999999996, 12199999999996, 12}});
  check_invalid(adaptive_pool{pool_kind::average, {1, big, 3}});
  check_invalid(bilinear{big, 3, false});
  // The largest countable target is accepted by the shape rule (it is never run here).
  CHECK(detail::reduced_grid(adaptive_pool{pool_kind::average, {1, big, 2}}, image_grid(4, 4)).code == status::ok);
}

// ---------------------------------------------------------------------------------------------
// The examples on the policy pages (docs/policies/pool.md, adaptive_pool.md, bilinear.md).

TEST_CASE("documentation examples", "[pool][docs]") {
  std::vector<float> frames(static_cast<std::size_t>(2 * 27 * 27 * 16));  // (tokens, dim)
  for (std::size_t i = 0; i < frames.size(); ++i) frames[i] = static_cast<float>(i % 97) / 8.0f;
  {
    // example-begin pool
    // LLaVA-OneVision's "average" mode: 2 frames of 27 x 27 tokens, 2 x 2 mean -> 13 x 13.
    const tokred::problem prob{tokred::token_grid{2, 27, 27}, 16};  // dim 16
    const tokred::pool policy{};                                     // the defaults are get_2dPool's
    const tokred::index_t k = tokred::retained_count(policy, prob);  // 2 · 13 · 13 = 338

    std::vector<float> pooled(k * 16);          // (kept, dim)
    std::vector<std::int64_t> source(k);        // (kept,) window middles
    const tokred::grid_inputs<float> in{prob.grid, tokred::make_view(frames.data(), prob.grid.tokens(), 16)};
    const tokred::grid_outputs<float> out{tokred::make_view(pooled.data(), k, 16),
                                          tokred::make_view(source.data(), k), {}, {}};
    const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out);  // no workspace needed
    // example-end pool
    REQUIRE(s == status::ok);
    CHECK(k == 338);
    CHECK(source[1] == 2);
    CHECK(pooled[0] == (frames[0] + frames[16] + frames[27 * 16] + frames[28 * 16]) / 4.0f);
  }
  {
    // example-begin pool-max-3d
    // 3-D max pooling over 2 frames and 2 x 2 patches, with torch's ceil mode.
    const tokred::pool max3d{tokred::pool_kind::max, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, /*ceil_mode=*/true};
    const tokred::token_grid g = tokred::output_grid(max3d, tokred::token_grid{2, 27, 27});  // {1, 14, 14}
    // example-end pool-max-3d
    CHECK(g.frames == 1);
    CHECK(g.height == 14);
    CHECK(g.width == 14);
  }
  {
    // example-begin adaptive
    // PLLaVA's AdaptiveAvgPool3d((16, 12, 12)) on 16 frames of 24 x 24 tokens (here dim 8).
    const tokred::token_grid video{16, 24, 24};
    const tokred::adaptive_pool pllava{tokred::pool_kind::average, {16, 12, 12}};
    const tokred::index_t k = tokred::retained_count(pllava, tokred::problem{video, 8});  // 2304

    std::vector<float> clip(video.tokens() * 8, 0.5f);  // (tokens, dim)
    std::vector<float> pooled(k * 8);                   // (kept, dim)
    std::vector<float> sizes(k);                        // (kept,) tokens per bin: 4
    const tokred::status s = tokred::apply(
        tokred::cpu{}, pllava, tokred::grid_inputs<float>{video, tokred::make_view(clip.data(), video.tokens(), 8)},
        tokred::grid_outputs<float>{tokred::make_view(pooled.data(), k, 8), {}, {}, tokred::make_view(sizes.data(), k)});
    // example-end adaptive
    REQUIRE(s == status::ok);
    CHECK(k == 2304);
    CHECK(sizes[0] == 4.0f);
    CHECK(pooled[0] == 0.5f);
  }
  {
    // example-begin adaptive-slowfast
    // SlowFast-LLaVA's fast path: AdaptiveAvgPool2d((4, 4)) on every frame = adaptive
    // pooling that keeps all T frames.
    const tokred::adaptive_pool fast{tokred::pool_kind::average, {50, 4, 4}};  // 50 frames of 24 x 24
    const tokred::index_t k = tokred::retained_count(fast, tokred::problem{{50, 24, 24}, 4096});  // 800
    // example-end adaptive-slowfast
    CHECK(k == 800);
  }
  {
    // example-begin bilinear
    // LLaVA-OneVision's default "bilinear" mode: each 27 x 27 frame to ceil(27 / 2) = 14 per side.
    const tokred::token_grid grid{2, 27, 27};
    const tokred::bilinear policy{(grid.height + 1) / 2, (grid.width + 1) / 2};  // align_corners = false
    const tokred::index_t k = tokred::retained_count(policy, tokred::problem{grid, 16});  // 392

    std::vector<tokred::bf16> resized(k * 16);  // (kept, dim), converted from the fp32 input
    std::vector<std::int32_t> positions(k * 3);  // (kept, 3) the nearest tap's (t, h, w)
    const tokred::status s = tokred::apply(
        tokred::cpu{}, policy, tokred::grid_inputs<float>{grid, tokred::make_view(frames.data(), grid.tokens(), 16)},
        tokred::grid_outputs<tokred::bf16>{tokred::make_view(resized.data(), k, 16), {},
                                           tokred::make_view(positions.data(), k, 3), {}});
    // example-end bilinear
    REQUIRE(s == status::ok);
    CHECK(k == 392);
    CHECK(positions[3 * 1 + 2] == 2);
  }
}
