// tokred/policy/vidkv_salient.hpp — VidKV's salient-token protection (STP): which visual tokens
// keep their values at higher precision in a VidKV cache (vidkv_cache::salient).
//
// WHAT it computes; the HOW lives in <tokred/cpu/vidkv_salient.hpp>. Compiles with the standard
// library alone.
//
// From the saliency s_i of each of N visual tokens (VidKV: the mean dot product of its LLM input
// embedding with the text embeddings, query_relevance with measure::dot):
//
//   top     k = max(32, ⌊N·ratio/32⌋·32)          (Python's int(N * ratio // 32 * 32), in double)
//   count   k − 32 positions are written
//   which   the k − 32 most salient tokens (ties to the lower index, NaN least salient); or, with
//           `vidkv_order`, VidKV's own: the k most salient, sorted ascending, less the last 32 —
//           the 32 of highest index, whatever their saliency
//   where   position = first_position + i, ascending (VidKV adds 14, LLaVA-OneVision's system
//           prompt length, hard-coded)
//
// KD-TAO/VidKV: `LlavaQwenForCausalLM._process_token_mm` (llava/model/language_model/llava_qwen.py)
// chooses them; `QuantizedCacheVLMSTP._quantize_value` quantizes their values at 2 bits, the
// others at the value bits.
#pragma once

#include <cstdint>
#include <limits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// VidKV's salient-token choice. The problem's tokens (`prob.grid.tokens()`) are the N visual
/// tokens; `prob.dim` is not used.
struct vidkv_salient_tokens {
  double ratio = 0.2;           ///< VidKV's `vidkv_stp`, in [0, 1]
  index_t first_position = 0;   ///< the cache position of visual token 0 (VidKV: 14, hard-coded)
  bool vidkv_order = false;     ///< compatibility: drop the 32 highest positions of the top k, as VidKV does
};

namespace detail {

/// VidKV's top count k = max(32, ⌊N·ratio/32⌋·32); Python's float `//` by 32 is an exact floor.
constexpr index_t vidkv_salient_top(double ratio, index_t visual_tokens) noexcept {
  const double whole = static_cast<double>(visual_tokens) * ratio / 32.0;
  const auto groups = static_cast<index_t>(whole);  // whole ≥ 0: truncation is the floor
  return groups * 32 > 32 ? groups * 32 : 32;
}

}  // namespace detail

/// `ok`, or why the choice cannot be made: `shape_mismatch` (a negative extent), `empty_input`
/// (no visual tokens), `invalid_ratio` (ratio outside [0, 1], or NaN), `invalid_parameter` (a
/// negative first_position, or one so large that a position would overflow int64),
/// `budget_exceeds_input` (the top k exceeds N: fewer than 32 visual tokens, where VidKV's topk
/// fails).
inline status can_implement(const vidkv_salient_tokens& p, const problem& prob) noexcept {
  if (!prob.grid.valid()) return status::shape_mismatch;
  const index_t n = prob.grid.tokens();
  if (n == 0) return status::empty_input;
  if (!(p.ratio >= 0.0 && p.ratio <= 1.0)) return status::invalid_ratio;
  if (p.first_position < 0 || p.first_position > std::numeric_limits<index_t>::max() - n) return status::invalid_parameter;
  return detail::vidkv_salient_top(p.ratio, n) <= n ? status::ok : status::budget_exceeds_input;
}

/// How many positions are written: k − 32 (0 when k = 32), or 0 when `can_implement` fails.
inline index_t retained_count(const vidkv_salient_tokens& p, const problem& prob) noexcept {
  if (can_implement(p, prob) != status::ok) return 0;
  return detail::vidkv_salient_top(p.ratio, prob.grid.tokens()) - 32;
}

/// Inputs: the saliency of each visual token.
template <class Space = host_space>
struct vidkv_salient_inputs {
  using space = Space;
  view<const float, 1, Space> scores;  // (N,)
};

/// Outputs: the salient tokens' cache positions, ascending — vidkv_cache::salient.
template <class Space = host_space>
struct vidkv_salient_outputs {
  using space = Space;
  view<std::int64_t, 1, Space> positions;  // (retained_count,)
};

namespace detail {

/// How many tokens the choice ranks: k with `vidkv_order` (the last 32 are dropped after), else
/// k − 32.
inline index_t vidkv_salient_chosen(const vidkv_salient_tokens& p, const problem& prob) noexcept {
  return retained_count(p, prob) + (p.vidkv_order ? 32 : 0);
}

/// vidkv_salient_tokens' checks but the workspace, in order, on any backend: exec;
/// can_implement of the scores' length; the scores (N,); the positions (retained_count,);
/// `aliasing` when they overlap.
template <class Exec, class Space>
status check_vidkv_salient(const Exec& exec, const vidkv_salient_tokens& p, const vidkv_salient_inputs<Space>& in,
                           const vidkv_salient_outputs<Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const index_t n = in.scores.extent(0);
  const problem prob{sequence_grid(n), 0};
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.scores, {n}); s != status::ok) return s;
  if (status s = check_view_or_empty(out.positions, {retained_count(p, prob)}); s != status::ok) return s;
  return may_overlap(out.positions, in.scores) ? status::aliasing : status::ok;
}

}  // namespace detail

}  // namespace tokred
