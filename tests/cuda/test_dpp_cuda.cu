// tests/cuda/test_dpp_cuda.cu — the CUDA backend of cdpruner against the host replay of its
// algorithm (tests/support/dpp_replay.hpp), which tests/cpu/test_dpp_replay.cpp certifies against
// the greedy MAP by definition on every machine.
//
// The GPU's picks must be the replay's exactly; source, positions and rows those of the picks in
// ascending order. Over the shared case table (its layouts), fp32/bf16 rows and fp16 rows into
// fp32, global and per-frame scope, split or not, both kernels, relevance from query rows, scores
// or none; OpenVINO's parameters on a 24 × 24 image at D = 1024; duplicated rows, NaN and ±inf
// scores, every token kept; bad input (the CPU backend's
// statuses, nothing written); and a CUDA-graph capture and replay. Exits 77 (CTest's "skipped")
// without a CUDA device; otherwise prints one line per failure (the first 60) and "N passed, M
// failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "reference/gather_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/diversity.hpp"
#include "support/dpp_replay.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

enum class relevance_from { query, scores, none };

/// One case's rows, query rows and scores, on the host and the device.
template <class E>
struct dpp_case {
  token_grid grid;
  index_t dim;
  token_matrix<E> rows, query;
  device_mirror<E, 2> device_rows, device_query;
  std::vector<float> scores;
  device_buffer<float> device_scores;

  dpp_case(token_grid g, index_t d, layout how, std::uint64_t seed)
      : grid(g), dim(d), rows(continuous_rows<E>(g.tokens(), d, how, seed)),
        query(continuous_rows<E>(2, d, layout::contiguous, 77)), device_rows(rows.storage, rows.rows),
        device_query(query.storage, query.rows), scores(importance(g.tokens(), 31)), device_scores(scores) {}

  diversity_inputs<E> host(relevance_from from) const {
    diversity_inputs<E> in{grid, rows.rows, {}, {}, {}};
    if (from == relevance_from::query) in.query = query.rows;
    if (from == relevance_from::scores) in.scores = make_view<const float>(scores.data(), grid.tokens());
    return in;
  }
  diversity_inputs<E, device_space> device(relevance_from from) const {
    diversity_inputs<E, device_space> in{grid, device_rows.v, {}, {}, {}};
    if (from == relevance_from::query) in.query = device_query.v;
    if (from == relevance_from::scores)
      in.scores = view<const float, 1, device_space>(device_scores.get(), {grid.tokens()});
    return in;
  }
};

template <class Ein, class Eout>
void compare(const dpp_case<Ein>& dc, const cdpruner& p, relevance_from from, const std::string& what) {
  const problem prob{dc.grid, dc.dim};
  const index_t kept = retained_count(p, prob);
  device_buffer<Eout> tokens(std::vector<Eout>(static_cast<std::size_t>(kept * dc.dim), from_float<Eout>(-3.5f)));
  device_buffer<std::int64_t> source(static_cast<std::size_t>(kept)), picks(static_cast<std::size_t>(kept));
  device_buffer<std::int32_t> positions(static_cast<std::size_t>(kept * 3));
  diversity_outputs<Eout, device_space> out{};
  out.tokens = view<Eout, 2, device_space>(tokens.get(), {kept, dc.dim});
  out.source = view<std::int64_t, 1, device_space>(source.get(), {kept});
  out.positions = view<std::int32_t, 2, device_space>(positions.get(), {kept, 3});
  out.picks = view<std::int64_t, 1, device_space>(picks.get(), {kept});
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const status s = apply(tokred::cuda{test_stream()}, p, dc.device(from), out, workspace{ws.get(), ws.size()});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  const std::vector<std::int64_t> want = replay_dpp(p, dc.host(from));
  check(picks.download() == want, what + ": picks");
  std::vector<std::int64_t> ascending = want;
  const index_t per_group = kept / detail::groups_of(p.within, dc.grid).groups;
  for (index_t at = 0; at < kept; at += per_group) std::sort(ascending.begin() + at, ascending.begin() + at + per_group);
  check(source.download() == ascending, what + ": source");
  check(positions.download() == ref::positions_of(ascending, dc.grid), what + ": positions");
  check(ref::gather_mismatches<Ein, Eout>(ascending, dc.rows.rows, tokens.download()) == 0, what + ": tokens");
}

