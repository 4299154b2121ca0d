// tools/bench/fidelity.hpp — what `tokred bench` measures besides time: how faithfully a
// method's reduced tokens stand for the originals, and how much a KV-cache quantizer changes the
// keys, the values and attention.
//
// Token fidelity, for original tokens X (N, D) and reduced tokens Y (K, D):
//   reconstruction   every original replaced by its output token (assign) or, when it has none,
//                    by its nearest output: relative L2 error and mean cosine
//   attention        softmax(Q·Xᵀ/√D)·X against softmax(Q·Yᵀ/√D + log sizes)·Y (ToMe's
//                    proportional attention for merged tokens): relative Frobenius error
//   coverage         the largest distance from an original to its nearest output, absolute and
//                    relative to the mean token norm
// and the queries Q the bench uses when it is given none (default_queries). The bench prepares
// one item_reference per item (X, Q and the full attention, which no reduction changes) and
// measures every method and budget against it with token_fidelity.
//
// KV fidelity: a table of KV-cache schemes (llama.cpp's block types, KIVI, VidKV, and the fp32
// and fp16 caches they are compared with), each run on an item's tokens used as both the keys
// and the values: kv_prepare sizes the buffers, kv_stage hands the tokens over (KIVI and VidKV:
// rounded to fp16 once, outside the timing), kv_cache_round_trip quantizes and dequantizes (the
// call the bench times: no allocation; kv_round_trip is both), kv_measure reports the key and
// value errors and the attention KL divergence.
//
// Host code for the benchmark harness, not part of the library headers: it allocates, it is
// single-threaded, and it uses Eigen's GEMM for every O(N·K·D) product (N = 4624, K = 1156,
// D = 768, M = 256 is about 4.1·10⁹ multiply-adds for the nearest search alone, measured per
// method and budget). Reported values are recomputed in double where a float product would lose
// them (see each function). Deterministic: the same inputs give the same bits on every run of
// one build.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

// Eigen brings in the x86 intrinsics: see TOKRED_INTRINSIC_HEADERS_BEGIN (core/config.hpp).
#include "tokred/core/config.hpp"
TOKRED_INTRINSIC_HEADERS_BEGIN
#include <Eigen/Core>
TOKRED_INTRINSIC_HEADERS_END

#include "tokred/core/element.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/cpu/ggml_blocks.hpp"
#include "tokred/cpu/kivi.hpp"
#include "tokred/cpu/kv_error.hpp"
#include "tokred/cpu/merge.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/cpu/vidkv.hpp"

