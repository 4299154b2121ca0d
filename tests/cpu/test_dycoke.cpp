// tests/cpu/test_dycoke.cpp — dycoke on CPU: the original's golden outputs, the count and frame
// roles (odd T, the group loop's bound, T ≤ 4, Python's int((1 − k)·n)), the oracle over the
// shared case table (every element type, both orders, thread splits), a separate metric, the
// documented results for ties, zero and NaN rows, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/dycoke.hpp>

#include "io/npy.hpp"
#include "reference/dycoke_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// dycoke run as `nth` shares, in reverse order, every output requested.
template <class Ein, class Eout>
merge_buffers<Eout> run_dycoke(const dycoke& p, const dycoke_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  merge_buffers<Eout> out(kept, in.grid.tokens(), dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// The checks every run makes against the oracle's result: source, positions and assign exactly,
/// sizes 1, each token row the input row converted to Eout bit for bit.
template <class Ein, class Eout>
void check_result(const merge_buffers<Eout>& got, const ref::dycoke_result& want, const view<const Ein, 2>& rows) {
  REQUIRE(static_cast<std::size_t>(got.kept) == want.source.size());
  CHECK(got.source == want.source);
  CHECK(got.positions == want.positions);
  CHECK(got.assign == want.assign);
  CHECK(std::all_of(got.sizes.begin(), got.sizes.end(), [](float s) { return s == 1.0f; }));
  std::size_t bad = 0;
  for (index_t j = 0; j < got.kept; ++j)
    for (index_t c = 0; c < got.dim; ++c) {
      const Eout want_value = from_float<Eout>(to_float(rows(want.source[static_cast<std::size_t>(j)], c)));
      bad += bits_of(got.tokens[static_cast<std::size_t>(j * got.dim + c)]) != bits_of(want_value);
    }
  CHECK(bad == 0);
}

/// The grids a case runs as: its own, and for an image or a sequence (T = 1, which dycoke
/// refuses) its rows as frames — H frames of W tokens — so that every layout and SIMD width also
/// meets odd and even T, T ≤ 4 and the group step.
std::vector<token_grid> grids_of(const shape_case& c) {
  std::vector<token_grid> grids = {c.grid};
  if (c.grid.frames == 1) {
    if (c.grid.height > 1) grids.push_back(token_grid{c.grid.height, 1, c.grid.width});
    else if (c.grid.width > 1) grids.push_back(token_grid{c.grid.width, 1, 1});
  }
  return grids;
}

template <class Ein, class Eout>
void run_case_table() {
  std::size_t runs = 0, refused = 0;
  for (const shape_case& c : shape_cases()) {
    const index_t n = c.grid.tokens();
    const token_matrix<Ein> x = make_tokens<Ein>(n, c.dim, c.rows, 31 + static_cast<std::uint64_t>(n));
    const view<const Ein, 2> rows = x.rows;
    for (const token_grid& grid : grids_of(c))
      for (const double k : {0.7, 0.5, 0.0, 1.0, 0.9})
        for (const merge_order order : {merge_order::original, merge_order::by_position}) {
          INFO(c.name << " grid " << grid.frames << "x" << grid.height << "x" << grid.width << " k " << k
                      << " order " << static_cast<int>(order));
          const dycoke p{k, order};
          const dycoke_inputs<Ein> in{grid, rows, {}};
          const problem prob{grid, c.dim};
          if (grid.frames < 2) {
            CHECK(can_implement(p, prob) == status::invalid_budget);
            merge_buffers<Eout> out(1, n, c.dim);
            CHECK(apply(cpu{}, p, in, out.outputs(), {}) == status::invalid_budget);
            CHECK(out.untouched());
            ++refused;
            continue;
          }
          const merge_buffers<Eout> got = run_dycoke<Ein, Eout>(p, in, c.dim);
          check_result(got, ref::dycoke_run(k, order, grid, rows), rows);
          for (int nth : {2, 3}) {
            INFO("nth " << nth);
            CHECK(run_dycoke<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
          }
          ++runs;
        }
  }
  // 3 video cases and 6 images or sequences as frames, 10 (k, order) each; the 7 images and
  // sequences as themselves (T = 1) refused.
  CHECK(runs == 90);
  CHECK(refused == 70);
}

/// A golden case: the original's output order, kept rows and assign exactly, tokens bit for bit;
/// then the same selection in position order.
void check_golden(const std::string& name) {
  const std::string dir = golden_case("dycoke", name);
  const index_t frames = json_int(dir, "num_frames"), n = json_int(dir, "num_tokens_per_frame");
  const double k = json_number(dir, "merging_ratio (dycoke_k)");
  REQUIRE(json_int(dir, "trailing_tokens_beyond_T*n") == 0);
  const io::npy_array input = load_npy(dir + "input.npy");
  REQUIRE(input.shape.at(0) == frames * n);
  const index_t dim = input.shape.at(1);
  const std::vector<float> x = input.as<float>();
  const auto side = static_cast<index_t>(std::lround(std::sqrt(static_cast<double>(n))));
  REQUIRE(side * side == n);

  const dycoke p{k, merge_order::original};
  dycoke_inputs<float> in{};
  in.grid = token_grid{frames, side, side};
  in.tokens = make_view<const float>(x.data(), frames * n, dim);
  CHECK(dycoke_frame_keep(p, n) == json_int(dir, "num_tokens_to_keep_per_pruned_frame"));
  const merge_buffers<float> got = run_dycoke<float, float>(p, in, dim, 2);

  const std::vector<std::int64_t> want_kept = load_npy(dir + "kept_indices.npy").as<std::int64_t>();
  // The kept set of every pruned frame is decided by a margin far above fp32 rounding (≥ 2e-5);
  // the order inside a frame is checked exactly too, which holds on these cases.
  CHECK(got.source == want_kept);
  CHECK(got.assign == load_npy(dir + "assign.npy").as<std::int64_t>());
  const std::vector<float> want_tokens = load_npy(dir + "tokens.npy").as<float>();
  REQUIRE(want_tokens.size() == got.tokens.size());
  CHECK(std::memcmp(want_tokens.data(), got.tokens.data(), want_tokens.size() * sizeof(float)) == 0);
  for (index_t j = 0; j < got.kept; ++j) {
    const token_position at = in.grid.position(got.source[static_cast<std::size_t>(j)]);
    CHECK(got.positions[static_cast<std::size_t>(3 * j)] == at.t);
    CHECK(got.positions[static_cast<std::size_t>(3 * j + 1)] == at.h);
    CHECK(got.positions[static_cast<std::size_t>(3 * j + 2)] == at.w);
  }

  const merge_buffers<float> sorted = run_dycoke<float, float>(dycoke{k, merge_order::by_position}, in, dim, 3);
  std::vector<std::int64_t> ascending = want_kept;
  std::sort(ascending.begin(), ascending.end());
  CHECK(sorted.source == ascending);
  for (index_t i = 0; i < frames * n; ++i) {
    const std::int64_t slot = sorted.assign[static_cast<std::size_t>(i)];
    CHECK((slot < 0) == (got.assign[static_cast<std::size_t>(i)] < 0));
    if (slot >= 0) CHECK(sorted.source[static_cast<std::size_t>(slot)] == i);
  }
}

/// Rows of one value pattern per slot: frame t's slot p is `base(p)` scaled or turned by a
/// chosen amount, so that each similarity is set by hand.
std::vector<float> hand_rows(index_t frames, index_t n, index_t dim) {
  std::vector<float> x(static_cast<std::size_t>(frames * n * dim));
  for (index_t i = 0; i < frames * n; ++i)
    for (index_t c = 0; c < dim; ++c)
      x[static_cast<std::size_t>(i * dim + c)] = static_cast<float>((i * 7 + c * 3) % 11) - 5.0f;
  return x;
}

}  // namespace

TEST_CASE("DyCoke original: 6 frames of 16, k = 0.5", "[golden][dycoke]") { check_golden("T6_n16_k0.5"); }
TEST_CASE("DyCoke original: 8 frames of 196, k = 0.7", "[golden][dycoke]") { check_golden("T8_n196_k0.7"); }

TEST_CASE("dycoke: the count, the frame roles and Python's int((1 - k)·n)", "[dycoke]") {
  const dycoke p{};
  const auto count = [](const dycoke& q, index_t frames, index_t h, index_t w) {
    return retained_count(q, problem{token_grid{frames, h, w}, 8});
  };
  // T = 32 of 14 × 14 at k = 0.7: frames 0, 4, …, 28 and 30 whole, 23 frames keep 58.
  CHECK(dycoke_frame_keep(p, 196) == 58);
  CHECK(count(p, 32, 14, 14) == 3098);
  std::vector<index_t> whole, pruned;
  for (index_t f = 0; f < 32; ++f)
    (dycoke_role(32, f).kind == dycoke_frame_kind::whole ? whole : pruned).push_back(f);
  CHECK(whole == std::vector<index_t>{0, 4, 8, 12, 16, 20, 24, 28, 30});
  CHECK(pruned.size() == 23);
  CHECK(dycoke_role(32, 30).kind == dycoke_frame_kind::whole);  // i = 28 is not < T − 4 = 28
  CHECK(dycoke_role(32, 26).reference == 24);
  CHECK(dycoke_role(32, 27).reference == 26);
  // Odd T: the last frame is dropped; T = 5 has one group (i = 0 < 1): frame 2 pruned.
  CHECK(dycoke_role(5, 4).kind == dycoke_frame_kind::dropped);
  CHECK(dycoke_role(5, 2).kind == dycoke_frame_kind::pruned);
  CHECK(dycoke_role(5, 2).reference == 0);
  CHECK(count(p, 5, 1, 10) == 10 + 3 * 3);
  // T ≤ 4: the pair step alone (the original crashes); T = 4 keeps frames 0 and 2 whole.
  CHECK(dycoke_role(4, 2).kind == dycoke_frame_kind::whole);
  CHECK(count(p, 4, 1, 10) == 2 * 10 + 2 * 3);
  CHECK(count(p, 3, 1, 10) == 10 + 3);
  CHECK(count(p, 2, 1, 10) == 10 + 3);
  CHECK(count(p, 6, 4, 4) == 2 * 16 + 4 * 4);
  CHECK(count(dycoke{0.5}, 8, 14, 14) == 3 * 196 + 5 * 98);
  // (1 − 0.9)·10 = 0.9999999999999998: the pruned frames keep nothing, as in the original.
  CHECK(dycoke_frame_keep(dycoke{0.9}, 10) == 0);
  CHECK(count(dycoke{0.9}, 6, 2, 5) == 2 * 10);
  CHECK(dycoke_frame_keep(dycoke{0.0}, 10) == 10);
  CHECK(count(dycoke{0.0}, 7, 2, 5) == 60);  // everything but the odd last frame
  CHECK(count(dycoke{1.0}, 8, 2, 5) == 3 * 10);
  CHECK(can_implement(p, problem{token_grid{1, 14, 14}, 8}) == status::invalid_budget);
  CHECK(count(p, 1, 14, 14) == 0);
}

TEST_CASE("dycoke: the oracle over the case table, fp32", "[dycoke]") { run_case_table<float, float>(); }
TEST_CASE("dycoke: the oracle over the case table, f16", "[dycoke]") { run_case_table<f16, f16>(); }
TEST_CASE("dycoke: the oracle over the case table, bf16 to fp32", "[dycoke]") { run_case_table<bf16, float>(); }

TEST_CASE("dycoke: a separate metric decides, the token rows move", "[dycoke]") {
  const token_grid grid{9, 3, 5};
  const index_t n = grid.tokens(), dim = 24;
  const token_matrix<float> x = make_tokens<float>(n, dim, layout::contiguous, 5);
  const token_matrix<bf16> m = make_tokens<bf16>(n, 40, layout::strided, 6);
  for (const merge_order order : {merge_order::original, merge_order::by_position}) {
    const dycoke p{0.6, order};
    dycoke_inputs<bf16> in{};
    in.grid = grid;
    in.metric = m.rows;
    std::vector<bf16> tokens_bf16(static_cast<std::size_t>(n * dim));
    for (std::size_t i = 0; i < tokens_bf16.size(); ++i) tokens_bf16[i] = from_float<bf16>(x.storage[i]);
    in.tokens = make_view<const bf16>(tokens_bf16.data(), n, dim);
    const merge_buffers<float> got = run_dycoke<bf16, float>(p, in, dim, 2);
    check_result(got, ref::dycoke_run(0.6, order, grid, view<const bf16, 2>(m.rows)), in.tokens);
    CHECK(run_dycoke<bf16, float>(p, in, dim, 3).same_bits(got));
    // Without the tokens output the token rows are not needed.
    dycoke_inputs<bf16> no_rows = in;
    no_rows.tokens = {};
    merge_buffers<float> some(got.kept, n, dim);
    merge_outputs<float> o = some.outputs();
    o.tokens = {};
    host_workspace ws(workspace_bytes(cpu{}, p, problem{grid, dim}));
    REQUIRE(apply(cpu{}, p, no_rows, o, ws.get()) == status::ok);
    CHECK(some.source == got.source);
    CHECK(some.assign == got.assign);
  }
}

TEST_CASE("dycoke: ties, zero rows and NaN, by hand", "[dycoke]") {
  // 2 frames of 6 slots, 2 values: frame 1 against frame 0 gives, slot by slot,
  //   0: cos 1      1: cos 0 (orthogonal)    2: NaN (a NaN element)
  //   3: cos 0 (frame 1's row is zero)       4: cos −1        5: cos 0 (frame 0's row is zero)
  // Keep int(0.5·6) = 3: the lowest similarities −1 (slot 4), then the three zeros tie at 0 →
  // slots 1 and 3 (ties to the lower slot); slot 5 and the most similar slot 0 and NaN slot 2
  // are dropped.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float x[12 * 2] = {1, 0, 1, 0, 2, 2, 1, 1, 3, -1, 0, 0,   // frame 0
                           2, 0, 0, 5, nan, 1, 0, 0, -3, 1, 4, 4};  // frame 1
  dycoke_inputs<float> in{};
  in.grid = token_grid{2, 2, 3};
  in.tokens = make_view(x, 12, 2);
  const merge_buffers<float> got = run_dycoke<float, float>(dycoke{0.5}, in, 2, 2);
  CHECK(got.source == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 10, 7, 9});
  CHECK(got.assign == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, -1, 7, -1, 8, 6, -1});
  CHECK(got.positions[3 * 6 + 0] == 1);  // row 10: frame 1, (1, 1)
  CHECK(got.positions[3 * 6 + 1] == 1);
  CHECK(got.positions[3 * 6 + 2] == 1);
  const merge_buffers<float> sorted = run_dycoke<float, float>(dycoke{0.5, merge_order::by_position}, in, 2, 1);
  CHECK(sorted.source == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 7, 9, 10});
  // Keep 5 (k = 1/6): the NaN slot comes after every number: −1, 0, 0, 0, then 1 (slot 0), never
  // NaN; keep all 6 (k = 0): NaN last.
  const merge_buffers<float> five = run_dycoke<float, float>(dycoke{1.0 / 6.0}, in, 2, 3);
  REQUIRE(dycoke_frame_keep(dycoke{1.0 / 6.0}, 6) == 5);
  CHECK(std::vector<std::int64_t>(five.source.begin() + 6, five.source.end()) == std::vector<std::int64_t>{10, 7, 9, 11, 6});
  const merge_buffers<float> all = run_dycoke<float, float>(dycoke{0.0}, in, 2, 1);
  CHECK(std::vector<std::int64_t>(all.source.begin() + 6, all.source.end()) == std::vector<std::int64_t>{10, 7, 9, 11, 6, 8});
}