template <class Ein, class Eout>
void case_table() {
  for (const shape_case& c : shape_cases()) {
    const dpp_case<Ein> dc(c.grid, c.dim, c.rows, 5 + static_cast<std::uint64_t>(c.grid.tokens()));
    for_each_dpp_layout(c, [&](cdpruner p) {
      const std::string what = std::string(c.name) + " " + element_name<Ein>() +
                               (p.within == scope::global ? " global" : " per-frame") + (p.split ? " split" : "");
      compare<Ein, Eout>(dc, p, relevance_from::query, what + " query");
      compare<Ein, Eout>(dc, p, relevance_from::scores, what + " scores");
      compare<Ein, Eout>(dc, p, relevance_from::none, what + " none");
      p.kernel = dpp_kernel::original;
      compare<Ein, Eout>(dc, p, relevance_from::scores, what + " original kernel");
    });
  }
}

/// OpenVINO's parameters (split halves, per frame) on an image and a short video.
void openvino_shapes() {
  const dpp_case<bf16> image(image_grid(24, 24), 1024, layout::contiguous, 41);
  compare<bf16, bf16>(image, cdpruner::openvino(90), relevance_from::query, "image openvino(90)");
  const dpp_case<float> video(token_grid{4, 9, 9}, 64, layout::strided, 42);
  compare<float, float>(video, cdpruner::openvino(70, 0.3f), relevance_from::query, "video openvino(70)");
}

/// Duplicated rows (exact gain ties, in both halves of a split), scores with NaN and ±inf, and
/// every token kept.
void special_rows() {
  dpp_case<float> dc(token_grid{2, 5, 6}, 12, layout::contiguous, 13);
  for (index_t c = 0; c < dc.dim; ++c) {
    dc.rows.rows(2, c) = dc.rows.rows(7, c);    // first half of frame 0
    dc.rows.rows(20, c) = dc.rows.rows(24, c);  // second half of frame 0
  }
  dc.scores[3] = std::numeric_limits<float>::quiet_NaN();
  dc.scores[11] = std::numeric_limits<float>::infinity();
  dc.scores[40] = -std::numeric_limits<float>::infinity();
  dc.device_rows.storage.upload(dc.rows.storage);
  dc.device_scores.upload(dc.scores);
  for (const double ratio : {0.5, 1.0})
    for (const bool split : {false, true}) {
      cdpruner p{keep_budget::ratio(ratio, rounding::half_away)};
      p.within = scope::per_frame;
      p.split = split;
      const std::string what = "special ratio " + std::to_string(ratio) + (split ? " split" : "");
      compare<float, float>(dc, p, relevance_from::scores, what + " scores");
      compare<float, float>(dc, p, relevance_from::query, what + " query");
    }
}

/// Bad input: the CPU backend's statuses; nothing written.
void bad_input() {
  const dpp_case<float> dc(image_grid(6, 6), 8, layout::contiguous, 3);
  device_buffer<std::int64_t> picks(std::vector<std::int64_t>(9, -1));
  diversity_outputs<float, device_space> out{};
  out.picks = view<std::int64_t, 1, device_space>(picks.get(), {9});
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, cdpruner{keep_budget::count(9)}, problem{dc.grid, 8}));
  const workspace w{ws.get(), ws.size()};
  const tokred::cuda exec{test_stream()};
  const auto expect = [&](status want, status got, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
  };
  expect(status::invalid_parameter,
         apply(exec, cdpruner{keep_budget::count(9), 1.5f}, dc.device(relevance_from::none), out, w), "weight 1.5");
  expect(status::budget_exceeds_input,
         apply(exec, cdpruner{keep_budget::count(37)}, dc.device(relevance_from::none), out, w), "k > N");
  expect(status::workspace_too_small,
         apply(exec, cdpruner{keep_budget::count(9)}, dc.device(relevance_from::none), out, workspace{ws.get(), 8}),
         "small workspace");
  finish("bad input");
  const std::vector<std::int64_t> after = picks.download();
  check(std::all_of(after.begin(), after.end(), [](std::int64_t x) { return x == -1; }), "bad input: untouched");
}

/// cdpruner captured into a graph and replayed: the replay's picks.
void graph_capture() {
  const dpp_case<f16> dc(token_grid{2, 8, 8}, 40, layout::contiguous, 11);
  const cdpruner p = cdpruner::openvino(75);
  const problem prob{dc.grid, dc.dim};
  const index_t kept = retained_count(p, prob);
  device_buffer<std::int64_t> picks(static_cast<std::size_t>(kept));
  diversity_outputs<f16, device_space> out{};
  out.picks = view<std::int64_t, 1, device_space>(picks.get(), {kept});
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(tokred::cuda{test_stream()}, p, dc.device(relevance_from::query), out, workspace{ws.get(), ws.size()})};
  });
  if (replayed) check(picks.download() == replay_dpp(p, dc.host(relevance_from::query)), "graph: picks");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  case_table<float, float>();
  case_table<bf16, bf16>();
  case_table<f16, float>();
  openvino_shapes();
  special_rows();
  bad_input();
  graph_capture();
  return summary();
}
