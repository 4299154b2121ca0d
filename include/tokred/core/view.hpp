// tokred/core/view.hpp — the non-owning strided view every policy reads and writes.
//
// A view is a value: a pointer, `Rank` extents and `Rank` signed element strides (as in DLPack),
// with the memory space (host or device) in its type and const-ness in its element type. It uses
// the mdspan vocabulary — `rank()`, `extent(r)`, `stride(r)`, `data_handle()`,
// `required_span_size()` — so adapters to mdspan, Eigen, DLPack and ggml stay a few lines each.
//
// Canonical axis orders (written as a trailing shape comment beside every view variable):
//   tokens (tokens, dim)       scores (tokens,)       kept indices (kept,)
//   positions (kept, 3)        KV (heads, tokens, head_dim)
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/config.hpp"

namespace tokred {

/// Memory-space tags: host memory (CPU backends) and CUDA device memory (CUDA backend).
struct host_space {};
struct device_space {};

/// A strided view of `Rank` dimensions over elements of type `T` in memory space `Space`.
///
/// Trivially copyable; pass it by value. A default-constructed view is empty (null, extents 0),
/// which outputs use to mean "not requested". Strides are in elements and may be zero or negative;
/// `data_handle()` points at element (0, …, 0).
template <class T, int Rank, class Space = host_space>
class view {
  static_assert(Rank >= 1, "tokred::view needs at least one dimension");
  static constexpr std::size_t dims = static_cast<std::size_t>(Rank);

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using space_type = Space;
  using index_type = index_t;

  constexpr view() noexcept = default;

  /// A contiguous row-major view (the last extent varies fastest).
  constexpr view(T* data, const std::array<index_t, dims>& extents) noexcept : data_(data) {
    index_t s = 1;
    for (std::size_t r = dims; r-- > 0;) {
      extents_[r] = extents[r];
      strides_[r] = s;
      s *= extents[r];
    }
  }

  /// A view with explicit element strides.
  constexpr view(T* data, const std::array<index_t, dims>& extents,
                 const std::array<index_t, dims>& strides) noexcept
      : data_(data) {
    for (std::size_t r = 0; r < dims; ++r) {
      extents_[r] = extents[r];
      strides_[r] = strides[r];
    }
  }

  /// A mutable view converts to a const one (never the reverse).
  template <class U, class = std::enable_if_t<!std::is_same_v<U, T> &&
                                              std::is_convertible_v<U (*)[], T (*)[]>>>
  constexpr view(const view<U, Rank, Space>& other) noexcept : data_(other.data_handle()) {
    for (int r = 0; r < Rank; ++r) {
      extents_[static_cast<std::size_t>(r)] = other.extent(r);
      strides_[static_cast<std::size_t>(r)] = other.stride(r);
    }
  }

  TOKRED_HOST_DEVICE static constexpr int rank() noexcept { return Rank; }
  TOKRED_HOST_DEVICE constexpr index_t extent(int r) const noexcept {
    return extents_[static_cast<std::size_t>(r)];
  }
  TOKRED_HOST_DEVICE constexpr index_t stride(int r) const noexcept {
    return strides_[static_cast<std::size_t>(r)];
  }
  TOKRED_HOST_DEVICE constexpr T* data_handle() const noexcept { return data_; }

  /// Number of elements the view spans (the product of its extents).
  TOKRED_HOST_DEVICE constexpr index_t size() const noexcept {
    index_t n = 1;
    for (std::size_t r = 0; r < dims; ++r) n *= extents_[r];
    return n;
  }
  /// Whether an extent is 0 (the product of the extents is not formed: it may not fit index_t).
  TOKRED_HOST_DEVICE constexpr bool empty() const noexcept {
    for (std::size_t r = 0; r < dims; ++r)
      if (extents_[r] == 0) return true;
    return false;
  }

  /// One more than the largest element offset reachable from `data_handle()` in the direction
  /// of each stride's sign, i.e. the number of elements the view touches end to end.
  TOKRED_HOST_DEVICE constexpr index_t required_span_size() const noexcept {
    if (empty()) return 0;
    index_t span = 1;
    for (std::size_t r = 0; r < dims; ++r)  // one index reaches nothing along its dimension
      if (extents_[r] > 1) span += (extents_[r] - 1) * (strides_[r] < 0 ? -strides_[r] : strides_[r]);
    return span;
  }

  /// True when the last dimension is unit-stride (a row can be read as one contiguous run).
  TOKRED_HOST_DEVICE constexpr bool has_unit_inner_stride() const noexcept {
    return extents_[dims - 1] <= 1 || strides_[dims - 1] == 1;
  }

