// tests/cuda/test_grid_reduce_cuda.cu — the CUDA backends of pool, adaptive_pool, bilinear and
// dct_lowpass against the scalar oracles on the shared case table.
//
// Every case of tests/support/cases.hpp runs in its own layout, in fp32, fp16 and bf16 (and a
// few mixed pairs), under several parameter sets per policy. Checked:
//   source, positions, sizes   exactly those of tests/reference/pool_ref.hpp and dct_ref.hpp
//   pool, adaptive, bilinear   bit for bit the fp32 oracle below (torch's order of operations,
//                              written from torch's definitions) and the CPU backend; within
//                              1e-5 of the double oracle, plus one ulp of the storage type
//   dct_lowpass                within 1e-5 of the double oracle relative to the sum of absolute
//                              terms of the textbook evaluation (|C_k^T|·|C_n[:k]| per axis on
//                              |x|), plus one ulp of the storage type (the CUDA and CPU
//                              backends sum in different orders, so neither is bit-exact)
//   NaN / inf                  NaN where the oracle has NaN (payloads are not compared: the
//                              GPU's arithmetic returns its canonical NaN); for the DCT, a
//                              non-finite output exactly where the oracle's is non-finite
//   storage                    nothing outside the output views is written; on bad input
//                              nothing at all, with the documented status
// plus a CUDA-graph capture and replay. Exits 77 (CTest's "skipped") when no CUDA device is
// present. Otherwise prints one line per failure (the first 60) and "N passed, M failed".
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "reference/dct_ref.hpp"
#include "reference/pool_ref.hpp"
#include "cuda/device_buffers.cuh"
#include "cuda/grid_tests.cuh"
#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

// ---------------------------------------------------------------------------------------------
// What a run must produce.

/// The expected outputs of one run. `fp32` (pool family) is compared bit for bit after the
/// conversion to the output type; `exact` and `scale` (every policy) within tolerance.
struct expectation {
  token_grid out;
  std::vector<float> fp32;      // (kept, dim) torch's fp32 arithmetic, or empty
  std::vector<double> exact;    // (kept, dim) double oracle
  std::vector<double> scale;    // (kept, dim) the error scale: Σ|weight·x| of each output
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;
  std::vector<float> sizes;
};

/// `volatile` keeps the host compiler from fusing a multiply into a following add, which would
/// round once where torch's CPU kernel (and tokred) round twice.
float mul_rounded(float a, float b) {
  volatile float r = a * b;
  return r;
}

/// One axis of a box: input indices [begin, end) and the window's extent counting padding.
struct axis_box {
  index_t begin, end, padded;
};

/// torch's avg/max_pool3d window o along an axis (its pooling kernels' start/end arithmetic).
axis_box pool_axis(index_t o, index_t in, index_t k, index_t s, index_t pad) {
  const index_t start = o * s - pad;
  const index_t stop = std::min(start + k, in + pad);
  return {std::max<index_t>(start, 0), std::min(stop, in), stop - start};
}

/// torch's adaptive pooling bin o along an axis: [floor(o·in/out), ceil((o+1)·in/out)).
axis_box adaptive_axis(index_t o, index_t in, index_t out) {
  const index_t b = o * in / out, e = ((o + 1) * in + out - 1) / out;
  return {b, e, e - b};
}

/// One pooled channel in torch's fp32 order: sum (t, h, w) from +0, then the divisions; or the
/// max with NaN sticking. Also returns Σ|x| / divisors as the error scale.
template <class E>
float pool_channel(const axis_box (&box)[3], pool_kind kind, const float (&divisors)[3],
                   const token_grid& g, const view<const E, 2>& x, index_t c, double* scale) {
  float acc = kind == pool_kind::average ? 0.0f : -std::numeric_limits<float>::infinity();
  double magnitude = 0.0;
  for (index_t t = box[0].begin; t < box[0].end; ++t)
    for (index_t h = box[1].begin; h < box[1].end; ++h)
      for (index_t w = box[2].begin; w < box[2].end; ++w) {
        const float v = to_float(x((t * g.height + h) * g.width + w, c));
        magnitude += std::fabs(static_cast<double>(v));
        if (kind == pool_kind::average) acc = acc + v;
        else if (v > acc || std::isnan(v)) acc = v;
      }
  if (kind == pool_kind::max) {
    *scale = std::fabs(static_cast<double>(acc));
    return acc;
  }
  *scale = magnitude / (static_cast<double>(divisors[0]) * divisors[1] * divisors[2]);
  return acc / divisors[0] / divisors[1] / divisors[2];
}

/// The meta and double values of a pool_ref result.
void take_reference(expectation& e, const ref::grid_result& r) {
  e.exact = r.values;
  e.source = r.source;
  e.positions = r.positions;
  e.sizes = r.sizes;
}

