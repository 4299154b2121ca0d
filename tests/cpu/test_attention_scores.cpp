// tests/cpu/test_attention_scores.cpp — attention_score and fused_attention_score on CPU: against
// the double-precision oracles over the shared case table (every element type, head grouping,
// query count and thread split), the fused score against the softmax-then-attention_score path at
// LLM scale, NaN and non-normalised weights, bad input, and PyramidDrop's stage schedule.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/attention_scores.hpp>
#include <tokred/policy/schedule.hpp>

#include "reference/attention_scores_ref.hpp"
#include "reference/selection_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/attention_inputs.hpp"
#include "support/score_runs.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float sentinel = score_sentinel;

/// The relative error fp32 dot products allow in a softmax probability: 10⁻⁶ plus twice the
/// worst rounding of a logit, d·u·scale·Σ|q_c·k_c| (the error of p is about that of its logit
/// plus that of the log-sum, so it grows with the logits' magnitude, not their spread).
template <class E>
double logit_tolerance(const view<const E, 3>& query, const view<const E, 3>& keys, double scale) {
  const index_t group = query.extent(1) / keys.extent(0), dim = query.extent(2);
  double largest = 0.0;
  for (index_t q = 0; q < query.extent(0); ++q)
    for (index_t h = 0; h < query.extent(1); ++h)
      for (index_t k = 0; k < keys.extent(1); ++k) {
        double size = 0.0;
        for (index_t c = 0; c < dim; ++c)
          size += std::fabs(static_cast<double>(to_float(query(q, h, c))) * to_float(keys(h / group, k, c)));
        largest = std::max(largest, scale * size);
      }
  return 1e-6 + 2.0 * static_cast<double>(dim) * std::ldexp(1.0, -24) * largest;
}

template <class E>
void check_weights_case(const shape_case& c) {
  const index_t frames = c.grid.frames;
  for (const index_t rows : {index_t{1}, frames}) {
    for (const index_t layers : {1, 3})
      for (const index_t heads : {1, 16})
        for (const index_t first : {0, 3})
          for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
            const index_t span = rows == 1 ? c.grid.tokens() : c.grid.frame_tokens();
            const tensor<E, 4> w = make_weights<E>(rows, layers, heads, first + span + 2, c.rows,
                                                   static_cast<std::uint64_t>(heads * 31 + first + rows));
            const attention_score p{reduce, first};
            const attention_score_inputs<E> in{c.grid, w.v};
            INFO(c.name << " " << element_name<E>() << " rows " << rows << " layers " << layers
                        << " heads " << heads << " first_key " << first
                        << (reduce == head_reduce::mean ? " mean" : " sum"));
            const std::vector<float> got = run_shares(p, in, 0);
            const std::vector<ref::bounded_score> want = ref::attention_score(p, c.grid, view<const E, 4>(w.v));
            std::size_t outside = 0;
            for (std::size_t j = 0; j < got.size(); ++j)
              outside += std::fabs(static_cast<double>(got[j]) - want[j].score) > want[j].bound;
            CHECK(outside == 0);
            for (const int nth : {2, 3}) CHECK(bits(run_shares(p, in, 0, nth)) == bits(got));
          }
    if (frames == 1) break;  // rows = T is rows = 1
  }
}

template <class E>
void check_fused_case(const shape_case& c) {
  for_each_fused_case<E>(c, [&](const fused_sweep_case<E>& fc) {
    const fused_case<E>& f = fc.tensors;
    INFO(c.name << " " << element_name<E>() << " " << fc.label());
    for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
      const fused_attention_score p{reduce, fc.first_key};
      const std::vector<float> got = run_shares(p, f.in, c.dim);
      CHECK(worst_relative(got, ref::fused_attention_score(p, c.grid, view<const E, 3>(f.query.v),
                                                           view<const E, 3>(f.keys.v))) <= 1e-6);
      for (const int nth : {2, 3}) CHECK(bits(run_shares(p, f.in, c.dim, nth)) == bits(got));
      if (fc.queries != 1 || reduce != head_reduce::mean) continue;
      // The matrix path: the softmax an eager layer would produce, then attention_score.
      const std::vector<float> w = ref::softmax_weights(view<const E, 3>(f.query.v), view<const E, 3>(f.keys.v),
                                                        1.0 / std::sqrt(static_cast<double>(c.dim)));
      const attention_score_inputs<float> matrix{c.grid, make_view(w.data(), 1, 1, fc.heads, fc.keys)};
      const std::vector<float> want = run_shares(attention_score{head_reduce::mean, fc.first_key}, matrix, 0);
      CHECK(worst_relative(got, std::vector<double>(want.begin(), want.end())) <= 1e-6);
    }
  });
}

}  // namespace

