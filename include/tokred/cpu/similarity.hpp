// tokred/cpu/similarity.hpp — dot products and squared distances between token rows, the inner
// loop of every similarity-driven policy (diversity, DPP, ToMe, the feature scores), and the
// squared norms and column sums of rows built on the same kernels.
//
// One canonical summation order per (Arch, element type): the row is read in chunks of two
// batches (`load_operand_pair`), the first batch of each chunk accumulates into one register and
// the second into another, the two are added and reduced across lanes, and the elements past the
// last whole chunk are added one by one in order. Every kernel here sums a pair in exactly that
// order, however many pairs it handles at once, so d(i, j) has the same bits whichever kernel
// computed it and whichever of the two rows was the shared one: results never depend on the
// order in which an algorithm visits pairs. Rows that are not contiguous take a scalar loop.
// Each step is `multiply_add` (<tokred/cpu/simd.hpp>): one rounding on ISAs with FMA, two
// without, never left to the compiler's contraction, which g++ applies at some call sites and
// not at others. Rows are read with `load_operands` (<tokred/cpu/simd.hpp>): everything read
// here only enters arithmetic, so fp16 takes the hardware conversion where the build has one,
// and every result has the bits the exact widening gives.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "tokred/core/element.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"
#include "tokred/core/workspace.hpp"
#include "tokred/cpu/simd.hpp"

namespace tokred::detail {

/// How a pair of rows is combined, element by element.
enum class pair_op {
  dot,               ///< Σ a·b
  squared_distance,  ///< Σ (a − b)²
};

/// One step of `Op` for one lane batch: the accumulator after adding the pair's term, with one
/// rounding per step on ISAs with FMA (`multiply_add`), whatever the compiler would contract.
template <class Arch, pair_op Op>
float_batch<Arch> accumulate(const float_batch<Arch>& a, const float_batch<Arch>& b,
                             const float_batch<Arch>& acc) noexcept {
  if constexpr (Op == pair_op::dot) {
    return multiply_add<Arch>(a, b, acc);
  } else {
    const float_batch<Arch> diff = a - b;
    return multiply_add<Arch>(diff, diff, acc);
  }
}

/// The scalar form of the same step, for chunk tails and non-contiguous rows.
template <class Arch, pair_op Op>
float accumulate(float a, float b, float acc) noexcept {
  if constexpr (Op == pair_op::dot) {
    return multiply_add<Arch>(a, b, acc);
  } else {
    const float diff = a - b;
    return multiply_add<Arch>(diff, diff, acc);
  }
}

/// `Op` of the shared row `a` against `M` rows `b[m]`, all contiguous and `n` long, into `out[m]`.
/// Each pair is summed in the canonical order; the shared row is loaded once per chunk.
template <class Arch, pair_op Op, int M, class E>
void combine_contiguous(const E* a, const E* const (&b)[M], index_t n, float (&out)[M]) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t chunk = 2 * static_cast<index_t>(batch::size);
  batch acc0[M], acc1[M];
  for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = batch(0.0f);
  index_t i = 0;
  for (; i + chunk <= n; i += chunk) {
    const float_pair<Arch> x = load_operand_pair<Arch>(a + i);
    for (int m = 0; m < M; ++m) {
      const float_pair<Arch> y = load_operand_pair<Arch>(b[m] + i);
      acc0[m] = accumulate<Arch, Op>(x.first, y.first, acc0[m]);
      acc1[m] = accumulate<Arch, Op>(x.second, y.second, acc1[m]);
    }
  }
  for (int m = 0; m < M; ++m) {
    float sum = xsimd::hadd(acc0[m] + acc1[m]);
    for (index_t t = i; t < n; ++t) sum = accumulate<Arch, Op>(to_float(a[t]), to_float(b[m][t]), sum);
    out[m] = sum;
  }
}

/// `Op` of two rows of `n` elements with element strides `sa` and `sb`.
template <class Arch, pair_op Op, class E>
float combine(const E* a, index_t sa, const E* b, index_t sb, index_t n) noexcept {
  if (sa == 1 && sb == 1) {
    const E* rows[1] = {b};
    float out[1];
    combine_contiguous<Arch, Op, 1>(a, rows, n, out);
    return out[0];
  }
  float sum = 0.0f;
  for (index_t t = 0; t < n; ++t) sum = accumulate<Arch, Op>(to_float(a[t * sa]), to_float(b[t * sb]), sum);
  return sum;
}

