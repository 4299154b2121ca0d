// tests/cpu/test_dct.cpp — the CPU backend of dct_lowpass: Fourier-VLM's recorded outputs, the
// double-precision oracle on the shared case table (every element type, axis set, output, keep
// and thread split, both engines), the transform's properties, bad input, non-finite values and
// the absence of allocations.

// The Eigen engine is compiled in, and every allocation Eigen makes asserts while the test
// forbids it (Eigen's own check).
#define TOKRED_DCT_EIGEN
#define EIGEN_RUNTIME_NO_MALLOC
// The counting operator new/delete below are paired with malloc/free, which g++ 12 reports as
// "mismatched" at every delete in this file.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <new>
#include <sstream>
#include <string>
#include <vector>

#include <tokred/cpu/dct.hpp>

#include "io/npy.hpp"
#include "reference/dct_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {
std::atomic<long> allocations{0};
}

void* operator new(std::size_t size) {
  ++allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  ++allocations;
  return std::malloc(size ? size : 1);
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace tokred;
using namespace tokred::testing;
using detail::dct_engine;

/// Runs `p` as `nth` shares (in reverse order: the shares are independent) with one engine.
template <dct_engine Engine, class Ein, class Eout>
status run_dct(const dct_lowpass& p, const grid_inputs<Ein>& in, const grid_outputs<Eout>& out,
               int nth) {
  using impl = detail::cpu_dct<compile_time_arch, Engine>;
  const problem prob{in.grid, in.tokens.extent(1)};
  host_workspace ws(impl::workspace_bytes(cpu{0, nth}, p, prob));
  status result = status::ok;
  for (int ith = nth - 1; ith >= 0; --ith)
    if (const status s = impl::apply(cpu{ith, nth}, p, in, out, ws.get()); s != status::ok)
      result = s;
  return result;
}

/// Lexicographically ordered bit pattern of a 16-bit float: neighbours differ by 1.
std::int32_t ordered16(std::uint16_t bits) {
  return (bits & 0x8000u) ? -static_cast<std::int32_t>(bits & 0x7FFFu) : static_cast<std::int32_t>(bits);
}

/// Largest |value| of the oracle's result (the scale of the fp32 tolerance).
double magnitude(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

/// How far `got` is from the oracle, as a pass/fail per element: fp32 within 1e-5 of the
/// result's largest magnitude; fp16/bf16 within 1 ulp of the oracle rounded to the storage
/// type, or (for values that small) within the fp32 tolerance.
template <class E>
std::size_t count_mismatches(const std::vector<E>& got, const std::vector<double>& want) {
  const double tol = 1e-5 * std::max(magnitude(want), 1e-30);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = to_float(got[i]);
    bool ok = std::abs(g - want[i]) <= tol;
    if constexpr (!std::is_same_v<E, float>) {
      const E w = from_float<E>(static_cast<float>(want[i]));
      ok = ok || std::abs(ordered16(got[i].bits) - ordered16(w.bits)) <= 1;
    }
    bad += !ok;
  }
  return bad;
}

/// The keeps every oracle test runs per transformed axis: all, Fourier-VLM's 2/3, half, one.
std::vector<index_t> keeps_of(index_t n) {
  std::vector<index_t> k = {n, std::max<index_t>(n * 2 / 3, 1), std::max<index_t>(n / 2, 1), 1};
  std::sort(k.begin(), k.end());
  k.erase(std::unique(k.begin(), k.end()), k.end());
  return k;
}

dct_lowpass policy_for(const token_grid& g, dct_axes axes, dct_output produce, int keep_rule) {
  const auto pick = [&](index_t n, bool transformed) {
    if (!transformed) return n;
    const std::vector<index_t> k = keeps_of(n);
    return k[std::min<std::size_t>(static_cast<std::size_t>(keep_rule), k.size() - 1)];
  };
  const bool spatial = axes != dct_axes::temporal, temporal = axes != dct_axes::spatial;
  return {{pick(g.frames, temporal), pick(g.height, spatial), pick(g.width, spatial)}, axes, produce};
}

/// One policy on one case: every nth against the oracle, and bit-identical across nth.
template <dct_engine Engine, class Ein, class Eout>
void check_against_oracle(const dct_lowpass& p, const shape_case& c, const std::vector<int>& nths) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> tokens =
      make_tokens<Ein>(n, c.dim, c.rows, 17 + static_cast<std::uint64_t>(n));  // (tokens, dim)
  const token_grid out_grid = output_grid(p, c.grid);
  const index_t kept = out_grid.tokens();
  REQUIRE(kept > 0);
  const std::vector<double> want =
      ref::dct_lowpass(p, c.grid, view<const Ein, 2>(tokens.rows));  // (kept, dim)
  REQUIRE(want.size() == static_cast<std::size_t>(kept * c.dim));
  std::vector<std::uint32_t> first;
  for (int nth : nths) {
    CAPTURE(nth);
    grid_buffers<Eout> got(kept, c.dim);
    REQUIRE(run_dct<Engine>(p, grid_inputs<Ein>{c.grid, tokens.rows}, got.outputs(), nth) == status::ok);
    CHECK(count_mismatches(got.tokens, want) == 0);
    for (index_t j = 0; j < kept; ++j) {
      const std::int64_t s = ref::dct_source(c.grid, out_grid, j);
      const token_position at = c.grid.position(s);
      REQUIRE(got.source[static_cast<std::size_t>(j)] == s);
      REQUIRE(got.positions[static_cast<std::size_t>(3 * j)] == at.t);
      REQUIRE(got.positions[static_cast<std::size_t>(3 * j + 1)] == at.h);
      REQUIRE(got.positions[static_cast<std::size_t>(3 * j + 2)] == at.w);
      REQUIRE(got.sizes[static_cast<std::size_t>(j)] ==
              static_cast<float>(c.grid.tokens()) / static_cast<float>(kept));
    }
    std::vector<std::uint32_t> bits;
    for (const Eout& x : got.tokens) bits.push_back(bits_of(x));
    if (first.empty()) first = bits;
    else CHECK(bits == first);
  }
}

