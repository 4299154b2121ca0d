// tests/cpu/test_view.cpp — views (extents, strides, spans, overlap) and grid positions.
#include <array>
#include <cstdint>
#include <vector>

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
