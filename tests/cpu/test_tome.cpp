// tests/cpu/test_tome.cpp — tome, tome_match, unmerge, compose_assign and log_size_bias on CPU:
// against the oracle over the shared case table (every element type, thread split and output
// order), the merge invariants, chained applications with size tracking, the documented results
// for ties, zero rows and NaN, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/tome.hpp>

#include "reference/tome_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// How far (in double) a fp32 similarity may sit from the oracle's: rows of at most 64 values.
constexpr double rounding_slack = 1e-5;

/// The matching tome_match writes, run as `nth` shares in reverse order.
struct match_buffers {
  std::vector<float> similarity;
  std::vector<std::int64_t> partner;
};

template <class E>
match_buffers run_match(index_t protect, const merge_inputs<E>& in, int nth) {
  const index_t a = a_tokens(in.grid.tokens());
  match_buffers m{std::vector<float>(static_cast<std::size_t>(a), -5.0f),
                  std::vector<std::int64_t>(static_cast<std::size_t>(a), -5)};
  const tome_match p{protect};
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, problem{in.grid, 1}));
  const match_outputs<> out{make_view(m.similarity.data(), a), make_view(m.partner.data(), a)};
  for (int ith = nth - 1; ith >= 0; --ith) REQUIRE(apply(cpu{ith, nth}, p, in, out, ws.get()) == status::ok);
  return m;
}

/// tome run as `nth` shares (in reverse order); with `given`, on that matching.
template <class Ein, class Eout>
merge_buffers<Eout> run_tome(const tome& p, merge_inputs<Ein> in, index_t dim, int nth,
                             const match_buffers* given = nullptr) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  merge_buffers<Eout> out(kept, in.grid.tokens(), dim);
  if (given) {
    const index_t a = a_tokens(in.grid.tokens());
    in.similarity = make_view(given->similarity.data(), a);
    in.partner = make_view(given->partner.data(), a);
  }
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// The count the original's clamp gives: N − min(r, (N − protect) // 2), nothing merged when ≤ 0.
index_t expected_kept(index_t n, index_t r, index_t protect) {
  const index_t room = n - protect;
  const index_t floor_half = room >= 0 ? room / 2 : -((-room + 1) / 2);  // Python's //
  const index_t merged = std::min(r, floor_half);
  return merged > 0 ? n - merged : n;
}

