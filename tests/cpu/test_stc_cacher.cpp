// tests/cpu/test_stc_cacher.cpp — stc_cacher on CPU: the oracle over the shared case table (every
// element type, strided and reversed rows, chunks of several frames, planted exact ties and keys
// opposite to the reference), bit for bit for 1–3 shares; a hand-made frame with a zero key and a
// NaN key; the reference-chunk schedule; the problem facts; every bad input returns its status and
// leaves the outputs untouched.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <tokred/tokred.hpp>

#include "reference/gather_ref.hpp"
#include "reference/stc_cacher_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/selection_runs.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// One chunk of one layer through stc_cacher as `nth` shares (in reverse order), into
/// sentinel-filled outputs.
template <class Ein, class Eout>
selection_buffers<Eout> run_cacher(const stc_cacher& p, const stc_cacher_inputs<Ein>& in, int nth = 1) {
  return run_selection_shares<Eout>(p, in, problem{in.chunk, in.keys.extent(1)}, nth);
}

/// Keys of a case with planted structure: in every frame, slot j ≡ 3 (mod 7) holds the reference
/// key negated (similarity ≈ −1, chosen first), slot j ≡ 2 (mod 6) a zero key (similarity exactly
/// 0: exact ties in the middle of the range), the rest the case's exact grid values.
template <class E>
token_matrix<E> planted_keys(const shape_case& c, const tokred::view<const E, 2>& reference) {
  token_matrix<E> keys = make_tokens<E>(c.grid.tokens(), c.dim, c.rows, 91);
  const index_t slots = c.grid.frame_tokens();
  for (index_t i = 0; i < c.grid.tokens(); ++i) {
    const index_t j = i % slots;
    for (index_t d = 0; d < c.dim; ++d) {
      if (j % 7 == 3) keys.rows(i, d) = from_float<E>(-to_float(reference(j, d)));
      else if (j % 6 == 2) keys.rows(i, d) = from_float<E>(0.0f);
    }
  }
  return keys;
}

template <class Ein, class Eout>
void check_case(const shape_case& c, const stc_cacher& p) {
  INFO(c.name << " " << element_name<Ein>() << " -> " << element_name<Eout>() << " ratio " << p.update_ratio);
  const index_t slots = c.grid.frame_tokens();
  const token_matrix<Ein> reference = make_tokens<Ein>(slots, c.dim, c.rows, 90);
  const tokred::view<const Ein, 2> ref_rows = reference.rows;
  const token_matrix<Ein> keys = planted_keys<Ein>(c, ref_rows);
  const stc_cacher_inputs<Ein> in{c.grid, keys.rows, ref_rows};

  const std::vector<std::int64_t> want =
      ref::stc_recompute(p, c.grid, ref::stc_similarities(c.grid, in.keys, in.reference));
  const selection_buffers<Eout> got = run_cacher<Ein, Eout>(p, in);
  CHECK(got.source == want);
  CHECK(got.positions == ref::positions_of(want, c.grid));
  CHECK(ref::gather_mismatches(want, in.keys, got.tokens) == 0);
  for (int nth : {2, 3}) CHECK(run_cacher<Ein, Eout>(p, in, nth).same_bits(got));
}

TEST_CASE("stc_cacher matches the oracle on the case table", "[stc]") {
  for (const shape_case& c : shape_cases()) {
    for (double ratio : {0.0, 0.25, 0.5, 1.0}) {
      const stc_cacher p{ratio, 2};
      check_case<float, float>(c, p);
      check_case<f16, f16>(c, p);
      check_case<bf16, bf16>(c, p);
    }
    check_case<bf16, float>(c, stc_cacher{});
  }
}