/// The fp32 values and error scales of a pool-family run, output token by output token:
/// `window(ot, oh, ow, box, divisors)` fills the output's input box per axis (t, h, w) and the
/// three divisors its sum is divided by in turn.
template <class E, class Window>
void pool_values(expectation& e, pool_kind kind, const token_grid& g, const view<const E, 2>& x,
                 const Window& window) {
  const index_t dim = x.extent(1);
  for (index_t j = 0; j < e.out.tokens(); ++j) {
    const index_t ot = j / e.out.frame_tokens(), oh = j / e.out.width % e.out.height,
                  ow = j % e.out.width;
    axis_box box[3] = {};
    float divisors[3] = {};
    window(ot, oh, ow, box, divisors);
    for (index_t c = 0; c < dim; ++c) {
      double scale = 0.0;
      e.fp32.push_back(pool_channel(box, kind, divisors, g, x, c, &scale));
      e.scale.push_back(scale);
    }
  }
}

template <class E>
expectation expect(const pool& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  take_reference(e, ref::pooled(p, g, x));
  pool_values(e, p.kind, g, x,
              [&](index_t ot, index_t oh, index_t ow, axis_box (&box)[3], float (&divisors)[3]) {
                box[0] = pool_axis(ot, g.frames, p.kernel.t, p.stride.t, p.padding.t);
                box[1] = pool_axis(oh, g.height, p.kernel.h, p.stride.h, p.padding.h);
                box[2] = pool_axis(ow, g.width, p.kernel.w, p.stride.w, p.padding.w);
                const index_t inside = (box[0].end - box[0].begin) *
                                       (box[1].end - box[1].begin) * (box[2].end - box[2].begin);
                const index_t divisor =
                    p.count_include_pad ? box[0].padded * box[1].padded * box[2].padded : inside;
                divisors[0] = static_cast<float>(divisor);
                divisors[1] = divisors[2] = 1.0f;
              });
  return e;
}

template <class E>
expectation expect(const adaptive_pool& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  take_reference(e, ref::adaptive(p, g, x));
  pool_values(e, p.kind, g, x,
              [&](index_t ot, index_t oh, index_t ow, axis_box (&box)[3], float (&divisors)[3]) {
                box[0] = adaptive_axis(ot, g.frames, e.out.frames);
                box[1] = adaptive_axis(oh, g.height, e.out.height);
                box[2] = adaptive_axis(ow, g.width, e.out.width);
                for (int a = 0; a < 3; ++a) divisors[a] = static_cast<float>(box[a].padded);
              });
  return e;
}

template <class E>
expectation expect(const bilinear& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  take_reference(e, ref::resampled(p, g, x));
  const index_t dim = x.extent(1);
  for (index_t j = 0; j < e.out.tokens(); ++j) {
    const index_t t = j / e.out.frame_tokens(), oh = j / e.out.width % e.out.height,
                  ow = j % e.out.width;
    const ref::linear_tap h = ref::linear_source(oh, g.height, p.height, p.align_corners);
    const ref::linear_tap w = ref::linear_source(ow, g.width, p.width, p.align_corners);
    const float h1 = h.lambda, h0 = 1.0f - h1, w1 = w.lambda, w0 = 1.0f - w1;
    const auto at = [&](index_t ih, index_t iw, index_t c) {
      return to_float(x((t * g.height + ih) * g.width + iw, c));
    };
    for (index_t c = 0; c < dim; ++c) {
      const float x00 = at(h.i0, w.i0, c), x01 = at(h.i0, w.i1, c), x10 = at(h.i1, w.i0, c),
                  x11 = at(h.i1, w.i1, c);
      const float top = mul_rounded(x00, w0) + mul_rounded(x01, w1);
      const float bottom = mul_rounded(x10, w0) + mul_rounded(x11, w1);
      e.fp32.push_back(mul_rounded(top, h0) + mul_rounded(bottom, h1));
      e.scale.push_back(std::fabs(double{h0}) * (std::fabs(double{w0} * x00) + std::fabs(double{w1} * x01)) +
                        std::fabs(double{h1}) * (std::fabs(double{w0} * x10) + std::fabs(double{w1} * x11)));
    }
  }
  return e;
}

