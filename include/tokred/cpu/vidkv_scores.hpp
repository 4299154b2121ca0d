// tokred/cpu/vidkv_scores.hpp — the CPU backend of vidkv_key_scores: q·k for every key of VidKV
// packed keys and a full-precision residual, without dequantizing a key.
//
// Per query head: the query widened to fp32; its difficult channels gathered (in channel-list
// order) and read against the difficult part with packed_key_scores' kernel; the DFT of its
// easy channels, Q_m = Σ_j q_j·e^(−2πi·jm/n) for m < n, in double over the same twiddles as the
// keys' DFT (r = jm mod n, j in order), divided by n and rounded to fp32 as 2n interleaved reals
// (Im Q of bins 0 and n/2 set to 0), read against the spectral part the same way and added; then
// the residual keys' canonical dot products. O(n²) per query head for Q, then the packed reads,
// each group decoded once for the query heads that share its kv head.
//
// Shares split the query heads: [Q·ith/nth, Q·(ith+1)/nth). Workspace per share: the widened
// query, the two gathered queries of up to 8 heads, the products with a group's scales, one
// decoded group (each row rounded up to whole batches), and the 2n twiddles.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/packed_scores.hpp"
#include "tokred/cpu/vidkv.hpp"
#include "tokred/policy/vidkv.hpp"

namespace tokred {
namespace detail {

/// A share's scratch for vidkv_key_scores, for one run of up to packed_score_heads query heads.
struct vidkv_score_scratch {
  float* query = nullptr;                           // (padded D,) one head's query in fp32
  float* easy = nullptr;                            // (n,) its easy values
  float* difficult[packed_score_heads] = {};        // (padded k,) each head's query at the difficult channels
  float* spectral[packed_score_heads] = {};         // (padded 2n,) each head's Re Q_0/n, Im Q_0/n, …
  float* scaled = nullptr;                          // (padded max(k, 2n),)
  float* tile = nullptr;                            // (G, padded max(k, 2n)) a decoded group
  double* cos = nullptr;                            // (n,)
  double* sin = nullptr;                            // (n,)

