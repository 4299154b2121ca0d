// tokred/policy/kivi_units.hpp — KIVI's append and read (<tokred/policy/kivi.hpp>) cut into
// independent units of work, as host/device functions: the CUDA kernels'
// (<tokred/cuda/kivi.cuh>) whole per-thread bodies, which the CPU tests also run on host views
// against the CPU backend.
//
// An append of n tokens to a cache holding T0 (T1 = T0 + n after it), per head:
//
//   key groups      the key groups that fill, [⌊T0/R⌋·R, ⌊T1/R⌋·R) in groups of G, × D channels:
//                   one unit per (group, channel), its tokens from the key residual (t < T0) or
//                   the new keys
//   value tokens    the tokens that leave the value window, [max(0, T0 − R), max(0, T1 − R)),
//                   × D/G channel groups: one unit per (token, group), from the ring (t < T0) or
//                   the new values
//   residual rows   the new tokens that stay in full precision, × D channels: one item per value
//
// The units only read the residuals and the items only write them, rows the units may still
// read (a ring row is reused R tokens later), so the units run first, the items after (two
// kernels in stream order). A read is one pass: the packed key groups and value tokens
// dequantized, then the residual rows copied, every unit writing its own outputs.
//
// Each unit runs quantize_unit_from / dequantize_unit of <tokred/policy/uniform_group.hpp>, so
// codes, scales, zero points and values are the CPU backend's bit for bit (NaN payloads aside).
#pragma once

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kivi.hpp"
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred::detail {

/// A KIVI cache's formats and shape, as the units read them.
struct kivi_shape {
  uniform_format keys, values;  // kivi_key_format, kivi_value_format
  bool each_op = false;         // kivi::round_each_op
  index_t heads = 0, dim = 0, residual = 0;
};

constexpr kivi_shape kivi_shape_of(const kivi& k, index_t heads, index_t dim) noexcept {
  return {kivi_key_format(k), kivi_value_format(k), k.round_each_op, heads, dim, k.residual};
}

/// What one append does (see the header comment), computed on the host.
struct kivi_append_plan : kivi_shape {
  index_t t0 = 0, t1 = 0;  // tokens held before and after
  kivi_counts before, after;

  /// Tokens of the key groups that fill, per head (a multiple of G).
  TOKRED_HOST_DEVICE index_t key_tokens() const noexcept { return after.keys_packed - before.keys_packed; }
  /// Tokens leaving the value window, per head.
  TOKRED_HOST_DEVICE index_t value_tokens() const noexcept { return after.values_packed - before.values_packed; }
  /// The first new token of each residual (keys, values): earlier new tokens are quantized.
  TOKRED_HOST_DEVICE index_t key_rows_begin() const noexcept { return t0 > after.keys_packed ? t0 : after.keys_packed; }
  TOKRED_HOST_DEVICE index_t value_rows_begin() const noexcept {
    return t0 > after.values_packed ? t0 : after.values_packed;
  }

  TOKRED_HOST_DEVICE index_t key_units() const noexcept { return heads * key_tokens() / keys.group * dim; }
  TOKRED_HOST_DEVICE index_t quantize_units() const noexcept {
    return key_units() + heads * value_tokens() * (dim / values.group);
  }
  TOKRED_HOST_DEVICE index_t key_items() const noexcept { return heads * (t1 - key_rows_begin()) * dim; }
  TOKRED_HOST_DEVICE index_t residual_items() const noexcept {
    return key_items() + heads * (t1 - value_rows_begin()) * dim;
  }
};

constexpr kivi_append_plan kivi_append_plan_of(const kivi& k, index_t heads, index_t dim, index_t tokens_before,
                                               index_t added) noexcept {
  kivi_append_plan w;
  static_cast<kivi_shape&>(w) = kivi_shape_of(k, heads, dim);
  w.t0 = tokens_before;
  w.t1 = tokens_before + added;
  w.before = kivi_counts_at(k, w.t0);
  w.after = kivi_counts_at(k, w.t1);
  return w;
}

/// Quantization unit u of an append (u < quantize_units()): a key group's channel, then a
/// leaving token's channel group.
template <class E, class Space>
TOKRED_HOST_DEVICE void kivi_append_quantize(const kivi_append_plan& w, const kivi_append_inputs<E, Space>& in,
                                             const kivi_cache<E, Space>& cache, index_t u) noexcept {
  constexpr kv_scheme asym = kv_scheme::asymmetric;
  const index_t key_units = w.key_units();
  if (u < key_units) {
    uniform_unit at = uniform_unit_at(w.keys, kv_problem{w.heads, w.key_tokens(), w.dim}, u);
    at.outer += w.before.keys_packed / w.keys.group;
    const index_t h = at.head;
    quantize_unit_from<asym>(
        w.keys, w.each_op,
        [&](index_t t, index_t c) {
          return t < w.t0 ? widen(cache.key_residual(h, t - w.before.keys_packed, c)) : widen(in.keys(h, t - w.t0, c));
        },
        cache.keys, at);
  } else {
    uniform_unit at = uniform_unit_at(w.values, kv_problem{w.heads, w.value_tokens(), w.dim}, u - key_units);
    at.outer += w.before.values_packed;
    const index_t h = at.head;
    quantize_unit_from<asym>(
        w.values, w.each_op,
        [&](index_t t, index_t c) {
          return t < w.t0 ? widen(cache.value_residual(h, t % w.residual, c)) : widen(in.values(h, t - w.t0, c));
        },
        cache.values, at);
  }
}

/// Residual item i of an append (i < residual_items()): one value of a new token kept in full
/// precision, its bits as given, keys first.
template <class E, class Space>
TOKRED_HOST_DEVICE void kivi_append_residual(const kivi_append_plan& w, const kivi_append_inputs<E, Space>& in,
                                             const kivi_cache<E, Space>& cache, index_t i) noexcept {
  const index_t key_items = w.key_items();
  if (i < key_items) {
    const index_t begin = w.key_rows_begin();
    const row_item at = row_item_at(i, w.t1 - begin, w.dim);
    const index_t t = begin + at.row;
    cache.key_residual(at.head, t - w.after.keys_packed, at.channel) = in.keys(at.head, t - w.t0, at.channel);
  } else {
    const index_t begin = w.value_rows_begin();
    const row_item at = row_item_at(i - key_items, w.t1 - begin, w.dim);
    const index_t t = begin + at.row;
    cache.value_residual(at.head, t % w.residual, at.channel) = in.values(at.head, t - w.t0, at.channel);
  }
}

/// What one read does, computed on the host.
struct kivi_read_plan : kivi_shape {
  kivi_counts held;  // where the T tokens read are

  TOKRED_HOST_DEVICE index_t key_units() const noexcept { return heads * held.keys_packed / keys.group * dim; }
  TOKRED_HOST_DEVICE index_t value_units() const noexcept { return heads * held.values_packed * (dim / values.group); }
  TOKRED_HOST_DEVICE index_t key_items() const noexcept { return heads * held.keys_residual * dim; }
  TOKRED_HOST_DEVICE index_t count() const noexcept {
    return key_units() + value_units() + key_items() + heads * held.values_residual * dim;
  }
};

constexpr kivi_read_plan kivi_read_plan_of(const kivi& k, index_t heads, index_t dim, index_t tokens) noexcept {
  kivi_read_plan w;
  static_cast<kivi_shape&>(w) = kivi_shape_of(k, heads, dim);
  w.held = kivi_counts_at(k, tokens);
  return w;
}

/// Unit u of a read (u < count()): a packed key group's channel, a packed value token's channel
/// group, then one value of the key residual, then of the value ring.
template <class E, class Eout, class Space>
TOKRED_HOST_DEVICE void kivi_read_unit(const kivi_read_plan& w, const kivi_cache<const E, Space>& cache,
                                       const kivi_read_outputs<Eout, Space>& out, index_t u) noexcept {
  constexpr kv_scheme asym = kv_scheme::asymmetric;
  const kivi_counts& held = w.held;
  const index_t key_units = w.key_units(), value_units = w.value_units(), key_items = w.key_items();
  if (u < key_units) {
    dequantize_unit<asym>(w.keys, w.each_op, false, cache.keys, out.keys,
                          uniform_unit_at(w.keys, kv_problem{w.heads, held.keys_packed, w.dim}, u));
  } else if ((u -= key_units) < value_units) {
    dequantize_unit<asym>(w.values, w.each_op, false, cache.values, out.values,
                          uniform_unit_at(w.values, kv_problem{w.heads, held.values_packed, w.dim}, u));
  } else if ((u -= value_units) < key_items) {
    const row_item at = row_item_at(u, held.keys_residual, w.dim);
    out.keys(at.head, held.keys_packed + at.row, at.channel) =
        element_cast<Eout>(cache.key_residual(at.head, at.row, at.channel));
  } else {
    const row_item at = row_item_at(u - key_items, held.values_residual, w.dim);
    const index_t t = held.values_packed + at.row;
    out.values(at.head, t, at.channel) = element_cast<Eout>(cache.value_residual(at.head, t % w.residual, at.channel));
  }
}

}  // namespace tokred::detail
