// tools/tokred/bench_kv.cpp — see bench_kv.hpp.
#include "tokred/bench_kv.hpp"

#include <fmt/format.h>

#include "tokred/timing.hpp"

namespace tokred::cli {

kv_row measure_kv(const bench::kv_codec& codec, const token_input& in, const std::vector<float>& queries,
                  index_t query_rows, int warmup, int repetitions,
                  double max_seconds) {
  kv_row row;
  row.item = in.name;
  row.scheme = codec.name;
  const index_t n = in.grid.tokens();
  const view<const float, 2> x = make_view(in.tokens.data(), n, in.dim);
  bench::kv_buffers buffers;
  if (const status s = bench::kv_prepare(codec, n, in.dim, buffers); s != status::ok) {
    row.note = buffers.skipped.empty() ? to_string(s) : buffers.skipped;
    return row;
  }
  row.bits_per_value = buffers.bits.mean();
  // KIVI's and VidKV's fp16 tokens are made once, untimed: the cache's write and read are timed.
  status s = bench::kv_stage(x, buffers);
  if (s == status::ok)
    row.time = time_calls([&] { return (s = bench::kv_cache_round_trip(x, buffers)) == status::ok; }, warmup,
                          repetitions, max_seconds);
  if (s != status::ok) {
    row.note = fmt::format("round trip failed: {}", to_string(s));
    return row;
  }
  // The floor: reading the fp32 keys and values once each.
  row.memcpy_us = 2 * time_memcpy(in.tokens.data(), in.tokens.size() * sizeof(float), warmup, repetitions,
                                  max_seconds).median_us;
  bench::kv_fidelity f;
  if (s = bench::kv_measure(x, make_view(queries.data(), query_rows, in.dim), buffers, f); s != status::ok) {
    row.note = fmt::format("measure failed: {}", to_string(s));
    return row;
  }
  row.mse_keys = f.keys.mse;
  row.mse_values = f.values.mse;
  row.attention_kl = f.attention.mean;
  return row;
}

}  // namespace tokred::cli
