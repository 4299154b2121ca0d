// tests/cpu/test_kivi.cpp — KIVI's streaming cache (append, read) against KIVI's own prefill
// outputs and against the batch oracle for any sequence of appends; attention logits from
// packed keys against the dequantized keys; bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <tokred/policy/kivi_units.hpp>
#include <tokred/tokred.hpp>

#include "reference/uniform_quant_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"
#include "support/kivi_buffers.hpp"
#include "support/kv_cache.hpp"

namespace tokred::testing {
namespace {

/// (keys, values) as attention sees them after `tokens`.
template <class E>
std::pair<std::vector<E>, std::vector<E>> read_back(const kivi_buffers<E>& cache, index_t tokens) {
  std::pair<std::vector<E>, std::vector<E>> kv;
  REQUIRE(cache.read(tokens, kv.first, kv.second) == status::ok);
  return kv;
}

/// What attention must see after T tokens, from the batch oracle: the packed prefix quantized
/// as one uniform_quantize call would, the rest as given.
template <class E>
std::vector<float> expected(const kivi& k, const view<E, 3>& all, index_t tokens, bool keys) {
  const index_t heads = all.extent(0), dim = all.extent(2);
  // KIVI's rule, written out: keys flush whole blocks of R, values keep a window of R.
  const index_t packed = keys ? tokens / k.residual * k.residual : std::max<index_t>(0, tokens - k.residual);
  std::vector<float> out(static_cast<std::size_t>(heads * tokens * dim));
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = packed; t < tokens; ++t)
      for (index_t d = 0; d < dim; ++d) out[static_cast<std::size_t>((h * tokens + t) * dim + d)] = to_float(all(h, t, d));
  if (packed == 0) return out;
  const ref::uniform_result r = ref::uniform_roundtrip<E>(
      keys ? kivi_key_format(k) : kivi_value_format(k), k.round_each_op, false, heads, packed, dim,
      [&](index_t h, index_t t, index_t d) { return to_float(all(h, t, d)); });
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < packed; ++t)
      for (index_t d = 0; d < dim; ++d)
        out[static_cast<std::size_t>((h * tokens + t) * dim + d)] = r.values[static_cast<std::size_t>((h * packed + t) * dim + d)];
  return out;
}

template <class E>
bool same_values(const std::vector<E>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (bits_of(got[i]) != bits_of(from_float<E>(want[i]))) return false;
  return true;
}

// --- KIVI's own outputs ---------------------------------------------------------------------

template <class E>
void check_kivi_prefill(const char* name, bool each_op) {
  INFO(name);
  const std::string dir = golden_case("kivi", name);
  const index_t heads = json_int(dir, "num_heads"), tokens = json_int(dir, "T"), dim = json_int(dir, "head_dim");
  kivi k;
  k.key_bits = static_cast<int>(json_int(dir, "k_bits"));
  k.value_bits = static_cast<int>(json_int(dir, "v_bits"));
  k.group = json_int(dir, "group_size");
  k.residual = json_int(dir, "residual_length");
  k.round_each_op = each_op;
  const kivi_counts c = kivi_counts_at(k, tokens);
  CHECK(c.keys_packed == json_int(dir, "k_quantized_tokens"));
  CHECK(c.keys_residual == json_int(dir, "k_residual_tokens"));
  CHECK(c.values_packed == json_int(dir, "v_quantized_tokens"));
  CHECK(c.values_residual == json_int(dir, "v_residual_tokens"));

  std::vector<E> keys, values;
  for (float x : load_npy(dir + "input_k.npy").as<float>()) keys.push_back(from_float<E>(x));
  for (float x : load_npy(dir + "input_v.npy").as<float>()) values.push_back(from_float<E>(x));
  kivi_buffers<E> cache(k, heads, 128, dim);
  REQUIRE(cache.append(view<const E, 3>(keys.data(), {heads, tokens, dim}),
                       view<const E, 3>(values.data(), {heads, tokens, dim}), 0) == status::ok);
  const auto [k_seen, v_seen] = read_back(cache, tokens);
  CHECK(same_values(k_seen, load_npy(dir + "dequant_k.npy").as<float>()));
  CHECK(same_values(v_seen, load_npy(dir + "dequant_v.npy").as<float>()));
}

