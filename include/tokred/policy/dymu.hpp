// tokred/policy/dymu.hpp — DyMU's dynamic token merging (DToMe): one ToMe bipartite step whose r
// is decided by a similarity threshold, and the calibration that finds the threshold.
//
// WHAT it computes; the HOW lives in <tokred/cpu/dymu.hpp>, which runs tome's own matching and
// merge (<tokred/cpu/tome.hpp>) with the r the threshold decides. The merged count depends on
// the data, so the outputs are `counted_merge_outputs`: `merge_outputs` sized by the static upper
// bound N that `retained_count` returns (nothing merged), with the real count written to
// `count`. Rows and entries past the count are left as they were; `assign` (N,) is always full.
//
// DyMU's virtual unmerging is `unmerge` (<tokred/policy/merge.hpp>): with this merge's `assign`
// (composed over layers by `compose_assign`) it copies every merged row back to each original
// slot, so an LLM can run at the full original length; see docs/policies/dymu.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/merge.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {

/// DyMU's DToMe at inference (Wang et al., "DyMU: Dynamic Merging and Virtual Unmerging for
/// Efficient VLMs", arXiv 2504.17040; MikeWangWZHL/dymu `bipartite_soft_matching` with
/// `specified_threshold`): ToMe's bipartite matching (`tome`), then
///
///   r = #{unprotected A tokens whose best similarity > θ}      (strict; NaN never passes)
///   r_eff = min(r, max_r if max_r > 0), and 0 when N − protect < 2 (no pair to merge)
///
/// and tome's merge of r_eff tokens: the same size-weighted merge, protected tokens, output order
/// (input order when r_eff = 0), source, positions, sizes and assign, bit for bit
/// (tome{r_eff, protect, order} itself whenever r_eff is within ToMe's ⌊(N − protect)/2⌋). As the
/// original, the count over θ is not clamped to that: with N − protect odd every unprotected A
/// token may merge, one more than tome{} allows (SigLIP's 729 tokens without a class token: 365
/// merge, 364 come out). The r_eff merged tokens are the first r_eff of tome's ranking
/// (similarity descending, lower A index on ties), which are exactly those above θ unless max_r
/// cuts them. N − r_eff tokens come out; the outputs are sized by N.
///
/// θ is a layer's calibrated threshold (`dymu_batch_threshold`, `dymu_running_threshold`). The
/// default 1 is the original's uncalibrated value: cosines are at most 1, so in effect nothing
/// merges (a rounded cosine of near-duplicates can exceed 1 by an ulp and pass). θ = −inf merges
/// every A token with a numeric similarity, up to the clamps.
struct dymu {
  float theta = 1.0f;   ///< θ: an A token merges when its best cosine is strictly above it
  index_t protect = 0;  ///< leading tokens that never merge (as tome; CLIP's class token: 1)
  index_t max_r = 0;    ///< the original's max_r_per_instance: at most this many merge; 0: no cap
  merge_order order = merge_order::original;
};

namespace detail {

/// The parameter and grid checks of dymu: `invalid_parameter` (NaN θ, negative protect or
/// max_r), then tome's grid checks.
inline status check_dymu_problem(const dymu& p, const token_grid& grid) noexcept {
  if (std::isnan(p.theta) || p.protect < 0 || p.max_r < 0) return status::invalid_parameter;
  return check_merge_grid(grid);
}

/// dymu's r_eff from the best similarity of every A token (`best(k)`, k < a_tokens(N)): the
/// unprotected ones strictly above θ, capped by max_r; 0 when no pair can merge (the original's
/// early return for ⌊(N − protect)/2⌋ = 0).
template <class Best>
index_t dymu_r(const dymu& p, index_t n, const Best& best) noexcept {
  if (effective_r(tome{n, p.protect}, n) == 0) return 0;
  const bipartite_split s = split_of(n, p.protect);
  index_t r = 0;
  for (index_t k = s.a_protected; k < s.a; ++k) r += best(k) > p.theta;
  return p.max_r > 0 ? std::min(r, p.max_r) : r;
}

/// Every check of dymu that needs no access to values, in the documented order: parameters and
/// grid, then tome's checks (compared rows, token rows, carried inputs, given matching, outputs
/// against the bound N, overlaps), then `count` (1,) and its overlaps.
template <class Ein, class Eout, class Space>
status check_dymu(const dymu& p, const merge_inputs<Ein, Space>& in,
                  const counted_merge_outputs<Eout, Space>& out) noexcept {
  if (status s = check_dymu_problem(p, in.grid); s != status::ok) return s;
  const merge_outputs<Eout, Space>& rows = out;
  if (merge_count c = check_tome(tome{0, p.protect, p.order}, in, rows); c.code != status::ok) return c.code;
  if (status s = check_view(out.count, {index_t{1}}); s != status::ok) return s;
  const view<const Ein, 2, Space> read_tokens = requested(out.tokens) ? in.tokens : view<const Ein, 2, Space>{};
  const bool hit = overlaps_any(out.count, compared_rows(in), read_tokens, in.sizes, in.source, in.positions,
                                in.similarity, in.partner) ||
                   overlaps_any(out.count, out.tokens, out.source, out.positions, out.sizes, out.assign);
  return hit ? status::aliasing : status::ok;
}

}  // namespace detail

