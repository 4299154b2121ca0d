// bench/cpu/bench_visionzip.cpp — visionzip on CPU, against a memcpy of its input rows (every
// row is read once: copied if dominant, summed if not) and the scalar reference (the oracle: a
// stable sort of the scores, the cosines in double, the rows in double).
//
// Shapes: LLaVA-1.5's image (24 × 24 patches after [CLS], the paper's 54 + 10) and a video-sized
// sequence (8 frames of 24 × 24 in one call, 8 × (54 + 10) kept), D = 1024 (the CLIP-L width) and
// 4096; 64-wide keys as the metric (CLIP-L's head dim), as the original compares them. The video
// case is one call over all 8 frames (the global variant, C = 80 targets for 4177 remaining rows);
// the paper's per-frame use is 8 calls of the image case.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/visionzip.hpp>

#include "reference/visionzip_ref.hpp"

namespace tokred::bench {
namespace {

/// (frames, dim): an image and an 8-frame video of 24 × 24 patches each.
void shape_grid(benchmark::internal::Benchmark* b) {
  for (const std::int64_t frames : {1, 8})
    for (const std::int64_t dim : row_dims) b->Args({frames, dim});
  b->ArgNames({"frames", "dim"})->Unit(benchmark::kMicrosecond);
}

/// The paper's 64-token budget per frame: 54 dominant ([CLS] included) and 10 contextual.
visionzip policy_of(index_t frames) { return visionzip{54 * frames, 10 * frames}; }

/// The inputs of one shape: [CLS] and the patch rows, scores in [-1, 1), 64-wide keys.
template <class E>
struct vzip_data {
  token_grid grid;
  view<const E, 2> tokens;  // (1 + N, dim)
  view<const E, 2> keys;    // (1 + N, 64)
  view<const float, 1> scores;  // (N,)

  vzip_data(index_t frames, index_t dim) : grid{frames, 24, 24} {
    const index_t n = grid.tokens();
    tokens = token_rows<E>(n + 1, dim);
    keys = token_rows<E>(n + 1, 64);
    scores = make_view<const float>(scores_of(n).data(), n);
  }
  visionzip_inputs<E> inputs() const { return {grid, tokens, scores, keys}; }
};

/// The whole policy, every output requested, one share.
template <class E>
void BM_visionzip(benchmark::State& state) {
  const index_t frames = state.range(0), dim = state.range(1);
  const vzip_data<E> data(frames, dim);
  const visionzip policy = policy_of(frames);
  const problem prob{data.grid, dim};
  const index_t kept = retained_count(policy, prob), rows = visionzip_rows(policy, prob);
  merge_storage<E> storage(kept, rows, dim);
  const merge_outputs<E> out = storage.outputs();
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  if (!time_apply(state, policy, data.inputs(), out, {scratch.data(), scratch.size()})) return;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * (rows + kept) * dim *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The floor: one memcpy of the 1 + N input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const vzip_data<E> data(state.range(0), state.range(1));
  time_memcpy(state, data.tokens);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * data.tokens.size() *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The scalar reference: the oracle's decisions and rows, in double.
void BM_visionzip_scalar_reference(benchmark::State& state) {
  const index_t frames = state.range(0), dim = state.range(1);
  const vzip_data<float> data(frames, dim);
  const visionzip policy = policy_of(frames);
  const std::vector<float>& scores = scores_of(data.grid.tokens());
  for (auto _ : state) {
    const ref::visionzip_decisions d = ref::visionzip_decide(policy, data.grid.tokens(), scores, data.keys);
    const ref::visionzip_result r = ref::visionzip_outputs(policy, data.grid, data.tokens, d);
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_visionzip, float)->Apply(shape_grid);
BENCHMARK(BM_visionzip_scalar_reference)->Apply(shape_grid)->Iterations(3);
BENCHMARK_TEMPLATE(BM_visionzip, bf16)->Args({1, 1024})->Args({8, 1024})->ArgNames({"frames", "dim"})
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokred::bench
