// bench/cpu/bench_gather.cpp — the CPU gather of kept rows against its two baselines: one memcpy
// per kept row (the bound) and the scalar reference of tests/reference. Also the converting
// gathers (bf16 -> fp32, fp32 -> bf16), which run the SIMD conversions of <tokred/cpu/simd.hpp>.
//
// Bytes processed = row bytes read + row bytes written; items processed = kept tokens moved.
// The target (docs/benchmarks.md): gather reaches >= 70 % of the memcpy baseline's bandwidth
// for dim >= 1024, fp32 and bf16.
#include "bench_data.hpp"

#include "reference/gather_ref.hpp"

namespace tokred::bench {
namespace {

template <class E>
void BM_memcpy_rows(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const std::vector<std::int64_t>& kept = kept_of(n, state.range(2));  // (kept,)
  const view<const E, 2> rows = token_rows<E>(n, dim);                  // (tokens, dim)
  std::vector<E> out(kept.size() * static_cast<std::size_t>(dim));      // (kept, dim)
  for (auto _ : state) {
    memcpy_rows(kept, rows.data_handle(), out.data(), dim);
    benchmark::ClobberMemory();
  }
  const auto kept_n = static_cast<index_t>(kept.size());
  if (!spot_check(kept, rows, make_view<const E>(out.data(), kept_n, dim)))
    state.SkipWithError("memcpy baseline moved the wrong rows");
  count_rows<E, E>(state, kept_n, dim, kept_n);
}

template <class Ein, class Eout>
void BM_gather(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const std::vector<std::int64_t>& kept = kept_of(n, state.range(2));  // (kept,)
  const auto kept_n = static_cast<index_t>(kept.size());
  std::vector<Eout> out_rows(kept.size() * static_cast<std::size_t>(dim));  // (kept, dim)
  const gather_inputs<Ein> in{grid_of(n), make_view(kept.data(), kept_n), token_rows<Ein>(n, dim)};
  selection_outputs<Eout> out;
  out.tokens = make_view(out_rows.data(), kept_n, dim);  // (kept, dim)
  if (!time_apply(state, gather{}, in, out)) return;
  if (!spot_check(kept, in.tokens, view<const Eout, 2>(out.tokens)))
    state.SkipWithError("gather disagrees with the reference");
  count_rows<Ein, Eout>(state, kept_n, dim, kept_n);
}

template <class Ein, class Eout>
void BM_gather_ref(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const std::vector<std::int64_t>& kept = kept_of(n, state.range(2));  // (kept,)
  const auto kept_n = static_cast<index_t>(kept.size());
  const view<const Ein, 2> rows = token_rows<Ein>(n, dim);                  // (tokens, dim)
  std::vector<Eout> out_rows(kept.size() * static_cast<std::size_t>(dim));  // (kept, dim)
  const view<Eout, 2> out = make_view(out_rows.data(), kept_n, dim);         // (kept, dim)
  for (auto _ : state) {
    ref::gather_rows(kept, rows, out);
    benchmark::ClobberMemory();
  }
  count_rows<Ein, Eout>(state, kept_n, dim, kept_n);
}

BENCHMARK_TEMPLATE(BM_memcpy_rows, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather, float, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather_ref, float, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_memcpy_rows, bf16)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather, bf16, bf16)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather_ref, bf16, bf16)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather, bf16, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather_ref, bf16, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather, float, bf16)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_gather_ref, float, bf16)->Apply(rows_grid);

}  // namespace
}  // namespace tokred::bench
