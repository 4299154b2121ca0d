// tests/cuda/test_video_layout_cuda.cu — the CUDA backends of slowfast and thumbnail_sampling
// against the CPU backend, on the shared case table.
//
// Every case of tests/support/cases.hpp runs in its own layout, in fp32, fp16 and bf16 (and a
// few mixed pairs), under several parameter sets per layout; parameters that do not fit a case
// (S > T on an image, a frame too small for the slow rule, ...) must give the CPU's status.
// Checked against the CPU backend on the same host rows (itself checked against the single
// policies composed by hand, tests/cpu/test_video_layout.cpp):
//   source, positions, sizes   identical
//   tokens                     within 1e-5 relative plus one ulp of the storage type (the
//                              tolerance of test_grid_reduce_cuda), and bit for bit, as the
//                              backend promises; a NaN matches any NaN (the GPU's arithmetic
//                              returns its canonical NaN)
//   storage                    nothing outside the output views is written; on bad input
//                              nothing at all, with the CPU backend's status
// plus the index rules' float32 arithmetic (fused, product rounded first, exact) on the
// configurations where they differ, requests of tokens or bookkeeping alone, NaN and inf, and a
// CUDA-graph capture and replay. Exits 77 (CTest's "skipped") when no CUDA device is present.
// Otherwise prints one line per failure (the first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/grid_tests.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

// ---------------------------------------------------------------------------------------------
// Comparing with the CPU backend.

/// test_grid_reduce_cuda's tolerance, around the CPU backend's value.
template <class E>
bool near(float got, float want) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  if (!std::isfinite(got)) return false;
  const double w = want;
  return std::fabs(static_cast<double>(got) - w) <= 1e-5 * std::fabs(w) + storage_ulp<E>(w);
}

/// The token rows: within tolerance of the CPU's and bit for bit (any NaN matches any NaN).
template <class Eout>
void compare_tokens(const outputs_on_device<Eout>& out, const grid_buffers<Eout>& cpu,
                    const std::string& label) {
  const std::vector<Eout> got = out.tokens.buffer.download();
  index_t bad_values = 0, bad_bits = 0;
  std::string first;
  for (index_t j = 0; j < cpu.kept; ++j)
    for (index_t c = 0; c < cpu.dim; ++c) {
      const Eout a = out.tokens.at(got, j, c);
      const Eout b = cpu.tokens[static_cast<std::size_t>(j * cpu.dim + c)];
      const float va = to_float(a), vb = to_float(b);
      const bool same = bits_of(a) == bits_of(b) || (std::isnan(va) && std::isnan(vb));
      bad_bits += !same;
      if (!near<Eout>(va, vb) && bad_values++ == 0)
        first = " first at (" + str(j) + ", " + str(c) + "): " + std::to_string(va) + " want " +
                std::to_string(vb);
    }
  check(bad_values == 0, label + ": tokens values (" + str(bad_values) + " off)" + first);
  check(bad_bits == 0, label + ": tokens bits (" + str(bad_bits) + " differ from the CPU)");
  check(out.tokens.untouched(got, false), label + ": wrote outside the token view");
}

// ---------------------------------------------------------------------------------------------
// One run.

std::string describe(const slowfast& p) {
  static const char* const rules[] = {"1d_max", "1d_avg", "2d_max", "2d_avg", "concat"};
  static const char* const maths[] = {"fma", "plain", "exact"};
  return "slowfast S" + str(p.slow_frames) + " " + rules[static_cast<int>(p.slow)] + " fast " +
         str(p.fast_height) + "x" + str(p.fast_width) + " " +
         maths[static_cast<int>(p.arithmetic)];
}
std::string describe(const thumbnail_sampling& p) {
  static const char* const maths[] = {"fma", "plain", "exact"};
  return "thumbnail n" + str(p.sampled_tokens) + " F" + str(p.thumbnail_frames) +
         (p.order == thumbnail_order::thumbnail_first ? " thumb_first" : " sampled_first") +
         (p.include_thumbnail ? "" : " no_thumb") + " " + maths[static_cast<int>(p.arithmetic)];
}

