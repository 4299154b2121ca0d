// tokred/policy/kv_quant.hpp — KV-cache quantization: llama.cpp's (ggml's) block formats,
// byte for byte, the block Walsh–Hadamard rotation applied around them, and the uniform grouped
// quantizers of KIVI and VidKV with their packed layout.
//
// WHAT each policy computes; the HOW lives in <tokred/cpu/ggml_blocks.hpp>,
// <tokred/cpu/hadamard.hpp> and <tokred/cpu/uniform_quant.hpp>. It compiles with the standard
// library alone.
//
// A KV cache is a `(heads, tokens, head_dim)` view of fp32, fp16 or bf16 with any strides. Its
// packed form is a `(heads, tokens, row_bytes)` byte view whose rows are ggml blocks back to back:
// `row_bytes = head_dim / 32 · block_bytes(type)`, bytes contiguous within a row (inner stride
// 1), rows anywhere (llama.cpp's K cache, one cell = all heads, is strides
// `(row_bytes, heads·row_bytes, 1)`). Each block is the 32 consecutive channels `[32b, 32b+32)`
// of one (head, token) row, laid out exactly as ggml's `block_q8_0`, `block_q4_0`, … structs
// (little-endian, no padding, any alignment):
//
//   type    bytes  layout                              dequantized element j
//   q8_0    34     d:f16, qs:int8[32]                  qs[j]·d
//   q4_0    18     d:f16, qs:u8[16]                    (q_j − 8)·d
//   q4_1    20     d:f16, m:f16, qs:u8[16]             q_j·d + m
//   q5_0    22     d:f16, qh:u32, qs:u8[16]            (q_j − 16)·d
//   q5_1    24     d:f16, m:f16, qh:u32, qs:u8[16]     q_j·d + m
//   iq4_nl  18     d:f16, qs:u8[16]                    d·K[q_j], K = kvalues_iq4nl
//
// 4-bit codes: byte qs[i] holds element i in its low nibble and element i+16 in its high
// nibble. 5-bit codes: bit 4 of element j is bit j of the little-endian qh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "tokred/core/checks.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// The shape facts of a KV-cache operation: a `(heads, tokens, head_dim)` cache.
struct kv_problem {
  index_t heads = 0;
  index_t tokens = 0;
  index_t head_dim = 0;
};

/// Scratch bytes `apply(exec, policy, …)` needs for a KV problem (see the `problem` overload in
/// <tokred/core/contract.hpp>).
template <class Exec, class Policy>
std::size_t workspace_bytes(const Exec& exec, const Policy& policy, const kv_problem& prob) {
  return backend<Policy, Exec>::workspace_bytes(exec, policy, prob);
}

/// llama.cpp's KV-cache block types (`-ctk` / `-ctv`), numbered as `enum ggml_type` numbers them.
enum class ggml_type : int { q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, iq4_nl = 20 };

/// Elements per block: 32 for every type here (ggml's QK4_0 … QK4_NL).
inline constexpr index_t ggml_block_elems = 32;

/// Bytes per block (ggml's `sizeof(block_<type>)`), 0 for a value outside the enum.
TOKRED_HOST_DEVICE constexpr index_t ggml_block_bytes(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::q8_0: return 34;
    case ggml_type::q4_0: return 18;
    case ggml_type::q4_1: return 20;
    case ggml_type::q5_0: return 22;
    case ggml_type::q5_1: return 24;
    case ggml_type::iq4_nl: return 18;
  }
  return 0;
}

/// ggml's name of the type ("q4_0", …), "?" for a value outside the enum.
constexpr const char* ggml_type_name(ggml_type t) noexcept {
  switch (t) {
    case ggml_type::q8_0: return "q8_0";
    case ggml_type::q4_0: return "q4_0";
    case ggml_type::q4_1: return "q4_1";
    case ggml_type::q5_0: return "q5_0";
    case ggml_type::q5_1: return "q5_1";
    case ggml_type::iq4_nl: return "iq4_nl";
  }
  return "?";
}

/// Packed bytes of one `(head, token)` row of `head_dim` channels: head_dim / 32 blocks.
constexpr index_t ggml_row_bytes(ggml_type t, index_t head_dim) noexcept {
  return head_dim / ggml_block_elems * ggml_block_bytes(t);
}

/// ggml's `kvalues_iq4nl`: the 16 levels of iq4_nl's non-linear codebook (the list also
/// initialises the device-readable copy in <tokred/policy/ggml_block_codec.hpp>).
#define TOKRED_IQ4NL_LEVELS -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113
inline constexpr std::int8_t iq4nl_levels[16] = {TOKRED_IQ4NL_LEVELS};

