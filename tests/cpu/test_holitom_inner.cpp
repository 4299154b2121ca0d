// tests/cpu/test_holitom_inner.cpp — holitom_inner on CPU: the oracle over the shared case table
// (every element type, several r, thread splits), the halving order and the tie rules by hand,
// zero rows, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/holitom_inner.hpp>

#include "reference/holitom_inner_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Sentinel-filled outputs of holitom_inner.
template <class E>
struct inner_buffers {
  std::vector<E> tokens;
  std::vector<std::int64_t> source;
  std::vector<float> sizes;
  std::vector<std::int64_t> assign;
  index_t kept, n, dim;

  inner_buffers(index_t kept_, index_t n_, index_t dim_)
      : tokens(static_cast<std::size_t>(kept_ * dim_), from_float<E>(-3.5f)), source(static_cast<std::size_t>(kept_), -12345),
        sizes(static_cast<std::size_t>(kept_), -1.0f), assign(static_cast<std::size_t>(n_), -12345), kept(kept_), n(n_), dim(dim_) {}

  holitom_inner_outputs<E> outputs() {
    return {make_view(tokens.data(), kept, dim), make_view(source.data(), kept), make_view(sizes.data(), kept),
            make_view(assign.data(), n)};
  }
  bool untouched() const {
    return std::all_of(tokens.begin(), tokens.end(), [](E t) { return to_float(t) == -3.5f; }) &&
           std::all_of(source.begin(), source.end(), [](std::int64_t s) { return s == -12345; }) &&
           std::all_of(sizes.begin(), sizes.end(), [](float s) { return s == -1.0f; }) &&
           std::all_of(assign.begin(), assign.end(), [](std::int64_t a) { return a == -12345; });
  }
  bool same_bits(const inner_buffers& o) const {
    return std::memcmp(tokens.data(), o.tokens.data(), tokens.size() * sizeof(E)) == 0 && source == o.source &&
           sizes == o.sizes && assign == o.assign;
  }
};

template <class Ein, class Eout>
inner_buffers<Eout> run_inner(const holitom_inner& p, const holitom_inner_inputs<Ein>& in, int nth = 1) {
  const index_t n = in.tokens.extent(0), dim = in.tokens.extent(1);
  const problem prob{sequence_grid(n), dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  inner_buffers<Eout> out(kept, n, dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith) REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// Everything against the oracle, tokens bit for bit (the oracle rounds as the element type).
template <class Eout>
void check_result(const inner_buffers<Eout>& got, const ref::holitom_inner_result& want) {
  CHECK(got.source == want.source);
  CHECK(got.sizes == want.sizes);
  CHECK(got.assign == want.assign);
  REQUIRE(got.tokens.size() == want.tokens.size());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.tokens.size(); ++i) bad += bits_of(got.tokens[i]) != bits_of(from_float<Eout>(want.tokens[i]));
  CHECK(bad == 0);
}

template <class Ein, class Eout>
void run_case_table() {
  std::size_t runs = 0, merged = 0;
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    const token_matrix<Ein> x = make_tokens<Ein>(n, c.dim, c.rows, 71 + static_cast<std::uint64_t>(n));
    const std::vector<float> attn = tie_heavy_scores(n, 73 + static_cast<std::uint64_t>(n));
    const holitom_inner_inputs<Ein> in{x.rows, make_view<const float>(attn.data(), n)};
    for (const double r : {0.5, 0.25, 0.0, 0.9}) {
      INFO(c.name << " r " << r);
      const holitom_inner p{r};
      if (retained_count(p, problem{sequence_grid(n), c.dim}) == 0) {
        CHECK(can_implement(p, problem{sequence_grid(n), c.dim}) == status::invalid_budget);
        continue;
      }
      const inner_buffers<Eout> got = run_inner<Ein, Eout>(p, in);
      check_result(got, ref::holitom_inner_run(p, view<const Ein, 2>(x.rows), attn));
      for (int nth : {2, 3}) {
        INFO("nth " << nth);
        CHECK(run_inner<Ein, Eout>(p, in, nth).same_bits(got));
      }
      ++runs;
      merged += static_cast<std::size_t>(n - got.kept);
    }
  }
  CHECK(runs == 10 * 4 - 2);  // one token keeps round(0.5) = 0 at r = 0.5 and round(0.1) = 0 at r = 0.9: refused
  CHECK(merged > 1000);
}

}  // namespace

