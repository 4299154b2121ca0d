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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <tokred/cuda/tokred.cuh>
#include <type_traits>
#include <vector>

#include "reference/dct_ref.hpp"
#include "reference/pool_ref.hpp"
#include "cuda/harness.cuh"
#include "support/cases.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

std::string str(index_t v) { return std::to_string(v); }

// ---------------------------------------------------------------------------------------------
// Device memory and layouts.

/// The case table's three layouts, and `padded`: unit inner stride, rows 16-byte aligned but
/// wider than the row, so the vector path runs with a partial last chunk.
enum class rows_layout { contiguous, strided, reversed, padded };

rows_layout layout_of(layout how) {
  return how == layout::strided    ? rows_layout::strided
         : how == layout::reversed ? rows_layout::reversed
                                   : rows_layout::contiguous;
}

const char* name_of(rows_layout how) {
  switch (how) {
    case rows_layout::contiguous: return "contiguous";
    case rows_layout::strided: return "strided";
    case rows_layout::reversed: return "reversed";
    case rows_layout::padded: return "padded";
  }
  return "?";
}

placement place(index_t rows, index_t cols, rows_layout how) {
  placement p;
  switch (how) {
    case rows_layout::strided:
      p.row_stride = 2 * cols + 3;
      p.inner = 2;
      break;
    case rows_layout::reversed:
      p.row_stride = -cols;
      p.offset = rows > 0 ? (rows - 1) * cols : 0;
      break;
    case rows_layout::padded: p.row_stride = (cols + 7) / 8 * 8 + 8; break;
    case rows_layout::contiguous: p.row_stride = cols; break;
  }
  p.storage = std::max<index_t>(1, rows * std::abs(p.row_stride));
  return p;
}

/// A vector of `n` elements: every third element (strided), stride -1 (reversed), or packed.
placement place_vector(index_t n, rows_layout how) {
  placement p;
  p.row_stride = how == rows_layout::strided ? 3 : how == rows_layout::reversed ? -1 : 1;
  p.offset = how == rows_layout::reversed && n > 0 ? n - 1 : 0;
  p.storage = std::max<index_t>(1, how == rows_layout::strided ? 3 * n : n);
  return p;
}

/// Device storage of a placed matrix, pre-filled with `fill`, and its host image.
template <class T>
struct placed {
  placement where;
  index_t rows, cols;
  std::vector<T> image;
  device_buffer<T> buffer;

  placed(placement w, index_t rows_, index_t cols_, T fill)
      : where(w), rows(rows_), cols(cols_), image(static_cast<std::size_t>(w.storage), fill),
        buffer(image) {}

  T* origin() const { return buffer.get() + where.offset; }
  view<T, 2, device_space> matrix() const {
    return {origin(), {rows, cols}, {where.row_stride, where.inner}};
  }
  view<T, 1, device_space> vector() const { return {origin(), {rows}, {where.row_stride}}; }
  /// True for the storage elements the view covers.
  std::vector<bool> covered() const {
    std::vector<bool> in(image.size(), false);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) in[static_cast<std::size_t>(where.at(r, c))] = true;
    return in;
  }
};

/// Bits of one stored value, for exact comparisons.
template <class T>
std::uint64_t bits_of(const T& x) {
  std::uint64_t b = 0;
  std::memcpy(&b, &x, sizeof(T));
  return b;
}

/// True when nothing outside the view changed and, with `all`, nothing inside either.
template <class T>
bool outside_untouched(const placed<T>& p, const std::vector<T>& now, bool all) {
  const std::vector<bool> in = p.covered();
  for (std::size_t i = 0; i < now.size(); ++i)
    if ((all || !in[i]) && bits_of(now[i]) != bits_of(p.image[i])) return false;
  return true;
}

/// A case's token rows, made by the shared generator, in any layout, on the host and device.
template <class E>
struct rows_on_device {
  placed<E> storage;

