// tests/cpu/test_bench_fidelity.cpp — the fidelity metrics of `tokred bench`
// (tools/bench/fidelity.hpp): token metrics against the scalar oracle on random reductions,
// exact properties (identity, duplicates merged with their sizes, ties, cancellation), strides,
// non-finite values, bad input, the default queries; and the KV scheme table: bits, round trips
// against the library's own calls, error ordering, KL against tokred::attention_kl.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/cpu/ggml_blocks.hpp>
#include <tokred/cpu/kv_error.hpp>

#include "bench/fidelity.hpp"
#include "reference/fidelity_ref.hpp"
#include "reference/kv_error_ref.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace tokred::testing {
namespace {

/// A (rows, cols) float matrix, row-major, with its view.
struct matrix {
  index_t rows = 0, cols = 0;
  std::vector<float> data;

  matrix(index_t r, index_t c) : rows(r), cols(c), data(static_cast<std::size_t>(r * c), 0.0f) {}
  float& at(index_t i, index_t c) { return data[static_cast<std::size_t>(i * cols + c)]; }
  float at(index_t i, index_t c) const { return data[static_cast<std::size_t>(i * cols + c)]; }
  view<const float, 2> get() const { return view<const float, 2>(data.data(), {rows, cols}); }
};

/// Uniform values in [−amplitude, amplitude) plus a per-column offset, so distances and norms
/// are not all alike.
matrix random_matrix(index_t rows, index_t cols, std::uint64_t seed, float amplitude = 1.0f) {
  rng r(seed);
  matrix m(rows, cols);
  for (index_t c = 0; c < cols; ++c) {
    const float offset = 0.5f * r.uniform();
    for (index_t i = 0; i < rows; ++i) m.at(i, c) = offset + amplitude * r.uniform();
  }
  return m;
}

/// A reduction with its own storage.
struct reduction {
  matrix y;
  std::vector<std::int64_t> assign;  // empty: not given
  std::vector<float> sizes;          // empty: not given

