// tests/cuda/test_diversity_cuda.cu — the CUDA backends of divprune, kcenter and
// importance_diversity against the host replay of their algorithm
// (tests/support/diversity_replay.hpp), which tests/cpu/test_diversity_replay.cpp certifies
// against the double-precision oracle on every machine.
//
// The GPU's picks must be the replay's exactly (the same sums in the same order); source,
// positions and rows must be those of the picks in ascending order. Over the shared case table
// (its layouts), fp32/bf16 rows and fp16 rows into fp32, global and per-frame scope, repeats
// allowed or not; a 24 × 24 image at D = 1024 and a per-frame video; identical, zero and NaN
// rows, odd importance scores, separate features, picks not requested, 70 000 frames; bad input (the CPU
// backend's statuses, nothing written); and a CUDA-graph capture and replay. Exits 77 (CTest's
// "skipped") without a CUDA device; otherwise prints one line per failure (the first 60) and
// "N passed, M failed".
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
#include "support/diversity_replay.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// One case's rows and importance scores, on the host and the device.
template <class E>
struct rows_case {
  token_grid grid;
  index_t dim;
  token_matrix<E> rows;
  device_mirror<E, 2> device_rows;
  std::vector<float> scores;
  device_buffer<float> device_scores;

  rows_case(token_grid g, index_t d, layout how, std::uint64_t seed)
      : grid(g), dim(d), rows(continuous_rows<E>(g.tokens(), d, how, seed)), device_rows(rows.storage, rows.rows),
        scores(importance(g.tokens(), seed + 1)), device_scores(scores) {}

  diversity_inputs<E> host() const {
    return {grid, rows.rows, {}, make_view<const float>(scores.data(), grid.tokens()), {}};
  }
  diversity_inputs<E, device_space> device() const {
    return {grid, device_rows.v, {}, view<const float, 1, device_space>(device_scores.get(), {grid.tokens()}), {}};
  }
};

/// Device outputs of a diversity selection, sentinel-filled.
template <class E>
struct device_outputs {
  index_t kept, dim;
  device_buffer<E> tokens;
  device_buffer<std::int64_t> source, picks;
  device_buffer<std::int32_t> positions;

  device_outputs(index_t kept_, index_t dim_)
      : kept(kept_), dim(dim_), tokens(std::vector<E>(static_cast<std::size_t>(kept_ * dim_), from_float<E>(-3.5f))),
        source(std::vector<std::int64_t>(static_cast<std::size_t>(kept_), -12345)),
        picks(std::vector<std::int64_t>(static_cast<std::size_t>(kept_), -1)),
        positions(std::vector<std::int32_t>(static_cast<std::size_t>(kept_ * 3), -777)) {}
  diversity_outputs<E, device_space> views() const {
    diversity_outputs<E, device_space> o{};
    o.tokens = view<E, 2, device_space>(tokens.get(), {kept, dim});
    o.source = view<std::int64_t, 1, device_space>(source.get(), {kept});
    o.positions = view<std::int32_t, 2, device_space>(positions.get(), {kept, 3});
    o.picks = view<std::int64_t, 1, device_space>(picks.get(), {kept});
    return o;
  }
  bool untouched() const {
    const std::vector<std::int64_t> s = source.download(), p = picks.download();
    const std::vector<std::int32_t> pos = positions.download();
    return std::all_of(s.begin(), s.end(), [](std::int64_t x) { return x == -12345; }) &&
           std::all_of(p.begin(), p.end(), [](std::int64_t x) { return x == -1; }) &&
           std::all_of(pos.begin(), pos.end(), [](std::int32_t x) { return x == -777; });
  }
};

template <class P, class Ein, class Eout>
void compare(const rows_case<Ein>& rc, const P& p, const std::string& what) {
  const problem prob{rc.grid, rc.dim};
  const index_t kept = retained_count(p, prob);
  const device_outputs<Eout> out(kept, rc.dim);
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const status s = apply(tokred::cuda{test_stream()}, p, rc.device(), out.views(), workspace{ws.get(), ws.size()});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  const std::vector<std::int64_t> want = replay_maxmin(p, rc.host());
  check(out.picks.download() == want, what + ": picks");
  std::vector<std::int64_t> ascending = want;
  const index_t per_group = kept / detail::groups_of(p.within, rc.grid).groups;
  for (index_t g = 0; g * per_group < kept; ++g)
    std::sort(ascending.begin() + g * per_group, ascending.begin() + (g + 1) * per_group);
  check(out.source.download() == ascending, what + ": source");
  check(out.positions.download() == ref::positions_of(ascending, rc.grid), what + ": positions");
  check(ref::gather_mismatches<Ein, Eout>(ascending, rc.rows.rows, out.tokens.download()) == 0, what + ": tokens");
}

