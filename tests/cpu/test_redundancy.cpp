// tests/cpu/test_redundancy.cpp — gaussian_redundancy on CPU: against the oracle over the shared
// case table (every element type) for a stream of three chunks sharing one memory, the same bits
// and one memory update for 1–3 shares, the documented results for NaN and zero rows, and every
// bad input with the scores and the memory untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/redundancy.hpp>
#include <tokred/policy/redundancy.hpp>

#include "reference/redundancy_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr float sentinel = -4321.0f;

/// One chunk run as `nth` shares (in reverse order) into sentinel-filled scores.
template <class E>
std::vector<float> run_chunk(const gaussian_redundancy& p, const token_grid& grid,
                             const tokred::view<const E, 2>& tokens, redundancy_memory_buffers& memory, int nth) {
  const problem prob{grid, tokens.extent(1)};
  std::vector<float> scores(static_cast<std::size_t>(grid.tokens()), sentinel);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  const redundancy_inputs<E> in{grid, tokens, memory.view()};
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, score_outputs<>{make_view(scores.data(), grid.tokens())}, ws.get()) ==
            status::ok);
  return scores;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double worst_error(const std::vector<float>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = worse(worst, std::fabs(static_cast<double>(got[i]) - want[i]));
  return worst;
}

/// fp32 scores against the double oracle: each squared distance is a sum of C fp32 terms of unit
/// vectors (error about C·2⁻²⁴ · 4), and the kernel's slope is at most Σ 1/2α = 7.75.
double score_tolerance(index_t width) { return 2.0 * 7.75 * 4.0 * std::ldexp(static_cast<double>(width) + 8.0, -24); }

/// Three chunks of one stream (different data each), all sharing one memory, on one case.
template <class E>
void check_stream(const shape_case& c, const gaussian_redundancy& p) {
  const index_t width = redundancy_channels(p, c.dim);
  INFO(c.name << " " << element_name<E>() << " ratio " << p.channel_ratio << " C " << width);
  REQUIRE(width > 0);
  redundancy_memory_buffers one(width), three(width);
  ref::stc_memory oracle;
  for (std::uint64_t chunk = 0; chunk < 3; ++chunk) {
    INFO("chunk " << chunk);
    const token_matrix<E> rows = continuous_rows<E>(c.grid.tokens(), c.dim, c.rows, 300 + chunk);
    const tokred::view<const E, 2> tokens = rows.rows;
    const ref::stc_chunk want = ref::gaussian_redundancy(p, c.grid, tokens, oracle);
    const std::vector<float> got = run_chunk(p, c.grid, tokens, one, 1);
    CHECK(worst_error(got, want.scores) <= score_tolerance(width));
    CHECK(one.channels == want.channels);
    CHECK(one.chunks == oracle.chunks);
    for (std::size_t q = 0; q < one.sums.size(); ++q) CHECK(one.sums[q] == oracle.sums[q]);
    for (float s : got) CHECK((s < 0.0f && s >= -10.0f));

    // Three shares: the same bits, and the memory advanced once, to the same values.
    CHECK(same_bits(got, run_chunk(p, c.grid, tokens, three, 3)));
    CHECK(three.chunks == one.chunks);
    CHECK(three.sums == one.sums);
    CHECK(three.channels == one.channels);
  }
}

TEST_CASE("gaussian_redundancy matches the oracle over a stream on every case and element type",
          "[redundancy]") {
  for (const shape_case& c : shape_cases()) {
    for (double ratio : {0.5, 1.0}) {
      const gaussian_redundancy p{ratio};
      check_stream<float>(c, p);
      check_stream<f16>(c, p);
      check_stream<bf16>(c, p);
    }
  }
}