template <dct_engine Engine, class Ein, class Eout>
void check_every_policy(const shape_case& c, const std::vector<int>& nths) {
  for (dct_axes axes : {dct_axes::spatial, dct_axes::temporal, dct_axes::spatiotemporal})
    for (dct_output produce : {dct_output::resampled, dct_output::coefficients})
      for (int rule = 0; rule < 4; ++rule) {
        const dct_lowpass p = policy_for(c.grid, axes, produce, rule);
        CAPTURE(c.name, static_cast<int>(axes), static_cast<int>(produce), p.keep.t, p.keep.h, p.keep.w);
        check_against_oracle<Engine, Ein, Eout>(p, c, nths);
      }
}

}  // namespace

TEMPLATE_TEST_CASE("dct_lowpass matches the double oracle on every case", "[dct]", float, f16, bf16) {
  for (const shape_case& c : shape_cases())
    check_every_policy<dct_engine::kernel, TestType, TestType>(c, {1, 2, 3, 4});
}

TEMPLATE_TEST_CASE("dct_lowpass converts between element types", "[dct]", float, f16, bf16) {
  for (const shape_case& c : shape_cases()) {
    check_every_policy<dct_engine::kernel, TestType, float>(c, {1, 3});
    check_every_policy<dct_engine::kernel, float, TestType>(c, {2});
  }
}

TEMPLATE_TEST_CASE("rows wider than a work unit's channel chunk", "[dct]", float, f16, bf16) {
  // The shared cases are at most 64 wide: one chunk (64 to 256 channels). These split into
  // full chunks and a tail.
  const std::vector<shape_case> wide = {
      {"wide_12x10", image_grid(12, 10), 600, layout::contiguous},
      {"wide_strided_video_3x6x5", token_grid{3, 6, 5}, 291, layout::strided},
      {"wide_reversed_5x7", image_grid(5, 7), 530, layout::reversed},
  };
  for (const shape_case& c : wide) {
    check_every_policy<dct_engine::kernel, TestType, TestType>(c, {1, 3});
    check_every_policy<dct_engine::kernel, TestType, float>(c, {2});
  }
  check_every_policy<dct_engine::eigen, TestType, TestType>(wide[1], {1, 2});
}

TEST_CASE("the Eigen engine matches the oracle too", "[dct][eigen]") {
  for (const shape_case& c : shape_cases()) {
    check_every_policy<dct_engine::eigen, float, float>(c, {1, 3});
    check_every_policy<dct_engine::eigen, bf16, bf16>(c, {2});
  }
}

