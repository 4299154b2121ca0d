// tokred/cpu/kv_compact.hpp — the CPU backend of kv_compact.
//
// Share ith of nth owns the heads [H·ith/nth, H·(ith+1)/nth) of keys and values. Heads never
// share a row, so shares can compact in place side by side; a split of one head's rows could not
// (a share's source row may be another share's destination row). Rows move in ascending j with
// the SIMD row copy. No workspace.
#pragma once

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/kv_compact.hpp"

namespace tokred {

template <class Arch>
struct backend<kv_compact, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const kv_compact&, const problem&) { return 0; }

  template <class E>
  static status apply(const cpu<Arch>& exec, const kv_compact&, const kv_compact_inputs<E>& in,
                      const kv_compact_outputs<E>& out, workspace) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_kv_compact(in, out); s != status::ok) return s;
    const index_t heads = in.keys.extent(0);
    const index_t h0 = detail::share_begin(heads, exec.ith, exec.nth);
    const index_t h1 = detail::share_begin(heads, exec.ith + 1, exec.nth);
    compact(in.keep, in.keys, out.keys, h0, h1);
    if (detail::requested(in.values)) compact(in.keep, in.values, out.values, h0, h1);
    return status::ok;
  }

 private:
  /// Rows move in ascending j, all the share's heads of one row before the next row: in place,
  /// row keep[j] ≥ j of every head is read before anything at or after row j is written. Where the
  /// heads of a row lie end to end (token-major caches, llama.cpp's and vLLM's layout) the share's
  /// heads of a row are one copy.
  template <class E>
  static void compact(const view<const std::int64_t, 1>& keep, const view<const E, 3>& from, const view<E, 3>& to,
                      index_t h0, index_t h1) noexcept {
    if (h0 >= h1) return;  // a share without heads
    const index_t kept = keep.extent(0), width = from.extent(2);
    const bool in_place = to.data_handle() == from.data_handle();
    const auto heads_end_to_end = [width](const auto& v) { return v.stride(2) == 1 && v.stride(0) == width; };
    const bool whole_rows = heads_end_to_end(from) && heads_end_to_end(to);
    for (index_t j = 0; j < kept; ++j) {
      const index_t row = keep(j);
      if (row == j && in_place) continue;  // already there
      if (whole_rows) {
        detail::copy_row<Arch>(&from(h0, row, 0), 1, &to(h0, j, 0), 1, (h1 - h0) * width);
        continue;
      }
      for (index_t h = h0; h < h1; ++h)
        detail::copy_row<Arch>(&from(h, row, 0), from.stride(2), &to(h, j, 0), to.stride(2), width);
    }
  }
};

}  // namespace tokred
