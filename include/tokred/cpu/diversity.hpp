// tokred/cpu/diversity.hpp — CPU backends of divprune, kcenter and importance_diversity.
//
// All three are one greedy max-min engine over a group of n tokens:
//
//   first pick   divprune: the largest second-smallest distance in a column, found by a pruned
//                scan (below); kcenter: the `first` token; importance_diversity: the top score.
//   later picks  argmax over candidates of score_j = w_j · min over picks p of d(p, j).
//
// The engine never forms the n × n distance matrix. It keeps, per token, the minimum distance to
// the picks applied so far (`nearest`) and how many picks that covers (`applied`): O(n) memory,
// plus a packed, aligned copy of each pick's row (`row_copies`), which every update reads.
// Since min only falls as picks are added, a stale `nearest` bounds the true one from above, so
// the candidates sit in a max-heap keyed by their (possibly stale) score and index: the top is
// brought up to date (its pending picks applied, four rows a pass) and pushed back down until the
// top is current — that token is the argmax, exactly, ties to the lower index. Tokens that can no
// longer win are never updated again (lazy greedy). The first pick is found the same way: each
// candidate's running second-smallest distance only falls as more tokens are compared, so the
// scan of a candidate stops as soon as it can no longer beat the best so far, visiting its
// sequence neighbours (its grid neighbours along w) first or, once the scans ahead are projected
// to run long (rows without local structure), the group's most central rows.
//
// Every share (ith of nth) runs the selection of each group its output rows fall in, then moves
// its rows: under scope::global every share computes the same selection, with no share waiting.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <type_traits>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/policy/diversity.hpp"
#include "tokred/policy/diversity_steps.hpp"

namespace tokred {
namespace detail {

/// A binary max-heap of rank keys in caller memory.
class key_heap {
 public:
  key_heap(std::uint64_t* keys, index_t size) noexcept : keys_(keys), size_(size) {
    for (index_t at = size_ / 2; at-- > 0;) sift_down(at);
  }
  std::uint64_t top() const noexcept { return keys_[0]; }
  /// The largest key below the top (0 when the heap holds one key).
  std::uint64_t runner_up() const noexcept {
    if (size_ < 2) return 0;
    return size_ > 2 && keys_[2] > keys_[1] ? keys_[2] : keys_[1];
  }
  void pop() noexcept {
    keys_[0] = keys_[--size_];
    sift_down(0);
  }
  void replace_top(std::uint64_t key) noexcept {
    keys_[0] = key;
    sift_down(0);
  }

 private:
  void sift_down(index_t at) noexcept {
    const std::uint64_t key = keys_[at];
    for (;;) {
      index_t child = 2 * at + 1;
      if (child >= size_) break;
      if (child + 1 < size_ && keys_[child + 1] > keys_[child]) ++child;
      if (keys_[child] <= key) break;
      keys_[at] = keys_[child];
      at = child;
    }
    keys_[at] = key;
  }

  std::uint64_t* keys_;
  index_t size_;
};

/// The argmax of a lazy greedy step. The heap holds each candidate's rank key from a score that
/// only falls as picks are added, so a stale key bounds the current one from above. While the top
/// is stale, `advance(j, up_to)` brings it up to date by at most four more picks (up_to = the
/// pick count) and returns its new key; it goes back into the heap as soon as it falls below the
/// runner-up. A current top is the exact argmax, ties to the lower index. `applied[j]` counts the
/// picks candidate j's score covers; `is_current(j)` may declare more candidates current.
template <class IsCurrent, class Advance>
index_t lazy_argmax(key_heap& heap, const std::int32_t* applied, index_t picked,
                    const IsCurrent& is_current, const Advance& advance) noexcept {
  for (;;) {
    const index_t j = rank_key_index(heap.top());
    if (applied[j] == picked || is_current(j)) return j;
    const std::uint64_t runner_up = heap.runner_up();
    std::uint64_t key = heap.top();
    while (applied[j] < picked && key >= runner_up) key = advance(j, picked);
    heap.replace_top(key);
  }
}

/// Distances between the rows of one group. `scale` holds 1/‖x_i‖ (cosine; 0 for a zero row) or 1
/// (Euclidean), and NaN for a row whose squared norm is not finite: such a row is at distance NaN
/// from everything, and NaN distances are ignored by the minimum.
template <class Arch, class E, distance_kind Kind>
struct group_distances {
  using arch = Arch;
  using element = E;
  row_set<Arch, E> rows;  // (n, dim)
  float* scale;           // (n,)
  float* self;            // (n,) d(i, i), as the pair kernel computes it