TEST_CASE("attention_score matches the oracle on the case table", "[attention]") {
  for (const shape_case& c : shape_cases()) {
    check_weights_case<float>(c);
    check_weights_case<f16>(c);
    check_weights_case<bf16>(c);
  }
}

TEST_CASE("attention_score: rows = T reads frame t's row from first_key", "[attention]") {
  // Frame t's row holds 1000·t + column in every head: the mean is that value exactly.
  const token_grid grid{3, 2, 2};
  std::vector<float> w(3 * 2 * 6);  // (rows, layers = 1, heads = 2, keys = 6)
  for (int t = 0; t < 3; ++t)
    for (int h = 0; h < 2; ++h)
      for (int k = 0; k < 6; ++k) w[static_cast<std::size_t>((t * 2 + h) * 6 + k)] = static_cast<float>(1000 * t + k);
  const attention_score_inputs<float> in{grid, make_view(static_cast<const float*>(w.data()), 3, 1, 2, 6)};
  CHECK(run_shares(attention_score{head_reduce::mean, 1}, in, 0) ==
        std::vector<float>{1, 2, 3, 4, 1001, 1002, 1003, 1004, 2001, 2002, 2003, 2004});
  CHECK(run_shares(attention_score{head_reduce::sum, 2}, in, 0) ==
        std::vector<float>{4, 6, 8, 10, 2004, 2006, 2008, 2010, 4004, 4006, 4008, 4010});
}

TEST_CASE("attention_score: weights need not sum to one; NaN reaches only its token", "[attention]") {
  std::vector<float> w(2 * 40, 2.0f);  // (1, 1, heads = 2, keys = 40): rows summing to 80
  const attention_score_inputs<float> in{sequence_grid(40), make_view(static_cast<const float*>(w.data()), 1, 1, 2, 40)};
  CHECK(run_shares(attention_score{}, in, 0) == std::vector<float>(40, 2.0f));
  CHECK(run_shares(attention_score{head_reduce::sum}, in, 0) == std::vector<float>(40, 4.0f));

  w[40 + 17] = std::numeric_limits<float>::quiet_NaN();  // head 1, token 17
  const std::vector<float> s = run_shares(attention_score{}, in, 0, 3);
  for (index_t j = 0; j < 40; ++j) CHECK(std::isnan(s[static_cast<std::size_t>(j)]) == (j == 17));
  // topk ranks the NaN token last: keeping 39 of 40 drops exactly it.
  const std::vector<std::int64_t> kept = ref::kept_indices(topk{keep_budget::count(39)}, sequence_grid(40), s);
  CHECK(std::find(kept.begin(), kept.end(), 17) == kept.end());
}

TEST_CASE("fused_attention_score matches the oracle and the softmax path on the case table", "[attention][fused]") {
  for (const shape_case& c : shape_cases()) {
    check_fused_case<float>(c);
    check_fused_case<bf16>(c);
    check_fused_case<f16>(c);
  }
}

TEST_CASE("fused_attention_score at LLM scale: 9216 image keys, 32 heads of 128, GQA 8", "[attention][fused]") {
  // 35 system tokens, a 96 x 96 image span, 40 text tokens; 32 query heads read 8 kv heads.
  const token_grid grid = image_grid(96, 96);
  const index_t first = 35, keys = first + grid.tokens() + 40, heads = 32, kv_heads = 8, dim = 128;
  const auto check = [&](auto element) {
    using E = decltype(element);
    const fused_case<E> f = make_fused<E>(grid, 1, heads, kv_heads, keys, dim, layout::contiguous, 99);
    const fused_attention_score p{head_reduce::mean, first};
    const std::vector<float> got = run_shares(p, f.in, dim);
    const std::vector<float> w = ref::softmax_weights(view<const E, 3>(f.query.v), view<const E, 3>(f.keys.v),
                                                      1.0 / std::sqrt(128.0));
    const attention_score_inputs<float> matrix{grid, make_view(w.data(), 1, 1, heads, keys)};
    const std::vector<float> want = run_shares(attention_score{head_reduce::mean, first}, matrix, 0);
    INFO(element_name<E>());
    CHECK(worst_relative(got, std::vector<double>(want.begin(), want.end())) <= 1e-6);
    CHECK(worst_relative(got, ref::fused_attention_score(p, grid, view<const E, 3>(f.query.v),
                                                         view<const E, 3>(f.keys.v))) <= 1e-6);
    CHECK(bits(run_shares(p, f.in, dim, 3)) == bits(got));
  };
  check(float{});
  check(bf16{});
}

