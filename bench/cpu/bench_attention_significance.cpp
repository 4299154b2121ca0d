// bench/cpu/bench_attention_significance.cpp — attention_significance (FoPru) on CPU over LLaVA-1.5's
// CLIP attention map [1, 16, 577, 577], against a memcpy of the patch block it reads and the
// scalar reference (the double-precision oracle).
//
// Every axis reads the 16 × 576 × 576 block once (21 MB in fp32, more than the L2 of these
// machines): the floor is the memcpy of the same bytes, row by row. bytes_per_second counts the
// weight bytes read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/attention_significance.hpp>

#include "reference/attention_significance_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t heads = 16, side = 24, patches = side * side, length = patches + 1;  // [CLS] + 24 × 24

/// Softmax-sized weights of a [1, 16, 577, 577] map, built once per element type.
template <class E>
view<const E, 4> clip_map() {  // (maps, heads, queries, keys)
  static const std::vector<E> w = [] {
    std::vector<E> x(static_cast<std::size_t>(heads * length * length));
    testing::rng r(0xF0F2u);
    for (E& v : x) v = from_float<E>((1.0f + 0.9f * r.uniform()) / static_cast<float>(length));
    return x;
  }();
  return make_view(w.data(), 1, heads, length, length);
}

void count_block(benchmark::State& state, std::size_t element) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * heads * patches * patches *
                          static_cast<std::int64_t>(element));
}

/// state.range(0): 0 column, 1 row, 2 larger_variance.
template <class E>
void BM_attention_significance(benchmark::State& state) {
  const attention_significance p{static_cast<significance_axis>(state.range(0)), 1, 1};
  const attention_significance_inputs<E> in{image_grid(side, side), clip_map<E>()};
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, p, problem{in.grid, 0}));
  std::vector<float> scores(patches);  // (tokens,)
  if (!time_apply(state, p, in, score_outputs<>{make_view(scores.data(), patches)}, {scratch.data(), scratch.size()}))
    return;
  count_block(state, sizeof(E));
}

/// The floor: a memcpy of the block's 16 × 576 rows of 576 weights.
template <class E>
void BM_memcpy_block(benchmark::State& state) {
  const view<const E, 4> w = clip_map<E>();
  std::vector<E> copy(static_cast<std::size_t>(heads * patches * patches));
  for (auto _ : state) {
    for (index_t h = 0; h < heads; ++h)
      for (index_t q = 0; q < patches; ++q)
        std::memcpy(copy.data() + (h * patches + q) * patches, &w(0, h, 1 + q, 1), patches * sizeof(E));
    benchmark::ClobberMemory();
  }
  count_block(state, sizeof(E));
}

void BM_attention_significance_scalar_reference(benchmark::State& state) {
  const attention_significance p{significance_axis::larger_variance, 1, 1};
  for (auto _ : state) {
    const ref::significance_oracle o = ref::attention_significance(p, image_grid(side, side), clip_map<float>());
    benchmark::DoNotOptimize(o.column.data());
  }
  count_block(state, sizeof(float));
}

void axes(benchmark::internal::Benchmark* b) {
  b->Arg(0)->Arg(1)->Arg(2)->ArgName("axis")->Unit(benchmark::kMicrosecond);
}

BENCHMARK_TEMPLATE(BM_memcpy_block, float)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_memcpy_block, bf16)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_attention_significance, float)->Apply(axes);
BENCHMARK_TEMPLATE(BM_attention_significance, bf16)->Apply(axes);
BENCHMARK(BM_attention_significance_scalar_reference)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