TEST_CASE("holitom_inner: the oracle over the case table, fp32", "[holitom_inner]") { run_case_table<float, float>(); }
TEST_CASE("holitom_inner: the oracle over the case table, f16", "[holitom_inner]") { run_case_table<f16, f16>(); }
TEST_CASE("holitom_inner: the oracle over the case table, bf16 to fp32", "[holitom_inner]") { run_case_table<bf16, float>(); }

TEST_CASE("holitom_inner: the halvings, the ranking and ties, by hand", "[holitom_inner]") {
  // 5 tokens of 2 values. Attention keeps round(5·0.5) = 2 (half to even): tokens 3 and 1, in
  // that rank order. Token 0 = (1, 0.25) is closest to token 1 = (1, 0); token 2 = (0.8, 0.6) has
  // cosine 0.8 with token 1 and 0.96 with token 3 = (0.6, 0.8); token 4 = (4, 3) is token 2 scaled.
  const float x[5 * 2] = {1, 0.25f, 1, 0, 0.8f, 0.6f, 0.6f, 0.8f, 4, 3};
  const std::vector<float> attn = {0.1f, 0.5f, 0.2f, 0.7f, 0.1f};
  const holitom_inner_inputs<float> in{make_view<const float>(x, 5, 2), make_view<const float>(attn.data(), 5)};
  const inner_buffers<float> got = run_inner<float, float>(holitom_inner{0.5}, in);
  CHECK(got.kept == 2);
  CHECK(got.source == std::vector<std::int64_t>{1, 3});
  CHECK(got.assign == std::vector<std::int64_t>{0, 0, 1, 1, 1});
  CHECK(got.sizes == std::vector<float>{2, 3});
  // Token 1: (1, 0) then (1 + 1, 0 + 0.25)/2. Token 3: ((0.6 + 0.8)/2, (0.8 + 0.6)/2) = (0.7, 0.7),
  // then ((0.7 + 4)/2, (0.7 + 3)/2): the later partner weighs half, the state a quarter.
  CHECK(got.tokens[0] == 1.0f);
  CHECK(got.tokens[1] == 0.125f);
  CHECK(got.tokens[2] == (((0.6f + 0.8f) / 2.0f) + 4.0f) / 2.0f);
  CHECK(got.tokens[3] == (((0.8f + 0.6f) / 2.0f) + 3.0f) / 2.0f);

  // Equal cosines: rank order decides, not the index. Kept 3 (first in rank) and 1, token 0 =
  // (1, 1) at cosine 1/√2 from (1, 0) and (0, 1).
  const float y[4 * 2] = {1, 1, 1, 0, 5, 5, 0, 1};
  const std::vector<float> tie_attn = {0.0f, 0.5f, 0.0f, 0.9f};
  const holitom_inner_inputs<float> tie{make_view<const float>(y, 4, 2), make_view<const float>(tie_attn.data(), 4)};
  const inner_buffers<float> t = run_inner<float, float>(holitom_inner{0.5}, tie);
  CHECK(t.source == std::vector<std::int64_t>{1, 3});
  CHECK(t.assign == std::vector<std::int64_t>{1, 0, 1, 1});  // tokens 0 and 2 join token 3

  // A zero row has NaN cosines: it goes to the first kept token in rank order (torch.max's first
  // NaN), here token 3.
  const float z[4 * 2] = {0, 0, 1, 0, 2, 1, 0, 1};
  const std::vector<float> z_attn = {0.0f, 0.5f, 0.1f, 0.9f};
  const holitom_inner_inputs<float> zero{make_view<const float>(z, 4, 2), make_view<const float>(z_attn.data(), 4)};
  const inner_buffers<float> zr = run_inner<float, float>(holitom_inner{0.5}, zero);
  CHECK(zr.assign == std::vector<std::int64_t>{1, 0, 0, 1});
  check_result(zr, ref::holitom_inner_run(holitom_inner{0.5}, zero.tokens, z_attn));
  // The same past one block of the product (30 kept tokens): the first NaN stays the target.
  token_matrix<float> many = make_tokens<float>(40, 3, layout::contiguous, 8);
  for (index_t c = 0; c < 3; ++c) many.rows(5, c) = 0.0f;
  std::vector<float> many_attn(40);
  for (index_t i = 0; i < 40; ++i) many_attn[static_cast<std::size_t>(i)] = i == 5 ? -1.0f : static_cast<float>((i * 7) % 40);
  const holitom_inner_inputs<float> wide{many.rows, make_view<const float>(many_attn.data(), 40)};
  const inner_buffers<float> w = run_inner<float, float>(holitom_inner{0.25}, wide);
  check_result(w, ref::holitom_inner_run(holitom_inner{0.25}, wide.tokens, many_attn));
  CHECK(w.source[static_cast<std::size_t>(w.assign[5])] == 17);  // attention (17·7) mod 40 = 39: first in rank
}

