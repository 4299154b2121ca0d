// tests/cpu/test_tome_steps.cpp — the CUDA backend of tome, replayed on the host: its algorithm,
// step for step, built from the same host/device pieces its kernels call
// (<tokred/policy/tome_steps.hpp>), must give the CPU backend's outputs bit for bit, here, on
// every machine, with or without a GPU.
//
// The replay follows cuda/tokred/cuda/tome.cuh: every A row's best B as the maximum of 64-bit
// keys (any order), the winner's similarity recomputed from its chain, ranks counted, slots from
// `tome_layout_plan::slot_of` over an exclusive prefix, each B token's sources placed by counting
// those of higher rank, and every output row from `group_mean_at`. The chains follow the rounding
// of `cpu<>` in this build (fused where it has FMA), as the kernels do in theirs.
#include <algorithm>
#include <limits>
#include <cstdint>
#include <string>
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

/// The CUDA backend's matching: similarity and partner of every A token.
struct replayed_match {
  std::vector<float> similarity;
  std::vector<std::int64_t> partner;
};

template <class E>
replayed_match replay_match(const view<const E, 2>& rows, index_t protect) {
  const index_t dim = rows.extent(1);
  const detail::match_span m = detail::match_span_of(rows.extent(0), protect);
  const detail::side_rows<E, host_space> a{rows, 0}, b{rows, 1};
  std::vector<float> scale(static_cast<std::size_t>(m.a + m.b));
  for (index_t k = m.kfirst; k < m.a; ++k)
    scale[static_cast<std::size_t>(k)] = detail::cosine_scale_of(detail::chain_dot<fused>(a, k, a, k, dim));
  for (index_t j = m.j0; j < m.b; ++j)
    scale[static_cast<std::size_t>(m.a + j)] = detail::cosine_scale_of(detail::chain_dot<fused>(b, j, b, j, dim));
  replayed_match out{std::vector<float>(static_cast<std::size_t>(m.a)),
                     std::vector<std::int64_t>(static_cast<std::size_t>(m.a))};
  for (index_t k = 0; k < m.a; ++k) {
    detail::best_match best = detail::no_match();
    if (k >= m.kfirst) {
      // The tiles' keys in descending B order: the maximum does not depend on the order.
      std::uint64_t key = 0;
      for (index_t j = m.b - 1; j >= m.j0; --j) {
        const float sim = detail::scaled_cosine(detail::chain_dot<fused>(a, k, b, j, dim),
                                                scale[static_cast<std::size_t>(k)],
                                                scale[static_cast<std::size_t>(m.a + j)]);
        key = std::max(key, detail::rank_key(sim, j));
      }
      best = {-detail::positive_infinity(), detail::rank_key_index(key)};
      if ((key >> 32) != 0)
        best.similarity = detail::scaled_cosine(detail::chain_dot<fused>(a, k, b, best.partner, dim),
                                                scale[static_cast<std::size_t>(k)],
                                                scale[static_cast<std::size_t>(m.a + best.partner)]);
      best = detail::finished_match(best, m.j0);
    }
    out.similarity[static_cast<std::size_t>(k)] = best.similarity;
    out.partner[static_cast<std::size_t>(k)] = best.partner;
  }
  return out;
}

