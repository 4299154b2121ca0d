// bench/cuda/bench_tome_cuda.cu — the CUDA tome (ToMe's bipartite matching and merge) against one
// device-to-device cudaMemcpy of its input rows and against the CPU backend (one share, this
// build's ISA).
//
// Shape: the issue's target, 16 images × 576 tokens (24 × 24) × 1024 channels, bf16, r = 144 per
// image (a quarter of the tokens): one tome call per image, all on one stream, sharing one
// workspace (stream order keeps them apart). Also 1 image, to see the launch overhead. Counters:
// bytes processed = the input rows once; `TFLOPs` = 2·(N/2)²·D per image, the similarity work
// (tome's matching runs on CUDA cores in fp32 chains: see <tokred/cuda/tome.cuh>). After timing,
// image 0's outputs are checked against the CPU backend's, bit for bit.
#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/cuda_bench.cuh"

namespace tokred::bench {
namespace {

constexpr index_t side = 24, dim = 1024, merged_per_image = 144;

/// Args: images.
void shapes(benchmark::internal::Benchmark* b) { b->Arg(1)->Arg(16)->ArgName("images"); }

struct tome_case {
  index_t images, n = side * side;
  std::vector<bf16> rows;

  explicit tome_case(const benchmark::State& s)
      : images(s.range(0)), rows(static_cast<std::size_t>(images * n * dim)) {
    for (std::size_t i = 0; i < rows.size(); ++i)
      rows[i] = from_float<bf16>(static_cast<float>(static_cast<int>(i * 2654435761ull % 255ull) - 127) / 64.0f);
  }
  std::int64_t bytes() const { return images * n * dim * 2; }
  index_t kept() const { return n - merged_per_image; }
  /// Image `image`'s inputs on the host.
  merge_inputs<bf16> host_inputs(index_t image) const {
    return {image_grid(side, side), view<const bf16, 2>(rows.data() + image * n * dim, {n, dim}), {}, {}, {}, {}, {}, {}};
  }
};

void count(benchmark::State& state, const tome_case& c) {
  const double flops = 2.0 * static_cast<double>(c.n / 2) * static_cast<double>(c.n / 2) * dim * c.images;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * c.bytes());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * c.images * c.n);
  state.counters["TFLOPs"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_cuda_memcpy_rows(benchmark::State& state) {
  if (!have_device(state)) return;
  const tome_case c(state);
  if (time_copy(state, static_cast<std::size_t>(c.bytes()))) count(state, c);
}

void BM_cuda_tome(benchmark::State& state) {
  if (!have_device(state)) return;
  const tome_case c(state);
  const tome p{merged_per_image};
  const problem prob{image_grid(side, side), dim};
  const index_t kept = c.kept();
  device_array<bf16> rows(c.rows), tokens(static_cast<std::size_t>(c.images * kept * dim));
  device_array<float> sizes(static_cast<std::size_t>(c.images * kept));
  device_array<std::int64_t> source(static_cast<std::size_t>(c.images * kept));
  device_array<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  device_timer timer;
  if (!rows.ok() || !tokens.ok() || !sizes.ok() || !source.ok() || !ws.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const auto enqueue = [&] {
    for (index_t image = 0; image < c.images; ++image) {
      const merge_inputs<bf16, device_space> in{
          prob.grid, view<const bf16, 2, device_space>(rows.get() + image * c.n * dim, {c.n, dim}), {}, {}, {}, {}, {}, {}};
      merge_outputs<bf16, device_space> out{};
      out.tokens = view<bf16, 2, device_space>(tokens.get() + image * kept * dim, {kept, dim});
      out.source = view<std::int64_t, 1, device_space>(source.get() + image * kept, {kept});
      out.sizes = view<float, 1, device_space>(sizes.get() + image * kept, {kept});
      if (apply(tokred::cuda{timer.stream()}, p, in, out, workspace{ws.get(), ws.size()}) != status::ok) return false;
    }
    return true;
  };
  if (!time_iterations(state, timer, enqueue)) return;
  std::vector<bf16> want_tokens(static_cast<std::size_t>(kept * dim));
  std::vector<std::int64_t> want_source(static_cast<std::size_t>(kept));
  std::vector<float> want_sizes(static_cast<std::size_t>(kept));
  std::vector<std::byte> host_ws(workspace_bytes(cpu<>{}, p, prob));
  merge_outputs<bf16> want{};
  want.tokens = view<bf16, 2>(want_tokens.data(), {kept, dim});
  want.source = view<std::int64_t, 1>(want_source.data(), {kept});
  want.sizes = view<float, 1>(want_sizes.data(), {kept});
  const status host = apply(cpu<>{}, p, c.host_inputs(0), want,
                            workspace{host_ws.data(), host_ws.size()});
  const std::vector<bf16> got_tokens = download(tokens.get(), kept * dim);
  const std::vector<std::int64_t> got_source = download(source.get(), kept);
  const std::vector<float> got_sizes = download(sizes.get(), kept);
  const bool same = got_tokens.size() == want_tokens.size() &&
                    std::memcmp(got_tokens.data(), want_tokens.data(), want_tokens.size() * sizeof(bf16)) == 0 &&
                    got_source == want_source && got_sizes == want_sizes;
  if (host != status::ok || !same) return state.SkipWithError("outputs differ from the CPU backend's");
  count(state, c);
}

void BM_cpu_tome(benchmark::State& state) {
  const tome_case c(state);
  const tome p{merged_per_image};
  const problem prob{image_grid(side, side), dim};
  const index_t kept = c.kept();
  std::vector<bf16> tokens(static_cast<std::size_t>(kept * dim));
  merge_outputs<bf16> out{};
  out.tokens = view<bf16, 2>(tokens.data(), {kept, dim});
  if (!time_cpu_images(state, p, prob, c.images, [&](index_t image) { return c.host_inputs(image); }, out)) return;
  count(state, c);
}

BENCHMARK(BM_cuda_memcpy_rows)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cuda_tome)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cpu_tome)->Arg(1)->ArgName("images")->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tokred::bench