namespace tokred::bench {

// --- token fidelity -----------------------------------------------------------------------------

/// A reduction's result as the metrics read it.
struct reduced_tokens {
  view<const float, 2> tokens;         // (K, D): the output tokens Y
  view<const std::int64_t, 1> assign;  // (N,): output slot of each original, −1 if dropped; empty: none given
  view<const float, 1> sizes;          // (K,): originals each output stands for; empty: all 1
};

/// The nearest output token of one original: `index` j minimizing ‖x − y_j‖ (the lowest j among
/// equal distances) and `distance` = that ‖x − y_j‖.
struct nearest_output {
  index_t index = -1;
  double distance = 0.0;
};

/// Reconstruction error: x̂_i = Y[assign[i]] when assign[i] ≥ 0, else (assign −1 or not given)
/// the nearest output token of x_i (see nearest_output).
///
///   relative_l2  = ‖X − X̂‖_F / ‖X‖_F; 0 when X and X̂ are both all zero, +inf when only X is
///   mean_cosine  = (1/N)·Σ_i cos(x_i, x̂_i), cos = x·x̂ / √(‖x‖²·‖x̂‖²) clamped to [−1, 1];
///                  1 when both vectors are zero, 0 when exactly one is
///   nearest      = how many originals were reconstructed from their nearest output
///
/// Every term in double (products of two floats are exact there), rows summed in index order.
struct reconstruction_stats {
  double relative_l2 = 0.0;
  double mean_cosine = 0.0;
  index_t nearest = 0;
};

/// Coverage: how far the worst-served original is from every output token.
///
///   max_distance = max_i min_j ‖x_i − y_j‖, in double from the float values (no cancellation)
///   relative     = max_distance / ((1/N)·Σ_i ‖x_i‖), comparable across items and encoders;
///                  0 when both are 0, +inf when only the mean norm is
///   token        = the i attaining the maximum (the lowest i among equal distances)
///   output       = its nearest output (the lowest j among equal distances)
struct coverage_stats {
  double max_distance = 0.0;
  double relative = 0.0;
  index_t token = -1;
  index_t output = -1;
};

/// All three token metrics (see `token_fidelity`).
struct fidelity_stats {
  reconstruction_stats reconstruction;
  double attention_error = 0.0;  ///< see `attention_error`
  coverage_stats coverage;
};

/// The most queries of each default set (see `default_query_rows`).
inline constexpr index_t default_query_limit = 256;

namespace detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_map = Eigen::Map<const row_matrix, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Rows of X per GEMM in the nearest search: the (256, K) block of dot products (1.2 MB at
/// K = 1156) is still in cache when the candidate pass reads it. N = 4624, K = 1156, D = 768,
/// AVX-512 build, best of 5: 64 rows 184 ms, 128 185 ms, 256 158 ms, 512 160 ms, 1024 204 ms,
/// all 4624 at once 231 ms (SSE2 build: 700–850 ms for 64–1024 rows, within the noise).
inline constexpr index_t nearest_block_rows = 256;

/// The rows of a (rows, cols) float view as a row-major Eigen map, with each row's squared norm
/// in double. Reads the view in place when its rows are unit-stride runs that do not overlap;
/// otherwise (any other strides, negative ones included) packs a copy first.
class token_matrix {
 public:
  token_matrix() = default;
  explicit token_matrix(const view<const float, 2>& v) : rows_(v.extent(0)), cols_(v.extent(1)) {
    const bool in_place = v.has_unit_inner_stride() && (rows_ <= 1 || v.stride(0) >= cols_);
    if (in_place) {
      data_ = v.data_handle();
      stride_ = rows_ <= 1 ? cols_ : v.stride(0);
    } else {
      copy_.resize(static_cast<std::size_t>(rows_ * cols_));
      for (index_t i = 0; i < rows_; ++i)
        for (index_t c = 0; c < cols_; ++c) copy_[static_cast<std::size_t>(i * cols_ + c)] = v(i, c);
      data_ = copy_.data();
      stride_ = cols_;
    }
    norms_.resize(static_cast<std::size_t>(rows_));
    for (index_t i = 0; i < rows_; ++i)
      norms_[static_cast<std::size_t>(i)] = tokred::detail::dot_double(row(i), 1, row(i), 1, cols_);
  }
  // data_ may point into copy_: a copy would point into the original's, but a moved vector
  // keeps its buffer, so moving is safe.
  token_matrix(const token_matrix&) = delete;
  token_matrix& operator=(const token_matrix&) = delete;
  token_matrix(token_matrix&&) noexcept = default;
  token_matrix& operator=(token_matrix&&) noexcept = default;

  index_t rows() const noexcept { return rows_; }
  index_t cols() const noexcept { return cols_; }
  const float* row(index_t i) const noexcept { return data_ + i * stride_; }
  /// ‖row i‖², in double.
  double squared_norm(index_t i) const noexcept { return norms_[static_cast<std::size_t>(i)]; }
  row_map map() const noexcept { return row_map(data_, rows_, cols_, Eigen::OuterStride<>(stride_)); }
  /// True when every value is finite.
  bool finite() const noexcept {
    for (double n : norms_)  // a NaN or ±inf value makes its row's norm NaN or inf
      if (!std::isfinite(n)) return false;
    return true;
  }

 private:
  index_t rows_ = 0, cols_ = 0, stride_ = 0;
  const float* data_ = nullptr;
  std::vector<float> copy_;
  std::vector<double> norms_;
};

/// ‖a − b‖² of two float rows in double, summed in channel order. Each difference of two floats
/// is exact in double (for operands within 2²⁹ of each other) and nothing cancels.
inline double squared_distance(const float* a, const float* b, index_t n) noexcept {
  double s = 0.0;
  for (index_t c = 0; c < n; ++c) {
    const double e = static_cast<double>(a[c]) - static_cast<double>(b[c]);
    s += e * e;
  }
  return s;
}

/// The nearest output of each listed original (every original when `rows` is null), written to
/// `out[i]` for original i.
///
/// A float GEMM gives g = x·y for every pair and d̃ = ‖x‖² + ‖y‖² − 2g (norms in double). Its
/// error is at most γ_D·Σ|x_c·y_c| ≤ D·2⁻²⁴·(‖x‖² + ‖y‖²)/2 per dot product, plus D·2⁻¹⁴⁹ for
/// products that underflow, so every j whose d̃ lies within twice that bound of the row's least
/// d̃ (with a further factor 2 of margin) may be the nearest: those candidates are measured
/// exactly (`squared_distance`) and the least exact distance wins, the lowest j on ties. The
/// result is the one an exact search gives. A row with a non-finite d̃ (a product that
/// overflowed float) is searched exactly over all outputs.
inline void nearest_rows(const token_matrix& x, const token_matrix& y, const index_t* rows, index_t count,
                         std::vector<nearest_output>& out) {
  const index_t k = y.rows(), d = x.cols();
  double y_norm_max = 0.0;
  for (index_t j = 0; j < k; ++j) y_norm_max = std::max(y_norm_max, y.squared_norm(j));
  const double rel = 4.0 * static_cast<double>(d) * 0x1p-24, abs = 8.0 * static_cast<double>(d) * 0x1p-149;

  const index_t block = std::min(count, nearest_block_rows);
  std::vector<float> gathered(rows != nullptr ? static_cast<std::size_t>(block * d) : 0);
  std::vector<float> dots(static_cast<std::size_t>(block * k));
  std::vector<double> approx(static_cast<std::size_t>(k));
  const row_map ym = y.map();
  for (index_t r0 = 0; r0 < count; r0 += block) {
    const index_t b = std::min(block, count - r0);
    Eigen::Map<row_matrix> g(dots.data(), b, k);  // (b, K)
    if (rows == nullptr) {
      g.noalias() = x.map().middleRows(r0, b) * ym.transpose();
    } else {
      for (index_t r = 0; r < b; ++r)
        std::copy(x.row(rows[r0 + r]), x.row(rows[r0 + r]) + d, gathered.begin() + r * d);
      g.noalias() = Eigen::Map<const row_matrix>(gathered.data(), b, d) * ym.transpose();
    }
    for (index_t r = 0; r < b; ++r) {
      const index_t i = rows != nullptr ? rows[r0 + r] : r0 + r;
      const double xn = x.squared_norm(i);
      double least = std::numeric_limits<double>::infinity();
      bool finite = true;
      for (index_t j = 0; j < k; ++j) {
        const double a = xn + y.squared_norm(j) - 2.0 * static_cast<double>(g(r, j));
        approx[static_cast<std::size_t>(j)] = a;
        finite = finite && std::isfinite(a);
        least = std::min(least, a);
      }
      const double limit = finite ? least + rel * (xn + y_norm_max) + abs : std::numeric_limits<double>::infinity();
      nearest_output best{-1, std::numeric_limits<double>::infinity()};
      for (index_t j = 0; j < k; ++j) {
        if (!(approx[static_cast<std::size_t>(j)] <= limit)) continue;  // also skips NaN when finite
        const double e = squared_distance(x.row(i), y.row(j), d);
        if (best.index < 0 || e < best.distance) best = {j, e};
      }
      out[static_cast<std::size_t>(i)] = {best.index, std::sqrt(best.distance)};
    }
  }
}

/// The nearest output of every original.
inline std::vector<nearest_output> nearest_all(const token_matrix& x, const token_matrix& y) {
  std::vector<nearest_output> out(static_cast<std::size_t>(x.rows()));
  nearest_rows(x, y, nullptr, x.rows(), out);
  return out;
}

/// a / b for the relative metrics: 0 when both are 0, +inf when only b is.
inline double ratio(double a, double b) noexcept {
  if (b == 0.0) return a == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return a / b;
}

/// The checks of X: a negative extent (`shape_mismatch`), no rows or columns (`empty_input`),
/// no data (`null_pointer`).
inline status check_originals(const view<const float, 2>& x) noexcept {
  if (x.extent(0) < 0 || x.extent(1) < 0) return status::shape_mismatch;
  if (x.extent(0) == 0 || x.extent(1) == 0) return status::empty_input;
  return x.data_handle() != nullptr ? status::ok : status::null_pointer;
}

/// The checks of a (rows, D) view read beside X (Y, Q): a negative row count or another width
/// (`shape_mismatch`), no rows (`empty_input`), no data (`null_pointer`).
inline status check_beside(const view<const float, 2>& v, index_t dim) noexcept {
  if (v.extent(0) < 0 || v.extent(1) != dim) return status::shape_mismatch;
  if (v.extent(0) == 0) return status::empty_input;
  return v.data_handle() != nullptr ? status::ok : status::null_pointer;
}

/// The checks of `assign` against N originals and K outputs, when given.
inline status check_assign(const view<const std::int64_t, 1>& assign, index_t n, index_t k) noexcept {
  if (!tokred::detail::requested(assign)) return status::ok;
  if (status s = tokred::detail::check_view(assign, {n}); s != status::ok) return s;
  for (index_t i = 0; i < n; ++i)
    if (assign(i) < -1 || assign(i) >= k) return status::index_out_of_range;
  return status::ok;
}

/// The checks of `sizes` against K outputs, when given: each a finite number > 0.
inline status check_sizes(const view<const float, 1>& sizes, index_t k) noexcept {
  if (!tokred::detail::requested(sizes)) return status::ok;
  if (status s = tokred::detail::check_view(sizes, {k}); s != status::ok) return s;
  for (index_t j = 0; j < k; ++j)
    if (!(sizes(j) > 0.0f) || !std::isfinite(sizes(j))) return status::invalid_parameter;
  return status::ok;
}

/// Reconstruction from the nearest outputs of the originals that need one (`nearest[i]` is read
/// only where assign is absent or −1).
inline reconstruction_stats reconstruct(const token_matrix& x, const token_matrix& y,
                                        const view<const std::int64_t, 1>& assign,
                                        const std::vector<nearest_output>& nearest) {
  const bool given = tokred::detail::requested(assign);
  const index_t n = x.rows(), d = x.cols();
  double error = 0.0, cosines = 0.0;
  index_t from_nearest = 0;
  for (index_t i = 0; i < n; ++i) {
    const bool assigned = given && assign(i) >= 0;
    const index_t j = assigned ? static_cast<index_t>(assign(i)) : nearest[static_cast<std::size_t>(i)].index;
    from_nearest += assigned ? 0 : 1;
    error += squared_distance(x.row(i), y.row(j), d);
    const double xn = x.squared_norm(i), yn = y.squared_norm(j);
    double c = 0.0;
    if (xn == 0.0 && yn == 0.0) c = 1.0;
    else if (xn != 0.0 && yn != 0.0)
      c = std::clamp(tokred::detail::dot_double(x.row(i), 1, y.row(j), 1, d) / std::sqrt(xn * yn), -1.0, 1.0);
    cosines += c;
  }
  double total = 0.0;
  for (index_t i = 0; i < n; ++i) total += x.squared_norm(i);
  return {ratio(std::sqrt(error), std::sqrt(total)), cosines / static_cast<double>(n), from_nearest};
}

/// Coverage from the nearest output of every original.
inline coverage_stats cover(const token_matrix& x, const std::vector<nearest_output>& nearest) {
  coverage_stats c{-1.0, 0.0, -1, -1};
  double norms = 0.0;
  for (index_t i = 0; i < x.rows(); ++i) {
    const nearest_output& o = nearest[static_cast<std::size_t>(i)];
    if (o.distance > c.max_distance) c = {o.distance, 0.0, i, o.index};
    norms += std::sqrt(x.squared_norm(i));
  }
  c.relative = ratio(c.max_distance, norms / static_cast<double>(x.rows()));
  return c;
}

/// softmax(Q·Vᵀ/√D + bias)·V for every query row, in double: (M, D) row-major.
///
/// The logits come from a float GEMM; each row's softmax subtracts its maximum and runs in
/// double (exp, the normaliser Σ w), the weights w ∈ [0, 1] go back to float for the second
/// GEMM, and each output row is divided by its normaliser in double. The same code runs for X
/// and for Y, so identical inputs give identical bits.
inline std::vector<double> attend(const token_matrix& q, const token_matrix& v, const std::vector<float>& bias) {
  const index_t m = q.rows(), k = v.rows(), d = v.cols();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  row_matrix w(m, k);  // (M, K): logits, then weights
  w.noalias() = q.map() * v.map().transpose();
  std::vector<double> logits(static_cast<std::size_t>(k)), normaliser(static_cast<std::size_t>(m));
  for (index_t r = 0; r < m; ++r) {
    double top = -std::numeric_limits<double>::infinity();
    for (index_t j = 0; j < k; ++j) {
      const double b = bias.empty() ? 0.0 : static_cast<double>(bias[static_cast<std::size_t>(j)]);
      const double t = scale * static_cast<double>(w(r, j)) + b;
      logits[static_cast<std::size_t>(j)] = t;
      top = std::max(top, t);
    }
    double z = 0.0;
    for (index_t j = 0; j < k; ++j) {
      const double e = std::exp(logits[static_cast<std::size_t>(j)] - top);
      z += e;
      w(r, j) = static_cast<float>(e);
    }
    normaliser[static_cast<std::size_t>(r)] = z;
  }
  row_matrix a(m, d);  // (M, D)
  a.noalias() = w * v.map();
  std::vector<double> out(static_cast<std::size_t>(m * d));
  for (index_t r = 0; r < m; ++r) {
    const double z = normaliser[static_cast<std::size_t>(r)];
    for (index_t c = 0; c < d; ++c) out[static_cast<std::size_t>(r * d + c)] = static_cast<double>(a(r, c)) / z;
  }
  return out;
}

constexpr double nan = std::numeric_limits<double>::quiet_NaN();

}  // namespace detail

/// What every reduction of one item is compared with, computed once: X's rows and their norms,
/// the queries, and the full attention A = softmax(σ·Q·Xᵀ)·X (see `attention_error`). A does
/// not depend on the reduction and costs 2·M·N·D of the metric's 2·M·(N + K)·D multiply-adds
/// (80 % at K = N/4), so the bench prepares one reference per item and measures every method and
/// budget against it with `token_fidelity(item, y, out)`.
///
/// X and Q are read in place when their rows are unit-stride runs: keep them alive and unchanged
/// while the reference is in use (other layouts are copied).
class item_reference {
 public:
  /// Prepares the reference of X with queries Q (both (·, D)). Checks, first failure returned,
  /// the reference left empty on failure: X (a negative extent: `shape_mismatch`; no rows or
  /// columns: `empty_input`; no data: `null_pointer`), then Q (a negative row count or a width
  /// other than D: `shape_mismatch`; no rows: `empty_input`; no data: `null_pointer`).
  status prepare(const view<const float, 2>& x,         // (N, D)
                 const view<const float, 2>& queries) {  // (M, D)
    *this = item_reference{};
    if (status s = detail::check_originals(x); s != status::ok) return s;
    if (status s = detail::check_beside(queries, x.extent(1)); s != status::ok) return s;
    x_ = detail::token_matrix(x);
    q_ = detail::token_matrix(queries);
    if (x_.finite() && q_.finite()) attention_ = detail::attend(q_, x_, {});
    return status::ok;
  }