TEST_CASE("fused_attention_score: a 262144-key softmax stays within 10^-6", "[attention][fused]") {
  // Long video contexts sum 2¹⁸ terms per softmax row. Random logits, and the hard case for an
  // fp32 sum: equal terms (a uniform region, padding), whose rounding errors all lean the same way.
  const token_grid grid{64, 64, 64};
  fused_case<float> f = make_fused<float>(grid, 1, 2, 1, grid.tokens(), 4, layout::contiguous, 21);
  const fused_attention_score p{head_reduce::mean, 0};
  const auto error = [&] {
    return worst_relative(run_shares(p, f.in, 4), ref::fused_attention_score(p, grid, view<const float, 3>(f.query.v),
                                                                             view<const float, 3>(f.keys.v)));
  };
  CHECK(error() <= 1e-6);
  for (index_t k = 0; k < grid.tokens(); ++k)
    for (index_t c = 0; c < 4; ++c) f.keys.v(0, k, c) = k % 1000 == 0 ? 0.9f : 0.25f;
  CHECK(error() <= 1e-6);
}

TEST_CASE("fused_attention_score: the bits do not depend on how rows share a key pass", "[attention][fused]") {
  const token_grid grid = image_grid(7, 9);
  for (const index_t dim : {5, 16, 37}) {
    INFO("head_dim " << dim);
    // GQA 8/2 scores its rows in passes of four against each key; the same heads as MHA (each kv
    // head repeated) score one row at a time, against four keys per kernel call.
    const fused_case<float> gqa = make_fused<float>(grid, 1, 8, 2, 70, dim, layout::contiguous, 11);
    tensor<float, 3> repeated = make_rows<float>(8, 70, dim, layout::contiguous, 1.0f, 12);
    for (index_t h = 0; h < 8; ++h)
      for (index_t k = 0; k < 70; ++k)
        for (index_t c = 0; c < dim; ++c) repeated.v(h, k, c) = gqa.keys.v(h / 4, k, c);
    const fused_attention_score p{head_reduce::sum, 4};
    CHECK(bits(run_shares(p, gqa.in, dim)) ==
          bits(run_shares(p, fused_attention_inputs<float>{grid, gqa.query.v, repeated.v}, dim)));

    // Nine queries of one head: passes of 8 rows and 1 row. Scored one query at a time and summed
    // in query order, then divided by 9, they give the same bits.
    const fused_case<bf16> nine = make_fused<bf16>(grid, 9, 1, 1, 70, dim, layout::contiguous, 14);
    std::vector<float> rows_sum(static_cast<std::size_t>(grid.tokens()), 0.0f);
    for (index_t q = 0; q < 9; ++q) {
      const fused_attention_inputs<bf16> row{grid, view<const bf16, 3>(&nine.query.v(q, 0, 0), {1, 1, dim}), nine.keys.v};
      const std::vector<float> p_q = run_shares(p, row, dim);
      for (std::size_t j = 0; j < p_q.size(); ++j) rows_sum[j] += p_q[j];
    }
    for (float& x : rows_sum) x /= 9.0f;
    CHECK(bits(run_shares(p, nine.in, dim)) == bits(rows_sum));
  }
}