TEST_CASE("dct_lowpass_for_ratio is Fourier-VLM's max(int(side * 2/3), 1)", "[dct]") {
  // Python: [max(int(s * (2 / 3)), 1) for s in range(1, 70)]
  const index_t expected[69] = {1,  1,  2,  2,  3,  4,  4,  5,  6,  6,  7,  8,  8,  9,  10, 10, 11, 12,
                                12, 13, 14, 14, 15, 16, 16, 17, 18, 18, 19, 20, 20, 21, 22, 22, 23, 24,
                                24, 25, 26, 26, 27, 28, 28, 29, 30, 30, 31, 32, 32, 33, 34, 34, 35, 36,
                                36, 37, 38, 38, 39, 40, 40, 41, 42, 42, 43, 44, 44, 45, 46};
  for (index_t side = 1; side < 69; ++side) {
    const dct_lowpass p = dct_lowpass_for_ratio(token_grid{3, side, side + 1});
    CHECK(p.keep.t == 3);
    CHECK(p.keep.h == expected[side - 1]);
    CHECK(p.keep.w == expected[side]);
    CHECK(p.axes == dct_axes::spatial);
    CHECK(p.produce == dct_output::resampled);
  }
  CHECK(dct_lowpass_for_ratio(image_grid(24, 24), 0.5).keep.h == 12);
}

// --- Fourier-VLM's recorded outputs ---------------------------------------------------------------

namespace {

/// A float32 .npy array in C order. Two of the recorded files are Fortran-ordered (NumPy saved a
/// transposed view as it lay), which io::read_npy refuses; this reads both orders.
struct f4_array {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

f4_array load_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  char magic[8];
  REQUIRE(f.read(magic, 8));
  unsigned char len[4] = {0, 0, 0, 0};
  REQUIRE(f.read(reinterpret_cast<char*>(len), magic[6] == 1 ? 2 : 4));
  std::string header(static_cast<std::size_t>(len[0] | (len[1] << 8) | (len[2] << 16) | (len[3] << 24)), '\0');
  REQUIRE(f.read(header.data(), static_cast<std::streamsize>(header.size())));
  REQUIRE(io::detail::header_value(header, "descr") == "<f4");
  const bool fortran = io::detail::header_value(header, "fortran_order") == "True";
  f4_array a;
  std::stringstream dims(io::detail::header_value(header, "shape"));
  for (std::string item; std::getline(dims, item, ',');)
    if (item.find_first_of("0123456789") != std::string::npos) a.shape.push_back(std::stoll(item));
  std::int64_t count = 1;
  for (std::int64_t e : a.shape) count *= e;
  std::vector<float> raw(static_cast<std::size_t>(count));
  REQUIRE(f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(count * 4)));
  if (!fortran) {
    a.values = raw;
    return a;
  }
  a.values.resize(raw.size());
  for (std::int64_t i = 0; i < count; ++i) {  // C index i -> its Fortran index
    std::int64_t rest = i, at = 0, stride = 1;
    std::vector<std::int64_t> index(a.shape.size());
    for (std::size_t r = a.shape.size(); r-- > 0;) {
      index[r] = rest % a.shape[r];
      rest /= a.shape[r];
    }
    for (std::size_t r = 0; r < a.shape.size(); ++r) {
      at += index[r] * stride;
      stride *= a.shape[r];
    }
    a.values[static_cast<std::size_t>(i)] = raw[static_cast<std::size_t>(at)];
  }
  return a;
}

}  // namespace

