// tests/cpu/test_kv_blocks.cpp — ggml block formats and the Hadamard rotation against ggml's own
// outputs (golden cases and the research spec's hex), the scalar oracle, error bounds, edge values
// and bad input.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/ggml_blocks_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"
#include "support/kv_cache.hpp"

namespace tokred::testing {
namespace {

const ggml_type all_types[] = {ggml_type::q8_0, ggml_type::q4_0, ggml_type::q4_1,
                               ggml_type::q5_0, ggml_type::q5_1, ggml_type::iq4_nl};

/// The packed bytes of a cache, contiguous (heads, tokens, row_bytes).
struct packed {
  std::vector<std::uint8_t> bytes;
  view<std::uint8_t, 3> blocks;  // (heads, tokens, row_bytes)
  packed(index_t heads, index_t tokens, index_t row_bytes)
      : bytes(static_cast<std::size_t>(heads * tokens * row_bytes), 0xA5),
        blocks(bytes.data(), {heads, tokens, row_bytes}) {}
};

template <class E>
std::vector<float> row_of(const view<E, 3>& c, index_t h, index_t t) {
  std::vector<float> row(static_cast<std::size_t>(c.extent(2)));
  for (index_t d = 0; d < c.extent(2); ++d) row[static_cast<std::size_t>(d)] = to_float(c(h, t, d));
  return row;
}

template <class E>
status quantize(const view<E, 3>& cache, packed& out, ggml_type type, index_t rotation = 0,
                cpu<> exec = {}) {
  return apply(exec, ggml_quantize{type, rotation}, kv_inputs<E>{cache}, kv_block_outputs<>{out.blocks});
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return {std::istreambuf_iterator<char>(f), {}};
}

std::vector<std::uint8_t> hex(const char* s) {
  std::vector<std::uint8_t> out;
  for (const char* p = s; *p;) {
    if (*p == ' ') { ++p; continue; }
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(p, 2), nullptr, 16)));
    p += 2;
  }
  return out;
}

// --- ggml's own outputs ---------------------------------------------------------------------

TEST_CASE("golden: ggml quantize_row_*_ref bytes and dequantize_row_* values", "[kv_blocks][golden]") {
  for (const char* name : {"q8_0", "q4_0"}) {
    INFO(name);
    const ggml_type type = std::string(name) == "q8_0" ? ggml_type::q8_0 : ggml_type::q4_0;
    const io::npy_array input = load_npy(golden_case("ggml", name) + "input.npy");
    const io::npy_array dequant = load_npy(golden_case("ggml", name) + "dequant.npy");
    const std::vector<std::uint8_t> blocks = read_bytes(golden_case("ggml", name) + "blocks.bin");
    REQUIRE(input.shape == std::vector<std::int64_t>{10, 128});
    std::vector<float> x = input.as<float>();
    const view<const float, 3> cache(x.data(), {1, 10, 128});  // each row quantized alone, as ggml
    packed out(1, 10, ggml_row_bytes(type, 128));
    REQUIRE(quantize(cache, out, type) == status::ok);
    CHECK(out.bytes == blocks);

    std::vector<float> y(10 * 128, -1.0f);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{out.blocks},
                  kv_outputs<float>{make_view(y.data(), 1, 10, 128)}) == status::ok);
    const std::vector<float> want = dequant.as<float>();
    for (std::size_t i = 0; i < y.size(); ++i) CHECK(bits_of(y[i]) == bits_of(want[i]));
  }
}

TEST_CASE("research spec 13.5: Input A in all six formats, Input B's q8_0 ties", "[kv_blocks][golden]") {
  float a[32];
  for (int j = 0; j < 32; ++j) a[j] = static_cast<float>(j - 16) * 0.125f + static_cast<float>((7 * j) % 5) * 0.03125f;
  const std::pair<ggml_type, const char*> expected[] = {
      {ggml_type::q8_0, "08 24 81 8d 99 9b a7 a9 b5 c0 c2 ce d0 dc e8 ea f6 f8 04 10 12 1e 20 2c 38 3a 45 47 53 5f 61 6d 6f 7b"},
      {ggml_type::q4_0, "00 34 80 91 92 a2 a2 b3 c3 c4 c4 d5 d5 e6 e7 f7 f7 f8"},
      {ggml_type::q4_1, "33 34 00 c0 80 91 91 92 a2 a2 b3 b4 c4 c5 d5 d5 d6 e6 e7 f7"},
      {ggml_type::q5_0, "00 30 00 00 ff ff 10 22 23 43 45 65 77 78 98 9a ba cc cd ed ef ff"},
      {ggml_type::q5_1, "11 30 00 c0 00 00 ff ff 00 21 23 33 45 55 76 78 88 9a aa cb cd dd ef ff"},
      {ggml_type::iq4_nl, "1e 24 80 91 91 a1 b2 b2 c2 c3 d3 d4 e4 e5 e6 f6 f7 f7"},
  };
  for (const auto& [type, bytes] : expected) {
    INFO(ggml_type_name(type));
    packed out(1, 1, ggml_block_bytes(type));
    REQUIRE(quantize(view<const float, 3>(a, {1, 1, 32}), out, type) == status::ok);
    CHECK(out.bytes == hex(bytes));
    CHECK(ref::quantize_row(type, a, 32) == hex(bytes));  // the oracle agrees with ggml too
  }
  float b[32] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f};
  packed out(1, 1, 34);
  REQUIRE(quantize(view<const float, 3>(b, {1, 1, 32}), out, ggml_type::q8_0) == status::ok);
  std::vector<std::uint8_t> want = hex("00 3c 7f 01 02 03 ff fd");  // ties away from zero
  want.resize(34, 0);
  CHECK(out.bytes == want);
}

// --- the case table: bytes equal the oracle ---------------------------------------------------

