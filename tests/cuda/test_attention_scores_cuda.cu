// tests/cuda/test_attention_scores_cuda.cu — the CUDA backends of attention_score and
// fused_attention_score against the CPU backend and the double oracle.
//
// Over the shared case table (its layouts: contiguous, strided, reversed), fp32/fp16/bf16:
//   attention_score        bit for bit the CPU backend's scores (NaN where it has NaN), one row or
//                          one row per frame, 1 or 3 layers, mean and sum, a NaN weight
//   fused_attention_score  within 10⁻⁶ relative of the double oracle (the bound the CPU backend
//                          meets), head groupings 1/1, 4/4 and 8/2, 1 and 3 query rows, keys
//                          before and after the span; rows spanning several chunks; FastV's and
//                          PyramidDrop's LLM scale (9216 image keys, 32 heads over 8)
//   bad input              the CPU backend's statuses, nothing written
// plus a CUDA-graph capture and replay of both. The kernels' per-thread steps also run on the
// host in tests/cpu/test_attention_steps.cpp. Exits 77 (CTest's "skipped") without a CUDA device;
// otherwise prints one line per failure (the first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "reference/attention_scores_ref.hpp"
#include "support/attention_inputs.hpp"
#include "support/cases.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// What every score starts as.
constexpr float score_sentinel = -3.5f;

bool untouched(const std::vector<float>& x) {
  for (const float v : x)
    if (v != score_sentinel) return false;
  return true;
}

/// Device scores of n tokens in a buffer with 3 sentinel floats past the end.
struct device_scores {
  index_t n;
  device_buffer<float> storage;
  explicit device_scores(index_t n_) : n(n_), storage(std::vector<float>(static_cast<std::size_t>(n_ + 3), score_sentinel)) {}
  score_outputs<device_space> out() const { return {view<float, 1, device_space>(storage.get(), {n})}; }
  /// The scores, after checking that nothing past them was written.
  std::vector<float> download(const std::string& what) const {
    std::vector<float> all = storage.download();
    bool tail = true;
    for (index_t i = n; i < n + 3; ++i) tail = tail && all[static_cast<std::size_t>(i)] == score_sentinel;
    check(tail, what + ": wrote past the scores");
    all.resize(static_cast<std::size_t>(n));
    return all;
  }
};

/// The CPU backend's attention_score, one share (score_runs.hpp's run_shares reports through
/// Catch, which the CUDA tests do not link).
template <class E>
std::vector<float> cpu_scores(const attention_score& p, const attention_score_inputs<E>& in) {
  std::vector<float> out(static_cast<std::size_t>(in.grid.tokens()), score_sentinel);
  check(apply(cpu<>{}, p, in, score_outputs<>{view<float, 1>(out.data(), {in.grid.tokens()})}) == status::ok,
        "CPU attention_score");
  return out;
}

bool same_or_both_nan(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::memcmp(&a[i], &b[i], sizeof(float)) == 0 || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// attention_score

template <class E>
void check_weights_case(const shape_case& c) {
  for (const index_t rows : {index_t{1}, c.grid.frames})
    for (const index_t layers : {1, 3})
      for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum}) {
        const index_t first = 3, span = rows == 1 ? c.grid.tokens() : c.grid.frame_tokens();
        tensor<E, 4> w = make_weights<E>(rows, layers, 6, first + span + 2, c.rows, static_cast<std::uint64_t>(layers + rows));
        if (span > 2) w.v(0, 0, 1, first + 2) = from_float<E>(std::numeric_limits<float>::quiet_NaN());
        const attention_score p{reduce, first};
        const std::string what = std::string("attention_score ") + c.name + " " + element_name<E>() + " rows " + str(rows) +
                                 " layers " + str(layers) + (reduce == head_reduce::mean ? " mean" : " sum");
        const std::vector<float> want = cpu_scores(p, attention_score_inputs<E>{c.grid, w.v});
        const device_mirror<E, 4> dw(w.storage, w.v);
        const device_scores scores(c.grid.tokens());
        const status s = apply(tokred::cuda{test_stream()}, p, attention_score_inputs<E, device_space>{c.grid, dw.v}, scores.out());
        check(s == status::ok, what + ": status " + to_string(s));
        finish(what);
        check(same_or_both_nan(scores.download(what), want), what + ": scores differ from the CPU backend's");
      }
}

// ---------------------------------------------------------------------------------------------
// fused_attention_score