TEST_CASE("Fourier-VLM compress(): 24 x 24 -> 12 x 12, C = 64, fp16", "[dct][golden]") {
  const std::string dir = std::string(TOKRED_TEST_DATA_DIR) + "/golden/dct_lowpass/g24to12_fp16/";
  const f4_array input = load_npy(dir + "input.npy");          // (T, H·W, C)
  const f4_array tokens16 = load_npy(dir + "tokens.npy");      // (T, h·w, C), fp16 values
  const f4_array tokens32 = load_npy(dir + "tokens_fp32.npy");  // (T, h·w, C) before the cast
  const f4_array coeffs = load_npy(dir + "coeffs.npy");        // (T, C, h, w)
  const token_grid grid{1, 24, 24};
  const index_t n = 576, dim = 64, kept = 144;
  REQUIRE(input.shape == std::vector<std::int64_t>{1, n, dim});
  REQUIRE(coeffs.shape == std::vector<std::int64_t>{1, dim, 12, 12});

  const std::vector<float> x32 = input.values;  // (tokens, dim)
  std::vector<f16> x16;                         // (tokens, dim)
  for (float v : x32) x16.push_back(from_float<f16>(v));
  for (float v : x32) REQUIRE(to_float(from_float<f16>(v)) == v);  // exactly fp16 values
  const dct_lowpass p{{1, 12, 12}};  // spatial, resampled: compress(features, 24, 24, 12, 12)
  CHECK(retained_count(p, problem{grid, dim}) == kept);
  const grid_inputs<f16> in{grid, make_view<const f16>(x16.data(), n, dim)};  // (tokens, dim)

  SECTION("fp32 result against upstream's fp32 result") {
    grid_buffers<float> out(kept, dim);
    host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
    REQUIRE(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::ok);
    const std::vector<float> want = tokens32.values;  // (kept, dim)
    double worst = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i)
      worst = worse(worst, std::abs(static_cast<double>(out.tokens[i]) - want[i]));
    CHECK(worst <= 1e-5);  // README: 1e-4; upstream itself is 4.6e-6 from float64 SciPy
    const std::vector<double> exact = ref::dct_lowpass(p, grid, in.tokens);  // what SciPy computes
    double error = 0.0;
    for (std::size_t i = 0; i < exact.size(); ++i)
      error = std::max(error, std::abs(static_cast<double>(out.tokens[i]) - exact[i]));
    CHECK(error <= 3e-6);  // measured 2.1e-6; upstream fp32 is 4.6e-6 from it
  }
  SECTION("fp16 result against upstream's fp16 result, within 1 ulp") {
    grid_buffers<f16> out(kept, dim);
    host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
    REQUIRE(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::ok);
    const std::vector<float> want = tokens16.values;  // (kept, dim)
    std::size_t off_by_one = 0, worse = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const int d = std::abs(ordered16(out.tokens[i].bits) - ordered16(from_float<f16>(want[i]).bits));
      off_by_one += d == 1;
      worse += d > 1;
    }
    CHECK(worse == 0);
    CHECK(off_by_one <= want.size() / 100);  // fp32 results straddle a rounding boundary rarely
  }
  SECTION("coefficients against SciPy's dctn, channel-major (T, C, h, w)") {
    grid_buffers<float> out(kept, dim);
    const dct_lowpass q{{1, 12, 12}, dct_axes::spatial, dct_output::coefficients};
    host_workspace ws(workspace_bytes(cpu{}, q, problem{grid, dim}));
    REQUIRE(apply(cpu{}, q, in, out.outputs(), ws.get()) == status::ok);
    const std::vector<float> want = coeffs.values;  // (dim, kept)
    double worst = 0.0;
    for (index_t c = 0; c < dim; ++c)
      for (index_t j = 0; j < kept; ++j)
        worst = worse(worst, std::abs(static_cast<double>(out.tokens[static_cast<std::size_t>(j * dim + c)]) -
                                         want[static_cast<std::size_t>(c * kept + j)]));
    CHECK(worst <= 1e-5);  // README: 1e-4
  }
}

// --- properties -------------------------------------------------------------------------------------

TEST_CASE("full-size coefficients preserve each channel's energy (Parseval)", "[dct]") {
  const token_grid grid{4, 7, 6};
  const index_t n = grid.tokens(), dim = 5;
  const token_matrix<float> x = make_tokens<float>(n, dim, layout::contiguous, 3);  // (tokens, dim)
  const dct_lowpass p{{4, 7, 6}, dct_axes::spatiotemporal, dct_output::coefficients};
  grid_buffers<float> out(n, dim);
  REQUIRE(run_dct<dct_engine::kernel>(p, grid_inputs<float>{grid, x.rows}, out.outputs(), 2) == status::ok);
  for (index_t c = 0; c < dim; ++c) {
    double before = 0.0, after = 0.0;
    for (index_t i = 0; i < n; ++i) {
      before += static_cast<double>(x.rows(i, c)) * x.rows(i, c);
      after += static_cast<double>(out.tokens[static_cast<std::size_t>(i * dim + c)]) * out.tokens[static_cast<std::size_t>(i * dim + c)];
    }
    CHECK(std::abs(after - before) <= 1e-5 * before);
  }
}

