// tests/cuda/test_uniform_quant_cuda.cu — the CUDA backends of uniform_quantize,
// uniform_dequantize and packed_key_scores against the CPU backend and a double oracle.
//
// Checked, over every format of tests/support/uniform_buffers.hpp, fp32/fp16/bf16 caches in the
// four layouts of tests/support/kv_cache.hpp, with and without round_each_op and vidkv_dequant:
//   quantize     codes, scales and zero points bit for bit those of the CPU backend; the zero
//                points of schemes without one are not written
//   dequantize   values bit for bit the CPU backend's (NaN where it has NaN: payloads differ),
//                to the cache's type and to fp32, into a strided output whose padding stays
//   scores       within fp32 summation's γ(D + 2)·Σ|q|·(|x̂| + 2|b|) of the double dot products
//                with the keys attention sees (dequantized, then the residual); several tiles,
//                two channel chunks, grouped-query runs longer than 8 heads, residual only
//   bad input    the CPU backend's statuses, nothing launched, nothing written
// plus a CUDA-graph capture and replay of quantize, dequantize and scores. The same per-thread
// bodies run on the host in tests/cpu/test_uniform_group.cpp. Exits 77 (CTest's "skipped") when
// no CUDA device is present; otherwise prints one line per failure (the first 60) and
// "N passed, M failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/kv_cache.hpp"
#include "support/uniform_buffers.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A packed cache on the device, uploaded from (and downloaded into) host packed_buffers.
template <class E>
struct device_packed {
  kv_extents ce, pe;
  device_buffer<std::uint32_t> codes;
  device_buffer<E> scale, zero;

  explicit device_packed(const packed_buffers<E>& host)
      : ce(host.code_extents), pe(host.param_extents), codes(host.codes), scale(host.scale), zero(host.zero) {}

  uniform_packed<E, device_space> out() const {
    return {view<std::uint32_t, 3, device_space>(codes.get(), {ce.heads, ce.rows, ce.cols}),
            view<E, 3, device_space>(scale.get(), {pe.heads, pe.rows, pe.cols}),
            view<E, 3, device_space>(zero.get(), {pe.heads, pe.rows, pe.cols})};
  }
  uniform_packed<const E, device_space> in() const {
    const uniform_packed<E, device_space> o = out();
    return {o.codes, o.scale, o.zero};
  }
  void download_into(packed_buffers<E>& host) const {
    host.codes = codes.download();
    host.scale = scale.download();
    host.zero = zero.download();
  }
};

/// |got − want| / bound, infinite for a NaN on either side (a NaN must fail the bound).
double bounded_error(double got, double want, double bound) {
  const double e = std::fabs(got - want) / bound;
  return e == e ? e : std::numeric_limits<double>::infinity();
}

template <class E>
bool same_bits(const std::vector<E>& a, const std::vector<E>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(E)) == 0;
}

template <class E>
bool same_or_both_nan(E a, E b) {
  return bits_of(a) == bits_of(b) || (std::isnan(to_float(a)) && std::isnan(to_float(b)));
}

std::string label(const uniform_format& f, const char* type, bool each_op, bool vidkv, kv_layout how) {
  return describe(f) + " " + type + (each_op ? " each-op" : "") + (vidkv ? " vidkv" : "") + " layout " +
         std::to_string(static_cast<int>(how));
}

// ---------------------------------------------------------------------------------------------
// Quantize and dequantize against the CPU backend.

