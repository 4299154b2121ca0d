// bench/cpu/bench_data.hpp — what the CPU benchmarks share: the shape grid, the inputs built
// once per shape, the memcpy baseline and the byte/token counters.
//
// Every benchmark of a shape reads the same token rows, scores and kept-index list, so the
// library, the memcpy baseline and the scalar reference move exactly the same rows. Building
// the inputs is not timed; each is built on first use and cached for the whole run.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <tuple>
#include <utility>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/selection_ref.hpp"
#include "support/cases.hpp"

namespace tokred::bench {

/// Tokens: the LLaVA-1.5 grid (24 × 24), and 48 × 48 and 96 × 96 grids (high-resolution tiles,
/// short videos). Dims: a vision-tower width (1024) and an LLM width (4096).
inline const std::vector<std::int64_t> token_counts = {576, 2304, 9216};
inline const std::vector<std::int64_t> row_dims = {1024, 4096};
inline const std::vector<std::int64_t> keep_pcts = {25, 50, 75};

/// (tokens, dim, keep_pct): the grid the bandwidth target is stated on.
inline void rows_grid(benchmark::internal::Benchmark* b) {
  b->ArgsProduct({token_counts, row_dims, keep_pcts})->ArgNames({"tokens", "dim", "keep_pct"});
}

/// The square image grid of `n` tokens (all benchmark counts are squares), else a sequence.
inline token_grid grid_of(index_t n) {
  const auto side = static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(n))));
  return side * side == n ? image_grid(side, side) : sequence_grid(n);
}

/// Distinct score vectors per token count, cycled by the topk benchmarks. Ranking the same
/// scores every iteration lets the branch predictor learn them: selecting from N = 576 / 2304 /
/// 9216 scores took 3.6 / 17 / 225 us with one set (the predictor memorised the two smaller
/// ones), 11 / 67 / 282 us with 8 sets, 16 / 70 / 257 us with 16 sets and 14 - 16 / 61 - 63 /
/// 218 - 220 us with 32 and 64. Every image brings new scores to an engine, so 16 it is.
inline constexpr int score_sets = 16;

/// Continuous scores in [-1, 1): few exact ties, as with real attention or similarity scores,
/// and both signs. The tie-heavy scores of the test table exercise correctness, not speed.
inline const std::vector<float>& scores_of(index_t n, int set = 0) {
  static std::map<std::pair<index_t, int>, std::vector<float>> cache;
  auto [it, fresh] = cache.try_emplace({n, set});
  if (fresh) {
    testing::rng r(0x5C0BE5u + 0x10000u * static_cast<std::uint64_t>(set) +
                   static_cast<std::uint64_t>(n));
    it->second.resize(static_cast<std::size_t>(n));
    for (float& s : it->second) s = r.uniform();
  }
  return it->second;
}

/// The budget every benchmark uses: `keep_pct` % of the tokens, rounded down.
inline topk budget_of(std::int64_t keep_pct) {
  return topk{keep_budget::ratio(static_cast<double>(keep_pct) / 100.0, rounding::floor)};
}

/// The ascending kept-index list topk selects from `scores_of(n, set)`: the rows a gather moves.
inline const std::vector<std::int64_t>& kept_of(index_t n, std::int64_t keep_pct, int set = 0) {
  static std::map<std::tuple<index_t, std::int64_t, int>, std::vector<std::int64_t>> cache;
  auto [it, fresh] = cache.try_emplace({n, keep_pct, set});
  if (fresh) it->second = ref::kept_indices(budget_of(keep_pct), grid_of(n), scores_of(n, set));
  return it->second;
}

/// Views of all `score_sets` score vectors of `n` tokens, built before any timing.
inline std::vector<view<const float, 1>> score_views(index_t n) {
  std::vector<view<const float, 1>> views;
  for (int set = 0; set < score_sets; ++set)
    views.push_back(make_view<const float>(scores_of(n, set).data(), n));  // (tokens,)
  return views;
}

