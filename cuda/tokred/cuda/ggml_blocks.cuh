// tokred/cuda/ggml_blocks.cuh — CUDA backends of ggml_quantize, ggml_dequantize and hadamard.
//
// One stream-ordered launch per call, no workspace, launch shapes from the shapes alone (a CUDA
// graph captures them). One thread per unit of <tokred/policy/ggml_block_codec.hpp>: one ggml
// block of 32 channels, or one rotation block of 32 … 256 channels, the units of a row side by
// side so that neighbouring threads read neighbouring channels. The thread runs the codec's unit
// function — the same function each CPU share runs on its units — so the blocks are the CPU
// backend's, byte for byte, and so ggml's reference quantizers' (every product ggml rounds is
// `__fmul_rn` here, never fused). Dequantized and rotated values are the CPU backend's bits but
// for NaN payloads (the GPU's arithmetic returns its canonical NaN).
#pragma once

#include <cstdint>
#include <type_traits>

#include <cuda_runtime.h>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // launch_status, blocks_for
#include "tokred/policy/ggml_block_codec.hpp"
#include "tokred/policy/kv_quant.hpp"

namespace tokred {
namespace detail {
namespace cuda_ggml {

/// Threads of one block. Provisional: measure 128 / 256 with bench_kv_blocks_cuda against its
/// memcpy of the same bytes; rotated units hold 1 KiB of floats each in local memory.
inline constexpr int threads = 256;

/// Calls `f(at)` for each unit this thread owns (grid-stride), `width` channels each.
template <class V, class F>
__device__ inline void for_each_unit(index_t units, const V& cache, index_t width, const F& f) {
  for_each_thread_item(units, [&](index_t u) { f(ggml_unit_at(u, cache.extent(1), cache.extent(2), width)); });
}

template <bool Rotated, class E>
__global__ void __launch_bounds__(threads)
    quantize_kernel(ggml_type type, index_t rotation, index_t units, view<const E, 3, device_space> x,
                    view<std::uint8_t, 3, device_space> blocks) {
  for_each_unit(units, x, ggml_unit_channels(rotation),
                [&](const ggml_unit& at) { ggml_quantize_unit<Rotated>(type, rotation, x, blocks, at); });
}

template <bool Rotated, class E>
__global__ void __launch_bounds__(threads)
    dequantize_kernel(ggml_type type, index_t rotation, index_t units, view<const std::uint8_t, 3, device_space> blocks,
                      view<E, 3, device_space> y) {
  for_each_unit(units, y, ggml_unit_channels(rotation),
                [&](const ggml_unit& at) { ggml_dequantize_unit<Rotated>(type, rotation, blocks, y, at); });
}

template <class Ein, class Eout>
__global__ void __launch_bounds__(threads)
    hadamard_kernel(index_t block, index_t units, view<const Ein, 3, device_space> in, view<Eout, 3, device_space> out) {
  for_each_unit(units, in, block, [&](const ggml_unit& at) { hadamard_unit(block, in, out, at); });
}

}  // namespace cuda_ggml
}  // namespace detail

/// ggml block quantization on a CUDA stream: one thread per block (or rotation block), no
/// workspace; the CPU backend's bytes. Checks run on the host first, in the CPU backend's order.
template <>
struct backend<ggml_quantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const ggml_quantize&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const ggml_quantize& p, const kv_inputs<E, device_space>& in,
                      const kv_block_outputs<device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_quantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, prob.head_dim) : 0;
    const index_t units = detail::ggml_unit_count(prob, detail::ggml_unit_channels(rot));
    namespace cu = detail::cuda_ggml;
    const unsigned blocks = detail::blocks_for(units, cu::threads);
    if (rot != 0)
      cu::quantize_kernel<true, E><<<blocks, cu::threads, 0, exec.stream>>>(p.type, rot, units, in.cache, out.blocks);
    else
      cu::quantize_kernel<false, E><<<blocks, cu::threads, 0, exec.stream>>>(p.type, rot, units, in.cache, out.blocks);
    return detail::launch_status();
  }
};

/// ggml block dequantization on a CUDA stream: one thread per block (or rotation block), no
/// workspace; any output element type and strides.
template <>
struct backend<ggml_dequantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const ggml_dequantize&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const ggml_dequantize& p, const kv_block_inputs<device_space>& in,
                      const kv_outputs<E, device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    if (status s = detail::check_dequantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const index_t rot = p.rotation != 0 ? detail::hadamard_block_for(p.rotation, prob.head_dim) : 0;
    const index_t units = detail::ggml_unit_count(prob, detail::ggml_unit_channels(rot));
    namespace cu = detail::cuda_ggml;
    const unsigned blocks = detail::blocks_for(units, cu::threads);
    if (rot != 0)
      cu::dequantize_kernel<true, E><<<blocks, cu::threads, 0, exec.stream>>>(p.type, rot, units, in.blocks, out.cache);
    else
      cu::dequantize_kernel<false, E><<<blocks, cu::threads, 0, exec.stream>>>(p.type, rot, units, in.blocks, out.cache);
    return detail::launch_status();
  }
};

/// Hadamard rotation on a CUDA stream: one thread per rotation block, no workspace; in place
/// when `out.cache` is `in.cache` itself.
template <>
struct backend<hadamard, cuda> {
  static std::size_t workspace_bytes(const cuda&, const hadamard&, const kv_problem&) { return 0; }

  template <class Ein, class Eout>
  static status apply(const cuda& exec, const hadamard& p, const kv_inputs<Ein, device_space>& in,
                      const kv_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<Ein> && is_element_v<Eout>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    index_t block = 0;
    if (status s = detail::check_hadamard(exec, p, in, out, block); s != status::ok) return s;
    const index_t units = detail::ggml_unit_count(detail::kv_problem_of(in.cache), block);
    namespace cu = detail::cuda_ggml;
    cu::hadamard_kernel<Ein, Eout>
        <<<detail::blocks_for(units, cu::threads), cu::threads, 0, exec.stream>>>(block, units, in.cache, out.cache);
    return detail::launch_status();
  }
};

}  // namespace tokred
