// tests/cuda/test_selection_cuda.cu — the CUDA backend of topk, uniform, random_subset and gather
// against the scalar oracle (and the CPU backend) on the shared case table, bit for bit.
//
// Exits 77 (CTest's "skipped") when no CUDA device is present, so the suite passes on build
// machines without a GPU. Otherwise prints one line per failure and a closing
// "N passed, M failed", and exits non-zero on any failure.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "reference/gather_ref.hpp"
#include "reference/selection_ref.hpp"
#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

template <class Policy>
const char* policy_name() {
  if constexpr (std::is_same_v<Policy, topk>)
    return "topk";
  else if constexpr (std::is_same_v<Policy, uniform>)
    return "uniform";
  else if constexpr (std::is_same_v<Policy, random_subset>)
    return "random_subset";
  else
    return "gather";
}

// ---------------------------------------------------------------------------------------------
// Device outputs and scores in the layouts of the case table.

/// True when two storage images agree bit for bit (NaN payloads and padding included); also
/// counts the differing elements for the failure message.
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b, std::size_t* differing) {
  *differing = 0;
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    *differing += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return *differing == 0;
}

/// The expected images of all three outputs after moving `index` (rows whose index is outside
/// [0, n) stay as filled), and the device outputs to compare them with.
template <class Ein, class Eout>
struct output_set {
  index_t kept, dim;
  placed<Eout> tokens;
  placed<std::int64_t> source;
  placed<std::int32_t> positions;

  static constexpr std::int64_t source_fill = -12345;
  static constexpr std::int32_t position_fill = -777;

  output_set(index_t kept_, index_t dim_, layout how)
      : kept(kept_),
        dim(dim_),
        tokens(place(kept_, dim_, layout_of(how)), kept_, dim_, from_float<Eout>(-3.5f)),
        source(place_vector(kept_, layout_of(how)), kept_, 1, source_fill),
        positions(place(kept_, 3, layout_of(how)), kept_, 3, position_fill) {}

  selection_outputs<Eout, device_space> views() const {
    return {tokens.matrix(), source.vector(), positions.matrix()};
  }

  /// Compares the device outputs with what moving `index` out of `rows` must give.
  void expect(const std::vector<std::int64_t>& index, const token_grid& grid,
              const view<const Ein, 2>& rows,  // (tokens, dim) host
              const std::string& label) const {
    std::vector<Eout> want_tokens = tokens.image;
    std::vector<std::int64_t> want_source = source.image;
    std::vector<std::int32_t> want_positions = positions.image;
    for (index_t j = 0; j < kept; ++j) {
      const std::int64_t i = index[static_cast<std::size_t>(j)];
      if (i < 0 || i >= grid.tokens()) continue;  // documented: the row stays unwritten
      want_source[static_cast<std::size_t>(source.where.at(j, 0))] = i;
      const std::vector<std::int32_t> p = ref::positions_of({i}, grid);
      for (index_t a = 0; a < 3; ++a)
        want_positions[static_cast<std::size_t>(positions.where.at(j, a))] =
            p[static_cast<std::size_t>(a)];
      for (index_t c = 0; c < dim; ++c)
        want_tokens[static_cast<std::size_t>(tokens.where.at(j, c))] =
            from_float<Eout>(to_float(rows(i, c)));
    }
    std::size_t bad = 0;
    check(same_bits(source.buffer.download(), want_source, &bad),
          label + ": source (" + std::to_string(bad) + " differ)");
    check(same_bits(positions.buffer.download(), want_positions, &bad),
          label + ": positions (" + std::to_string(bad) + " differ)");
    check(same_bits(tokens.buffer.download(), want_tokens, &bad),
          label + ": tokens (" + std::to_string(bad) + " differ)");
  }

  /// True when nothing was written to any output (including its padding).
  bool untouched() const {
    return tokens.untouched() && source.untouched() && positions.untouched();
  }
};

