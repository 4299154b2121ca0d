// tests/cpu/test_view.cpp — views (extents, strides, spans, overlap) and grid positions.
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include <tokred/core/checks.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>

#include "support/catch.hpp"

using namespace tokred;

TEST_CASE("a contiguous view is row-major", "[view]") {
  std::vector<float> data(24);
  const view<float, 3> v = make_view(data.data(), 2, 3, 4);  // (2, 3, 4)
  CHECK(v.rank() == 3);
  CHECK(v.extent(0) == 2);
  CHECK(v.stride(0) == 12);
  CHECK(v.stride(1) == 4);
  CHECK(v.stride(2) == 1);
  CHECK(v.size() == 24);
  CHECK(v.required_span_size() == 24);
  CHECK(&v(1, 2, 3) == &data[23]);
  CHECK(v.has_unit_inner_stride());
}

TEST_CASE("strided and negative-stride views address the right elements", "[view]") {
  std::vector<int> data(40);
  for (int i = 0; i < 40; ++i) data[static_cast<std::size_t>(i)] = i;
  const auto every_other = make_strided_view(data.data(), std::array<index_t, 2>{4, 3}, std::array<index_t, 2>{10, 2});
  CHECK(every_other(2, 1) == 22);
  CHECK(every_other.required_span_size() == 35);
  CHECK_FALSE(every_other.has_unit_inner_stride());
  const auto reversed = make_strided_view(data.data() + 30, std::array<index_t, 2>{4, 5}, std::array<index_t, 2>{-10, 1});
  CHECK(reversed(0, 0) == 30);
  CHECK(reversed(3, 4) == 4);
  CHECK(reversed.required_span_size() == 35);
  const view<const int, 2> as_const = reversed;  // mutable converts to const
  CHECK(as_const(1, 1) == 21);
  CHECK(as_const.stride(0) == -10);
}

TEST_CASE("overlap is judged on the byte ranges, with any stride sign", "[view]") {
  std::vector<float> data(100);
  const auto a = make_view(data.data(), 10, 5);
  const auto b = make_view(data.data() + 50, 10, 5);
  const auto c = make_view(data.data() + 49, 1);
  CHECK_FALSE(may_overlap(a, b));
  CHECK(may_overlap(a, c));
  const auto backwards = make_strided_view(data.data() + 60, std::array<index_t, 1>{5}, std::array<index_t, 1>{-3});
  CHECK(may_overlap(backwards, b));   // touches 48 .. 60
  CHECK(may_overlap(backwards, c));
  CHECK_FALSE(may_overlap(view<float, 2>{}, a));  // empty views overlap nothing
}

/// The element offsets (from `base`) a 3-D view touches, listed one by one.
std::set<std::ptrdiff_t> offsets_of(const view<float, 3>& v, const float* base) {
  std::set<std::ptrdiff_t> at;
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j)
      for (index_t k = 0; k < v.extent(2); ++k) at.insert(&v(i, j, k) - base);
  return at;
}

/// The random-layout tests' buffer, its middle (where views of negative strides start) and their
/// small random integers.
struct random_layouts {
  std::vector<float> data = std::vector<float>(4096);
  float* const mid = data.data() + 2048;
  std::mt19937 rng;
  explicit random_layouts(unsigned seed) : rng(seed) {}
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }
};

TEST_CASE("share_elements: exact for views of the same strides, any sign, against the element lists", "[view]") {
  random_layouts r(7);
  const auto pick = [&](int lo, int hi) { return r.pick(lo, hi); };
  std::vector<float>& data = r.data;
  float* const mid = r.mid;
  int shared = 0, apart = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const std::array<index_t, 3> stride{pick(-40, 40), pick(-12, 12), pick(-3, 3)};
    const auto extents = [&] { return std::array<index_t, 3>{pick(1, 4), pick(1, 6), pick(1, 5)}; };
    const view<float, 3> a = make_strided_view(mid, extents(), stride);
    const view<float, 3> b = make_strided_view(mid + pick(-60, 60), extents(), stride);
    const std::set<std::ptrdiff_t> x = offsets_of(a, mid), y = offsets_of(b, mid);
    bool common = false;
    for (const std::ptrdiff_t o : x) common = common || y.count(o) > 0;
    INFO("trial " << trial);
    CHECK(share_elements(a, b) == common);
    (common ? shared : apart) += 1;
  }
  CHECK(shared > 500);  // both answers well represented
  CHECK(apart > 500);
  // Keys and values interleaved per token, [K | V] rows: their byte ranges overlap, no element does.
  const auto k = make_strided_view(data.data(), std::array<index_t, 3>{2, 8, 16}, std::array<index_t, 3>{16 * 32, 32, 1});
  const auto v = make_strided_view(data.data() + 16, std::array<index_t, 3>{2, 8, 16}, std::array<index_t, 3>{16 * 32, 32, 1});
  CHECK(may_overlap(k, v));
  CHECK_FALSE(share_elements(k, v));
  CHECK(share_elements(k, k));
  // Other strides: as may_overlap.
  const auto w = make_strided_view(data.data() + 16, std::array<index_t, 3>{2, 8, 16}, std::array<index_t, 3>{16 * 32, 32, 2});
  CHECK(share_elements(k, w));
  // A zero stride of any extent moves nothing: a view shares its elements with itself.
  const auto flat = make_strided_view(data.data(), std::array<index_t, 2>{3, (index_t{1} << 62) + 2}, std::array<index_t, 2>{1, 0});
  CHECK(share_elements(flat, flat));
}

