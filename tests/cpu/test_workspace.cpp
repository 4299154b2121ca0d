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

TEST_CASE("a count too large for size_t saturates; a carve never runs past the buffer", "[workspace]") {
  detail::arena counter;
  counter.take<float>(PTRDIFF_MAX);  // 4 · (2^63 − 1) bytes: past size_t
  CHECK(counter.saturated());
  CHECK(counter.used() == SIZE_MAX);
  counter.take<float>(8);  // stays saturated
  CHECK(counter.used() == SIZE_MAX);

  detail::arena product;
  product.take<float>(index_t{1} << 40, index_t{1} << 40);  // the product itself overflows
  CHECK(product.saturated());
  detail::arena fits;
  fits.take<float>(3, 5, 7);
  fits.take<double>(-4, 2);  // a negative count takes nothing
  CHECK(fits.used() == 3 * 5 * 7 * sizeof(float) + 2 * (detail::arena::alignment - 1));
  detail::arena nested;
  nested.take_bytes(SIZE_MAX);
  CHECK(nested.saturated());

  // A carve whose count ran past its capacity by the padding it counted still refuses the next
  // buffer (capacity − used must not wrap).
  std::vector<std::byte> buffer(256);
  std::byte* line = buffer.data() + (64 - reinterpret_cast<std::uintptr_t>(buffer.data()) % 64) % 64;
  detail::arena carver(workspace{line, 100});
  CHECK(carver.take<std::byte>(90) != nullptr);
  CHECK(carver.take<std::byte>(1) == nullptr);
  CHECK_FALSE(carver.fits());
  detail::arena huge(workspace{buffer.data(), buffer.size()});
  CHECK(huge.take<float>(PTRDIFF_MAX) == nullptr);
  CHECK_FALSE(huge.fits());
}
