// tests/cpu/test_vidkv.cpp — VidKV's mixed-precision keys (difficult channels at 2 bits, the
// rest through a DFT at 1 bit) against the scalar oracle over the case table, the DFT against
// the textbook one, VidKV's streaming cache against its own outputs and against `update`
// replayed step by step, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tokred/cpu/vidkv.hpp>
#include <tokred/policy/vidkv_units.hpp>
#include <tokred/tokred.hpp>

#include "reference/vidkv_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"
#include "support/kv_cache.hpp"
#include "support/vidkv_buffers.hpp"

namespace tokred::testing {
namespace {

template <class E>
ref::tensor3 tensor_of(const view<E, 3>& v) {
  ref::tensor3 t(v.extent(0), v.extent(1), v.extent(2));
  for (index_t h = 0; h < t.heads; ++h)
    for (index_t i = 0; i < t.tokens; ++i)
      for (index_t d = 0; d < t.dim; ++d) t(h, i, d) = to_float(v(h, i, d));
  return t;
}

template <class E>
bool same_bits(const std::vector<E>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (bits_of(got[i]) != bits_of(from_float<E>(want[i]))) return false;
  return true;
}

template <class E>
std::vector<E> dequantize_keys(const vidkv_keys& k, bool vidkv, const key_buffers<E>& in, const kv_problem& p, int nth) {
  std::vector<E> y(static_cast<std::size_t>(p.heads * p.tokens * p.head_dim), from_float<E>(-9.0f));
  for (int ith = 0; ith < nth; ++ith) {
    host_workspace ws(workspace_bytes(cpu<>{ith, nth}, vidkv_key_dequantize{k, vidkv}, p));
    REQUIRE(apply(cpu<>{ith, nth}, vidkv_key_dequantize{k, vidkv}, in.in(),
                  kv_outputs<E>{view<E, 3>(y.data(), {p.heads, p.tokens, p.head_dim})}, ws.get()) == status::ok);
  }
  return y;
}

/// Quantizes and dequantizes keys and compares every packed word, parameter and value with the
/// oracle bit for bit; nth = 1, 2, 3 give the same bytes.
template <class E>
void check_keys(const vidkv_keys& k, const view<E, 3>& x) {
  INFO(describe(k) << " " << element_name<E>() << " (" << x.extent(0) << ", " << x.extent(1) << ", " << x.extent(2) << ")");
  const kv_problem p{x.extent(0), x.extent(1), x.extent(2)};
  const ref::tensor3 input = tensor_of(x);
  key_buffers<E> one(k, p);
  REQUIRE(quantize_keys(k, x, one) == status::ok);
  for (int nth : {2, 3}) {
    key_buffers<E> shared(k, p);
    for (int ith = 0; ith < nth; ++ith) REQUIRE(quantize_keys(k, x, shared, cpu<>{ith, nth}) == status::ok);
    CHECK(shared == one);
  }
  for (const bool vidkv : {false, true}) {
    INFO((vidkv ? "vidkv_dequant" : "consistent"));
    const ref::key_result want = ref::key_roundtrip<E>(k, input, vidkv);
    CHECK(one.channels == want.channels);
    const vidkv_key_layout& l = want.layout;
    if (l.difficult > 0) {
      CHECK(one.difficult.codes == want.difficult.codes);
      CHECK(same_bits(one.difficult.scale, want.difficult.scale));
      if (l.difficult_format.scheme == kv_scheme::asymmetric) CHECK(same_bits(one.difficult.zero, want.difficult.zero));
    }
    if (l.easy > 0) {
      CHECK(one.spectral.codes == want.spectral.codes);
      CHECK(same_bits(one.spectral.scale, want.spectral.scale));
    }
    const std::vector<E> y = dequantize_keys(k, vidkv, one, p, 1);
    CHECK(same_bits(y, want.values.v));
    CHECK(same_bytes(dequantize_keys(k, vidkv, one, p, 3), y));
  }
}

template <class E>
void sweep(index_t heads, index_t tokens, index_t dim, kv_layout how, std::uint64_t seed, bool each_op = false) {
  kv_cache<E> c = make_cache<E>(heads, tokens, dim, how);
  fill(c.cache, seed);
  for (vidkv_keys k : key_settings(32)) {
    k.round_each_op = each_op;
    if (can_implement(vidkv_key_quantize{k}, {heads, tokens, dim}) != status::ok) continue;
    check_keys<E>(k, c.cache);
  }
}

TEST_CASE("case table: channels, codes, scales and keys equal the oracle for every key setting", "[vidkv]") {
  for (const shape_case& c : shape_cases()) {
    INFO(c.name);
    const kv_layout how = c.rows == layout::strided    ? kv_layout::strided
                          : c.rows == layout::reversed ? kv_layout::reversed
                          : c.dim % 2                  ? kv_layout::cells
                                                       : kv_layout::contiguous;
    sweep<float>(2, 96, c.dim, how, 31);
    sweep<float>(1, 64, c.dim + 32, how, 32);  // head_dim ≥ 32: bits just above 1 take 32 channels
    sweep<f16>(2, 64, c.dim, how, 33);
    sweep<f16>(1, 64, c.dim, how, 34, true);
    sweep<bf16>(2, 64, c.dim, how, 35);
  }
}

TEST_CASE("head_dim 128, group 64: the paper's shape", "[vidkv]") {
  kv_cache<float> c = make_cache<float>(2, 128, 128, kv_layout::cells);
  fill(c.cache, 36);
  for (vidkv_keys k : key_settings(64)) check_keys<float>(k, c.cache);
}

// --- the layout and the DFT -------------------------------------------------------------------

TEST_CASE("difficult channel count: VidKV's int(D·(bits − 1)), 32 when that is 0", "[vidkv]") {
  CHECK(vidkv_difficult_channels(1.5, 128) == 64);
  CHECK(vidkv_difficult_channels(1.58, 128) == 74);  // 128 · 0.5800000000000001 = 74.24
  CHECK(vidkv_difficult_channels(1.25, 128) == 32);
  CHECK(vidkv_difficult_channels(1.3, 64) == 19);    // 64 · 0.30000000000000004 = 19.2
  CHECK(vidkv_difficult_channels(1.2, 128) == 25);   // 128 · 0.19999999999999996 = 25.6
  CHECK(vidkv_difficult_channels(1.0, 128) == 0);
  CHECK(vidkv_difficult_channels(2.0, 128) == 128);
  CHECK(vidkv_difficult_channels(1.001, 64) == 32);  // int(0.064) = 0 → 32
  CHECK(vidkv_difficult_channels(1.01, 16) == 32);   // more than D: no layout
  CHECK(can_implement(vidkv_key_quantize{{1.01, true, 32}}, {1, 32, 16}) == status::invalid_parameter);
  const vidkv_key_layout l = vidkv_key_layout_of({1.5, true, 32}, 128);
  CHECK(l.difficult == 64);
  CHECK(l.easy == 64);
  const vidkv_key_extents x = vidkv_packed_key_extents({1.5, true, 32}, {4, 256, 128});
  CHECK(x.difficult_codes.rows == 16);  // 256 tokens · 2 bits / 32
  CHECK(x.difficult_codes.cols == 64);
  CHECK(x.spectral_codes.rows == 8);    // 1 bit
  CHECK(x.spectral_codes.cols == 128);  // 2 · 64 spectral components
  CHECK(x.spectral_params.rows == 8);
  const vidkv_key_layout t = vidkv_key_layout_of({1.58, false, 32}, 128);
  CHECK(t.difficult == 128);
  CHECK(t.difficult_format.scheme == kv_scheme::ternary);
  CHECK(vidkv_key_layout_of({1.0, false, 32}, 128).easy == 128);  // VidKV's nbits = 1: the DFT path
}

TEST_CASE("the oracle's DFT is the textbook DFT, and its inverse undoes it", "[vidkv]") {
  for (index_t n : {1, 2, 3, 8, 15, 32, 33, 64}) {
    INFO("n = " << n);
    rng r(static_cast<std::uint64_t>(n));
    std::vector<double> x(static_cast<std::size_t>(n));
    for (double& v : x) v = r.uniform();
    const std::vector<double> s = ref::real_dft(x);
    const std::vector<std::complex<double>> want = ref::textbook_dft(x);
    double worst = 0.0, back_worst = 0.0;
    for (index_t m = 0; m < n; ++m) {
      worst = worse(worst, std::abs(std::complex<double>(s[static_cast<std::size_t>(2 * m)],
                                                            s[static_cast<std::size_t>(2 * m + 1)]) -
                                       want[static_cast<std::size_t>(m)]));
    }
    const std::vector<double> back = ref::real_idft(s);
    for (index_t j = 0; j < n; ++j)
      back_worst = std::max(back_worst, std::fabs(back[static_cast<std::size_t>(j)] - x[static_cast<std::size_t>(j)]));
    CHECK(worst <= 1e-13 * static_cast<double>(n));
    CHECK(back_worst <= 1e-14 * static_cast<double>(n));
    CHECK(s[1] == 0.0);
    CHECK(!std::signbit(s[1]));
    if (n % 2 == 0) CHECK(s[static_cast<std::size_t>(n + 1)] == 0.0);
  }
}

TEST_CASE("the inverse DFT's mirrored channels are the direct sums, signed zeros included", "[vidkv]") {
  constexpr index_t group = 32;
  const auto identical = [](auto a, auto b) {
    static_assert(std::is_same_v<decltype(a), decltype(b)>);
    return std::memcmp(&a, &b, sizeof a) == 0;
  };
  // The backend writes channel n − j from channel j's sums; the oracle sums every channel.
  const auto check = [&](index_t n, const std::vector<std::vector<double>>& spectra) {
    INFO("n = " << n);
    std::vector<double> cos(static_cast<std::size_t>(n)), sin(cos.size());
    const detail::dft_twiddles tw = detail::fill_twiddles(cos.data(), sin.data(), n);
    const ref::twiddle_table want_tw(n);
    for (index_t r = 0; r < n; ++r) {
      const auto at = static_cast<std::size_t>(r), mirror = static_cast<std::size_t>((n - r) % n);
      CHECK(identical(cos[at], want_tw.cos[at]));
      CHECK(identical(sin[at], want_tw.sin[at]));
      CHECK(identical(cos[mirror], cos[at]));
      if (2 * r == n) CHECK(identical(sin[at], 0.0));
      else if (r > 0) CHECK(identical(sin[mirror], -sin[at]));
    }
    // Component-major spectra (Re X_m in row 2m, Im X_m in row 2m + 1), folded as the backend does.
    std::vector<float> spectral(static_cast<std::size_t>(2 * n * group));
    for (index_t t = 0; t < group; ++t)
      for (index_t c = 0; c < 2 * n; ++c)
        spectral[static_cast<std::size_t>(c * group + t)] =
            static_cast<float>(spectra[static_cast<std::size_t>(t) % spectra.size()][static_cast<std::size_t>(c)]);
    struct alignas(64) line { double v[8]; };  // the transform loads whole batches of tokens
    std::vector<line> folded(static_cast<std::size_t>(n * group / 8));
    double* f = folded.front().v;
    detail::fold_spectrum(detail::dft_fold(n), spectral.data(), group, f);
    std::vector<float> got(static_cast<std::size_t>(n * group), 1.0f);
    detail::inverse_dft<compile_time_arch>(tw, f, group, [&](index_t j, index_t t, float v) {
      got[static_cast<std::size_t>(t * n + j)] = v;
    });
    for (index_t t = 0; t < group; ++t) {
      std::vector<double> s(static_cast<std::size_t>(2 * n));
      for (index_t c = 0; c < 2 * n; ++c)
        s[static_cast<std::size_t>(c)] = spectral[static_cast<std::size_t>(c * group + t)];
      const std::vector<double> want = ref::real_idft(s);
      for (index_t j = 0; j < n; ++j) {
        INFO("token " << t << ", channel " << j);
        const float want_j = static_cast<float>(want[static_cast<std::size_t>(j)]);
        CHECK(identical(got[static_cast<std::size_t>(t * n + j)], want_j));
      }
    }
  };
  for (index_t n : {1, 2, 3, 8, 15, 32, 33, 64, 128}) {
    rng r(static_cast<std::uint64_t>(100 + n));
    std::vector<std::vector<double>> spectra(group, std::vector<double>(static_cast<std::size_t>(2 * n)));
    for (auto& s : spectra)
      for (double& v : s) v = r.uniform() - 0.5;
    check(n, spectra);
  }
  // n = 8, channel 1: every product of its cos sum is −0 (R_0 = R_1 = R_2 = R_6 = R_7 = −0 meet
  // positive cosines, R_3 = R_5 = R_4 = +0 negative ones) and its sin sum is +0, so channel 1 and
  // channel 7 are both −0 / 8 = −0; c + s in place of c − (0 − s) would give channel 7 +0.
  std::vector<double> zeros(16, 0.0);
  for (index_t m : {0, 1, 2, 6, 7}) zeros[static_cast<std::size_t>(2 * m)] = -0.0;
  check(8, {zeros});
}

TEST_CASE("bins 0 and n/2 are real: their imaginary codes are 1 and their scales 0", "[vidkv]") {
  // 64 channels, 32 easy (n even): Im X_0 and Im X_16 are components 1 and 33. A sum of
  // ±x·sin(π) would leave ±1e−16 there and code about half of them 0.
  kv_cache<float> c = make_cache<float>(2, 64, 64, kv_layout::contiguous);
  fill(c.cache, 41);
  const vidkv_keys k{1.5, true, 32};
  key_buffers<float> out(k, {2, 64, 64});
  REQUIRE(quantize_keys(k, c.cache, out) == status::ok);
  const index_t cols = out.spectral.code_extents.cols;
  REQUIRE(cols == 64);
  for (index_t h = 0; h < 2; ++h)
    for (index_t w = 0; w < 2; ++w)
      for (index_t comp : {index_t{1}, index_t{33}}) {
        INFO("head " << h << " word row " << w << " component " << comp);
        CHECK(out.spectral.codes[static_cast<std::size_t>((h * 2 + w) * cols + comp)] == 0xFFFFFFFFu);
        CHECK(out.spectral.scale[static_cast<std::size_t>((h * 2 + w) * cols + comp)] == 0.0f);
      }
}

TEST_CASE("mixed keys at 2 bits are per-channel 2-bit keys; at 1 bit VidKV's nbits = 1", "[vidkv]") {
  kv_cache<float> c = make_cache<float>(2, 64, 48, kv_layout::strided);
  fill(c.cache, 42);
  const kv_problem p{2, 64, 48};
  key_buffers<float> mixed(vidkv_keys{2.0, true, 32}, p), uniform(vidkv_keys{2.0, false, 32}, p);
  REQUIRE(quantize_keys({2.0, true, 32}, c.cache, mixed) == status::ok);
  REQUIRE(quantize_keys({2.0, false, 32}, c.cache, uniform) == status::ok);
  CHECK(mixed == uniform);
  key_buffers<float> plain(vidkv_keys{2.0, false, 32}, p);
  // …and both equal uniform_quantize's 2-bit per-channel format.
  const uniform_format f{2, 32, kv_group_axis::tokens, kv_scheme::asymmetric};
  REQUIRE(apply(cpu<>{}, uniform_quantize{f}, kv_inputs<float>{c.cache}, plain.difficult.out()) == status::ok);
  CHECK(plain.difficult == uniform.difficult);
  key_buffers<float> one_mixed(vidkv_keys{1.0, true, 32}, p), one_scalar(vidkv_keys{1.0, false, 32}, p);
  REQUIRE(quantize_keys({1.0, true, 32}, c.cache, one_mixed) == status::ok);
  REQUIRE(quantize_keys({1.0, false, 32}, c.cache, one_scalar) == status::ok);
  CHECK(one_mixed == one_scalar);
}

TEST_CASE("difficult channels: largest range first, ties to the lower channel, NaN last", "[vidkv]") {
  // 64 channels, k = 32. Every channel alternates ±a_c over the tokens; a_c = 1 for all but a
  // few, so most ranges tie at 2.
  std::vector<float> x(1 * 64 * 64);
  const auto amplitude = [](index_t c) { return c == 40 ? 3.0f : c == 50 ? 0.5f : c == 63 ? INFINITY : 1.0f; };
  for (index_t t = 0; t < 64; ++t)
    for (index_t c = 0; c < 64; ++c) x[static_cast<std::size_t>(t * 64 + c)] = (t % 2 ? 1.0f : -1.0f) * amplitude(c);
  x[static_cast<std::size_t>(5 * 64 + 3)] = NAN;  // channel 3's range is NaN
  const view<float, 3> cache(x.data(), {1, 64, 64});
  key_buffers<float> out(vidkv_keys{1.5, true, 32}, {1, 64, 64});
  REQUIRE(quantize_keys({1.5, true, 32}, cache, out) == status::ok);
  // Difficult: 63 (inf), 40 (range 6), then the lowest 30 channels of range 2: 0 … 30 without 3.
  std::vector<std::int64_t> want;
  for (std::int64_t c = 0; c <= 30; ++c)
    if (c != 3) want.push_back(c);
  want.push_back(40);
  want.push_back(63);
  REQUIRE(want.size() == 32);
  for (std::int64_t c = 0; c < 64; ++c)
    if (std::find(want.begin(), want.begin() + 32, c) == want.begin() + 32) want.push_back(c);
  CHECK(out.channels == want);
  CHECK(out.channels == ref::channel_order<float>(tensor_of(cache), 32, false));
}

TEST_CASE("non-finite keys: a NaN spoils its group's easy channels, an infinity its difficult group", "[vidkv]") {
  kv_cache<float> c = make_cache<float>(2, 64, 64, kv_layout::contiguous);
  fill(c.cache, 43);
  c.cache(0, 5, 3) = NAN;        // channel 3: range NaN, ranks last → easy
  c.cache(1, 40, 10) = INFINITY; // channel 10: range inf, ranks first → difficult
  const vidkv_keys k{1.5, true, 32};
  key_buffers<float> out(k, {2, 64, 64});
  REQUIRE(quantize_keys(k, c.cache, out) == status::ok);
  const auto easy_at = std::find(out.channels.begin(), out.channels.end(), 3) - out.channels.begin();
  const auto hard_at = std::find(out.channels.begin(), out.channels.end(), 10) - out.channels.begin();
  CHECK(easy_at >= 32);
  CHECK(hard_at < 32);
  const std::vector<float> y = dequantize_keys(k, false, out, {2, 64, 64}, 1);
  const auto at = [&](index_t h, index_t t, std::int64_t ch) { return y[static_cast<std::size_t>((h * 64 + t) * 64 + ch)]; };
  bool as_documented = true;
  for (index_t h = 0; h < 2; ++h)
    for (index_t t = 0; t < 64; ++t)
      for (index_t j = 0; j < 64; ++j) {
        const std::int64_t ch = out.channels[static_cast<std::size_t>(j)];
        const bool spoiled = (h == 0 && t < 32 && j >= 32) || (h == 1 && t >= 32 && ch == 10);
        as_documented = as_documented && std::isnan(at(h, t, ch)) == spoiled;
      }
  CHECK(as_documented);
}

// --- the CUDA kernels' per-thread bodies, on the host ---------------------------------------

/// Host twiddles of an n-point DFT, as the CUDA backend passes them to its kernels.
struct host_twiddles {
  std::vector<double> cos, sin;
  explicit host_twiddles(index_t n) : cos(static_cast<std::size_t>(n) + 1), sin(cos.size()) {
    detail::fill_twiddle_rows(cos.data(), sin.data(), n);
  }
};

/// Key quantization as the CUDA backend runs it: channel extremes over `row_blocks` consecutive
/// row ranges merged in order, the channel list from channel_position, then every difficult
/// and every spectral unit, each phase in reverse order.
template <class E>
void quantize_keys_by_units(const vidkv_keys& k, const view<const E, 3>& x, key_buffers<E>& out, index_t row_blocks) {
  const index_t heads = x.extent(0), tokens = x.extent(1), dim = x.extent(2), rows = heads * tokens;
  const vidkv_key_layout l = vidkv_key_layout_of(k, dim);
  const detail::vidkv_key_plan w{l, k.round_each_op, false, heads, tokens};
  const vidkv_packed_keys<E> o = out.out();
  if (l.difficult > 0 && l.easy > 0) {
    std::vector<detail::channel_extremes> total(static_cast<std::size_t>(dim));
    for (index_t b = 0; b < row_blocks; ++b)
      for (index_t c = 0; c < dim; ++c) {
        detail::channel_extremes part;
        for (index_t r = rows * b / row_blocks; r < rows * (b + 1) / row_blocks; ++r)
          part.add(to_float(x(r / tokens, r % tokens, c)));
        total[static_cast<std::size_t>(c)].merge(part);
      }
    const auto key = [&](index_t c) { return total[static_cast<std::size_t>(c)].template key<E>(k.round_each_op); };
    std::vector<char> difficult(static_cast<std::size_t>(dim));
    for (index_t c = 0; c < dim; ++c) difficult[static_cast<std::size_t>(c)] = detail::ranks_difficult(key, dim, l.difficult, c);
    const auto flag = [&](index_t c) { return difficult[static_cast<std::size_t>(c)] != 0; };
    for (index_t c = 0; c < dim; ++c) o.channels(detail::channel_position(flag, l.difficult, c)) = c;
  } else {
    for (index_t c = 0; c < dim; ++c) o.channels(c) = c;
  }
  const view<const std::int64_t, 1> channels = o.channels;
  detail::with_difficult_scheme(l, [&](auto tag) {
    for (index_t u = w.difficult_units(); u-- > 0;)
      detail::vidkv_difficult_quantize<decltype(tag)::value>(w, x, channels, o.difficult, u);
  });
  const host_twiddles tw(l.easy);
  for (index_t u = w.spectral_units(); u-- > 0;)
    detail::vidkv_spectral_quantize(w, tw.cos.data(), tw.sin.data(), x, channels, o.spectral, u);
}

/// Key dequantization as the CUDA backend runs it: every difficult unit, then every easy item,
/// each phase in reverse order, into `y` (its tokens are the packed ones).
template <class E, class Eout>
void dequantize_key_units(const vidkv_keys& k, bool vidkv_dequant, const vidkv_packed_keys<const E>& in,
                          const view<Eout, 3>& y) {
  const vidkv_key_layout l = vidkv_key_layout_of(k, y.extent(2));
  const detail::vidkv_key_plan w{l, k.round_each_op, vidkv_dequant, y.extent(0), y.extent(1)};
  detail::with_difficult_scheme(l, [&](auto tag) {
    for (index_t u = w.difficult_units(); u-- > 0;) detail::vidkv_difficult_dequantize<decltype(tag)::value>(w, in, y, u);
  });
  const host_twiddles tw(l.easy);
  for (index_t i = w.easy_items(); i-- > 0;) detail::vidkv_easy_dequantize(w, tw.cos.data(), tw.sin.data(), in, y, i);
}

/// dequantize_key_units into (heads, tokens, head_dim) rows of Eout of stride head_dim + 3,
/// sentinel-filled.
template <class Eout, class E>
std::vector<Eout> dequantize_keys_by_units(const vidkv_keys& k, bool vidkv_dequant, const key_buffers<E>& in,
                                           const kv_problem& p) {
  const index_t row = p.head_dim + 3;
  std::vector<Eout> y(static_cast<std::size_t>(p.heads * p.tokens * row), from_float<Eout>(-9.0f));
  dequantize_key_units(k, vidkv_dequant, in.in(), view<Eout, 3>(y.data(), {p.heads, p.tokens, p.head_dim}, {p.tokens * row, row, 1}));
  return y;
}

/// The CPU backend's dequantization into the same padded rows.
template <class Eout, class E>
std::vector<Eout> dequantize_keys_padded(const vidkv_keys& k, bool vidkv_dequant, const key_buffers<E>& in,
                                         const kv_problem& p) {
  const index_t row = p.head_dim + 3;
  std::vector<Eout> y(static_cast<std::size_t>(p.heads * p.tokens * row), from_float<Eout>(-9.0f));
  const view<Eout, 3> out(y.data(), {p.heads, p.tokens, p.head_dim}, {p.tokens * row, row, 1});
  host_workspace ws(workspace_bytes(cpu<>{}, vidkv_key_dequantize{k, vidkv_dequant}, p));
  REQUIRE(apply(cpu<>{}, vidkv_key_dequantize{k, vidkv_dequant}, in.in(), kv_outputs<Eout>{out}, ws.get()) ==
          status::ok);
  return y;
}

/// Every key setting on `x`: the units' packed keys equal the CPU backend's byte for byte
/// (sentinels included), and their dequantized keys (to E and to fp32) bit for bit.
template <class E>
void check_key_units(const view<E, 3>& x, bool each_op) {
  const kv_problem p{x.extent(0), x.extent(1), x.extent(2)};
  for (vidkv_keys k : key_settings(32)) {
    k.round_each_op = each_op;
    if (can_implement(vidkv_key_quantize{k}, p) != status::ok) continue;
    INFO(describe(k) << " " << element_name<E>() << " (" << p.heads << ", " << p.tokens << ", " << p.head_dim << ")");
    key_buffers<E> backend(k, p);
    REQUIRE(quantize_keys(k, x, backend) == status::ok);
    for (index_t blocks : {1, 3}) {
      key_buffers<E> units(k, p);
      quantize_keys_by_units(k, view<const E, 3>(x), units, blocks);
      CHECK(units == backend);
    }
    for (bool vidkv_dequant : {false, true}) {
      CHECK(same_bytes(dequantize_keys_by_units<E>(k, vidkv_dequant, backend, p),
                       dequantize_keys_padded<E>(k, vidkv_dequant, backend, p)));
      CHECK(same_bytes(dequantize_keys_by_units<float>(k, vidkv_dequant, backend, p),
                       dequantize_keys_padded<float>(k, vidkv_dequant, backend, p)));
    }
  }
}

TEST_CASE("VidKV's CUDA key units, run on the host, write exactly what the CPU backend writes", "[vidkv][units]") {
  kv_cache<float> a = make_cache<float>(2, 96, 64, kv_layout::cells);
  fill(a.cache, 51);
  a.cache(0, 5, 3) = NAN;        // a NaN range ranks last, though the channel's values span
  a.cache(1, 50, 3) = 1000.0f;   // the widest range
  a.cache(1, 40, 10) = INFINITY; // an infinite one first
  check_key_units(a.cache, false);
  kv_cache<f16> b = make_cache<f16>(1, 64, 45, kv_layout::strided);  // odd easy counts
  fill(b.cache, 52);
  check_key_units(b.cache, true);
  kv_cache<bf16> c = make_cache<bf16>(2, 64, 128, kv_layout::reversed);
  fill(c.cache, 53);
  check_key_units(c.cache, false);
  // Ranges that differ in fp32 and tie in fp16 (2048.5 and 2049 both round to 2048): with
  // round_each_op the lower channel, 31, takes the 32nd difficult place, else channel 32.
  kv_cache<f16> d = make_cache<f16>(1, 64, 64, kv_layout::contiguous);
  for (index_t t = 0; t < 64; ++t)
    for (index_t ch = 0; ch < 64; ++ch) {
      const float top = ch < 31 ? 4000.0f : ch == 31 ? 0.5f : 1.0f;
      const float bottom = ch < 31 ? -4000.0f : ch <= 32 ? -2048.0f : -1.0f;
      d.cache(0, t, ch) = from_float<f16>(t % 2 ? top : bottom);
    }
  check_key_units(d.cache, true);
}

/// vidkv_read as the CUDA backend runs it: the packed keys by the key units, then every
/// vidkv_read_unit in reverse order, into outputs filled as cache_buffers::read fills them.
template <class E>
void read_by_units(const cache_buffers<E>& cache, const view<const E, 3>& k, const view<const E, 3>& v,
                   std::vector<E>& ko, std::vector<E>& vo) {
  const index_t heads = cache.storage.heads, dim = cache.storage.head_dim;
  const index_t total = cache.state.packed + cache.state.residual + k.extent(1);
  ko.assign(static_cast<std::size_t>(heads * total * dim), from_float<E>(-3.0f));
  vo = ko;
  const vidkv_read_inputs<E> in{cache.in(), cache.state, k, v};
  const vidkv_read_outputs<E> out{view<E, 3>(ko.data(), {heads, total, dim}), view<E, 3>(vo.data(), {heads, total, dim})};
  must_succeed(detail::check_vidkv_read_views(cpu<>{}, vidkv_read{cache.config}, in, out), "vidkv_read's checks");
  if (cache.state.packed > 0)
    dequantize_key_units(vidkv_keys_of(cache.config), cache.config.vidkv_dequant, in.cache.keys,
                         token_range(out.keys, 0, cache.state.packed));
  const detail::vidkv_read_plan w = detail::vidkv_read_plan_of(cache.config, in);
  detail::with_scheme(vidkv_value_format(cache.config).scheme, [&](auto tag) {
    for (index_t u = w.count(); u-- > 0;) detail::vidkv_read_unit<decltype(tag)::value>(w, in, out, u);
  });
}

/// vidkv_append as the CUDA backend runs it: the quantized keys by the key units (3 extremes
/// blocks), then every vidkv_append_unit in reverse order; the state advanced.
template <class E>
void append_by_units(cache_buffers<E>& cache, const view<const E, 3>& k, const view<const E, 3>& v,
                     const view<const E, 3>& seen_k, const view<const E, 3>& seen_v) {
  const vidkv& c = cache.config;
  const vidkv_append_inputs<E> in{k, v, cache.state, seen_k, seen_v};
  must_succeed(detail::check_vidkv_append(cpu<>{}, vidkv_append{c}, in, cache.out()), "vidkv_append's checks");
  const detail::vidkv_step step = detail::vidkv_step_of(c, cache.state, k.extent(1));
  if (step.quantizes()) quantize_keys_by_units(vidkv_keys_of(c), detail::vidkv_quantized_keys(step, in), cache.keys, 3);
  const detail::vidkv_append_plan w = detail::vidkv_append_plan_of(c, step, cache.out());
  const view<const E, 3> x = step.quantizes() ? detail::vidkv_quantized_values(step, in) : view<const E, 3>{};
  detail::with_scheme(vidkv_value_format(c).scheme, [&](auto tag) {
    for (index_t u = w.count(); u-- > 0;) detail::vidkv_append_unit<decltype(tag)::value>(w, x, in, cache.out(), u);
  });
  cache.state = step.after;
}

/// Streams `prefill` tokens then `steps` single tokens through two caches, one by the CPU
/// backend and one by the units: after every step the reads and every byte of the caches agree.
template <class E>
void check_cache_units(const vidkv& c, index_t heads, index_t dim, index_t prefill, index_t steps, index_t capacity,
                       kv_layout how, const std::vector<std::int64_t>& salient = {}, index_t salient_capacity = 0) {
  INFO(element_name<E>() << " keys " << c.key_bits << (c.mixed_keys ? " mixed" : "") << " values " << c.value_bits
                         << " R " << c.residual << " prefill " << prefill << " salient " << salient.size());
  kv_cache<E> k = make_cache<E>(heads, prefill + steps, dim, how), v = make_cache<E>(heads, prefill + steps, dim, how);
  fill(k.cache, 61);
  fill(v.cache, 62);
  cache_buffers<E> backend(c, heads, capacity, dim, salient, salient_capacity), units = backend;
  for (index_t s = 0; s <= steps; ++s) {
    const index_t first = s == 0 ? 0 : prefill + s - 1, n = s == 0 ? prefill : 1;
    INFO("step " << s);
    const view<const E, 3> nk = tokens_of(k.cache, first, n), nv = tokens_of(v.cache, first, n);
    std::vector<E> ko, vo;
    read_by_units(units, nk, nv, ko, vo);
    const auto [want_k, want_v] = backend.step(nk, nv);
    REQUIRE(same_bytes(ko, want_k));
    REQUIRE(same_bytes(vo, want_v));
    const index_t total = ko.size() / static_cast<std::size_t>(heads * dim);
    append_by_units(units, nk, nv, view<const E, 3>(ko.data(), {heads, total, dim}),
                    view<const E, 3>(vo.data(), {heads, total, dim}));
    REQUIRE(units == backend);
  }
  std::vector<E> ko, vo, want_k, want_v;
  read_by_units(units, {}, {}, ko, vo);
  REQUIRE(backend.read({}, {}, want_k, want_v) == status::ok);
  CHECK(same_bytes(ko, want_k));
  CHECK(same_bytes(vo, want_v));
}

TEST_CASE("value_position_walk: each group's tokens in cache order, in any order asked, and no read past a corrupt list", "[vidkv][units]") {
  const index_t packed = 256, group = 32;
  rng r(77);
  for (index_t listed : {0, 32, 64, 96, 224}) {
    INFO(listed << " listed");
    // `listed` distinct positions below P, ascending; the unlisted ones in order after them.
    std::vector<char> is_listed(static_cast<std::size_t>(packed), 0);
    for (index_t chosen = 0; chosen < listed;) {
      char& flag = is_listed[static_cast<std::size_t>(r.next() % packed)];
      chosen += flag == 0;
      flag = 1;
    }
    std::vector<std::int64_t> salient, order;
    for (index_t p = 0; p < packed; ++p) (is_listed[static_cast<std::size_t>(p)] ? salient : order).push_back(p);
    order.insert(order.end(), salient.begin(), salient.end());  // groups of unlisted, then listed tokens
    const auto list = make_view(static_cast<const std::int64_t*>(salient.data()), listed);
    for (index_t g = 0; g < packed / group; ++g) {
      const detail::value_group_slot slot = detail::value_group_slot_of(listed, packed, group, g);
      index_t positions[detail::uniform_max_group];
      detail::value_positions(list, listed, group, slot, positions);
      for (index_t t = 0; t < group; ++t) CHECK(positions[t] == order[static_cast<std::size_t>(g * group + t)]);
      // The walk asked out of order: passes that start over, and steps back to any token.
      detail::value_position_walk<host_space> walk(list, listed, group, slot);
      for (index_t t : {0, 1, 31, 0, 5, 3, 17, 16, 31, 30, 2}) CHECK(walk(t) == order[static_cast<std::size_t>(g * group + t)]);
    }
  }
  // A device list is not checked: descending, repeated, negative or huge entries give positions
  // the units bound-check. The walk reads only the list's `listed` entries (the sanitizers watch
  // the exact-size buffer) and never steps back; a listed group takes the entries as they are.
  const index_t listed = 64;
  for (int kind = 0; kind < 4; ++kind) {
    INFO("corrupt list " << kind);
    std::vector<std::int64_t> corrupt(static_cast<std::size_t>(listed));
    for (index_t i = 0; i < listed; ++i)
      corrupt[static_cast<std::size_t>(i)] = kind == 0 ? packed - 1 - i : kind == 1 ? 7 : kind == 2 ? -5 - i : (1ll << 40) + i;
    const auto list = make_view(static_cast<const std::int64_t*>(corrupt.data()), listed);
    for (index_t g = 0; g < packed / group; ++g) {
      const detail::value_group_slot slot = detail::value_group_slot_of(listed, packed, group, g);
      index_t positions[detail::uniform_max_group];
      detail::value_positions(list, listed, group, slot, positions);
      for (index_t t = 0; t < group; ++t) {
        if (slot.salient) CHECK(positions[t] == corrupt[static_cast<std::size_t>(slot.row * group + t)]);
        else if (t > 0) CHECK(positions[t] > positions[t - 1]);
      }
    }
  }
}

TEST_CASE("VidKV's CUDA cache units, run on the host, write exactly what the CPU backend writes", "[vidkv][units]") {
  for_each_vidkv_stream([](auto element, const vidkv& c, index_t heads, index_t dim, index_t prefill, index_t steps,
                           index_t capacity, kv_layout how, const std::vector<std::int64_t>& salient,
                           index_t salient_capacity) {
    using E = typename decltype(element)::type;
    check_cache_units<E>(c, heads, dim, prefill, steps, capacity, how, salient, salient_capacity);
  });
}

// --- the streaming cache ------------------------------------------------------------------------

/// Codes or parameters (heads, rows, dim) against VidKV's channel-major [1, heads, dim, rows].
template <class A, class B>
bool equal_transposed(const std::vector<A>& got, const std::vector<B>& want, index_t heads, index_t rows, index_t dim) {
  if (got.size() != want.size() || got.size() != static_cast<std::size_t>(heads * rows * dim)) return false;
  for (index_t h = 0; h < heads; ++h)
    for (index_t r = 0; r < rows; ++r)
      for (index_t d = 0; d < dim; ++d)
        if (!(got[static_cast<std::size_t>((h * rows + r) * dim + d)] == want[static_cast<std::size_t>((h * dim + d) * rows + r)]))
          return false;
  return true;
}

TEST_CASE("golden: VidKV's 2-bit cache, its prefill entries and what update() returns", "[vidkv][golden]") {
  const std::string dir = golden_case("vidkv", "vlm_k2v2_g32_r128_N100");
  const index_t heads = json_int(dir, "num_heads"), dim = json_int(dir, "head_dim");
  const index_t prefill = json_int(dir, "prefill_tokens"), steps = json_int(dir, "decode_steps");
  vidkv c;
  c.key_bits = c.value_bits = json_number(dir, "nbits");  // VidKV's scalar nbits: per-channel keys
  c.mixed_keys = false;
  c.group = json_int(dir, "q_group_size");
  c.residual = json_int(dir, "residual_length");
  REQUIRE(c.key_bits == 2.0);
  REQUIRE(steps == 1);
  std::vector<float> keys = load_npy(dir + "input_k.npy").as<float>(), values = load_npy(dir + "input_v.npy").as<float>();
  const view<float, 3> k(keys.data(), {heads, prefill + steps, dim}), v(values.data(), {heads, prefill + steps, dim});

  // The first `used_rows` of `per_head_rows` rows of each head.
  const auto first = [&](const auto& all, index_t per_head_rows, index_t used_rows) {
    std::vector<std::decay_t<decltype(all[0])>> out;
    for (index_t h = 0; h < heads; ++h)
      out.insert(out.end(), all.begin() + h * per_head_rows * dim, all.begin() + (h * per_head_rows + used_rows) * dim);
    return out;
  };

  cache_buffers<float> cache(c, heads, 128, dim);
  const auto [k_prefill, v_prefill] = cache.step(tokens_of(k, 0, prefill), tokens_of(v, 0, prefill));
  CHECK(k_prefill == first(keys, prefill + steps, prefill));  // update() returns its input
  CHECK(v_prefill == first(values, prefill + steps, prefill));
  CHECK(cache.state.packed == 96);
  CHECK(cache.state.residual == 4);
  // The packed entries, stored by VidKV channel-major.
  const index_t rows = 96 * 2 / 32, groups = 96 / c.group;
  // The cache is sized for C = 128 tokens: compare the first 96 of each head.
  const auto words = [&](const char* name) { return load_npy(dir + name).as<std::uint32_t>(); };
  const auto floats = [&](const char* name) { return load_npy(dir + name).as<float>(); };
  CHECK(equal_transposed(first(cache.keys.difficult.codes, 128 * 2 / 32, rows), words("k_codes.npy"), heads, rows, dim));
  CHECK(equal_transposed(first(cache.keys.difficult.scale, 128 / 32, groups), floats("k_scale.npy"), heads, groups, dim));
  CHECK(equal_transposed(first(cache.keys.difficult.zero, 128 / 32, groups), floats("k_mn.npy"), heads, groups, dim));
  CHECK(equal_transposed(first(cache.values.codes, 128 * 2 / 32, rows), words("v_codes.npy"), heads, rows, dim));
  CHECK(equal_transposed(first(cache.values.scale, 128 / 32, groups), floats("v_scale.npy"), heads, groups, dim));
  CHECK(equal_transposed(first(cache.values.zero, 128 / 32, groups), floats("v_mn.npy"), heads, groups, dim));

  // The cache as it stands: the dequantized prefill, then the 4 residual tokens.
  std::vector<float> ko, vo;
  REQUIRE(cache.read({}, {}, ko, vo) == status::ok);
  const std::vector<float> k_dequant = floats("k_dequant_prefill.npy"), v_dequant = floats("v_dequant_prefill.npy");
  CHECK(first(ko, prefill, 96) == k_dequant);
  CHECK(first(vo, prefill, 96) == v_dequant);

  // Decode step 0: update() returns [dequantized, residual, new] and keeps the new token.
  const auto [k_step, v_step] = cache.step(tokens_of(k, prefill, 1), tokens_of(v, prefill, 1));
  CHECK(k_step == floats("dequant_k_step0.npy"));
  CHECK(v_step == floats("dequant_v_step0.npy"));
  CHECK(cache.state.packed == 96);
  CHECK(cache.state.residual == 5);
}

TEST_CASE("when VidKV flushes: residual + 1 ≥ R, never with an empty residual", "[vidkv]") {
  vidkv c;
  c.group = 32;
  c.residual = 64;
  const auto is = [](vidkv_state s, index_t packed, index_t residual) {
    return s.packed == packed && s.residual == residual;
  };
  CHECK(is(vidkv_after(c, {0, 0}, 100), 96, 4));  // prefill: the last N mod G stay
  CHECK(is(vidkv_after(c, {0, 0}, 64), 64, 0));
  CHECK(is(vidkv_after(c, {0, 0}, 20), 0, 20));
  CHECK(is(vidkv_after(c, {64, 61}, 1), 64, 62));
  CHECK(is(vidkv_after(c, {64, 62}, 1), 64, 63));  // 62 + 1 < 64
  CHECK(is(vidkv_after(c, {64, 63}, 1), 128, 0));  // 63 + 1 ≥ 64: everything re-quantized
  CHECK(is(vidkv_after(c, {64, 0}, 1), 64, 1));    // an empty residual never flushes
  CHECK(!vidkv_flushes(c, {64, 62}));
  CHECK(vidkv_flushes(c, {64, 63}));
  CHECK(vidkv_flushes(c, {0, 63}));
  CHECK(!vidkv_flushes(c, {128, 0}));
}

/// Whether a step's read is the previous step's read followed by the step's incoming tokens,
/// bit for bit: what an engine that keeps the previous read relies on when an append packs nothing.
template <class E>
bool extends(const std::vector<E>& read, const std::vector<E>& previous, const view<const E, 3>& incoming) {
  const index_t heads = incoming.extent(0), n = incoming.extent(1), dim = incoming.extent(2);
  const index_t before = static_cast<index_t>(previous.size()) / (heads * dim), total = before + n;
  if (static_cast<index_t>(read.size()) != heads * total * dim) return false;
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < total; ++t)
      for (index_t d = 0; d < dim; ++d) {
        const E got = read[static_cast<std::size_t>((h * total + t) * dim + d)];
        const E want =
            t < before ? previous[static_cast<std::size_t>((h * before + t) * dim + d)] : incoming(h, t - before, d);
        if (bits_of(got) != bits_of(want)) return false;
      }
  return true;
}

/// Streams `prefill` tokens then `steps` single tokens through the cache and checks, at every
/// step, that vidkv_read returns exactly what VidKV's update returns (replayed by the oracle),
/// and that after an append that packs nothing the next read extends the previous one.
template <class E>
void replay(const vidkv& c, index_t heads, index_t dim, index_t prefill, index_t steps, index_t capacity,
            kv_layout how, int nth, int want_flushes, const std::vector<std::int64_t>& salient = {},
            index_t salient_capacity = 0) {
  INFO(element_name<E>() << " keys " << c.key_bits << (c.mixed_keys ? " mixed" : "") << " values " << c.value_bits
                         << " R " << c.residual << " prefill " << prefill << " nth " << nth << " salient "
                         << salient.size());
  kv_cache<E> k = make_cache<E>(heads, prefill + steps, dim, how), v = make_cache<E>(heads, prefill + steps, dim, how);
  fill(k.cache, 51);
  fill(v.cache, 52);
  ref::cache_replay<E> oracle(c, heads, dim, salient);
  cache_buffers<E> cache(c, heads, capacity, dim, salient, salient_capacity);
  int flushes = 0, extended = 0;
  std::vector<E> last_k, last_v;
  bool packed_nothing = false;  // the last append left `packed` as it was
  for (index_t s = 0; s <= steps; ++s) {
    const index_t first = s == 0 ? 0 : prefill + s - 1, n = s == 0 ? prefill : 1;
    INFO("step " << s);
    const auto [want_k, want_v] = oracle.update(tensor_of(tokens_of(k.cache, first, n)), tensor_of(tokens_of(v.cache, first, n)));
    const index_t packed_before = cache.state.packed;
    auto [got_k, got_v] = cache.step(tokens_of(k.cache, first, n), tokens_of(v.cache, first, n), nth);
    const bool same = same_bits(got_k, want_k.v) && same_bits(got_v, want_v.v);
    CHECK(same);
    if (!same) return;
    if (packed_nothing) {
      CHECK(extends(got_k, last_k, tokens_of(k.cache, first, n)));
      CHECK(extends(got_v, last_v, tokens_of(v.cache, first, n)));
      ++extended;
    }
    flushes += s > 0 && cache.state.packed != packed_before;
    packed_nothing = cache.state.packed == packed_before;
    last_k = std::move(got_k);
    last_v = std::move(got_v);
  }
  CHECK(extended > 0);
  CHECK(flushes == want_flushes);
  // After the last step the cache reads back as the oracle holds it.
  std::vector<E> ko, vo;
  REQUIRE(cache.read({}, {}, ko, vo) == status::ok);
  const ref::tensor3 held_k = ref::concat({&oracle.keys, &oracle.key_res}, heads, dim);
  const ref::tensor3 held_v = ref::concat({&oracle.values, &oracle.value_res}, heads, dim);
  CHECK(same_bits(ko, held_k.v));
  CHECK(same_bits(vo, held_v.v));
}

TEST_CASE("streaming: every update() return equals VidKV's, through prefills and flushes", "[vidkv][stream]") {
  vidkv paper;  // keys 1.5 bits mixed, values 1.58, G = 32
  paper.residual = 64;
  // Prefill 70 → (64, 6); the residual reaches 63 after 57 steps, flushes at step 58 (→ 128)
  // and again at step 122 (→ 192).
  for (int nth : {1, 2, 3}) replay<float>(paper, 2, 64, 70, 140, 256, kv_layout::contiguous, nth, 2);
  replay<f16>(paper, 2, 64, 70, 130, 256, kv_layout::cells, 2, 2);
  replay<bf16>(paper, 3, 48, 70, 130, 256, kv_layout::strided, 3, 2);
  vidkv each_op = paper;
  each_op.round_each_op = true;
  replay<f16>(each_op, 2, 64, 70, 60, 256, kv_layout::contiguous, 1, 1);

  // All keys through the DFT, 1-bit values read back as VidKV does ({0, s}); a prefill of
  // whole groups leaves VidKV's 1-D empty residual, which the first step does not flush.
  vidkv one;
  one.key_bits = 1.0;
  one.value_bits = 1.0;
  one.residual = 32;
  one.vidkv_dequant = true;
  for (int nth : {1, 3}) replay<float>(one, 2, 40, 64, 70, 256, kv_layout::reversed, nth, 2);

  // Uniform 4-bit keys, 2-bit values: a prefill shorter than a group packs nothing, and its
  // residual of 31 flushes at the first step.
  vidkv wide;
  wide.key_bits = 4.0;
  wide.mixed_keys = false;
  wide.value_bits = 2.0;
  wide.residual = 32;
  replay<float>(wide, 2, 33, 31, 40, 128, kv_layout::contiguous, 2, 2);
  vidkv ternary = wide;
  ternary.key_bits = ternary.value_bits = 1.58;
  replay<bf16>(ternary, 1, 64, 31, 40, 128, kv_layout::cells, 1, 2);
}

std::vector<std::int64_t> joined(std::vector<std::int64_t> a, const std::vector<std::int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST_CASE("salient-token protection: every update() return equals VidKV's QuantizedCacheVLMSTP", "[vidkv][stream]") {
  vidkv paper;  // keys 1.5 bits mixed, values 1.58 (ternary), salient values 2 bits, G = 32
  paper.residual = 64;
  // Prefill 70 → 64 packed, flushes to 128 and 192 (as above). The odd positions below 64 are
  // salient from the prefill on; 32 more between 64 and 128 join at the first flush.
  const std::vector<std::int64_t> scattered = joined(every(1, 32, 2), joined(every(64, 16, 2), every(100, 16, 1)));
  for (int nth : {1, 2, 3}) replay<float>(paper, 2, 64, 70, 140, 256, kv_layout::contiguous, nth, 2, scattered, 64);
  replay<f16>(paper, 2, 64, 70, 130, 256, kv_layout::cells, 2, 2, scattered, 96);
  // A block of 32 after a 14-token prompt (VidKV's layout for LLaVA-OneVision), with positions
  // past anything the stream reaches, which never count.
  const std::vector<std::int64_t> block = joined(every(14, 32, 1), every(5000, 7, 3));
  replay<bf16>(paper, 3, 48, 70, 70, 256, kv_layout::strided, 3, 1, block, 32);
  // Nothing salient at the prefill (the first 32 listed lie past 64); 4-bit salient values.
  vidkv wide = paper;
  wide.salient_bits = 4;
  wide.value_bits = 1.0;
  wide.vidkv_dequant = true;
  replay<float>(wide, 2, 40, 70, 70, 256, kv_layout::reversed, 2, 1, every(70, 32, 1), 32);
  // Every packed token salient at the prefill: `values` holds nothing until the flush.
  vidkv uniform;
  uniform.key_bits = 2.0;
  uniform.mixed_keys = false;
  uniform.value_bits = 2.0;
  uniform.salient_bits = 8;
  uniform.residual = 32;
  replay<float>(uniform, 1, 33, 64, 40, 128, kv_layout::contiguous, 1, 1, every(0, 64, 1), 64);
}

TEST_CASE("salient-token protection: the salient tokens' values are the better ones", "[vidkv]") {
  // Ternary values lose more than 2-bit ones: protected tokens read back closer to the input.
  const vidkv c;  // residual 128
  const index_t heads = 2, dim = 64, tokens = 128;
  kv_cache<float> v = make_cache<float>(heads, tokens, dim, kv_layout::contiguous);
  for (index_t h = 0; h < heads; ++h)  // smooth values without outliers
    for (index_t t = 0; t < tokens; ++t)
      for (index_t ch = 0; ch < dim; ++ch)
        v.cache(h, t, ch) = std::sin(0.37f * static_cast<float>(t) + 1.3f * static_cast<float>(ch + h));
  const std::vector<std::int64_t> listed = every(0, 64, 2);
  cache_buffers<float> plain(c, heads, tokens, dim), protect(c, heads, tokens, dim, listed, 64);
  const view<const float, 3> x(v.cache);
  std::vector<float> kf, vf, kp, vp;
  REQUIRE(plain.append(x, x, {}, {}) == status::ok);
  REQUIRE(protect.append(x, x, {}, {}) == status::ok);
  plain.state = protect.state = vidkv_after(c, {}, tokens);
  REQUIRE(plain.read({}, {}, kf, vf) == status::ok);
  REQUIRE(protect.read({}, {}, kp, vp) == status::ok);
  CHECK(same_bits(kf, kp));  // keys are not affected
  double err_plain = 0.0, err_protect = 0.0;
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < tokens; ++t)
      for (index_t ch = 0; ch < dim; ++ch) {
        const std::size_t i = static_cast<std::size_t>((h * tokens + t) * dim + ch);
        if (t % 2 != 0) continue;
        err_plain += std::pow(vf[i] - x(h, t, ch), 2.0);
        err_protect += std::pow(vp[i] - x(h, t, ch), 2.0);
      }
  CHECK(err_protect < 0.75 * err_plain);  // 2-bit min–max against ternary: about 0.56 here
}

// --- bad input ----------------------------------------------------------------------------------

TEST_CASE("bad input: key quantization statuses, packed keys untouched", "[vidkv][bad_input]") {
  const vidkv_keys k{1.5, true, 32};
  const kv_problem p{2, 64, 64};
  std::vector<float> x(2 * 64 * 64, 0.5f);
  const view<float, 3> cache(x.data(), {2, 64, 64});
  key_buffers<float> out(k, p);
  const key_buffers<float> before = out;
  host_workspace ws(workspace_bytes(cpu<>{}, vidkv_key_quantize{k}, p));
  const auto q = [&](const vidkv_keys& keys, const view<float, 3>& c, const vidkv_packed_keys<float>& o,
                     cpu<> exec = {}, workspace w = {}) {
    return apply(exec, vidkv_key_quantize{keys}, kv_inputs<float>{c}, o, w.data ? w : ws.get());
  };
  CHECK(q(k, cache, out.out(), cpu<>{1, 1}) == status::invalid_exec);
  CHECK(q({1.5, true, 48}, cache, out.out()) == status::invalid_parameter);    // group not a multiple of 32
  CHECK(q({2.5, true, 32}, cache, out.out()) == status::invalid_parameter);    // mixed above 2 bits
  CHECK(q({0.5, true, 32}, cache, out.out()) == status::invalid_parameter);    // below 1 bit
  CHECK(q({3.0, false, 32}, cache, out.out()) == status::invalid_parameter);   // not one of VidKV's widths
  CHECK(q({1.5, true, 128}, cache, out.out()) == status::invalid_parameter);   // a group longer than the chunk
  CHECK(q({NAN, true, 32}, cache, out.out()) == status::invalid_parameter);
  CHECK(q(k, view<float, 3>(x.data(), {2, 0, 64}), out.out()) == status::empty_input);
  CHECK(q(k, view<float, 3>(nullptr, {2, 64, 64}), out.out()) == status::null_pointer);
  vidkv_packed_keys<float> bad = out.out();
  bad.channels = view<std::int64_t, 1>(out.channels.data(), {63});
  CHECK(q(k, cache, bad) == status::shape_mismatch);
  bad = out.out();
  bad.difficult.codes = view<std::uint32_t, 3>(out.difficult.codes.data(), {2, 4, 31});
  CHECK(q(k, cache, bad) == status::shape_mismatch);
  bad = out.out();
  bad.spectral.codes = view<std::uint32_t, 3>(out.spectral.codes.data(), {2, 2, 64}, {256, 128, 2});
  CHECK(q(k, cache, bad) == status::shape_mismatch);  // inner stride 2
  bad = out.out();
  bad.difficult.zero = view<float, 3>(nullptr, {2, 2, 32});
  CHECK(q(k, cache, bad) == status::null_pointer);
  bad = out.out();
  bad.spectral.scale = view<float, 3>(x.data(), {2, 2, 64});
  CHECK(q(k, cache, bad) == status::aliasing);  // over the input
  bad = out.out();
  bad.channels = view<std::int64_t, 1>(reinterpret_cast<std::int64_t*>(out.difficult.scale.data()), {64});
  CHECK(q(k, cache, bad) == status::aliasing);  // over another output
  // workspace_bytes fits every element type (16-bit caches also hold their rounded spectra).
  std::vector<std::byte> small(ws.bytes.size() / 2);
  CHECK(q(k, cache, out.out(), {}, {small.data(), small.size()}) == status::workspace_too_small);
  std::vector<f16> x16(x.size(), from_float<f16>(0.5f));
  key_buffers<f16> out16(k, p);
  const auto q16 = [&](std::size_t bytes) {
    return apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<f16>{view<f16, 3>(x16.data(), {2, 64, 64})}, out16.out(),
                 workspace{ws.bytes.data(), bytes});
  };
  CHECK(q16(ws.bytes.size() - 1) == status::workspace_too_small);
  CHECK(q16(ws.bytes.size()) == status::ok);
  CHECK(apply(cpu<>{}, vidkv_key_quantize{k}, kv_inputs<float>{cache}, out.out(), workspace{nullptr, ws.bytes.size()}) ==
        status::null_pointer);
  // The spectral part has no zero point: an empty view is fine.
  key_buffers<float> fresh(k, p);
  vidkv_packed_keys<float> no_zero = fresh.out();
  no_zero.spectral.zero = {};
  CHECK(q(k, cache, no_zero) == status::ok);
  CHECK(out == before);
}

