// tests/support/vidkv_buffers.hpp — sentinel-filled storage for VidKV packed keys (and any
// uniform_packed part) and for a whole VidKV cache with its state, the key quantizer called in one
// line, and the key settings the VidKV tests sweep. Shared by test_vidkv (quantization, the cache)
// and test_vidkv_scores (logits).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <tokred/cpu/vidkv.hpp>
#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/kv_cache.hpp"

namespace tokred::testing {

/// Sentinel-filled storage for one uniform_packed part.
template <class E>
struct part_buffers {
  kv_extents code_extents{}, param_extents{};
  std::vector<std::uint32_t> codes;
  std::vector<E> scale, zero;

  part_buffers() = default;
  part_buffers(const kv_extents& c, const kv_extents& p)
      : code_extents(c), param_extents(p),
        codes(static_cast<std::size_t>(c.heads * c.rows * c.cols), 0xA5A5A5A5u),
        scale(static_cast<std::size_t>(p.heads * p.rows * p.cols), from_float<E>(-7.0f)),
        zero(scale) {}

  template <class T, class W, class Space = host_space>
  static uniform_packed<T, Space> views(W* c, T* s, T* z, const kv_extents& ce, const kv_extents& pe) {
    return {view<W, 3, Space>(c, {ce.heads, ce.rows, ce.cols}), view<T, 3, Space>(s, {pe.heads, pe.rows, pe.cols}),
            view<T, 3, Space>(z, {pe.heads, pe.rows, pe.cols})};
  }
  uniform_packed<E> out() { return views<E, std::uint32_t>(codes.data(), scale.data(), zero.data(), code_extents, param_extents); }
  uniform_packed<const E> in() const {
    return views<const E, const std::uint32_t>(codes.data(), scale.data(), zero.data(), code_extents, param_extents);
  }
  bool operator==(const part_buffers& o) const {
    return codes == o.codes && same_bytes(scale, o.scale) && same_bytes(zero, o.zero);
  }
};

/// Packed keys of a (heads, tokens, head_dim) chunk in sentinel-filled buffers.
template <class E>
struct key_buffers {
  std::vector<std::int64_t> channels;
  part_buffers<E> difficult, spectral;

  key_buffers(const vidkv_keys& k, const kv_problem& p) : channels(static_cast<std::size_t>(p.head_dim), -1) {
    const vidkv_key_extents x = vidkv_packed_key_extents(k, p);
    difficult = part_buffers<E>(x.difficult_codes, x.difficult_params);
    spectral = part_buffers<E>(x.spectral_codes, x.spectral_params);
  }
  vidkv_packed_keys<E> out() {
    return {view<std::int64_t, 1>(channels.data(), {static_cast<index_t>(channels.size())}), difficult.out(),
            spectral.out()};
  }
  vidkv_packed_keys<const E> in() const {
    return {view<const std::int64_t, 1>(channels.data(), {static_cast<index_t>(channels.size())}), difficult.in(),
            spectral.in()};
  }
  bool operator==(const key_buffers& o) const {
    return channels == o.channels && difficult == o.difficult && spectral == o.spectral;
  }
};

/// Quantizes the keys `x` (a view of E or const E, (heads, tokens, head_dim)) into `out`.
template <class V, class E>
status quantize_keys(const vidkv_keys& k, const V& x, key_buffers<E>& out, cpu<> exec = {}) {
  const kv_problem p{x.extent(0), x.extent(1), x.extent(2)};
  host_workspace ws(workspace_bytes(exec, vidkv_key_quantize{k}, p));
  return apply(exec, vidkv_key_quantize{k}, kv_inputs<E>{x}, out.out(), ws.get());
}

inline std::string describe(const vidkv_keys& k) {
  return std::string(k.mixed ? "mixed " : "uniform ") + std::to_string(k.bits) + " g" + std::to_string(k.group) +
         (k.round_each_op ? " each-op" : "");
}

/// The key settings every case runs: mixed 1, 1.01 (VidKV's 32-channel floor), 1.25, 1.5, 1.75, 2
/// bits and uniform 1.58, 2, 4.
inline std::vector<vidkv_keys> key_settings(index_t group) {
  std::vector<vidkv_keys> out;
  for (double bits : {1.0, 1.01, 1.25, 1.5, 1.75, 2.0}) out.push_back({bits, true, group, false});  // 1.01: 32 channels
  for (double bits : {1.58, 2.0, 4.0}) out.push_back({bits, false, group, false});
  return out;
}

/// Stops the test program when a call the tests rely on fails (a test that cannot go on).
inline void must_succeed(status s, const char* what) {
  if (s == status::ok) return;
  std::fprintf(stderr, "tokred tests: %s returned %s\n", what, to_string(s));
  std::abort();
}

/// A VidKV cache in sentinel-filled buffers with capacity C, and its state; with a salient list,
/// salient storage of capacity Cs.
template <class E>
struct cache_buffers {
  vidkv config;
  kv_problem storage;
  key_buffers<E> keys;
  part_buffers<E> values, salient_values;
  std::vector<E> key_residual, value_residual;
  std::vector<std::int64_t> salient;
  vidkv_state state;

