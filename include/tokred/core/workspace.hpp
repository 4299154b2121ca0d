// tokred/core/workspace.hpp — caller-owned scratch memory and the one carve-up that sizes it.
//
// Policies never allocate. Each backend describes its scratch buffers once, as a sequence of
// `arena::take` calls; `workspace_bytes` runs that sequence on a counting arena and `apply`
// runs the very same sequence on the caller's buffer, so the size query and the use cannot
// disagree. Any buffer of `workspace_bytes(...)` bytes works, whatever its alignment.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"

namespace tokred {

/// Caller-owned scratch memory passed to `apply`: host memory for CPU execs, device memory for
/// CUDA execs. `{nullptr, 0}` is fine for policies whose `workspace_bytes` is 0.
struct workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

/// `workspace_too_small` when `ws` holds fewer than `need` bytes, `null_pointer` when it has no
/// data but bytes are needed, `ok` otherwise: the check every `apply` makes before carving.
constexpr status check_workspace(workspace ws, std::size_t need) noexcept {
  if (ws.bytes < need) return status::workspace_too_small;
  return need > 0 && ws.data == nullptr ? status::null_pointer : status::ok;
}

namespace detail {

/// ⌈n / m⌉ for n ≥ 0 and m ≥ 1, without forming n + m − 1 (which overflows near the largest n).
constexpr index_t ceil_div(index_t n, index_t m) noexcept { return n / m + (n % m != 0); }

/// a · b for counts a, b ≥ 0 (a negative one counts as 0), saturating at the largest index_t:
/// the size of a problem too large for any buffer, where the product would overflow.
constexpr index_t saturating_product(index_t a, index_t b) noexcept {
  if (a <= 0 || b <= 0) return 0;
  return a > PTRDIFF_MAX / b ? PTRDIFF_MAX : a * b;
}

/// n ≥ 0 rounded up to a multiple of m ≥ 1, saturating as `saturating_product` does.
constexpr index_t saturating_round_up(index_t n, index_t m) noexcept { return saturating_product(ceil_div(n, m), m); }

/// Bump allocator over a workspace with a count-only mode (null base).
class arena {
 public:
  /// Every buffer is aligned to this many bytes (a cache line; also enough for CUDA vector loads).
  static constexpr std::size_t alignment = 64;

  /// Counting arena: `take` returns null and only accumulates the size it would need.
  constexpr arena() noexcept = default;
  /// Carving arena over the caller's buffer.
  explicit constexpr arena(workspace ws) noexcept
      : base_(static_cast<std::byte*>(ws.data)), capacity_(ws.bytes) {}

  /// Reserves `count` objects of type T. In counting mode returns null; in carving mode returns
  /// null once the buffer is exhausted (then `fits()` is false and the caller must not proceed).
  /// A size past what `std::size_t` counts saturates at `most`: no buffer holds it (see
  /// `saturated()`).
  template <class T>
  T* take(index_t count) noexcept {
    return take_objects<T>(count < 0 ? 0 : static_cast<std::size_t>(count));
  }
  /// Reserves count · more… objects of type T: the product saturates as the size does, so a
  /// problem too large to count asks for a workspace no buffer holds instead of wrapping.
  template <class T, class... More>
  T* take(index_t count, More... more) noexcept {
    std::size_t n = count < 0 ? 0 : static_cast<std::size_t>(count);
    for (const index_t m : {static_cast<index_t>(more)...}) {
      const std::size_t f = m < 0 ? 0 : static_cast<std::size_t>(m);
      n = f != 0 && n > most / f ? most : n * f;
    }
    return take_objects<T>(n);
  }
  /// Reserves `bytes` bytes: another workspace nested in this one (a size_t, which may be
  /// saturated).
  std::byte* take_bytes(std::size_t bytes) noexcept { return take_objects<std::byte>(bytes); }

 private:
  template <class T>
  T* take_objects(std::size_t n) noexcept {
    const bool countless = n > (most - alignment) / sizeof(T);
    const std::size_t bytes = countless ? 0 : n * sizeof(T);
    if (!base_) {
      // The worst-case alignment padding is counted for every buffer, so a carve of any base
      // address never needs more than the count.
      used_ = countless || used_ > most - (bytes + alignment - 1) ? most : used_ + bytes + alignment - 1;
      return nullptr;
    }
    const auto address = reinterpret_cast<std::uintptr_t>(base_) + used_;
    const std::size_t pad = (alignment - address % alignment) % alignment;
    const std::size_t need = pad + bytes;
    // used_ may pass capacity_ by the padding it counted: capacity_ − used_ must not wrap.
    if (countless || used_ > capacity_ || need > capacity_ - used_) {
      overflow_ = true;
      used_ = capacity_;
      return nullptr;
    }
    T* p = reinterpret_cast<T*>(base_ + (used_ + pad));
    used_ += need + (alignment - 1 - pad);  // keep the carve's offsets in step with the count
    return p;
  }

 public:
  /// Bytes reserved so far (in counting mode: the size the caller must provide; `most` once
  /// saturated).
  constexpr std::size_t used() const noexcept { return used_; }
  /// True once a count reached `most`: a problem too large for any buffer.
  constexpr bool saturated() const noexcept { return used_ == most; }
  /// False once a carve ran past the caller's buffer.
  constexpr bool fits() const noexcept { return !overflow_; }
  constexpr bool counting() const noexcept { return base_ == nullptr; }

 private:
  static constexpr std::size_t most = SIZE_MAX;
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
  bool overflow_ = false;
};

/// The scratch of share `ith` when each of `nth` shares takes the same slice: `carve_one(a)` is
/// called once per share, in share order, so every share sees the same layout and the count is
/// nth slices. Returns slice `ith` (null pointers when counting).
template <class CarveOne>
auto carve_shares(arena& a, int ith, int nth, const CarveOne& carve_one) {
  decltype(carve_one(a)) mine{};
  for (int s = 0; s < nth; ++s) {
    const auto slice = carve_one(a);
    if (s == ith) mine = slice;
  }
  return mine;
}

}  // namespace detail
}  // namespace tokred