/// One step of the scale computation along `axis`: y_o = Σ_i |m(o, i)|·x_i for o < count.
template <class Weight>
ref::volume abs_step(ref::volume& x, int axis, index_t count, const Weight& m) {
  const index_t n = x.extent(axis), dim = x.d;
  ref::volume y(axis == 2 ? count : x.t, axis == 1 ? count : x.h, axis == 0 ? count : x.w, dim);
  for (index_t t = 0; t < y.t; ++t)
    for (index_t h = 0; h < y.h; ++h)
      for (index_t w = 0; w < y.w; ++w)
        for (index_t c = 0; c < dim; ++c) {
          const index_t o = axis == 0 ? w : axis == 1 ? h : t;
          double sum = 0.0;
          for (index_t i = 0; i < n; ++i) sum += std::fabs(m(o, i)) * ref::along(x, axis, i, t, h, w, c);
          y.at(t, h, w, c) = sum;
        }
  return y;
}

/// The error scale of every DCT output: the textbook evaluation's Σ of absolute terms, per
/// transformed axis |C_n[:k]| then (resampled) |C_k^T|, applied to |x|. A backend's fp32 sums,
/// its fp32 matrices and the double oracle's own rounding all err relative to it.
template <class E>
std::vector<double> dct_scale(const dct_lowpass& p, const token_grid& g, const view<const E, 2>& x) {
  const index_t dim = x.extent(1);
  ref::volume v(g.frames, g.height, g.width, dim);
  for (index_t i = 0; i < g.tokens(); ++i)
    for (index_t c = 0; c < dim; ++c)
      v.v[static_cast<std::size_t>(i * dim + c)] = std::fabs(static_cast<double>(to_float(x(i, c))));
  const bool transformed[3] = {p.axes != dct_axes::temporal, p.axes != dct_axes::temporal,
                               p.axes != dct_axes::spatial};
  const index_t keep[3] = {p.keep.w, p.keep.h, p.keep.t};
  for (int axis = 0; axis < 3; ++axis) {
    if (!transformed[axis]) continue;
    const index_t n = v.extent(axis), k = keep[axis];
    v = abs_step(v, axis, k, [n](index_t f, index_t i) { return ref::dct_basis(n, f, i); });
    if (p.produce == dct_output::resampled)
      v = abs_step(v, axis, k, [k](index_t y, index_t f) { return ref::dct_basis(k, f, y); });
  }
  return v.v;
}