template <class E>
std::vector<float> run_fused(const fused_attention_score& p, const fused_case<E>& f, const std::string& what) {
  const device_mirror<E, 3> q(f.query.storage, f.query.v), k(f.keys.storage, f.keys.v);
  const fused_attention_inputs<E, device_space> in{f.in.grid, q.v, k.v};
  const tokred::cuda exec{test_stream()};
  device_buffer<std::byte> ws(workspace_bytes(exec, p, problem{f.in.grid, f.in.query.extent(2)}));
  const device_scores scores(f.in.grid.tokens());
  const status s = apply(exec, p, in, scores.out(), workspace{ws.get(), ws.size()});
  check(s == status::ok, what + ": status " + to_string(s));
  finish(what);
  return scores.download(what);
}

template <class E>
void check_fused(const fused_case<E>& f, const fused_attention_score& p, const std::string& what) {
  const std::vector<double> want =
      ref::fused_attention_score(p, f.in.grid, view<const E, 3>(f.query.v), view<const E, 3>(f.keys.v));
  const double worst = worst_relative(run_fused(p, f, what), want);
  check(worst <= 1e-6, what + ": worst relative error " + std::to_string(worst));
}

template <class E>
void check_fused_case(const shape_case& c) {
  for_each_fused_case<E>(c, [&](const fused_sweep_case<E>& fc) {
    for (const head_reduce reduce : {head_reduce::mean, head_reduce::sum})
      check_fused(fc.tensors, fused_attention_score{reduce, fc.first_key},
                  std::string("fused ") + c.name + " " + element_name<E>() + " " + fc.label() +
                      (reduce == head_reduce::mean ? " mean" : " sum"));
  });
}

void check_fused_scale() {
  // 35 system tokens, a 96 × 96 image, 40 text tokens; 32 query heads over 8 kv heads of 128.
  const token_grid grid = image_grid(96, 96);
  const fused_case<bf16> one = make_fused<bf16>(grid, 1, 32, 8, 35 + grid.tokens() + 40, 128, layout::contiguous, 99);
  check_fused(one, fused_attention_score{head_reduce::mean, 35}, "fused LLM scale bf16");
  const fused_case<f16> rows = make_fused<f16>(grid, 5, 32, 8, 35 + grid.tokens() + 40, 128, layout::contiguous, 98);
  check_fused(rows, fused_attention_score{head_reduce::sum, 35}, "fused LLM scale f16, 160 rows in 3 chunks");
  // head_dim 4096: two rows per chunk; one odd head_dim.
  const fused_case<float> wide = make_fused<float>(image_grid(8, 8), 3, 2, 1, 70, 4096, layout::contiguous, 97);
  check_fused(wide, fused_attention_score{head_reduce::mean, 3}, "fused head_dim 4096");
  // At the shared-memory limits: head_dim 8193 (one row a chunk) and 11 264 (the largest).
  const fused_case<float> past_chunk = make_fused<float>(image_grid(2, 3), 2, 2, 1, 9, 8193, layout::contiguous, 95);
  check_fused(past_chunk, fused_attention_score{head_reduce::mean, 1}, "fused head_dim 8193");
  const fused_case<bf16> widest = make_fused<bf16>(image_grid(2, 2), 1, 2, 2, 6, 11264, layout::contiguous, 94);
  check_fused(widest, fused_attention_score{head_reduce::sum, 2}, "fused head_dim 11264");
  const fused_case<float> odd = make_fused<float>(image_grid(5, 7), 2, 3, 3, 40, 37, layout::strided, 96);
  check_fused(odd, fused_attention_score{head_reduce::mean, 2, 0.3f}, "fused head_dim 37, scale 0.3");
}

// ---------------------------------------------------------------------------------------------
// Bad input and graph capture.