TEST_CASE("fused_attention_score: shares other than 0 write nothing", "[attention][fused]") {
  const fused_case<float> f = make_fused<float>(image_grid(4, 4), 1, 2, 1, 20, 8, layout::contiguous, 3);
  const fused_attention_score p{head_reduce::mean, 2};
  std::vector<float> scores(16, sentinel);
  host_workspace ws(workspace_bytes(cpu{0, 2}, p, problem{f.in.grid, 8}));
  CHECK(workspace_bytes(cpu{0, 2}, p, problem{f.in.grid, 8}) == workspace_bytes(cpu{}, p, problem{f.in.grid, 8}));
  CHECK(apply(cpu{1, 2}, p, f.in, score_outputs<>{make_view(scores.data(), 16)}, ws.get()) == status::ok);
  CHECK(untouched(scores));
  CHECK(apply(cpu{0, 2}, p, f.in, score_outputs<>{make_view(scores.data(), 16)}, ws.get()) == status::ok);
  CHECK(bits(scores) == bits(run_shares(p, f.in, 8)));
}

TEST_CASE("fused_attention_score: scale, sum and the keys outside the span", "[attention][fused]") {
  const fused_case<float> f = make_fused<float>(sequence_grid(50), 2, 4, 2, 120, 16, layout::contiguous, 5);
  // The default scale is 1/sqrt(16) = 0.25 exactly.
  CHECK(bits(run_shares(fused_attention_score{head_reduce::mean, 30, 0.25f}, f.in, 16)) ==
        bits(run_shares(fused_attention_score{head_reduce::mean, 30}, f.in, 16)));
  for (const float scale : {0.01f, 2.0f}) {  // logits up to ~30 at scale 2
    const fused_attention_score p{head_reduce::sum, 30, scale};
    INFO("scale " << scale);
    CHECK(worst_relative(run_shares(p, f.in, 16),
                         ref::fused_attention_score(p, f.in.grid, view<const float, 3>(f.query.v),
                                                    view<const float, 3>(f.keys.v))) <=
          logit_tolerance(view<const float, 3>(f.query.v), view<const float, 3>(f.keys.v), scale));
  }
  // Keys outside the span take part in every softmax: the same span scored alone, without the
  // 70 other keys in its denominators, scores higher everywhere.
  const fused_attention_inputs<float> span_only{f.in.grid, f.in.query,
                                                view<const float, 3>(&f.keys.v(0, 30, 0), {2, 50, 16}, {120 * 16, 16, 1})};
  const std::vector<float> all = run_shares(fused_attention_score{head_reduce::mean, 30}, f.in, 16);
  const std::vector<float> alone = run_shares(fused_attention_score{}, span_only, 16);
  for (std::size_t j = 0; j < 50; ++j) CHECK(alone[j] > all[j]);
  // Rising maxima outside the span, ascending and descending keys: still the oracle.
  tensor<float, 3> ramp = make_rows<float>(2, 120, 16, layout::contiguous, 0.1f, 8);
  for (index_t g = 0; g < 2; ++g)
    for (index_t k = 0; k < 120; ++k) ramp.v(g, k, 0) = static_cast<float>(g == 0 ? k : 120 - k) * 0.2f;
  const fused_attention_inputs<float> rising{f.in.grid, f.in.query, ramp.v};
  for (const index_t first : {0, 30, 70}) {
    const fused_attention_score p{head_reduce::mean, first};
    INFO("first_key " << first);
    CHECK(worst_relative(run_shares(p, rising, 16),
                         ref::fused_attention_score(p, f.in.grid, view<const float, 3>(f.query.v),
                                                    view<const float, 3>(ramp.v))) <=
          logit_tolerance(view<const float, 3>(f.query.v), view<const float, 3>(ramp.v), 0.25));
  }
}

TEST_CASE("fused_attention_score: NaN or infinite logits make every score NaN", "[attention][fused]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (const float bad : {nan, inf}) {
    for (const index_t key : {2, 40}) {  // a key before the span, a key inside it
      fused_case<float> f = make_fused<float>(sequence_grid(50), 1, 2, 2, 60, 8, layout::contiguous, 6);
      f.keys.v(1, key, 3) = std::copysign(bad, f.query.v(0, 1, 3));  // a NaN or a +inf logit
      INFO("bad key " << key << " value " << bad);
      for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
        const std::vector<float> s = run_shares(fused_attention_score{reduce, 5}, f.in, 8);
        CHECK(std::all_of(s.begin(), s.end(), [](float x) { return std::isnan(x); }));
      }
    }
  }
  // A key whose dot product overflows to −inf only gets probability 0.
  fused_case<float> f = make_fused<float>(sequence_grid(50), 1, 1, 1, 60, 8, layout::contiguous, 7);
  for (index_t c = 0; c < 8; ++c) f.keys.v(0, 30, c) = -std::copysign(3e38f, f.query.v(0, 0, c));
  const std::vector<float> s = run_shares(fused_attention_score{head_reduce::mean, 5}, f.in, 8);
  CHECK(s[30 - 5] == 0.0f);
  CHECK(std::none_of(s.begin(), s.end(), [](float x) { return std::isnan(x); }));
}

