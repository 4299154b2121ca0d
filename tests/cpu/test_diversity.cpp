// tests/cpu/test_diversity.cpp — divprune, kcenter and importance_diversity on CPU: against the
// O(n²) oracle over the shared case table (every element type, scope and thread split), against
// the original DivPrune's outputs, and the documented results for repeats, zero rows, NaN and
// bad input.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/diversity_ref.hpp"
#include "reference/gather_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/diversity.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// How far below the best candidate's score (in double) a fp32 pick may fall: the rounding
/// error of a distance between rows of at most 64 elements, with a wide margin.
constexpr double rounding_slack = 1e-5;

template <class Ein, class Eout, class P>
void check_against_oracle(const P& p, const shape_case& c, int nth) {
  const index_t n = c.grid.tokens();
  const token_matrix<Ein> rows = continuous_rows<Ein>(n, c.dim, c.rows, 3 + static_cast<std::uint64_t>(n));
  const std::vector<float> w = importance(n, 17);
  const diversity_inputs<Ein> in{c.grid, rows.rows, {}, make_view(w.data(), n), {}};
  const diversity_buffers<Eout> got = run_shares<Ein, Eout>(p, in, c.dim, nth);

  // Every pick is a best candidate of its step, up to fp32 rounding.
  CHECK(ref::worst_group_shortfall(p, c.grid, view<const Ein, 2>(rows.rows), w, got.picks) <= rounding_slack);
  const index_t k = got.kept / detail::groups_of(p.within, c.grid).groups;
  std::vector<std::int64_t> kept = got.picks;
  for (index_t at = 0; at < got.kept; at += k) std::sort(kept.begin() + at, kept.begin() + at + k);
  CHECK(got.source == kept);
  bool repeats = false;
  if constexpr (std::is_same_v<P, divprune>) repeats = p.allow_repeats;
  if (!repeats) CHECK(std::adjacent_find(kept.begin(), kept.end()) == kept.end());
  CHECK(got.positions == ref::positions_of(kept, c.grid));
  CHECK(ref::gather_mismatches<Ein, Eout>(kept, rows.rows, got.tokens) == 0);
}

/// Every policy at every (ratio, scope); a three-share split at ratio 0.25. Each run rebuilds the
/// oracle's O(n²·d) distance matrix, so the grid is kept to what covers distinct code paths.
template <class Ein, class Eout>
void check_all_policies(const shape_case& c, const std::vector<double>& ratios) {
  for (const double ratio : ratios)
    for (const scope within : {scope::global, scope::per_frame}) {
      if (ratio == 1.0 && within == scope::per_frame) continue;  // as global, group by group
      const int nth = ratio == 0.25 ? 3 : 1;
      INFO(c.name << " ratio " << ratio << (within == scope::global ? " global" : " per-frame")
                  << " nth " << nth);
      const problem prob{c.grid, c.dim};
      const divprune dp = ratio_policy<divprune>(ratio, within);
      if (can_implement(dp, prob) != status::ok) continue;  // the ratio rounds to 0 tokens
      check_against_oracle<Ein, Eout>(dp, c, nth);
      divprune repeats = dp;
      repeats.allow_repeats = true;
      if (ratio < 1.0) check_against_oracle<Ein, Eout>(repeats, c, nth);
      kcenter kc = ratio_policy<kcenter>(ratio, within);
      kc.first = detail::groups_of(within, c.grid).group_tokens / 2;
      check_against_oracle<Ein, Eout>(kc, c, nth);
      check_against_oracle<Ein, Eout>(ratio_policy<importance_diversity>(ratio, within), c, nth);
    }
}

}  // namespace

TEST_CASE("diversity selections match the oracle on the case table", "[diversity]") {
  for (const shape_case& c : shape_cases()) {
    check_all_policies<float, float>(c, {0.1, 0.25, 1.0});
    check_all_policies<bf16, bf16>(c, {0.1, 0.25});
    check_all_policies<f16, float>(c, {0.25});
  }
}

