// tests/cpu/test_stream.cpp — temporal_stream: a video fed frame by frame gives, bit for bit, what
// the batch form gives on the whole video (DTD: temporal_similarity::dtd() then threshold; EVS per
// frame: temporal_similarity::evs() then topk per frame) on the shared case table, every element
// type, strided and reversed rows; shares other than 0 write nothing; every bad input, including
// frames of the wrong shape and out-of-order frame indices, returns its status and leaves the
// outputs and the state untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

const float inf = std::numeric_limits<float>::infinity();

/// Token rows of a case where every third slot repeats the previous frame's row (cosine 1, so
/// DTD drops it) and every fifth repeats it negated (cosine −1).
template <class E>
token_matrix<E> video_tokens(const shape_case& c) {
  token_matrix<E> m = make_tokens<E>(c.grid.tokens(), c.dim, c.rows, 41);
  const index_t hw = c.grid.frame_tokens();
  for (index_t i = hw; i < c.grid.tokens(); ++i) {
    const index_t slot = i % hw;
    if (slot % 3 == 0)
      for (index_t d = 0; d < c.dim; ++d) m.rows(i, d) = m.rows(i - hw, d);
    else if (slot % 5 == 0)
      for (index_t d = 0; d < c.dim; ++d) m.rows(i, d) = from_float<E>(-to_float(m.rows(i - hw, d)));
  }
  return m;
}

/// The stream's state, one frame large, in fresh buffers (a new stream: frames = 0).
template <class E>
struct state_buffers {
  std::vector<E> previous;
  std::vector<float> norms;
  std::int64_t frames = 0;
  index_t rows, dim;
  state_buffers(index_t rows_, index_t dim_)
      : previous(static_cast<std::size_t>(rows_ * dim_), from_float<E>(7.0f)),
        norms(static_cast<std::size_t>(rows_), 7.0f),
        rows(rows_),
        dim(dim_) {}
  temporal_state<E> state() {
    return {make_view(previous.data(), rows, dim), make_view(norms.data(), rows), make_view(&frames, 1)};
  }
};

/// The kept tokens of a whole video, concatenated over its frames.
template <class E>
struct kept_rows {
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;
  std::vector<std::uint32_t> bits;  // the kept rows' elements
  void add(const counted_buffers<E>& out, index_t dim) {
    const auto k = static_cast<std::size_t>(out.count);
    source.insert(source.end(), out.source.begin(), out.source.begin() + static_cast<std::ptrdiff_t>(k));
    positions.insert(positions.end(), out.positions.begin(), out.positions.begin() + static_cast<std::ptrdiff_t>(3 * k));
    for (std::size_t j = 0; j < k * static_cast<std::size_t>(dim); ++j) bits.push_back(bits_of(out.tokens[j]));
  }
};

/// The batch form on the whole video.
template <class E>
kept_rows<E> batch(const temporal_stream& p, const shape_case& c, const view<const E, 2>& rows) {
  const index_t n = c.grid.tokens();
  std::vector<float> scores(static_cast<std::size_t>(n));
  const problem prob{c.grid, c.dim};
  host_workspace ws(workspace_bytes(cpu{}, p.score, prob));
  REQUIRE(apply(cpu{}, p.score, feature_score_inputs<E>{c.grid, rows, {}}, score_outputs<>{make_view(scores.data(), n)},
                ws.get()) == status::ok);
  const selection_inputs<E> in{c.grid, make_view(static_cast<const float*>(scores.data()), n), rows};
  kept_rows<E> got;
  if (p.by == temporal_stream::rule::threshold) {
    counted_buffers<E> out(n, c.dim);
    REQUIRE(apply(cpu{}, threshold{p.tau, threshold::keep::at_most}, in, out.outputs()) == status::ok);
    got.add(out, c.dim);
  } else {
    const topk rule{p.keep, scope::per_frame};
    counted_buffers<E> out(retained_count(rule, prob), c.dim);
    host_workspace select_ws(workspace_bytes(cpu{}, rule, prob));
    REQUIRE(apply(cpu{}, rule, in, selection_outputs<E>(out.outputs()), select_ws.get()) == status::ok);
    out.count = out.kept;
    got.add(out, c.dim);
  }
  return got;
}