  bench::reduced_tokens get() const {
    bench::reduced_tokens t;
    t.tokens = y.get();
    if (!assign.empty()) t.assign = view<const std::int64_t, 1>(assign.data(), {static_cast<index_t>(assign.size())});
    if (!sizes.empty()) t.sizes = view<const float, 1>(sizes.data(), {static_cast<index_t>(sizes.size())});
    return t;
  }
};

/// Pruning: k originals kept (spread by a stride), the others dropped (assign −1).
reduction pruned(const matrix& x, index_t k, bool with_assign) {
  reduction r{matrix(k, x.cols), {}, {}};
  if (with_assign) r.assign.assign(static_cast<std::size_t>(x.rows), -1);
  for (index_t j = 0; j < k; ++j) {
    const index_t i = j * x.rows / k;
    for (index_t c = 0; c < x.cols; ++c) r.y.at(j, c) = x.at(i, c);
    if (with_assign) r.assign[static_cast<std::size_t>(i)] = j;
  }
  return r;
}

/// Merging: every original goes to a random slot (each slot gets at least one), the output is
/// the mean of its members and its size their count.
reduction merged(const matrix& x, index_t k, std::uint64_t seed) {
  rng r(seed);
  reduction m{matrix(k, x.cols), std::vector<std::int64_t>(static_cast<std::size_t>(x.rows)),
              std::vector<float>(static_cast<std::size_t>(k), 0.0f)};
  for (index_t i = 0; i < x.rows; ++i) {
    const auto slot = i < k ? i : static_cast<index_t>(r.next() % static_cast<std::uint64_t>(k));
    m.assign[static_cast<std::size_t>(i)] = slot;
  }
  std::vector<double> sum(static_cast<std::size_t>(k * x.cols), 0.0);
  for (index_t i = 0; i < x.rows; ++i) {
    const auto j = static_cast<index_t>(m.assign[static_cast<std::size_t>(i)]);
    m.sizes[static_cast<std::size_t>(j)] += 1.0f;
    for (index_t c = 0; c < x.cols; ++c) sum[static_cast<std::size_t>(j * x.cols + c)] += x.at(i, c);
  }
  for (index_t j = 0; j < k; ++j)
    for (index_t c = 0; c < x.cols; ++c)
      m.y.at(j, c) =
          static_cast<float>(sum[static_cast<std::size_t>(j * x.cols + c)] / m.sizes[static_cast<std::size_t>(j)]);
  return m;
}

/// Doubles that differ only by summation order: 1e−12 relative.
bool near_exact(double got, double want) { return std::fabs(got - want) <= 1e-12 * std::fabs(want) + 1e-14; }

/// The attention error runs float GEMMs against the oracle's double sums: 2e−5 of the error
/// itself plus 1e−6 absolute (float logits and weights, about 1e−7 each).
bool near_attention(double got, double want) { return std::fabs(got - want) <= 2e-5 * std::fabs(want) + 1e-6; }

// --- token metrics ----------------------------------------------------------------------------

struct random_case {
  index_t n, k, d, m;
};

const random_case random_cases[] = {
    {1, 1, 8, 1}, {37, 1, 13, 5}, {64, 9, 32, 16}, {120, 40, 33, 20}, {150, 150, 16, 8}, {300, 75, 48, 24},
};

void check_against_oracle(const matrix& x, const reduction& r, const matrix& q) {
  std::vector<bench::nearest_output> near;
  REQUIRE(bench::nearest_outputs(x.get(), r.y.get(), near) == status::ok);
  const std::vector<ref::nearest> want = ref::nearest_outputs(x.get(), r.y.get());
  REQUIRE(near.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("original " << i);
    CHECK(near[i].index == want[i].index);
    CHECK(near_exact(near[i].distance, want[i].distance));
  }

  bench::reconstruction_stats rec;
  REQUIRE(bench::reconstruction_error(x.get(), r.get(), rec) == status::ok);
  const ref::reconstruction rec_want = ref::reconstruct(x.get(), r.y.get(), r.assign);
  CHECK(near_exact(rec.relative_l2, rec_want.relative_l2));
  CHECK(near_exact(rec.mean_cosine, rec_want.mean_cosine));
  CHECK(rec.nearest == rec_want.nearest);

  double att = -1.0;
  REQUIRE(bench::attention_error(x.get(), r.get(), q.get(), att) == status::ok);
  const double att_want = ref::attention_error(x.get(), r.y.get(), r.sizes, q.get());
  INFO("attention " << att << " oracle " << att_want);
  CHECK(near_attention(att, att_want));

  bench::coverage_stats cov;
  REQUIRE(bench::coverage(x.get(), r.y.get(), cov) == status::ok);
  const ref::coverage cov_want = ref::cover(x.get(), r.y.get());
  CHECK(cov.token == cov_want.token);
  CHECK(cov.output == cov_want.output);
  CHECK(near_exact(cov.max_distance, cov_want.max_distance));
  CHECK(near_exact(cov.relative, cov_want.relative));
}

TEST_CASE("random reductions: every metric equals the scalar oracle", "[bench_fidelity]") {
  for (const random_case& rc : random_cases) {
    INFO("N " << rc.n << " K " << rc.k << " D " << rc.d << " M " << rc.m);
    const matrix x = random_matrix(rc.n, rc.d, 100 + static_cast<std::uint64_t>(rc.n));
    const matrix q = random_matrix(rc.m, rc.d, 200 + static_cast<std::uint64_t>(rc.m), 2.0f);
    {
      INFO("pruned, assign given (−1 for the dropped)");
      check_against_oracle(x, pruned(x, rc.k, true), q);
    }
    {
      INFO("pruned, no assign");
      check_against_oracle(x, pruned(x, rc.k, false), q);
    }
    {
      INFO("merged: means of random slots with their sizes");
      check_against_oracle(x, merged(x, rc.k, 7), q);
    }
    {
      INFO("unrelated outputs, no assign, no sizes");
      check_against_oracle(x, reduction{random_matrix(rc.k, rc.d, 300), {}, {}}, q);
    }
  }
}

TEST_CASE("K = N and Y = X: zero error, cosine 1, zero attention error, zero coverage", "[bench_fidelity]") {
  const matrix x = random_matrix(90, 24, 11);
  const matrix q = random_matrix(12, 24, 12, 3.0f);
  reduction same{x, {}, {}};  // another buffer with the same values
  for (int variant = 0; variant < 3; ++variant) {
    INFO("variant " << variant);
    if (variant == 1) same.sizes.assign(90, 1.0f);
    if (variant == 2) {
      same.assign.resize(90);
      for (std::size_t i = 0; i < 90; ++i) same.assign[i] = static_cast<std::int64_t>(i);
    }
    bench::fidelity_stats f;
    REQUIRE(bench::token_fidelity(x.get(), same.get(), q.get(), f) == status::ok);
    CHECK(f.reconstruction.relative_l2 == 0.0);
    CHECK(f.reconstruction.mean_cosine == 1.0);
    CHECK(f.reconstruction.nearest == (variant == 2 ? 0 : 90));
    CHECK(f.attention_error == 0.0);
    CHECK(f.coverage.max_distance == 0.0);
    CHECK(f.coverage.relative == 0.0);
    CHECK(f.coverage.token == 0);
    CHECK(f.coverage.output == 0);
  }
}

TEST_CASE("K = 1: every original maps to the one output", "[bench_fidelity]") {
  const matrix x = random_matrix(50, 10, 21);
  const matrix q = random_matrix(7, 10, 22);
  const reduction one = merged(x, 1, 3);  // the mean of all, size 50
  check_against_oracle(x, one, q);
  // One key: softmax is 1 whatever the bias, so Â is that row for every query.
  double with_size = -1.0, without = -2.0;
  REQUIRE(bench::attention_error(x.get(), one.get(), q.get(), with_size) == status::ok);
  REQUIRE(bench::attention_error(x.get(), reduction{one.y, {}, {}}.get(), q.get(), without) == status::ok);
  CHECK(with_size == without);
}

TEST_CASE("duplicates merged into one row with their count as size: attention is unchanged", "[bench_fidelity]") {
  // 30 distinct rows, row j repeated 1 + j mod 4 times, the copies spread through X.
  const matrix distinct = random_matrix(30, 20, 31);
  std::vector<index_t> order;
  for (index_t j = 0; j < 30; ++j)
    for (index_t copy = 0; copy <= j % 4; ++copy) order.push_back(j);
  rng shuffle(5);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle.next() % i]);
  matrix x(static_cast<index_t>(order.size()), 20);
  reduction r{distinct, std::vector<std::int64_t>(order.size()), std::vector<float>(30, 0.0f)};
  for (std::size_t i = 0; i < order.size(); ++i) {
    for (index_t c = 0; c < 20; ++c) x.at(static_cast<index_t>(i), c) = distinct.at(order[i], c);
    r.assign[i] = order[i];
    r.sizes[static_cast<std::size_t>(order[i])] += 1.0f;
  }
  const matrix q = random_matrix(16, 20, 32, 4.0f);

  double error = -1.0;
  REQUIRE(bench::attention_error(x.get(), r.get(), q.get(), error) == status::ok);
  CHECK(error < 1e-6);  // exact in real numbers; float GEMMs leave ~1e−7
  CHECK(ref::attention_error(x.get(), r.y.get(), r.sizes, q.get()) < 1e-12);

  // Without the log-size bias every distinct row counts once: a visible error.
  double unweighted = -1.0;
  REQUIRE(bench::attention_error(x.get(), reduction{r.y, {}, {}}.get(), q.get(), unweighted) == status::ok);
  CHECK(unweighted > 1e-2);
  CHECK(near_attention(unweighted, ref::attention_error(x.get(), r.y.get(), {}, q.get())));

  // Each original's own slot holds exactly its values; the nearest search finds them too.
  bench::fidelity_stats f;
  REQUIRE(bench::token_fidelity(x.get(), r.get(), q.get(), f) == status::ok);
  CHECK(f.reconstruction.relative_l2 == 0.0);
  CHECK(f.reconstruction.mean_cosine == 1.0);
  CHECK(f.reconstruction.nearest == 0);
  CHECK(f.coverage.max_distance == 0.0);
}

