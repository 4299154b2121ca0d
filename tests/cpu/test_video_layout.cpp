// tests/cpu/test_video_layout.cpp — SlowFast-LLaVA's and TS-LLaVA's layouts on CPU: the index
// rules against torch's float32 linspace, the counts, the tokens against composing pool,
// adaptive_pool and gather by hand, source/positions/sizes, thread splits, element types and bad
// input.
#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

using index_list = std::vector<index_t>;


template <class E>
std::size_t bit_mismatches(const std::vector<E>& a, const std::vector<E>& b) {
  std::size_t n = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) n += bits_of(a[i]) != bits_of(b[i]);
  return n;
}

/// Rows [first, first + count) of a token view.
template <class E>
view<E, 2> rows_of(const view<E, 2>& v, index_t first, index_t count) {
  return {&v(first, 0), {count, v.extent(1)}, {v.stride(0), v.stride(1)}};
}

index_list slow_frames_of(const slowfast& p, index_t frames) {
  index_list out;
  for (index_t s = 0; s < p.slow_frames; ++s) out.push_back(slow_frame(p, frames, s));
  return out;
}

index_list sampled_of(const thumbnail_sampling& p, index_t tokens) {
  index_list out;
  for (index_t j = 0; j < p.sampled_tokens; ++j) out.push_back(sampled_token(p, tokens, j));
  return out;
}

index_list thumbnail_frames_of(const thumbnail_sampling& p, index_t frames) {
  index_list out;
  for (index_t f = 0; f < p.thumbnail_frames; ++f) out.push_back(thumbnail_frame(p, frames, f));
  return out;
}

slowfast slowfast_with(index_t s, linspace_arithmetic how) {
  slowfast p;
  p.slow_frames = s;
  p.arithmetic = how;
  return p;
}

thumbnail_sampling sampling_with(index_t n, index_t f, linspace_arithmetic how) {
  thumbnail_sampling p;
  p.sampled_tokens = n;
  p.thumbnail_frames = f;
  p.arithmetic = how;
  return p;
}

constexpr auto fma32 = linspace_arithmetic::torch_fma;
constexpr auto plain32 = linspace_arithmetic::torch_plain;
constexpr auto exact = linspace_arithmetic::exact;

}  // namespace

// The expected lists below are torch's own output: torch.linspace(...).to(torch.int32) and
// torch.round(torch.linspace(...)) on the CPU in float32, with ATEN_CPU_CAPABILITY=avx512
// (fused multiply-adds) and =default (separately rounded). torch 1.13 ran them; for fewer than
// 32 (avx512) or 16 (default) points its kernel is the scalar code torch 2.x runs for every size.

TEST_CASE("slow frames follow int32(linspace(0, T, S + 1)) in float32", "[slowfast][index]") {
  // The paper's configuration, where every rule agrees.
  for (auto how : {fma32, plain32, exact})
    CHECK(slow_frames_of(slowfast_with(10, how), 50) == index_list{0, 5, 10, 15, 20, 25, 30, 35, 40, 45});
  // Awkward ratios: the float32 step 16/14 lands 7·step a hair under 8 when fused.
  CHECK(slow_frames_of(slowfast_with(14, fma32), 16) ==
        index_list{0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14});
  CHECK(slow_frames_of(slowfast_with(14, plain32), 16) ==
        index_list{0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14});
  CHECK(slow_frames_of(slowfast_with(14, exact), 16) ==
        index_list{0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14});
  CHECK(slow_frames_of(slowfast_with(14, fma32), 32) ==
        index_list{0, 2, 4, 6, 9, 11, 13, 15, 18, 20, 22, 25, 27, 29});
  CHECK(slow_frames_of(slowfast_with(14, plain32), 32) ==
        index_list{0, 2, 4, 6, 9, 11, 13, 16, 18, 20, 22, 25, 27, 29});
  CHECK(slow_frames_of(slowfast_with(26, fma32), 28) ==
        index_list{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21, 22,
                   23, 24, 25, 26});  // frame 14 is skipped: 13 appears where exact gives 14
  CHECK(slow_frame(slowfast_with(26, exact), 28, 13) == 14);
  CHECK(slow_frames_of(slowfast_with(26, fma32), 56) ==
        index_list{0, 2, 4, 6, 8, 10, 12, 15, 17, 19, 21, 23, 25, 27, 30, 32, 34, 36, 38, 40, 43,
                   45, 47, 49, 51, 53});
  CHECK(slow_frames_of(slowfast_with(30, fma32), 64) ==
        index_list{0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31, 34, 36, 38, 40, 42,
                   44, 46, 49, 51, 53, 55, 57, 59, 61});
  CHECK(slow_frames_of(slowfast_with(30, fma32), 100) ==
        index_list{0, 3, 6, 10, 13, 16, 20, 23, 26, 30, 33, 36, 40, 43, 46, 50, 53, 56, 60, 63, 66,
                   70, 73, 76, 80, 83, 86, 90, 93, 96});
  for (auto how : {fma32, plain32, exact}) {
    CHECK(slow_frames_of(slowfast_with(3, how), 7) == index_list{0, 2, 4});
    CHECK(slow_frames_of(slowfast_with(1, how), 1) == index_list{0});
    CHECK(slow_frames_of(slowfast_with(5, how), 5) == index_list{0, 1, 2, 3, 4});
    CHECK(slow_frames_of(slowfast_with(13, how), 39) ==
          index_list{0, 3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 33, 36});
  }
}