  /// Element access; `sizeof...(i) == Rank`. No bounds checks.
  template <class... I>
  TOKRED_HOST_DEVICE constexpr T& operator()(I... i) const noexcept {
    static_assert(sizeof...(I) == Rank, "tokred::view: one index per dimension");
    const index_t idx[dims] = {static_cast<index_t>(i)...};
    index_t offset = 0;
    for (std::size_t r = 0; r < dims; ++r) offset += idx[r] * strides_[r];
    return data_[offset];
  }

 private:
  T* data_ = nullptr;
  index_t extents_[dims] = {};
  index_t strides_[dims] = {};
};

/// A contiguous row-major host view: `make_view(p, n, d)` is `(n, d)` with strides `(d, 1)`.
template <class T, class... I>
constexpr view<T, static_cast<int>(sizeof...(I))> make_view(T* data, I... extents) noexcept {
  return {data, {static_cast<index_t>(extents)...}};
}

/// As `make_view`, for device memory.
template <class T, class... I>
constexpr view<T, static_cast<int>(sizeof...(I)), device_space> make_device_view(
    T* data, I... extents) noexcept {
  return {data, {static_cast<index_t>(extents)...}};
}

/// A host view with explicit element strides.
template <class T, std::size_t Rank>
constexpr view<T, static_cast<int>(Rank)> make_strided_view(
    T* data, const std::array<index_t, Rank>& extents,
    const std::array<index_t, Rank>& strides) noexcept {
  return {data, extents, strides};
}

/// Tokens [first, first + count) of a `(heads, tokens, head_dim)` view (a KV cache), with its
/// strides: the prompt of a cache, one decode step's rows, the part a cache holds.
template <class T, class Space>
constexpr view<T, 3, Space> token_range(const view<T, 3, Space>& v, index_t first, index_t count) noexcept {
  return {v.data_handle() != nullptr ? v.data_handle() + first * v.stride(1) : nullptr,
          {v.extent(0), count, v.extent(2)}, {v.stride(0), v.stride(1), v.stride(2)}};
}

namespace detail {

/// Rows [first, first + count) of a (rows, cols) view, with its strides, in either memory space.
template <class T, class Space>
constexpr view<T, 2, Space> row_range(const view<T, 2, Space>& v, index_t first,
                                      index_t count) noexcept {
  return {v.data_handle() + first * v.stride(0), {count, v.extent(1)}, {v.stride(0), v.stride(1)}};
}

/// The extents and strides of `v` as arrays.
template <class T, int Rank, class Space>
constexpr auto extents_and_strides(const view<T, Rank, Space>& v) noexcept {
  std::array<std::array<index_t, static_cast<std::size_t>(Rank)>, 2> es{};
  for (int r = 0; r < Rank; ++r) {
    es[0][static_cast<std::size_t>(r)] = v.extent(r);
    es[1][static_cast<std::size_t>(r)] = v.stride(r);
  }
  return es;
}

/// Whether a view of these extents and strides reaches no byte further than an index can count
/// from its first element (`required_span_size` times the element size fits in index_t), so that
/// its span and the overlap tests compute without overflow. An empty view reaches nothing.
template <std::size_t Rank>
constexpr bool span_fits(const std::array<index_t, Rank>& extents, const std::array<index_t, Rank>& strides,
                         index_t element_bytes) noexcept {
  for (const index_t n : extents)
    if (n <= 0) return n == 0;
  const index_t limit = std::numeric_limits<index_t>::max() / element_bytes;  // in elements
  index_t span = 1;
  for (std::size_t r = 0; r < Rank; ++r) {
    const index_t more = extents[r] - 1;
    if (more == 0) continue;  // one index: any stride
    if (strides[r] == std::numeric_limits<index_t>::min()) return false;
    const index_t step = strides[r] < 0 ? -strides[r] : strides[r];
    constexpr index_t small = index_t{1} << 31;  // below it the product fits: no division needed
    if (step < small && more < small ? more * step > limit - span : step > (limit - span) / more) return false;
    span += more * step;
  }
  return true;
}

/// span_fits for the extents and strides of `v`.
template <class T, int Rank, class Space>
constexpr bool span_fits(const view<T, Rank, Space>& v) noexcept {
  const auto es = extents_and_strides(v);
  return span_fits(es[0], es[1], static_cast<index_t>(sizeof(T)));
}

/// `v` as a view of const elements: for the checks of a view that is only read.
template <class T, int Rank, class Space>
constexpr view<const T, Rank, Space> read_only(const view<T, Rank, Space>& v) noexcept {
  return v;
}

/// The half-open byte-address interval a view touches; empty views give an empty interval.
struct byte_interval {
  std::uintptr_t begin = 0;
  std::uintptr_t end = 0;
};

template <class T, int Rank, class Space>
byte_interval byte_extent(const view<T, Rank, Space>& v) noexcept {
  if (v.empty() || v.data_handle() == nullptr) return {};
  index_t lo = 0;
  index_t hi = 0;
  for (int r = 0; r < Rank; ++r) {
    const index_t reach = (v.extent(r) - 1) * v.stride(r);
    (reach < 0 ? lo : hi) += reach;
  }
  const auto base = reinterpret_cast<std::uintptr_t>(v.data_handle());
  const auto elem = static_cast<index_t>(sizeof(T));
  return {base + static_cast<std::uintptr_t>(lo * elem),
          base + static_cast<std::uintptr_t>((hi + 1) * elem)};
}

/// Whether two byte intervals share a byte (an empty one shares none).
constexpr bool intervals_meet(const byte_interval& x, const byte_interval& y) noexcept {
  return x.begin != x.end && y.begin != y.end && x.begin < y.end && y.begin < x.end;
}

}  // namespace detail

/// True when the address ranges of `a` and `b` intersect. Conservative: two views interleaved
/// without sharing an element (e.g. even and odd columns of one buffer) are also reported.
template <class A, int RA, class B, int RB, class Space>
bool may_overlap(const view<A, RA, Space>& a, const view<B, RB, Space>& b) noexcept {
  return detail::intervals_meet(detail::byte_extent(a), detail::byte_extent(b));
}

namespace detail {

/// True when `a` and `b` start at one element of one type and step alike: the same first
/// element and strides, whatever their constness and extents (an operation in place).
template <class A, class B, int R, class Space>
bool same_origin(const view<A, R, Space>& a, const view<B, R, Space>& b) noexcept {
  if constexpr (!std::is_same_v<std::remove_const_t<A>, std::remove_const_t<B>>) {
    return false;
  } else {
    if (static_cast<const void*>(a.data_handle()) != static_cast<const void*>(b.data_handle())) return false;
    for (int r = 0; r < R; ++r)
      if (a.stride(r) != b.stride(r)) return false;
    return true;
  }
}

/// Whether Σ δ_r·stride_r = target for integers low_r ≤ δ_r ≤ high_r, not all zero where
/// `nonzero`. Every dimension but the one of the widest range is enumerated (at most 2^22
/// combinations) and δ along that one solved for; past that bound the answer is `otherwise`.
/// The caller keeps |Σ δ_r·stride_r| and |target| within index_t.
template <std::size_t Rank>
bool offset_reachable(const std::array<index_t, Rank>& low, const std::array<index_t, Rank>& high,
                      const std::array<index_t, Rank>& stride, index_t target, bool nonzero, bool otherwise) noexcept {
  static_assert(Rank >= 1, "offset_reachable: at least one dimension");
  constexpr index_t limit = index_t{1} << 22;
  std::size_t widest = 0;
  for (std::size_t r = 1; r < Rank; ++r)
    if (high[r] - low[r] > high[widest] - low[widest]) widest = r;
  index_t combinations = 1;
  for (std::size_t r = 0; r < Rank; ++r)
    if (r != widest) {
      const index_t values = high[r] - low[r] + 1;
      if (values > limit / combinations) return otherwise;
      combinations *= values;
    }
  std::array<index_t, Rank> delta = low;
  const index_t along = stride[widest], first = low[widest], last = high[widest];
  for (index_t c = 0; c < combinations; ++c) {
    index_t rest = target;  // what δ along the widest dimension must make up
    bool others_zero = true;
    for (std::size_t r = 0; r < Rank; ++r)
      if (r != widest) {
        rest -= delta[r] * stride[r];
        others_zero = others_zero && delta[r] == 0;
      }
    const bool zero_ok = !nonzero || !others_zero;  // may δ along the widest be 0?
    if (along == 0) {  // any δ there: a nonzero one exists unless the range is {0}
      if (rest == 0 && (zero_ok || first != 0 || last != 0)) return true;
    } else if (rest % along == 0) {
      const index_t d = rest / along;
      if (d >= first && d <= last && (zero_ok || d != 0)) return true;
    }
    for (std::size_t r = 0; r < Rank; ++r) {  // the next combination, an odometer
      if (r == widest) continue;
      if (++delta[r] <= high[r]) break;
      delta[r] = low[r];
    }
  }
  return false;
}

}  // namespace detail

/// True when `a` and `b` share an element. Exact where they have the same strides and lie a
/// whole number of elements apart: the offsets of two elements then differ by Σ δ_r·stride_r with
/// −(extent of b along r − 1) ≤ δ_r ≤ extent of a along r − 1 (detail::offset_reachable).
/// Otherwise, past that search's bound, and for spans near index_t's limit, as may_overlap: any
/// common byte range counts.
template <class T, int Rank, class Space>
bool share_elements(const view<T, Rank, Space>& a, const view<T, Rank, Space>& b) noexcept {
  if (!may_overlap(a, b)) return false;
  const auto elem = static_cast<std::intptr_t>(sizeof(T));
  const std::intptr_t apart = reinterpret_cast<std::intptr_t>(b.data_handle()) - reinterpret_cast<std::intptr_t>(a.data_handle());
  if (apart % elem != 0) return true;
  const auto [ea, sa] = detail::extents_and_strides(a);
  const auto [eb, sb] = detail::extents_and_strides(b);
  // Spans of at most a quarter of index_t (in bytes, so in elements) keep every sum below in range.
  if (sa != sb || !detail::span_fits(ea, sa, 4 * elem) || !detail::span_fits(eb, sb, 4 * elem)) return true;
  std::array<index_t, static_cast<std::size_t>(Rank)> low{}, high{};
  for (std::size_t r = 0; r < low.size(); ++r) {  // a zero stride moves nothing: δ = 0 there
    low[r] = sa[r] == 0 ? 0 : 1 - eb[r];
    high[r] = sa[r] == 0 ? 0 : ea[r] - 1;
  }
  return detail::offset_reachable(low, high, sa, static_cast<index_t>(apart / elem), false, true);
}

/// True when no two indices of `v` reach one element. The usual layouts pass at once: taken by
/// increasing |stride|, each dimension of extent above 1 steps past everything the smaller ones
/// reach. A zero stride or two equal |strides| (of extents above 1) repeat at once. Other
/// interleaved strides are decided by detail::offset_reachable, exactly up to its bound and as
/// repeating past it, or where the span nears index_t's limit.
template <class T, int Rank, class Space>
bool elements_distinct(const view<T, Rank, Space>& v) noexcept {
  constexpr auto rank = static_cast<std::size_t>(Rank);
  if (v.empty()) return true;
  const auto es = detail::extents_and_strides(v);
  const auto &extents = es[0], &strides = es[1];
  if (!detail::span_fits(extents, strides, 4 * static_cast<index_t>(sizeof(T)))) return false;
  const auto size_of = [&](std::size_t r) { return strides[r] < 0 ? -strides[r] : strides[r]; };
  std::array<std::size_t, rank> order{};
  std::size_t n = 0;  // the dimensions of extent above 1 by increasing |stride| (insertion sort)
  for (std::size_t r = 0; r < rank; ++r) {
    if (extents[r] == 1) continue;
    std::size_t at = n++;
    for (; at > 0 && size_of(order[at - 1]) > size_of(r); --at) order[at] = order[at - 1];
    order[at] = r;
  }
  index_t previous = 0;  // a zero stride, or two equal |strides| (δ = ±1 along both), repeat
  for (std::size_t i = 0; i < n; previous = size_of(order[i++]))
    if (size_of(order[i]) == previous) return false;
  index_t reach = 0;  // the largest offset the dimensions before reach
  bool nested = true;
  for (std::size_t i = 0; i < n && nested; ++i) {
    nested = size_of(order[i]) > reach;
    reach += size_of(order[i]) * (extents[order[i]] - 1);
  }
  if (nested) return true;
  std::array<index_t, rank> low{}, high{};
  for (std::size_t r = 0; r < rank; ++r) {
    low[r] = 1 - extents[r];
    high[r] = extents[r] - 1;
  }
  return !detail::offset_reachable(low, high, strides, 0, true, true);
}

/// True when `v` may overlap any of `others` (views of one memory space). `v`'s interval is
/// computed once.
template <class V, class... Vs>
bool overlaps_any(const V& v, const Vs&... others) noexcept {
  static_assert((std::is_same_v<typename V::space_type, typename Vs::space_type> && ...),
                "tokred: overlap tests compare views of one memory space");
  const detail::byte_interval x = detail::byte_extent(v);
  return (detail::intervals_meet(x, detail::byte_extent(others)) || ...);
}

/// True when any two of `views` may overlap. Empty views overlap nothing, so an optional output
/// left empty needs no special case.
template <class V, class... Vs>
bool any_overlap(const V& first, const Vs&... rest) noexcept {
  static_assert((std::is_same_v<typename V::space_type, typename Vs::space_type> && ...),
                "tokred: overlap tests compare views of one memory space");
  const detail::byte_interval x[] = {detail::byte_extent(first), detail::byte_extent(rest)...};  // each once
  constexpr std::size_t n = 1 + sizeof...(Vs);
  for (std::size_t i = 0; i + 1 < n; ++i)
    for (std::size_t j = i + 1; j < n; ++j)
      if (detail::intervals_meet(x[i], x[j])) return true;
  return false;
}

}  // namespace tokred