/// The same video fed one frame per call, share 1 of 2 first (it must write nothing), then share 0.
template <class E>
kept_rows<E> streamed(const temporal_stream& p, const shape_case& c, const view<const E, 2>& rows) {
  const index_t hw = c.grid.frame_tokens();
  const token_grid frame{1, c.grid.height, c.grid.width};
  const problem prob{frame, c.dim};
  state_buffers<E> state(hw, c.dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));
  kept_rows<E> got;
  for (index_t t = 0; t < c.grid.frames; ++t) {
    const temporal_stream_inputs<E> in{frame, t, detail::row_range(rows, t * hw, hw), state.state()};
    counted_buffers<E> out(retained_count(p, prob), c.dim);
    // Share 1 writes nothing and leaves the frame count to share 0, before or after it.
    const bool share_0_first = t % 2 == 0;
    if (!share_0_first) {
      REQUIRE(apply(cpu{1, 2}, p, in, out.outputs(), ws.get()) == status::ok);
      CHECK(out.untouched());
      CHECK(state.frames == t);
    }
    REQUIRE(apply(cpu{0, 2}, p, in, out.outputs(), ws.get()) == status::ok);
    CHECK(state.frames == t + 1);
    if (share_0_first) {
      const counted_buffers<E> after_share_0 = out;
      REQUIRE(apply(cpu{1, 2}, p, in, out.outputs(), ws.get()) == status::ok);
      CHECK(out.same_bits(after_share_0));
      CHECK(out.count == after_share_0.count);
      CHECK(state.frames == t + 1);
    }
    got.add(out, c.dim);
  }
  return got;
}

std::vector<temporal_stream> stream_rules() {
  temporal_stream evs_cosine = temporal_stream::evs(keep_budget::ratio(0.5, rounding::floor));
  evs_cosine.score = temporal_similarity{temporal_similarity::measure::cosine, -1.0f};
  return {temporal_stream::dtd(),
          temporal_stream::dtd(0.0f),
          temporal_stream::dtd(-inf),
          temporal_stream::evs(keep_budget::ratio(0.25, rounding::floor)),
          temporal_stream::evs(keep_budget::count(1)),
          evs_cosine};
}

}  // namespace

TEMPLATE_TEST_CASE("temporal_stream equals the batch form frame by frame", "[stream]", float, f16, bf16) {
  for (const shape_case& c : shape_cases()) {
    const token_matrix<TestType> tokens = video_tokens<TestType>(c);
    const view<const TestType, 2> rows = tokens.rows;
    int rule = 0;
    for (const temporal_stream& p : stream_rules()) {
      CAPTURE(c.name, rule++);
      if (can_implement(p, problem{token_grid{1, c.grid.height, c.grid.width}, c.dim}) != status::ok) continue;
      const kept_rows<TestType> want = batch(p, c, rows), got = streamed(p, c, rows);
      CHECK(got.source == want.source);
      CHECK(got.positions == want.positions);
      CHECK(got.bits == want.bits);
    }
  }
}

TEST_CASE("temporal_stream: DTD keeps frame 0 whole and drops the repeated slots", "[stream]") {
  // Two frames of four slots: slot 1 repeats, slot 2 is orthogonal (cosine 0), slot 3 is negated.
  const float x[8 * 2] = {1, 0, 0, 1, 1, 1, 2, 0,   // frame 0
                          0, 1, 0, 3, -1, 1, -2, 0};  // frame 1
  const token_grid frame{1, 2, 2};
  state_buffers<float> state(4, 2);
  host_workspace ws(workspace_bytes(cpu{}, temporal_stream::dtd(), problem{frame, 2}));
  std::vector<std::int64_t> kept;
  for (index_t t = 0; t < 2; ++t) {
    counted_buffers<float> out(4, 2);
    REQUIRE(apply(cpu{}, temporal_stream::dtd(),
                  temporal_stream_inputs<float>{frame, t, make_view(x + 8 * t, 4, 2), state.state()}, out.outputs(),
                  ws.get()) == status::ok);
    kept.insert(kept.end(), out.source.begin(), out.source.begin() + out.count);
    if (t == 1) {
      CHECK(std::vector<std::int32_t>(out.positions.begin(), out.positions.begin() + 3 * out.count) ==
            std::vector<std::int32_t>{1, 0, 0, 1, 1, 0, 1, 1, 1});
    }
  }
  // Slot 0: (1,0) then (0,1), cosine 0, kept; slot 1: (0,1) then (0,3), cosine 1, dropped.
  CHECK(kept == std::vector<std::int64_t>{0, 1, 2, 3, 4, 6, 7});
  CHECK(state.frames == 2);
  CHECK(state.previous == std::vector<float>(x + 8, x + 16));
}

TEST_CASE("temporal_stream: problem facts", "[stream]") {
  const token_grid frame{1, 27, 27};
  CHECK(retained_count(temporal_stream::dtd(), problem{frame, 1152}) == 729);
  CHECK(retained_count(temporal_stream::evs(keep_budget::ratio(0.3, rounding::floor)), problem{frame, 8}) == 218);
  CHECK(can_implement(temporal_stream::dtd(), problem{token_grid{2, 27, 27}, 8}) == status::shape_mismatch);
  CHECK(can_implement(temporal_stream::dtd(std::nanf("")), problem{frame, 8}) == status::invalid_parameter);
  CHECK(can_implement(temporal_stream::dtd(), problem{token_grid{1, 0, 4}, 8}) == status::empty_input);
  CHECK(can_implement(temporal_stream::evs(keep_budget::count(730)), problem{frame, 8}) ==
        status::budget_exceeds_input);
  CHECK(retained_count(temporal_stream::dtd(), problem{token_grid{3, 27, 27}, 8}) == 0);
  // The workspace does not grow with the stream: one frame's scores.
  CHECK(workspace_bytes(cpu{}, temporal_stream::dtd(), problem{frame, 1152}) < 729 * sizeof(float) + 128);
}