TEST_CASE("sampled tokens follow round(linspace(0, N - 1, n)) in float32, half to even", "[thumbnail][index]") {
  const auto sampled = [](index_t n_tokens, index_t n, linspace_arithmetic how) {
    return sampled_of(sampling_with(n, 1, how), n_tokens);
  };
  // Point 7 of 15 is exactly 14399.5 (half to even: 14400) but 14399.499 in float32: 14399.
  for (auto how : {fma32, plain32})
    CHECK(sampled(28800, 15, how) == index_list{0, 2057, 4114, 6171, 8228, 10285, 12342, 14399,
                                                16457, 18514, 20571, 22628, 24685, 26742, 28799});
  CHECK(sampled(28800, 15, exact)[7] == 14400);
  CHECK(sampled(28800, 29, fma32)[14] == 14399);
  CHECK(sampled(28800, 29, exact)[14] == 14400);
  // Exact halves round to even: 2.5 → 2, 3.5 → 4, 1.5 → 2; 31.5 → 32.
  for (auto how : {fma32, plain32, exact}) {
    CHECK(sampled(6, 3, how) == index_list{0, 2, 5});
    CHECK(sampled(8, 3, how) == index_list{0, 4, 7});
    CHECK(sampled(4, 3, how) == index_list{0, 2, 3});
    CHECK(sampled(64, 5, how) == index_list{0, 16, 32, 47, 63});
    CHECK(sampled(12, 8, how) == index_list{0, 2, 3, 5, 6, 8, 9, 11});
    CHECK(sampled(5, 1, how) == index_list{0});  // one point is the start
    CHECK(sampled(2, 2, how) == index_list{0, 1});
    CHECK(sampled(16777219, 3, how) == index_list{0, 8388609, 16777218});
  }
  // Past 2^24 float32 cannot hold the end point: 33554434 becomes 33554432.
  CHECK(sampled(33554435, 2, fma32) == index_list{0, 33554432});
  CHECK(sampled(33554435, 2, exact) == index_list{0, 33554434});
}

TEST_CASE("the default 2880 of 50 x 24 x 24 tokens: float32 moves one pick", "[thumbnail][index]") {
  // Values from an exact-rational model of the kernel above (float32 rounding of every step),
  // which reproduces torch's output on every case of the previous test.
  const index_t n_tokens = 50 * 24 * 24;
  const index_list fused = sampled_of(sampling_with(2880, 6, fma32), n_tokens);
  const index_list separate = sampled_of(sampling_with(2880, 6, plain32), n_tokens);
  const index_list rational = sampled_of(sampling_with(2880, 6, exact), n_tokens);
  index_list fused_diff, separate_diff;
  index_t sum = 0;
  for (std::size_t j = 0; j < rational.size(); ++j) {
    if (fused[j] != rational[j]) fused_diff.push_back(static_cast<index_t>(j));
    if (separate[j] != rational[j]) separate_diff.push_back(static_cast<index_t>(j));
    sum += fused[j];
  }
  CHECK(fused_diff == index_list{2399});
  CHECK(separate_diff == index_list{1759, 2399});
  CHECK(fused[2399] == 23998);
  CHECK(rational[2399] == 23997);
  CHECK(separate[1759] == 17596);
  CHECK(rational[1759] == 17595);
  CHECK(sum == 41470561);
  CHECK(index_list(fused.begin(), fused.begin() + 6) == index_list{0, 10, 20, 30, 40, 50});
  CHECK(fused[1439] == 14394);
  CHECK(fused[1440] == 14405);
  CHECK(fused.back() == 28799);
}