TEST_CASE("golden: KIVI's prefill, as attention sees it (dequantized part, then residual)", "[kivi][golden]") {
  check_kivi_prefill<float>("k2v2_g32_r32_fp32_T100", false);
  check_kivi_prefill<f16>("k2v2_g32_r32_fp16_T100", true);
}

// --- streaming ----------------------------------------------------------------------------------

TEST_CASE("where T tokens are: KIVI's prefill split and decode flushes", "[kivi]") {
  kivi k;
  k.group = 32;
  k.residual = 64;
  struct row {
    index_t tokens, keys_packed, values_packed;
  };
  // T < R: nothing packed; T = R: keys flush, values keep R; T = 100: keys 64 (T mod R = 36 left),
  // values 36; T = 127 → 128: the second key block flushes.
  for (const row& r : {row{0, 0, 0}, row{1, 0, 0}, row{63, 0, 0}, row{64, 64, 0}, row{65, 64, 1}, row{100, 64, 36},
                       row{127, 64, 63}, row{128, 128, 64}}) {
    const kivi_counts c = kivi_counts_at(k, r.tokens);
    INFO(r.tokens);
    CHECK(c.keys_packed == r.keys_packed);
    CHECK(c.keys_residual == r.tokens - r.keys_packed);
    CHECK(c.values_packed == r.values_packed);
    CHECK(c.values_residual == r.tokens - r.values_packed);
  }
}

/// Appends `all` in the given chunk sizes and checks, after every append, that attention sees
/// exactly the batch oracle's cache; returns the final cache.
template <class E>
kivi_buffers<E> stream(const kivi& k, const view<E, 3>& all, const std::vector<index_t>& chunks, index_t capacity,
                       int nth = 1) {
  const index_t heads = all.extent(0), dim = all.extent(2);
  kivi_buffers<E> cache(k, heads, capacity, dim);
  std::vector<E> values_storage = values_for(all);
  const view<E, 3> values(values_storage.data(), {heads, all.extent(1), dim});
  index_t held = 0;
  for (index_t n : chunks) {
    for (int ith = 0; ith < nth; ++ith)
      REQUIRE(cache.append(tokens_of(all, held, n), tokens_of(values, held, n), held, cpu<>{ith, nth}) == status::ok);
    held += n;
    const auto [ks, vs] = read_back(cache, held);
    INFO("after " << held << " tokens");
    CHECK(same_values(ks, expected(k, all, held, true)));
    CHECK(same_values(vs, expected(k, values, held, false)));
  }
  return cache;
}

TEST_CASE("any sequence of appends leaves the cache one batch quantization would", "[kivi]") {
  kivi k;
  k.key_bits = 2;
  k.value_bits = 4;
  k.group = 32;
  k.residual = 64;
  kv_cache<float> all = make_cache<float>(3, 300, 96, kv_layout::cells);
  fill(all.cache, 31);
  // Prefill 100 then single decode steps past two flushes; chunks; one token at a time.
  std::vector<index_t> prefill_then_decode = {100};
  for (int i = 0; i < 90; ++i) prefill_then_decode.push_back(1);
  const kivi_buffers<float> a = stream(k, all.cache, prefill_then_decode, 192);
  const kivi_buffers<float> b = stream(k, all.cache, {7, 57, 1, 63, 0, 62}, 192, 3);
  std::vector<index_t> singles(190, 1);
  const kivi_buffers<float> c = stream(k, all.cache, singles, 192, 2);
  // The packed parts agree word for word (the residual rows of dropped tokens may differ).
  CHECK(a.key_codes == b.key_codes);
  CHECK(a.key_codes == c.key_codes);
  CHECK(a.value_codes == c.value_codes);
  CHECK(a.key_scale == c.key_scale);
}

