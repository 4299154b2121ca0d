// tests/cpu/test_dymu.cpp — dymu and DToMe's threshold finding on CPU: dymu against tome{r} bit
// for bit where θ lets exactly r A tokens pass (the shared case table, every element type,
// thread split and output order), its count against the oracle at every threshold including
// ties, NaN similarities, the calibration functions against their oracle, virtual unmerging, and
// bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/dymu.hpp>

#include "reference/dymu_ref.hpp"
#include "reference/tome_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float inf = std::numeric_limits<float>::infinity();

/// How many case-table runs compared with tome, and how many a tie at the boundary skipped.
int compared = 0, skipped = 0;

/// tome_match's similarities and partners, run as `nth` shares.
struct match_buffers {
  std::vector<float> similarity;
  std::vector<std::int64_t> partner;
};

template <class E>
match_buffers run_match(index_t protect, const merge_inputs<E>& in, int nth) {
  const index_t a = a_tokens(in.grid.tokens());
  match_buffers m{std::vector<float>(static_cast<std::size_t>(a)), std::vector<std::int64_t>(static_cast<std::size_t>(a))};
  const tome_match p{protect};
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, problem{in.grid, 1}));
  const match_outputs<> out{make_view(m.similarity.data(), a), make_view(m.partner.data(), a)};
  for (int ith = 0; ith < nth; ++ith) REQUIRE(apply(cpu{ith, nth}, p, in, out, ws.get()) == status::ok);
  return m;
}

/// dymu's outputs: merge buffers sized by the bound N, and the count.
template <class E>
struct dymu_buffers : merge_buffers<E> {
  std::int64_t count = -99;
  dymu_buffers(index_t n, index_t dim) : merge_buffers<E>(n, n, dim) {}
  counted_merge_outputs<E> outputs() {
    counted_merge_outputs<E> o = merge_buffers<E>::template outputs<counted_merge_outputs<E>>();
    o.count = make_view(&count, 1);
    return o;
  }
  bool untouched() const { return count == -99 && merge_buffers<E>::untouched(); }
};