  void prepare() const noexcept {
    for (index_t i = 0; i < rows.size(); ++i) prepare(i, rows.template pair<pair_op::dot>(i, i));
  }
  /// Row i's scale and self-distance from its squared norm `sq` (its dot with itself).
  void prepare(index_t i, float sq) const noexcept {
    scale[i] = maxmin_scale<Kind>(sq);
    self[i] = Kind == distance_kind::cosine || !valid(i) ? from_raw(i, i, sq) : 0.0f;
  }
  bool valid(index_t i) const noexcept { return !std::isnan(scale[i]); }

  static constexpr pair_op op = Kind == distance_kind::cosine ? pair_op::dot : pair_op::squared_distance;

  /// The distance from the pair kernel's value; symmetric in (i, j) to the last bit.
  float from_raw(index_t i, index_t j, float raw) const noexcept {
    return maxmin_distance<Kind>(raw, scale[i], scale[j]);
  }

  /// d(i, js[c]) for c < count, into `out`.
  void from_one(index_t i, const index_t* js, index_t count, float* out) const noexcept {
    rows.template pairs<op>(i, js, count, out);
    from_raws(i, js, count, out);
  }
  /// The same, row js[c] read from its copy in `copies` (slots `first` … first + count).
  void from_one(index_t i, const row_copies<E>& copies, index_t first, const index_t* js, index_t count,
                float* out) const noexcept {
    rows.template pairs<op>(i, copies.at(first), copies.stride, count, out);
    from_raws(i, js, count, out);
  }
  /// The distances of row i to rows js[c] from the pair kernel's values in `out`, in place.
  void from_raws(index_t i, const index_t* js, index_t count, float* out) const noexcept {
    for (index_t c = 0; c < count; ++c) out[c] = from_raw(i, js[c], out[c]);
  }

  /// visit(j, d(i, j)) for every j of the group.
  template <class Visit>
  void sweep(index_t i, const Visit& visit) const noexcept {
    rows.template sweep<op>(i, 0, rows.size(), [&](index_t j, float raw) { visit(j, from_raw(i, j, raw)); });
  }
};

/// The scratch one share needs to select one group of `n` tokens keeping `k`.
struct maxmin_scratch {
  float* scale = nullptr;             // (n,)
  float* self = nullptr;              // (n,)
  float* nearest = nullptr;           // (n,) min distance to the picks applied so far; in divprune's
                                      //   first pick, each row's least distance met in other scans
  std::int32_t* applied = nullptr;    // (n,) how many picks `nearest` covers
  std::uint64_t* heap = nullptr;      // (n,) rank keys of the candidates
  two_smallest* column = nullptr;     // (n,) divprune's first pick: each column's two smallest
  std::uint64_t* hubs = nullptr;      // (n,) divprune's first pick: the rows, most central first
  index_t* hub_rank = nullptr;        // (n,) each row's place in `hubs`
  float* centre = nullptr;            // (dim,) the sum of the normalised rows
  index_t* picks = nullptr;           // (k,) group-local, pick order
  std::int64_t* kept = nullptr;       // (k,) group-local, ascending
  void* pick_rows = nullptr;          // (k, dim) the picks' rows in pick order (row_copies)

