// bench/cpu/bench_pipeline.cpp — a three-stage chain, pool 2 × 2 | ToMe (a quarter of what
// arrives) | DivPrune (a tenth of the originals), as one pipeline against:
//   the stages one by one   each stage's own apply on buffers allocated once: the chain's target is
//                           this sum plus 5 % (its own bookkeeping: carried provenance, assign)
//   a memcpy of the input   the floor of any pass over the tokens
//   the scalar reference    the stages' oracles (tests/reference), in double, chained
// Bytes processed = the input rows once. Items = input tokens.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/pipeline.hpp>

#include "reference/diversity_ref.hpp"
#include "reference/pool_ref.hpp"
#include "reference/tome_ref.hpp"

namespace tokred::bench {
namespace {

/// (frames, side, dim): LLaVA-1.5's 24², LLaVA-OneVision's 27², and an 8-frame 24² video.
void chain_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& s : std::vector<std::vector<std::int64_t>>{{1, 24, 1024}, {1, 27, 1024}, {1, 24, 4096}, {8, 24, 1024}})
    b->Args(s);
  b->ArgNames({"frames", "side", "dim"})->Unit(benchmark::kMicrosecond);
}

token_grid grid_arg(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(1)};
}

/// The chain: its stages as separate policies (for the one-by-one baseline) and as one pipeline.
struct chain_policies {
  pool pooling{};
  tome_share merging{0.25, 0};
  divprune diverse;
  explicit chain_policies(index_t n) : diverse{keep_budget::count(n / 10)} {}
  auto chain() const { return make_pipeline(pooling, merging, diverse); }
};

template <class E>
void BM_pipeline(benchmark::State& state) {
  const token_grid grid = grid_arg(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  const chain_policies policies(n);
  const auto chain = policies.chain();
  const problem prob{grid, dim};
  const index_t kept = retained_count(chain, prob);
  std::vector<E> tokens(static_cast<std::size_t>(kept * dim));
  std::vector<std::int64_t> source(static_cast<std::size_t>(kept)), assign(static_cast<std::size_t>(n));
  std::vector<std::int32_t> positions(static_cast<std::size_t>(kept * 3));
  std::vector<float> sizes(static_cast<std::size_t>(kept));
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, chain, prob));
  pipeline_inputs<E> in;
  in.grid = grid;
  in.tokens = token_rows<E>(n, dim);
  const pipeline_outputs<E> out{make_view(tokens.data(), kept, dim), make_view(source.data(), kept),
                                make_view(positions.data(), kept, 3), make_view(sizes.data(), kept),
                                make_view(assign.data(), n)};
  if (!time_apply(state, chain, in, out, {scratch.data(), scratch.size()})) return;
  count_per_iteration(state, n * dim * static_cast<std::int64_t>(sizeof(E)), n);
}