  bool ready() const noexcept { return x_.rows() > 0; }
  index_t tokens() const noexcept { return x_.rows(); }   ///< N
  index_t dim() const noexcept { return x_.cols(); }      ///< D
  index_t queries() const noexcept { return q_.rows(); }  ///< M

  /// X's rows; Q's rows; A, (M, D) row-major, empty when X or Q holds a non-finite value.
  const detail::token_matrix& x() const noexcept { return x_; }
  const detail::token_matrix& q() const noexcept { return q_; }
  const std::vector<double>& attention() const noexcept { return attention_; }

 private:
  detail::token_matrix x_, q_;
  std::vector<double> attention_;
};

namespace detail {

/// The attention error of y against a prepared item (see `attention_error`); NaN when A is
/// missing (a non-finite X or Q).
inline double attention_gap(const item_reference& item, const token_matrix& y, const view<const float, 1>& sizes) {
  const std::vector<double>& full = item.attention();
  if (full.empty()) return nan;
  std::vector<float> bias;
  if (tokred::detail::requested(sizes)) {
    bias.resize(static_cast<std::size_t>(y.rows()));
    (void)log_size_bias(sizes, make_view(bias.data(), y.rows()));  // sizes were checked
  }
  const std::vector<double> reduced = attend(item.q(), y, bias);
  double gap = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < full.size(); ++i) {
    gap += (full[i] - reduced[i]) * (full[i] - reduced[i]);
    norm += full[i] * full[i];
  }
  return ratio(std::sqrt(gap), std::sqrt(norm));
}

/// The checks of a reduction against an item of N tokens of D: Y, assign, sizes.
inline status check_reduction(const reduced_tokens& y, index_t n, index_t d) noexcept {
  if (status s = check_beside(y.tokens, d); s != status::ok) return s;
  if (status s = check_assign(y.assign, n, y.tokens.extent(0)); s != status::ok) return s;
  return check_sizes(y.sizes, y.tokens.extent(0));
}

/// The three metrics of a checked reduction against a prepared item.
inline fidelity_stats measure_tokens(const item_reference& item, const reduced_tokens& y) {
  const token_matrix ym(y.tokens);
  if (!item.x().finite() || !ym.finite())
    return {{nan, nan, 0}, nan, {nan, nan, -1, -1}};
  const std::vector<nearest_output> nearest = nearest_all(item.x(), ym);
  return {reconstruct(item.x(), ym, y.assign, nearest), attention_gap(item, ym, y.sizes), cover(item.x(), nearest)};
}

}  // namespace detail