TEST_CASE("single decode steps quantize keys in blocks of R, never a one-token group", "[kivi]") {
  kivi k;
  k.residual = 32;
  kv_cache<float> all = make_cache<float>(2, 64, 64, kv_layout::contiguous);
  fill(all.cache, 5);
  kivi_buffers<float> cache(k, 2, 64, 64);
  for (index_t t = 0; t < 32; ++t) {
    CHECK(kivi_counts_at(k, t).keys_packed == 0);
    REQUIRE(cache.append(tokens_of(all.cache, t, 1), tokens_of(all.cache, t, 1), t) == status::ok);
  }
  CHECK(kivi_counts_at(k, 32).keys_packed == 32);
  // The block equals uniform_quantize of those 32 keys.
  std::vector<std::uint32_t> codes(2 * 2 * 64);
  std::vector<float> scale(2 * 64), zero(2 * 64);
  REQUIRE(apply(cpu<>{}, uniform_quantize{kivi_key_format(k)}, kv_inputs<float>{tokens_of(all.cache, 0, 32)},
                uniform_packed<float>{make_view(codes.data(), 2, 2, 64), make_view(scale.data(), 2, 1, 64),
                                      make_view(zero.data(), 2, 1, 64)}) == status::ok);
  for (index_t h = 0; h < 2; ++h)
    for (index_t i = 0; i < 2 * 64; ++i)
      CHECK(cache.key_codes[static_cast<std::size_t>(h * 4 * 64 + i)] == codes[static_cast<std::size_t>(h * 2 * 64 + i)]);
}

TEST_CASE("fp16 and bf16 caches stream like their batch oracle", "[kivi]") {
  for (bool each_op : {false, true}) {
    kivi k;
    k.key_bits = 3;
    k.value_bits = 2;
    k.group = 64;
    k.residual = 64;
    k.round_each_op = each_op;
    kv_cache<f16> a = make_cache<f16>(2, 200, 64, kv_layout::strided);
    fill(a.cache, 8);
    stream(k, a.cache, {70, 1, 1, 60, 3, 65}, 192, 2);
    kv_cache<bf16> b = make_cache<bf16>(1, 130, 128, kv_layout::reversed);
    fill(b.cache, 9);
    stream(k, b.cache, {129, 1}, 128);
  }
}

// --- the CUDA kernels' per-thread bodies, on the host ---------------------------------------

/// An append as the CUDA backend runs it: every quantization unit, then every residual item,
/// each phase in reverse order (a GPU runs a phase's units in any order).
template <class E>
void append_by_units(kivi_buffers<E>& cache, const view<const E, 3>& keys, const view<const E, 3>& values,
                     index_t before) {
  const detail::kivi_append_plan w =
      detail::kivi_append_plan_of(cache.config, keys.extent(0), keys.extent(2), before, keys.extent(1));
  const kivi_append_inputs<E> in{keys, values, before};
  const kivi_cache<E> out = cache.out();
  for (index_t u = w.quantize_units(); u-- > 0;) detail::kivi_append_quantize(w, in, out, u);
  for (index_t i = w.residual_items(); i-- > 0;) detail::kivi_append_residual(w, in, out, i);
}

/// A read by units (reverse order) and by the CPU backend into padded rows (stride D + 3) of
/// `Eout`: the same bits, and the padding untouched.
template <class Eout, class E>
void check_read_by_units(const kivi_buffers<E>& cache, index_t tokens) {
  const index_t heads = cache.storage.heads, dim = cache.storage.head_dim, row = dim + 3;
  const std::size_t n = static_cast<std::size_t>(heads * tokens * row);
  std::vector<Eout> want_k(n, from_float<Eout>(-9.0f)), want_v = want_k, got_k = want_k, got_v = want_k;
  const auto outputs = [&](std::vector<Eout>& k, std::vector<Eout>& v) {
    return kivi_read_outputs<Eout>{view<Eout, 3>(k.data(), {heads, tokens, dim}, {tokens * row, row, 1}),
                                   view<Eout, 3>(v.data(), {heads, tokens, dim}, {tokens * row, row, 1})};
  };
  REQUIRE(apply(cpu<>{}, kivi_read{cache.config}, kivi_read_inputs<E>{cache.in(), tokens}, outputs(want_k, want_v)) ==
          status::ok);
  const detail::kivi_read_plan w = detail::kivi_read_plan_of(cache.config, heads, dim, tokens);
  const kivi_read_outputs<Eout> got = outputs(got_k, got_v);
  for (index_t u = w.count(); u-- > 0;) detail::kivi_read_unit(w, cache.in(), got, u);
  CHECK(std::memcmp(got_k.data(), want_k.data(), n * sizeof(Eout)) == 0);
  CHECK(std::memcmp(got_v.data(), want_v.data(), n * sizeof(Eout)) == 0);
}