TEST_CASE("ties: the nearest output and the worst-covered original are the lowest indices", "[bench_fidelity]") {
  // Outputs in 3-D: y0 far, y1 and y3 equal, y2 and y4 mirror images about the origin.
  matrix y(5, 3);
  const float ys[5][3] = {{9, 9, 9}, {5, 5, 0}, {0, 0, 2}, {5, 5, 0}, {0, 0, -2}};
  for (index_t j = 0; j < 5; ++j)
    for (index_t c = 0; c < 3; ++c) y.at(j, c) = ys[j][c];
  // x0 sits on y1 = y3; x1 at the origin is 2 from y2 and from y4; x2 and x3 lie 1.5 either
  // side of it, √(1.5² + 2²) = 2.5 from y2 and from y4 (every square exact), so the worst
  // coverage ties between x2 and x3.
  matrix x(4, 3);
  const float xs[4][3] = {{5, 5, 0}, {0, 0, 0}, {1.5f, 0, 0}, {-1.5f, 0, 0}};
  for (index_t i = 0; i < 4; ++i)
    for (index_t c = 0; c < 3; ++c) x.at(i, c) = xs[i][c];

  std::vector<bench::nearest_output> near;
  REQUIRE(bench::nearest_outputs(x.get(), y.get(), near) == status::ok);
  CHECK(near[0].index == 1);
  CHECK(near[0].distance == 0.0);
  CHECK(near[1].index == 2);
  CHECK(near[1].distance == 2.0);
  CHECK(near[2].index == 2);
  CHECK(near[2].distance == 2.5);
  CHECK(near[3].index == 2);
  CHECK(near[3].distance == 2.5);

  bench::coverage_stats cov;
  REQUIRE(bench::coverage(x.get(), y.get(), cov) == status::ok);
  CHECK(cov.max_distance == 2.5);
  CHECK(cov.token == 2);
  CHECK(cov.output == 2);

  // x0 → y3 (= y1) and x2 → y4 by assign; the dropped x1 and x3 take their nearest, y2.
  reduction r{y, {3, -1, 4, -1}, {}};
  bench::reconstruction_stats rec;
  REQUIRE(bench::reconstruction_error(x.get(), r.get(), rec) == status::ok);
  CHECK(rec.nearest == 2);
  const ref::reconstruction want = ref::reconstruct(x.get(), y.get(), r.assign);
  CHECK(near_exact(rec.relative_l2, want.relative_l2));
  CHECK(near_exact(rec.mean_cosine, want.mean_cosine));
}

TEST_CASE("near ties float cannot resolve: the exact distances decide", "[bench_fidelity]") {
  // Every token is a common vector of norm ~1e3 plus a perturbation of ~1e−3: the float GEMM's
  // ‖x‖² + ‖y‖² − 2x·y has rounding errors far above the squared distances (~1e−6).
  const index_t n = 60, k = 20, d = 64;
  const matrix base = random_matrix(1, d, 41, 200.0f);
  matrix x = random_matrix(n, d, 42, 1e-3f), y = random_matrix(k, d, 43, 1e-3f);
  for (index_t c = 0; c < d; ++c) {
    for (index_t i = 0; i < n; ++i) x.at(i, c) += base.at(0, c);
    for (index_t j = 0; j < k; ++j) y.at(j, c) += base.at(0, c);
  }
  const matrix q = random_matrix(4, d, 44, 1e-3f);
  check_against_oracle(x, reduction{y, {}, {}}, q);
}

TEST_CASE("large logits: the max-subtracted softmax does not overflow", "[bench_fidelity]") {
  // Logits q·x/√D of several thousand: e^logit overflows double without the maximum subtracted.
  const matrix x = random_matrix(60, 16, 45, 60.0f), q = random_matrix(6, 16, 46, 60.0f);
  const reduction r = merged(x, 15, 47);
  double error = -1.0;
  REQUIRE(bench::attention_error(x.get(), r.get(), q.get(), error) == status::ok);
  CHECK(std::isfinite(error));
  CHECK(near_attention(error, ref::attention_error(x.get(), r.y.get(), r.sizes, q.get())));
}

TEST_CASE("any strides: the same bits as contiguous rows", "[bench_fidelity]") {
  const matrix x = random_matrix(70, 19, 51), q = random_matrix(9, 19, 52, 2.0f);
  const reduction r = merged(x, 23, 53);
  bench::fidelity_stats plain;
  REQUIRE(bench::token_fidelity(x.get(), r.get(), q.get(), plain) == status::ok);

  // X stored backwards with an inner stride of 2; Y with padded rows; Q transposed.
  std::vector<float> xs(static_cast<std::size_t>(70 * 19 * 2), -7.0f), ys(static_cast<std::size_t>(23 * 25), -7.0f),
      qs(static_cast<std::size_t>(9 * 19), -7.0f);
  for (index_t i = 0; i < 70; ++i)
    for (index_t c = 0; c < 19; ++c) xs[static_cast<std::size_t>((69 - i) * 38 + 2 * c)] = x.at(i, c);
  for (index_t j = 0; j < 23; ++j)
    for (index_t c = 0; c < 19; ++c) ys[static_cast<std::size_t>(j * 25 + c)] = r.y.at(j, c);
  for (index_t i = 0; i < 9; ++i)
    for (index_t c = 0; c < 19; ++c) qs[static_cast<std::size_t>(c * 9 + i)] = q.at(i, c);
  const view<const float, 2> xv(xs.data() + 69 * 38, {70, 19}, {-38, 2}), yv(ys.data(), {23, 19}, {25, 1}),
      qv(qs.data(), {9, 19}, {1, 9});
  bench::reduced_tokens rt = r.get();
  rt.tokens = yv;
  bench::fidelity_stats strided;
  REQUIRE(bench::token_fidelity(xv, rt, qv, strided) == status::ok);
  CHECK(strided.reconstruction.relative_l2 == plain.reconstruction.relative_l2);
  CHECK(strided.reconstruction.mean_cosine == plain.reconstruction.mean_cosine);
  CHECK(strided.attention_error == plain.attention_error);
  CHECK(strided.coverage.max_distance == plain.coverage.max_distance);
  CHECK(strided.coverage.token == plain.coverage.token);
}