/// The CUDA backend's tome: the matching, then rank, layout, members and write.
template <class Ein, class Eout>
merge_buffers<Eout> replay_tome(const tome& p, const merge_inputs<Ein>& in) {
  const index_t n = in.grid.tokens(), dim = in.tokens.extent(1);
  const detail::merge_count c = detail::tome_count(p, in.grid);
  merge_buffers<Eout> out(c.kept, n, dim);
  const auto weight = [&](index_t i) { return detail::requested(in.sizes) ? in.sizes(i) : 1.0f; };
  const detail::tome_layout_plan plan{split_of(n, p.protect), n, c.r, p.protect, p.order};
  const index_t a = plan.s.a, b = plan.s.b;
  std::vector<std::int32_t> rep(static_cast<std::size_t>(n)), slot(static_cast<std::size_t>(n));
  std::vector<std::int32_t> offsets(static_cast<std::size_t>(b + 1)), members(static_cast<std::size_t>(a));
  for (index_t i = 0; i < n; ++i) rep[static_cast<std::size_t>(i)] = slot[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  if (c.r > 0) {
    const replayed_match match = replay_match(detail::compared_rows(in), p.protect);
    const auto at = [](auto& v, index_t i) -> auto& { return v[static_cast<std::size_t>(i)]; };
    std::vector<std::int32_t> rank(static_cast<std::size_t>(a)), order(static_cast<std::size_t>(a));
    for (index_t k = plan.s.a_protected; k < a; ++k) {
      index_t above = 0;
      for (index_t t = plan.s.a_protected; t < a; ++t)
        above += detail::rank_key(at(match.similarity, t), t) > detail::rank_key(at(match.similarity, k), k) ? 1 : 0;
      at(rank, k) = static_cast<std::int32_t>(above);
      if (above < c.r) at(order, above) = static_cast<std::int32_t>(k);
    }
    const auto merged = [&](index_t k) { return k >= plan.s.a_protected && at(rank, k) < c.r; };
    std::vector<std::int32_t> sources(static_cast<std::size_t>(b), 0), prefix(static_cast<std::size_t>(a + 1), 0);
    for (index_t k = plan.s.a_protected; k < a; ++k)
      if (merged(k)) ++at(sources, at(match.partner, k));
    for (index_t j = 0; j < b; ++j) at(offsets, j + 1) = at(offsets, j) + at(sources, j);
    for (index_t k = 0; k < a; ++k) at(prefix, k + 1) = at(prefix, k) + (plan.flag(k, merged(k)) ? 1 : 0);
    const auto prefix_of = [&](index_t k) { return static_cast<index_t>(at(prefix, k)); };
    for (index_t i = 0; i < n; ++i) {
      const bool is_a = (i & 1) == 0;
      if (is_a && merged(i / 2)) continue;
      const index_t q = plan.slot_of(i, is_a ? at(rank, i / 2) : 0, prefix_of);
      at(slot, i) = static_cast<std::int32_t>(q);
      at(rep, q) = static_cast<std::int32_t>(i);
    }
    for (index_t k = plan.s.a_protected; k < a; ++k)
      if (merged(k)) at(slot, 2 * k) = at(slot, 2 * at(match.partner, k) + 1);
    for (index_t q = 0; q < c.r; ++q) {
      const std::int64_t j = at(match.partner, at(order, q));
      std::int32_t place = 0;
      for (index_t before = 0; before < q; ++before) place += at(match.partner, at(order, before)) == j ? 1 : 0;
      at(members, at(offsets, j) + place) = 2 * at(order, q);  // the source's token index
    }
  }
  for (index_t q = 0; q < c.kept; ++q) {
    const index_t i = rep[static_cast<std::size_t>(q)];
    const std::int32_t* sources = nullptr;
    index_t count = 0;
    if (c.r > 0 && (i & 1) != 0) {
      sources = members.data() + offsets[static_cast<std::size_t>(i / 2)];
      count = offsets[static_cast<std::size_t>(i / 2 + 1)] - offsets[static_cast<std::size_t>(i / 2)];
    }
    float total = weight(i);
    for (index_t m = 0; m < count; ++m) total = detail::add_rn(total, weight(sources[m]));
    for (index_t col = 0; col < dim; ++col)
      out.tokens[static_cast<std::size_t>(q * dim + col)] =
          from_float<Eout>(detail::group_mean_at<fused>(in.tokens, i, sources, count, weight, total, col));
    out.sizes[static_cast<std::size_t>(q)] = total;
    out.source[static_cast<std::size_t>(q)] = detail::requested(in.source) ? in.source(i) : i;
    const token_position pos = in.grid.position(i);
    const std::int32_t xyz[3] = {static_cast<std::int32_t>(pos.t), static_cast<std::int32_t>(pos.h),
                                 static_cast<std::int32_t>(pos.w)};
    for (int d = 0; d < 3; ++d)
      out.positions[static_cast<std::size_t>(q * 3 + d)] = detail::requested(in.positions) ? in.positions(i, d) : xyz[d];
  }
  for (index_t i = 0; i < n; ++i) out.assign[static_cast<std::size_t>(i)] = slot[static_cast<std::size_t>(i)];
  return out;
}

/// tome and tome_match on `rows`: the replay against the CPU backend, every output.
template <class Ein, class Eout>
void check_rows(const token_grid& grid, const view<const Ein, 2>& rows, const tome& p, bool carry) {
  const index_t n = grid.tokens(), dim = rows.extent(1);
  std::vector<float> sizes(static_cast<std::size_t>(n));
  std::vector<std::int64_t> source(static_cast<std::size_t>(n));
  std::vector<std::int32_t> positions(static_cast<std::size_t>(3 * n));
  for (index_t i = 0; i < n; ++i) {
    sizes[static_cast<std::size_t>(i)] = 1.0f + static_cast<float>(i % 5) / 3.0f;  // inexact products
    source[static_cast<std::size_t>(i)] = 1000 + 3 * i;
    for (int d = 0; d < 3; ++d) positions[static_cast<std::size_t>(3 * i + d)] = static_cast<std::int32_t>(7 * i + d);
  }
  merge_inputs<Ein> in{grid, rows, {}, {}, {}, {}, {}, {}};
  if (carry) {
    in.sizes = make_view<const float>(sizes.data(), n);
    in.source = make_view<const std::int64_t>(source.data(), n);
    in.positions = make_view<const std::int32_t>(positions.data(), n, 3);
  }
  const problem prob{grid, dim};
  merge_buffers<Eout> cpu_out(retained_count(p, prob), n, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  REQUIRE(apply(cpu{}, p, in, cpu_out.outputs(), ws.get()) == status::ok);
  const merge_buffers<Eout> replayed = replay_tome<Ein, Eout>(p, in);
  CHECK(same_bytes(replayed.tokens, cpu_out.tokens));
  CHECK(replayed.source == cpu_out.source);
  CHECK(replayed.positions == cpu_out.positions);
  CHECK(same_bytes(replayed.sizes, cpu_out.sizes));
  CHECK(replayed.assign == cpu_out.assign);

  const index_t a = a_tokens(n);
  std::vector<float> similarity(static_cast<std::size_t>(a));
  std::vector<std::int64_t> partner(static_cast<std::size_t>(a));
  const tome_match mp{p.protect};
  host_workspace mws(workspace_bytes(cpu{}, mp, prob));
  REQUIRE(apply(cpu{}, mp, in, match_outputs<>{make_view(similarity.data(), a), make_view(partner.data(), a)},
                mws.get()) == status::ok);
  const replayed_match m = replay_match(rows, p.protect);
  CHECK(same_bytes(m.similarity, similarity));
  CHECK(m.partner == partner);
}

/// One case of the table: rows on a coarse grid of values (exact ties) and continuous rows
/// (full-precision products and sums, where a fused and an unfused chain differ).
template <class Ein, class Eout>
void check_case(const shape_case& sc, const tome& p, bool carry) {
  const index_t n = sc.grid.tokens();
  const token_matrix<Ein> coarse = make_tokens<Ein>(n, sc.dim, sc.rows, 41 + static_cast<std::uint64_t>(n));
  const token_matrix<Ein> fine = continuous_rows<Ein>(n, sc.dim, sc.rows, 43 + static_cast<std::uint64_t>(n));
  check_rows<Ein, Eout>(sc.grid, coarse.rows, p, carry);
  check_rows<Ein, Eout>(sc.grid, fine.rows, p, carry);
}

}  // namespace

TEST_CASE("tome's CUDA algorithm, replayed on the host, gives the CPU backend's bits", "[tome][cuda-replay]") {
  for (const shape_case& sc : shape_cases())
    for (const index_t protect : {0, 1, 2})
      for (const merge_order order : {merge_order::original, merge_order::by_position}) {
        const index_t n = sc.grid.tokens();
        const tome p{std::max<index_t>(1, n / 4), protect, order};
        INFO(sc.name << " protect " << protect << (order == merge_order::original ? " original" : " by position"));
        check_case<float, float>(sc, p, protect == 1);
        check_case<bf16, bf16>(sc, p, protect == 0);
        check_case<f16, float>(sc, p, protect == 2);
        check_case<float, float>(sc, tome{n, protect, order}, false);  // r clamped: most A tokens merge
        check_case<float, float>(sc, tome{0, protect, order}, true);   // nothing merges
      }
}

TEST_CASE("tome replay: ties and special rows (duplicates, zero rows, NaN)", "[tome][cuda-replay]") {
  const index_t n = 40, dim = 12;
  token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 9);
  for (index_t c = 0; c < dim; ++c) {
    rows.rows(3, c) = rows.rows(5, c);  // B 1 = B 2: a tie between B tokens
    rows.rows(8, c) = rows.rows(10, c);  // A 4 = A 5: a tie between candidates
    rows.rows(12, c) = rows.rows(15, c) = 0.0f;  // zero rows
  }
  rows.rows(20, 3) = std::numeric_limits<float>::quiet_NaN();  // NaN rows: an A and a B token
  rows.rows(23, 1) = std::numeric_limits<float>::infinity();
  for (const index_t protect : {0, 3})
    for (const merge_order order : {merge_order::original, merge_order::by_position})
      for (const index_t r : {1, 7, 17, 20}) {
        INFO("protect " << protect << " r " << r);
        check_rows<float, float>(sequence_grid(n), rows.rows, tome{r, protect, order}, protect == 3);
      }
}
