// tokred/policy/kivi.hpp — KIVI's streaming KV cache (jy-yuan/KIVI): keys quantized per channel
// over groups of tokens, values per token over groups of channels, the most recent tokens kept
// in full precision, and an append that quantizes exactly when KIVI does.
//
// WHAT the operations compute; the HOW lives in <tokred/cpu/kivi.hpp>. Compiles with the
// standard library alone.
//
// The cache is caller-owned views (`kivi_cache`), sized for a capacity C, and its whole state is
// the number of tokens T it holds, which the caller tracks (an engine knows its sequence
// length). After T tokens, whichever way they arrived (one prefill, single decode steps, or
// chunks):
//
//   keys    the first ⌊T/R⌋·R tokens packed (R = `residual`), the rest — fewer than R — in the
//           key residual, in order: KIVI's prefill keeps T mod R, and its decode flushes the
//           residual as one R-token block when it reaches R;
//   values  the first max(0, T − R) tokens packed, the last min(T, R) in the value residual, a
//           ring (token t at row t mod R): KIVI's prefill keeps R, and its decode quantizes the
//           oldest value when R + 1 are held.
//
// Appending a single token therefore quantizes keys only when a whole block of R has gathered:
// never a one-token group (the trap of reimplementations that quantize each decode step's key
// alone and so never really quantize keys).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kv_quant.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred {

/// A KIVI cache's configuration (KIVI's config fields `k_bits`, `v_bits`, `group_size`,
/// `residual_length`). Paper defaults: 2 bits, group 32, residual 128 (KIVI's examples use 32).
struct kivi {
  int key_bits = 2;             ///< 1 … 8 (KIVI ships 2 and 4)
  int value_bits = 2;           ///< 1 … 8
  index_t group = 32;           ///< a multiple of 32 in [32, 256] dividing head_dim
  index_t residual = 128;       ///< R: a positive multiple of the group
  bool round_each_op = false;   ///< compatibility: uniform_quantize::round_each_op (KIVI's fp16 runs)
};

/// The packed formats of a KIVI cache: asymmetric, keys along tokens, values along channels.
constexpr uniform_format kivi_key_format(const kivi& p) noexcept {
  return {p.key_bits, p.group, kv_group_axis::tokens, kv_scheme::asymmetric};
}
constexpr uniform_format kivi_value_format(const kivi& p) noexcept {
  return {p.value_bits, p.group, kv_group_axis::channels, kv_scheme::asymmetric};
}

/// Where the T tokens of a KIVI cache are (see the header comment).
struct kivi_counts {
  index_t keys_packed = 0;
  index_t keys_residual = 0;
  index_t values_packed = 0;
  index_t values_residual = 0;
};

constexpr kivi_counts kivi_counts_at(const kivi& p, index_t tokens) noexcept {
  kivi_counts c;
  if (p.residual <= 0 || tokens <= 0) return c;
  c.keys_packed = tokens / p.residual * p.residual;
  c.keys_residual = tokens - c.keys_packed;
  c.values_packed = tokens > p.residual ? tokens - p.residual : 0;
  c.values_residual = tokens - c.values_packed;
  return c;
}

/// The storage of a KIVI cache with capacity C (packed tokens; C a multiple of the group, the
/// cache then holds up to C + R − 1 tokens — the packed keys fill first). `E` is the element
/// type, const for a cache that is read.
template <class E, class Space = host_space>
struct kivi_cache {
  using space = Space;
  uniform_packed<E, Space> keys;    // kivi_key_format over (heads, C, head_dim)
  view<E, 3, Space> key_residual;   // (heads, R, head_dim): tokens [⌊T/R⌋·R, T) in order
  uniform_packed<E, Space> values;  // kivi_value_format over (heads, C, head_dim)
  view<E, 3, Space> value_residual; // (heads, R, head_dim): token t at row t mod R
};

/// The same cache, read-only (for kivi_read and kivi_key_scores).
template <class E, class Space>
constexpr kivi_cache<const E, Space> read_only(const kivi_cache<E, Space>& c) noexcept {
  return {read_only(c.keys), c.key_residual, read_only(c.values), c.value_residual};
}

