// tests/cpu/test_kv_error.cpp — kv_error and attention_kl against the materialised-softmax oracle,
// a hand-computed case, grouped-query head mapping, every stride order and sign, fp16/bf16,
// non-finite values and bad input.
#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/cpu/ggml_blocks.hpp>
#include <tokred/cpu/kv_error.hpp>

#include "reference/kv_error_ref.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace tokred::testing {
namespace {

/// Where a test cache's elements live: `order` lists the axes (0 heads, 1 tokens, 2 channels)
/// from the outermost in memory to the innermost, `spacing` is the innermost stride, and
/// `mirrored` stores everything backwards (every stride negative).
struct memory_order {
  const char* name;
  int order[3];
  index_t spacing;
  bool mirrored;
};

const memory_order orders[] = {
    {"contiguous", {0, 1, 2}, 1, false},        {"token-major cells", {1, 0, 2}, 1, false},
    {"channel-major", {0, 2, 1}, 1, false},     {"inner stride 3", {0, 1, 2}, 3, false},
    {"mirrored", {0, 1, 2}, 1, true},           {"mirrored cells, stride 2", {1, 0, 2}, 2, true},
};

/// A (heads, tokens, head_dim) cache of E in one memory order, filled with from_float<E>(value(h, t, c)).
template <class E>
struct cache {
  std::vector<E> storage;
  view<E, 3> kv;  // (heads, tokens, head_dim)

