// tests/support/kivi_buffers.hpp — a KIVI cache (<tokred/policy/kivi.hpp>) in contiguous host
// buffers filled with sentinels, its views in any memory space (the CUDA tests upload the same
// buffers), and the CPU backend's append and read on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/kv_cache.hpp"

namespace tokred::testing {

/// A KIVI cache with capacity C in contiguous buffers: packed keys and values, both residuals.
template <class E>
struct kivi_buffers {
  kivi config;
  kv_problem storage;  // (heads, C, head_dim)
  std::vector<std::uint32_t> key_codes, value_codes;
  std::vector<E> key_scale, key_zero, key_residual, value_scale, value_zero, value_residual;

  kivi_buffers(const kivi& k, index_t heads, index_t capacity, index_t dim) : config(k), storage{heads, capacity, dim} {
    const kv_extents kc = uniform_code_extents(kivi_key_format(k), storage);
    const kv_extents kp = uniform_param_extents(kivi_key_format(k), storage);
    const kv_extents vc = uniform_code_extents(kivi_value_format(k), storage);
    const kv_extents vp = uniform_param_extents(kivi_value_format(k), storage);
    key_codes.assign(static_cast<std::size_t>(kc.heads * kc.rows * kc.cols), 0xA5A5A5A5u);
    value_codes.assign(static_cast<std::size_t>(vc.heads * vc.rows * vc.cols), 0xA5A5A5A5u);
    key_scale.assign(static_cast<std::size_t>(kp.heads * kp.rows * kp.cols), from_float<E>(-7.0f));
    key_zero = key_scale;
    value_scale.assign(static_cast<std::size_t>(vp.heads * vp.rows * vp.cols), from_float<E>(-7.0f));
    value_zero = value_scale;
    key_residual.assign(static_cast<std::size_t>(heads * k.residual * dim), from_float<E>(-5.0f));
    value_residual = key_residual;
  }

  /// The cache over storage laid out as these buffers are (host or device pointers).
  template <class Space, class T, class W>
  kivi_cache<T, Space> views(W* kcodes, W* vcodes, T* ks, T* kz, T* kr, T* vs, T* vz, T* vr) const {
    const uniform_format kf = kivi_key_format(config), vf = kivi_value_format(config);
    const kv_extents kc = uniform_code_extents(kf, storage), kp = uniform_param_extents(kf, storage);
    const kv_extents vc = uniform_code_extents(vf, storage), vp = uniform_param_extents(vf, storage);
    const index_t h = storage.heads, r = config.residual, d = storage.head_dim;
    return {{view<W, 3, Space>(kcodes, {kc.heads, kc.rows, kc.cols}), view<T, 3, Space>(ks, {kp.heads, kp.rows, kp.cols}),
             view<T, 3, Space>(kz, {kp.heads, kp.rows, kp.cols})},
            view<T, 3, Space>(kr, {h, r, d}),
            {view<W, 3, Space>(vcodes, {vc.heads, vc.rows, vc.cols}), view<T, 3, Space>(vs, {vp.heads, vp.rows, vp.cols}),
             view<T, 3, Space>(vz, {vp.heads, vp.rows, vp.cols})},
            view<T, 3, Space>(vr, {h, r, d})};
  }
  kivi_cache<E> out() {
    return views<host_space>(key_codes.data(), value_codes.data(), key_scale.data(), key_zero.data(),
                             key_residual.data(), value_scale.data(), value_zero.data(), value_residual.data());
  }
  kivi_cache<const E> in() const {
    return views<host_space, const E, const std::uint32_t>(key_codes.data(), value_codes.data(), key_scale.data(),
                                                           key_zero.data(), key_residual.data(), value_scale.data(),
                                                           value_zero.data(), value_residual.data());
  }

