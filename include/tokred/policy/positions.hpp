// tokred/policy/positions.hpp — the 1-D position ids of kept tokens in an LLM sequence: keep the
// original positions (gaps where tokens were dropped) or renumber them contiguously.
//
// Every selection returns `source`, the original index of each kept token, and `positions`, its
// original (t, h, w). Models with 3-D rotary positions (M-RoPE) rebuild their ids from
// `positions`; models with 1-D positions need one of the two conventions the originals use:
//   original    first + source[j]  FastV, FrameFusion, TimeChat-Online DTD: RoPE sees the gaps
//   contiguous  first + j          PyramidDrop, LLaVA-style pruning before the LLM: no gaps
// `first` is the position of the visual span's first token. Text after the span continues from
// the last id written plus one (contiguous) or from first + N (original).
#pragma once

#include <cstdint>
#include <limits>

#include "tokred/core/checks.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// Which 1-D position ids the kept tokens get.
enum class position_ids {
  original,    ///< first + source[j]: the original positions, with gaps
  contiguous,  ///< first + j: renumbered without gaps, in output order
};

/// Writes the position id of each kept token to `ids` (kept,) from `source` (kept,); with
/// `contiguous` only the length of `source` is read. Returns `shape_mismatch` when the extents
/// differ, `null_pointer` for a view with no data and a non-zero extent, `aliasing` when `ids`
/// overlaps `source`, `index_out_of_range` when an id would leave std::int64_t, and then writes
/// nothing. Nothing kept is `ok`.
inline status sequence_positions(const view<const std::int64_t, 1>& source, std::int64_t first,
                                 position_ids mode, const view<std::int64_t, 1>& ids) noexcept {
  const index_t kept = source.extent(0);
  if (ids.extent(0) != kept) return status::shape_mismatch;
  if (kept == 0) return status::ok;  // nothing kept, nothing to write
  if (status s = detail::check_view(ids, {kept}); s != status::ok) return s;
  if (mode == position_ids::original)
    if (status s = detail::check_view(source, {kept}); s != status::ok) return s;
  if (may_overlap(ids, source)) return status::aliasing;
  const auto offset = [&](index_t j) { return mode == position_ids::original ? source(j) : static_cast<std::int64_t>(j); };
  constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max(), least = std::numeric_limits<std::int64_t>::min();
  for (index_t j = 0; j < kept; ++j) {  // every id fits before any is written
    const std::int64_t o = offset(j);
    if (o > 0 ? first > most - o : first < least - o) return status::index_out_of_range;
  }
  for (index_t j = 0; j < kept; ++j) ids(j) = first + offset(j);
  return status::ok;
}

}  // namespace tokred
