// bench/cuda/bench_attention_scores_cuda.cu — the CUDA attention scores (FastV's importance)
// against one device-to-device cudaMemcpy of the bytes they must read, and against the CPU
// backend (one share, this build's ISA) on the same inputs.
//
// Shapes: Qwen2-7B's attention, 28 query heads over 4 kv heads of 128, bf16; an image or video
// span of N = 576 (24 × 24), 2304 (48 × 48) and 11 664 (16 frames × 27 × 27) tokens between 35
// system tokens and 40 text tokens.
//   fused   fused_attention_score{mean, 35}, one query row (FastV's last prompt token) and 8 rows
//           (PyramidDrop's averaged rows): reads the kv heads' keys, 4 · keys · 128 values. Bytes
//           processed = those key bytes; the memcpy baseline copies them.
//   weights attention_score{mean, 35} from the eager weights of that row, (1, 1, 28, keys): bytes
//           processed = the span's 28 · N weights.
// Items = tokens scored. Each benchmark checks its scores once after timing against the CPU
// backend (within 10⁻⁵ relative for the fused score, bit for bit for the weights).
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

constexpr index_t heads = 28, kv_heads = 4, head_dim = 128, system_tokens = 35, text_tokens = 40;

token_grid grid_of(const benchmark::State& state) {
  switch (state.range(0)) {
    case 576: return {1, 24, 24};
    case 2304: return {1, 48, 48};
    default: return {16, 27, 27};
  }
}

index_t keys_of(const token_grid& g) { return system_tokens + g.tokens() + text_tokens; }

/// Values of a hash in [-amplitude, amplitude), exact in bf16.
template <class E>
std::vector<E> values(index_t count, float amplitude, std::uint64_t seed) {
  std::vector<E> x(static_cast<std::size_t>(count));
  for (index_t i = 0; i < count; ++i) {
    const auto k = static_cast<int>((static_cast<std::uint64_t>(i) + seed) * 2654435761ull % 255ull) - 127;
    x[static_cast<std::size_t>(i)] = from_float<E>(amplitude * static_cast<float>(k) / 128.0f);
  }
  return x;
}

void count(benchmark::State& state, std::int64_t bytes, index_t tokens) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * tokens);
}

/// Args: span tokens, query rows.
void fused_shapes(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({{576, 2304, 11664}, {1, 8}})->ArgNames({"tokens", "rows"});
}

std::int64_t key_bytes(const token_grid& g) { return kv_heads * keys_of(g) * head_dim * 2; }

/// One device-to-device copy of the keys' bytes: what reading them once costs.
void BM_cuda_memcpy_keys(benchmark::State& state) {
  if (!have_device(state)) return;
  const token_grid g = grid_of(state);
  if (time_copy(state, static_cast<std::size_t>(key_bytes(g)))) count(state, key_bytes(g), g.tokens());
}

/// The fused score's inputs on the host and the device, and the CPU backend's scores.
struct fused_inputs {
  token_grid g;
  index_t rows;
  std::vector<bf16> query, keys;
  std::vector<float> want;
  bool cpu_ok = false;

  explicit fused_inputs(const benchmark::State& state)
      : g(grid_of(state)), rows(state.range(1)), query(values<bf16>(rows * heads * head_dim, 2.0f, 1)),
        keys(values<bf16>(kv_heads * keys_of(g) * head_dim, 1.0f, 2)), want(static_cast<std::size_t>(g.tokens())) {}

  fused_attention_inputs<bf16> host() const {
    return {g, view<const bf16, 3>(query.data(), {rows, heads, head_dim}),
            view<const bf16, 3>(keys.data(), {kv_heads, keys_of(g), head_dim})};
  }
  void run_cpu() {
    const fused_attention_score p{head_reduce::mean, system_tokens};
    std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, problem{g, head_dim}));
    cpu_ok = apply(cpu<>{}, p, host(), score_outputs<>{view<float, 1>(want.data(), {g.tokens()})},
                   workspace{ws.data(), ws.size()}) == status::ok;
  }
};