TEST_CASE("attention_score: bad input leaves the scores untouched", "[attention][bad-input]") {
  const tensor<float, 4> w = make_weights<float>(2, 1, 4, 20, layout::contiguous, 1);
  const token_grid grid{2, 3, 3};  // 9 tokens per frame from key 1
  const attention_score_inputs<float> in{grid, w.v};
  std::vector<float> scores(18, sentinel);
  const score_outputs<> out{make_view(scores.data(), 18)};
  const attention_score ok{head_reduce::mean, 1};
  const auto run = [&](const attention_score& p, const attention_score_inputs<float>& i, const score_outputs<>& o,
                       cpu<> exec = cpu{}) { return apply(exec, p, i, o); };

  CHECK(run(ok, in, out, cpu{2, 2}) == status::invalid_exec);
  CHECK(run(attention_score{head_reduce::mean, -1}, in, out) == status::invalid_parameter);
  CHECK(run(attention_score{static_cast<head_reduce>(7), 1}, in, out) == status::invalid_parameter);
  CHECK(run(ok, {token_grid{2, -3, 3}, w.v}, out) == status::shape_mismatch);
  CHECK(run(ok, {token_grid{0, 3, 3}, w.v}, out) == status::empty_input);
  CHECK(run(ok, {token_grid{3, 3, 3}, w.v}, out) == status::shape_mismatch);    // 2 rows, 3 frames
  CHECK(run(attention_score{head_reduce::mean, 12}, in, out) == status::shape_mismatch);  // 12 + 9 > 20
  CHECK(run(attention_score{head_reduce::mean, 11}, in, out) == status::ok);
  std::fill(scores.begin(), scores.end(), sentinel);
  CHECK(run(ok, {grid, view<const float, 4>(w.v.data_handle(), {2, 0, 4, 20})}, out) == status::empty_input);
  CHECK(run(ok, {grid, view<const float, 4>(w.v.data_handle(), {2, 1, 0, 20})}, out) == status::empty_input);
  CHECK(run(ok, {grid, view<const float, 4>(nullptr, {2, 1, 4, 20})}, out) == status::null_pointer);
  CHECK(run(ok, in, score_outputs<>{make_view(scores.data(), 17)}) == status::shape_mismatch);
  CHECK(run(ok, in, score_outputs<>{make_view(static_cast<float*>(nullptr), 18)}) == status::null_pointer);
  // Scores written over the weights they read.
  std::vector<float> shared(w.storage);
  const attention_score_inputs<float> over{grid, view<const float, 4>(shared.data(), {2, 1, 4, 20})};
  CHECK(run(ok, over, score_outputs<>{make_view(shared.data() + 100, 18)}) == status::aliasing);
  CHECK(shared == w.storage);
  CHECK(untouched(scores));
  // The documented order: parameters before the grid, the weights before the output.
  CHECK(run(attention_score{head_reduce::mean, -1}, {token_grid{0, 3, 3}, w.v}, out) == status::invalid_parameter);
  CHECK(run(ok, {grid, view<const float, 4>(nullptr, {2, 1, 4, 20})}, score_outputs<>{}) == status::null_pointer);
  CHECK(can_implement(ok, problem{grid, 0}) == status::ok);
  CHECK(can_implement(ok, problem{token_grid{1, 0, 4}, 0}) == status::empty_input);
  CHECK(workspace_bytes(cpu{0, 3}, ok, problem{grid, 0}) == 0);
}