/// The largest token count a cache of capacity C holds: C + R − 1 when C is a multiple of R
/// (the keys flush a whole block at T = C + R), else ⌊C/R⌋·R + R − 1 limited by the values' C + R.
constexpr index_t kivi_max_tokens(const kivi& p, index_t capacity) noexcept {
  if (p.residual <= 0 || capacity < 0) return 0;
  const index_t by_keys = capacity / p.residual * p.residual + p.residual - 1;
  const index_t by_values = capacity + p.residual;
  return by_keys < by_values ? by_keys : by_values;
}

/// Appends `n` tokens' keys and values to a cache holding `tokens_before`, quantizing what KIVI
/// quantizes at that point (see the header comment); a prefill is an append to an empty cache.
/// Writes only the packed groups and tokens that change and the residual rows of new tokens.
struct kivi_append {
  kivi cache;
};

/// Inputs of `kivi_append`.
template <class E, class Space = host_space>
struct kivi_append_inputs {
  using space = Space;
  view<const E, 3, Space> keys;    // (heads, n, head_dim): the new tokens
  view<const E, 3, Space> values;  // (heads, n, head_dim)
  index_t tokens_before = 0;       // T held before the append
};

/// Reads a cache holding `tokens` back as the keys and values attention sees (KIVI's
/// `cat(dequantized, residual)`): dequantized packed tokens, then the residual's, in order.
struct kivi_read {
  kivi cache;
};

/// Inputs of `kivi_read`.
template <class E, class Space = host_space>
struct kivi_read_inputs {
  using space = Space;
  kivi_cache<const E, Space> cache;
  index_t tokens = 0;  // T held
};

/// Outputs of `kivi_read`.
template <class E, class Space = host_space>
struct kivi_read_outputs {
  using space = Space;
  view<E, 3, Space> keys;    // (heads, T, head_dim)
  view<E, 3, Space> values;  // (heads, T, head_dim)
};

/// The keys of a cache holding `tokens` as `packed_key_scores` reads them: the packed part and
/// the residual part, each cut to what is held. `scores(h, j)` is then the logit of token j.
template <class E, class Space>
packed_score_inputs<E, Space> kivi_key_scores(const kivi& p, const kivi_cache<const E, Space>& cache,
                                              view<const E, 2, Space> queries, index_t tokens) noexcept {
  const kivi_counts c = kivi_counts_at(p, tokens);
  const uniform_format f = kivi_key_format(p);
  const index_t groups = c.keys_packed / (f.group > 0 ? f.group : 1);
  return {queries, detail::packed_prefix(cache.keys, f.bits, c.keys_packed, groups),
          token_range(cache.key_residual, 0, c.keys_residual)};
}

namespace detail {

constexpr bool valid_kivi(const kivi& p) noexcept {
  return valid_uniform_format(kivi_key_format(p)) && valid_uniform_format(kivi_value_format(p));
}

/// The checks of a KIVI configuration against a cache of `capacity` packed tokens: the problem,
/// the formats, the residual, capacity a multiple of the group, head_dim of the group.
constexpr status check_kivi(const kivi& p, const kv_problem& storage) noexcept {
  if (status s = check_cache_storage(storage, p.group, p.residual); s != status::ok) return s;
  return valid_kivi(p) && storage.head_dim % p.group == 0 ? status::ok : status::invalid_parameter;
}

}  // namespace detail

/// `ok`, or why the configuration cannot serve a cache of `storage` = (heads, capacity C,
/// head_dim): `shape_mismatch` (a negative extent), `empty_input` (no heads or no channels),
/// `invalid_parameter` (bits outside 1 … 8, a group that is not a multiple of 32 in [32, 256],
/// a residual that is not a positive multiple of the group, C or head_dim not a multiple of the
/// group). C = 0 is allowed: a cache that only ever holds its residual.
constexpr status can_implement(const kivi_append& p, const kv_problem& storage) noexcept {
  return detail::check_kivi(p.cache, storage);
}
constexpr status can_implement(const kivi_read& p, const kv_problem& storage) noexcept {
  return detail::check_kivi(p.cache, storage);
}

