// tokred/interop/eigen.hpp — Eigen matrices, maps, refs and blocks as tokred views, and tokred
// views as Eigen maps. Optional: include it where both meet; <tokred/tokred.hpp> does not.
//
// Eigen describes storage as an inner stride (between neighbours along the storage order) and an
// outer stride (between neighbouring rows of a row-major object, columns of a column-major one),
// both in elements and signed, as a tokred view's strides are. So the adaptation is exact either
// way: no copy, no check that can fail, any storage order and any `Stride<Outer, Inner>`.
//
//   from_eigen(m)         -> view<E, 2>   (rows, cols) of a Matrix, Map, Ref or Block
//   from_eigen_vector(v)  -> view<E, 1>   (size,) of a vector expression
//   to_eigen(v)           -> Eigen::Map   row-major (or `to_eigen<Eigen::ColMajor>`) with
//                                         Stride<Dynamic, Dynamic>; a 1-D view gives a column
//                                         vector with InnerStride<Dynamic>
//
// Element types: `Eigen::half` is `tokred::f16` and `Eigen::bfloat16` is `tokred::bf16` (both are
// the 16-bit pattern and nothing else); any other scalar (float, std::int64_t, …) is itself.
// Const-ness follows the Eigen object: a const Matrix or a Map<const …> gives a view of const.
// Host memory only: Eigen objects live on the host, and views of device memory have no Eigen map.
#pragma once

#include <type_traits>

#include <Eigen/Core>

#include "tokred/core/element.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

namespace detail {

template <class S>
struct eigen_to_element {
  using type = S;
};
template <>
struct eigen_to_element<Eigen::half> {
  using type = f16;
};
template <>
struct eigen_to_element<Eigen::bfloat16> {
  using type = bf16;
};

template <class E>
struct element_to_eigen {
  using type = E;
};
template <>
struct element_to_eigen<f16> {
  using type = Eigen::half;
};
template <>
struct element_to_eigen<bf16> {
  using type = Eigen::bfloat16;
};

static_assert(sizeof(Eigen::half) == sizeof(f16) && alignof(Eigen::half) == alignof(f16),
              "tokred: Eigen::half and tokred::f16 must share their layout");
static_assert(sizeof(Eigen::bfloat16) == sizeof(bf16) && alignof(Eigen::bfloat16) == alignof(bf16),
              "tokred: Eigen::bfloat16 and tokred::bf16 must share their layout");

/// `To` with the const-ness of `From`.
template <class From, class To>
using with_const_of = std::conditional_t<std::is_const_v<From>, const To, To>;

/// The tokred element type of an Eigen scalar `S` (possibly const), const-ness kept.
template <class S>
using eigen_element_t = with_const_of<S, typename eigen_to_element<std::remove_const_t<S>>::type>;

/// The Eigen scalar of a tokred element type `T` (possibly const), const-ness kept.
template <class T>
using element_eigen_t = with_const_of<T, typename element_to_eigen<std::remove_const_t<T>>::type>;

template <class X, class = void>
struct has_eigen_data : std::false_type {};
template <class X>
struct has_eigen_data<X, std::void_t<decltype(std::declval<X&>().data())>> : std::true_type {};

/// True for `Eigen::Ref<const …>`, the one Ref that may hold a copy of what it was bound to
/// (an expression, or strides its own type cannot express).
template <class X>
struct is_eigen_const_ref : std::false_type {};
template <class Plain, int Options, class Stride>
struct is_eigen_const_ref<Eigen::Ref<const Plain, Options, Stride>> : std::true_type {};

/// Checks what every Eigen argument must be, and gives its data pointer as a tokred element
/// pointer. `data()` already carries the right const-ness: `const Scalar*` for a const object or
/// a Map of const, `Scalar*` otherwise.
template <class Expr, class M>
auto eigen_data(M& m) noexcept {
  using X = std::remove_cv_t<M>;
  static_assert(std::is_base_of_v<Eigen::DenseBase<X>, X>,
                "tokred::from_eigen: the argument must be an Eigen dense object");
  static_assert((X::Flags & Eigen::DirectAccessBit) != 0 && has_eigen_data<M>::value,
                "tokred::from_eigen: the expression has no storage of its own; pass a Matrix, "
                "Map, Ref or Block of one (or evaluate it into a Matrix first)");
  static_assert(!(std::is_rvalue_reference_v<Expr&&> &&
                  std::is_base_of_v<Eigen::PlainObjectBase<X>, X>),
                "tokred::from_eigen: a temporary Matrix would leave the view dangling");
  static_assert(!(std::is_rvalue_reference_v<Expr&&> && is_eigen_const_ref<X>::value),
                "tokred::from_eigen: a temporary Ref<const ...> may hold a copy that dies with "
                "it; name the Ref first");
  using S = std::remove_pointer_t<decltype(m.data())>;
  using E = eigen_element_t<S>;
  return reinterpret_cast<E*>(m.data());
}

}  // namespace detail

