// tests/cpu/test_uniform_quant.cpp — uniform grouped quantization (KIVI, VidKV) against the
// scalar oracle over the case table, the originals' own outputs, error bounds and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/uniform_quant_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"
#include "support/kv_cache.hpp"
#include "support/uniform_buffers.hpp"

namespace tokred::testing {
namespace {

template <class E>
status quantize(const uniform_format& f, const view<E, 3>& cache, packed_buffers<E>& out, bool each_op = false,
                cpu<> exec = {}) {
  return apply(exec, uniform_quantize{f, each_op}, kv_inputs<E>{cache}, out.out());
}

template <class E>
status dequantize(const uniform_format& f, const packed_buffers<E>& in, const view<E, 3>& cache,
                  bool each_op = false, bool vidkv = false, cpu<> exec = {}) {
  return apply(exec, uniform_dequantize{f, each_op, vidkv}, in.in(), kv_outputs<E>{cache});
}

/// Quantizes and dequantizes `cache` and compares codes, scale, zero and values bit for bit
/// with the oracle; nth = 1 and 3 give the same words.
template <class E>
void check_against_oracle(const uniform_format& f, const view<E, 3>& cache, bool each_op, bool vidkv) {
  INFO(describe(f) << " " << element_name<E>() << (each_op ? " each-op" : "") << (vidkv ? " vidkv" : ""));
  const kv_problem prob{cache.extent(0), cache.extent(1), cache.extent(2)};
  const ref::uniform_result want = ref::uniform_roundtrip<E>(
      f, each_op, vidkv, prob.heads, prob.tokens, prob.head_dim,
      [&](index_t h, index_t t, index_t c) { return to_float(cache(h, t, c)); });
  packed_buffers<E> one(f, prob), three(f, prob);
  REQUIRE(quantize(f, cache, one, each_op) == status::ok);
  for (int ith = 0; ith < 3; ++ith) REQUIRE(quantize(f, cache, three, each_op, cpu<>{ith, 3}) == status::ok);
  CHECK(one.codes == want.codes);
  CHECK(three.codes == one.codes);
  bool params_equal = true;
  for (std::size_t i = 0; i < want.scale.size(); ++i) {
    params_equal = params_equal && bits_of(one.scale[i]) == bits_of(from_float<E>(want.scale[i]));
    if (f.scheme == kv_scheme::asymmetric)
      params_equal = params_equal && bits_of(one.zero[i]) == bits_of(from_float<E>(want.zero[i]));
    else
      params_equal = params_equal && bits_of(one.zero[i]) == bits_of(from_float<E>(-7.0f));  // not written
  }
  CHECK(params_equal);

  std::vector<E> back(static_cast<std::size_t>(prob.heads * prob.tokens * prob.head_dim), from_float<E>(-9.0f));
  const view<E, 3> y(back.data(), {prob.heads, prob.tokens, prob.head_dim});
  REQUIRE(dequantize(f, one, y, each_op, vidkv) == status::ok);
  bool values_equal = true;
  for (std::size_t i = 0; i < back.size(); ++i)
    values_equal = values_equal && bits_of(back[i]) == bits_of(from_float<E>(want.values[i]));
  CHECK(values_equal);
  std::vector<E> back3(back.size(), from_float<E>(-9.0f));
  for (int ith = 0; ith < 3; ++ith)
    REQUIRE(dequantize(f, one, view<E, 3>(back3.data(), {prob.heads, prob.tokens, prob.head_dim}), each_op, vidkv,
                       cpu<>{ith, 3}) == status::ok);
  CHECK(std::memcmp(back3.data(), back.data(), back.size() * sizeof(E)) == 0);
}

template <class E>
void sweep(index_t heads, index_t tokens, index_t dim, kv_layout how, std::uint64_t seed) {
  kv_cache<E> k = make_cache<E>(heads, tokens, dim, how);
  fill(k.cache, seed);
  for (const uniform_format& f : formats()) {
    const kv_problem prob{heads, tokens, dim};
    if (can_implement(uniform_quantize{f}, prob) != status::ok) continue;
    check_against_oracle<E>(f, k.cache, false, false);
    if (f.scheme == kv_scheme::sign || f.scheme == kv_scheme::ternary) check_against_oracle<E>(f, k.cache, false, true);
    if (!std::is_same_v<E, float>) check_against_oracle<E>(f, k.cache, true, false);
  }
}

TEST_CASE("case table: codes, scales and values equal the oracle for every format", "[uniform_quant]") {
  for (const shape_case& c : shape_cases()) {
    INFO(c.name);
    // Along tokens the case's width runs as is (partial SIMD batches); along channels the next
    // multiple of 32. Tokens: the case's count rounded down to groups, at most 256, and 37
    // (along channels only).
    const index_t tokens = std::max<index_t>(64, std::min<index_t>(256, c.grid.tokens() / 64 * 64));
    const kv_layout how = c.rows == layout::strided    ? kv_layout::strided
                          : c.rows == layout::reversed ? kv_layout::reversed
                          : c.dim % 2                  ? kv_layout::cells
                                                       : kv_layout::contiguous;
    sweep<float>(2, tokens, c.dim, how, 11);
    sweep<float>(1, 64, (c.dim + 31) / 32 * 32, how, 12);
    sweep<f16>(1, 64, c.dim, how, 13);
    sweep<bf16>(1, 64, (c.dim + 31) / 32 * 32, how, 14);
    sweep<f16>(1, 37, (c.dim + 31) / 32 * 32, how, 15);  // along channels: a partial batch of tokens
  }
  // Wide heads: dequantizing along tokens stages a group's parameters 256 channels at a time,
  // so 300 channels take two chunks and a remainder; 320 are whole groups along channels.
  sweep<f16>(1, 64, 300, kv_layout::contiguous, 16);
  sweep<float>(1, 64, 320, kv_layout::cells, 17);
}

// --- the originals' own outputs --------------------------------------------------------------

/// A golden array as floats, or as 32-bit words (codes).
std::vector<float> floats(const std::string& dir, const char* name) { return load_npy(dir + name).as<float>(); }
std::vector<std::uint32_t> words(const std::string& dir, const char* name) {
  const io::npy_array a = load_npy(dir + name);
  REQUIRE(a.dtype == "<i4");
  return a.as<std::uint32_t>();
}

template <class E>
std::vector<E> stored(const std::vector<float>& x) {
  std::vector<E> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = from_float<E>(x[i]);
  return out;
}

template <class E>
std::vector<float> widened(const std::vector<E>& x) {
  std::vector<float> out(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = to_float(x[i]);
  return out;
}

/// KIVI's prefill (jy-yuan/KIVI quant/new_pack.py): keys along tokens, the first Tk tokens;
/// values along channels, the first Tv tokens. `each_op` as the fp16 run computes.
template <class E>
void check_kivi_case(const char* name, bool each_op, int* tie_codes) {
  const std::string dir = golden_case("kivi", name);
  const index_t heads = json_int(dir, "num_heads"), tokens = json_int(dir, "T"), dim = json_int(dir, "head_dim");
  const int bits = static_cast<int>(json_int(dir, "k_bits"));
  const index_t group = json_int(dir, "group_size");
  const index_t tk = json_int(dir, "k_quantized_tokens"), tv = json_int(dir, "v_quantized_tokens");
  REQUIRE(json_int(dir, "v_bits") == bits);
  const uniform_format keys{bits, group, kv_group_axis::tokens}, values{bits, group, kv_group_axis::channels};

  for (const bool is_key : {true, false}) {
    INFO((is_key ? "keys" : "values") << (each_op ? " each-op" : ""));
    const uniform_format& f = is_key ? keys : values;
    const index_t n = is_key ? tk : tv;
    std::vector<E> input = stored<E>(floats(dir, is_key ? "input_k.npy" : "input_v.npy"));
    // The first n tokens of each head: a (heads, n, dim) view with the full cache's head stride.
    const view<E, 3> cache(input.data(), {heads, n, dim}, {tokens * dim, dim, 1});
    packed_buffers<E> out(f, {heads, n, dim});
    REQUIRE(quantize(f, cache, out, each_op) == status::ok);
    const std::vector<std::uint32_t> want_codes = words(dir, is_key ? "k_codes.npy" : "v_codes.npy");
    const std::vector<float> want_scale = floats(dir, is_key ? "k_scale.npy" : "v_scale.npy");
    const std::vector<float> want_zero = floats(dir, is_key ? "k_mn.npy" : "v_mn.npy");
    const std::vector<float> want_values = floats(dir, is_key ? "k_dequant.npy" : "v_dequant.npy");
    REQUIRE(out.codes.size() == want_codes.size());
    CHECK(widened(out.zero) == want_zero);

    std::vector<E> back(static_cast<std::size_t>(heads * n * dim));
    REQUIRE(dequantize(f, out, view<E, 3>(back.data(), {heads, n, dim}), each_op) == status::ok);
    if (each_op || std::is_same_v<E, float>) {
      CHECK(widened(out.scale) == want_scale);
      CHECK(out.codes == want_codes);
      CHECK(widened(back) == want_values);
      continue;
    }
    // fp32 arithmetic on an fp16 cache: the scale is (max − min)/3 rounded once, where KIVI
    // rounds max − min first, and a code may differ by one where KIVI's fp16 quotient lands on a
    // half. Every value stays within one step of KIVI's.
    const std::vector<float> got = widened(back);
    bool within_a_step = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < n; ++t)
        for (index_t d = 0; d < dim; ++d) {
          const std::size_t i = static_cast<std::size_t>((h * n + t) * dim + d);
          const std::size_t p = static_cast<std::size_t>(is_key ? (h * (n / group) + t / group) * dim + d
                                                                : (h * n + t) * (dim / group) + d / group);
          within_a_step = within_a_step && std::fabs(got[i] - want_values[i]) <= 1.01f * want_scale[p];
        }
    CHECK(within_a_step);
    for (std::size_t w = 0; w < want_codes.size(); ++w)
      for (int i = 0; i < 32 / bits; ++i)
        *tie_codes += ((out.codes[w] ^ want_codes[w]) >> (i * bits) & ((1u << bits) - 1u)) != 0;
  }
}

TEST_CASE("golden: KIVI's fp32 and fp16 prefill codes, scales and dequantized values", "[uniform_quant][golden]") {
  int ties = 0;
  check_kivi_case<float>("k2v2_g32_r32_fp32_T100", false, &ties);
  CHECK(ties == 0);
  check_kivi_case<f16>("k2v2_g32_r32_fp16_T100", true, &ties);
  CHECK(ties == 0);
  check_kivi_case<f16>("k2v2_g32_r32_fp16_T100", false, &ties);
  CHECK(ties > 0);  // the case has fp16 half-step ties: the compatibility switch is needed
  CHECK(ties < 60);  // 15 of 20,992 codes on this case
}

TEST_CASE("golden: VidKV's 1-, 1.58-, 2- and 4-bit per-channel quantizers", "[uniform_quant][golden]") {
  const std::string dir = golden_case("vidkv", "unit_bits_1_1p58_2_4_g32");
  const index_t heads = json_int(dir, "num_heads"), tokens = json_int(dir, "T"), dim = json_int(dir, "head_dim");
  const index_t group = json_int(dir, "q_group_size");
  std::vector<float> input = floats(dir, "input.npy");
  const view<float, 3> cache(input.data(), {heads, tokens, dim});
  struct bits_case {
    const char* suffix;
    uniform_format format;
  };
  const bits_case cases[] = {{"b1", {1, group, kv_group_axis::tokens, kv_scheme::sign}},
                             {"b1p58", {2, group, kv_group_axis::tokens, kv_scheme::ternary}},
                             {"b2", {2, group, kv_group_axis::tokens, kv_scheme::asymmetric}},
                             {"b4", {4, group, kv_group_axis::tokens, kv_scheme::asymmetric}}};
  for (const bits_case& c : cases) {
    INFO(c.suffix);
    const std::string suffix = std::string(c.suffix) + ".npy";
    packed_buffers<float> out(c.format, {heads, tokens, dim});
    REQUIRE(quantize(c.format, cache, out) == status::ok);
    // VidKV stores codes (heads, dim, words) and parameters (heads, dim, groups): channel-major.
    const std::vector<std::uint32_t> want_codes = words(dir, ("codes_" + suffix).c_str());
    const std::vector<float> want_scale = floats(dir, ("scale_" + suffix).c_str());
    const std::vector<float> want_dequant = floats(dir, ("dequant_" + suffix).c_str());
    const index_t rows = out.code_extents.rows, groups = out.param_extents.rows;
    bool codes_equal = true, scales_close = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t d = 0; d < dim; ++d) {
        for (index_t w = 0; w < rows; ++w)
          codes_equal = codes_equal && out.codes[static_cast<std::size_t>((h * rows + w) * dim + d)] ==
                                           want_codes[static_cast<std::size_t>((h * dim + d) * rows + w)];
        for (index_t g = 0; g < groups; ++g) {
          const float got = out.scale[static_cast<std::size_t>((h * groups + g) * dim + d)];
          const float want = want_scale[static_cast<std::size_t>((h * dim + d) * groups + g)];
          scales_close = scales_close && std::fabs(got - want) <= 1e-6f * std::fabs(want);
        }
      }
    CHECK(codes_equal);
    CHECK(scales_close);
    // VidKV's dequantization (the compatibility switch) reproduces its values; the default is
    // the consistent form: ±s for sign, (q − 1)·s for ternary.
    std::vector<float> back(input.size()), fixed(input.size());
    REQUIRE(dequantize(c.format, out, view<float, 3>(back.data(), {heads, tokens, dim}), false, true) == status::ok);
    REQUIRE(dequantize(c.format, out, view<float, 3>(fixed.data(), {heads, tokens, dim})) == status::ok);
    bool values_close = true, consistent = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < tokens; ++t)
        for (index_t d = 0; d < dim; ++d) {
          const std::size_t i = static_cast<std::size_t>((h * tokens + t) * dim + d);
          values_close = values_close && std::fabs(back[i] - want_dequant[i]) <= 1e-5f;
          const float s = out.scale[static_cast<std::size_t>((h * groups + t / group) * dim + d)];
          const float x = input[i];
          if (c.format.scheme == kv_scheme::sign) consistent = consistent && fixed[i] == (x >= 0 ? s : -s);
          if (c.format.scheme == kv_scheme::ternary)
            consistent = consistent && fixed[i] == (x > 0.5f * s ? s : x < -0.5f * s ? -s : 0.0f);
        }
    CHECK(values_close);
    CHECK(consistent);
  }
}

