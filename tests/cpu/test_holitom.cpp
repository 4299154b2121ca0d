// tests/cpu/test_holitom.cpp — holitom on CPU: the original's golden output, the segmentation by
// hand (the strict > of its DP, max_window), the oracle over the shared case table (every element
// type, both layouts, blend and group mean, contextual clusters, thread splits), the merge
// invariants (sizes, mass, unmerge), and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/holitom.hpp>

#include "io/npy.hpp"
#include "reference/holitom_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Sentinel-filled outputs of holitom, sized by the bound.
template <class E>
struct holitom_buffers : merge_buffers<E> {
  std::vector<std::int64_t> count{-1};
  std::vector<std::int64_t> window_start;
  std::vector<double> ratio{-1.0};

  holitom_buffers(index_t bound, const token_grid& grid, index_t dim)
      : merge_buffers<E>(bound, grid.tokens(), dim), window_start(static_cast<std::size_t>(grid.frames), -9) {}

  holitom_outputs<E> outputs() {
    holitom_outputs<E> o = merge_buffers<E>::template outputs<holitom_outputs<E>>();
    o.count = make_view(count.data(), 1);
    o.window_start = make_view(window_start.data(), static_cast<index_t>(window_start.size()));
    o.retain_ratio = make_view(ratio.data(), 1);
    return o;
  }
  bool untouched() const {
    return merge_buffers<E>::untouched() && count[0] == -1 && ratio[0] == -1.0 &&
           std::all_of(window_start.begin(), window_start.end(), [](std::int64_t s) { return s == -9; });
  }
  bool same_bits(const holitom_buffers& o) const {
    return merge_buffers<E>::same_bits(o) && count == o.count && window_start == o.window_start && ratio == o.ratio;
  }
};