/// The nearest output token of every original (see nearest_output): `out` resized to N.
/// Exact: a float GEMM narrows the candidates and the candidates are measured in double (see
/// detail::nearest_rows). Cost: N·K·D multiply-adds in Eigen's GEMM, plus N·D per candidate.
///
/// Checks, first failure returned, `out` written only on `ok`: X (a negative extent:
/// `shape_mismatch`; no rows or columns: `empty_input`; no data: `null_pointer`), then Y (a
/// negative row count or a width other than D: `shape_mismatch`; no rows: `empty_input`; no
/// data: `null_pointer`). A non-finite value in X or Y gives every `index` −1 and `distance` NaN.
inline status nearest_outputs(const view<const float, 2>& x,  // (N, D)
                              const view<const float, 2>& y,  // (K, D)
                              std::vector<nearest_output>& out) {
  if (status s = detail::check_originals(x); s != status::ok) return s;
  if (status s = detail::check_beside(y, x.extent(1)); s != status::ok) return s;
  const detail::token_matrix xm(x), ym(y);
  if (!xm.finite() || !ym.finite()) {
    out.assign(static_cast<std::size_t>(x.extent(0)), nearest_output{-1, detail::nan});
    return status::ok;
  }
  out = detail::nearest_all(xm, ym);
  return status::ok;
}

/// Reconstruction error of `y` against the originals `x` (see reconstruction_stats). The
/// nearest search (N_r·K·D multiply-adds, N_r the originals without an output) runs only for the
/// originals assign leaves at −1, or all of them when assign is not given.
///
/// Checks, first failure returned, `out` written only on `ok`: X and Y as in `nearest_outputs`,
/// then assign when given (extent other than N: `shape_mismatch`; no data: `null_pointer`; a
/// value below −1 or ≥ K: `index_out_of_range`). A non-finite value in X or Y gives NaN metrics
/// and `nearest` = 0.
inline status reconstruction_error(const view<const float, 2>& x,  // (N, D)
                                   const reduced_tokens& y, reconstruction_stats& out) {
  if (status s = detail::check_originals(x); s != status::ok) return s;
  if (status s = detail::check_beside(y.tokens, x.extent(1)); s != status::ok) return s;
  if (status s = detail::check_assign(y.assign, x.extent(0), y.tokens.extent(0)); s != status::ok) return s;
  const detail::token_matrix xm(x), ym(y.tokens);
  if (!xm.finite() || !ym.finite()) {
    out = {detail::nan, detail::nan, 0};
    return status::ok;
  }
  std::vector<index_t> rows;  // the originals without an output
  if (tokred::detail::requested(y.assign))
    for (index_t i = 0; i < xm.rows(); ++i)
      if (y.assign(i) < 0) rows.push_back(i);
  std::vector<nearest_output> nearest(static_cast<std::size_t>(xm.rows()));
  if (!tokred::detail::requested(y.assign)) nearest = detail::nearest_all(xm, ym);
  else if (!rows.empty()) detail::nearest_rows(xm, ym, rows.data(), static_cast<index_t>(rows.size()), nearest);
  out = detail::reconstruct(xm, ym, y.assign, nearest);
  return status::ok;
}

/// Attention fidelity: with σ = 1/√D,
///
///   A = softmax(σ·Q·Xᵀ)·X,   Â = softmax(σ·Q·Yᵀ + log s)·Y     (row-wise softmax, (M, D))
///   out = ‖A − Â‖_F / ‖A‖_F   (0 when both are 0, +inf when only ‖A‖_F is)
///
/// `log s` is ToMe's proportional attention (Bolya et al., arXiv:2210.09461; tokred::log_size_bias):
/// an output standing for s originals weighs as s copies of it would, so a Y that merges exact
/// duplicates of X into one row of size = their count gives Â = A exactly. Without sizes every
/// output has s = 1 (bias 0); Y = X with sizes 1 gives exactly 0.
///
/// Numerics: the four products (Q·Xᵀ, P·X, Q·Yᵀ, P̂·Y) are float GEMMs; every softmax subtracts
/// its row's maximum and sums in double; the norms are in double. Logits that overflow float
/// (|q·x| > 3.4·10³⁸) give NaN. Cost: 2·M·(N + K)·D multiply-adds (2·M·K·D with an
/// item_reference, through `token_fidelity`).
///
/// Checks, first failure returned, `out` written only on `ok`: X and Y as in `nearest_outputs`,
/// sizes when given (extent other than K: `shape_mismatch`; no data: `null_pointer`; a value
/// that is not finite and > 0: `invalid_parameter`), then Q (as Y). A non-finite value in X, Y
/// or Q gives NaN.
inline status attention_error(const view<const float, 2>& x,  // (N, D)
                              const reduced_tokens& y,
                              const view<const float, 2>& queries,  // (M, D)
                              double& out) {
  if (status s = detail::check_originals(x); s != status::ok) return s;
  if (status s = detail::check_beside(y.tokens, x.extent(1)); s != status::ok) return s;
  if (status s = detail::check_sizes(y.sizes, y.tokens.extent(0)); s != status::ok) return s;
  if (status s = detail::check_beside(queries, x.extent(1)); s != status::ok) return s;
  item_reference item;
  (void)item.prepare(x, queries);  // checked above
  const detail::token_matrix ym(y.tokens);
  out = ym.finite() ? detail::attention_gap(item, ym, y.sizes) : detail::nan;
  return status::ok;
}

/// Coverage of the originals by `y` (see coverage_stats). Cost: the nearest search of every
/// original, N·K·D multiply-adds.
///
/// Checks, first failure returned, `out` written only on `ok`: X and Y as in
/// `nearest_outputs`. A non-finite value in X or Y gives NaN distances and indices −1.
inline status coverage(const view<const float, 2>& x,  // (N, D)
                       const view<const float, 2>& y,  // (K, D)
                       coverage_stats& out) {
  if (status s = detail::check_originals(x); s != status::ok) return s;
  if (status s = detail::check_beside(y, x.extent(1)); s != status::ok) return s;
  const detail::token_matrix xm(x), ym(y);
  if (!xm.finite() || !ym.finite()) {
    out = {detail::nan, detail::nan, -1, -1};
    return status::ok;
  }
  out = detail::cover(xm, detail::nearest_all(xm, ym));
  return status::ok;
}

/// The three token metrics of `y` against a prepared item: exactly the results of
/// `reconstruction_error`, `attention_error` and `coverage`, with one nearest search of every
/// original shared by the first and the last, and the item's full attention reused. Cost:
/// N·K·D + 2·M·K·D multiply-adds. What the bench runs for every method and budget.
///
/// Checks, first failure returned, `out` written only on `ok`: the item (not prepared:
/// `empty_input`), then Y (a negative row count or a width other than D: `shape_mismatch`; no
/// rows: `empty_input`; no data: `null_pointer`), assign and sizes as in `reconstruction_error`
/// and `attention_error`. A non-finite value in X or Y gives the three functions' non-finite
/// results; one in Q only a NaN attention error.
inline status token_fidelity(const item_reference& item, const reduced_tokens& y, fidelity_stats& out) {
  if (!item.ready()) return status::empty_input;
  if (status s = detail::check_reduction(y, item.tokens(), item.dim()); s != status::ok) return s;
  out = detail::measure_tokens(item, y);
  return status::ok;
}