TEST_CASE("bad input: key dequantization statuses, output untouched", "[vidkv][bad_input]") {
  const vidkv_keys k{1.5, true, 32};
  const kv_problem p{2, 64, 64};
  kv_cache<float> c = make_cache<float>(2, 64, 64, kv_layout::contiguous);
  fill(c.cache, 61);
  key_buffers<float> packed(k, p);
  REQUIRE(quantize_keys(k, c.cache, packed) == status::ok);
  std::vector<float> y(2 * 64 * 64, -3.0f);
  const view<float, 3> out(y.data(), {2, 64, 64});
  host_workspace ws(workspace_bytes(cpu<>{}, vidkv_key_dequantize{k}, p));
  const auto d = [&](const vidkv_packed_keys<const float>& in, const view<float, 3>& o, workspace w) {
    return apply(cpu<>{}, vidkv_key_dequantize{k}, in, kv_outputs<float>{o}, w);
  };
  CHECK(d(packed.in(), view<float, 3>(y.data(), {2, 64, 63}), ws.get()) == status::shape_mismatch);   // channels (64,)
  CHECK(d(packed.in(), view<float, 3>(y.data(), {2, 32, 64}), ws.get()) == status::shape_mismatch);    // packed for 64
  key_buffers<float> corrupt = packed;
  std::swap(corrupt.channels[0], corrupt.channels[40]);  // not ascending within its part
  CHECK(d(corrupt.in(), out, ws.get()) == status::invalid_parameter);
  corrupt = packed;
  corrupt.channels[63] = corrupt.channels[62];  // a channel twice
  CHECK(d(corrupt.in(), out, ws.get()) == status::invalid_parameter);
  corrupt.channels[63] = 64;  // out of range
  CHECK(d(corrupt.in(), out, ws.get()) == status::invalid_parameter);
  CHECK(d(packed.in(), view<float, 3>(reinterpret_cast<float*>(packed.spectral.codes.data()), {2, 64, 64}), ws.get()) ==
        status::aliasing);
  CHECK(d(packed.in(), out, workspace{ws.bytes.data(), ws.bytes.size() - 1}) == status::workspace_too_small);
  CHECK(std::all_of(y.begin(), y.end(), [](float v) { return v == -3.0f; }));
  CHECK(d(packed.in(), out, ws.get()) == status::ok);
}