/// The bits of `Op` between every pair of rows under architecture Arch, through every kernel a
/// selection uses: one pair, one row against blocks of 4, 3 and 2 rows, the sweep of one row
/// over all of them; then the column sums.
template <class Arch, detail::pair_op Op, class E>
std::vector<std::uint32_t> pair_bits(const view<const E, 2>& rows) {  // (n, dim)
  const detail::row_set<Arch, E> set{rows};
  const index_t n = set.size();
  std::vector<index_t> all(static_cast<std::size_t>(n));
  for (index_t j = 0; j < n; ++j) all[static_cast<std::size_t>(j)] = j;
  std::vector<std::uint32_t> bits;
  std::vector<float> out(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j < n; ++j) bits.push_back(detail::float_bits(set.template pair<Op>(i, j)));
    set.template pairs<Op>(i, all.data(), n, out.data());
    for (float x : out) bits.push_back(detail::float_bits(x));
    set.template sweep<Op>(i, 0, n, [&](index_t, float x) { bits.push_back(detail::float_bits(x)); });
  }
  std::vector<float> sums(static_cast<std::size_t>(set.dim()));
  detail::frame_column_sums<Arch>(rows, 0, n, sums.data());
  for (float x : sums) bits.push_back(detail::float_bits(x));
  return bits;
}

template <class Arch>
void check_pair_bits(const view<const f16, 2>& half, const view<const float, 2>& full) {
  CHECK(pair_bits<Arch, detail::pair_op::dot>(half) == pair_bits<Arch, detail::pair_op::dot>(full));
  CHECK(pair_bits<Arch, detail::pair_op::squared_distance>(half) ==
        pair_bits<Arch, detail::pair_op::squared_distance>(full));
}

TEST_CASE("the distance kernels give f16 rows the bits of fp32 rows of the same values", "[diversity][simd]") {
  // f16 rows are summed in the fp32 order and widen exactly (where the build has x86's conversion
  // instruction, with it: it returns a signalling NaN quiet, as the first fp32 operation on it
  // does). Every dot product, squared distance and column sum must have the fp32 bits, with
  // subnormals, infinities, a zero row and a signalling NaN among the values. Each sum meets at
  // most one NaN: which of two NaN operands a multiply-add passes on is the compiler's choice
  // (it may swap a product's factors), in the fp32 path as in any other. Widths around every
  // SIMD chunk (2 × 4, 8, 16 floats); the NaN sits in the SIMD part from 32 columns on.
  for (const index_t dim : {3, 7, 15, 16, 17, 32, 33, 64, 100, 300}) {
    INFO("dim " << dim);
    const index_t n = 9, last = dim - 1, middle = dim / 2;
    token_matrix<f16> half = continuous_rows<f16>(n, dim, layout::contiguous, 40 + static_cast<std::uint64_t>(dim));
    view<f16, 2> x = half.rows;
    const std::uint16_t subnormal[] = {0x0001, 0x83FF, 0x0200};
    x(1, 0).bits = subnormal[0];
    x(1, middle).bits = subnormal[1];
    x(1, last).bits = subnormal[2];
    x(2, last).bits = 0x7C00;    // +inf
    x(3, 0).bits = 0xFC00;       // −inf
    x(3, last).bits = 0x7BFF;    // the largest finite half
    x(4, middle).bits = 0xFD55;  // a signalling NaN with a sign and a payload
    for (index_t c = 0; c < dim; ++c) x(5, c).bits = c % 2 ? 0x8000 : 0x0000;  // ±0: a zero row
    for (index_t c = 0; c < dim; ++c) x(6, c).bits = subnormal[c % 3];         // subnormals only
    const token_matrix<float> full = widened(half, layout::contiguous);
    const view<const f16, 2> h = half.rows;
    const view<const float, 2> f = full.rows;
    check_pair_bits<compile_time_arch>(h, f);
#if XSIMD_WITH_FMA3_AVX2  // in an AVX-512 build, F16C's 8-lane conversion too
    // (An architecture pinned without FMA below the build's ISA is left out: GCC may contract
    // its two-rounding multiply-adds in one instantiation and not in the other.)
    check_pair_bits<xsimd::fma3<xsimd::avx2>>(h, f);
#endif
  }
}

