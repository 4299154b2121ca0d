// tests/cpu/test_aim.cpp — aim on CPU: against the oracle that applies the steps literally (the
// shared case table, every element type, 1–3 steps, plain and size-weighted means, thread splits),
// against chained tome calls bit for bit, AIM's counts, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/aim.hpp>

#include "reference/aim_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

template <class E>
double output_eps() {
  if constexpr (std::is_same_v<E, f16>) return std::ldexp(1.0, -10);
  else if constexpr (std::is_same_v<E, bf16>) return std::ldexp(1.0, -7);
  else return 0.0;
}

/// aim run as `nth` shares in reverse order.
template <class Ein, class Eout>
merge_buffers<Eout> run_aim(const aim& p, const aim_inputs<Ein>& in, index_t dim, int nth) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  merge_buffers<Eout> out(kept, in.grid.tokens(), dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith) REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

template <class Ein, class Eout>
void check_against_oracle(const shape_case& c, const aim& p) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> rows = continuous_rows<Ein>(n, c.dim, c.rows, 41 + static_cast<std::uint64_t>(n + p.steps));
  const aim_inputs<Ein> in{c.grid, rows.rows};
  const merge_buffers<Eout> got = run_aim<Ein, Eout>(p, in, c.dim, 1);
  const ref::aim_result want = ref::aim_all(c.grid, view<const Ein, 2>(rows.rows), p.steps, p.size_weighted);
  REQUIRE(static_cast<index_t>(want.source.size()) == got.kept);
  CHECK(got.source == want.source);
  CHECK(got.assign == want.assign);
  CHECK(got.positions == want.positions);
  CHECK(std::vector<double>(got.sizes.begin(), got.sizes.end()) == want.sizes);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.tokens.size(); ++i)
    bad += !(std::abs(to_float(got.tokens[i]) - want.tokens[i]) <= 1e-5 + (output_eps<Eout>() + 1e-6) * std::abs(want.tokens[i]));
  CHECK(bad == 0);
  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_aim<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
  }
}

/// Frames of `n` tokens `steps` times halved as AIM counts: n − Σ min(n >> s, m // 2).
index_t frame_kept(index_t n, index_t steps) {
  index_t m = n;
  for (index_t s = 1; s <= steps; ++s) m -= std::min(n >> s, m / 2);
  return m;
}

}  // namespace

TEST_CASE("aim matches the literal oracle on the case table", "[aim]") {
  for (const shape_case& c : shape_cases()) {
    for (index_t steps : {index_t{1}, index_t{2}, index_t{3}}) {
      for (bool weighted : {false, true}) {
        INFO(c.name << " steps " << steps << (weighted ? " size_weighted" : " plain"));
        const aim p{steps, weighted};
        CHECK(retained_count(p, problem{c.grid, c.dim}) == c.grid.frames * frame_kept(c.grid.frame_tokens(), steps));
        check_against_oracle<float, float>(c, p);
        check_against_oracle<bf16, bf16>(c, p);
        check_against_oracle<f16, f16>(c, p);
        if (steps == 2) check_against_oracle<f16, float>(c, p);
      }
    }
  }
}

TEST_CASE("aim: AIM's counts, 196 -> 98 -> 49 per frame", "[aim]") {
  CHECK(retained_count(aim{}, problem{token_grid{16, 14, 14}, 8}) == 16 * 49);
  CHECK(retained_count(aim{1}, problem{token_grid{16, 14, 14}, 8}) == 16 * 98);
  CHECK(retained_count(aim{3}, problem{token_grid{16, 14, 14}, 8}) == 16 * 25);  // r3 = 24 of 49
  CHECK(retained_count(aim{}, problem{image_grid(27, 27), 8}) == 183);           // 729 -> 365 -> 183
  CHECK(retained_count(aim{}, problem{image_grid(1, 1), 8}) == 1);
  CHECK(retained_count(aim{}, problem{image_grid(1, 3), 8}) == 2);               // r1 = 1, r2 = 0
}