/// The kept-index lists of all `score_sets` score vectors, built before any timing.
inline std::vector<const std::vector<std::int64_t>*> kept_lists(index_t n, std::int64_t keep_pct) {
  std::vector<const std::vector<std::int64_t>*> lists;
  for (int set = 0; set < score_sets; ++set) lists.push_back(&kept_of(n, keep_pct, set));
  return lists;
}

/// Allocates at a 64-byte boundary (a cache line, one AVX-512 register), as inference engines
/// allocate their tensors. `std::vector`'s large buffers start 16 bytes past a page boundary, so
/// every 64-byte load of their rows would straddle two cache lines.
template <class T>
struct cache_line_allocator {
  using value_type = T;
  static constexpr std::align_val_t alignment{64};

  cache_line_allocator() = default;
  template <class U>
  cache_line_allocator(const cache_line_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), alignment)); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, alignment); }
  template <class U>
  bool operator==(const cache_line_allocator<U>&) const noexcept { return true; }
  template <class U>
  bool operator!=(const cache_line_allocator<U>&) const noexcept { return false; }
};

/// A buffer whose first element sits on a cache-line boundary.
template <class T>
using aligned_buffer = std::vector<T, cache_line_allocator<T>>;

/// Contiguous token rows of element type E, built once per shape and kept: all shapes take
/// 250 MB in fp32 and 125 MB in bf16. (ArgsProduct varies `tokens` fastest, so a cache of the
/// last shape only would rebuild the rows for every benchmark.)
template <class E>
view<const E, 2> token_rows(index_t n, index_t dim) {
  static std::map<std::pair<index_t, index_t>, testing::token_matrix<E>> cache;
  auto [it, fresh] = cache.try_emplace({n, dim});
  if (fresh) it->second = testing::make_tokens<E>(n, dim, testing::layout::contiguous, 0x70CE5u);
  return it->second.rows;  // (tokens, dim)
}

/// The share of one call a benchmark's thread runs: the whole call on one thread; with
/// `->Threads(n)`, share `thread_index()` of n, as an engine's pool of n threads runs it.
inline cpu<> share_of(const benchmark::State& state) { return cpu<>{state.thread_index(), state.threads()}; }

/// Times one `apply(share_of(state), policy, in, out, ws)` per iteration; false, with the
/// benchmark's error set, when a call fails.
template <class Policy, class In, class Out>
bool time_apply(benchmark::State& state, const Policy& policy, const In& in, const Out& out,
                workspace ws = {}) {
  for (auto _ : state) {
    if (const status s = apply(share_of(state), policy, in, out, ws); s != status::ok) {
      state.SkipWithError(to_string(s));
      return false;
    }
    benchmark::ClobberMemory();
  }
  return true;
}

/// time_apply of a merge-family policy over the `n` image-like rows of token_rows<E>(n, dim) on
/// grid_of(n), with a workspace of the size it asks for.
template <class E, class Policy, class Out>
bool time_on_rows(benchmark::State& state, const Policy& policy, index_t n, index_t dim, const Out& out) {
  merge_inputs<E> in{};
  in.grid = grid_of(n);
  in.tokens = token_rows<E>(n, dim);
  std::vector<std::byte> scratch(workspace_bytes(cpu<>{}, policy, problem{in.grid, dim}));
  return time_apply(state, policy, in, out, {scratch.data(), scratch.size()});
}

/// Independent multiply-add chains on registers: enough chains (12) to cover the FMA latency
/// (4 cycles) on two ports; no loads. Returns flops per iteration.
inline double fma_chains(int steps) {
  using batch = detail::float_batch<compile_time_arch>;
  constexpr int chains = 12;
  batch acc[chains];
  for (int c = 0; c < chains; ++c) acc[c] = batch(0.001f * static_cast<float>(c));
  const batch a(0.999f), b(0.0001f);
  for (int s = 0; s < steps; ++s)
    for (int c = 0; c < chains; ++c) acc[c] = detail::multiply_add<compile_time_arch>(acc[c], a, b);
  benchmark::DoNotOptimize(acc);
  return 2.0 * chains * steps * static_cast<double>(batch::size);
}