TEST_CASE("diversity: f16 rows select as fp32 rows of the same values", "[diversity]") {
  // The documented contract: computing in fp32 from exact conversions, in the order fp32 rows
  // are summed in, so the picks are the fp32 picks and the rows moved the same values.
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    const token_matrix<f16> half = continuous_rows<f16>(n, c.dim, c.rows, 3 + static_cast<std::uint64_t>(n));
    const token_matrix<float> full = widened(half, c.rows);
    const std::vector<float> w = importance(n, 17);
    const diversity_inputs<f16> in_half{c.grid, half.rows, {}, make_view(w.data(), n), {}};
    const diversity_inputs<float> in_full{c.grid, full.rows, {}, make_view(w.data(), n), {}};
    const auto same = [&](const auto& p) {
      const diversity_buffers<float> a = run_shares<f16, float>(p, in_half, c.dim, 2);
      const diversity_buffers<float> b = run_shares<float, float>(p, in_full, c.dim, 2);
      return a.picks == b.picks && a.source == b.source && a.tokens == b.tokens;
    };
    for (const double ratio : {0.1, 0.5})
      for (const scope within : {scope::global, scope::per_frame}) {
        INFO(c.name << " ratio " << ratio << (within == scope::global ? " global" : " per-frame"));
        const divprune dp = ratio_policy<divprune>(ratio, within);
        if (can_implement(dp, problem{c.grid, c.dim}) != status::ok) continue;
        CHECK(same(dp));
        divprune repeats = dp;
        repeats.allow_repeats = true;
        CHECK(same(repeats));
        CHECK(same(ratio_policy<kcenter>(ratio, within)));
        CHECK(same(ratio_policy<importance_diversity>(ratio, within)));
        // widen_once: the fp16 rows widened once per group into the workspace (the SSE2 build
        // makes the copy; a build with a conversion instruction ignores the flag) — still the
        // fp32 picks.
        const auto once = [](auto policy) {
          policy.widen_once = true;
          return policy;
        };
        CHECK(same(once(dp)));
        CHECK(same(once(ratio_policy<kcenter>(ratio, within))));
        CHECK(same(once(ratio_policy<importance_diversity>(ratio, within))));
      }
  }
}

TEST_CASE("diversity: widen_once reserves a group of fp32 rows per share, for every element type",
          "[diversity]") {
  const problem prob{token_grid{4, 6, 6}, 40};  // 144 tokens
  divprune global = ratio_policy<divprune>(0.25, scope::global), wide = global;
  wide.widen_once = true;
  for (const int nth : {1, 3}) {
    const std::size_t plain = workspace_bytes(cpu{0, nth}, global, prob);
    CHECK(workspace_bytes(cpu{0, nth}, wide, prob) >= plain + static_cast<std::size_t>(nth) * 144 * 40 * 4);
    CHECK(workspace_bytes(cpu{0, nth}, wide, prob) <= plain + static_cast<std::size_t>(nth) * (144 * 40 * 4 + 64));
  }
  divprune frames = ratio_policy<divprune>(0.25, scope::per_frame), wide_frames = frames;
  wide_frames.widen_once = true;  // one frame's 36 rows at a time
  CHECK(workspace_bytes(cpu{}, wide_frames, prob) >= workspace_bytes(cpu{}, frames, prob) + 36 * 40 * 4);
  CHECK(workspace_bytes(cpu{}, wide_frames, prob) <= workspace_bytes(cpu{}, frames, prob) + 36 * 40 * 4 + 64);
  // fp32 and bf16 rows run with the flag too (the copy is left unused): the same picks.
  for (const layout how : {layout::contiguous, layout::strided}) {
    const token_matrix<bf16> rows = continuous_rows<bf16>(144, 40, how, 5);
    const diversity_inputs<bf16> in{prob.grid, rows.rows, {}, {}, {}};
    CHECK(run_shares<bf16, bf16>(wide, in, 40, 2).picks == run_shares<bf16, bf16>(global, in, 40, 2).picks);
  }
}