  rows_on_device(index_t n, index_t dim, rows_layout how, std::uint64_t seed)
      : storage(place(n, dim, how), n, dim, from_float<E>(-7.0f)) {
    const token_matrix<E> made = make_tokens<E>(n, dim, layout::contiguous, seed);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < dim; ++c) set(i, c, made.rows(i, c));
    sync();
  }
  void set(index_t i, index_t c, E value) {
    storage.image[static_cast<std::size_t>(storage.where.at(i, c))] = value;
  }
  void sync() { storage.buffer.upload(storage.image); }
  view<const E, 2> host() const {  // (tokens, dim)
    return {storage.image.data() + storage.where.offset,
            {storage.rows, storage.cols},
            {storage.where.row_stride, storage.where.inner}};
  }
  view<const E, 2, device_space> device() const { return storage.matrix(); }  // (tokens, dim)
};

constexpr float token_fill = -3.5f;
constexpr std::int64_t source_fill = -12345;
constexpr std::int32_t position_fill = -777;
constexpr float size_fill = -1.25f;

/// Sentinel-filled device outputs of a grid reducer, laid out like the inputs.
template <class E>
struct outputs_on_device {
  placed<E> tokens;
  placed<std::int64_t> source;
  placed<std::int32_t> positions;
  placed<float> sizes;

  outputs_on_device(index_t kept, index_t dim, rows_layout how)
      : tokens(place(kept, dim, how), kept, dim, from_float<E>(token_fill)),
        source(place_vector(kept, how), kept, 1, source_fill),
        positions(place(kept, 3, how == rows_layout::padded ? rows_layout::contiguous : how), kept,
                  3, position_fill),
        sizes(place_vector(kept, how), kept, 1, size_fill) {}

  grid_outputs<E, device_space> views() const {
    return {tokens.matrix(), source.vector(), positions.matrix(), sizes.vector()};
  }
  bool untouched() const {
    return outside_untouched(tokens, tokens.buffer.download(), true) &&
           outside_untouched(source, source.buffer.download(), true) &&
           outside_untouched(positions, positions.buffer.download(), true) &&
           outside_untouched(sizes, sizes.buffer.download(), true);
  }
};

cudaStream_t test_stream() {
  static cudaStream_t s = [] {
    cudaStream_t made = nullptr;
    TOKRED_TEST_CUDA(cudaStreamCreateWithFlags(&made, cudaStreamNonBlocking));
    return made;
  }();
  return s;
}

/// Waits for the test stream and reports (as a failure) any asynchronous kernel error.
void finish(const std::string& label) {
  const cudaError_t e = cudaStreamSynchronize(test_stream());
  check(e == cudaSuccess, label + ": stream error " + cudaGetErrorString(e));
}

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

template <class E>
expectation expect(const pool& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  take_reference(e, ref::pooled(p, g, x));
  const index_t dim = x.extent(1);
  for (index_t j = 0; j < e.out.tokens(); ++j) {
    const index_t ot = j / e.out.frame_tokens(), oh = j / e.out.width % e.out.height,
                  ow = j % e.out.width;
    const axis_box box[3] = {pool_axis(ot, g.frames, p.kernel.t, p.stride.t, p.padding.t),
                             pool_axis(oh, g.height, p.kernel.h, p.stride.h, p.padding.h),
                             pool_axis(ow, g.width, p.kernel.w, p.stride.w, p.padding.w)};
    const index_t inside = (box[0].end - box[0].begin) * (box[1].end - box[1].begin) *
                           (box[2].end - box[2].begin);
    const index_t divisor =
        p.count_include_pad ? box[0].padded * box[1].padded * box[2].padded : inside;
    const float divisors[3] = {static_cast<float>(divisor), 1.0f, 1.0f};
    for (index_t c = 0; c < dim; ++c) {
      double scale = 0.0;
      e.fp32.push_back(pool_channel(box, p.kind, divisors, g, x, c, &scale));
      e.scale.push_back(scale);
    }
  }
  return e;
}

