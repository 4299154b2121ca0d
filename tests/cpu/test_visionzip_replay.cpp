// tests/cpu/test_visionzip_replay.cpp — the CUDA backend of visionzip, replayed on the host: its
// algorithm, step for step (cuda/tokred/cuda/visionzip.cuh), built from the host/device pieces
// its kernels call, must give the CPU backend's outputs bit for bit, on every machine, with or
// without a GPU.
//
// The replay: the dominant patches by the CPU's radix select (the CUDA select kernel's
// documented result), the layout, each row of R's target as the largest rank key over 32 lanes
// (lane q on targets q, q + 32, …) of `scaled_cosine` of column-order `chain_dot`s, a target
// joining itself, each target's members by a scan of R in row order, and every output row with
// the kernels' arithmetic. The chains round as `cpu<>` of this build does (fused where it has
// FMA); CI runs this test in the default and in the native build.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr bool fused = detail::multiply_add_fuses<compile_time_arch>();

/// The CUDA backend's outputs, replayed.
template <class Ein, class Eout>
merge_buffers<Eout> replay_visionzip(const visionzip& p, const visionzip_inputs<Ein>& in) {
  const detail::visionzip_shape s = detail::visionzip_count(p, in.grid);
  const index_t cls = p.cls_token ? 1 : 0, n = in.grid.tokens(), c = p.contextual, dim = in.tokens.extent(1);
  merge_buffers<Eout> out(s.kept, s.rows, dim);
  std::vector<std::uint32_t> keys(static_cast<std::size_t>(n));
  std::vector<std::int64_t> dominant(static_cast<std::size_t>(s.patches));
  if (s.patches > 0)
    detail::select_largest([&](index_t j) { return detail::score_key(detail::float_bits(in.scores(j))); }, n,
                           s.patches, 0, keys.data(), dominant.data());
  std::vector<index_t> slot(static_cast<std::size_t>(s.rows), -1), remaining, targets, choice(static_cast<std::size_t>(s.rows), 0),
      offsets, members;
  const auto at = [](auto& v, index_t i) -> auto& { return v[static_cast<std::size_t>(i)]; };
  if (cls) at(slot, 0) = 0;
  for (index_t k = 0; k < s.patches; ++k) at(slot, at(dominant, k) + cls) = cls + k;
  for (index_t i = 0; i < s.rows; ++i)
    if (at(slot, i) < 0) remaining.push_back(i);
  for (index_t q = 0; q < c; ++q) targets.push_back(at(remaining, q * s.step));
  if (c > 0) {
    const view<const Ein, 2> metric = detail::compared_rows(in);
    const detail::side_rows<Ein, host_space> rows{metric, 0, 1};
    std::vector<float> scale(static_cast<std::size_t>(s.rows));
    for (index_t i = 0; i < s.rows; ++i)
      at(scale, i) = detail::cosine_scale_of(detail::chain_dot<fused>(rows, i, rows, i, metric.extent(1)));
    for (const index_t row : remaining) {
      std::uint64_t lanes[32] = {};
      for (int lane = 0; lane < 32; ++lane)
        for (index_t q = lane; q < c; q += 32) {
          const index_t t = at(targets, q);
          const float sim = detail::scaled_cosine(detail::chain_dot<fused>(rows, row, rows, t, metric.extent(1)),
                                                  at(scale, row), at(scale, t));
          lanes[lane] = std::max(lanes[lane], detail::rank_key(sim, q));
        }
      at(choice, row) = detail::rank_key_index(*std::max_element(lanes, lanes + 32));
    }
    for (index_t q = 0; q < c; ++q) at(choice, at(targets, q)) = q;
    for (index_t q = 0; q < c; ++q) {
      offsets.push_back(static_cast<index_t>(members.size()));
      for (const index_t row : remaining)
        if (at(choice, row) == q && row != at(targets, q)) members.push_back(row);
    }
    offsets.push_back(static_cast<index_t>(members.size()));
    for (const index_t row : remaining) at(slot, row) = p.dominant + at(choice, row);
  }
  for (index_t q = 0; q < s.kept; ++q) {
    const index_t i = q >= p.dominant ? at(targets, q - p.dominant) : (q < cls ? 0 : at(dominant, q - cls) + cls);
    const index_t first = q >= p.dominant ? at(offsets, q - p.dominant) : 0;
    const index_t count = q >= p.dominant ? at(offsets, q - p.dominant + 1) - first : 0;
    const bool plus = p.merge == contextual_merge::target_plus_mean;
    const float divisor = plus ? static_cast<float>(count > 1 ? count : 1) : static_cast<float>(count + 1);
    for (index_t col = 0; col < dim; ++col) {
      Eout& value = at(out.tokens, q * dim + col);
      if (q < p.dominant) {
        if constexpr (std::is_same_v<Ein, Eout>) value = in.tokens(i, col);  // convert_element: a bit copy
        else value = from_float<Eout>(to_float(in.tokens(i, col)));
        continue;
      }
      const float target = to_float(in.tokens(i, col));
      float acc = plus ? 0.0f : target;
      for (index_t m = 0; m < count; ++m) acc = detail::add_rn(acc, to_float(in.tokens(at(members, first + m), col)));
      value = from_float<Eout>(plus ? detail::add_rn(target, detail::div_rn(acc, divisor)) : detail::div_rn(acc, divisor));
    }
    at(out.source, q) = i;
    at(out.sizes, q) = q < p.dominant ? 1.0f : static_cast<float>(1 + count);
    const token_position pos = i < cls ? token_position{-1, -1, -1} : in.grid.position(i - cls);
    const index_t xyz[3] = {pos.t, pos.h, pos.w};
    for (int d = 0; d < 3; ++d) at(out.positions, q * 3 + d) = static_cast<std::int32_t>(xyz[d]);
  }
  for (index_t i = 0; i < s.rows; ++i) at(out.assign, i) = at(slot, i);
  return out;
}