TEST_CASE("diversity: the workspace is the carve-up docs/policies give, row copies included", "[diversity]") {
  // docs/policies/divprune.md and cdpruner.md: 24 × 24 tokens of D = 1024 keeping 56 on one share.
  const problem prob{image_grid(24, 24), 1024};
  const keep_budget keep = keep_budget::count(56);
  CHECK(workspace_bytes(cpu{}, divprune{keep}, prob) == 262772);
  CHECK(workspace_bytes(cpu{}, kcenter{keep}, prob) == 249271);
  CHECK(workspace_bytes(cpu{}, importance_diversity{keep}, prob) == 249271);
  CHECK(workspace_bytes(cpu{}, cdpruner{keep}, prob) == 386645);
  // The picks' rows take D rounded up to whole 64-byte lines of fp32, for every element type;
  // divprune's centre, D floats.
  const problem narrow{image_grid(24, 24), 1009};
  CHECK(workspace_bytes(cpu{}, kcenter{keep}, narrow) == 249271);
  CHECK(workspace_bytes(cpu{}, divprune{keep}, narrow) == 262772 - 4 * 15);
  CHECK(workspace_bytes(cpu{0, 3}, divprune{keep}, narrow) == 3 * (262772 - 4 * 15));
}

TEST_CASE("divprune: the first pick's scan order brings every row once", "[diversity]") {
  // Each row of the group but the candidate and its neighbours at the three offsets (compared
  // before the scans), exactly once: by the ring, and by the rows by centrality (here a shuffled
  // order).
  rng r(41);
  for (const index_t n : {1, 2, 3, 7, 24, 97, 576})
    for (const index_t near : {0, 1, 5, 24})
      for (const index_t frame : {index_t{0}, 6 * near}) {
        const index_t offsets[3] = {1, near > 1 && near < n ? near : 0, frame > 1 && frame < n ? frame : 0};
        std::vector<std::uint64_t> hubs(static_cast<std::size_t>(n));
        for (index_t i = 0; i < n; ++i) hubs[static_cast<std::size_t>(i)] = detail::rank_key(r.uniform(), i);
        std::sort(hubs.begin(), hubs.end(), [](std::uint64_t a, std::uint64_t b) { return a > b; });
        for (const index_t j : {index_t{0}, n / 3, n / 2, n - 1}) {
          std::vector<index_t> expected;
          for (index_t i = 0; i < n; ++i) {
            const index_t gap = i > j ? i - j : j - i;
            if (gap != 0 && gap != offsets[0] && gap != offsets[1] && gap != offsets[2]) expected.push_back(i);
          }
          for (const bool ranked : {false, true}) {
            INFO("n " << n << " near " << near << " frame " << frame << " j " << j << (ranked ? " by centrality" : " ring"));
            detail::scan_order order(j, n, offsets, ranked ? hubs.data() : nullptr);
            std::vector<index_t> got;
            index_t batch[4];
            for (index_t count; (count = order.next(batch)) > 0;) {
              CHECK(count <= 4);
              got.insert(got.end(), batch, batch + count);
            }
            std::sort(got.begin(), got.end());
            CHECK(got == expected);
          }
        }
      }
}

/// DivPrune's first pick by its definition, from every pair's distance as the library's kernels
/// compute it (the same bits whichever kernel, in either argument order): the largest
/// second-smallest entry of a column (the row's own distance included, NaN ignored), ties to the
/// lower index, rows with a non-finite norm last.
std::int64_t first_pick_by_definition(const view<const float, 2>& rows) {
  using namespace detail;
  const row_set<compile_time_arch, float> set{rows};
  const index_t n = set.size();
  std::vector<float> scale(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i)
    scale[static_cast<std::size_t>(i)] = maxmin_scale<distance_kind::cosine>(set.template pair<pair_op::dot>(i, i));
  std::uint64_t best_key = 0;
  std::int64_t best = 0;
  for (index_t j = 0; j < n; ++j) {
    two_smallest column{std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity()};
    for (index_t i = 0; i < n; ++i)
      column.add(maxmin_distance<distance_kind::cosine>(set.template pair<pair_op::dot>(i, j),
                                                        scale[static_cast<std::size_t>(i)],
                                                        scale[static_cast<std::size_t>(j)]));
    const float score = std::isnan(scale[static_cast<std::size_t>(j)]) ? std::numeric_limits<float>::quiet_NaN() : column.second;
    if (rank_key(score, j) > best_key) best_key = rank_key(score, j), best = j;
  }
  return best;
}