TEST_CASE("token_fidelity gives the three metrics' results exactly", "[bench_fidelity]") {
  const matrix x = random_matrix(110, 21, 61), q = random_matrix(13, 21, 62);
  for (const reduction& r : {pruned(x, 30, true), pruned(x, 30, false), merged(x, 17, 63)}) {
    bench::fidelity_stats all;
    REQUIRE(bench::token_fidelity(x.get(), r.get(), q.get(), all) == status::ok);
    bench::reconstruction_stats rec;
    double att = 0.0;
    bench::coverage_stats cov;
    REQUIRE(bench::reconstruction_error(x.get(), r.get(), rec) == status::ok);
    REQUIRE(bench::attention_error(x.get(), r.get(), q.get(), att) == status::ok);
    REQUIRE(bench::coverage(x.get(), r.y.get(), cov) == status::ok);
    CHECK(all.reconstruction.relative_l2 == rec.relative_l2);
    CHECK(all.reconstruction.mean_cosine == rec.mean_cosine);
    CHECK(all.reconstruction.nearest == rec.nearest);
    CHECK(all.attention_error == att);
    CHECK(all.coverage.max_distance == cov.max_distance);
    CHECK(all.coverage.relative == cov.relative);
    CHECK(all.coverage.token == cov.token);
    CHECK(all.coverage.output == cov.output);
  }
}

TEST_CASE("a prepared item: the same results for every reduction measured against it", "[bench_fidelity]") {
  const matrix x = random_matrix(80, 17, 64), q = random_matrix(11, 17, 65);
  bench::item_reference item;
  bench::fidelity_stats f;
  CHECK(bench::token_fidelity(item, pruned(x, 8, true).get(), f) == status::empty_input);  // not prepared
  REQUIRE(item.prepare(x.get(), q.get()) == status::ok);
  CHECK(item.tokens() == 80);
  CHECK(item.dim() == 17);
  CHECK(item.queries() == 11);
  for (const reduction& r : {pruned(x, 8, true), merged(x, 20, 66), pruned(x, 80, false)}) {
    bench::fidelity_stats once;
    REQUIRE(bench::token_fidelity(item, r.get(), f) == status::ok);
    REQUIRE(bench::token_fidelity(x.get(), r.get(), q.get(), once) == status::ok);
    CHECK(f.reconstruction.relative_l2 == once.reconstruction.relative_l2);
    CHECK(f.reconstruction.mean_cosine == once.reconstruction.mean_cosine);
    CHECK(f.attention_error == once.attention_error);
    CHECK(f.coverage.max_distance == once.coverage.max_distance);
    CHECK(f.coverage.output == once.coverage.output);
  }
  const bench::item_reference moved = std::move(item);  // the reference moves with its copies
  REQUIRE(bench::token_fidelity(moved, merged(x, 20, 66).get(), f) == status::ok);
  CHECK(near_attention(f.attention_error, ref::attention_error(x.get(), merged(x, 20, 66).y.get(),
                                                                merged(x, 20, 66).sizes, q.get())));

  // prepare: X first, then Q; a failed prepare leaves the reference empty.
  bench::item_reference other;
  REQUIRE(other.prepare(x.get(), q.get()) == status::ok);
  CHECK(other.prepare(view<const float, 2>(x.data.data(), {0, 17}), q.get()) == status::empty_input);
  CHECK_FALSE(other.ready());
  CHECK(other.prepare(x.get(), view<const float, 2>(q.data.data(), {11, 16})) == status::shape_mismatch);
  CHECK(other.prepare(view<const float, 2>(nullptr, {80, 17}), view<const float, 2>(nullptr, {0, 5})) ==
        status::null_pointer);
  CHECK(other.prepare(x.get(), view<const float, 2>(nullptr, {11, 17})) == status::null_pointer);
  CHECK_FALSE(other.ready());
}

TEST_CASE("zero vectors: the documented cosine and ratios", "[bench_fidelity]") {
  matrix x(3, 4), y(2, 4), q(1, 4);  // all zero
  y.at(1, 0) = 1.0f;
  q.at(0, 0) = 1.0f;
  // x0 → y0 (both zero: cosine 1), x1 → y1 (x zero: cosine 0), x2 nearest y0 (cosine 1).
  reduction r{y, {0, 1, -1}, {}};
  bench::reconstruction_stats rec;
  REQUIRE(bench::reconstruction_error(x.get(), r.get(), rec) == status::ok);
  CHECK(rec.mean_cosine == Approx(2.0 / 3.0));
  CHECK(rec.relative_l2 == INFINITY);  // ‖X‖ = 0 but X̂ is not
  r.assign = {0, 0, 0};
  REQUIRE(bench::reconstruction_error(x.get(), r.get(), rec) == status::ok);
  CHECK(rec.mean_cosine == 1.0);
  CHECK(rec.relative_l2 == 0.0);
  bench::coverage_stats cov;
  REQUIRE(bench::coverage(x.get(), y.get(), cov) == status::ok);
  CHECK(cov.max_distance == 0.0);
  CHECK(cov.relative == 0.0);
  double att = -1.0;  // A = 0 (X is zero), Â = softmax(0, 0)·Y ≠ 0
  REQUIRE(bench::attention_error(x.get(), reduction{y, {}, {}}.get(), q.get(), att) == status::ok);
  CHECK(att == INFINITY);
}

