// tests/cuda/vidkv_device_cache.cuh — VidKV packed keys and a VidKV cache
// (<tokred/policy/vidkv.hpp>) on the device: the storage of host key_buffers and cache_buffers
// (tests/support/vidkv_buffers.hpp) uploaded, their views in device memory, and their bytes
// downloaded into host buffers of the same shapes. Shared by the VidKV CUDA tests and benchmarks.
#pragma once

#include <cstdint>

#include <tokred/tokred.hpp>

#include "cuda/device_buffers.cuh"
#include "support/vidkv_buffers.hpp"

namespace tokred::testing {

/// One uniform_packed part on the device, uploaded from (and downloaded into) part_buffers.
template <class E>
struct device_part {
  device_buffer<std::uint32_t> codes;
  device_buffer<E> scale, zero;

  explicit device_part(const part_buffers<E>& h) : codes(h.codes), scale(h.scale), zero(h.zero) {}
  uniform_packed<E, device_space> views(const part_buffers<E>& h) const {
    return part_buffers<E>::template views<E, std::uint32_t, device_space>(codes.get(), scale.get(), zero.get(),
                                                                          h.code_extents, h.param_extents);
  }
  void download(part_buffers<E>& h) const {
    h.codes = codes.download();
    h.scale = scale.download();
    h.zero = zero.download();
  }
};

/// VidKV packed keys on the device, uploaded from (and downloaded into) host key_buffers.
template <class E>
struct device_keys {
  const key_buffers<E>& layout;
  device_buffer<std::int64_t> channels;
  device_part<E> difficult, spectral;

  explicit device_keys(const key_buffers<E>& h)
      : layout(h), channels(h.channels), difficult(h.difficult), spectral(h.spectral) {}

  vidkv_packed_keys<E, device_space> out() const {
    return {view<std::int64_t, 1, device_space>(channels.get(), {static_cast<index_t>(layout.channels.size())}),
            difficult.views(layout.difficult), spectral.views(layout.spectral)};
  }
  vidkv_packed_keys<const E, device_space> in() const { return read_only(out()); }
  /// The device keys' bytes in host buffers shaped as `layout`'s.
  key_buffers<E> download() const {
    key_buffers<E> h = layout;
    h.channels = channels.download();
    difficult.download(h.difficult);
    spectral.download(h.spectral);
    return h;
  }
};

/// A VidKV cache on the device, uploaded from (and downloaded into) host cache_buffers.
template <class E>
struct device_cache {
  const cache_buffers<E>& layout;
  device_keys<E> keys;
  device_buffer<std::int64_t> salient;
  device_part<E> values, salient_values;
  device_buffer<E> key_residual, value_residual;

  explicit device_cache(const cache_buffers<E>& h)
      : layout(h), keys(h.keys), salient(h.salient), values(h.values), salient_values(h.salient_values),
        key_residual(h.key_residual), value_residual(h.value_residual) {}

  vidkv_cache<E, device_space> out() const {
    const kv_problem& s = layout.storage;
    const auto residual = [&](const device_buffer<E>& b) {
      return view<E, 3, device_space>(b.get(), {s.heads, layout.config.residual, s.head_dim});
    };
    return {keys.out(),
            residual(key_residual),
            values.views(layout.values),
            residual(value_residual),
            view<const std::int64_t, 1, device_space>(salient.get(), {static_cast<index_t>(layout.salient.size())}),
            salient_values.views(layout.salient_values)};
  }
  vidkv_cache<const E, device_space> in() const { return read_only(out()); }

  /// The device cache's bytes in host buffers shaped as `layout`'s, with `state`.
  cache_buffers<E> download(vidkv_state state) const {
    cache_buffers<E> h = layout;
    h.keys = keys.download();
    values.download(h.values);
    salient_values.download(h.salient_values);
    h.key_residual = key_residual.download();
    h.value_residual = value_residual.download();
    h.state = state;
    return h;
  }
};

}  // namespace tokred::testing