  cache_buffers(const vidkv& c, index_t heads, index_t capacity, index_t dim, std::vector<std::int64_t> listed = {},
                index_t salient_capacity = 0)
      : config(c), storage{heads, capacity, dim}, keys(vidkv_keys_of(c), storage), salient(std::move(listed)) {
    const uniform_format vf = vidkv_value_format(c), sf = vidkv_salient_format(c);
    values = part_buffers<E>(uniform_code_extents(vf, storage), uniform_param_extents(vf, storage));
    const kv_problem protected_storage{heads, salient_capacity, dim};
    salient_values = part_buffers<E>(uniform_code_extents(sf, protected_storage), uniform_param_extents(sf, protected_storage));
    key_residual.assign(static_cast<std::size_t>(heads * c.residual * dim), from_float<E>(-5.0f));
    value_residual = key_residual;
  }
  /// Every byte of the cache, sentinels included, and the state.
  bool operator==(const cache_buffers& o) const {
    return keys == o.keys && values == o.values && salient_values == o.salient_values &&
           same_bytes(key_residual, o.key_residual) && same_bytes(value_residual, o.value_residual) &&
           state.packed == o.state.packed && state.residual == o.state.residual;
  }
  view<const std::int64_t, 1> salient_view() const {
    return view<const std::int64_t, 1>(salient.data(), {static_cast<index_t>(salient.size())});
  }
  view<E, 3> residual_view(std::vector<E>& r) {
    return view<E, 3>(r.data(), {storage.heads, config.residual, storage.head_dim});
  }
  view<const E, 3> residual_view(const std::vector<E>& r) const {
    return view<const E, 3>(r.data(), {storage.heads, config.residual, storage.head_dim});
  }
  vidkv_cache<E> out() {
    return {keys.out(),       residual_view(key_residual), values.out(), residual_view(value_residual),
            salient_view(), salient_values.out()};
  }
  vidkv_cache<const E> in() const {
    return {keys.in(),        residual_view(key_residual), values.in(), residual_view(value_residual),
            salient_view(), salient_values.in()};
  }

  /// Reads into `ko`, `vo` (resized to fit, filled with −3 when they are not yet).
  status read(const view<const E, 3>& k, const view<const E, 3>& v, std::vector<E>& ko, std::vector<E>& vo,
              cpu<> exec = {}) const {
    const index_t total = state.packed + state.residual + k.extent(1);
    const std::size_t size = static_cast<std::size_t>(storage.heads * total * storage.head_dim);
    if (ko.size() != size) ko.assign(size, from_float<E>(-3.0f));
    if (vo.size() != size) vo.assign(size, from_float<E>(-3.0f));
    host_workspace ws(workspace_bytes(exec, vidkv_read{config}, storage));
    return apply(exec, vidkv_read{config}, vidkv_read_inputs<E>{in(), state, k, v},
                 vidkv_read_outputs<E>{view<E, 3>(ko.data(), {storage.heads, total, storage.head_dim}),
                                       view<E, 3>(vo.data(), {storage.heads, total, storage.head_dim})},
                 ws.get());
  }
  status append(const view<const E, 3>& k, const view<const E, 3>& v, const view<const E, 3>& seen_k,
                const view<const E, 3>& seen_v, cpu<> exec = {}) {
    host_workspace ws(workspace_bytes(exec, vidkv_append{config}, storage));
    return apply(exec, vidkv_append{config}, vidkv_append_inputs<E>{k, v, state, seen_k, seen_v}, out(), ws.get());
  }

