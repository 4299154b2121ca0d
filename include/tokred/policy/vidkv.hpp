// tokred/policy/vidkv.hpp — VidKV (KD-TAO/VidKV): 1.x-bit KV caches for video LLMs. Keys in
// mixed precision — the channels with the largest range at 2 bits per channel, the rest through
// a DFT over channels at 1 bit per spectral component — values per channel at 1, 1.58 or 2–8
// bits, and VidKV's streaming cache, which re-quantizes everything it holds at each flush.
//
// WHAT the operations compute; the HOW lives in <tokred/cpu/vidkv.hpp>. Compiles with the
// standard library alone.
//
// Mixed-precision keys of a chunk `(heads, tokens, head_dim D)`, tokens a multiple of the group G:
//
//   range       r_c = max − min of channel c over every head and token of the chunk (fp32)
//   difficult   the k channels of largest range (ties: lower channel first; NaN ranges last),
//               k = ⌊D·(bits − 1)⌋ in double, or 32 when that is 0 and bits > 1 (VidKV's rule)
//   easy        the other n = D − k channels
//   difficult   2-bit asymmetric per channel along tokens: uniform_format {2, G, tokens}
//   spectral    per token, the DFT X_m = Σ_j x_j·e^(−2πi·jm/n) of its n easy values (ascending
//               channel order), as 2n reals Re X_0, Im X_0, Re X_1, … (torch's view_as_real);
//               1-bit `sign` per component along tokens: uniform_format {1, G, tokens, sign}
//   dequantized difficult: q·s + z; easy: Re of the inverse DFT (1/n)·Σ_m X̂_m·e^(+2πi·jm/n) of
//               the dequantized spectrum, each back in its channel
//
// DFT arithmetic (the same bits on every ISA and share count): twiddles cos and sin of
// 2π·r/n (r = jm mod n) in double, symmetric to the bit (cos[n − r] = cos[r], sin[n − r] =
// −sin[r], sin[n/2] = 0; see fill_twiddle_rows); the sums run over the pairs (j, n − j),
// 0 < j < n − j, since cos is even and sin odd about n/2 —
// Re X_m = x_0 + Σ (x_j + x_(n−j))·cos + x_(n/2)·cos(πm),
// Im X_m = −Σ (x_j − x_(n−j))·sin — in index order, each product rounded on its own (never
// fused). Bins 0 … ⌊n/2⌋ are computed and bin n − m is the conjugate of bin m, as torch's
// real-input FFT fills it; the imaginary parts of bin 0 and (n even) bin n/2 are +0, exactly as
// torch returns them — a DFT that leaves ±1e−16 there would flip those sign codes. The inverse
// pairs the bins the same way: y_j = ((R_0 + Σ (R_m + R_(n−m))·cos + R_(n/2)·cos(πj)) −
// Σ (I_m − I_(n−m))·sin) / n. The spectrum is rounded to fp32, then to the element type; the
// inverse divides by n in double, then rounds to fp32 and to the output type.
//
// The 1-bit spectral codes take 2n bits per token for n channels: 1.5-bit keys at D = 128 store
// 64·2 + 128·1 = 256 code bits per token, 2 per channel, plus the groups' scales.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/policy/kv_quant.hpp"
#include "tokred/policy/uniform_quant.hpp"