/// A view of an Eigen matrix, map, ref or block, of any storage order and strides, as `(rows,
/// cols)` with `stride(0)` between rows and `stride(1)` between columns (element strides).
///
/// A row-major object gives `(outerStride, innerStride)`, a column-major one `(innerStride,
/// outerStride)`. Never copies; the view is valid as long as the Eigen object's storage is,
/// which for an `Eigen::Ref<const …>` that copied its argument is the Ref's own lifetime.
/// Temporaries that own their storage (a Matrix, a Ref<const …>) are compile errors.
template <class Expr>
auto from_eigen(Expr&& m) noexcept {
  using X = std::remove_cv_t<std::remove_reference_t<Expr>>;
  auto* data = detail::eigen_data<Expr>(m);
  using E = std::remove_pointer_t<decltype(data)>;
  const index_t inner = m.innerStride();
  const index_t outer = m.outerStride();
  if constexpr (X::IsRowMajor) {
    return view<E, 2>{data, {m.rows(), m.cols()}, {outer, inner}};
  } else {
    return view<E, 2>{data, {m.rows(), m.cols()}, {inner, outer}};
  }
}

/// A view of an Eigen vector expression (a row or a column, fixed or dynamic, with any inner
/// stride) as `(size,)`, with the inner stride as its stride.
template <class Expr>
auto from_eigen_vector(Expr&& v) noexcept {
  using X = std::remove_cv_t<std::remove_reference_t<Expr>>;
  static_assert(X::IsVectorAtCompileTime,
                "tokred::from_eigen_vector: the argument must be a vector at compile time; use "
                "from_eigen for matrices");
  auto* data = detail::eigen_data<Expr>(v);
  using E = std::remove_pointer_t<decltype(data)>;
  return view<E, 1>{data, {v.size()}, {v.innerStride()}};
}

/// The Eigen matrix type `to_eigen<Order>` maps: dynamic extents, the element's Eigen scalar.
template <class T, int Order = Eigen::RowMajor>
using eigen_matrix_t = Eigen::Matrix<std::remove_const_t<detail::element_eigen_t<T>>,
                                     Eigen::Dynamic, Eigen::Dynamic, Order>;

/// What `to_eigen<Order>(view<T, 2>)` returns: a map of `eigen_matrix_t` (of const for a view of
/// const) with both strides dynamic, so every view maps, including zero and negative strides.
template <class T, int Order = Eigen::RowMajor>
using eigen_map_t =
    Eigen::Map<detail::with_const_of<T, eigen_matrix_t<T, Order>>, Eigen::Unaligned,
               Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

/// What `to_eigen(view<T, 1>)` returns: a column-vector map with a dynamic inner stride.
template <class T>
using eigen_vector_map_t = Eigen::Map<
    detail::with_const_of<T, Eigen::Matrix<std::remove_const_t<detail::element_eigen_t<T>>,
                                           Eigen::Dynamic, 1>>,
    Eigen::Unaligned, Eigen::InnerStride<Eigen::Dynamic>>;

/// An Eigen map of a `(rows, cols)` host view. `Order` is the storage order Eigen assumes when it
/// traverses: `Eigen::RowMajor` (the default, tokred's canonical order: outer stride `stride(0)`,
/// inner stride `stride(1)`) or `Eigen::ColMajor` (outer `stride(1)`, inner `stride(0)`). Both
/// address the same elements; pick the one whose inner stride is 1 for Eigen's fast paths.
template <int Order = Eigen::RowMajor, class T>
eigen_map_t<T, Order> to_eigen(const view<T, 2, host_space>& v) noexcept {
  static_assert(Order == Eigen::RowMajor || Order == Eigen::ColMajor,
                "tokred::to_eigen: the order is Eigen::RowMajor or Eigen::ColMajor");
  using S = detail::element_eigen_t<T>;
  S* data = reinterpret_cast<S*>(v.data_handle());
  using stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;  // (outer, inner)
  if constexpr (Order == Eigen::RowMajor) {
    return {data, v.extent(0), v.extent(1), stride(v.stride(0), v.stride(1))};
  } else {
    return {data, v.extent(0), v.extent(1), stride(v.stride(1), v.stride(0))};
  }
}

/// An Eigen column-vector map of a `(size,)` host view (scores, kept indices, …).
template <class T>
eigen_vector_map_t<T> to_eigen(const view<T, 1, host_space>& v) noexcept {
  using S = detail::element_eigen_t<T>;
  return {reinterpret_cast<S*>(v.data_handle()), v.extent(0),
          Eigen::InnerStride<Eigen::Dynamic>(v.stride(0))};
}

}  // namespace tokred
