// bench/cpu/bench_topk.cpp — the CPU topk: selection alone (only `source` requested) and
// selection with the kept rows, against one memcpy per kept row and the scalar reference.
//
// Every iteration ranks the next of `score_sets` score vectors (see bench_data.hpp), and the
// memcpy baseline moves the rows those scores keep, so all variants move the same rows.
// `shares` runs the `nth` shares of one call back to back on one thread: each share selects
// the whole group again (cpu/selection.hpp does not synchronise shares), so the difference to
// shares = 1 is what that duplicated selection costs.
//
// Bytes processed = scores read + rows read and written, or + indices written when only
// `source` is requested; items processed = tokens ranked (N).
// The target (docs/benchmarks.md): selecting from N = 9216 scores takes less time than
// gathering the kept rows at dim = 1024 (bench_gather).
#include <cstddef>

#include "bench_data.hpp"

#include "reference/gather_ref.hpp"

namespace tokred::bench {
namespace {

/// (tokens, keep_pct, shares) for selection alone.
void select_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({token_counts, keep_pcts, {1, 2}})->ArgNames({"tokens", "keep_pct", "shares"});
}

/// (tokens, dim, keep_pct, shares) for selection with rows.
void topk_rows_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({token_counts, row_dims, keep_pcts, {1, 2}})
      ->ArgNames({"tokens", "dim", "keep_pct", "shares"});
}

/// The score set after `set`, cycling.
int next_set(int set) { return set + 1 == score_sets ? 0 : set + 1; }

/// Runs all `shares` shares of one topk call in turn; false (with the error set) on failure.
template <class E>
bool run_shares(benchmark::State& state, const topk& policy, int shares,
                const selection_inputs<E>& in, const selection_outputs<E>& out, workspace ws) {
  for (int ith = 0; ith < shares; ++ith)
    if (const status s = apply(cpu<>{ith, shares}, policy, in, out, ws); s != status::ok) {
      state.SkipWithError(to_string(s));
      return false;
    }
  return true;
}

/// Bytes and items of a selection that reads `n` scores and writes `kept` indices.
void count_selection(benchmark::State& state, index_t n, index_t kept) {
  const auto bytes = n * static_cast<std::int64_t>(sizeof(float)) +
                     kept * static_cast<std::int64_t>(sizeof(std::int64_t));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
}

void BM_topk_select(benchmark::State& state) {
  const index_t n = state.range(0);
  const std::int64_t keep_pct = state.range(1);
  const int shares = static_cast<int>(state.range(2));
  const topk policy = budget_of(keep_pct);
  const token_grid grid = grid_of(n);
  const index_t kept_n = retained_count(policy, problem{grid, 0});
  const std::vector<view<const float, 1>> scores = score_views(n);       // score_sets × (tokens,)
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{0, shares}, policy, problem{grid, 0}));
  std::vector<std::int64_t> source(static_cast<std::size_t>(kept_n));  // (kept,)
  selection_inputs<float> in;
  in.grid = grid;
  selection_outputs<float> out;
  out.source = make_view(source.data(), kept_n);  // (kept,)
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    in.scores = scores[static_cast<std::size_t>(set)];  // (tokens,)
    if (!run_shares(state, policy, shares, in, out, {scratch.data(), scratch.size()})) return;
    benchmark::ClobberMemory();
  }
  if (source != kept_of(n, keep_pct, set)) state.SkipWithError("topk disagrees with the reference");
  count_selection(state, n, kept_n);
}

void BM_topk_select_ref(benchmark::State& state) {
  const index_t n = state.range(0);
  const topk policy = budget_of(state.range(1));
  const token_grid grid = grid_of(n);
  score_views(n);  // build all score sets before timing
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    const std::vector<std::int64_t> kept = ref::kept_indices(policy, grid, scores_of(n, set));  // (kept,)
    benchmark::DoNotOptimize(kept.data());
  }
  count_selection(state, n, retained_count(policy, problem{grid, 0}));
}

template <class E>
void BM_memcpy_rows(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const std::vector<const std::vector<std::int64_t>*> kept = kept_lists(n, state.range(2));
  const view<const E, 2> rows = token_rows<E>(n, dim);                 // (tokens, dim)
  const auto kept_n = static_cast<index_t>(kept[0]->size());
  std::vector<E> out(static_cast<std::size_t>(kept_n * dim));          // (kept, dim)
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    memcpy_rows(*kept[static_cast<std::size_t>(set)], rows.data_handle(), out.data(), dim);
    benchmark::ClobberMemory();
  }
  count_rows<E, E>(state, kept_n, dim, n, n * static_cast<std::int64_t>(sizeof(float)));
}

template <class E>
void BM_topk(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const std::int64_t keep_pct = state.range(2);
  const int shares = static_cast<int>(state.range(3));
  const topk policy = budget_of(keep_pct);
  const token_grid grid = grid_of(n);
  const index_t kept_n = retained_count(policy, problem{grid, dim});
  const std::vector<view<const float, 1>> scores = score_views(n);  // score_sets × (tokens,)
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{0, shares}, policy, problem{grid, dim}));
  std::vector<E> out_rows(static_cast<std::size_t>(kept_n * dim));  // (kept, dim)
  selection_inputs<E> in;
  in.grid = grid;
  in.tokens = token_rows<E>(n, dim);  // (tokens, dim)
  selection_outputs<E> out;
  out.tokens = make_view(out_rows.data(), kept_n, dim);  // (kept, dim)
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    in.scores = scores[static_cast<std::size_t>(set)];  // (tokens,)
    if (!run_shares(state, policy, shares, in, out, {scratch.data(), scratch.size()})) return;
    benchmark::ClobberMemory();
  }
  if (!spot_check(kept_of(n, keep_pct, set), in.tokens, view<const E, 2>(out.tokens)))
    state.SkipWithError("topk disagrees with the reference");
  count_rows<E, E>(state, kept_n, dim, n, n * static_cast<std::int64_t>(sizeof(float)));
}

template <class E>
void BM_topk_ref(benchmark::State& state) {
  const index_t n = state.range(0), dim = state.range(1);
  const topk policy = budget_of(state.range(2));
  const token_grid grid = grid_of(n);
  score_views(n);                                                    // build all score sets
  const view<const E, 2> rows = token_rows<E>(n, dim);              // (tokens, dim)
  const index_t kept_n = retained_count(policy, problem{grid, dim});
  std::vector<E> out_rows(static_cast<std::size_t>(kept_n * dim));  // (kept, dim)
  const view<E, 2> out = make_view(out_rows.data(), kept_n, dim);   // (kept, dim)
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    ref::gather_rows(ref::kept_indices(policy, grid, scores_of(n, set)), rows, out);
    benchmark::ClobberMemory();
  }
  count_rows<E, E>(state, kept_n, dim, n, n * static_cast<std::int64_t>(sizeof(float)));
}

BENCHMARK(BM_topk_select)->Apply(select_grid);
BENCHMARK(BM_topk_select_ref)
    ->ArgsProduct({token_counts, keep_pcts})
    ->ArgNames({"tokens", "keep_pct"});
BENCHMARK_TEMPLATE(BM_memcpy_rows, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_topk, float)->Apply(topk_rows_grid);
BENCHMARK_TEMPLATE(BM_topk_ref, float)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_memcpy_rows, bf16)->Apply(rows_grid);
BENCHMARK_TEMPLATE(BM_topk, bf16)->Apply(topk_rows_grid);
BENCHMARK_TEMPLATE(BM_topk_ref, bf16)->Apply(rows_grid);

}  // namespace
}  // namespace tokred::bench
