// tokred/cpu/row_selection.hpp — CPU backend of top_rows (FoPru's row strategy).
//
// Every share owns the output tokens [K·ith/nth, K·(ith+1)/nth). It ranks the rows of each frame
// its tokens fall in (H sums of W scores: cheap next to moving the rows), then moves its tokens.
#pragma once

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/policy/row_selection.hpp"

namespace tokred {

template <class Arch>
struct backend<top_rows, cpu<Arch>> {
  static detail::selection_scratch carve(detail::arena& a, index_t rows, index_t kept_rows, int ith,
                                         int nth) {
    return detail::carve_shares(a, ith, nth, [&](detail::arena& s) {
      return detail::selection_scratch{s.take<std::uint32_t>(rows), s.take<std::int64_t>(kept_rows)};
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const top_rows& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, prob.grid.height, kept_count(p.keep, prob.grid.height).count, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const top_rows& p, const selection_inputs<Ein>& in,
                      const selection_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_top_rows(p, in, out); s != status::ok) return s;
    if (status s = check_workspace(ws, workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)}));
        s != status::ok)
      return s;
    const index_t rows = in.grid.height, width = in.grid.width;
    const index_t kept_rows = kept_count(p.keep, rows).count;
    detail::arena carver(ws);
    const detail::selection_scratch scratch = carve(carver, rows, kept_rows, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const index_t frame_kept = kept_rows * width;
    const index_t total = frame_kept * in.grid.frames;
    const index_t j0 = detail::share_begin(total, exec.ith, exec.nth);
    const index_t j1 = detail::share_begin(total, exec.ith + 1, exec.nth);
    for (index_t frame = j0 / frame_kept; frame * frame_kept < j1; ++frame) {
      const index_t first = frame * in.grid.frame_tokens();
      const auto key_of = [&](index_t r) {
        float sum = 0.0f;
        for (index_t c = 0; c < width; ++c) sum += in.scores(first + r * width + c);
        return detail::score_key(detail::float_bits(sum));
      };
      detail::select_largest(key_of, rows, kept_rows, 0, scratch.keys, scratch.kept);
      const index_t row0 = frame * frame_kept;
      const auto index_of = [&](index_t j) -> index_t {
        const index_t at = j - row0;
        return first + scratch.kept[at / width] * width + at % width;
      };
      detail::emit_rows<Arch>(index_of, std::max(j0, row0), std::min(j1, row0 + frame_kept), in.grid,
                              in.tokens, out);
    }
    return status::ok;
  }
};

}  // namespace tokred