/// (frames·h·w, dim) rows: `fields` smooth spatial fields of random directions plus noise, the
/// same in every frame but for a drift and fresh noise of `jitter`; or, with no fields, i.i.d.
/// rows about a shared offset (no local structure).
std::vector<float> structured_rows(index_t frames, index_t h, index_t w, index_t dim, int fields, float jitter,
                                   std::uint64_t seed) {
  rng r(seed);
  std::vector<float> direction(static_cast<std::size_t>(fields * dim)), phase(static_cast<std::size_t>(2 * fields));
  for (float& x : direction) x = r.uniform();
  for (float& x : phase) x = 3.0f * r.uniform();
  std::vector<float> rows(static_cast<std::size_t>(frames * h * w * dim));
  for (index_t t = 0; t < frames; ++t)
    for (index_t y = 0; y < h; ++y)
      for (index_t x = 0; x < w; ++x)
        for (index_t c = 0; c < dim; ++c) {
          float v = fields > 0 ? jitter * r.uniform() : 0.2f + r.uniform();
          for (int f = 0; f < fields; ++f)
            v += direction[static_cast<std::size_t>(f * dim + c)] *
                 std::sin(0.4f * static_cast<float>(y + f) + phase[static_cast<std::size_t>(2 * f)] + 0.05f * static_cast<float>(t)) *
                 std::cos(0.3f * static_cast<float>(x) + phase[static_cast<std::size_t>(2 * f + 1)]);
          rows[static_cast<std::size_t>(((t * h + y) * w + x) * dim + c)] = v;
        }
  return rows;
}

TEST_CASE("divprune: the first pick is the argmax over every pair, with or without local structure",
          "[diversity]") {
  // The pruned scan against the definition on rows it prunes well (image-like, one frame or a
  // video with its frames' neighbours along t) and on rows it cannot (i.i.d.: the scans are
  // projected to run long, and the rows are ranked by centrality), with duplicate, zero and NaN
  // rows mixed in; for every thread split.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct input {
    const char* name;
    index_t frames, h, w, dim;
    int fields;
    float jitter;
  };
  for (const input& c : {input{"image-like", 1, 24, 24, 48, 6, 0.1f}, input{"video", 6, 10, 12, 32, 6, 0.05f},
                         input{"i.i.d.", 1, 24, 24, 32, 0, 0.0f}, input{"i.i.d. video", 4, 12, 12, 16, 0, 0.0f}})
    for (const bool specials : {false, true}) {
      const index_t n = c.frames * c.h * c.w;
      std::vector<float> rows = structured_rows(c.frames, c.h, c.w, c.dim, c.fields, c.jitter, 5 + static_cast<std::uint64_t>(n));
      if (specials) {  // a duplicate pair, a zero row and a NaN row
        std::copy_n(rows.begin() + 7 * c.dim, c.dim, rows.begin() + (n - 9) * c.dim);
        std::fill_n(rows.begin() + (n / 2) * c.dim, c.dim, 0.0f);
        rows[static_cast<std::size_t>((n / 3) * c.dim + 1)] = nan;
      }
      const view<const float, 2> x = make_view(static_cast<const float*>(rows.data()), n, c.dim);
      const diversity_inputs<float> in{token_grid{c.frames, c.h, c.w}, x, {}, {}, {}};
      INFO(c.name << (specials ? " with duplicate, zero and NaN rows" : ""));
      const std::int64_t expected = first_pick_by_definition(x);
      for (const int nth : {1, 2})
        CHECK(run_shares<float, float>(divprune{keep_budget::count(1)}, in, c.dim, nth).picks ==
              std::vector<std::int64_t>{expected});
    }
}

