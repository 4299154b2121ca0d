// tokred/cpu/selection.hpp — CPU backends of topk, uniform, random_subset and gather.
//
// Every share (ith of nth) owns the output rows [K·ith/nth, K·(ith+1)/nth). It selects each
// group (frame, or all tokens) that its rows fall in, then moves its rows. Selection is cheap
// next to moving rows (see docs/benchmarks.md), so a group straddling two shares is selected by
// both rather than synchronising them: the engine's threads never wait on each other.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/selection.hpp"

namespace tokred {
namespace detail {


/// Writes the indices of the `k` largest keys among `n` (ties: lower index first) to `kept`,
/// ascending, each plus `offset`. `key_of(i)` gives the 32-bit key of group-local index i.
/// O(n): a radix select, 8 bits a pass from the top, finds the k-th largest key and how many
/// keys equal to it are kept; one in-order pass then emits. Both inner loops are branch-free:
/// with fresh scores every call the branch predictor cannot learn them, and the branchy
/// nth_element version measured 218–253 µs against 68–98 µs for this one at N = 9216 (SSE2;
/// docs/benchmarks.md).
template <class KeyOf>
void select_largest(const KeyOf& key_of, index_t n, index_t k, index_t offset,
                    std::uint32_t* keys,    // (n,)
                    std::int64_t* kept) {   // (k,)
  if (k == n) {
    for (index_t i = 0; i < n; ++i) kept[i] = offset + i;
    return;
  }
  for (index_t i = 0; i < n; ++i) keys[i] = key_of(i);
  std::uint32_t threshold = 0, known = 0;  // the threshold's bits found so far, and their mask
  index_t ties = k;                        // keys still to take at or below the current prefix
  for (int shift = 24; shift >= 0; shift -= 8) {
    index_t histogram[256] = {};
    for (index_t i = 0; i < n; ++i)
      histogram[(keys[i] >> shift) & 0xFFu] += (keys[i] & known) == threshold;
    int bin = 255;
    while (histogram[bin] < ties) ties -= histogram[bin--];
    threshold |= static_cast<std::uint32_t>(bin) << shift;
    known |= 0xFFu << shift;
  }
  // `ties` is now how many keys equal to the threshold are kept: the lowest-indexed ones.
  index_t j = 0;
  for (index_t i = 0; j < k; ++i) {
    const std::uint32_t key = keys[i];
    const bool tie = key == threshold;
    const bool take = (key > threshold) | (tie & (ties > 0));
    ties -= tie & take;
    kept[j] = offset + i;  // always written, kept only when `take` advances j
    j += take;
  }
}

/// Moves output rows [j0, j1): `source`, `positions` and `tokens` of original index `index_of(j)`.
template <class Arch, class Ein, class Eout, class IndexOf>
void emit_rows(const IndexOf& index_of, index_t j0, index_t j1, const token_grid& grid,
               const view<const Ein, 2>& tokens,  // (tokens, dim)
               const selection_outputs<Eout>& out) {
  const bool want_tokens = requested(out.tokens);
  const bool want_source = requested(out.source);
  const bool want_positions = requested(out.positions);
  const index_t dim = tokens.extent(1);
  for (index_t j = j0; j < j1; ++j) {
    const index_t i = index_of(j);
    if (want_source) out.source(j) = i;
    if (want_positions) {
      const token_position p = grid.position(i);
      out.positions(j, 0) = p.t;
      out.positions(j, 1) = p.h;
      out.positions(j, 2) = p.w;
    }
    if (want_tokens)
      copy_row<Arch>(&tokens(i, 0), tokens.stride(1), &out.tokens(j, 0), out.tokens.stride(1), dim);
  }
}

/// One group of a selection as a share meets it: the flat index of its token 0, its first
/// output row, and the output rows [lo, hi) the share writes.
struct owned_group {
  index_t first = 0, row0 = 0, lo = 0, hi = 0;
};

/// Calls f(owned_group) for each group whose output rows meet share `ith` of `nth`'s rows of the
/// `kept_total` (groups of `group_tokens` tokens keeping `group_kept` each, in order). A share
/// that owns no row selects nothing.
template <class F>
void for_each_owned_group(index_t kept_total, index_t group_kept, index_t group_tokens, int ith, int nth,
                          const F& f) {
  const index_t j0 = share_begin(kept_total, ith, nth), j1 = share_begin(kept_total, ith + 1, nth);
  if (j0 == j1) return;
  for (index_t group = j0 / group_kept; group * group_kept < j1; ++group) {
    const index_t row0 = group * group_kept;
    f(owned_group{group * group_tokens, row0, std::max(j0, row0), std::min(j1, row0 + group_kept)});
  }
}

/// The scratch one share needs to select one group.
struct selection_scratch {
  std::uint32_t* keys = nullptr;  // (group_tokens,)
  std::int64_t* kept = nullptr;   // (group_kept,)
};

/// The CPU implementation shared by the budgeted selections; `Policy` is topk, uniform or random_subset.
template <class Arch, class Policy>
struct cpu_budgeted_selection {
  static constexpr bool ranks = !std::is_same_v<Policy, uniform>;  // uniform needs no scratch