/// Runs `p` on the device and on the CPU on the same rows and compares what `what` requests.
/// Parameters that do not fit the grid must give the CPU's status and write nothing.
template <class Ein, class Eout, class Policy>
void run_case(const Policy& p, const token_grid& grid, index_t dim, rows_layout how,
              const rows_on_device<Ein>& rows, const std::string& label,
              request what = request::all) {
  const problem prob{grid, dim};
  const tokred::cuda exec{test_stream()};
  const index_t kept = retained_count(p, prob);
  const std::size_t need = workspace_bytes(exec, p, prob);
  check(need == 0, label + ": workspace_bytes " + str(static_cast<index_t>(need)));
  const grid_inputs<Ein, device_space> in{grid, rows.device()};
  const grid_inputs<Ein> host_in{grid, rows.host()};
  if (kept == 0) {
    outputs_on_device<Eout> out(1, dim, how);
    const status s = apply(exec, p, in, out.views(what));
    finish(label);
    grid_buffers<Eout> cpu(1, dim);
    const status want = apply(tokred::cpu<>{}, p, host_in, cpu.outputs());
    check(s == want && want == can_implement(p, prob) && want != status::ok && out.untouched(),
          label + ": unfit parameters gave " + to_string(s) + ", CPU " + to_string(want));
    return;
  }
  outputs_on_device<Eout> out(kept, dim, how);
  const status s = apply(exec, p, in, out.views(what));
  finish(label);
  check(s == status::ok, label + ": status " + to_string(s));
  if (s != status::ok) return;
  grid_buffers<Eout> cpu(kept, dim);
  const status cpu_status = apply(tokred::cpu<>{}, p, host_in, cpu.outputs());
  check(cpu_status == status::ok, label + ": CPU status " + to_string(cpu_status));
  if (what != request::tokens) compare_meta(out, cpu.kept, cpu, label);
  else check(out.source.untouched() && out.positions.untouched() && out.sizes.untouched(),
             label + ": wrote bookkeeping that was not requested");
  if (what != request::meta) compare_tokens(out, cpu, label);
  else check(out.tokens.untouched(), label + ": wrote token rows that were not requested");
}

template <class Ein, class Eout, class Policy>
void run_case(const Policy& p, const shape_case& c, rows_layout how, const char* types) {
  const rows_on_device<Ein> rows(c.grid.tokens(), c.dim, how,
                                 0xC0FFEEu + static_cast<std::uint64_t>(c.dim));
  run_case<Ein, Eout>(p, c.grid, c.dim, how, rows,
                      describe(p) + " on " + c.name + " " + name_of(how) + " " + types);
}

// ---------------------------------------------------------------------------------------------
// Parameter sets, scaled to each grid (sets that do not fit a grid test the status instead).

slowfast make_slowfast(index_t s, slow_aggregation rule, index_t a, index_t b,
                       linspace_arithmetic how = linspace_arithmetic::torch_fma) {
  slowfast p;
  p.slow_frames = s;
  p.slow = rule;
  p.fast_height = a;
  p.fast_width = b;
  p.arithmetic = how;
  return p;
}

thumbnail_sampling make_thumbnail(index_t n, index_t f, thumbnail_order order, bool thumb,
                                  linspace_arithmetic how = linspace_arithmetic::torch_fma) {
  thumbnail_sampling p;
  p.sampled_tokens = n;
  p.thumbnail_frames = f;
  p.order = order;
  p.include_thumbnail = thumb;
  p.arithmetic = how;
  return p;
}

std::vector<slowfast> slowfast_params(const token_grid& g) {
  std::vector<slowfast> v;
  const index_t s = std::min<index_t>(3, g.frames);
  for (auto rule : {slow_aggregation::spatial_1d_max_pool, slow_aggregation::spatial_1d_avg_pool,
                    slow_aggregation::spatial_2d_max_pool, slow_aggregation::spatial_2d_avg_pool,
                    slow_aggregation::concat})
    v.push_back(make_slowfast(s, rule, 3, 2));
  // Every frame slow, a 1 × 1 fast pathway; half the frames, fast bins that overlap (a, b > H, W).
  v.push_back(make_slowfast(g.frames, slow_aggregation::spatial_1d_max_pool, 1, 1,
                            linspace_arithmetic::torch_plain));
  v.push_back(make_slowfast(std::max<index_t>(1, g.frames / 2), slow_aggregation::spatial_2d_avg_pool,
                            g.height + 1, g.width + 2, linspace_arithmetic::exact));
  return v;
}

