// tests/cpu/test_vidkv_scores.cpp — vidkv_key_scores on CPU: attention logits from VidKV packed
// keys against the dot products of the query with vidkv_key_dequantize's fp32 keys (within the
// fp32 bound of the folded sums) for every key setting, both dequantization modes, fp32, fp16 and
// bf16, grouped-query heads, a residual, every layout and 1–3 shares bit for bit; the spectral
// identity by hand; the CUDA units on a corrupt channel list; and every bad input with the scores
// untouched.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include <tokred/cpu/vidkv.hpp>
#include <tokred/cpu/vidkv_scores.hpp>
#include <tokred/policy/vidkv_units.hpp>
#include <tokred/tokred.hpp>

#include "reference/vidkv_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/kv_cache.hpp"
#include "support/vidkv_buffers.hpp"

namespace tokred::testing {
namespace {

/// Runs the scores as `nth` shares into a sentinel-filled (q_heads, tokens) matrix.
template <class E>
std::vector<float> run_scores(const vidkv_key_scores& p, const vidkv_score_inputs<E>& in, index_t tokens, int nth) {
  const index_t q_heads = in.queries.extent(0);
  std::vector<float> scores(static_cast<std::size_t>(q_heads * tokens), -1.0f);
  const kv_problem prob = detail::vidkv_score_problem(p, in);  // kv heads from the packed keys when there is no residual
  REQUIRE(prob.tokens + in.residual.extent(1) == tokens);
  for (int ith = 0; ith < nth; ++ith) {
    host_workspace ws(workspace_bytes(cpu<>{ith, nth}, p, prob));
    REQUIRE(apply(cpu<>{ith, nth}, p, in, packed_score_outputs<>{make_view(scores.data(), q_heads, tokens)}, ws.get()) ==
            status::ok);
  }
  return scores;
}

/// The dequantize-then-dot oracle of every query head's logits, in double, and the bound on
/// the scores' fp32 rounding: `seen` holds the keys attention would see (the P packed keys
/// dequantized to fp32, then the residual). The folded sums round with Σ|q|·(|x̂| + 2|b|) per part
/// (x̂ = a·code + b, see test_kivi's check_scores); the spectral part's query is Q/n, and
/// |x̂| + 2|b| ≤ 3s there.
struct logits_oracle {
  std::vector<double> want, bound;  // (q_heads, tokens)
};

template <class E>
logits_oracle reference_logits(const vidkv_keys& k, const view<const E, 2>& queries, const vidkv_packed_keys<const E>& keys,
                               index_t packed, const view<const float, 3>& seen) {
  const index_t q_heads = queries.extent(0), dim = queries.extent(1), kv_heads = seen.extent(0), tokens = seen.extent(1);
  const vidkv_key_layout l = vidkv_key_layout_of(k, dim);
  const index_t per_kv = q_heads / kv_heads, n = l.easy;
  const auto q_at = [&](index_t h, index_t c) { return static_cast<double>(to_float(queries(h, c))); };
  logits_oracle o{std::vector<double>(static_cast<std::size_t>(q_heads * tokens)), {}};
  o.bound = o.want;
  for (index_t h = 0; h < q_heads; ++h) {
    const index_t kv = h / per_kv;
    std::vector<double> easy;  // the query's easy values, then their DFT (Q, interleaved)
    for (index_t j = 0; j < n && packed > 0; ++j) easy.push_back(q_at(h, keys.channels(l.difficult + j)));
    const std::vector<double> spectrum = easy.empty() ? std::vector<double>{} : ref::real_dft(easy);
    for (index_t t = 0; t < tokens; ++t) {
      double sum = 0.0, magnitude = 0.0;
      for (index_t d = 0; d < dim; ++d) {
        sum += q_at(h, d) * seen(kv, t, d);
        magnitude += std::fabs(q_at(h, d) * seen(kv, t, d));
      }
      if (t < packed) {
        const index_t g = t / k.group;
        for (index_t j = 0; j < l.difficult; ++j) {
          const double s = std::fabs(to_float(keys.difficult.scale(kv, g, j)));
          const double z = l.difficult_format.scheme == kv_scheme::asymmetric ? std::fabs(to_float(keys.difficult.zero(kv, g, j))) : 0.0;
          magnitude += 2.0 * (z + s + 1.0) * std::fabs(q_at(h, keys.channels(j)));
        }
        for (index_t c = 0; c < 2 * n; ++c)
          magnitude += 3.0 * std::fabs(to_float(keys.spectral.scale(kv, g, c))) *
                       std::fabs(spectrum[static_cast<std::size_t>(c)]) / static_cast<double>(n);
      }
      o.want[static_cast<std::size_t>(h * tokens + t)] = sum;
      o.bound[static_cast<std::size_t>(h * tokens + t)] = 2e-6 * magnitude + 1e-12;
    }
  }
  return o;
}

bool within(const std::vector<float>& got, const logits_oracle& o) {
  if (got.size() != o.want.size()) return false;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - o.want[i]) <= o.bound[i])) return false;
  return true;
}