TEST_CASE("dycoke: trailing rows and frames the caller leaves out", "[dycoke]") {
  // The original takes num_frames = rows // n and ignores the rest: the caller passes that grid
  // and the first T·n rows, and gets what the original keeps.
  const index_t n = 6, dim = 5, rows = 7 * n + 4;
  const std::vector<float> x = hand_rows(8, n, dim);
  const token_grid grid{rows / n, 2, 3};
  dycoke_inputs<float> in{};
  in.grid = grid;
  in.tokens = make_view<const float>(x.data(), grid.tokens(), dim);
  const merge_buffers<float> got = run_dycoke<float, float>(dycoke{}, in, dim, 2);
  check_result(got, ref::dycoke_run(0.7, merge_order::original, grid, view<const float, 2>(in.tokens)), in.tokens);
  // T = 7: frame 6 dropped, frame 2 pruned by the group step (i = 0 < 3).
  CHECK(std::all_of(got.assign.begin() + 6 * n, got.assign.end(), [](std::int64_t a) { return a == -1; }));
  CHECK(got.kept == 2 * n + 4 * 1);
}

TEST_CASE("dycoke: bad input leaves every output untouched", "[dycoke][bad-input]") {
  const token_grid grid{5, 2, 3};
  const index_t n = grid.tokens(), dim = 4;
  std::vector<float> x = hand_rows(5, 6, dim);
  dycoke_inputs<float> in{};
  in.grid = grid;
  in.tokens = make_view<const float>(x.data(), n, dim);
  const dycoke p{};
  const problem prob{grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept == 6 + 3 * 1);
  merge_buffers<float> out(kept, n, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  const auto rejects = [&](const dycoke& q, const problem& pr, status want) {
    CHECK(can_implement(q, pr) == want);
    CHECK(retained_count(q, pr) == 0);
    CHECK(workspace_bytes(cpu{}, q, pr) == 0);
    if (pr.grid.tokens() == n) {
      dycoke_inputs<float> other = in;
      other.grid = pr.grid;
      CHECK(apply(cpu{}, q, other, out.outputs(), ws.get()) == want);
    }
  };
  rejects(dycoke{-0.1}, prob, status::invalid_ratio);
  rejects(dycoke{1.5}, prob, status::invalid_ratio);
  rejects(dycoke{std::nan("")}, prob, status::invalid_ratio);
  rejects(dycoke{0.7, static_cast<merge_order>(7)}, prob, status::invalid_parameter);
  rejects(p, problem{token_grid{0, 2, 3}, dim}, status::empty_input);
  rejects(p, problem{token_grid{5, 0, 3}, dim}, status::empty_input);
  rejects(p, problem{token_grid{5, -1, 3}, dim}, status::shape_mismatch);
  rejects(p, problem{token_grid{1, 5, 6}, dim}, status::invalid_budget);  // T = 1: nothing kept
  rejects(p, problem{token_grid{2, 1, index_t{1} << 31}, dim}, status::shape_mismatch);
  // Check order: the ratio before the grid.
  CHECK(can_implement(dycoke{2.0}, problem{token_grid{0, 2, 3}, dim}) == status::invalid_ratio);

  dycoke_inputs<float> wrong_in = in;
  wrong_in.tokens = make_view<const float>(x.data(), n - 1, dim);  // T·n mismatch
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);
  wrong_in.grid = token_grid{5, 2, 2};  // rows of another n
  wrong_in.tokens = in.tokens;
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);
  wrong_in = in;
  wrong_in.tokens = view<const float, 2>(nullptr, {n, dim}, {dim, 1});
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::null_pointer);
  wrong_in = in;
  wrong_in.metric = view<const float, 2>(x.data(), {n, 0}, {dim, 1});
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::empty_input);
  wrong_in.metric = make_view<const float>(x.data(), n + 1, 1);
  CHECK(apply(cpu{}, p, wrong_in, out.outputs(), ws.get()) == status::shape_mismatch);

  merge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), kept - 1, dim);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), kept, dim - 1);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.source = make_view(out.source.data(), kept + 1);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.positions = make_view(out.positions.data(), kept, 2);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.sizes = make_view(out.sizes.data(), n);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.assign = make_view(out.assign.data(), kept);  // (N,), not (kept,)
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.source = view<std::int64_t, 1>(nullptr, {kept});
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::null_pointer);
  wrong = out.outputs();
  wrong.sizes = make_view(reinterpret_cast<float*>(out.source.data()), kept);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.tokens = make_view(x.data(), kept, dim);  // over the rows it reads
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  wrong = out.outputs();
  wrong.assign = make_view(reinterpret_cast<std::int64_t*>(x.data()) + 1, n);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);

  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());
}

TEST_CASE("dycoke: the workspace is the carve-up, per share", "[dycoke]") {
  const problem prob{token_grid{32, 14, 14}, 3584};
  const dycoke p{};
  const std::size_t one = workspace_bytes(cpu{}, p, prob);
  // Per share, for the most frames it owns (32, or 11 of 32 split 3 ways): 196 rank keys and
  // 64 norms (one slot block) and the first output slot per frame; 63 alignment slack a buffer.
  CHECK(one == 32 * (8 * 196 + 4 * 64 + 8) + 3 * 63);
  CHECK(workspace_bytes(cpu{0, 3}, p, prob) == 3 * (11 * (8 * 196 + 4 * 64 + 8) + 3 * 63));
  CHECK(workspace_bytes(cpu{0, 0}, p, prob) == 0);
  std::vector<std::byte> bytes(one + 64);
  for (std::size_t shift = 0; shift < 64; shift += 8) {
    detail::arena carver(workspace{bytes.data() + shift, one});
    (void)backend<dycoke, cpu<>>::carve(carver, prob.grid, 0, 1);
    CHECK(carver.fits());
  }
}