template <class E>
expectation expect(const dct_lowpass& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  e.exact = ref::dct_lowpass(p, g, x);
  e.scale = dct_scale(p, g, x);
  const float size = static_cast<float>(g.tokens()) / static_cast<float>(e.out.tokens());
  for (index_t j = 0; j < e.out.tokens(); ++j) {
    const std::int64_t s = ref::dct_source(g, e.out, j);
    e.source.push_back(s);
    e.positions.push_back(static_cast<std::int32_t>(s / g.frame_tokens()));
    e.positions.push_back(static_cast<std::int32_t>(s / g.width % g.height));
    e.positions.push_back(static_cast<std::int32_t>(s % g.width));
    e.sizes.push_back(size);
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Comparing a run with its expectation.

/// True when `got` is within tolerance of the double oracle. A non-finite oracle value asks
/// only for a non-finite result: whether inf·w gives inf or NaN turns on whether a DCT matrix
/// entry rounds to exactly 0, and the pool family's NaNs are pinned down by the fp32 check.
template <class E>
bool near(float got, double want, double scale) {
  if (!std::isfinite(want)) return !std::isfinite(got);
  if (!std::isfinite(got)) return false;
  return std::fabs(static_cast<double>(got) - want) <=
         1e-5 * std::max(scale, std::fabs(want)) + storage_ulp<E>(want);
}

/// Compares the token rows: bit for bit with `fp32` when there is one, within tolerance of
/// `exact` always; and the storage around the view untouched.
template <class Eout>
void compare_tokens(const outputs_on_device<Eout>& out, const expectation& e,
                    const std::string& label) {
  const index_t kept = e.out.tokens(), dim = out.tokens.cols;
  const std::vector<Eout> got = out.tokens.buffer.download();
  index_t bad_bits = 0, bad_values = 0;
  std::string first;
  for (index_t j = 0; j < kept; ++j)
    for (index_t c = 0; c < dim; ++c) {
      const auto u = static_cast<std::size_t>(j * dim + c);
      const Eout stored = out.tokens.at(got, j, c);
      const float value = to_float(stored);
      if (!e.fp32.empty()) {
        const Eout want = from_float<Eout>(e.fp32[u]);
        const bool same = bits_of(want) == bits_of(stored) ||
                          (std::isnan(to_float(want)) && std::isnan(value));
        if (!same && bad_bits++ == 0)
          first = " first at (" + str(j) + ", " + str(c) + "): " + std::to_string(value) +
                  " want " + std::to_string(to_float(want));
      }
      if (!near<Eout>(value, e.exact[u], e.scale[u]) && bad_values++ == 0 && first.empty())
        first = " first at (" + str(j) + ", " + str(c) + "): " + std::to_string(value) +
                " want " + std::to_string(e.exact[u]);
    }
  if (!e.fp32.empty()) check(bad_bits == 0, label + ": tokens bits (" + str(bad_bits) + " differ)" + first);
  check(bad_values == 0, label + ": tokens values (" + str(bad_values) + " off)" + first);
  check(out.tokens.untouched(got, false), label + ": wrote outside the token view");
}

/// The CPU backend on the same host rows: the pool family must match it bit for bit.
template <class Ein, class Eout, class Policy>
void compare_with_cpu(const Policy& p, const token_grid& g, const view<const Ein, 2>& x,
                      const outputs_on_device<Eout>& out, const std::string& label) {
  if constexpr (std::is_same_v<Policy, dct_lowpass>) {
    (void)p, (void)g, (void)x, (void)out, (void)label;  // the CPU DCT needs Eigen: not in a .cu
  } else {
    const index_t kept = output_grid(p, g).tokens(), dim = x.extent(1);
    std::vector<Eout> cpu_rows(static_cast<std::size_t>(kept * dim));
    grid_outputs<Eout> cpu_out;
    cpu_out.tokens = make_view(cpu_rows.data(), kept, dim);
    const status s = apply(tokred::cpu<>{}, p, grid_inputs<Ein>{g, x}, cpu_out);
    const std::vector<Eout> got = out.tokens.buffer.download();
    index_t bad = 0;
    for (index_t j = 0; j < kept; ++j)
      for (index_t c = 0; c < dim; ++c) {
        const Eout a = out.tokens.at(got, j, c);
        const Eout b = cpu_rows[static_cast<std::size_t>(j * dim + c)];
        bad += bits_of(a) != bits_of(b) && !(std::isnan(to_float(a)) && std::isnan(to_float(b)));
      }
    check(s == status::ok && bad == 0, label + ": CPU backend differs (" + str(bad) + ")");
  }
}

// ---------------------------------------------------------------------------------------------
// One run.

std::string describe(const pool& p) {
  const auto e = [](const extent3& x) { return str(x.t) + "x" + str(x.h) + "x" + str(x.w); };
  return std::string(p.kind == pool_kind::max ? "max" : "avg") + "_pool k" + e(p.kernel) + " s" +
         e(p.stride) + " p" + e(p.padding) + (p.ceil_mode ? " ceil" : "") +
         (p.count_include_pad ? "" : " no_pad_count");
}
std::string describe(const adaptive_pool& p) {
  return std::string(p.kind == pool_kind::max ? "adaptive_max " : "adaptive_avg ") + str(p.size.t) +
         "x" + str(p.size.h) + "x" + str(p.size.w);
}
std::string describe(const bilinear& p) {
  return "bilinear " + str(p.height) + "x" + str(p.width) + (p.align_corners ? " aligned" : "");
}
std::string describe(const dct_lowpass& p) {
  const char* axes = p.axes == dct_axes::spatial    ? "spatial"
                     : p.axes == dct_axes::temporal ? "temporal"
                                                    : "spatiotemporal";
  return std::string("dct ") + axes + " keep " + str(p.keep.t) + "x" + str(p.keep.h) + "x" +
         str(p.keep.w) + (p.produce == dct_output::coefficients ? " coefficients" : " resampled");
}

/// Runs `p` on the device for a grid and rows, and compares every output with the oracles.
/// Parameters that do not fit the grid must give can_implement's status and write nothing.
template <class Ein, class Eout, class Policy>
void run_case(const Policy& p, const token_grid& grid, index_t dim, rows_layout how,
              const rows_on_device<Ein>& rows, const std::string& label) {
  const problem prob{grid, dim};
  const tokred::cuda exec{test_stream()};
  const index_t kept = retained_count(p, prob);
  const std::size_t need = workspace_bytes(exec, p, prob);
  device_buffer<std::byte> ws(need);
  const grid_inputs<Ein, device_space> in{grid, rows.device()};
  if (kept == 0) {
    outputs_on_device<Eout> out(1, dim, how);
    const status s = apply(exec, p, in, out.views(), workspace{ws.get(), need});
    finish(label);
    const status want = can_implement(p, prob);
    check(s == want && want != status::ok && out.untouched(),
          label + ": unfit parameters gave " + to_string(s) + ", want " + to_string(want));
    return;
  }
  outputs_on_device<Eout> out(kept, dim, how);
  const status s = apply(exec, p, in, out.views(), workspace{ws.get(), need});
  finish(label);
  check(s == status::ok, label + ": status " + to_string(s));
  if (s != status::ok) return;
  const expectation e = expect(p, grid, rows.host());
  const auto values = static_cast<std::size_t>(kept * dim);
  const bool consistent = e.out.tokens() == kept && e.exact.size() == values &&
                          e.scale.size() == values && (e.fp32.empty() || e.fp32.size() == values) &&
                          e.source.size() == static_cast<std::size_t>(kept);
  check(consistent, label + ": the oracles disagree with output_grid");
  if (!consistent) return;
  compare_meta(out, e.out.tokens(), e, label);
  compare_tokens(out, e, label);
  compare_with_cpu<Ein, Eout>(p, grid, rows.host(), out, label);
}

template <class Ein, class Eout, class Policy>
void run_case(const Policy& p, const shape_case& c, rows_layout how, const char* types) {
  const rows_on_device<Ein> rows(c.grid.tokens(), c.dim, how, 0xC0FFEEu + static_cast<std::uint64_t>(c.dim));
  run_case<Ein, Eout>(p, c.grid, c.dim, how, rows,
                      describe(p) + " on " + c.name + " " + name_of(how) + " " + types);
}

// ---------------------------------------------------------------------------------------------
// Parameter sets, scaled to each grid (sets that do not fit a grid test the status instead).

std::vector<pool> pool_params() {
  std::vector<pool> v;
  v.push_back(pool{});  // LLaVA-OneVision's 2 × 2 average, floor mode
  v.push_back(pool{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 0, 0}, false, true});
  v.push_back(pool{pool_kind::average, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, true, true});
  v.push_back(pool{pool_kind::average, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}, true, false});
  v.push_back(pool{pool_kind::average, {1, 1, 2}, {1, 1, 2}, {0, 0, 0}, false, true});  // 1-D
  v.push_back(pool{pool_kind::max, {1, 1, 3}, {1, 1, 2}, {0, 0, 1}, true, true});       // 1-D
  v.push_back(pool{pool_kind::average, {2, 2, 2}, {2, 2, 2}, {0, 0, 0}, true, false});  // 3-D
  v.push_back(pool{pool_kind::max, {3, 2, 2}, {2, 1, 2}, {1, 1, 0}, false, true});      // 3-D
  return v;
}