/// Orthonormal block Walsh–Hadamard rotation of every `(head, token)` row: each run of `block`
/// consecutive channels is multiplied by H/√block, H the Sylvester Hadamard matrix in natural
/// order (H[i][j] = (−1)^popcount(i & j); H/√n is symmetric and its own inverse). Rotating
/// twice gives the input back to rounding, so the same policy undoes itself.
///
/// Computed as the unnormalised fast transform in fp32 (butterflies of span 1, 2, 4, …, each
/// `(a + b, a − b)`), then one multiplication by fp32(1/√block): the same bits on every ISA.
/// llama.cpp (PR #21038) rotates Q, K and V this way before writing a quantized cache when
/// head_dim % 64 == 0; which block size it uses for K and V depends on the commit you target
/// (see docs/policies/ggml_blocks.md), so it is a parameter here.
struct hadamard {
  /// Channels per rotation block: a power of two in [32, 256] dividing head_dim, or 0 for the
  /// largest such power of two (head_dim 128 → 128, 192 → 64, 320 → 64).
  index_t block = 0;
};

/// Quantizes a `(heads, tokens, head_dim)` cache to ggml blocks, byte-identical to ggml's
/// reference quantizers `quantize_row_<type>_ref` run on each row (llama.cpp's CPU KV writes for
/// every type but q8_0, whose x86/ARM SIMD path rounds ties half to even where the reference —
/// and tokred — rounds half away from zero; see docs/policies/ggml_blocks.md).
///
/// `rotation` > 0 first rotates each row with `hadamard{rotation}` (in registers; the input is
/// not modified), as llama.cpp does before writing a quantized cache; 0 quantizes as is.
/// fp16/bf16 inputs are widened exactly to fp32 first (ggml quantizes fp32 rows).
///
/// Non-finite input: a block holding a NaN or ±inf is written with d (and m) = fp16 NaN
/// (0x7E00) and every code byte 0, so the whole block dequantizes to NaN (ggml's reference
/// converts NaN to an integer there, which C leaves undefined). Finite values whose scale
/// overflows fp16 (|x| ≳ 8.3e6 for q8_0) store d = ±inf, as ggml does.
///
/// iq4_nl blocks of all |x| < 1e-15 get d = 0 and codes 0x88; ggml's reference leaves those
/// nibbles uninitialised (they dequantize to 0 either way).
struct ggml_quantize {
  ggml_type type = ggml_type::q8_0;
  index_t rotation = 0;  ///< Hadamard block applied before quantizing; 0: none
};

/// Dequantizes ggml blocks back to a `(heads, tokens, head_dim)` cache, exactly as ggml's
/// `dequantize_row_<type>` (products of the stored fp16 d, m and small integers, in fp32), then
/// rounds to the output element type. `rotation` > 0 undoes a `ggml_quantize` rotation (applies
/// `hadamard{rotation}` to each dequantized row).
struct ggml_dequantize {
  ggml_type type = ggml_type::q8_0;
  index_t rotation = 0;  ///< Hadamard block applied after dequantizing; 0: none
};

/// Inputs of `ggml_quantize` and `hadamard`: a float cache.
template <class E, class Space = host_space>
struct kv_inputs {
  using space = Space;
  view<const E, 3, Space> cache;  // (heads, tokens, head_dim)
};

/// Outputs of `ggml_dequantize` and `hadamard`: a float cache.
template <class E, class Space = host_space>
struct kv_outputs {
  using space = Space;
  view<E, 3, Space> cache;  // (heads, tokens, head_dim)
};

/// Packed ggml blocks, read by `ggml_dequantize`.
template <class Space = host_space>
struct kv_block_inputs {
  using space = Space;
  view<const std::uint8_t, 3, Space> blocks;  // (heads, tokens, row_bytes), inner stride 1
};

/// Packed ggml blocks, written by `ggml_quantize`.
template <class Space = host_space>
struct kv_block_outputs {
  using space = Space;
  view<std::uint8_t, 3, Space> blocks;  // (heads, tokens, row_bytes), inner stride 1
};