/// Scores on the device in a case layout (strided and reversed cases get strided scores too).
struct device_scores {
  std::vector<float> values;  // (tokens,) in token order
  placed<float> storage;
  view<const float, 1, device_space> view_;  // (tokens,)

  device_scores(std::vector<float> v, layout how)
      : values(std::move(v)),
        storage(place_vector(static_cast<index_t>(values.size()), layout_of(how)),
                static_cast<index_t>(values.size()), 1, 0.0f) {
    for (index_t i = 0; i < storage.rows; ++i)
      storage.at(i, 0) = values[static_cast<std::size_t>(i)];
    storage.buffer.upload(storage.image);
    view_ = storage.vector();
  }
};

// ---------------------------------------------------------------------------------------------
// The case-table sweep.

template <class Policy>
Policy make_policy(const keep_budget& keep, scope within) {
  Policy p{};
  p.keep = keep;
  p.within = within;
  if constexpr (std::is_same_v<Policy, random_subset>) p.seed = 20261121;
  return p;
}

std::string describe(const char* what, const shape_case& c, const char* ein, const char* eout,
                     double ratio, scope within) {
  return std::string(what) + " " + c.name + " " + ein + "->" + eout + " ratio " +
         std::to_string(ratio) + (within == scope::global ? " global" : " per_frame");
}

/// Runs one budgeted selection on the device and compares it with the oracle, the CPU backend,
/// and (for invalid budgets) the status the host checks promise, with nothing written.
template <class Ein, class Eout, class Policy>
void check_budgeted(const Policy& p, const shape_case& c, const std::string& label) {
  const index_t n = c.grid.tokens();
  const problem prob{c.grid, c.dim};
  const index_t kept = retained_count(p, prob);
  device_scores scores(tie_heavy_scores(n, 11 + static_cast<std::uint64_t>(n)), c.rows);
  const rows_on_device<Ein> rows(n, c.dim, layout_of(c.rows), 5);
  output_set<Ein, Eout> out(kept > 0 ? kept : 1, c.dim, c.rows);
  const selection_inputs<Ein, device_space> in{c.grid, scores.view_, rows.device()};
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, p, prob));
  const status s =
      apply(tokred::cuda{test_stream()}, p, in, out.views(), workspace{ws.get(), ws.size()});
  finish(label);
  if (kept == 0) {
    check(s == can_implement(p, prob) && s != status::ok,
          label + ": invalid budget gave " + to_string(s));
    check(out.untouched(), label + ": wrote on " + to_string(s));
    return;
  }
  check(s == status::ok, label + ": status " + to_string(s));
  const std::vector<std::int64_t> expected = ref::kept_indices(p, c.grid, scores.values);
  out.expect(expected, c.grid, rows.host(), label);

  // The CPU backend on the same host data must keep the same tokens.
  selection_buffers<Eout> cpu_out(kept, c.dim);
  host_workspace cpu_ws(workspace_bytes(tokred::cpu<>{}, p, prob));
  const selection_inputs<Ein> cpu_in{c.grid, make_view(scores.values.data(), n), rows.host()};
  const status cs = apply(tokred::cpu<>{}, p, cpu_in, cpu_out.outputs(), cpu_ws.get());
  check(cs == status::ok && cpu_out.source == expected, label + ": CPU backend disagrees");
}

template <class Ein, class Eout>
void sweep_case(const shape_case& c) {
  for (scope within : {scope::global, scope::per_frame})
    for (double ratio : keep_ratios()) {
      const keep_budget keep = keep_budget::ratio(ratio, rounding::floor);
      const char* ein = element_name<Ein>();
      const char* eout = element_name<Eout>();
      check_budgeted<Ein, Eout>(make_policy<topk>(keep, within), c,
                                 describe("topk", c, ein, eout, ratio, within));
      check_budgeted<Ein, Eout>(make_policy<uniform>(keep, within), c,
                                 describe("uniform", c, ein, eout, ratio, within));
      check_budgeted<Ein, Eout>(make_policy<random_subset>(keep, within), c,
                                 describe("random_subset", c, ein, eout, ratio, within));
    }
}