/// Streams `all` in `chunks` through the CPU backend and through the units side by side: after
/// every append the two caches hold the same bytes — sentinels included — and read the same.
template <class E>
void check_units_stream(const kivi& k, const view<E, 3>& all, const std::vector<index_t>& chunks, index_t capacity) {
  const index_t heads = all.extent(0), dim = all.extent(2);
  kivi_buffers<E> backend(k, heads, capacity, dim), units = backend;
  std::vector<E> values_storage = values_for(all);
  const view<const E, 3> values(values_storage.data(), {heads, all.extent(1), dim});
  index_t held = 0;
  for (index_t n : chunks) {
    const view<const E, 3> keys = tokens_of(all, held, n), vals = tokens_of(values, held, n);
    REQUIRE(backend.append(keys, vals, held) == status::ok);
    append_by_units(units, keys, vals, held);
    held += n;
    INFO(element_name<E>() << " after " << held << " tokens");
    CHECK(units.same_bytes(backend));
    if (held > 0) {
      check_read_by_units<E>(backend, held);
      check_read_by_units<float>(backend, held);
    }
  }
}

TEST_CASE("KIVI's CUDA units, run on the host, write exactly what the CPU backend writes", "[kivi][units]") {
  for (bool each_op : {false, true})
    for_each_kivi_stream(each_op, [](const kivi& k, const auto& keys, const std::vector<index_t>& chunks,
                                     index_t capacity, const std::string& label) {
      INFO(label);
      check_units_stream(k, keys.cache, chunks, capacity);
    });
}

TEST_CASE("residual rows hold the new tokens' bits, NaN payloads included", "[kivi][units]") {
  kivi k;
  k.residual = 32;
  kv_cache<f16> all = make_cache<f16>(2, 40, 64, kv_layout::contiguous);
  fill(all.cache, 11);
  all.cache(0, 30, 5) = f16{0x7C01};  // a signalling NaN: narrowing through fp32 would quiet it
  all.cache(1, 35, 7) = f16{0xFE2A};
  kivi_buffers<f16> backend(k, 2, 32, 64), units = backend;
  for (index_t held : {index_t{0}, index_t{20}}) {  // 20 tokens, then 20 more: a flush between
    const view<const f16, 3> added = tokens_of(all.cache, held, 20);
    REQUIRE(backend.append(added, added, held) == status::ok);
    append_by_units(units, added, added, held);
  }
  CHECK(units.same_bytes(backend));
  const auto [keys, values] = read_back(backend, 40);
  CHECK(keys[static_cast<std::size_t>((1 * 40 + 35) * 64 + 7)].bits == 0xFE2A);  // the key residual: 32 … 39
  CHECK(values[static_cast<std::size_t>((0 * 40 + 30) * 64 + 5)].bits == 0x7C01);  // the ring holds tokens 8 … 39
  CHECK(values[static_cast<std::size_t>((1 * 40 + 35) * 64 + 7)].bits == 0xFE2A);
  check_read_by_units<f16>(backend, 40);
}

// --- scores from packed keys ----------------------------------------------------------------

