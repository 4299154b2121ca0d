// tests/cpu/test_attention_steps.cpp — the host/device steps of <tokred/policy/attention_scores.hpp>
// that make up the CUDA attention kernels, run on the host.
//
// attention_score_at is the CUDA kernel's whole per-thread body: run for every token, it must
// give the CPU backend's scores bit for bit. The fused score's CUDA algorithm is replayed here
// step for step — 256 simulated threads per row folding keys t, t + 256, … into softmax states,
// the pairwise merge levels, then each token's probabilities over chunks of rows — and must meet
// the tolerance the CPU backend meets against the exact softmax (10⁻⁶ relative). The device
// tests (tests/cuda/test_attention_scores_cuda.cu) then check the launches on a GPU.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/attention_scores_ref.hpp"
#include "support/attention_inputs.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/score_runs.hpp"

namespace tokred::testing {
namespace {

template <class E>
void check_weights_body(const shape_case& c) {
  for (const index_t rows : {index_t{1}, c.grid.frames})
    for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
      const index_t first = 2, span = rows == 1 ? c.grid.tokens() : c.grid.frame_tokens();
      tensor<E, 4> w = make_weights<E>(rows, 2, 5, first + span + 1, c.rows, 17);
      if (span > 3) w.v(0, 1, 2, first + 3) = from_float<E>(std::numeric_limits<float>::quiet_NaN());
      const attention_score p{reduce, first};
      const attention_score_inputs<E> in{c.grid, w.v};
      INFO(c.name << " " << element_name<E>() << " rows " << rows << (reduce == head_reduce::mean ? " mean" : " sum"));
      const std::vector<float> want = run_shares(p, in, 0);
      std::vector<float> got(want.size(), score_sentinel);
      const score_outputs<> out{view<float, 1>(got.data(), {static_cast<index_t>(got.size())})};
      for (index_t j = 0; j < c.grid.tokens(); ++j) detail::attention_score_at(p, in, out, j);
      CHECK(bits(got) == bits(want));
    }
}

TEST_CASE("attention_score: the CUDA body gives the CPU backend's bits", "[attention][steps]") {
  for (const shape_case& c : shape_cases()) {
    check_weights_body<float>(c);
    check_weights_body<f16>(c);
    check_weights_body<bf16>(c);
  }
}

/// The fused score as the CUDA backend computes it, replayed on the host with `threads`
/// simulated threads per row and `chunk` rows per accumulate pass.
template <class E>
std::vector<float> replay_fused(const fused_attention_score& p, const fused_attention_inputs<E>& in, int threads,
                                index_t chunk) {
  const index_t n = in.grid.tokens(), dim = in.query.extent(2), keys = in.keys.extent(1);
  const index_t rows = in.query.extent(0) * in.query.extent(1);
  const float s = detail::fused_scale(p, dim);
  std::vector<float> total(static_cast<std::size_t>(n), 0.0f), staged(static_cast<std::size_t>(chunk * dim));
  std::vector<detail::softmax_state> states(static_cast<std::size_t>(chunk)), part(static_cast<std::size_t>(threads));
  for (index_t r0 = 0; r0 < rows; r0 += chunk) {
    const index_t count = std::min(chunk, rows - r0);
    for (index_t i = 0; i < count; ++i) {  // the stats block of row r0 + i
      const detail::fused_row row = detail::fused_row_at(r0 + i, in.query.extent(0), in.query.extent(1), in.keys.extent(0));
      for (index_t c = 0; c < dim; ++c) staged[static_cast<std::size_t>(i * dim + c)] = to_float(in.query(row.query, row.head, c));
      for (int t = 0; t < threads; ++t) {
        detail::softmax_state st;
        for (index_t k = t; k < keys; k += threads)
          st.add(detail::staged_dot(staged.data() + i * dim, &in.keys(row.kv_head, k, 0), in.keys.stride(2), dim), s);
        part[static_cast<std::size_t>(t)] = st;
      }
      for (int width = threads / 2; width > 0; width /= 2)
        for (int t = 0; t < threads; ++t) detail::merge_level(part.data(), width, t, s);
      states[static_cast<std::size_t>(i)] = part[0];
    }
    for (index_t j = 0; j < n; ++j)  // the accumulate threads
      total[static_cast<std::size_t>(j)] = detail::add_token_probabilities(
          in, p.first_key, r0, count, staged.data(), states.data(), s, j, total[static_cast<std::size_t>(j)]);
  }
  const float divisor = static_cast<float>(p.heads == head_reduce::mean ? rows : in.query.extent(0));
  for (float& v : total) v /= divisor;
  return total;
}

template <class E>
void check_fused_replay(const shape_case& c) {
  struct grouping { index_t heads, kv_heads; };
  for (const grouping g : {grouping{1, 1}, grouping{8, 2}})
    for (const index_t queries : {1, 3}) {
      const index_t first = 5, keys = first + c.grid.tokens() + 3;
      const fused_case<E> f = make_fused<E>(c.grid, queries, g.heads, g.kv_heads, keys, c.dim, c.rows,
                                            static_cast<std::uint64_t>(3 * g.heads + queries));
      INFO(c.name << " " << element_name<E>() << " heads " << g.heads << "/" << g.kv_heads << " queries " << queries);
      for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
        const fused_attention_score p{reduce, first};
        const std::vector<double> want =
            ref::fused_attention_score(p, c.grid, view<const E, 3>(f.query.v), view<const E, 3>(f.keys.v));
        CHECK(worst_relative(replay_fused(p, f.in, 256, 5), want) <= 1e-6);
        CHECK(worst_relative(replay_fused(p, f.in, 4, 1), want) <= 1e-6);  // keys spread thin, one row a chunk
      }
    }
}