/// dymu run as `nth` shares in reverse order; with `given`, on that matching.
template <class Ein, class Eout>
dymu_buffers<Eout> run_dymu(const dymu& p, merge_inputs<Ein> in, index_t dim, int nth,
                            const match_buffers* given = nullptr) {
  const problem prob{in.grid, dim};
  REQUIRE(retained_count(p, prob) == in.grid.tokens());
  dymu_buffers<Eout> out(in.grid.tokens(), dim);
  if (given) {
    const index_t a = a_tokens(in.grid.tokens());
    in.similarity = make_view(given->similarity.data(), a);
    in.partner = make_view(given->partner.data(), a);
  }
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  CHECK(ws.bytes.size() == workspace_bytes(cpu{0, nth}, tome{1, p.protect}, prob));
  for (int ith = nth - 1; ith >= 0; --ith) REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

template <class Ein, class Eout>
merge_buffers<Eout> run_tome(const tome& p, const merge_inputs<Ein>& in, index_t dim) {
  const problem prob{in.grid, dim};
  merge_buffers<Eout> out(retained_count(p, prob), in.grid.tokens(), dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  REQUIRE(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// bits_of for the element types and the integer outputs alike.
template <class T>
std::uint64_t bits_of_any(T x) {
  if constexpr (std::is_integral_v<T>) return static_cast<std::uint64_t>(x);
  else return bits_of(x);
}

/// dymu's first `count` rows have tome's bits, every assign entry too, the rest is untouched.
template <class E>
bool same_as_tome(const dymu_buffers<E>& d, const merge_buffers<E>& t) {
  if (d.count != t.kept) return false;
  const std::size_t k = static_cast<std::size_t>(t.kept), dim = static_cast<std::size_t>(d.dim);
  const auto prefix_bits = [](const auto& x, const auto& y, std::size_t count) {
    return count == 0 || std::memcmp(x.data(), y.data(), count * sizeof(x[0])) == 0;
  };
  const auto rest = [](const auto& x, std::size_t from, auto sentinel) {
    return std::all_of(x.begin() + static_cast<std::ptrdiff_t>(from), x.end(), [&](auto v) { return bits_of_any(v) == bits_of_any(sentinel); });
  };
  return prefix_bits(d.tokens, t.tokens, k * dim) && prefix_bits(d.source, t.source, k) &&
         prefix_bits(d.positions, t.positions, 3 * k) && prefix_bits(d.sizes, t.sizes, k) && d.assign == t.assign &&
         rest(d.tokens, k * dim, from_float<E>(-3.5f)) && rest(d.source, k, std::int64_t{-12345}) &&
         rest(d.positions, 3 * k, std::int32_t{-777}) && rest(d.sizes, k, -1.0f);
}

/// dymu's outputs against tome{merged} where ToMe allows that many, else (every unprotected A
/// token merged, N − protect odd) against the oracle's merge of `merged` tokens on the library's
/// own matching: assign, source and sizes exact, rows within the output type's rounding.
template <class Ein, class Eout>
bool same_as_merge(const dymu_buffers<Eout>& d, index_t merged, index_t protect, merge_order order,
                   const merge_inputs<Ein>& in, index_t dim, const match_buffers& m) {
  const index_t n = in.grid.tokens();
  if (merged <= effective_r(tome{n, protect}, n))
    return same_as_tome(d, run_tome<Ein, Eout>(tome{merged, protect, order}, in, dim));
  ref::carried carried;
  if (in.sizes.data_handle() != nullptr)
    for (index_t i = 0; i < n; ++i) carried.sizes.push_back(in.sizes(i));
  const ref::tome_result want = ref::merge_from(tome{merged, protect, order}, in.grid, in.tokens, carried,
                                                ref::rank_candidates(m.similarity, protect), m.partner, merged);
  if (d.count != n - merged || d.assign != want.assign) return false;
  for (index_t q = 0; q < n - merged; ++q) {
    const std::size_t uq = static_cast<std::size_t>(q);
    if (d.source[uq] != want.source[uq] || static_cast<double>(d.sizes[uq]) != want.sizes[uq]) return false;
    for (index_t c = 0; c < dim; ++c) {
      const double got = to_float(d.tokens[static_cast<std::size_t>(q * dim + c)]);
      const double expected = want.tokens[static_cast<std::size_t>(q * dim + c)];
      if (!(std::fabs(got - expected) <= 1e-2 * std::max(1.0, std::fabs(expected)))) return false;
    }
  }
  return true;
}

/// The sorted unprotected similarities: descending, NaN last.
std::vector<float> ranked(const match_buffers& m, index_t protect) {
  std::vector<float> s;
  for (std::size_t k = 0; k < m.similarity.size(); ++k)
    if (2 * static_cast<index_t>(k) >= protect) s.push_back(m.similarity[k]);
  std::stable_sort(s.begin(), s.end(), [](float x, float y) {
    if (std::isnan(x) || std::isnan(y)) return !std::isnan(x) && std::isnan(y);
    return x > y;
  });
  return s;
}

/// A θ under which exactly `r` unprotected A tokens pass, or NaN when a tie between the r-th and
/// the (r+1)-th similarity makes that impossible: the (r+1)-th itself (strict >), or −inf when r
/// reaches every candidate.
float theta_for(const std::vector<float>& sorted, index_t r) {
  if (r >= static_cast<index_t>(sorted.size())) return -inf;
  const float next = sorted[static_cast<std::size_t>(r)];
  if (r > 0 && !(sorted[static_cast<std::size_t>(r - 1)] > next)) return std::numeric_limits<float>::quiet_NaN();
  return next;
}

template <class Ein, class Eout>
void check_against_tome(const shape_case& c, index_t r, index_t protect, merge_order order, bool separate_metric,
                        bool carry_sizes) {
  const index_t n = c.grid.tokens();
  const std::uint64_t seed = 31 + static_cast<std::uint64_t>(n * 5 + protect + r);
  const token_matrix<Ein> rows = continuous_rows<Ein>(n, c.dim, c.rows, seed);
  const token_matrix<Ein> metric = continuous_rows<Ein>(n, c.dim / 2 + 1, c.rows, seed + 1);
  std::vector<float> sizes;
  for (index_t i = 0; i < n; ++i) sizes.push_back(static_cast<float>(1 + (i * 5) % 3));
  merge_inputs<Ein> in{};
  in.grid = c.grid;
  in.tokens = rows.rows;
  if (separate_metric) in.metric = metric.rows;
  if (carry_sizes) in.sizes = make_view<const float>(sizes.data(), n);

  const match_buffers m = run_match(protect, in, 1);
  const std::vector<float> sorted = ranked(m, protect);
  const float theta = theta_for(sorted, r);
  if (std::isnan(theta)) {  // a tie at the boundary: no θ gives exactly r
    ++skipped;
    return;
  }
  ++compared;
  const dymu p{theta, protect, 0, order};
  const index_t merged = ref::dymu_merged(m.similarity, theta, n, protect, 0);
  const bool pairs = (n > protect ? (n - protect) / 2 : 0) > 0;  // else nothing merges
  CHECK(merged == (pairs ? std::min(r, static_cast<index_t>(sorted.size())) : 0));

  const dymu_buffers<Eout> got = run_dymu<Ein, Eout>(p, in, c.dim, 1);
  CHECK(got.count == n - merged);
  CHECK(same_as_merge<Ein, Eout>(got, merged, protect, order, in, c.dim, m));
  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_dymu<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
    const match_buffers split = run_match(protect, in, nth);
    const dymu_buffers<Eout> given = run_dymu<Ein, Eout>(p, in, c.dim, nth, &split);
    CHECK(given.same_bits(got));
    CHECK(given.count == got.count);
  }

  // max_r caps the count: θ = −inf passes every numeric candidate, max_r keeps the best.
  if (r > 1) {
    const dymu capped{-inf, protect, r / 2, order};
    const dymu_buffers<Eout> cap = run_dymu<Ein, Eout>(capped, in, c.dim, 2);
    const index_t r_cap = ref::dymu_merged(m.similarity, -inf, n, protect, r / 2);
    CHECK(r_cap == (pairs ? std::min(r / 2, static_cast<index_t>(sorted.size())) : 0));
    CHECK(same_as_merge<Ein, Eout>(cap, r_cap, protect, order, in, c.dim, m));
  }
}

}  // namespace

TEST_CASE("dymu equals tome{r} when θ lets exactly r A tokens pass, on the case table", "[dymu]") {
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    struct setting {
      index_t r, protect;
      merge_order order;
    };
    const setting settings[] = {{n / 4, 0, merge_order::original}, {n / 3, 1, merge_order::original},
                                {1, 0, merge_order::by_position}, {n, 2, merge_order::original},
                                {0, 0, merge_order::original}, {n / 5, 5, merge_order::by_position}};
    int variant = 0;
    for (const setting& s : settings) {
      INFO(c.name << " r " << s.r << " protect " << s.protect);
      const bool metric = variant % 2 == 0, sizes = variant % 3 == 1;
      check_against_tome<float, float>(c, s.r, s.protect, s.order, metric, sizes);
      check_against_tome<bf16, bf16>(c, s.r, s.protect, s.order, !metric, sizes);
      check_against_tome<f16, f16>(c, s.r, s.protect, s.order, metric, !sizes);
      if (variant == 0) check_against_tome<f16, float>(c, s.r, s.protect, s.order, !metric, sizes);
      ++variant;
    }
  }
  CHECK(compared > 100);
  CHECK(skipped * 20 <= compared);
}

TEST_CASE("dymu: the count follows the oracle at every threshold, strict at ties", "[dymu]") {
  const token_grid grid = image_grid(9, 9);
  const token_matrix<float> rows = continuous_rows<float>(81, 12, layout::contiguous, 5);
  merge_inputs<float> in{};
  in.grid = grid;
  in.tokens = rows.rows;
  for (index_t protect : {index_t{0}, index_t{1}, index_t{4}}) {
    const match_buffers m = run_match(protect, in, 1);
    std::vector<float> thetas = m.similarity;  // each similarity exactly: it does not pass itself
    for (float s : m.similarity) thetas.push_back(std::nextafter(s, -inf));
    thetas.insert(thetas.end(), {-inf, inf, -1.0f, 0.0f, 1.0f});
    for (float theta : thetas) {
      for (index_t max_r : {index_t{0}, index_t{3}}) {
        INFO("protect " << protect << " theta " << theta << " max_r " << max_r);
        const dymu p{theta, protect, max_r};
        const index_t merged = ref::dymu_merged(m.similarity, theta, 81, protect, max_r);
        const dymu_buffers<float> got = run_dymu<float, float>(p, in, 12, 1);
        CHECK(got.count == 81 - merged);
        CHECK(same_as_merge<float, float>(got, merged, protect, merge_order::original, in, 12, m));
      }
    }
  }
}

TEST_CASE("dymu: with N − protect odd every unprotected A token may merge, as the original", "[dymu]") {
  // DyMU's inference count is not clamped to (t − protected) // 2 (MikeWangWZHL/dymu,
  // batch_level_bipartite_soft_matching with specified_threshold): three equal tokens, A = {0, 2},
  // B = {1}, both A tokens pass and one token comes out, their mean; tome{} stops at one merge.
  const float x[3 * 2] = {1.0f, 2.0f, 1.0f, 2.0f, 1.0f, 2.0f};
  merge_inputs<float> three{};
  three.grid = sequence_grid(3);
  three.tokens = make_view<const float>(x, 3, 2);
  const dymu_buffers<float> one = run_dymu<float, float>(dymu{0.5f, 0, 0}, three, 2, 2);
  CHECK(one.count == 1);
  CHECK(one.assign == std::vector<std::int64_t>{0, 0, 0});
  CHECK(one.sizes[0] == 3.0f);
  CHECK((one.tokens[0] == 1.0f && one.tokens[1] == 2.0f));
  CHECK(run_tome<float, float>(tome{2, 0}, three, 2).kept == 2);

  // SigLIP's 27 × 27 without a class token: θ = −inf passes all 365 A tokens; 364 come out.
  const token_matrix<float> rows = continuous_rows<float>(729, 8, layout::contiguous, 3);
  merge_inputs<float> siglip{};
  siglip.grid = image_grid(27, 27);
  siglip.tokens = rows.rows;
  const dymu_buffers<float> all = run_dymu<float, float>(dymu{-inf, 0, 0}, siglip, 8, 3);
  CHECK(all.count == 729 - 365);
  CHECK(same_as_merge<float, float>(all, 365, 0, merge_order::original, siglip, 8, run_match(0, siglip, 1)));
  // max_r still caps it, and a class token leaves ToMe's room.
  CHECK(run_dymu<float, float>(dymu{-inf, 0, 100}, siglip, 8, 1).count == 729 - 100);
  CHECK(run_dymu<float, float>(dymu{-inf, 1, 0}, siglip, 8, 1).count == 729 - 364);
}

TEST_CASE("dymu: equal similarities all pass or none does; max_r keeps the lowest A tokens", "[dymu]") {
  std::vector<float> x(12 * 3);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 3) - 0.5f;  // 12 equal rows
  merge_inputs<float> in{};
  in.grid = sequence_grid(12);
  in.tokens = make_view<const float>(x.data(), 12, 3);
  const match_buffers m = run_match(1, in, 1);
  const float s = m.similarity[1];
  REQUIRE(std::all_of(m.similarity.begin() + 1, m.similarity.end(), [&](float v) { return v == s; }));
  CHECK(run_dymu<float, float>(dymu{s, 1}, in, 3, 2).count == 12);  // θ = s: none is above it
  const dymu_buffers<float> all = run_dymu<float, float>(dymu{std::nextafter(s, -inf), 1}, in, 3, 3);
  CHECK(all.count == 12 - 5);  // all 5 unprotected A tokens pass: ⌊(12 − 1) / 2⌋ = 5 merge
  CHECK(same_as_tome(all, run_tome<float, float>(tome{5, 1}, in, 3)));
  const dymu_buffers<float> two = run_dymu<float, float>(dymu{-inf, 1, 2}, in, 3, 2);
  CHECK(same_as_tome(two, run_tome<float, float>(tome{2, 1}, in, 3)));
  CHECK(two.assign == std::vector<std::int64_t>{0, 4, 4, 5, 4, 6, 1, 7, 2, 8, 3, 9});  // A tokens 2, 4 → token 1
}