/// Gather of a random list (repeats allowed); with `poison`, three entries are out of range and
/// their rows must stay unwritten while the others are moved.
template <class Ein, class Eout>
void check_gather_list(const shape_case& c, bool poison) {
  const index_t n = c.grid.tokens();
  rng r(static_cast<std::uint64_t>(n) * 3 + 1);
  std::vector<std::int64_t> index(static_cast<std::size_t>(n + 3));
  for (auto& i : index) i = static_cast<std::int64_t>(r.next() % static_cast<std::uint64_t>(n));
  if (poison) {
    index.front() = -1;
    index[index.size() / 2] = n;
    index.back() = std::int64_t{1} << 40;
  }
  const index_t kept = static_cast<index_t>(index.size());
  const std::string label = std::string("gather ") + c.name + " " + element_name<Ein>() + "->" +
                            element_name<Eout>() + (poison ? " out-of-range" : "");
  const rows_on_device<Ein> rows(n, c.dim, layout_of(c.rows), 9);
  const device_buffer<std::int64_t> dindex(index);
  output_set<Ein, Eout> out(kept, c.dim, c.rows);
  const gather_inputs<Ein, device_space> in{
      c.grid, make_device_view<const std::int64_t>(dindex.get(), kept), rows.device()};
  const status s = apply(tokred::cuda{test_stream()}, gather{}, in, out.views());
  finish(label);
  check(s == status::ok, label + ": status " + to_string(s));
  out.expect(index, c.grid, rows.host(), label);
}

// ---------------------------------------------------------------------------------------------
// Cases beyond the table: long groups, degenerate scores, the vector path's tail.

/// topk / random_subset over one long group (many compaction tiles, every radix pass busy).
void check_long_groups() {
  const shape_case long_global{"long_global_100003", sequence_grid(100003), 3, layout::contiguous};
  const shape_case long_frames{"long_frames_3x200x300", token_grid{3, 200, 300}, 2,
                               layout::strided};
  for (index_t k : {index_t{1}, index_t{2}, index_t{2047}, index_t{2049}, index_t{50001},
                    index_t{99999}, index_t{100003}}) {
    const std::string suffix = " k " + std::to_string(k);
    check_budgeted<float, float>(topk{keep_budget::count(k)}, long_global,
                                  "topk long global" + suffix);
    check_budgeted<bf16, bf16>(random_subset{keep_budget::count(k), 99}, long_global,
                                "random_subset long global" + suffix);
  }
  for (index_t k : {index_t{1}, index_t{777}, index_t{60000}}) {
    const std::string suffix = " k " + std::to_string(k);
    check_budgeted<f16, f16>(topk{keep_budget::count(k), scope::per_frame}, long_frames,
                              "topk long per_frame" + suffix);
    check_budgeted<float, float>(uniform{keep_budget::count(k), scope::per_frame}, long_frames,
                                  "uniform long per_frame" + suffix);
  }
}

/// All-equal and all-NaN scores: the kept set is the k lowest indices.
void check_degenerate_scores() {
  const index_t n = 5000, k = 1234;
  for (float value : {0.0f, -0.0f, std::nanf(""), INFINITY}) {
    std::vector<float> host(static_cast<std::size_t>(n), value);
    if (value == 0.0f)  // mix the two zeros: they must tie
      for (index_t i = 0; i < n; i += 3) host[static_cast<std::size_t>(i)] = -0.0f;
    const device_buffer<float> scores(host);
    const device_buffer<std::int64_t> source(static_cast<std::size_t>(k));
    const topk p{keep_budget::count(k)};
    const token_grid grid = sequence_grid(n);
    device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, p, problem{grid, 0}));
    const selection_inputs<float, device_space> in{
        grid, make_device_view<const float>(scores.get(), n), {}};
    const selection_outputs<float, device_space> out{{}, make_device_view(source.get(), k), {}};
    const std::string label = "topk constant score " + std::to_string(value);
    const status s = apply(tokred::cuda{test_stream()}, p, in, out, workspace{ws.get(), ws.size()});
    finish(label);
    std::vector<std::int64_t> first(static_cast<std::size_t>(k));
    for (index_t i = 0; i < k; ++i) first[static_cast<std::size_t>(i)] = i;
    check(s == status::ok && source.download() == first, label + ": not the lowest indices");
  }
}

