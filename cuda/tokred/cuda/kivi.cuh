// tokred/cuda/kivi.cuh — CUDA backends of kivi_append and kivi_read.
//
// Stream-ordered kernels, their launch shapes fixed by the shapes and token counts alone (so a
// CUDA graph can capture a prefill or a decode step), no workspace:
//   append  two kernels. The first quantizes what the append packs — one thread per key group's
//           channel (neighbouring threads take neighbouring channels, so each token row is read
//           by a warp at once) and one per leaving token's channel group — reading the old
//           residual rows it needs; the second writes the new tokens' residual rows, one thread
//           per value. Stream order puts every read of a ring row before its reuse. A kernel
//           with no work is not launched.
//   read    one kernel: one thread per packed key group's channel and per packed value token's
//           channel group (dequantize), then one per residual value (copy).
// The per-thread bodies are kivi_append_quantize, kivi_append_residual and kivi_read_unit of
// <tokred/policy/kivi_units.hpp>; codes, scales, zero points and values are the CPU backend's
// bit for bit (NaN payloads aside). Logits from a device cache: kivi_key_scores with
// packed_key_scores (<tokred/cuda/uniform_quant.cuh>).
#pragma once

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // for_each_thread_item, launch_status, blocks_for
#include "tokred/policy/kivi.hpp"
#include "tokred/policy/kivi_units.hpp"

namespace tokred {
namespace detail {
namespace cuda_kivi {

/// Threads of every KIVI block. Provisional: measure 128 / 256 with bench_kivi_cuda's prefill
/// and decode-step appends.
inline constexpr int threads = 256;

template <class E>
__global__ void __launch_bounds__(threads)
    append_quantize_kernel(kivi_append_plan w, kivi_append_inputs<E, device_space> in,
                           kivi_cache<E, device_space> cache) {
  for_each_thread_item(w.quantize_units(), [&](index_t u) { kivi_append_quantize(w, in, cache, u); });
}

template <class E>
__global__ void __launch_bounds__(threads)
    append_residual_kernel(kivi_append_plan w, kivi_append_inputs<E, device_space> in,
                           kivi_cache<E, device_space> cache) {
  for_each_thread_item(w.residual_items(), [&](index_t i) { kivi_append_residual(w, in, cache, i); });
}

template <class E, class Eout>
__global__ void __launch_bounds__(threads)
    read_kernel(kivi_read_plan w, kivi_cache<const E, device_space> cache, kivi_read_outputs<Eout, device_space> out) {
  for_each_thread_item(w.count(), [&](index_t u) { kivi_read_unit(w, cache, out, u); });
}

}  // namespace cuda_kivi
}  // namespace detail

/// KIVI append on a CUDA stream: no workspace; fp32, fp16 and bf16 caches, any strides on the
/// new tokens and the residuals. Checks run on the host (nothing is launched when one fails),
/// in the CPU backend's order.
template <>
struct backend<kivi_append, cuda> {
  static std::size_t workspace_bytes(const cuda&, const kivi_append&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const kivi_append& p, const kivi_append_inputs<E, device_space>& in,
                      const kivi_cache<E, device_space>& cache, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_append(exec, p, in, cache); s != status::ok) return s;
    namespace cu = detail::cuda_kivi;
    const detail::kivi_append_plan w =
        detail::kivi_append_plan_of(p.cache, in.keys.extent(0), in.keys.extent(2), in.tokens_before, in.keys.extent(1));
    if (const index_t units = w.quantize_units(); units > 0) {
      cu::append_quantize_kernel<E><<<detail::blocks_for(units, cu::threads), cu::threads, 0, exec.stream>>>(w, in, cache);
      if (status s = detail::launch_status(); s != status::ok) return s;
    }
    if (const index_t items = w.residual_items(); items > 0) {
      cu::append_residual_kernel<E><<<detail::blocks_for(items, cu::threads), cu::threads, 0, exec.stream>>>(w, in, cache);
      return detail::launch_status();
    }
    return status::ok;
  }
};

/// KIVI read on a CUDA stream: one launch, no workspace; any output element type and strides.
template <>
struct backend<kivi_read, cuda> {
  static std::size_t workspace_bytes(const cuda&, const kivi_read&, const kv_problem&) { return 0; }

  template <class E, class Eout>
  static status apply(const cuda& exec, const kivi_read& p, const kivi_read_inputs<E, device_space>& in,
                      const kivi_read_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<E> && is_element_v<Eout>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_read(exec, p, in, out); s != status::ok) return s;
    namespace cu = detail::cuda_kivi;
    const detail::kivi_read_plan w = detail::kivi_read_plan_of(p.cache, out.keys.extent(0), out.keys.extent(2), in.tokens);
    cu::read_kernel<E, Eout><<<detail::blocks_for(w.count(), cu::threads), cu::threads, 0, exec.stream>>>(w, in.cache, out);
    return detail::launch_status();
  }
};

}  // namespace tokred