/// The dot product x·y and the squared norm ‖x‖², each with the bits `combine` gives it alone.
struct dot_sq {
  float dot = 0.0f;
  float sq = 0.0f;
};

/// x·y and ‖x‖² of two rows of `n` elements (element strides `sx`, `sy`): one pass of the pair
/// kernel, x read once, when both are contiguous; two `combine` calls otherwise.
template <class Arch, class E>
dot_sq dot_and_sq(const E* x, index_t sx, const E* y, index_t sy, index_t n) noexcept {
  if (sx == 1 && sy == 1) {
    const E* const b[2] = {y, x};
    float values[2];
    combine_contiguous<Arch, pair_op::dot, 2>(x, b, n, values);
    return {values[0], values[1]};
  }
  return {combine<Arch, pair_op::dot>(x, sx, y, sy, n), combine<Arch, pair_op::dot>(x, sx, x, sx, n)};
}

/// ‖row i‖²: the pair kernel of the row with itself.
template <class Arch, class E>
float row_squared_norm(const view<const E, 2>& rows, index_t i) noexcept {  // rows: (tokens, dim)
  return combine<Arch, pair_op::dot>(&rows(i, 0), rows.stride(1), &rows(i, 0), rows.stride(1),
                                     rows.extent(1));
}

/// `invalid_parameter` when some row's squared norm is not finite in fp32 (a NaN or inf value, or
/// values too large to square), else `ok`: the value check of the policies whose distances or
/// cosines would turn such a row into NaN decisions.
template <class Arch, class E>
status check_finite_rows(const view<const E, 2>& rows) noexcept {  // rows: (tokens, dim)
  for (index_t i = 0; i < rows.extent(0); ++i)
    if (!std::isfinite(row_squared_norm<Arch>(rows, i))) return status::invalid_parameter;
  return status::ok;
}

/// sums += weight·x over the `dim` elements of `row` (element stride `step`).
template <class Arch, class E>
void add_scaled_row(const E* row, index_t step, index_t dim, float weight, float* sums) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  const batch w(weight);
  index_t c = 0;
  if (step == 1)
    for (; c + lanes <= dim; c += lanes)
      multiply_add<Arch>(load_operands<Arch>(row + c), w, batch::load_unaligned(sums + c)).store_unaligned(sums + c);
  for (; c < dim; ++c) sums[c] = multiply_add<Arch>(to_float(row[c * step]), weight, sums[c]);
}

/// Column sums of rows [first, first + count), each column summed in row order (add_scaled_row
/// with weight 1: x·1 is exact, so each step is the plain sum's).
template <class Arch, class E>
void frame_column_sums(const view<const E, 2>& rows, index_t first, index_t count, float* sums) noexcept {
  std::fill(sums, sums + rows.extent(1), 0.0f);
  for (index_t i = first; i < first + count; ++i) add_scaled_row<Arch>(&rows(i, 0), rows.stride(1), rows.extent(1), 1.0f, sums);
}

/// x·v over the `dim` elements of `row` (element stride `step`) and the fp32 vector v.
template <class Arch, class E>
float dot_with_floats(const E* row, index_t step, index_t dim, const float* v) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  batch acc(0.0f);
  index_t c = 0;
  if (step == 1)
    for (; c + lanes <= dim; c += lanes) acc = multiply_add<Arch>(load_operands<Arch>(row + c), batch::load_unaligned(v + c), acc);
  float dot = xsimd::hadd(acc);
  for (; c < dim; ++c) dot = multiply_add<Arch>(to_float(row[c * step]), v[c], dot);
  return dot;
}

/// The rows of a (tokens, dim) view that similarity work reads, with the kernels over them.
template <class Arch, class E>
struct row_set {
  view<const E, 2> rows;  // (tokens, dim)

  index_t size() const noexcept { return rows.extent(0); }
  index_t dim() const noexcept { return rows.extent(1); }
  const E* row(index_t i) const noexcept { return &rows(i, 0); }

  /// `Op` of rows i and j.
  template <pair_op Op>
  float pair(index_t i, index_t j) const noexcept {
    return combine<Arch, Op>(row(i), rows.stride(1), row(j), rows.stride(1), dim());
  }