/// One (case, policy) run: the matching certified against the oracle's, every output against
/// the oracle built from the backend's decisions, the thread splits, and the invariants.
template <class Ein, class Eout>
void check_against_oracle(const tome& p, const shape_case& c, bool separate_metric, bool carry_sizes) {
  const index_t n = c.grid.tokens();
  const std::uint64_t seed = 11 + static_cast<std::uint64_t>(n * 3 + p.protect);
  const token_matrix<Ein> rows = continuous_rows<Ein>(n, c.dim, c.rows, seed);
  const token_matrix<Ein> metric_rows = continuous_rows<Ein>(n, c.dim / 2 + 1, c.rows, seed + 1);
  const view<const Ein, 2> metric = separate_metric ? view<const Ein, 2>(metric_rows.rows) : view<const Ein, 2>(rows.rows);
  std::vector<float> sizes;
  ref::carried carried;
  if (carry_sizes)
    for (index_t i = 0; i < n; ++i) {
      sizes.push_back(static_cast<float>(1 + (i * 7) % 4));
      carried.sizes.push_back(sizes.back());
    }
  merge_inputs<Ein> in{};
  in.grid = c.grid;
  in.tokens = rows.rows;
  if (separate_metric) in.metric = metric;
  if (carry_sizes) in.sizes = make_view<const float>(sizes.data(), n);

  const index_t kept = retained_count(p, problem{c.grid, c.dim});
  REQUIRE(kept == expected_kept(n, p.r, p.protect));

  // The matching: each partner is a best one and each similarity the best, up to rounding.
  const match_buffers m = run_match(p.protect, in, 1);
  const ref::matching want = ref::match(metric, p.protect);
  for (std::size_t k = 0; k < m.partner.size(); ++k) {
    INFO("A token " << k);
    if (want.partner[k] < 0) {
      CHECK(m.partner[k] == -1);
      CHECK(m.similarity[k] == -std::numeric_limits<float>::infinity());
      continue;
    }
    const double best = want.similarity[k];
    const double chosen = ref::cosine(metric, 2 * static_cast<index_t>(k), 2 * m.partner[k] + 1);
    CHECK(2 * m.partner[k] + 1 >= p.protect);
    CHECK(best - chosen <= rounding_slack);
    CHECK(std::abs(m.similarity[k] - best) <= rounding_slack);
  }

  // Every output, from the backend's own decisions (ranked by its fp32 similarities).
  const merge_buffers<Eout> got = run_tome<Ein, Eout>(p, in, c.dim, 1);
  const ref::tome_result expect = ref::merge_from(p, c.grid, view<const Ein, 2>(rows.rows), carried,
                                                  ref::rank_candidates(m.similarity, p.protect), m.partner);
  CHECK(got.source == expect.source);
  CHECK(got.positions == expect.positions);
  CHECK(got.assign == expect.assign);
  CHECK(std::vector<double>(got.sizes.begin(), got.sizes.end()) == expect.sizes);
  CHECK(row_mismatches(got.tokens, expect.tokens) == 0);

  // Bit-identical for every split, with or without a given matching (itself split).
  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_tome<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
    const match_buffers split = run_match(p.protect, in, nth);
    CHECK(split.partner == m.partner);
    CHECK(std::memcmp(split.similarity.data(), m.similarity.data(), m.similarity.size() * sizeof(float)) == 0);
    CHECK(run_tome<Ein, Eout>(p, in, c.dim, nth, &split).same_bits(got));
  }

  // Invariants: sizes add up; the size-weighted sum of the outputs is the sum of the inputs.
  const double total = carry_sizes ? std::accumulate(sizes.begin(), sizes.end(), 0.0) : static_cast<double>(n);
  CHECK(std::accumulate(got.sizes.begin(), got.sizes.end(), 0.0) == total);
  for (index_t col = 0; col < c.dim; ++col) {
    double in_sum = 0, in_abs = 0, out_sum = 0;
    for (index_t i = 0; i < n; ++i) {
      const double w = carry_sizes ? sizes[static_cast<std::size_t>(i)] : 1.0;
      in_sum += w * to_float(rows.rows(i, col));
      in_abs += w * std::abs(to_float(rows.rows(i, col)));
    }
    for (index_t q = 0; q < kept; ++q)
      out_sum += got.sizes[static_cast<std::size_t>(q)] * to_float(got.tokens[static_cast<std::size_t>(q * c.dim + col)]);
    CHECK(std::abs(out_sum - in_sum) <= (1e-5 + output_eps<Eout>()) * in_abs);
  }

  // unmerge∘merge: every original slot gets its group's size-weighted mean.
  std::vector<Eout> back(static_cast<std::size_t>(n * c.dim));
  const unmerge_inputs<Eout> un{make_view<const Eout>(got.tokens.data(), kept, c.dim),
                                make_view<const std::int64_t>(got.assign.data(), n)};
  REQUIRE(apply(cpu{}, unmerge{}, un, unmerge_outputs<Eout>{make_view(back.data(), n, c.dim)}) == status::ok);
  std::size_t wrong = 0;
  for (index_t i = 0; i < n; ++i) {
    const std::int64_t q = got.assign[static_cast<std::size_t>(i)];
    for (index_t col = 0; col < c.dim; ++col) {
      double sum = 0, weight = 0;
      for (index_t t = 0; t < n; ++t)
        if (got.assign[static_cast<std::size_t>(t)] == q) {
          const double w = carry_sizes ? sizes[static_cast<std::size_t>(t)] : 1.0;
          sum += w * to_float(rows.rows(t, col));
          weight += w;
        }
      const Eout v = back[static_cast<std::size_t>(i * c.dim + col)];
      wrong += bits_of(v) != bits_of(got.tokens[static_cast<std::size_t>(q * c.dim + col)]);
      wrong += !(std::abs(to_float(v) - sum / weight) <= 1e-5 + output_eps<Eout>() * std::abs(sum / weight));
    }
  }
  CHECK(wrong == 0);
}

/// The policies every case runs: a quarter merged, with and without protection, clamped, one.
std::vector<tome> policies_for(index_t n) {
  return {tome{n / 4, 0, merge_order::original}, tome{n / 4, 1, merge_order::original},
          tome{n, 2, merge_order::by_position}, tome{1, 0, merge_order::by_position},
          tome{n / 3, 5, merge_order::original}};
}

}  // namespace