/// The one-core fp32 FMA peak of this build's ISA in flop/s, measured once (best of 20 runs).
inline double fma_peak() {
  static const double peak = [] {
    double best = 0.0;
    for (int run = 0; run < 20; ++run) {
      const auto t0 = std::chrono::steady_clock::now();
      const double flops = fma_chains(1 << 16);
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      best = std::max(best, flops / dt.count());
    }
    return best;
  }();
  return peak;
}

/// A contiguous `(heads, tokens, head_dim)` KV cache of uniform values in [−2, 2), one per shape
/// and element type, made once, starting on a cache line as an engine's cache does.
/// Safe to call from the threads of a multi-threaded benchmark.
template <class E>
const aligned_buffer<E>& kv_values(index_t heads, index_t tokens, index_t head_dim) {
  static std::mutex made;
  const std::lock_guard<std::mutex> lock(made);
  static std::map<std::tuple<index_t, index_t, index_t>, aligned_buffer<E>> cache;
  auto [it, fresh] = cache.try_emplace({heads, tokens, head_dim});
  if (fresh) {
    testing::rng r(0xCAC4E + static_cast<std::uint64_t>(tokens));
    it->second.resize(static_cast<std::size_t>(heads * tokens * head_dim));
    for (E& v : it->second) v = from_float<E>(2.0f * r.uniform());
  }
  return it->second;
}

/// Sets the bytes and items one call processes per iteration; with `->Threads(n)` each thread
/// counts its share, 1/n of them (Google Benchmark sums the threads' counts).
inline void count_per_iteration(benchmark::State& state, std::int64_t bytes, std::int64_t items) {
  const std::int64_t shares = state.threads();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * bytes / shares);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items / shares);
}

/// Times one memcpy of a contiguous buffer per iteration (with `->Threads(n)`, each thread its
/// share of the buffer); counts both copies' bytes.
template <class E>
void time_memcpy(benchmark::State& state, const aligned_buffer<E>& x) {
  const auto size = static_cast<index_t>(x.size());
  const index_t begin = detail::share_begin(size, state.thread_index(), state.threads()),
                end = detail::share_begin(size, state.thread_index() + 1, state.threads());
  aligned_buffer<E> copy(static_cast<std::size_t>(end - begin));
  for (auto _ : state) {
    std::memcpy(copy.data(), x.data() + begin, copy.size() * sizeof(E));
    benchmark::ClobberMemory();
  }
  count_per_iteration(state, static_cast<std::int64_t>(2 * x.size() * sizeof(E)), static_cast<std::int64_t>(x.size()));
}

/// Times one memcpy of the contiguous `rows` per iteration: the floor of any pass over them.
template <class E>
void time_memcpy(benchmark::State& state, const view<const E, 2>& rows) {
  aligned_buffer<E> copy(static_cast<std::size_t>(rows.size()));
  for (auto _ : state) {
    std::memcpy(copy.data(), rows.data_handle(), copy.size() * sizeof(E));
    benchmark::ClobberMemory();
  }
}

/// Owning buffers for every output of a merge of `tokens` inputs into (at most) `rows` output
/// rows of `dim` values, and for the written-row count of the counted forms.
template <class E>
struct merge_storage {
  std::vector<E> tokens;               // (rows, dim)
  std::vector<std::int64_t> source;    // (rows,)
  std::vector<std::int32_t> positions;  // (rows, 3)
  std::vector<float> sizes;            // (rows,)
  std::vector<std::int64_t> assign;    // (tokens,)
  std::int64_t count = 0;
  index_t rows = 0, dim = 0;

  merge_storage(index_t rows_, index_t inputs, index_t dim_)
      : tokens(static_cast<std::size_t>(rows_ * dim_)), source(static_cast<std::size_t>(rows_)),
        positions(static_cast<std::size_t>(rows_ * 3)), sizes(static_cast<std::size_t>(rows_)),
        assign(static_cast<std::size_t>(inputs)), rows(rows_), dim(dim_) {}

  merge_outputs<E> outputs() {
    return {make_view(tokens.data(), rows, dim), make_view(source.data(), rows),
            make_view(positions.data(), rows, 3), make_view(sizes.data(), rows),
            make_view(assign.data(), static_cast<index_t>(assign.size()))};
  }