TEST_CASE("dymu: NaN similarities never pass, even θ = −inf", "[dymu]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // A token 2 (k = 1) has a NaN in its metric: its similarities are NaN. B token 5 too.
  const float x[6 * 2] = {1, 0, 1, 0.1f, nan, 1, 0.2f, 1, 1, 0.5f, 1, nan};
  merge_inputs<float> in{};
  in.grid = sequence_grid(6);
  in.tokens = make_view(x, 6, 2);
  const match_buffers m = run_match(0, in, 1);
  REQUIRE(std::isnan(m.similarity[1]));
  const dymu_buffers<float> got = run_dymu<float, float>(dymu{-inf}, in, 2, 2);
  CHECK(got.count == 4);  // k = 0 and k = 2 merge; tome{3} would merge token 2 as well
  CHECK(same_as_tome(got, run_tome<float, float>(tome{2}, in, 2)));
  CHECK(got.assign[2] != got.assign[3]);

  // A given matching: NaN entries do not pass either.
  match_buffers given = m;
  given.similarity = {nan, 0.5f, nan};
  const dymu_buffers<float> g = run_dymu<float, float>(dymu{-1.0f}, in, 2, 1, &given);
  CHECK(g.count == 5);
  // Only k = 1 (token 2) passes. Slots: the unmerged A tokens in rank order, [0, 4] (NaN ties
  // by index), then B tokens 1, 3, 5; token 2 merged into its partner, token 1.
  CHECK(g.assign == std::vector<std::int64_t>{0, 2, 2, 3, 1, 4});
  // A protected A token never counts, whatever a given matching says about it.
  given.similarity = {0.9f, 0.5f, nan};
  CHECK(run_dymu<float, float>(dymu{-1.0f, 1}, in, 2, 1, &given).count == 5);
}

