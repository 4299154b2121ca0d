// tokred/cuda/vidkv.cuh — CUDA backends of vidkv_key_quantize, vidkv_key_dequantize and
// vidkv_key_scores.
//
// Stream-ordered kernels, launch shapes fixed by the shapes alone (a CUDA graph captures them):
//   quantize    with both difficult and easy channels, the ranking first: an extremes kernel,
//               one block per consecutive range of (head, token) rows and one thread per
//               channel, folds each channel's min, max and last NaN over its rows into the
//               workspace; one block merges those ranges in order per channel, ranks the keys
//               and writes `channels` (otherwise it writes 0 … D − 1). Then one thread per
//               (head, token group, difficult channel) quantizes it, and one thread per (head,
//               token group, Re or Im of bin m ≤ n/2) computes that part of each token's spectrum
//               once (its easy channels' real DFT, O(n) in double) and sign-quantizes it into
//               component 2m (+1 for Im) and into bin n − m's, the conjugate, where that is
//               another bin.
//   dequantize  one thread per (head, token group, difficult channel), and one per (head,
//               token, easy channels j and n − j), which evaluates the inverse DFT of the token's
//               dequantized spectrum at both channels from one set of sums. `channels` is not
//               checked first (it lives on the device): a channel outside [0, D) is skipped, so
//               a corrupt list leaves outputs unspecified but writes nothing outside them.
//   scores      one block per (query head, tile of 256 keys): the head's two queries — its
//               difficult channels and Q/n, the DFT of its easy channels — staged in shared
//               memory, then one key per thread, its parts read without dequantizing a key.
// The per-thread bodies are those of <tokred/policy/vidkv_units.hpp>: channels, codes, scales,
// zero points and dequantized keys are the CPU backend's bit for bit (NaN payloads aside). The
// twiddles (cos and sin of 2π·r/n in double) are computed on the host, as the CPU backend
// computes them, and passed to the kernels as a __grid_constant__ table: at most
// vidkv_max_easy easy channels, and head_dim at most max_head_dim, the channels whose ranking
// keys fit the 48 KB of shared memory a launch gets without an opt-in (invalid_parameter above:
// within_device_limits).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cuda/selection.cuh"  // for_each_thread_item, launch_status, blocks_for
#include "tokred/policy/uniform_group.hpp"
#include "tokred/policy/vidkv.hpp"
#include "tokred/policy/vidkv_units.hpp"