TEST_CASE("elements_distinct: exact for any strides, against the element lists", "[view]") {
  random_layouts r(11);
  const auto pick = [&](int lo, int hi) { return r.pick(lo, hi); };
  float* const mid = r.mid;
  int distinct = 0, repeating = 0;
  for (int trial = 0; trial < 4000; ++trial) {
    const std::array<index_t, 3> extents{pick(1, 4), pick(1, 6), pick(0, 5) == 0 ? 1 : pick(1, 5)};
    // Half the trials from nested layouts' strides, half from small ones that often interleave.
    const std::array<index_t, 3> stride = trial % 2 == 0
                                              ? std::array<index_t, 3>{pick(-40, 40), pick(-12, 12), pick(-3, 3)}
                                              : std::array<index_t, 3>{pick(-7, 7), pick(-7, 7), pick(-7, 7)};
    const view<float, 3> v = make_strided_view(mid, extents, stride);
    const bool want = static_cast<index_t>(offsets_of(v, mid).size()) == v.size();
    INFO("trial " << trial << ": extents " << extents[0] << " " << extents[1] << " " << extents[2] << ", strides "
                  << stride[0] << " " << stride[1] << " " << stride[2]);
    CHECK(elements_distinct(v) == want);
    (want ? distinct : repeating) += 1;
  }
  CHECK(distinct > 500);  // both answers well represented
  CHECK(repeating > 500);
  // Interleaved yet distinct: strides (3, 2) over extents (2, 3) reach 0 2 4 3 5 7; over (3, 4) they repeat.
  CHECK(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{2, 3}, std::array<index_t, 2>{3, 2})));
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{3, 4}, std::array<index_t, 2>{3, 2})));  // 0·3 + 3·2 = 2·3 + 0·2
  // Empty views, broadcast rows, and spans no index can count.
  CHECK(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{0, 8}, std::array<index_t, 2>{0, 0})));
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{4, 8}, std::array<index_t, 2>{0, 1})));
  CHECK(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{1, 8}, std::array<index_t, 2>{0, 1})));
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{4, 8}, std::array<index_t, 2>{index_t{1} << 61, 1})));
  // Zero strides of extents no search could count; one index along a dimension of any stride;
  // two dimensions of equal |stride|.
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{3, (index_t{1} << 62) + 2}, std::array<index_t, 2>{1, 0})));
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{1, (index_t{1} << 62) + 2}, std::array<index_t, 2>{5, 0})));
  CHECK(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{1, 8}, std::array<index_t, 2>{std::numeric_limits<index_t>::min(), 1})));
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 2>{2, 3}, std::array<index_t, 2>{-4, 4})));
  // A view that is only read may repeat elements: check_view tests that only of written views.
  const view<float, 2> broadcast = make_strided_view(mid, std::array<index_t, 2>{4, 8}, std::array<index_t, 2>{0, 1});
  CHECK(tokred::detail::check_view(broadcast, {4, 8}) == status::aliasing);
  CHECK(tokred::detail::check_view(tokred::detail::read_only(broadcast), {4, 8}) == status::ok);
  // Past the search's bound (more than 2^22 combinations off the widest dimension): as repeating.
  CHECK_FALSE(elements_distinct(make_strided_view(mid, std::array<index_t, 3>{3000, 3000, 3000},
                                                  std::array<index_t, 3>{7, 5, 3})));
}

TEST_CASE("span_fits: a span in bytes that an index can count", "[view]") {
  using a2 = std::array<index_t, 2>;
  const index_t top = std::numeric_limits<index_t>::max();
  CHECK(detail::span_fits(a2{4, 3}, a2{20, 1}, 4));
  CHECK(detail::span_fits(a2{0, 3}, a2{top, top}, 4));  // empty: reaches nothing
  CHECK_FALSE(detail::span_fits(a2{2, 2}, a2{std::numeric_limits<index_t>::min(), 1}, 1));
  CHECK_FALSE(detail::span_fits(a2{-1, 2}, a2{1, 1}, 1));
  // (e − 1)·|s| + 1 elements of 4 bytes: just fitting, then one element past.
  const index_t limit = top / 4;
  CHECK(detail::span_fits(a2{2, 1}, a2{limit - 1, 1}, 4));
  CHECK_FALSE(detail::span_fits(a2{2, 1}, a2{limit, 1}, 4));
  CHECK(detail::span_fits(a2{2, 1}, a2{-(limit - 1), 1}, 4));
  CHECK_FALSE(detail::span_fits(a2{3, 2}, a2{limit / 2, 1}, 4));  // 2·(limit/2) + 1 + 1 > limit
}

TEST_CASE("grid positions are (frame, row, column)", "[grid]") {
  const token_grid video{8, 14, 14};
  CHECK(video.tokens() == 1568);
  CHECK(video.frame_tokens() == 196);
  const token_position p = video.position(3 * 196 + 5 * 14 + 9);
  CHECK(p.t == 3);
  CHECK(p.h == 5);
  CHECK(p.w == 9);
  const token_position last = image_grid(27, 27).position(728);
  CHECK((last.t == 0 && last.h == 26 && last.w == 26));
  CHECK(sequence_grid(5).position(4).w == 4);
  CHECK_FALSE(token_grid{1, -1, 3}.valid());
}
