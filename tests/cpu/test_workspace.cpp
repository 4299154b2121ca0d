// tests/cpu/test_workspace.cpp — the count and the carve agree for any base alignment, and
// a workspace of exactly `workspace_bytes` is always enough.
#include <cstddef>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/catch.hpp"

using namespace tokred;

TEST_CASE("a carve never needs more than the count, whatever the base alignment", "[workspace]") {
  const auto sequence = [](detail::arena& a) {
    auto* p = a.take<std::uint64_t>(13);
    auto* q = a.take<std::int64_t>(7);
    auto* r = a.take<char>(1);
    return std::vector<void*>{p, q, r};
  };
  detail::arena counter;
  sequence(counter);
  const std::size_t need = counter.used();
  std::vector<std::byte> buffer(need + 64);
  for (std::size_t offset = 0; offset < 64; ++offset) {
    detail::arena carver(workspace{buffer.data() + offset, need});
    const std::vector<void*> ptrs = sequence(carver);
    REQUIRE(carver.fits());
    for (void* p : ptrs) {
      CHECK(reinterpret_cast<std::uintptr_t>(p) % detail::arena::alignment == 0);
      CHECK(static_cast<std::byte*>(p) >= buffer.data() + offset);
    }
    CHECK(static_cast<std::byte*>(ptrs[2]) + 1 <= buffer.data() + offset + need);
  }
  detail::arena tight(workspace{buffer.data(), 8});
  sequence(tight);
  CHECK_FALSE(tight.fits());
}

TEST_CASE("workspace sizes follow the policy and the thread split", "[workspace]") {
  const problem prob{token_grid{4, 24, 24}, 64};
  const std::size_t one = workspace_bytes(cpu{0, 1}, topk{keep_budget::ratio(0.5, rounding::floor)}, prob);
  const std::size_t four = workspace_bytes(cpu{0, 4}, topk{keep_budget::ratio(0.5, rounding::floor)}, prob);
  CHECK(one >= 2304 * (sizeof(std::uint32_t) + sizeof(std::int64_t) / 2));  // keys + kept
  CHECK(four == 4 * one);
  const std::size_t frame = workspace_bytes(cpu{}, topk{keep_budget::ratio(0.5, rounding::floor), scope::per_frame}, prob);
  CHECK(frame < one);
  CHECK(workspace_bytes(cpu{}, uniform{keep_budget::count(10)}, prob) == 0);
  CHECK(workspace_bytes(cpu{}, gather{}, prob) == 0);
  CHECK(workspace_bytes(cpu{}, topk{keep_budget::count(0)}, prob) == 0);  // invalid: nothing to size
}