/// `token_fidelity` for one reduction without a prepared item (it prepares one). Checks, first
/// failure returned, `out` written only on `ok`: X, Y, assign, sizes, then Q, as in the three
/// functions.
inline status token_fidelity(const view<const float, 2>& x,  // (N, D)
                             const reduced_tokens& y,
                             const view<const float, 2>& queries,  // (M, D)
                             fidelity_stats& out) {
  if (status s = detail::check_originals(x); s != status::ok) return s;
  if (status s = detail::check_reduction(y, x.extent(0), x.extent(1)); s != status::ok) return s;
  if (status s = detail::check_beside(queries, x.extent(1)); s != status::ok) return s;
  item_reference item;
  (void)item.prepare(x, queries);  // checked above
  out = detail::measure_tokens(item, y);
  return status::ok;
}

/// The two sets of originals the bench uses as queries when the user gives none.
enum class query_set {
  metric,   ///< the attention metric's and the KV cache's queries
  ranking,  ///< the queries of the methods that rank by a query (fastv, relevance, cdpruner)
};

/// The rows of a default query set: with M = min(⌊N/2⌋, limit), the metric set holds
/// ⌊2i·N/(2M)⌋ and the ranking set ⌊(2i + 1)·N/(2M)⌋, i = 0 … M − 1: 2M evenly spaced originals
/// dealt out alternately, distinct because the step N/(2M) is at least 1. A method ranked by
/// queries is thus never scored on the rows it ranked with, as a prompt is not the image it
/// selects from. Chosen without randomness so every run and every method sees the same rows.
/// One token (N = 1) is both sets' only row; empty when N ≤ 0 or limit ≤ 0.
inline std::vector<index_t> default_query_rows(index_t tokens, query_set set, index_t limit = default_query_limit) {
  if (tokens <= 0 || limit <= 0) return {};
  if (tokens == 1) return {0};
  const index_t m = std::min(tokens / 2, limit);
  const index_t first = set == query_set::metric ? 0 : 1;
  std::vector<index_t> rows(static_cast<std::size_t>(m));
  for (index_t i = 0; i < m; ++i) rows[static_cast<std::size_t>(i)] = (2 * i + first) * tokens / (2 * m);
  return rows;
}

/// The default queries of an item: its originals at `default_query_rows(N, set, limit)`, as an
/// (M, D) row-major array. Attention among the item's own tokens (self-attention of the encoder
/// output) is what a reduction should preserve when no text query is given.
inline std::vector<float> default_queries(const view<const float, 2>& x,  // (N, D)
                                          query_set set, index_t limit = default_query_limit) {
  const index_t d = x.extent(1);
  const std::vector<index_t> rows = default_query_rows(x.extent(0), set, limit);
  std::vector<float> q(rows.size() * static_cast<std::size_t>(std::max<index_t>(d, 0)));
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (index_t c = 0; c < d; ++c) q[r * static_cast<std::size_t>(d) + static_cast<std::size_t>(c)] = x(rows[r], c);
  return q;
}

// --- KV-cache fidelity --------------------------------------------------------------------------

/// The kind of cache a scheme writes.
enum class kv_kind {
  f32,    ///< the tokens as they are: the reference, and the round trip's floor (two copies)
  f16,    ///< an fp16 cache (llama.cpp's default `-ctk f16`): round to nearest even and back
  ggml,   ///< llama.cpp's block types, byte-compatible (tokred::ggml_quantize / ggml_dequantize)
  kivi,   ///< KIVI's cache after a prefill (tokred::kivi_append / kivi_read)
  vidkv,  ///< VidKV's cache after a prefill (tokred::vidkv_append / vidkv_read)
};

/// One KV scheme of the bench: a name, the kind of cache, and that kind's configuration.
///
/// KIVI and VidKV run on an fp16 cache, as their PyTorch code runs in the model's fp16: the
/// tokens are rounded to fp16 once (the keys and values a fp16 model would hold), then appended
/// to an empty cache as one prefill of all N tokens and read back as attention would see them.
/// So their results include what those methods keep in full precision after a prefill:
/// KIVI the last N mod R keys and the last min(N, R) values (R = 128), VidKV the last N mod G
/// keys and values (G = 32); their scales and zero points are fp16.
struct kv_codec {
  const char* name = "";
  kv_kind kind = kv_kind::f32;
  ggml_type block = ggml_type::q8_0;  ///< kind ggml
  tokred::kivi kivi{};                ///< kind kivi
  tokred::vidkv vidkv{};              ///< kind vidkv
};

/// The schemes `tokred bench` runs, in this order: the fp32 and fp16 caches; llama.cpp's q8_0,
/// q5_1, q5_0, q4_1, q4_0 and iq4_nl blocks; KIVI at 4 and 2 bits (keys per channel, values per
/// token, groups of 32, residual 128: KIVI's defaults); VidKV with 2-bit keys and values, and
/// at its paper setting, 1.5-bit mixed-precision keys and 1.58-bit (ternary) values (groups of
/// 32, residual 128).
inline constexpr kv_codec kv_codecs[] = {
    {"f32", kv_kind::f32},
    {"f16", kv_kind::f16},
    {"q8_0", kv_kind::ggml, ggml_type::q8_0},
    {"q5_1", kv_kind::ggml, ggml_type::q5_1},
    {"q5_0", kv_kind::ggml, ggml_type::q5_0},
    {"q4_1", kv_kind::ggml, ggml_type::q4_1},
    {"q4_0", kv_kind::ggml, ggml_type::q4_0},
    {"iq4_nl", kv_kind::ggml, ggml_type::iq4_nl},
    {"kivi-4", kv_kind::kivi, ggml_type::q8_0, tokred::kivi{4, 4, 32, 128}},
    {"kivi-2", kv_kind::kivi, ggml_type::q8_0, tokred::kivi{2, 2, 32, 128}},
    {"vidkv-2", kv_kind::vidkv, ggml_type::q8_0, {}, tokred::vidkv{2.0, 2.0, true, 32, 128}},
    {"vidkv-1.5", kv_kind::vidkv, ggml_type::q8_0, {}, tokred::vidkv{1.5, 1.58, true, 32, 128}},
};

/// Stored bits per value of a scheme's cache for an item: everything it writes (codes, scales,
/// zero points, VidKV's channel order, the tokens kept in full precision) over N·D values,
/// separately for the keys and the values. Depends on N for KIVI and VidKV (their full-precision
/// tails); for the ggml types it is the block size: q8_0 8.5, q5_1 6, q5_0 5.5, q4_1 5, q4_0 and
/// iq4_nl 4.5.
struct kv_bits {
  double keys = 0.0;
  double values = 0.0;
  double mean() const noexcept { return 0.5 * (keys + values); }
};

/// One packed uniform part of a cache (tokred::uniform_packed<f16>) and its extents.
struct kv_packed_storage {
  std::vector<std::uint32_t> codes;
  std::vector<f16> scale, zero;
  kv_extents code_extents, param_extents;
  bool has_zero = false;  ///< the asymmetric scheme's zero points (the others store none)

  void size_for(const uniform_format& f, const kv_problem& p) {
    code_extents = uniform_code_extents(f, p);
    param_extents = uniform_param_extents(f, p);
    codes.assign(static_cast<std::size_t>(code_extents.heads * code_extents.rows * code_extents.cols), 0u);
    const auto params = static_cast<std::size_t>(param_extents.heads * param_extents.rows * param_extents.cols);
    scale.assign(params, f16{});
    has_zero = f.scheme == tokred::kv_scheme::asymmetric;
    zero.assign(has_zero ? params : 0, f16{});
  }
  uniform_packed<f16> get() noexcept {
    const kv_extents& c = code_extents;
    const kv_extents& p = param_extents;
    return {view<std::uint32_t, 3>(codes.data(), {c.heads, c.rows, c.cols}),
            view<f16, 3>(scale.data(), {p.heads, p.rows, p.cols}),
            has_zero ? view<f16, 3>(zero.data(), {p.heads, p.rows, p.cols}) : view<f16, 3>{}};
  }
};

