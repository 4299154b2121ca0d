// tokred/cpu/kivi.hpp — CPU backends of kivi_append and kivi_read, built on the group kernels
// of <tokred/cpu/uniform_quant.hpp>.
//
// Every share (ith of nth) owns the heads [H·ith/nth, H·(ith+1)/nth): a head's groups, residual
// rows and ring are its own, so shares never touch the same bytes. Within a head, an append
// first quantizes (reading old residual rows and new tokens), then writes the new tokens'
// residual rows, so a ring row is read before it is reused. No workspace, no allocation.
#pragma once

#include <algorithm>
#include <cstddef>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/uniform_quant.hpp"
#include "tokred/policy/kivi.hpp"

namespace tokred {

/// KIVI append on CPU: no workspace; any strides on the new tokens and the residuals.
template <class Arch>
struct backend<kivi_append, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const kivi_append&, const kv_problem&) noexcept { return 0; }

  template <class E>
  static status apply(const cpu<Arch>& exec, const kivi_append& p, const kivi_append_inputs<E>& in,
                      const kivi_cache<E>& cache, workspace) noexcept {
    if (status s = detail::check_append(exec, p, in, cache); s != status::ok) return s;
    const kivi& k = p.cache;
    const uniform_format kf = kivi_key_format(k), vf = kivi_value_format(k);
    const detail::step_rounding<Arch, E> rnd{k.round_each_op};
    const index_t heads = in.keys.extent(0), n = in.keys.extent(1), dim = in.keys.extent(2);
    const index_t t0 = in.tokens_before, t1 = t0 + n;
    const kivi_counts before = kivi_counts_at(k, t0), after = kivi_counts_at(k, t1);
    constexpr kv_scheme asym = kv_scheme::asymmetric;
    const index_t h1 = detail::share_begin(heads, exec.ith + 1, exec.nth);
    for (index_t h = detail::share_begin(heads, exec.ith, exec.nth); h < h1; ++h) {
      // Keys: whole groups of the old residual and the new tokens, then the residual's new rows.
      for (index_t g = before.keys_packed / k.group; g < after.keys_packed / k.group; ++g) {
        detail::token_rows<E> rows;
        for (index_t i = 0; i < k.group; ++i) {
          const index_t t = g * k.group + i;
          const bool old = t < t0;
          rows.row[i] = old ? &cache.key_residual(h, t - before.keys_packed, 0) : &in.keys(h, t - t0, 0);
          rows.stride[i] = old ? cache.key_residual.stride(2) : in.keys.stride(2);
        }
        detail::quantize_token_unit<asym, Arch>(kf, rnd, rows, dim, detail::token_group_at<E>(cache.keys, kf, h, g));
      }
      for (index_t t = std::max(t0, after.keys_packed); t < t1; ++t)
        detail::copy_row<Arch>(&in.keys(h, t - t0, 0), in.keys.stride(2),
                              &cache.key_residual(h, t - after.keys_packed, 0), cache.key_residual.stride(2), dim);
      // Values: the tokens leaving the window — old ones from the ring one at a time, new ones
      // as one run — then the new tokens into the ring.
      const index_t old_end = std::min(t0, after.values_packed);
      for (index_t t = before.values_packed; t < old_end; ++t)
        detail::quantize_token_run<asym, Arch>(vf, rnd, &cache.value_residual(h, t % k.residual, 0), 0,
                                               cache.value_residual.stride(2), 1, dim,
                                               detail::token_run_at<E>(cache.values, vf, h, t));
      const index_t new_begin = std::max(t0, before.values_packed);
      if (new_begin < after.values_packed)
        detail::quantize_token_run<asym, Arch>(vf, rnd, &in.values(h, new_begin - t0, 0), in.values.stride(1),
                                               in.values.stride(2), after.values_packed - new_begin, dim,
                                               detail::token_run_at<E>(cache.values, vf, h, new_begin));
      for (index_t t = std::max(t0, after.values_packed); t < t1; ++t)
        detail::copy_row<Arch>(&in.values(h, t - t0, 0), in.values.stride(2),
                              &cache.value_residual(h, t % k.residual, 0), cache.value_residual.stride(2), dim);
    }
    return status::ok;
  }
};

/// KIVI read on CPU: no workspace; any output element type and strides.
template <class Arch>
struct backend<kivi_read, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const kivi_read&, const kv_problem&) noexcept { return 0; }

  template <class E, class Eout>
  static status apply(const cpu<Arch>& exec, const kivi_read& p, const kivi_read_inputs<E>& in,
                      const kivi_read_outputs<Eout>& out, workspace) noexcept {
    if (status s = detail::check_read(exec, p, in, out); s != status::ok) return s;
    const kivi& k = p.cache;
    const auto& cache = in.cache;
    const uniform_format kf = kivi_key_format(k), vf = kivi_value_format(k);
    const detail::step_rounding<Arch, E> rnd{k.round_each_op};
    const index_t heads = out.keys.extent(0), dim = out.keys.extent(2);
    const kivi_counts held = kivi_counts_at(k, in.tokens);
    constexpr kv_scheme asym = kv_scheme::asymmetric;
    const index_t h1 = detail::share_begin(heads, exec.ith + 1, exec.nth);
    for (index_t h = detail::share_begin(heads, exec.ith, exec.nth); h < h1; ++h) {
      for (index_t g = 0; g < held.keys_packed / k.group; ++g) {
        Eout* rows[detail::uniform_max_group];
        for (index_t t = 0; t < k.group; ++t) rows[t] = &out.keys(h, g * k.group + t, 0);
        detail::dequantize_token_unit<asym, Arch>(kf, false, rnd, detail::token_group_at<const E>(cache.keys, kf, h, g),
                                               dim, rows, out.keys.stride(2));
      }
      for (index_t t = held.keys_packed; t < in.tokens; ++t)
        detail::copy_row<Arch>(&cache.key_residual(h, t - held.keys_packed, 0), cache.key_residual.stride(2),
                              &out.keys(h, t, 0), out.keys.stride(2), dim);
      if (held.values_packed > 0)
        detail::dequantize_token_run<asym, Arch>(vf, false, rnd, detail::token_run_at<const E>(cache.values, vf, h, 0),
                                                 held.values_packed, dim, &out.values(h, 0, 0), out.values.stride(1),
                                                 out.values.stride(2));
      for (index_t t = held.values_packed; t < in.tokens; ++t)
        detail::copy_row<Arch>(&cache.value_residual(h, t % k.residual, 0), cache.value_residual.stride(2),
                              &out.values(h, t, 0), out.values.stride(2), dim);
    }
    return status::ok;
  }
};

}  // namespace tokred
