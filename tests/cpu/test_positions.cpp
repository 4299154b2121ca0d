// tests/cpu/test_positions.cpp — sequence_positions: FastV's original ids and PyramidDrop's
// contiguous renumbering of kept tokens, and its bad inputs.
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/policy/positions.hpp>

#include "support/catch.hpp"

using namespace tokred;

TEST_CASE("kept tokens keep their original ids or are renumbered", "[positions]") {
  // FastV: an image span at positions 36 … 611; kept image tokens 3, 10, 575.
  const std::vector<std::int64_t> source = {3, 10, 575};
  std::vector<std::int64_t> ids(3, -1);
  REQUIRE(sequence_positions(make_view(source.data(), 3), 36, position_ids::original, make_view(ids.data(), 3)) ==
          status::ok);
  CHECK(ids == std::vector<std::int64_t>{39, 46, 611});
  REQUIRE(sequence_positions(make_view(source.data(), 3), 36, position_ids::contiguous, make_view(ids.data(), 3)) ==
          status::ok);
  CHECK(ids == std::vector<std::int64_t>{36, 37, 38});
  // Renumbering needs no source: only its length.
  REQUIRE(sequence_positions(view<const std::int64_t, 1>(nullptr, {3}), 0, position_ids::contiguous,
                             make_view(ids.data(), 3)) == status::ok);
  CHECK(ids == std::vector<std::int64_t>{0, 1, 2});
}

TEST_CASE("sequence_positions rejects bad views and writes nothing", "[positions][bad_input]") {
  std::vector<std::int64_t> source = {5, 6, 7}, ids(3, -1);
  CHECK(sequence_positions(make_view(source.data(), 3), 0, position_ids::original, make_view(ids.data(), 2)) ==
        status::shape_mismatch);
  CHECK(sequence_positions(view<const std::int64_t, 1>(nullptr, {3}), 0, position_ids::original,
                           make_view(ids.data(), 3)) == status::null_pointer);
  CHECK(sequence_positions(make_view(source.data(), 3), 0, position_ids::original,
                           view<std::int64_t, 1>(nullptr, {3})) == status::null_pointer);
  CHECK(sequence_positions(make_view(source.data(), 3), 0, position_ids::original, make_view(source.data() + 1, 3 - 1)) ==
        status::shape_mismatch);
  CHECK(ids == std::vector<std::int64_t>(3, -1));
  std::vector<std::int64_t> both = {1, 2, 3, 4};
  CHECK(sequence_positions(make_view(both.data(), 3), 0, position_ids::original, make_view(both.data() + 1, 3)) ==
        status::aliasing);
  CHECK(both == std::vector<std::int64_t>{1, 2, 3, 4});
  CHECK(sequence_positions(view<const std::int64_t, 1>{}, 9, position_ids::original, view<std::int64_t, 1>{}) ==
        status::ok);
  // Ids past std::int64_t: refused before any is written; the last one that fits is written.
  constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max();
  CHECK(sequence_positions(make_view(source.data(), 3), most - 6, position_ids::original, make_view(ids.data(), 3)) ==
        status::index_out_of_range);
  CHECK(sequence_positions(make_view(source.data(), 3), most - 1, position_ids::contiguous, make_view(ids.data(), 3)) ==
        status::index_out_of_range);
  const std::vector<std::int64_t> below = {-3, 0};
  CHECK(sequence_positions(make_view(below.data(), 2), std::numeric_limits<std::int64_t>::min() + 2,
                           position_ids::original, make_view(ids.data(), 2)) == status::index_out_of_range);
  CHECK(ids == std::vector<std::int64_t>(3, -1));
  REQUIRE(sequence_positions(make_view(source.data(), 3), most - 7, position_ids::original, make_view(ids.data(), 3)) ==
          status::ok);
  CHECK(ids == std::vector<std::int64_t>{most - 2, most - 1, most});
}
