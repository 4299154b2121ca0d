// bench/cpu/bench_kv_compact.cpp — kv_compact: one layer's KV cache compacted at a FastV boundary
// (32 heads × 128, a 35-token prefix, 576 visual tokens of which half survive, 65 text tokens
// after), fp16 as engines store it, token-major like llama.cpp's and vLLM's caches; in place and
// into separate buffers, against a memcpy of the kept bytes and a scalar element loop.
//
// Each call moves kept × heads × head_dim values of K and of V: `bytes_per_second` counts those
// bytes (read once, written once), as does the memcpy baseline's.
#include <cstdint>
#include <cstring>
#include <vector>

#include "bench_data.hpp"

#include <tokred/cpu/kv_compact.hpp>
#include <tokred/policy/kv_compact.hpp>

namespace tokred::bench {
namespace {

constexpr index_t heads = 32, head_dim = 128, prefix = 35, visual = 576, suffix = 65;
constexpr index_t rows = prefix + visual + suffix;

/// The surviving rows: the prefix, every other visual token, the suffix.
const std::vector<std::int64_t>& keep_list() {
  static const std::vector<std::int64_t> keep = [] {
    std::vector<std::int64_t> source;
    for (std::int64_t i = 0; i < visual; i += 2) source.push_back(i);
    std::vector<std::int64_t> rows_kept(static_cast<std::size_t>(prefix + visual / 2 + suffix));
    (void)kept_sequence_rows(make_view<const std::int64_t>(source.data(), static_cast<index_t>(source.size())), prefix,
                             visual, rows, make_view(rows_kept.data(), static_cast<index_t>(rows_kept.size())));
    return rows_kept;
  }();
  return keep;
}

/// A token-major cache (rows, heads, head_dim) in memory, seen as (heads, rows, head_dim).
struct layer_cache {
  std::vector<f16> k, v;
  layer_cache() : k(static_cast<std::size_t>(rows * heads * head_dim)), v(k.size()) {
    testing::rng r(5);
    for (f16& x : k) x = from_float<f16>(r.uniform());
    for (f16& x : v) x = from_float<f16>(r.uniform());
  }
  static view<f16, 3> as_heads(f16* data, index_t n) {
    return view<f16, 3>(data, {heads, n, head_dim}, {head_dim, heads * head_dim, 1});
  }
};

void count_moved(benchmark::State& state) {
  const auto kept = static_cast<std::int64_t>(keep_list().size());
  count_per_iteration(state, 2 * kept * heads * head_dim * static_cast<std::int64_t>(sizeof(f16)), kept);
}

/// The floor: a memcpy of the kept rows' bytes (K and V), from one buffer to another.
void BM_memcpy_kept(benchmark::State& state) {
  layer_cache c, out;
  const std::size_t bytes = keep_list().size() * heads * head_dim * sizeof(f16);
  for (auto _ : state) {
    std::memcpy(out.k.data(), c.k.data(), bytes);
    std::memcpy(out.v.data(), c.v.data(), bytes);
    benchmark::ClobberMemory();
  }
  count_moved(state);
}

/// The scalar baseline: one element at a time, in place.
void BM_scalar_compact(benchmark::State& state) {
  layer_cache c;
  const std::vector<std::int64_t>& keep = keep_list();
  for (auto _ : state) {
    for (f16* cache : {c.k.data(), c.v.data()})
      for (std::size_t j = 0; j < keep.size(); ++j)
        for (index_t e = 0; e < heads * head_dim; ++e)
          cache[j * heads * head_dim + static_cast<std::size_t>(e)] =
              cache[static_cast<std::size_t>(keep[j]) * heads * head_dim + static_cast<std::size_t>(e)];
    benchmark::ClobberMemory();
  }
  count_moved(state);
}

void BM_kv_compact(benchmark::State& state, bool in_place) {
  layer_cache c, out;
  const std::vector<std::int64_t>& keep = keep_list();
  const auto kept = static_cast<index_t>(keep.size());
  const kv_compact_inputs<f16> in{make_view<const std::int64_t>(keep.data(), kept),
                                  layer_cache::as_heads(c.k.data(), rows), layer_cache::as_heads(c.v.data(), rows)};
  layer_cache& target = in_place ? c : out;
  const kv_compact_outputs<f16> to{layer_cache::as_heads(target.k.data(), kept),
                                   layer_cache::as_heads(target.v.data(), kept)};
  for (auto _ : state) {
    if (const status s = apply(cpu<>{}, kv_compact{}, in, to); s != status::ok) {
      state.SkipWithError(to_string(s));
      return;
    }
    benchmark::ClobberMemory();
  }
  count_moved(state);
}

}  // namespace

BENCHMARK(BM_memcpy_kept)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_scalar_compact)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_kv_compact, in_place, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_kv_compact, separate, false)->Unit(benchmark::kMicrosecond);

}  // namespace tokred::bench