TEST_CASE("tome matches the oracle on the case table", "[tome]") {
  for (const shape_case& c : shape_cases()) {
    int variant = 0;
    for (const tome& p : policies_for(c.grid.tokens())) {
      INFO(c.name << " r " << p.r << " protect " << p.protect
                  << (p.order == merge_order::original ? " original" : " by_position"));
      const bool metric = variant % 2 == 0, sizes = variant % 3 == 1;
      check_against_oracle<float, float>(p, c, metric, sizes);
      check_against_oracle<bf16, bf16>(p, c, !metric, sizes);
      check_against_oracle<f16, float>(p, c, metric, !sizes);
      if (variant == 0) check_against_oracle<f16, f16>(p, c, !metric, sizes);
      ++variant;
    }
  }
}

TEST_CASE("tome: f16 rows merge as fp32 rows of the same values, bit for bit", "[tome]") {
  // The documented contract: fp32 arithmetic from exact conversions (where the build has x86's
  // conversion instruction, with it: it returns a signalling NaN quiet, as the first fp32
  // operation on it does), in the order fp32 rows are summed in. So the similarities, the
  // matching and the merged fp32 rows have the fp32 bits, with subnormal values and a
  // signalling NaN, whose payload reaches the merged row, among the inputs.
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens(), last = c.dim - 1;
    token_matrix<f16> half = continuous_rows<f16>(n, c.dim, c.rows, 19 + static_cast<std::uint64_t>(n));
    if (n > 3) {
      half.rows(1, 0).bits = 0x0001;
      half.rows(1, last).bits = 0x83FF;
      half.rows(n - 2, last).bits = 0x7C01;
    }
    const token_matrix<float> full = widened(half, c.rows);
    merge_inputs<f16> in_half{};
    merge_inputs<float> in_full{};
    in_half.grid = in_full.grid = c.grid;
    in_half.tokens = half.rows;
    in_full.tokens = full.rows;
    for (const tome& p : policies_for(n)) {
      INFO(c.name << " r " << p.r << " protect " << p.protect);
      const match_buffers a = run_match(p.protect, in_half, 2), b = run_match(p.protect, in_full, 2);
      CHECK(a.partner == b.partner);
      CHECK(std::memcmp(a.similarity.data(), b.similarity.data(), a.similarity.size() * sizeof(float)) == 0);
      CHECK(run_tome<f16, float>(p, in_half, c.dim, 2).same_bits(run_tome<float, float>(p, in_full, c.dim, 2)));
    }
  }
}

/// The dot product as the similarity product defines it: a chain of multiply-adds in k order
/// from 0, each rounded once where the build's ISA has FMA, else the product and the sum each.
template <class E>
float chained_dot(const view<const E, 2>& a, index_t i, const view<const E, 2>& b, index_t j) {
  float acc = 0.0f;
  for (index_t c = 0; c < a.extent(1); ++c) {
    acc = detail::multiply_add<compile_time_arch>(to_float(a(i, c)), to_float(b(j, c)), acc);
  }
  return acc;
}

template <class E>
void check_blocking(layout how) {
  // 1500 tokens of 300 values: A and B each span two blocks of rows, the dim three blocks of k.
  const index_t n = 1500, dim = 300;
  const token_matrix<E> rows = continuous_rows<E>(n, dim, how, 21);
  const view<const E, 2> v = rows.rows;
  const view<const E, 2> a(&v(0, 0), {n / 2, dim}, {2 * v.stride(0), v.stride(1)});  // even rows
  const view<const E, 2> b(&v(1, 0), {n / 2, dim}, {2 * v.stride(0), v.stride(1)});  // odd rows
  detail::arena counter;
  (void)detail::product_scratch::carve<compile_time_arch>(counter, n / 2, n / 2);
  host_workspace ws(counter.used());
  detail::arena carver(ws.get());
  const detail::product_scratch scratch = detail::product_scratch::carve<compile_time_arch>(carver, n / 2, n / 2);
  std::size_t wrong = 0, visited = 0;
  std::vector<index_t> next(static_cast<std::size_t>(n / 2), 0);  // each row's runs in ascending j
  bool ascending = true;
  detail::cross_dots<compile_time_arch>(a, b, scratch, [&](index_t i, index_t j, const float* dots, index_t count) {
    ascending &= j == next[static_cast<std::size_t>(i)];
    next[static_cast<std::size_t>(i)] = j + count;
    visited += static_cast<std::size_t>(count);
    if (i % 29 == 0)
      for (index_t c = 0; c < count; ++c)
        wrong += detail::float_bits(dots[c]) != detail::float_bits(chained_dot(a, i, b, j + c));
  });
  CHECK(visited == static_cast<std::size_t>(n / 2 * n / 2));
  CHECK(ascending);
  CHECK(std::all_of(next.begin(), next.end(), [&](index_t j) { return j == n / 2; }));
  CHECK(wrong == 0);

  // tome_match over those blocks: the same bits however the A tokens are split.
  merge_inputs<E> in{};
  in.grid = sequence_grid(n);
  in.tokens = rows.rows;
  const match_buffers one = run_match(0, in, 1), three = run_match(0, in, 3);
  CHECK(one.partner == three.partner);
  CHECK(std::memcmp(one.similarity.data(), three.similarity.data(), one.similarity.size() * sizeof(float)) == 0);
}