std::vector<adaptive_pool> adaptive_params(const token_grid& g) {
  std::vector<adaptive_pool> v;
  const auto half = [](index_t n) { return (n + 1) / 2; };
  for (pool_kind kind : {pool_kind::average, pool_kind::max}) {
    v.push_back({kind, {1, 1, 1}});
    v.push_back({kind, {g.frames, half(g.height), half(g.width)}});
    v.push_back({kind, {std::max<index_t>(1, g.frames / 2), std::max<index_t>(1, 2 * g.height / 3),
                        g.width + 3}});                                             // down and up
    v.push_back({kind, {g.frames + 1, g.height + 2, 2 * g.width}});                 // up
  }
  return v;
}

std::vector<bilinear> bilinear_params(const token_grid& g) {
  std::vector<bilinear> v;
  for (bool aligned : {false, true}) {
    v.push_back({(g.height + 1) / 2, (g.width + 1) / 2, aligned});  // LLaVA-OneVision: 27 → 14
    v.push_back({2 * g.height + 1, g.width + 2, aligned});
    v.push_back({1, 1, aligned});
  }
  v.push_back({g.height, g.width, false});
  return v;
}

std::vector<dct_lowpass> dct_params(const token_grid& g) {
  std::vector<dct_lowpass> v;
  const auto at_least_1 = [](index_t n) { return std::max<index_t>(1, n); };
  for (dct_output produce : {dct_output::resampled, dct_output::coefficients}) {
    dct_lowpass spatial = dct_lowpass_for_ratio(g);
    spatial.produce = produce;
    v.push_back(spatial);
    v.push_back({{at_least_1(g.frames / 2), g.height, g.width}, dct_axes::temporal, produce});
    v.push_back({{(g.frames + 1) / 2, at_least_1(g.height / 2), at_least_1(g.width / 2)},
                 dct_axes::spatiotemporal, produce});
  }
  // The identity (every pass skipped: a copy) and one with only the H pass left.
  v.push_back({{g.frames, g.height, g.width}, dct_axes::spatial, dct_output::resampled});
  v.push_back({{g.frames, at_least_1(g.height / 2), g.width}, dct_axes::spatiotemporal,
               dct_output::resampled});
  return v;
}