  /// Every buffer equal, bit for bit.
  bool same_bytes(const kivi_buffers& o) const {
    const auto same = [](const auto& a, const auto& b) {
      return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
    };
    return same(key_codes, o.key_codes) && same(value_codes, o.value_codes) && same(key_scale, o.key_scale) &&
           same(key_zero, o.key_zero) && same(key_residual, o.key_residual) && same(value_scale, o.value_scale) &&
           same(value_zero, o.value_zero) && same(value_residual, o.value_residual);
  }

  status append(const view<const E, 3>& keys, const view<const E, 3>& values, index_t before, cpu<> exec = {}) {
    return apply(exec, kivi_append{config}, kivi_append_inputs<E>{keys, values, before}, out());
  }
  /// Reads `tokens` back into `keys` and `values`, (heads, tokens, head_dim) each, resized.
  status read(index_t tokens, std::vector<E>& keys, std::vector<E>& values, cpu<> exec = {}) const {
    const std::size_t n = static_cast<std::size_t>(storage.heads * (tokens > 0 ? tokens : 0) * storage.head_dim);
    keys.assign(n, from_float<E>(-3.0f));
    values.assign(n, from_float<E>(-3.0f));
    return apply(exec, kivi_read{config}, kivi_read_inputs<E>{in(), tokens},
                 kivi_read_outputs<E>{view<E, 3>(keys.data(), {storage.heads, tokens, storage.head_dim}),
                                      view<E, 3>(values.data(), {storage.heads, tokens, storage.head_dim})});
  }
};

/// The values streamed with keys `all`: −x/2 + 1/4 of each key, contiguous (heads, T, head_dim).
template <class E>
std::vector<E> values_for(const view<E, 3>& all) {
  const index_t heads = all.extent(0), tokens = all.extent(1), dim = all.extent(2);
  std::vector<E> storage(static_cast<std::size_t>(heads * tokens * dim));
  const view<E, 3> values(storage.data(), {heads, tokens, dim});
  for (index_t h = 0; h < heads; ++h)
    for (index_t t = 0; t < tokens; ++t)
      for (index_t d = 0; d < dim; ++d) values(h, t, d) = from_float<E>(-to_float(all(h, t, d)) * 0.5f + 0.25f);
  return storage;
}

/// The streams the KIVI backends are compared on: `visit(config, keys, chunks, capacity, label)`
/// for each, `keys` a kv_cache<E> of fp32, fp16 or bf16 (values: values_for). Prefills, single
/// decode steps past two key flushes, odd chunks (an empty one among them), fills to the last
/// token a cache holds; cells, strided and reversed layouts; 1- to 4-bit keys and values.
template <class Visit>
void for_each_kivi_stream(bool each_op, const Visit& visit) {
  kivi k;
  k.key_bits = 3;
  k.value_bits = 4;
  k.group = 32;
  k.residual = 64;
  k.round_each_op = each_op;
  std::vector<index_t> decode = {100};  // a prefill, then single steps past two key flushes
  for (int i = 0; i < 70; ++i) decode.push_back(1);
  kv_cache<float> a = make_cache<float>(3, 300, 96, kv_layout::cells);
  fill(a.cache, 41);
  visit(k, a, decode, index_t{192}, std::string("decode"));
  visit(k, a, std::vector<index_t>{7, 57, 1, 63, 0, 62, 65}, index_t{192}, std::string("chunks"));  // to 255 of 255
  kv_cache<f16> b = make_cache<f16>(2, 200, 64, kv_layout::strided);
  fill(b.cache, 42);
  visit(k, b, std::vector<index_t>{64, 1, 63, 1, 60}, index_t{160}, std::string("chunks"));  // to 189 of 191
  k.key_bits = 2;
  k.value_bits = 1;
  k.group = 64;
  k.residual = 128;
  kv_cache<bf16> c = make_cache<bf16>(1, 260, 128, kv_layout::reversed);
  fill(c.cache, 43);
  visit(k, c, std::vector<index_t>{129, 1, 5, 118, 2}, index_t{192}, std::string("chunks"));  // to 255 of 255
}

}  // namespace tokred::testing