TEST_CASE("a grid band-limited to the kept block comes back as gain x its samples", "[dct]") {
  // x = the inverse DCT of a random 9 x 8 block on a 27 x 24 grid. Resampled to 9 x 8, output
  // (i, j) is x at the centre of its 3 x 3 stretch, (3i + 1, 3j + 1) = the `source` token,
  // times √(27·24 / (9·8)) = 3: the orthonormal bases of both sizes agree there up to √(n/k).
  const token_grid grid = image_grid(27, 24);
  const index_t kh = 9, kw = 8, dim = 3;
  rng r(99);
  std::vector<double> block(static_cast<std::size_t>(kh * kw * dim));  // (kh, kw, dim) coefficients
  for (double& b : block) b = r.uniform();
  std::vector<float> x(static_cast<std::size_t>(grid.tokens() * dim));  // (tokens, dim)
  for (index_t h = 0; h < 27; ++h)
    for (index_t w = 0; w < 24; ++w)
      for (index_t c = 0; c < dim; ++c) {
        double v = 0.0;
        for (index_t k = 0; k < kh; ++k)
          for (index_t l = 0; l < kw; ++l)
            v += block[static_cast<std::size_t>((k * kw + l) * dim + c)] * ref::dct_basis(27, k, h) * ref::dct_basis(24, l, w);
        x[static_cast<std::size_t>((h * 24 + w) * dim + c)] = static_cast<float>(v);
      }
  const dct_lowpass p{{1, kh, kw}};
  grid_buffers<float> out(kh * kw, dim);
  REQUIRE(run_dct<dct_engine::kernel>(p, grid_inputs<float>{grid, make_view<const float>(x.data(), grid.tokens(), dim)},
                                      out.outputs(), 1) == status::ok);
  double worst = 0.0, scale = 0.0;
  for (index_t j = 0; j < kh * kw; ++j)
    for (index_t c = 0; c < dim; ++c) {
      const double want = 3.0 * x[static_cast<std::size_t>(out.source[static_cast<std::size_t>(j)] * dim + c)];
      worst = worse(worst, std::abs(out.tokens[static_cast<std::size_t>(j * dim + c)] - want));
      scale = std::max(scale, std::abs(want));
    }
  CHECK(worst <= 1e-5 * scale);
  CHECK(out.source[0] == 1 * 24 + 1);
}

TEST_CASE("a constant c comes back as c·√(N/N'): 2c for 24 x 24 -> 12 x 12", "[dct]") {
  struct gain_case { token_grid grid; dct_lowpass p; double gain; };
  const gain_case cases[] = {
      {image_grid(24, 24), dct_lowpass{{1, 12, 12}}, 2.0},
      {image_grid(27, 27), dct_lowpass_for_ratio(image_grid(27, 27)), 1.5},
      {token_grid{8, 14, 14}, dct_lowpass{{4, 7, 7}, dct_axes::spatiotemporal}, std::sqrt(8.0)},
      {token_grid{6, 5, 5}, dct_lowpass{{3, 5, 5}, dct_axes::temporal}, std::sqrt(2.0)},
  };
  for (const gain_case& g : cases) {
    const index_t n = g.grid.tokens(), dim = 19, kept = output_grid(g.p, g.grid).tokens();
    std::vector<float> x(static_cast<std::size_t>(n * dim), 1.25f);  // (tokens, dim)
    grid_buffers<float> out(kept, dim);
    REQUIRE(run_dct<dct_engine::kernel>(g.p, grid_inputs<float>{g.grid, make_view<const float>(x.data(), n, dim)},
                                        out.outputs(), 3) == status::ok);
    for (float y : out.tokens) REQUIRE(std::abs(y - 1.25 * g.gain) <= 1e-5 * 1.25 * g.gain);
  }
}

TEST_CASE("a constant's coefficients are c·√N at DC and 0 elsewhere", "[dct]") {
  const token_grid grid{2, 9, 10};
  const index_t n = grid.tokens(), dim = 4;
  std::vector<float> x(static_cast<std::size_t>(n * dim), -0.5f);  // (tokens, dim)
  const dct_lowpass p{{2, 6, 7}, dct_axes::spatiotemporal, dct_output::coefficients};
  grid_buffers<float> out(2 * 6 * 7, dim);
  REQUIRE(run_dct<dct_engine::kernel>(p, grid_inputs<float>{grid, make_view<const float>(x.data(), n, dim)},
                                      out.outputs(), 1) == status::ok);
  const double dc = -0.5 * std::sqrt(static_cast<double>(n));
  for (index_t c = 0; c < dim; ++c) CHECK(std::abs(out.tokens[static_cast<std::size_t>(c)] - dc) <= 1e-5 * std::abs(dc));
  for (std::size_t i = static_cast<std::size_t>(dim); i < out.tokens.size(); ++i) CHECK(std::abs(out.tokens[i]) <= 1e-5 * std::abs(dc));
}