TEST_CASE("tome: a similarity has the same bits whatever the blocking", "[tome]") {
  check_blocking<float>(layout::contiguous);
  check_blocking<bf16>(layout::strided);
  check_blocking<f16>(layout::reversed);
}

TEST_CASE("tome: r = 0, or nothing left to merge, returns the input unchanged", "[tome]") {
  const float x[5 * 2] = {1, 0, 2, 0, 3, 0, 4, 0, 5, 0};
  const float sizes[5] = {1, 2, 3, 4, 5};
  merge_inputs<float> in{};
  in.grid = sequence_grid(5);
  in.tokens = make_view(x, 5, 2);
  in.sizes = make_view(sizes, 5);
  for (const tome& p : {tome{0, 0}, tome{3, 4}, tome{3, 5}, tome{3, 9, merge_order::by_position}}) {
    INFO("r " << p.r << " protect " << p.protect);
    const merge_buffers<float> got = run_tome<float, float>(p, in, 2, 2);
    CHECK(got.kept == 5);
    CHECK(got.source == std::vector<std::int64_t>{0, 1, 2, 3, 4});
    CHECK(got.assign == std::vector<std::int64_t>{0, 1, 2, 3, 4});
    CHECK(got.sizes == std::vector<float>{1, 2, 3, 4, 5});
    CHECK(got.tokens == std::vector<float>(x, x + 10));
  }
  // N = 1 and N = 2 with a class token: nothing to merge either.
  CHECK(retained_count(tome{4, 0}, problem{sequence_grid(1), 2}) == 1);
  CHECK(retained_count(tome{4, 1}, problem{sequence_grid(2), 2}) == 2);
  CHECK(retained_count(tome{4, 0}, problem{sequence_grid(2), 2}) == 1);
}

TEST_CASE("tome: r is clamped to (N - protect) / 2, for odd and even N", "[tome]") {
  for (index_t n : {2, 3, 4, 5, 9, 10, 197})
    for (index_t protect : {0, 1, 2, 3})
      for (index_t r : {index_t{1}, index_t{2}, n / 4, n / 2, n, index_t{1000}}) {
        INFO("n " << n << " protect " << protect << " r " << r);
        CHECK(retained_count(tome{r, protect}, problem{sequence_grid(n), 4}) == expected_kept(n, r, protect));
        CHECK(can_implement(tome{r, protect}, problem{sequence_grid(n), 4}) == status::ok);
      }
  CHECK(retained_count(tome{49, 1}, problem{sequence_grid(197), 64}) == 148);  // ToMe's ViT-B, r = 49
  CHECK(effective_r(tome{100, 1}, 197) == 98);
}