template <class Ein, class Eout>
void check_against_tome(bool weighted) {
  // Per frame, two tome calls: tome{n/2} on the frame's rows into fp32, tome{n/4} on those rows
  // (sources carried; sizes carried when size-weighted), with the assigns composed.
  const token_grid grid{3, 6, 7};
  const index_t n = 42, dim = 19;
  const token_matrix<Ein> rows = continuous_rows<Ein>(grid.tokens(), dim, layout::strided, 55);
  const aim p{2, weighted};
  const merge_buffers<Eout> got = run_aim<Ein, Eout>(p, aim_inputs<Ein>{grid, rows.rows}, dim, 2);
  const index_t k = got.kept / grid.frames;
  REQUIRE(k == 42 - 21 - 10);
  for (index_t f = 0; f < grid.frames; ++f) {
    INFO("frame " << f);
    merge_inputs<Ein> in1{};
    in1.grid = sequence_grid(n);
    in1.tokens = view<const Ein, 2>(&rows.rows(f * n, 0), {n, dim}, {rows.rows.stride(0), rows.rows.stride(1)});
    std::vector<std::int64_t> originals(static_cast<std::size_t>(n));
    std::iota(originals.begin(), originals.end(), f * n);
    in1.source = make_view<const std::int64_t>(originals.data(), n);
    merge_buffers<float> s1(n - n / 2, n, dim);
    host_workspace ws(workspace_bytes(cpu{}, tome{n / 2}, problem{in1.grid, dim}));
    REQUIRE(apply(cpu{}, tome{n / 2}, in1, s1.outputs(), ws.get()) == status::ok);
    merge_inputs<float> in2{};
    in2.grid = sequence_grid(s1.kept);
    in2.tokens = make_view<const float>(s1.tokens.data(), s1.kept, dim);
    in2.source = make_view<const std::int64_t>(s1.source.data(), s1.kept);
    if (weighted) in2.sizes = make_view<const float>(s1.sizes.data(), s1.kept);
    merge_buffers<Eout> s2(k, s1.kept, dim);
    REQUIRE(apply(cpu{}, tome{n / 4}, in2, s2.outputs(), ws.get()) == status::ok);

    CHECK(std::memcmp(&got.tokens[static_cast<std::size_t>(f * k * dim)], s2.tokens.data(), s2.tokens.size() * sizeof(Eout)) == 0);
    CHECK(std::equal(s2.source.begin(), s2.source.end(), got.source.begin() + f * k));
    std::vector<std::int64_t> total(static_cast<std::size_t>(n));
    REQUIRE(compose_assign(make_view<const std::int64_t>(s1.assign.data(), n),
                           make_view<const std::int64_t>(s2.assign.data(), s1.kept), make_view(total.data(), n)) == status::ok);
    std::vector<float> counts(static_cast<std::size_t>(k), 0.0f);
    for (index_t i = 0; i < n; ++i) {
      CHECK(got.assign[static_cast<std::size_t>(f * n + i)] == f * k + total[static_cast<std::size_t>(i)]);
      counts[static_cast<std::size_t>(total[static_cast<std::size_t>(i)])] += 1.0f;
    }
    CHECK(std::equal(counts.begin(), counts.end(), got.sizes.begin() + f * k));
    if (weighted) CHECK(counts == s2.sizes);  // the chained sizes are the counts of originals
  }
}

TEST_CASE("aim equals two chained tome calls per frame, bit for bit", "[aim]") {
  check_against_tome<float, float>(false);
  check_against_tome<float, float>(true);
  check_against_tome<bf16, bf16>(false);
  check_against_tome<f16, float>(true);
}

TEST_CASE("aim: plain means weigh every token alike; size_weighted gives means of originals", "[aim]") {
  // One 8 x 8 frame: after 2 steps some outputs stand for 3 originals, merged at the second step
  // as (a mean of 2, 1): plain weighs those two alike, size_weighted gives the originals' mean.
  const token_matrix<float> rows = continuous_rows<float>(64, 4, layout::contiguous, 9);
  const aim_inputs<float> in{image_grid(8, 8), rows.rows};
  const merge_buffers<float> plain = run_aim<float, float>(aim{2, false}, in, 4, 1);
  const merge_buffers<float> weighted = run_aim<float, float>(aim{2, true}, in, 4, 1);
  bool differ = false;
  for (index_t q = 0; q < weighted.kept; ++q) {
    double mean[4] = {};
    for (index_t i = 0; i < 64; ++i)
      if (weighted.assign[static_cast<std::size_t>(i)] == q)
        for (int c = 0; c < 4; ++c) mean[c] += rows.rows(i, c) / weighted.sizes[static_cast<std::size_t>(q)];
    for (int c = 0; c < 4; ++c) {
      CHECK(std::abs(weighted.tokens[static_cast<std::size_t>(q * 4 + c)] - mean[c]) <= 1e-5);
      differ |= weighted.sizes[static_cast<std::size_t>(q)] == 3 &&
                std::abs(plain.tokens[static_cast<std::size_t>(q * 4 + c)] - mean[c]) > 1e-4;
    }
  }
  CHECK(plain.sizes == weighted.sizes);
  CHECK(differ);
}

TEST_CASE("aim: bad input leaves every output untouched", "[aim][bad-input]") {
  const token_matrix<float> rows = continuous_rows<float>(2 * 16, 8, layout::contiguous, 4);
  const aim_inputs<float> in{token_grid{2, 4, 4}, rows.rows};
  const aim p{};
  const problem prob{in.grid, 8};
  REQUIRE(retained_count(p, prob) == 2 * 4);
  merge_buffers<float> out(8, 32, 8);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  for (index_t steps : {index_t{0}, index_t{-1}, index_t{31}}) {
    CHECK(apply(cpu{}, aim{steps}, in, out.outputs(), ws.get()) == status::invalid_parameter);
    CHECK(can_implement(aim{steps}, prob) == status::invalid_parameter);
    CHECK(retained_count(aim{steps}, prob) == 0);
  }
  CHECK(can_implement(p, problem{token_grid{0, 4, 4}, 8}) == status::empty_input);
  CHECK(can_implement(p, problem{token_grid{1, -1, 4}, 8}) == status::shape_mismatch);
  CHECK(apply(cpu{}, p, aim_inputs<float>{token_grid{2, 4, 5}, rows.rows}, out.outputs(), ws.get()) ==
        status::shape_mismatch);
  CHECK(apply(cpu{}, p, aim_inputs<float>{in.grid, view<const float, 2>(nullptr, {32, 8}, {8, 1})}, out.outputs(),
              ws.get()) == status::null_pointer);
  CHECK(apply(cpu{}, p, aim_inputs<float>{in.grid, view<const float, 2>(rows.rows.data_handle(), {32, 0}, {8, 1})},
              out.outputs(), ws.get()) == status::empty_input);

  merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 7, 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.assign = make_view(out.assign.data(), 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  std::vector<float> copy(rows.storage.begin(), rows.storage.end());
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), 8, 8);  // in place
  CHECK(apply(cpu{}, p, aim_inputs<float>{in.grid, make_view<const float>(copy.data(), 32, 8)}, wrong, ws.get()) ==
        status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());
}
