// tests/cuda/test_feature_scores_cuda.cu — the CUDA backends of token_norm, query_relevance and
// temporal_similarity against the double oracles of tests/reference/feature_scores_ref.hpp.
//
// Over the shared case table (its layouts: contiguous, strided, reversed), fp32/fp16/bf16, with
// the bounds the CPU backend is held to in tests/cpu/test_feature_scores.cpp:
//   token_norm            within the fp32 cosine bound, relative
//   temporal_similarity   EVS, DTD and a cosine with first_frame 7: frame 0 exactly first_frame,
//                         the rest within the bound
//   query_relevance       token and frame level, cosine and dot product, 1, 3 and 70 query rows
//                         (two chunks)
//   NaN and inf           a NaN row gives NaN where the oracle has NaN
//   bad input             the CPU backend's statuses, nothing written
// plus a CUDA-graph capture and replay of all three. Exits 77 (CTest's "skipped") without a CUDA
// device; otherwise prints one line per failure (the first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "reference/feature_scores_ref.hpp"
#include "support/cases.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float sentinel = -4321.0f;

/// Runs a feature score on the device into `count` sentinel-filled scores (plus 2 past the end,
/// which must stay).
/// The type itself, in a context that does not deduce it (so a null query needs no cast).
template <class T>
struct not_deduced {
  using type = T;
};

template <class P, class E>
std::vector<float> run(const P& p, const token_grid& grid, const device_mirror<E, 2>& rows,
                       const typename not_deduced<device_mirror<E, 2>>::type* query, const std::string& what) {
  const index_t count = score_count(p, problem{grid, rows.v.extent(1)});
  device_buffer<float> storage(std::vector<float>(static_cast<std::size_t>(count + 2), sentinel));
  feature_score_inputs<E, device_space> in{grid, rows.v, {}};
  if (query) in.query = query->v;
  const status s = apply(tokred::cuda{test_stream()}, p, in,
                         score_outputs<device_space>{view<float, 1, device_space>(storage.get(), {count})});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  std::vector<float> got = storage.download();
  check(got[static_cast<std::size_t>(count)] == sentinel && got[static_cast<std::size_t>(count + 1)] == sentinel,
        what + ": wrote past the scores");
  got.resize(static_cast<std::size_t>(count));
  return got;
}

template <class E>
void check_case(const shape_case& c, index_t queries) {
  const index_t n = c.grid.tokens();
  const token_matrix<E> rows = continuous_rows<E>(n, c.dim, c.rows, 41 + static_cast<std::uint64_t>(n));
  const token_matrix<E> query = continuous_rows<E>(queries, c.dim, c.rows, 97);
  const device_mirror<E, 2> drows(rows.storage, rows.rows), dquery(query.storage, query.rows);
  const view<const E, 2> x(rows.rows), q(query.rows);
  const double tolerance = ref::cosine_tolerance(c.dim);
  const std::string name = std::string(c.name) + " " + element_name<E>() + " queries " + str(queries);
  const auto expect = [&](const std::vector<float>& got, const std::vector<double>& want, double tol, bool relative,
                          const std::string& what) {
    const double worst = ref::worst_error(got, want, relative);
    check(worst <= tol, name + " " + what + ": error " + std::to_string(worst) + " over " + std::to_string(tol));
  };
  if (queries == 3) {
    expect(run(token_norm{}, c.grid, drows, nullptr, name + " norm"), ref::token_norms(x), tolerance, true, "norm");
    for (const temporal_similarity p : {temporal_similarity::evs(), temporal_similarity::dtd(),
                                        temporal_similarity{temporal_similarity::measure::cosine, 7.0f}})
      expect(run(p, c.grid, drows, nullptr, name + " temporal"), ref::temporal(p, c.grid, x), tolerance, false,
             "temporal first_frame " + std::to_string(p.first_frame));
  }
  const double mean_tolerance = tolerance + std::ldexp(static_cast<double>(queries), -24);
  for (const auto level : {query_relevance::level::token, query_relevance::level::frame}) {
    const std::string at = level == query_relevance::level::token ? " token" : " frame";
    const query_relevance p{level};
    expect(run(p, c.grid, drows, &dquery, name + at), ref::relevance(p, c.grid, x, q), mean_tolerance, false,
           "relevance" + at);
    const query_relevance dot{level, query_relevance::measure::dot};
    const std::vector<float> got = run(dot, c.grid, drows, &dquery, name + at + " dot");
    const std::vector<double> want = ref::relevance(dot, c.grid, x, q), scale = ref::relevance(dot, c.grid, x, q, true);
    bool within = got.size() == want.size();
    for (std::size_t i = 0; within && i < want.size(); ++i)
      within = std::fabs(got[i] - want[i]) <= mean_tolerance * std::max(1.0, scale[i]);
    check(within, name + at + " dot products off the bound");
  }
}