TEST_CASE("NaN and inf spread along the transformed lines, never further", "[dct]") {
  const token_grid grid{2, 6, 5};
  const index_t n = grid.tokens(), dim = 9;
  token_matrix<float> x = make_tokens<float>(n, dim, layout::contiguous, 8);  // (tokens, dim)
  x.rows(7, 2) = std::numeric_limits<float>::quiet_NaN();      // frame 0, channel 2
  x.rows(30 + 11, 5) = std::numeric_limits<float>::infinity();  // frame 1, channel 5
  const dct_lowpass p{{2, 4, 3}};
  grid_buffers<float> out(24, dim);
  REQUIRE(run_dct<dct_engine::kernel>(p, grid_inputs<float>{grid, x.rows}, out.outputs(), 2) == status::ok);
  for (index_t j = 0; j < 24; ++j)
    for (index_t c = 0; c < dim; ++c) {
      const float y = out.tokens[static_cast<std::size_t>(j * dim + c)];
      const bool poisoned = (j < 12 && c == 2) || (j >= 12 && c == 5);
      CAPTURE(j, c, y);
      CHECK(std::isfinite(y) != poisoned);
    }
}

TEST_CASE("keeping everything is the identity when resampling", "[dct]") {
  // No pass runs for an axis resampled at full size: the rows come back exactly.
  const token_grid grid{3, 4, 5};
  const token_matrix<bf16> x = make_tokens<bf16>(60, 7, layout::reversed, 2);  // (tokens, dim)
  for (dct_axes axes : {dct_axes::spatial, dct_axes::temporal, dct_axes::spatiotemporal}) {
    grid_buffers<bf16> out(60, 7);
    REQUIRE(run_dct<dct_engine::kernel>(dct_lowpass{{3, 4, 5}, axes}, grid_inputs<bf16>{grid, x.rows},
                                        out.outputs(), 2) == status::ok);
    for (index_t i = 0; i < 60; ++i)
      for (index_t c = 0; c < 7; ++c) REQUIRE(out.tokens[static_cast<std::size_t>(i * 7 + c)].bits == x.rows(i, c).bits);
  }
}

// --- bad input ----------------------------------------------------------------------------------------

namespace {

/// A valid 2 x 6 x 4 problem (dim 8, spatial keep 4 x 3) that each section breaks in one way.
struct bad_fixture {
  static constexpr index_t n = 48, dim = 8, kept = 24;
  token_grid grid{2, 6, 4};
  std::vector<float> rows = std::vector<float>(n * dim, 2.0f);  // (tokens, dim)
  grid_buffers<float> out{kept, dim};
  dct_lowpass policy{{2, 4, 3}};
  host_workspace ws{workspace_bytes(cpu{}, policy, problem{grid, dim})};

  grid_inputs<float> inputs() const { return {grid, make_view(rows.data(), n, dim)}; }
  status run(const dct_lowpass& p) { return apply(cpu{}, p, inputs(), out.outputs(), ws.get()); }
};

}  // namespace