/// Everything one scheme's round trip on an (N, D) item writes, sized by `kv_prepare`:
/// the packed cache and the keys and values read back from it. Which members a scheme uses
/// depends on its kind; the others stay empty.
struct kv_buffers {
  kv_codec codec;               ///< what the buffers were sized for
  index_t tokens = 0, dim = 0;  ///< N, D
  kv_bits bits;                 ///< stored bits per value (kv_bits)
  std::string skipped;          ///< why kv_prepare refused the scheme; empty when it is ready

  std::vector<float> keys, values;                         // (N, D) each: what attention reads back
  std::vector<f16> half_keys, half_values;                 // (N, D): f16's cache; KIVI's, VidKV's fp16 tokens (keys)
  std::vector<std::uint8_t> key_blocks, value_blocks;      // ggml: (N, row_bytes) each
  kv_packed_storage packed_keys, packed_values, spectral;  // KIVI, VidKV (spectral: VidKV's easy channels)
  std::vector<std::int64_t> channels;                      // VidKV: (D,)
  std::vector<f16> key_residual, value_residual;           // KIVI, VidKV: (R, D) each
  index_t capacity = 0;                                    // KIVI, VidKV: packed tokens the storage holds
  std::vector<std::byte> scratch;                          // VidKV's workspace
  bool staged = false;                                     // KIVI, VidKV: kv_stage filled half_keys
};

/// KV fidelity of one scheme on one item: the element error of the keys and the values read
/// back (tokred::kv_error; keys and values are the same tokens, so for the kinds that treat both
/// alike the two agree), and the KL divergence of attention over the keys read back (see
/// `kv_measure`).
struct kv_fidelity {
  kv_error_stats keys;
  kv_error_stats values;
  attention_kl_stats attention;
};