TEST_CASE("tome: output order with a class token, a distillation token, and by position", "[tome]") {
  // Tokens 0 … 7 on a line: A = 0, 2, 4, 6 and B = 1, 3, 5, 7. Token 4 is nearest 5 and token 6
  // nearest 7 (same direction), token 2 is a little off 3.
  const float x[8 * 2] = {1, 0, 0, 1, 1, 1, 1, 1.3f, 1, -1, 1, -1, 1, 3, 1, 3.1f};
  merge_inputs<float> in{};
  in.grid = sequence_grid(8);
  in.tokens = make_view(x, 8, 2);
  // class_token=True, r = 2: 4 → 5 and 6 → 7 (cosine 1 and ~1) merge; unm = [0, 2] ascending.
  const merge_buffers<float> cls = run_tome<float, float>(tome{2, 1}, in, 2, 1);
  CHECK(cls.source == std::vector<std::int64_t>{0, 2, 1, 3, 5, 7});
  CHECK(cls.assign == std::vector<std::int64_t>{0, 2, 1, 3, 4, 4, 5, 5});
  CHECK(cls.sizes == std::vector<float>{1, 1, 1, 1, 2, 2});
  CHECK(cls.tokens[8] == 1.0f);
  CHECK(cls.tokens[9] == -1.0f);
  // class + distillation token: [unm[0], dst[0], unm[1:], dst[1:]].
  const merge_buffers<float> distill = run_tome<float, float>(tome{2, 2}, in, 2, 1);
  CHECK(distill.source == std::vector<std::int64_t>{0, 1, 2, 3, 5, 7});
  // No protection, r = 1: the most similar pair merges (4 → 5), unm stays in similarity order.
  const merge_buffers<float> plain = run_tome<float, float>(tome{1, 0}, in, 2, 1);
  CHECK(plain.source.front() == 6);
  CHECK(plain.source.size() == 7);
  const merge_buffers<float> sorted = run_tome<float, float>(tome{1, 0, merge_order::by_position}, in, 2, 3);
  CHECK(sorted.source == std::vector<std::int64_t>{0, 1, 2, 3, 5, 6, 7});
  CHECK(sorted.assign == std::vector<std::int64_t>{0, 1, 2, 3, 4, 4, 5, 6});
}

TEST_CASE("tome: exact duplicates tie to the lower B token and the lower A token", "[tome]") {
  std::vector<float> x(12 * 3);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 3) - 0.5f;  // 12 equal rows
  merge_inputs<float> in{};
  in.grid = sequence_grid(12);
  in.tokens = make_view<const float>(x.data(), 12, 3);
  const match_buffers m = run_match(1, in, 2);
  CHECK(m.partner == std::vector<std::int64_t>{-1, 0, 0, 0, 0, 0});
  const match_buffers m3 = run_match(3, in, 1);
  CHECK(m3.partner == std::vector<std::int64_t>{-1, -1, 1, 1, 1, 1});
  // r = 3 with a class token: A tokens 2, 4, 6 (k = 1, 2, 3) merge into token 1.
  const merge_buffers<float> got = run_tome<float, float>(tome{3, 1}, in, 3, 2);
  CHECK(got.source == std::vector<std::int64_t>{0, 8, 10, 1, 3, 5, 7, 9, 11});
  CHECK(got.sizes == std::vector<float>{1, 1, 1, 4, 1, 1, 1, 1, 1});
  CHECK(got.assign == std::vector<std::int64_t>{0, 3, 3, 4, 3, 5, 3, 6, 1, 7, 2, 8});

  // 300 equal tokens: B spans many register tiles and, with 650 columns, the sums span k-blocks;
  // every A token still picks the lowest B token, and the lowest A tokens merge.
  std::vector<float> many(300 * 650);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<float>(i % 650 % 7) - 3.0f;
  merge_inputs<float> big{};
  big.grid = sequence_grid(300);
  big.tokens = make_view<const float>(many.data(), 300, 650);
  const match_buffers mb = run_match(2, big, 3);
  CHECK(mb.partner[0] == -1);
  CHECK(std::all_of(mb.partner.begin() + 1, mb.partner.end(), [](std::int64_t j) { return j == 1; }));
  const merge_buffers<float> merged = run_tome<float, float>(tome{100, 2}, big, 650, 2);
  for (index_t k = 1; k <= 100; ++k) CHECK(merged.assign[static_cast<std::size_t>(2 * k)] == merged.assign[3]);
  CHECK(merged.sizes[static_cast<std::size_t>(merged.assign[3])] == 101.0f);  // token 3 and 100 more
}

