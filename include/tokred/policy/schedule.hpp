// tokred/policy/schedule.hpp — PyramidDrop's stage schedule: how many visual tokens survive each
// stage of a pruning pyramid inside the LLM.
//
// A host-side helper with no kernel: the engine runs its decoder blocks, and before block
// `layers[s]` it scores the current visual tokens (fused_attention_score with that block's q and k
// projections) and keeps `stage_count(s)` of them with topk (`stage_budget`).
#pragma once

#include "tokred/core/checks.hpp"
#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/budget.hpp"

namespace tokred {

/// The stages of a PyramidDrop schedule (Xing et al., CVPR 2025, arXiv 2410.17247).
///
/// Stage s drops tokens once block `layers[s] − 1` has run, scoring with block `layers[s]`'s
/// projections, and leaves `int(N · ratios[s])` of the ORIGINAL N visual tokens (Python `int`,
/// a floor, of the product in double). The ratios are relative to N, not to the previous stage;
/// they are the upstream `image_token_ratio_list` without the 1.0 that upstream prepends for the
/// stage before the first drop. The repository's default is layers {8, 16, 24} and ratios
/// {0.5, 0.25, 0.125}: 576 → 288 → 144 → 72 tokens.
///
/// Stage s selects from the tokens the previous stage left (N before stage 0), so counts must
/// not grow from one stage to the next (equal counts are a stage that keeps everything).
struct pyramid_schedule {
  view<const index_t, 1> layers;  // (stages,) block indices, strictly ascending, >= 0
  view<const double, 1> ratios;   // (stages,) kept fraction of the original N after each stage
};

/// `ok` if the schedule can prune `n` tokens, else the first failed check, in this order:
/// `shape_mismatch` (the two lists differ in length, or have a negative one), `empty_input` (no
/// stage, or `n <= 0`), `null_pointer` (a list without data), `invalid_parameter` (a negative
/// layer, or layers not strictly ascending), then per stage: `invalid_ratio` (outside [0, 1], or
/// NaN), `invalid_budget` (the count floors to 0), `budget_exceeds_input` (more tokens than the
/// previous stage left).
inline status check_schedule(const pyramid_schedule& s, index_t n) noexcept {
  const index_t stages = s.layers.extent(0);
  if (s.ratios.extent(0) != stages || stages < 0) return status::shape_mismatch;
  if (stages == 0 || n <= 0) return status::empty_input;
  if (s.layers.data_handle() == nullptr || s.ratios.data_handle() == nullptr)
    return status::null_pointer;
  if (!detail::ascending_nonnegative(s.layers)) return status::invalid_parameter;
  index_t before = n;
  for (index_t i = 0; i < stages; ++i) {
    const count_result c = kept_count(keep_budget::ratio(s.ratios(i), rounding::floor), n);
    if (c.code != status::ok) return c.code;
    if (c.count > before) return status::budget_exceeds_input;
    before = c.count;
  }
  return status::ok;
}

/// Tokens left after stage `stage` of a schedule on `n` tokens: `int(n · ratios[stage])`, or why
/// there is none (`check_schedule`'s status, or `invalid_parameter` for a stage outside
/// [0, stages)). Stage `stage` selects from `stage == 0 ? n : stage_count(s, n, stage − 1)`.
inline count_result stage_count(const pyramid_schedule& s, index_t n, index_t stage) noexcept {
  if (status c = check_schedule(s, n); c != status::ok) return {c, 0};
  if (stage < 0 || stage >= s.ratios.extent(0)) return {status::invalid_parameter, 0};
  return kept_count(keep_budget::ratio(s.ratios(stage), rounding::floor), n);
}

/// The topk budget of stage `stage`: `keep_budget::count(stage_count(...))`. On a bad schedule or
/// stage the count is 0, which topk rejects with `invalid_budget`; ask `stage_count` for the
/// reason. A count rather than a ratio of the tokens the stage selects from, which would round
/// differently: ratios {0.05, 0.03} of 576 leave 28, then int(576 · 0.03) = 17, but
/// int(28 · 0.03 / 0.05) = 16.
inline keep_budget stage_budget(const pyramid_schedule& s, index_t n, index_t stage) noexcept {
  return keep_budget::count(stage_count(s, n, stage).count);
}

}  // namespace tokred
