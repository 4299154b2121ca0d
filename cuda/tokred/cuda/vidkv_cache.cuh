// tokred/cuda/vidkv_cache.cuh — CUDA backends of vidkv_append and vidkv_read: VidKV's streaming
// cache on a CUDA stream.
//
// Stream-ordered kernels, launch shapes fixed by the shapes and the state alone (a CUDA graph
// captures a prefill, a decode step or a flush):
//   append  when the step quantizes (a prefill, or a flush that re-quantizes the whole
//           sequence): the key kernels of <tokred/cuda/vidkv.cuh> over the quantized tokens;
//           then one kernel: one thread per (head, value group, channel) quantizing that
//           channel of the group into `values` or `salient_values`, and one per value of the
//           tokens that stay in full precision. A decode step that does not flush is that
//           kernel alone, copying its tokens into the residuals.
//   read    the packed keys dequantized by the key kernels; then one kernel: one thread per
//           (head, value group, channel) dequantizing into the group's positions, and one per
//           value of the residual rows and the incoming tokens.
// The per-thread bodies are those of <tokred/policy/vidkv_cache_units.hpp> and
// <tokred/policy/vidkv_units.hpp>: codes, scales, zero points, residual rows and values read
// are the CPU backend's bit for bit (NaN payloads aside).
//
// Device-resident lists are used as given: `channels` as quantization wrote it (see
// <tokred/cuda/vidkv.cuh>) and the salient list, which the host checks cannot read. The CPU
// backend refuses a salient list that is not ascending (`invalid_parameter`) or whose positions
// below the packed ones are not whole groups within the salient storage (`shape_mismatch`); here
// such a list leaves the cache's values unspecified — a unit that finds the split does not fit
// writes nothing, a position outside the packed tokens is neither read nor written — and
// memory outside the cache and the outputs untouched. Choose the list with
// vidkv_salient_tokens, or check it on the host before uploading it.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // for_each_thread_item, launch_status, blocks_for
#include "tokred/cuda/vidkv.cuh"
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/vidkv.hpp"
#include "tokred/policy/vidkv_cache_units.hpp"

namespace tokred {
namespace detail {
namespace cuda_vidkv {

template <kv_scheme S, class E>
__global__ void __launch_bounds__(threads)
    append_kernel(vidkv_append_plan w, view<const E, 3, device_space> x, vidkv_append_inputs<E, device_space> in,
                  vidkv_cache<E, device_space> cache) {
  for_each_thread_item(w.count(), [&](index_t u) { vidkv_append_unit<S>(w, x, in, cache, u); });
}

template <kv_scheme S, class E, class Eout>
__global__ void __launch_bounds__(threads)
    read_kernel(vidkv_read_plan w, vidkv_read_inputs<E, device_space> in, vidkv_read_outputs<Eout, device_space> out) {
  for_each_thread_item(w.count(), [&](index_t u) { vidkv_read_unit<S>(w, in, out, u); });
}

/// Calls `f(scheme_tag<s>{})` for a cache's value scheme: sign, ternary or asymmetric (VidKV's
/// value widths), so that each kernel is compiled for those three alone.
template <class F>
void with_value_scheme(const vidkv& c, F&& f) {
  switch (vidkv_value_format(c).scheme) {
    case kv_scheme::sign: return f(scheme_tag<kv_scheme::sign>{});
    case kv_scheme::ternary: return f(scheme_tag<kv_scheme::ternary>{});
    default: return f(scheme_tag<kv_scheme::asymmetric>{});
  }
}

}  // namespace cuda_vidkv
}  // namespace detail

/// VidKV append on a CUDA stream: fp32, fp16 and bf16 caches, any strides on the new tokens,
/// the seen tokens and the residuals; packed codes with inner stride 1; within_device_limits (≤ 256
/// easy key channels, head_dim ≤ 6144). Workspace: the key quantizer's (`workspace_bytes`, from the capacity).
/// Checks run on the host in the CPU backend's order (nothing is launched when one fails),
/// but for the device-resident salient list (see the header comment).
template <>
struct backend<vidkv_append, cuda> {
  static std::size_t workspace_bytes(const cuda&, const vidkv_append& p, const kv_problem& storage) {
    if (can_implement(p, storage) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_vidkv::carve_keys(counter, vidkv_key_layout_of(vidkv_keys_of(p.cache), storage.head_dim), storage);
    return counter.used();
  }

  template <class E>
  static status apply(const cuda& exec, const vidkv_append& p, const vidkv_append_inputs<E, device_space>& in,
                      const vidkv_cache<E, device_space>& cache, workspace ws) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_vidkv;
    if (status s = detail::check_vidkv_append(exec, p, in, cache); s != status::ok) return s;
    const vidkv& c = p.cache;
    const kv_problem storage = detail::vidkv_storage(c, cache);
    const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(c), storage.head_dim);
    if (!cu::within_device_limits(l)) return status::invalid_parameter;
    detail::arena counter;
    cu::carve_keys(counter, l, storage);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;
    if (detail::vidkv_append_scratch_overlaps(c, in, cache, ws, counter.used())) return status::aliasing;
    detail::arena carver(ws);
    const cu::key_scratch scratch = cu::carve_keys(carver, l, storage);
    if (!carver.fits()) return status::workspace_too_small;