// --- error bounds and documented results ------------------------------------------------------

/// Half a unit in the last place of E at |v| (fp32's rounding is in the fp32 bound itself).
template <class E>
double half_ulp(double v) {
  if constexpr (std::is_same_v<E, float>) return 0.0;
  else if constexpr (std::is_same_v<E, f16>) return std::max(std::fabs(v) * 0x1p-11, 0x1p-25);
  else return std::fabs(v) * 0x1p-8 + 0x1p-134;
}

template <class E>
void require_round_trip(const uniform_format& f, const view<E, 3>& cache) {
  const index_t heads = cache.extent(0), tokens = cache.extent(1), dim = cache.extent(2);
  const kv_problem prob{heads, tokens, dim};
  if (can_implement(uniform_quantize{f}, prob) != status::ok) return;
  INFO(describe(f) << " " << element_name<E>());
  packed_buffers<E> out(f, prob);
  REQUIRE(quantize(f, cache, out) == status::ok);
  std::vector<E> back(static_cast<std::size_t>(heads * tokens * dim));
  REQUIRE(dequantize(f, out, make_view(back.data(), heads, tokens, dim)) == status::ok);
  double worst = 0.0;
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < tokens; ++t)
      for (index_t d = 0; d < dim; ++d) {
        const index_t g = f.axis == kv_group_axis::tokens ? (h * (tokens / f.group) + t / f.group) * dim + d
                                                          : (h * tokens + t) * (dim / f.group) + d / f.group;
        const double s = to_float(out.scale[static_cast<std::size_t>(g)]);
        const double z = f.scheme == kv_scheme::asymmetric ? to_float(out.zero[static_cast<std::size_t>(g)]) : 0.0;
        const double x = to_float(cache(h, t, d));
        const double got = to_float(back[static_cast<std::size_t>((h * tokens + t) * dim + d)]);
        // Half a step, plus the fp32 roundings of x − z, of the scale, of q·s and of q·s + z; for
        // fp16 and bf16 the storing of the scale and the zero point in E (codes up to 2^bits − 1
        // times the scale's) and the output's own rounding to E.
        const double stored = std::ldexp(half_ulp<E>(s), f.bits) + half_ulp<E>(z) + half_ulp<E>(got);
        const double rounding = 2.4e-7 * (std::fabs(x) + std::fabs(z) + std::ldexp(s, f.bits)) + stored;
        worst = worse(worst, std::fabs(x - got) / (0.5 * s + rounding + 1e-30));
      }
  CHECK(worst <= 1.0);
}