  /// `first_pick`: divprune's, which ranks the rows by centrality.
  static maxmin_scratch carve(arena& a, index_t n, index_t k, index_t dim, bool first_pick) {
    maxmin_scratch s;
    s.scale = a.take<float>(n);
    s.self = a.take<float>(n);
    s.nearest = a.take<float>(n);
    s.applied = a.take<std::int32_t>(n);
    s.heap = a.take<std::uint64_t>(n);
    s.column = a.take<two_smallest>(n);
    if (first_pick) {
      s.hubs = a.take<std::uint64_t>(n);
      s.hub_rank = a.take<index_t>(n);
      s.centre = a.take<float>(dim);
    }
    s.picks = a.take<index_t>(k);
    s.kept = a.take<std::int64_t>(k);
    s.pick_rows = a.take<std::byte>(row_copies_bytes(k, dim));
    return s;
  }
};

/// The order in which DivPrune's first pick compares candidate j with the rest of its group, four
/// rows at a time, each row once, skipping those at the index gaps in `met` (compared already):
/// j's ring of indices (j+1, j−1, j+2, j−2, …: its neighbours along the grid's w axis, where its
/// nearest rows are on features with local structure) or, given `hubs`, the group's rows most
/// central first (where its nearest rows are on features without).
class scan_order {
 public:
  scan_order(index_t j, index_t n, const index_t (&met)[3], const std::uint64_t* hubs) noexcept
      : j_(j), n_(n), far_(std::max(j, n - 1 - j)), met_{met[0], met[1], met[2]}, hubs_(hubs) {}

  /// Up to four next rows into `out`; returns how many (0 once every row has come).
  index_t next(index_t* out) noexcept {
    index_t count = 0;
    while (count < 4) {
      const index_t r = hubs_ == nullptr ? from_ring() : from_hubs();
      if (r < 0) break;
      if (!met(r > j_ ? r - j_ : j_ - r)) out[count++] = r;
    }
    return count;
  }

 private:
  bool met(index_t gap) const noexcept { return gap == 0 || gap == met_[0] || gap == met_[1] || gap == met_[2]; }
  /// The ring's next row inside the group, or −1 once the ring has passed both ends.
  index_t from_ring() noexcept {
    for (;;) {
      const index_t gap = taken_ / 2 + 1;
      if (gap > far_) return -1;
      const index_t r = taken_++ % 2 == 0 ? j_ + gap : j_ - gap;
      if (r >= 0 && r < n_) return r;
    }
  }
  index_t from_hubs() noexcept { return taken_ < n_ ? rank_key_index(hubs_[taken_++]) : -1; }

