// tokred/core/checks.hpp — the view checks every policy's validation is built from.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"

namespace tokred::detail {

/// True when an optional view is requested: non-empty or non-null.
template <class V>
TOKRED_HOST_DEVICE constexpr bool requested(const V& v) noexcept {
  return v.data_handle() != nullptr || !v.empty();
}

/// The first `need` bytes of `ws` as a view, for the overlap tests (empty when nothing is needed).
template <class Space>
view<const std::byte, 1, Space> scratch_view(workspace ws, std::size_t need) noexcept {
  if (need == 0 || ws.data == nullptr) return {};
  return {static_cast<const std::byte*>(ws.data), {static_cast<index_t>(need)}, {1}};
}

/// True when the first `need` bytes of `ws` may overlap one of `views` (all in `Space`). Writing
/// that scratch would then change an input, an output or a state mid-call. Checked where the
/// damage would outlive the call (a stream's state).
template <class Space, class... Vs>
bool workspace_overlaps(workspace ws, std::size_t need, const Vs&... views) noexcept {
  return overlaps_any(scratch_view<Space>(ws, need), views...);
}

/// Checks one requested view: `shape_mismatch` if its extents differ from `extents` or one is
/// negative (a width taken from the view itself is checked so too), then
/// `null_pointer` if it has no data, then, for a view of non-const elements (one the caller
/// writes; pass a view that is only read through read_only), `aliasing` if two of its indices
/// reach one element (a zero stride, interleaved strides: elements_distinct), whose writes would
/// race between shares or overwrite one another.
template <class V, std::size_t R>
status check_view(const V& v, const index_t (&extents)[R]) noexcept {
  static_assert(R == static_cast<std::size_t>(V::rank()), "one extent per dimension");
  for (int r = 0; r < V::rank(); ++r)
    if (v.extent(r) != extents[r] || extents[r] < 0) return status::shape_mismatch;
  if (v.data_handle() == nullptr) return status::null_pointer;
  if constexpr (!std::is_const_v<typename V::element_type>)
    if (!elements_distinct(v)) return status::aliasing;
  return status::ok;
}

/// Whether some extent of a view is negative (`shape_mismatch` wherever a view's extents are read
/// before `check_view` sees them).
template <class V>
constexpr bool has_negative_extent(const V& v) noexcept {
  for (int r = 0; r < V::rank(); ++r)
    if (v.extent(r) < 0) return true;
  return false;
}

/// `misaligned` when a view's data pointer is not a multiple of its element type's alignment
/// (reachable only through a cast from bytes); checked before anything is read.
template <class V>
status check_alignment(const V& v) noexcept {
  using element = typename V::element_type;
  return reinterpret_cast<std::uintptr_t>(v.data_handle()) % alignof(element) == 0 ? status::ok : status::misaligned;
}

/// `check_view` for a view that may hold no elements (the part of a cache that is empty so far):
/// a null pointer is accepted when the extents make the view empty.
template <class V, std::size_t R>
status check_view_or_empty(const V& v, const index_t (&extents)[R]) noexcept {
  if (status s = check_view(v, extents); s != status::null_pointer) return s;
  return v.empty() ? status::ok : status::null_pointer;
}

/// `check_view` for an optional view: `ok` when it is not requested.
template <class V, std::size_t R>
status check_optional_view(const V& v, const index_t (&extents)[R]) noexcept {
  return requested(v) ? check_view(v, extents) : status::ok;
}

/// Token rows read, `n` of them: `check_view` against (n, their width), then `empty_input` for
/// zero-width rows.
template <class V>
status check_rows(const V& rows, index_t n) noexcept {
  if (status s = check_view(rows, {n, rows.extent(1)}); s != status::ok) return s;
  return rows.extent(1) == 0 ? status::empty_input : status::ok;
}

/// An optional output of `kept` rows copied from `n` input rows: when it is requested, the input
/// rows (`check_rows`), then the output against (kept, their width). Input rows of a negative
/// extent are `shape_mismatch` even when nothing reads them.
template <class In, class Out>
status check_row_output(const In& rows_in, index_t n, const Out& rows_out, index_t kept) noexcept {
  if (!requested(rows_out)) return has_negative_extent(rows_in) ? status::shape_mismatch : status::ok;
  if (status s = check_rows(rows_in, n); s != status::ok) return s;
  return check_view(rows_out, {kept, rows_in.extent(1)});
}

/// Whether the values of a rank-1 host view rise strictly from 0 or above: none negative, no
/// repeats (true for an empty view). Keep lists, salient lists and layer schedules are read so.
template <class V>
bool ascending_nonnegative(const V& v) noexcept {
  for (index_t i = 0; i < v.extent(0); ++i)
    if (v(i) < 0 || (i > 0 && v(i) <= v(i - 1))) return false;
  return true;
}

}  // namespace tokred::detail