/// holitom run as `nth` shares, in reverse order, every output requested.
template <class Ein, class Eout>
holitom_buffers<Eout> run_holitom(const holitom& p, const holitom_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t bound = retained_count(p, prob);
  REQUIRE(bound > 0);
  holitom_buffers<Eout> out(bound, in.grid, dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// Everything against the oracle: the count, provenance, sizes, assign, windows and r' exactly,
/// the rows within tolerance, the rows past the count untouched.
template <class E>
void check_result(const holitom_buffers<E>& got, const ref::holitom_result& want) {
  const index_t count = got.count[0];
  REQUIRE(count == want.count());
  const auto head = [count](const auto& v, index_t per_row) {
    return std::vector<typename std::decay_t<decltype(v)>::value_type>(v.begin(), v.begin() + count * per_row);
  };
  CHECK(head(got.source, 1) == want.source);
  CHECK(head(got.positions, 3) == want.positions);
  CHECK(got.assign == want.assign);
  CHECK(got.window_start == want.window_start);
  CHECK(got.ratio[0] == want.ratio);
  std::size_t bad_size = 0;
  for (index_t j = 0; j < count; ++j)
    bad_size += static_cast<double>(got.sizes[static_cast<std::size_t>(j)]) != want.sizes[static_cast<std::size_t>(j)];
  CHECK(bad_size == 0);
  CHECK(row_mismatches(head(got.tokens, got.dim), want.tokens) == 0);
  const bool tail_untouched =
      std::all_of(got.source.begin() + count, got.source.end(), [](std::int64_t s) { return s == -12345; }) &&
      std::all_of(got.tokens.begin() + count * got.dim, got.tokens.end(), [](E t) { return to_float(t) == -3.5f; });
  CHECK(tail_untouched);
}

/// The invariants of every result: each kept row's size is the number of inputs assigned to it
/// (newline rows: none, size 0), so the sizes add up to N minus the dropped tokens.
template <class E>
void check_invariants(const holitom_buffers<E>& got) {
  const index_t count = got.count[0];
  std::vector<double> members(static_cast<std::size_t>(count), 0.0);
  index_t dropped = 0, out_of_range = 0;
  for (std::int64_t a : got.assign) {
    if (a == -1) ++dropped;
    else if (a < 0 || a >= count) ++out_of_range;
    else ++members[static_cast<std::size_t>(a)];
  }
  REQUIRE(out_of_range == 0);
  index_t bad = 0;
  double total = 0;
  for (index_t j = 0; j < count; ++j) {
    bad += members[static_cast<std::size_t>(j)] != got.sizes[static_cast<std::size_t>(j)];
    total += got.sizes[static_cast<std::size_t>(j)];
  }
  CHECK(bad == 0);
  CHECK(total == static_cast<double>(got.n - dropped));
}

/// A video with still stretches: row (t, p) repeats (t − 1, p) exactly with probability 3/4,
/// except at a scene cut (about one frame in four) where every row is new. Values are the case
/// table's multiples of 1/16, so the still means and distances are exact.
template <class E>
token_matrix<E> still_video(const token_grid& grid, index_t dim, layout how, std::uint64_t seed) {
  token_matrix<E> m = make_tokens<E>(grid.tokens(), dim, how, seed);
  rng r(seed * 7 + 1);
  const index_t hw = grid.frame_tokens();
  for (index_t t = 1; t < grid.frames; ++t) {
    const bool cut = r.next() % 4 == 0;
    for (index_t q = 0; q < hw && !cut; ++q)
      if (r.next() % 4 != 0)
        for (index_t c = 0; c < dim; ++c) m.rows(t * hw + q, c) = m.rows((t - 1) * hw + q, c);
  }
  return m;
}

/// The grids a case runs as: its own, and for an image or a sequence (T = 1: one frame, nothing
/// still) its rows as frames — H frames of one row of W, or W frames of one token.
std::vector<token_grid> grids_of(const shape_case& c) {
  std::vector<token_grid> grids = {c.grid};
  if (c.grid.frames == 1) {
    if (c.grid.height > 1) grids.push_back(token_grid{c.grid.height, 1, c.grid.width});
    else if (c.grid.width > 1) grids.push_back(token_grid{c.grid.width, 1, 1});
  }
  return grids;
}

/// The parameter sets each case runs: the defaults, other ratios, contextual clusters, the
/// group mean, a short max_window, the frame_rows layout.
std::vector<holitom> parameter_sets() {
  std::vector<holitom> sets;
  holitom p{};
  sets.push_back(p);
  p.retain_ratio = 0.25;
  p.layout = holitom_layout::frame_rows;
  sets.push_back(p);
  p.contextual = 0.5;
  p.merge = cluster_merge::group_mean;
  sets.push_back(p);
  p = holitom{};
  p.retain_ratio = 0.6;
  p.contextual = 1.0;
  p.max_window = 2;
  p.k = 3;
  sets.push_back(p);
  return sets;
}

template <class Ein, class Eout>
void run_case_table() {
  std::size_t runs = 0, joined = 0, clustered = 0;
  for (const shape_case& c : shape_cases())
    for (const token_grid& grid : grids_of(c)) {
      const index_t n = grid.tokens();
      const token_matrix<Ein> x = still_video<Ein>(grid, c.dim, c.rows, 41 + static_cast<std::uint64_t>(n));
      const std::vector<float> attn = tie_heavy_scores(n, 43 + static_cast<std::uint64_t>(n));
      std::vector<Ein> newline(static_cast<std::size_t>(c.dim));
      std::vector<double> newline_values;
      for (index_t col = 0; col < c.dim; ++col) {
        newline[static_cast<std::size_t>(col)] = from_float<Ein>(0.25f * static_cast<float>(col % 5) - 0.5f);
        newline_values.push_back(to_float(newline[static_cast<std::size_t>(col)]));
      }
      holitom_inputs<Ein> in{grid, x.rows, make_view<const float>(attn.data(), n), {}};
      for (const holitom& p : parameter_sets()) {
        INFO(c.name << " grid " << grid.frames << "x" << grid.height << "x" << grid.width << " r " << p.retain_ratio
                    << " D " << p.contextual << " layout " << static_cast<int>(p.layout));
        const bool rows = p.layout == holitom_layout::frame_rows;
        in.newline = rows ? make_view<const Ein>(newline.data(), c.dim) : view<const Ein, 1>{};
        const ref::holitom_result want =
            ref::holitom_run(p, grid, view<const Ein, 2>(x.rows), attn, rows ? newline_values : std::vector<double>{});
        REQUIRE_FALSE(want.ambiguous);
        const holitom_buffers<Eout> got = run_holitom<Ein, Eout>(p, in, c.dim);
        check_result(got, want);
        check_invariants(got);
        for (int nth : {2, 3}) {
          INFO("nth " << nth);
          CHECK(run_holitom<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
        }
        ++runs;
        for (std::size_t t = 1; t < want.window_start.size(); ++t) joined += want.window_start[t] != static_cast<std::int64_t>(t);
        for (std::size_t j = 0; j < want.source.size(); ++j) clustered += want.sizes[j] > 1.0;
      }
    }
  CHECK(runs == 4 * (10 + 6));  // 10 cases, 6 images or sequences also as frames
  // The data exercise the whole method: frames joined into windows, rows standing for several.
  CHECK(joined > 100);
  CHECK(clustered > 100);
}

/// Rows of `frames` frames of `hw` positions, each the previous frame's row at that position
/// when still[t − 1][q], its negation otherwise (cosine exactly 1 or −1).
std::vector<float> scripted_video(const std::vector<std::vector<int>>& still, index_t hw, index_t dim) {
  const auto frames = static_cast<index_t>(still.size()) + 1;
  std::vector<float> x(static_cast<std::size_t>(frames * hw * dim));
  for (index_t q = 0; q < hw; ++q)
    for (index_t c = 0; c < dim; ++c) x[static_cast<std::size_t>(q * dim + c)] = static_cast<float>((q * 5 + c * 3) % 7) - 3.0f + 0.5f;
  for (index_t t = 1; t < frames; ++t)
    for (index_t q = 0; q < hw; ++q)
      for (index_t c = 0; c < dim; ++c) {
        const float before = x[static_cast<std::size_t>(((t - 1) * hw + q) * dim + c)];
        x[static_cast<std::size_t>((t * hw + q) * dim + c)] =
            still[static_cast<std::size_t>(t - 1)][static_cast<std::size_t>(q)] ? before : -before;
      }
  return x;
}

/// The window starts and count holitom finds on a scripted video.
struct segmentation {
  std::vector<std::int64_t> starts;
  std::int64_t count;
  double ratio;
};

segmentation segment(const holitom& p, const std::vector<std::vector<int>>& still, index_t hw) {
  const index_t dim = 4, frames = static_cast<index_t>(still.size()) + 1;
  const std::vector<float> x = scripted_video(still, hw, dim);
  const std::vector<float> attn(static_cast<std::size_t>(frames * hw), 1.0f);
  const holitom_inputs<float> in{token_grid{frames, 1, hw}, make_view<const float>(x.data(), frames * hw, dim),
                                 make_view<const float>(attn.data(), frames * hw), {}};
  const holitom_buffers<float> got = run_holitom<float, float>(p, in, dim);
  check_result(got, ref::holitom_run(p, in.grid, in.tokens, attn, {}));
  return {got.window_start, got.count[0], got.ratio[0]};
}

/// A golden case: the original's tokens in its order within 1e-5, the tokens per window, r'.
void check_golden(const std::string& name) {
  const std::string dir = golden_case("holitom", name);
  const io::npy_array input = load_npy(dir + "input.npy");
  const index_t frames = input.shape.at(0), hw = input.shape.at(1), dim = input.shape.at(2);
  const token_grid grid{frames, json_int(dir, "H"), json_int(dir, "W")};
  REQUIRE(json_int(dir, "T") == frames);
  REQUIRE(grid.frame_tokens() == hw);
  REQUIRE(json_number(dir, "D") == 0.0);
  const std::vector<float> x = input.as<float>(), attn = load_npy(dir + "attn.npy").as<float>();

  holitom p{};
  p.retain_ratio = json_number(dir, "RETAIN_RATIO");
  p.tau = static_cast<float>(json_number(dir, "T (tau)"));
  p.beta = static_cast<float>(json_number(dir, "BETA"));
  p.k = json_int(dir, "K");
  p.max_window = json_int(dir, "MAX_WINDOW_SIZE");
  std::vector<float> newline;
  if (std::ifstream(dir + "image_newline.npy").good()) {  // the "grid" newline position
    p.layout = holitom_layout::frame_rows;
    newline = load_npy(dir + "image_newline.npy").as<float>();
    REQUIRE(static_cast<index_t>(newline.size()) == dim);
  }
  holitom_inputs<float> in{grid, make_view<const float>(x.data(), frames * hw, dim),
                           make_view<const float>(attn.data(), frames * hw), {}};
  if (!newline.empty()) in.newline = make_view<const float>(newline.data(), dim);
  const holitom_buffers<float> got = run_holitom<float, float>(p, in, dim, 2);
  check_invariants(got);

  CHECK(got.ratio[0] == Approx(json_number(dir, "retain_ratio_rescaled")).epsilon(1e-15));
  const std::vector<float> want = load_npy(dir + "tokens.npy").as<float>();
  REQUIRE(got.count[0] * dim == static_cast<index_t>(want.size()));
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) bad += !(std::abs(got.tokens[i] - want[i]) <= 1e-5f);
  CHECK(bad == 0);
  // Tokens per window, in order: a row belongs to the window of its frame.
  std::vector<std::int64_t> lengths;
  for (index_t j = 0; j < got.count[0]; ++j) {
    const std::int64_t start = got.window_start[static_cast<std::size_t>(got.positions[static_cast<std::size_t>(3 * j)])];
    if (j == 0 || start != got.window_start[static_cast<std::size_t>(got.positions[static_cast<std::size_t>(3 * j - 3)])])
      lengths.push_back(0);
    ++lengths.back();
  }
  CHECK(lengths == load_npy(dir + "segment_lengths.npy").as<std::int64_t>());
}

}  // namespace

TEST_CASE("HoliTom original: 4 frames of 6 x 6, r = 0.25", "[golden][holitom]") { check_golden("T4_g6_r0.25"); }

TEST_CASE("holitom: the segmentation by hand", "[holitom]") {
  holitom p{};
  p.retain_ratio = 0.5;
  // One position, still 0→1 and 2→3: windows [0, 1] and [2, 3] save 2 of 4; r' = 0.5 / (2/4).
  segmentation s = segment(p, {{1}, {0}, {1}}, 1);
  CHECK(s.starts == std::vector<std::int64_t>{0, 0, 2, 2});
  CHECK(s.ratio == 1.0);
  CHECK(s.count == 2);
  // Two positions: both still 0→1, one still 1→2. [0, 2] saves 1·2 = 2, as much as [0, 1] with
  // frame 2 alone: the DP takes a window only when strictly better, so frame 2 stays alone.
  s = segment(p, {{1, 1}, {1, 0}}, 2);
  CHECK(s.starts == std::vector<std::int64_t>{0, 0, 2});
  CHECK(s.ratio == 0.75);  // 0.5 / ((6 − 2) / 6)
  CHECK(s.count == 2 + 2);  // round(2·0.75) = 2 still clusters; ⌈2·0.75⌉ = 2 of frame 2
  // Everything still over 5 frames: one window, unless max_window cuts it.
  s = segment(p, {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 2);
  CHECK(s.starts == std::vector<std::int64_t>{0, 0, 0, 0, 0});
  p.max_window = 2;
  s = segment(p, {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 2);
  CHECK(s.starts == std::vector<std::int64_t>{0, 0, 2, 2, 4});
  p.max_window = 1;
  s = segment(p, {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 2);
  CHECK(s.starts == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(s.ratio == 0.5);
  CHECK(s.count == 5 * 1);
}

TEST_CASE("holitom: the oracle over the case table, fp32", "[holitom]") { run_case_table<float, float>(); }
TEST_CASE("holitom: the oracle over the case table, f16", "[holitom]") { run_case_table<f16, f16>(); }
TEST_CASE("holitom: the oracle over the case table, bf16 to fp32", "[holitom]") { run_case_table<bf16, float>(); }

TEST_CASE("holitom: group mean keeps the mass, unmerge restores every kept slot", "[holitom]") {
  const token_grid grid{6, 5, 7};
  const index_t n = grid.tokens(), dim = 12;
  const token_matrix<float> x = still_video<float>(grid, dim, layout::contiguous, 77);
  const std::vector<float> attn = tie_heavy_scores(n, 78);
  const holitom_inputs<float> in{grid, x.rows, make_view<const float>(attn.data(), n), {}};
  for (const double r : {0.3, 1.0}) {
    INFO("r " << r);
    holitom p{};
    p.retain_ratio = r;
    p.contextual = 1.0;  // every dynamic token clustered: nothing dropped
    p.merge = cluster_merge::group_mean;
    const holitom_buffers<float> got = run_holitom<float, float>(p, in, dim);
    check_invariants(got);
    const index_t count = got.count[0];
    REQUIRE(std::none_of(got.assign.begin(), got.assign.end(), [](std::int64_t a) { return a < 0; }));
    double worst = 0;
    for (index_t col = 0; col < dim; ++col) {
      double in_sum = 0, in_abs = 0, out_sum = 0;
      for (index_t i = 0; i < n; ++i) in_sum += x.rows(i, col), in_abs += std::abs(x.rows(i, col));
      for (index_t j = 0; j < count; ++j)
        out_sum += static_cast<double>(got.sizes[static_cast<std::size_t>(j)]) * got.tokens[static_cast<std::size_t>(j * dim + col)];
      worst = worse(worst, std::abs(out_sum - in_sum) / std::max(in_abs, 1.0));
    }
    CHECK(worst < 1e-6);

    // unmerge ∘ merge: every slot gets its group's row.
    std::vector<float> back(static_cast<std::size_t>(n * dim), -1.0f);
    const unmerge_inputs<float> u{make_view<const float>(got.tokens.data(), count, dim),
                                  make_view<const std::int64_t>(got.assign.data(), n)};
    const unmerge_outputs<float> uo{make_view(back.data(), n, dim)};
    REQUIRE(apply(cpu{}, unmerge{}, u, uo, {}) == status::ok);
    std::size_t bad = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t col = 0; col < dim; ++col)
        bad += back[static_cast<std::size_t>(i * dim + col)] !=
               got.tokens[static_cast<std::size_t>(got.assign[static_cast<std::size_t>(i)] * dim + col)];
    CHECK(bad == 0);
    // With r = 1 every position keeps its own row: a still one its window's mean, the rest itself.
    if (r == 1.0) {
      CHECK(got.ratio[0] == 1.0);
      index_t moved = 0;
      for (index_t i = 0; i < n; ++i) {
        const index_t start = got.window_start[static_cast<std::size_t>(i / grid.frame_tokens())];
        const bool dynamic = got.source[static_cast<std::size_t>(got.assign[static_cast<std::size_t>(i)])] == i;
        const index_t first = start * grid.frame_tokens() + i % grid.frame_tokens();
        for (index_t col = 0; col < dim && !dynamic; ++col)
          moved += back[static_cast<std::size_t>(i * dim + col)] != x.rows(first, col);  // the copies are exact
      }
      CHECK(moved == 0);
    }
  }
}

TEST_CASE("holitom: only the requested outputs are written", "[holitom]") {
  const token_grid grid{5, 4, 4};
  const index_t n = grid.tokens(), dim = 8;
  const token_matrix<float> x = still_video<float>(grid, dim, layout::contiguous, 9);
  const std::vector<float> attn = tie_heavy_scores(n, 10);
  const holitom p{};
  const holitom_inputs<float> in{grid, x.rows, make_view<const float>(attn.data(), n), {}};
  const holitom_buffers<float> all = run_holitom<float, float>(p, in, dim);
  holitom_buffers<float> some(retained_count(p, problem{grid, dim}), grid, dim);
  holitom_outputs<float> o{};
  o.count = make_view(some.count.data(), 1);
  o.assign = make_view(some.assign.data(), n);
  host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
  REQUIRE(apply(cpu{}, p, in, o, ws.get()) == status::ok);
  CHECK(some.count == all.count);
  CHECK(some.assign == all.assign);
  CHECK(std::all_of(some.tokens.begin(), some.tokens.end(), [](float t) { return t == -3.5f; }));
}

TEST_CASE("holitom: bad input leaves the outputs untouched", "[holitom][bad_input]") {
  const token_grid grid{3, 4, 4};
  const index_t n = grid.tokens(), dim = 8;
  const token_matrix<float> x = still_video<float>(grid, dim, layout::contiguous, 3);
  const std::vector<float> attn(static_cast<std::size_t>(n), 0.5f);
  const holitom_inputs<float> good{grid, x.rows, make_view<const float>(attn.data(), n), {}};
  const problem prob{grid, dim};
  const index_t bound = retained_count(holitom{}, prob);
  CHECK(bound == n);
  holitom rows_layout{};
  rows_layout.layout = holitom_layout::frame_rows;
  CHECK(retained_count(rows_layout, prob) == n + 3 * 4);
  host_workspace ws(workspace_bytes(cpu{}, holitom{}, prob));

  const auto expect = [&](status want, const holitom& p, const holitom_inputs<float>& in, auto&& tweak) {
    holitom_buffers<float> out(bound, grid, dim);
    holitom_outputs<float> o = out.outputs();
    tweak(o);
    CHECK(apply(cpu{}, p, in, o, ws.get()) == want);
    CHECK(out.untouched());
  };
  const auto none = [](holitom_outputs<float>&) {};
  const auto with = [](auto change) {
    holitom p{};
    change(p);
    return p;
  };
  expect(status::invalid_ratio, with([](holitom& p) { p.retain_ratio = 1.5; }), good, none);
  expect(status::invalid_ratio, with([](holitom& p) { p.retain_ratio = std::nan(""); }), good, none);
  expect(status::invalid_ratio, with([](holitom& p) { p.contextual = -0.1; }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.tau = std::nanf(""); }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.k = 0; }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.beta = 1.5f; }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.max_window = 0; }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.merge = static_cast<cluster_merge>(7); }), good, none);
  expect(status::invalid_parameter, with([](holitom& p) { p.layout = static_cast<holitom_layout>(7); }), good, none);

  holitom_inputs<float> in = good;
  in.grid = token_grid{3, 4, 0};
  CHECK(can_implement(holitom{}, problem{in.grid, dim}) == status::empty_input);
  in.grid = token_grid{-1, 4, 4};
  expect(status::shape_mismatch, holitom{}, in, none);
  in = good;
  in.attention = make_view<const float>(attn.data(), n - 1);
  expect(status::shape_mismatch, holitom{}, in, none);
  in = good;
  in.attention = {};
  expect(status::shape_mismatch, holitom{}, in, none);
  in = good;
  in.newline = make_view<const float>(attn.data(), dim + 1);
  expect(status::shape_mismatch, holitom{}, in, none);
  expect(status::shape_mismatch, holitom{}, good, [&](holitom_outputs<float>& o) { o.count = {}; });
  expect(status::shape_mismatch, holitom{}, good, [&](holitom_outputs<float>& o) { o.sizes = make_view(o.sizes.data_handle(), n - 1); });
  expect(status::shape_mismatch, holitom{}, good, [&](holitom_outputs<float>& o) { o.window_start = make_view(o.window_start.data_handle(), 2); });
  expect(status::aliasing, holitom{}, good, [&](holitom_outputs<float>& o) { o.assign = make_view(o.source.data_handle(), n); });
  std::vector<float> attn_out(static_cast<std::size_t>(n * dim));
  in = good;
  in.attention = make_view<const float>(reinterpret_cast<const float*>(attn_out.data()), n);
  expect(status::aliasing, holitom{}, in, [&](holitom_outputs<float>& o) { o.tokens = make_view(attn_out.data(), n, dim); });
}

TEST_CASE("holitom: non-finite rows, a bad exec, a short workspace", "[holitom][bad_input]") {
  const token_grid grid{3, 4, 4};
  const index_t n = grid.tokens(), dim = 8;
  token_matrix<float> x = still_video<float>(grid, dim, layout::contiguous, 4);
  const std::vector<float> attn(static_cast<std::size_t>(n), 0.5f);
  const holitom_inputs<float> in{grid, x.rows, make_view<const float>(attn.data(), n), {}};
  const problem prob{grid, dim};
  const std::size_t need = workspace_bytes(cpu{}, holitom{}, prob);
  host_workspace ws(need);
  holitom_buffers<float> out(n, grid, dim);
  CHECK(apply(cpu{2, 2}, holitom{}, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{}, holitom{}, in, out.outputs(), workspace{ws.bytes.data(), need - 1}) == status::workspace_too_small);
  x.rows(17, 3) = std::numeric_limits<float>::infinity();
  CHECK(apply(cpu{}, holitom{}, in, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(apply(cpu{1, 2}, holitom{}, in, out.outputs(), ws.get()) == status::invalid_parameter);
  CHECK(out.untouched());
}
