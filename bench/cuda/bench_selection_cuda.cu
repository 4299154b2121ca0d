// bench/cuda/bench_selection_cuda.cu — the CUDA gather and topk against one device-to-device
// cudaMemcpy of the kept bytes (the bound: the same bytes, moved without indexing).
//
// Shapes, inputs and counters are those of the CPU benchmarks (bench/cpu/bench_data.hpp), so
// the two backends' numbers compare row for row. Timing is manual: a cudaEvent pair around the
// enqueued work, so the host's launch overhead overlaps nothing and is not counted twice.
//
// Bytes processed = row bytes read + row bytes written (+ scores read for topk); items
// processed = kept tokens moved (gather) or tokens ranked (topk). Inputs are uploaded once per
// shape, outside the timed region; each benchmark checks its result once, after timing.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <tokred/cuda/tokred.cuh>
#include <utility>
#include <vector>

#include "cpu/bench_data.hpp"
#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

// ---------------------------------------------------------------------------------------------
// Device plumbing (timing, device arrays and the device check are in cuda/cuda_bench.cuh).

/// The token rows of `token_rows<E>(n, dim)` on the device, uploaded once per shape.
template <class E>
view<const E, 2, device_space> device_rows(index_t n, index_t dim) {
  static std::pair<index_t, index_t> shape{-1, -1};
  static std::unique_ptr<device_array<E>> rows;
  if (shape != std::pair<index_t, index_t>{n, dim}) {
    rows.reset();  // free the previous shape first: the largest is 151 MB
    const view<const E, 2> host = token_rows<E>(n, dim);  // (tokens, dim) contiguous
    rows = std::make_unique<device_array<E>>(
        std::vector<E>(host.data_handle(), host.data_handle() + n * dim));
    shape = {n, dim};
  }
  if (!rows->ok()) return {};
  return make_device_view<const E>(rows->get(), n, dim);  // (tokens, dim)
}

/// True when rows first, middle and last of the device output hold the rows `kept` names.
template <class E>
bool check_rows(const std::vector<std::int64_t>& kept, index_t n, index_t dim,
                const device_array<E>& out) {  // (kept, dim)
  const std::vector<E> host = out.download();
  if (host.empty()) return false;
  return spot_check(kept, token_rows<E>(n, dim),
                    make_view<const E>(host.data(), static_cast<index_t>(kept.size()), dim));
}

// ---------------------------------------------------------------------------------------------
// Benchmarks, all over rows_grid: (tokens, dim, keep_pct).

template <class E>
void BM_cuda_memcpy_kept(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t n = state.range(0), dim = state.range(1);
  const auto kept_n = static_cast<index_t>(kept_of(n, state.range(2)).size());
  const view<const E, 2, device_space> rows = device_rows<E>(n, dim);  // (tokens, dim)
  device_array<E> out(static_cast<std::size_t>(kept_n * dim));         // (kept, dim)
  device_timer timer;
  if (!rows.data_handle() || !out.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const std::size_t bytes = static_cast<std::size_t>(kept_n * dim) * sizeof(E);
  time_iterations(state, timer, [&] {
    return cudaMemcpyAsync(out.get(), rows.data_handle(), bytes, cudaMemcpyDeviceToDevice,
                           timer.stream()) == cudaSuccess;
  });
  count_rows<E, E>(state, kept_n, dim, kept_n);
}

template <class E>
void BM_cuda_gather(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t n = state.range(0), dim = state.range(1);
  const std::vector<std::int64_t>& kept = kept_of(n, state.range(2));  // (kept,)
  const auto kept_n = static_cast<index_t>(kept.size());
  const device_array<std::int64_t> index(kept);                      // (kept,)
  device_array<E> out_rows(static_cast<std::size_t>(kept_n * dim));  // (kept, dim)
  device_timer timer;
  const gather_inputs<E, device_space> in{grid_of(n),
                                          make_device_view<const std::int64_t>(index.get(), kept_n),
                                          device_rows<E>(n, dim)};
  if (!in.tokens.data_handle() || !index.ok() || !out_rows.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  selection_outputs<E, device_space> out;
  out.tokens = make_device_view(out_rows.get(), kept_n, dim);  // (kept, dim)
  const bool timed = time_iterations(state, timer, [&] {
    return apply(tokred::cuda{timer.stream()}, gather{}, in, out) == status::ok;
  });
  if (timed && !check_rows(kept, n, dim, out_rows))
    state.SkipWithError("gather disagrees with the reference");
  count_rows<E, E>(state, kept_n, dim, kept_n);
}

/// topk with the kept rows; every iteration ranks the same scores (a GPU has no branch
/// predictor to memorise them, unlike the CPU benchmark's reason for cycling score sets).
template <class E>
void BM_cuda_topk(benchmark::State& state) {
  if (!have_device(state)) return;
  const index_t n = state.range(0), dim = state.range(1);
  const std::int64_t keep_pct = state.range(2);
  const topk policy = budget_of(keep_pct);
  const token_grid grid = grid_of(n);
  const index_t kept_n = retained_count(policy, problem{grid, dim});
  const device_array<float> scores(scores_of(n));                    // (tokens,)
  device_array<E> out_rows(static_cast<std::size_t>(kept_n * dim));  // (kept, dim)
  const tokred::cuda probe{};
  device_array<std::byte> ws(workspace_bytes(probe, policy, problem{grid, dim}));
  device_timer timer;
  const selection_inputs<E, device_space> in{grid, make_device_view<const float>(scores.get(), n),
                                             device_rows<E>(n, dim)};
  if (!in.tokens.data_handle() || !scores.ok() || !out_rows.ok() || !ws.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  selection_outputs<E, device_space> out;
  out.tokens = make_device_view(out_rows.get(), kept_n, dim);  // (kept, dim)
  const bool timed = time_iterations(state, timer, [&] {
    return apply(tokred::cuda{timer.stream()}, policy, in, out, workspace{ws.get(), ws.size()}) ==
           status::ok;
  });
  if (timed && !check_rows(kept_of(n, keep_pct), n, dim, out_rows))
    state.SkipWithError("topk disagrees with the reference");
  count_rows<E, E>(state, kept_n, dim, n, n * static_cast<std::int64_t>(sizeof(float)));
}

BENCHMARK_TEMPLATE(BM_cuda_memcpy_kept, float)->Apply(rows_grid)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_gather, float)->Apply(rows_grid)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_topk, float)->Apply(rows_grid)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_memcpy_kept, bf16)->Apply(rows_grid)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_gather, bf16)->Apply(rows_grid)->UseManualTime();
BENCHMARK_TEMPLATE(BM_cuda_topk, bf16)->Apply(rows_grid)->UseManualTime();

}  // namespace
}  // namespace tokred::bench