template <class Ein, class Eout>
void sweep_case(element_tag<Ein>, element_tag<Eout>, const shape_case& c, rows_layout how,
                const char* types) {
  for (const pool& p : pool_params()) run_case<Ein, Eout>(p, c, how, types);
  for (const adaptive_pool& p : adaptive_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
  for (const bilinear& p : bilinear_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
  for (const dct_lowpass& p : dct_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
}

/// Every case in fp32, fp16 and bf16; mixed input and output types; and the padded layout
/// (vector loads with a partial chunk).
void sweep_table() {
  sweep_same_types([](auto... a) { sweep_case(a...); });
  for_each_case([](const shape_case& c, rows_layout how) {
    run_case<f16, float>(pool{}, c, how, "fp16->fp32");
    run_case<bf16, f16>(adaptive_params(c.grid)[1], c, how, "bf16->fp16");
    run_case<float, bf16>(bilinear_params(c.grid)[0], c, how, "fp32->bf16");
    run_case<float, f16>(dct_params(c.grid)[0], c, how, "fp32->fp16");
    run_case<bf16, float>(dct_params(c.grid)[2], c, how, "bf16->fp32");
  });
  const shape_case tails[] = {{"tail_fp32_6x6_d10", image_grid(6, 6), 10, layout::contiguous},
                              {"tail_video_3x5x4_d13", token_grid{3, 5, 4}, 13, layout::contiguous},
                              {"wide_24x24_d1000", image_grid(24, 24), 1000, layout::contiguous}};
  sweep_padded(tails, [](auto... a) { sweep_case(a...); });
}

/// Axes longer than a staged matrix tile (64 inputs) and more outputs than a register tile (16).
void check_dct_tiles() {
  const token_grid frames{70, 3, 2}, line = sequence_grid(100);
  for (dct_output produce : {dct_output::resampled, dct_output::coefficients}) {
    for (index_t dim : {index_t{5}, index_t{64}}) {
      const rows_on_device<float> a(frames.tokens(), dim, rows_layout::contiguous, 11);
      const dct_lowpass temporal{{35, 3, 2}, dct_axes::temporal, produce};
      run_case<float, float>(temporal, frames, dim, rows_layout::contiguous, a,
                             describe(temporal) + " 70x3x2 d" + str(dim));
      const dct_lowpass both{{33, 2, 1}, dct_axes::spatiotemporal, produce};
      run_case<float, float>(both, frames, dim, rows_layout::contiguous, a,
                             describe(both) + " 70x3x2 d" + str(dim));
      const rows_on_device<bf16> b(line.tokens(), dim, rows_layout::reversed, 12);
      const dct_lowpass spatial{{1, 1, 40}, dct_axes::spatial, produce};
      run_case<bf16, bf16>(spatial, line, dim, rows_layout::reversed, b,
                           describe(spatial) + " 1x1x100 d" + str(dim));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// NaN and inf.

/// True when an axis is resampled at its full size: the backends skip that pass (it is the
/// identity), so a NaN or inf stays in place there instead of spreading along the line as it
/// does through the double oracle's C_n^T·C_n.
bool has_identity_axis(const dct_lowpass& p, const token_grid& g) {
  if (p.produce != dct_output::resampled) return false;
  const bool spatial = p.axes != dct_axes::temporal, temporal = p.axes != dct_axes::spatial;
  return (spatial && (p.keep.w == g.width || p.keep.h == g.height)) ||
         (temporal && p.keep.t == g.frames);
}

template <class E>
void check_non_finite(const char* type) {
  const non_finite_case<E> poisoned;
  const token_grid& g = poisoned.grid;
  const auto run = [&](const auto& p) {
    run_case<E, E>(p, g, poisoned.dim, rows_layout::contiguous, poisoned.rows,
                   describe(p) + " non-finite " + type);
  };
  for (const pool& p : pool_params()) run(p);
  for (const adaptive_pool& p : adaptive_params(g)) run(p);
  for (const bilinear& p : bilinear_params(g)) run(p);
  for (const dct_lowpass& p : dct_params(g))
    if (!has_identity_axis(p, g)) run(p);
}

// ---------------------------------------------------------------------------------------------
// Bad input: the documented status, and not a byte written.

void expect_status(const std::string& what, status got, status want, bool untouched) {
  check(got == want, what + ": got " + to_string(got) + ", want " + to_string(want));
  check(untouched, what + ": wrote output on failure");
}

/// A valid 2 × 6 × 4 problem (dim 8) that each check breaks in one way.
template <class Policy>
void check_bad_input(const Policy& valid, const char* name) {
  const token_grid grid{2, 6, 4};
  const index_t dim = 8, n = grid.tokens();
  const tokred::cuda exec{test_stream()};
  const rows_on_device<float> rows(n, dim, rows_layout::contiguous, 5);
  const index_t kept = retained_count(valid, problem{grid, dim});
  const std::size_t need = workspace_bytes(exec, valid, problem{grid, dim});
  device_buffer<std::byte> ws(need);
  const grid_inputs<float, device_space> in{grid, rows.device()};
  const auto run = [&](const Policy& p, const grid_inputs<float, device_space>& i,
                       const grid_outputs<float, device_space>& o, workspace w) {
    const status s = apply(exec, p, i, o, w);
    finish(std::string(name) + " bad input");
    return s;
  };
  const std::string label = std::string(name) + ": ";
  {
    outputs_on_device<float> out(kept, dim, rows_layout::contiguous);
    const status s = run(valid, in, out.views(), workspace{ws.get(), need});
    check(s == status::ok && !out.untouched(), label + "the bad-input fixture is valid");
  }
  {
    outputs_on_device<float> out(kept, dim, rows_layout::contiguous);
    grid_inputs<float, device_space> empty = in;
    empty.grid = token_grid{0, 6, 4};
    expect_status(label + "zero frames", run(valid, empty, out.views(), workspace{ws.get(), need}),
                  status::empty_input, out.untouched());
    empty.grid = token_grid{-1, 6, 4};
    expect_status(label + "negative frames",
                  run(valid, empty, out.views(), workspace{ws.get(), need}),
                  status::shape_mismatch, out.untouched());
    grid_outputs<float, device_space> o = out.views();
    o.tokens = view<float, 2, device_space>(nullptr, {kept, dim});
    expect_status(label + "null output rows", run(valid, in, o, workspace{ws.get(), need}),
                  status::null_pointer, out.untouched());
    o = out.views();
    o.source = view<std::int64_t, 1, device_space>(out.source.origin(), {kept + 1});
    expect_status(label + "source too long", run(valid, in, o, workspace{ws.get(), need}),
                  status::shape_mismatch, out.untouched());
    o = out.views();
    o.positions = view<std::int32_t, 2, device_space>(out.positions.origin(), {kept, 2});
    expect_status(label + "positions (kept, 2)", run(valid, in, o, workspace{ws.get(), need}),
                  status::shape_mismatch, out.untouched());
    o = out.views();
    o.tokens = view<float, 2, device_space>(out.tokens.origin(), {kept, dim + 1});
    expect_status(label + "output rows too wide", run(valid, in, o, workspace{ws.get(), need}),
                  status::shape_mismatch, out.untouched());
    grid_inputs<float, device_space> wrong = in;
    wrong.tokens = view<const float, 2, device_space>(rows.device().data_handle(), {n - 1, dim});
    expect_status(label + "input rows one short", run(valid, wrong, out.views(), workspace{ws.get(), need}),
                  status::shape_mismatch, out.untouched());
    o = out.views();
    o.sizes = view<float, 1, device_space>(out.tokens.origin() + 1, {kept});
    expect_status(label + "sizes inside the output rows", run(valid, in, o, workspace{ws.get(), need}),
                  status::aliasing, out.untouched());
  }
  {
    // Output rows over the input rows: the input buffer must stay as it was.
    const rows_on_device<float> shared(n, dim, rows_layout::contiguous, 6);
    grid_outputs<float, device_space> o;
    o.tokens = view<float, 2, device_space>(const_cast<float*>(shared.device().data_handle()), {kept, dim});
    const grid_inputs<float, device_space> i{grid, shared.device()};
    const status s = run(valid, i, o, workspace{ws.get(), need});
    expect_status(label + "output rows alias input rows", s, status::aliasing,
                  shared.storage.untouched());
  }
  if (need > 0) {
    outputs_on_device<float> out(kept, dim, rows_layout::contiguous);
    expect_status(label + "workspace one byte short",
                  run(valid, in, out.views(), workspace{ws.get(), need - 1}),
                  status::workspace_too_small, out.untouched());
    expect_status(label + "null workspace", run(valid, in, out.views(), workspace{nullptr, need}),
                  status::null_pointer, out.untouched());
  }
}

void check_bad_parameters() {
  const token_grid grid{2, 6, 4};
  const index_t dim = 8;
  const rows_on_device<float> rows(grid.tokens(), dim, rows_layout::contiguous, 5);
  const auto expect_invalid = [&](const auto& p, const std::string& what) {
    outputs_on_device<float> out(4, dim, rows_layout::contiguous);
    grid_outputs<float, device_space> o = out.views();
    o.tokens = view<float, 2, device_space>();
    o.source = view<std::int64_t, 1, device_space>();
    const status s = apply(tokred::cuda{test_stream()}, p, grid_inputs<float, device_space>{grid, rows.device()},
                           o, workspace{});
    finish(what);
    expect_status(what, s, status::invalid_parameter, out.untouched());
  };
  expect_invalid(pool{pool_kind::average, {1, 0, 2}, {1, 2, 2}, {0, 0, 0}, false, true}, "pool kernel 0");
  expect_invalid(pool{pool_kind::average, {1, 2, 2}, {1, 0, 2}, {0, 0, 0}, false, true}, "pool stride 0");
  expect_invalid(pool{pool_kind::max, {1, 2, 2}, {1, 2, 2}, {0, 2, 0}, false, true}, "pool padding > kernel/2");
  expect_invalid(pool{pool_kind::average, {1, 7, 2}, {1, 1, 1}, {0, 0, 0}, false, true}, "pool kernel > grid");
  expect_invalid(adaptive_pool{pool_kind::average, {1, 0, 3}}, "adaptive size 0");
  expect_invalid(bilinear{0, 3, false}, "bilinear height 0");
  expect_invalid(dct_lowpass{{2, 7, 2}, dct_axes::spatial, dct_output::resampled}, "dct keep > H");
  expect_invalid(dct_lowpass{{1, 3, 2}, dct_axes::spatial, dct_output::resampled}, "dct spatial keep.t != T");
  expect_invalid(dct_lowpass{{0, 6, 4}, dct_axes::temporal, dct_output::resampled}, "dct keep.t 0");
}

/// Nothing requested is valid and writes nothing; meta alone needs no workspace.
void check_partial_requests() {
  const token_grid grid{2, 6, 4};
  const index_t dim = 8;
  const rows_on_device<float> rows(grid.tokens(), dim, rows_layout::contiguous, 5);
  const grid_inputs<float, device_space> in{grid, rows.device()};
  const dct_lowpass dct{{1, 3, 2}, dct_axes::spatiotemporal, dct_output::resampled};
  status s = apply(tokred::cuda{test_stream()}, dct, in, grid_outputs<float, device_space>{});
  finish("nothing requested");
  check(s == status::ok, std::string("nothing requested: ") + to_string(s));

  const index_t kept = retained_count(dct, problem{grid, dim});
  outputs_on_device<float> out(kept, dim, rows_layout::contiguous);
  grid_outputs<float, device_space> o = out.views();
  o.tokens = {};
  s = apply(tokred::cuda{test_stream()}, dct, in, o, workspace{});
  finish("dct meta only");
  check(s == status::ok, std::string("dct meta only: ") + to_string(s));
  const expectation e = expect(dct, grid, rows.host());
  compare_meta(out, e.out.tokens(), e, "dct meta only");
  check(out.tokens.untouched(),
        "dct meta only: wrote token rows");
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: the backends only enqueue stream work, so a captured graph replays them.

void check_graph_capture() {
  const token_grid grid{4, 12, 12};
  const index_t dim = 40;
  const tokred::cuda exec{test_stream()};
  const rows_on_device<bf16> rows(grid.tokens(), dim, rows_layout::contiguous, 9);
  const grid_inputs<bf16, device_space> in{grid, rows.device()};
  const pool avg{};
  const bilinear resize{7, 5, false};
  const dct_lowpass low{{2, 8, 8}, dct_axes::spatiotemporal, dct_output::resampled};
  const auto kept = [&](const auto& p) { return retained_count(p, problem{grid, dim}); };
  outputs_on_device<bf16> out_avg(kept(avg), dim, rows_layout::contiguous),
      out_resize(kept(resize), dim, rows_layout::contiguous),
      out_low(kept(low), dim, rows_layout::contiguous);
  device_buffer<std::byte> ws(workspace_bytes(exec, low, problem{grid, dim}));

  const bool replayed = capture_and_replay([&] {
    return std::vector<status>{
        apply(exec, avg, in, out_avg.views()), apply(exec, resize, in, out_resize.views()),
        apply(exec, low, in, out_low.views(), workspace{ws.get(), ws.size()})};
  });
  if (!replayed) return;
  const auto verify = [&](const auto& p, const outputs_on_device<bf16>& out) {
    const expectation e = expect(p, grid, rows.host());
    compare_meta(out, e.out.tokens(), e, "graph " + describe(p));
    compare_tokens(out, e, "graph " + describe(p));
  };
  verify(avg, out_avg);
  verify(resize, out_resize);
  verify(low, out_low);
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  sweep_table();
  check_dct_tiles();
  check_non_finite<float>("fp32");
  check_non_finite<bf16>("bf16");
  check_non_finite<f16>("fp16");
  check_bad_input(pool{}, "pool");
  check_bad_input(adaptive_pool{pool_kind::max, {1, 3, 3}}, "adaptive_pool");
  check_bad_input(bilinear{3, 2, true}, "bilinear");
  check_bad_input(dct_lowpass{{1, 4, 3}, dct_axes::spatiotemporal, dct_output::coefficients},
                  "dct_lowpass");
  check_bad_parameters();
  check_partial_requests();
  check_graph_capture();
  return summary();
}