  template <class Value>
  cache(index_t heads, index_t tokens, index_t dim, const memory_order& m, Value value)
      : storage(static_cast<std::size_t>(m.spacing * heads * tokens * dim), from_float<E>(-5.0f)) {
    const index_t ext[3] = {heads, tokens, dim};
    index_t stride[3];
    stride[m.order[2]] = m.spacing;
    stride[m.order[1]] = m.spacing * ext[m.order[2]];
    stride[m.order[0]] = stride[m.order[1]] * ext[m.order[1]];
    index_t last = 0;  // offset of element (H−1, T−1, D−1)
    for (int r = 0; r < 3; ++r) last += (ext[r] - 1) * stride[r];
    const index_t sign = m.mirrored ? -1 : 1;
    kv = view<E, 3>(storage.data() + (m.mirrored ? last : 0), {heads, tokens, dim},
                    {sign * stride[0], sign * stride[1], sign * stride[2]});
    for (index_t h = 0; h < heads; ++h)
      for (index_t t = 0; t < tokens; ++t)
        for (index_t c = 0; c < dim; ++c) kv(h, t, c) = from_float<E>(value(h, t, c));
  }
  cache(const cache&) = delete;  // the view points into this object's storage
  view<const E, 3> get() const { return kv; }
};

/// Deterministic values in [−amplitude, amplitude), one per (h, t, c) whatever the memory order.
struct noise {
  std::uint64_t seed;
  float amplitude;
  float operator()(index_t h, index_t t, index_t c) const {
    rng r(seed ^ static_cast<std::uint64_t>((h * 1000003 + t) * 1009 + c));
    r.next();
    return amplitude * r.uniform();
  }
};

/// Keys, and the same keys with a small perturbation, as a reconstruction would have them.
struct perturbed {
  std::uint64_t seed;
  float size;
  float operator()(index_t h, index_t t, index_t c) const {
    return noise{seed, 1.0f}(h, t, c) + noise{seed + 1, size}(h, t, c);
  }
};

/// |got − want| within 1e−13 absolute plus 1e−10 relative: the oracle materialises the
/// probabilities and sums p·log(p/p̂) term by term, a different rounding path.
bool close(double got, double want) {
  return std::fabs(got - want) <= 1e-13 + 1e-10 * std::fabs(want);
}

double mean_of(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double max_of(const std::vector<double>& v) {
  double m = 0.0;
  for (double x : v) m = std::fmax(m, x);
  return m;
}

const memory_order& plain = orders[0];

// --- exact values ---------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("identical caches: exactly zero error and zero KL", "[kv_error]", float, f16, bf16) {
  using E = TestType;
  for (const memory_order& m : orders) {
    INFO(m.name);
    const cache<E> keys(2, 29, 20, m, noise{7, 3.0f});
    const cache<E> same(2, 29, 20, plain, noise{7, 3.0f});  // other storage, other layout
    const cache<float> wide(2, 29, 20, plain, [&](index_t h, index_t t, index_t c) { return to_float(same.kv(h, t, c)); });
    const cache<E> queries(6, 3, 20, m, noise{8, 2.0f});

    kv_error_stats e{-1.0, -1.0, -1};
    REQUIRE(kv_error(keys.get(), same.get(), e) == status::ok);
    CHECK(e.mse == 0.0);
    CHECK(e.max_abs == 0.0);
    CHECK(e.non_finite == 0);
    REQUIRE(kv_error(wide.get(), keys.get(), e) == status::ok);  // fp32 holding the same values
    CHECK(e.mse == 0.0);
    CHECK(e.max_abs == 0.0);

    attention_kl_stats kl{-1.0, -1.0, -1};
    REQUIRE(attention_kl(queries.get(), keys.get(), same.get(), kl) == status::ok);
    CHECK(kl.mean == 0.0);
    CHECK(kl.max == 0.0);
    CHECK(kl.non_finite == 0);
    REQUIRE(attention_kl(queries.get(), wide.get(), keys.get(), kl, 3.0f) == status::ok);
    CHECK(kl.mean == 0.0);
    CHECK(kl.max == 0.0);
  }
}

TEST_CASE("hand-computed: two tokens, head_dim 4", "[kv_error]") {
  // q = (2, 0, 0, 0); keys (0, 0, 0, 0) and (1, 0, 0, 0); the reconstruction loses the 1.
  // Default scale 1/√4: logits (0, 1) against (0, 0), so P = (1, e)/(1 + e), P̂ = (½, ½) and
  // KL(P‖P̂) = ln 2 + e/(1 + e) − ln(1 + e) = 0.1109440716717274 (KL(P̂‖P) would be 0.1201145).
  const float q[4] = {2, 0, 0, 0};
  const float k[8] = {0, 0, 0, 0, 1, 0, 0, 0};
  const float k_hat[8] = {};
  const view<const float, 3> queries(q, {1, 1, 4}), keys(k, {1, 2, 4}), keys_hat(k_hat, {1, 2, 4});

  kv_error_stats e;
  REQUIRE(kv_error(keys, keys_hat, e) == status::ok);
  CHECK(e.mse == 0.125);
  CHECK(e.max_abs == 1.0);

  attention_kl_stats kl;
  REQUIRE(attention_kl(queries, keys, keys_hat, kl) == status::ok);
  CHECK(close(kl.mean, 0.11094407167172737));
  CHECK(kl.max == kl.mean);
  // Scale 2: logits (0, 4), KL = ln 2 + 4e⁴/(1 + e⁴) − ln(1 + e⁴).
  REQUIRE(attention_kl(queries, keys, keys_hat, kl, 2.0f) == status::ok);
  CHECK(close(kl.mean, 0.6030524127937698));
  // Inputs of non-const elements are only read: a query broadcast over three rows (stride 0) is
  // three equal rows, not aliasing.
  float q_mut[4] = {2, 0, 0, 0};
  const view<float, 3> repeated(q_mut, {1, 3, 4}, {12, 0, 1});
  attention_kl_stats three;
  REQUIRE(attention_kl(repeated, keys, keys_hat, three, 2.0f) == status::ok);
  CHECK(three.mean == kl.mean);
}

TEST_CASE("scale 0 means 1/sqrt(head_dim)", "[kv_error]") {
  const cache<float> q(2, 4, 64, plain, noise{1, 4.0f}), k(1, 50, 64, plain, noise{2, 1.0f}),
      k_hat(1, 50, 64, plain, perturbed{2, 0.2f});
  attention_kl_stats by_default, explicit_scale, other;
  REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), by_default) == status::ok);
  REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), explicit_scale, 0.125f) == status::ok);
  REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), other, 0.25f) == status::ok);
  CHECK(by_default.mean == explicit_scale.mean);  // 1/√64 is exact in float
  CHECK(by_default.max == explicit_scale.max);
  CHECK(other.mean != by_default.mean);
}

// --- against the oracle ---------------------------------------------------------------------------