TEST_CASE("dymu: virtual unmerging copies each merged row back to every original slot", "[dymu]") {
  const token_matrix<float> rows = continuous_rows<float>(49, 8, layout::contiguous, 3);
  merge_inputs<float> in{};
  in.grid = image_grid(7, 7);
  in.tokens = rows.rows;
  const match_buffers m = run_match(0, in, 1);
  const dymu p{theta_for(ranked(m, 0), 10)};
  dymu_buffers<float> got = run_dymu<float, float>(p, in, 8, 2);
  REQUIRE(got.count == 39);
  std::vector<float> full(49 * 8);
  const unmerge_inputs<float> un{make_view<const float>(got.tokens.data(), got.count, 8),
                                 make_view<const std::int64_t>(got.assign.data(), 49)};
  REQUIRE(apply(cpu{}, unmerge{}, un, unmerge_outputs<float>{make_view(full.data(), 49, 8)}) == status::ok);
  for (index_t i = 0; i < 49; ++i) {
    const std::int64_t q = got.assign[static_cast<std::size_t>(i)];
    CHECK(std::memcmp(&full[static_cast<std::size_t>(i * 8)], &got.tokens[static_cast<std::size_t>(q * 8)], 8 * sizeof(float)) == 0);
  }
}

TEST_CASE("dymu_batch_threshold: the first unmerged edge of the batch, clamped at 0", "[dymu][calibration]") {
  std::uint64_t state = 7;
  const auto next = [&] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int>(state >> 33);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int trial = 0; trial < 60; ++trial) {
    const index_t images = 1 + trial % 4, a = 3 + (trial * 7) % 40;
    std::vector<std::vector<float>> best(static_cast<std::size_t>(images));
    std::vector<float> flat;
    for (auto& image : best) {
      for (index_t k = 0; k < a; ++k) {
        const int u = next() % 100;
        float s = static_cast<float>(next() % 2001 - 1000) / 1000.0f;
        if (trial % 3 == 0) s = static_cast<float>(next() % 5) * 0.25f - 0.5f;  // many ties
        if (u < 4) s = nan;
        if (u >= 4 && u < 8) s = -inf;
        if (k == 0 && trial % 2 == 0) s = -inf;  // a protected class token
        if (u == 9) s = -0.0f;
        image.push_back(s);
      }
      flat.insert(flat.end(), image.begin(), image.end());
    }
    for (index_t r = 0; r < a; ++r) {
      INFO("trial " << trial << " r " << r);
      float theta = -5.0f;
      REQUIRE(dymu_batch_threshold(make_view<const float>(flat.data(), images, a), r, theta) == status::ok);
      CHECK(static_cast<double>(theta) == ref::batch_threshold(best, r));
      CHECK(detail::float_bits(theta) != detail::float_bits(-0.0f));
    }
  }
  // A strided view (every other column) reads the same entries.
  const float wide[2 * 6] = {0.9f, 9, 0.2f, 9, 0.7f, 9, 0.4f, 9, 0.6f, 9, -0.3f, 9};
  float theta = 0;
  REQUIRE(dymu_batch_threshold(view<const float, 2>(wide, {2, 3}, {6, 2}), 1, theta) == status::ok);
  CHECK(theta == 0.6f);  // 0.9, 0.7 merged (r·images = 2); 0.6 is the first left
  REQUIRE(dymu_batch_threshold(view<const float, 2>(wide, {2, 3}, {6, 2}), 2, theta) == status::ok);
  CHECK(theta == 0.2f);

  // r ≥ a_tokens: every edge merges; the original takes the lowest edge (its index clamped to
  // the last), then clamps it to >= 0.
  const float row[3] = {0.9f, 0.2f, 0.7f};
  for (const index_t r : {3, 4, 1000}) {
    theta = -5;
    REQUIRE(dymu_batch_threshold(view<const float, 2>(row, {1, 3}, {3, 1}), r, theta) == status::ok);
    CHECK(theta == 0.2f);
    REQUIRE(dymu_batch_threshold(view<const float, 2>(wide, {2, 3}, {6, 2}), r, theta) == status::ok);
    CHECK(detail::float_bits(theta) == detail::float_bits(0.0f));  // -0.3 clamped
  }

  // Statuses; θ is left alone.
  theta = 42;
  CHECK(dymu_batch_threshold(view<const float, 2>(wide, {2, 3}, {6, 2}), -1, theta) == status::invalid_parameter);
  CHECK(dymu_batch_threshold(view<const float, 2>(nullptr, {2, 3}, {3, 1}), 1, theta) == status::null_pointer);
  CHECK(dymu_batch_threshold(view<const float, 2>(wide, {0, 3}, {3, 1}), 1, theta) == status::empty_input);
  CHECK(theta == 42);
}

