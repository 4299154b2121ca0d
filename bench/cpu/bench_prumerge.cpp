// bench/cpu/bench_prumerge.cpp — prumerge_merge on CPU, against a memcpy of its input rows (the
// floor for reading every feature row once) and the scalar reference (the oracle: cosines in
// double, a full sort per kept token, the rows in double).
//
// Shapes: LLaVA-1.5's 576 patches, D = 1024 (CLIP-L's width, what the original merges) and 4096
// (an LLM's width), keys 1024 wide (CLIP-L's k_proj, no head split, as the original compares
// them). Kept counts: 50 (PruMerge's typical ~5 % plus outliers) and 144 (PruMerge+'s ~25 %),
// 32 neighbours, the extra token on. The work is the K × N key cosines, 2·K·N·1024 flops:
// the GFLOP/s counter shows how close the cosines run to the FMA peak.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/prumerge.hpp>

#include "reference/prumerge_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t key_dim = 1024;

/// (dim, kept).
void shape_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({row_dims, {50, 144}})->ArgNames({"dim", "kept"})->Unit(benchmark::kMicrosecond);
}

/// The inputs of one shape: 24 × 24 patch rows, their keys and scores, and `kept` of them
/// spread over the grid in a scrambled order.
template <class E>
struct merge_data {
  token_grid grid = image_grid(24, 24);
  view<const E, 2> tokens;      // (N, dim)
  view<const E, 2> keys;        // (N, key_dim)
  view<const float, 1> scores;  // (N,)
  std::vector<std::int64_t> kept;

  merge_data(index_t dim, index_t count) {
    const index_t n = grid.tokens();
    tokens = token_rows<E>(n, dim);
    keys = token_rows<E>(n, key_dim);
    scores = make_view<const float>(scores_of(n).data(), n);
    for (index_t q = 0; q < count; ++q) kept.push_back((q * 233) % n);  // 233 is prime: distinct
  }
  prumerge_inputs<E> inputs() const {
    return {grid, make_view<const std::int64_t>(kept.data(), static_cast<index_t>(kept.size())), tokens, scores, keys};
  }
};

/// The whole policy, one share, tokens, source, positions and neighbours written.
template <class E>
void BM_prumerge(benchmark::State& state) {
  const index_t dim = state.range(0), count = state.range(1);
  const merge_data<E> data(dim, count);
  const prumerge_merge policy{};
  const problem prob{data.grid, dim};
  const index_t rows = retained_count(policy, prob, count);
  std::vector<E> tokens(static_cast<std::size_t>(rows * dim));                         // (rows, dim)
  std::vector<std::int64_t> source(static_cast<std::size_t>(rows));                    // (rows,)
  std::vector<std::int32_t> positions(static_cast<std::size_t>(rows * 3));             // (rows, 3)
  std::vector<std::int64_t> near(static_cast<std::size_t>(count * policy.neighbours));  // (kept, 32)
  const prumerge_outputs<E> out{make_view(tokens.data(), rows, dim), make_view(source.data(), rows),
                                make_view(positions.data(), rows, 3), make_view(near.data(), count, policy.neighbours)};
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  if (!time_apply(state, policy, data.inputs(), out, {scratch.data(), scratch.size()})) return;
  state.counters["GFLOP/s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * 2.0 * static_cast<double>(count * data.grid.tokens() * key_dim) * 1e-9,
      benchmark::Counter::kIsRate);
}

/// The floor: one memcpy of the N input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const merge_data<E> data(state.range(0), state.range(1));
  time_memcpy(state, data.tokens);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 * data.tokens.size() *
                          static_cast<std::int64_t>(sizeof(E)));
}

/// The scalar reference: the oracle's neighbours and rows, in double.
void BM_prumerge_scalar_reference(benchmark::State& state) {
  const merge_data<float> data(state.range(0), state.range(1));
  const std::vector<float>& scores = scores_of(data.grid.tokens());
  for (auto _ : state) {
    const ref::prumerge_result r = ref::prumerge(prumerge_merge{}, data.grid, data.kept, data.tokens, scores, data.keys);
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(shape_grid);
BENCHMARK_TEMPLATE(BM_prumerge, float)->Apply(shape_grid);
BENCHMARK(BM_prumerge_scalar_reference)->Apply(shape_grid)->Iterations(2);
BENCHMARK_TEMPLATE(BM_prumerge, bf16)->Apply(shape_grid);

}  // namespace
}  // namespace tokred::bench