template <class E>
std::vector<E> random_queries(index_t q_heads, index_t dim, std::uint64_t seed) {
  std::vector<E> queries(static_cast<std::size_t>(q_heads * dim));
  rng r(seed);
  for (E& q : queries) q = from_float<E>(r.uniform() * 2.0f - 1.0f);
  return queries;
}

/// The logits as the CUDA backend computes them, its per-thread bodies run on the host: per
/// query head its two queries (vidkv_score_query), then one key at a time (vidkv_logit).
template <class E>
std::vector<float> scores_by_units(const vidkv_key_scores& p, const vidkv_score_inputs<E>& in, index_t tokens) {
  const kv_problem prob = detail::vidkv_score_problem(p, in);
  const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
  const detail::vidkv_key_plan w{l, false, p.vidkv_dequant, prob.heads, prob.tokens};
  std::vector<double> cos_rows(static_cast<std::size_t>(l.easy) + 1), sin_rows(cos_rows.size());
  detail::fill_twiddle_rows(cos_rows.data(), sin_rows.data(), l.easy);
  const index_t q_heads = in.queries.extent(0), width = l.difficult + 2 * l.easy, per_kv = q_heads / prob.heads;
  std::vector<float> staged(static_cast<std::size_t>(width) + 1), scores(static_cast<std::size_t>(q_heads * tokens));
  for (index_t h = 0; h < q_heads; ++h) {
    for (index_t i = 0; i < width && prob.tokens > 0; ++i)
      staged[static_cast<std::size_t>(i)] =
          detail::vidkv_score_query(cos_rows.data(), sin_rows.data(), l, in.queries, in.keys.channels, h, i);
    detail::with_difficult_scheme(l, [&](auto tag) {
      for (index_t t = 0; t < tokens; ++t)
        scores[static_cast<std::size_t>(h * tokens + t)] =
            detail::vidkv_logit<decltype(tag)::value>(w, staged.data(), in, h, h / per_kv, prob.tokens, t);
    });
  }
  return scores;
}

/// Logits from packed keys against the dequantize-then-dot oracle, for P packed and R residual
/// tokens; 1, 2 and 3 shares give the same bits; the CUDA backend's per-thread bodies stay within
/// the same bound.
template <class E>
void check_scores(const vidkv_keys& k, bool vidkv, index_t q_heads, index_t kv_heads, index_t packed,
                  index_t residual, index_t dim, kv_layout how) {
  INFO(describe(k) << (vidkv ? " vidkv_dequant " : " ") << element_name<E>() << " P " << packed << " R " << residual
                   << " D " << dim << " Q " << q_heads << "/" << kv_heads);
  const index_t tokens = packed + residual;
  kv_cache<E> keys = make_cache<E>(kv_heads, tokens, dim, how);
  fill(keys.cache, static_cast<std::uint64_t>(packed * 13 + dim));
  const kv_problem prob{kv_heads, packed, dim};
  key_buffers<E> kb(k, prob);
  std::vector<float> seen(static_cast<std::size_t>(kv_heads * tokens * dim));
  const view<float, 3> seen_view(seen.data(), {kv_heads, tokens, dim});
  if (packed > 0) {
    REQUIRE(quantize_keys(k, tokens_of(keys.cache, 0, packed), kb) == status::ok);
    host_workspace ws(workspace_bytes(cpu<>{}, vidkv_key_dequantize{k, vidkv}, prob));
    REQUIRE(apply(cpu<>{}, vidkv_key_dequantize{k, vidkv}, kb.in(), kv_outputs<float>{token_range(seen_view, 0, packed)},
                  ws.get()) == status::ok);
  }
  for (index_t h = 0; h < kv_heads; ++h)
    for (index_t t = packed; t < tokens; ++t)
      for (index_t d = 0; d < dim; ++d) seen_view(h, t, d) = to_float(keys.cache(h, t, d));
  const std::vector<E> queries = random_queries<E>(q_heads, dim, 5);
  const view<const E, 2> q(queries.data(), {q_heads, dim});

  const vidkv_key_scores p{k, vidkv};
  const vidkv_score_inputs<E> in{q, kb.in(), tokens_of(keys.cache, packed, residual)};
  const std::vector<float> one = run_scores(p, in, tokens, 1);
  const logits_oracle oracle = reference_logits(k, q, kb.in(), packed, view<const float, 3>(seen_view));
  CHECK(within(one, oracle));
  for (int nth : {2, 3}) CHECK(same_bytes(run_scores(p, in, tokens, nth), one));
  CHECK(within(scores_by_units(p, in, tokens), oracle));
}

}  // namespace