TEST_CASE("temporal_stream: bad input returns its status and touches nothing", "[stream][bad-input]") {
  const index_t hw = 6, dim = 4;
  const token_grid frame{1, 2, 3};
  std::vector<float> x(static_cast<std::size_t>(2 * hw * dim));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.0f;
  const temporal_stream p = temporal_stream::dtd();
  host_workspace ws(workspace_bytes(cpu{}, p, problem{frame, dim}));

  // A stream that has seen frame 0.
  state_buffers<float> state(hw, dim);
  {
    counted_buffers<float> out(hw, dim);
    REQUIRE(apply(cpu{}, p, temporal_stream_inputs<float>{frame, 0, make_view(x.data(), hw, dim), state.state()},
                  out.outputs(), ws.get()) == status::ok);
  }
  const state_buffers<float> before = state;
  const auto frame1 = [&] {
    return temporal_stream_inputs<float>{frame, 1, make_view(x.data() + hw * dim, hw, dim), state.state()};
  };
  const auto expect = [&](status want, const temporal_stream& policy, const temporal_stream_inputs<float>& in,
                          index_t rows = 6, workspace w = {}) {
    counted_buffers<float> out(rows, dim);
    const status got = apply(cpu{}, policy, in, out.outputs(), w.data ? w : ws.get());
    CHECK(got == want);
    CHECK(out.untouched());
    CHECK(state.frames == before.frames);
    CHECK(state.previous == before.previous);
    CHECK(state.norms == before.norms);
  };

  expect(status::invalid_parameter, temporal_stream::dtd(std::nanf("")), frame1());
  {
    temporal_stream_inputs<float> in = frame1();
    in.frame = token_grid{2, 1, 3};  // two frames in one call
    expect(status::shape_mismatch, p, in);
  }
  {
    temporal_stream_inputs<float> in = frame1();
    in.index = 2;  // frame 1 has not arrived yet
    expect(status::index_out_of_range, p, in);
    in.index = 0;  // frame 0 again
    expect(status::index_out_of_range, p, in);
    in.index = -1;
    expect(status::index_out_of_range, p, in);
  }
  {
    temporal_stream_inputs<float> in = frame1();
    in.tokens = make_view(x.data() + hw * dim, hw - 1, dim);  // a frame of the wrong size
    expect(status::shape_mismatch, p, in);
    in.tokens = make_view(x.data() + hw * dim, hw, dim - 1);  // narrower than the state
    expect(status::shape_mismatch, p, in);
    in.tokens = view<const float, 2>{};
    expect(status::shape_mismatch, p, in);
  }
  {
    temporal_stream_inputs<float> in = frame1();
    in.state.norms = {};
    expect(status::shape_mismatch, p, in);
    in = frame1();
    in.state.previous = make_view(state.previous.data(), hw, dim - 1);
    expect(status::shape_mismatch, p, in);
    in = frame1();
    in.state.frames = {};
    expect(status::shape_mismatch, p, in);
  }
  {
    // The frame read from the state's own buffer.
    temporal_stream_inputs<float> in = frame1();
    in.tokens = make_view(static_cast<const float*>(state.previous.data()), hw, dim);
    expect(status::aliasing, p, in);
  }
  expect(status::shape_mismatch, p, frame1(), 5);  // outputs smaller than the bound
  {
    // Scratch inside the state or the frame's rows: the scores would overwrite them mid-call.
    const std::size_t need = ws.bytes.size();
    REQUIRE(need <= sizeof(float) * static_cast<std::size_t>(hw * dim));
    expect(status::aliasing, p, frame1(), 6, workspace{state.previous.data(), need});
    // The norms inside one buffer with the workspace, so a missed check stays inside it.
    std::vector<float> pool(need / sizeof(float) + 1, 7.0f);
    temporal_stream_inputs<float> in = frame1();
    in.state.norms = make_view(pool.data() + 1, hw);
    expect(status::aliasing, p, in, 6, workspace{pool.data(), need});
    CHECK(std::all_of(pool.begin(), pool.end(), [](float v) { return v == 7.0f; }));
    expect(status::aliasing, p, frame1(), 6, workspace{x.data() + hw * dim, need});
  }
  expect(status::workspace_too_small, temporal_stream::evs(keep_budget::count(2)), frame1(), 2, workspace{ws.bytes.data(), 1});
  {
    counted_buffers<float> out(hw, dim);
    CHECK(apply(cpu{2, 2}, p, frame1(), out.outputs(), ws.get()) == status::invalid_exec);
    CHECK(out.untouched());
  }
}