TEST_CASE("stc_cacher: a hand-made frame with a zero key and a NaN key", "[stc]") {
  // One frame of 2 x 3 tokens, keys of 2 values, reference keys all (1, 0). Similarities:
  //   slot 0 (1, 0) → 1, slot 1 (0, 1) → 0, slot 2 (0, 0) → 0 (the zero key), slot 3 (−1, 1) →
  //   −0.7071, slot 4 NaN, slot 5 (−1, 0) → −1.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> keys = {1, 0, 0, 1, 0, 0, -1, 1, nan, 0, -1, 0};
  const std::vector<float> reference = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0};
  const stc_cacher_inputs<float> in{token_grid{1, 2, 3}, make_view<const float>(keys.data(), 6, 2),
                                    make_view<const float>(reference.data(), 6, 2)};
  const auto chosen = [&](double ratio) { return run_cacher<float, float>(stc_cacher{ratio, 2}, in).source; };
  CHECK(chosen(0.25) == std::vector<std::int64_t>({5}));              // u = max(1, int(1.5)) = 1
  CHECK(chosen(0.0) == std::vector<std::int64_t>({5}));               // u = max(1, 0) = 1
  CHECK(chosen(0.5) == std::vector<std::int64_t>({1, 3, 5}));         // −1, −0.71, then the 0 tie: slot 1
  CHECK(chosen(0.7) == std::vector<std::int64_t>({1, 2, 3, 5}));      // int(4.2) = 4: both zeros
  CHECK(chosen(0.85) == std::vector<std::int64_t>({0, 1, 2, 3, 5}));  // int(5.1) = 5: 1 before NaN
  CHECK(chosen(1.0) == std::vector<std::int64_t>({0, 1, 2, 3, 4, 5}));
  const selection_buffers<float> out = run_cacher<float, float>(stc_cacher{0.5, 2}, in);
  CHECK(out.positions == std::vector<std::int32_t>({0, 0, 1, 0, 1, 0, 0, 1, 2}));
  CHECK(out.tokens == std::vector<float>({0.0f, 1.0f, -1.0f, 1.0f, -1.0f, 0.0f}));
}

TEST_CASE("stc_cacher: reference chunks and the problem facts", "[stc]") {
  const stc_cacher p{};
  CHECK(p.update_ratio == 0.25);
  CHECK(p.interval == 2);
  CHECK(is_reference_chunk(p, 0));
  CHECK_FALSE(is_reference_chunk(p, 1));
  CHECK(is_reference_chunk(p, 2));
  CHECK_FALSE(is_reference_chunk(p, 7));
  CHECK_FALSE(is_reference_chunk(p, -2));
  CHECK(is_reference_chunk(stc_cacher{0.25, 1}, 5));
  CHECK(is_reference_chunk(stc_cacher{0.25, 4}, 8));
  CHECK_FALSE(is_reference_chunk(stc_cacher{0.25, 4}, 6));
  CHECK_FALSE(is_reference_chunk(stc_cacher{0.25, 0}, 0));

  const problem siglip{token_grid{1, 27, 27}, 1152};  // LLaVA-OneVision's SigLIP, one frame a chunk
  CHECK(can_implement(p, siglip) == status::ok);
  CHECK(retained_count(p, siglip) == 182);  // int(729 · 0.25)
  CHECK(retained_count(p, problem{token_grid{4, 27, 27}, 1152}) == 4 * 182);
  CHECK(retained_count(stc_cacher{0.0, 2}, siglip) == 1);
  CHECK(retained_count(stc_cacher{1.0, 2}, siglip) == 729);
  CHECK(can_implement(stc_cacher{1.5, 2}, siglip) == status::invalid_ratio);
  CHECK(can_implement(stc_cacher{-0.1, 2}, siglip) == status::invalid_ratio);
  CHECK(can_implement(stc_cacher{std::nan(""), 2}, siglip) == status::invalid_ratio);
  CHECK(can_implement(stc_cacher{0.25, 0}, siglip) == status::invalid_parameter);
  CHECK(can_implement(p, problem{token_grid{0, 27, 27}, 1152}) == status::empty_input);
  CHECK(can_implement(p, problem{token_grid{1, -27, 27}, 1152}) == status::shape_mismatch);
  CHECK(retained_count(stc_cacher{0.25, 0}, siglip) == 0);
  CHECK(workspace_bytes(cpu{}, stc_cacher{0.25, 0}, siglip) == 0);
  CHECK(workspace_bytes(cpu{}, p, siglip) >= (729 + 729) * sizeof(float));
}