TEST_CASE("non-finite values: NaN metrics, no index", "[bench_fidelity]") {
  matrix x = random_matrix(20, 8, 71);
  const matrix q = random_matrix(3, 8, 72);
  const reduction r = pruned(x, 5, true);
  x.at(7, 3) = std::nanf("");
  bench::fidelity_stats f;
  REQUIRE(bench::token_fidelity(x.get(), r.get(), q.get(), f) == status::ok);
  CHECK(std::isnan(f.reconstruction.relative_l2));
  CHECK(std::isnan(f.reconstruction.mean_cosine));
  CHECK(std::isnan(f.attention_error));
  CHECK(std::isnan(f.coverage.max_distance));
  CHECK(f.coverage.token == -1);
  std::vector<bench::nearest_output> near;
  REQUIRE(bench::nearest_outputs(x.get(), r.y.get(), near) == status::ok);
  CHECK(near[0].index == -1);
  CHECK(std::isnan(near[0].distance));

  // Finite tokens, an infinite query: only the attention error is lost.
  const matrix fine = random_matrix(20, 8, 71);
  matrix bad_q = q;
  bad_q.at(1, 1) = INFINITY;
  REQUIRE(bench::token_fidelity(fine.get(), pruned(fine, 5, true).get(), bad_q.get(), f) == status::ok);
  CHECK(std::isnan(f.attention_error));
  CHECK(std::isfinite(f.reconstruction.relative_l2));
  CHECK(std::isfinite(f.coverage.max_distance));
}

TEST_CASE("bad input: documented statuses, output untouched", "[bench_fidelity][bad-input]") {
  const matrix x = random_matrix(10, 6, 81), q = random_matrix(2, 6, 82);
  const reduction good = merged(x, 4, 83);
  const bench::fidelity_stats sentinel{{-5.0, -5.0, -5}, -5.0, {-5.0, -5.0, -5, -5}};

  const auto expect = [&](status want, const view<const float, 2>& xv, const bench::reduced_tokens& y,
                          const view<const float, 2>& qv) {
    bench::fidelity_stats f = sentinel;
    CHECK(bench::token_fidelity(xv, y, qv, f) == want);
    CHECK(f.reconstruction.relative_l2 == -5.0);
    CHECK(f.attention_error == -5.0);
    CHECK(f.coverage.token == -5);
  };
  const bench::reduced_tokens y = good.get();
  const view<const float, 2> none;

  expect(status::empty_input, none, y, q.get());
  expect(status::empty_input, view<const float, 2>(x.data.data(), {0, 6}), y, q.get());
  expect(status::null_pointer, view<const float, 2>(nullptr, {10, 6}), y, q.get());
  expect(status::shape_mismatch, view<const float, 2>(x.data.data(), {-1, 6}), y, q.get());

  bench::reduced_tokens bad = y;
  bad.tokens = view<const float, 2>(good.y.data.data(), {4, 5});
  expect(status::shape_mismatch, x.get(), bad, q.get());
  bad.tokens = view<const float, 2>(good.y.data.data(), {0, 6});
  expect(status::empty_input, x.get(), bad, q.get());
  bad.tokens = view<const float, 2>(nullptr, {4, 6});
  expect(status::null_pointer, x.get(), bad, q.get());

  std::vector<std::int64_t> assign = good.assign;
  bad = y;
  bad.assign = view<const std::int64_t, 1>(assign.data(), {9});
  expect(status::shape_mismatch, x.get(), bad, q.get());
  bad.assign = view<const std::int64_t, 1>(assign.data(), {10});
  assign[3] = 4;  // = K
  expect(status::index_out_of_range, x.get(), bad, q.get());
  assign[3] = -2;
  expect(status::index_out_of_range, x.get(), bad, q.get());

  std::vector<float> sizes = good.sizes;
  bad = y;
  bad.sizes = view<const float, 1>(sizes.data(), {3});
  expect(status::shape_mismatch, x.get(), bad, q.get());
  bad.sizes = view<const float, 1>(sizes.data(), {4});
  for (float s : {0.0f, -1.0f, INFINITY, std::nanf("")}) {
    sizes[2] = s;
    expect(status::invalid_parameter, x.get(), bad, q.get());
  }

  expect(status::shape_mismatch, x.get(), y, view<const float, 2>(q.data.data(), {2, 5}));
  expect(status::empty_input, x.get(), y, view<const float, 2>(q.data.data(), {0, 6}));
  expect(status::null_pointer, x.get(), y, view<const float, 2>(nullptr, {2, 6}));

  // The single metrics check what they read: coverage reads neither assign nor sizes nor Q.
  bench::coverage_stats cov{-5.0, -5.0, -5, -5};
  CHECK(bench::coverage(x.get(), view<const float, 2>(good.y.data.data(), {4, 5}), cov) == status::shape_mismatch);
  CHECK(cov.token == -5);
  double att = -5.0;
  bad = y;
  bad.assign = view<const std::int64_t, 1>(assign.data(), {10});  // holds −2: attention ignores it
  REQUIRE(bench::attention_error(x.get(), bad, q.get(), att) == status::ok);
  bench::reconstruction_stats rec{-5.0, -5.0, -5};
  CHECK(bench::reconstruction_error(x.get(), bad, rec) == status::index_out_of_range);
  CHECK(rec.nearest == -5);
  std::vector<bench::nearest_output> near(3, {-5, -5.0});
  CHECK(bench::nearest_outputs(none, good.y.get(), near) == status::empty_input);
  CHECK(near.size() == 3);
  CHECK(near[0].index == -5);
}

