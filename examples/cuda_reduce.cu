// cuda_reduce.cu — the same topk reduction on a CUDA stream and on the CPU, compared.
//
// tokred picks the backend from the exec argument's type: tokred::cuda{stream} with device views
// and a device workspace. It allocates nothing and never synchronises the device; the caller
// owns the memory and the stream. Needs a CUDA GPU to run.
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include <tokred/cuda/tokred.cuh>

namespace {

bool cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  std::printf("%s: %s\n", what, cudaGetErrorString(e));
  return false;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("cuda_reduce: no CUDA device, nothing to compare\n");
    return 77;  // the conventional "skipped" exit code, as the CUDA tests use
  }
  constexpr tokred::index_t n = 576, dim = 1024;  // a 24 x 24 grid of 1024-wide bf16 tokens
  std::vector<tokred::bf16> host_rows(n * dim);   // (tokens, dim)
  std::vector<float> host_scores(n);              // (tokens,)
  for (tokred::index_t i = 0; i < n * dim; ++i)
    host_rows[static_cast<std::size_t>(i)] = tokred::from_float<tokred::bf16>(std::sin(0.01f * static_cast<float>(i)));
  for (tokred::index_t i = 0; i < n; ++i)
    host_scores[static_cast<std::size_t>(i)] = std::cos(0.37f * static_cast<float>(i));

  const tokred::problem prob{tokred::image_grid(24, 24), dim};
  const tokred::topk policy{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)};
  const tokred::index_t k = tokred::retained_count(policy, prob);  // 144

  tokred::bf16* rows = nullptr;
  float* scores = nullptr;
  tokred::bf16* kept = nullptr;
  std::int32_t* thw = nullptr;
  void* scratch = nullptr;
  cudaStream_t stream = nullptr;
  const std::size_t scratch_bytes = tokred::workspace_bytes(tokred::cuda{}, policy, prob);
  if (!cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate") ||
      !cuda_ok(cudaMalloc(&rows, host_rows.size() * sizeof(tokred::bf16)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&scores, host_scores.size() * sizeof(float)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&kept, static_cast<std::size_t>(k * dim) * sizeof(tokred::bf16)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&thw, static_cast<std::size_t>(k * 3) * sizeof(std::int32_t)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&scratch, scratch_bytes), "cudaMalloc"))
    return 1;
  cudaMemcpyAsync(rows, host_rows.data(), host_rows.size() * sizeof(tokred::bf16), cudaMemcpyHostToDevice, stream);
  cudaMemcpyAsync(scores, host_scores.data(), host_scores.size() * sizeof(float), cudaMemcpyHostToDevice, stream);

  // example-begin cuda
  // Device views, a device workspace, the caller's stream: the same policy and the same calls.
  const tokred::selection_inputs<tokred::bf16, tokred::device_space> in{
      prob.grid, tokred::make_device_view(scores, n),    // (tokens,)
      tokred::make_device_view(rows, n, dim)};           // (tokens, dim)
  const tokred::selection_outputs<tokred::bf16, tokred::device_space> out{
      tokred::make_device_view(kept, k, dim), {},        // (kept, dim)
      tokred::make_device_view(thw, k, 3)};              // (kept, 3)
  const tokred::status s = tokred::apply(tokred::cuda{stream}, policy, in, out, {scratch, scratch_bytes});
  // s == ok means the work is queued on `stream`; errors at launch come back as device_error.
  // example-end cuda
  if (s != tokred::status::ok) {
    std::printf("apply on CUDA failed: %s\n", tokred::to_string(s));
    return 1;
  }

  std::vector<tokred::bf16> gpu_kept(static_cast<std::size_t>(k * dim));  // (kept, dim)
  std::vector<std::int32_t> gpu_thw(static_cast<std::size_t>(k * 3));      // (kept, 3)
  cudaMemcpyAsync(gpu_kept.data(), kept, gpu_kept.size() * sizeof(tokred::bf16), cudaMemcpyDeviceToHost, stream);
  cudaMemcpyAsync(gpu_thw.data(), thw, gpu_thw.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost, stream);
  if (!cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize")) return 1;

  // The CPU backend on the host copies: indices and rows must agree bit for bit.
  std::vector<tokred::bf16> cpu_kept(static_cast<std::size_t>(k * dim));  // (kept, dim)
  std::vector<std::int32_t> cpu_thw(static_cast<std::size_t>(k * 3));     // (kept, 3)
  std::vector<std::byte> cpu_scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  const tokred::selection_inputs<tokred::bf16> cpu_in{prob.grid, tokred::make_view(host_scores.data(), n),
                                                      tokred::make_view(host_rows.data(), n, dim)};
  const tokred::selection_outputs<tokred::bf16> cpu_out{tokred::make_view(cpu_kept.data(), k, dim), {},
                                                        tokred::make_view(cpu_thw.data(), k, 3)};
  if (tokred::apply(tokred::cpu{}, policy, cpu_in, cpu_out, {cpu_scratch.data(), cpu_scratch.size()}) !=
      tokred::status::ok)
    return 1;
  const bool same = std::memcmp(gpu_kept.data(), cpu_kept.data(), gpu_kept.size() * sizeof(tokred::bf16)) == 0 &&
                    gpu_thw == cpu_thw;
  std::printf("topk kept %lld of %lld tokens on CUDA (workspace %zu bytes); CPU and CUDA %s\n",
              static_cast<long long>(k), static_cast<long long>(n), scratch_bytes,
              same ? "agree bit for bit" : "DISAGREE");

  cudaFree(scratch);
  cudaFree(thw);
  cudaFree(kept);
  cudaFree(scores);
  cudaFree(rows);
  cudaStreamDestroy(stream);
  return same ? 0 : 1;
}