TEST_CASE("fused_attention_score: bad input leaves the scores untouched", "[attention][fused][bad-input]") {
  const fused_case<float> f = make_fused<float>(sequence_grid(16), 2, 4, 2, 20, 8, layout::contiguous, 2);
  std::vector<float> scores(16, sentinel);
  const score_outputs<> out{make_view(scores.data(), 16)};
  const fused_attention_score ok{head_reduce::mean, 4};
  host_workspace ws(workspace_bytes(cpu{}, ok, problem{f.in.grid, 8}));
  const auto run = [&](const fused_attention_score& p, const fused_attention_inputs<float>& in, const score_outputs<>& o,
                       workspace space, cpu<> exec = cpu{}) { return apply(exec, p, in, o, space); };
  const auto q = [&](index_t a, index_t b, index_t c) { return view<const float, 3>(f.query.v.data_handle(), {a, b, c}); };
  const auto k = [&](index_t a, index_t b, index_t c) { return view<const float, 3>(f.keys.v.data_handle(), {a, b, c}); };

  CHECK(run(ok, f.in, out, ws.get(), cpu{-1, 2}) == status::invalid_exec);
  CHECK(run(fused_attention_score{head_reduce::mean, -1}, f.in, out, ws.get()) == status::invalid_parameter);
  CHECK(run(fused_attention_score{static_cast<head_reduce>(2), 4}, f.in, out, ws.get()) == status::invalid_parameter);
  for (const float scale : {-1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    CHECK(run(fused_attention_score{head_reduce::mean, 4, scale}, f.in, out, ws.get()) == status::invalid_parameter);
  CHECK(run(ok, {token_grid{1, -1, 16}, f.in.query, f.in.keys}, out, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, {sequence_grid(0), f.in.query, f.in.keys}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, q(0, 4, 8), f.in.keys}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, q(2, 0, 8), f.in.keys}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, q(2, 4, 0), f.in.keys}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, f.in.query, k(0, 20, 8)}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, f.in.query, k(2, 20, 7)}, out, ws.get()) == status::shape_mismatch);  // head_dim
  CHECK(run(ok, {f.in.grid, f.in.query, k(3, 20, 8)}, out, ws.get()) == status::shape_mismatch);  // 4 % 3
  CHECK(run(fused_attention_score{head_reduce::mean, 5}, f.in, out, ws.get()) == status::shape_mismatch);  // 5 + 16 > 20
  CHECK(run(ok, {f.in.grid, view<const float, 3>(nullptr, {2, 4, 8}), f.in.keys}, out, ws.get()) == status::null_pointer);
  CHECK(run(ok, {f.in.grid, f.in.query, view<const float, 3>(nullptr, {2, 20, 8})}, out, ws.get()) == status::null_pointer);
  CHECK(run(ok, f.in, score_outputs<>{make_view(scores.data(), 15)}, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, f.in, score_outputs<>{make_view(static_cast<float*>(nullptr), 16)}, ws.get()) == status::null_pointer);
  std::vector<float> qs(f.query.storage), ks(f.keys.storage);
  const fused_attention_inputs<float> own{f.in.grid, view<const float, 3>(qs.data(), {2, 4, 8}),
                                          view<const float, 3>(ks.data(), {2, 20, 8})};
  CHECK(run(ok, own, score_outputs<>{make_view(qs.data() + 8, 16)}, ws.get()) == status::aliasing);
  CHECK(run(ok, own, score_outputs<>{make_view(ks.data() + 300, 16)}, ws.get()) == status::aliasing);
  CHECK((qs == f.query.storage && ks == f.keys.storage));
  const workspace short_ws{ws.get().data, ws.get().bytes - 1};
  CHECK(run(ok, f.in, out, short_ws) == status::workspace_too_small);
  CHECK(run(ok, f.in, out, short_ws, cpu{1, 2}) == status::workspace_too_small);  // every share agrees
  CHECK(run(ok, f.in, out, workspace{nullptr, ws.get().bytes}) == status::null_pointer);
  CHECK(untouched(scores));
  // The documented order: parameters, grid, query, keys, data, output, aliasing, workspace.
  CHECK(run(ok, {f.in.grid, q(0, 4, 8), k(2, 20, 7)}, out, ws.get()) == status::empty_input);
  CHECK(run(ok, {f.in.grid, view<const float, 3>(nullptr, {2, 4, 8}), k(2, 20, 7)}, out, ws.get()) == status::shape_mismatch);
  CHECK(run(ok, f.in, score_outputs<>{make_view(scores.data(), 15)}, workspace{}) == status::shape_mismatch);
  CHECK(can_implement(ok, problem{f.in.grid, 8}) == status::ok);
  CHECK(can_implement(fused_attention_score{head_reduce::sum, 0, -2.0f}, problem{f.in.grid, 8}) == status::invalid_parameter);
  CHECK(workspace_bytes(cpu{}, fused_attention_score{head_reduce::sum, -1}, problem{f.in.grid, 8}) == 0);
}