TEST_CASE("default queries: two disjoint sets of min(N/2, 256) evenly spaced originals", "[bench_fidelity]") {
  using bench::query_set;
  const std::vector<index_t> metric = bench::default_query_rows(4624, query_set::metric);
  const std::vector<index_t> ranking = bench::default_query_rows(4624, query_set::ranking);
  REQUIRE(metric.size() == 256);
  REQUIRE(ranking.size() == 256);
  CHECK(metric[1] == 18);     // 2·4624/512 = 18.06
  CHECK(ranking[0] == 9);     // 4624/512 = 9.03
  CHECK(ranking[255] == 4614);  // 511·4624/512 = 4614.97
  for (std::size_t i = 0; i < metric.size(); ++i) {
    CHECK(metric[i] == static_cast<index_t>(2 * i) * 4624 / 512);
    CHECK(ranking[i] == static_cast<index_t>(2 * i + 1) * 4624 / 512);
  }
  // Every N up to 3·limit: the sets interleave strictly (metric < ranking < next metric), so they
  // are disjoint and each evenly spread, with min(N/2, limit) rows each.
  for (index_t n = 2; n <= 3 * 8; ++n) {
    const std::vector<index_t> m = bench::default_query_rows(n, query_set::metric, 8);
    const std::vector<index_t> r = bench::default_query_rows(n, query_set::ranking, 8);
    REQUIRE(m.size() == static_cast<std::size_t>(std::min<index_t>(n / 2, 8)));
    REQUIRE(r.size() == m.size());
    CHECK(m[0] == 0);
    for (std::size_t i = 0; i < m.size(); ++i) {
      CHECK(m[i] < r[i]);
      CHECK(r[i] < (i + 1 < m.size() ? m[i + 1] : n));
    }
  }
  CHECK(bench::default_query_rows(100, query_set::metric) == bench::default_query_rows(100, query_set::metric, 50));
  CHECK(bench::default_query_rows(1, query_set::metric) == std::vector<index_t>{0});
  CHECK(bench::default_query_rows(1, query_set::ranking) == std::vector<index_t>{0});
  CHECK(bench::default_query_rows(0, query_set::metric).empty());
  CHECK(bench::default_query_rows(-3, query_set::ranking).empty());
  CHECK(bench::default_query_rows(10, query_set::metric, 0).empty());
  CHECK(bench::default_query_rows(10, query_set::metric, 4) == std::vector<index_t>{0, 2, 5, 7});
  CHECK(bench::default_query_rows(10, query_set::ranking, 4) == std::vector<index_t>{1, 3, 6, 8});

  const matrix x = random_matrix(10, 3, 91);
  const std::vector<float> q = bench::default_queries(x.get(), query_set::ranking, 4);
  REQUIRE(q.size() == 12);
  for (index_t r = 0; r < 4; ++r)
    for (index_t c = 0; c < 3; ++c) CHECK(q[static_cast<std::size_t>(r * 3 + c)] == x.at((2 * r + 1) * 10 / 8, c));
}

// --- KV schemes -------------------------------------------------------------------------------

const bench::kv_codec& scheme_named(const std::string& name) {
  for (const bench::kv_codec& s : bench::kv_codecs)
    if (name == s.name) return s;
  FAIL("no scheme " << name);
  return bench::kv_codecs[0];
}

/// An item for the KV tests: N = 300 (KIVI packs 256 keys and 172 values, VidKV 288 tokens),
/// D = 64, keys with a few outlier channels as real keys have.
matrix kv_item(index_t n = 300, index_t d = 64) {
  matrix x = random_matrix(n, d, 101);
  for (index_t i = 0; i < n; ++i) {
    x.at(i, 5) *= 6.0f;
    x.at(i, d - 1) += 2.0f;
  }
  return x;
}

TEST_CASE("KV table: names, and the stored bits per value", "[bench_fidelity][kv]") {
  CHECK(std::size(bench::kv_codecs) == 12);
  const matrix x = kv_item();
  const struct {
    const char* name;
    double keys, values;
  } expected[] = {
      {"f32", 32.0, 32.0}, {"f16", 16.0, 16.0}, {"q8_0", 8.5, 8.5},   {"q5_1", 6.0, 6.0},
      {"q5_0", 5.5, 5.5},  {"q4_1", 5.0, 5.0},  {"q4_0", 4.5, 4.5},   {"iq4_nl", 4.5, 4.5},
      // KIVI-2 at N = 300, D = 64, fp16 scale and zero per group of 32:
      //   keys   256 packed: 256·64·2 code bits + 8 groups·64 channels·2·16 + 44 residual rows·64·16
      //   values 172 packed: 172·64·2 + 172 tokens·2 groups·2·16 + 128 residual rows·64·16
      {"kivi-2", (256.0 * 64 * 2 + 8 * 64 * 32 + 44 * 64 * 16) / (300 * 64),
       (172.0 * 64 * 2 + 172 * 2 * 32 + 128 * 64 * 16) / (300 * 64)},
      {"kivi-4", (256.0 * 64 * 4 + 8 * 64 * 32 + 44 * 64 * 16) / (300 * 64),
       (172.0 * 64 * 4 + 172 * 2 * 32 + 128 * 64 * 16) / (300 * 64)},
      // VidKV 1.5/1.58, 288 packed, 12 kept: 32 channels 2-bit + scale and zero; 64 spectral
      // components 1-bit + scale; the channel order (64 int64); values ternary 2-bit + scale.
      {"vidkv-1.5", (288.0 * 32 * 2 + 9 * 32 * 32 + 288 * 64 * 1 + 9 * 64 * 16 + 64 * 64 + 12 * 64 * 16) / (300 * 64),
       (288.0 * 64 * 2 + 9 * 64 * 16 + 12 * 64 * 16) / (300 * 64)},
      {"vidkv-2", (288.0 * 64 * 2 + 9 * 64 * 32 + 64 * 64 + 12 * 64 * 16) / (300 * 64),
       (288.0 * 64 * 2 + 9 * 64 * 32 + 12 * 64 * 16) / (300 * 64)},
  };
  for (const auto& e : expected) {
    INFO(e.name);
    bench::kv_buffers b;
    REQUIRE(bench::kv_prepare(scheme_named(e.name), x.rows, x.cols, b) == status::ok);
    CHECK(b.skipped.empty());
    CHECK(b.bits.keys == Approx(e.keys).epsilon(1e-12));
    CHECK(b.bits.values == Approx(e.values).epsilon(1e-12));
    CHECK(b.bits.mean() == Approx(0.5 * (e.keys + e.values)).epsilon(1e-12));
  }
}