/// Logits of every query head against every key of the dequantized cache, in double.
template <class E>
std::vector<double> reference_logits(const std::vector<E>& queries, index_t q_heads, const std::vector<float>& keys,
                                     index_t kv_heads, index_t tokens, index_t dim, std::vector<double>* magnitude) {
  std::vector<double> out(static_cast<std::size_t>(q_heads * tokens));
  magnitude->assign(out.size(), 0.0);
  for (index_t h = 0; h < q_heads; ++h)
    for (index_t t = 0; t < tokens; ++t) {
      const index_t kv = h / (q_heads / kv_heads);
      double s = 0.0, m = 0.0;
      for (index_t d = 0; d < dim; ++d) {
        const double q = to_float(queries[static_cast<std::size_t>(h * dim + d)]);
        const double k = keys[static_cast<std::size_t>((kv * tokens + t) * dim + d)];
        s += q * k;
        m += std::fabs(q * k);
      }
      out[static_cast<std::size_t>(h * tokens + t)] = s;
      (*magnitude)[static_cast<std::size_t>(h * tokens + t)] = m;
    }
  return out;
}

template <class E>
void check_scores(const uniform_format& f, bool vidkv, index_t q_heads, index_t kv_heads, index_t packed,
                  index_t residual, index_t dim, int nth) {
  INFO("bits " << f.bits << " scheme " << static_cast<int>(f.scheme) << " vidkv " << vidkv << " " << element_name<E>()
               << " P " << packed << " R " << residual << " D " << dim << " Q " << q_heads << "/" << kv_heads);
  kv_cache<E> keys = make_cache<E>(kv_heads, packed + residual, dim, kv_layout::contiguous);
  fill(keys.cache, static_cast<std::uint64_t>(packed * 7 + dim));
  const kv_problem prob{kv_heads, packed, dim};
  const kv_extents ce = uniform_code_extents(f, prob), pe = uniform_param_extents(f, prob);
  std::vector<std::uint32_t> codes(static_cast<std::size_t>(std::max<index_t>(1, ce.heads * ce.rows * ce.cols)));
  std::vector<E> scale(static_cast<std::size_t>(std::max<index_t>(1, pe.heads * pe.rows * pe.cols)));
  std::vector<E> zero(scale.size());
  const uniform_packed<E> out{view<std::uint32_t, 3>(codes.data(), {ce.heads, ce.rows, ce.cols}),
                              view<E, 3>(scale.data(), {pe.heads, pe.rows, pe.cols}),
                              view<E, 3>(zero.data(), {pe.heads, pe.rows, pe.cols})};
  if (packed > 0) REQUIRE(apply(cpu<>{}, uniform_quantize{f}, kv_inputs<E>{tokens_of(keys.cache, 0, packed)}, out) == status::ok);
  // The keys attention would see: dequantized packed part (fp32 out), then the residual.
  const index_t tokens = packed + residual;
  std::vector<float> seen(static_cast<std::size_t>(kv_heads * tokens * dim));
  const view<float, 3> seen_view(seen.data(), {kv_heads, tokens, dim});
  if (packed > 0)
    REQUIRE(apply(cpu<>{}, uniform_dequantize{f, false, vidkv},
                  uniform_packed<const E>{out.codes, out.scale, out.zero},
                  kv_outputs<float>{token_range(seen_view, 0, packed)}) == status::ok);
  for (index_t h = 0; h < kv_heads; ++h)
    for (index_t t = packed; t < tokens; ++t)
      for (index_t d = 0; d < dim; ++d) seen_view(h, t, d) = to_float(keys.cache(h, t, d));

  std::vector<E> queries(static_cast<std::size_t>(q_heads * dim));
  rng r(3);
  for (E& q : queries) q = from_float<E>(r.uniform() * 2.0f - 1.0f);
  std::vector<double> magnitude;
  const std::vector<double> want = reference_logits(queries, q_heads, seen, kv_heads, tokens, dim, &magnitude);
  // The packed sum splits each q·x̂ into q·a·code + q·b (x̂ = a·code + b): its rounding scales
  // with Σ|q|·(|x̂| + 2|b|), which exceeds Σ|q·x̂| where the zero point is far from the values.
  for (index_t h = 0; h < q_heads; ++h)
    for (index_t t = 0; t < packed; ++t) {
      const index_t kv = h / (q_heads / kv_heads), g = t / f.group;
      for (index_t d = 0; d < dim; ++d) {
        const std::size_t at = static_cast<std::size_t>((kv * pe.rows + g) * dim + d);
        const double s = std::fabs(to_float(scale[at])), z = std::fabs(to_float(zero[at]));
        const double b = f.scheme == kv_scheme::asymmetric  ? z
                         : f.scheme == kv_scheme::symmetric ? std::ldexp(s, f.bits - 1)
                         : vidkv                            ? (f.scheme == kv_scheme::ternary ? 1.0 : 0.0)
                                                            : s;
        magnitude[static_cast<std::size_t>(h * tokens + t)] +=
            2.0 * b * std::fabs(to_float(queries[static_cast<std::size_t>(h * dim + d)]));
      }
    }

  const packed_key_scores p{f, vidkv};
  const packed_score_inputs<E> in{view<const E, 2>(queries.data(), {q_heads, dim}),
                                  uniform_packed<const E>{out.codes, out.scale, out.zero},
                                  tokens_of(keys.cache, packed, residual)};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{0, nth}, p, prob));
  std::vector<float> got(static_cast<std::size_t>(q_heads * tokens), -1.0f), one(got.size(), -2.0f);
  for (int ith = 0; ith < nth; ++ith)
    REQUIRE(apply(cpu<>{ith, nth}, p, in, packed_score_outputs<>{make_view(got.data(), q_heads, tokens)},
                  workspace{ws.data(), ws.size()}) == status::ok);
  std::vector<std::byte> ws1(workspace_bytes(cpu<>{}, p, prob));
  REQUIRE(apply(cpu<>{}, p, in, packed_score_outputs<>{make_view(one.data(), q_heads, tokens)},
                workspace{ws1.data(), ws1.size()}) == status::ok);
  CHECK(std::memcmp(got.data(), one.data(), got.size() * sizeof(float)) == 0);
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = worse(worst, std::fabs(got[i] - want[i]) / (magnitude[i] * 2e-6 + 1e-12));
  CHECK(worst <= 1.0);  // fp32 rounding of the sums
}