TEST_CASE("diversity: the picks do not depend on where the rows start", "[diversity]") {
  // Every policy reads the picks' rows from aligned copies and the others in place; rows that
  // start 0 to 7 elements past a 64-byte boundary select alike, in fp32 and bf16.
  const token_grid grid = image_grid(8, 8);
  const index_t n = grid.tokens(), dim = 100;
  const auto check = [&](auto element) {
    using E = decltype(element);
    const token_matrix<E> base = continuous_rows<E>(n, dim, layout::contiguous, 11);
    const std::vector<float> w = importance(n, 5);
    std::vector<E> buffer(static_cast<std::size_t>(n * dim + 64));
    const auto picks_at = [&](index_t skip, const auto& policy) {
      E* start = buffer.data();
      while (reinterpret_cast<std::uintptr_t>(start) % 64 != 0) ++start;
      start += skip;
      for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < dim; ++c) start[i * dim + c] = base.rows(i, c);
      const diversity_inputs<E> in{grid, make_view<const E>(start, n, dim), {}, make_view(w.data(), n), {}};
      return run_shares<E, E>(policy, in, dim).picks;
    };
    const keep_budget keep = keep_budget::count(13);
    for (index_t skip = 1; skip < 8; ++skip) {
      INFO("skip " << skip);
      CHECK(picks_at(skip, divprune{keep}) == picks_at(0, divprune{keep}));
      CHECK(picks_at(skip, kcenter{keep}) == picks_at(0, kcenter{keep}));
      CHECK(picks_at(skip, importance_diversity{keep}) == picks_at(0, importance_diversity{keep}));
      CHECK(picks_at(skip, cdpruner{keep}) == picks_at(0, cdpruner{keep}));
    }
  };
  check(float{});
  check(bf16{});
}

TEST_CASE("DivPrune original: kept set, pick order and rows", "[diversity][golden]") {
  for (const std::string name : {"c01_n576_d64_r0098", "c02_n576_d64_k1"}) {
    INFO(name);
    const std::string dir = golden_case("divprune", name);
    const io::npy_array input = load_npy(dir + "input.npy");            // (N, D) float32
    const io::npy_array order = load_npy(dir + "kept_indices.npy");     // (k,) pick order
    const io::npy_array sorted = load_npy(dir + "kept_indices_sorted.npy");
    const io::npy_array rows = load_npy(dir + "tokens.npy");            // (k, D)
    const index_t n = input.shape.at(0), dim = input.shape.at(1);
    const std::vector<float> x = input.as<float>();
    const double ratio = name == "c01_n576_d64_r0098" ? 0.098 : 0.001;  // SUBSET_RATIO
    const divprune policy = divprune::original(ratio);
    const diversity_inputs<float> in{image_grid(24, 24), make_view(x.data(), n, dim), {}, {}, {}};
    REQUIRE(retained_count(policy, problem{in.grid, dim}) == order.shape.at(0));
    const diversity_buffers<float> got = run_shares<float, float>(policy, in, dim);
    CHECK(got.picks == order.as<std::int64_t>());
    CHECK(got.source == sorted.as<std::int64_t>());
    CHECK(got.tokens == rows.as<float>());
    // The default (no repeats) makes the same choices whenever the original repeats nothing.
    divprune no_repeats = policy;
    no_repeats.allow_repeats = false;
    CHECK(run_shares<float, float>(no_repeats, in, dim).picks == order.as<std::int64_t>());
  }
}

TEST_CASE("divprune: duplicates are picked again only with allow_repeats", "[diversity]") {
  // Three copies of a and one b: b is the most isolated, then a; then every candidate is at
  // distance 0 from a pick, and the original picks index 0 again.
  const float x[4 * 2] = {1, 0, 1, 0, 1, 0, 0, 1};
  const diversity_inputs<float> in{sequence_grid(4), make_view(x, 4, 2), {}, {}, {}};
  divprune p{keep_budget::count(3)};
  CHECK(run_shares<float, float>(p, in, 2).picks == std::vector<std::int64_t>{3, 0, 1});
  p.allow_repeats = true;
  const diversity_buffers<float> repeated = run_shares<float, float>(p, in, 2);
  CHECK(repeated.picks == std::vector<std::int64_t>{3, 0, 0});
  CHECK(repeated.source == std::vector<std::int64_t>{0, 0, 3});
  CHECK(repeated.tokens == std::vector<float>{1, 0, 1, 0, 0, 1});
}

TEST_CASE("divprune: a zero row is at distance 1 from every row; a NaN row ranks last",
          "[diversity]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  {
    const float x[3 * 2] = {0, 0, 1, 0, 1, 0.1f};
    const diversity_inputs<float> in{sequence_grid(3), make_view(x, 3, 2), {}, {}, {}};
    CHECK(run_shares<float, float>(divprune{keep_budget::count(1)}, in, 2).picks == std::vector<std::int64_t>{0});
  }
  {
    const float x[4 * 2] = {nan, 1, 1, 0, 0, 1, 1, 0.5f};
    const diversity_inputs<float> in{sequence_grid(4), make_view(x, 4, 2), {}, {}, {}};
    CHECK(run_shares<float, float>(divprune{keep_budget::count(4)}, in, 2).picks ==
          std::vector<std::int64_t>{2, 1, 3, 0});
    CHECK(run_shares<float, float>(kcenter{keep_budget::count(4)}, in, 2).picks ==
          std::vector<std::int64_t>{0, 1, 2, 3});
  }
}