namespace detail {

/// fp16 scales and zero points: KIVI's and VidKV's caches are fp16 here.
inline constexpr double kv_param_bits = 16.0;

/// Bits a packed uniform part writes for `p`: code words, scales, zero points (asymmetric).
inline double packed_bits(const uniform_format& f, const kv_problem& p) noexcept {
  const kv_extents c = uniform_code_extents(f, p), s = uniform_param_extents(f, p);
  const double per_group = f.scheme == tokred::kv_scheme::asymmetric ? 2.0 : 1.0;  // scale (and zero point)
  const double params = static_cast<double>(s.heads * s.rows * s.cols) * per_group;
  return 32.0 * static_cast<double>(c.heads * c.rows * c.cols) + kv_param_bits * params;
}

/// X as a one-head (1, N, D) cache.
inline view<const float, 3> as_cache(const view<const float, 2>& x) noexcept {
  return {x.data_handle(), {1, x.extent(0), x.extent(1)}, {x.extent(0) * x.stride(0), x.stride(0), x.stride(1)}};
}

template <class T>
view<T, 3> cache_of(std::vector<T>& v, index_t tokens, index_t cols) noexcept {
  return view<T, 3>(v.data(), {1, tokens, cols});
}

inline status prepare_ggml(kv_buffers& b) {
  const kv_problem p{1, b.tokens, b.dim};
  if (status s = can_implement(ggml_quantize{b.codec.block}, p); s != status::ok) {
    b.skipped = std::string(b.codec.name) + ": ggml blocks hold 32 values of a row, and D = " +
                std::to_string(b.dim) + " is not a multiple of 32";
    return s;
  }
  const auto bytes = static_cast<std::size_t>(b.tokens * ggml_row_bytes(b.codec.block, b.dim));
  b.key_blocks.assign(bytes, 0);
  b.value_blocks.assign(bytes, 0);
  const double per_value = 8.0 * static_cast<double>(ggml_block_bytes(b.codec.block)) / ggml_block_elems;
  b.bits = {per_value, per_value};
  return status::ok;
}

inline status prepare_kivi(kv_buffers& b) {
  const tokred::kivi& k = b.codec.kivi;
  const kivi_counts at = kivi_counts_at(k, b.tokens);
  // The smallest capacity (a multiple of the group) that holds N tokens: the packed keys and values.
  const index_t packed = std::max(at.keys_packed, at.values_packed);
  b.capacity = (packed + k.group - 1) / k.group * k.group;
  const kv_problem storage{1, b.capacity, b.dim};
  if (status s = can_implement(kivi_append{k}, storage); s != status::ok) {
    b.skipped = std::string(b.codec.name) + ": KIVI quantizes values per token in groups of " +
                std::to_string(k.group) + " channels, and D = " + std::to_string(b.dim) + " is not a multiple of it";
    return s;
  }
  b.packed_keys.size_for(kivi_key_format(k), storage);
  b.packed_values.size_for(kivi_value_format(k), storage);
  b.key_residual.assign(static_cast<std::size_t>(k.residual * b.dim), f16{});
  b.value_residual.assign(b.key_residual.size(), f16{});
  b.half_keys.assign(static_cast<std::size_t>(b.tokens * b.dim), f16{});
  const double full = 16.0 * static_cast<double>(b.dim), values = static_cast<double>(b.tokens * b.dim);
  const double key_bits = packed_bits(kivi_key_format(k), {1, at.keys_packed, b.dim}) +
                          full * static_cast<double>(at.keys_residual);
  const double value_bits = packed_bits(kivi_value_format(k), {1, at.values_packed, b.dim}) +
                            full * static_cast<double>(at.values_residual);
  b.bits = {key_bits / values, value_bits / values};
  return status::ok;
}

inline status prepare_vidkv(kv_buffers& b) {
  const tokred::vidkv& v = b.codec.vidkv;
  b.capacity = b.tokens - b.tokens % v.group;  // a prefill packs N − N mod G tokens
  const kv_problem storage{1, b.capacity, b.dim};
  if (status s = can_implement(vidkv_append{v}, storage); s != status::ok) {
    b.skipped = std::string(b.codec.name) + ": VidKV's mixed-precision keys put ⌊D·(bits − 1)⌋ channels " +
                "at 2 bits, 32 when that is 0, and D = " + std::to_string(b.dim) + " has fewer";
    return s;
  }
  const vidkv_key_layout l = vidkv_key_layout_of(vidkv_keys_of(v), b.dim);
  b.packed_keys.size_for(l.difficult_format, {1, b.capacity, l.difficult});
  b.spectral.size_for(l.spectral_format, {1, b.capacity, 2 * l.easy});
  b.packed_values.size_for(vidkv_value_format(v), storage);
  b.channels.assign(static_cast<std::size_t>(b.dim), 0);
  b.key_residual.assign(static_cast<std::size_t>(v.residual * b.dim), f16{});
  b.value_residual.assign(b.key_residual.size(), f16{});
  b.half_keys.assign(static_cast<std::size_t>(b.tokens * b.dim), f16{});
  b.scratch.assign(std::max(workspace_bytes(cpu<>{}, vidkv_append{v}, storage),
                            workspace_bytes(cpu<>{}, vidkv_read{v}, storage)),
                   std::byte{0});
  const index_t kept = b.tokens - b.capacity;  // in full precision
  const double full = 16.0 * static_cast<double>(kept * b.dim), values = static_cast<double>(b.tokens * b.dim);
  const double order = b.capacity > 0 ? 64.0 * static_cast<double>(b.dim) : 0.0;
  b.bits = {(packed_bits(l.difficult_format, {1, b.capacity, l.difficult}) +
             packed_bits(l.spectral_format, {1, b.capacity, 2 * l.easy}) + order + full) / values,
            (packed_bits(vidkv_value_format(v), storage) + full) / values};
  return status::ok;
}

/// Rounds X to fp16 (the fp16 tokens KIVI and VidKV caches receive, or the f16 cache itself).
inline void narrow(const view<const float, 2>& x, std::vector<f16>& out) noexcept {
  const index_t d = x.extent(1);
  for (index_t t = 0; t < x.extent(0); ++t)
    tokred::detail::copy_row<compile_time_arch>(&x(t, 0), x.stride(1), out.data() + t * d, 1, d);
}

inline void widen(const std::vector<f16>& in, std::vector<float>& out) noexcept {
  tokred::detail::convert_contiguous<compile_time_arch>(in.data(), out.data(), static_cast<index_t>(in.size()));
}

inline status round_trip_ggml(const view<const float, 2>& x, kv_buffers& b) noexcept {
  const ggml_type t = b.codec.block;
  const index_t n = b.tokens, row = ggml_row_bytes(t, b.dim);
  const kv_inputs<float> in{as_cache(x)};
  status s = status::ok;
  for (int side = 0; side < 2 && s == status::ok; ++side) {  // keys, then values
    std::vector<std::uint8_t>& blocks = side == 0 ? b.key_blocks : b.value_blocks;
    std::vector<float>& back = side == 0 ? b.keys : b.values;
    s = apply(cpu<>{}, ggml_quantize{t}, in, kv_block_outputs<>{cache_of(blocks, n, row)});
    if (s == status::ok)
      s = apply(cpu<>{}, ggml_dequantize{t}, kv_block_inputs<>{cache_of(blocks, n, row)},
                kv_outputs<float>{cache_of(back, n, b.dim)});
  }
  return s;
}

/// KIVI's round trip of the fp16 tokens `kv_stage` left in b.half_keys.
inline status round_trip_kivi(kv_buffers& b) noexcept {
  const tokred::kivi& k = b.codec.kivi;
  const index_t n = b.tokens, d = b.dim;
  const kivi_cache<f16> cache{b.packed_keys.get(), cache_of(b.key_residual, k.residual, d), b.packed_values.get(),
                              cache_of(b.value_residual, k.residual, d)};
  const view<const f16, 3> tokens = cache_of(b.half_keys, n, d);
  status s = apply(cpu<>{}, kivi_append{k}, kivi_append_inputs<f16>{tokens, tokens, 0}, cache);
  if (s == status::ok)
    s = apply(cpu<>{}, kivi_read{k}, kivi_read_inputs<f16>{read_only(cache), n},
              kivi_read_outputs<float>{cache_of(b.keys, n, d), cache_of(b.values, n, d)});
  return s;
}

/// VidKV's round trip of the fp16 tokens `kv_stage` left in b.half_keys.
inline status round_trip_vidkv(kv_buffers& b) noexcept {
  const tokred::vidkv& v = b.codec.vidkv;
  const index_t n = b.tokens, d = b.dim;
  const vidkv_cache<f16> cache{{view<std::int64_t, 1>(b.channels.data(), {d}), b.packed_keys.get(), b.spectral.get()},
                               cache_of(b.key_residual, v.residual, d),
                               b.packed_values.get(),
                               cache_of(b.value_residual, v.residual, d),
                               {},
                               {}};
  const workspace ws{b.scratch.data(), b.scratch.size()};
  const view<const f16, 3> tokens = cache_of(b.half_keys, n, d);
  status s = apply(cpu<>{}, vidkv_append{v}, vidkv_append_inputs<f16>{tokens, tokens, {}, {}, {}}, cache, ws);
  // The next step's read with no incoming token: the packed tokens dequantized, then the residual.
  if (s == status::ok)
    s = apply(cpu<>{}, vidkv_read{v}, vidkv_read_inputs<f16>{read_only(cache), vidkv_after(v, {}, n), {}, {}},
              vidkv_read_outputs<float>{cache_of(b.keys, n, d), cache_of(b.values, n, d)}, ws);
  return s;
}

/// KL(P‖P̂) of one attention row from its logits d_t = q·k_t and their changes δ_t = q·(k_t − k̂_t),
/// so d̂_t = d_t − δ_t: the formula of tokred::attention_kl (see <tokred/cpu/kv_error.hpp>), in
/// double, clamped at 0; NaN for a non-finite logit.
inline double row_kl(const float* logits, const float* change, index_t n, double sigma) noexcept {
  double m = -std::numeric_limits<double>::infinity(), m_hat = m;
  for (index_t t = 0; t < n; ++t) {
    const double d = logits[t], d_hat = d - static_cast<double>(change[t]);
    if (!std::isfinite(d) || !std::isfinite(d_hat)) return nan;
    m = std::max(m, d);
    m_hat = std::max(m_hat, d_hat);
  }
  double z = 0.0, z_hat = 0.0, weighted = 0.0;
  for (index_t t = 0; t < n; ++t) {
    const double d = logits[t], delta = change[t];
    const double w = std::exp(sigma * (d - m));
    z += w;
    z_hat += std::exp(sigma * (d - delta - m_hat));
    weighted += w * delta;
  }
  const double kl = sigma * weighted / z + sigma * (m_hat - m) + std::log(z_hat / z);
  return kl < 0.0 ? 0.0 : kl;
}

}  // namespace detail

/// Sizes `b` for running `codec` on items of N tokens of D channels, and sets `b.bits`.
///
/// Returns `ok`; `shape_mismatch` for a negative N or D; `empty_input` for N or D = 0; or
/// `invalid_parameter` when the scheme cannot run at this D, with the reason in `b.skipped`
/// (the bench skips the scheme and prints it): the ggml types need D a multiple of 32 (their
/// blocks are 32 consecutive values of a row), KIVI a multiple of its group (32: values are
/// quantized per token in groups of channels); VidKV runs at every D but D = 1 for 1.5-bit keys
/// (its groups run along tokens; ⌊D/2⌋ channels at 2 bits, 32 when that is 0).
inline status kv_prepare(const kv_codec& codec, index_t tokens, index_t dim, kv_buffers& b) {
  b = kv_buffers{};
  b.codec = codec;
  b.tokens = tokens;
  b.dim = dim;
  if (tokens < 0 || dim < 0) return status::shape_mismatch;
  if (tokens == 0 || dim == 0) return status::empty_input;
  status s = status::ok;
  switch (codec.kind) {
    case kv_kind::f32: b.bits = {32.0, 32.0}; break;
    case kv_kind::f16:
      b.half_keys.assign(static_cast<std::size_t>(tokens * dim), f16{});
      b.half_values.assign(b.half_keys.size(), f16{});
      b.bits = {16.0, 16.0};
      break;
    case kv_kind::ggml: s = detail::prepare_ggml(b); break;
    case kv_kind::kivi: s = detail::prepare_kivi(b); break;
    case kv_kind::vidkv: s = detail::prepare_vidkv(b); break;
  }
  if (s != status::ok) return s;
  b.keys.assign(static_cast<std::size_t>(tokens * dim), 0.0f);
  b.values.assign(b.keys.size(), 0.0f);
  return status::ok;
}