  index_t j_, n_, far_;
  index_t met_[3];
  const std::uint64_t* hubs_;
  index_t taken_ = 0;  // ring positions or hubs taken
};

/// The rows of a group most central first, into `hubs` (rank keys) and each row's place into
/// `hub_rank`: by the cosine of each row with the sum of the normalised rows (`centre`, dim floats
/// of scratch); rows whose norm is not finite last. Two passes over the rows.
template <class Distances>
void rank_centrality(const Distances& d, std::uint64_t* hubs, index_t* hub_rank, float* centre) noexcept {
  using Arch = typename Distances::arch;
  const index_t n = d.rows.size(), dim = d.rows.dim(), step = d.rows.rows.stride(1);
  std::fill(centre, centre + dim, 0.0f);
  for (index_t j = 0; j < n; ++j)
    if (d.valid(j)) add_scaled_row<Arch>(d.rows.row(j), step, dim, d.scale[j], centre);
  for (index_t j = 0; j < n; ++j)
    hubs[j] = rank_key(d.valid(j) ? d.scale[j] * dot_with_floats<Arch>(d.rows.row(j), step, dim, centre)
                                  : std::numeric_limits<float>::quiet_NaN(),
                       j);
  std::sort(hubs, hubs + n, std::greater<>());
  for (index_t h = 0; h < n; ++h) hub_rank[rank_key_index(hubs[h])] = h;
}

/// DivPrune's first pick: argmax_j of the second-smallest d(i, j) over all i (d(j, j) included;
/// NaN distances ignored; +inf when fewer than two are finite), ties to the lower index; a
/// non-finite row ranks last. `near` holds the index offsets of a token's neighbours along the
/// grid's h and t axes.
///
/// Every token is first compared with its neighbours at offsets 1, `near.row` and `near.frame` — each such
/// pair once, for both columns — which bounds its score from above. Candidates are then finished
/// in order of that bound: each is compared with the rest of the group in `scan_order`, nearest
/// indices first, until its falling score drops below the best finished one; the first candidate
/// whose bound is below the best ends the search. A distance a scan meets bounds the other row's
/// score too (with its bound, it is a second pair of its column), which can settle that row before
/// its own scan. Exact, whatever the order: a score only falls as tokens are added. On features
/// with local structure a candidate meets a row that beats it within a few indices. Where the
/// scans ahead are projected (candidates left × pairs per beaten candidate so far) to take over
/// 8n pairs, that is not these features: the rows are ranked by centrality (two passes), later
/// candidates are compared with the most central rows first, and the least central candidates,
/// likeliest to be the most isolated, are finished first, so the best comes early.
template <class Distances>
index_t most_isolated(const Distances& d, const first_pick_neighbours& near, const maxmin_scratch& s) noexcept {
  const index_t n = d.rows.size();
  const float inf = std::numeric_limits<float>::infinity();
  const index_t offsets[3] = {1, near.row, near.frame};
  two_smallest* column = s.column;
  std::uint64_t* order = s.heap;
  float* met_elsewhere = s.nearest;  // free until the greedy
  // One pass reads each row once for four dot products: with itself (its norm) and with its three
  // neighbours, kept raw in `order` and `met_elsewhere` until every norm is known.
  for (index_t j = 0; j < n; ++j) {
    index_t js[4] = {j, 0, 0, 0}, count = 1;
    for (index_t o : offsets)
      if (o > 0 && j + o < n) js[count++] = j + o;
    float raw[4] = {0.0f, inf, inf, inf};
    d.rows.template pairs<pair_op::dot>(j, js, count, raw);
    d.prepare(j, raw[0]);
    order[j] = std::uint64_t{float_bits(raw[1])} << 32 | float_bits(raw[2]);  // parked until all norms are known
    met_elsewhere[j] = raw[3];
  }
  for (index_t j = 0; j < n; ++j) column[j] = {d.self[j], inf};
  for (index_t j = 0; j < n; ++j) {
    const float raw[3] = {bits_float(static_cast<std::uint32_t>(order[j] >> 32)),
                          bits_float(static_cast<std::uint32_t>(order[j])), met_elsewhere[j]};
    index_t slot = 0;
    for (index_t o : offsets) {
      if (o <= 0 || j + o >= n) continue;
      const float x = d.from_raw(j, j + o, raw[slot++]);
      column[j].add(x);
      column[j + o].add(x);
    }
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (index_t j = 0; j < n; ++j) order[j] = rank_key(d.valid(j) ? column[j].second : nan, j);
  std::sort(order, order + n, std::greater<>());
  std::fill(met_elsewhere, met_elsewhere + n, inf);

  index_t best = rank_key_index(order[0]);
  std::uint64_t best_key = 0;
  index_t batch[4];
  float dist[4];
  index_t beaten = 0, beaten_pairs = 0;  // candidates beaten in their scans, and the pairs those took
  bool ranked = false;  // whether s.hubs holds the rows by centrality, and `order` follows it from here
  for (index_t at = 0; at < n; ++at) {
    if (!ranked && beaten >= 2) {
      const auto above_best = [&](std::uint64_t key) { return key > best_key; };
      const index_t left = std::partition_point(order + at, order + n, above_best) - (order + at);
      if (left * beaten_pairs > 8 * n * beaten) {
        rank_centrality(d, s.hubs, s.hub_rank, s.centre);
        std::sort(order + at, order + n, [&](std::uint64_t a, std::uint64_t b) {
          return s.hub_rank[rank_key_index(a)] > s.hub_rank[rank_key_index(b)];
        });
        ranked = true;
      }
    }
    if (order[at] <= best_key) {
      if (ranked) continue;
      break;  // in order of bound: no candidate left can win
    }
    const index_t j = rank_key_index(order[at]);
    if (!d.valid(j)) {  // only reached when no row is finite: the lowest index wins
      best = j, best_key = order[at];
      continue;
    }
    two_smallest& col = column[j];
    two_smallest bound = col;
    bound.add(met_elsewhere[j]);
    if (rank_key(bound.second, j) < best_key) continue;  // settled by another scan
    bool lost = false;
    index_t pairs = 0;
    scan_order rows(j, n, offsets, ranked ? s.hubs : nullptr);
    for (index_t count; !lost && (count = rows.next(batch)) > 0;) {
      d.from_one(j, batch, count, dist);
      for (index_t c = 0; c < count; ++c) {
        col.add(dist[c]);
        if (dist[c] < met_elsewhere[batch[c]]) met_elsewhere[batch[c]] = dist[c];
      }
      lost = rank_key(col.second, j) < best_key;
      pairs += count;
    }
    if (lost) ++beaten, beaten_pairs += pairs;
    else best = j, best_key = rank_key(col.second, j);
  }
  return best;
}

/// The greedy max-min selection of `k` picks after `first`; `weight(j)` multiplies token j's
/// minimum distance (1 when unweighted). Writes scratch.picks in pick order.
template <class Distances, class Weight>
void greedy_maxmin(const Distances& d, index_t first, index_t k, bool allow_repeats,
                   const Weight& weight, const maxmin_scratch& s) noexcept {
  const index_t n = d.rows.size();
  const row_copies<typename Distances::element> pick_rows(s.pick_rows, d.rows.dim());
  s.picks[0] = first;
  index_t picked = 1;
  if (k == 1) return;
  pick_rows.store(0, d.rows.rows, first);

  const auto score = [&](index_t j) {
    return d.valid(j) ? weighted_distance(weight(j), s.nearest[j]) : std::numeric_limits<float>::quiet_NaN();
  };
  d.sweep(first, [&](index_t j, float x) {
    s.nearest[j] = std::isnan(x) ? std::numeric_limits<float>::infinity() : x;
    s.applied[j] = 1;
  });
  index_t candidates = 0;
  for (index_t j = 0; j < n; ++j)
    if (allow_repeats || j != first) s.heap[candidates++] = rank_key(score(j), j);
  key_heap heap(s.heap, candidates);

  // A row whose distances are NaN never changes its score: it is always current.
  const auto is_current = [&](index_t j) { return !d.valid(j); };
  const auto advance = [&](index_t j, index_t up_to) {
    const index_t from = s.applied[j], count = std::min<index_t>(4, up_to - from);
    float dist[4];
    d.from_one(j, pick_rows, from, s.picks + from, count, dist);
    float nearest = s.nearest[j];
    for (index_t c = 0; c < count; ++c) nearest = dist[c] < nearest ? dist[c] : nearest;
    s.nearest[j] = nearest;
    s.applied[j] = static_cast<std::int32_t>(from + count);
    return rank_key(score(j), j);
  };
  while (picked < k) {
    s.picks[picked] = lazy_argmax(heap, s.applied, picked, is_current, advance);
    pick_rows.store(picked, d.rows.rows, s.picks[picked]);
    ++picked;
    if (!allow_repeats) heap.pop();
  }
}

/// One group's inputs to a diversity selection.
template <class E>
struct diversity_group {
  view<const E, 2> rows;        // (n, dim) compared
  view<const float, 1> scores;  // (n,) importance or relevance; may be empty
  view<const E, 2> query;       // (queries, dim) cdpruner; may be empty
  first_pick_neighbours near;   // index offsets of a token's neighbours along h and t
};

/// How one group of a diversity policy is selected: its scratch, and `select`, which fills
/// scratch.picks (group-local, pick order) and scratch.kept (the same, ascending). The max-min
/// policies are here; cdpruner specialises it in <tokred/cpu/dpp.hpp>.
template <class Arch, class P>
struct diversity_selector {
  using scratch = maxmin_scratch;

  static scratch carve(arena& a, const P&, index_t n, index_t k, index_t dim) {
    return maxmin_scratch::carve(a, n, k, dim, std::is_same_v<P, divprune>);
  }

  template <class E>
  static void select(const P& p, const diversity_group<E>& g, index_t k, const scratch& s) noexcept {
    constexpr distance_kind kind =
        std::is_same_v<P, kcenter> ? distance_kind::squared_euclidean : distance_kind::cosine;
    const group_distances<Arch, E, kind> d{row_set<Arch, E>{g.rows}, s.scale, s.self};
    if constexpr (!std::is_same_v<P, divprune>) d.prepare();  // divprune's first pick does it
    const index_t n = g.rows.extent(0);
    if constexpr (std::is_same_v<P, importance_diversity>) {
      index_t first = 0;
      for (index_t j = 1; j < n; ++j)
        if (rank_key(g.scores(j), j) > rank_key(g.scores(first), first)) first = j;
      greedy_maxmin(d, first, k, false, [&](index_t j) { return g.scores(j); }, s);
    } else {
      const index_t first = [&] {
        if constexpr (std::is_same_v<P, kcenter>) return p.first;
        else return most_isolated(d, g.near, s);
      }();
      bool repeats = false;
      if constexpr (std::is_same_v<P, divprune>) repeats = p.allow_repeats;
      greedy_maxmin(d, first, k, repeats, [](index_t) { return 1.0f; }, s);
    }
    for (index_t j = 0; j < k; ++j) s.kept[j] = s.picks[j];
    std::sort(s.kept, s.kept + k);
  }
};

/// Whether a policy asked for its fp16 rows widened once into the workspace (`widen_once`).
template <class P>
constexpr bool widens_once(const P& p) noexcept {
  if constexpr (std::is_same_v<P, divprune> || std::is_same_v<P, kcenter> || std::is_same_v<P, importance_diversity>)
    return p.widen_once;
  else
    return false;
}

/// The rows of one group in fp32, contiguous, into `out` (rows × dim floats): exact widening.
template <class Arch, class E>
view<const float, 2> widened_rows(const view<const E, 2>& rows, float* out) noexcept {  // rows: (n, dim)
  const index_t n = rows.extent(0), dim = rows.extent(1);
  for (index_t i = 0; i < n; ++i) copy_row<Arch>(&rows(i, 0), rows.stride(1), out + i * dim, 1, dim);
  return view<const float, 2>(out, {n, dim});
}

/// The CPU backend every diversity policy shares: checks, the per-share carve, one selection per
/// group whose output rows this share owns, then its rows.
template <class Arch, class P>
struct cpu_diversity {
  using selector = diversity_selector<Arch, P>;

  /// A share's scratch: the selector's, and the fp32 copy of a group's rows (`widen_once`).
  struct scratch {
    typename selector::scratch select;
    float* widened = nullptr;  // (group tokens, dim)
  };

  static scratch carve(arena& a, const P& p, const token_grid& grid, index_t dim, int ith, int nth) {
    const selection_groups g = groups_of(p.within, grid);
    const index_t group_kept = diversity_count(p, grid).count / (g.groups ? g.groups : 1);
    return carve_shares(a, ith, nth, [&](arena& s) {
      scratch mine{selector::carve(s, p, g.group_tokens, group_kept, dim), nullptr};
      if (widens_once(p)) mine.widened = s.take<float>(g.group_tokens, dim);
      return mine;
    });
  }

  static std::size_t workspace_bytes(const cpu<Arch>& exec, const P& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    arena counter;
    carve(counter, p, prob.grid, std::max<index_t>(prob.dim, 0), 0, exec.nth);  // a negative dim sizes no row
    return counter.used();
  }

  /// importance_diversity: `invalid_parameter` unless every score is NaN or finite and ≥ 0.
  template <class Ein>
  static status check_scores(const diversity_inputs<Ein>& in) noexcept {
    if constexpr (std::is_same_v<P, importance_diversity>) {
      for (index_t i = 0; i < in.grid.tokens(); ++i) {
        const float w = in.scores(i);
        if (!std::isnan(w) && !(w >= 0.0f && w <= std::numeric_limits<float>::max()))
          return status::invalid_parameter;
      }
    }
    return status::ok;
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const P& p, const diversity_inputs<Ein>& in,
                      const diversity_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = check_diversity(p, in, out); s != status::ok) return s;
    if (status s = check_scores(in); s != status::ok) return s;
    const view<const Ein, 2> rows = compared_rows(in);
    const std::size_t need = workspace_bytes(exec, p, problem{in.grid, rows.extent(1)});
    if (status s = check_workspace(ws, need); s != status::ok) return s;
    arena carver(ws);
    const scratch mine = carve(carver, p, in.grid, rows.extent(1), exec.ith, exec.nth);
    if (!carver.fits()) return status::workspace_too_small;

    const selection_groups g = groups_of(p.within, in.grid);
    const index_t kept_total = diversity_count(p, in.grid).count;
    const index_t group_kept = kept_total / g.groups;
    for_each_owned_group(kept_total, group_kept, g.group_tokens, exec.ith, exec.nth, [&](const owned_group& at) {
      diversity_group<Ein> one{row_range(rows, at.first, g.group_tokens), {}, {},
                               first_pick_neighbours(in.grid, g.group_tokens)};
      if (reads_query<P>(in)) one.query = in.query;
      if (reads_scores<P>(in))
        one.scores = view<const float, 1>(&in.scores(at.first), {g.group_tokens}, {in.scores.stride(0)});
      // The copy pays only where fp16 widens in software: the pair kernels take the conversion
      // instruction where the build has one.
      if constexpr (std::is_same_v<Ein, f16> && !has_hardware_f16<Arch>()) {
        if (widens_once(p)) {
          const diversity_group<float> wide{widened_rows<Arch>(one.rows, mine.widened), one.scores, {}, one.near};
          selector::select(p, wide, group_kept, mine.select);
        } else {
          selector::select(p, one, group_kept, mine.select);
        }
      } else {
        selector::select(p, one, group_kept, mine.select);
      }
      if (requested(out.picks))
        for (index_t j = at.lo; j < at.hi; ++j) out.picks(j) = at.first + mine.select.picks[j - at.row0];
      const selection_outputs<Eout>& base = out;
      emit_rows<Arch>([&](index_t j) -> index_t { return at.first + mine.select.kept[j - at.row0]; }, at.lo, at.hi,
                      in.grid, in.tokens, base);
    });
    return status::ok;
  }
};

}  // namespace detail

template <class Arch>
struct backend<divprune, cpu<Arch>> : detail::cpu_diversity<Arch, divprune> {};
template <class Arch>
struct backend<kcenter, cpu<Arch>> : detail::cpu_diversity<Arch, kcenter> {};
template <class Arch>
struct backend<importance_diversity, cpu<Arch>> : detail::cpu_diversity<Arch, importance_diversity> {};

}  // namespace tokred
