// tests/reference/gather_ref.hpp — the scalar oracle of moving kept rows: source, positions and
// element-by-element converted token rows.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/view.hpp>

namespace tokred::ref {

/// Writes row `index[j]` of `tokens` to row j of `out` (converting through fp32), for every j.
template <class Ein, class Eout>
void gather_rows(const std::vector<std::int64_t>& index, const view<const Ein, 2>& tokens,  // (tokens, dim)
                 const view<Eout, 2>& out) {                                                 // (kept, dim)
  for (std::size_t j = 0; j < index.size(); ++j)
    for (index_t c = 0; c < tokens.extent(1); ++c)
      out(static_cast<index_t>(j), c) = from_float<Eout>(to_float(tokens(index[j], c)));
}

/// How many elements of `got` (kept, dim), row-major, differ in their bits from `gather_rows`.
template <class Ein, class Eout>
std::size_t gather_mismatches(const std::vector<std::int64_t>& index,
                              const view<const Ein, 2>& tokens,  // (tokens, dim)
                              const std::vector<Eout>& got) {
  const auto kept = static_cast<index_t>(index.size());
  std::vector<Eout> want(static_cast<std::size_t>(kept * tokens.extent(1)));
  gather_rows<Ein, Eout>(index, tokens, view<Eout, 2>(want.data(), {kept, tokens.extent(1)}));
  std::size_t mismatches = want.size() == got.size() ? 0 : want.size() + got.size();
  for (std::size_t i = 0; i < want.size() && i < got.size(); ++i)
    mismatches += std::memcmp(&want[i], &got[i], sizeof(Eout)) != 0;
  return mismatches;
}

/// The (t, h, w) of every kept index, flattened (kept, 3).
inline std::vector<std::int32_t> positions_of(const std::vector<std::int64_t>& index,
                                              const token_grid& grid) {
  std::vector<std::int32_t> out;
  for (std::int64_t i : index) {
    const index_t hw = grid.height * grid.width;
    out.push_back(static_cast<std::int32_t>(i / hw));
    out.push_back(static_cast<std::int32_t>((i % hw) / grid.width));
    out.push_back(static_cast<std::int32_t>(i % grid.width));
  }
  return out;
}

}  // namespace tokred::ref