template <class Ein, class Eout>
void check_case(const shape_case& sc, const visionzip& p, bool own_metric) {
  const index_t rows = sc.grid.tokens() + (p.cls_token ? 1 : 0);
  const token_matrix<Ein> tokens = continuous_rows<Ein>(rows, sc.dim, sc.rows, 3 + static_cast<std::uint64_t>(rows));
  const token_matrix<Ein> metric = continuous_rows<Ein>(rows, 7, sc.rows, 5 + static_cast<std::uint64_t>(rows));
  const std::vector<float> scores = tie_heavy_scores(sc.grid.tokens(), 11);
  visionzip_inputs<Ein> in{sc.grid, tokens.rows, make_view<const float>(scores.data(), sc.grid.tokens()), {}};
  if (own_metric) in.metric = metric.rows;
  const problem prob{sc.grid, sc.dim};
  merge_buffers<Eout> expected(retained_count(p, prob), rows, sc.dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  REQUIRE(apply(cpu{}, p, in, expected.outputs(), ws.get()) == status::ok);
  const merge_buffers<Eout> got = replay_visionzip<Ein, Eout>(p, in);
  CHECK(same_bytes(got.tokens, expected.tokens));
  CHECK(got.source == expected.source);
  CHECK(got.positions == expected.positions);
  CHECK(same_bytes(got.sizes, expected.sizes));
  CHECK(got.assign == expected.assign);
}

}  // namespace

TEST_CASE("visionzip's CUDA algorithm, replayed on the host, gives the CPU backend's bits", "[visionzip][cuda-replay]") {
  for (const shape_case& sc : shape_cases())
    for (const bool cls : {true, false})
      for (const contextual_merge merge : {contextual_merge::target_plus_mean, contextual_merge::group_mean}) {
        const index_t rows = sc.grid.tokens() + (cls ? 1 : 0), base = cls ? 1 : 0;
        const visionzip budgets[] = {{(rows + 9) / 10, rows / 50, cls, merge},
                                     {base, rows / 3, cls, merge},
                                     {rows / 2, 0, cls, merge},
                                     {base + 1, rows - base - 1, cls, merge}};
        for (const visionzip& p : budgets) {
          if (can_implement(p, problem{sc.grid, sc.dim}) != status::ok) continue;
          INFO(sc.name << (cls ? " cls " : " ") << p.dominant << " + " << p.contextual);
          check_case<float, float>(sc, p, true);
          check_case<float, float>(sc, p, false);
          check_case<bf16, bf16>(sc, p, true);
          check_case<f16, float>(sc, p, false);
        }
      }
}
