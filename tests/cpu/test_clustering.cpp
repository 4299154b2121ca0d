// tests/cpu/test_clustering.cpp — dpc_knn on CPU: the oracle over the shared case table (every
// element type and thread split, blend and group mean, carried sizes, a separate metric), a
// fixed case computed independently from the original's definition, ties and special rows,
// unmerge after the merge, bad input, and the workspace.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/clustering.hpp>

#include "reference/dpc_knn_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// dpc_knn run as `nth` shares, in reverse order.
template <class Ein, class Eout>
merge_buffers<Eout> run_dpc(const dpc_knn& p, const merge_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept == p.clusters);
  merge_buffers<Eout> out(kept, in.grid.tokens(), dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// The merge invariants: every input has a slot, each slot's source maps to it, each slot stands
/// for as many inputs as its size says (without carried sizes), and the sizes add up to N.
template <class E>
void check_invariants(const merge_buffers<E>& got, bool unit_sizes) {
  const bool assign_in_range =
      std::all_of(got.assign.begin(), got.assign.end(), [&](std::int64_t a) { return a >= 0 && a < got.kept; });
  REQUIRE(assign_in_range);
  std::vector<std::int64_t> members(static_cast<std::size_t>(got.kept), 0);
  for (std::int64_t a : got.assign) ++members[static_cast<std::size_t>(a)];
  index_t bad_home = 0, bad_size = 0;
  for (index_t q = 0; q < got.kept; ++q) {
    bad_home += got.assign[static_cast<std::size_t>(got.source[static_cast<std::size_t>(q)])] != q;
    bad_size += unit_sizes && static_cast<float>(members[static_cast<std::size_t>(q)]) != got.sizes[static_cast<std::size_t>(q)];
  }
  CHECK(bad_home == 0);
  CHECK(bad_size == 0);
  CHECK(std::is_sorted(got.source.begin(), got.source.end()));
  CHECK(std::adjacent_find(got.source.begin(), got.source.end()) == got.source.end());
  if (unit_sizes) CHECK(std::accumulate(got.sizes.begin(), got.sizes.end(), 0.0) == static_cast<double>(got.n));
}

/// Σ sizes·tokens over the outputs against Σ s·x over the inputs, column by column: the largest
/// difference relative to Σ |s·x|.
template <class Ein, class Eout>
double mass_error(const view<const Ein, 2>& x, const std::vector<float>& sizes, const merge_buffers<Eout>& got) {
  double worst = 0;
  for (index_t col = 0; col < got.dim; ++col) {
    double in_sum = 0, in_abs = 0, out_sum = 0;
    for (index_t i = 0; i < got.n; ++i) {
      const double w = sizes.empty() ? 1.0 : sizes[static_cast<std::size_t>(i)];
      in_sum += w * to_float(x(i, col));
      in_abs += std::abs(w * to_float(x(i, col)));
    }
    for (index_t q = 0; q < got.kept; ++q)
      out_sum += got.sizes[static_cast<std::size_t>(q)] * to_float(got.tokens[static_cast<std::size_t>(q * got.dim + col)]);
    worst = worse(worst, std::abs(out_sum - in_sum) / std::max(in_abs, 1.0));
  }
  return worst;
}

/// Carried sizes: small integers, so their sums are exact.
std::vector<float> carried_sizes(index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (auto& v : s) v = static_cast<float>(1 + r.next() % 5);
  return s;
}

/// One (case, policy) run: the decisions exactly as the oracle's, the rows within rounding, the
/// thread splits bit for bit, the invariants, and the kept sum of group_mean.
template <class Ein, class Eout>
void check_against_oracle(const dpc_knn& p, const shape_case& c, bool separate_metric, bool with_sizes,
                          std::initializer_list<int> splits) {
  const index_t n = c.grid.tokens();
  const std::uint64_t seed = 17 + static_cast<std::uint64_t>(n * 7 + p.clusters * 3 + p.k);
  const token_matrix<Ein> x = make_tokens<Ein>(n, c.dim, c.rows, seed);
  const token_matrix<Ein> m = make_tokens<Ein>(n, c.dim / 2 + 1, c.rows, seed + 1);
  const std::vector<float> sizes = with_sizes ? carried_sizes(n, seed + 2) : std::vector<float>{};
  merge_inputs<Ein> in{};
  in.grid = c.grid;
  in.tokens = x.rows;
  if (separate_metric) in.metric = m.rows;
  if (with_sizes) in.sizes = make_view<const float>(sizes.data(), n);

  const problem prob{c.grid, c.dim};
  REQUIRE(can_implement(p, prob) == status::ok);
  const merge_buffers<Eout> got = run_dpc<Ein, Eout>(p, in, c.dim);

  const ref::dpc_knn_decisions d = ref::dpc_knn_decide(p, detail::compared_rows(in));
  CHECK(got.source == d.centers);
  CHECK(got.assign == d.assign);
  std::vector<std::int32_t> positions;
  for (std::int64_t center : d.centers) {
    const token_position at = c.grid.position(center);
    positions.insert(positions.end(), {static_cast<std::int32_t>(at.t), static_cast<std::int32_t>(at.h),
                                       static_cast<std::int32_t>(at.w)});
  }
  CHECK(got.positions == positions);
  const ref::dpc_knn_result want = ref::dpc_knn_rows(p, view<const Ein, 2>(x.rows), d, sizes);
  CHECK(std::vector<double>(got.sizes.begin(), got.sizes.end()) == want.sizes);
  CHECK(row_mismatches(got.tokens, want.tokens) == 0);
  check_invariants(got, !with_sizes);
  if (p.merge == cluster_merge::group_mean) CHECK(mass_error(view<const Ein, 2>(x.rows), sizes, got) <= 1e-6 + 4 * output_eps<Eout>());

  for (int nth : splits) {
    INFO("nth " << nth);
    CHECK(run_dpc<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
  }
}

/// The policies every case runs: HoliTom's setting at two ratios, group mean, one cluster, every
/// token a center, k below and above the cluster count, β at its ends.
std::vector<dpc_knn> policies_for(index_t n) {
  const index_t tenth = std::max<index_t>(1, n / 10), quarter = std::max<index_t>(1, n / 4);
  return {
      dpc_knn{tenth, 7, 0.6f, cluster_merge::blend},
      dpc_knn{quarter, 7, 0.6f, cluster_merge::group_mean},
      dpc_knn{1, 7, 0.6f, cluster_merge::blend},
      dpc_knn{n, 7, 0.6f, cluster_merge::group_mean},
      dpc_knn{std::max<index_t>(1, n / 3), 3, 0.0f, cluster_merge::blend},
      dpc_knn{std::max<index_t>(1, n / 2), 50, 1.0f, cluster_merge::blend},
  };
}

/// Every policy and split in fp32; the other element types take the two HoliTom-like policies
/// and one split, since the oracle is O(N²·C) per run and the element type changes only how rows
/// are read and written, not the decisions' code.
template <class Ein, class Eout>
void run_case_table() {
  constexpr bool full = std::is_same_v<Ein, float> && std::is_same_v<Eout, float>;
  for (const shape_case& c : shape_cases()) {
    const std::vector<dpc_knn> policies = policies_for(c.grid.tokens());
    for (std::size_t k = 0; k < (full ? policies.size() : 2); ++k) {
      INFO(c.name << " policy " << k);
      if (full) check_against_oracle<Ein, Eout>(policies[k], c, false, false, {2, 3});
      else check_against_oracle<Ein, Eout>(policies[k], c, false, false, {3});
    }
    INFO(c.name << " separate metric, carried sizes");
    check_against_oracle<Ein, Eout>(policies[1], c, true, true, {3});
    if (full) check_against_oracle<Ein, Eout>(policies[0], c, false, true, {2});
  }
}

}  // namespace

TEST_CASE("dpc_knn matches the oracle on the case table", "[dpc_knn]") {
  SECTION("fp32") { run_case_table<float, float>(); }
  SECTION("fp16") { run_case_table<f16, f16>(); }
  SECTION("bf16") { run_case_table<bf16, bf16>(); }
  SECTION("bf16 in, fp32 out") { run_case_table<bf16, float>(); }
}

TEST_CASE("dpc_knn: a fixed case of the original's definition", "[dpc_knn]") {
  // 12 tokens of 4 values (multiples of 1/8), 3 clusters, K = 7 (so k = 3). The expected values
  // come from an independent float64 NumPy transcription of HoliTom's `cluster_dpc_knn` and
  // `merge_tokens_by_clustering` (cokeshao/HoliTom e9b2972) with the density noise dropped and
  // density ties to the lower index; no near-ties (scores and densities apart by > 6·10⁻⁴).
  // With k = K = 7 instead of min(K, clusters) the centers would be {3, 6, 11}.
  const int x8[12][4] = {{12, 5, 0, -8},   {-6, -15, -14, -16}, {-11, 10, 5, 14}, {0, 4, 16, 8},
                         {4, 1, 2, 14},    {-7, 10, 6, -16},    {-3, 12, 2, -15}, {9, 8, 11, -11},
                         {-14, 12, -16, 1}, {-14, -7, -1, -3},  {-3, -16, -16, -12}, {-16, 6, 1, 5}};
  std::vector<float> rows;  // (12, 4)
  for (const auto& r : x8)
    for (int v : r) rows.push_back(static_cast<float>(v) / 8.0f);
  merge_inputs<float> in{};
  in.grid = sequence_grid(12);
  in.tokens = make_view<const float>(rows.data(), 12, 4);

  const std::vector<std::int64_t> centers = {1, 6, 11};
  const std::vector<std::int64_t> assign = {1, 0, 2, 2, 2, 1, 1, 1, 2, 2, 0, 2};
  const std::vector<float> sizes = {2, 4, 6};
  const double blend[3][4] = {{-0.6, -1.925, -1.85, -1.8},
                              {0.00833333333333339, 1.2833333333333332, 0.43333333333333335, -1.7083333333333335},
                              {-1.55, 0.6499999999999999, 0.135, 0.7150000000000001}};
  const double mean[3][4] = {{-0.5625, -1.9375, -1.875, -1.75},
                             {0.34375, 1.09375, 0.59375, -1.5625},
                             {-1.0625, 0.5416666666666666, 0.14583333333333334, 0.8125}};
  for (cluster_merge how : {cluster_merge::blend, cluster_merge::group_mean}) {
    const merge_buffers<float> got = run_dpc<float, float>(dpc_knn{3, 7, 0.6f, how}, in, 4);
    CHECK(got.source == centers);
    CHECK(got.assign == assign);
    CHECK(got.sizes == sizes);
    const auto& want = how == cluster_merge::blend ? blend : mean;
    double worst = 0;
    for (int q = 0; q < 3; ++q)
      for (int c = 0; c < 4; ++c) worst = worse(worst, std::abs(got.tokens[static_cast<std::size_t>(q * 4 + c)] - want[q][c]));
    CHECK(worst <= 1e-6);
  }
  CHECK(run_dpc<float, float>(dpc_knn{3, 3}, in, 4).source == centers);  // k = 3 either way
}

TEST_CASE("dpc_knn: ties, identical and zero rows, one cluster", "[dpc_knn]") {
  SECTION("identical rows: every density 1, every score 0; the lowest tokens are the centers") {
    std::vector<float> zeros(20 * 3, 0.0f);  // zero rows are ordinary points
    merge_inputs<float> in{};
    in.grid = image_grid(4, 5);
    in.tokens = make_view<const float>(zeros.data(), 20, 3);
    const merge_buffers<float> got = run_dpc<float, float>(dpc_knn{4}, in, 3, 2);
    CHECK(got.source == std::vector<std::int64_t>{0, 1, 2, 3});
    std::vector<std::int64_t> assign(20, 0);  // ties to the lower center
    for (std::int64_t q = 0; q < 4; ++q) assign[static_cast<std::size_t>(q)] = q;
    CHECK(got.assign == assign);
    CHECK(got.sizes == std::vector<float>{17, 1, 1, 1});
    CHECK(std::all_of(got.tokens.begin(), got.tokens.end(), [](float v) { return v == 0.0f; }));
  }
  SECTION("one cluster: token 0 by the tie rule (the original picks by its noise)") {
    const token_matrix<float> x = make_tokens<float>(30, 5, layout::contiguous, 3);
    merge_inputs<float> in{};
    in.grid = sequence_grid(30);
    in.tokens = x.rows;
    const merge_buffers<float> got = run_dpc<float, float>(dpc_knn{1, 7, 0.6f, cluster_merge::group_mean}, in, 5);
    CHECK(got.source == std::vector<std::int64_t>{0});
    CHECK(got.sizes == std::vector<float>{30});
    CHECK(std::all_of(got.assign.begin(), got.assign.end(), [](std::int64_t a) { return a == 0; }));
  }
  SECTION("few distinct rows: density and distance ties everywhere, as the oracle ranks them") {
    // 40 tokens, each one of 5 prototypes: exact ties among the copies of a prototype.
    const token_matrix<float> proto = make_tokens<float>(5, 6, layout::contiguous, 8);
    std::vector<float> rows;
    rng r(5);
    for (int i = 0; i < 40; ++i) {
      const index_t k = static_cast<index_t>(r.next() % 5);
      for (index_t c = 0; c < 6; ++c) rows.push_back(proto.rows(k, c));
    }
    merge_inputs<float> in{};
    in.grid = sequence_grid(40);
    in.tokens = make_view<const float>(rows.data(), 40, 6);
    for (index_t clusters : {1, 3, 5, 8, 40}) {
      const dpc_knn p{clusters, 7, 0.6f, cluster_merge::group_mean};
      const merge_buffers<float> got = run_dpc<float, float>(p, in, 6, 3);
      const ref::dpc_knn_decisions d = ref::dpc_knn_decide(p, in.tokens);
      INFO("clusters " << clusters);
      CHECK(got.source == d.centers);
      CHECK(got.assign == d.assign);
    }
  }
}

TEST_CASE("dpc_knn: unmerge after the merge gives every token its cluster's row", "[dpc_knn]") {
  const token_matrix<bf16> x = make_tokens<bf16>(196, 24, layout::strided, 12);
  merge_inputs<bf16> in{};
  in.grid = image_grid(14, 14);
  in.tokens = x.rows;
  const merge_buffers<bf16> merged = run_dpc<bf16, bf16>(dpc_knn{20}, in, 24);
  std::vector<bf16> back(196 * 24);
  unmerge_inputs<bf16> u{make_view<const bf16>(merged.tokens.data(), 20, 24),
                         make_view<const std::int64_t>(merged.assign.data(), 196)};
  REQUIRE(apply(cpu{}, unmerge{}, u, unmerge_outputs<bf16>{make_view(back.data(), 196, 24)}, {}) == status::ok);
  index_t wrong = 0;
  for (index_t i = 0; i < 196; ++i) {
    const std::int64_t q = merged.assign[static_cast<std::size_t>(i)];
    for (index_t c = 0; c < 24; ++c)
      wrong += back[static_cast<std::size_t>(i * 24 + c)].bits != merged.tokens[static_cast<std::size_t>(q * 24 + c)].bits;
  }
  CHECK(wrong == 0);
}

TEST_CASE("dpc_knn: carried source and positions pass through the centers", "[dpc_knn]") {
  const token_matrix<float> x = make_tokens<float>(25, 7, layout::contiguous, 21);
  std::vector<std::int64_t> source(25);
  std::vector<std::int32_t> positions(75);
  for (std::int64_t i = 0; i < 25; ++i) {
    source[static_cast<std::size_t>(i)] = 1000 + 3 * i;
    for (int k = 0; k < 3; ++k) positions[static_cast<std::size_t>(3 * i + k)] = static_cast<std::int32_t>(10 * i + k);
  }
  merge_inputs<float> in{};
  in.grid = image_grid(5, 5);
  in.tokens = x.rows;
  const merge_buffers<float> plain = run_dpc<float, float>(dpc_knn{6}, in, 7);
  in.source = make_view<const std::int64_t>(source.data(), 25);
  in.positions = make_view<const std::int32_t>(positions.data(), 25, 3);
  const merge_buffers<float> carried = run_dpc<float, float>(dpc_knn{6}, in, 7);
  for (std::size_t q = 0; q < 6; ++q) {
    const std::int64_t c = plain.source[q];
    CHECK(carried.source[q] == 1000 + 3 * c);
    for (std::size_t k = 0; k < 3; ++k) CHECK(carried.positions[3 * q + k] == 10 * c + static_cast<std::int64_t>(k));
  }
  CHECK(carried.assign == plain.assign);
  CHECK(carried.tokens == plain.tokens);
}

TEST_CASE("dpc_knn: bad input leaves every output untouched", "[dpc_knn][bad-input]") {
  const index_t n = 16, dim = 8;
  const token_matrix<float> x = make_tokens<float>(n, dim, layout::contiguous, 4);
  merge_inputs<float> in{};
  in.grid = image_grid(4, 4);
  in.tokens = x.rows;
  const dpc_knn p{5};
  const problem prob{in.grid, dim};
  merge_buffers<float> out(5, n, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  const auto every_share = [&](const merge_inputs<float>& i, const merge_outputs<float>& o, workspace w, status want) {
    for (int ith : {1, 0}) CHECK(apply(cpu{ith, 2}, p, i, o, w) == want);
  };

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  const auto rejects = [&](const dpc_knn& q, const problem& pr, status want) {
    CHECK(can_implement(q, pr) == want);
    CHECK(retained_count(q, pr) == 0);
    CHECK(workspace_bytes(cpu{}, q, pr) == 0);
  };
  rejects(dpc_knn{-1}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, 0}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, -3}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, 7, -0.1f}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, 7, 1.5f}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, 7, std::numeric_limits<float>::quiet_NaN()}, prob, status::invalid_parameter);
  rejects(dpc_knn{5, 7, 0.6f, static_cast<cluster_merge>(7)}, prob, status::invalid_parameter);
  rejects(dpc_knn{}, prob, status::invalid_budget);  // clusters has no default
  rejects(dpc_knn{17}, prob, status::budget_exceeds_input);
  rejects(p, problem{sequence_grid(0), dim}, status::empty_input);
  rejects(p, problem{token_grid{1, -1, 4}, dim}, status::shape_mismatch);
  rejects(p, problem{sequence_grid((index_t{1} << 24) + 1), dim}, status::shape_mismatch);  // 4·N² bytes
  CHECK(can_implement(p, problem{sequence_grid(index_t{1} << 24), dim}) == status::ok);
  CHECK(can_implement(dpc_knn{16, 100, 1.0f}, prob) == status::ok);
  CHECK(apply(cpu{}, dpc_knn{17}, in, out.outputs(), ws.get()) == status::budget_exceeds_input);
  CHECK(apply(cpu{}, dpc_knn{5, 0}, in, out.outputs(), ws.get()) == status::invalid_parameter);

  merge_inputs<float> bad = in;
  bad.tokens = make_view<const float>(&x.rows(0, 0), n - 1, dim);
  every_share(bad, out.outputs(), ws.get(), status::shape_mismatch);
  bad.tokens = view<const float, 2>(nullptr, {n, dim}, {dim, 1});
  every_share(bad, out.outputs(), ws.get(), status::null_pointer);
  bad = in;
  bad.metric = make_view<const float>(&x.rows(0, 0), n - 2, 4);
  every_share(bad, out.outputs(), ws.get(), status::shape_mismatch);
  std::vector<float> sizes(static_cast<std::size_t>(n), 1.0f);
  bad = in;
  bad.sizes = make_view<const float>(sizes.data(), n - 1);
  every_share(bad, out.outputs(), ws.get(), status::shape_mismatch);
  std::vector<float> similarity(8, 0.5f);
  bad = in;
  bad.similarity = make_view<const float>(similarity.data(), 8);  // a tome matching means nothing here
  every_share(bad, out.outputs(), ws.get(), status::invalid_parameter);

  merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 4, dim);
  every_share(in, wrong, ws.get(), status::shape_mismatch);
  wrong = out.outputs();
  wrong.assign = make_view(out.assign.data(), n - 1);
  every_share(in, wrong, ws.get(), status::shape_mismatch);
  wrong = out.outputs();
  wrong.positions = make_view(out.positions.data(), 5, 2);
  every_share(in, wrong, ws.get(), status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.assign.data()), 5);
  every_share(in, wrong, ws.get(), status::aliasing);
  std::vector<float> copy(x.storage.begin(), x.storage.end());
  merge_inputs<float> self = in;
  self.tokens = make_view<const float>(copy.data(), n, dim);
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), 5, dim);  // in place
  every_share(self, wrong, ws.get(), status::aliasing);
  wrong = out.outputs();
  wrong.assign = make_view(reinterpret_cast<std::int64_t*>(copy.data()), n);
  every_share(self, wrong, ws.get(), status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  every_share(in, out.outputs(), small.get(), status::workspace_too_small);
  every_share(in, out.outputs(), workspace{nullptr, ws.bytes.size()}, status::null_pointer);

  // Values: a compared row with a NaN, an inf, or a squared norm past FLT_MAX; a carried size
  // that is not a positive finite number. Every share refuses, before anything is written.
  for (float v : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 3e19f}) {
    std::vector<float> poisoned = copy;
    poisoned[static_cast<std::size_t>(9 * dim + 3)] = v;
    bad = in;
    bad.tokens = make_view<const float>(poisoned.data(), n, dim);
    every_share(bad, out.outputs(), ws.get(), status::invalid_parameter);
    bad = in;
    bad.metric = make_view<const float>(poisoned.data(), n, dim);  // only the compared rows count
    every_share(bad, out.outputs(), ws.get(), status::invalid_parameter);
  }
  for (float v : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> s = sizes;
    s[5] = v;
    bad = in;
    bad.sizes = make_view<const float>(s.data(), n);
    every_share(bad, out.outputs(), ws.get(), status::invalid_parameter);
  }
  CHECK(out.untouched());

  // Large finite rows whose distances overflow: no error, the documented result.
  std::vector<float> huge = copy;
  for (index_t c = 0; c < dim; ++c) huge[static_cast<std::size_t>(2 * dim + c)] = c % 2 ? 5e18f : -5e18f;
  for (index_t c = 0; c < dim; ++c) huge[static_cast<std::size_t>(7 * dim + c)] = c % 2 ? -5e18f : 5e18f;
  bad = in;
  bad.tokens = make_view<const float>(huge.data(), n, dim);
  const merge_buffers<float> overflow = run_dpc<float, float>(p, bad, dim, 2);
  check_invariants(overflow, true);
}