TEST_CASE("holitom_inner: counts and bad input", "[holitom_inner][bad_input]") {
  const auto kept = [](double r, index_t n) { return retained_count(holitom_inner{r}, problem{sequence_grid(n), 4}); };
  CHECK(kept(0.5, 5) == 2);  // round(2.5) = 2
  CHECK(kept(0.5, 7) == 4);  // round(3.5) = 4
  CHECK(kept(0.0, 9) == 9);
  CHECK(kept(1.0, 9) == 0);
  CHECK(can_implement(holitom_inner{1.0}, problem{sequence_grid(9), 4}) == status::invalid_budget);
  CHECK(can_implement(holitom_inner{-0.1}, problem{sequence_grid(9), 4}) == status::invalid_ratio);
  CHECK(can_implement(holitom_inner{std::nan("")}, problem{sequence_grid(9), 4}) == status::invalid_ratio);
  CHECK(can_implement(holitom_inner{}, problem{sequence_grid(0), 4}) == status::empty_input);

  const index_t n = 12, dim = 4;
  token_matrix<float> x = make_tokens<float>(n, dim, layout::contiguous, 5);
  const std::vector<float> attn = tie_heavy_scores(n, 6);
  const holitom_inner_inputs<float> good{x.rows, make_view<const float>(attn.data(), n)};
  const problem prob{sequence_grid(n), dim};
  const std::size_t need = workspace_bytes(cpu{}, holitom_inner{}, prob);
  host_workspace ws(need);
  const auto expect = [&](status want, const holitom_inner& p, const holitom_inner_inputs<float>& in, auto&& tweak) {
    inner_buffers<float> out(6, n, dim);
    holitom_inner_outputs<float> o = out.outputs();
    tweak(o);
    CHECK(apply(cpu{}, p, in, o, ws.get()) == want);
    CHECK(out.untouched());
  };
  const auto none = [](holitom_inner_outputs<float>&) {};
  expect(status::invalid_ratio, holitom_inner{1.5}, good, none);
  expect(status::invalid_budget, holitom_inner{1.0}, good, none);
  expect(status::shape_mismatch, holitom_inner{0.25}, good, none);  // 9 kept, outputs of 6
  holitom_inner_inputs<float> in = good;
  in.attention = make_view<const float>(attn.data(), n - 1);
  expect(status::shape_mismatch, holitom_inner{}, in, none);
  in.attention = {};
  expect(status::shape_mismatch, holitom_inner{}, in, none);
  expect(status::aliasing, holitom_inner{}, good, [](holitom_inner_outputs<float>& o) {
    o.sizes = make_view(reinterpret_cast<float*>(o.source.data_handle()), 6);
  });
  inner_buffers<float> out(6, n, dim);
  CHECK(apply(cpu{0, 0}, holitom_inner{}, good, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{}, holitom_inner{}, good, out.outputs(), workspace{ws.bytes.data(), need - 1}) == status::workspace_too_small);
  x.rows(3, 1) = std::numeric_limits<float>::quiet_NaN();
  CHECK(apply(cpu{}, holitom_inner{}, good, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(apply(cpu{1, 2}, holitom_inner{}, good, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(out.untouched());
}