TEST_CASE("min-max and absmax formats round-trip within half a step and the output's rounding", "[uniform_quant]") {
  kv_cache<float> k = make_cache<float>(2, 128, 96, kv_layout::contiguous);
  kv_cache<f16> h = make_cache<f16>(2, 128, 96, kv_layout::strided);
  kv_cache<bf16> b = make_cache<bf16>(2, 128, 96, kv_layout::contiguous);
  fill(k.cache, 21);
  fill(h.cache, 22);
  fill(b.cache, 23);
  for (const uniform_format& f : formats()) {
    if (f.scheme != kv_scheme::asymmetric && f.scheme != kv_scheme::symmetric) continue;
    require_round_trip<float>(f, k.cache);
    require_round_trip<f16>(f, h.cache);
    require_round_trip<bf16>(f, b.cache);
  }
  // A bf16 output can land past half a step on its own rounding: {1, 1.015625, 1.03125} at
  // 2 bits has s = 0.010417, and 1.015625 comes back as 1.0078125 (0.75 s), within the bound.
  std::vector<bf16> three(32, from_float<bf16>(1.0f));
  three[1] = from_float<bf16>(1.015625f);
  three[2] = from_float<bf16>(1.03125f);
  require_round_trip<bf16>(uniform_format{2, 32, kv_group_axis::channels}, view<bf16, 3>(three.data(), {1, 1, 32}));
}

