// bench/cpu/bench_pool.cpp — the CPU grid reducers (LLaVA-OneVision's 2 × 2 average and max,
// its ceil(H/2) bilinear resize, PLLaVA-style adaptive average to half the side) against two
// baselines: a memcpy of the input rows (the bandwidth bound) and the scalar reference of
// tests/reference/pool_ref.hpp.
//
// Bytes processed = input rows read (each distinct row once; 27 → 13 pooling never reads the last
// row and column) + output rows written; the memcpy baseline copies all N input rows to a buffer
// of the same size and counts 2·N rows. Items processed = input tokens.
// The target: every reducer reaches >= 60 % of the memcpy baseline's bandwidth, fp32 and bf16.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "bench_data.hpp"

#include "reference/pool_ref.hpp"

namespace tokred::bench {
namespace {

/// With --benchmark_repetitions, also report the fastest repetition: on a machine shared with
/// other work the median moves with the load, the minimum much less.
double fastest(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

/// (frames, side, dim): single images of 24², 27² and 32² tokens (LLaVA-1.5/PLLaVA, SigLIP in
/// LLaVA-OneVision, a 448-pixel tile) and videos of 8, 32 and 64 frames of 24²; a vision-tower
/// width (1024) and a Qwen2-7B width (3584). 64 frames of 3584-wide rows (0.5 GB in fp32) are
/// left out to keep the run short.
void pool_shapes(benchmark::internal::Benchmark* b) {
  for (const auto& s : std::vector<std::vector<std::int64_t>>{
           {1, 24, 1024}, {1, 27, 1024}, {1, 32, 1024}, {1, 24, 3584}, {1, 27, 3584}, {1, 32, 3584},
           {8, 24, 1024}, {8, 24, 3584}, {32, 24, 1024}, {64, 24, 1024}})
    b->Args(s);
  b->ArgNames({"frames", "side", "dim"});
  // Each shape runs in microseconds to a few milliseconds; 0.1 s per measurement is dozens to
  // thousands of iterations, and keeps 5 repetitions of the whole file near two minutes.
  b->MinTime(0.1)->ComputeStatistics("min", fastest);
}

/// The scalar reference is slow (double, one vector per row): single images only.
void ref_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1, 24, 1024})->Args({1, 27, 1024})->ArgNames({"frames", "side", "dim"})->MinTime(0.1);
  b->ComputeStatistics("min", fastest);
}

enum which { average_2x2, max_2x2, bilinear_half, adaptive_half };

template <int Which>
auto policy_for(const token_grid& g) {
  if constexpr (Which == average_2x2) return pool{};
  else if constexpr (Which == max_2x2) return pool{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true};
  else if constexpr (Which == bilinear_half) return bilinear{(g.height + 1) / 2, (g.width + 1) / 2, false};
  else return adaptive_pool{pool_kind::average, {g.frames, g.height / 2, g.width / 2}};
}

token_grid grid_of(const benchmark::State& state) {
  return {state.range(0), state.range(1), state.range(1)};
}

/// Distinct input rows a policy reads.
template <class Policy>
index_t rows_read(const Policy& p, const token_grid& g) {
  const token_grid out = output_grid(p, g);
  std::vector<char> touched(static_cast<std::size_t>(g.tokens()), 0);  // (tokens,)
  for (index_t j = 0; j < out.tokens(); ++j) {
    const auto box = detail::box_at(p, g, out, j);
    if constexpr (std::is_same_v<Policy, bilinear>) {
      for (index_t i : {box.x00, box.x01, box.x10, box.x11}) touched[static_cast<std::size_t>(i)] = 1;
    } else {
      detail::for_each_token(box, g, [&](index_t i) { touched[static_cast<std::size_t>(i)] = 1; });
    }
  }
  index_t n = 0;
  for (char t : touched) n += t;
  return n;
}