template <class E>
expectation expect(const adaptive_pool& p, const token_grid& g, const view<const E, 2>& x) {
  expectation e;
  e.out = output_grid(p, g);
  take_reference(e, ref::adaptive(p, g, x));
  const index_t dim = x.extent(1);
  for (index_t j = 0; j < e.out.tokens(); ++j) {
    const index_t ot = j / e.out.frame_tokens(), oh = j / e.out.width % e.out.height,
                  ow = j % e.out.width;
    const axis_box box[3] = {adaptive_axis(ot, g.frames, e.out.frames),
                             adaptive_axis(oh, g.height, e.out.height),
                             adaptive_axis(ow, g.width, e.out.width)};
    const float divisors[3] = {static_cast<float>(box[0].padded),
                               static_cast<float>(box[1].padded),
                               static_cast<float>(box[2].padded)};
    for (index_t c = 0; c < dim; ++c) {
      double scale = 0.0;
      e.fp32.push_back(pool_channel(box, p.kind, divisors, g, x, c, &scale));
      e.scale.push_back(scale);
    }
  }
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

/// One unit in the last place of storage type E at |v| (0 for fp32: its error is the 1e-5).
template <class E>
double storage_ulp(double v) {
  if constexpr (std::is_same_v<E, float>) {
    return 0.0;
  } else {
    constexpr int digits = std::is_same_v<E, f16> ? 11 : 8;  // significand bits
    constexpr int min_exponent = std::is_same_v<E, f16> ? -13 : -125;
    int exponent = 0;
    std::frexp(std::fabs(v), &exponent);
    return std::ldexp(1.0, std::max(exponent, min_exponent) - digits);
  }
}

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

/// Compares the bookkeeping outputs exactly.
template <class Eout>
void compare_meta(const outputs_on_device<Eout>& out, const expectation& e, const std::string& label) {
  const index_t kept = e.out.tokens();
  const std::vector<std::int64_t> source = out.source.buffer.download();
  const std::vector<std::int32_t> positions = out.positions.buffer.download();
  const std::vector<float> sizes = out.sizes.buffer.download();
  index_t bad_source = 0, bad_positions = 0, bad_sizes = 0;
  for (index_t j = 0; j < kept; ++j) {
    const auto u = static_cast<std::size_t>(j);
    bad_source += source[static_cast<std::size_t>(out.source.where.at(j, 0))] != e.source[u];
    for (index_t a = 0; a < 3; ++a)
      bad_positions += positions[static_cast<std::size_t>(out.positions.where.at(j, a))] !=
                       e.positions[u * 3 + static_cast<std::size_t>(a)];
    bad_sizes += bits_of(sizes[static_cast<std::size_t>(out.sizes.where.at(j, 0))]) !=
                 bits_of(e.sizes[u]);
  }
  check(bad_source == 0 && outside_untouched(out.source, source, false),
        label + ": source (" + str(bad_source) + " differ)");
  check(bad_positions == 0 && outside_untouched(out.positions, positions, false),
        label + ": positions (" + str(bad_positions) + " differ)");
  check(bad_sizes == 0 && outside_untouched(out.sizes, sizes, false),
        label + ": sizes (" + str(bad_sizes) + " differ)");
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
      const Eout stored = got[static_cast<std::size_t>(out.tokens.where.at(j, c))];
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
  check(outside_untouched(out.tokens, got, false), label + ": wrote outside the token view");
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
        const Eout a = got[static_cast<std::size_t>(out.tokens.where.at(j, c))];
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
  compare_meta(out, e, label);
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
void sweep_case(const shape_case& c, rows_layout how, const char* types) {
  for (const pool& p : pool_params()) run_case<Ein, Eout>(p, c, how, types);
  for (const adaptive_pool& p : adaptive_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
  for (const bilinear& p : bilinear_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
  for (const dct_lowpass& p : dct_params(c.grid)) run_case<Ein, Eout>(p, c, how, types);
}

void sweep_table() {
  for (const shape_case& c : shape_cases()) {
    const rows_layout how = layout_of(c.rows);
    sweep_case<float, float>(c, how, "fp32");
    sweep_case<f16, f16>(c, how, "fp16");
    sweep_case<bf16, bf16>(c, how, "bf16");
  }
}

/// Mixed input and output types, and the padded layout (vector loads with a partial chunk).
void sweep_conversions_and_tails() {
  for (const shape_case& c : shape_cases()) {
    const rows_layout how = layout_of(c.rows);
    run_case<f16, float>(pool{}, c, how, "fp16->fp32");
    run_case<bf16, f16>(adaptive_params(c.grid)[1], c, how, "bf16->fp16");
    run_case<float, bf16>(bilinear_params(c.grid)[0], c, how, "fp32->bf16");
    run_case<float, f16>(dct_params(c.grid)[0], c, how, "fp32->fp16");
    run_case<bf16, float>(dct_params(c.grid)[2], c, how, "bf16->fp32");
  }
  const shape_case tails[] = {{"tail_fp32_6x6_d10", image_grid(6, 6), 10, layout::contiguous},
                              {"tail_video_3x5x4_d13", token_grid{3, 5, 4}, 13, layout::contiguous},
                              {"wide_24x24_d1000", image_grid(24, 24), 1000, layout::contiguous}};
  for (const shape_case& c : tails) {
    sweep_case<float, float>(c, rows_layout::padded, "fp32");
    sweep_case<bf16, bf16>(c, rows_layout::padded, "bf16");
    sweep_case<f16, float>(c, rows_layout::padded, "fp16->fp32");
  }
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

/// Puts NaN, +inf and -inf at a few places of a 3 × 6 × 6 grid's rows (dim 9).
template <class E>
void poison(rows_on_device<E>& rows) {
  rows.set(7, 2, from_float<E>(std::numeric_limits<float>::quiet_NaN()));
  rows.set(20, 5, from_float<E>(std::numeric_limits<float>::infinity()));
  rows.set(21, 5, from_float<E>(-std::numeric_limits<float>::infinity()));
  rows.set(50, 0, from_float<E>(std::numeric_limits<float>::infinity()));
  rows.set(88, 8, from_float<E>(-std::numeric_limits<float>::quiet_NaN()));
  rows.sync();
}

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
  const token_grid g{3, 6, 6};
  const index_t dim = 9;
  rows_on_device<E> rows(g.tokens(), dim, rows_layout::contiguous, 31);
  poison(rows);
  const auto run = [&](const auto& p) {
    run_case<E, E>(p, g, dim, rows_layout::contiguous, rows,
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
                  outside_untouched(shared.storage, shared.storage.buffer.download(), true));
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
  compare_meta(out, e, "dct meta only");
  check(outside_untouched(out.tokens, out.tokens.buffer.download(), true),
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

  cudaGraph_t graph = nullptr;
  TOKRED_TEST_CUDA(cudaStreamBeginCapture(test_stream(), cudaStreamCaptureModeGlobal));
  const status s1 = apply(exec, avg, in, out_avg.views());
  const status s2 = apply(exec, resize, in, out_resize.views());
  const status s3 = apply(exec, low, in, out_low.views(), workspace{ws.get(), ws.size()});
  const cudaError_t captured = cudaStreamEndCapture(test_stream(), &graph);
  check(s1 == status::ok && s2 == status::ok && s3 == status::ok && captured == cudaSuccess,
        std::string("graph capture: ") + to_string(s1) + " " + to_string(s2) + " " +
            to_string(s3) + " " + cudaGetErrorString(captured));
  if (captured != cudaSuccess) return;
  cudaGraphExec_t instance = nullptr;
  TOKRED_TEST_CUDA(cudaGraphInstantiate(&instance, graph, 0));
  for (int replay = 0; replay < 2; ++replay)
    TOKRED_TEST_CUDA(cudaGraphLaunch(instance, test_stream()));
  finish("graph replay");
  const auto verify = [&](const auto& p, const outputs_on_device<bf16>& out) {
    const expectation e = expect(p, grid, rows.host());
    compare_meta(out, e, "graph " + describe(p));
    compare_tokens(out, e, "graph " + describe(p));
  };
  verify(avg, out_avg);
  verify(resize, out_resize);
  verify(low, out_low);
  TOKRED_TEST_CUDA(cudaGraphExecDestroy(instance));
  TOKRED_TEST_CUDA(cudaGraphDestroy(graph));
}

}  // namespace

int main() {
  if (!have_device()) return 77;
  sweep_table();
  sweep_conversions_and_tails();
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
  TOKRED_TEST_CUDA(cudaStreamDestroy(test_stream()));
  std::printf("%d passed, %d failed\n", results().passed, results().failed);
  return results().failed == 0 ? 0 : 1;
}