/// query_relevance at frame level with the widest rows a block takes (11 264), and one wider.
void check_frame_limit() {
  const token_grid grid{3, 2, 2};
  const token_matrix<f16> rows = continuous_rows<f16>(grid.tokens(), 11264, layout::contiguous, 7);
  const token_matrix<f16> query = continuous_rows<f16>(2, 11264, layout::contiguous, 8);
  const device_mirror<f16, 2> d(rows.storage, rows.rows), dq(query.storage, query.rows);
  const query_relevance p{query_relevance::level::frame};
  const double tolerance = ref::cosine_tolerance(11264) + std::ldexp(2.0, -24);
  check(ref::worst_error(run(p, grid, d, &dq, "frame relevance at 11264"),
                         ref::relevance(p, grid, view<const f16, 2>(rows.rows), view<const f16, 2>(query.rows))) <= tolerance,
        "frame relevance at 11264: off the bound");
  const token_matrix<f16> wide = continuous_rows<f16>(grid.tokens(), 11296, layout::contiguous, 9);
  const token_matrix<f16> wide_query = continuous_rows<f16>(1, 11296, layout::contiguous, 10);
  const device_mirror<f16, 2> dw(wide.storage, wide.rows), dwq(wide_query.storage, wide_query.rows);
  device_buffer<float> scores(std::vector<float>(3, sentinel));
  check(apply(tokred::cuda{test_stream()}, p, feature_score_inputs<f16, device_space>{grid, dw.v, dwq.v},
              score_outputs<device_space>{view<float, 1, device_space>(scores.get(), {3})}) == status::invalid_parameter,
        "frame relevance at 11296: invalid_parameter");
}

void check_non_finite() {
  // 3 frames of 2 tokens; token 2 (frame 1, slot 0) holds NaN, token 5 (frame 2, slot 1) inf.
  const float nan_value = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  token_matrix<float> rows = continuous_rows<float>(6, 2, layout::contiguous, 1);
  const float x[6 * 2] = {1, 0, 0, 1, nan_value, 1, 1, 1, 1, 2, inf, 1};
  for (index_t i = 0; i < 6; ++i)
    for (index_t c = 0; c < 2; ++c) rows.rows(i, c) = x[i * 2 + c];
  const device_mirror<float, 2> d(rows.storage, rows.rows);
  const token_grid grid{3, 1, 2};
  const std::vector<float> norms = run(token_norm{}, grid, d, nullptr, "non-finite norms");
  check(std::isnan(norms[2]) && norms[5] == inf && norms[0] == 1.0f, "non-finite norms: NaN, inf and 1");
  const std::vector<float> dis = run(temporal_similarity::evs(), grid, d, nullptr, "non-finite temporal");
  check(dis[0] == 255.0f && dis[1] == 255.0f && std::isnan(dis[2]) && std::isnan(dis[4]) && std::isnan(dis[5]),
        "non-finite temporal: frame 0 255, NaN beside the NaN and inf rows");
}