std::vector<thumbnail_sampling> thumbnail_params(const token_grid& g) {
  std::vector<thumbnail_sampling> v;
  const index_t n = std::max<index_t>(1, g.tokens() / 3);
  for (index_t f : {1, 2, 4})
    for (auto order : {thumbnail_order::sampled_first, thumbnail_order::thumbnail_first})
      for (bool thumb : {true, false}) v.push_back(make_thumbnail(n, f, order, thumb));
  v.push_back(make_thumbnail(g.tokens(), 1, thumbnail_order::sampled_first, true,
                             linspace_arithmetic::exact));  // every token sampled
  v.push_back(make_thumbnail(1, std::min<index_t>(3, g.frames), thumbnail_order::thumbnail_first,
                             true, linspace_arithmetic::torch_plain));
  return v;
}

template <class Ein, class Eout>
void sweep_case(element_tag<Ein>, element_tag<Eout>, const shape_case& c, rows_layout how,
                const char* types) {
  for (const slowfast& p : slowfast_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
  for (const thumbnail_sampling& p : thumbnail_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
}

/// Every case in fp32, fp16 and bf16; mixed input and output types; and the padded layout
/// (vector loads with a partial chunk).
void sweep_table() {
  sweep_same_types([](auto... a) { sweep_case(a...); });
  for_each_case([](const shape_case& c, rows_layout how) {
    sweep_case(element_tag<f16>{}, element_tag<float>{}, c, how, "fp16->fp32");
    sweep_case(element_tag<bf16>{}, element_tag<f16>{}, c, how, "bf16->fp16");
    sweep_case(element_tag<float>{}, element_tag<bf16>{}, c, how, "fp32->bf16");
  });
  const shape_case tails[] = {{"tail_video_4x6x6_d10", token_grid{4, 6, 6}, 10, layout::contiguous},
                              {"tail_video_3x5x4_d13", token_grid{3, 5, 4}, 13, layout::contiguous},
                              {"wide_2x8x8_d1000", token_grid{2, 8, 8}, 1000, layout::contiguous}};
  sweep_padded(tails, [](auto... a) { sweep_case(a...); });
}

// ---------------------------------------------------------------------------------------------
// The index rules on the device: the configurations where float32 moves a pick.

void check_index_arithmetic() {
  const linspace_arithmetic maths[] = {linspace_arithmetic::torch_fma,
                                       linspace_arithmetic::torch_plain,
                                       linspace_arithmetic::exact};
  const auto run_on = [](const auto& p, const token_grid& g, index_t dim, const char* what) {
    const rows_on_device<float> rows(g.tokens(), dim, rows_layout::contiguous, 77);
    run_case<float, float>(p, g, dim, rows_layout::contiguous, rows, describe(p) + " " + what);
  };
  for (linspace_arithmetic how : maths) {
    // The papers' defaults on 50 × 24 × 24: 3680 and 3456 tokens (pick 2399 is 23998 fused).
    slowfast sf;
    sf.arithmetic = how;
    run_on(sf, token_grid{50, 24, 24}, 8, "paper 50x24x24");
    thumbnail_sampling ts;
    ts.arithmetic = how;
    run_on(ts, token_grid{50, 24, 24}, 8, "V2 50x24x24");
    // T = 16, S = 14 and T = 28, S = 26: frames that fused, plain and exact arithmetic disagree on.
    run_on(make_slowfast(14, slow_aggregation::spatial_1d_max_pool, 2, 2, how), token_grid{16, 2, 2}, 8,
           "16x2x2");
    run_on(make_slowfast(26, slow_aggregation::concat, 1, 1, how), token_grid{28, 1, 3}, 4, "28x1x3");
    // N = 28 800, n = 15: point 7 is 14399.5 exactly, 14399.499 in float32.
    run_on(make_thumbnail(15, 6, thumbnail_order::sampled_first, true, how), token_grid{50, 24, 24},
           4, "n15 50x24x24");
    // Past 2^24 tokens float32 cannot hold the end point (bookkeeping only: no rows needed).
    const token_grid huge = sequence_grid(33554435);
    const thumbnail_sampling two = make_thumbnail(2, 1, thumbnail_order::sampled_first, false, how);
    outputs_on_device<float> out(2, 1, rows_layout::contiguous);
    const status s = apply(tokred::cuda{test_stream()}, two,
                           grid_inputs<float, device_space>{huge, {}}, out.views(request::meta));
    finish("2^25 tokens");
    grid_buffers<float> cpu(2, 1);
    grid_outputs<float> cpu_out = cpu.outputs();
    cpu_out.tokens = {};
    const status want = apply(tokred::cpu<>{}, two, grid_inputs<float>{huge, {}}, cpu_out);
    check(s == status::ok && want == status::ok, describe(two) + " 2^25 tokens: status " + to_string(s));
    compare_meta(out, cpu.kept, cpu, describe(two) + " 2^25 tokens");
    check(cpu.source[1] == (how == linspace_arithmetic::exact ? 33554434 : 33554432),
          describe(two) + " 2^25 tokens: the CPU's last pick");
  }
}

/// Tokens alone and bookkeeping alone, each leaving the other outputs untouched.
void check_partial_requests() {
  const token_grid g{5, 6, 5};
  const index_t dim = 12;
  const rows_on_device<bf16> rows(g.tokens(), dim, rows_layout::strided, 21);
  for (request what : {request::tokens, request::meta}) {
    const char* name = what == request::tokens ? " tokens only" : " meta only";
    for (const slowfast& p : slowfast_params(g))
      run_case<bf16, bf16>(p, g, dim, rows_layout::strided, rows, describe(p) + name, what);
    for (const thumbnail_sampling& p : thumbnail_params(g))
      run_case<bf16, bf16>(p, g, dim, rows_layout::strided, rows, describe(p) + name, what);
  }
  // Nothing requested: ok, nothing launched.
  const grid_inputs<bf16, device_space> in{g, rows.device()};
  const status a = apply(tokred::cuda{test_stream()}, slowfast{3}, in, grid_outputs<bf16, device_space>{});
  const status b = apply(tokred::cuda{test_stream()}, thumbnail_sampling{20, 2}, in,
                         grid_outputs<bf16, device_space>{});
  finish("nothing requested");
  check(a == status::ok && b == status::ok, std::string("nothing requested: ") + to_string(a) +
                                                " " + to_string(b));
}

// ---------------------------------------------------------------------------------------------
// NaN and inf.

template <class E>
void check_non_finite(const char* type) {
  const non_finite_case<E> poisoned;
  const auto run = [&](const auto& p) {
    run_case<E, E>(p, poisoned.grid, poisoned.dim, rows_layout::contiguous, poisoned.rows,
                   describe(p) + " non-finite " + type);
  };
  for (const slowfast& p : slowfast_params(poisoned.grid)) run(p);
  for (const thumbnail_sampling& p : thumbnail_params(poisoned.grid)) run(p);
}

// ---------------------------------------------------------------------------------------------
// Bad input: the CPU backend's status, and not a byte written.

/// Outputs and input rows for a bad-input run, as host vectors or device buffers, with room for
/// views a few rows longer or one column wider than the valid ones.
template <class Space>
struct bad_fixture {
  template <class T>
  using storage = std::conditional_t<std::is_same_v<Space, host_space>, std::vector<T>,
                                     device_buffer<T>>;
  static constexpr index_t spare = 4;
  token_grid grid;
  index_t dim, kept;
  storage<float> rows, tokens, sizes;
  storage<std::int64_t> source;
  storage<std::int32_t> positions;

  template <class T>
  static storage<T> filled(index_t count, T value) {
    const std::vector<T> host(static_cast<std::size_t>(count), value);
    if constexpr (std::is_same_v<Space, host_space>) return host;
    else return storage<T>(host);
  }
  template <class S>
  static auto data(const S& s) {
    if constexpr (std::is_same_v<Space, host_space>)
      return const_cast<typename S::value_type*>(s.data());
    else
      return s.get();
  }

  bad_fixture(token_grid g, index_t d, index_t k)
      : grid(g), dim(d), kept(k),
        rows(filled<float>(std::max<index_t>(1, g.tokens()) * d, 0.5f)),
        tokens(filled<float>((k + spare) * (d + 1), -3.5f)),
        sizes(filled<float>(k + spare, -1.25f)),
        source(filled<std::int64_t>(k + spare, -12345)),
        positions(filled<std::int32_t>((k + spare) * 3, -777)) {}

  grid_inputs<float, Space> inputs() const {
    return {grid, view<const float, 2, Space>(data(rows), {grid.tokens() > 0 ? grid.tokens() : 0, dim})};
  }
  grid_outputs<float, Space> outputs() const {
    return {view<float, 2, Space>(data(tokens), {kept, dim}),
            view<std::int64_t, 1, Space>(data(source), {kept}),
            view<std::int32_t, 2, Space>(data(positions), {kept, 3}),
            view<float, 1, Space>(data(sizes), {kept})};
  }
  bool untouched() const {
    const auto same = [](const auto& s, auto value) {
      std::vector<decltype(value)> now;
      if constexpr (std::is_same_v<Space, host_space>) now = s;
      else now = s.download();
      for (auto x : now)
        if (x != value) return false;
      return true;
    };
    return same(rows, 0.5f) && same(tokens, -3.5f) && same(sizes, -1.25f) &&
           same(source, std::int64_t{-12345}) && same(positions, std::int32_t{-777});
  }
};

/// Runs a bad call on the CPU and on the device: equal statuses, not ok, nothing written.
/// `grid` is the valid grid the views are sized for; `run_grid` the one handed to apply.
template <class Policy, class Break>
void expect_rejected(const std::string& what, const Policy& p, const token_grid& grid,
                     index_t kept, const token_grid& run_grid, const Break& spoil) {
  const index_t dim = 4;
  bad_fixture<host_space> host(grid, dim, kept);
  grid_inputs<float> hin = host.inputs();
  grid_outputs<float> hout = host.outputs();
  hin.grid = run_grid;
  spoil(hin, hout);
  const status want = apply(tokred::cpu<>{}, p, hin, hout);

  const bad_fixture<device_space> dev(grid, dim, kept);
  grid_inputs<float, device_space> din = dev.inputs();
  grid_outputs<float, device_space> dout = dev.outputs();
  din.grid = run_grid;
  spoil(din, dout);
  const status got = apply(tokred::cuda{test_stream()}, p, din, dout);
  finish(what);
  check(want != status::ok && got == want,
        what + ": got " + to_string(got) + ", CPU " + to_string(want));
  check(host.untouched() && dev.untouched(), what + ": wrote output on failure");
}

const auto no_change = [](auto&, auto&) {};

void check_bad_slowfast() {
  const token_grid g{6, 4, 4};
  const index_t kept = retained_count(make_slowfast(2, slow_aggregation::spatial_1d_max_pool, 4, 4),
                                      problem{g, 4});  // 2·8 + 6·16
  const auto rejected = [&](const std::string& what, const slowfast& p, const token_grid& run_grid,
                            const auto& spoil) { expect_rejected("slowfast " + what, p, g, kept, run_grid, spoil); };
  const auto sf = [](index_t s) { return make_slowfast(s, slow_aggregation::spatial_1d_max_pool, 4, 4); };
  rejected("S > T", sf(7), g, no_change);
  rejected("S = 0", sf(0), g, no_change);
  rejected("S = -1", sf(-1), g, no_change);
  rejected("fast width 0", make_slowfast(2, slow_aggregation::spatial_1d_max_pool, 4, 0), g, no_change);
  rejected("zero frames", sf(2), token_grid{0, 4, 4}, no_change);
  rejected("zero height", sf(2), token_grid{6, 0, 4}, no_change);
  rejected("negative height", sf(2), token_grid{6, -1, 4}, no_change);
  rejected("1-token frames", sf(2), token_grid{6, 1, 1}, no_change);
  rejected("2-D on one row", make_slowfast(2, slow_aggregation::spatial_2d_avg_pool, 4, 4),
           token_grid{6, 1, 16}, no_change);
  rejected("source one too long", sf(2), g, [](auto&, auto& o) {
    o.source = decltype(o.source)(o.source.data_handle(), {o.source.extent(0) + 1});
  });
  rejected("null sizes", sf(2), g, [](auto&, auto& o) {
    o.sizes = decltype(o.sizes)(nullptr, {o.sizes.extent(0)});
  });
  rejected("dim 0", sf(2), g, [](auto& in, auto& o) {
    in.tokens = decltype(in.tokens)(in.tokens.data_handle(), {in.tokens.extent(0), 0});
    o.tokens = decltype(o.tokens)(o.tokens.data_handle(), {o.tokens.extent(0), 0});
  });
  rejected("rows one too wide", sf(2), g, [](auto&, auto& o) {
    o.tokens = decltype(o.tokens)(o.tokens.data_handle(), {o.tokens.extent(0), o.tokens.extent(1) + 1});
  });
  rejected("input one row short", sf(2), g, [](auto& in, auto&) {
    in.tokens = decltype(in.tokens)(in.tokens.data_handle(), {in.tokens.extent(0) - 1, in.tokens.extent(1)});
  });
  rejected("source over the rows", sf(2), g, [](auto&, auto& o) {
    o.source = decltype(o.source)(reinterpret_cast<std::int64_t*>(o.tokens.data_handle()), {o.source.extent(0)});
  });
  rejected("rows over the input", sf(2), g, [](auto& in, auto& o) {
    o.tokens = decltype(o.tokens)(const_cast<float*>(in.tokens.data_handle()), {o.tokens.extent(0), o.tokens.extent(1)});
  });
}

void check_bad_thumbnail() {
  const token_grid g{6, 4, 4};  // 96 tokens
  const auto ts = [](index_t n, index_t f) {
    return make_thumbnail(n, f, thumbnail_order::sampled_first, true);
  };
  const index_t kept = retained_count(ts(10, 2), problem{g, 4});  // 10 + 16
  const auto rejected = [&](const std::string& what, const thumbnail_sampling& p,
                            const token_grid& run_grid, const auto& spoil) {
    expect_rejected("thumbnail " + what, p, g, kept, run_grid, spoil);
  };
  rejected("n > N", ts(97, 2), g, no_change);
  rejected("n = 0", ts(0, 2), g, no_change);
  rejected("F > T", ts(10, 7), g, no_change);
  rejected("F = 0", ts(10, 0), g, no_change);
  rejected("zero frames", ts(10, 2), token_grid{0, 4, 4}, no_change);
  rejected("zero width", ts(10, 2), token_grid{6, 4, 0}, no_change);
  rejected("negative frames", ts(10, 2), token_grid{-6, 4, 4}, no_change);
  rejected("3 tile rows on 2-row frames", ts(10, 6), token_grid{6, 2, 8}, no_change);
  rejected("positions (kept, 2)", ts(10, 2), g, [](auto&, auto& o) {
    o.positions = decltype(o.positions)(o.positions.data_handle(), {o.positions.extent(0), 2});
  });
  rejected("rows one short", ts(10, 2), g, [](auto&, auto& o) {
    o.tokens = decltype(o.tokens)(o.tokens.data_handle(), {o.tokens.extent(0) - 1, o.tokens.extent(1)});
  });
  rejected("null rows", ts(10, 2), g, [](auto&, auto& o) {
    o.tokens = decltype(o.tokens)(nullptr, {o.tokens.extent(0), o.tokens.extent(1)});
  });
  rejected("sizes over positions", ts(10, 2), g, [](auto&, auto& o) {
    o.sizes = decltype(o.sizes)(reinterpret_cast<float*>(o.positions.data_handle()), {o.sizes.extent(0)});
  });
  rejected("rows over the input", ts(10, 2), g, [](auto& in, auto& o) {
    o.tokens = decltype(o.tokens)(const_cast<float*>(in.tokens.data_handle()), {o.tokens.extent(0), o.tokens.extent(1)});
  });
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: the backends only enqueue stream work, so a captured graph replays them.

void check_graph_capture() {
  const token_grid grid{8, 12, 12};
  const index_t dim = 40;
  const tokred::cuda exec{test_stream()};
  const rows_on_device<bf16> rows(grid.tokens(), dim, rows_layout::contiguous, 9);
  const grid_inputs<bf16, device_space> in{grid, rows.device()};
  const slowfast sf = make_slowfast(4, slow_aggregation::spatial_2d_max_pool, 4, 4);
  const thumbnail_sampling ts = make_thumbnail(300, 4, thumbnail_order::thumbnail_first, true);
  const problem prob{grid, dim};
  outputs_on_device<bf16> out_sf(retained_count(sf, prob), dim, rows_layout::contiguous),
      out_ts(retained_count(ts, prob), dim, rows_layout::contiguous);

  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{apply(exec, sf, in, out_sf.views()),
                               apply(exec, ts, in, out_ts.views())};
  });
  if (!replayed) return;
  const auto verify = [&](const auto& p, const outputs_on_device<bf16>& out) {
    grid_buffers<bf16> cpu(retained_count(p, prob), dim);
    const status s = apply(tokred::cpu<>{}, p, grid_inputs<bf16>{grid, rows.host()}, cpu.outputs());
    check(s == status::ok, "graph " + describe(p) + ": CPU status " + to_string(s));
    compare_meta(out, cpu.kept, cpu, "graph " + describe(p));
    compare_tokens(out, cpu, "graph " + describe(p));
  };
  verify(sf, out_sf);
  verify(ts, out_ts);
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  sweep_table();
  check_index_arithmetic();
  check_partial_requests();
  check_non_finite<float>("fp32");
  check_non_finite<bf16>("bf16");
  check_non_finite<f16>("fp16");
  check_bad_slowfast();
  check_bad_thumbnail();
  check_graph_capture();
  return summary();
}