TEST_CASE("fused_attention_score: the CUDA steps meet the CPU backend's tolerance", "[attention][steps]") {
  for (const shape_case& c : shape_cases()) {
    check_fused_replay<float>(c);
    check_fused_replay<bf16>(c);
  }
}

TEST_CASE("fused_attention_score steps: 9216 keys, 32 heads over 8", "[attention][steps]") {
  const token_grid grid{1, 96, 96};
  const fused_case<f16> f = make_fused<f16>(grid, 1, 32, 8, 9216 + 40, 128, layout::contiguous, 5);
  const fused_attention_score p{head_reduce::mean, 40};
  CHECK(worst_relative(replay_fused(p, f.in, 256, 64),
                       ref::fused_attention_score(p, grid, view<const f16, 3>(f.query.v), view<const f16, 3>(f.keys.v))) <=
        1e-6);
}

TEST_CASE("softmax_state: merging in any tree is the sum over every key; NaN and inf poison the row", "[attention][steps]") {
  const float s = 0.125f;
  const std::vector<float> d = {3.0f, -1.0f, 7.5f, 7.5f, 0.25f, -30.0f, 12.0f, 2.0f};
  double exact = 0.0;
  for (float x : d) exact += std::exp(static_cast<double>(s) * (x - 12.0));
  detail::softmax_state one;
  for (float x : d) one.add(x, s);
  CHECK(one.max == 12.0f);
  CHECK(std::fabs(one.sum - exact) <= 1e-7 * exact);
  detail::softmax_state left, right;
  for (std::size_t i = 0; i < d.size(); ++i) (i % 3 == 0 ? left : right).add(d[i], s);
  left.merge(right, s);
  CHECK(left.max == 12.0f);
  CHECK(std::fabs(left.sum - exact) <= 1e-7 * exact);
  detail::softmax_state empty;
  empty.merge(detail::softmax_state{}, s);
  CHECK(empty.sum == 0.0);
  empty.merge(one, s);
  CHECK(empty.max == 12.0f);
  CHECK(std::fabs(empty.probability(12.0f, s) - 1.0 / exact) <= 1e-7 / exact);

  detail::softmax_state nan = one, inf = one;
  nan.add(std::numeric_limits<float>::quiet_NaN(), s);
  inf.add(std::numeric_limits<float>::infinity(), s);
  CHECK(std::isnan(nan.probability(3.0f, s)));
  CHECK(std::isnan(inf.probability(3.0f, s)));
}

}  // namespace
}  // namespace tokred::testing