  /// Points an output struct that adds a required `count` to merge_outputs (framefusion_outputs,
  /// counted_merge_outputs) at these buffers.
  template <class Counted>
  void attach(Counted& out) {
    static_cast<merge_outputs<E>&>(out) = outputs();
    out.count = make_view(&count, 1);
  }
};

/// The lower bound of every row gather: one memcpy per kept row, source row to output row.
template <class E>
void memcpy_rows(const std::vector<std::int64_t>& kept, const E* src, E* dst, index_t dim) {
  const std::size_t row_bytes = static_cast<std::size_t>(dim) * sizeof(E);
  for (std::size_t j = 0; j < kept.size(); ++j)
    std::memcpy(dst + static_cast<index_t>(j) * dim, src + kept[j] * dim, row_bytes);
}

/// Counters of a benchmark that moves `kept` rows of `dim` elements from Ein to Eout, plus
/// `other_bytes` (scores read, indices written). Items are the `items` tokens processed.
template <class Ein, class Eout>
void count_rows(benchmark::State& state, index_t kept, index_t dim, index_t items,
                std::int64_t other_bytes = 0) {
  const std::int64_t row_bytes =
      static_cast<std::int64_t>(kept) * dim * static_cast<std::int64_t>(sizeof(Ein) + sizeof(Eout));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * (row_bytes + other_bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

/// True when rows first, middle and last of `out` hold the converted rows `kept[j]` of `rows`:
/// a cheap check that a benchmark times a correct result.
template <class Ein, class Eout>
bool spot_check(const std::vector<std::int64_t>& kept, const view<const Ein, 2>& rows,  // (tokens, dim)
                const view<const Eout, 2>& out) {                                       // (kept, dim)
  if (kept.empty()) return true;
  for (std::size_t j : {std::size_t{0}, kept.size() / 2, kept.size() - 1})
    for (index_t c = 0; c < rows.extent(1); ++c) {
      const Eout want = from_float<Eout>(to_float(rows(kept[j], c)));
      const Eout got = out(static_cast<index_t>(j), c);
      if (std::memcmp(&want, &got, sizeof(Eout)) != 0) return false;
    }
  return true;
}

/// Video rows of T frames of `hw` tokens, built once per shape and kept: frame 0 is i.i.d. noise;
/// after it, about one slot in six per frame takes fresh noise (a change; cosine ≈ 0 with its
/// previous row) and the others keep their previous row plus 5 % noise (cosine ≈ 0.99), so DTD at
/// τ = 0.5 keeps frame 0 and the changes, as on real video. The scores' cost does not depend on it.
template <class E>
inline view<const E, 2> video_rows(index_t frames, index_t hw, index_t dim) {
  static std::map<std::tuple<index_t, index_t, index_t>, std::vector<E>> cache;
  auto [it, fresh] = cache.try_emplace({frames, hw, dim});
  if (fresh) {
    std::vector<float> row(static_cast<std::size_t>(hw * dim));  // the current frame, (hw, dim)
    testing::rng r(0xF5u + static_cast<std::uint64_t>(frames * hw + dim));
    for (float& x : row) x = r.uniform();
    it->second.resize(static_cast<std::size_t>(frames * hw * dim));
    for (index_t t = 0; t < frames; ++t)
      for (index_t j = 0; j < hw; ++j) {
        const bool change = t > 0 && r.next() % 6 == 0;
        for (index_t c = 0; c < dim; ++c) {
          float& x = row[static_cast<std::size_t>(j * dim + c)];
          x = change ? r.uniform() : x + (t > 0 ? 0.05f * r.uniform() : 0.0f);
          it->second[static_cast<std::size_t>((t * hw + j) * dim + c)] = from_float<E>(x);
        }
      }
  }
  return make_view<const E>(it->second.data(), frames * hw, dim);  // (tokens, dim)
}

/// A token grid of T frames of `hw` tokens (square frames when hw is a square).
inline token_grid video_grid(index_t frames, index_t hw) {
  const token_grid frame = grid_of(hw);
  return {frames, frame.height, frame.width};
}

}  // namespace tokred::bench