TEST_CASE("dymu_batch_threshold on one image gives dymu the r of tome", "[dymu][calibration]") {
  const token_matrix<float> rows = continuous_rows<float>(576, 16, layout::contiguous, 8);
  merge_inputs<float> in{};
  in.grid = image_grid(24, 24);
  in.tokens = rows.rows;
  const match_buffers m = run_match(1, in, 1);
  const std::vector<float> sorted = ranked(m, 1);
  for (index_t r : {index_t{1}, index_t{20}, index_t{100}}) {
    INFO("r " << r);
    float theta = 0;
    REQUIRE(dymu_batch_threshold(make_view<const float>(m.similarity.data(), 1, a_tokens(576)), r, theta) == status::ok);
    REQUIRE(sorted[static_cast<std::size_t>(r)] >= 0.0f);
    REQUIRE(sorted[static_cast<std::size_t>(r - 1)] > sorted[static_cast<std::size_t>(r)]);
    CHECK(theta == sorted[static_cast<std::size_t>(r)]);
    CHECK(same_as_tome(run_dymu<float, float>(dymu{theta, 1}, in, 16, 1), run_tome<float, float>(tome{r, 1}, in, 16)));
  }
}

TEST_CASE("dymu_running_threshold: the running mean of the batch thresholds", "[dymu][calibration]") {
  CHECK(dymu_running_threshold(0.25f, 0, 0.75f) == 0.75f);
  CHECK(dymu_running_threshold(inf, 0, 0.5f) == 0.5f);
  CHECK(dymu_running_threshold(0.25f, 1, 0.75f) == 0.5f);
  CHECK(dymu_running_threshold(0.5f, 3, 0.9f) == (0.5f * 3.0f + 0.9f) / 4.0f);
  float theta = 0;
  double sum = 0;
  for (index_t n = 0; n < 200; ++n) {
    const float t = 0.5f + 0.25f * std::sin(static_cast<float>(n));
    theta = dymu_running_threshold(theta, n, t);
    sum += t;
  }
  CHECK(std::abs(theta - sum / 200) < 1e-5);
}