/// Rows padded to a 16-byte stride but not a multiple of 16 bytes wide: the vector path with an
/// element tail, and the untouched padding between rows.
void check_vector_tail() {
  const index_t n = 300, dim = 10, pitch = 12, k = 77;
  std::vector<float> storage(static_cast<std::size_t>(n * pitch), -9.0f);
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < dim; ++c)
      storage[static_cast<std::size_t>(i * pitch + c)] = static_cast<float>(i * 100 + c);
  const std::vector<float> scores = tie_heavy_scores(n, 3);
  const device_buffer<float> drows(storage), dscores(scores);
  std::vector<float> out_image(static_cast<std::size_t>(k * pitch), 5.0f);
  const device_buffer<float> dout(out_image);
  const token_grid grid = sequence_grid(n);
  const topk p{keep_budget::count(k)};
  const selection_inputs<float, device_space> in{
      grid, make_device_view<const float>(dscores.get(), n),
      view<const float, 2, device_space>(drows.get(), {n, dim}, {pitch, 1})};
  const selection_outputs<float, device_space> out{
      view<float, 2, device_space>(dout.get(), {k, dim}, {pitch, 1}), {}, {}};
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, p, problem{grid, dim}));
  const status s = apply(tokred::cuda{test_stream()}, p, in, out, workspace{ws.get(), ws.size()});
  finish("topk padded rows");
  const std::vector<std::int64_t> kept = ref::kept_indices(p, grid, scores);
  for (index_t j = 0; j < k; ++j)
    for (index_t c = 0; c < dim; ++c)
      out_image[static_cast<std::size_t>(j * pitch + c)] =
          storage[static_cast<std::size_t>(kept[static_cast<std::size_t>(j)] * pitch + c)];
  std::size_t bad = 0;
  check(s == status::ok && same_bits(dout.download(), out_image, &bad),
        "topk padded rows: " + std::to_string(bad) + " differ");
}

/// Requesting nothing is valid and writes nothing.
void check_nothing_requested() {
  const device_buffer<float> scores(std::vector<float>(64, 1.0f));
  const selection_inputs<float, device_space> in{
      sequence_grid(64), make_device_view<const float>(scores.get(), 64), {}};
  const topk p{keep_budget::count(8)};
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{test_stream()}, p, problem{in.grid, 0}));
  const status s = apply(tokred::cuda{test_stream()}, p, in,
                         selection_outputs<float, device_space>{}, workspace{ws.get(), ws.size()});
  finish("nothing requested");
  check(s == status::ok, std::string("nothing requested: ") + to_string(s));
}

// ---------------------------------------------------------------------------------------------
// Bad input: the documented status, and not a byte written.

/// A valid 6 × 4 problem (N = 24, dim 8, keep 6) that each check breaks in one way.
struct bad_input_fixture {
  static constexpr index_t n = 24, dim = 8, kept = 6;
  token_grid grid{1, 6, 4};
  device_buffer<float> scores{std::vector<float>(n, 1.0f)};
  device_buffer<float> rows{std::vector<float>(n * dim, 2.0f)};
  output_set<float, float> out{kept, dim, layout::contiguous};
  topk policy{keep_budget::count(kept)};
  std::size_t need =
      workspace_bytes(tokred::cuda{}, topk{keep_budget::count(kept)}, problem{grid, dim});
  device_buffer<std::byte> ws{need};