/// The same three stages, each through its own apply, with the outputs the chain needs (rows,
/// stage-local source and assign, the pooled sizes ToMe weighs by); buffers and workspaces allocated once, outside the timing.
template <class E>
void BM_stages_one_by_one(benchmark::State& state) {
  const token_grid grid = grid_arg(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  const chain_policies policies(n);
  const token_grid pooled = output_grid(policies.pooling, grid);
  const index_t p = pooled.tokens();
  const tome merge{static_cast<index_t>(0.25 * static_cast<double>(p)), 0};
  const index_t m = retained_count(merge, problem{pooled, dim});
  const index_t k = retained_count(policies.diverse, problem{sequence_grid(m), dim});

  std::vector<E> rows1(static_cast<std::size_t>(p * dim)), rows2(static_cast<std::size_t>(m * dim)),
      rows3(static_cast<std::size_t>(k * dim));
  std::vector<std::int64_t> src1(static_cast<std::size_t>(p)), src2(static_cast<std::size_t>(m)),
      src3(static_cast<std::size_t>(k)), assign2(static_cast<std::size_t>(p));
  std::vector<float> sizes1(static_cast<std::size_t>(p));  // ToMe weighs by the originals per token
  std::vector<std::byte> ws2(workspace_bytes(cpu<>{}, merge, problem{pooled, dim}));
  std::vector<std::byte> ws3(workspace_bytes(cpu<>{}, policies.diverse, problem{sequence_grid(m), dim}));

  grid_inputs<E> gi;
  gi.grid = grid;
  gi.tokens = token_rows<E>(n, dim);
  const grid_outputs<E> go{make_view(rows1.data(), p, dim), make_view(src1.data(), p), {}, make_view(sizes1.data(), p)};
  merge_inputs<E> mi;
  mi.grid = pooled;
  mi.tokens = make_view(static_cast<const E*>(rows1.data()), p, dim);
  mi.sizes = make_view(static_cast<const float*>(sizes1.data()), p);
  merge_outputs<E> mo;
  mo.tokens = make_view(rows2.data(), m, dim);
  mo.source = make_view(src2.data(), m);
  mo.assign = make_view(assign2.data(), p);
  diversity_inputs<E> di;
  di.grid = sequence_grid(m);
  di.tokens = make_view(static_cast<const E*>(rows2.data()), m, dim);
  diversity_outputs<E> dout;
  dout.tokens = make_view(rows3.data(), k, dim);
  dout.source = make_view(src3.data(), k);
  for (auto _ : state) {
    status s = apply(cpu<>{}, policies.pooling, gi, go);
    if (s == status::ok) s = apply(cpu<>{}, merge, mi, mo, {ws2.data(), ws2.size()});
    if (s == status::ok) s = apply(cpu<>{}, policies.diverse, di, dout, {ws3.data(), ws3.size()});
    if (s != status::ok) {
      state.SkipWithError(to_string(s));
      return;
    }
    benchmark::ClobberMemory();
  }
  count_per_iteration(state, n * dim * static_cast<std::int64_t>(sizeof(E)), n);
}

void BM_memcpy(benchmark::State& state) {
  const token_grid grid = grid_arg(state);
  time_memcpy(state, token_rows<float>(grid.tokens(), state.range(2)));
  count_per_iteration(state, grid.tokens() * state.range(2) * static_cast<std::int64_t>(sizeof(float)), grid.tokens());
}

/// The stages' oracles chained: pooled in double, ToMe's matching and merge in double, then
/// DivPrune's greedy picks on the full distance matrix.
void BM_scalar_reference(benchmark::State& state) {
  const token_grid grid = grid_arg(state);
  const index_t n = grid.tokens(), dim = state.range(2);
  const chain_policies policies(n);
  const view<const float, 2> rows = token_rows<float>(n, dim);
  for (auto _ : state) {
    const ref::grid_result pooled = ref::pooled(policies.pooling, grid, rows);
    const index_t p = pooled.out.tokens();
    const std::vector<float> pooled_rows(pooled.values.begin(), pooled.values.end());
    const view<const float, 2> pv = make_view(pooled_rows.data(), p, dim);
    const tome merge{static_cast<index_t>(0.25 * static_cast<double>(p)), 0};
    const ref::tome_result merged = ref::tome_all(merge, pooled.out, pv, pv);
    const index_t m = static_cast<index_t>(merged.source.size());
    const std::vector<float> merged_rows(merged.tokens.begin(), merged.tokens.end());
    const ref::greedy_rule rule = ref::rule_of(policies.diverse, make_view(merged_rows.data(), m, dim));
    benchmark::DoNotOptimize(ref::greedy_picks(rule, n / 10));
  }
  count_per_iteration(state, n * dim * static_cast<std::int64_t>(sizeof(float)), n);
}

BENCHMARK(BM_memcpy)->Apply(chain_shapes);
BENCHMARK_TEMPLATE(BM_pipeline, float)->Apply(chain_shapes);
BENCHMARK_TEMPLATE(BM_stages_one_by_one, float)->Apply(chain_shapes);
BENCHMARK_TEMPLATE(BM_pipeline, bf16)->Apply(chain_shapes);
BENCHMARK_TEMPLATE(BM_stages_one_by_one, bf16)->Apply(chain_shapes);
BENCHMARK(BM_scalar_reference)->Args({1, 24, 1024})->ArgNames({"frames", "side", "dim"})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