TEST_CASE("tome: zero rows have similarity 0, NaN rows rank last, no NaN reaches an index", "[tome]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  {
    // Token 2 is a zero row: its similarity is 0 to everything. Token 0 is opposite to both B
    // tokens, so the zero row outranks it.
    const float x[4 * 2] = {-1, -1, 1, 1, 0, 0, 1, 0.9f};
    merge_inputs<float> in{};
    in.grid = sequence_grid(4);
    in.tokens = make_view(x, 4, 2);
    const match_buffers m = run_match(0, in, 1);
    CHECK(m.similarity[1] == 0.0f);
    CHECK(m.partner == std::vector<std::int64_t>{1, 0});
    const merge_buffers<float> got = run_tome<float, float>(tome{1, 0}, in, 2, 1);
    CHECK(got.source == std::vector<std::int64_t>{0, 1, 3});
    CHECK(got.assign == std::vector<std::int64_t>{0, 1, 1, 2});
  }
  {
    // A NaN in A token 2's metric: its similarities are NaN, it ranks last and, when r reaches it,
    // merges into the lowest B token. A NaN in B token 5: no A token picks it.
    const float x[6 * 2] = {1, 0, 1, 0.1f, nan, 1, 0.2f, 1, 1, 0.5f, 1, nan};
    merge_inputs<float> in{};
    in.grid = sequence_grid(6);
    in.tokens = make_view(x, 6, 2);
    const match_buffers m = run_match(0, in, 1);
    CHECK(std::isnan(m.similarity[1]));
    CHECK(m.partner == std::vector<std::int64_t>{0, 0, 0});
    const merge_buffers<float> one = run_tome<float, float>(tome{1, 0}, in, 2, 1);
    CHECK(one.source == std::vector<std::int64_t>{4, 2, 1, 3, 5});
    const merge_buffers<float> all = run_tome<float, float>(tome{3, 0}, in, 2, 1);
    CHECK(all.assign == std::vector<std::int64_t>{0, 0, 0, 1, 0, 2});
    CHECK(all.sizes == std::vector<float>{4, 1, 1});
  }
}

TEST_CASE("tome: two chained applications carry sizes, source and positions", "[tome]") {
  const token_grid grid = image_grid(6, 6);
  const index_t n0 = 36, dim = 5;
  const token_matrix<float> rows = continuous_rows<float>(n0, dim, layout::contiguous, 77);
  // Step 1: the tokens are their own metric, r = 10 → 26 tokens.
  merge_inputs<float> in1{};
  in1.grid = grid;
  in1.tokens = rows.rows;
  const tome p1{10, 1};
  const merge_buffers<float> s1 = run_tome<float, float>(p1, in1, dim, 2);
  REQUIRE(s1.kept == 26);
  // Step 2 on step 1's output: sizes, source and positions carried, r = 8 → 18 tokens.
  merge_inputs<float> in2{};
  in2.grid = sequence_grid(s1.kept);
  in2.tokens = make_view<const float>(s1.tokens.data(), s1.kept, dim);
  in2.sizes = make_view<const float>(s1.sizes.data(), s1.kept);
  in2.source = make_view<const std::int64_t>(s1.source.data(), s1.kept);
  in2.positions = make_view<const std::int32_t>(s1.positions.data(), s1.kept, 3);
  const tome p2{8, 1};
  const merge_buffers<float> s2 = run_tome<float, float>(p2, in2, dim, 3);
  REQUIRE(s2.kept == 18);

  // The oracle run twice in double, the second on the first's carried outputs.
  const ref::tome_result r1 = ref::tome_all(p1, grid, view<const float, 2>(rows.rows), view<const float, 2>(rows.rows));
  CHECK(r1.assign == s1.assign);
  ref::carried carried{r1.sizes, r1.source, r1.positions};
  std::vector<float> o1(s1.tokens);  // step 1's fp32 rows: the metric and rows of step 2
  const ref::tome_result r2 = ref::tome_all(p2, in2.grid, view<const float, 2>(make_view<const float>(o1.data(), s1.kept, dim)),
                                            view<const float, 2>(make_view<const float>(o1.data(), s1.kept, dim)), carried);
  CHECK(r2.assign == s2.assign);
  CHECK(r2.source == s2.source);
  CHECK(r2.positions == s2.positions);
  CHECK(std::vector<double>(s2.sizes.begin(), s2.sizes.end()) == r2.sizes);

  // The composed assign maps every original to its final slot; each final row is the plain mean
  // of its originals, its size their count, its source one of them with that one's position.
  std::vector<std::int64_t> total(static_cast<std::size_t>(n0));
  REQUIRE(compose_assign(make_view<const std::int64_t>(s1.assign.data(), n0),
                         make_view<const std::int64_t>(s2.assign.data(), s1.kept), make_view(total.data(), n0)) ==
          status::ok);
  for (index_t q = 0; q < s2.kept; ++q) {
    INFO("final slot " << q);
    index_t count = 0;
    std::vector<double> mean(static_cast<std::size_t>(dim), 0.0);
    bool source_in_group = false;
    for (index_t i = 0; i < n0; ++i) {
      if (total[static_cast<std::size_t>(i)] != q) continue;
      ++count;
      source_in_group |= s2.source[static_cast<std::size_t>(q)] == i;
      for (index_t c = 0; c < dim; ++c) mean[static_cast<std::size_t>(c)] += rows.rows(i, c);
    }
    CHECK(s2.sizes[static_cast<std::size_t>(q)] == static_cast<float>(count));
    CHECK(source_in_group);
    const token_position at = grid.position(s2.source[static_cast<std::size_t>(q)]);
    CHECK(s2.positions[static_cast<std::size_t>(3 * q)] == at.t);
    CHECK(s2.positions[static_cast<std::size_t>(3 * q + 1)] == at.h);
    CHECK(s2.positions[static_cast<std::size_t>(3 * q + 2)] == at.w);
    for (index_t c = 0; c < dim; ++c)
      CHECK(std::abs(s2.tokens[static_cast<std::size_t>(q * dim + c)] - mean[static_cast<std::size_t>(c)] / static_cast<double>(count)) <= 1e-5);
  }

  // Proportional attention: log of the sizes, 0 for unmerged tokens.
  std::vector<float> bias(static_cast<std::size_t>(s2.kept));
  REQUIRE(log_size_bias(make_view<const float>(s2.sizes.data(), s2.kept), make_view(bias.data(), s2.kept)) == status::ok);
  for (index_t q = 0; q < s2.kept; ++q)
    CHECK(bias[static_cast<std::size_t>(q)] == std::log(s2.sizes[static_cast<std::size_t>(q)]));
}