TEMPLATE_TEST_CASE("random caches: equal to the oracle", "[kv_error]", float, f16, bf16) {
  using E = TestType;
  struct shape { index_t q_heads, kv_heads, queries, tokens, dim; };
  for (const shape s : {shape{1, 1, 1, 1, 1}, shape{4, 4, 2, 17, 15}, shape{8, 2, 3, 64, 33},
                        shape{6, 3, 1, 300, 128}}) {
    INFO(s.q_heads << " q heads, " << s.kv_heads << " kv heads, " << s.tokens << " tokens, dim " << s.dim);
    const cache<float> k(s.kv_heads, s.tokens, s.dim, plain, noise{11, 1.0f});
    const cache<E> k_hat(s.kv_heads, s.tokens, s.dim, plain, perturbed{11, 0.05f});
    const cache<E> q(s.q_heads, s.queries, s.dim, plain, noise{12, 3.0f});

    kv_error_stats e;
    REQUIRE(kv_error(k.get(), k_hat.get(), e) == status::ok);
    const ref::element_error want = ref::kv_error(k.get(), k_hat.get());
    CHECK(close(e.mse, want.mse));
    CHECK(e.max_abs == want.max_abs);  // a maximum is exact
    CHECK(e.mse > 0.0);

    for (const float scale : {0.0f, 0.7f, 3.0f}) {
      INFO("scale " << scale);
      attention_kl_stats kl;
      REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), kl, scale) == status::ok);
      const double sigma = scale != 0.0f ? scale : 1.0 / std::sqrt(static_cast<double>(s.dim));
      const std::vector<double> rows = ref::attention_kl_rows(q.get(), k.get(), k_hat.get(), sigma);
      CHECK(close(kl.mean, mean_of(rows)));
      CHECK(close(kl.max, max_of(rows)));
      CHECK(kl.non_finite == 0);
      if (s.tokens > 1) CHECK(kl.mean > 0.0);
    }
  }
}

TEST_CASE("reconstructed keys in f16 and bf16: the error of their rounding", "[kv_error]") {
  // The reference in fp32; the reconstructions are its fp16 and bf16 roundings.
  const cache<float> k(2, 40, 64, plain, noise{21, 1.0f});
  const auto rounded = [&](auto tag) {
    using E = decltype(tag);
    return cache<E>(2, 40, 64, plain, [&](index_t h, index_t t, index_t c) { return k.kv(h, t, c); });
  };
  const cache<f16> half = rounded(f16{});
  const cache<bf16> brain = rounded(bf16{});
  const cache<bf16> q(4, 2, 64, plain, noise{22, 4.0f});

  kv_error_stats e16, e_bf;
  REQUIRE(kv_error(k.get(), half.get(), e16) == status::ok);
  REQUIRE(kv_error(k.get(), brain.get(), e_bf) == status::ok);
  CHECK(e16.max_abs <= std::ldexp(1.0, -12));  // half an ulp of values below 1
  CHECK(e_bf.max_abs <= std::ldexp(1.0, -9));
  CHECK(e16.mse < e_bf.mse);
  CHECK(close(e_bf.mse, ref::kv_error(k.get(), brain.get()).mse));

  attention_kl_stats kl16, kl_bf;
  REQUIRE(attention_kl(q.get(), k.get(), half.get(), kl16) == status::ok);
  REQUIRE(attention_kl(q.get(), k.get(), brain.get(), kl_bf) == status::ok);
  CHECK(kl16.mean > 0.0);
  CHECK(kl16.mean < kl_bf.mean);
  CHECK(close(kl16.mean, mean_of(ref::attention_kl_rows(q.get(), k.get(), half.get(), 0.125))));
  CHECK(close(kl_bf.max, max_of(ref::attention_kl_rows(q.get(), k.get(), brain.get(), 0.125))));
}

