// tests/support/score_runs.hpp — running a score policy as several shares, and comparing scores
// bit for bit: what the attention-score tests share.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/core/contract.hpp>
#include <tokred/core/element.hpp>
#include <tokred/core/exec.hpp>
#include <tokred/policy/scores.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"

namespace tokred::testing {

/// What every score starts as, so that `untouched` can tell whether anything was written.
inline constexpr float score_sentinel = -3.5f;

/// Runs a score policy as `nth` shares (in reverse order) into sentinel-filled scores, one per
/// token; `dim` is the problem's row width (0 where the policy reads no rows).
template <class P, class In>
std::vector<float> run_shares(const P& p, const In& in, index_t dim, int nth = 1) {
  const index_t n = in.grid.tokens();
  std::vector<float> scores(static_cast<std::size_t>(n), score_sentinel);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, problem{in.grid, dim}));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, score_outputs<>{make_view(scores.data(), n)}, ws.get()) == status::ok);
  return scores;
}

/// The bit patterns of `x`, so that NaN compares equal to itself and −0 differs from +0.
inline std::vector<std::uint32_t> bits(const std::vector<float>& x) {
  std::vector<std::uint32_t> b;
  for (const float v : x) b.push_back(detail::float_bits(v));
  return b;
}

/// True when every score still holds the sentinel.
inline bool untouched(const std::vector<float>& x) {
  return std::all_of(x.begin(), x.end(), [](float v) { return v == score_sentinel; });
}

}  // namespace tokred::testing