  selection_inputs<float, device_space> inputs() const {
    return {grid, make_device_view<const float>(scores.get(), n),
            make_device_view<const float>(rows.get(), n, dim)};
  }
  status run(const selection_inputs<float, device_space>& in,
             const selection_outputs<float, device_space>& o, workspace w) {
    const status s = apply(tokred::cuda{test_stream()}, policy, in, o, w);
    finish("bad input");
    return s;
  }
  status run(const selection_inputs<float, device_space>& in,
             const selection_outputs<float, device_space>& o) {
    return run(in, o, workspace{ws.get(), need});
  }
};

void expect_status(const char* what, status got, status want, bool untouched) {
  check(got == want, std::string(what) + ": got " + to_string(got) + ", want " + to_string(want));
  check(untouched, std::string(what) + ": wrote output on failure");
}

void check_bad_input() {
  {
    bad_input_fixture f;
    const status s = f.run(f.inputs(), f.out.views());
    check(s == status::ok && !f.out.untouched(), "bad-input fixture is valid");
  }
  {
    bad_input_fixture f;
    f.policy.keep = keep_budget::count(f.n + 1);
    expect_status("k > N", f.run(f.inputs(), f.out.views()), status::budget_exceeds_input,
                  f.out.untouched());
    f.policy.keep = keep_budget::count(0);
    expect_status("k = 0", f.run(f.inputs(), f.out.views()), status::invalid_budget,
                  f.out.untouched());
    f.policy.keep = keep_budget::ratio(1.5, rounding::floor);
    expect_status("ratio 1.5", f.run(f.inputs(), f.out.views()), status::invalid_ratio,
                  f.out.untouched());
  }
  {
    bad_input_fixture f;
    f.grid = token_grid{0, 6, 4};
    expect_status("N = 0", f.run(f.inputs(), f.out.views()), status::empty_input,
                  f.out.untouched());
  }
  {
    bad_input_fixture f;
    selection_inputs<float, device_space> in = f.inputs();
    in.scores = make_device_view(static_cast<const float*>(nullptr), f.n);
    expect_status("null scores", f.run(in, f.out.views()), status::null_pointer, f.out.untouched());
    selection_outputs<float, device_space> o = f.out.views();
    o.tokens = make_device_view(static_cast<float*>(nullptr), f.kept, f.dim);
    expect_status("null output rows", f.run(f.inputs(), o), status::null_pointer,
                  f.out.untouched());
    o = f.out.views();
    o.source = make_device_view(f.out.source.buffer.get(), f.kept + 1);
    expect_status("source too long", f.run(f.inputs(), o), status::shape_mismatch,
                  f.out.untouched());
    o = f.out.views();
    o.tokens = make_device_view(f.rows.get(), f.kept, f.dim);
    expect_status("output rows alias input rows", f.run(f.inputs(), o), status::aliasing,
                  f.out.untouched());
  }
  {
    bad_input_fixture f;
    expect_status("workspace one byte short",
                  f.run(f.inputs(), f.out.views(), workspace{f.ws.get(), f.need - 1}),
                  status::workspace_too_small, f.out.untouched());
    expect_status("workspace null", f.run(f.inputs(), f.out.views(), workspace{nullptr, f.need}),
                  status::null_pointer, f.out.untouched());
  }
  {
    bad_input_fixture f;
    const device_buffer<std::int64_t> index(std::vector<std::int64_t>{1, 2, 3});
    gather_inputs<float, device_space> in{
        f.grid, {}, make_device_view<const float>(f.rows.get(), f.n, f.dim)};
    status s = apply(tokred::cuda{test_stream()}, gather{}, in, f.out.views());
    finish("gather empty index");
    expect_status("gather empty index", s, status::invalid_budget, f.out.untouched());
    in.index = make_device_view(static_cast<const std::int64_t*>(nullptr), f.kept);
    s = apply(tokred::cuda{test_stream()}, gather{}, in, f.out.views());
    finish("gather null index");
    expect_status("gather null index", s, status::null_pointer, f.out.untouched());
    in.index = make_device_view<const std::int64_t>(index.get(), 3);
    s = apply(tokred::cuda{test_stream()}, gather{}, in, f.out.views());
    finish("gather short index");
    expect_status("gather index shorter than outputs", s, status::shape_mismatch,
                  f.out.untouched());
  }
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: the backends only enqueue stream work, so a captured graph replays them.

void check_graph_capture() {
  const shape_case c{"graph_video_4x12x12", token_grid{4, 12, 12}, 40, layout::contiguous};
  const index_t n = c.grid.tokens();
  const topk top{keep_budget::ratio(0.25, rounding::floor), scope::per_frame};
  const random_subset draw{keep_budget::count(100), 5};
  const problem prob{c.grid, c.dim};
  const index_t k_top = retained_count(top, prob), k_draw = retained_count(draw, prob);
  device_scores scores(tie_heavy_scores(n, 17), c.rows);
  const rows_on_device<bf16> rows(n, c.dim, layout_of(c.rows), 4);
  output_set<bf16, bf16> out_top(k_top, c.dim, c.rows), out_draw(k_draw, c.dim, c.rows);
  const selection_inputs<bf16, device_space> in{c.grid, scores.view_, rows.device()};
  const tokred::cuda exec{test_stream()};
  device_buffer<std::byte> ws_top(workspace_bytes(exec, top, prob)),
      ws_draw(workspace_bytes(exec, draw, prob));

  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, top, in, out_top.views(), workspace{ws_top.get(), ws_top.size()}),
        apply(exec, draw, in, out_draw.views(), workspace{ws_draw.get(), ws_draw.size()})};
  });
  if (!replayed) return;
  out_top.expect(ref::kept_indices(top, c.grid, scores.values), c.grid, rows.host(),
                 "graph topk");
  out_draw.expect(ref::kept_indices(draw, c.grid, scores.values), c.grid, rows.host(),
                  "graph random_subset");
}

