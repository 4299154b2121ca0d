// tokred/interop/mdspan.hpp — mdspans (std::, Kokkos' reference, cuda::std::) as tokred views,
// and views as mdspans. Optional: include it where both meet; <tokred/tokred.hpp> does not.
//
// Written against the mdspan vocabulary only — `M::rank()`, `extent(r)`, `stride(r)`,
// `data_handle()`, `M::element_type`, `M::extents_type`, `M::mapping_type`, `M::index_type` — so
// it includes no mdspan implementation and works with any of them: `std::mdspan` (C++23),
// `Kokkos::mdspan`, `cuda::std::mdspan` (libcu++, also as host C++17), or an engine's own type.
//
//   from_mdspan(m)                   -> view<E, rank, host_space>   layout_right, layout_left,
//   from_mdspan<device_space>(m)     -> view<E, rank, device_space> layout_stride, any strided one
//   from_mdspan<Space, f16>(m)       -> the same, with the 16-bit element reinterpreted (__half)
//   to_mdspan(v, out)                -> status: `out` made from a view, when its layout can hold it
//
// An mdspan carries no memory space: the caller says where its data lives (a cuda::std::mdspan
// over cudaMalloc'ed memory is `from_mdspan<tokred::device_space>(m)`). mdspan strides are
// non-negative, so every mdspan has a view; the way back needs positive, non-overlapping strides
// (layout_stride's preconditions) or exactly the strides of the target's fixed layout.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

namespace detail {

template <class M, class = void>
struct has_is_always_strided : std::false_type {};
template <class M>
struct has_is_always_strided<M, std::void_t<decltype(M::is_always_strided())>> : std::true_type {};

/// The view element for an mdspan element `From`: `From` itself, or `As` (same size and
/// alignment) with the const-ness of `From`.
template <class From, class As>
struct mdspan_element {
  using type = std::conditional_t<std::is_const_v<From>, const As, As>;
  static_assert(sizeof(From) == sizeof(As) && alignof(From) == alignof(As),
                "tokred::from_mdspan: the element type it is read as must have the size and "
                "alignment of the mdspan's (e.g. __half as tokred::f16)");
};
template <class From>
struct mdspan_element<From, void> {
  using type = From;
};

/// The array type a strided mapping gives its strides as (`std::array` for std:: and Kokkos,
/// `cuda::std::array` for libcu++), and so takes them in; void for a mapping without `strides()`.
template <class Mapping, class = void>
struct stride_array_of {
  using type = void;
};
template <class Mapping>
struct stride_array_of<Mapping, std::void_t<decltype(std::declval<const Mapping&>().strides())>> {
  using type = std::remove_cv_t<
      std::remove_reference_t<decltype(std::declval<const Mapping&>().strides())>>;
};

/// `X(e[0], …, e[Rank-1])`: every mdspan implementation's extents take all extents this way.
template <class X, class I, std::size_t Rank, std::size_t... R>
X make_extents(const std::array<I, Rank>& e, std::index_sequence<R...>) noexcept {
  return X(e[R]...);
}

/// True when the non-negative index `x` is representable in the mdspan's index type `I`.
template <class I>
constexpr bool fits_index(index_t x) noexcept {
  if constexpr (sizeof(I) >= sizeof(index_t) && std::is_unsigned_v<I>) {
    return true;
  } else {
    return static_cast<std::make_unsigned_t<index_t>>(x) <=
           static_cast<std::make_unsigned_t<index_t>>(std::numeric_limits<I>::max());
  }
}

/// True when the strides, taken in ascending order, never let two indices reach one element:
/// layout_stride's precondition, `s[p_i] >= s[p_(i-1)] · e[p_(i-1)]` for some permutation p. When
/// one exists, the order by (stride, extent) is one: strides cannot fall along it, and of two
/// equal strides only an extent-1 dimension may come first.
template <int Rank, class T, class Space>
bool strides_unique(const view<T, Rank, Space>& v) noexcept {
  const auto before = [&](int a, int b) {
    return v.stride(a) < v.stride(b) || (v.stride(a) == v.stride(b) && v.extent(a) < v.extent(b));
  };
  std::array<int, static_cast<std::size_t>(Rank)> order{};
  for (int r = 0; r < Rank; ++r) order[static_cast<std::size_t>(r)] = r;
  for (std::size_t i = 1; i < order.size(); ++i)  // insertion sort: Rank is small
    for (std::size_t j = i; j > 0 && before(order[j], order[j - 1]); --j)
      std::swap(order[j], order[j - 1]);
  for (std::size_t i = 1; i < order.size(); ++i) {
    const int lo = order[i - 1];
    if (v.stride(order[i]) < v.stride(lo) * v.extent(lo)) return false;
  }
  return true;
}

}  // namespace detail