TEST_CASE("gaussian_redundancy: one token, a zero row, NaN and a fresh stream", "[redundancy]") {
  const gaussian_redundancy p{};
  SECTION("one token is its own frame mean: the frame term is g(0) = 5") {
    const std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.25f};
    redundancy_memory_buffers m(2);
    const std::vector<float> s = run_chunk(p, image_grid(1, 1), make_view<const float>(x.data(), 1, 4), m, 1);
    // The memory is the token itself: both distances are 0.
    CHECK(s[0] == -10.0f);
    CHECK(m.chunks == 1);
    CHECK(m.channels == std::vector<std::int64_t>{0, 1});  // all variances 0: channels ascending
  }
  SECTION("a zero row normalises to zero, not NaN") {
    std::vector<float> x(3 * 4, 0.0f);
    for (int c = 0; c < 4; ++c) x[static_cast<std::size_t>(4 + c)] = 1.0f + static_cast<float>(c);
    redundancy_memory_buffers m(2);
    const std::vector<float> s = run_chunk(p, sequence_grid(3), make_view<const float>(x.data(), 3, 4), m, 1);
    for (float v : s) CHECK(std::isfinite(v));
    ref::stc_memory oracle;
    const ref::stc_chunk want = ref::gaussian_redundancy(p, sequence_grid(3), make_view<const float>(x.data(), 3, 4), oracle);
    CHECK(worst_error(s, want.scores) <= score_tolerance(2));
  }
  SECTION("a NaN channel has a NaN variance and is ranked after every number") {
    const shape_case c{"nan", sequence_grid(9), 6, layout::contiguous};
    token_matrix<float> rows = continuous_rows<float>(9, 6, layout::contiguous, 5);
    rows.rows(4, 1) = std::numeric_limits<float>::quiet_NaN();
    redundancy_memory_buffers m(3);
    const std::vector<float> s = run_chunk(p, c.grid, tokred::view<const float, 2>(rows.rows), m, 1);
    for (std::int64_t ch : m.channels) CHECK(ch != 1);
    for (float v : s) CHECK(std::isfinite(v));
    // With every channel scored, the NaN reaches every score of the chunk through the memory.
    redundancy_memory_buffers all(6);
    for (float v : run_chunk(gaussian_redundancy{1.0}, c.grid, tokred::view<const float, 2>(rows.rows), all, 1))
      CHECK(std::isnan(v));
  }
  SECTION("chunks == 0 ignores whatever the sums held") {
    const token_matrix<float> rows = continuous_rows<float>(16, 8, layout::contiguous, 11);
    redundancy_memory_buffers clean(4), dirty(4);
    for (double& v : dirty.sums) v = 1e30;
    CHECK(same_bits(run_chunk(p, sequence_grid(16), tokred::view<const float, 2>(rows.rows), clean, 1),
                    run_chunk(p, sequence_grid(16), tokred::view<const float, 2>(rows.rows), dirty, 1)));
    CHECK(clean.sums == dirty.sums);
  }
}

