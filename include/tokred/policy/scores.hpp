// tokred/policy/scores.hpp — the output every score policy writes: one float per token.
//
// A score policy rates tokens and keeps none; a selection (topk in <tokred/policy/selection.hpp>)
// turns the scores into a kept set. Splitting the two lets one score feed any selection and one
// selection rank any score. Higher scores are kept first.
#pragma once

#include "tokred/core/checks.hpp"
#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// Outputs of every score policy: `scores` is required.
template <class Space = host_space>
struct score_outputs {
  using space = Space;
  view<float, 1, Space> scores;  // (tokens,) one score per token, higher is kept first
};

namespace detail {

/// The scores output against `n` tokens: `shape_mismatch` if its extent is not `n`, then
/// `null_pointer` if it has no data.
template <class Space>
status check_scores_output(const score_outputs<Space>& out, index_t n) noexcept {
  return check_view(out.scores, {n});
}

}  // namespace detail
}  // namespace tokred
