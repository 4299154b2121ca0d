// tests/cpu/test_stc_pruner.cpp — stc_pruner on CPU: over the shared case table (every element
// type, strided and reversed rows, chunks of several frames), a stream of chunks equals
// gaussian_redundancy followed by the topk oracle per frame, with sources and positions in the
// stream's terms and the memory moved on exactly as the two-step form moves it; shares other than 0
// write nothing; every bad input returns its status and leaves the outputs and the memory
// untouched. The original's own outputs are in test_golden_stc.cpp.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/gather_ref.hpp"
#include "reference/selection_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/selection_runs.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// One chunk through stc_pruner as `nth` shares (in reverse order), into sentinel-filled outputs.
template <class Ein, class Eout>
selection_buffers<Eout> run_pruner(const stc_pruner& p, const stc_pruner_inputs<Ein>& in, int nth = 1) {
  return run_selection_shares<Eout>(p, in, problem{in.chunk, in.tokens.extent(1)}, nth);
}

/// The two-step form on the same chunk: the library's redundancy (tested against its own oracle
/// in test_redundancy.cpp), then the topk oracle per frame, the rows gathered by the gather oracle,
/// and the chunk's indices moved to the stream's.
template <class Ein, class Eout>
void expect_two_steps(const stc_pruner& p, const stc_pruner_inputs<Ein>& in, const selection_buffers<Eout>& got) {
  const token_grid& g = in.chunk;
  const index_t n = g.tokens(), dim = in.tokens.extent(1);
  std::vector<float> scores(static_cast<std::size_t>(n));
  host_workspace ws(workspace_bytes(cpu{}, p.score, problem{g, dim}));
  REQUIRE(apply(cpu{}, p.score, redundancy_inputs<Ein>{g, in.tokens, in.memory},
                score_outputs<>{make_view(scores.data(), n)}, ws.get()) == status::ok);
  const std::vector<std::int64_t> kept = ref::kept_indices(topk{p.keep, scope::per_frame}, g, scores);
  REQUIRE(static_cast<index_t>(kept.size()) == got.kept);

  std::vector<std::int64_t> source = kept;  // in the stream: the frames before the chunk first
  for (std::int64_t& i : source) i += in.first_frame * g.frame_tokens();
  CHECK(got.source == source);
  CHECK(got.positions == ref::positions_of(source, g));  // t = the frame's index in the stream
  CHECK(ref::gather_mismatches(kept, in.tokens, got.tokens) == 0);
}

/// Three chunks of one stream on one case, each a chunk of the case's T frames (frames 0 … T − 1,
/// then T … 2T − 1, …): the pruner's outputs against the two-step form, its memory against the
/// two-step form's, and 2 and 3 shares against one.
template <class Ein, class Eout>
void check_stream(const shape_case& c, const stc_pruner& p) {
  const index_t width = redundancy_channels(p.score, c.dim);
  INFO(c.name << " " << element_name<Ein>() << " -> " << element_name<Eout>() << " ratio " << p.score.channel_ratio);
  REQUIRE(width > 0);
  redundancy_memory_buffers pruner(width), two_steps(width), shared(width);
  for (std::uint64_t chunk = 0; chunk < 3; ++chunk) {
    INFO("chunk " << chunk);
    const token_matrix<Ein> rows = continuous_rows<Ein>(c.grid.tokens(), c.dim, c.rows, 70 + chunk);
    const index_t first = static_cast<index_t>(chunk) * c.grid.frames;
    const selection_buffers<Eout> got =
        run_pruner<Ein, Eout>(p, stc_pruner_inputs<Ein>{c.grid, first, rows.rows, pruner.view()});
    expect_two_steps(p, stc_pruner_inputs<Ein>{c.grid, first, rows.rows, two_steps.view()}, got);
    CHECK(pruner == two_steps);

    for (int nth : {2, 3}) {
      redundancy_memory_buffers before = shared;
      const selection_buffers<Eout> split =
          run_pruner<Ein, Eout>(p, stc_pruner_inputs<Ein>{c.grid, first, rows.rows, before.view()}, nth);
      CHECK(split.same_bits(got));
      CHECK(before == pruner);  // moved on once
    }
    shared = pruner;
  }
}

/// The budgets every case runs: one token a frame, STC's share of 60 / 196 (floor, at least one),
/// every token.
std::vector<keep_budget> budgets() {
  return {keep_budget::count(1), keep_budget::ratio(60.0 / 196.0, rounding::floor).at_least(1),
          keep_budget::ratio(1.0, rounding::floor)};
}

TEST_CASE("stc_pruner equals gaussian_redundancy then topk per frame over a stream, on every case", "[stc]") {
  for (const shape_case& c : shape_cases()) {
    for (const keep_budget& keep : budgets()) {
      const stc_pruner p{gaussian_redundancy{}, keep};
      check_stream<float, float>(c, p);
      check_stream<f16, f16>(c, p);
      check_stream<bf16, bf16>(c, p);
    }
    check_stream<bf16, float>(c, stc_pruner{gaussian_redundancy{1.0}, keep_budget::count(1)});
  }
}