  /// `Op` of row `i` against rows `js[0 … count)`, into `out`: four rows per pass when the rows
  /// are contiguous, so row i is read once for four pairs.
  template <pair_op Op>
  void pairs(index_t i, const index_t* js, index_t count, float* out) const noexcept {
    against<Op>(i, [&](index_t c) { return row(js[c]); }, rows.stride(1), count, out);
  }

  /// `Op` of row `i` against `count` contiguous rows that start `stride` elements apart at
  /// `others` (copies of rows of the set, as `row_copies` keeps them), into `out`: the same bits
  /// as `pairs` against the originals.
  template <pair_op Op>
  void pairs(index_t i, const E* others, index_t stride, index_t count, float* out) const noexcept {
    against<Op>(i, [&](index_t c) { return others + c * stride; }, 1, count, out);
  }

  /// `Op` of row `i` against every row j in [j0, j1), `visit(j, value)` for each.
  template <pair_op Op, class Visit>
  void sweep(index_t i, index_t j0, index_t j1, const Visit& visit) const noexcept {
    index_t j = j0;
    if (rows.stride(1) == 1) {
      for (; j + 4 <= j1; j += 4) {
        const E* const b[4] = {row(j), row(j + 1), row(j + 2), row(j + 3)};
        float four[4];
        combine_contiguous<Arch, Op, 4>(row(i), b, dim(), four);
        for (int m = 0; m < 4; ++m) visit(j + m, four[m]);
      }
    }
    for (; j < j1; ++j) visit(j, pair<Op>(i, j));
  }

 private:
  /// `Op` of row `i` against the rows `row_of(c)`, c < count, whose elements are `step` apart.
  template <pair_op Op, class RowOf>
  void against(index_t i, const RowOf& row_of, index_t step, index_t count, float* out) const noexcept {
    index_t c = 0;
    if (rows.stride(1) == 1 && step == 1) {
      for (; c + 4 <= count; c += 4) block<Op, 4>(i, row_of, c, out + c);
      switch (count - c) {  // the rest in one pass too
        case 3: return block<Op, 3>(i, row_of, c, out + c);
        case 2: return block<Op, 2>(i, row_of, c, out + c);
        default: break;
      }
    }
    for (; c < count; ++c) out[c] = combine<Arch, Op>(row(i), rows.stride(1), row_of(c), step, dim());
  }

  /// `Op` of contiguous row `i` against the M contiguous rows `row_of(first + m)`, row i read once.
  template <pair_op Op, int M, class RowOf>
  void block(index_t i, const RowOf& row_of, index_t first, float* out) const noexcept {
    const E* b[M];
    for (int m = 0; m < M; ++m) b[m] = row_of(first + m);
    float values[M];
    combine_contiguous<Arch, Op, M>(row(i), b, dim(), values);
    for (int m = 0; m < M; ++m) out[m] = values[m];
  }
};

/// Copies of some rows of a set, one after another, each starting on a 64-byte boundary when
/// the buffer does. The lazy greedies read each pick's row again for every candidate they bring
/// up to date: a packed, aligned copy of the picks reads faster than rows spread through the
/// input, whatever alignment the input has (a 64-byte load across two cache lines costs two).
template <class E>
struct row_copies {
  E* data = nullptr;  // (copies, stride)
  index_t stride = 0;

  /// Elements from one copy to the next: `dim` rounded up to whole cache lines.
  static constexpr index_t stride_for(index_t dim) noexcept {
    constexpr index_t per_line = 64 / static_cast<index_t>(sizeof(E));
    return saturating_round_up(dim, per_line);
  }

  row_copies(void* buffer, index_t dim) noexcept : data(static_cast<E*>(buffer)), stride(stride_for(dim)) {}
  const E* at(index_t slot) const noexcept { return data + slot * stride; }
  /// Copies row `i` of `rows` (any strides) into `slot`, bit for bit.
  void store(index_t slot, const view<const E, 2>& rows, index_t i) const noexcept {  // rows: (n, dim)
    E* to = data + slot * stride;
    for (index_t t = 0; t < rows.extent(1); ++t) to[t] = rows(i, t);
  }
};

/// Bytes that hold `copies` rows of `dim` elements as `row_copies` packs them, for every element
/// type (the workspace is sized before the element type is known).
constexpr index_t row_copies_bytes(index_t copies, index_t dim) noexcept {
  return saturating_product(saturating_product(copies, row_copies<float>::stride_for(dim)),
                            static_cast<index_t>(sizeof(float)));
}

}  // namespace tokred::detail
