// cuda_evs.cu — vLLM's Efficient Video Sampling on a CUDA stream: temporal dissimilarity scores,
// then topk with EVS's budget, the kept rows and their (t, h, w) positions written on the device;
// the scores compared with the CPU backend's.
//
// The video is 8 frames of 24 × 24 bf16 tokens, 1024 wide: a still background with a patch
// that moves one slot per frame. EVS keeps frame 0 whole (its scores are 255) and, of the later
// frames, the tokens that changed most. Two launches' worth of calls on one stream, no
// allocation inside tokred and no synchronisation until the caller copies the result back.
// Needs a CUDA GPU to run.
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

/// Token (t, h, w): the background, or the patch where it stands in frame t.
float value(tokred::index_t t, tokred::index_t h, tokred::index_t w, tokred::index_t c) {
  const bool patch = h >= 8 && h < 12 && w >= 4 + t && w < 8 + t;
  return patch ? std::cos(0.05f * static_cast<float>(c + 7 * t)) : std::sin(0.01f * static_cast<float>(c + 31 * (h * 24 + w)));
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("cuda_evs: no CUDA device, nothing to compare\n");
    return 77;  // the conventional "skipped" exit code, as the CUDA tests use
  }
  const tokred::token_grid grid{8, 24, 24};
  constexpr tokred::index_t dim = 1024;
  const tokred::index_t n = grid.tokens();
  std::vector<tokred::bf16> host_rows(static_cast<std::size_t>(n * dim));  // (tokens, dim)
  for (tokred::index_t i = 0; i < n; ++i) {
    const tokred::token_position p = grid.position(i);
    for (tokred::index_t c = 0; c < dim; ++c)
      host_rows[static_cast<std::size_t>(i * dim + c)] = tokred::from_float<tokred::bf16>(value(p.t, p.h, p.w, c));
  }

  // example-begin cuda-evs
  // EVS at pruning rate 0.75: dissimilarity to the previous frame's slot, then the global topk.
  const tokred::temporal_similarity score = tokred::temporal_similarity::evs();
  const tokred::topk keep{tokred::evs_budget(0.75, grid.frame_tokens())};
  const tokred::problem prob{grid, dim};
  const tokred::index_t k = tokred::retained_count(keep, prob);  // max(576, 4608 / 4) = 1152
  const std::size_t scratch_bytes = tokred::workspace_bytes(tokred::cuda{}, keep, prob);
  // example-end cuda-evs

  tokred::bf16* rows = nullptr;
  float* scores = nullptr;
  tokred::bf16* kept = nullptr;
  std::int32_t* thw = nullptr;
  void* scratch = nullptr;
  cudaStream_t stream = nullptr;
  if (!cuda_ok(cudaStreamCreate(&stream), "cudaStreamCreate") ||
      !cuda_ok(cudaMalloc(&rows, host_rows.size() * sizeof(tokred::bf16)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&scores, static_cast<std::size_t>(n) * sizeof(float)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&kept, static_cast<std::size_t>(k * dim) * sizeof(tokred::bf16)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&thw, static_cast<std::size_t>(k * 3) * sizeof(std::int32_t)), "cudaMalloc") ||
      !cuda_ok(cudaMalloc(&scratch, scratch_bytes), "cudaMalloc"))
    return 1;
  cudaMemcpyAsync(rows, host_rows.data(), host_rows.size() * sizeof(tokred::bf16), cudaMemcpyHostToDevice, stream);

  // example-begin cuda-evs-apply
  const tokred::cuda exec{stream};
  const auto tokens = tokred::make_device_view(static_cast<const tokred::bf16*>(rows), n, dim);  // (tokens, dim)
  tokred::status s = tokred::apply(exec, score, tokred::feature_score_inputs<tokred::bf16, tokred::device_space>{grid, tokens, {}},
                                   tokred::score_outputs<tokred::device_space>{tokred::make_device_view(scores, n)});
  if (s == tokred::status::ok)
    s = tokred::apply(exec, keep,
                      tokred::selection_inputs<tokred::bf16, tokred::device_space>{
                          grid, tokred::make_device_view(static_cast<const float*>(scores), n), tokens},
                      tokred::selection_outputs<tokred::bf16, tokred::device_space>{
                          tokred::make_device_view(kept, k, dim), {}, tokred::make_device_view(thw, k, 3)},
                      {scratch, scratch_bytes});
  // Both calls are queued on `stream`: the scores never leave the device.
  // example-end cuda-evs-apply
  if (s != tokred::status::ok) {
    std::printf("EVS on CUDA failed: %s\n", tokred::to_string(s));
    return 1;
  }
  std::vector<float> gpu_scores(static_cast<std::size_t>(n));
  std::vector<std::int32_t> gpu_thw(static_cast<std::size_t>(k * 3));
  cudaMemcpyAsync(gpu_scores.data(), scores, gpu_scores.size() * sizeof(float), cudaMemcpyDeviceToHost, stream);
  cudaMemcpyAsync(gpu_thw.data(), thw, gpu_thw.size() * sizeof(std::int32_t), cudaMemcpyDeviceToHost, stream);
  if (!cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize")) return 1;

  // The CPU backend's scores on the host copy agree within fp32 rounding (the two sum the dot
  // products in different orders), not bit for bit. The still background's dissimilarities are
  // all within rounding of 0, so which of those tokens fill the budget is decided by rounding
  // noise on either backend; what must hold on both is that frame 0 and every token the patch
  // touched are kept.
  std::vector<float> cpu_scores(static_cast<std::size_t>(n));
  const auto host_tokens = tokred::make_view(static_cast<const tokred::bf16*>(host_rows.data()), n, dim);
  if (tokred::apply(tokred::cpu{}, score, tokred::feature_score_inputs<tokred::bf16>{grid, host_tokens, {}},
                    tokred::score_outputs<>{tokred::make_view(cpu_scores.data(), n)}) != tokred::status::ok)
    return 1;
  float worst = 0.0f;
  for (tokred::index_t i = 0; i < n; ++i)
    worst = std::fmax(worst, std::fabs(gpu_scores[static_cast<std::size_t>(i)] - cpu_scores[static_cast<std::size_t>(i)]));
  std::vector<bool> kept_token(static_cast<std::size_t>(n), false);
  for (tokred::index_t j = 0; j < k; ++j) {
    const tokred::index_t t = gpu_thw[static_cast<std::size_t>(j * 3)], h = gpu_thw[static_cast<std::size_t>(j * 3 + 1)],
                          w = gpu_thw[static_cast<std::size_t>(j * 3 + 2)];
    kept_token[static_cast<std::size_t>((t * 24 + h) * 24 + w)] = true;
  }
  tokred::index_t must = 0, missed = 0;
  for (tokred::index_t i = 0; i < n; ++i) {
    const tokred::token_position p = grid.position(i);
    const bool moved = p.t > 0 && value(p.t, p.h, p.w, 0) != value(p.t - 1, p.h, p.w, 0);
    if (p.t == 0 || moved) {
      ++must;
      missed += !kept_token[static_cast<std::size_t>(i)];
    }
  }
  std::printf("EVS kept %lld of %lld tokens on CUDA: frame 0 and the %lld moved tokens %s; scores within %.2g of the CPU's\n",
              static_cast<long long>(k), static_cast<long long>(n), static_cast<long long>(must - grid.frame_tokens()),
              missed == 0 ? "all kept" : "NOT all kept", static_cast<double>(worst));
  const bool ok = missed == 0 && worst <= 1e-5f;

  cudaFree(scratch);
  cudaFree(thw);
  cudaFree(kept);
  cudaFree(scores);
  cudaFree(rows);
  cudaStreamDestroy(stream);
  return ok ? 0 : 1;
}