TEST_CASE("gaussian_redundancy: bad input leaves the scores and the memory untouched", "[redundancy]") {
  const token_grid grid = token_grid{2, 3, 3};
  const index_t n = grid.tokens(), dim = 8;
  const token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 3);
  const tokred::view<const float, 2> tokens = rows.rows;
  const gaussian_redundancy p{};
  std::vector<float> scores(static_cast<std::size_t>(n), sentinel);
  redundancy_memory_buffers m(4);
  m.chunks = 2;
  m.sums = {1.0, 2.0, 3.0, 4.0};
  const std::vector<double> sums_before = m.sums;
  std::vector<std::byte> ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
  const workspace space{ws.data(), ws.size()};

  const auto untouched = [&] {
    for (float s : scores) if (s != sentinel) return false;
    for (std::int64_t c : m.channels) if (c != redundancy_memory_buffers::channel_sentinel) return false;
    return m.chunks == 2 && m.sums == sums_before;
  };
  const auto run = [&](const gaussian_redundancy& q, const redundancy_inputs<float>& in,
                       const score_outputs<>& out, workspace w, cpu<> exec = cpu{}) {
    const status s = apply(exec, q, in, out, w);
    CHECK(untouched());
    return s;
  };
  const score_outputs<> out{make_view(scores.data(), n)};
  const redundancy_inputs<float> good{grid, tokens, m.view()};

  CHECK(run(p, good, out, space, cpu{1, 1}) == status::invalid_exec);
  CHECK(run(gaussian_redundancy{0.0}, good, out, space) == status::invalid_ratio);
  CHECK(run(gaussian_redundancy{1.5}, good, out, space) == status::invalid_ratio);
  CHECK(run(gaussian_redundancy{std::nan("")}, good, out, space) == status::invalid_ratio);
  CHECK(run(gaussian_redundancy{0.1}, good, out, space) == status::invalid_ratio);  // int(8 · 0.1) = 0
  CHECK(run(p, {token_grid{2, -3, 3}, tokens, m.view()}, out, space) == status::shape_mismatch);
  CHECK(run(p, {token_grid{0, 3, 3}, tokred::view<const float, 2>{}, m.view()}, out, space) == status::empty_input);
  CHECK(run(p, {grid, make_view<const float>(rows.storage.data(), n - 1, dim), m.view()}, out, space) ==
        status::shape_mismatch);
  CHECK(run(p, {grid, tokred::view<const float, 2>(nullptr, {n, dim}), m.view()}, out, space) ==
        status::null_pointer);
  CHECK(run(p, {grid, make_view<const float>(rows.storage.data(), n, 0), m.view()}, out, space) ==
        status::empty_input);
  redundancy_memory<> narrow = m.view();
  narrow.sums = make_view(m.sums.data(), 3);
  CHECK(run(p, {grid, tokens, narrow}, out, space) == status::shape_mismatch);
  redundancy_memory<> no_count = m.view();
  no_count.chunks = {};
  CHECK(run(p, {grid, tokens, no_count}, out, space) == status::shape_mismatch);
  redundancy_memory<> short_channels = m.view();
  short_channels.channels = make_view(m.channels.data(), 2);
  CHECK(run(p, {grid, tokens, short_channels}, out, space) == status::shape_mismatch);
  CHECK(run(p, good, score_outputs<>{make_view(scores.data(), n - 1)}, space) == status::shape_mismatch);
  CHECK(run(p, good, score_outputs<>{tokred::view<float, 1>(nullptr, {n})}, space) == status::null_pointer);

  // Aliasing: scores over the tokens, the memory over the scores, the count inside the sums.
  std::vector<float> shared(static_cast<std::size_t>(n * dim), 0.0f);
  CHECK(run(p, {grid, make_view<const float>(shared.data(), n, dim), m.view()},
            score_outputs<>{make_view(shared.data(), n)}, space) == status::aliasing);
  std::vector<double> both(8, 0.0);
  redundancy_memory<> overlapping = m.view();
  overlapping.sums = make_view(both.data(), 4);
  overlapping.channels = make_view(reinterpret_cast<std::int64_t*>(both.data() + 2), 4);
  CHECK(run(p, {grid, tokens, overlapping}, out, space) == status::aliasing);

  CHECK(run(p, good, out, workspace{ws.data(), ws.size() - 1}) == status::workspace_too_small);

  // A workspace over the memory or the tokens: its scratch would overwrite them before the
  // memory moves on. One buffer holds both, so a missed check stays inside it.
  {
    std::vector<double> pool(ws.size() / sizeof(double) + 1, 5.0);
    redundancy_memory<> pooled = m.view();
    pooled.sums = make_view(pool.data(), 4);
    CHECK(run(p, {grid, tokens, pooled}, out, workspace{pool.data(), ws.size()}) == status::aliasing);
    CHECK(run(p, {grid, make_view<const float>(reinterpret_cast<const float*>(pool.data()), n, dim), m.view()}, out,
              workspace{pool.data(), ws.size()}) == status::aliasing);
    CHECK(std::all_of(pool.begin(), pool.end(), [](double v) { return v == 5.0; }));
  }

  // A negative count: share 0 refuses it; the other shares never read the memory.
  m.chunks = -1;
  CHECK(apply(cpu{0, 2}, p, good, out, space) == status::invalid_parameter);
  CHECK(apply(cpu{1, 2}, p, good, out, space) == status::ok);
  m.chunks = 2;
  CHECK(untouched());

  CHECK(can_implement(p, problem{grid, dim}) == status::ok);
  CHECK(can_implement(p, problem{grid, 1}) == status::invalid_ratio);
  CHECK(score_count(p, problem{grid, dim}) == n);
  CHECK(score_count(p, problem{grid, 0}) == 0);
  CHECK(redundancy_channels(p, 1152) == 576);
  CHECK(redundancy_channels(p, 7) == 3);
}

}  // namespace
