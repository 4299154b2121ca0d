// The CUDA counterpart of topk_check.cpp, built against tokred::cuda: the same 3 of 8 tokens kept
// on a CUDA stream. Exits 77 (skipped) when no CUDA device is usable, 1 on a wrong result.
#include <tokred/cuda/tokred.cuh>

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

namespace {

constexpr int skipped = 77;

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

bool cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::printf("%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return skipped;
  }
  constexpr int n = 8;
  constexpr int dim = 3;
  constexpr int k = 3;
  const tokred::token_grid grid = tokred::image_grid(2, 4);
  float rows[n * dim];  // (tokens, dim); token i holds (i, 10 + i, 100 + i)
  for (int i = 0; i < n; ++i) {
    rows[i * dim + 0] = static_cast<float>(i);
    rows[i * dim + 1] = static_cast<float>(10 + i);
    rows[i * dim + 2] = static_cast<float>(100 + i);
  }
  const float scores[n] = {0.1f, 0.9f, -1.0f, 0.5f, 0.9f, 0.2f, 3.0f, 0.0f};  // (tokens,)
  const std::int64_t want_source[k] = {1, 4, 6};

  const tokred::topk policy{tokred::keep_budget::count(k)};
  const tokred::problem prob{grid, dim};
  const tokred::cuda exec{};
  const std::size_t ws_bytes = tokred::workspace_bytes(exec, policy, prob);

  float* d_rows = nullptr;
  float* d_scores = nullptr;
  tokred::bf16* d_kept = nullptr;
  std::int64_t* d_source = nullptr;
  void* d_ws = nullptr;
  if (!cuda_ok(cudaMalloc(&d_rows, sizeof rows), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&d_scores, sizeof scores), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&d_kept, k * dim * sizeof(tokred::bf16)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&d_source, k * sizeof(std::int64_t)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&d_ws, ws_bytes), "cudaMalloc"))
    return 1;
  cudaMemcpy(d_rows, rows, sizeof rows, cudaMemcpyHostToDevice);
  cudaMemcpy(d_scores, scores, sizeof scores, cudaMemcpyHostToDevice);

  const tokred::selection_inputs<float, tokred::device_space> in{
      grid, tokred::make_device_view(static_cast<const float*>(d_scores), n),
      tokred::make_device_view(static_cast<const float*>(d_rows), n, dim)};
  const tokred::selection_outputs<tokred::bf16, tokred::device_space> out{
      tokred::make_device_view(d_kept, k, dim), tokred::make_device_view(d_source, k), {}};
  const tokred::status s = tokred::apply(exec, policy, in, out, {d_ws, ws_bytes});
  expect(s == tokred::status::ok, "apply returns ok");
  if (s != tokred::status::ok) std::printf("apply: %s\n", tokred::to_string(s));

  tokred::bf16 kept[k * dim] = {};
  std::int64_t source[k] = {};
  expect(
      cuda_ok(cudaMemcpy(kept, d_kept, sizeof kept, cudaMemcpyDeviceToHost), "copy back") &&
          cuda_ok(cudaMemcpy(source, d_source, sizeof source, cudaMemcpyDeviceToHost), "copy back"),
      "results copied back");
  for (int j = 0; j < k; ++j) {
    expect(source[j] == want_source[j], "source index");
    for (int c = 0; c < dim; ++c)
      expect(tokred::to_float(kept[j * dim + c]) == rows[want_source[j] * dim + c], "kept row");
  }
  cudaFree(d_rows);
  cudaFree(d_scores);
  cudaFree(d_kept);
  cudaFree(d_source);
  cudaFree(d_ws);
  std::printf("tokred::cuda: topk kept tokens %lld %lld %lld: %s\n",
              static_cast<long long>(source[0]), static_cast<long long>(source[1]),
              static_cast<long long>(source[2]), failures == 0 ? "ok" : "WRONG");
  return failures == 0 ? 0 : 1;
}
