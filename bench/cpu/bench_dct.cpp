// bench/cpu/bench_dct.cpp — the CPU DCT low-pass (Fourier-VLM) on its two engines, against its
// baselines: a memcpy of the input rows, the scalar double oracle of tests/reference (small size
// only), and plain Eigen GEMMs of the same shapes on fp32 buffers.
//
// Shapes: single frames of 24 × 24 (LLaVA-1.5), 27 × 27 (SigLIP-so400m / LLaVA-OneVision), 32 × 32
// and 64 × 64, and 8 frames of 24 × 24; dims 1024 (CLIP-L), 1152 (SigLIP), 3584 (Qwen2-VL-7B's
// merged tokens); keeps of 2/3 per side (Fourier-VLM's Qwen rule) and 1/2 (its LLaVA setting,
// 24 → 12). One share (cpu{0, 1}): the time one core takes.
//
// Counters: bytes = input rows read + output rows written; items = input tokens; GFLOP/s counts
// the dense matrix form, 2·m·n·k per GEMM pass (W pass: m = kw, k = W, n = T·H·D; H pass: m = kh,
// k = H, n = T·kw·D), for every engine and for the plain GEMMs, so the rates compare times. The
// kernel engine does about half those flops (the even/odd split): its rate is dense-equivalent.
// The target: 27 × 27 × 1152 in under 2 ms on one core.
#define TOKRED_DCT_EIGEN  // the Eigen engine, measured beside the kernel

#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include <Eigen/Core>

#include <tokred/cpu/dct.hpp>

#include "reference/dct_ref.hpp"
#include "support/cases.hpp"

namespace tokred::bench {
namespace {

using detail::dct_engine;

/// (frames, side, dim, keep rule): rule 0 keeps max(int(side · 2/3), 1) per side, rule 1 half.
void dct_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"frames", "side", "dim", "rule"});
  for (std::int64_t dim : {1024, 1152, 3584})
    for (std::int64_t rule : {0, 1}) {
      for (std::int64_t side : {24, 27, 32, 64}) b->Args({1, side, dim, rule});
      b->Args({8, 24, dim, rule});
    }
}

dct_lowpass policy_of(const benchmark::State& state) {
  const token_grid grid{state.range(0), state.range(1), state.range(1)};
  return state.range(3) == 0 ? dct_lowpass_for_ratio(grid) : dct_lowpass_for_ratio(grid, 0.5);
}

/// Contiguous token rows of element type E, built once per shape (not timed).
template <class E>
view<const E, 2> rows_of(index_t n, index_t dim) {
  static std::map<std::pair<index_t, index_t>, testing::token_matrix<E>> cache;
  auto [it, fresh] = cache.try_emplace({n, dim});
  if (fresh) it->second = testing::make_tokens<E>(n, dim, testing::layout::contiguous, 0xDC7u);
  return it->second.rows;  // (tokens, dim)
}

/// 2·m·n·k summed over the dense passes of a spatial low-pass.
double dense_flops(const token_grid& g, const dct_lowpass& p, index_t dim) {
  const double t = static_cast<double>(g.frames), d = static_cast<double>(dim);
  const double w_pass = 2.0 * p.keep.w * g.width * (t * g.height * d);
  const double h_pass = 2.0 * p.keep.h * g.height * (t * p.keep.w * d);
  return w_pass + h_pass;
}

template <class Ein, class Eout>
void set_counters(benchmark::State& state, const token_grid& g, const dct_lowpass& p, index_t dim) {
  const auto n = static_cast<std::int64_t>(g.tokens()), kept = output_grid(p, g).tokens();
  const std::int64_t bytes = n * dim * static_cast<std::int64_t>(sizeof(Ein)) +
                             kept * dim * static_cast<std::int64_t>(sizeof(Eout));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * n);
  state.counters["GFLOP/s"] = benchmark::Counter(
      dense_flops(g, p, dim) * static_cast<double>(state.iterations()) * 1e-9,
      benchmark::Counter::kIsRate);
}

