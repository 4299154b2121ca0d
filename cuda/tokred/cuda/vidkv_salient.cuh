// tokred/cuda/vidkv_salient.cuh — the CUDA backend of vidkv_salient_tokens: VidKV's choice of the
// tokens whose values a VidKV cache keeps at higher precision, on the device that holds the cache.
//
// The choice is the CUDA topk's over the N scores (score descending, ties to the lower index,
// NaN last; the CPU backend's indices), emitted ascending into the workspace — k − 32 indices, or
// with `vidkv_order` all k — then one kernel writes the first k − 32 shifted by first_position.
// Three stream-ordered launches, their shapes fixed by N and the ratio (a CUDA graph captures
// them); no host synchronization.
//
// Workspace: the k chosen indices, then the topk's own scratch.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // backend<topk, cuda>, for_each_thread_item, launch_status, blocks_for
#include "tokred/policy/selection.hpp"
#include "tokred/policy/vidkv_salient.hpp"

namespace tokred {
namespace detail {
namespace cuda_vidkv_salient {

inline constexpr int threads = 256;

__global__ void __launch_bounds__(threads)
    positions_kernel(const std::int64_t* chosen, std::int64_t first_position,
                     view<std::int64_t, 1, device_space> positions) {
  for_each_thread_item(positions.extent(0), [&](index_t j) { positions(j) = first_position + chosen[j]; });
}

}  // namespace cuda_vidkv_salient
}  // namespace detail

/// vidkv_salient_tokens on a CUDA stream: the CPU backend's positions. Checks run on the host in
/// the CPU backend's order (nothing is launched when one fails).
template <>
struct backend<vidkv_salient_tokens, cuda> {
  static std::size_t workspace_bytes(const cuda& exec, const vidkv_salient_tokens& p, const problem& prob) {
    if (can_implement(p, prob) != status::ok || check_exec(exec) != status::ok) return 0;
    detail::arena counter;
    carve(counter, exec, p, prob);
    return counter.used();
  }

  static status apply(const cuda& exec, const vidkv_salient_tokens& p, const vidkv_salient_inputs<device_space>& in,
                      const vidkv_salient_outputs<device_space>& out, workspace ws) {
    if (status s = detail::check_vidkv_salient(exec, p, in, out); s != status::ok) return s;
    const problem prob{sequence_grid(in.scores.extent(0)), 0};
    if (status s = check_workspace(ws, workspace_bytes(exec, p, prob)); s != status::ok) return s;
    const index_t count = retained_count(p, prob);
    if (count == 0) return status::ok;

    detail::arena a(ws);
    const scratch buffers = carve(a, exec, p, prob);
    const index_t chosen = detail::vidkv_salient_chosen(p, prob);
    const selection_inputs<float, device_space> ranked{prob.grid, in.scores, {}};
    const selection_outputs<float, device_space> indices{{}, view<std::int64_t, 1, device_space>(buffers.chosen, {chosen}), {}};
    if (status s = backend<topk, cuda>::apply(exec, chooser(chosen), ranked, indices, buffers.selection); s != status::ok)
      return s;
    namespace cu = detail::cuda_vidkv_salient;
    cu::positions_kernel<<<detail::blocks_for(count, cu::threads), cu::threads, 0, exec.stream>>>(
        buffers.chosen, p.first_position, out.positions);
    return detail::launch_status();
  }

 private:
  struct scratch {
    std::int64_t* chosen = nullptr;  // (chosen,) ascending indices
    workspace selection;
  };

  static topk chooser(index_t chosen) noexcept { return topk{keep_budget::count(chosen)}; }

  static scratch carve(detail::arena& a, const cuda& exec, const vidkv_salient_tokens& p, const problem& prob) {
    scratch s;
    const index_t chosen = detail::vidkv_salient_chosen(p, prob);
    s.chosen = a.take<std::int64_t>(chosen);
    const std::size_t bytes = backend<topk, cuda>::workspace_bytes(exec, chooser(chosen), prob);
    s.selection = {a.take_bytes(bytes), bytes};
    return s;
  }
};

}  // namespace tokred