TEST_CASE("thumbnail frames and tile grid follow uniformly_sample_frames and find_best_grid", "[thumbnail][index]") {
  // example-begin thumbnail_frames
  // An engine that re-encodes the thumbnail the original way asks for the frames and the tiling:
  const tokred::thumbnail_sampling policy;  // V2: F = 6
  const tokred::tile_grid tiles = tokred::thumbnail_tile_grid(policy.thumbnail_frames);  // 3 x 2
  std::vector<tokred::index_t> frames;  // (F,) frame f goes to tile (f / cols, f % cols)
  for (tokred::index_t f = 0; f < policy.thumbnail_frames; ++f)
    frames.push_back(tokred::thumbnail_frame(policy, 50, f));  // 0, 10, 20, 29, 39, 49
  // example-end thumbnail_frames
  CHECK(tiles.rows == 3);
  CHECK(tiles.cols == 2);
  CHECK(frames == index_list{0, 10, 20, 29, 39, 49});
  for (auto how : {fma32, plain32, exact}) {
    CHECK(thumbnail_frames_of(sampling_with(1, 4, how), 10) == index_list{0, 3, 6, 9});
    CHECK(thumbnail_frames_of(sampling_with(1, 4, how), 7) == index_list{0, 2, 4, 6});
    CHECK(thumbnail_frames_of(sampling_with(1, 3, how), 6) == index_list{0, 2, 5});
    CHECK(thumbnail_frames_of(sampling_with(1, 1, how), 9) == index_list{0});
  }
  const auto grid_of = [](index_t f) {
    const tile_grid g = thumbnail_tile_grid(f);
    return index_list{g.rows, g.cols};
  };
  CHECK(grid_of(1) == index_list{1, 1});
  CHECK(grid_of(4) == index_list{2, 2});
  CHECK(grid_of(5) == index_list{5, 1});
  CHECK(grid_of(6) == index_list{3, 2});
  CHECK(grid_of(7) == index_list{7, 1});
  CHECK(grid_of(8) == index_list{4, 2});
  CHECK(grid_of(9) == index_list{3, 3});
  CHECK(grid_of(12) == index_list{4, 3});
  CHECK(grid_of(18) == index_list{6, 3});
  CHECK(grid_of(0) == index_list{0, 0});
}

TEST_CASE("layout counts are known from the shapes", "[slowfast][thumbnail]") {
  const problem video{{50, 24, 24}, 4096};
  CHECK(retained_count(slowfast{}, video) == 10 * 288 + 50 * 16);  // 3680
  const slowfast_layout sf = layout_of(slowfast{}, video.grid);
  CHECK(sf.slow_count == 2880);
  CHECK(sf.fast_count == 800);
  CHECK(sf.slow_out.tokens() == 288);
  slowfast two_d;
  two_d.slow = slow_aggregation::spatial_2d_avg_pool;
  CHECK(retained_count(two_d, video) == 10 * 144 + 800);
  two_d.slow = slow_aggregation::concat;
  CHECK(retained_count(two_d, video) == 10 * 576 + 800);
  // 27 x 27 (SigLIP): 1-D pooling drops the 729th token, 2-D the last row and column.
  CHECK(retained_count(slowfast{}, problem{{32, 27, 27}, 8}) == 10 * 364 + 32 * 16);
  two_d.slow = slow_aggregation::spatial_2d_max_pool;
  CHECK(retained_count(two_d, problem{{32, 27, 27}, 8}) == 10 * 169 + 32 * 16);

  CHECK(retained_count(thumbnail_sampling{}, video) == 2880 + 576);  // 3456
  const thumbnail_layout ts = layout_of(thumbnail_sampling{}, video.grid);
  CHECK(ts.tile_height == 8);
  CHECK(ts.tile_width == 12);
  CHECK(ts.sampled_offset == 0);
  CHECK(ts.thumbnail_offset == 2880);
  thumbnail_sampling y;
  y.order = thumbnail_order::thumbnail_first;
  CHECK(layout_of(y, video.grid).sampled_offset == 576);
  CHECK(layout_of(y, video.grid).thumbnail_offset == 0);
  y.include_thumbnail = false;
  CHECK(retained_count(y, video) == 2880);
  // 25 x 25 does not divide by 3 x 2: tiles of 8 x 12 give a 24 x 24 thumbnail.
  CHECK(retained_count(thumbnail_sampling{}, problem{{50, 25, 25}, 8}) == 2880 + 576);
}