template <class E>
void check_against_oracle(index_t heads, index_t tokens, index_t dim, kv_layout how) {
  kv_cache<E> k = make_cache<E>(heads, tokens, dim, how);
  fill(k.cache, static_cast<std::uint64_t>(tokens * 131 + dim));
  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type) << " " << element_name<E>() << " layout " << static_cast<int>(how));
    packed out(heads, tokens, ggml_row_bytes(type, dim));
    REQUIRE(quantize(view<const E, 3>(k.cache), out, type) == status::ok);
    bool same = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < tokens; ++t) {
        const std::vector<float> row = row_of(k.cache, h, t);
        const std::vector<std::uint8_t> want = ref::quantize_row(type, row.data(), dim);
        same = same && std::memcmp(want.data(), &out.blocks(h, t, 0), want.size()) == 0;
      }
    CHECK(same);

    // Dequantize into the same layout and element type; compare with the oracle's values.
    kv_cache<E> back = make_cache<E>(heads, tokens, dim, how);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{out.blocks},
                  kv_outputs<E>{back.cache}) == status::ok);
    bool exact = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < tokens; ++t) {
        const std::vector<float> want = ref::dequantize_row(type, &out.blocks(h, t, 0), dim);
        for (index_t d = 0; d < dim; ++d)
          exact = exact && bits_of(back.cache(h, t, d)) == bits_of(from_float<E>(want[static_cast<std::size_t>(d)]));
      }
    CHECK(exact);
  }
}

TEST_CASE("case table: bytes and dequantized values equal the oracle", "[kv_blocks]") {
  const kv_layout layouts[] = {kv_layout::contiguous, kv_layout::cells, kv_layout::strided, kv_layout::reversed};
  for (const shape_case& c : shape_cases()) {
    INFO(c.name);
    const index_t tokens = c.grid.tokens() > 256 ? 256 : c.grid.tokens();
    // The case's own width applies when it is a multiple of 32; otherwise it must be refused,
    // and the next multiple of 32 runs instead.
    const kv_problem raw{2, tokens, c.dim};
    if (c.dim % 32 != 0) CHECK(can_implement(ggml_quantize{}, raw) == status::invalid_parameter);
    const index_t dim = (c.dim + 31) / 32 * 32;
    const kv_layout how = c.rows == layout::strided ? kv_layout::strided
                          : c.rows == layout::reversed ? kv_layout::reversed
                          : c.dim % 2 ? kv_layout::cells : kv_layout::contiguous;
    check_against_oracle<float>(2, tokens, dim, how);
    check_against_oracle<f16>(2, tokens, dim, layouts[static_cast<std::size_t>(tokens % 4)]);
    check_against_oracle<bf16>(1, tokens, dim, how);
  }
  check_against_oracle<float>(3, 5, 256, kv_layout::cells);  // head_dim 256: one 256-chunk per row
  check_against_oracle<float>(2, 7, 96, kv_layout::strided);
}

TEST_CASE("thread shares write the same bytes as one call", "[kv_blocks]") {
  kv_cache<float> k = make_cache<float>(3, 37, 128, kv_layout::cells);
  fill(k.cache, 5);
  for (ggml_type type : all_types) {
    packed one(3, 37, ggml_row_bytes(type, 128)), many(3, 37, ggml_row_bytes(type, 128));
    REQUIRE(quantize(view<const float, 3>(k.cache), one, type, 64) == status::ok);
    for (int ith = 0; ith < 5; ++ith)
      REQUIRE(quantize(view<const float, 3>(k.cache), many, type, 64, cpu<>{ith, 5}) == status::ok);
    CHECK(one.bytes == many.bytes);
  }
}

// --- products rounded before the add, whatever the compiler flags --------------------------------

/// `v` moved `ulps` floats up (ulps > 0) or down.
float nudged(float v, int ulps) {
  for (; ulps > 0; --ulps) v = std::nextafter(v, INFINITY);
  for (; ulps < 0; ++ulps) v = std::nextafter(v, -INFINITY);
  return v;
}

/// One block of `type` with its values where rounding the products first can matter. q4_0 and
/// q5_0: the first value fixes d, the others lie within 12 ulps of a code boundary
/// (x·id + offset = n). q4_1 and q5_1: min 0 and a random max; the others within 12 ulps of d/2,
/// where x·id crosses 0.5 and its ulp doubles. iq4_nl: t·K for levels K of the codebook, -127·t
/// first, with t halfway between two fp16 values: the least-squares scale is t up to the rounding
/// of its sums, so which fp16 it stores depends on that rounding.
void near_boundaries(ggml_type type, rng& g, float* x) {
  if (type == ggml_type::iq4_nl) {
    const auto h = static_cast<std::uint16_t>(0x2000 + g.next() % 0x3000);  // [2^-7, 2^5)
    const float t = 0.5f * (ref::half_value(h) + ref::half_value(static_cast<std::uint16_t>(h + 1)));
    x[0] = -127.0f * t;
    for (int j = 1; j < 32; ++j) x[j] = t * static_cast<float>(iq4nl_levels[1 + g.next() % 15]);
    return;
  }
  const bool affine = type == ggml_type::q4_1 || type == ggml_type::q5_1;
  const int levels = type == ggml_type::q4_0 || type == ggml_type::q4_1 ? 16 : 32;
  float anchors[32] = {};
  anchors[0] = std::ldexp(1.5f + 0.5f * g.uniform(), static_cast<int>(g.next() % 7) - 3);
  if (!affine) anchors[0] = -anchors[0];
  const float d = ref::quantize_block(type, anchors).d;
  x[0] = anchors[0];
  if (affine) x[1] = 0.0f;  // the min
  for (int j = affine ? 2 : 1; j < 32; ++j) {
    const int n = 1 + static_cast<int>(g.next() % static_cast<std::uint64_t>(levels - 1));
    const float boundary = affine ? 0.5f * d : (static_cast<float>(n - levels / 2) - 0.5f) * d;
    x[j] = nudged(boundary, static_cast<int>(g.next() % 25) - 12);
  }
}

