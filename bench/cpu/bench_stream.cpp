// bench/cpu/bench_stream.cpp — temporal_stream: the latency of one frame of a video stream reduced
// against the stream's state (TimeChat-Online's DTD at τ = 0.5, and EVS with a per-frame budget),
// against a memcpy of one frame and the scalar reference of the same frame's scores.
//
// Shape: 729 tokens × 1152 per frame (SigLIP-so400m's 27 × 27 grid and width), the frames of the
// 32-frame clip of bench_feature_scores.cpp (about one slot in six changes per frame, so DTD keeps
// about a sixth). One iteration is one frame; the stream restarts after its last frame (frame 0,
// which only stores the state, is one call in 32).
//
// A frame's call reads the frame and the state's previous rows once each for the scores, writes
// the kept rows, and copies the frame into the state: about three frames of traffic against the
// memcpy's two (read and write one frame).
#include <cstdint>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/stream.hpp>
#include <tokred/policy/stream.hpp>

#include "reference/feature_scores_ref.hpp"

namespace tokred::bench {
namespace {

constexpr index_t clip_frames = 32;

void frame_shape(benchmark::internal::Benchmark* b) {
  b->Args({729, 1152})->ArgNames({"hw", "dim"})->Unit(benchmark::kMicrosecond);
}

/// The floor: one memcpy of one frame's rows.
template <class E>
void BM_memcpy_frame(benchmark::State& state) {
  const index_t hw = state.range(0), dim = state.range(1);
  time_memcpy(state, detail::row_range(video_rows<E>(clip_frames, hw, dim), 0, hw));
  count_per_iteration(state, hw * dim * static_cast<std::int64_t>(sizeof(E)), hw);
}

/// One frame per iteration through `p`, the state and outputs allocated once.
template <class E>
void BM_stream_frame(benchmark::State& state, const temporal_stream& p) {
  const index_t hw = state.range(0), dim = state.range(1);
  const view<const E, 2> rows = video_rows<E>(clip_frames, hw, dim);
  const token_grid frame = grid_of(hw);
  const problem prob{frame, dim};
  const index_t bound = retained_count(p, prob);
  std::vector<E> previous(static_cast<std::size_t>(hw * dim)), kept(static_cast<std::size_t>(bound * dim));
  std::vector<float> norms(static_cast<std::size_t>(hw));
  std::vector<std::int64_t> source(static_cast<std::size_t>(bound));
  std::vector<std::int32_t> positions(static_cast<std::size_t>(bound * 3));
  std::int64_t frames = 0, count = 0, total = 0;
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, prob));
  const temporal_state<E> stream{make_view(previous.data(), hw, dim), make_view(norms.data(), hw),
                                 make_view(&frames, 1)};
  const counted_outputs<E> out{{make_view(kept.data(), bound, dim), make_view(source.data(), bound),
                                make_view(positions.data(), bound, 3)},
                               make_view(&count, 1)};
  for (auto _ : state) {
    if (frames == clip_frames) frames = 0;  // the stream restarts
    const temporal_stream_inputs<E> in{frame, frames, detail::row_range(rows, frames * hw, hw), stream};
    if (const status s = apply(cpu<>{}, p, in, out, {ws.data(), ws.size()}); s != status::ok) {
      state.SkipWithError(to_string(s));
      return;
    }
    total += count;
    benchmark::ClobberMemory();
  }
  count_per_iteration(state, hw * dim * static_cast<std::int64_t>(sizeof(E)), hw);
  state.counters["kept_per_frame"] = static_cast<double>(total) / static_cast<double>(state.iterations());
}

template <class E>
void BM_dtd_stream(benchmark::State& state) {
  BM_stream_frame<E>(state, temporal_stream::dtd());
}

template <class E>
void BM_evs_stream(benchmark::State& state) {
  BM_stream_frame<E>(state, temporal_stream::evs(keep_budget::ratio(0.3, rounding::floor)));
}

/// The scalar reference: one frame's DTD scores against the previous frame, in double.
void BM_dtd_scalar_reference(benchmark::State& state) {
  const index_t hw = state.range(0), dim = state.range(1);
  const view<const float, 2> rows = detail::row_range(video_rows<float>(clip_frames, hw, dim), 0, 2 * hw);
  const token_grid frame = grid_of(hw);
  for (auto _ : state) {
    const std::vector<double> s = ref::temporal(temporal_similarity::dtd(), {2, frame.height, frame.width}, rows);
    benchmark::DoNotOptimize(s.data());
  }
  count_per_iteration(state, hw * dim * static_cast<std::int64_t>(sizeof(float)), hw);
}

}  // namespace

BENCHMARK_TEMPLATE(BM_memcpy_frame, float)->Apply(frame_shape);
BENCHMARK_TEMPLATE(BM_memcpy_frame, bf16)->Apply(frame_shape);
BENCHMARK_TEMPLATE(BM_dtd_stream, float)->Apply(frame_shape);
BENCHMARK_TEMPLATE(BM_dtd_stream, bf16)->Apply(frame_shape);
BENCHMARK_TEMPLATE(BM_evs_stream, float)->Apply(frame_shape);
BENCHMARK_TEMPLATE(BM_evs_stream, bf16)->Apply(frame_shape);
BENCHMARK(BM_dtd_scalar_reference)->Apply(frame_shape);

}  // namespace tokred::bench