namespace tokred {
namespace detail {
namespace cuda_vidkv {

/// Threads of every VidKV block. Provisional: measure 128 / 256 with bench_vidkv_cuda.
inline constexpr int threads = 256;

/// (head, token) rows each extremes block folds, at least: enough work per thread to hide the
/// loads, few enough blocks to fill the device. Provisional, as `threads`.
inline constexpr index_t rows_per_block = 64;

/// The extremes blocks of a chunk: one per rows_per_block rows, at most 1024.
inline index_t extreme_blocks(index_t rows) noexcept {
  const index_t b = (rows + rows_per_block - 1) / rows_per_block;
  return b < 1 ? 1 : b > 1024 ? 1024 : b;
}

/// The widest head the kernels take: the rank kernel stages two 32-bit keys per channel, the
/// scores kernel k + 2n ≤ D + vidkv_max_easy floats, each within 48 KB of shared memory.
inline constexpr index_t max_head_dim = 6144;
static_assert(2 * max_head_dim * sizeof(std::uint32_t) <= 48 * 1024, "tokred: the rank kernel's keys");
static_assert((max_head_dim + vidkv_max_easy) * sizeof(float) <= 48 * 1024, "tokred: the scores kernel's queries");

/// Whether the kernels take key layout `l` (invalid_parameter otherwise).
inline bool within_device_limits(const vidkv_key_layout& l) noexcept {
  return l.easy <= vidkv_max_easy && l.difficult + l.easy <= max_head_dim;
}

/// The twiddles of an n-point DFT, n ≤ vidkv_max_easy, as a kernel parameter.
struct twiddle_table {
  double cos[vidkv_max_easy];
  double sin[vidkv_max_easy];
};

inline twiddle_table twiddles_of(index_t n) noexcept {
  twiddle_table t{};
  if (n > 0) fill_twiddle_rows(t.cos, t.sin, n);
  return t;
}

/// The quantizer's workspace: the extremes of every (block, channel).
struct key_scratch {
  channel_extremes* extremes = nullptr;  // (blocks, D)
};

inline key_scratch carve_keys(arena& a, const vidkv_key_layout& l, const kv_problem& p) {
  key_scratch s;
  if (l.difficult > 0 && l.easy > 0) s.extremes = a.take<channel_extremes>(extreme_blocks(p.heads * p.tokens) * p.head_dim);
  return s;
}

template <class E>
__global__ void __launch_bounds__(threads)
    extremes_kernel(view<const E, 3, device_space> x, channel_extremes* out) {
  const index_t tokens = x.extent(1), dim = x.extent(2), rows = x.extent(0) * tokens, blocks = gridDim.x;
  const index_t r0 = rows * blockIdx.x / blocks, r1 = rows * (blockIdx.x + 1) / blocks;
  for (index_t c = threadIdx.x; c < dim; c += blockDim.x) {
    channel_extremes e;
    for (index_t r = r0; r < r1; ++r) e.add(widen(x(r / tokens, r % tokens, c)));
    out[blockIdx.x * dim + c] = e;
  }
}

/// One block: each channel's key from its blocks' extremes merged in order, then its place in
/// the channel list. Dynamic shared memory: D keys and D flags.
template <class E>
__global__ void __launch_bounds__(threads)
    rank_kernel(const channel_extremes* extremes, index_t blocks, index_t dim, index_t k, bool round_to_e,
                view<std::int64_t, 1, device_space> channels) {
  extern __shared__ std::uint32_t shared_keys[];  // (D,) keys, then (D,) difficult flags
  std::uint32_t* keys = shared_keys;
  std::uint32_t* difficult = shared_keys + dim;
  const bool ranked = extremes != nullptr;
  for (index_t c = threadIdx.x; c < dim; c += blockDim.x) {
    channel_extremes e;
    if (ranked)
      for (index_t b = 0; b < blocks; ++b) e.merge(extremes[b * dim + c]);
    keys[c] = ranked ? e.template key<E>(round_to_e) : 0u;
  }
  __syncthreads();
  const auto key = [&](index_t c) { return keys[c]; };
  for (index_t c = threadIdx.x; c < dim; c += blockDim.x) difficult[c] = ranked ? ranks_difficult(key, dim, k, c) : c < k;
  __syncthreads();
  const auto flag = [&](index_t c) { return difficult[c] != 0u; };
  for (index_t c = threadIdx.x; c < dim; c += blockDim.x) channels(channel_position(flag, k, c)) = c;
}

template <kv_scheme S, class E>
__global__ void __launch_bounds__(threads)
    difficult_quantize_kernel(vidkv_key_plan w, view<const E, 3, device_space> x,
                              view<const std::int64_t, 1, device_space> channels, uniform_packed<E, device_space> out) {
  for_each_thread_item(w.difficult_units(), [&](index_t u) { vidkv_difficult_quantize<S>(w, x, channels, out, u); });
}

template <class E>
__global__ void __launch_bounds__(threads)
    spectral_quantize_kernel(vidkv_key_plan w, const __grid_constant__ twiddle_table tw,
                             view<const E, 3, device_space> x, view<const std::int64_t, 1, device_space> channels,
                             uniform_packed<E, device_space> out) {
  for_each_thread_item(w.spectral_units(),
                       [&](index_t u) { vidkv_spectral_quantize(w, tw.cos, tw.sin, x, channels, out, u); });
}

template <kv_scheme S, class E, class Eout>
__global__ void __launch_bounds__(threads)
    difficult_dequantize_kernel(vidkv_key_plan w, vidkv_packed_keys<const E, device_space> in,
                                view<Eout, 3, device_space> y) {
  for_each_thread_item(w.difficult_units(), [&](index_t u) { vidkv_difficult_dequantize<S>(w, in, y, u); });
}

template <class E, class Eout>
__global__ void __launch_bounds__(threads)
    easy_dequantize_kernel(vidkv_key_plan w, const __grid_constant__ twiddle_table tw,
                           vidkv_packed_keys<const E, device_space> in, view<Eout, 3, device_space> y) {
  for_each_thread_item(w.easy_items(), [&](index_t i) { vidkv_easy_dequantize(w, tw.cos, tw.sin, in, y, i); });
}

/// Keys (threads) of one scores block.
inline constexpr int score_threads = 256;

/// One block per (query head, tile of score_threads keys): the head's two queries (k + 2n
/// floats: the difficult channels, then Q/n) staged in dynamic shared memory, then one key per
/// thread.
template <kv_scheme S, class E>
__global__ void __launch_bounds__(score_threads)
    scores_kernel(vidkv_key_plan w, const __grid_constant__ twiddle_table tw, vidkv_score_inputs<E, device_space> in,
                  index_t packed, index_t tiles, view<float, 2, device_space> scores) {
  extern __shared__ float staged[];  // (k + 2n,)
  const index_t q_heads = scores.extent(0), keys = scores.extent(1), kv_heads = w.heads;
  const index_t width = w.layout.difficult + 2 * w.layout.easy, per_kv = q_heads / kv_heads;
  for (index_t b = blockIdx.x; b < q_heads * tiles; b += gridDim.x) {  // uniform over the block
    const index_t h = b / tiles, t = b % tiles * score_threads + threadIdx.x;
    __syncthreads();  // the previous block's queries are no longer read
    if (packed > 0)
      for (index_t i = threadIdx.x; i < width; i += blockDim.x)
        staged[i] = vidkv_score_query(tw.cos, tw.sin, w.layout, in.queries, in.keys.channels, h, i);
    __syncthreads();
    if (t < keys) scores(h, t) = vidkv_logit<S>(w, staged, in, h, h / per_kv, packed, t);
  }
}

/// Blocks for `items` threads' work.
inline unsigned blocks_of(index_t items) noexcept { return blocks_for(items, threads); }

/// Launches the quantization of the chunk `x` ((heads, P, D), P a multiple of G) into the first
/// P tokens of `out`: the ranking (extremes and rank kernels), then the difficult and the
/// spectral units. `scratch` holds the extremes of at least extreme_blocks(heads·P) blocks.
template <class E>
status launch_key_quantize(const cuda& exec, const vidkv_key_layout& l, bool each_op, const view<const E, 3, device_space>& x,
                           const key_scratch& scratch, const vidkv_packed_keys<E, device_space>& out) {
  const kv_problem prob = kv_problem_of(x);
  const index_t blocks = extreme_blocks(prob.heads * prob.tokens);
  if (scratch.extremes != nullptr) {
    extremes_kernel<E><<<static_cast<unsigned>(blocks), threads, 0, exec.stream>>>(x, scratch.extremes);
    if (status s = launch_status(); s != status::ok) return s;
  }
  const std::size_t shared = 2 * static_cast<std::size_t>(prob.head_dim) * sizeof(std::uint32_t);
  rank_kernel<E><<<1, threads, shared, exec.stream>>>(scratch.extremes, blocks, prob.head_dim, l.difficult, each_op,
                                                      out.channels);
  if (status s = launch_status(); s != status::ok) return s;
  const vidkv_key_plan w{l, each_op, false, prob.heads, prob.tokens};
  const view<const std::int64_t, 1, device_space> channels = out.channels;
  if (l.difficult > 0) {
    with_difficult_scheme(l, [&](auto tag) {
      difficult_quantize_kernel<decltype(tag)::value, E>
          <<<blocks_of(w.difficult_units()), threads, 0, exec.stream>>>(w, x, channels, out.difficult);
    });
    if (status s = launch_status(); s != status::ok) return s;
  }
  if (l.easy > 0) {
    spectral_quantize_kernel<E><<<blocks_of(w.spectral_units()), threads, 0, exec.stream>>>(w, twiddles_of(l.easy), x,
                                                                                           channels, out.spectral);
    return launch_status();
  }
  return status::ok;
}

/// Launches the dequantization of packed keys into `y` ((heads, P, D): its tokens are the
/// packed ones read): the difficult units, then the easy items.
template <class E, class Eout>
status launch_key_dequantize(const cuda& exec, const vidkv_key_layout& l, bool each_op, bool vidkv_dequant,
                             const vidkv_packed_keys<const E, device_space>& in, const view<Eout, 3, device_space>& y) {
  const vidkv_key_plan w{l, each_op, vidkv_dequant, y.extent(0), y.extent(1)};
  if (l.difficult > 0) {
    with_difficult_scheme(l, [&](auto tag) {
      difficult_dequantize_kernel<decltype(tag)::value, E, Eout>
          <<<blocks_of(w.difficult_units()), threads, 0, exec.stream>>>(w, in, y);
    });
    if (status s = launch_status(); s != status::ok) return s;
  }
  if (l.easy > 0) {
    easy_dequantize_kernel<E, Eout><<<blocks_of(w.easy_items()), threads, 0, exec.stream>>>(w, twiddles_of(l.easy), in, y);
    return launch_status();
  }
  return status::ok;
}

}  // namespace cuda_vidkv
}  // namespace detail

/// VidKV key quantization on a CUDA stream: fp32, fp16 and bf16 chunks with any strides; packed
/// codes with inner stride 1; within_device_limits (≤ 256 easy channels, head_dim ≤ 6144). Workspace: the channel
/// extremes when some but not all channels are difficult (`workspace_bytes`). Checks run on the
/// host in the CPU backend's order (nothing is launched when one fails).
template <>
struct backend<vidkv_key_quantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const vidkv_key_quantize& p, const kv_problem& prob) {
    if (can_implement(p, prob) != status::ok) return 0;
    detail::arena counter;
    detail::cuda_vidkv::carve_keys(counter, vidkv_key_layout_of(p.keys, prob.head_dim), prob);
    return counter.used();
  }

  template <class E>
  static status apply(const cuda& exec, const vidkv_key_quantize& p, const kv_inputs<E, device_space>& in,
                      const vidkv_packed_keys<E, device_space>& out, workspace ws) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_vidkv;
    if (status s = detail::check_key_quantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(in.cache);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    if (!cu::within_device_limits(l)) return status::invalid_parameter;
    detail::arena counter;
    cu::carve_keys(counter, l, prob);
    if (status s = check_workspace(ws, counter.used()); s != status::ok) return s;
    detail::arena carver(ws);
    const cu::key_scratch scratch = cu::carve_keys(carver, l, prob);
    if (!carver.fits()) return status::workspace_too_small;
    return cu::launch_key_quantize(exec, l, p.keys.round_each_op, in.cache, scratch, out);
  }
};