/// `x` moved `n` units in the last place of E (away from zero for n > 0 on either sign).
template <class E>
E nudged(E x, int n) {
  if constexpr (std::is_same_v<E, float>) {
    for (; n != 0; n += n > 0 ? -1 : 1) x = std::nextafter(x, (n > 0) == (x >= 0.0f) ? INFINITY : -INFINITY);
    return x;
  } else {
    x.bits = static_cast<std::uint16_t>(x.bits + n);
    return x;
  }
}

/// Fills a cache so that every group of format f holds its own range and, for the rest, values
/// on and a few units in the last place around the half steps of the scale the range gives:
/// where x·(1/s) and the rounded quotient x/s can round to different codes.
template <class E>
void fill_half_steps(const uniform_format& f, const view<E, 3>& c, std::uint64_t seed) {
  rng r(seed);
  const bool along_tokens = f.axis == kv_group_axis::tokens;
  const int top = f.scheme == kv_scheme::asymmetric ? (1 << f.bits) - 1 : (1 << (f.bits - 1)) - 1;
  for (index_t h = 0; h < c.extent(0); ++h)
    for (index_t g0 = 0; g0 < (along_tokens ? c.extent(1) : c.extent(2)); g0 += f.group)
      for (index_t l = 0; l < (along_tokens ? c.extent(2) : c.extent(1)); ++l) {
        // Range and low end stored as E; the scale as the quantizer forms it (fp32 arithmetic).
        const float lo = f.scheme == kv_scheme::asymmetric ? to_float(from_float<E>(2.0f * r.uniform())) : 0.0f;
        const float span = to_float(from_float<E>(2.25f + 1.75f * r.uniform()));
        const float hi = to_float(from_float<E>(lo + span));
        const float s = to_float(from_float<E>(f.scheme == kv_scheme::asymmetric ? (hi - lo) / static_cast<float>(top)
                                                                                 : hi / static_cast<float>(top)));
        for (index_t i = 0; i < f.group; ++i) {
          E x = from_float<E>(i == 0 ? hi : lo);
          if (i >= 2) {
            const int k = f.scheme == kv_scheme::asymmetric ? static_cast<int>(i % top) : static_cast<int>(i % (2 * top)) - top;
            x = nudged(from_float<E>(lo + (static_cast<float>(k) + 0.5f) * s), static_cast<int>(i % 5) - 2);
            if (!(to_float(x) <= hi)) x = from_float<E>(hi);
            if (!(to_float(x) >= (f.scheme == kv_scheme::asymmetric ? lo : -hi))) x = from_float<E>(lo);
          }
          if (along_tokens) c(h, g0 + i, l) = x;
          else c(h, l, g0 + i) = x;
        }
      }
}