TEST_CASE("products are rounded before the add, whatever the compiler fuses", "[kv_blocks][contraction]") {
  // Guards ggml's rounding of each product before an add: x·id before + 8.5, 16.5 or 0.5, and
  // each x²·K·x and x²·K² before iq4_nl's sums. Compilers fuse such a multiply and add into one
  // FMA when the target has it (g++ by default, even across statements and through double;
  // clang with -ffp-contract=fast), which changes ggml's bytes in a few random blocks in 10^6
  // (q4_0, q5_0; about one in 10^4 for iq4_nl; q4_1 and q5_1 only next to d/2): too few for the
  // case table or the golden rows to meet. A block is kept here only if the oracle computing
  // with fused multiply-adds writes other bytes for it, so this fails in any build where one of
  // those products is fused (as it did under -march=native before they were kept rounded).
  for (ggml_type type : {ggml_type::q4_0, ggml_type::q4_1, ggml_type::q5_0, ggml_type::q5_1, ggml_type::iq4_nl}) {
    INFO(ggml_type_name(type));
    rng g(static_cast<std::uint64_t>(type) + 1);
    std::vector<float> x;
    for (int drawn = 0; x.size() < 64 * 32 && drawn < 1000; ++drawn) {  // 1 in 2 to 1 in 7 kept
      float block[32];
      near_boundaries(type, g, block);
      if (ref::quantize_block(type, block).bytes != ref::quantize_block(type, block, ref::mul_add::fused).bytes)
        x.insert(x.end(), block, block + 32);
    }
    REQUIRE(x.size() == 64 * 32);  // 64 blocks: (2 heads, 4 tokens, 256 channels)
    packed out(2, 4, ggml_row_bytes(type, 256));
    REQUIRE(quantize(view<const float, 3>(x.data(), {2, 4, 256}), out, type) == status::ok);
    const std::vector<std::uint8_t> want = ref::quantize_row(type, x.data(), 64 * 32);
    const auto bytes = static_cast<std::size_t>(ggml_block_bytes(type));
    int differing = 0;  // blocks
    for (std::size_t b = 0; b < 64; ++b)
      differing += std::memcmp(out.bytes.data() + b * bytes, want.data() + b * bytes, bytes) != 0;
    CHECK(differing == 0);

    std::vector<float> y(64 * 32);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{out.blocks},
                  kv_outputs<float>{make_view(y.data(), 2, 4, 256)}) == status::ok);
    const std::vector<float> values = ref::dequantize_row(type, out.bytes.data(), 64 * 32);
    bool exact = true;
    for (std::size_t i = 0; i < y.size(); ++i) exact = exact && bits_of(y[i]) == bits_of(values[i]);
    CHECK(exact);
  }
}

TEST_CASE("q8_0 codes are roundf's at and beside every half-integer, and 0 outside int8", "[kv_blocks][rounding]") {
  // round_code is truncation plus a carry, not roundf: every x·id within 3 ulps of each n + 1/2
  // from -128.5 to 128.5, and values outside int8 and NaN, against roundf itself.
  int differing = 0, checked = 0;
  const auto check = [&](float v) {
    const int want = v > -128.5f && v < 127.5f ? static_cast<int>(std::round(v)) : 0;
    differing += detail::round_code(v) != want, ++checked;
  };
  for (int n = -129; n <= 128; ++n)
    for (int ulps = -3; ulps <= 3; ++ulps) check(nudged(static_cast<float>(n) + 0.5f, ulps));
  for (float v : {0.0f, -0.0f, 0.49999997f, -0.49999997f, 1e-30f, 200.0f, -1e9f, INFINITY, -INFINITY, NAN}) check(v);
  CHECK(checked == 258 * 7 + 10);
  CHECK(differing == 0);

  // Through the quantizer: a block whose amax is 127 (so d = 1, id = 1) holding every half-integer
  // tie of int8 it can, and its neighbours, byte for byte with the oracle.
  std::vector<float> x;
  for (int b = 0; b < 24; ++b) {
    x.push_back(b % 2 ? -127.0f : 127.0f);
    for (int j = 1; j < 32; ++j) x.push_back(nudged(static_cast<float>((b * 31 + j) % 254 - 127) + 0.5f, b % 3 - 1));
  }
  packed out(1, 3, ggml_row_bytes(ggml_type::q8_0, 256));
  REQUIRE(quantize(view<const float, 3>(x.data(), {1, 3, 256}), out, ggml_type::q8_0) == status::ok);
  CHECK(out.bytes == ref::quantize_row(ggml_type::q8_0, x.data(), static_cast<index_t>(x.size())));
}

// --- round trip within the documented error ---------------------------------------------------

/// The documented bound on |x − deq(q(x))| for one block: the rounding step plus the fp16
/// rounding of d (times the largest code) and of m. q4_0 and q5_0 saturate at the positive end
/// (a whole step); iq4_nl by 1/7 of the block's largest magnitude (a tested bound, not a proof).
double error_bound(ggml_type type, const ref::block_result& r, const float* x) {
  const std::uint16_t d16 = static_cast<std::uint16_t>(r.bytes[0] | r.bytes[1] << 8);
  const double d = std::fabs(static_cast<double>(r.d));
  const double dd = std::fabs(static_cast<double>(r.d) - static_cast<double>(ref::half_value(d16)));
  double amax = 0.0;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(static_cast<double>(x[j])));
  const double slack = amax * 1e-6 + 1e-30;
  double dm = 0.0;
  if (type == ggml_type::q4_1 || type == ggml_type::q5_1) {
    const std::uint16_t m16 = static_cast<std::uint16_t>(r.bytes[2] | r.bytes[3] << 8);
    dm = std::fabs(static_cast<double>(r.min) - static_cast<double>(ref::half_value(m16)));
  }
  switch (type) {
    case ggml_type::q8_0: return 0.5 * d + 127 * dd + slack;
    case ggml_type::q4_0: return d + 8 * dd + slack;
    case ggml_type::q5_0: return d + 16 * dd + slack;
    case ggml_type::q4_1: return 0.5 * d + 15 * dd + dm + slack;
    case ggml_type::q5_1: return 0.5 * d + 31 * dd + dm + slack;
    case ggml_type::iq4_nl: return amax / 7.0 + slack;
  }
  return 0.0;
}