/// Dequantizes `packed` on both backends into a (heads, tokens, dim) output with padded rows
/// (row stride dim + 3) and compares: values bit for bit but NaN payloads, padding untouched.
template <class E, class Eout>
void check_dequantize(const uniform_format& f, const kv_problem& prob, const packed_buffers<E>& packed, bool each_op,
                      bool vidkv, const std::string& what) {
  const index_t row = prob.head_dim + 3, n = prob.heads * prob.tokens * row;
  const Eout sentinel = from_float<Eout>(-9.0f);
  std::vector<Eout> want(static_cast<std::size_t>(n), sentinel);
  const view<Eout, 3> host_out(want.data(), {prob.heads, prob.tokens, prob.head_dim}, {prob.tokens * row, row, 1});
  const uniform_dequantize p{f, each_op, vidkv};
  if (apply(cpu<>{}, p, packed.in(), kv_outputs<Eout>{host_out}) != status::ok) {
    check(false, what + ": CPU dequantize failed");
    return;
  }
  const device_packed<E> dev(packed);
  device_buffer<Eout> storage(std::vector<Eout>(static_cast<std::size_t>(n), sentinel));
  const view<Eout, 3, device_space> out(storage.get(), {prob.heads, prob.tokens, prob.head_dim},
                                        {prob.tokens * row, row, 1});
  const status s = apply(tokred::cuda{test_stream()}, p, dev.in(), kv_outputs<Eout, device_space>{out});
  check(s == status::ok, what + ": dequantize status " + to_string(s));
  finish(what + " dequantize");
  const std::vector<Eout> got = storage.download();
  bool equal = true;
  for (std::size_t i = 0; i < got.size(); ++i) equal = equal && same_or_both_nan(got[i], want[i]);
  check(equal, what + ": dequantized values (" + element_name<Eout>() + ") differ from the CPU backend's");
}

template <class E>
void check_format(const uniform_format& f, const kv_cache<E>& host, bool each_op, bool vidkv, kv_layout how) {
  const std::string what = label(f, element_name<E>(), each_op, vidkv, how);
  const kv_problem prob = detail::kv_problem_of(host.cache);
  packed_buffers<E> want(f, prob), got(f, prob);
  if (apply(cpu<>{}, uniform_quantize{f, each_op}, kv_inputs<E>{view<const E, 3>(host.cache)}, want.out()) !=
      status::ok) {
    check(false, what + ": CPU quantize failed");
    return;
  }
  const device_mirror<E, 3> cache(host.storage, host.cache);
  const device_packed<E> dev(got);  // sentinels
  const status s = apply(tokred::cuda{test_stream()}, uniform_quantize{f, each_op},
                         kv_inputs<E, device_space>{cache.v}, dev.out());
  check(s == status::ok, what + ": quantize status " + to_string(s));
  finish(what + " quantize");
  dev.download_into(got);
  check(got.codes == want.codes, what + ": codes differ from the CPU backend's");
  check(same_bits(got.scale, want.scale), what + ": scales differ");
  check(same_bits(got.zero, want.zero), what + ": zero points differ (or a scheme without one wrote them)");
  check_dequantize<E, E>(f, prob, want, each_op, vidkv, what);
  check_dequantize<E, float>(f, prob, want, each_op, vidkv, what);
}