TEST_CASE("divprune, importance_diversity: a row of squared norm below FLT_MIN counts as a zero row",
          "[diversity]") {
  // Two rows of norm ~1e-20: their scales (1e20 each) multiplied past FLT_MAX, and their
  // distances came out -inf (to itself) and NaN (0 · inf). Now each is a zero row. A row above
  // the bound is normalised as any other.
  const index_t n = 6, dim = 2;
  const token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 14);
  const auto with = [&](float scale) {
    std::vector<float> x;
    for (index_t i = 0; i < n; ++i)
      for (index_t d = 0; d < dim; ++d) x.push_back(rows.rows(i, d) * (i == 1 || i == 4 ? scale : 1.0f));
    return x;
  };
  const std::vector<float> tiny = with(1e-20f), zero = with(0.0f);
  const std::vector<float> scores = {1.0f, 0.5f, 0.75f, 0.25f, 1.0f, 0.5f};
  const auto picks = [&](const auto& policy, const std::vector<float>& x) {
    const diversity_inputs<float> in{sequence_grid(n), make_view(x.data(), n, dim), {}, make_view(scores.data(), n), {}};
    return run_shares<float, float>(policy, in, dim).picks;
  };
  for (const index_t k : {2, 4, 6}) {
    INFO("k " << k);
    CHECK(picks(divprune{keep_budget::count(k)}, tiny) == picks(divprune{keep_budget::count(k)}, zero));
    CHECK(picks(importance_diversity{keep_budget::count(k)}, tiny) == picks(importance_diversity{keep_budget::count(k)}, zero));
  }
  // Row 0 of norm 2^-62 (squared 2^-124, every product exact): the distances of the unit row.
  const std::vector<float> small = {0x1p-62f, 0.0f, 0.8f, 0.6f, 0.0f, 1.0f, -0.6f, 0.8f};
  const std::vector<float> unit = {1.0f, 0.0f, 0.8f, 0.6f, 0.0f, 1.0f, -0.6f, 0.8f};
  const auto picks4 = [&](const std::vector<float>& x) {
    const diversity_inputs<float> in{sequence_grid(4), make_view(x.data(), 4, 2), {}, {}, {}};
    return run_shares<float, float>(divprune{keep_budget::count(3)}, in, 2).picks;
  };
  CHECK(picks4(small) == picks4(unit));
}

TEST_CASE("diversity: one token, all tokens, features narrower than the rows", "[diversity]") {
  const token_matrix<float> rows = continuous_rows<float>(24, 12, layout::contiguous, 9);
  const diversity_inputs<float> one{sequence_grid(1), make_view(&rows.rows(0, 0), 1, 12), {}, {}, {}};
  CHECK(run_shares<float, float>(divprune{keep_budget::count(1)}, one, 12).picks == std::vector<std::int64_t>{0});

  const diversity_inputs<float> all{sequence_grid(24), rows.rows, {}, {}, {}};
  const diversity_buffers<float> every = run_shares<float, float>(divprune{keep_budget::ratio(1.0, rounding::floor)}, all, 12);
  std::vector<std::int64_t> sorted = every.picks;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == every.source);
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());

  // Distances from the first 4 columns only (a deepstack-style view); whole 12-wide rows move.
  const view<const float, 2> narrow(&rows.rows(0, 0), {24, 4}, {12, 1});
  const diversity_inputs<float> in{sequence_grid(24), rows.rows, narrow, {}, {}};
  const divprune p{keep_budget::count(5)};
  const diversity_buffers<float> got = run_shares<float, float>(p, in, 12);
  CHECK(got.picks == ref::greedy_picks(ref::rule_of(p, narrow), 5));
  CHECK(got.tokens.size() == 5 * 12);
}

