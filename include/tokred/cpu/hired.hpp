// tokred/cpu/hired.hpp — CPU backend of hired (HiRED's partition budgets, then top-k).
//
// Every share splits the budget itself (one radix select over the full image's H·W early
// scores: cheap next to moving rows), so all shares agree on every partition's count without
// waiting. Each share then selects and moves the partitions its output rows fall in, as the
// budgeted selections do; share 0 writes the count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/hired.hpp"

namespace tokred {
namespace detail {

/// One share's scratch: ranking keys and kept indices for one partition, every partition's
/// budget.
struct hired_scratch {
  std::uint32_t* keys = nullptr;  // (H·W,)
  std::int64_t* kept = nullptr;   // (H·W,)
  index_t* budgets = nullptr;     // (P,) tokens kept per partition
};

/// The sub-crop whose part of the full image holds raster token `i` of an H × W frame.
inline index_t crop_of(const hired& p, const token_grid& grid, index_t i) noexcept {
  if (p.map == partition_map::row_bands) return i / (grid.frame_tokens() / (grid.frames - 1));
  const index_t h = i / grid.width, w = i % grid.width;
  return (h * p.crop_rows / grid.height) * p.crop_cols + w * p.crop_cols / grid.width;
}

/// Writes every partition's budget to `scratch.budgets`; returns their sum.
inline index_t decide_hired_budgets(const hired& p, const token_grid& grid,
                                    const view<const float, 1>& early_scores,
                                    const hired_scratch& scratch) {
  const hired_split split = hired_budgets(p, grid);
  const index_t per = grid.frame_tokens(), crops = grid.frames - 1;
  index_t* budgets = scratch.budgets;
  budgets[0] = split.full;
  std::fill(budgets + 1, budgets + grid.frames, index_t{0});
  if (split.sub_total == 0 || split.marks == 0) return split.full;

  // Count the marks per sub-crop (budgets[1 + i] holds c_i for now).
  const auto key_of = [&](index_t i) { return score_key(float_bits(early_scores(i))); };
  select_largest(key_of, per, split.marks, 0, scratch.keys, scratch.kept);  // marks ≤ H·W
  for (index_t j = 0; j < split.marks; ++j) ++budgets[1 + crop_of(p, grid, scratch.kept[j])];

  // The original's float32 tensors: ratio = c_i / Σc (Σc = marks), then ratio · sub_total, truncated.
  const auto sub_total = static_cast<float>(split.sub_total);
  index_t used = 0;
  for (index_t c = 1; c <= crops; ++c) {
    const float ratio = static_cast<float>(budgets[c]) / static_cast<float>(split.marks);
    index_t b = std::min(static_cast<index_t>(ratio * sub_total), per);
    b = std::min(b, split.sub_total - used);
    budgets[c] = b;
    used += b;
  }
  return split.full + used;
}

}  // namespace detail

/// hired on CPU.
template <class Arch>
struct backend<hired, cpu<Arch>> {
  static detail::hired_scratch carve(detail::arena& a, const token_grid& grid, int ith, int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::hired_scratch{s.take<std::uint32_t>(grid.frame_tokens()),
                                   s.take<std::int64_t>(grid.frame_tokens()), s.take<index_t>(grid.frames)};
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const hired& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const hired& p, const hired_inputs<Ein>& in,
                      const counted_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_hired(p, in, out); s != status::ok) return s;
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)}));
        s != status::ok)
      return s;
    detail::arena carver(ws);
    const detail::hired_scratch scratch = carve(carver, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t count = detail::decide_hired_budgets(p, in.grid, in.early_scores, scratch);
    const index_t per = in.grid.frame_tokens();
    const index_t j0 = detail::share_begin(count, exec.ith, exec.nth);
    const index_t j1 = detail::share_begin(count, exec.ith + 1, exec.nth);
    index_t row0 = 0;  // first output row of the partition
    for (index_t part = 0; part < in.grid.frames && row0 < j1; row0 += scratch.budgets[part++]) {
      const index_t k = scratch.budgets[part];
      if (k == 0 || row0 + k <= j0) continue;
      const index_t first = part * per;
      const auto key_of = [&](index_t i) { return detail::score_key(detail::float_bits(in.scores(first + i))); };
      detail::select_largest(key_of, per, k, first, scratch.keys, scratch.kept);
      const auto index_of = [&](index_t j) -> index_t { return scratch.kept[j - row0]; };
      detail::emit_rows<Arch>(index_of, std::max(j0, row0), std::min(j1, row0 + k), in.grid, in.tokens,
                              out);
    }
    if (exec.ith == 0) out.count(0) = count;
    return status::ok;
  }
};

}  // namespace tokred