TEST_CASE("vidkv_key_scores: logits equal the dot products with the dequantized keys, every setting",
          "[vidkv_scores]") {
  for (const vidkv_keys& k : key_settings(32))
    for (const bool vidkv : {false, true}) {
      check_scores<float>(k, vidkv, 4, 2, 64, 5, 64, kv_layout::contiguous);
      check_scores<f16>(k, vidkv, 2, 2, 96, 0, 128, kv_layout::cells);
    }
  check_scores<bf16>({1.5, true, 32, false}, false, 6, 3, 32, 3, 48, kv_layout::strided);
  check_scores<float>({1.25, true, 64, false}, true, 8, 1, 128, 2, 40, kv_layout::reversed);  // odd n = 8
  check_scores<float>({1.5, true, 32, false}, false, 2, 1, 0, 9, 64, kv_layout::contiguous);   // residual only
}

TEST_CASE("vidkv_key_scores over a streaming cache: its packed keys, then its residual", "[vidkv_scores]") {
  // VidKV's paper setting through a prefill of 70 and 100 decode steps (a flush at step 58): at
  // every fifth step the cache's logits, through vidkv_key_score_inputs, equal the oracle over
  // what vidkv_read returns.
  vidkv c;
  c.residual = 64;
  const index_t heads = 2, dim = 64, q_heads = 4;
  kv_cache<float> k = make_cache<float>(heads, 170, dim, kv_layout::contiguous), v = k;
  fill(k.cache, 31);
  fill(v.cache, 32);
  cache_buffers<float> cache(c, heads, 256, dim);
  const std::vector<float> queries = random_queries<float>(q_heads, dim, 9);
  const view<const float, 2> q(queries.data(), {q_heads, dim});
  const vidkv_key_scores p{vidkv_keys_of(c), c.vidkv_dequant};
  int checked = 0;
  for (index_t s = 0; s <= 100; ++s) {
    const index_t first = s == 0 ? 0 : 70 + s - 1, n = s == 0 ? 70 : 1;
    cache.step(tokens_of(k.cache, first, n), tokens_of(v.cache, first, n));
    if (s % 5 != 0) continue;
    INFO("step " << s << " packed " << cache.state.packed << " residual " << cache.state.residual);
    std::vector<float> ko, vo;
    REQUIRE(cache.read({}, {}, ko, vo) == status::ok);
    const index_t held = cache.state.packed + cache.state.residual;
    const vidkv_score_inputs<float> in = vidkv_key_score_inputs(c, cache.in(), q, cache.state);
    const std::vector<float> got = run_scores(p, in, held, 2);
    const view<const float, 3> seen(ko.data(), {heads, held, dim});
    CHECK(within(got, reference_logits(vidkv_keys_of(c), q, in.keys, cache.state.packed, seen)));
    ++checked;
  }
  CHECK(checked == 21);
}

TEST_CASE("vidkv_key_scores: the spectral part by hand, one token, one easy pair", "[vidkv_scores]") {
  // head_dim 2, 1 bit: both channels through the DFT. The group of 32 tokens holds x = (3, 1):
  // X_0 = 4, X_1 = 2 (both real), so the 1-bit codes of (Re X_0, Im X_0, Re X_1, Im X_1) are all
  // 1 and the scales mean|·| = (4, 0, 2, 0). Dequantized: X̂ = (4, 0, 2, 0) either way, x̂ = (3, 1).
  // For q = (1, −2): Q = (−1, 3), q·x̂ = 1 = ((−1)·4 + 3·2) / 2.
  const vidkv_keys k{1.0, true, 32, false};
  std::vector<float> x(32 * 2);
  for (index_t t = 0; t < 32; ++t) x[static_cast<std::size_t>(2 * t)] = 3.0f, x[static_cast<std::size_t>(2 * t + 1)] = 1.0f;
  key_buffers<float> kb(k, {1, 32, 2});
  REQUIRE(quantize_keys(k, view<float, 3>(x.data(), {1, 32, 2}), kb) == status::ok);
  const float q[2] = {1.0f, -2.0f};
  for (const bool vidkv : {false, true}) {
    const std::vector<float> got = run_scores(vidkv_key_scores{k, vidkv}, vidkv_score_inputs<float>{make_view(q, 1, 2), kb.in(), {}}, 32, 2);
    for (float s : got) CHECK(s == 1.0f);
  }
}