TEST_CASE("compose_assign, log_size_bias and unmerge: statuses, nothing written on failure", "[tome][bad-input]") {
  const std::int64_t first[4] = {0, 2, -1, 1};
  const std::int64_t second[3] = {1, 0, 0};
  std::int64_t total[4] = {9, 9, 9, 9};
  REQUIRE(compose_assign(make_view(first, 4), make_view(second, 3), make_view(total, 4)) == status::ok);
  CHECK(std::vector<std::int64_t>(total, total + 4) == std::vector<std::int64_t>{1, 0, -1, 0});
  std::int64_t untouched[4] = {9, 9, 9, 9};
  CHECK(compose_assign(make_view(first, 4), make_view(second, 2), make_view(untouched, 4)) == status::index_out_of_range);
  CHECK(compose_assign(make_view(first, 4), make_view(second, 3), make_view(untouched, 3)) == status::shape_mismatch);
  CHECK(compose_assign(view<const std::int64_t, 1>{}, make_view(second, 3), make_view(untouched, 4)) == status::empty_input);
  CHECK(compose_assign(make_view(first, 4), make_view(second, 3), make_view(const_cast<std::int64_t*>(first), 4)) ==
        status::aliasing);
  CHECK(std::vector<std::int64_t>(untouched, untouched + 4) == std::vector<std::int64_t>(4, 9));

  const float sizes[3] = {1, 2, 4};
  float bias[3] = {7, 7, 7};
  CHECK(log_size_bias(make_view(sizes, 3), make_view(bias, 2)) == status::shape_mismatch);
  CHECK(log_size_bias(make_view(sizes, 3), make_view(const_cast<float*>(sizes), 3)) == status::aliasing);
  CHECK(log_size_bias(view<const float, 1>{}, make_view(bias, 3)) == status::empty_input);
  CHECK(std::vector<float>(bias, bias + 3) == std::vector<float>(3, 7.0f));

  const float merged[2 * 2] = {1, 2, 3, 4};
  const std::int64_t assign[3] = {1, 0, 2};
  float out[3 * 2] = {5, 5, 5, 5, 5, 5};
  const unmerge_inputs<float> in{make_view(merged, 2, 2), make_view(assign, 3)};
  CHECK(apply(cpu{}, unmerge{}, in, unmerge_outputs<float>{make_view(out, 3, 2)}) == status::index_out_of_range);
  CHECK(apply(cpu{}, unmerge{}, in, unmerge_outputs<float>{make_view(out, 2, 2)}) == status::shape_mismatch);
  CHECK(apply(cpu{}, unmerge{}, unmerge_inputs<float>{make_view(merged, 2, 2), {}},
              unmerge_outputs<float>{make_view(out, 3, 2)}) == status::empty_input);
  CHECK(apply(cpu{2, 2}, unmerge{}, in, unmerge_outputs<float>{make_view(out, 3, 2)}) == status::invalid_exec);
  CHECK(std::vector<float>(out, out + 6) == std::vector<float>(6, 5.0f));
  const std::int64_t good[3] = {1, 0, 1};
  REQUIRE(apply(cpu{}, unmerge{}, unmerge_inputs<float>{make_view(merged, 2, 2), make_view(good, 3)},
                unmerge_outputs<float>{make_view(out, 3, 2)}) == status::ok);
  CHECK(std::vector<float>(out, out + 6) == std::vector<float>{3, 4, 1, 2, 3, 4});
}