/// VidKV key dequantization on a CUDA stream: any output element type and strides; no
/// workspace. `channels` is used as quantization wrote it (see the header comment).
template <>
struct backend<vidkv_key_dequantize, cuda> {
  static std::size_t workspace_bytes(const cuda&, const vidkv_key_dequantize&, const kv_problem&) { return 0; }

  template <class E, class Eout>
  static status apply(const cuda& exec, const vidkv_key_dequantize& p, const vidkv_packed_keys<const E, device_space>& in,
                      const kv_outputs<Eout, device_space>& out, workspace) {
    static_assert(is_element_v<E> && is_element_v<Eout>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_vidkv;
    if (status s = detail::check_key_dequantize(exec, p, in, out); s != status::ok) return s;
    const kv_problem prob = detail::kv_problem_of(out.cache);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    if (!cu::within_device_limits(l)) return status::invalid_parameter;
    if (detail::packed_keys_overlap(detail::used_parts(in, l), out.cache)) return status::aliasing;
    return cu::launch_key_dequantize(exec, l, p.keys.round_each_op, p.vidkv_dequant, in, out.cache);
  }
};

/// Logits from VidKV packed keys on a CUDA stream: one launch, no workspace; fp32/fp16/bf16
/// caches and queries of the same type, any strides; codes with inner stride 1; at most
/// vidkv_max_easy easy channels, head_dim at most max_head_dim. Each logit sums its key's
/// products in channel order in fp32 (within fp32 rounding of the dot product with the
/// dequantized key, as on the CPU; not the CPU's bits, whose SIMD sums run in another order).
/// `channels` is used as quantization wrote it: a corrupt list is not detected, but an entry naming no channel reads a zero query value,
/// never memory outside the query row.
template <>
struct backend<vidkv_key_scores, cuda> {
  static std::size_t workspace_bytes(const cuda&, const vidkv_key_scores&, const kv_problem&) { return 0; }