TEST_CASE("values on and beside half steps code as the rounded quotient does", "[uniform_quant]") {
  const auto check = [](auto zero) {
    using E = decltype(zero);
    for (const uniform_format& f : formats()) {
      if (f.scheme != kv_scheme::asymmetric && f.scheme != kv_scheme::symmetric) continue;
      kv_cache<E> k = make_cache<E>(2, 128, 128, kv_layout::contiguous);
      fill_half_steps(f, k.cache, 31);
      check_against_oracle<E>(f, k.cache, false, false);
    }
  };
  check(0.0f);
  check(f16{});
  check(bf16{});
}

/// Fills a cache with values in [−1, 1), then gives each block of 32 tokens by 32 channels one
/// kind: plain; no negative values and a quarter of them zeros of either sign (groups along
/// both axes mostly have a zero minimum); the same mirrored (zero maxima); a few NaNs, all of
/// one sign; a few infinities, all of one sign. (Only a NaN or an infinity of one sign sits at
/// one end of the bit patterns' order.)
template <class E>
void fill_special_blocks(const view<E, 3>& c, std::uint64_t seed) {
  rng r(seed);
  for (index_t h = 0; h < c.extent(0); ++h)
    for (index_t t = 0; t < c.extent(1); ++t)
      for (index_t d = 0; d < c.extent(2); ++d) {
        const index_t kind = (h + t / 32 * 3 + d / 32) % 7;
        float v = r.uniform();
        const std::uint64_t pick = r.next() % 64;
        const float zero = pick % 2 ? -0.0f : 0.0f;
        if (kind == 1) v = pick < 16 ? zero : std::fabs(v);
        if (kind == 2) v = pick < 16 ? zero : -std::fabs(v);
        if (kind >= 3 && pick < 2) v = std::copysign(kind < 5 ? NAN : INFINITY, kind % 2 ? 1.0f : -1.0f);
        c(h, t, d) = from_float<E>(v);
      }
}