TEST_CASE("grouped-query attention: query head h reads kv head h / (q_heads / kv_heads)", "[kv_error]") {
  // 6 query heads over 2 kv heads: heads 0–2 read kv head 0, heads 3–5 kv head 1. Only kv head 1
  // is perturbed, and heads 3–5 have zero queries (uniform attention, whatever the keys): so the
  // right mapping gives exactly 0, while h % kv_heads would send head 1 to the perturbed keys.
  const cache<float> k(2, 30, 16, plain, noise{31, 1.0f});
  const cache<float> k_hat(2, 30, 16, plain, [&](index_t h, index_t t, index_t c) {
    return h == 1 ? perturbed{31, 0.3f}(h, t, c) : k.kv(h, t, c);
  });
  const cache<float> q_low(6, 2, 16, plain, [](index_t h, index_t t, index_t c) {
    return h < 3 ? noise{32, 3.0f}(h, t, c) : 0.0f;
  });
  attention_kl_stats kl;
  REQUIRE(attention_kl(q_low.get(), k.get(), k_hat.get(), kl) == status::ok);
  CHECK(kl.mean == 0.0);
  CHECK(kl.max == 0.0);

  // The other way round: the heads that read kv head 1 carry all the divergence.
  const cache<float> q_high(6, 2, 16, plain, [](index_t h, index_t t, index_t c) {
    return h >= 3 ? noise{32, 3.0f}(h, t, c) : 0.0f;
  });
  REQUIRE(attention_kl(q_high.get(), k.get(), k_hat.get(), kl) == status::ok);
  const std::vector<double> rows = ref::attention_kl_rows(q_high.get(), k.get(), k_hat.get(), 0.25);
  for (std::size_t r = 0; r < 6; ++r) CHECK(rows[r] == 0.0);  // heads 0–2, two queries each
  CHECK(rows[6] > 1e-3);
  CHECK(close(kl.mean, mean_of(rows)));
  CHECK(close(kl.max, max_of(rows)));
}

TEMPLATE_TEST_CASE("every stride order and sign gives the same bits", "[kv_error]", float, f16, bf16) {
  using E = TestType;
  const cache<float> k0(2, 23, 19, plain, noise{41, 1.0f});
  const cache<E> k_hat0(2, 23, 19, plain, perturbed{41, 0.1f});
  const cache<E> q0(4, 3, 19, plain, noise{42, 2.0f});
  kv_error_stats e0;
  attention_kl_stats kl0;
  REQUIRE(kv_error(k0.get(), k_hat0.get(), e0) == status::ok);
  REQUIRE(attention_kl(q0.get(), k0.get(), k_hat0.get(), kl0) == status::ok);
  CHECK(close(kl0.mean, mean_of(ref::attention_kl_rows(q0.get(), k0.get(), k_hat0.get(), 1.0 / std::sqrt(19.0)))));

  for (const memory_order& a : orders)
    for (const memory_order& b : orders) {
      INFO(a.name << " / " << b.name);
      const cache<float> k(2, 23, 19, a, noise{41, 1.0f});
      const cache<E> k_hat(2, 23, 19, b, perturbed{41, 0.1f});
      const cache<E> q(4, 3, 19, b, noise{42, 2.0f});
      kv_error_stats e;
      attention_kl_stats kl;
      REQUIRE(kv_error(k.get(), k_hat.get(), e) == status::ok);
      REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), kl) == status::ok);
      CHECK(e.mse == e0.mse);
      CHECK(e.max_abs == e0.max_abs);
      CHECK(kl.mean == kl0.mean);
      CHECK(kl.max == kl0.max);
    }
}

// --- non-finite values ----------------------------------------------------------------------------

TEST_CASE("non-finite values: counted, and the statistics turn NaN", "[kv_error]") {
  cache<float> k(2, 10, 8, plain, noise{51, 1.0f});
  cache<float> k_hat(2, 10, 8, plain, perturbed{51, 0.1f});
  const cache<float> q(4, 2, 8, plain, noise{52, 2.0f});
  k_hat.kv(1, 3, 5) = NAN;
  k_hat.kv(0, 9, 0) = INFINITY;
  k.kv(0, 2, 2) = INFINITY;  // reconstructed exactly: inf − inf is still no error value
  k_hat.kv(0, 2, 2) = INFINITY;

  kv_error_stats e;
  REQUIRE(kv_error(k.get(), k_hat.get(), e) == status::ok);
  CHECK(e.non_finite == 3);
  CHECK(std::isnan(e.mse));
  CHECK(std::isnan(e.max_abs));

  // kv head 1 holds the NaN: query heads 2 and 3, two queries each, are non-finite rows. kv
  // head 0 holds infinities on both sides: heads 0 and 1 as well.
  attention_kl_stats kl;
  REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), kl) == status::ok);
  CHECK(kl.non_finite == 8);
  CHECK(std::isnan(kl.mean));
  CHECK(std::isnan(kl.max));

  k.kv(0, 2, 2) = 0.5f;
  k_hat.kv(0, 2, 2) = 0.5f;
  k_hat.kv(0, 9, 0) = 0.5f;
  REQUIRE(attention_kl(q.get(), k.get(), k_hat.get(), kl) == status::ok);
  CHECK(kl.non_finite == 4);  // only the rows reading kv head 1

  // Huge finite logits stay finite: the maxima are subtracted before exp.
  const cache<float> big_q(1, 1, 8, plain, noise{53, 1e18f});
  const cache<float> big_k(1, 5, 8, plain, noise{54, 1e18f});
  const cache<float> big_k_hat(1, 5, 8, plain, [&](index_t h, index_t t, index_t c) {
    return big_k.kv(h, t, c) * (1.0f + noise{55, 0.01f}(h, t, c));
  });
  REQUIRE(attention_kl(big_q.get(), big_k.get(), big_k_hat.get(), kl) == status::ok);
  CHECK(kl.non_finite == 0);
  CHECK(std::isfinite(kl.mean));
}