/// Hands X to the cache as the model would hold it, once per item and outside the timed call:
/// KIVI and VidKV receive fp16 tokens (their PyTorch code runs in the model's fp16), so X is
/// rounded to fp16 into `b.half_keys` here. The other kinds read X itself in
/// `kv_cache_round_trip` (the f16 cache's rounding is its write), so this only checks X.
/// Allocates nothing; `x` may have any strides. Returns `ok`, or the checks of `kv_round_trip`.
inline status kv_stage(const view<const float, 2>& x,  // (N, D)
                       kv_buffers& b) noexcept {
  if (!b.skipped.empty() || b.keys.empty()) return status::invalid_parameter;
  if (status s = tokred::detail::check_view(x, {b.tokens, b.dim}); s != status::ok) return s;
  if (b.codec.kind == kv_kind::kivi || b.codec.kind == kv_kind::vidkv) {
    detail::narrow(x, b.half_keys);
    b.staged = true;
  }
  return status::ok;
}

/// The call the bench times: writes the tokens as the keys and the values of a cache of
/// `b.codec` and reads both back into `b.keys` and `b.values` ((N, D) row-major each). Allocates
/// nothing and throws nothing; `x` may have any strides.
///
/// Per kind: f32 copies X twice; f16 rounds it to fp16 and back, once for the keys and once for
/// the values; ggml quantizes and dequantizes it twice (keys, values: the same work a cache
/// write and read does); KIVI and VidKV append the fp16 tokens `kv_stage` left (X must be the
/// one staged) to an empty cache as one prefill and read the cache back.
///
/// Returns `ok`; `invalid_parameter` when `b` was not prepared (kv_prepare failed or was not
/// called) or, for KIVI and VidKV, not staged; `shape_mismatch` when x is not (b.tokens, b.dim);
/// `null_pointer` for no data; or a status of the library call that failed (none is expected
/// once prepared).
inline status kv_cache_round_trip(const view<const float, 2>& x,  // (N, D)
                                  kv_buffers& b) noexcept {
  if (!b.skipped.empty() || b.keys.empty()) return status::invalid_parameter;
  if (status s = tokred::detail::check_view(x, {b.tokens, b.dim}); s != status::ok) return s;
  switch (b.codec.kind) {
    case kv_kind::f32:
      for (index_t t = 0; t < b.tokens; ++t) {
        tokred::detail::copy_row<compile_time_arch>(&x(t, 0), x.stride(1), b.keys.data() + t * b.dim, 1, b.dim);
        tokred::detail::copy_row<compile_time_arch>(&x(t, 0), x.stride(1), b.values.data() + t * b.dim, 1, b.dim);
      }
      return status::ok;
    case kv_kind::f16:
      detail::narrow(x, b.half_keys);
      detail::narrow(x, b.half_values);
      detail::widen(b.half_keys, b.keys);
      detail::widen(b.half_values, b.values);
      return status::ok;
    case kv_kind::ggml: return detail::round_trip_ggml(x, b);
    case kv_kind::kivi: return b.staged ? detail::round_trip_kivi(b) : status::invalid_parameter;
    case kv_kind::vidkv: return b.staged ? detail::round_trip_vidkv(b) : status::invalid_parameter;
  }
  return status::invalid_parameter;
}

/// `kv_stage` then `kv_cache_round_trip`: the whole write and read of X, for callers that do
/// not time it (KIVI and VidKV round X to fp16 once, then append and read). Allocates nothing
/// and throws nothing; `x` may have any strides.
///
/// Returns `ok`; `invalid_parameter` when `b` was not prepared (kv_prepare failed or was not
/// called); `shape_mismatch` when x is not (b.tokens, b.dim); `null_pointer` for no data; or a
/// status of the library call that failed (none is expected once prepared).
inline status kv_round_trip(const view<const float, 2>& x,  // (N, D)
                            kv_buffers& b) noexcept {
  if (status s = kv_stage(x, b); s != status::ok) return s;
  return kv_cache_round_trip(x, b);
}

/// KV fidelity of the keys and values `kv_round_trip` left in `b` against X (see kv_fidelity).
///
/// `keys`, `values`: tokred::kv_error of b.keys and b.values against X. `attention`: for each
/// query q (one head), KL(P‖P̂) with P = softmax(q·Xᵀ/√D), P̂ = softmax(q·K̂ᵀ/√D), its mean and
/// maximum over the M queries — the definition of tokred::attention_kl, computed from GEMMs:
/// attention_kl recomputes 4·M·N·D dot-product terms one at a time in double (2.6 s per scheme
/// at N = 4624, D = 768, M = 256), too slow for a table of schemes per item. Here the logits
/// d = Q·Xᵀ and their changes δ = Q·(X − K̂)ᵀ are float GEMMs and the KL of each row follows
/// attention_kl's formula in double from d and d̂ = d − δ. Taking δ from the difference keeps
/// it accurate however small the quantization error (identical keys give exactly 0); the float
/// logits move the result by about 10⁻⁶ of itself.
///
/// Checks, first failure returned, `out` written only on `ok`: `b` prepared and run
/// (`invalid_parameter`), X (`shape_mismatch` when not (b.tokens, b.dim), `null_pointer`), then Q
/// (`shape_mismatch` for a negative row count or a width other than D, `empty_input` for no
/// rows, `null_pointer`). Non-finite values: as kv_error and attention_kl count them.
inline status kv_measure(const view<const float, 2>& x,        // (N, D)
                         const view<const float, 2>& queries,  // (M, D)
                         const kv_buffers& b, kv_fidelity& out) {
  if (!b.skipped.empty() || b.keys.empty()) return status::invalid_parameter;
  if (status s = tokred::detail::check_view(x, {b.tokens, b.dim}); s != status::ok) return s;
  if (status s = detail::check_beside(queries, b.dim); s != status::ok) return s;
  const index_t n = b.tokens, d = b.dim, m = queries.extent(0);
  const view<const float, 3> reference = detail::as_cache(x);
  const view<const float, 3> keys(b.keys.data(), {1, n, d}), values(b.values.data(), {1, n, d});
  kv_fidelity f;
  if (status s = kv_error(reference, keys, f.keys); s != status::ok) return s;
  if (status s = kv_error(reference, values, f.values); s != status::ok) return s;

  const detail::token_matrix xm(x), qm(queries);
  detail::row_matrix change(n, d);  // (N, D): X − K̂
  for (index_t t = 0; t < n; ++t)
    for (index_t c = 0; c < d; ++c) change(t, c) = xm.row(t)[c] - b.keys[static_cast<std::size_t>(t * d + c)];
  detail::row_matrix logits(m, n), shift(m, n);  // (M, N)
  logits.noalias() = qm.map() * xm.map().transpose();
  shift.noalias() = qm.map() * change.transpose();
  const double sigma = 1.0 / std::sqrt(static_cast<double>(d));
  double sum = 0.0, max = 0.0;
  index_t non_finite = 0;
  for (index_t r = 0; r < m; ++r) {
    const double kl = detail::row_kl(&logits(r, 0), &shift(r, 0), n, sigma);
    non_finite += std::isnan(kl) ? 1 : 0;
    sum += kl;
    max = std::max(max, kl);
  }
  f.attention = non_finite == 0 ? attention_kl_stats{sum / static_cast<double>(m), max, 0}
                                : attention_kl_stats{detail::nan, detail::nan, non_finite};
  out = f;
  return status::ok;
}

}  // namespace tokred::bench
