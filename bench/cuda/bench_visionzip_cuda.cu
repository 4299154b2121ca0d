// bench/cuda/bench_visionzip_cuda.cu — the CUDA visionzip against one device-to-device cudaMemcpy of
// its input rows and against the CPU backend (one share, this build's ISA).
//
// Shapes: LLaVA-1.5's 577 rows ([CLS] and 24 × 24 patches) of D = 1024, bf16, the paper's 54 + 10,
// with 64-wide keys as the metric; 1 image and 16 images (one call per image, all on one stream,
// sharing one workspace). Bytes processed = the rows once. After timing, image 0's outputs are
// checked against the CPU backend's, bit for bit.
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

constexpr index_t side = 24, rows_per_image = side * side + 1, dim = 1024, keys_dim = 64;

/// Args: images.
void shapes(benchmark::internal::Benchmark* b) { b->Arg(1)->Arg(16)->ArgName("images"); }

struct vzip_case {
  index_t images;
  std::vector<bf16> rows, keys;
  std::vector<float> scores;

  explicit vzip_case(const benchmark::State& s)
      : images(s.range(0)), rows(static_cast<std::size_t>(images * rows_per_image * dim)),
        keys(static_cast<std::size_t>(images * rows_per_image * keys_dim)),
        scores(static_cast<std::size_t>(images * side * side)) {
    for (std::size_t i = 0; i < rows.size(); ++i)
      rows[i] = from_float<bf16>(static_cast<float>(static_cast<int>(i * 2654435761ull % 255ull) - 127) / 64.0f);
    for (std::size_t i = 0; i < keys.size(); ++i)
      keys[i] = from_float<bf16>(static_cast<float>(static_cast<int>(i * 40503ull % 255ull) - 127) / 64.0f);
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = static_cast<float>(i * 7919ull % 1000ull) / 1000.0f;
  }
  std::int64_t bytes() const { return images * rows_per_image * dim * 2; }
  visionzip_inputs<bf16> host(index_t image) const {
    return {image_grid(side, side), view<const bf16, 2>(rows.data() + image * rows_per_image * dim, {rows_per_image, dim}),
            view<const float, 1>(scores.data() + image * side * side, {side * side}),
            view<const bf16, 2>(keys.data() + image * rows_per_image * keys_dim, {rows_per_image, keys_dim})};
  }
};

void count(benchmark::State& state, const vzip_case& c) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * c.bytes());
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * c.images * rows_per_image);
}

void BM_cuda_memcpy_rows(benchmark::State& state) {
  if (!have_device(state)) return;
  const vzip_case c(state);
  if (time_copy(state, static_cast<std::size_t>(c.bytes()))) count(state, c);
}

void BM_cuda_visionzip(benchmark::State& state) {
  if (!have_device(state)) return;
  const vzip_case c(state);
  const visionzip p{};
  const problem prob{image_grid(side, side), dim};
  const index_t kept = retained_count(p, prob);
  device_array<bf16> rows(c.rows), keys(c.keys), tokens(static_cast<std::size_t>(c.images * kept * dim));
  device_array<float> scores(c.scores);
  device_array<std::int64_t> source(static_cast<std::size_t>(c.images * kept));
  device_array<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  device_timer timer;
  if (!rows.ok() || !keys.ok() || !tokens.ok() || !scores.ok() || !source.ok() || !ws.ok() || !timer.ok())
    return state.SkipWithError("device setup failed");
  const auto enqueue = [&] {
    for (index_t image = 0; image < c.images; ++image) {
      const visionzip_inputs<bf16, device_space> in{
          prob.grid, view<const bf16, 2, device_space>(rows.get() + image * rows_per_image * dim, {rows_per_image, dim}),
          view<const float, 1, device_space>(scores.get() + image * side * side, {side * side}),
          view<const bf16, 2, device_space>(keys.get() + image * rows_per_image * keys_dim, {rows_per_image, keys_dim})};
      merge_outputs<bf16, device_space> out{};
      out.tokens = view<bf16, 2, device_space>(tokens.get() + image * kept * dim, {kept, dim});
      out.source = view<std::int64_t, 1, device_space>(source.get() + image * kept, {kept});
      if (apply(tokred::cuda{timer.stream()}, p, in, out, workspace{ws.get(), ws.size()}) != status::ok) return false;
    }
    return true;
  };
  if (!time_iterations(state, timer, enqueue)) return;
  std::vector<bf16> want_tokens(static_cast<std::size_t>(kept * dim));
  std::vector<std::int64_t> want_source(static_cast<std::size_t>(kept));
  std::vector<std::byte> host_ws(workspace_bytes(cpu<>{}, p, prob));
  merge_outputs<bf16> want{};
  want.tokens = view<bf16, 2>(want_tokens.data(), {kept, dim});
  want.source = view<std::int64_t, 1>(want_source.data(), {kept});
  const status host = apply(cpu<>{}, p, c.host(0), want, workspace{host_ws.data(), host_ws.size()});
  const std::vector<bf16> got_tokens = download(tokens.get(), kept * dim);
  const bool same = got_tokens.size() == want_tokens.size() &&
                    std::memcmp(got_tokens.data(), want_tokens.data(), want_tokens.size() * sizeof(bf16)) == 0 &&
                    download(source.get(), kept) == want_source;
  if (host != status::ok || !same) return state.SkipWithError("outputs differ from the CPU backend's");
  count(state, c);
}

void BM_cpu_visionzip(benchmark::State& state) {
  const vzip_case c(state);
  const visionzip p{};
  const problem prob{image_grid(side, side), dim};
  const index_t kept = retained_count(p, prob);
  std::vector<bf16> tokens(static_cast<std::size_t>(kept * dim));
  merge_outputs<bf16> out{};
  out.tokens = view<bf16, 2>(tokens.data(), {kept, dim});
  if (!time_cpu_images(state, p, prob, c.images, [&](index_t image) { return c.host(image); }, out)) return;
  count(state, c);
}

BENCHMARK(BM_cuda_memcpy_rows)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cuda_visionzip)->Apply(shapes)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_cpu_visionzip)->Arg(1)->ArgName("images")->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokred::bench
