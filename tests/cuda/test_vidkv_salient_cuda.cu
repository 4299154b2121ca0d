// tests/cuda/test_vidkv_salient_cuda.cu — the CUDA backend of vidkv_salient_tokens against the CPU
// backend.
//
// Checked: scores with ties (multiples of 1/8), with and without a NaN every 37 tokens, N from
// VidKV's minimum (32) to a 16-frame video (16 × 729), ratios 0 (nothing written), 0.1, 0.2
// (VidKV's), 0.5 and 1, both orders, positions from 0 and from 14: the positions equal the CPU
// backend's, and nothing is written past them; bad input gives the CPU backend's statuses and
// writes nothing; a CUDA-graph capture and replay of one choice. Exits 77 (CTest's "skipped")
// when no CUDA device is present; otherwise prints one line per failure (the first 60) and
// "N passed, M failed".
#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"

namespace {

using namespace tokred;
using namespace tokred::testing;

constexpr std::int64_t sentinel = -77;

/// Scores with ties (multiples of 1/8) and, when asked, a NaN every 37 tokens.
std::vector<float> scores_of(index_t n, std::uint64_t seed, bool with_nan) {
  rng r(seed);
  std::vector<float> s(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    float v = std::round(8.0f * r.uniform()) / 8.0f;
    if (with_nan && i % 37 == 5) v = std::numeric_limits<float>::quiet_NaN();
    s[static_cast<std::size_t>(i)] = v;
  }
  return s;
}

/// The CPU backend's positions, with one sentinel after them.
std::vector<std::int64_t> on_cpu(const vidkv_salient_tokens& p, const std::vector<float>& scores) {
  const problem prob{sequence_grid(static_cast<index_t>(scores.size())), 0};
  const index_t count = retained_count(p, prob);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(count + 1), sentinel);
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, prob));
  const status s = apply(cpu<>{}, p, vidkv_salient_inputs<>{view<const float, 1>(scores.data(), {prob.grid.tokens()})},
                         vidkv_salient_outputs<>{view<std::int64_t, 1>(positions.data(), {count})},
                         workspace{ws.data(), ws.size()});
  check(s == status::ok, std::string("CPU choice: ") + to_string(s));
  return positions;
}

/// The same choice on the device, into sentinel-filled positions.
struct device_choice {
  vidkv_salient_tokens p;
  problem prob;
  index_t count;
  device_buffer<float> scores;
  device_buffer<std::int64_t> positions;
  device_buffer<std::byte> ws;

  device_choice(const vidkv_salient_tokens& policy, const std::vector<float>& s)
      : p(policy), prob{sequence_grid(static_cast<index_t>(s.size())), 0}, count(retained_count(policy, prob)),
        scores(s), positions(std::vector<std::int64_t>(static_cast<std::size_t>(count + 1), sentinel)),
        ws(workspace_bytes(tokred::cuda{test_stream()}, policy, prob)) {}

  status run(const vidkv_salient_tokens& q, index_t n, index_t listed, std::size_t ws_bytes) const {
    return apply(tokred::cuda{test_stream()}, q,
                 vidkv_salient_inputs<device_space>{view<const float, 1, device_space>(scores.get(), {n})},
                 vidkv_salient_outputs<device_space>{view<std::int64_t, 1, device_space>(positions.get(), {listed})},
                 workspace{ws.get(), ws_bytes});
  }
  status run() const { return run(p, prob.grid.tokens(), count, ws.size()); }
};

void check_choices() {
  for (const index_t n : {index_t{32}, index_t{100}, index_t{576}, index_t{4096}, index_t{16 * 729}})
    for (const bool with_nan : {false, true})
      for (const double ratio : {0.0, 0.1, 0.2, 0.5, 1.0})
        for (const bool vidkv_order : {false, true})
          for (const index_t first : {index_t{0}, index_t{14}}) {
            const vidkv_salient_tokens p{ratio, first, vidkv_order};
            const std::vector<float> scores = scores_of(n, 7 + static_cast<std::uint64_t>(n), with_nan);
            const std::string what = "N " + str(n) + (with_nan ? " NaN" : "") + " ratio " + std::to_string(ratio) +
                                     (vidkv_order ? " vidkv_order" : "") + " first " + str(first);
            const device_choice d(p, scores);
            const status s = d.run();
            check(s == status::ok, what + ": status " + to_string(s));
            finish(what);
            check(d.positions.download() == on_cpu(p, scores), what + ": positions differ from the CPU backend's");
          }
}

void check_graph() {
  const vidkv_salient_tokens p{0.2, 14, false};
  const std::vector<float> scores = scores_of(11664, 5, true);
  const device_choice d(p, scores);
  if (!capture_and_replay([&] { return std::vector<status>{d.run()}; })) return;
  check(d.positions.download() == on_cpu(p, scores), "graph: positions differ from the CPU backend's");
}

void check_bad_input() {
  const std::vector<float> scores = scores_of(576, 3, false);
  const vidkv_salient_tokens p;  // 64 positions
  const device_choice d(p, scores);
  const auto both = [&](const vidkv_salient_tokens& q, index_t n, index_t listed, std::size_t ws_bytes, const char* what) {
    std::vector<std::int64_t> host(65, sentinel);
    std::vector<std::byte> hws(ws_bytes);
    const status want = apply(cpu<>{}, q, vidkv_salient_inputs<>{view<const float, 1>(scores.data(), {n})},
                              vidkv_salient_outputs<>{view<std::int64_t, 1>(host.data(), {listed})},
                              workspace{hws.data(), hws.size()});
    const status got = d.run(q, n, listed, ws_bytes);
    check(want != status::ok && got == want,
          std::string("bad input (") + what + "): " + to_string(got) + ", the CPU backend " + to_string(want));
  };
  const std::size_t enough = d.ws.size() + 4096;  // more than either backend needs
  both(p, 0, 64, enough, "no scores");
  both(p, 31, 64, enough, "fewer than 32 tokens");
  both(vidkv_salient_tokens{1.5}, 576, 64, enough, "ratio above 1");
  both(vidkv_salient_tokens{0.2, -1}, 576, 64, enough, "a negative first position");
  both(p, 576, 63, enough, "positions one short");
  const status short_ws = d.run(p, 576, 64, d.ws.size() - 1);
  check(short_ws == status::workspace_too_small, std::string("bad input (workspace one byte short): ") + to_string(short_ws));
  finish("bad input");
  const std::vector<std::int64_t> untouched = d.positions.download();
  bool all_sentinel = true;
  for (const std::int64_t v : untouched) all_sentinel = all_sentinel && v == sentinel;
  check(all_sentinel, "bad input: a refused call wrote positions");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  check_choices();
  check_graph();
  check_bad_input();
  return summary();
}