template <class Ein, class Eout>
void case_table() {
  for (const shape_case& c : shape_cases()) {
    const rows_case<Ein> rc(c.grid, c.dim, c.rows, 3 + static_cast<std::uint64_t>(c.grid.tokens()));
    for (const double ratio : {0.1, 0.25, 1.0})
      for (const scope within : {scope::global, scope::per_frame}) {
        if (ratio == 1.0 && (within == scope::per_frame || c.grid.tokens() > 200)) continue;
        const divprune dp = ratio_policy<divprune>(ratio, within);
        if (can_implement(dp, problem{c.grid, c.dim}) != status::ok) continue;
        const std::string what = std::string(c.name) + " " + element_name<Ein>() + " ratio " + std::to_string(ratio) +
                                 (within == scope::global ? " global" : " per-frame");
        compare<divprune, Ein, Eout>(rc, dp, what + " divprune");
        divprune repeats = dp;
        repeats.allow_repeats = true;
        compare<divprune, Ein, Eout>(rc, repeats, what + " divprune repeats");
        kcenter kc = ratio_policy<kcenter>(ratio, within);
        kc.first = detail::groups_of(within, c.grid).group_tokens / 2;
        compare<kcenter, Ein, Eout>(rc, kc, what + " kcenter");
        compare<importance_diversity, Ein, Eout>(rc, ratio_policy<importance_diversity>(ratio, within), what + " importance");
      }
  }
}

/// Image-sized rows (many warps, a long row per pair) and a per-frame video.
void larger() {
  const rows_case<bf16> image(image_grid(24, 24), 1024, layout::contiguous, 91);
  compare<divprune, bf16, bf16>(image, divprune{keep_budget::count(56)}, "image 576 divprune");
  compare<kcenter, bf16, bf16>(image, kcenter{keep_budget::count(56)}, "image 576 kcenter");
  const rows_case<float> video(token_grid{8, 12, 12}, 256, layout::strided, 92);
  divprune per_frame{keep_budget::count(14)};  // per frame
  per_frame.within = scope::per_frame;
  compare<divprune, float, float>(video, per_frame, "video per-frame divprune");
}

/// Duplicates, a zero row and a NaN row.
void special_rows() {
  rows_case<float> rc(sequence_grid(30), 10, layout::contiguous, 5);
  for (index_t c = 0; c < rc.dim; ++c) {
    rc.rows.rows(4, c) = rc.rows.rows(9, c);
    rc.rows.rows(12, c) = 0.0f;
  }
  rc.rows.rows(20, 2) = std::numeric_limits<float>::quiet_NaN();
  rc.device_rows.storage.upload(rc.rows.storage);
  for (const index_t k : {5, 30}) {
    divprune p{keep_budget::count(k)};
    compare<divprune, float, float>(rc, p, "special divprune k " + str(k));
    p.allow_repeats = true;
    compare<divprune, float, float>(rc, p, "special divprune repeats k " + str(k));
    compare<kcenter, float, float>(rc, kcenter{keep_budget::count(k)}, "special kcenter k " + str(k));
    compare<importance_diversity, float, float>(rc, importance_diversity{keep_budget::count(k)},
                                                "special importance k " + str(k));
  }
}

