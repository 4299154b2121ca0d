// tokred/tokred.hpp — everything tokred offers on the CPU, in one include.
//
//   #include <tokred/tokred.hpp>
//   tokred::status s = tokred::apply(tokred::cpu{}, tokred::topk{tokred::keep_budget::count(144)},
//                                    inputs, outputs, ws);
//
// CUDA backends: include <tokred/cuda/tokred.cuh> from a .cu file instead (it includes this).
#pragma once

#include "tokred/core/config.hpp"
#include "tokred/core/contract.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/policy/attention_scores.hpp"
#include "tokred/policy/budget.hpp"
#include "tokred/policy/diversity.hpp"
#include "tokred/policy/feature_scores.hpp"
#include "tokred/policy/grid_reduce.hpp"
#include "tokred/policy/hired.hpp"
#include "tokred/policy/kv_quant.hpp"
#include "tokred/policy/outliers.hpp"
#include "tokred/policy/positions.hpp"
#include "tokred/policy/redundancy.hpp"
#include "tokred/policy/row_selection.hpp"
#include "tokred/policy/schedule.hpp"
#include "tokred/policy/scores.hpp"
#include "tokred/policy/selection.hpp"
#include "tokred/policy/threshold.hpp"
#include "tokred/policy/video_layout.hpp"
#include "tokred/cpu/attention_scores.hpp"
#include "tokred/cpu/pool.hpp"
#include "tokred/cpu/dct.hpp"
#include "tokred/cpu/diversity.hpp"
#include "tokred/cpu/dpp.hpp"
#include "tokred/cpu/feature_scores.hpp"
#include "tokred/cpu/ggml_blocks.hpp"
#include "tokred/cpu/hadamard.hpp"
#include "tokred/cpu/hired.hpp"
#include "tokred/cpu/outliers.hpp"
#include "tokred/cpu/redundancy.hpp"
#include "tokred/cpu/row_selection.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/threshold.hpp"
#include "tokred/cpu/video_layout.hpp"