TEST_CASE("scores from packed keys equal the dot products with the dequantized keys", "[packed_scores]") {
  for (int bits : {1, 2, 3, 4, 8}) {
    check_scores<float>({bits, 32, kv_group_axis::tokens}, false, 4, 2, 64, 5, 128, 1);
    check_scores<f16>({bits, 64, kv_group_axis::tokens}, false, 2, 2, 128, 0, 37, 3);
  }
  check_scores<bf16>({4, 32, kv_group_axis::tokens, kv_scheme::symmetric}, false, 8, 1, 96, 3, 64, 2);
  for (bool vidkv : {false, true}) {
    check_scores<float>({1, 32, kv_group_axis::tokens, kv_scheme::sign}, vidkv, 2, 1, 64, 1, 15, 2);
    check_scores<float>({2, 32, kv_group_axis::tokens, kv_scheme::ternary}, vidkv, 2, 2, 32, 2, 17, 1);
  }
  check_scores<float>({2, 32, kv_group_axis::tokens}, false, 3, 3, 0, 9, 64, 2);  // residual only
}

TEST_CASE("scores over a KIVI cache: packed keys, then the residual", "[packed_scores][kivi]") {
  kivi k;
  k.residual = 32;
  kv_cache<float> all = make_cache<float>(2, 90, 64, kv_layout::contiguous);
  fill(all.cache, 44);
  kivi_buffers<float> cache(k, 2, 96, 64);
  REQUIRE(cache.append(tokens_of(all.cache, 0, 90), tokens_of(all.cache, 0, 90), 0) == status::ok);
  const auto seen = read_back(cache, 90).first;
  std::vector<float> queries(4 * 64);
  rng r(1);
  for (float& q : queries) q = r.uniform() - 0.5f;
  const packed_key_scores p{kivi_key_format(k)};
  const packed_score_inputs<float> in = kivi_key_scores(k, cache.in(), view<const float, 2>(queries.data(), {4, 64}), 90);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, kv_problem{2, 64, 64}));
  std::vector<float> scores(4 * 90);
  REQUIRE(apply(cpu<>{}, p, in, packed_score_outputs<>{make_view(scores.data(), 4, 90)}, workspace{ws.data(), ws.size()}) ==
          status::ok);
  std::vector<double> magnitude;
  const std::vector<double> want = reference_logits(queries, 4, seen, 2, 90, 64, &magnitude);
  // The packed keys' rounding scales with Σ|q|·(|x̂| + 2|z|) (see check_scores): 64 packed keys,
  // zero points (kv head, group of 32, channel) in a capacity of 96.
  for (index_t h = 0; h < 4; ++h)
    for (index_t t = 0; t < 64; ++t)
      for (index_t d = 0; d < 64; ++d)
        magnitude[static_cast<std::size_t>(h * 90 + t)] +=
            2.0 * std::fabs(cache.key_zero[static_cast<std::size_t>(((h / 2) * 3 + t / 32) * 64 + d)]) *
            std::fabs(queries[static_cast<std::size_t>(h * 64 + d)]);
  for (std::size_t i = 0; i < scores.size(); ++i) CHECK(std::fabs(scores[i] - want[i]) <= 2e-6 * magnitude[i] + 1e-12);

  // Either part alone, the other a default-constructed view: the packed keys' 64 columns, or
  // the residual's 26 with the kv heads taken from the residual.
  packed_score_inputs<float> packed_only = in, residual_only = in;
  packed_only.residual = {};
  residual_only.keys = {};
  std::vector<float> part(4 * 64, -1.0f);
  REQUIRE(apply(cpu<>{}, p, packed_only, packed_score_outputs<>{make_view(part.data(), 4, 64)},
                workspace{ws.data(), ws.size()}) == status::ok);
  for (index_t h = 0; h < 4; ++h)
    for (index_t t = 0; t < 64; ++t) CHECK(part[static_cast<std::size_t>(h * 64 + t)] == scores[static_cast<std::size_t>(h * 90 + t)]);
  part.assign(4 * 26, -1.0f);
  REQUIRE(apply(cpu<>{}, p, residual_only, packed_score_outputs<>{make_view(part.data(), 4, 26)},
                workspace{ws.data(), ws.size()}) == status::ok);
  for (index_t h = 0; h < 4; ++h)
    for (index_t t = 0; t < 26; ++t)
      CHECK(part[static_cast<std::size_t>(h * 26 + t)] == scores[static_cast<std::size_t>(h * 90 + 64 + t)]);
}