  /// One call of VidKV's `update`: what attention sees (vidkv_read), then the append that reads
  /// it when it flushes; every share of nth for each.
  std::pair<std::vector<E>, std::vector<E>> step(const view<const E, 3>& k, const view<const E, 3>& v, int nth = 1) {
    const index_t total = state.packed + state.residual + k.extent(1);
    std::vector<E> kf, vf;  // each share writes its part of the same outputs
    for (int ith = 0; ith < nth; ++ith) must_succeed(read(k, v, kf, vf, cpu<>{ith, nth}), "vidkv_read");
    const view<const E, 3> seen_k(kf.data(), {storage.heads, total, storage.head_dim});
    const view<const E, 3> seen_v(vf.data(), {storage.heads, total, storage.head_dim});
    for (int ith = 0; ith < nth; ++ith) must_succeed(append(k, v, seen_k, seen_v, cpu<>{ith, nth}), "vidkv_append");
    state = vidkv_after(config, state, k.extent(1));
    return {kf, vf};
  }
};

/// An element type as a value, for generic visitors.
template <class E>
struct element_type {
  using type = E;
};

/// Positions [first, first + count·step) every `step`.
inline std::vector<std::int64_t> every(std::int64_t first, std::int64_t count, std::int64_t step) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < count; ++i) out.push_back(first + i * step);
  return out;
}

/// The streams on which the VidKV cache's CUDA units and backend are compared with the CPU
/// backend: `visit(element_type<E>{}, config, heads, head_dim, prefill, steps, capacity,
/// layout, salient list, salient capacity)` streams `prefill` tokens then `steps` single ones.
template <class Visit>
void for_each_vidkv_stream(const Visit& visit) {
  vidkv paper;  // keys 1.5 bits mixed, values 1.58 (ternary), salient values 2 bits, G = 32
  paper.residual = 64;
  // Prefill 70 → (64, 6), a flush at step 58 (→ 128); salient tokens scattered (the odd
  // positions below 64), then in a block that joins at the flush.
  const std::vector<std::int64_t> odd = every(1, 32, 2);
  visit(element_type<float>{}, paper, 2, 64, 70, 60, 256, kv_layout::contiguous, std::vector<std::int64_t>{}, 0);
  visit(element_type<float>{}, paper, 2, 64, 70, 60, 256, kv_layout::strided, odd, 64);
  visit(element_type<f16>{}, paper, 2, 48, 70, 60, 256, kv_layout::cells, odd, 32);
  vidkv each_op = paper;
  each_op.round_each_op = true;
  each_op.vidkv_dequant = true;
  visit(element_type<bf16>{}, each_op, 3, 40, 70, 60, 256, kv_layout::reversed, every(70, 32, 1), 32);
  // All keys through the DFT, 1-bit values, 4-bit salient ones; a prefill of whole groups.
  vidkv one = paper;
  one.key_bits = 1.0;
  one.value_bits = 1.0;
  one.salient_bits = 4;
  one.residual = 32;
  visit(element_type<float>{}, one, 2, 40, 64, 40, 256, kv_layout::contiguous, odd, 64);
  // Uniform 2-bit keys and values, 8-bit salient values: every packed token salient at the
  // prefill, none of the flush's new ones.
  vidkv uniform;
  uniform.key_bits = 2.0;
  uniform.mixed_keys = false;
  uniform.value_bits = 2.0;
  uniform.salient_bits = 8;
  uniform.residual = 32;
  visit(element_type<f16>{}, uniform, 1, 33, 64, 40, 128, kv_layout::contiguous, every(0, 64, 1), 64);
}

}  // namespace tokred::testing