TEST_CASE("dpc_knn: the workspace is the distance matrix and the carve-up, one for all shares", "[dpc_knn]") {
  const problem prob{token_grid{16, 14, 14}, 3584};
  const dpc_knn p{314};
  const index_t n = 3136;
  const std::size_t one = workspace_bytes(cpu{}, p, prob);
  // 4·N² + 4·N (row) + 8·N (density, score) + 4·N (keys) + 8·clusters + 8·N (slot) + 8·(clusters + 1)
  // + 8·clusters + 8·N (members) + 4·dim, and 63 bytes of alignment slack per buffer (11).
  CHECK(one == static_cast<std::size_t>(4 * n * n + 32 * n + 24 * 314 + 8 + 4 * 3584 + 11 * 63));
  CHECK(workspace_bytes(cpu{0, 3}, p, prob) == one);
  CHECK(workspace_bytes(cpu{0, 0}, p, prob) == 0);
  const problem small{image_grid(4, 4), 8};
  std::vector<std::byte> bytes(workspace_bytes(cpu{}, dpc_knn{5}, small) + 64);
  for (std::size_t shift = 0; shift < 64; shift += 8) {
    detail::arena carver(workspace{bytes.data() + shift, bytes.size() - 64});
    (void)detail::dpc_scratch::carve(carver, 16, 5, 8);
    CHECK(carver.fits());
  }
}