TEST_CASE("stc_pruner: the default is STC's setting, and the problem facts", "[stc]") {
  const stc_pruner p{};
  CHECK(p.score.channel_ratio == 0.5);
  CHECK(p.keep.by == keep_budget::kind::count);
  CHECK(p.keep.k == 60);
  const problem onevision{token_grid{1, 14, 14}, 3584};
  CHECK(can_implement(p, onevision) == status::ok);
  CHECK(retained_count(p, onevision) == 60);
  CHECK(retained_count(p, problem{token_grid{4, 14, 14}, 3584}) == 240);
  CHECK(can_implement(p, problem{token_grid{1, 7, 7}, 64}) == status::budget_exceeds_input);
  CHECK(retained_count(p, problem{token_grid{1, 7, 7}, 64}) == 0);
  CHECK(can_implement(p, problem{token_grid{1, 14, 14}, 1}) == status::invalid_ratio);  // int(1 · 0.5) = 0
  CHECK(can_implement(p, problem{token_grid{1, 14, 14}, 0}) == status::empty_input);
  CHECK(can_implement(p, problem{token_grid{0, 14, 14}, 64}) == status::empty_input);
  CHECK(can_implement(p, problem{token_grid{1, -1, 14}, 64}) == status::shape_mismatch);
  CHECK(can_implement(stc_pruner{gaussian_redundancy{0.0}, keep_budget::count(1)}, onevision) == status::invalid_ratio);
  CHECK(can_implement(stc_pruner{gaussian_redundancy{}, keep_budget::count(0)}, onevision) == status::invalid_budget);
  CHECK(workspace_bytes(cpu{}, p, problem{token_grid{1, 7, 7}, 64}) == 0);
  CHECK(workspace_bytes(cpu{}, p, onevision) >= 196 * sizeof(float));
}

TEST_CASE("stc_pruner: a stream keeps the token that is not like the others, in stream terms", "[stc]") {
  // Frames of 2 x 3 tokens, dim 4: every token (1, 1, 0, 0) but one, (0, 0, 1, 1) at slot 4 then 1.
  // The different token is the least redundant of its frame, and chunks of one frame at frames 7
  // and 8 put it at stream indices 7·6 + 4 and 8·6 + 1.
  const stc_pruner p{gaussian_redundancy{1.0}, keep_budget::count(1)};
  const token_grid frame{1, 2, 3};
  redundancy_memory_buffers memory(4);
  std::vector<std::int64_t> sources;
  std::vector<std::int32_t> positions;
  for (const index_t odd : {4, 1}) {
    std::vector<float> rows(24, 0.0f);
    for (index_t i = 0; i < 6; ++i)
      for (index_t c = 0; c < 4; ++c) rows[static_cast<std::size_t>(i * 4 + c)] = (c < 2) == (i != odd) ? 1.0f : 0.0f;
    const index_t first = odd == 4 ? 7 : 8;
    const selection_buffers<float> got = run_pruner<float, float>(
        p, stc_pruner_inputs<float>{frame, first, make_view<const float>(rows.data(), 6, 4), memory.view()});
    sources.insert(sources.end(), got.source.begin(), got.source.end());
    positions.insert(positions.end(), got.positions.begin(), got.positions.end());
    CHECK(got.tokens == std::vector<float>({0.0f, 0.0f, 1.0f, 1.0f}));
  }
  CHECK(sources == std::vector<std::int64_t>({46, 49}));
  CHECK(positions == std::vector<std::int32_t>({7, 1, 1, 8, 0, 1}));
  CHECK(memory.chunks == 2);
}

