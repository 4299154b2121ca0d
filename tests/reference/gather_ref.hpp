// tests/reference/gather_ref.hpp — the scalar oracle of moving kept rows: source, positions and
// element-by-element converted token rows.
#pragma once

#include <cstdint>
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