TEST_CASE("pyramid_schedule: int(N * r) of the original N, validated", "[attention][schedule]") {
  const index_t layers[] = {8, 16, 24};
  const double halving[] = {0.5, 0.25, 0.125};
  const pyramid_schedule repo{make_view(layers, 3), make_view(halving, 3)};
  CHECK(check_schedule(repo, 576) == status::ok);
  std::vector<index_t> counts;
  for (index_t s = 0; s < 3; ++s) counts.push_back(stage_count(repo, 576, s).count);
  CHECK(counts == std::vector<index_t>{288, 144, 72});
  CHECK(stage_budget(repo, 576, 2).k == 72);

  // Ratios of the original N, floored: not products of the previous stage's count.
  const double tenths[] = {0.3, 0.1, 0.05}, sevenths[] = {0.7, 0.49, 0.343};
  counts.clear();
  for (index_t s = 0; s < 3; ++s) counts.push_back(stage_count({make_view(layers, 3), make_view(tenths, 3)}, 1152, s).count);
  CHECK(counts == std::vector<index_t>{345, 115, 57});  // 345.6, 115.2, 57.6
  counts.clear();
  for (index_t s = 0; s < 3; ++s) counts.push_back(stage_count({make_view(layers, 3), make_view(sevenths, 3)}, 576, s).count);
  CHECK(counts == std::vector<index_t>{403, 282, 197});
  const double small[] = {0.05, 0.03};
  CHECK(stage_count({make_view(layers, 2), make_view(small, 2)}, 576, 1).count == 17);

  const double rising[] = {0.25, 0.5}, nan_ratio[] = {0.5, std::nan("")}, over[] = {1.5}, tiny[] = {0.5, 0.001};
  const double keep_all[] = {1.0, 1.0};
  const index_t unsorted[] = {8, 8}, negative[] = {-1, 4};
  CHECK(check_schedule({make_view(layers, 3), make_view(halving, 2)}, 576) == status::shape_mismatch);
  CHECK(check_schedule({make_view(layers, -1), make_view(halving, -1)}, 576) == status::shape_mismatch);
  CHECK(check_schedule({}, 576) == status::empty_input);
  CHECK(check_schedule(repo, 0) == status::empty_input);
  CHECK(check_schedule({view<const index_t, 1>(nullptr, {3}), make_view(halving, 3)}, 576) == status::null_pointer);
  CHECK(check_schedule({make_view(unsorted, 2), make_view(halving, 2)}, 576) == status::invalid_parameter);
  CHECK(check_schedule({make_view(negative, 2), make_view(halving, 2)}, 576) == status::invalid_parameter);
  CHECK(check_schedule({make_view(layers, 2), make_view(nan_ratio, 2)}, 576) == status::invalid_ratio);
  CHECK(check_schedule({make_view(layers, 1), make_view(over, 1)}, 576) == status::invalid_ratio);
  CHECK(check_schedule({make_view(layers, 2), make_view(tiny, 2)}, 576) == status::invalid_budget);
  CHECK(check_schedule({make_view(layers, 2), make_view(rising, 2)}, 576) == status::budget_exceeds_input);
  CHECK(check_schedule({make_view(layers, 2), make_view(keep_all, 2)}, 576) == status::ok);
  CHECK(stage_count(repo, 576, 3).code == status::invalid_parameter);
  CHECK(stage_count(repo, 576, -1).code == status::invalid_parameter);
  CHECK(stage_count({make_view(layers, 2), make_view(rising, 2)}, 576, 0).code == status::budget_exceeds_input);
  // A bad schedule's budget is count(0), which topk rejects.
  const keep_budget none = stage_budget({make_view(layers, 2), make_view(rising, 2)}, 576, 0);
  CHECK(can_implement(topk{none}, problem{sequence_grid(576), 0}) == status::invalid_budget);
}
