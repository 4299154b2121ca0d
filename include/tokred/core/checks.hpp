// tokred/core/checks.hpp — the view checks every policy's validation is built from.
#pragma once

#include <cstddef>

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"

namespace tokred::detail {

/// True when an optional view is requested: non-empty or non-null.
template <class V>
constexpr bool requested(const V& v) noexcept {
  return v.data_handle() != nullptr || !v.empty();
}

/// Checks one requested view: `shape_mismatch` if its extents differ from `extents`, then
/// `null_pointer` if it has no data.
template <class V, std::size_t R>
status check_view(const V& v, const index_t (&extents)[R]) noexcept {
  static_assert(R == static_cast<std::size_t>(V::rank()), "one extent per dimension");
  for (int r = 0; r < V::rank(); ++r)
    if (v.extent(r) != extents[r]) return status::shape_mismatch;
  if (v.data_handle() == nullptr) return status::null_pointer;
  return status::ok;
}

}  // namespace tokred::detail