void BM_cuda_fused_attention_score(benchmark::State& state) {
  if (!have_device(state)) return;
  fused_inputs in(state);
  device_array<bf16> dq(in.query), dk(in.keys);
  device_array<float> scores(static_cast<std::size_t>(in.g.tokens()));
  const fused_attention_score p{head_reduce::mean, system_tokens};
  const tokred::cuda probe;
  device_array<std::byte> ws(workspace_bytes(probe, p, problem{in.g, head_dim}));
  device_timer timer;
  if (!dq.ok() || !dk.ok() || !scores.ok() || !ws.ok() || !timer.ok()) return state.SkipWithError("device setup failed");
  const fused_attention_inputs<bf16, device_space> din{in.g, view<const bf16, 3, device_space>(dq.get(), {in.rows, heads, head_dim}),
                                                       view<const bf16, 3, device_space>(dk.get(), {kv_heads, keys_of(in.g), head_dim})};
  const score_outputs<device_space> out{view<float, 1, device_space>(scores.get(), {in.g.tokens()})};
  if (!time_iterations(state, timer, [&] {
        return apply(tokred::cuda{timer.stream()}, p, din, out, workspace{ws.get(), ws.size()}) == status::ok;
      }))
    return;
  in.run_cpu();
  const std::vector<float> got = scores.download();
  double worst = 0.0;
  for (std::size_t j = 0; j < got.size() && j < in.want.size(); ++j)
    worst = std::max(worst, std::fabs(static_cast<double>(got[j]) - in.want[j]) / std::fabs(static_cast<double>(in.want[j])));
  if (!in.cpu_ok || got.size() != in.want.size() || !(worst <= 1e-5)) return state.SkipWithError("scores differ from the CPU backend's");
  count(state, key_bytes(in.g), in.g.tokens());
}

/// The CPU backend on the same inputs.
void BM_cpu_fused_attention_score(benchmark::State& state) {
  fused_inputs in(state);
  const fused_attention_score p{head_reduce::mean, system_tokens};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, problem{in.g, head_dim}));
  const fused_attention_inputs<bf16> host = in.host();
  for (auto _ : state) {
    if (apply(cpu<>{}, p, host, score_outputs<>{view<float, 1>(in.want.data(), {in.g.tokens()})},
              workspace{ws.data(), ws.size()}) != status::ok)
      return state.SkipWithError("CPU fused score failed");
    benchmark::DoNotOptimize(in.want.data());
  }
  count(state, key_bytes(in.g), in.g.tokens());
}

/// Args: span tokens.
void weights_shapes(benchmark::internal::Benchmark* b) {
  b->Args({576})->Args({2304})->Args({11664})->ArgNames({"tokens"});
}

void BM_cuda_attention_score(benchmark::State& state) {
  if (!have_device(state)) return;
  const token_grid g = grid_of(state);
  const std::vector<bf16> w = values<bf16>(heads * keys_of(g), 0.01f, 3);
  device_array<bf16> dw(w);
  device_array<float> scores(static_cast<std::size_t>(g.tokens()));
  device_timer timer;
  if (!dw.ok() || !scores.ok() || !timer.ok()) return state.SkipWithError("device setup failed");
  const attention_score p{head_reduce::mean, system_tokens};
  const attention_score_inputs<bf16, device_space> in{g, view<const bf16, 4, device_space>(dw.get(), {1, 1, heads, keys_of(g)})};
  const score_outputs<device_space> out{view<float, 1, device_space>(scores.get(), {g.tokens()})};
  if (!time_iterations(state, timer, [&] { return apply(tokred::cuda{timer.stream()}, p, in, out) == status::ok; })) return;
  std::vector<float> want(static_cast<std::size_t>(g.tokens()));
  const status host = apply(cpu<>{}, p, attention_score_inputs<bf16>{g, view<const bf16, 4>(w.data(), {1, 1, heads, keys_of(g)})},
                            score_outputs<>{view<float, 1>(want.data(), {g.tokens()})});
  const std::vector<float> got = scores.download();
  if (host != status::ok || got.size() != want.size() || std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0)
    return state.SkipWithError("scores differ from the CPU backend's");
  count(state, heads * g.tokens() * 2, g.tokens());
}

BENCHMARK(BM_cuda_memcpy_keys)->Apply(fused_shapes)->UseManualTime();
BENCHMARK(BM_cuda_fused_attention_score)->Apply(fused_shapes)->UseManualTime();
BENCHMARK(BM_cpu_fused_attention_score)->Apply(fused_shapes)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_cuda_attention_score)->Apply(weights_shapes)->UseManualTime();

}  // namespace
}  // namespace tokred::bench