namespace tokred {

/// How VidKV quantizes keys (its `nbits[0]`, `q_group_size`).
///
/// `mixed = true` (VidKV's list form `nbits = [bits, …]`): `bits` in [1, 2]; ⌊D·(bits − 1)⌋
/// channels at 2 bits, the rest through the DFT at 1 bit (bits = 1: every channel through the
/// DFT; bits = 2: every channel at 2 bits). `mixed = false` (VidKV's scalar `nbits`): `bits` 1
/// (every channel through the DFT, as VidKV's `nbits = 1`), 1.58 (ternary per channel), 2, 4 or 8
/// (asymmetric per channel).
struct vidkv_keys {
  double bits = 1.5;           ///< see above; VidKV's paper setting 1.5
  bool mixed = true;           ///< VidKV's list form of `nbits`
  index_t group = 32;          ///< G, tokens per group: a multiple of 32 in [32, 256]
  bool round_each_op = false;  ///< compatibility: uniform_quantize::round_each_op (and the range rounded to E)
};

/// VidKV's rule for the difficult channel count: ⌊D·(bits − 1)⌋ in double, 32 when that is 0 but
/// bits > 1. May exceed D (then no layout exists).
constexpr index_t vidkv_difficult_channels(double bits, index_t head_dim) noexcept {
  const double ratio = bits - 1.0;
  const double k = static_cast<double>(head_dim) * ratio;
  if (!(k >= 0.0) || k > static_cast<double>(head_dim)) return head_dim + 1;  // outside the domain
  const auto whole = static_cast<index_t>(k);
  return ratio > 0.0 && whole == 0 ? 32 : whole;
}

/// Where a key chunk's channels go: `difficult` channels quantized directly in
/// `difficult_format`, `easy` channels through the DFT into 2·easy spectral components in
/// `spectral_format`. For uniform keys (`mixed = false`, bits ≠ 1) every channel is difficult.
struct vidkv_key_layout {
  index_t difficult = 0;  ///< k
  index_t easy = 0;       ///< n = D − k
  uniform_format difficult_format;
  uniform_format spectral_format;
};

namespace detail {

/// VidKV's 1.58 bits: ternary codes in 2 bits.
constexpr bool is_ternary_bits(double bits) noexcept { return bits == 1.58; }

/// The per-channel format of VidKV's scalar bit widths: 1 (sign), 1.58 (ternary), 2, 4, 8
/// (asymmetric); `bits = 0` in the result marks any other width.
constexpr uniform_format vidkv_channel_format(double bits, index_t group) noexcept {
  if (is_ternary_bits(bits)) return {2, group, kv_group_axis::tokens, kv_scheme::ternary};
  if (bits == 1.0) return {1, group, kv_group_axis::tokens, kv_scheme::sign};
  if (bits == 2.0 || bits == 4.0 || bits == 8.0)
    return {static_cast<int>(bits), group, kv_group_axis::tokens, kv_scheme::asymmetric};
  return {0, group, kv_group_axis::tokens, kv_scheme::asymmetric};
}

/// Keys go through the mixed (difficult + spectral) path: the list form, or VidKV's `nbits = 1`.
constexpr bool vidkv_keys_mixed(const vidkv_keys& k) noexcept { return k.mixed || k.bits == 1.0; }

}  // namespace detail

constexpr vidkv_key_layout vidkv_key_layout_of(const vidkv_keys& k, index_t head_dim) noexcept {
  vidkv_key_layout l;
  l.spectral_format = {1, k.group, kv_group_axis::tokens, kv_scheme::sign};
  if (!detail::vidkv_keys_mixed(k)) {
    l.difficult = head_dim;
    l.difficult_format = detail::vidkv_channel_format(k.bits, k.group);
    return l;
  }
  l.difficult = vidkv_difficult_channels(k.bits, head_dim);
  l.easy = head_dim - l.difficult;
  l.difficult_format = {2, k.group, kv_group_axis::tokens, kv_scheme::asymmetric};
  return l;
}

/// Packed keys of a `(heads, tokens, head_dim)` chunk. `E` is the chunk's element type, const
/// for packed keys that are read. The spectral part has no zero point (its `zero` may be empty).
template <class E, class Space = host_space>
struct vidkv_packed_keys {
  using space = Space;
  using index = std::conditional_t<std::is_const_v<E>, const std::int64_t, std::int64_t>;
  view<index, 1, Space> channels;      // (head_dim,): the k difficult channels ascending, then the n easy ones ascending
  uniform_packed<E, Space> difficult;  // difficult_format over (heads, tokens, k)
  uniform_packed<E, Space> spectral;   // spectral_format over (heads, tokens, 2n)
};

template <class E, class Space>
constexpr vidkv_packed_keys<const E, Space> read_only(const vidkv_packed_keys<E, Space>& p) noexcept {
  return {p.channels, read_only(p.difficult), read_only(p.spectral)};
}

/// The extents of packed keys for a chunk (see uniform_code_extents / uniform_param_extents).
struct vidkv_key_extents {
  kv_extents difficult_codes, difficult_params, spectral_codes, spectral_params;
};

constexpr vidkv_key_extents vidkv_packed_key_extents(const vidkv_keys& k, const kv_problem& p) noexcept {
  const vidkv_key_layout l = vidkv_key_layout_of(k, p.head_dim);
  const kv_problem d{p.heads, p.tokens, l.difficult}, s{p.heads, p.tokens, 2 * l.easy};
  return {uniform_code_extents(l.difficult_format, d), uniform_param_extents(l.difficult_format, d),
          uniform_code_extents(l.spectral_format, s), uniform_param_extents(l.spectral_format, s)};
}

/// Quantizes a chunk of keys (kv_inputs<E>, `(heads, tokens, head_dim)`) into
/// vidkv_packed_keys<E>: VidKV's `dynamic_quantize_key` (mixed) or its per-channel `_quantize`.
struct vidkv_key_quantize {
  vidkv_keys keys;
};

/// Dequantizes vidkv_packed_keys<const E> into kv_outputs<Eout>: VidKV's
/// `dynamic_dequantize_key`. The spectral part dequantizes to ±s (the consistent 1-bit code);
/// `vidkv_dequant` gives VidKV's {0, s} before the inverse DFT instead (and VidKV's q − 1 for
/// ternary keys).
struct vidkv_key_dequantize {
  vidkv_keys keys;
  bool vidkv_dequant = false;  ///< compatibility: VidKV's `sign` ({0, s}) and `ternary` (q − 1)
};

/// Attention logits `q·k` of each query row with every key of VidKV packed keys, followed by the
/// full-precision keys of a residual window, without dequantizing a key: `scores(h, j)` for
/// packed token j < P, then residual token j − P. Unscaled. Query head h reads kv head
/// `h / (q_heads / kv_heads)`.
///
/// The difficult channels are a uniform packed cache read with the query gathered to them
/// (packed_key_scores' folding). The spectral part needs no inverse DFT: with Q the DFT of the
/// query's easy values (in channel-list order), `q_easy · Re(IDFT(X̂))` = `(1/n)·Σ_m (Re X̂_m·Re Q_m
/// + Im X̂_m·Im Q_m)`, a dot product of the interleaved spectra, so the spectral components are
/// read the same way with `Q/n` as the query (computed once per query head, in double, rounded
/// to fp32; `Im Q` of bins 0 and n/2 is 0, as the inverse DFT ignores those imaginary parts).
/// Equal to the dot product of the query with vidkv_key_dequantize's fp32 keys within fp32
/// rounding (not bit-identical: neither the keys nor their spectra are rounded). With
/// `vidkv_keys::round_each_op`, vidkv_key_dequantize rounds every step to the element type and
/// the scores do not: they then differ by that rounding of the keys (up to ~5e-3 of Σ|q·k̂| for
/// fp16 and bf16 keys).
struct vidkv_key_scores {
  vidkv_keys keys;
  bool vidkv_dequant = false;  ///< compatibility: as vidkv_key_dequantize::vidkv_dequant
};

/// Inputs of `vidkv_key_scores`.
template <class E, class Space = host_space>
struct vidkv_score_inputs {
  using space = Space;
  view<const E, 2, Space> queries;         // (q_heads, head_dim)
  vidkv_packed_keys<const E, Space> keys;  // P packed tokens (P may be 0 when the residual holds keys)
  view<const E, 3, Space> residual;        // (kv_heads, R, head_dim); R may be 0 (an empty view)
};

// --- the streaming cache ----------------------------------------------------------------------

/// A VidKV cache's configuration (`QuantizedCacheVLM`: `nbits`, `q_group_size`,
/// `residual_length`, axis −1 for keys and values). Paper setting: keys 1.5 bits (mixed),
/// values 1.58 bits, G = 32, R = 128.
struct vidkv {
  double key_bits = 1.5;       ///< vidkv_keys::bits
  double value_bits = 1.58;    ///< 1 (sign), 1.58 (ternary), 2, 4, 8 (asymmetric), per channel
  bool mixed_keys = true;      ///< vidkv_keys::mixed (VidKV's list form `nbits = [key_bits, value_bits]`)
  index_t group = 32;          ///< G for keys and values: a multiple of 32 in [32, 256]
  index_t residual = 128;      ///< R: the decode flush threshold, a positive multiple of G
  bool round_each_op = false;  ///< compatibility: PyTorch's per-operation fp16/bf16 rounding
  bool vidkv_dequant = false;  ///< compatibility: VidKV's {0, s} and q − 1 dequantization
  int salient_bits = 2;        ///< salient tokens' values (vidkv_cache::salient): 2 (VidKV's), 4 or 8 bits, asymmetric
};

constexpr vidkv_keys vidkv_keys_of(const vidkv& p) noexcept {
  return {p.key_bits, p.mixed_keys, p.group, p.round_each_op};
}

/// The values' packed format (per channel along tokens).
constexpr uniform_format vidkv_value_format(const vidkv& p) noexcept {
  return detail::vidkv_channel_format(p.value_bits, p.group);
}

/// The packed format of the salient tokens' values (per channel along those tokens): VidKV's
/// `QuantizedCacheVLMSTP` quantizes them at 2 bits asymmetric.
constexpr uniform_format vidkv_salient_format(const vidkv& p) noexcept {
  return {p.salient_bits, p.group, kv_group_axis::tokens, kv_scheme::asymmetric};
}

/// Where the tokens of a cache are: the first `packed` tokens quantized (a multiple of G), the
/// next `residual` in full precision. The caller keeps it and advances it with vidkv_after.
struct vidkv_state {
  index_t packed = 0;
  index_t residual = 0;
};

/// Whether appending tokens to a cache in state `s` that is not empty re-quantizes it (VidKV's
/// decode flush): residual + 1 ≥ R. (VidKV also requires `residual.dim() == 4`, which its empty
/// residual, a 1-D `torch.zeros(0)`, fails; with R ≥ G ≥ 32 an empty residual never reaches the
/// threshold anyway.)
constexpr bool vidkv_flushes(const vidkv& p, vidkv_state s) noexcept { return s.residual + 1 >= p.residual; }

/// The state after appending `n` tokens (VidKV's `update`): an empty cache (a prefill) packs
/// the first n − n mod G and keeps n mod G; a flush packs everything; otherwise the residual grows.
constexpr vidkv_state vidkv_after(const vidkv& p, vidkv_state s, index_t n) noexcept {
  if (s.packed == 0 && s.residual == 0) return {p.group > 0 ? n - n % p.group : 0, p.group > 0 ? n % p.group : n};
  if (vidkv_flushes(p, s)) return {s.packed + s.residual + n, 0};
  return {s.packed, s.residual + n};
}

/// The storage of a VidKV cache with capacity C (packed tokens, a multiple of G). `E` is the
/// element type, const for a cache that is read.
///
/// Salient-token protection (VidKV's `QuantizedCacheVLMSTP`): `salient` lists cache positions,
/// ascending (vidkv_salient_tokens chooses them). Whenever the cache quantizes its first P
/// tokens, the S listed positions below P keep their values in `salient_values`
/// (vidkv_salient_format, per channel along those S tokens in order) and the other P − S in
/// `values` (along the others in order); S must be a multiple of G. Keys are not affected. An
/// empty list is a cache without protection (`salient_values` may then be empty views).
template <class E, class Space = host_space>
struct vidkv_cache {
  using space = Space;
  vidkv_packed_keys<E, Space> keys;         // vidkv_packed_key_extents(vidkv_keys_of(config), (heads, C, head_dim))
  view<E, 3, Space> key_residual;           // (heads, R, head_dim): tokens [packed, packed + residual)
  uniform_packed<E, Space> values;          // vidkv_value_format over (heads, C, head_dim)
  view<E, 3, Space> value_residual;         // (heads, R, head_dim)
  view<const std::int64_t, 1, Space> salient;  // (listed,): protected positions, ascending; may be empty
  uniform_packed<E, Space> salient_values;  // vidkv_salient_format over (heads, Cs, head_dim), Cs a multiple of G
};

template <class E, class Space>
constexpr vidkv_cache<const E, Space> read_only(const vidkv_cache<E, Space>& c) noexcept {
  return {read_only(c.keys), c.key_residual, read_only(c.values), c.value_residual, c.salient,
          read_only(c.salient_values)};
}

/// The keys and values attention sees at a step (VidKV's `update` return value): the packed
/// tokens dequantized, the residual, then the `n` incoming tokens (`n` may be 0: the cache as it
/// is). At a prefill (empty cache) that is the incoming tokens themselves.
struct vidkv_read {
  vidkv cache;
};

/// Inputs of `vidkv_read`.
template <class E, class Space = host_space>
struct vidkv_read_inputs {
  using space = Space;
  vidkv_cache<const E, Space> cache;
  vidkv_state state;
  view<const E, 3, Space> keys;    // (heads, n, head_dim): the incoming tokens; n may be 0
  view<const E, 3, Space> values;  // (heads, n, head_dim)
};

/// Outputs of `vidkv_read`.
template <class E, class Space = host_space>
struct vidkv_read_outputs {
  using space = Space;
  view<E, 3, Space> keys;    // (heads, packed + residual + n, head_dim)
  view<E, 3, Space> values;  // (heads, packed + residual + n, head_dim)
};

/// Appends `n` tokens to a cache in state `state`, as VidKV's `update` does (see vidkv_after):
/// a prefill quantizes the first n − n mod G tokens and keeps the rest; a decode step appends to
/// the residual, or — when it flushes — re-quantizes the whole sequence from scratch: VidKV
/// quantizes the tensor its `update` returns, [dequantized packed, residual, incoming], so the
/// step's `vidkv_read` outputs are the input of the flush (`seen_keys`, `seen_values`). Nothing
/// else is allocated: the engine holds those outputs for attention anyway.
struct vidkv_append {
  vidkv cache;
};

/// Inputs of `vidkv_append`.
template <class E, class Space = host_space>
struct vidkv_append_inputs {
  using space = Space;
  view<const E, 3, Space> keys;         // (heads, n, head_dim): the incoming tokens
  view<const E, 3, Space> values;       // (heads, n, head_dim)
  vidkv_state state;                    // before the append
  view<const E, 3, Space> seen_keys;    // (heads, packed + residual + n, head_dim): vidkv_read's keys; read when flushing
  view<const E, 3, Space> seen_values;  // the same for values; both may be empty when not flushing
};

namespace detail {

constexpr bool valid_vidkv_keys(const vidkv_keys& k, index_t head_dim) noexcept {
  if (!valid_uniform_group(k.group)) return false;
  if (k.mixed) return k.bits >= 1.0 && k.bits <= 2.0 && vidkv_difficult_channels(k.bits, head_dim) <= head_dim;
  return vidkv_channel_format(k.bits, k.group).bits != 0;
}

constexpr status check_vidkv_keys(const vidkv_keys& k, const kv_problem& p) noexcept {
  if (status s = check_kv_problem(p); s != status::ok) return s;
  return valid_vidkv_keys(k, p.head_dim) && p.tokens % k.group == 0 ? status::ok : status::invalid_parameter;
}

/// The checks of a VidKV configuration against a cache of `capacity` packed tokens.
constexpr status check_vidkv(const vidkv& p, const kv_problem& storage) noexcept {
  if (status s = check_cache_storage(storage, p.group, p.residual); s != status::ok) return s;
  const bool salient_bits = p.salient_bits == 2 || p.salient_bits == 4 || p.salient_bits == 8;
  return valid_vidkv_keys(vidkv_keys_of(p), storage.head_dim) && vidkv_value_format(p).bits != 0 && salient_bits
             ? status::ok
             : status::invalid_parameter;
}

}  // namespace detail

/// `ok`, or why the keys cannot be quantized: `shape_mismatch` (a negative extent),
/// `empty_input` (no heads, tokens or channels), `invalid_parameter` (a group that is not a
/// multiple of 32 in [32, 256], tokens not a multiple of it, mixed bits outside [1, 2] or whose
/// difficult count exceeds head_dim — bits just above 1 with head_dim < 32 — or uniform bits
/// other than 1, 1.58, 2, 4, 8).
constexpr status can_implement(const vidkv_key_quantize& p, const kv_problem& prob) noexcept {
  return detail::check_vidkv_keys(p.keys, prob);
}
constexpr status can_implement(const vidkv_key_dequantize& p, const kv_problem& prob) noexcept {
  return detail::check_vidkv_keys(p.keys, prob);
}

/// As for vidkv_key_quantize, for the packed part of `prob` (its `tokens` are the packed tokens
/// P, which may be 0 when the residual holds keys).
constexpr status can_implement(const vidkv_key_scores& p, const kv_problem& prob) noexcept {
  if (prob.tokens == 0 && prob.heads > 0 && prob.head_dim > 0)
    return detail::valid_vidkv_keys(p.keys, prob.head_dim) ? status::ok : status::invalid_parameter;
  return detail::check_vidkv_keys(p.keys, prob);
}

/// `ok`, or why the configuration cannot serve a cache of `storage` = (heads, capacity C,
/// head_dim): `shape_mismatch` (a negative extent), `empty_input` (no heads or no channels),
/// `invalid_parameter` (the keys as for vidkv_key_quantize, value bits other than 1, 1.58, 2,
/// 4, 8, salient bits other than 2, 4, 8, a residual R that is not a positive multiple of G, C
/// not a multiple of G). C = 0 is
/// allowed: a cache that never packs (it refuses an append that would).
constexpr status can_implement(const vidkv_append& p, const kv_problem& storage) noexcept {
  return detail::check_vidkv(p.cache, storage);
}
constexpr status can_implement(const vidkv_read& p, const kv_problem& storage) noexcept {
  return detail::check_vidkv(p.cache, storage);
}

namespace detail {

/// The packed keys' checks, in order: channels, the difficult part, the spectral part. A part
/// without channels is not read or written (its views may be anything).
template <class E, class Space>
status check_packed_keys(const vidkv_packed_keys<E, Space>& p, const vidkv_key_layout& l, const kv_problem& prob) noexcept {
  if (status s = check_view(p.channels, {prob.head_dim}); s != status::ok) return s;
  if (l.difficult > 0)
    if (status s = check_packed(p.difficult, l.difficult_format, {prob.heads, prob.tokens, l.difficult}); s != status::ok)
      return s;
  if (l.easy > 0)
    if (status s = check_packed(p.spectral, l.spectral_format, {prob.heads, prob.tokens, 2 * l.easy}); s != status::ok)
      return s;
  return status::ok;
}

/// Whether `channels` is what quantization writes: k channels ascending, then the others
/// ascending, together each of [0, head_dim) once (a two-way merge). Dequantizing scatters to
/// them, so a corrupt list is refused rather than written through.
template <class Space>
bool valid_channel_order(const view<const std::int64_t, 1, Space>& channels, index_t k) noexcept {
  const index_t dim = channels.extent(0);
  index_t i = 0, j = k;
  for (index_t c = 0; c < dim; ++c) {
    if (i < k && channels(i) == c) ++i;
    else if (j < dim && channels(j) == c) ++j;
    else return false;
  }
  return true;
}

/// The views of packed keys that a layout reads or writes; the others are empty.
template <class E, class Space>
vidkv_packed_keys<E, Space> used_parts(const vidkv_packed_keys<E, Space>& p, const vidkv_key_layout& l) noexcept {
  vidkv_packed_keys<E, Space> u;
  u.channels = p.channels;
  if (l.difficult > 0) {
    u.difficult.codes = p.difficult.codes;
    u.difficult.scale = p.difficult.scale;
    if (l.difficult_format.scheme == kv_scheme::asymmetric) u.difficult.zero = p.difficult.zero;
  }
  if (l.easy > 0) {
    u.spectral.codes = p.spectral.codes;
    u.spectral.scale = p.spectral.scale;
  }
  return u;
}

/// Whether any two used views of packed keys overlap, or any overlaps `v`.
template <class E, class Space, class... Vs>
bool packed_keys_overlap(const vidkv_packed_keys<E, Space>& u, const Vs&... vs) noexcept {
  return any_overlap(u.channels, u.difficult.codes, u.difficult.scale, u.difficult.zero, u.spectral.codes,
                     u.spectral.scale, vs...);
}

/// vidkv_key_quantize's checks, in order, on any backend: exec; can_implement; the chunk view;
/// the packed views; aliasing. (The workspace follows, per backend.)
template <class Exec, class E, class Space>
status check_key_quantize(const Exec& exec, const vidkv_key_quantize& p, const kv_inputs<E, Space>& in,
                          const vidkv_packed_keys<E, Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(in.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok) return s;
  const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
  if (status s = check_packed_keys(out, l, prob); s != status::ok) return s;
  return packed_keys_overlap(used_parts(out, l), in.cache) ? status::aliasing : status::ok;
}

/// vidkv_key_dequantize's first checks, on any backend: exec; can_implement (of the output's
/// shape); the output view; the packed views. (The CPU backend then checks the channel list;
/// then aliasing and the workspace follow.)
template <class Exec, class E, class Eout, class Space>
status check_key_dequantize(const Exec& exec, const vidkv_key_dequantize& p, const vidkv_packed_keys<const E, Space>& in,
                            const kv_outputs<Eout, Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(out.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(out.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok) return s;
  return check_packed_keys(in, vidkv_key_layout_of(p.keys, prob.head_dim), prob);
}


/// The shape facts of a vidkv_key_scores call: kv heads and packed tokens P from the part that
/// has channels (the residual's heads when nothing is packed), head_dim from the queries.
template <class E, class Space>
kv_problem vidkv_score_problem(const vidkv_key_scores& p, const vidkv_score_inputs<E, Space>& in) noexcept {
  const index_t dim = in.queries.extent(1);
  const vidkv_key_layout l = vidkv_key_layout_of(p.keys, dim);
  const uniform_packed<const E, Space>& part = l.difficult > 0 ? in.keys.difficult : in.keys.spectral;
  const index_t packed = part.scale.extent(1) * p.keys.group;
  return {score_kv_heads(part.scale, in.residual), packed, dim};
}

/// vidkv_key_scores' checks but the workspace, in order, on any backend: exec; the problem;
/// can_implement; the queries and Q a multiple of the kv heads; with packed keys, their views
/// and `channels_ok()` (`invalid_parameter` when false: the CPU backend validates the list, the
/// CUDA backend cannot read it on the host); the residual; the scores; aliasing.
template <class Exec, class E, class Space, class ChannelsOk>
status check_vidkv_score_call(const Exec& exec, const vidkv_key_scores& p, const vidkv_score_inputs<E, Space>& in,
                              const packed_score_outputs<Space>& out, const ChannelsOk& channels_ok) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = vidkv_score_problem(p, in);
  const index_t q_heads = in.queries.extent(0), residual = in.residual.extent(1);
  if (status s = check_score_problem(prob, q_heads, residual); s != status::ok) return s;
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.queries, {q_heads, prob.head_dim}); s != status::ok) return s;
  if (q_heads % prob.heads != 0) return status::shape_mismatch;
  const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
  if (prob.tokens > 0) {
    if (status s = check_packed_keys(in.keys, l, prob); s != status::ok) return s;
    if (!channels_ok()) return status::invalid_parameter;
  }
  // No residual: an empty view, default-constructed ones included.
  if (status s = check_optional_view(in.residual, {prob.heads, residual, prob.head_dim}); s != status::ok) return s;
  if (status s = check_view(out.scores, {q_heads, prob.tokens + residual}); s != status::ok) return s;
  const vidkv_packed_keys<const E, Space> used = used_parts(in.keys, l);
  if (overlaps_any(out.scores, in.queries, used.channels, used.difficult.codes, used.difficult.scale, used.difficult.zero,
                   used.spectral.codes, used.spectral.scale, in.residual))
    return status::aliasing;
  return status::ok;
}
}  // namespace detail