TEST_CASE("NaNs, infinities and zero extremes of either sign give the oracle's bits", "[uniform_quant]") {
  // The statistics of 16-bit floats compare bit patterns as integers on x86, where ±0 differ and
  // NaNs sort beyond the infinities of their sign; both must come out as group order has them.
  const auto check = [](auto zero) {
    using E = decltype(zero);
    kv_cache<E> k = make_cache<E>(2, 128, 128, kv_layout::contiguous);
    fill_special_blocks(k.cache, 41);
    for (const uniform_format& f : formats()) check_against_oracle<E>(f, k.cache, false, false);
  };
  check(0.0f);
  check(f16{});
  check(bf16{});
}

/// A (heads, n, n) cache of values in [−1, 1) whose first 32 tokens hold, group by group along
/// channels, a NaN or an infinity (tokens 0–15), or zeros of either sign at the minimum or the
/// maximum, or signed zeros only (tokens 16–31); tokens 32–47 hold values near 10³⁸, whose sum
/// overflows fp32 and bf16 (fp16 stores them as infinities); the rest hold none. Every kind of
/// batch of 16 or 8 tokens occurs.
template <class E>
std::vector<E> signed_zero_cache(index_t heads, index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<E> x(static_cast<std::size_t>(heads * n * n));
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < n; ++t)
      for (index_t g = 0; g < n / 32; ++g) {
        // Tokens 0–15: NaN and infinities (kinds 4, 5); 16–31: zeros (1–3); 32–47: huge (6).
        const index_t k = (t + g + h) % 3;
        const index_t kind = t < 16 ? (k == 0 ? 0 : k + 3) : t < 32 ? (t + g + h) % 4 : t < 48 ? 6 : 0;
        for (index_t c = g * 32; c < g * 32 + 32; ++c) {
          float v = r.uniform();
          const bool signed_zero = r.next() % 4 == 0;
          const float zero = r.next() % 2 ? -0.0f : 0.0f;
          if (kind == 1) v = signed_zero ? zero : std::fabs(v);   // minimum ±0
          if (kind == 2) v = signed_zero ? zero : -std::fabs(v);  // maximum ±0
          if (kind == 3) v = zero;                                 // all ±0
          if (kind == 4 && c == g * 32 + t % 32) v = NAN;
          if (kind == 5 && c == g * 32 + (t * 7) % 32) v = t % 2 ? INFINITY : -INFINITY;
          if (kind == 6) v = std::copysign(1.0f + std::fabs(v), v) * 1.0e38f;
          x[static_cast<std::size_t>((h * n + t) * n + c)] = from_float<E>(v);
        }
      }
  return x;
}

TEST_CASE("along channels equals along tokens of the transposed cache, zeros of either sign included",
          "[uniform_quant]") {
  // Along tokens every lane's statistics run in group order; along channels on x86 they are
  // folded across lanes and retaken in group order for batches holding a zero extreme or a sum
  // that is not finite. Either way a group's minimum is its last minimal value, so scales, zero
  // points and values agree bit for bit (a zero's sign included).
  const auto check = [](auto zero) {
    using E = decltype(zero);
    INFO(element_name<E>());
    constexpr index_t heads = 2, n = 64;
    std::vector<E> a = signed_zero_cache<E>(heads, n, 51);
    std::vector<E> b(a.size());
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < n; ++t)
        for (index_t c = 0; c < n; ++c)
          b[static_cast<std::size_t>((h * n + c) * n + t)] = a[static_cast<std::size_t>((h * n + t) * n + c)];
    for (const uniform_format& f : formats()) {
      if (f.axis != kv_group_axis::channels || f.group != 32) continue;
      INFO(describe(f));
      const uniform_format along_tokens{f.bits, f.group, kv_group_axis::tokens, f.scheme};
      const kv_problem prob{heads, n, n};
      packed_buffers<E> pa(f, prob), pb(along_tokens, prob);
      REQUIRE(quantize(f, view<E, 3>(a.data(), {heads, n, n}), pa) == status::ok);
      REQUIRE(quantize(along_tokens, view<E, 3>(b.data(), {heads, n, n}), pb) == status::ok);
      std::vector<E> ya(a.size()), yb(a.size());
      REQUIRE(dequantize(f, pa, view<E, 3>(ya.data(), {heads, n, n})) == status::ok);
      REQUIRE(dequantize(along_tokens, pb, view<E, 3>(yb.data(), {heads, n, n})) == status::ok);
      std::size_t params_differ = 0, values_differ = 0;
      for (index_t h = 0; h < heads; ++h)
        for (index_t t = 0; t < n; ++t) {
          for (index_t g = 0; g < n / 32; ++g) {
            const std::size_t i = static_cast<std::size_t>((h * n + t) * (n / 32) + g);
            const std::size_t j = static_cast<std::size_t>((h * (n / 32) + g) * n + t);
            params_differ += bits_of(pa.scale[i]) != bits_of(pb.scale[j]) || bits_of(pa.zero[i]) != bits_of(pb.zero[j]);
          }
          for (index_t c = 0; c < n; ++c)
            values_differ += bits_of(ya[static_cast<std::size_t>((h * n + t) * n + c)]) !=
                             bits_of(yb[static_cast<std::size_t>((h * n + c) * n + t)]);
        }
      CHECK(params_differ == 0);
      CHECK(values_differ == 0);
    }
  };
  check(0.0f);
  check(f16{});
  check(bf16{});
}