    const detail::vidkv_step step = detail::vidkv_step_of(c, in.state, in.keys.extent(1));
    view<const E, 3, device_space> values{};
    if (step.quantizes()) {
      values = detail::vidkv_quantized_values(step, in);
      if (status s = cu::launch_key_quantize(exec, l, c.round_each_op, detail::vidkv_quantized_keys(step, in), scratch,
                                             cache.keys);
          s != status::ok)
        return s;
    }
    const detail::vidkv_append_plan w = detail::vidkv_append_plan_of(c, step, cache);
    if (w.count() == 0) return status::ok;
    cu::with_value_scheme(c, [&](auto tag) {
      cu::append_kernel<decltype(tag)::value, E>
          <<<cu::blocks_of(w.count()), cu::threads, 0, exec.stream>>>(w, values, in, cache);
    });
    return detail::launch_status();
  }
};

/// VidKV read on a CUDA stream: any output element type and strides; no workspace; at most
/// vidkv_max_easy easy key channels, head_dim at most max_head_dim. Checks run on the host in
/// the CPU backend's order (nothing is launched when one fails), but for the device-resident
/// lists (see the header comment).
template <>
struct backend<vidkv_read, cuda> {
  static std::size_t workspace_bytes(const cuda&, const vidkv_read&, const kv_problem&) { return 0; }

  template <class E, class Eout>
  static status apply(const cuda& exec, const vidkv_read& p, const vidkv_read_inputs<E, device_space>& in,
                      const vidkv_read_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<E> && is_element_v<Eout>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_vidkv;
    if (status s = detail::check_vidkv_read_views(exec, p, in, out); s != status::ok) return s;
    const vidkv& c = p.cache;
    if (detail::vidkv_read_overlaps(c, in, out)) return status::aliasing;
    const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(c), out.keys.extent(2));
    if (!cu::within_device_limits(l)) return status::invalid_parameter;
    if (in.state.packed > 0)
      if (status s = cu::launch_key_dequantize(exec, l, c.round_each_op, c.vidkv_dequant, in.cache.keys,
                                               token_range(out.keys, 0, in.state.packed));
          s != status::ok)
        return s;
    const detail::vidkv_read_plan w = detail::vidkv_read_plan_of(c, in);
    cu::with_value_scheme(c, [&](auto tag) {
      cu::read_kernel<decltype(tag)::value, E, Eout><<<cu::blocks_of(w.count()), cu::threads, 0, exec.stream>>>(w, in, out);
    });
    return detail::launch_status();
  }
};

}  // namespace tokred
