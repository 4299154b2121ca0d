// tokred/policy/vidkv_cache_units.hpp — VidKV's streaming cache (vidkv_append, vidkv_read of
// <tokred/policy/vidkv.hpp>) cut into independent units of work, as host/device functions: the
// CUDA kernels' (<tokred/cuda/vidkv_cache.cuh>) whole per-thread bodies, which the CPU tests
// also run on host views against the CPU backend. The keys are quantized and dequantized by the
// key units of <tokred/policy/vidkv_units.hpp>; this file holds what a step does besides.
//
// An append that quantizes P tokens (a prefill's first n − n mod G, or a flush's whole sequence):
//
//   value units     heads × P/G value groups × head_dim channels: one unit per (head, group,
//                   channel), the uniform group kernel (quantize_unit_from) over the group's G
//                   tokens in order, into `values` or — for a group of salient tokens —
//                   `salient_values`
//   residual rows   the tokens that stay in full precision (a prefill's last n mod G, or a
//                   decode step's n tokens), keys then values: one item per value, its bits as
//                   given
//
// Value group g of the first P packed tokens, with S listed salient positions below P (a
// multiple of G): groups [0, (P − S)/G) hold the unlisted tokens in order and are rows g of
// `values`; the next S/G groups hold the listed tokens in order and are rows g − (P − S)/G of
// `salient_values`. Token t of an unlisted group is the k-th unlisted position, k = g·G + t,
// which is k + i with i the listed positions before it: the count of listed j with
// salient(j) − j ≤ k, a binary search for the group's first token and a walk on from there for
// the others (value_position_walk), as each pass over the group reads them.
//
// A read of a cache holding P packed tokens and R residual ones, n incoming: the value units
// dequantize the groups into their positions, then one item per value copies the residual rows
// and the incoming tokens after the P packed ones, keys then values.
//
// The units and items of a step never touch the same memory, so each step is one kernel besides
// the keys'. Codes, scales, zero points and values are the CPU backend's bit for bit (NaN
// payloads aside).
//
// A salient list in device memory is not read by the host's checks: every unit finds S itself
// (salient_below) and, when it is not whole groups within the salient storage, writes nothing;
// a position outside [0, P) (a list that is not ascending) is neither read nor written. Such a
// list leaves the values unspecified, never memory outside the cache and the outputs.
#pragma once

#include <cstdint>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/uniform_quant.hpp"
#include "tokred/policy/vidkv.hpp"

namespace tokred::detail {

/// Where value group g of the first P packed tokens is stored (see the header comment): a row of
/// `values`, or of `salient_values`.
struct value_group_slot {
  bool salient = false;
  index_t row = 0;
};

TOKRED_HOST_DEVICE constexpr value_group_slot value_group_slot_of(index_t listed, index_t packed, index_t group,
                                                                  index_t g) noexcept {
  const index_t others = (packed - listed) / group;
  return g >= others ? value_group_slot{true, g - others} : value_group_slot{false, g};
}

/// The cache positions of the tokens of the group in `slot` (listed: the salient positions
/// below P), asked for token by token. Token t of an unlisted group is position k + i, k = first
/// + t, with i the count of listed j with salient(j) − j ≤ k: a count that only grows with k,
/// found for the group's first token by a binary search and for later ones by walking on from
/// the last token asked for; a token before that (a pass starting over) walks on from the first
/// token's count. A few indices, no array: a GPU thread keeps them in registers. A list that is
/// not ascending gives positions the callers bound-check, never a read outside its first
/// `listed` entries.
template <class Space>
class value_position_walk {
 public:
  TOKRED_HOST_DEVICE value_position_walk(const view<const std::int64_t, 1, Space>& salient, index_t listed,
                                         index_t group, const value_group_slot& slot) noexcept
      : salient_(salient), listed_(listed), first_(slot.row * group), listed_group_(slot.salient) {
    if (listed_group_) return;
    first_count_ = count_ = leading_count(listed, [&](index_t j) { return salient(j) - j <= first_; });
  }

  /// The cache position of token t of the group.
  TOKRED_HOST_DEVICE index_t operator()(index_t t) noexcept {
    if (listed_group_) return salient_(first_ + t);
    if (t < last_) count_ = first_count_;
    last_ = t;
    while (count_ < listed_ && salient_(count_) - count_ <= first_ + t) ++count_;
    return first_ + t + count_;
  }