TEST_CASE("constant, zero and non-finite groups give their documented results", "[uniform_quant]") {
  for (kv_scheme scheme : {kv_scheme::asymmetric, kv_scheme::symmetric, kv_scheme::sign, kv_scheme::ternary}) {
    const uniform_format f{scheme == kv_scheme::sign ? 1 : 2, 32, kv_group_axis::tokens, scheme};
    INFO(describe(f));
    std::vector<float> x(64 * 4, 0.0f);
    for (int t = 0; t < 32; ++t) {
      x[static_cast<std::size_t>(t * 4 + 0)] = 1.5f;                      // constant channel
      x[static_cast<std::size_t>(t * 4 + 2)] = t == 5 ? NAN : 0.25f * t;  // a NaN
      x[static_cast<std::size_t>(t * 4 + 3)] = t == 9 ? -INFINITY : 1.0f;  // an infinity
    }
    const view<float, 3> cache(x.data(), {1, 64, 4});
    packed_buffers<float> out(f, {1, 64, 4});
    REQUIRE(quantize(f, cache, out) == status::ok);
    std::vector<float> back(x.size());
    REQUIRE(dequantize(f, out, make_view(back.data(), 1, 64, 4)) == status::ok);
    for (int t = 0; t < 32; ++t) {
      if (scheme == kv_scheme::asymmetric) CHECK(back[static_cast<std::size_t>(t * 4)] == 1.5f);
      CHECK(back[static_cast<std::size_t>(t * 4 + 1)] == 0.0f);  // all zero: scale 0, exact
      CHECK(std::isnan(back[static_cast<std::size_t>(t * 4 + 2)]));
      CHECK(std::isnan(back[static_cast<std::size_t>(t * 4 + 3)]));
    }
    CHECK(out.scale[1] == 0.0f);
    CHECK(std::isnan(out.scale[2]));
    CHECK(std::isnan(out.scale[3]));
    CHECK(out.codes[2] == 0u);  // codes of a non-finite group are 0
  }
}

TEST_CASE("finite groups whose sum overflows fp32 are not taken for non-finite ones", "[uniform_quant]") {
  // Values near 2.5·10³⁸: any two sum past fp32's largest finite value. The statistics look
  // for a NaN or an infinity through a group's sum, and must look again where the sum is not
  // finite.
  std::vector<float> x(64 * 64);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 2.0e38f + 1.0e36f * static_cast<float>(i % 37);
  const view<float, 3> cache(x.data(), {1, 64, 64});
  for (const uniform_format& f : formats()) {
    INFO(describe(f));
    packed_buffers<float> out(f, {1, 64, 64});
    REQUIRE(quantize(f, cache, out) == status::ok);
    CHECK(std::none_of(out.scale.begin(), out.scale.end(), [](float s) { return std::isnan(s); }));
    if (f.scheme != kv_scheme::asymmetric) continue;
    std::vector<float> back(x.size());
    REQUIRE(dequantize(f, out, make_view(back.data(), 1, 64, 64)) == status::ok);
    bool within = true;  // every group spans 3.6·10³⁷: a step of at most that
    for (std::size_t i = 0; i < x.size(); ++i) within = within && std::fabs(back[i] - x[i]) <= 3.6e37f;
    CHECK(within);
  }
}

// --- bad input ----------------------------------------------------------------------------------