// --- bad input ----------------------------------------------------------------------------------

TEST_CASE("bad input: append, read and scores refuse and write nothing", "[kivi][bad_input]") {
  kivi k;
  k.residual = 32;
  kv_cache<float> all = make_cache<float>(2, 200, 64, kv_layout::contiguous);
  fill(all.cache, 2);
  kivi_buffers<float> cache(k, 2, 64, 64);
  const kivi_buffers<float> pristine = cache;
  const auto untouched = [&] {
    return cache.key_codes == pristine.key_codes && cache.value_codes == pristine.value_codes &&
           cache.key_scale == pristine.key_scale && cache.key_residual == pristine.key_residual &&
           cache.value_residual == pristine.value_residual && cache.value_zero == pristine.value_zero;
  };
  const auto keys = tokens_of(all.cache, 0, 10);
  CHECK(kivi_max_tokens(k, 64) == 95);
  CHECK(cache.append(tokens_of(all.cache, 0, 96), tokens_of(all.cache, 0, 96), 0) == status::shape_mismatch);  // full
  CHECK(cache.append(keys, keys, 90) == status::shape_mismatch);
  CHECK(cache.append(keys, keys, -1) == status::shape_mismatch);
  CHECK(cache.append(keys, keys, INT64_MAX) == status::shape_mismatch);  // T + n overflowed, wrapped and passed
  CHECK(cache.append(keys, tokens_of(all.cache, 0, 9), 0) == status::shape_mismatch);
  CHECK(cache.append(keys, keys, 0, cpu<>{1, 1}) == status::invalid_exec);
  CHECK(cache.append(keys, view<const float, 3>(cache.key_residual.data(), {2, 10, 64}), 0) == status::aliasing);
  for (const kivi& bad : {kivi{2, 2, 32, 48}, kivi{2, 2, 32, 0}, kivi{0, 2, 32, 32}, kivi{2, 9, 32, 32}, kivi{2, 2, 48, 96}}) {
    CHECK(apply(cpu<>{}, kivi_append{bad}, kivi_append_inputs<float>{keys, keys, 0}, cache.out()) ==
          status::invalid_parameter);
  }
  kivi_cache<float> wrong = cache.out();
  wrong.key_residual = view<float, 3>(cache.key_residual.data(), {2, 16, 64});
  CHECK(apply(cpu<>{}, kivi_append{k}, kivi_append_inputs<float>{keys, keys, 0}, wrong) == status::shape_mismatch);
  wrong = cache.out();
  wrong.values.zero = wrong.keys.zero;
  CHECK(apply(cpu<>{}, kivi_append{k}, kivi_append_inputs<float>{keys, keys, 0}, wrong) == status::shape_mismatch);
  wrong = cache.out();
  wrong.value_residual = view<float, 3>(cache.key_residual.data(), {2, 32, 64});
  CHECK(apply(cpu<>{}, kivi_append{k}, kivi_append_inputs<float>{keys, keys, 0}, wrong) == status::aliasing);
  CHECK(untouched());

  REQUIRE(cache.append(keys, keys, 0) == status::ok);
  std::vector<float> out(2 * 10 * 64, -1.0f);
  const auto read = [&](index_t tokens, view<float, 3> kv, view<float, 3> vv) {
    return apply(cpu<>{}, kivi_read{k}, kivi_read_inputs<float>{cache.in(), tokens}, kivi_read_outputs<float>{kv, vv});
  };
  std::vector<float> other(out);
  CHECK(read(0, make_view(out.data(), 2, 0, 64), make_view(other.data(), 2, 0, 64)) == status::empty_input);
  CHECK(read(96, make_view(out.data(), 2, 10, 64), make_view(other.data(), 2, 10, 64)) == status::shape_mismatch);
  CHECK(read(10, make_view(out.data(), 2, 9, 64), make_view(other.data(), 2, 10, 64)) == status::shape_mismatch);
  CHECK(read(10, make_view(out.data(), 2, 10, 64), make_view(out.data(), 2, 10, 64)) == status::aliasing);
  CHECK(std::all_of(out.begin(), out.end(), [](float v) { return v == -1.0f; }));

  // Scores: GQA heads that do not divide, a short workspace, scores over the queries.
  std::vector<float> queries(3 * 64, 0.5f), scores(3 * 10, -1.0f);
  const packed_key_scores p{kivi_key_format(k)};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, kv_problem{2, 0, 64}));
  const auto score = [&](const packed_score_inputs<float>& in, view<float, 2> s, std::size_t bytes) {
    return apply(cpu<>{}, p, in, packed_score_outputs<>{s}, workspace{ws.data(), bytes});
  };
  const auto in3 = kivi_key_scores(k, cache.in(), view<const float, 2>(queries.data(), {3, 64}), 10);
  CHECK(score(in3, make_view(scores.data(), 3, 10), ws.size()) == status::shape_mismatch);
  const auto in2 = kivi_key_scores(k, cache.in(), view<const float, 2>(queries.data(), {2, 64}), 10);
  CHECK(score(in2, make_view(scores.data(), 2, 10), ws.size() - 1) == status::workspace_too_small);
  CHECK(score(in2, make_view(scores.data(), 2, 9), ws.size()) == status::shape_mismatch);
  CHECK(score(in2, view<float, 2>(queries.data(), {2, 10}), ws.size()) == status::aliasing);
  CHECK(apply(cpu<>{}, p, in2, packed_score_outputs<>{make_view(scores.data(), 2, 10)}, workspace{nullptr, ws.size()}) ==
        status::null_pointer);
  CHECK(apply(cpu<>{}, packed_key_scores{{2, 32, kv_group_axis::channels}}, in2,
              packed_score_outputs<>{make_view(scores.data(), 2, 10)}, workspace{ws.data(), ws.size()}) ==
        status::invalid_parameter);
  CHECK(std::all_of(scores.begin(), scores.end(), [](float v) { return v == -1.0f; }));
}

}  // namespace
}  // namespace tokred::testing