template <class E>
void sweep_element_type(index_t heads, index_t tokens, index_t dim, std::uint64_t seed) {
  for (kv_layout how : {kv_layout::contiguous, kv_layout::cells, kv_layout::strided, kv_layout::reversed}) {
    kv_cache<E> host = make_cache<E>(heads, tokens, dim, how);
    fill(host.cache, seed);
    if (how == kv_layout::contiguous) {  // non-finite and signed-zero groups
      host.cache(0, 3, 5) = from_float<E>(std::nanf(""));
      host.cache(heads - 1, tokens - 1, dim - 1) = from_float<E>(-INFINITY);
      for (index_t t = 0; t < tokens; ++t) host.cache(0, t, 2) = from_float<E>(t % 3 ? -0.0f : 0.0f);
    }
    for (const uniform_format& f : formats()) {
      if (can_implement(uniform_quantize{f}, detail::kv_problem_of(host.cache)) != status::ok) continue;
      const bool two_mappings = f.scheme == kv_scheme::sign || f.scheme == kv_scheme::ternary;
      check_format<E>(f, host, false, false, how);
      if (two_mappings) check_format<E>(f, host, false, true, how);
      if (!std::is_same_v<E, float>) check_format<E>(f, host, true, false, how);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Scores against the double oracle.

/// Everything one scores case needs on both sides: a cache whose first P tokens are packed (on
/// the host, by the CPU backend) and the rest are the residual, queries, and the oracle.
template <class E>
struct score_case {
  uniform_format f;
  bool vidkv;
  index_t q_heads, kv_heads, packed, residual, dim;
  kv_cache<E> keys;
  packed_buffers<E> pk;
  std::vector<E> queries;
  std::vector<double> want, bound;

  score_case(const uniform_format& f_, bool vidkv_, index_t q, index_t kv, index_t p, index_t r, index_t d)
      : f(f_), vidkv(vidkv_), q_heads(q), kv_heads(kv), packed(p), residual(r), dim(d),
        keys(make_cache<E>(kv, p + r, d, kv_layout::cells)), pk(f_, kv_problem{kv, p, d}),
        queries(static_cast<std::size_t>(q * d)) {
    fill(keys.cache, static_cast<std::uint64_t>(p + r + d));
    rng g(4);
    for (E& x : queries) x = from_float<E>(g.uniform() * 2.0f - 1.0f);
    if (packed > 0)
      check(apply(cpu<>{}, uniform_quantize{f}, kv_inputs<E>{tokens_of(keys.cache, 0, packed)}, pk.out()) == status::ok,
            "scores: CPU quantize");
    oracle();
  }

  index_t tokens() const { return packed + residual; }

  /// The double dot products with the keys attention sees, and the bound of each.
  void oracle() {
    std::vector<float> seen(static_cast<std::size_t>(kv_heads * tokens() * dim));
    const view<float, 3> sv(seen.data(), {kv_heads, tokens(), dim});
    if (packed > 0)
      check(apply(cpu<>{}, uniform_dequantize{f, false, vidkv}, pk.in(), kv_outputs<float>{token_range(sv, 0, packed)}) ==
                status::ok,
            "scores: CPU dequantize");
    for (index_t h = 0; h < kv_heads; ++h)
      for (index_t t = packed; t < tokens(); ++t)
        for (index_t c = 0; c < dim; ++c) sv(h, t, c) = to_float(keys.cache(h, t, c));
    want.assign(static_cast<std::size_t>(q_heads * tokens()), 0.0);
    bound.assign(want.size(), 0.0);
    const index_t per_kv = q_heads / kv_heads;
    detail::with_scheme(f.scheme, [&](auto tag) {
      constexpr kv_scheme S = decltype(tag)::value;
      for (index_t h = 0; h < q_heads; ++h)
        for (index_t t = 0; t < tokens(); ++t) {
          const index_t kv = h / per_kv;
          double sum = 0.0, magnitude = 0.0;
          for (index_t c = 0; c < dim; ++c) {
            const double q = to_float(queries[static_cast<std::size_t>(h * dim + c)]), k = sv(kv, t, c);
            double b = 0.0;
            if (t < packed) {
              const std::size_t at = static_cast<std::size_t>((kv * (packed / f.group) + t / f.group) * dim + c);
              const detail::group_scale g{to_float(pk.scale[at]), to_float(pk.zero[at])};
              b = std::fabs(detail::map_of<S>(f.bits, vidkv, g).b);
            }
            sum += q * k;
            magnitude += std::fabs(q) * (std::fabs(k) + 2.0 * b);
          }
          want[static_cast<std::size_t>(h * tokens() + t)] = sum;
          bound[static_cast<std::size_t>(h * tokens() + t)] =
              static_cast<double>(dim + 2) * std::ldexp(1.0, -24) * magnitude + 1e-30;
        }
    });
  }
};

/// The device inputs of a score case.
template <class E>
struct device_score_inputs {
  device_mirror<E, 3> keys;
  device_packed<E> pk;
  device_buffer<E> queries;
  packed_score_inputs<E, device_space> in;

  explicit device_score_inputs(const score_case<E>& c) : keys(c.keys.storage, c.keys.cache), pk(c.pk), queries(c.queries) {
    in.queries = view<const E, 2, device_space>(queries.get(), {c.q_heads, c.dim});
    in.keys = pk.in();
    in.residual = token_range(view<const E, 3, device_space>(keys.v), c.packed, c.residual);
  }
};

template <class E>
void check_scores(const uniform_format& f, bool vidkv, index_t q_heads, index_t kv_heads, index_t packed,
                  index_t residual, index_t dim) {
  const std::string what = "scores " + describe(f) + " " + element_name<E>() + (vidkv ? " vidkv" : "") + " Q " +
                           str(q_heads) + "/" + str(kv_heads) + " P " + str(packed) + " R " + str(residual) + " D " +
                           str(dim);
  const score_case<E> c(f, vidkv, q_heads, kv_heads, packed, residual, dim);
  const device_score_inputs<E> dev(c);
  // Scores in a padded buffer (row stride P + R + 5): the padding must stay.
  const index_t row = c.tokens() + 5;
  device_buffer<float> storage(std::vector<float>(static_cast<std::size_t>(q_heads * row), -3.0f));
  const view<float, 2, device_space> scores(storage.get(), {q_heads, c.tokens()}, {row, 1});
  const status s = apply(tokred::cuda{test_stream()}, packed_key_scores{f, vidkv}, dev.in,
                         packed_score_outputs<device_space>{scores});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  const std::vector<float> got = storage.download();
  double worst = 0.0;
  bool padding = true;
  for (index_t h = 0; h < q_heads; ++h) {
    for (index_t t = 0; t < c.tokens(); ++t) {
      const std::size_t at = static_cast<std::size_t>(h * c.tokens() + t);
      worst = std::max(worst, bounded_error(got[static_cast<std::size_t>(h * row + t)], c.want[at], c.bound[at]));
    }
    for (index_t t = c.tokens(); t < row; ++t) padding = padding && got[static_cast<std::size_t>(h * row + t)] == -3.0f;
  }
  check(worst <= 1.0, what + ": worst error " + std::to_string(worst) + " of the bound");
  check(padding, what + ": wrote outside the scores view");
}

void sweep_scores() {
  for (int bits : {1, 2, 3, 4, 5, 8}) {
    check_scores<float>({bits, 32, kv_group_axis::tokens}, false, 4, 2, 64, 5, 128);
    check_scores<f16>({bits, 64, kv_group_axis::tokens}, false, 8, 1, 640, 32, 320);  // 3 tiles, 2 chunks
  }
  check_scores<bf16>({4, 32, kv_group_axis::tokens, kv_scheme::symmetric}, false, 24, 2, 96, 3, 64);  // runs 8 + 4
  for (bool vidkv : {false, true}) {
    check_scores<float>({1, 32, kv_group_axis::tokens, kv_scheme::sign}, vidkv, 2, 1, 64, 1, 15);
    check_scores<f16>({2, 32, kv_group_axis::tokens, kv_scheme::ternary}, vidkv, 2, 2, 32, 2, 17);
  }
  check_scores<float>({2, 32, kv_group_axis::tokens}, false, 3, 3, 0, 9, 64);  // residual only
  check_scores<f16>({4, 128, kv_group_axis::tokens}, false, 28, 4, 4096, 0, 128);  // Qwen2-7B's heads
}

// ---------------------------------------------------------------------------------------------
// Bad input and graph capture.

void check_bad_input() {
  const uniform_format f{2, 32, kv_group_axis::tokens};
  kv_cache<f16> host = make_cache<f16>(2, 64, 64, kv_layout::contiguous);
  fill(host.cache, 3);
  const device_mirror<f16, 3> cache(host.storage, host.cache);
  const kv_problem prob{2, 64, 64};
  const packed_buffers<f16> pristine(f, prob);
  const device_packed<f16> dev(pristine);
  const auto untouched = [&](const std::string& what) {
    packed_buffers<f16> now(f, prob);
    dev.download_into(now);
    check(now.codes == pristine.codes && same_bits(now.scale, pristine.scale) && same_bits(now.zero, pristine.zero),
          what + ": the packed cache was written");
  };
  const tokred::cuda exec{test_stream()};
  const kv_inputs<f16, device_space> in{cache.v};
  const auto expect = [&](status got, status want, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
    finish(what);
    untouched(what);
  };
  expect(apply(exec, uniform_quantize{{9, 32, kv_group_axis::tokens}}, in, dev.out()), status::invalid_parameter,
         "nine bits");
  expect(apply(exec, uniform_quantize{{2, 48, kv_group_axis::tokens}}, in, dev.out()), status::invalid_parameter,
         "group 48");
  expect(apply(exec, uniform_quantize{{2, 32, kv_group_axis::channels}}, in, dev.out()), status::shape_mismatch,
         "codes of the other axis");
  uniform_packed<f16, device_space> wrong = dev.out();
  wrong.scale = view<f16, 3, device_space>(dev.scale.get(), {2, 3, 64});
  expect(apply(exec, uniform_quantize{f}, in, wrong), status::shape_mismatch, "scale extents");
  uniform_packed<f16, device_space> aliased = dev.out();
  aliased.zero = view<f16, 3, device_space>(dev.scale.get(), {2, 2, 64});
  expect(apply(exec, uniform_quantize{f}, in, aliased), status::aliasing, "zero over scale");
  uniform_packed<f16, device_space> null_codes = dev.out();
  null_codes.codes = view<std::uint32_t, 3, device_space>(nullptr, {2, 4, 64});
  expect(apply(exec, uniform_quantize{f}, in, null_codes), status::null_pointer, "null codes");

  // Dequantize into an output that overlaps the codes; scores with heads that do not divide.
  device_buffer<f16> out(static_cast<std::size_t>(2 * 64 * 64));
  const view<f16, 3, device_space> over(reinterpret_cast<f16*>(dev.codes.get()), {2, 64, 64});
  check(apply(exec, uniform_dequantize{f}, dev.in(), kv_outputs<f16, device_space>{over}) == status::aliasing,
        "dequantize over the codes");
  device_buffer<f16> queries(static_cast<std::size_t>(3 * 64));
  device_buffer<float> scores(std::vector<float>(3 * 64, -1.0f));
  packed_score_inputs<f16, device_space> sin;
  sin.queries = view<const f16, 2, device_space>(queries.get(), {3, 64});
  sin.keys = dev.in();
  check(apply(exec, packed_key_scores{f}, sin,
              packed_score_outputs<device_space>{view<float, 2, device_space>(scores.get(), {3, 64})}) ==
            status::shape_mismatch,
        "three query heads over two kv heads");
  check(apply(exec, packed_key_scores{{2, 32, kv_group_axis::channels}}, sin,
              packed_score_outputs<device_space>{view<float, 2, device_space>(scores.get(), {3, 64})}) ==
            status::invalid_parameter,
        "scores from keys packed along channels");
  finish("bad scores");
  const std::vector<float> after = scores.download();
  check(std::all_of(after.begin(), after.end(), [](float v) { return v == -1.0f; }), "bad scores: written");
}

void check_graph_capture() {
  const uniform_format f{4, 32, kv_group_axis::tokens, kv_scheme::asymmetric};
  const score_case<f16> c(f, false, 8, 2, 128, 16, 128);
  const device_score_inputs<f16> dev(c);
  const kv_problem prob{2, 128, 128};
  const packed_buffers<f16> blank(f, prob);
  const device_packed<f16> repacked(blank);
  device_buffer<f16> values(static_cast<std::size_t>(2 * 128 * 128));
  device_buffer<float> scores(static_cast<std::size_t>(8 * 144));
  const tokred::cuda exec{test_stream()};
  const view<const f16, 3, device_space> packed_tokens =
      token_range(view<const f16, 3, device_space>(dev.keys.v), 0, 128);
  const view<f16, 3, device_space> values_view(values.get(), {2, 128, 128});
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, uniform_quantize{f}, kv_inputs<f16, device_space>{packed_tokens}, repacked.out()),
        apply(exec, uniform_dequantize{f}, repacked.in(), kv_outputs<f16, device_space>{values_view}),
        apply(exec, packed_key_scores{f}, dev.in,
              packed_score_outputs<device_space>{view<float, 2, device_space>(scores.get(), {8, 144})})};
  });
  if (!replayed) return;
  packed_buffers<f16> got(f, prob);
  repacked.download_into(got);
  check(got.codes == c.pk.codes && same_bits(got.scale, c.pk.scale) && same_bits(got.zero, c.pk.zero),
        "graph: the replayed quantize differs from the CPU backend's");
  std::vector<f16> want_values(static_cast<std::size_t>(2 * 128 * 128));
  check(apply(cpu<>{}, uniform_dequantize{f}, c.pk.in(), kv_outputs<f16>{view<f16, 3>(want_values.data(), {2, 128, 128})}) ==
            status::ok,
        "graph: CPU dequantize");
  check(same_bits(values.download(), want_values), "graph: the replayed dequantize differs from the CPU backend's");
  const std::vector<float> got_scores = scores.download();
  double worst = 0.0;
  for (std::size_t i = 0; i < got_scores.size(); ++i)
    worst = std::max(worst, bounded_error(got_scores[i], c.want[i], c.bound[i]));
  check(worst <= 1.0, "graph: replayed scores off by " + std::to_string(worst) + " of the bound");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  sweep_element_type<float>(2, 128, 96, 5);
  sweep_element_type<f16>(2, 64, 64, 6);
  sweep_element_type<bf16>(1, 96, 64, 7);
  sweep_scores();
  check_bad_input();
  check_graph_capture();
  return summary();
}
