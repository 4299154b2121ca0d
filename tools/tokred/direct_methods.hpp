// tools/tokred/direct_methods.hpp — the bench's methods that no pipeline spec can express, each
// with its own runner: the selections whose count depends on the data (PruMerge's outliers, DTD's
// threshold), the score-then-select methods whose score needs more than a spec stage reads
// (FastV's attention, FoPru's attention map, STC's stream memory), FrameFusion's merge and prune,
// and the video layouts (SlowFast-LLaVA, TS-LLaVA). Each makes a `reducer` like a pipeline's, so
// the bench times and measures every method the same way.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "tokred/bench_methods.hpp"

namespace tokred::cli {

/// LLaVA-PruMerge's interquartile-range outliers of the ranking score (`iqr_outliers::prumerge`).
runner_function make_prumerge;
/// PruMerge+: the outliers, then its spatially uniform extras (`iqr_outliers::prumerge_plus`).
runner_function make_prumerge_plus;
/// TimeChat-Online's Differential Token Drop: cosine to the previous frame's slot, threshold 0.5.
runner_function make_dtd;
/// STC-Pruner: the Gaussian redundancy of each frame against its mean and the stream's memory (the
/// video streamed one frame per chunk), then the least redundant tokens of every frame.
runner_function make_stc;
/// FastV: the attention the query rows pay each token (one head, computed from the rows without an
/// attention matrix), then the top tokens.
runner_function make_fastv;
/// FoPru's row strategy: the attention significance of each token in a patch-to-patch attention
/// map, then each frame's best patch rows. The map stands in for the encoder's: the softmax of the
/// frame's own scaled dot products (one head), computed before timing as an encoder would hand it.
runner_function make_fopru;
/// The largest stand-in attention map fopru makes, T·(H·W)² floats: 1 GiB (one frame of 16384
/// tokens). A larger one is refused with a note rather than allocated.
inline constexpr std::size_t fopru_map_cap_bytes = std::size_t{1} << 30;
/// FrameFusion: one merge layer of same-slot temporal chains under the compute budget `budget`,
/// then the most important chains (the ranking score of their heads) down to the budget.
runner_function make_framefusion;
/// SlowFast-LLaVA's layout with a fast pathway of about a quarter of the budget and as many slow
/// frames as the rest holds (at least one, so small budgets keep more).
runner_function make_slowfast;
/// TS-LLaVA's thumbnail (of up to six frames) and as many sampled tokens as the rest of the budget.
runner_function make_thumbnail;
/// HiRED needs a full image and its sub-crops: never applies to the bench's single images and
/// videos, and says so.
runner_function make_hired;

}  // namespace tokred::cli