TEST_CASE("every format round-trips within its documented error", "[kv_blocks]") {
  kv_cache<float> k = make_cache<float>(4, 64, 128, kv_layout::contiguous);
  fill(k.cache, 77);
  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type));
    packed out(4, 64, ggml_row_bytes(type, 128));
    REQUIRE(quantize(view<const float, 3>(k.cache), out, type) == status::ok);
    std::vector<float> y(4 * 64 * 128);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{out.blocks},
                  kv_outputs<float>{make_view(y.data(), 4, 64, 128)}) == status::ok);
    int violations = 0;
    double worst = 0.0;
    for (index_t i = 0; i < 4 * 64 * 128; i += 32) {
      const float* x = k.cache.data_handle() + i;
      const ref::block_result r = ref::quantize_block(type, x);
      const double bound = error_bound(type, r, x);
      for (int j = 0; j < 32; ++j) {
        const double e = std::fabs(static_cast<double>(x[j]) - static_cast<double>(y[static_cast<std::size_t>(i + j)]));
        worst = worse(worst, e / (bound > 0 ? bound : 1.0));
        if (e > bound) ++violations;
      }
    }
    INFO("worst error / bound " << worst);
    CHECK(violations == 0);
  }
}

// --- edge values --------------------------------------------------------------------------------

std::vector<std::uint8_t> one_block(ggml_type type, const float (&x)[32]) {
  packed out(1, 1, ggml_block_bytes(type));
  REQUIRE(quantize(view<const float, 3>(x, {1, 1, 32}), out, type) == status::ok);
  return out.bytes;
}

TEST_CASE("edge values: zeros, signed zeros, +-max, ties, constants", "[kv_blocks]") {
  const float zeros[32] = {};
  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type));
    const std::vector<std::uint8_t> b = one_block(type, zeros);
    CHECK(b == ref::quantize_row(type, zeros, 32));
    CHECK(b[0] == 0);
    CHECK((b[1] & 0x7F) == 0);  // d = ±0: q4_0 and q5_0 store 0 / −8 = −0, as ggml does
  }
  CHECK(one_block(ggml_type::q4_0, zeros)[2] == 0x88);  // code 8 = zero
  CHECK(one_block(ggml_type::iq4_nl, zeros)[2] == 0x88);

  float signed_zero[32] = {};
  for (int j = 0; j < 32; j += 2) signed_zero[j] = -0.0f;
  for (ggml_type type : all_types) CHECK(one_block(type, signed_zero) == ref::quantize_row(type, signed_zero, 32));
  // q4_1's m is the first minimum met: -0 here, +0 with the zeros swapped.
  CHECK(one_block(ggml_type::q4_1, signed_zero)[3] == 0x80);

  float extremes[32];
  for (int j = 0; j < 32; ++j) extremes[j] = j % 2 ? 65504.0f : -65504.0f;  // +-fp16 max
  for (ggml_type type : all_types) CHECK(one_block(type, extremes) == ref::quantize_row(type, extremes, 32));
  const std::vector<std::uint8_t> q8 = one_block(ggml_type::q8_0, extremes);
  CHECK(q8[2] == 0x81);  // -127
  CHECK(q8[3] == 0x7f);  // +127

  float ties[32];
  for (int j = 0; j < 32; ++j) ties[j] = static_cast<float>(j - 16) * 0.5f;  // x·id on k + 1/2
  for (ggml_type type : all_types) CHECK(one_block(type, ties) == ref::quantize_row(type, ties, 32));

  float constant[32];
  for (float& v : constant) v = -1.25f;
  for (ggml_type type : all_types) CHECK(one_block(type, constant) == ref::quantize_row(type, constant, 32));
  const std::vector<std::uint8_t> q41 = one_block(ggml_type::q4_1, constant);
  CHECK(q41[0] == 0);  // d = 0: every value is m
  CHECK(ref::dequantize_row(ggml_type::q4_1, q41.data(), 32)[5] == -1.25f);

  // iq4_nl level ties: id·x exactly halfway between two levels goes to the upper one.
  // d0 = -127 / -127 = 1, so id·x = x: 7 lies halfway between levels 1 and 13, -42 between -49
  // and -35; both take the upper level.
  const float halfway[32] = {-127.0f, 7.0f, -42.0f};
  const std::vector<std::uint8_t> tie = one_block(ggml_type::iq4_nl, halfway);
  CHECK((tie[3] & 0x0F) == 9);   // level 13
  CHECK((tie[4] & 0x0F) == 5);   // level -35
  CHECK(one_block(ggml_type::iq4_nl, halfway) == ref::quantize_row(ggml_type::iq4_nl, halfway, 32));
}

