// tests/cuda/test_visionzip_cuda.cu — the CUDA backend of visionzip against the CPU backend
// `cpu<>` of this translation unit, bit for bit: every output (rows, sizes, source, positions,
// assign).
//
// Over the shared case table's grids and layouts, fp32/bf16 rows and fp16 rows into fp32, with and
// without a [CLS] row, the tokens or a narrower metric compared, both merges, several budgets
// (the paper's 54 + 10, many contextual tokens, none), scores with ties and NaN; zero and NaN
// metric rows; bad input (the CPU backend's statuses, nothing written); and a CUDA-graph capture
// and replay. Built twice, as test_tome_cuda is: as is, and with FMA in the host code
// (test_visionzip_cuda_fma). Exits 77 (CTest's "skipped") without a CUDA device; otherwise prints
// one line per failure (the first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <vector>

#include "cuda/device_buffers.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/diversity.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// One case: rows, a metric, scores, on the host and the device.
template <class E>
struct vzip_case {
  token_grid grid;
  index_t rows_n, dim, metric_dim;
  token_matrix<E> rows, metric;
  device_mirror<E, 2> device_rows, device_metric;
  std::vector<float> scores;
  device_buffer<float> device_scores;

  vzip_case(token_grid g, bool cls, index_t d, index_t dm, layout how, std::uint64_t seed)
      : grid(g), rows_n(g.tokens() + (cls ? 1 : 0)), dim(d), metric_dim(dm),
        rows(continuous_rows<E>(rows_n, d, how, seed)), metric(continuous_rows<E>(rows_n, dm, how, seed + 1)),
        device_rows(rows.storage, rows.rows), device_metric(metric.storage, metric.rows),
        scores(tie_heavy_scores(g.tokens(), seed + 2)), device_scores(scores) {}

  visionzip_inputs<E> host(bool own_metric) const {
    visionzip_inputs<E> in{grid, rows.rows, make_view<const float>(scores.data(), grid.tokens()), {}};
    if (own_metric) in.metric = metric.rows;
    return in;
  }
  visionzip_inputs<E, device_space> device(bool own_metric) const {
    visionzip_inputs<E, device_space> in{grid, device_rows.v,
                                         view<const float, 1, device_space>(device_scores.get(), {grid.tokens()}), {}};
    if (own_metric) in.metric = device_metric.v;
    return in;
  }
};

template <class Ein, class Eout>
void compare(const vzip_case<Ein>& vc, const visionzip& p, bool own_metric, const std::string& what) {
  compare_merge_with_cpu<Eout>(p, problem{vc.grid, vc.dim}, vc.rows_n, vc.host(own_metric), vc.device(own_metric), what);
}

template <class Ein, class Eout>
void case_table() {
  for (const shape_case& c : shape_cases())
    for (const bool cls : {true, false}) {
      const vzip_case<Ein> vc(c.grid, cls, c.dim, 7, c.rows, 3 + static_cast<std::uint64_t>(c.grid.tokens()));
      const index_t rows = vc.rows_n;
      for (const contextual_merge merge : {contextual_merge::target_plus_mean, contextual_merge::group_mean}) {
        const visionzip budgets[] = {{(rows + 9) / 10, rows / 50, cls, merge},
                                     {cls ? 1 : 0, rows / 3, cls, merge},
                                     {rows / 2, 0, cls, merge},
                                     {(cls ? 1 : 0) + 1, rows - (cls ? 1 : 0) - 1, cls, merge}};
        for (const visionzip& p : budgets) {
          if (can_implement(p, problem{c.grid, c.dim}) != status::ok) continue;
          const std::string what = std::string(c.name) + " " + element_name<Ein>() + (cls ? " cls" : "") + " " +
                                   str(p.dominant) + " + " + str(p.contextual) +
                                   (merge == contextual_merge::group_mean ? " group mean" : "");
          compare<Ein, Eout>(vc, p, false, what);
          compare<Ein, Eout>(vc, p, true, what + " metric");
        }
      }
    }
}

/// The paper's LLaVA-1.5 setting at full width, and zero and NaN metric rows.
void larger_and_special() {
  const vzip_case<bf16> image(image_grid(24, 24), true, 1024, 64, layout::contiguous, 21);
  compare<bf16, bf16>(image, visionzip{}, true, "llava 54 + 10");
  compare<bf16, bf16>(image, visionzip{108, 20}, false, "llava 108 + 20 own rows");
  vzip_case<float> special(image_grid(6, 6), true, 16, 8, layout::contiguous, 22);
  for (index_t c = 0; c < 8; ++c) {
    special.metric.rows(10, c) = 0.0f;
    special.metric.rows(20, c) = special.metric.rows(21, c);
  }
  special.metric.rows(30, 3) = std::numeric_limits<float>::quiet_NaN();
  special.device_metric.storage.upload(special.metric.storage);
  compare<float, float>(special, visionzip{5, 6}, true, "zero, duplicate and NaN metric rows");
}

/// Bad input: the CPU backend's statuses; nothing written.
void bad_input() {
  const vzip_case<float> vc(image_grid(6, 6), true, 8, 8, layout::contiguous, 3);
  const visionzip p{5, 3};
  const device_merge_outputs<float> out(merge_buffers<float>(8, 37, 8));
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, problem{vc.grid, 8}));
  const workspace w{ws.get(), ws.size()};
  const tokred::cuda exec{test_stream()};
  const auto expect = [&](status want, status got, const std::string& what) {
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
  };
  expect(status::invalid_parameter, apply(exec, visionzip{0, 3}, vc.device(false), out.views(), w), "dominant 0 with cls");
  expect(status::budget_exceeds_input, apply(exec, visionzip{30, 10}, vc.device(false), out.views(), w), "too many");
  merge_outputs<float, device_space> short_source = out.views();
  short_source.source = view<std::int64_t, 1, device_space>(out.source.get(), {7});
  expect(status::shape_mismatch, apply(exec, p, vc.device(false), short_source, w), "short source");
  expect(status::workspace_too_small, apply(exec, p, vc.device(false), out.views(), workspace{ws.get(), 8}),
         "small workspace");
  finish("bad input");
  check(out.download().untouched(), "bad input: outputs untouched");
}

/// Subsets of the outputs (merge_output_subsets): the outputs left out stay untouched, the others
/// are the CPU backend's.
void output_subsets() {
  const vzip_case<float> vc(image_grid(12, 12), true, 24, 16, layout::contiguous, 23);
  for (const unsigned wanted : merge_output_subsets)
    compare_merge_with_cpu<float>(visionzip{14, 6}, problem{vc.grid, vc.dim}, vc.rows_n, vc.host(true),
                                  vc.device(true), "outputs " + str(wanted), false, wanted);
}

/// visionzip captured into a graph and replayed: the CPU backend's outputs.
void graph_capture() {
  const vzip_case<f16> vc(image_grid(12, 12), true, 40, 16, layout::contiguous, 11);
  compare_merge_with_cpu<float>(visionzip{14, 4}, problem{vc.grid, vc.dim}, vc.rows_n, vc.host(true), vc.device(true),
                                "graph", true);
}

}  // namespace

#if defined(TOKRED_TEST_HOST_FMA)
static_assert(detail::cuda_tome::fused, "this build's host code has FMA: the kernels' chains fuse");
#endif

int main() {
  if (lacks_host_fma() || !have_device()) return 77;
  case_table<float, float>();
  case_table<bf16, bf16>();
  case_table<f16, float>();
  larger_and_special();
  bad_input();
  output_subsets();
  graph_capture();
  return summary();
}