TEST_CASE("KV: the f32 scheme is the identity: zero error, zero KL", "[bench_fidelity][kv]") {
  const matrix x = kv_item(), q = random_matrix(16, 64, 102);
  bench::kv_buffers b;
  REQUIRE(bench::kv_prepare(scheme_named("f32"), x.rows, x.cols, b) == status::ok);
  REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
  CHECK(b.keys == x.data);
  CHECK(b.values == x.data);
  bench::kv_fidelity f;
  REQUIRE(bench::kv_measure(x.get(), q.get(), b, f) == status::ok);
  CHECK(f.keys.mse == 0.0);
  CHECK(f.values.mse == 0.0);
  CHECK(f.attention.mean == 0.0);
  CHECK(f.attention.max == 0.0);
}

TEST_CASE("KV: every scheme's KL equals tokred::attention_kl and the oracle, errors ordered by bits",
          "[bench_fidelity][kv]") {
  const matrix x = kv_item(), q = random_matrix(16, 64, 103, 2.0f);
  const view<const float, 3> keys(x.data.data(), {1, 300, 64}), queries(q.data.data(), {1, 16, 64});
  double mean_square = 0.0;
  for (float v : x.data) mean_square += static_cast<double>(v) * v;
  mean_square /= static_cast<double>(x.data.size());

  std::vector<bench::kv_fidelity> results;
  for (const bench::kv_codec& s : bench::kv_codecs) {
    INFO(s.name);
    bench::kv_buffers b;
    REQUIRE(bench::kv_prepare(s, x.rows, x.cols, b) == status::ok);
    REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
    bench::kv_fidelity f;
    REQUIRE(bench::kv_measure(x.get(), q.get(), b, f) == status::ok);
    results.push_back(f);

    const view<const float, 3> restored(b.keys.data(), {1, 300, 64}), values(b.values.data(), {1, 300, 64});
    kv_error_stats ek, ev;
    attention_kl_stats kl;
    REQUIRE(kv_error(keys, restored, ek) == status::ok);
    REQUIRE(kv_error(keys, values, ev) == status::ok);
    REQUIRE(attention_kl(queries, keys, restored, kl) == status::ok);
    CHECK(f.keys.mse == ek.mse);
    CHECK(f.values.mse == ev.mse);
    INFO("KL " << f.attention.mean << " attention_kl " << kl.mean);
    CHECK(f.attention.mean >= 0.0);
    CHECK(std::fabs(f.attention.mean - kl.mean) <= 1e-4 * kl.mean + 1e-12);
    CHECK(std::fabs(f.attention.max - kl.max) <= 1e-4 * kl.max + 1e-12);
    const std::vector<double> rows = ref::attention_kl_rows(queries, keys, restored, 0.125);
    double oracle = 0.0;
    for (double r : rows) oracle += r / static_cast<double>(rows.size());
    CHECK(std::fabs(f.attention.mean - oracle) <= 1e-4 * oracle + 1e-12);
  }
  const auto mse = [&](const char* name) {
    for (std::size_t i = 0; i < std::size(bench::kv_codecs); ++i)
      if (std::string(bench::kv_codecs[i].name) == name) return results[i].keys.mse;
    return -1.0;
  };
  const auto kl = [&](const char* name) {
    for (std::size_t i = 0; i < std::size(bench::kv_codecs); ++i)
      if (std::string(bench::kv_codecs[i].name) == name) return results[i].attention.mean;
    return -1.0;
  };
  CHECK(mse("f16") < mse("q8_0"));
  CHECK(mse("q8_0") < 1e-4 * mean_square);
  CHECK(mse("q8_0") < mse("q4_0") / 50.0);
  CHECK(mse("q5_0") < mse("q4_0"));
  CHECK(mse("q5_1") < mse("q4_1"));
  CHECK(mse("kivi-4") < mse("kivi-2"));
  CHECK(mse("vidkv-2") < mse("vidkv-1.5"));
  CHECK(kl("q8_0") < kl("q4_0"));
  CHECK(kl("kivi-4") < kl("kivi-2"));
  CHECK(kl("f16") > 0.0);
}

TEST_CASE("KV round trips are the library's own calls", "[bench_fidelity][kv]") {
  const matrix x = kv_item();
  const view<const float, 3> cache(x.data.data(), {1, 300, 64});
  for (const char* name : {"q8_0", "q4_1", "iq4_nl"}) {
    INFO(name);
    const bench::kv_codec& s = scheme_named(name);
    bench::kv_buffers b;
    REQUIRE(bench::kv_prepare(s, 300, 64, b) == status::ok);
    REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
    std::vector<std::uint8_t> blocks(static_cast<std::size_t>(300 * ggml_row_bytes(s.block, 64)));
    std::vector<float> back(x.data.size());
    const view<std::uint8_t, 3> bv(blocks.data(), {1, 300, ggml_row_bytes(s.block, 64)});
    REQUIRE(apply(cpu<>{}, ggml_quantize{s.block}, kv_inputs<float>{cache}, kv_block_outputs<>{bv}) == status::ok);
    REQUIRE(apply(cpu<>{}, ggml_dequantize{s.block}, kv_block_inputs<>{bv},
                  kv_outputs<float>{view<float, 3>(back.data(), {1, 300, 64})}) == status::ok);
    CHECK(b.keys == back);
    CHECK(b.values == back);
    CHECK(b.key_blocks == blocks);
  }
  // f16, KIVI and VidKV: what stays in full precision after the prefill is the fp16 token.
  const auto half = [&](index_t t, index_t c) { return to_float(from_float<f16>(x.at(t, c))); };
  const auto full_precision = [&](const std::vector<float>& got, index_t first) {
    bool same = true;
    for (index_t t = first; t < 300; ++t)
      for (index_t c = 0; c < 64; ++c) same = same && got[static_cast<std::size_t>(t * 64 + c)] == half(t, c);
    return same;
  };
  const auto quantized = [&](const std::vector<float>& got, index_t end) {
    index_t changed = 0;
    for (index_t t = 0; t < end; ++t)
      for (index_t c = 0; c < 64; ++c) changed += got[static_cast<std::size_t>(t * 64 + c)] != half(t, c) ? 1 : 0;
    return changed;
  };
  bench::kv_buffers b;
  REQUIRE(bench::kv_prepare(scheme_named("f16"), 300, 64, b) == status::ok);
  REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
  CHECK(full_precision(b.keys, 0));
  CHECK(full_precision(b.values, 0));
  REQUIRE(bench::kv_prepare(scheme_named("kivi-2"), 300, 64, b) == status::ok);
  REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
  CHECK(full_precision(b.keys, 256));    // keys: ⌊300/128⌋·128 packed
  CHECK(full_precision(b.values, 172));  // values: the last 128 in the residual
  CHECK(quantized(b.keys, 256) > 256 * 64 / 2);
  CHECK(quantized(b.values, 172) > 172 * 64 / 2);
  REQUIRE(bench::kv_prepare(scheme_named("vidkv-1.5"), 300, 64, b) == status::ok);
  REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
  CHECK(full_precision(b.keys, 288));  // 300 mod 32 = 12 tokens kept
  CHECK(full_precision(b.values, 288));
  CHECK(quantized(b.keys, 288) > 288 * 64 / 2);
  CHECK(quantized(b.values, 288) > 288 * 64 / 2);
}