TEST_CASE("non-finite values: the block becomes NaN, its neighbours are untouched", "[kv_blocks]") {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    float x[64];
    for (int j = 0; j < 64; ++j) x[j] = static_cast<float>(j) * 0.25f - 3.0f;
    x[40] = bad;
    for (ggml_type type : all_types) {
      INFO(ggml_type_name(type) << " " << bad);
      packed out(1, 1, 2 * ggml_block_bytes(type));
      REQUIRE(quantize(view<const float, 3>(x, {1, 1, 64}), out, type) == status::ok);
      CHECK(out.bytes == ref::quantize_row(type, x, 64));
      const std::vector<float> y = ref::dequantize_row(type, out.bytes.data(), 64);
      CHECK(std::isfinite(y[0]));
      for (int j = 32; j < 64; ++j) CHECK(std::isnan(y[static_cast<std::size_t>(j)]));
    }
  }
}

// --- the CPU's SIMD block quantizer against the codec and the oracle ------------------------------

/// A block of one of nine kinds, each built for a rule quantize_block_lanes keeps with lanes
/// folded in any order: random values; the largest magnitude held by x and −x (the first decides
/// q4_0's and q5_0's sign); values ≤ 0 and ≥ 0 with ±0 among them (the first zero decides q4_1's
/// max or m); magnitudes so small that 1/d overflows; values so far apart that max − min does;
/// ±0 only; one value repeated; for iq4_nl, id·x within a few ulps of the midpoint between two
/// levels, where rounding the product before the level search decides the level (−127·t first,
/// so id = 1/t, inexact for t = 3·2^e).
void adversarial_block(rng& g, int kind, float* x) {
  const auto at = [&] { return static_cast<int>(g.next() % 32); };
  for (int j = 0; j < 32; ++j) x[j] = 2.0f * g.uniform();
  switch (kind) {
    case 1: {
      const float a = 2.0f + std::fabs(g.uniform());
      x[at()] = a;
      x[at()] = -a;
      break;
    }
    case 2:
    case 3:
      for (int j = 0; j < 32; ++j) x[j] = kind == 2 ? -std::fabs(x[j]) : std::fabs(x[j]);
      for (int z = 0; z < 3; ++z) x[at()] = g.next() % 2 ? -0.0f : 0.0f;
      break;
    case 4:
      for (int j = 0; j < 32; ++j) x[j] = std::ldexp(x[j], -125 - static_cast<int>(g.next() % 24));
      break;
    case 5:
      for (int j = 0; j < 32; ++j) x[j] = std::ldexp(x[j], 127);
      x[at()] = std::numeric_limits<float>::max();
      x[at()] = -std::numeric_limits<float>::max();
      break;
    case 6:
      for (int j = 0; j < 32; ++j) x[j] = g.next() % 2 ? -0.0f : 0.0f;
      break;
    case 7:
      for (int j = 1; j < 32; ++j) x[j] = x[0];
      break;
    case 8: {
      const float t = std::ldexp(3.0f, static_cast<int>(g.next() % 9) - 4);
      x[0] = -127.0f * t;
      for (int j = 1; j < 32; ++j) {
        const auto i = static_cast<std::size_t>(g.next() % 15);
        const float midpoint = 0.5f * static_cast<float>(iq4nl_levels[i] + iq4nl_levels[i + 1]);
        x[j] = nudged(midpoint * t, static_cast<int>(g.next() % 9) - 4);
      }
      break;
    }
    default:
      break;
  }
}

TEST_CASE("SIMD block quantizer: the codec's and the oracle's bytes on adversarial blocks", "[kv_blocks]") {
  rng g(2026);
  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type));
    const auto bytes = static_cast<std::size_t>(ggml_block_bytes(type));
    for (int kind = 0; kind < 9; ++kind) {
      INFO("kind " << kind);
      int differing = 0;  // blocks whose bytes differ from the codec's or the oracle's
      std::vector<float> row(64 * 32);
      for (int b = 0; b < 64; ++b) {
        float* x = row.data() + 32 * b;
        adversarial_block(g, kind, x);
        std::uint8_t lanes[34], codec[34];
        detail::simd_block_quantizer<compile_time_arch>{}(type, x, lanes);
        detail::quantize_block(type, x, codec);
        const std::vector<std::uint8_t> oracle = ref::quantize_block(type, x).bytes;
        differing += std::memcmp(lanes, codec, bytes) != 0 || std::memcmp(lanes, oracle.data(), bytes) != 0;
      }
      CHECK(differing == 0);
      // The same blocks through the backend: fp32 rows straight into the lanes, and strided rows
      // through the units' buffer.
      packed direct(2, 4, ggml_row_bytes(type, 256)), strided(2, 4, ggml_row_bytes(type, 256));
      REQUIRE(quantize(view<const float, 3>(row.data(), {2, 4, 256}), direct, type) == status::ok);
      std::vector<float> spread(2 * row.size());
      for (std::size_t i = 0; i < row.size(); ++i) spread[2 * i] = row[i];
      REQUIRE(quantize(view<const float, 3>(spread.data(), {2, 4, 256}, {4 * 256 * 2, 256 * 2, 2}), strided, type) ==
              status::ok);
      CHECK(direct.bytes == ref::quantize_row(type, row.data(), 64 * 32));
      CHECK(strided.bytes == direct.bytes);
    }
  }
}

// --- rotation: the backend's SIMD rows against the codec's scalar units ------------------------

/// Whether two caches hold the same bits everywhere (any NaN matching any NaN: which operand's
/// payload an add passes on is the compiler's choice).
template <class E>
bool same_bits(const view<E, 3>& a, const view<E, 3>& b) {
  bool same = true;
  for (index_t h = 0; h < a.extent(0); ++h)
    for (index_t t = 0; t < a.extent(1); ++t)
      for (index_t d = 0; d < a.extent(2); ++d) {
        const float x = to_float(a(h, t, d)), y = to_float(b(h, t, d));
        same = same && (bits_of(a(h, t, d)) == bits_of(b(h, t, d)) || (std::isnan(x) && std::isnan(y)));
      }
  return same;
}

