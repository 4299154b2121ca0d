// bench/cpu/bench_merge_variants.cpp — dymu and aim on CPU, against a memcpy of their input,
// tome with the same r (dymu is tome plus a count) and the scalar references (the oracles in
// double), plus DToMe's batch threshold against a full sort.
//
// Shapes: dymu on one image of N = 576 tokens (LLaVA-1.5's 24 × 24), θ set so that r = N/4
// pass; aim on 16 frames × 196 tokens (LLaVA-OneVision's 14 × 14 per frame), AIM's two steps
// (196 → 98 → 49). D = 1024, the tokens as their own metric, one share.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/aim.hpp>
#include <tokred/cpu/dymu.hpp>

#include "reference/aim_ref.hpp"
#include "reference/dymu_ref.hpp"
#include "reference/tome_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t image_tokens = 576, frames = 16, frame_side = 14, dim = 1024;
const token_grid video_grid{frames, frame_side, frame_side};

/// A θ under which exactly N/4 A tokens of the benchmark image pass: its (N/4 + 1)-th best
/// similarity, from tome_match.
float quarter_theta() {
  const index_t n = image_tokens, a = a_tokens(n);
  std::vector<float> similarity(static_cast<std::size_t>(a));
  std::vector<std::int64_t> partner(static_cast<std::size_t>(a));
  merge_inputs<float> in{};
  in.grid = grid_of(n);
  in.tokens = token_rows<float>(n, dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, tome_match{}, problem{in.grid, dim}));
  if (apply(cpu<>{}, tome_match{}, in, match_outputs<>{make_view(similarity.data(), a), make_view(partner.data(), a)},
            {scratch.data(), scratch.size()}) != status::ok)
    return 1.0f;
  std::sort(similarity.begin(), similarity.end(), std::greater<float>());
  return similarity[static_cast<std::size_t>(n / 4)];
}

template <class E>
void BM_dymu(benchmark::State& state) {
  const index_t n = image_tokens;
  merge_storage<E> storage(n, n, dim);  // sized by the bound: every row
  counted_merge_outputs<E> out{};
  storage.attach(out);
  if (!time_on_rows<E>(state, dymu{quarter_theta()}, n, dim, out)) return;
  state.counters["kept"] = static_cast<double>(storage.count);
}

/// tome with the r dymu's θ lets through: the cost dymu adds is the count.
template <class E>
void BM_tome_same_r(benchmark::State& state) {
  const index_t n = image_tokens;
  const tome policy{n / 4, 0};
  const index_t kept = retained_count(policy, problem{grid_of(n), dim});
  merge_storage<E> storage(kept, n, dim);
  if (!time_on_rows<E>(state, policy, n, dim, storage.outputs())) return;
  state.counters["kept"] = static_cast<double>(kept);
}

void BM_dymu_scalar_reference(benchmark::State& state) {
  const index_t n = image_tokens;
  const float theta = quarter_theta();
  const view<const float, 2> rows = token_rows<float>(n, dim);
  for (auto _ : state) {
    const ref::matching m = ref::match(rows, 0);
    const tome step{ref::dymu_merged(m.similarity, theta, n, 0, 0), 0};
    const ref::tome_result r = ref::merge_from(step, grid_of(n), rows, {}, ref::rank_candidates(m.similarity, 0), m.partner);
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

template <class E>
void BM_aim(benchmark::State& state) {
  const aim policy{2, state.range(0) != 0};
  const problem prob{video_grid, dim};
  const index_t n = video_grid.tokens(), kept = retained_count(policy, prob);
  merge_storage<E> storage(kept, n, dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, prob));
  const aim_inputs<E> in{video_grid, token_rows<E>(n, dim)};
  const merge_outputs<E> out = storage.outputs();
  if (!time_apply(state, policy, in, out, {scratch.data(), scratch.size()})) return;
  state.counters["kept"] = static_cast<double>(kept);
}

void BM_aim_scalar_reference(benchmark::State& state) {
  const view<const float, 2> rows = token_rows<float>(video_grid.tokens(), dim);
  for (auto _ : state) {
    const ref::aim_result r = ref::aim_all(video_grid, rows, 2, false);
    benchmark::DoNotOptimize(r.tokens.data());
  }
}

/// The floor of any merge of an input: one memcpy of its N × D rows (arg: tokens).
template <class E>
void BM_memcpy_input(benchmark::State& state) {
  const view<const E, 2> rows = token_rows<E>(state.range(0), dim);
  time_memcpy(state, rows);
}

/// DToMe's batch threshold over 256 images of 288 A tokens (CLIP-L/336: 577 tokens), r = 21.
void BM_dymu_batch_threshold(benchmark::State& state) {
  const index_t images = 256, a = 288;
  const std::vector<float>& scores = scores_of(images * a);
  const view<const float, 2> best = make_view(scores.data(), images, a);
  for (auto _ : state) {
    float theta = 0;
    if (dymu_batch_threshold(best, 21, theta) != status::ok) state.SkipWithError("threshold");
    benchmark::DoNotOptimize(theta);
  }
}

/// Its scalar reference: every score copied and sorted.
void BM_dymu_batch_threshold_sort(benchmark::State& state) {
  const index_t images = 256, a = 288;
  const std::vector<float>& scores = scores_of(images * a);
  std::vector<std::vector<float>> best(static_cast<std::size_t>(images));
  for (index_t i = 0; i < images; ++i)
    best[static_cast<std::size_t>(i)].assign(scores.begin() + i * a, scores.begin() + (i + 1) * a);
  for (auto _ : state) benchmark::DoNotOptimize(ref::batch_threshold(best, 21));
}

BENCHMARK_TEMPLATE(BM_memcpy_input, float)->Arg(image_tokens)->Arg(frames * frame_side * frame_side)->ArgName("tokens");
BENCHMARK_TEMPLATE(BM_dymu, float)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_tome_same_r, float)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_dymu, bf16)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dymu_scalar_reference)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_aim, float)->Arg(0)->Arg(1)->ArgName("size_weighted")->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_aim, bf16)->Arg(0)->ArgName("size_weighted")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_aim_scalar_reference)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_dymu_batch_threshold)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_dymu_batch_threshold_sort)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tokred::bench