TEST_CASE("diversity: bad input leaves every output untouched", "[diversity][bad-input]") {
  const token_matrix<float> rows = continuous_rows<float>(16, 8, layout::contiguous, 4);
  std::vector<float> w(16, 1.0f);
  const diversity_inputs<float> in{sequence_grid(16), rows.rows, {}, make_view(w.data(), 16), {}};
  const problem prob{in.grid, 8};
  diversity_buffers<float> out(4, 8);
  host_workspace ws(1 << 16);

  CHECK(apply(cpu{}, divprune{keep_budget::count(0)}, in, out.outputs(), ws.get()) == status::invalid_budget);
  CHECK(apply(cpu{}, divprune{keep_budget::count(17)}, in, out.outputs(), ws.get()) ==
        status::budget_exceeds_input);
  CHECK(can_implement(kcenter{keep_budget::count(4), scope::global, 16}, prob) == status::invalid_parameter);
  CHECK(retained_count(kcenter{keep_budget::count(4), scope::global, -1}, prob) == 0);
  CHECK(apply(cpu{1, 1}, divprune{keep_budget::count(4)}, in, out.outputs(), ws.get()) == status::invalid_exec);

  const view<const float, 2> short_features(&rows.rows(0, 0), {15, 8}, {8, 1});
  CHECK(apply(cpu{}, divprune{keep_budget::count(4)},
              diversity_inputs<float>{in.grid, rows.rows, short_features, {}, {}}, out.outputs(),
              ws.get()) == status::shape_mismatch);
  CHECK(apply(cpu{}, importance_diversity{keep_budget::count(4)},
              diversity_inputs<float>{in.grid, rows.rows, {}, {}, {}}, out.outputs(), ws.get()) ==
        status::shape_mismatch);

  diversity_outputs<float> overlapping = out.outputs();
  overlapping.picks = make_view(out.source.data(), 4);
  CHECK(apply(cpu{}, divprune{keep_budget::count(4)}, in, overlapping, ws.get()) == status::aliasing);

  for (const float bad : {-1.0f, std::numeric_limits<float>::infinity()}) {
    w[3] = bad;
    CHECK(apply(cpu{}, importance_diversity{keep_budget::count(4)}, in, out.outputs(), ws.get()) ==
          status::invalid_parameter);
  }
  w[3] = 1.0f;

  const std::size_t need = workspace_bytes(cpu{}, divprune{keep_budget::count(4)}, prob);
  host_workspace small(need - 1);
  CHECK(apply(cpu{}, divprune{keep_budget::count(4)}, in, out.outputs(), small.get()) ==
        status::workspace_too_small);
  CHECK(out.untouched());
}

TEST_CASE("importance_diversity: a weight-0 token scores 0 after a first pick whose row is not finite",
          "[diversity]") {
  // Token 0 (the most important) has an infinite element: every distance to it is NaN, so the
  // others' nearest distances stay +inf after it. Token 3 (weight 0) scored 0·inf = NaN there,
  // and the lazy greedy kept that stale NaN key, which ranks below everything, after the next
  // pick made its score 0: token 2 (a NaN row, always NaN) was picked before it.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const float x[4 * 2] = {inf, 0, 1, 0, nan, 1, 0.6f, 0.8f};
  const float w[4] = {1.0f, 0.5f, 0.5f, 0.0f};
  const diversity_inputs<float> in{sequence_grid(4), make_view(x, 4, 2), {}, make_view(w, 4), {}};
  CHECK(run_shares<float, float>(importance_diversity{keep_budget::count(3)}, in, 2).picks ==
        std::vector<std::int64_t>{0, 1, 3});
  CHECK(detail::weighted_distance(0.0f, inf) == 0.0f);
  CHECK(detail::weighted_distance(0.5f, inf) == inf);
}

TEST_CASE("importance_diversity: a NaN score ranks last", "[diversity]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float x[3 * 2] = {1, 0, 0, 1, 1, 1};
  const float w[3] = {nan, 0.5f, 0.25f};
  const diversity_inputs<float> in{sequence_grid(3), make_view(x, 3, 2), {}, make_view(w, 3), {}};
  CHECK(run_shares<float, float>(importance_diversity{keep_budget::count(3)}, in, 2).picks ==
        std::vector<std::int64_t>{1, 2, 0});
}