/// hadamard, and quantize and dequantize with rotation, against the codec's unit functions with
/// its scalar transform (the CUDA threads' bodies), for the automatic block of `dim`.
template <class E>
void check_rotation_against_codec(index_t heads, index_t tokens, index_t dim, kv_layout how, bool specials) {
  const index_t block = detail::hadamard_block_for(0, dim);
  INFO(element_name<E>() << " dim " << dim << " block " << block << " layout " << static_cast<int>(how));
  kv_cache<E> k = make_cache<E>(heads, tokens, dim, how);
  fill(k.cache, static_cast<std::uint64_t>(tokens * 17 + dim));
  if (specials) {  // one row of each head: NaN, infinities and signed zeros among the values
    const float odd[] = {std::nanf(""), std::numeric_limits<float>::infinity(), -0.0f, 0.0f,
                         -std::numeric_limits<float>::infinity()};
    for (index_t h = 0; h < heads; ++h)
      for (index_t d = 0; d < dim; d += 3) k.cache(h, 0, d) = from_float<E>(odd[(d / 3 + h) % 5]);
  }
  const view<const E, 3> x(k.cache);

  kv_cache<E> got = make_cache<E>(heads, tokens, dim, how), want = make_cache<E>(heads, tokens, dim, how);
  REQUIRE(apply(cpu<>{}, hadamard{block}, kv_inputs<E>{k.cache}, kv_outputs<E>{got.cache}) == status::ok);
  const kv_problem prob{heads, tokens, dim};
  detail::for_each_ggml_unit(cpu<>{}, prob, block, [&](const detail::ggml_unit& at) { detail::hadamard_unit(block, x, want.cache, at); });
  CHECK(same_bits(got.cache, want.cache));

  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type));
    packed fused(heads, tokens, ggml_row_bytes(type, dim)), scalar(heads, tokens, ggml_row_bytes(type, dim));
    REQUIRE(quantize(x, fused, type, block) == status::ok);
    detail::for_each_ggml_unit(cpu<>{}, prob, block, [&](const detail::ggml_unit& at) {
      detail::ggml_quantize_unit<true>(type, block, x, scalar.blocks, at);
    });
    CHECK(fused.bytes == scalar.bytes);

    const view<const std::uint8_t, 3> blocks(fused.blocks);
    kv_cache<E> back = make_cache<E>(heads, tokens, dim, how), back_want = make_cache<E>(heads, tokens, dim, how);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type, block}, kv_block_inputs<>{blocks}, kv_outputs<E>{back.cache}) ==
            status::ok);
    detail::for_each_ggml_unit(cpu<>{}, prob, block, [&](const detail::ggml_unit& at) {
      detail::ggml_dequantize_unit<true>(type, block, blocks, back_want.cache, at);
    });
    CHECK(same_bits(back.cache, back_want.cache));
  }
}

TEST_CASE("rotation: hadamard and rotated blocks equal the codec's scalar units, bit for bit", "[kv_blocks][hadamard]") {
  const kv_layout layouts[] = {kv_layout::contiguous, kv_layout::cells, kv_layout::strided, kv_layout::reversed};
  for (const shape_case& c : shape_cases()) {
    INFO(c.name);
    const index_t tokens = c.grid.tokens() > 64 ? 64 : c.grid.tokens();
    const index_t dim = (c.dim + 31) / 32 * 32;  // blocks of 32 … 256 channels
    const kv_layout how = layouts[static_cast<std::size_t>((tokens + c.dim) % 4)];
    check_rotation_against_codec<float>(2, tokens, dim, how, tokens % 2 == 1);
    check_rotation_against_codec<f16>(1, tokens, dim, layouts[static_cast<std::size_t>(tokens % 4)], false);
    check_rotation_against_codec<bf16>(1, tokens, dim, how, true);
  }
  for (index_t dim : {32, 64, 128, 256, 384})
    for (kv_layout how : layouts) check_rotation_against_codec<float>(2, 5, dim, how, true);
}

// --- Hadamard -----------------------------------------------------------------------------------

TEST_CASE("hadamard: orthonormal, its own inverse, equal to the matrix definition", "[kv_blocks][hadamard]") {
  for (index_t block : {32, 64, 128, 256}) {
    INFO("block " << block);
    const index_t dim = 2 * block;
    kv_cache<float> k = make_cache<float>(2, 9, dim, kv_layout::strided);
    fill(k.cache, static_cast<std::uint64_t>(block));
    std::vector<float> once(2 * 9 * dim), twice(2 * 9 * dim);
    const view<float, 3> v1 = make_view(once.data(), 2, 9, dim), v2 = make_view(twice.data(), 2, 9, dim);
    REQUIRE(apply(cpu<>{}, hadamard{block}, kv_inputs<float>{k.cache}, kv_outputs<float>{v1}) == status::ok);
    REQUIRE(apply(cpu<>{}, hadamard{block}, kv_inputs<float>{v1}, kv_outputs<float>{v2}) == status::ok);
    double worst_norm = 0.0, worst_inverse = 0.0, worst_def = 0.0;
    for (index_t h = 0; h < 2; ++h)
      for (index_t t = 0; t < 9; ++t) {
        const std::vector<float> x = row_of(k.cache, h, t), y = row_of(v1, h, t), z = row_of(v2, h, t);
        const std::vector<double> want = ref::hadamard_row(std::vector<double>(x.begin(), x.end()), block);
        for (index_t b = 0; b < dim; b += block) {
          double nx = 0.0, ny = 0.0;
          for (index_t j = b; j < b + block; ++j) {
            const auto u = static_cast<std::size_t>(j);
            nx += static_cast<double>(x[u]) * x[u];
            ny += static_cast<double>(y[u]) * y[u];
          }
          if (nx > 0) worst_norm = worse(worst_norm, std::fabs(std::sqrt(ny / nx) - 1.0));
          const double scale = std::sqrt(nx) + 1e-30;
          for (index_t j = b; j < b + block; ++j) {
            const auto u = static_cast<std::size_t>(j);
            worst_inverse = worse(worst_inverse, std::fabs(static_cast<double>(z[u]) - x[u]) / scale);
            worst_def = worse(worst_def, std::fabs(static_cast<double>(y[u]) - want[u]) / scale);
          }
        }
      }
    CHECK(worst_norm <= 1e-6);
    CHECK(worst_inverse <= 1e-6);
    CHECK(worst_def <= 1e-6);
  }
}