template <class E>
void sweep_element_type() {
  for (const shape_case& c : shape_cases()) {
    sweep_case<E, E>(c);
    check_gather_list<E, E>(c, false);
  }
}

/// Rows converted to another element type on the way out, through fp32, exactly.
void sweep_conversions() {
  const double half = 0.5;
  for (const shape_case& c : shape_cases()) {
    if (c.grid.tokens() < 2) continue;  // half of a single token rounds down to none
    const keep_budget keep = keep_budget::ratio(half, rounding::floor);
    check_budgeted<f16, float>(make_policy<topk>(keep, scope::global), c,
                                describe("topk", c, "fp16", "fp32", half, scope::global));
    check_budgeted<bf16, float>(make_policy<uniform>(keep, scope::per_frame), c,
                                 describe("uniform", c, "bf16", "fp32", half, scope::per_frame));
    check_budgeted<float, bf16>(make_policy<random_subset>(keep, scope::global), c,
                                 describe("random_subset", c, "fp32", "bf16", half, scope::global));
    check_budgeted<float, f16>(make_policy<topk>(keep, scope::per_frame), c,
                                describe("topk", c, "fp32", "fp16", half, scope::per_frame));
    check_budgeted<bf16, f16>(make_policy<topk>(keep, scope::global), c,
                               describe("topk", c, "bf16", "fp16", half, scope::global));
    check_gather_list<f16, bf16>(c, false);
    check_gather_list<float, float>(c, true);
    check_gather_list<bf16, float>(c, true);
  }
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  sweep_element_type<float>();
  sweep_element_type<f16>();
  sweep_element_type<bf16>();
  sweep_conversions();
  check_long_groups();
  check_degenerate_scores();
  check_vector_tail();
  check_nothing_requested();
  check_bad_input();
  check_graph_capture();
  return summary();
}