TEST_CASE("dct_lowpass rejects bad input with its status and writes nothing", "[dct][bad_input]") {
  bad_fixture f;
  SECTION("the fixture itself is valid") {
    REQUIRE(f.run(f.policy) == status::ok);
    CHECK_FALSE(f.out.untouched());
    return;
  }
  SECTION("keep larger than the axis") {
    CHECK(f.run(dct_lowpass{{2, 7, 3}}) == status::invalid_parameter);
    CHECK(can_implement(dct_lowpass{{2, 4, 5}}, problem{f.grid, 8}) == status::invalid_parameter);
    CHECK(retained_count(dct_lowpass{{2, 4, 5}}, problem{f.grid, 8}) == 0);
  }
  SECTION("keep 0") { CHECK(f.run(dct_lowpass{{2, 0, 3}}) == status::invalid_parameter); }
  SECTION("a reduced axis that is not transformed") {
    CHECK(f.run(dct_lowpass{{1, 4, 3}}) == status::invalid_parameter);  // spatial: T must stay 2
    CHECK(f.run(dct_lowpass{{1, 4, 3}, dct_axes::temporal}) == status::invalid_parameter);
  }
  SECTION("an empty grid") {
    f.grid = token_grid{0, 6, 4};
    CHECK(f.run(dct_lowpass{{0, 4, 3}}) == status::empty_input);
    CHECK(workspace_bytes(cpu{}, dct_lowpass{{0, 4, 3}}, problem{f.grid, 8}) == 0);
  }
  SECTION("a negative grid extent") {
    f.grid = token_grid{2, -6, 4};
    CHECK(f.run(f.policy) == status::shape_mismatch);
  }
  SECTION("workspace too small") {
    workspace ws = f.ws.get();
    ws.bytes -= 1;
    CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), ws) == status::workspace_too_small);
  }
  SECTION("no workspace") {
    CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), workspace{}) == status::workspace_too_small);
    CHECK(apply(cpu{}, f.policy, f.inputs(), f.out.outputs(), workspace{nullptr, f.ws.bytes.size()}) ==
          status::null_pointer);
  }
  SECTION("a null output or input") {
    grid_outputs<float> o = f.out.outputs();
    o.tokens = view<float, 2>(nullptr, {bad_fixture::kept, bad_fixture::dim});
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::null_pointer);
    const grid_inputs<float> in{f.grid, view<const float, 2>(nullptr, {bad_fixture::n, bad_fixture::dim})};
    CHECK(apply(cpu{}, f.policy, in, f.out.outputs(), f.ws.get()) == status::null_pointer);
  }
  SECTION("mismatched shapes") {
    grid_outputs<float> o = f.out.outputs();
    o.tokens = make_view(f.out.tokens.data(), bad_fixture::kept - 1, bad_fixture::dim);
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::shape_mismatch);
    o = f.out.outputs();
    o.tokens = make_view(f.out.tokens.data(), bad_fixture::kept, bad_fixture::dim - 1);
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::shape_mismatch);
    o = f.out.outputs();
    o.positions = make_view(f.out.positions.data(), bad_fixture::kept, 2);
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::shape_mismatch);
    const grid_inputs<float> in{f.grid, make_view(f.rows.data(), bad_fixture::n - 1, bad_fixture::dim)};
    CHECK(apply(cpu{}, f.policy, in, f.out.outputs(), f.ws.get()) == status::shape_mismatch);
  }
  SECTION("zero-width rows") {
    const grid_inputs<float> in{f.grid, make_view(f.rows.data(), bad_fixture::n, 0)};
    grid_outputs<float> o = f.out.outputs();
    o.tokens = make_view(f.out.tokens.data(), bad_fixture::kept, 0);
    CHECK(apply(cpu{}, f.policy, in, o, f.ws.get()) == status::empty_input);
  }
  SECTION("outputs overlapping the input or each other") {
    grid_outputs<float> o = f.out.outputs();
    o.tokens = make_view(f.rows.data() + 8, bad_fixture::kept, bad_fixture::dim);
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::aliasing);
    o = f.out.outputs();
    o.sizes = make_view(reinterpret_cast<float*>(f.out.tokens.data()) + 3, bad_fixture::kept);
    CHECK(apply(cpu{}, f.policy, f.inputs(), o, f.ws.get()) == status::aliasing);
  }
  SECTION("a malformed share") {
    CHECK(apply(cpu{2, 2}, f.policy, f.inputs(), f.out.outputs(), f.ws.get()) == status::invalid_exec);
    CHECK(apply(cpu{0, 0}, f.policy, f.inputs(), f.out.outputs(), f.ws.get()) == status::invalid_exec);
  }
  CHECK(f.out.untouched());
}

TEST_CASE("positions and sizes alone need no workspace", "[dct]") {
  const token_grid grid{1, 24, 24};
  std::vector<std::int64_t> source(144);  // (kept,)
  std::vector<float> sizes(144);          // (kept,)
  const grid_outputs<float> out{{}, make_view(source.data(), 144), {}, make_view(sizes.data(), 144)};
  REQUIRE(apply(cpu{}, dct_lowpass{{1, 12, 12}}, grid_inputs<float>{grid, {}}, out) == status::ok);
  CHECK(source[0] == 24 + 1);    // centre of rows 0-1 and columns 0-1: (1, 1)
  CHECK(source[13] == 3 * 24 + 3);
  CHECK(sizes[5] == 4.0f);
}