namespace {

/// The slow pathway's pooling and the grid it runs on, spelled out from the original's code.
pool slow_pool_by_hand(slow_aggregation a, const token_grid& g, token_grid& frame_grid) {
  const bool flat = a == slow_aggregation::spatial_1d_max_pool || a == slow_aggregation::spatial_1d_avg_pool;
  frame_grid = flat ? token_grid{1, 1, g.height * g.width} : token_grid{1, g.height, g.width};
  pool p;
  p.kind = a == slow_aggregation::spatial_1d_avg_pool || a == slow_aggregation::spatial_2d_avg_pool
               ? pool_kind::average
               : pool_kind::max;
  p.kernel = p.stride = flat ? extent3{1, 1, 2} : extent3{1, 2, 2};
  if (a == slow_aggregation::concat) p.kernel = p.stride = extent3{1, 1, 1};
  return p;
}

/// SlowFast by hand: pool each slow frame alone, adaptive-pool the whole grid, concatenate.
template <class Ein, class Eout>
std::vector<Eout> slowfast_by_hand(const slowfast& p, const token_grid& g,
                                   const view<const Ein, 2>& tokens) {  // (tokens, dim)
  const index_t dim = tokens.extent(1), hw = g.height * g.width;
  token_grid frame_grid;
  const pool slow = slow_pool_by_hand(p.slow, g, frame_grid);
  const index_t per_frame = output_grid(slow, frame_grid).tokens();
  const adaptive_pool fast{pool_kind::average, {g.frames, p.fast_height, p.fast_width}};
  const index_t fast_count = output_grid(fast, g).tokens();
  std::vector<Eout> want(static_cast<std::size_t>((p.slow_frames * per_frame + fast_count) * dim));
  const view<Eout, 2> all = make_view(want.data(), p.slow_frames * per_frame + fast_count, dim);  // (kept, dim)
  for (index_t s = 0; s < p.slow_frames; ++s) {
    const index_t f = slow_frame(p, g.frames, s);
    const grid_inputs<Ein> frame{frame_grid, rows_of(tokens, f * hw, hw)};
    REQUIRE(apply(cpu{}, slow, frame, grid_outputs<Eout>{rows_of(all, s * per_frame, per_frame), {}, {}, {}}) == status::ok);
  }
  REQUIRE(apply(cpu{}, fast, grid_inputs<Ein>{g, tokens},
                grid_outputs<Eout>{rows_of(all, p.slow_frames * per_frame, fast_count), {}, {}, {}}) == status::ok);
  return want;
}

/// TS-LLaVA by hand: gather the sampled list, adaptive-pool each thumbnail frame to a tile, place
/// the tiles row-major in the thumbnail grid.
template <class Ein, class Eout>
std::vector<Eout> thumbnail_by_hand(const thumbnail_sampling& p, const token_grid& g,
                                    const view<const Ein, 2>& tokens) {  // (tokens, dim)
  const index_t dim = tokens.extent(1), hw = g.height * g.width;
  const tile_grid tiles = thumbnail_tile_grid(p.thumbnail_frames);
  const index_t th = g.height / tiles.rows, tw = g.width / tiles.cols;
  const index_t thumb = p.include_thumbnail ? tiles.rows * th * tiles.cols * tw : 0;
  const index_t n = p.sampled_tokens;
  std::vector<Eout> want(static_cast<std::size_t>((n + thumb) * dim));
  const view<Eout, 2> all = make_view(want.data(), n + thumb, dim);  // (kept, dim)
  const bool thumb_first = p.order == thumbnail_order::thumbnail_first;

  std::vector<std::int64_t> picks;  // (n,)
  for (index_t k : sampled_of(p, g.tokens())) picks.push_back(k);
  const gather_inputs<Ein> gin{g, make_view(static_cast<const std::int64_t*>(picks.data()), n), tokens};
  REQUIRE(apply(cpu{}, gather{}, gin, selection_outputs<Eout>{rows_of(all, thumb_first ? thumb : 0, n), {}, {}}) ==
          status::ok);
  if (!p.include_thumbnail) return want;

  std::vector<Eout> tile(static_cast<std::size_t>(th * tw * dim));
  const view<Eout, 2> tile_rows = make_view(tile.data(), th * tw, dim);  // (th·tw, dim)
  const index_t offset = thumb_first ? 0 : n;
  for (index_t f = 0; f < p.thumbnail_frames; ++f) {
    const index_t frame = thumbnail_frame(p, g.frames, f);
    const grid_inputs<Ein> in{{1, g.height, g.width}, rows_of(tokens, frame * hw, hw)};
    REQUIRE(apply(cpu{}, adaptive_pool{pool_kind::average, {1, th, tw}}, in,
                  grid_outputs<Eout>{tile_rows, {}, {}, {}}) == status::ok);
    const index_t r = f / tiles.cols, c = f % tiles.cols;
    for (index_t y = 0; y < th; ++y)
      for (index_t x = 0; x < tw; ++x)
        for (index_t d = 0; d < dim; ++d)
          all(offset + (r * th + y) * tiles.cols * tw + c * tw + x, d) = tile_rows(y * tw + x, d);
  }
  return want;
}

/// Runs a layout as `nth` shares (in reverse order, to show the shares are independent).
template <class Policy, class Ein, class Eout>
grid_buffers<Eout> run_layout(const Policy& p, const token_grid& g, const view<const Ein, 2>& tokens,
                                int nth) {
  const index_t kept = retained_count(p, problem{g, tokens.extent(1)});
  REQUIRE(kept > 0);
  grid_buffers<Eout> got(kept, tokens.extent(1));
  REQUIRE(workspace_bytes(cpu{0, nth}, p, problem{g, tokens.extent(1)}) == 0);
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, grid_inputs<Ein>{g, tokens}, got.outputs()) == status::ok);
  return got;
}

struct video_case {
  const char* name;
  token_grid grid;
  index_t dim;
  layout rows;
};

const std::vector<video_case>& video_cases() {
  static const std::vector<video_case> cases = {
      {"paper_8x24x24", {8, 24, 24}, 33, layout::contiguous},
      {"siglip_7x27x27", {7, 27, 27}, 17, layout::strided},
      {"odd_5x5x7", {5, 5, 7}, 8, layout::reversed},
      {"tall_6x9x4", {6, 9, 4}, 16, layout::contiguous},
  };
  return cases;
}