TEST_CASE("dymu: bad input leaves every output untouched", "[dymu][bad-input]") {
  const token_matrix<float> rows = continuous_rows<float>(16, 8, layout::contiguous, 4);
  std::vector<float> sizes(16, 1.0f);
  merge_inputs<float> in{};
  in.grid = sequence_grid(16);
  in.tokens = rows.rows;
  const dymu p{0.0f, 1};
  const problem prob{in.grid, 8};
  dymu_buffers<float> out(16, 8);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const dymu& bad : {dymu{nan}, dymu{0.5f, -1}, dymu{0.5f, 0, -1}}) {
    CHECK(apply(cpu{}, bad, in, out.outputs(), ws.get()) == status::invalid_parameter);
    CHECK(can_implement(bad, prob) == status::invalid_parameter);
    CHECK(retained_count(bad, prob) == 0);
    CHECK(workspace_bytes(cpu{}, bad, prob) == 0);
  }
  CHECK(can_implement(p, problem{sequence_grid(0), 8}) == status::empty_input);
  CHECK(can_implement(p, problem{token_grid{1, -1, 4}, 8}) == status::shape_mismatch);

  merge_inputs<float> bad = in;
  bad.grid = sequence_grid(17);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad = in;
  bad.metric = view<const float, 2>(nullptr, {16, 4}, {4, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  const std::vector<float> similarity(8, 0.5f);
  std::vector<std::int64_t> partner(8, 3);
  bad = in;
  bad.similarity = make_view<const float>(similarity.data(), 8);  // partner missing
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad.partner = make_view<const std::int64_t>(partner.data(), 8);
  partner[5] = 8;  // B has 8 tokens: 0 … 7
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::index_out_of_range);
  {  // nothing passes θ = 1: the given partner is not read
    dymu_buffers<float> fine(16, 8);
    CHECK(apply(cpu{}, dymu{1.0f, 1}, bad, fine.outputs(), ws.get()) == status::ok);
    CHECK(fine.count == 16);
  }
  partner[5] = 3;
  sizes[3] = 0.0f;
  bad = in;
  bad.sizes = make_view<const float>(sizes.data(), 16);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::invalid_parameter);

  // Outputs sized by the bound N, not by N − r.
  counted_merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 12, 8);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.count = {};
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) != status::ok);
  wrong = out.outputs();
  wrong.count = make_view(out.source.data(), 1);  // count inside source
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.count = make_view(out.assign.data() + 15, 1);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), 16);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());
}