TEST_CASE("vidkv_key_scores: the CUDA units read no query outside its row from a corrupt channel list",
          "[vidkv_scores]") {
  // The device takes the channel list as quantization wrote it. An entry naming no channel (< 0 or
  // >= head_dim) contributes a zero query, here the same as a valid list naming channel 5, whose
  // query is 0; the row holds head_dim values exactly, so a read outside it fails under ASan.
  const index_t dim = 6;
  vidkv_key_layout l{};
  l.difficult = 2;
  l.easy = 4;
  const std::vector<float> q = {0.5f, -1.25f, 2.0f, 0.75f, 3.0f, 0.0f};
  const std::vector<std::int64_t> corrupt = {-1, dim, 0, 2, std::int64_t{1} << 40, 3};
  const std::vector<std::int64_t> valid = {5, 5, 0, 2, 5, 3};
  std::vector<double> cos_rows(static_cast<std::size_t>(l.easy) + 1), sin_rows(cos_rows.size());
  detail::fill_twiddle_rows(cos_rows.data(), sin_rows.data(), l.easy);
  const view<const float, 2> queries(q.data(), {1, dim});
  for (index_t i = 0; i < l.difficult + 2 * l.easy; ++i) {
    INFO("query value " << i);
    const float got = detail::vidkv_score_query(cos_rows.data(), sin_rows.data(), l, queries,
                                                view<const std::int64_t, 1>(corrupt.data(), {dim}), 0, i);
    const float want = detail::vidkv_score_query(cos_rows.data(), sin_rows.data(), l, queries,
                                                 view<const std::int64_t, 1>(valid.data(), {dim}), 0, i);
    CHECK(std::memcmp(&got, &want, sizeof got) == 0);
  }
}

TEST_CASE("vidkv_key_scores: bad input returns its status and leaves the scores untouched", "[vidkv_scores]") {
  const vidkv_keys k;  // 1.5 bits mixed, G = 32
  const index_t heads = 2, dim = 64, packed = 64;
  kv_cache<float> keys = make_cache<float>(heads, packed + 4, dim, kv_layout::contiguous);
  fill(keys.cache, 8);
  key_buffers<float> kb(k, {heads, packed, dim});
  REQUIRE(quantize_keys(k, tokens_of(keys.cache, 0, packed), kb) == status::ok);
  std::vector<float> queries(4 * dim, 0.5f), scores(4 * (packed + 4), -1.0f);
  const std::vector<float> untouched = scores;
  const vidkv_key_scores p{k};
  host_workspace ws(workspace_bytes(cpu<>{}, p, kv_problem{heads, packed, dim}));
  const auto call = [&](const vidkv_score_inputs<float>& in, const view<float, 2>& out, const vidkv_key_scores& policy,
                        cpu<> exec = {}, workspace w = {}) {
    return apply(exec, policy, in, packed_score_outputs<>{out}, w.data ? w : ws.get());
  };
  const view<const float, 2> q = make_view<const float>(queries.data(), 4, dim);
  const vidkv_score_inputs<float> good{q, kb.in(), tokens_of(keys.cache, packed, 4)};
  const view<float, 2> out = make_view(scores.data(), 4, packed + 4);
  CHECK(call(good, out, p, cpu<>{0, 0}) == status::invalid_exec);
  CHECK(call({make_view<const float>(queries.data(), 0, dim), good.keys, good.residual}, out, p) == status::empty_input);
  CHECK(call(good, out, vidkv_key_scores{{1.5, true, 48, false}}) == status::invalid_parameter);  // group 48
  CHECK(call(good, out, vidkv_key_scores{{3.0, false, 32, false}}) == status::invalid_parameter);  // 3-bit uniform
  CHECK(call({make_view<const float>(queries.data(), 3, dim), good.keys, good.residual}, out, p) == status::shape_mismatch);
  CHECK(call({q, good.keys, tokens_of(keys.cache, packed, 3)}, out, p) == status::shape_mismatch);  // scores are P + 4 wide
  key_buffers<float> corrupt = kb;
  corrupt.channels[0] = corrupt.channels[1];
  CHECK(call({q, corrupt.in(), good.residual}, out, p) == status::invalid_parameter);
  vidkv_score_inputs<float> no_codes = good;
  no_codes.keys.spectral.codes = view<const std::uint32_t, 3>(nullptr, {heads, 2, 64});
  CHECK(call(no_codes, out, p) == status::null_pointer);
  CHECK(call(good, make_view(scores.data(), 4, packed + 3), p) == status::shape_mismatch);
  CHECK(call({make_view<const float>(scores.data(), 4, dim), good.keys, good.residual}, out, p) == status::aliasing);
  CHECK(call(good, out, p, cpu<>{}, workspace{ws.bytes.data(), ws.bytes.size() - 1}) == status::workspace_too_small);
  CHECK(scores == untouched);
  CHECK(call(good, out, p) == status::ok);
  CHECK(scores != untouched);
}

}  // namespace tokred::testing