TEST_CASE("bad input: every status, packed cache and output untouched", "[uniform_quant][bad_input]") {
  const uniform_format f{2, 32, kv_group_axis::tokens};
  std::vector<float> x(2 * 64 * 32, 0.5f);
  const view<float, 3> cache(x.data(), {2, 64, 32});
  const kv_problem prob{2, 64, 32};
  packed_buffers<float> out(f, prob);
  const std::vector<std::uint32_t> codes0 = out.codes;
  const std::vector<float> scale0 = out.scale;
  const auto untouched = [&] { return out.codes == codes0 && out.scale == scale0 && out.zero == scale0; };
  const auto q = [&](const uniform_quantize& p, const view<float, 3>& c, const uniform_packed<float>& o,
                     cpu<> exec = {}) { return apply(exec, p, kv_inputs<float>{c}, o); };

  CHECK(q({{0, 32}}, cache, out.out()) == status::invalid_parameter);   // bits 0
  CHECK(q({{9, 32}}, cache, out.out()) == status::invalid_parameter);   // bits 9
  CHECK(q({{2, 48}}, cache, out.out()) == status::invalid_parameter);   // group not a multiple of 32
  CHECK(q({{2, 512}}, cache, out.out()) == status::invalid_parameter);  // group above 256
  CHECK(q({{2, 128}}, cache, out.out()) == status::invalid_parameter);  // group larger than the tokens
  CHECK(q({{1, 32, kv_group_axis::tokens, kv_scheme::symmetric}}, cache, out.out()) == status::invalid_parameter);
  CHECK(q({{2, 32, kv_group_axis::tokens, kv_scheme::sign}}, cache, out.out()) == status::invalid_parameter);
  CHECK(q({{1, 32, kv_group_axis::tokens, kv_scheme::ternary}}, cache, out.out()) == status::invalid_parameter);
  CHECK(q({{2, 64, kv_group_axis::channels}}, cache, out.out()) == status::invalid_parameter);  // head_dim 32 < 64
  CHECK(q({f}, view<float, 3>(x.data(), {2, 0, 32}), out.out()) == status::empty_input);
  CHECK(q({f}, cache, out.out(), cpu<>{2, 2}) == status::invalid_exec);

  uniform_packed<float> bad = out.out();
  bad.codes = view<std::uint32_t, 3>(out.codes.data(), {2, 3, 32});
  CHECK(q({f}, cache, bad) == status::shape_mismatch);  // codes rows
  bad = out.out();
  bad.codes = view<std::uint32_t, 3>(out.codes.data(), {2, 4, 32}, {256, 64, 2});
  CHECK(q({f}, cache, bad) == status::shape_mismatch);  // codes inner stride 2
  // Codes cast from a byte buffer at an odd address: refused before anything is read or written.
  std::vector<std::uint32_t> spare(out.codes.size() + 1);
  auto* odd = reinterpret_cast<std::uint32_t*>(reinterpret_cast<unsigned char*>(spare.data()) + 1);
  bad = out.out();
  bad.codes = view<std::uint32_t, 3>(odd, {2, 4, 32});
  CHECK(q({f}, cache, bad) == status::misaligned);
  std::vector<float> y0(x.size(), -3.0f);
  CHECK(apply(cpu<>{}, uniform_dequantize{f}, uniform_packed<const float>{bad.codes, out.in().scale, out.in().zero},
              kv_outputs<float>{make_view(y0.data(), 2, 64, 32)}) == status::misaligned);
  CHECK(std::all_of(y0.begin(), y0.end(), [](float v) { return v == -3.0f; }));
  bad = out.out();
  bad.scale = view<float, 3>(nullptr, {2, 2, 32});
  CHECK(q({f}, cache, bad) == status::null_pointer);
  bad = out.out();
  bad.zero = view<float, 3>(out.zero.data(), {2, 1, 32});
  CHECK(q({f}, cache, bad) == status::shape_mismatch);  // zero used by the asymmetric scheme
  bad = out.out();
  bad.scale = view<float, 3>(x.data(), {2, 2, 32});
  CHECK(q({f}, cache, bad) == status::aliasing);  // scale over the input
  bad = out.out();
  bad.zero = bad.scale;
  CHECK(q({f}, cache, bad) == status::aliasing);  // zero over scale
  CHECK(untouched());

  // The symmetric schemes never touch zero: an empty view is fine.
  const uniform_format sym{2, 32, kv_group_axis::tokens, kv_scheme::symmetric};
  uniform_packed<float> no_zero = out.out();
  no_zero.zero = {};
  CHECK(q({sym}, cache, no_zero) == status::ok);

  // Dequantize refuses the same way and leaves its output untouched.
  REQUIRE(q({f}, cache, out.out()) == status::ok);
  std::vector<float> y(x.size(), -3.0f);
  CHECK(apply(cpu<>{}, uniform_dequantize{{2, 32, kv_group_axis::channels, kv_scheme::asymmetric}}, out.in(),
              kv_outputs<float>{make_view(y.data(), 2, 64, 32)}) == status::shape_mismatch);
  CHECK(apply(cpu<>{}, uniform_dequantize{f}, out.in(),
              kv_outputs<float>{view<float, 3>(reinterpret_cast<float*>(out.codes.data()), {2, 64, 32})}) ==
        status::aliasing);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == -3.0f; }));
}

}  // namespace
}  // namespace tokred::testing