void check_bad_input() {
  const token_grid grid{2, 2, 2};
  const token_matrix<float> rows = continuous_rows<float>(8, 16, layout::contiguous, 2);
  const token_matrix<float> query = continuous_rows<float>(2, 8, layout::contiguous, 3);  // the wrong width
  const device_mirror<float, 2> d(rows.storage, rows.rows), dq(query.storage, query.rows);
  device_buffer<float> scores(std::vector<float>(8, sentinel));
  const tokred::cuda exec{test_stream()};
  const auto untouched = [&](const std::string& what) {
    finish(what);
    const std::vector<float> now = scores.download();
    bool same = true;
    for (const float v : now) same = same && v == sentinel;
    check(same, what + ": scores written");
  };
  const score_outputs<device_space> out{view<float, 1, device_space>(scores.get(), {8})};
  check(apply(exec, query_relevance{}, feature_score_inputs<float, device_space>{grid, d.v, dq.v}, out) == status::shape_mismatch,
        "query of another width");
  untouched("query of another width");
  check(apply(exec, query_relevance{}, feature_score_inputs<float, device_space>{grid, d.v, {}}, out) == status::empty_input,
        "no query rows");
  untouched("no query rows");
  check(apply(exec, token_norm{}, feature_score_inputs<float, device_space>{{3, 2, 2}, d.v, {}}, out) == status::shape_mismatch,
        "grid of 12 over 8 rows");
  untouched("grid of 12 over 8 rows");
  const score_outputs<device_space> over{view<float, 1, device_space>(const_cast<float*>(d.v.data_handle()), {8})};
  check(apply(exec, token_norm{}, feature_score_inputs<float, device_space>{grid, d.v, {}}, over) == status::aliasing,
        "scores over the rows");
}

void check_graph_capture() {
  const token_grid grid{4, 27, 27};
  const token_matrix<bf16> rows = continuous_rows<bf16>(grid.tokens(), 1152, layout::contiguous, 5);
  const token_matrix<bf16> query = continuous_rows<bf16>(5, 1152, layout::contiguous, 6);
  const device_mirror<bf16, 2> d(rows.storage, rows.rows), dq(query.storage, query.rows);
  device_buffer<float> a(static_cast<std::size_t>(grid.tokens())), b(static_cast<std::size_t>(grid.tokens())),
      c(static_cast<std::size_t>(grid.frames));
  const tokred::cuda exec{test_stream()};
  const feature_score_inputs<bf16, device_space> in{grid, d.v, dq.v};
  const query_relevance frames{query_relevance::level::frame};
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, temporal_similarity::evs(), in, score_outputs<device_space>{view<float, 1, device_space>(a.get(), {grid.tokens()})}),
        apply(exec, query_relevance{}, in, score_outputs<device_space>{view<float, 1, device_space>(b.get(), {grid.tokens()})}),
        apply(exec, frames, in, score_outputs<device_space>{view<float, 1, device_space>(c.get(), {grid.frames})})};
  });
  if (!replayed) return;
  const view<const bf16, 2> x(rows.rows), q(query.rows);
  const double tolerance = ref::cosine_tolerance(1152), mean_tolerance = tolerance + std::ldexp(5.0, -24);
  check(ref::worst_error(a.download(), ref::temporal(temporal_similarity::evs(), grid, x)) <= tolerance, "graph: temporal");
  check(ref::worst_error(b.download(), ref::relevance(query_relevance{}, grid, x, q)) <= mean_tolerance, "graph: relevance");
  check(ref::worst_error(c.download(), ref::relevance(frames, grid, x, q)) <= mean_tolerance, "graph: frame relevance");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  for (const shape_case& c : shape_cases()) {
    check_case<float>(c, 3);
    check_case<f16>(c, 3);
    check_case<bf16>(c, 3);
    check_case<float>(c, 1);
    if (c.grid.frames > 1 || c.grid.tokens() == 576) check_case<bf16>(c, 70);
  }
  check_frame_limit();
  check_non_finite();
  check_bad_input();
  check_graph_capture();
  return summary();
}