void check_bad_input() {
  const token_grid grid = image_grid(4, 4);
  const fused_case<float> f = make_fused<float>(grid, 1, 2, 1, 20, 64, layout::contiguous, 5);
  const device_mirror<float, 3> q(f.query.storage, f.query.v), k(f.keys.storage, f.keys.v);
  const tokred::cuda exec{test_stream()};
  const fused_attention_score p{head_reduce::mean, 2};
  device_buffer<std::byte> ws(workspace_bytes(exec, p, problem{grid, 64}));
  const device_scores scores(grid.tokens());
  const auto expect = [&](status got, status want, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
    finish(what);
    check(untouched(scores.download(what)), what + ": scores written");
  };
  const fused_attention_inputs<float, device_space> in{grid, q.v, k.v};
  expect(apply(exec, p, in, scores.out(), workspace{ws.get(), ws.size() - 1}), status::workspace_too_small, "short workspace");
  expect(apply(exec, fused_attention_score{head_reduce::mean, 5}, in, scores.out(), workspace{ws.get(), ws.size()}),
         status::shape_mismatch, "span past the keys");
  expect(apply(exec, fused_attention_score{head_reduce::mean, 2, -1.0f}, in, scores.out(), workspace{ws.get(), ws.size()}),
         status::invalid_parameter, "negative scale");
  const fused_attention_inputs<float, device_space> three{grid, q.v, view<const float, 3, device_space>(k.v.data_handle(), {3, 10, 64})};
  expect(apply(exec, p, three, scores.out(), workspace{ws.get(), ws.size()}), status::shape_mismatch,
         "2 heads over 3 kv heads");
  const score_outputs<device_space> over{view<float, 1, device_space>(const_cast<float*>(k.v.data_handle()), {grid.tokens()})};
  check(apply(exec, p, in, over, workspace{ws.get(), ws.size()}) == status::aliasing, "scores over the keys");
  // A head_dim beyond the shared memory of one block.
  device_buffer<float> big(static_cast<std::size_t>(2 * 12000));
  const view<const float, 3, device_space> wide(big.get(), {1, 1, 12000});
  const fused_attention_inputs<float, device_space> huge{image_grid(1, 1), wide, wide};
  device_buffer<std::byte> ws_huge(workspace_bytes(exec, p, problem{image_grid(1, 1), 12000}));
  const device_scores one(1);
  check(apply(exec, fused_attention_score{}, huge, one.out(), workspace{ws_huge.get(), ws_huge.size()}) ==
            status::invalid_parameter,
        "head_dim 12000");
  // attention_score: weights that do not cover the span.
  const tensor<float, 4> w = make_weights<float>(1, 1, 2, 10, layout::contiguous, 3);
  const device_mirror<float, 4> dw(w.storage, w.v);
  expect(apply(exec, attention_score{head_reduce::mean, 0}, attention_score_inputs<float, device_space>{grid, dw.v}, scores.out()),
         status::shape_mismatch, "weights shorter than the span");
}

void check_graph_capture() {
  const token_grid grid = image_grid(24, 24);
  const fused_case<bf16> f = make_fused<bf16>(grid, 2, 8, 2, 10 + grid.tokens(), 128, layout::contiguous, 7);
  const tensor<bf16, 4> w = make_weights<bf16>(1, 1, 8, 4 + grid.tokens(), layout::contiguous, 8);
  const device_mirror<bf16, 3> q(f.query.storage, f.query.v), k(f.keys.storage, f.keys.v);
  const device_mirror<bf16, 4> dw(w.storage, w.v);
  const tokred::cuda exec{test_stream()};
  const fused_attention_score fp{head_reduce::mean, 10};
  device_buffer<std::byte> ws(workspace_bytes(exec, fp, problem{grid, 128}));
  const device_scores fused_out(grid.tokens()), weights_out(grid.tokens());
  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, fp, fused_attention_inputs<bf16, device_space>{grid, q.v, k.v}, fused_out.out(), workspace{ws.get(), ws.size()}),
        apply(exec, attention_score{head_reduce::sum, 4}, attention_score_inputs<bf16, device_space>{grid, dw.v},
              weights_out.out())};
  });
  if (!replayed) return;
  const double worst = worst_relative(fused_out.download("graph fused"),
                                      ref::fused_attention_score(fp, grid, view<const bf16, 3>(f.query.v), view<const bf16, 3>(f.keys.v)));
  check(worst <= 1e-6, "graph: replayed fused scores off by " + std::to_string(worst));
  check(same_or_both_nan(weights_out.download("graph weights"),
                         cpu_scores(attention_score{head_reduce::sum, 4}, attention_score_inputs<bf16>{grid, w.v})),
        "graph: replayed attention_score differs from the CPU backend's");
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  for (const shape_case& c : shape_cases()) {
    check_weights_case<float>(c);
    check_weights_case<f16>(c);
    check_weights_case<bf16>(c);
    check_fused_case<float>(c);
    check_fused_case<bf16>(c);
  }
  check_fused_scale();
  check_bad_input();
  check_graph_capture();
  return summary();
}