/// A view of mdspan `m` in memory space `Space`: its extents, its strides and its data handle.
///
/// `M` is any mdspan whose layout is strided (layout_right, layout_left, layout_stride, …; a
/// layout that says it is not always strided is a compile error) and whose accessor hands out
/// plain pointers (default_accessor). `As` (default: the mdspan's element type) reads the
/// elements as another type of the same size and alignment, e.g. `__half` as `tokred::f16`.
/// Never copies and never fails. The view's first element is `data_handle()`: a custom strided
/// layout must map index (0, …, 0) to offset 0, as the standard layouts do.
template <class Space = host_space, class As = void, class M>
auto from_mdspan(const M& m) noexcept {
  constexpr int rank = static_cast<int>(M::rank());
  static_assert(rank >= 1, "tokred::from_mdspan: a view has at least one dimension");
  if constexpr (detail::has_is_always_strided<M>::value)
    static_assert(M::is_always_strided(),
                  "tokred::from_mdspan: the mdspan's layout must be strided");
  // std::mdspan returns its handle by const reference, a custom mdspan may return it by value.
  using P = std::remove_cv_t<std::remove_reference_t<decltype(m.data_handle())>>;
  static_assert(std::is_pointer_v<P>,
                "tokred::from_mdspan: the accessor must hand out plain pointers "
                "(default_accessor)");
  using E = typename detail::mdspan_element<std::remove_pointer_t<P>, As>::type;
  std::array<index_t, static_cast<std::size_t>(rank)> extents{};
  std::array<index_t, static_cast<std::size_t>(rank)> strides{};
  for (std::size_t r = 0; r < static_cast<std::size_t>(rank); ++r) {
    extents[r] = static_cast<index_t>(m.extent(r));
    strides[r] = static_cast<index_t>(m.stride(r));
  }
  return view<E, rank, Space>{reinterpret_cast<E*>(m.data_handle()), extents, strides};
}

/// Makes `out` an mdspan of type `M` over the elements of view `v`; on failure `out` is left as
/// it was.
///
/// `M`'s layout decides what it can hold: a layout whose mapping is made from extents and
/// strides (layout_stride) takes any view with positive strides that never reach one element
/// twice; a fixed layout (layout_right, layout_left) takes a view whose strides are the ones it
/// computes (strides of extent-1 dimensions are free). A view with no elements fits any layout
/// whatever its strides; layout_stride then gets row-major strides over its extents (each taken
/// as at least 1). `M::element_type` is `T`, `const T`, or
/// a type of the same size and alignment (f16 as `__half`); a view of const needs a const one.
///
/// Returns, in this order of checks:
///   shape_mismatch  an extent differs from a static extent of `M`, or does not fit
///                   `M::index_type`; or the strides are not ones `M`'s layout can hold
///   ok              `out` now views `v`
template <class M, class T, int Rank, class Space>
status to_mdspan(const view<T, Rank, Space>& v, M& out) noexcept {
  using element = typename M::element_type;
  using index = typename M::index_type;
  using extents_type = typename M::extents_type;
  using mapping = typename M::mapping_type;
  using stride_array = typename detail::stride_array_of<mapping>::type;
  static_assert(static_cast<int>(M::rank()) == Rank,
                "tokred::to_mdspan: the mdspan's rank must be the view's");
  static_assert(sizeof(element) == sizeof(T) && alignof(element) == alignof(T),
                "tokred::to_mdspan: the mdspan's element must have the view element's size and "
                "alignment");
  static_assert(std::is_const_v<element> || !std::is_const_v<T>,
                "tokred::to_mdspan: a view of const needs an mdspan of const");
  constexpr bool from_strides =
      !std::is_void_v<stride_array> && std::is_constructible_v<mapping, extents_type, stride_array>;
  constexpr auto rank = static_cast<std::size_t>(Rank);

  std::array<index, rank> extents{};
  for (std::size_t r = 0; r < rank; ++r) {
    const index_t n = v.extent(static_cast<int>(r));
    const std::size_t fixed = extents_type::static_extent(r);
    if (fixed != std::numeric_limits<std::size_t>::max() && static_cast<index_t>(fixed) != n)
      return status::shape_mismatch;
    if (n < 0 || !detail::fits_index<index>(n)) return status::shape_mismatch;
    extents[r] = static_cast<index>(n);
  }
  if (!detail::span_fits(v) || !detail::fits_index<index>(v.required_span_size()))
    return status::shape_mismatch;
  const extents_type shape =
      detail::make_extents<extents_type>(extents, std::make_index_sequence<rank>{});
  auto* const data = reinterpret_cast<element*>(v.data_handle());
  // A view with no elements reaches no element: any strides hold it.
  const bool empty = v.empty();
  if constexpr (from_strides) {
    stride_array strides{};
    if (empty) {  // row-major over the extents, each taken as at least 1: positive and unique
      index_t step = 1;
      for (std::size_t r = rank; r-- > 0;) {
        if (!detail::fits_index<index>(step)) return status::shape_mismatch;
        strides[r] = static_cast<index>(step);
        if (r == 0) break;
        const index_t n = std::max<index_t>(v.extent(static_cast<int>(r)), 1);
        if (step > std::numeric_limits<index_t>::max() / n) return status::shape_mismatch;
        step *= n;
      }
    } else {
      for (std::size_t r = 0; r < rank; ++r) {
        const index_t s = v.stride(static_cast<int>(r));
        if (s < 1 || !detail::fits_index<index>(s)) return status::shape_mismatch;
        strides[r] = static_cast<index>(s);
      }
      if (!detail::strides_unique(v)) return status::shape_mismatch;
    }
    out = M(data, mapping(shape, strides));
  } else {
    // The mapping's constructor requires the product of the extents to fit `index` (it does for
    // any view whose strides are the mapping's; a broadcast view may exceed it).
    if (!empty) {
      index_t product = 1;
      for (std::size_t r = 0; r < rank; ++r) {
        const index_t n = v.extent(static_cast<int>(r));
        if (product > std::numeric_limits<index_t>::max() / n) return status::shape_mismatch;
        product *= n;
      }
      if (!detail::fits_index<index>(product)) return status::shape_mismatch;
    }
    const mapping map(shape);
    for (std::size_t r = 0; r < rank && !empty; ++r) {
      const int ir = static_cast<int>(r);
      if (v.extent(ir) > 1 && static_cast<index_t>(map.stride(r)) != v.stride(ir))
        return status::shape_mismatch;
    }
    out = M(data, map);
  }
  return status::ok;
}

}  // namespace tokred