/// The static upper bound of dymu's output count: N = T·H·W, nothing merged (the real count,
/// N − r_eff, depends on the similarities and is written to `count`); 0 exactly when
/// `can_implement` fails.
inline index_t retained_count(const dymu& p, const problem& prob) noexcept {
  return detail::check_dymu_problem(p, prob.grid) == status::ok ? prob.grid.tokens() : 0;
}

/// `ok`, or why dymu cannot run on this grid: `invalid_parameter` (NaN θ, protect or max_r
/// negative), `shape_mismatch` (a negative grid extent, more than 2³¹ − 1 tokens), `empty_input`.
inline status can_implement(const dymu& p, const problem& prob) noexcept {
  return detail::check_dymu_problem(p, prob.grid);
}

/// DToMe's batch-level threshold finding for one layer (the original's
/// `batch_level_bipartite_soft_matching` without a specified threshold): `best` holds the best
/// similarity of every A token of every image of a calibration batch, (images, a_tokens) — one
/// `tome_match` similarity output per row, protected A tokens at −inf. Merging r tokens per
/// image at batch level merges the r·images highest edges of the whole batch; the threshold is
/// the score of the first edge left unmerged, the (r·images + 1)-th highest (NaN ranking below
/// every number), clamped to ≥ 0: a NaN or negative score there gives 0 (+0 for −0).
///
/// When r ≥ a_tokens no edge is left unmerged, and the threshold is the lowest edge's score,
/// clamped as above (the original's `j = rb if rb < len(edge_idx) else len(edge_idx) − 1`).
/// Writes θ to `theta` and returns `ok`; otherwise leaves it and returns `empty_input` (no
/// entries), `null_pointer` or `invalid_parameter` (r < 0).
/// Pass the r the layer merges per image after tome's clamp (`effective_r`). O(images·a) per
/// byte of the key, 4 passes; no allocation (256 counts on the stack).
inline status dymu_batch_threshold(const view<const float, 2>& best,  // (images, a_tokens)
                                   index_t r, float& theta) noexcept {
  const index_t images = best.extent(0), a = best.extent(1);
  if (images == 0 || a == 0) return status::empty_input;
  if (best.data_handle() == nullptr) return status::null_pointer;
  if (r < 0) return status::invalid_parameter;
  // The (r·images + 1)-th largest rank key (NaN lowest), or the lowest when r ≥ a, a byte at a
  // time from the top: among the keys that share the bytes found so far, count each value of the
  // next byte, and walk down from 255 to the byte where the rank falls.
  index_t rank = r < a ? r * images + 1 : images * a;  // ≤ images·a: among the keys sharing the prefix
  std::uint32_t key = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    const std::uint32_t decided = shift == 24 ? 0u : ~std::uint32_t{0} << (shift + 8);
    index_t count[256] = {};
    for (index_t i = 0; i < images; ++i)
      for (index_t k = 0; k < a; ++k) {
        const std::uint32_t x = detail::score_key(detail::float_bits(best(i, k)));
        if ((x & decided) == key) ++count[(x >> shift) & 0xFFu];
      }
    std::uint32_t byte = 255;
    while (rank > count[byte]) rank -= count[byte--];
    key |= byte << shift;
  }
  // Keys from 0x80000000 on are the scores ≥ +0 with the sign bit set; below: negative or NaN.
  theta = key >= 0x80000000u ? detail::bits_float(key ^ 0x80000000u) : 0.0f;
  return status::ok;
}

/// The running mean DToMe keeps of a layer's batch thresholds: θ ← (θ·n + θ_new) / (n + 1) in
/// float, with n the number of batches θ already averages; n ≤ 0 returns θ_new (the first batch).
/// The original marks "no batch yet" by θ == 1.0, its initial value, and counts n from there;
/// here the caller keeps n.
constexpr float dymu_running_threshold(float theta, index_t n, float theta_new) noexcept {
  if (n <= 0) return theta_new;
  return (theta * static_cast<float>(n) + theta_new) / static_cast<float>(n + 1);
}

}  // namespace tokred