TEST_CASE("stc_pruner: bad input returns its status and touches nothing", "[stc][bad-input]") {
  const token_grid chunk{2, 3, 3};
  const index_t kept = 4;  // 2 of each 3 x 3 frame; `expect` sizes its outputs so by default
  const index_t n = chunk.tokens(), dim = 8;
  const token_matrix<float> rows = continuous_rows<float>(n, dim, layout::contiguous, 5);
  const tokred::view<const float, 2> tokens = rows.rows;
  const stc_pruner p{gaussian_redundancy{}, keep_budget::count(2)};
  redundancy_memory_buffers m(4);
  m.chunks = 2;
  m.sums = {1.0, 2.0, 3.0, 4.0};
  const redundancy_memory_buffers before = m;
  host_workspace ws(workspace_bytes(cpu{}, p, problem{chunk, dim}));

  const auto expect = [&](status want, const stc_pruner& policy, const stc_pruner_inputs<float>& in,
                          index_t rows_out = 4, workspace w = {}, cpu<> exec = cpu{}) {
    selection_buffers<float> out(rows_out, dim);
    CHECK(apply(exec, policy, in, out.outputs(), w.data ? w : ws.get()) == want);
    CHECK(out.untouched());
    CHECK(m == before);
  };
  const auto good = [&] { return stc_pruner_inputs<float>{chunk, 4, tokens, m.view()}; };

  expect(status::invalid_exec, p, good(), kept, {}, cpu{2, 2});
  expect(status::invalid_ratio, stc_pruner{gaussian_redundancy{1.5}, p.keep}, good());
  expect(status::invalid_ratio, stc_pruner{gaussian_redundancy{0.1}, p.keep}, good());  // int(8 · 0.1) = 0
  expect(status::invalid_budget, stc_pruner{p.score, keep_budget::count(0)}, good(), 0);
  expect(status::budget_exceeds_input, stc_pruner{p.score, keep_budget::count(10)}, good());
  {
    stc_pruner_inputs<float> in = good();
    in.chunk = token_grid{2, -3, 3};
    expect(status::shape_mismatch, p, in);
  }
  {
    stc_pruner_inputs<float> in = good();
    in.first_frame = -1;
    expect(status::index_out_of_range, p, in);
    in.first_frame = std::numeric_limits<std::int32_t>::max();  // its second frame's t overflows
    expect(status::index_out_of_range, p, in);
    in.first_frame = std::numeric_limits<index_t>::max() / 9 - 1;
    expect(status::index_out_of_range, p, in);
  }
  {
    stc_pruner_inputs<float> in = good();
    in.chunk = token_grid{2, 3, 2};  // the rows are of 3 x 3 frames
    expect(status::shape_mismatch, p, in);
  }
  {
    redundancy_memory_buffers other(3);  // C = int(8 · 0.5) = 4 slots expected
    stc_pruner_inputs<float> in = good();
    in.memory.sums = other.view().sums;
    expect(status::shape_mismatch, p, in);
    in = good();
    in.memory.channels = other.view().channels;
    expect(status::shape_mismatch, p, in);
    in = good();
    in.memory.chunks = {};
    expect(status::shape_mismatch, p, in);
  }
  expect(status::shape_mismatch, p, good(), kept + 1);  // outputs of the wrong size
  {
    selection_buffers<float> out(kept, dim);
    selection_outputs<float> o = out.outputs();
    o.source = tokred::view<std::int64_t, 1>(m.channels.data(), {kept}, {1});  // over the memory
    CHECK(apply(cpu{}, p, good(), o, ws.get()) == status::aliasing);
    CHECK(out.untouched());
    CHECK(m == before);
  }
  {
    std::vector<float> x(rows.storage.begin(), rows.storage.end());
    stc_pruner_inputs<float> in = good();
    in.tokens = make_view<const float>(x.data(), n, dim);
    selection_buffers<float> out(kept, dim);
    selection_outputs<float> o = out.outputs();
    o.tokens = make_view(x.data(), kept, dim);  // kept rows over the chunk
    CHECK(apply(cpu{}, p, in, o, ws.get()) == status::aliasing);
    CHECK(out.untouched());
  }
  {
    // A workspace over the memory: its scores would overwrite the sums before they move on. The
    // sums lie inside one buffer with the workspace, so a missed check stays inside it.
    std::vector<double> pool(ws.bytes.size() / sizeof(double) + 1, 5.0);
    stc_pruner_inputs<float> in = good();
    in.memory.sums = make_view(pool.data() + 1, 4);
    expect(status::aliasing, p, in, kept, workspace{pool.data(), ws.bytes.size()});
    CHECK(std::all_of(pool.begin(), pool.end(), [](double v) { return v == 5.0; }));
  }
  {
    // An output over the workspace: the selection would refuse it only after the memory moved on.
    std::vector<std::int64_t> pool(ws.bytes.size() / sizeof(std::int64_t) + 1, 5);
    selection_buffers<float> out(kept, dim);
    selection_outputs<float> o = out.outputs();
    o.source = make_view(pool.data(), kept);
    CHECK(apply(cpu{}, p, good(), o, workspace{pool.data(), ws.bytes.size()}) == status::aliasing);
    CHECK(out.untouched());
    CHECK(m == before);
  }
  {
    stc_pruner_inputs<float> in = good();
    // The sums over the chunk's rows (only the addresses are compared; nothing is read).
    in.memory.sums = make_view(reinterpret_cast<double*>(const_cast<float*>(tokens.data_handle())), 4);
    expect(status::aliasing, p, in);
  }
  {
    host_workspace small(workspace_bytes(cpu{}, p, problem{chunk, dim}) - 1);
    expect(status::workspace_too_small, p, good(), kept, small.get());
  }
  {
    m.chunks = -1;
    const redundancy_memory_buffers negative = m;
    selection_buffers<float> out(kept, dim);
    CHECK(apply(cpu{}, p, good(), out.outputs(), ws.get()) == status::invalid_parameter);
    CHECK(out.untouched());
    CHECK(m == negative);
    m = before;
  }
  {
    // A share other than 0 checks and writes nothing; share 0 then writes everything.
    selection_buffers<float> out(kept, dim);
    CHECK(apply(cpu{1, 2}, p, good(), out.outputs(), ws.get()) == status::ok);
    CHECK(out.untouched());
    CHECK(m == before);
    CHECK(apply(cpu{0, 2}, p, good(), out.outputs(), ws.get()) == status::ok);
    CHECK(m.chunks == 3);
    CHECK(!out.untouched());
  }
}

}  // namespace