namespace detail {

/// The storage problem of a cache: (heads, capacity, head_dim) from its packed values.
template <class E, class Space>
kv_problem kivi_storage(const kivi_cache<E, Space>& c) noexcept {
  return {c.values.codes.extent(0), c.values.codes.extent(1), c.key_residual.extent(2)};
}

/// The cache views' checks, in order: keys packed, key residual, values packed, value residual.
template <class E, class Space>
status check_kivi_cache(const kivi& p, const kivi_cache<E, Space>& c, const kv_problem& s) noexcept {
  if (status st = check_packed(c.keys, kivi_key_format(p), s); st != status::ok) return st;
  if (status st = check_view(c.key_residual, {s.heads, p.residual, s.head_dim}); st != status::ok) return st;
  if (status st = check_packed(c.values, kivi_value_format(p), s); st != status::ok) return st;
  return check_view(c.value_residual, {s.heads, p.residual, s.head_dim});
}

template <class E, class Space>
bool kivi_cache_overlaps(const kivi_cache<E, Space>& c) noexcept {
  return any_overlap(c.keys.codes, c.keys.scale, c.keys.zero, c.key_residual, c.values.codes, c.values.scale,
                     c.values.zero, c.value_residual);
}

template <class V, class E, class Space>
bool overlaps_cache(const V& v, const kivi_cache<E, Space>& c) noexcept {
  return overlaps_any(v, c.keys.codes, c.keys.scale, c.keys.zero, c.key_residual, c.values.codes, c.values.scale,
                      c.values.zero, c.value_residual);
}

/// kivi_append's checks, in order, on any backend (see can_implement and docs/policies/kivi.md).
template <class Exec, class E, class Space>
status check_append(const Exec& exec, const kivi_append& p, const kivi_append_inputs<E, Space>& in,
                    const kivi_cache<E, Space>& cache) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem storage = kivi_storage(cache);
  if (status s = can_implement(p, storage); s != status::ok) return s;
  const kv_problem added = kv_problem_of(in.keys);
  if (status s = check_view(in.keys, {storage.heads, added.tokens, storage.head_dim}); s != status::ok) return s;
  if (status s = check_view(in.values, {storage.heads, added.tokens, storage.head_dim}); s != status::ok) return s;
  if (status s = check_kivi_cache(p.cache, cache, storage); s != status::ok) return s;
  if (in.tokens_before < 0 || in.tokens_before > kivi_max_tokens(p.cache, storage.tokens) - added.tokens)  // no sum to overflow
    return status::shape_mismatch;
  if (kivi_cache_overlaps(cache) || overlaps_cache(in.keys, cache) || overlaps_cache(in.values, cache))
    return status::aliasing;
  return status::ok;
}

/// kivi_read's checks, in order, on any backend.
template <class Exec, class E, class Eout, class Space>
status check_read(const Exec& exec, const kivi_read& p, const kivi_read_inputs<E, Space>& in,
                  const kivi_read_outputs<Eout, Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem storage = kivi_storage(in.cache);
  if (status s = can_implement(p, storage); s != status::ok) return s;
  if (status s = check_kivi_cache(p.cache, in.cache, storage); s != status::ok) return s;
  if (in.tokens < 0 || in.tokens > kivi_max_tokens(p.cache, storage.tokens)) return status::shape_mismatch;
  if (in.tokens == 0) return status::empty_input;
  if (status s = check_view(out.keys, {storage.heads, in.tokens, storage.head_dim}); s != status::ok) return s;
  if (status s = check_view(out.values, {storage.heads, in.tokens, storage.head_dim}); s != status::ok) return s;
  if (may_overlap(out.keys, out.values) || overlaps_cache(out.keys, in.cache) || overlaps_cache(out.values, in.cache))
    return status::aliasing;
  return status::ok;
}

}  // namespace detail

}  // namespace tokred