TEST_CASE("tome: bad input leaves every output untouched", "[tome][bad-input]") {
  const token_matrix<float> rows = continuous_rows<float>(16, 8, layout::contiguous, 4);
  std::vector<float> sizes(16, 1.0f);
  merge_inputs<float> in{};
  in.grid = sequence_grid(16);
  in.tokens = rows.rows;
  const tome p{4, 1};
  const problem prob{in.grid, 8};
  merge_buffers<float> out(12, 16, 8);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{}, tome{-1, 0}, in, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(apply(cpu{}, tome{4, -1}, in, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(can_implement(tome{-1, 0}, prob) == status::invalid_parameter);
  CHECK(retained_count(tome{-1, 0}, prob) == 0);
  CHECK(can_implement(tome{4, 0}, problem{sequence_grid(0), 8}) == status::empty_input);
  CHECK(can_implement(tome{4, 0}, problem{token_grid{1, -1, 4}, 8}) == status::shape_mismatch);
  CHECK(can_implement(tome_match{-2}, prob) == status::invalid_parameter);

  merge_inputs<float> bad = in;
  bad.grid = sequence_grid(17);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad = in;
  bad.metric = view<const float, 2>(&rows.rows(0, 0), {16, 0}, {8, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::empty_input);
  bad = in;
  bad.metric = view<const float, 2>(nullptr, {16, 4}, {4, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad = in;
  bad.sizes = make_view<const float>(sizes.data(), 15);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  const std::vector<float> similarity(8, 0.5f);
  std::vector<std::int64_t> partner(8, 3);
  bad = in;
  bad.similarity = make_view<const float>(similarity.data(), 8);  // partner missing
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad.partner = make_view<const std::int64_t>(partner.data(), 8);
  partner[5] = 8;  // B has 8 tokens: 0 … 7
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::index_out_of_range);
  partner[5] = 3;
  partner[0] = 99;  // a protected A token's partner is not read
  merge_buffers<float> fine(12, 16, 8);
  CHECK(apply(cpu{}, p, bad, fine.outputs(), ws.get()) == status::ok);

  for (const float w : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    sizes[3] = w;
    bad = in;
    bad.sizes = make_view<const float>(sizes.data(), 16);
    CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::invalid_parameter);
  }

  merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 11, 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.assign = make_view(out.assign.data(), 12);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), 12);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  std::vector<float> copy(rows.storage.begin(), rows.storage.end());
  merge_inputs<float> self = in;
  self.tokens = make_view<const float>(copy.data(), 16, 8);
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), 12, 8);  // in place
  CHECK(apply(cpu{}, p, self, wrong, ws.get()) == status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());

  // tome_match: outputs required and of a_tokens(N) entries.
  std::vector<float> sim(8, -5.0f);
  std::vector<std::int64_t> part(8, -5);
  host_workspace mws(workspace_bytes(cpu{}, tome_match{1}, prob));
  CHECK(apply(cpu{}, tome_match{1}, in, match_outputs<>{make_view(sim.data(), 7), make_view(part.data(), 8)}, mws.get()) ==
        status::shape_mismatch);
  CHECK(apply(cpu{}, tome_match{1}, in, match_outputs<>{make_view(sim.data(), 8), {}}, mws.get()) == status::shape_mismatch);
  std::vector<std::int64_t> both(8, -5);  // similarity and partner in one buffer
  CHECK(apply(cpu{}, tome_match{1}, in,
              match_outputs<>{make_view(reinterpret_cast<float*>(both.data()), 8), make_view(both.data(), 8)},
              mws.get()) == status::aliasing);
  CHECK(apply(cpu{}, tome_match{1}, in, match_outputs<>{make_view(sim.data(), 8), make_view(part.data(), 8)},
              workspace{}) == status::workspace_too_small);
  CHECK(std::all_of(sim.begin(), sim.end(), [](float s) { return s == -5.0f; }));
  CHECK(std::all_of(part.begin(), part.end(), [](std::int64_t s) { return s == -5; }));
}
