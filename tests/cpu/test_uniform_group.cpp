// tests/cpu/test_uniform_group.cpp — the value-by-value group arithmetic of
// <tokred/policy/uniform_group.hpp>, which is the whole per-thread body of the CUDA uniform
// quantization kernels, run on host views against the CPU backend.
//
// The CUDA kernels call quantize_unit, dequantize_unit and accumulate_key_logits once per thread
// on the thread's unit (uniform_unit_at); here every unit is run in a loop instead, so the
// arithmetic, the unit numbering, the word packing and the view indexing are checked on any
// machine — codes, scales, zero points and values bit for bit against the SIMD kernels of
// <tokred/cpu/uniform_quant.hpp>, logits against a double oracle. The device tests
// (tests/cuda/test_uniform_quant_cuda.cu) then check the launches on a GPU.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"
#include "support/kv_cache.hpp"
#include "support/uniform_buffers.hpp"

namespace tokred::testing {
namespace {

/// Every unit of the problem in the CUDA kernels' numbering, each exactly once.
TEST_CASE("units: every group once, innermost index fastest", "[uniform_group]") {
  for (kv_group_axis axis : {kv_group_axis::tokens, kv_group_axis::channels}) {
    const uniform_format f{2, 32, axis};
    const kv_problem p{3, 96, 64};
    const index_t count = detail::uniform_unit_count(f, p);
    const index_t outer = axis == kv_group_axis::tokens ? 3 : 96, inner = axis == kv_group_axis::tokens ? 64 : 2;
    CHECK(count == 3 * outer * inner);
    std::vector<int> seen(static_cast<std::size_t>(count), 0);
    for (index_t u = 0; u < count; ++u) {
      const detail::uniform_unit at = detail::uniform_unit_at(f, p, u);
      REQUIRE((at.head >= 0 && at.head < 3 && at.outer >= 0 && at.outer < outer && at.inner >= 0 && at.inner < inner));
      ++seen[static_cast<std::size_t>((at.head * outer + at.outer) * inner + at.inner)];
      if (u > 0) CHECK(detail::uniform_unit_at(f, p, u - 1).inner == (at.inner + inner - 1) % inner);
    }
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  }
}

/// True when a and b hold the same bits, or both hold a NaN.
template <class E>
bool same_or_both_nan(E a, E b) {
  return bits_of(a) == bits_of(b) || (std::isnan(to_float(a)) && std::isnan(to_float(b)));
}

/// Runs the unit bodies over a cache and compares with the CPU backend.
template <class E>
void check_units(const uniform_format& f, const view<E, 3>& cache, bool each_op, bool vidkv) {
  INFO(describe(f) << " " << element_name<E>() << (each_op ? " each-op" : "") << (vidkv ? " vidkv" : ""));
  const kv_problem prob = detail::kv_problem_of(cache);
  const view<const E, 3> x = cache;
  packed_buffers<E> want(f, prob), got(f, prob);
  REQUIRE(apply(cpu<>{}, uniform_quantize{f, each_op}, kv_inputs<E>{x}, want.out()) == status::ok);
  const index_t units = detail::uniform_unit_count(f, prob);
  detail::with_scheme(f.scheme, [&](auto tag) {
    constexpr kv_scheme S = decltype(tag)::value;
    for (index_t u = 0; u < units; ++u)
      detail::quantize_unit<S>(f, each_op, x, got.out(), detail::uniform_unit_at(f, prob, u));
  });
  CHECK(got.codes == want.codes);
  CHECK(std::memcmp(got.scale.data(), want.scale.data(), want.scale.size() * sizeof(E)) == 0);
  CHECK(std::memcmp(got.zero.data(), want.zero.data(), want.zero.size() * sizeof(E)) == 0);

  // Dequantized to the cache's type and to fp32: the same bits as the CPU backend.
  const auto dequantized = [&](auto out_type) {
    using Eout = decltype(out_type);
    const std::size_t n = static_cast<std::size_t>(prob.heads * prob.tokens * prob.head_dim);
    std::vector<Eout> cpu_values(n, from_float<Eout>(-9.0f)), unit_values(n, from_float<Eout>(-9.0f));
    const view<Eout, 3> cpu_view(cpu_values.data(), {prob.heads, prob.tokens, prob.head_dim});
    const view<Eout, 3> unit_view(unit_values.data(), {prob.heads, prob.tokens, prob.head_dim});
    REQUIRE(apply(cpu<>{}, uniform_dequantize{f, each_op, vidkv}, want.in(), kv_outputs<Eout>{cpu_view}) == status::ok);
    detail::with_scheme(f.scheme, [&](auto tag) {
      constexpr kv_scheme S = decltype(tag)::value;
      for (index_t u = 0; u < units; ++u)
        detail::dequantize_unit<S>(f, each_op, vidkv, want.in(), unit_view, detail::uniform_unit_at(f, prob, u));
    });
    bool equal = true;
    for (std::size_t i = 0; i < n; ++i) equal = equal && same_or_both_nan(unit_values[i], cpu_values[i]);
    CHECK(equal);
    return cpu_values;
  };
  dequantized(E{});
  const std::vector<float> keys = dequantized(float{});
  if (f.axis != kv_group_axis::tokens || each_op) return;

  // The score body's keys: a·code + b, within two roundings of the dequantized value, relative to
  // |x̂| + 2|b| (a·code + b cancels where b is large: the symmetric map's b is −2^(b−1)·s).
  bool keys_close = true;
  detail::with_scheme(f.scheme, [&](auto tag) {
    constexpr kv_scheme S = decltype(tag)::value;
    for (index_t h = 0; h < prob.heads; ++h)
      for (index_t t = 0; t < prob.tokens; ++t)
        for (index_t c = 0; c < prob.head_dim; ++c) {
          const float k = detail::packed_key_row<S, E, host_space>(f, vidkv, want.in(), h, t)(c);
          const float v = keys[static_cast<std::size_t>((h * prob.tokens + t) * prob.head_dim + c)];
          if (std::isnan(v)) {
            keys_close = keys_close && std::isnan(k);
          } else {
            const std::size_t at = static_cast<std::size_t>((h * (prob.tokens / f.group) + t / f.group) * prob.head_dim + c);
            const detail::group_scale g{to_float(want.scale[at]), to_float(want.zero[at])};
            const float b = std::fabs(detail::map_of<S>(f.bits, vidkv, g).b);
            keys_close = keys_close && std::fabs(k - v) <= std::ldexp(std::fabs(v) + 2.0f * b, -23);
          }
        }
  });
  CHECK(keys_close);
}

TEST_CASE("unit bodies: codes, scales, zero points and values equal the CPU backend's", "[uniform_group]") {
  for (kv_layout how : {kv_layout::contiguous, kv_layout::cells, kv_layout::strided, kv_layout::reversed}) {
    INFO("layout " << static_cast<int>(how));
    kv_cache<float> k32 = make_cache<float>(2, 128, 96, how);
    fill(k32.cache, 5);
    kv_cache<f16> k16 = make_cache<f16>(2, 64, 64, how);
    fill(k16.cache, 6);
    kv_cache<bf16> kb = make_cache<bf16>(1, 64, 37 + 27, how);
    fill(kb.cache, 7);
    for (const uniform_format& f : formats()) {
      const bool two_mappings = f.scheme == kv_scheme::sign || f.scheme == kv_scheme::ternary;
      if (can_implement(uniform_quantize{f}, detail::kv_problem_of(k32.cache)) == status::ok)
        for (bool vidkv : {false, true})
          if (!vidkv || two_mappings) check_units<float>(f, k32.cache, false, vidkv);
      if (can_implement(uniform_quantize{f}, detail::kv_problem_of(k16.cache)) == status::ok)
        for (bool each_op : {false, true}) check_units<f16>(f, k16.cache, each_op, two_mappings && !each_op);
      if (can_implement(uniform_quantize{f}, detail::kv_problem_of(kb.cache)) == status::ok)
        for (bool each_op : {false, true}) check_units<bf16>(f, kb.cache, each_op, false);
    }
  }
}

TEST_CASE("unit bodies: non-finite groups and constant groups", "[uniform_group]") {
  kv_cache<f16> k = make_cache<f16>(1, 64, 64, kv_layout::contiguous);
  fill(k.cache, 8);
  k.cache(0, 3, 5) = from_float<f16>(std::nanf(""));
  k.cache(0, 40, 9) = from_float<f16>(INFINITY);
  for (index_t t = 32; t < 64; ++t) k.cache(0, t, 20) = from_float<f16>(-0.0f);
  for (index_t c = 0; c < 32; ++c) k.cache(0, 7, c) = from_float<f16>(c % 2 ? 0.0f : -0.0f);
  for (const uniform_format& f : formats())
    if (can_implement(uniform_quantize{f}, kv_problem{1, 64, 64}) == status::ok) check_units<f16>(f, k.cache, false, false);
}

/// The score body over every key (packed, then residual) of a small cache, against the double
/// dot products with the keys attention sees (the CPU backend's fp32 dequantization, then the
/// residual). The bound is fp32 summation's γ(D + 2)·Σ|q|·(|x̂| + 2|b|): rigorous for the
/// body's channel-order sum of a·code + b.
template <class E>
void check_score_body(const uniform_format& f, bool vidkv, index_t q_heads, index_t kv_heads, index_t packed,
                      index_t residual, index_t dim) {
  INFO(describe(f) << " " << element_name<E>() << (vidkv ? " vidkv" : "") << " P " << packed << " R " << residual
                   << " D " << dim);
  const index_t tokens = packed + residual, per_kv = q_heads / kv_heads;
  kv_cache<E> keys = make_cache<E>(kv_heads, tokens, dim, kv_layout::cells);
  fill(keys.cache, static_cast<std::uint64_t>(tokens + dim));
  const kv_problem prob{kv_heads, packed, dim};
  packed_buffers<E> pk(f, prob);
  if (packed > 0)
    REQUIRE(apply(cpu<>{}, uniform_quantize{f}, kv_inputs<E>{tokens_of(keys.cache, 0, packed)}, pk.out()) == status::ok);
  std::vector<float> seen(static_cast<std::size_t>(kv_heads * tokens * dim));
  const view<float, 3> seen_view(seen.data(), {kv_heads, tokens, dim});
  if (packed > 0)
    REQUIRE(apply(cpu<>{}, uniform_dequantize{f, false, vidkv}, pk.in(), kv_outputs<float>{token_range(seen_view, 0, packed)}) ==
            status::ok);
  for (index_t h = 0; h < kv_heads; ++h)
    for (index_t t = packed; t < tokens; ++t)
      for (index_t c = 0; c < dim; ++c) seen_view(h, t, c) = to_float(keys.cache(h, t, c));

  std::vector<float> queries(static_cast<std::size_t>(q_heads * dim));  // staged fp32, as in shared memory
  rng r(9);
  for (float& q : queries) q = to_float(from_float<E>(r.uniform() * 2.0f - 1.0f));
  const view<const E, 3> res = tokens_of(keys.cache, packed, residual);
  double worst = 0.0;
  detail::with_scheme(f.scheme, [&](auto tag) {
    constexpr kv_scheme S = decltype(tag)::value;
    for (index_t kv = 0; kv < kv_heads; ++kv)
      for (index_t t = 0; t < tokens; ++t) {
        constexpr int heads = 8;
        float acc[heads] = {};
        const float* first = queries.data() + kv * per_kv * dim;
        const index_t half = dim / 2;  // two channel chunks, as the kernel stages them
        detail::accumulate_key_logits<heads, S>(f, vidkv, pk.in(), res, kv, packed, t, first, dim,
                                                static_cast<int>(per_kv), 0, half, acc);
        detail::accumulate_key_logits<heads, S>(f, vidkv, pk.in(), res, kv, packed, t, first + half, dim,
                                                static_cast<int>(per_kv), half, dim - half, acc);
        for (index_t i = 0; i < per_kv; ++i) {
          double want = 0.0, magnitude = 0.0;
          for (index_t c = 0; c < dim; ++c) {
            const double q = first[i * dim + c], k = seen_view(kv, t, c);
            double b = 0.0;
            if (t < packed) {
              detail::group_scale g;
              g.scale = to_float(pk.scale[static_cast<std::size_t>((kv * (packed / f.group) + t / f.group) * dim + c)]);
              g.zero = to_float(pk.zero[static_cast<std::size_t>((kv * (packed / f.group) + t / f.group) * dim + c)]);
              b = std::fabs(detail::map_of<S>(f.bits, vidkv, g).b);
            }
            want += q * k;
            magnitude += std::fabs(q) * (std::fabs(k) + 2.0 * b);
          }
          const double bound = static_cast<double>(dim + 2) * std::ldexp(1.0, -24) * magnitude + 1e-30;
          const double e = std::fabs(acc[i] - want) / bound;
          worst = e == e ? std::max(worst, e) : std::numeric_limits<double>::infinity();  // NaN fails
        }
      }
  });
  CHECK(worst <= 1.0);
}

TEST_CASE("score body: logits of packed and residual keys", "[uniform_group]") {
  for (int bits : {1, 2, 3, 4, 5, 8}) {
    check_score_body<float>({bits, 32, kv_group_axis::tokens}, false, 4, 2, 64, 5, 128);
    check_score_body<f16>({bits, 64, kv_group_axis::tokens}, false, 8, 1, 128, 0, 37);
  }
  check_score_body<bf16>({4, 32, kv_group_axis::tokens, kv_scheme::symmetric}, false, 6, 3, 96, 3, 64);
  for (bool vidkv : {false, true}) {
    check_score_body<float>({1, 32, kv_group_axis::tokens, kv_scheme::sign}, vidkv, 2, 1, 64, 1, 15);
    check_score_body<float>({2, 32, kv_group_axis::tokens, kv_scheme::ternary}, vidkv, 2, 2, 32, 2, 17);
  }
  check_score_body<float>({2, 32, kv_group_axis::tokens}, false, 3, 3, 0, 9, 64);  // residual only
}

}  // namespace
}  // namespace tokred::testing