// --- no allocation -------------------------------------------------------------------------------------

namespace {

template <dct_engine Engine, class E>
long allocations_during_apply(const dct_lowpass& p, const token_grid& grid, index_t dim) {
  using impl = detail::cpu_dct<compile_time_arch, Engine>;
  const index_t n = grid.tokens(), kept = output_grid(p, grid).tokens();
  const token_matrix<E> x = make_tokens<E>(n, dim, layout::strided, 4);  // (tokens, dim)
  grid_buffers<E> out(kept, dim);
  host_workspace ws(impl::workspace_bytes(cpu{0, 2}, p, problem{grid, dim}));
  const grid_inputs<E> in{grid, x.rows};
  const grid_outputs<E> views = out.outputs();
  Eigen::internal::set_is_malloc_allowed(false);
  const long before = allocations.load();
  const status s0 = impl::apply(cpu{0, 2}, p, in, views, ws.get());
  const status s1 = impl::apply(cpu{1, 2}, p, in, views, ws.get());
  const long during = allocations.load() - before;
  Eigen::internal::set_is_malloc_allowed(true);
  REQUIRE(s0 == status::ok);
  REQUIRE(s1 == status::ok);
  return during;
}

}  // namespace

TEMPLATE_TEST_CASE("dct_lowpass never allocates, on either engine", "[dct][allocation]", float, f16, bf16) {
  const long before = allocations.load();
  { std::vector<int> probe(10); (void)probe; }
  REQUIRE(allocations.load() > before);  // the counter works

  const token_grid image = image_grid(64, 64), video{5, 24, 24};
  for (const dct_lowpass& p : {dct_lowpass{{1, 42, 42}}, dct_lowpass{{1, 64, 64}, dct_axes::spatial, dct_output::coefficients}}) {
    CHECK(allocations_during_apply<dct_engine::kernel, TestType>(p, image, 300) == 0);
    CHECK(allocations_during_apply<dct_engine::eigen, TestType>(p, image, 300) == 0);
  }
  const dct_lowpass v{{3, 16, 16}, dct_axes::spatiotemporal};
  CHECK(allocations_during_apply<dct_engine::kernel, TestType>(v, video, 130) == 0);
  CHECK(allocations_during_apply<dct_engine::eigen, TestType>(v, video, 130) == 0);
  // Eigen's promise holds up to 128 tokens per axis (detail::eigen_columns).
  const dct_lowpass big{{1, 80, 70}};
  CHECK(allocations_during_apply<dct_engine::kernel, TestType>(big, image_grid(128, 100), 72) == 0);
  CHECK(allocations_during_apply<dct_engine::eigen, TestType>(big, image_grid(128, 100), 72) == 0);
}

// --- the documentation's example ---------------------------------------------------------------------------

TEST_CASE("the policy page's example", "[dct][docs]") {
  const std::vector<float> features(27 * 27 * 1152, 0.5f);  // (tokens, dim)
  // example-begin qwen
  // One image of 27 x 27 tokens of 1152 channels, with Fourier-VLM's Qwen2-VL rule (2/3 a side).
  const tokred::token_grid grid = tokred::image_grid(27, 27);
  const tokred::dct_lowpass policy = tokred::dct_lowpass_for_ratio(grid);  // keep 18 x 18
  const tokred::problem prob{grid, 1152};
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 324

  std::vector<float> reduced(kept * 1152);        // (kept, dim)
  std::vector<std::int32_t> positions(kept * 3);  // (kept, 3)
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  const tokred::grid_inputs<float> in{grid, tokred::make_view(features.data(), 27 * 27, 1152)};
  tokred::grid_outputs<float> out;
  out.tokens = tokred::make_view(reduced.data(), kept, 1152);
  out.positions = tokred::make_view(positions.data(), kept, 3);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok; a constant 0.5 comes back as 0.5 · √(27·27 / (18·18)) = 0.75
  // example-end qwen
  REQUIRE(s == tokred::status::ok);
  CHECK(kept == 324);
  CHECK(std::abs(reduced[100] - 0.75f) < 1e-6f);
  CHECK(positions[3 * 19 + 1] == 2);  // output (1, 1) stands for (floor(3·27/36), …) = (2, 2)
}