// --- bad input ------------------------------------------------------------------------------------

bool untouched(const kv_error_stats& e) { return e.mse == -1.0 && e.max_abs == -2.0 && e.non_finite == -3; }
bool untouched(const attention_kl_stats& s) { return s.mean == -1.0 && s.max == -2.0 && s.non_finite == -3; }

TEST_CASE("bad input: documented statuses, output untouched", "[kv_error][bad_input]") {
  std::vector<float> a(2 * 5 * 8, 0.5f), b(2 * 5 * 8, 0.25f), qs(4 * 3 * 8, 1.0f);
  const auto kv = [](std::vector<float>& v, index_t h, index_t t, index_t d) {
    return view<const float, 3>(v.data(), {h, t, d});
  };
  const view<const float, 3> null3(nullptr, {2, 5, 8});

  SECTION("kv_error") {
    const auto run = [](view<const float, 3> x, view<const float, 3> y) {
      kv_error_stats e{-1.0, -2.0, -3};
      const status s = kv_error(x, y, e);
      CHECK(untouched(e));
      return s;
    };
    CHECK(run(kv(a, 2, -5, 8), kv(b, 2, -5, 8)) == status::shape_mismatch);
    CHECK(run(kv(a, 0, 5, 8), kv(b, 0, 5, 8)) == status::empty_input);
    CHECK(run(kv(a, 2, 0, 8), kv(b, 2, 0, 8)) == status::empty_input);
    CHECK(run(kv(a, 2, 5, 0), kv(b, 2, 5, 0)) == status::empty_input);
    CHECK(run(null3, kv(b, 2, 5, 8)) == status::null_pointer);
    CHECK(run(kv(a, 2, 5, 8), kv(b, 2, 4, 8)) == status::shape_mismatch);
    CHECK(run(kv(a, 2, 5, 8), kv(b, 1, 5, 8)) == status::shape_mismatch);
    CHECK(run(kv(a, 2, 5, 8), kv(b, 2, 5, 4)) == status::shape_mismatch);
    CHECK(run(kv(a, 2, 5, 8), null3) == status::null_pointer);
    CHECK(run(kv(a, 2, 5, 8), view<const float, 3>{}) == status::shape_mismatch);  // not given
  }

  SECTION("attention_kl") {
    const auto run = [](view<const float, 3> q, view<const float, 3> k, view<const float, 3> k_hat,
                        float scale = 0.0f) {
      attention_kl_stats s{-1.0, -2.0, -3};
      const status st = attention_kl(q, k, k_hat, s, scale);
      CHECK(untouched(s));
      return st;
    };
    const view<const float, 3> q = kv(qs, 4, 3, 8), k = kv(a, 2, 5, 8), k_hat = kv(b, 2, 5, 8);
    for (const float scale : {-1.0f, -1e-30f, NAN, INFINITY})
      CHECK(run(q, k, k_hat, scale) == status::invalid_parameter);
    CHECK(run(q, kv(a, 2, -5, 8), k_hat) == status::shape_mismatch);
    CHECK(run(q, kv(a, 0, 5, 8), k_hat) == status::empty_input);
    CHECK(run(q, kv(a, 2, 0, 8), kv(b, 2, 0, 8)) == status::empty_input);  // no tokens
    CHECK(run(kv(qs, 4, 3, 0), kv(a, 2, 5, 0), kv(b, 2, 5, 0)) == status::empty_input);
    CHECK(run(kv(qs, 4, -3, 8), k, k_hat) == status::shape_mismatch);
    CHECK(run(kv(qs, 4, 3, 4), k, k_hat) == status::shape_mismatch);  // another head_dim
    CHECK(run(kv(qs, 3, 3, 8), k, k_hat) == status::shape_mismatch);  // 3 % 2 != 0
    CHECK(run(kv(qs, 1, 3, 8), k, k_hat) == status::shape_mismatch);  // fewer q heads than kv
    CHECK(run(kv(qs, 0, 3, 8), k, k_hat) == status::empty_input);
    CHECK(run(kv(qs, 4, 0, 8), k, k_hat) == status::empty_input);
    CHECK(run(q, null3, k_hat) == status::null_pointer);
    CHECK(run(q, k, kv(b, 2, 4, 8)) == status::shape_mismatch);
    CHECK(run(q, k, kv(b, 1, 5, 8)) == status::shape_mismatch);
    CHECK(run(q, k, null3) == status::null_pointer);
    CHECK(run(view<const float, 3>(nullptr, {4, 3, 8}), k, k_hat) == status::null_pointer);
  }
}