 private:
  view<const std::int64_t, 1, Space> salient_;
  index_t listed_, first_;
  bool listed_group_;
  index_t first_count_ = 0, count_ = 0, last_ = 0;
};

/// The cache positions of the `group` tokens of the group in `slot` into `positions`
/// (value_position_walk).
template <class Space>
TOKRED_HOST_DEVICE void value_positions(const view<const std::int64_t, 1, Space>& salient, index_t listed,
                                        index_t group, const value_group_slot& slot, index_t* positions) noexcept {
  value_position_walk<Space> walk(salient, listed, group, slot);
  for (index_t t = 0; t < group; ++t) positions[t] = walk(t);
}

/// What a step does to the values and the full-precision rows, computed on the host.
struct vidkv_values_plan {
  uniform_format values, salient;  // vidkv_value_format, vidkv_salient_format
  bool each_op = false;            // vidkv::round_each_op
  bool vidkv_dequant = false;      // vidkv::vidkv_dequant
  index_t heads = 0, dim = 0;
  index_t packed = 0;          // P: the tokens an append quantizes (0 when it does not), or a read holds packed
  index_t salient_groups = 0;  // the salient storage's rows (Cs / G)

  TOKRED_HOST_DEVICE index_t value_units() const noexcept { return heads * (packed / values.group) * dim; }
  /// Value unit u: (head, group, channel), the channel fastest.
  TOKRED_HOST_DEVICE uniform_unit value_unit(index_t u) const noexcept {
    return uniform_unit_at(values, kv_problem{heads, packed, dim}, u);
  }
};

inline vidkv_values_plan vidkv_values_plan_of(const vidkv& c, const kv_problem& storage, index_t packed,
                                              index_t salient_groups) noexcept {
  return {vidkv_value_format(c), vidkv_salient_format(c), c.round_each_op, c.vidkv_dequant, storage.heads,
          storage.head_dim, packed, salient_groups};
}

/// Calls `f(slot, position)` for the value group of unit `at`, `position(t)` giving its token
/// t's cache position (cheapest with t ascending, pass after pass); nothing when the salient
/// tokens below P are not whole groups within the salient storage.
template <class Space, class F>
TOKRED_HOST_DEVICE void with_value_group(const vidkv_values_plan& w, const view<const std::int64_t, 1, Space>& salient,
                                         const uniform_unit& at, const F& f) noexcept {
  const index_t group = w.values.group, listed = salient_below(salient, w.packed);
  if (!salient_split_fits(listed, group, w.salient_groups)) return;
  const value_group_slot slot = value_group_slot_of(listed, w.packed, group, at.outer);
  value_position_walk<Space> walk(salient, listed, group, slot);
  f(slot, [&](index_t t) { return walk(t); });
}

/// Quantizes value unit u of the P tokens `x` (their values, (heads, P, head_dim)) into the
/// cache: S is the values' scheme; salient groups are asymmetric.
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE void vidkv_value_quantize(const vidkv_values_plan& w, const view<const E, 3, Space>& x,
                                             const vidkv_cache<E, Space>& cache, index_t u) noexcept {
  const uniform_unit at = w.value_unit(u);
  with_value_group(w, cache.salient, at, [&](const value_group_slot& slot, const auto& position) {
    const index_t first = slot.row * w.values.group;  // the group's first token in its storage
    const auto source = [&](index_t t, index_t c) {
      const index_t p = position(t - first);
      return p >= 0 && p < w.packed ? widen(x(at.head, p, c)) : 0.0f;
    };
    const uniform_unit to{at.head, slot.row, at.inner};
    if (slot.salient) quantize_unit_from<kv_scheme::asymmetric>(w.salient, w.each_op, source, cache.salient_values, to);
    else quantize_unit_from<S>(w.values, w.each_op, source, cache.values, to);
  });
}

/// Dequantizes value unit u of the cache into the values `y` ((heads, ≥ P, head_dim), any type).
template <kv_scheme S, class E, class Eout, class Space>
TOKRED_HOST_DEVICE void vidkv_value_dequantize(const vidkv_values_plan& w, const vidkv_cache<const E, Space>& cache,
                                               const view<Eout, 3, Space>& y, index_t u) noexcept {
  const uniform_unit at = w.value_unit(u);
  with_value_group(w, cache.salient, at, [&](const value_group_slot& slot, const auto& position) {
    const index_t first = slot.row * w.values.group;
    const auto sink = [&](index_t t, index_t c, float v) {
      const index_t p = position(t - first);
      if (p >= 0 && p < w.packed) y(at.head, p, c) = from_float<Eout>(v);
    };
    const uniform_unit from{at.head, slot.row, at.inner};
    if (slot.salient)
      dequantize_unit_to<kv_scheme::asymmetric>(w.salient, w.each_op, w.vidkv_dequant, cache.salient_values, from, sink);
    else dequantize_unit_to<S>(w.values, w.each_op, w.vidkv_dequant, cache.values, from, sink);
  });
}

/// What one append does besides its keys (see the header comment).
struct vidkv_append_plan : vidkv_values_plan {
  index_t rows = 0;        // new tokens kept in full precision
  index_t from_first = 0;  // the first of them among the new tokens
  index_t to_first = 0;    // the residual row it goes to

