// tokred/cuda/tokred.cuh — everything tokred offers, CPU and CUDA backends, in one include.
//
//   #include <tokred/cuda/tokred.cuh>   // from a .cu file, compiled by nvcc
//   const tokred::topk policy{tokred::keep_budget::count(144)};
//   tokred::status s = tokred::apply(tokred::cuda{stream}, policy, inputs, outputs, ws);
//
// The exec argument's type picks the backend: `tokred::cpu<>` with host views, `tokred::cuda`
// with device views and a device workspace. Spell it `tokred::cuda`: after
// `using namespace tokred;` a bare `cuda` is ambiguous with CUDA's own `::cuda` namespace.
#pragma once

#include "tokred/tokred.hpp"

#include "tokred/cuda/selection.cuh"
#include "tokred/cuda/grid_reduce.cuh"
#include "tokred/cuda/dct.cuh"
#include "tokred/cuda/video_layout.cuh"
#include "tokred/cuda/uniform_quant.cuh"
#include "tokred/cuda/kivi.cuh"
#include "tokred/cuda/vidkv.cuh"
#include "tokred/cuda/vidkv_cache.cuh"
#include "tokred/cuda/vidkv_salient.cuh"
#include "tokred/cuda/attention_scores.cuh"
#include "tokred/cuda/feature_scores.cuh"
#include "tokred/cuda/ggml_blocks.cuh"
#include "tokred/cuda/tome.cuh"
#include "tokred/cuda/visionzip.cuh"
#include "tokred/cuda/diversity.cuh"
#include "tokred/cuda/dpp.cuh"