// --- in use ---------------------------------------------------------------------------------------

TEST_CASE("documentation: a quantized cache measured against its source", "[kv_error][example]") {
  const index_t heads = 4, tokens = 64, head_dim = 128;
  const cache<f16> keys(heads, tokens, head_dim, plain, noise{61, 1.0f});
  const cache<f16> queries(8, 2, head_dim, plain, noise{62, 3.0f});
  double mse[2], kl_mean[2];
  for (const ggml_type type : {ggml_type::q8_0, ggml_type::q4_0}) {
    INFO(ggml_type_name(type));
    const index_t row = ggml_row_bytes(type, head_dim);
    std::vector<std::uint8_t> blocks(static_cast<std::size_t>(heads * tokens * row));  // (heads, tokens, row bytes)
    std::vector<float> restored(static_cast<std::size_t>(heads * tokens * head_dim));  // (heads, tokens, head_dim)
    const view<std::uint8_t, 3> packed = make_view(blocks.data(), heads, tokens, row);
    REQUIRE(apply(cpu<>{}, ggml_quantize{type}, kv_inputs<f16>{keys.get()}, kv_block_outputs<>{packed}) == status::ok);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{type}, kv_block_inputs<>{packed},
                  kv_outputs<float>{make_view(restored.data(), heads, tokens, head_dim)}) == status::ok);
    const view<const f16, 3> k = keys.get(), q = queries.get();

    // example-begin kv-error
    // k: the fp16 keys (4 kv heads, 64 tokens, head_dim 128); restored: the same keys after a
    // ggml_quantize / ggml_dequantize round trip, in fp32. q: 8 query heads (2 per kv head),
    // 2 queries each, in fp16. The softmax scale is the default, 1/√128.
    const tokred::view<const float, 3> k_hat = tokred::make_view(restored.data(), 4, 64, 128);

    tokred::kv_error_stats error;
    tokred::attention_kl_stats kl;
    const tokred::status s = tokred::kv_error(k, k_hat, error);     // error.mse, error.max_abs
    const tokred::status t = tokred::attention_kl(q, k, k_hat, kl);  // kl.mean, kl.max in nats
    // example-end kv-error
    REQUIRE(s == status::ok);
    REQUIRE(t == status::ok);
    const int i = type == ggml_type::q8_0 ? 0 : 1;
    mse[i] = error.mse;
    kl_mean[i] = kl.mean;
    CHECK(error.non_finite == 0);
    CHECK(close(error.mse, ref::kv_error(k, k_hat).mse));
    CHECK(kl.max >= kl.mean);
    CHECK(close(kl.mean, mean_of(ref::attention_kl_rows(q, k, k_hat, 1.0 / std::sqrt(128.0)))));
  }
  INFO("q8_0: mse " << mse[0] << ", KL " << kl_mean[0] << "; q4_0: mse " << mse[1] << ", KL " << kl_mean[1]);
  CHECK(mse[0] > 0.0);
  CHECK(kl_mean[0] > 0.0);
  CHECK(mse[0] * 100.0 < mse[1]);  // 8-bit codes against 4-bit ones: steps amax/127 and amax/8
  CHECK(kl_mean[0] * 100.0 < kl_mean[1]);
}

}  // namespace
}  // namespace tokred::testing
