// tools/tokred/bench_kv.hpp — the KV-cache part of `tokred bench`: every scheme of
// bench/fidelity.hpp's table on an input's tokens, as keys and as values.
#pragma once

#include <vector>

#include "bench/fidelity.hpp"
#include "tokred/features.hpp"
#include "tokred/report.hpp"

namespace tokred::cli {

/// Times `codec`'s quantize-and-dequantize round trip of `in`'s tokens against a memcpy of them
/// (fp32), and measures the keys' and values' error and the attention KL over `queries`.
kv_row measure_kv(const bench::kv_codec& codec, const token_input& in, const std::vector<float>& queries,
                  index_t query_rows, int warmup, int repetitions,
                  double max_seconds);

}  // namespace tokred::cli