template <class E, dct_engine Engine>
void BM_dct(benchmark::State& state) {
  using impl = detail::cpu_dct<compile_time_arch, Engine>;
  const dct_lowpass p = policy_of(state);
  const token_grid grid{state.range(0), state.range(1), state.range(1)};
  const index_t dim = state.range(2), kept = output_grid(p, grid).tokens();
  const grid_inputs<E> in{grid, rows_of<E>(grid.tokens(), dim)};
  std::vector<E> rows(static_cast<std::size_t>(kept * dim));  // (kept, dim)
  grid_outputs<E> out;
  out.tokens = make_view(rows.data(), kept, dim);
  std::vector<std::byte> scratch(impl::workspace_bytes(cpu{}, p, problem{grid, dim}));
  for (auto _ : state) {
    if (const status s = impl::apply(cpu{}, p, in, out, {scratch.data(), scratch.size()});
        s != status::ok) {
      state.SkipWithError(to_string(s));
      return;
    }
    benchmark::ClobberMemory();
  }
  set_counters<E, E>(state, grid, p, dim);
}

/// The lower bound of any pass over the tokens: one memcpy of the input rows.
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const token_grid grid{state.range(0), state.range(1), state.range(1)};
  const index_t dim = state.range(2);
  const view<const E, 2> x = rows_of<E>(grid.tokens(), dim);  // (tokens, dim)
  std::vector<E> copy(static_cast<std::size_t>(grid.tokens() * dim));  // (tokens, dim)
  for (auto _ : state) {
    std::memcpy(copy.data(), x.data_handle(), copy.size() * sizeof(E));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                          static_cast<std::int64_t>(copy.size() * sizeof(E)));
}

/// The dense matrix form with plain Eigen products (allowed to allocate, no packing of typed
/// rows, no blocking of its own): W pass one (kw × W)·(W × D) per row, H pass one
/// (kh × H)·(H × kw·D) per frame, on fp32 rows already in memory.
void BM_eigen_gemm(benchmark::State& state) {
  using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const dct_lowpass p = policy_of(state);
  const token_grid g{state.range(0), state.range(1), state.range(1)};
  const index_t dim = state.range(2), kw = p.keep.w, kh = p.keep.h;
  const row_major aw = row_major::Random(kw, g.width), ah = row_major::Random(kh, g.height);
  const view<const float, 2> x = rows_of<float>(g.tokens(), dim);      // (tokens, dim)
  row_major lines(g.height * kw, dim), y(kh, kw * dim);               // (H·kw, dim), (kh, kw·dim)
  for (auto _ : state) {
    for (index_t t = 0; t < g.frames; ++t) {
      for (index_t h = 0; h < g.height; ++h)
        lines.middleRows(h * kw, kw).noalias() =
            aw * Eigen::Map<const row_major>(&x((t * g.height + h) * g.width, 0), g.width, dim);
      y.noalias() = ah * Eigen::Map<const row_major>(lines.data(), g.height, kw * dim);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters<float, float>(state, g, p, dim);
}

/// The scalar double oracle (direct sums), on 24 × 24 × 64 only: it is slow by design.
void BM_dct_reference(benchmark::State& state) {
  const token_grid grid = image_grid(24, 24);
  const dct_lowpass p = dct_lowpass_for_ratio(grid);
  const view<const float, 2> x = rows_of<float>(576, 64);  // (tokens, dim)
  for (auto _ : state) {
    std::vector<double> y = ref::dct_lowpass(p, grid, x);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters<float, float>(state, grid, p, 64);
}

/// The kernel engine at the oracle's size, for the ratio.
void BM_dct_small(benchmark::State& state) {
  const token_grid grid = image_grid(24, 24);
  const dct_lowpass p = dct_lowpass_for_ratio(grid);
  const grid_inputs<float> in{grid, rows_of<float>(576, 64)};
  std::vector<float> rows(256 * 64);  // (kept, dim)
  grid_outputs<float> out;
  out.tokens = make_view(rows.data(), 256, 64);
  std::vector<std::byte> scratch(workspace_bytes(cpu{}, p, problem{grid, 64}));
  for (auto _ : state) {
    if (apply(cpu{}, p, in, out, {scratch.data(), scratch.size()}) != status::ok) {
      state.SkipWithError("apply failed");
      return;
    }
    benchmark::ClobberMemory();
  }
  set_counters<float, float>(state, grid, p, 64);
}

BENCHMARK_TEMPLATE(BM_dct, float, dct_engine::kernel)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_dct, float, dct_engine::eigen)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_dct, bf16, dct_engine::kernel)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_dct, bf16, dct_engine::eigen)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_eigen_gemm)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_memcpy_input, bf16)->Apply(dct_shapes)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dct_reference)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dct_small)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokred::bench
