// tokred/policy/kv_compact.hpp — the KV-cache compaction an engine performs at an in-LLM pruning
// boundary (FastV after layer K, each PyramidDrop stage): the surviving sequence rows of one
// layer's keys and values move to the front, in place where that is safe.
//
// WHAT the policy computes; the HOW lives in <tokred/cpu/kv_compact.hpp>. `kept_sequence_rows`
// builds the list of surviving rows from a selection's `source` (the visual tokens kept) and the
// text around the visual span.
#pragma once

#include <cstdint>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// Moves row `keep[j]` of every head of K (and V) to row j, for j < kept:
///
///   K'[h, j, :] = K[h, keep[j], :],   V'[h, j, :] = V[h, keep[j], :]
///
/// `keep` lists the surviving sequence rows in strictly ascending order (the order the sequence
/// keeps, so the cache stays aligned with the positions). Because keep[j] ≥ j, the compaction can
/// run in place: with the outputs equal to the inputs (same data and strides), each row is read
/// before any row at or after it is written. Rows past `kept` are left as they were; the engine
/// sets its cache length to `kept`.
///
/// Values are optional (a keys-only cache, or keys and values compacted by separate calls).
struct kv_compact {};

/// Inputs of kv_compact: one layer's cache, laid out (heads, rows, head_dim) with any strides, as
/// llama.cpp's and vLLM's per-layer caches are views of.
///
/// In place, the outputs are views of the same data with the same strides and `kept` rows:
/// `view<E, 3>(keys.data_handle(), {heads, kept, head_dim}, {keys.stride(0), keys.stride(1), keys.stride(2)})`.
template <class E, class Space = host_space>
struct kv_compact_inputs {
  using space = Space;
  view<const std::int64_t, 1, Space> keep;  // (kept,) surviving rows, strictly ascending, in [0, rows)
  view<const E, 3, Space> keys;             // (heads, rows, head_dim)
  view<const E, 3, Space> values;           // (heads, rows, value_dim); empty: keys only
};

/// Outputs of kv_compact: the compacted cache, (heads, kept, ·). Each is either separate from
/// every input or exactly its input (the same data handle and strides: in place).
template <class E, class Space = host_space>
struct kv_compact_outputs {
  using space = Space;
  view<E, 3, Space> keys;    // (heads, kept, head_dim)
  view<E, 3, Space> values;  // (heads, kept, value_dim); empty when the input values are
};

namespace detail {

/// One cache (keys or values) and its output: extents, then the output either separate from
/// every input or the input itself.
template <class E, class Space>
status check_cache(const view<const E, 3, Space>& in, const view<E, 3, Space>& out, index_t kept,
                   const kv_compact_inputs<E, Space>& all) noexcept {
  const index_t heads = in.extent(0), rows = in.extent(1), width = in.extent(2);
  if (status s = check_view_or_empty(in, {heads, rows, width}); s != status::ok) return s;
  if (heads == 0 || width == 0) return status::empty_input;
  if (status s = check_view_or_empty(out, {heads, kept, width}); s != status::ok) return s;
  if (same_origin(out, in)) return may_overlap(out, all.keep) ? status::aliasing : status::ok;  // in place
  if (may_overlap(out, all.keep) || may_overlap(out, all.keys) || may_overlap(out, all.values))
    return status::aliasing;
  return status::ok;
}

/// `index_out_of_range` unless the values of `v` rise strictly and lie in [0, limit).
template <class Space>
status check_ascending_below(const view<const std::int64_t, 1, Space>& v, std::int64_t limit) noexcept {
  const index_t n = v.extent(0);
  return ascending_nonnegative(v) && (n == 0 || v(n - 1) < limit) ? status::ok : status::index_out_of_range;
}

/// Every check of kv_compact, in the documented order: the keep list (extent, data, order and
/// range), the keys and their output, the values and theirs, the outputs against each other.
template <class E, class Space>
status check_kv_compact(const kv_compact_inputs<E, Space>& in, const kv_compact_outputs<E, Space>& out) noexcept {
  const index_t kept = in.keep.extent(0), rows = in.keys.extent(1);
  if (kept < 0 || rows < 0) return status::shape_mismatch;
  if (kept > 0 && in.keep.data_handle() == nullptr) return status::null_pointer;
  if (status s = check_ascending_below(in.keep, rows); s != status::ok) return s;
  if (status s = check_cache(in.keys, out.keys, kept, in); s != status::ok) return s;
  if (!requested(in.values) && requested(out.values)) return status::shape_mismatch;
  if (requested(in.values)) {
    if (in.values.extent(0) != in.keys.extent(0) || in.values.extent(1) != rows) return status::shape_mismatch;
    if (status s = check_cache(in.values, out.values, kept, in); s != status::ok) return s;
    // A compaction in place moves rows that the other cache's pass (or another share) may still
    // read: it needs caches that share no element. Two compactions in place then write only their
    // own elements (a cache whose keys and values interleave in one buffer is fine); separate
    // outputs must not overlap.
    const bool keys_in_place = same_origin(out.keys, in.keys), values_in_place = same_origin(out.values, in.values);
    if ((keys_in_place || values_in_place) && share_elements(in.keys, in.values)) return status::aliasing;
    if (!(keys_in_place && values_in_place) && may_overlap(out.keys, out.values)) return status::aliasing;
  }
  return status::ok;
}

}  // namespace detail

/// The surviving sequence rows after a pruning boundary, strictly ascending, into `rows` (the
/// `keep` of kv_compact): the `span_start` rows before the visual span, the visual tokens kept
/// (`span_start + source[j]`, `source` ascending as every tokred selection writes it), and the
/// rows after the span, `span_start + span_length` … `sequence_length − 1`.
///
/// `rows` must hold exactly span_start + kept + (sequence_length − span_start − span_length)
/// values. Returns `shape_mismatch` for a span outside the sequence or `rows` of another length,
/// `null_pointer` for a view with no data, `index_out_of_range` for a source outside
/// [0, span_length) or not ascending, `aliasing` when `rows` overlaps `source`; then nothing is
/// written.
inline status kept_sequence_rows(const view<const std::int64_t, 1>& source, std::int64_t span_start,
                                 std::int64_t span_length, std::int64_t sequence_length,
                                 const view<std::int64_t, 1>& rows) noexcept {
  // The differences and sums below stay within index_t: no overflow.
  if (sequence_length < 0 || span_start < 0 || span_length < 0 || span_length > sequence_length ||
      span_start > sequence_length - span_length)
    return status::shape_mismatch;
  const index_t kept = source.extent(0), after = sequence_length - span_start - span_length;
  if (kept < 0 || rows.extent(0) - kept != span_start + after) return status::shape_mismatch;
  if (status s = detail::check_view_or_empty(rows, {rows.extent(0)}); s != status::ok) return s;
  if (status s = detail::check_view_or_empty(source, {kept}); s != status::ok) return s;
  if (status s = detail::check_ascending_below(source, span_length); s != status::ok) return s;
  if (may_overlap(rows, source)) return status::aliasing;
  index_t r = 0;
  for (std::int64_t i = 0; i < span_start; ++i) rows(r++) = i;
  for (index_t j = 0; j < kept; ++j) rows(r++) = span_start + source(j);
  for (std::int64_t i = span_start + span_length; i < sequence_length; ++i) rows(r++) = i;
  return status::ok;
}

}  // namespace tokred