TEST_CASE("bad input: cache append and read statuses, cache and outputs untouched", "[vidkv][bad_input]") {
  vidkv c;  // 1.5-bit keys, 1.58-bit values
  c.residual = 64;
  const index_t heads = 2, dim = 64, capacity = 128;
  kv_cache<float> k = make_cache<float>(heads, 200, dim, kv_layout::contiguous), v = k;
  fill(k.cache, 71);
  fill(v.cache, 72);
  cache_buffers<float> cache(c, heads, capacity, dim);
  cache.step(tokens_of(k.cache, 0, 70), tokens_of(v.cache, 0, 70));  // (64, 6)
  const cache_buffers<float> before = cache;
  const auto unchanged = [&] {
    return cache.keys == before.keys && cache.values == before.values && cache.key_residual == before.key_residual &&
           cache.value_residual == before.value_residual;
  };
  host_workspace ws(workspace_bytes(cpu<>{}, vidkv_append{c}, cache.storage));
  const auto append = [&](const vidkv& config, const view<const float, 3>& kn, const view<const float, 3>& vn,
                          vidkv_state st, const view<const float, 3>& seen_k = {}, const view<const float, 3>& seen_v = {},
                          cpu<> exec = {}, workspace w = {}) {
    return apply(exec, vidkv_append{config}, vidkv_append_inputs<float>{kn, vn, st, seen_k, seen_v}, cache.out(),
                 w.data ? w : ws.get());
  };
  const auto one_k = tokens_of(k.cache, 70, 1), one_v = tokens_of(v.cache, 70, 1);
  CHECK(append(c, one_k, one_v, cache.state, {}, {}, cpu<>{0, 0}) == status::invalid_exec);
  vidkv bad_config = c;
  bad_config.residual = 48;  // not a multiple of G
  CHECK(append(bad_config, one_k, one_v, cache.state) == status::invalid_parameter);
  bad_config = c;
  bad_config.value_bits = 3.0;
  CHECK(append(bad_config, one_k, one_v, cache.state) == status::invalid_parameter);
  CHECK(append(c, tokens_of(k.cache, 70, 0), tokens_of(v.cache, 70, 0), cache.state) == status::empty_input);
  CHECK(append(c, one_k, tokens_of(v.cache, 70, 2), cache.state) == status::shape_mismatch);
  CHECK(append(c, one_k, one_v, {48, 6}) == status::shape_mismatch);    // packed not a multiple of G
  CHECK(append(c, one_k, one_v, {160, 6}) == status::shape_mismatch);   // past the capacity
  CHECK(append(c, one_k, one_v, {64, 65}) == status::shape_mismatch);   // a residual past R
  CHECK(append(c, tokens_of(k.cache, 70, 60), tokens_of(v.cache, 70, 60), cache.state) == status::shape_mismatch);
  CHECK(append(c, one_k, one_v, {96, 63}) == status::shape_mismatch);   // the flush would pass C = 128
  CHECK(append(c, tokens_of(k.cache, 70, 2), tokens_of(v.cache, 70, 2), {64, 63}) == status::shape_mismatch);  // 129 tokens
  // A flushing step reads the step's vidkv_read outputs: they must be there.
  CHECK(append(c, one_k, one_v, {0, 63}) == status::shape_mismatch);
  std::vector<float> seen(static_cast<std::size_t>(heads * 64 * dim), 0.0f);
  const view<const float, 3> seen_view(seen.data(), {heads, 64, dim});
  CHECK(append(c, one_k, one_v, {0, 63}, seen_view, view<const float, 3>(nullptr, {heads, 64, dim})) == status::null_pointer);
  CHECK(append(c, one_k, one_v, {0, 63}, seen_view, view<const float, 3>(cache.key_residual.data(), {heads, 64, dim})) ==
        status::aliasing);
  CHECK(append(c, tokens_of(cache.residual_view(cache.value_residual), 0, 1), one_v, cache.state) == status::aliasing);
  vidkv_cache<float> overlapping = cache.out();
  CHECK(apply(cpu<>{}, vidkv_append{c}, vidkv_append_inputs<float>{one_k, one_v, cache.state, {}, {}},
              vidkv_cache<float>{overlapping.keys, overlapping.value_residual, overlapping.values,
                                 overlapping.value_residual, {}, {}},
              ws.get()) == status::aliasing);
  CHECK(append(c, one_k, one_v, cache.state, {}, {}, {}, workspace{ws.bytes.data(), ws.bytes.size() / 2}) ==
        status::workspace_too_small);
  // A workspace over the cache (a step that writes no scratch: nothing past the residual is
  // touched), or over the tokens a flush re-quantizes (one buffer holds both): the scratch is
  // written while the cache is.
  CHECK(append(c, one_k, one_v, cache.state, {}, {}, {}, workspace{cache.key_residual.data(), ws.bytes.size()}) ==
        status::aliasing);
  std::vector<float> wide(std::max(seen.size(), ws.bytes.size() / sizeof(float) + 1), 0.0f);
  const view<const float, 3> wide_seen(wide.data(), {heads, 64, dim});
  CHECK(append(c, one_k, one_v, {0, 63}, wide_seen, seen_view, {}, workspace{wide.data(), ws.bytes.size()}) ==
        status::aliasing);
  CHECK(unchanged());

  // Read: the outputs are checked before anything is written.
  std::vector<float> ko(static_cast<std::size_t>(heads * 71 * dim), -3.0f), vo = ko;
  host_workspace rws(workspace_bytes(cpu<>{}, vidkv_read{c}, cache.storage));
  const auto read = [&](vidkv_state st, const view<const float, 3>& kn, const view<const float, 3>& vn, index_t total,
                        float* kout, float* vout, workspace w = {}) {
    return apply(cpu<>{}, vidkv_read{c}, vidkv_read_inputs<float>{cache.in(), st, kn, vn},
                 vidkv_read_outputs<float>{view<float, 3>(kout, {heads, total, dim}), view<float, 3>(vout, {heads, total, dim})},
                 w.data ? w : rws.get());
  };
  CHECK(read(cache.state, one_k, one_v, 70, ko.data(), vo.data()) == status::shape_mismatch);  // 71 rows
  CHECK(read({64, 70}, one_k, one_v, 71, ko.data(), vo.data()) == status::shape_mismatch);
  CHECK(read({0, 0}, {}, {}, 0, ko.data(), vo.data()) == status::empty_input);
  CHECK(read(cache.state, one_k, one_v, 71, ko.data(), ko.data()) == status::aliasing);
  CHECK(read(cache.state, one_k, one_v, 71, cache.key_residual.data(), vo.data()) == status::aliasing);
  CHECK(read(cache.state, one_k, one_v, 71, ko.data(), vo.data(), workspace{rws.bytes.data(), rws.bytes.size() - 1}) ==
        status::workspace_too_small);
  cache_buffers<float> corrupt = cache;
  corrupt.keys.channels[0] = 7;
  CHECK(apply(cpu<>{}, vidkv_read{c}, vidkv_read_inputs<float>{corrupt.in(), cache.state, one_k, one_v},
              vidkv_read_outputs<float>{view<float, 3>(ko.data(), {heads, 71, dim}), view<float, 3>(vo.data(), {heads, 71, dim})},
              rws.get()) == status::invalid_parameter);
  CHECK(std::all_of(ko.begin(), ko.end(), [](float x) { return x == -3.0f; }));
  CHECK(std::all_of(vo.begin(), vo.end(), [](float x) { return x == -3.0f; }));
  CHECK(read(cache.state, one_k, one_v, 71, ko.data(), vo.data()) == status::ok);
}