namespace detail {

constexpr bool is_ggml_type(ggml_type t) noexcept { return ggml_block_bytes(t) != 0; }

/// The rotation block `hadamard{block}` uses for head_dim, or 0 when none fits.
constexpr index_t hadamard_block_for(index_t block, index_t head_dim) noexcept {
  if (block == 0) {
    for (index_t b = 256; b >= 32; b /= 2)
      if (head_dim % b == 0) return b;
    return 0;
  }
  const bool power_of_two = block >= 32 && block <= 256 && (block & (block - 1)) == 0;
  return power_of_two && head_dim % block == 0 ? block : 0;
}

/// The problem checks shared by every KV policy: `empty_input` for no rows or no channels.
constexpr status check_kv_problem(const kv_problem& p) noexcept {
  if (p.heads < 0 || p.tokens < 0 || p.head_dim < 0) return status::shape_mismatch;
  return p.heads == 0 || p.tokens == 0 || p.head_dim == 0 ? status::empty_input : status::ok;
}

constexpr status check_ggml(ggml_type type, index_t rotation, const kv_problem& p) noexcept {
  if (status s = check_kv_problem(p); s != status::ok) return s;
  if (!is_ggml_type(type) || p.head_dim % ggml_block_elems != 0) return status::invalid_parameter;
  if (rotation != 0 && hadamard_block_for(rotation, p.head_dim) == 0)
    return status::invalid_parameter;
  return status::ok;
}

/// The storage checks every streaming KV cache shares, for (heads, capacity C, head_dim) with
/// groups of `group` tokens and a full-precision window of `residual`: `shape_mismatch` for a
/// negative extent, `empty_input` for no heads or channels, `invalid_parameter` for a residual
/// that is not a positive multiple of the group or C not a multiple of it. C = 0 is allowed.
constexpr status check_cache_storage(const kv_problem& storage, index_t group, index_t residual) noexcept {
  if (storage.heads < 0 || storage.tokens < 0 || storage.head_dim < 0) return status::shape_mismatch;
  if (storage.heads == 0 || storage.head_dim == 0) return status::empty_input;
  if (group <= 0 || residual <= 0 || residual % group != 0 || storage.tokens % group != 0)
    return status::invalid_parameter;
  return status::ok;
}

template <class V>
kv_problem kv_problem_of(const V& cache) noexcept {
  return {cache.extent(0), cache.extent(1), cache.extent(2)};
}

/// The packed view's checks: extents `(heads, tokens, row_bytes)`, then a null pointer, then
/// unit inner stride (a row's blocks are one run of bytes, as ggml stores them).
template <class B>
status check_blocks(const B& blocks, const kv_problem& p, ggml_type type) noexcept {
  if (status s = check_view(blocks, {p.heads, p.tokens, ggml_row_bytes(type, p.head_dim)});
      s != status::ok)
    return s;
  return blocks.stride(2) == 1 ? status::ok : status::shape_mismatch;
}

}  // namespace detail

/// `ok`, or why the type does not fit the cache: `shape_mismatch` (a negative extent),
/// `empty_input` (no rows or no channels), `invalid_parameter` (a type outside the enum,
/// head_dim not a multiple of 32, or a rotation block that is not a power of two in [32, 256]
/// dividing head_dim).
constexpr status can_implement(const ggml_quantize& p, const kv_problem& prob) noexcept {
  return detail::check_ggml(p.type, p.rotation, prob);
}
constexpr status can_implement(const ggml_dequantize& p, const kv_problem& prob) noexcept {
  return detail::check_ggml(p.type, p.rotation, prob);
}

/// `ok`, `shape_mismatch`, `empty_input`, or `invalid_parameter` when no block fits head_dim.
constexpr status can_implement(const hadamard& p, const kv_problem& prob) noexcept {
  if (status s = detail::check_kv_problem(prob); s != status::ok) return s;
  return detail::hadamard_block_for(p.block, prob.head_dim) != 0 ? status::ok
                                                                 : status::invalid_parameter;
}

namespace detail {

/// Every check of ggml_quantize, in the documented order.
template <class Exec, class E, class Space>
status check_quantize(const Exec& exec, const ggml_quantize& p, const kv_inputs<E, Space>& in,
                      const kv_block_outputs<Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(in.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (status s = check_blocks(out.blocks, prob, p.type); s != status::ok) return s;
  return may_overlap(in.cache, out.blocks) ? status::aliasing : status::ok;
}

/// Every check of ggml_dequantize, in the documented order.
template <class Exec, class E, class Space>
status check_dequantize(const Exec& exec, const ggml_dequantize& p,
                        const kv_block_inputs<Space>& in, const kv_outputs<E, Space>& out) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(out.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(out.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (status s = check_blocks(in.blocks, prob, p.type); s != status::ok) return s;
  return may_overlap(in.blocks, out.cache) ? status::aliasing : status::ok;
}

/// True when `out` is `in` itself (same origin and extents): in-place use.
template <class Ein, class Eout, class Space>
bool same_cache(const view<const Ein, 3, Space>& in, const view<Eout, 3, Space>& out) noexcept {
  return same_origin(in, out) && in.extent(0) == out.extent(0) && in.extent(1) == out.extent(1) &&
         in.extent(2) == out.extent(2);
}

/// Every check of `hadamard`, in the documented order; the rotation block on success.
template <class Exec, class Ein, class Eout, class Space>
status check_hadamard(const Exec& exec, const hadamard& p, const kv_inputs<Ein, Space>& in,
                      const kv_outputs<Eout, Space>& out, index_t& block) noexcept {
  if (status s = check_exec(exec); s != status::ok) return s;
  const kv_problem prob = kv_problem_of(in.cache);
  if (status s = can_implement(p, prob); s != status::ok) return s;
  if (status s = check_view(in.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (status s = check_view(out.cache, {prob.heads, prob.tokens, prob.head_dim}); s != status::ok)
    return s;
  if (!same_cache(in.cache, out.cache) && may_overlap(in.cache, out.cache)) return status::aliasing;
  block = hadamard_block_for(p.block, prob.head_dim);
  return status::ok;
}

}  // namespace detail

}  // namespace tokred