  /// The one carve-up: `nth` slices of (keys, kept); returns slice `ith` (null when counting).
  static selection_scratch carve(arena& a, const Policy& p, const token_grid& grid, int ith,
                                 int nth) {
    if constexpr (ranks) {
      const selection_groups g = groups_of(p.within, grid);
      const index_t group_kept = selection_count(p.keep, p.within, grid).count / (g.groups ? g.groups : 1);
      return carve_shares(a, ith, nth, [&](arena& s) {
        return selection_scratch{s.take<std::uint32_t>(g.group_tokens), s.take<std::int64_t>(group_kept)};
      });
    }
    return selection_scratch{};
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const Policy& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    arena counter;
    carve(counter, p, prob.grid, 0, exec.nth);
    return counter.used();
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const Policy& p, const selection_inputs<Ein>& in,
                      const selection_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = check_selection(p, std::is_same_v<Policy, topk>, in, out); s != status::ok)
      return s;
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, in.tokens.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    arena carver(ws);
    const selection_scratch scratch = carve(carver, p, in.grid, exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const selection_groups g = groups_of(p.within, in.grid);
    const index_t kept_total = selection_count(p.keep, p.within, in.grid).count;
    const index_t group_kept = kept_total / g.groups;
    for_each_owned_group(kept_total, group_kept, g.group_tokens, exec.ith, exec.nth, [&](const owned_group& at) {
      if constexpr (std::is_same_v<Policy, topk>) {
        const auto key_of = [&](index_t i) { return score_key(float_bits(in.scores(at.first + i))); };
        select_largest(key_of, g.group_tokens, group_kept, at.first, scratch.keys, scratch.kept);
      } else if constexpr (std::is_same_v<Policy, random_subset>) {
        const auto key_of = [&](index_t i) { return random_key(p.seed, at.first + i); };
        select_largest(key_of, g.group_tokens, group_kept, at.first, scratch.keys, scratch.kept);
      }
      const auto index_of = [&](index_t j) -> index_t {
        if constexpr (ranks) return scratch.kept[j - at.row0];
        else return at.first + uniform_pick(j - at.row0, group_kept, g.group_tokens);
      };
      emit_rows<Arch>(index_of, at.lo, at.hi, in.grid, in.tokens, out);
    });
    return status::ok;
  }
};

}  // namespace detail

template <class Arch>
struct backend<topk, cpu<Arch>> : detail::cpu_budgeted_selection<Arch, topk> {};
template <class Arch>
struct backend<uniform, cpu<Arch>> : detail::cpu_budgeted_selection<Arch, uniform> {};
template <class Arch>
struct backend<random_subset, cpu<Arch>> : detail::cpu_budgeted_selection<Arch, random_subset> {};

/// Gather on CPU: every share validates the whole index list (so all shares agree on the
/// status and none writes on failure), then moves its own rows. No workspace.
template <class Arch>
struct backend<gather, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const gather&, const problem&) { return 0; }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const gather&, const gather_inputs<Ein>& in,
                      const selection_outputs<Eout>& out, workspace) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_gather(in, out); s != status::ok) return s;
    const index_t n = in.grid.tokens();
    const index_t kept = in.index.extent(0);
    for (index_t j = 0; j < kept; ++j)
      if (in.index(j) < 0 || in.index(j) >= n) return status::index_out_of_range;
    const auto index_of = [&](index_t j) -> index_t { return in.index(j); };
    detail::emit_rows<Arch>(index_of, detail::share_begin(kept, exec.ith, exec.nth),
                            detail::share_begin(kept, exec.ith + 1, exec.nth), in.grid, in.tokens,
                            out);
    return status::ok;
  }
};

}  // namespace tokred