  template <class Arch>
  static vidkv_score_scratch carve(arena& a, const cpu<Arch>& exec, const vidkv_key_layout& l, index_t head_dim,
                                   index_t group) {
    return carve_shares(a, exec.ith, exec.nth, [&](arena& b) {
      vidkv_score_scratch s;
      const index_t widest = padded_lanes<Arch>(std::max(l.difficult, 2 * l.easy));
      s.query = b.take<float>(padded_lanes<Arch>(head_dim));
      s.easy = b.take<float>(l.easy);
      for (float*& d : s.difficult) d = b.take<float>(padded_lanes<Arch>(l.difficult));
      for (float*& q : s.spectral) q = b.take<float>(padded_lanes<Arch>(2 * l.easy));
      s.scaled = b.take<float>(widest);
      s.tile = b.take<float>(group, widest);
      s.cos = b.take<double>(l.easy);
      s.sin = b.take<double>(l.easy);
      return s;
    });
  }
};

/// Every check, in the documented order: those of check_vidkv_score_call (the channel list
/// validated on the host), then the workspace.
template <class Arch, class E>
status check_vidkv_scores(const cpu<Arch>& exec, const vidkv_key_scores& p, const vidkv_score_inputs<E>& in,
                          const packed_score_outputs<>& out, const workspace& ws) noexcept {
  const kv_problem prob = vidkv_score_problem(p, in);
  const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
  const auto channels_ok = [&] { return valid_channel_order(in.keys.channels, l.difficult); };
  if (status s = check_vidkv_score_call(exec, p, in, out, channels_ok); s != status::ok) return s;
  arena counter;
  vidkv_score_scratch::carve(counter, exec, l, prob.head_dim, p.keys.group);
  return check_workspace(ws, counter.used());
}

/// The spectral query of the easy values `q` (n floats): Q_m/n as fp32 reals Re, Im for m < n.
inline void spectral_query(const float* q, const dft_twiddles& tw, float* out) noexcept {
  const index_t n = tw.n;
  for (index_t m = 0; m < n; ++m) {
    double re = 0.0, im = 0.0;
    for (index_t j = 0; j < n; ++j) {
      const index_t r = j * m % n;
      re += static_cast<double>(q[j]) * tw.cos[r];
      im -= static_cast<double>(q[j]) * tw.sin[r];
    }
    const bool real_bin = m == 0 || 2 * m == n;  // the inverse DFT reads no imaginary part there
    out[2 * m] = static_cast<float>(re / static_cast<double>(n));
    out[2 * m + 1] = real_bin ? 0.0f : static_cast<float>(im / static_cast<double>(n));
  }
}

}  // namespace detail

/// Scores from VidKV packed keys on CPU: fp32/fp16/bf16 caches and queries of the same type, any
/// strides on queries, parameters, the channel list and the residual; codes with inner stride 1.
template <class Arch>
struct backend<vidkv_key_scores, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const vidkv_key_scores& p, const kv_problem& prob) noexcept {
    if (can_implement(p, prob) != status::ok) return 0;
    detail::arena counter;
    const bool valid = detail::valid_vidkv_keys(p.keys, prob.head_dim);
    detail::vidkv_score_scratch::carve(counter, exec, vidkv_key_layout_of(p.keys, valid ? prob.head_dim : 0),
                                       prob.head_dim, valid ? p.keys.group : 0);
    return counter.used();
  }

  /// Checks, in order: exec; `shape_mismatch` for a negative extent; `empty_input` (no kv heads,
  /// query heads or channels, or no key at all); can_implement; the queries `(Q, D)` and Q a
  /// multiple of the kv heads; with packed keys, their views and the channel list
  /// (`invalid_parameter` when corrupt); the residual `(H, R, D)`; the scores `(Q, P + R)`;
  /// `aliasing` when the scores overlap an input; the workspace.
  template <class E>
  static status apply(const cpu<Arch>& exec, const vidkv_key_scores& p, const vidkv_score_inputs<E>& in,
                      const packed_score_outputs<>& out, workspace ws) noexcept {
    if (status s = detail::check_vidkv_scores(exec, p, in, out, ws); s != status::ok) return s;
    const kv_problem prob = detail::vidkv_score_problem(p, in);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    const index_t q_heads = in.queries.extent(0), per_kv = q_heads / prob.heads, k = l.difficult, n = l.easy;
    detail::arena carver(ws);
    const auto s = detail::vidkv_score_scratch::carve(carver, exec, l, prob.head_dim, p.keys.group);
    const detail::dft_twiddles tw = n > 0 ? detail::fill_twiddles(s.cos, s.sin, n) : detail::dft_twiddles{};
    const index_t h0 = detail::share_begin(q_heads, exec.ith, exec.nth);
    const index_t h1 = detail::share_begin(q_heads, exec.ith + 1, exec.nth);
    detail::for_each_head_run(h0, h1, per_kv, [&](index_t kv, index_t first, index_t count) {
      if (prob.tokens > 0) {
        // Each head's two queries, in channel-list order (the padding stays 0).
        for (index_t i = 0; i < count; ++i) {
          detail::widen_row<Arch>(in.queries, first + i, s.query);
          std::fill(s.difficult[i], s.difficult[i] + detail::padded_lanes<Arch>(k), 0.0f);
          for (index_t j = 0; j < k; ++j) s.difficult[i][j] = s.query[in.keys.channels(j)];
          for (index_t j = 0; j < n; ++j) s.easy[j] = s.query[in.keys.channels(k + j)];
          std::fill(s.spectral[i], s.spectral[i] + detail::padded_lanes<Arch>(2 * n), 0.0f);
          if (n > 0) detail::spectral_query(s.easy, tw, s.spectral[i]);
        }
        if (k > 0)
          detail::with_scheme(l.difficult_format.scheme, [&](auto scheme) {
            detail::packed_logits<decltype(scheme)::value, Arch>(l.difficult_format, p.vidkv_dequant, s.difficult, count,
                                                                 k, in.keys.difficult, kv, prob.tokens, s.scaled, s.tile,
                                                                 out.scores, first, false);
          });
        if (n > 0)
          detail::packed_logits<kv_scheme::sign, Arch>(l.spectral_format, p.vidkv_dequant, s.spectral, count, 2 * n,
                                                       in.keys.spectral, kv, prob.tokens, s.scaled, s.tile, out.scores,
                                                       first, k > 0);
      }
      for (index_t i = 0; i < count; ++i)
        detail::residual_logits<Arch>(in.queries, first + i, in.residual, kv, out.scores, prob.tokens);
    });
    return status::ok;
  }
};

}  // namespace tokred