  template <class E>
  static status apply(const cuda& exec, const vidkv_key_scores& p, const vidkv_score_inputs<E, device_space>& in,
                      const packed_score_outputs<device_space>& out, workspace) {
    static_assert(is_element_v<E>, "tokred: caches are float, tokred::f16 or tokred::bf16");
    namespace cu = detail::cuda_vidkv;
    if (status s = detail::check_vidkv_score_call(exec, p, in, out, [] { return true; }); s != status::ok) return s;
    const kv_problem prob = detail::vidkv_score_problem(p, in);
    const vidkv_key_layout l = vidkv_key_layout_of(p.keys, prob.head_dim);
    if (!cu::within_device_limits(l)) return status::invalid_parameter;
    const detail::vidkv_key_plan w{l, false, p.vidkv_dequant, prob.heads, prob.tokens};
    const index_t tiles = (out.scores.extent(1) + cu::score_threads - 1) / cu::score_threads;
    const unsigned blocks = detail::blocks_for(out.scores.extent(0) * tiles, 1);
    const std::size_t shared = static_cast<std::size_t>(l.difficult + 2 * l.easy) * sizeof(float);
    detail::with_difficult_scheme(l, [&](auto tag) {
      cu::scores_kernel<decltype(tag)::value, E><<<blocks, cu::score_threads, shared, exec.stream>>>(
          w, cu::twiddles_of(l.easy), in, prob.tokens, tiles, out.scores);
    });
    return detail::launch_status();
  }
};

}  // namespace tokred