  TOKRED_HOST_DEVICE index_t row_items() const noexcept { return 2 * heads * rows * dim; }
  TOKRED_HOST_DEVICE index_t count() const noexcept { return value_units() + row_items(); }
};

template <class E, class Space>
vidkv_append_plan vidkv_append_plan_of(const vidkv& c, const vidkv_step& s, const vidkv_cache<E, Space>& cache) noexcept {
  vidkv_append_plan w;
  static_cast<vidkv_values_plan&>(w) =
      vidkv_values_plan_of(c, vidkv_storage(c, cache), s.quantizes() ? s.after.packed : 0, cache.salient_values.scale.extent(1));
  if (s.prefill) {
    w.rows = s.after.residual;
    w.from_first = s.after.packed;
  } else if (!s.flush) {
    w.rows = s.incoming;
    w.to_first = s.before.residual;
  }
  return w;
}

/// Unit u of an append besides its keys (u < count()): a value unit over the quantized tokens
/// `x`, then one value of a residual row, keys first.
template <kv_scheme S, class E, class Space>
TOKRED_HOST_DEVICE void vidkv_append_unit(const vidkv_append_plan& w, const view<const E, 3, Space>& x,
                                          const vidkv_append_inputs<E, Space>& in, const vidkv_cache<E, Space>& cache,
                                          index_t u) noexcept {
  const index_t units = w.value_units();
  if (u < units) return vidkv_value_quantize<S>(w, x, cache, u);
  u -= units;
  const index_t per_part = w.heads * w.rows * w.dim;
  const bool values = u >= per_part;
  const row_item at = row_item_at(values ? u - per_part : u, w.rows, w.dim);
  const view<const E, 3, Space>& from = values ? in.values : in.keys;
  const view<E, 3, Space>& to = values ? cache.value_residual : cache.key_residual;
  to(at.head, w.to_first + at.row, at.channel) = from(at.head, w.from_first + at.row, at.channel);
}

/// What one read does besides the packed keys.
struct vidkv_read_plan : vidkv_values_plan {
  index_t residual = 0;  // R held in full precision
  index_t incoming = 0;  // n

  TOKRED_HOST_DEVICE index_t row_items() const noexcept { return 2 * heads * (residual + incoming) * dim; }
  TOKRED_HOST_DEVICE index_t count() const noexcept { return value_units() + row_items(); }
};

template <class E, class Space>
vidkv_read_plan vidkv_read_plan_of(const vidkv& c, const vidkv_read_inputs<E, Space>& in) noexcept {
  vidkv_read_plan w;
  static_cast<vidkv_values_plan&>(w) =
      vidkv_values_plan_of(c, vidkv_storage(c, in.cache), in.state.packed, in.cache.salient_values.scale.extent(1));
  w.residual = in.state.residual;
  w.incoming = vidkv_incoming(in);
  return w;
}

/// Unit u of a read besides the packed keys (u < count()): a value unit, then one value of the
/// rows after the packed ones — the residual, then the incoming tokens — keys first.
template <kv_scheme S, class E, class Eout, class Space>
TOKRED_HOST_DEVICE void vidkv_read_unit(const vidkv_read_plan& w, const vidkv_read_inputs<E, Space>& in,
                                        const vidkv_read_outputs<Eout, Space>& out, index_t u) noexcept {
  const index_t units = w.value_units();
  if (u < units) return vidkv_value_dequantize<S>(w, in.cache, out.values, u);
  u -= units;
  const index_t rows = w.residual + w.incoming, per_part = w.heads * rows * w.dim;
  const bool values = u >= per_part;
  const row_item at = row_item_at(values ? u - per_part : u, rows, w.dim);
  const view<const E, 3, Space>& held = values ? in.cache.value_residual : in.cache.key_residual;
  const view<const E, 3, Space>& incoming = values ? in.values : in.keys;
  const E x = at.row < w.residual ? held(at.head, at.row, at.channel) : incoming(at.head, at.row - w.residual, at.channel);
  (values ? out.values : out.keys)(at.head, w.packed + at.row, at.channel) = element_cast<Eout>(x);
}

}  // namespace tokred::detail