TEST_CASE("bad input: salient lists and storage, cache and outputs untouched", "[vidkv][bad_input]") {
  const vidkv c;  // G = 32, R = 128
  const index_t heads = 2, dim = 64, capacity = 128;
  kv_cache<float> k = make_cache<float>(heads, 100, dim, kv_layout::contiguous);
  fill(k.cache, 5);
  const view<const float, 3> x = tokens_of(k.cache, 0, 100);  // a prefill: 96 packed, 4 kept
  // A prefill into a fresh cache with this list and salient capacity; on failure, nothing changed.
  const auto prefill = [&](const std::vector<std::int64_t>& listed, index_t salient_capacity, const vidkv& config,
                           const std::function<void(vidkv_cache<float>&)>& edit = {}) {
    cache_buffers<float> cache(config, heads, capacity, dim, listed, salient_capacity);
    const cache_buffers<float> before = cache;
    vidkv_cache<float> views = cache.out();
    if (edit) edit(views);
    host_workspace ws(workspace_bytes(cpu<>{}, vidkv_append{config}, cache.storage));
    const status s = apply(cpu<>{}, vidkv_append{config}, vidkv_append_inputs<float>{x, x, {}, {}, {}}, views, ws.get());
    if (s != status::ok)
      CHECK((cache.keys == before.keys && cache.values == before.values && cache.salient_values == before.salient_values &&
             cache.key_residual == before.key_residual && cache.value_residual == before.value_residual));
    return s;
  };
  CHECK(prefill(every(0, 32, 3), 32, c) == status::ok);
  CHECK(prefill(every(0, 64, 1), 64, c) == status::ok);
  CHECK(prefill({5, 3}, 32, c) == status::invalid_parameter);                 // not ascending
  CHECK(prefill({3, 3}, 32, c) == status::invalid_parameter);                 // a repeat
  CHECK(prefill(joined({-1}, every(0, 31, 1)), 32, c) == status::invalid_parameter);  // negative
  CHECK(prefill(every(0, 31, 3), 32, c) == status::shape_mismatch);          // 31 of the 96 packed: not a group
  CHECK(prefill(joined(every(0, 31, 3), {97}), 32, c) == status::shape_mismatch);  // 97 lies in the residual
  CHECK(prefill(every(0, 64, 1), 32, c) == status::shape_mismatch);          // 64 salient, room for 32
  vidkv three = c;
  three.salient_bits = 3;
  CHECK(prefill(every(0, 32, 3), 32, three) == status::invalid_parameter);
  CHECK(prefill(every(0, 32, 3), 32, c, [](vidkv_cache<float>& v) { v.salient_values.codes = {}; }) ==
        status::shape_mismatch);  // no storage for the salient codes
  CHECK(prefill(every(0, 32, 3), 32, c, [](vidkv_cache<float>& v) { v.salient_values.zero = v.values.zero; }) ==
        status::shape_mismatch);  // the values' zero points are another shape
  CHECK(prefill(every(0, 32, 3), 32, c, [](vidkv_cache<float>& v) {
          v.salient_values.scale = view<float, 3>(&v.values.scale(0, 0, 0), {2, 1, 64});
        }) == status::aliasing);
  // Without a list the salient storage is not looked at.
  CHECK(prefill({}, 0, c, [](vidkv_cache<float>& v) { v.salient_values.scale = v.values.scale; }) == status::ok);

  // A read whose packed tokens hold a salient count the cache cannot have written.
  cache_buffers<float> cache(c, heads, capacity, dim, every(0, 31, 3), 32);
  std::vector<float> ko(static_cast<std::size_t>(heads * 96 * dim), -3.0f), vo = ko;
  host_workspace rws(workspace_bytes(cpu<>{}, vidkv_read{c}, cache.storage));
  CHECK(apply(cpu<>{}, vidkv_read{c}, vidkv_read_inputs<float>{cache.in(), {96, 0}, {}, {}},
              vidkv_read_outputs<float>{view<float, 3>(ko.data(), {heads, 96, dim}), view<float, 3>(vo.data(), {heads, 96, dim})},
              rws.get()) == status::shape_mismatch);
  CHECK(std::all_of(ko.begin(), ko.end(), [](float v) { return v == -3.0f; }));
  CHECK(std::all_of(vo.begin(), vo.end(), [](float v) { return v == -3.0f; }));
}

}  // namespace
}  // namespace tokred::testing