template <class Policy, class Ein, class Eout, class ByHand>
void check_layout_case(const Policy& p, const video_case& c, ByHand by_hand) {
  const token_matrix<Ein> x = make_tokens<Ein>(c.grid.tokens(), c.dim, c.rows, 31);
  const view<const Ein, 2> tokens = x.rows;  // (tokens, dim)
  const std::vector<Eout> want = by_hand(p, c.grid, tokens);
  const grid_buffers<Eout> one = run_layout<Policy, Ein, Eout>(p, c.grid, tokens, 1);
  CHECK(bit_mismatches(one.tokens, want) == 0);
  for (int nth = 2; nth <= 4; ++nth) {
    CAPTURE(nth);
    const grid_buffers<Eout> split = run_layout<Policy, Ein, Eout>(p, c.grid, tokens, nth);
    CHECK(bit_mismatches(split.tokens, one.tokens) == 0);
    CHECK(split.source == one.source);
    CHECK(split.positions == one.positions);
    CHECK(bit_mismatches(split.sizes, one.sizes) == 0);
  }
  // Every position is the (t, h, w) of the source token.
  for (index_t j = 0; j < one.kept; ++j) {
    const token_position at = c.grid.position(one.source[static_cast<std::size_t>(j)]);
    CHECK(one.positions[static_cast<std::size_t>(3 * j)] == at.t);
    CHECK(one.positions[static_cast<std::size_t>(3 * j + 1)] == at.h);
    CHECK(one.positions[static_cast<std::size_t>(3 * j + 2)] == at.w);
  }
}

template <class Ein, class Eout>
void check_slowfast_cases() {
  for (const video_case& c : video_cases())
    for (auto agg : {slow_aggregation::spatial_1d_max_pool, slow_aggregation::spatial_1d_avg_pool,
                     slow_aggregation::spatial_2d_max_pool, slow_aggregation::spatial_2d_avg_pool,
                     slow_aggregation::concat}) {
      slowfast p;
      p.slow_frames = c.grid.frames > 3 ? 3 : c.grid.frames;
      p.slow = agg;
      p.fast_height = 3;
      p.fast_width = 2;
      CAPTURE(c.name, static_cast<int>(agg));
      check_layout_case<slowfast, Ein, Eout>(p, c, slowfast_by_hand<Ein, Eout>);
    }
}

template <class Ein, class Eout>
void check_thumbnail_cases() {
  for (const video_case& c : video_cases())
    for (index_t f : {1, 2, 4}) {
      thumbnail_sampling p;
      p.sampled_tokens = c.grid.tokens() / 3;
      p.thumbnail_frames = f;
      for (auto order : {thumbnail_order::sampled_first, thumbnail_order::thumbnail_first})
        for (bool thumb : {true, false}) {
          p.order = order;
          p.include_thumbnail = thumb;
          CAPTURE(c.name, f, static_cast<int>(order), thumb);
          check_layout_case<thumbnail_sampling, Ein, Eout>(p, c, thumbnail_by_hand<Ein, Eout>);
        }
    }
}

}  // namespace

TEMPLATE_TEST_CASE("slowfast equals its single policies composed by hand, on any thread split",
                   "[slowfast]", float, f16, bf16) {
  check_slowfast_cases<TestType, TestType>();
}

TEMPLATE_TEST_CASE("thumbnail_sampling equals gather and adaptive_pool composed by hand, on any thread split",
                   "[thumbnail]", float, f16, bf16) {
  check_thumbnail_cases<TestType, TestType>();
}

TEST_CASE("layouts convert the element type like the policies they compose", "[slowfast][thumbnail]") {
  check_slowfast_cases<f16, float>();
  check_thumbnail_cases<bf16, f16>();
}