template <class Ein, class Eout>
void count_bytes(benchmark::State& state, index_t read_rows, index_t written_rows, index_t dim, index_t items) {
  const std::int64_t bytes = static_cast<std::int64_t>(dim) *
                             (static_cast<std::int64_t>(read_rows) * static_cast<std::int64_t>(sizeof(Ein)) +
                              static_cast<std::int64_t>(written_rows) * static_cast<std::int64_t>(sizeof(Eout)));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

/// True when frame 0 of `out` matches the oracle on frame 0 of the input (every benchmarked
/// policy treats frames independently): a cheap check that the timing is of a correct result.
template <class Policy, class E>
bool spot_check(const Policy& p, const token_grid& g, const view<const E, 2>& rows,  // (tokens, dim)
                const std::vector<E>& out) {                                        // (kept, dim)
  const token_grid frame{1, g.height, g.width};
  const index_t dim = rows.extent(1);
  const view<const E, 2> first(rows.data_handle(), {frame.tokens(), dim}, {rows.stride(0), rows.stride(1)});
  Policy one = p;
  if constexpr (std::is_same_v<Policy, adaptive_pool>) one.size.t = 1;
  const ref::grid_result want = ref::reduced(one, frame, first);
  for (std::size_t i = 0; i < want.values.size(); ++i) {
    const double got = static_cast<double>(to_float(out[i]));
    const double tolerance = std::is_same_v<E, float> ? 1e-5 : 1e-2;  // bf16: 8 bits of mantissa
    if (std::fabs(got - want.values[i]) > tolerance * (1.0 + std::fabs(want.values[i]))) return false;
  }
  return true;
}

template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const token_grid g = grid_of(state);
  const index_t n = g.tokens(), dim = state.range(2);
  const view<const E, 2> rows = token_rows<E>(n, dim);         // (tokens, dim)
  std::vector<E> copy(static_cast<std::size_t>(n * dim));       // (tokens, dim)
  for (auto _ : state) {
    std::memcpy(copy.data(), rows.data_handle(), copy.size() * sizeof(E));
    benchmark::ClobberMemory();
  }
  count_bytes<E, E>(state, n, n, dim, n);
}

template <int Which, class E>
void BM_reduce(benchmark::State& state) {
  const token_grid g = grid_of(state);
  const index_t n = g.tokens(), dim = state.range(2);
  const auto policy = policy_for<Which>(g);
  const index_t kept = retained_count(policy, problem{g, dim});
  std::vector<E> out_rows(static_cast<std::size_t>(kept * dim));  // (kept, dim)
  const grid_inputs<E> in{g, token_rows<E>(n, dim)};
  grid_outputs<E> out;
  out.tokens = make_view(out_rows.data(), kept, dim);  // (kept, dim)
  if (!time_apply(state, policy, in, out)) return;
  if (!spot_check(policy, g, in.tokens, out_rows)) state.SkipWithError("disagrees with the reference");
  count_bytes<E, E>(state, rows_read(policy, g), kept, dim, n);
}

template <int Which>
void BM_reduce_ref(benchmark::State& state) {
  const token_grid g = grid_of(state);
  const index_t n = g.tokens(), dim = state.range(2);
  const auto policy = policy_for<Which>(g);
  const view<const float, 2> rows = token_rows<float>(n, dim);  // (tokens, dim)
  for (auto _ : state) {
    ref::grid_result r = ref::reduced(policy, g, rows);
    benchmark::DoNotOptimize(r.values.data());
  }
  count_bytes<float, float>(state, rows_read(policy, g), retained_count(policy, problem{g, dim}), dim, n);
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, average_2x2, float)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, max_2x2, float)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, bilinear_half, float)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, adaptive_half, float)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, average_2x2, bf16)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, max_2x2, bf16)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, bilinear_half, bf16)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce, adaptive_half, bf16)->Apply(pool_shapes);
BENCHMARK_TEMPLATE(BM_reduce_ref, average_2x2)->Apply(ref_shapes);
BENCHMARK_TEMPLATE(BM_reduce_ref, bilinear_half)->Apply(ref_shapes);

}  // namespace
}  // namespace tokred::bench