TEST_CASE("hadamard: the butterflies' fp32 sums in span order, bit for bit", "[kv_blocks][hadamard]") {
  // The transform fuses spans 1 and 2; its bits must stay those of the plain span-by-span
  // butterfly in fp32, which rotated blocks and the CUDA units share.
  rng g(7);
  for (index_t block : {32, 64, 128, 256}) {
    INFO("block " << block);
    std::vector<float> x(static_cast<std::size_t>(block)), want;
    for (float& v : x) v = static_cast<float>(g.uniform() * 8.0 - 4.0);
    want = x;
    for (index_t span = 1; span < block; span *= 2)
      for (index_t i = 0; i < block; i += 2 * span)
        for (index_t j = i; j < i + span; ++j) {
          const float a = want[static_cast<std::size_t>(j)], b = want[static_cast<std::size_t>(j + span)];
          want[static_cast<std::size_t>(j)] = a + b;
          want[static_cast<std::size_t>(j + span)] = a - b;
        }
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(block)));
    for (float& v : want) v *= scale;
    detail::hadamard_transform(x.data(), block);
    bool same = true;
    for (std::size_t i = 0; i < x.size(); ++i) same = same && bits_of(x[i]) == bits_of(want[i]);
    CHECK(same);
  }
}

TEST_CASE("hadamard: automatic block, in place, fp16 and thread shares", "[kv_blocks][hadamard]") {
  CHECK(detail::hadamard_block_for(0, 128) == 128);
  CHECK(detail::hadamard_block_for(0, 192) == 64);
  CHECK(detail::hadamard_block_for(0, 512) == 256);
  CHECK(detail::hadamard_block_for(0, 48) == 0);
  CHECK(detail::hadamard_block_for(48, 96) == 0);
  CHECK(can_implement(hadamard{}, kv_problem{1, 1, 80}) == status::invalid_parameter);

  kv_cache<f16> k = make_cache<f16>(2, 11, 192, kv_layout::cells);
  fill(k.cache, 3);
  std::vector<f16> out(2 * 11 * 192);
  const view<f16, 3> o = make_view(out.data(), 2, 11, 192);
  REQUIRE(apply(cpu<>{}, hadamard{}, kv_inputs<f16>{k.cache}, kv_outputs<f16>{o}) == status::ok);
  std::vector<f16> shares(out.size());
  const view<f16, 3> s = make_view(shares.data(), 2, 11, 192);
  for (int ith = 0; ith < 3; ++ith)
    REQUIRE(apply(cpu<>{ith, 3}, hadamard{}, kv_inputs<f16>{k.cache}, kv_outputs<f16>{s}) == status::ok);
  CHECK(std::memcmp(out.data(), shares.data(), out.size() * sizeof(f16)) == 0);
  REQUIRE(apply(cpu<>{}, hadamard{}, kv_inputs<f16>{k.cache}, kv_outputs<f16>{k.cache}) == status::ok);  // in place
  bool same = true;
  for (index_t h = 0; h < 2; ++h)
    for (index_t t = 0; t < 11; ++t)
      for (index_t d = 0; d < 192; ++d) same = same && k.cache(h, t, d).bits == o(h, t, d).bits;
  CHECK(same);
}

TEST_CASE("fused rotation equals hadamard then quantize, and dequantize then hadamard", "[kv_blocks][hadamard]") {
  kv_cache<float> k = make_cache<float>(2, 13, 128, kv_layout::reversed);
  fill(k.cache, 21);
  std::vector<float> rotated(2 * 13 * 128);
  const view<float, 3> r = make_view(rotated.data(), 2, 13, 128);
  REQUIRE(apply(cpu<>{}, hadamard{64}, kv_inputs<float>{k.cache}, kv_outputs<float>{r}) == status::ok);
  for (ggml_type type : all_types) {
    INFO(ggml_type_name(type));
    packed fused(2, 13, ggml_row_bytes(type, 128)), split(2, 13, ggml_row_bytes(type, 128));
    REQUIRE(quantize(view<const float, 3>(k.cache), fused, type, 64) == status::ok);
    REQUIRE(quantize(view<const float, 3>(r), split, type) == status::ok);
    CHECK(fused.bytes == split.bytes);

    std::vector<float> a(2 * 13 * 128), b(2 * 13 * 128), c(2 * 13 * 128);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type, 64}, kv_block_inputs<>{fused.blocks},
                  kv_outputs<float>{make_view(a.data(), 2, 13, 128)}) == status::ok);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{fused.blocks},
                  kv_outputs<float>{make_view(b.data(), 2, 13, 128)}) == status::ok);
    REQUIRE(apply(cpu<>{}, hadamard{64}, kv_inputs<float>{make_view(b.data(), 2, 13, 128)},
                  kv_outputs<float>{make_view(c.data(), 2, 13, 128)}) == status::ok);
    CHECK(a == c);
  }
}