TEST_CASE("slowfast: the paper's layout on 50 x 24 x 24", "[slowfast]") {
  const index_t dim = 8;
  const token_matrix<float> x = make_tokens<float>(50 * 24 * 24, dim, layout::contiguous, 3);
  // example-begin slowfast
  // SlowFast-LLaVA's default: S = 10 slow frames, 1-D max pool; fast pathway 4 x 4 on all 50 frames.
  const tokred::slowfast policy;
  const tokred::problem prob{{50, 24, 24}, dim};                     // (T, H, W), D
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 10·288 + 50·16 = 3680
  std::vector<float> out(static_cast<std::size_t>(kept * dim));       // (kept, dim)
  std::vector<std::int64_t> source(static_cast<std::size_t>(kept));   // (kept,)
  const tokred::grid_inputs<float> in{prob.grid, x.rows};          // x.rows: (tokens, dim) encoder output
  const tokred::grid_outputs<float> outputs{tokred::make_view(out.data(), kept, dim),
                                            tokred::make_view(source.data(), kept), {}, {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, outputs);  // no workspace
  // example-end slowfast
  REQUIRE(s == status::ok);
  REQUIRE(kept == 3680);
  // Slow token 0: max of tokens 0 and 1 of frame 0; slow frame 1 is frame 5.
  for (index_t d = 0; d < dim; ++d) {
    CHECK(out[static_cast<std::size_t>(d)] == std::max(x.rows(0, d), x.rows(1, d)));
    CHECK(out[static_cast<std::size_t>(288 * dim + d)] == std::max(x.rows(5 * 576, d), x.rows(5 * 576 + 1, d)));
  }
  CHECK(source[0] == 0);
  CHECK(source[288] == 5 * 576);
  CHECK(source[2879] == 45 * 576 + 574);
  // Fast token (t = 0, 0, 0): the mean of the 6 x 6 top-left block, summed in raster order.
  for (index_t d = 0; d < dim; ++d) {
    float sum = 0.0f;
    for (index_t h = 0; h < 6; ++h)
      for (index_t w = 0; w < 6; ++w) sum += x.rows(h * 24 + w, d);
    CHECK(out[static_cast<std::size_t>(2880 * dim + d)] == sum / 6.0f / 6.0f);
  }
  CHECK(source[2880] == 2 * 24 + 2);  // centre of rows [0, 6) and columns [0, 6): (2, 2)
  CHECK(source[3679] == 49 * 576 + 20 * 24 + 20);
}

TEST_CASE("slowfast source, positions and sizes", "[slowfast]") {
  // T = 4 of 4 x 4, S = 2 (frames 0 and 2), 1-D max pool (8 pairs a frame), fast 2 x 2.
  const token_grid g{4, 4, 4};
  slowfast p;
  p.slow_frames = 2;
  p.fast_height = 2;
  p.fast_width = 2;
  grid_buffers<float> got(2 * 8 + 4 * 4, 0);
  grid_outputs<float> out = got.outputs();
  out.tokens = {};
  REQUIRE(apply(cpu{}, p, grid_inputs<float>{g, {}}, out) == status::ok);
  for (index_t j = 0; j < 16; ++j) {
    const index_t frame = j < 8 ? 0 : 2, pair = j % 8;
    CHECK(got.source[static_cast<std::size_t>(j)] == frame * 16 + 2 * pair);
    CHECK(got.sizes[static_cast<std::size_t>(j)] == 2.0f);
  }
  for (index_t j = 0; j < 16; ++j) {
    const index_t t = j / 4, oh = (j % 4) / 2, ow = j % 2;  // 4 → 2 bins: [0, 2), [2, 4): centre 2·o
    CHECK(got.source[static_cast<std::size_t>(16 + j)] == t * 16 + 2 * oh * 4 + 2 * ow);
    CHECK(got.sizes[static_cast<std::size_t>(16 + j)] == 4.0f);
  }
  CHECK(got.positions[3 * 9] == 2);      // slow token 9: frame 2, pair 1 = token 2 = (2, 0, 2)
  CHECK(got.positions[3 * 9 + 1] == 0);
  CHECK(got.positions[3 * 9 + 2] == 2);
  // 2-D pooling: the window's lower middle, 4 tokens.
  p.slow = slow_aggregation::spatial_2d_max_pool;
  grid_buffers<float> two_d(2 * 4 + 16, 0);
  out = two_d.outputs();
  out.tokens = {};
  REQUIRE(apply(cpu{}, p, grid_inputs<float>{g, {}}, out) == status::ok);
  CHECK(two_d.source[3] == 2 * 4 + 2);  // window (1, 1) of frame 0: rows 2-3, columns 2-3
  CHECK(two_d.sizes[3] == 4.0f);
  CHECK(two_d.source[4] == 32);
  // A fused float32 frame pick shows in the sources: T = 16, S = 14, slow frame 7 is frame 7.
  const token_grid long_video{16, 2, 2};
  slowfast q;
  q.slow_frames = 14;
  for (auto how : {fma32, plain32}) {
    q.arithmetic = how;
    grid_buffers<float> b(retained_count(q, problem{long_video, 0}), 0);
    out = b.outputs();
    out.tokens = {};
    REQUIRE(apply(cpu{}, q, grid_inputs<float>{long_video, {}}, out) == status::ok);
    CHECK(b.source[2 * 7] == (how == fma32 ? 7 : 8) * 4);
  }
}

TEST_CASE("thumbnail_sampling: the README's V2 layout on 50 x 24 x 24", "[thumbnail]") {
  const index_t dim = 4;
  const token_matrix<float> x = make_tokens<float>(50 * 24 * 24, dim, layout::contiguous, 4);
  // example-begin thumbnail_sampling
  // TS-LLaVA V2: 2880 sampled tokens, then a 3 x 2 thumbnail of frames 0, 10, 20, 29, 39, 49.
  const tokred::thumbnail_sampling policy;
  const tokred::problem prob{{50, 24, 24}, dim};
  const tokred::thumbnail_layout segments = tokred::layout_of(policy, prob.grid);  // 2880 + 24·24
  std::vector<float> out(static_cast<std::size_t>(segments.count * dim));    // (kept, dim)
  std::vector<std::int32_t> positions(static_cast<std::size_t>(segments.count * 3));  // (kept, 3)
  const tokred::grid_inputs<float> in{prob.grid, x.rows};  // x.rows: (tokens, dim) encoder output
  const tokred::grid_outputs<float> outputs{tokred::make_view(out.data(), segments.count, dim), {},
                                            tokred::make_view(positions.data(), segments.count, 3), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, outputs);
  // example-end thumbnail_sampling
  REQUIRE(s == status::ok);
  REQUIRE(segments.count == 3456);
  // Sampled token 2399 is original token 23998 (torch's float32 pick; exact arithmetic: 23997).
  for (index_t d = 0; d < dim; ++d) CHECK(out[static_cast<std::size_t>(2399 * dim + d)] == x.rows(23998, d));
  CHECK(positions[3 * 2399] == 23998 / 576);
  // Thumbnail cell (8, 13) is tile (1, 1) = frame 29, tile cell (0, 1): the mean of rows [0, 3)
  // and columns [2, 4) of frame 29.
  const index_t cell = 2880 + 8 * 24 + 13;
  for (index_t d = 0; d < dim; ++d) {
    float sum = 0.0f;
    for (index_t h = 0; h < 3; ++h)
      for (index_t w = 2; w < 4; ++w) sum += x.rows(29 * 576 + h * 24 + w, d);
    CHECK(out[static_cast<std::size_t>(cell * dim + d)] == sum / 3.0f / 2.0f);
  }
  CHECK(positions[3 * cell] == 29);
  CHECK(positions[3 * cell + 1] == 1);  // rows [0, 3): lower middle 1
  CHECK(positions[3 * cell + 2] == 2);  // columns [2, 4): lower middle 2
}

TEST_CASE("thumbnail_sampling source, positions and sizes", "[thumbnail]") {
  // T = 4 of 4 x 4, n = 5: round(linspace(0, 63, 5)) = 0, 16, 32 (31.5 to even), 47, 63.
  // F = 2 → frames 0 and 3, tiled 2 x 1 in tiles of 2 x 4: a 4 x 4 thumbnail.
  const token_grid g{4, 4, 4};
  const thumbnail_sampling p = sampling_with(5, 2, fma32);
  grid_buffers<float> got(5 + 16, 0);
  grid_outputs<float> out = got.outputs();
  out.tokens = {};
  REQUIRE(apply(cpu{}, p, grid_inputs<float>{g, {}}, out) == status::ok);
  CHECK(got.source[0] == 0);
  CHECK(got.source[1] == 16);
  CHECK(got.source[2] == 32);
  CHECK(got.source[3] == 47);
  CHECK(got.source[4] == 63);
  for (std::size_t j = 0; j < 5; ++j) CHECK(got.sizes[j] == 1.0f);
  for (index_t y = 0; y < 4; ++y)
    for (index_t x = 0; x < 4; ++x) {
      const index_t frame = y < 2 ? 0 : 3, local_row = y % 2;  // 4 → 2 rows: bins [0, 2), [2, 4)
      const std::size_t j = static_cast<std::size_t>(5 + y * 4 + x);
      CHECK(got.source[j] == frame * 16 + 2 * local_row * 4 + x);
      CHECK(got.sizes[j] == 2.0f);
      CHECK(got.positions[3 * j] == frame);
      CHECK(got.positions[3 * j + 1] == 2 * local_row);
      CHECK(got.positions[3 * j + 2] == x);
    }
  // Thumbnail first: the same rows, rotated.
  thumbnail_sampling y = p;
  y.order = thumbnail_order::thumbnail_first;
  grid_buffers<float> first(21, 0);
  out = first.outputs();
  out.tokens = {};
  REQUIRE(apply(cpu{}, y, grid_inputs<float>{g, {}}, out) == status::ok);
  CHECK(std::vector<std::int64_t>(first.source.begin(), first.source.begin() + 16) ==
        std::vector<std::int64_t>(got.source.begin() + 5, got.source.end()));
  CHECK(std::vector<std::int64_t>(first.source.begin() + 16, first.source.end()) ==
        std::vector<std::int64_t>(got.source.begin(), got.source.begin() + 5));
}

namespace {

/// Runs `p` on outputs that `mutate` breaks and checks the status and that nothing was written.
template <class Policy, class Mutate>
void check_rejected(const Policy& p, const token_grid& g, index_t kept, status want, Mutate mutate,
                    const cpu<>& exec = cpu<>{}) {
  const index_t dim = 4;
  const token_matrix<float> x = make_tokens<float>(g.tokens() > 0 ? g.tokens() : 0, dim, layout::contiguous, 1);
  grid_buffers<float> got(kept, dim);
  grid_inputs<float> in{g, x.rows};
  grid_outputs<float> out = got.outputs();
  mutate(in, out, got);
  CHECK(apply(exec, p, in, out) == want);
  CHECK(got.untouched());
}

const auto no_change = [](grid_inputs<float>&, grid_outputs<float>&, grid_buffers<float>&) {};

}  // namespace

TEST_CASE("slowfast rejects bad input with its documented status and writes nothing", "[slowfast][bad]") {
  const token_grid g{6, 4, 4};
  const auto sf = [](index_t s) { return slowfast_with(s, fma32); };
  CHECK(can_implement(sf(7), problem{g, 4}) == status::budget_exceeds_input);
  CHECK(retained_count(sf(7), problem{g, 4}) == 0);
  check_rejected(sf(7), g, 16, status::budget_exceeds_input, no_change);
  check_rejected(sf(0), g, 16, status::invalid_budget, no_change);
  check_rejected(sf(-1), g, 16, status::invalid_budget, no_change);
  slowfast bad_fast = sf(2);
  bad_fast.fast_width = 0;
  check_rejected(bad_fast, g, 16, status::invalid_parameter, no_change);
  check_rejected(sf(2), token_grid{0, 4, 4}, 16, status::empty_input, no_change);
  check_rejected(sf(2), token_grid{6, 0, 4}, 16, status::empty_input, no_change);
  CHECK(can_implement(sf(2), problem{{6, -1, 4}, 4}) == status::shape_mismatch);
  // Frames too small for the slow pooling: one token (1-D), one row (2-D).
  check_rejected(sf(2), token_grid{6, 1, 1}, 16, status::invalid_parameter, no_change);
  slowfast two_d = sf(2);
  two_d.slow = slow_aggregation::spatial_2d_avg_pool;
  check_rejected(two_d, token_grid{6, 1, 8}, 16, status::invalid_parameter, no_change);
  // Views: wrong kept count, null data, dim 0, aliasing, a malformed share.
  const index_t kept = retained_count(sf(2), problem{g, 4});  // 2·8 + 6·16
  check_rejected(sf(2), g, kept + 1, status::shape_mismatch, no_change);
  check_rejected(sf(2), g, kept, status::null_pointer,
                 [](grid_inputs<float>&, grid_outputs<float>& o, grid_buffers<float>&) {
                   o.sizes = view<float, 1>(nullptr, {o.sizes.extent(0)});
                 });
  check_rejected(sf(2), g, kept, status::empty_input,
                 [](grid_inputs<float>& in, grid_outputs<float>& o, grid_buffers<float>& b) {
                   in.tokens = view<const float, 2>(in.tokens.data_handle(), {in.tokens.extent(0), 0});
                   o.tokens = view<float, 2>(b.tokens.data(), {b.kept, 0});
                 });
  check_rejected(sf(2), g, kept, status::aliasing,
                 [](grid_inputs<float>&, grid_outputs<float>& o, grid_buffers<float>& b) {
                   o.source = view<std::int64_t, 1>(reinterpret_cast<std::int64_t*>(b.tokens.data()),
                                                    {b.kept});
                 });
  check_rejected(sf(2), g, kept, status::invalid_exec, no_change, cpu<>{2, 2});
}

TEST_CASE("thumbnail_sampling rejects bad input with its documented status and writes nothing",
          "[thumbnail][bad]") {
  const token_grid g{6, 4, 4};  // 96 tokens
  check_rejected(sampling_with(97, 2, fma32), g, 16, status::budget_exceeds_input, no_change);
  CHECK(retained_count(sampling_with(97, 2, fma32), problem{g, 4}) == 0);
  check_rejected(sampling_with(0, 2, fma32), g, 16, status::invalid_budget, no_change);
  check_rejected(sampling_with(10, 7, fma32), g, 16, status::budget_exceeds_input, no_change);
  check_rejected(sampling_with(10, 0, fma32), g, 16, status::invalid_budget, no_change);
  check_rejected(sampling_with(10, 2, fma32), token_grid{0, 4, 4}, 16, status::empty_input, no_change);
  check_rejected(sampling_with(10, 2, fma32), token_grid{6, 4, 0}, 16, status::empty_input, no_change);
  CHECK(can_implement(sampling_with(10, 2, fma32), problem{{-6, 4, 4}, 4}) == status::shape_mismatch);
  // Six frames tile 3 x 2: a 2-row frame cannot hold 3 tile rows — unless the engine makes the
  // thumbnail itself.
  const token_grid flat{6, 2, 8};
  check_rejected(sampling_with(10, 6, fma32), flat, 16, status::invalid_parameter, no_change);
  thumbnail_sampling external = sampling_with(10, 6, fma32);
  external.include_thumbnail = false;
  CHECK(can_implement(external, problem{flat, 4}) == status::ok);
  CHECK(retained_count(external, problem{flat, 4}) == 10);
  const index_t kept = retained_count(sampling_with(10, 2, fma32), problem{g, 4});  // 10 + 16
  REQUIRE(kept == 26);
  check_rejected(sampling_with(10, 2, fma32), g, kept - 1, status::shape_mismatch, no_change);
  check_rejected(sampling_with(10, 2, fma32), g, kept, status::aliasing,
                 [](grid_inputs<float>& in, grid_outputs<float>& o, grid_buffers<float>&) {
                   o.tokens = view<float, 2>(const_cast<float*>(in.tokens.data_handle()), {o.tokens.extent(0), 4});
                 });
  check_rejected(sampling_with(10, 2, fma32), g, kept, status::invalid_exec, no_change, cpu<>{0, 0});
}