TEST_CASE("KV round trip: repeatable, any strides, the same bits", "[bench_fidelity][kv]") {
  const matrix x = kv_item(96, 32);
  std::vector<float> mirrored(static_cast<std::size_t>(96 * 32 * 3), -9.0f);
  for (index_t t = 0; t < 96; ++t)
    for (index_t c = 0; c < 32; ++c) mirrored[static_cast<std::size_t>((95 - t) * 96 + 3 * c)] = x.at(t, c);
  const view<const float, 2> strided(mirrored.data() + 95 * 96, {96, 32}, {-96, 3});
  for (const bench::kv_codec& s : bench::kv_codecs) {
    INFO(s.name);
    bench::kv_buffers b;
    REQUIRE(bench::kv_prepare(s, 96, 32, b) == status::ok);
    REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
    const std::vector<float> keys = b.keys, values = b.values;
    REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
    CHECK(b.keys == keys);
    CHECK(b.values == values);
    REQUIRE(bench::kv_round_trip(strided, b) == status::ok);
    CHECK(b.keys == keys);
    CHECK(b.values == values);
  }
}

TEST_CASE("KV: D not a multiple of 32: the ggml types and KIVI are skipped with a reason", "[bench_fidelity][kv]") {
  const matrix x = kv_item(100, 48), q = random_matrix(4, 48, 104);
  for (const bench::kv_codec& s : bench::kv_codecs) {
    INFO(s.name);
    bench::kv_buffers b;
    const status st = bench::kv_prepare(s, 100, 48, b);
    const bool skipped = s.kind == bench::kv_kind::ggml || s.kind == bench::kv_kind::kivi;
    if (skipped) {
      CHECK(st == status::invalid_parameter);
      CHECK(b.skipped.find("D = 48") != std::string::npos);
      CHECK(bench::kv_round_trip(x.get(), b) == status::invalid_parameter);
      bench::kv_fidelity f;
      CHECK(bench::kv_measure(x.get(), q.get(), b, f) == status::invalid_parameter);
    } else {
      REQUIRE(st == status::ok);
      CHECK(b.skipped.empty());
      REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
      bench::kv_fidelity f;
      REQUIRE(bench::kv_measure(x.get(), q.get(), b, f) == status::ok);
      CHECK(f.attention.mean >= 0.0);
    }
  }
}

TEST_CASE("KV: few tokens: nothing packed yet, the round trip is exact to fp16", "[bench_fidelity][kv]") {
  const matrix x = kv_item(20, 32);  // fewer than a group: KIVI and VidKV keep every token
  for (const char* name : {"kivi-2", "vidkv-1.5"}) {
    INFO(name);
    bench::kv_buffers b;
    REQUIRE(bench::kv_prepare(scheme_named(name), 20, 32, b) == status::ok);
    CHECK(b.bits.keys == Approx(16.0));
    CHECK(b.bits.values == Approx(16.0));
    REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
    for (std::size_t i = 0; i < x.data.size(); ++i) {
      CHECK(b.keys[i] == to_float(from_float<f16>(x.data[i])));
      CHECK(b.values[i] == b.keys[i]);
    }
  }
}

TEST_CASE("KV: bad input", "[bench_fidelity][kv][bad-input]") {
  const matrix x = kv_item(64, 32), q = random_matrix(4, 32, 105);
  bench::kv_buffers b;
  CHECK(bench::kv_round_trip(x.get(), b) == status::invalid_parameter);  // not prepared
  CHECK(bench::kv_prepare(scheme_named("q8_0"), 0, 32, b) == status::empty_input);
  CHECK(bench::kv_prepare(scheme_named("q8_0"), 64, -1, b) == status::shape_mismatch);
  REQUIRE(bench::kv_prepare(scheme_named("q8_0"), 64, 32, b) == status::ok);
  CHECK(bench::kv_round_trip(view<const float, 2>(x.data.data(), {63, 32}), b) == status::shape_mismatch);
  CHECK(bench::kv_round_trip(view<const float, 2>(nullptr, {64, 32}), b) == status::null_pointer);
  REQUIRE(bench::kv_round_trip(x.get(), b) == status::ok);
  bench::kv_fidelity f;
  f.attention.mean = -5.0;
  CHECK(bench::kv_measure(x.get(), view<const float, 2>(q.data.data(), {4, 31}), b, f) == status::shape_mismatch);
  CHECK(bench::kv_measure(x.get(), view<const float, 2>(q.data.data(), {0, 32}), b, f) == status::empty_input);
  CHECK(bench::kv_measure(view<const float, 2>(x.data.data(), {64, 31}), q.get(), b, f) == status::shape_mismatch);
  CHECK(f.attention.mean == -5.0);
}

}  // namespace
}  // namespace tokred::testing