TEST_CASE("stc_cacher: bad input returns its status and touches nothing", "[stc][bad-input]") {
  const token_grid chunk{2, 2, 3};
  const index_t n = chunk.tokens(), dim = 4;
  const token_matrix<float> keys = make_tokens<float>(n, dim, layout::contiguous, 3);
  const token_matrix<float> reference = make_tokens<float>(6, dim, layout::contiguous, 4);
  const stc_cacher p{0.5, 2};  // 3 of each frame of 6: 6 rows
  host_workspace ws(workspace_bytes(cpu{}, p, problem{chunk, dim}));
  const auto good = [&] {
    return stc_cacher_inputs<float>{chunk, tokred::view<const float, 2>(keys.rows),
                                    tokred::view<const float, 2>(reference.rows)};
  };
  const auto expect = [&](status want, const stc_cacher& policy, const stc_cacher_inputs<float>& in,
                          index_t rows = 6, workspace w = {}, cpu<> exec = cpu{}) {
    selection_buffers<float> out(rows, dim);
    CHECK(apply(exec, policy, in, out.outputs(), w.data ? w : ws.get()) == want);
    CHECK(out.untouched());
  };

  expect(status::invalid_exec, p, good(), 6, {}, cpu{0, 0});
  expect(status::invalid_parameter, stc_cacher{0.5, 0}, good());
  expect(status::invalid_ratio, stc_cacher{2.0, 2}, good());
  {
    stc_cacher_inputs<float> in = good();
    in.chunk = token_grid{2, 3, 3};  // 18 tokens against 12 key rows
    expect(status::shape_mismatch, p, in, 8);
    in.chunk = token_grid{0, 2, 3};
    expect(status::empty_input, p, in);
  }
  {
    stc_cacher_inputs<float> in = good();
    in.reference = make_view<const float>(reference.storage.data(), 5, dim);  // a frame has 6 slots
    expect(status::shape_mismatch, p, in);
    in.reference = make_view<const float>(reference.storage.data(), 6, 3);  // narrower than the keys
    expect(status::shape_mismatch, p, in);
    in = good();
    in.keys = make_view<const float>(keys.storage.data(), n, 0);
    in.reference = make_view<const float>(reference.storage.data(), 6, 0);
    expect(status::empty_input, p, in);
  }
  expect(status::shape_mismatch, p, good(), 7);  // outputs of the wrong size
  {
    std::vector<float> shared(reference.storage);  // the reference rows, written over by an output
    stc_cacher_inputs<float> in = good();
    in.reference = make_view<const float>(shared.data(), 6, dim);
    selection_buffers<float> out(6, dim);
    selection_outputs<float> o = out.outputs();
    o.tokens = make_view(shared.data(), 6, dim);
    CHECK(apply(cpu{}, p, in, o, ws.get()) == status::aliasing);
    CHECK(out.untouched());
    CHECK(shared == reference.storage);
  }
  {
    // Sources written over the keys, with the token rows not requested.
    std::vector<float> shared(keys.storage);
    stc_cacher_inputs<float> in = good();
    in.keys = make_view<const float>(shared.data(), n, dim);
    selection_buffers<float> out(6, dim);
    selection_outputs<float> o = out.outputs();
    o.tokens = {};
    o.positions = tokred::view<std::int32_t, 2>(reinterpret_cast<std::int32_t*>(shared.data()), {6, 3}, {3, 1});
    CHECK(apply(cpu{}, p, in, o, ws.get()) == status::aliasing);
    CHECK(out.untouched());
    CHECK(shared == keys.storage);
  }
  {
    host_workspace small(workspace_bytes(cpu{}, p, problem{chunk, dim}) - 1);
    expect(status::workspace_too_small, p, good(), 6, small.get());
  }
  {
    // A share other than 0 checks and writes nothing.
    selection_buffers<float> out(6, dim);
    CHECK(apply(cpu{1, 2}, p, good(), out.outputs(), ws.get()) == status::ok);
    CHECK(out.untouched());
  }
}

}  // namespace
