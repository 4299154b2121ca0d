// tests/cpu/test_no_allocation.cpp — `apply` never allocates: global operator new is counted
// while every selection policy runs on every element type.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"

namespace {
std::atomic<long> allocations{0};
}

// Every replaceable allocation function is replaced, so that no allocation escapes the count
// and every pointer is released by the function family that made it.
void* operator new(std::size_t size) {
  ++allocations;
  if (void* p = std::malloc(size ? size : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, std::align_val_t align) {
  ++allocations;
  const std::size_t a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  ++allocations;
  return std::malloc(size ? size : 1);
}
void* operator new(std::size_t size, std::align_val_t align, const std::nothrow_t&) noexcept {
  ++allocations;
  const std::size_t a = static_cast<std::size_t>(align);
  return std::aligned_alloc(a, (size + a - 1) / a * a);
}
void* operator new[](std::size_t size) { return operator new(size); }
void* operator new[](std::size_t size, std::align_val_t align) { return operator new(size, align); }
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void* operator new[](std::size_t size, std::align_val_t align, const std::nothrow_t& tag) noexcept {
  return operator new(size, align, tag);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using namespace tokred;
using namespace tokred::testing;

/// Allocations made while both shares of a two-share call run.
template <class Policy, class In, class Out>
long allocations_in_both_shares(const Policy& policy, const In& in, const Out& out, workspace ws) {
  const long before = allocations.load();
  status s0 = apply(cpu{0, 2}, policy, in, out, ws);
  status s1 = apply(cpu{1, 2}, policy, in, out, ws);
  const long during = allocations.load() - before;
  REQUIRE(s0 == status::ok);
  REQUIRE(s1 == status::ok);
  return during;
}

template <class E, class Policy>
long allocations_during_apply(const Policy& policy) {
  const token_grid grid{3, 12, 12};
  const index_t n = grid.tokens(), dim = 40;
  const std::vector<float> scores = tie_heavy_scores(n, 3);
  const token_matrix<E> tokens = make_tokens<E>(n, dim, layout::strided, 4);
  const index_t kept = retained_count(policy, problem{grid, dim});
  selection_buffers<E> out(kept, dim);
  host_workspace ws(workspace_bytes(cpu{0, 2}, policy, problem{grid, dim}));
  const selection_inputs<E> in{grid, make_view(scores.data(), n), tokens.rows};
  return allocations_in_both_shares(policy, in, out.outputs(), ws.get());
}

}  // namespace

TEMPLATE_TEST_CASE("apply never allocates", "[workspace][allocation]", float, f16, bf16) {
  // The counter itself works: a vector allocation is seen.
  const long before = allocations.load();
  { std::vector<int> probe(10); (void)probe; }
  REQUIRE(allocations.load() > before);

  CHECK(allocations_during_apply<TestType>(topk{keep_budget::ratio(0.3, rounding::floor)}) == 0);
  CHECK(allocations_during_apply<TestType>(topk{keep_budget::ratio(0.3, rounding::ceil), scope::per_frame}) == 0);
  CHECK(allocations_during_apply<TestType>(uniform{keep_budget::count(40)}) == 0);
  CHECK(allocations_during_apply<TestType>(random_subset{keep_budget::count(40), 5, scope::per_frame}) == 0);
}

namespace {

template <class E, class Policy>
long allocations_during_diversity(const Policy& policy) {
  const token_grid grid{3, 12, 12};
  const index_t n = grid.tokens(), dim = 40;
  const std::vector<float> scores = importance(n, 3);
  const token_matrix<E> tokens = continuous_rows<E>(n, dim, layout::strided, 4);
  const token_matrix<E> query = continuous_rows<E>(2, dim, layout::contiguous, 5);
  diversity_buffers<E> out(retained_count(policy, problem{grid, dim}), dim);
  host_workspace ws(workspace_bytes(cpu{0, 2}, policy, problem{grid, dim}));
  const diversity_inputs<E> in{grid, tokens.rows, {}, make_view(scores.data(), n), query.rows};
  return allocations_in_both_shares(policy, in, out.outputs(), ws.get());
}

}  // namespace

TEMPLATE_TEST_CASE("diversity selections never allocate", "[workspace][allocation]", float, f16, bf16) {
  CHECK(allocations_during_diversity<TestType>(divprune{keep_budget::ratio(0.1, rounding::half_even)}) == 0);
  CHECK(allocations_during_diversity<TestType>(kcenter{keep_budget::count(9), scope::per_frame, 3}) == 0);
  CHECK(allocations_during_diversity<TestType>(importance_diversity{keep_budget::count(30)}) == 0);
  CHECK(allocations_during_diversity<TestType>(cdpruner::openvino(90)) == 0);
}