/// Identical rows (first-pick ties across blocks), an all-NaN group, importance scores that are
/// NaN, zero or negative, features other than the rows moved, picks not requested, and more
/// groups than the grid's y extent.
void edge_cases() {
  rows_case<float> same(token_grid{2, 4, 5}, 12, layout::contiguous, 7);
  for (index_t i = 0; i < 40; ++i)
    for (index_t c = 0; c < 12; ++c) same.rows.rows(i, c) = i < 20 ? same.rows.rows(0, c) : std::numeric_limits<float>::quiet_NaN();
  same.scores[3] = std::numeric_limits<float>::quiet_NaN();
  same.scores[5] = 0.0f;
  same.scores[7] = -2.0f;
  same.device_rows.storage.upload(same.rows.storage);
  same.device_scores.upload(same.scores);
  for (const scope within : {scope::global, scope::per_frame}) {
    const std::string where = within == scope::global ? " global" : " per-frame";
    compare<divprune, float, float>(same, ratio_policy<divprune>(0.5, within), "identical and NaN rows divprune" + where);
    compare<kcenter, float, float>(same, ratio_policy<kcenter>(0.5, within), "identical and NaN rows kcenter" + where);
    compare<importance_diversity, float, float>(same, ratio_policy<importance_diversity>(0.5, within),
                                                "identical rows, odd scores" + where);
  }

  // Features narrower than the rows moved; picks not requested.
  const rows_case<bf16> rc(image_grid(9, 9), 24, layout::contiguous, 8);
  const rows_case<bf16> features(image_grid(9, 9), 7, layout::strided, 9);
  const divprune p{keep_budget::count(20)};
  const problem prob{rc.grid, 7};
  device_outputs<bf16> out(20, 24);
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  diversity_inputs<bf16, device_space> in = rc.device();
  in.features = features.device_rows.v;
  diversity_outputs<bf16, device_space> no_picks = out.views();
  no_picks.picks = {};
  check(apply(tokred::cuda{test_stream()}, p, in, no_picks, workspace{ws.get(), ws.size()}) == status::ok,
        "features: status");
  finish("features");
  diversity_inputs<bf16> host = rc.host();
  host.features = features.rows.rows;
  std::vector<std::int64_t> want = replay_maxmin(p, host);
  std::sort(want.begin(), want.end());
  check(out.source.download() == want, "features: source");
  check(ref::gather_mismatches<bf16, bf16>(want, rc.rows.rows, out.tokens.download()) == 0, "features: tokens");
  const std::vector<std::int64_t> untouched_picks = out.picks.download();
  check(std::all_of(untouched_picks.begin(), untouched_picks.end(), [](std::int64_t x) { return x == -1; }),
        "features: picks not written");

  // 70 000 frames of two tokens: more groups than a grid's y extent.
  const rows_case<float> frames(token_grid{70000, 1, 2}, 3, layout::contiguous, 10);
  for (const index_t k : {1, 2}) {
    divprune d{keep_budget::count(k)};
    d.within = scope::per_frame;
    compare<divprune, float, float>(frames, d, "70000 frames k " + str(k));
    importance_diversity w{keep_budget::count(k)};
    w.within = scope::per_frame;
    compare<importance_diversity, float, float>(frames, w, "70000 frames importance k " + str(k));
  }
}

/// Bad input: the CPU backend's statuses; nothing written.
void bad_input() {
  const rows_case<float> rc(image_grid(6, 6), 8, layout::contiguous, 3);
  const divprune p{keep_budget::count(9)};
  const device_outputs<float> out(9, 8);
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, problem{rc.grid, 8}));
  const workspace w{ws.get(), ws.size()};
  const auto expect = [&](status want, status got, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
  };
  const tokred::cuda exec{test_stream()};
  expect(status::budget_exceeds_input, apply(exec, divprune{keep_budget::count(37)}, rc.device(), out.views(), w),
         "k > N");
  kcenter far{keep_budget::count(9)};
  far.first = 36;
  expect(status::invalid_parameter, apply(exec, far, rc.device(), out.views(), w), "kcenter first out of range");
  diversity_outputs<float, device_space> short_picks = out.views();
  short_picks.picks = view<std::int64_t, 1, device_space>(out.picks.get(), {8});
  expect(status::shape_mismatch, apply(exec, p, rc.device(), short_picks, w), "short picks");
  expect(status::workspace_too_small, apply(exec, p, rc.device(), out.views(), workspace{ws.get(), 8}),
         "small workspace");
  finish("bad input");
  check(out.untouched(), "bad input: outputs untouched");
}

/// divprune captured into a graph and replayed: the replay's picks.
void graph_capture() {
  const rows_case<f16> rc(token_grid{2, 8, 8}, 40, layout::contiguous, 11);
  divprune p{keep_budget::count(16)};  // per frame: 32 in all
  p.within = scope::per_frame;
  const problem prob{rc.grid, rc.dim};
  const device_outputs<f16> out(retained_count(p, prob), rc.dim);
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{apply(tokred::cuda{test_stream()}, p, rc.device(), out.views(),
                                     workspace{ws.get(), ws.size()})};
  });
  if (replayed) check(out.picks.download() == replay_maxmin(p, rc.host()), "graph: picks");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  case_table<float, float>();
  case_table<bf16, bf16>();
  case_table<f16, float>();
  larger();
  special_rows();
  edge_cases();
  bad_input();
  graph_capture();
  return summary();
}