// --- the streaming cache's checks, on any backend ----------------------------------------------

namespace detail {

/// The storage problem of a cache: (heads, capacity C, head_dim), C from the values' scale rows.
template <class E, class Space>
kv_problem vidkv_storage(const vidkv& p, const vidkv_cache<E, Space>& c) noexcept {
  return {c.key_residual.extent(0), c.values.scale.extent(1) * p.group, c.key_residual.extent(2)};
}

/// A state a cache of capacity C can be in: packed a multiple of G in [0, C], residual in [0, R].
constexpr bool valid_vidkv_state(const vidkv& p, vidkv_state s, index_t capacity) noexcept {
  return s.packed >= 0 && s.packed <= capacity && s.packed % p.group == 0 && s.residual >= 0 &&
         s.residual <= p.residual;
}

/// How many of i = 0 … n − 1 hold `pred(i)` before the first that does not (pred true, then
/// false): a binary search, which ends, reading only i < n, whatever pred is.
template <class Pred>
TOKRED_HOST_DEVICE index_t leading_count(index_t n, const Pred& pred) noexcept {
  index_t lo = 0, hi = n;
  while (lo < hi) {
    const index_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/// How many listed salient positions lie below `packed` (the list is ascending).
template <class Space>
TOKRED_HOST_DEVICE index_t salient_below(const view<const std::int64_t, 1, Space>& salient, index_t packed) noexcept {
  return leading_count(salient.extent(0), [&](index_t i) { return salient(i) < packed; });
}

/// Whether `listed` salient tokens below the packed ones split into whole groups that fit a
/// salient storage of `salient_groups` groups.
TOKRED_HOST_DEVICE constexpr bool salient_split_fits(index_t listed, index_t group, index_t salient_groups) noexcept {
  return listed % group == 0 && listed / group <= salient_groups;
}

/// The host reads a salient list it can reach (host memory): its order, and how many of its
/// positions lie below `packed`. A list in device memory is used as given (see
/// <tokred/cuda/vidkv_cache.cuh>).
template <class Space>
bool salient_list_ok(const view<const std::int64_t, 1, Space>& salient) noexcept {
  if constexpr (std::is_same_v<Space, host_space>) return ascending_nonnegative(salient);
  else return true;
}

template <class E, class Space>
bool salient_split_ok(const vidkv& p, const vidkv_cache<E, Space>& c, index_t packed) noexcept {
  if constexpr (std::is_same_v<Space, host_space>)
    return salient_split_fits(salient_below(c.salient, packed), p.group, c.salient_values.scale.extent(1));
  else return true;
}

/// The cache views' checks, in order: packed keys, key residual, packed values, value residual;
/// with a salient list, the list (`invalid_parameter` unless ascending and non-negative, where
/// the host can read it) and the salient values over (heads, Cs, head_dim).
template <class E, class Space>
status check_vidkv_cache(const vidkv& p, const vidkv_cache<E, Space>& c, const kv_problem& s) noexcept {
  if (status st = check_packed_keys(c.keys, vidkv_key_layout_of(vidkv_keys_of(p), s.head_dim), s); st != status::ok)
    return st;
  if (status st = check_view(c.key_residual, {s.heads, p.residual, s.head_dim}); st != status::ok) return st;
  if (status st = check_packed(c.values, vidkv_value_format(p), s); st != status::ok) return st;
  if (status st = check_view(c.value_residual, {s.heads, p.residual, s.head_dim}); st != status::ok) return st;
  if (c.salient.extent(0) == 0) return status::ok;
  if (status st = check_view(c.salient, {c.salient.extent(0)}); st != status::ok) return st;
  if (!salient_list_ok(c.salient)) return status::invalid_parameter;
  const index_t salient_capacity = c.salient_values.scale.extent(1) * p.group;
  return check_packed(c.salient_values, vidkv_salient_format(p), {s.heads, salient_capacity, s.head_dim});
}

/// Calls `f` with the cache views a configuration reads or writes (the others empty).
template <class E, class Space, class F>
bool with_cache_views(const vidkv& p, const vidkv_cache<E, Space>& c, const F& f) noexcept {
  const auto k = used_parts(c.keys, vidkv_key_layout_of(vidkv_keys_of(p), c.key_residual.extent(2)));
  const auto value_zero =
      vidkv_value_format(p).scheme == kv_scheme::asymmetric ? c.values.zero : decltype(c.values.zero){};
  const bool protects = c.salient.extent(0) > 0;
  const auto salient = protects ? c.salient_values : decltype(c.salient_values){};
  return f(k.channels, k.difficult.codes, k.difficult.scale, k.difficult.zero, k.spectral.codes, k.spectral.scale,
           c.key_residual, c.values.codes, c.values.scale, value_zero, c.value_residual, c.salient, salient.codes,
           salient.scale, salient.zero);
}

template <class E, class Space, class V>
bool overlaps_cache(const vidkv& p, const vidkv_cache<E, Space>& c, const V& v) noexcept {
  return with_cache_views(p, c, [&](const auto&... w) { return overlaps_any(v, w...); });
}

/// Whether two views of the cache overlap, or any of `vs` overlaps one of them (the inputs may
/// overlap each other: they are only read).
template <class E, class Space, class... Vs>
bool vidkv_cache_overlaps(const vidkv& p, const vidkv_cache<E, Space>& c, const Vs&... vs) noexcept {
  return with_cache_views(p, c, [](const auto&... w) { return any_overlap(w...); }) || (overlaps_cache(p, c, vs) || ...);
}


/// What an append of n tokens to a cache in state `before` does.
struct vidkv_step {
  vidkv_state before, after;
  index_t incoming = 0;
  bool prefill = false, flush = false;

  /// Whether the step quantizes: a prefill or a flush that packs tokens.
  constexpr bool quantizes() const noexcept { return (prefill || flush) && after.packed > 0; }
};

constexpr vidkv_step vidkv_step_of(const vidkv& p, vidkv_state before, index_t n) noexcept {
  vidkv_step s;
  s.before = before;
  s.after = vidkv_after(p, before, n);
  s.incoming = n;
  s.prefill = before.packed == 0 && before.residual == 0;
  s.flush = !s.prefill && vidkv_flushes(p, before);
  return s;
}

/// vidkv_append's checks but the workspace, in order, on any backend: exec; can_implement of
/// the storage problem; the new tokens' views (`empty_input` for n = 0); the cache's views;
/// `shape_mismatch` for a state outside the cache or a step that does not fit (packed past C, a
/// residual past R, a flush of a count that is not a multiple of G, salient tokens below the
/// packed ones that are not whole groups within the salient storage — where the host can read
/// the list); when flushing, the seen views; aliasing.
template <class Exec, class E, class Space>
status check_vidkv_append(const Exec& exec, const vidkv_append& p, const vidkv_append_inputs<E, Space>& in,
                          const vidkv_cache<E, Space>& cache) noexcept {
  const vidkv& c = p.cache;
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem storage = vidkv_storage(c, cache);
  if (status s = can_implement(p, storage); s != status::ok) return s;
  const index_t heads = storage.heads, dim = storage.head_dim, n = in.keys.extent(1);
  if (status s = check_view(in.keys, {heads, n, dim}); s != status::ok) return s;
  if (status s = check_view(in.values, {heads, n, dim}); s != status::ok) return s;
  if (n == 0) return status::empty_input;
  if (status s = check_vidkv_cache(c, cache, storage); s != status::ok) return s;
  const vidkv_step step = vidkv_step_of(c, in.state, n);
  if (!valid_vidkv_state(c, step.before, storage.tokens) || step.after.packed > storage.tokens ||
      step.after.residual > c.residual || step.after.packed % c.group != 0 || !salient_split_ok(c, cache, step.after.packed))
    return status::shape_mismatch;
  if (step.flush) {
    if (status s = check_view(in.seen_keys, {heads, step.after.packed, dim}); s != status::ok) return s;
    if (status s = check_view(in.seen_values, {heads, step.after.packed, dim}); s != status::ok) return s;
  }
  const auto seen_keys = step.flush ? in.seen_keys : view<const E, 3, Space>{};
  const auto seen_values = step.flush ? in.seen_values : view<const E, 3, Space>{};
  return vidkv_cache_overlaps(c, cache, in.keys, in.values, seen_keys, seen_values) ? status::aliasing : status::ok;
}

/// Whether the first `need` bytes of an append's workspace overlap the cache or the tokens the
/// step reads (the seen views only when it flushes): the scratch is written while the cache is.
template <class E, class Space>
bool vidkv_append_scratch_overlaps(const vidkv& p, const vidkv_append_inputs<E, Space>& in,
                                   const vidkv_cache<E, Space>& cache, workspace ws, std::size_t need) noexcept {
  const auto scratch = scratch_view<Space>(ws, need);
  const bool flush = vidkv_step_of(p, in.state, in.keys.extent(1)).flush;
  return overlaps_cache(p, cache, scratch) || overlaps_any(scratch, in.keys, in.values) ||
         (flush && overlaps_any(scratch, in.seen_keys, in.seen_values));
}

/// What a step quantizes: a prefill's first n − n mod G tokens, or a flush's whole sequence
/// (the seen views).
template <class E, class Space>
view<const E, 3, Space> vidkv_quantized_keys(const vidkv_step& s, const vidkv_append_inputs<E, Space>& in) noexcept {
  return s.flush ? in.seen_keys : token_range(in.keys, 0, s.after.packed);
}
template <class E, class Space>
view<const E, 3, Space> vidkv_quantized_values(const vidkv_step& s, const vidkv_append_inputs<E, Space>& in) noexcept {
  return s.flush ? in.seen_values : token_range(in.values, 0, s.after.packed);
}

/// The incoming tokens of a read: n, 0 when both views are empty.
template <class E, class Space>
index_t vidkv_incoming(const vidkv_read_inputs<E, Space>& in) noexcept {
  return requested(in.keys) || requested(in.values) ? in.keys.extent(1) : 0;
}

/// vidkv_read's checks but the channel list and the workspace, in order, on any backend: exec;
/// can_implement of the storage problem; the cache's views; `shape_mismatch` for a state
/// outside the cache (or, where the host can read the list, salient tokens below the packed ones
/// that are not whole groups within the salient storage); the incoming views (both empty, or
/// (heads, n, head_dim) each, n ≥ 0); `empty_input` when nothing is held or incoming; the outputs.
template <class Exec, class E, class Eout, class Space>
status check_vidkv_read_views(const Exec& exec, const vidkv_read& p, const vidkv_read_inputs<E, Space>& in,
                              const vidkv_read_outputs<Eout, Space>& out) noexcept {
  const vidkv& c = p.cache;
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem storage = vidkv_storage(c, in.cache);
  if (status s = can_implement(p, storage); s != status::ok) return s;
  if (status s = check_vidkv_cache(c, in.cache, storage); s != status::ok) return s;
  const vidkv_state st = in.state;
  if (!valid_vidkv_state(c, st, storage.tokens) || !salient_split_ok(c, in.cache, st.packed))
    return status::shape_mismatch;
  // No incoming tokens: empty views, default-constructed ones included.
  const index_t heads = storage.heads, dim = storage.head_dim, n = vidkv_incoming(in);
  if (status s = check_optional_view(in.keys, {heads, n, dim}); s != status::ok) return s;
  if (status s = check_optional_view(in.values, {heads, n, dim}); s != status::ok) return s;
  const index_t total = st.packed + st.residual + n;
  if (total == 0) return status::empty_input;
  if (status s = check_view(out.keys, {heads, total, dim}); s != status::ok) return s;
  return check_view(out.values, {heads, total, dim});
}

/// Whether a read's outputs overlap each other, the cache or the incoming tokens.
template <class E, class Eout, class Space>
bool vidkv_read_overlaps(const vidkv& c, const vidkv_read_inputs<E, Space>& in,
                         const vidkv_read_outputs<Eout, Space>& out) noexcept {
  return may_overlap(out.keys, out.values) || overlaps_cache(c, in.cache, out.keys) ||
         overlaps_cache(c, in.cache, out.values) || overlaps_any(out.keys, in.keys, in.values) ||
         overlaps_any(out.values, in.keys, in.values);
}

}  // namespace detail

/// The keys of a cache in state `state` as `vidkv_key_scores{vidkv_keys_of(config),
/// config.vidkv_dequant}` reads them: the packed keys and the key residual, each cut to what is
/// held. `scores(h, j)` is then the logit of cache token j (the incoming tokens of a step are
/// not in the cache: score them yourself, or after the append).
template <class E, class Space>
vidkv_score_inputs<E, Space> vidkv_key_score_inputs(const vidkv& config, const vidkv_cache<const E, Space>& cache,
                                                    view<const E, 2, Space> queries, vidkv_state state) noexcept {
  const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(config), cache.key_residual.extent(2));
  const index_t groups = config.group > 0 ? state.packed / config.group : 0;
  return {queries,
          {cache.keys.channels, detail::packed_prefix(cache.keys.difficult, l.difficult_format.bits, state.packed, groups),
           detail::packed_prefix(cache.keys.spectral, l.spectral_format.bits, state.packed, groups)},
          token_range(cache.key_residual, 0, state.residual)};
}

}  // namespace tokred