TEST_CASE("rotation lowers q4_0 error on a cache with outlier channels", "[kv_blocks][hadamard]") {
  // Keys with a few large channels (as real keys have): rotation spreads them over the block.
  std::vector<float> x(64 * 128);
  rng g(9);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = g.uniform() * (i % 128 == 5 || i % 128 == 77 ? 20.0f : 1.0f);
  const view<const float, 3> cache(x.data(), {1, 64, 128});
  double err[2] = {0, 0};
  for (int rotate = 0; rotate < 2; ++rotate) {
    packed out(1, 64, ggml_row_bytes(ggml_type::q4_0, 128));
    REQUIRE(quantize(cache, out, ggml_type::q4_0, rotate ? 128 : 0) == status::ok);
    std::vector<float> y(x.size());
    REQUIRE(apply(cpu<>{}, ggml_dequantize{ggml_type::q4_0, rotate ? 128 : 0}, kv_block_inputs<>{out.blocks},
                  kv_outputs<float>{make_view(y.data(), 1, 64, 128)}) == status::ok);
    for (std::size_t i = 0; i < x.size(); ++i) err[rotate] += (x[i] - y[i]) * (x[i] - y[i]);
  }
  CHECK(err[1] < 0.5 * err[0]);
}

// --- bad input ----------------------------------------------------------------------------------

TEST_CASE("bad input: documented statuses, nothing written", "[kv_blocks][bad_input]") {
  std::vector<float> x(2 * 4 * 64, 1.0f);
  const view<const float, 3> cache(x.data(), {2, 4, 64});
  const auto q = [&](const view<const float, 3>& c, const view<std::uint8_t, 3>& b, ggml_quantize p = {},
                     cpu<> exec = {}) { return apply(exec, p, kv_inputs<float>{c}, kv_block_outputs<>{b}); };
  packed out(2, 4, ggml_row_bytes(ggml_type::q8_0, 64));
  const std::vector<std::uint8_t> sentinel = out.bytes;

  CHECK(q(cache, out.blocks, {}, cpu<>{2, 2}) == status::invalid_exec);
  CHECK(q(view<const float, 3>(x.data(), {2, 4, 48}), out.blocks) == status::invalid_parameter);  // 48 % 32
  CHECK(q(view<const float, 3>(x.data(), {2, 0, 64}), out.blocks) == status::empty_input);
  CHECK(q(cache, out.blocks, ggml_quantize{static_cast<ggml_type>(1)}) == status::invalid_parameter);
  CHECK(q(cache, out.blocks, ggml_quantize{ggml_type::q8_0, 128}) == status::invalid_parameter);  // > head_dim
  CHECK(q(cache, out.blocks, ggml_quantize{ggml_type::q8_0, 48}) == status::invalid_parameter);
  CHECK(q(cache, view<std::uint8_t, 3>(out.bytes.data(), {2, 4, 60})) == status::shape_mismatch);
  CHECK(q(cache, out.blocks, ggml_quantize{ggml_type::q4_0}) == status::shape_mismatch);  // 68-byte rows, q4_0 needs 36
  std::vector<std::uint8_t> wide(2 * 4 * 136);  // packed rows whose bytes are 2 apart: not a layout ggml reads
  CHECK(q(cache, view<std::uint8_t, 3>(wide.data(), {2, 4, 68}, {4 * 136, 136, 2})) == status::shape_mismatch);
  CHECK(q(cache, view<std::uint8_t, 3>(out.bytes.data(), {2, 4, 68}, {0, 0, 2})) == status::aliasing);  // rows on one another
  CHECK(q(view<const float, 3>(nullptr, {2, 4, 64}), out.blocks) == status::null_pointer);
  CHECK(q(cache, view<std::uint8_t, 3>(nullptr, {2, 4, 68})) == status::null_pointer);
  // Packed bytes written over the cache itself.
  CHECK(q(cache, view<std::uint8_t, 3>(reinterpret_cast<std::uint8_t*>(x.data()), {2, 4, 68})) == status::aliasing);
  CHECK(out.bytes == sentinel);

  std::vector<float> y(2 * 4 * 64, -5.0f);
  const auto dq = [&](const view<const std::uint8_t, 3>& b, const view<float, 3>& c, ggml_dequantize p = {}) {
    return apply(cpu<>{}, p, kv_block_inputs<>{b}, kv_outputs<float>{c});
  };
  CHECK(dq(out.blocks, make_view(y.data(), 2, 4, 48)) == status::invalid_parameter);
  CHECK(dq(view<const std::uint8_t, 3>(out.bytes.data(), {2, 3, 68}), make_view(y.data(), 2, 4, 64)) == status::shape_mismatch);
  CHECK(dq(view<const std::uint8_t, 3>(reinterpret_cast<const std::uint8_t*>(y.data()), {2, 4, 68}),
           make_view(y.data(), 2, 4, 64)) == status::aliasing);
  // The float view is checked before the packed one, as ggml_quantize checks its cache first: a
  // null packed view and an output that repeats an element (zero token stride) is the output's
  // aliasing.
  CHECK(dq(view<const std::uint8_t, 3>(nullptr, {2, 4, 68}), view<float, 3>(y.data(), {2, 4, 64}, {256, 0, 1})) ==
        status::aliasing);
  CHECK(dq(view<const std::uint8_t, 3>(nullptr, {2, 4, 68}), view<float, 3>(nullptr, {2, 4, 64})) == status::null_pointer);
  for (float v : y) REQUIRE(v == -5.0f);

  std::vector<float> h(2 * 4 * 64);
  CHECK(apply(cpu<>{}, hadamard{}, kv_inputs<float>{cache}, kv_outputs<float>{make_view(h.data(), 2, 4, 32)}) ==
        status::shape_mismatch);
  CHECK(apply(cpu<>{}, hadamard{}, kv_inputs<float>{cache},
              kv_outputs<float>{view<float, 3>(x.data() + 1, {2, 4, 64})}) == status::aliasing);
  CHECK(workspace_bytes(cpu<>{}, ggml_quantize{}, kv_problem{2, 4, 64}) == 0);
}

}  // namespace
}  // namespace tokred::testing
