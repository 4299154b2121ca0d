// tokred/cpu/merge.hpp — what every CPU merging backend shares: the similarity product of two
// sets of rows, the size-weighted mean of a group of rows, `unmerge`, and the two helpers that
// carry a merge across layers: `compose_assign` and `log_size_bias`.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "tokred/core/contract.hpp"
#include "tokred/core/exec.hpp"
#include "tokred/cpu/selection.hpp"
#include "tokred/cpu/similarity.hpp"
#include "tokred/cpu/simd.hpp"
#include "tokred/policy/merge.hpp"

namespace tokred {
namespace detail {

/// The register tile of the similarity product: `mr` rows of A, each element broadcast, against
/// `nv` batches of B rows (`nr` rows): mr·nv accumulators, nv batches of B and one broadcast
/// live, mr + nv loads per mr·nv multiply-adds. AVX-512 (32 registers): 8 × 3 (24 accumulators,
/// 11 loads per 24 multiply-adds); 12 × 2 and 6 × 4 measured the same within noise (N = 2304,
/// D = 1024 and 4096: 96–108 GFLOP/s each). The 16-register ISAs: 6 × 2, one register spare for
/// SSE2's product before the add.
template <class Arch>
struct product_tile {
  static constexpr bool wide = lane_isa_of<Arch>() == lane_isa::avx512;
  static constexpr int mr = wide ? 8 : 6;
  static constexpr int nv = wide ? 3 : 2;
  static constexpr index_t nr = nv * static_cast<index_t>(float_batch<Arch>::size);
};

/// The blocking of the similarity product. kc = 128: a B micro-panel (kc × nr floats, 24 KiB with
/// AVX-512) stays in L1 while the A micro-panels of a block stream past from L2. Packing costs
/// about a cycle per float and is redone for every (A block, B block) pair, (1/mc + 1/nc) packed
/// floats per product against 32 products a cycle with AVX-512; mc × nc blocks of 640 × 640,
/// 1024 × 1024, 384 × 1024 and 1024 × 384 all ran at 0.81–0.90 of Eigen's GEMM (N = 2304,
/// D = 4096). 648 = 81·8 = 108·6 and 672 = 14·48 are whole tiles on every ISA.
inline constexpr index_t product_kc = 128;
inline constexpr index_t product_mc = 648;
inline constexpr index_t product_nc = 672;

/// `n` rounded up to a multiple of `m`.
constexpr index_t padded_to(index_t n, index_t m) noexcept { return (n + m - 1) / m * m; }

/// The scratch of one similarity product of `a_rows` × `b_rows` rows.
struct product_scratch {
  float* a_panels = nullptr;  // (mc', kc) A rows in panels of mr, k-major within a panel
  float* b_panels = nullptr;  // (nc', kc) B rows in panels of nr, k-major within a panel
  float* c_tiles = nullptr;   // (mc', nc') the block's sums in mr × nr tiles, A's panels fastest

  template <class Arch>
  static product_scratch carve(arena& ar, index_t a_rows, index_t b_rows) {
    using tile = product_tile<Arch>;
    const index_t mc = padded_to(std::min(a_rows, product_mc), tile::mr);
    const index_t nc = padded_to(std::min(b_rows, product_nc), tile::nr);
    product_scratch s;
    s.a_panels = ar.take<float>(mc, product_kc);
    s.b_panels = ar.take<float>(nc, product_kc);
    s.c_tiles = ar.take<float>(mc, nc);
    return s;
  }
};

/// Rows `list[0 … count)` of a (rows, dim) view: what the product packs when the rows it compares
/// are not every row of a view (they are read in place, not copied).
template <class E>
struct indexed_rows {
  view<const E, 2> rows;  // (rows, dim)
  const index_t* list;    // (count,)
  index_t count;

  index_t extent(int d) const noexcept { return d == 0 ? count : rows.extent(1); }
  index_t stride(int d) const noexcept { return rows.stride(d); }
  const E& operator()(index_t t, index_t c) const noexcept { return rows(list[t], c); }
};

/// The element type of a view or of indexed_rows.
template <class Rows>
using rows_element_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<const Rows&>()(0, 0))>>;

/// Copies columns [c0, c0 + kc) of rows [r0, r0 + count) as fp32 into panels of `width` rows:
/// row t, column c goes to out[(t / width)·kc·width + c·width + t mod width]. Rows past `count`
/// up to the next multiple of `width` are zero. kc ≤ product_kc.
///
/// The panels only enter the product's multiply-adds, so contiguous fp16 rows widen with
/// load_operands, a batch at a time, into a row of floats that is then spread over the panel:
/// one value at a time, ToMe's matching of 576 × 1024 fp16 rows took 3.5 ms against 2.0 ms for
/// fp32 rows (AVX-512), 1.8 ms this way. bf16 widens by a shift and goes to the panel directly:
/// through the row of floats, its matching of 2304 × 4096 rows was 5–8 % slower.
template <class Arch, class Rows>
void pack_panels(const Rows& rows, index_t r0, index_t count, index_t c0, index_t kc, index_t width,
                 float* out) noexcept {
  using E = rows_element_t<Rows>;
  constexpr index_t lanes = static_cast<index_t>(float_batch<Arch>::size);
  const index_t padded = padded_to(count, width);
  // The rows packed are every other token, 2·dim apart: the hardware prefetcher does not carry
  // over from one row's kc columns to the next. Asking for the row 4 ahead took the matching of
  // N = 2304, D = 4096 from 136 to 103 ms (AVX-512; Eigen's GEMM: 84–90 ms).
  constexpr index_t ahead = 4;
  const index_t line = 64 / static_cast<index_t>(sizeof(E));
  alignas(64) float wide[product_kc];  // (kc,) one row's columns as floats, fp16 rows only
  for (index_t t = 0; t < padded; ++t) {
    float* panel = out + (t / width) * kc * width + t % width;
#if defined(__GNUC__)
    if (t + ahead < count)
      for (index_t c = 0; c < kc; c += line) __builtin_prefetch(&rows(r0 + t + ahead, c0 + c));
#endif
    if (t >= count) {
      for (index_t c = 0; c < kc; ++c) panel[c * width] = 0.0f;
      continue;
    }
    const E* row = &rows(r0 + t, c0);
    const index_t step = rows.stride(1);
    if (!std::is_same_v<E, f16> || step != 1) {
      for (index_t c = 0; c < kc; ++c) panel[c * width] = to_float(row[c * step]);
      continue;
    }
    index_t c = 0;
    for (; c + lanes <= kc; c += lanes) load_operands<Arch>(row + c).store_aligned(wide + c);
    for (; c < kc; ++c) wide[c] = to_float(row[c]);
    for (c = 0; c < kc; ++c) panel[c * width] = wide[c];
  }
}

/// One register tile of the product: c (mr × nr, row-major) += Σ_k a[k][x]·b[k][y] over kc, each
/// sum a chain of `multiply_add` in k order (one rounding per step where the ISA has FMA), started
/// from 0 when `first`, else from the values in c. Splitting k into blocks therefore changes no
/// bit: the partial sums pass through memory exactly.
template <class Arch, int MR, int NV>
void product_kernel(const float* a,  // (kc, mr)
                    const float* b,  // (kc, nr)
                    index_t kc, float* c, bool first) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size), nr = NV * lanes;
  batch acc[MR][NV];
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) acc[x][v] = first ? batch(0.0f) : batch::load_aligned(c + x * nr + v * lanes);
  for (index_t k = 0; k < kc; ++k) {
    batch bk[NV];
    for (int v = 0; v < NV; ++v) bk[v] = batch::load_aligned(b + k * nr + v * lanes);
    for (int x = 0; x < MR; ++x) {
      const batch ak(a[k * MR + x]);
      for (int v = 0; v < NV; ++v) acc[x][v] = multiply_add<Arch>(ak, bk[v], acc[x][v]);
    }
  }
  for (int x = 0; x < MR; ++x)
    for (int v = 0; v < NV; ++v) acc[x][v].store_aligned(c + x * nr + v * lanes);
}

/// The dot product of every row i of `a` with every row j of `b` (both (rows, dim), views or
/// indexed_rows, any strides, any element type), handed over a run at a time: `visit(i, j, dots, count)` gives the dots of
/// row i with rows j … j + count − 1 of b (at most `nr` of them), and for each i the runs come in
/// ascending j. Each dot is Σ_k a_ik·b_jk as a multiply-add chain in k order from 0, whatever the
/// blocking or the rows around it: a pair has the same bits in any call.
template <class Arch, class A, class B, class Visit>
void cross_dots(const A& a,  // (a_rows, dim): a view or indexed_rows
                const B& b,  // (b_rows, dim)
                const product_scratch& s, const Visit& visit) noexcept {
  using tile = product_tile<Arch>;
  constexpr index_t mr = tile::mr, nr = tile::nr;
  const index_t na = a.extent(0), nb = b.extent(0), dim = a.extent(1);
  for (index_t i0 = 0; i0 < na; i0 += product_mc) {
    const index_t mc = std::min(product_mc, na - i0), panels_a = padded_to(mc, mr) / mr;
    for (index_t j0 = 0; j0 < nb; j0 += product_nc) {
      const index_t nc = std::min(product_nc, nb - j0), panels_b = padded_to(nc, nr) / nr;
      for (index_t k0 = 0; k0 < dim; k0 += product_kc) {
        const index_t kc = std::min(product_kc, dim - k0);
        pack_panels<Arch>(a, i0, mc, k0, kc, mr, s.a_panels);
        pack_panels<Arch>(b, j0, nc, k0, kc, nr, s.b_panels);
        for (index_t q = 0; q < panels_b; ++q)  // one B micro-panel in L1 for all of A's
          for (index_t p = 0; p < panels_a; ++p)
            product_kernel<Arch, tile::mr, tile::nv>(s.a_panels + p * kc * mr, s.b_panels + q * kc * nr, kc,
                                                     s.c_tiles + (q * panels_a + p) * mr * nr, k0 == 0);
      }
      for (index_t x = 0; x < mc; ++x) {
        const float* row = s.c_tiles + (x / mr) * mr * nr + (x % mr) * nr;
        for (index_t q = 0; q < panels_b; ++q)
          visit(i0 + x, j0 + q * nr, row + q * panels_a * mr * nr, std::min(nr, nc - q * nr));
      }
    }
  }
}

/// The weight of input token i in a merge's means: its carried size, or 1 when none are carried.
inline auto carried_weight(const view<const float, 1>& sizes) noexcept {  // (tokens,) or empty
  const bool carried = requested(sizes);
  return [sizes, carried](index_t i) { return carried ? sizes(i) : 1.0f; };
}

/// The group layout every merge writes its rows from, by a stable counting sort: group g's
/// members are members[offsets[g] … offsets[g + 1]), its head first where head(g) ≥ 0, then
/// value(i) for every item i in [0, items) with group_of(i) == g, i ascending (group_of(i) < 0
/// leaves item i out). `offsets` holds groups + 1 entries; `cursor` (groups) ends at each group's
/// end.
template <class GroupOf, class Value, class Head>
void group_layout(index_t groups, index_t items, GroupOf group_of, Value value, Head head, index_t* offsets,
                  index_t* cursor, index_t* members) noexcept {
  for (index_t g = 0; g <= groups; ++g) offsets[g] = 0;
  for (index_t i = 0; i < items; ++i)
    if (const index_t g = group_of(i); g >= 0) ++offsets[g + 1];
  for (index_t g = 0; g < groups; ++g) {
    cursor[g] = offsets[g];
    if (const index_t h = head(g); h >= 0) members[cursor[g]++] = h;
    offsets[g + 1] += cursor[g];
  }
  for (index_t i = 0; i < items; ++i)
    if (const index_t g = group_of(i); g >= 0) members[cursor[g]++] = value(i);
}

/// The `head` of a group_layout whose groups have none.
inline index_t no_head(index_t) noexcept { return -1; }

/// Σ weight(members[m]) in member order: the `total` of `weighted_mean_row`.
template <class Weight>
float total_weight(const index_t* members, index_t count, const Weight& weight) noexcept {
  float total = weight(members[0]);
  for (index_t m = 1; m < count; ++m) total += weight(members[m]);
  return total;
}

/// The value check of carried sizes: `invalid_parameter` for one that is not a positive finite
/// number, `ok` otherwise and when none are carried.
inline status check_carried_sizes(const view<const float, 1>& sizes) noexcept {  // (tokens,) or empty
  for (index_t i = 0; i < sizes.extent(0); ++i)
    if (!(sizes(i) > 0.0f && sizes(i) <= std::numeric_limits<float>::max())) return status::invalid_parameter;
  return status::ok;
}

/// Writes the size-weighted mean of the rows `members[0 … count)` of `rows` to `out`:
/// (Σ w_m·x_m) / total with w_m = weight(members[m]), accumulated in member order in fp32 (the
/// first product rounded, every later one added by `multiply_add`, in batches and one by one
/// alike), then one division.
/// `total` is the members' total weight, summed in the same order (`total_weight`).
template <class Arch, class Ein, class Eout, class Weight>
void weighted_mean_row(const view<const Ein, 2>& rows,  // (tokens, dim)
                       const index_t* members, index_t count, const Weight& weight, float total,
                       Eout* out, index_t out_stride) noexcept {
  using batch = float_batch<Arch>;
  constexpr index_t lanes = static_cast<index_t>(batch::size);
  const index_t dim = rows.extent(1);
  index_t c = 0;
  if (rows.stride(1) == 1 && out_stride == 1) {
    const batch divisor(total);
    for (; c + lanes <= dim; c += lanes) {
      batch acc = load_operands<Arch>(&rows(members[0], c)) * batch(weight(members[0]));
      for (index_t m = 1; m < count; ++m)
        acc = multiply_add<Arch>(load_operands<Arch>(&rows(members[m], c)), batch(weight(members[m])), acc);
      store_floats<Arch>(out + c, divide<Arch>(acc, divisor));
    }
  }
  for (; c < dim; ++c) {
    float acc = to_float(rows(members[0], c)) * weight(members[0]);
    for (index_t m = 1; m < count; ++m) acc = multiply_add<Arch>(to_float(rows(members[m], c)), weight(members[m]), acc);
    out[c * out_stride] = from_float<Eout>(acc / total);
  }
}

/// Writes (t, h, w) of output row q: row c of the `carried` positions when they are given (an
/// earlier merge's), else grid.position(c); (−1, −1, −1) for c < 0, a row that stands for no
/// grid cell (a [CLS] token, PruMerge's extra token).
inline void write_position(const view<std::int32_t, 2>& positions,  // (rows, 3)
                           index_t q, const token_grid& grid, index_t c,
                           const view<const std::int32_t, 2>& carried = {}) noexcept {  // (tokens, 3)
  if (c >= 0 && requested(carried)) {
    for (int k = 0; k < 3; ++k) positions(q, k) = carried(c, k);
    return;
  }
  const token_position at = c < 0 ? token_position{-1, -1, -1} : grid.position(c);
  positions(q, 0) = at.t;
  positions(q, 1) = at.h;
  positions(q, 2) = at.w;
}

/// Writes output row q's source and position, those of input token i: the carried ones of an
/// earlier merge when given.
template <class Ein, class Eout>
void write_provenance(const merge_inputs<Ein>& in, const merge_outputs<Eout>& out, index_t q, index_t i) noexcept {
  if (requested(out.source)) out.source(q) = requested(in.source) ? in.source(i) : i;
  if (requested(out.positions)) write_position(out.positions, q, in.grid, i, in.positions);
}

}  // namespace detail

/// unmerge on CPU: a gather of the merged rows by `assign` (share `ith` writes rows
/// [N·ith/nth, N·(ith+1)/nth)). Checks, in order: `empty_input` (no slots or no merged rows, or
/// rows zero wide), `null_pointer`, `shape_mismatch` (merged rows or output), `aliasing`, then
/// every assign value (`index_out_of_range` outside [0, kept); a −1 from a dropping policy too).
/// No workspace.
template <class Arch>
struct backend<unmerge, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>&, const unmerge&, const problem&) { return 0; }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const unmerge&, const unmerge_inputs<Ein>& in,
                      const unmerge_outputs<Eout>& out, workspace ws) {
    if (status s = check_exec(exec); s != status::ok) return s;
    if (status s = detail::check_unmerge(in, out); s != status::ok) return s;
    const gather_inputs<Ein> rows{sequence_grid(in.tokens.extent(0)), in.assign, in.tokens};
    const selection_outputs<Eout> into{out.tokens, {}, {}};
    return backend<gather, cpu<Arch>>::apply(exec, gather{}, rows, into, ws);
  }
};

/// The slot of every original token after two merges: total[i] = second[first[i]], and −1 stays
/// −1 (a token dropped by the first). With assign1 from a merge of N0 tokens into N1 and assign2
/// from a merge of those N1 into N2, `compose_assign(assign1, assign2, total)` maps the N0
/// originals to the N2 outputs; fold it over any number of merges. The same composition gives
/// the source of a later output in original terms, `compose_assign(source2, source1, total)`,
/// though tome does that itself when its input carries `source`.
///
/// Returns `empty_input` (first is empty), `null_pointer`, `shape_mismatch` (total is not
/// (N0,)), `aliasing` (total overlaps first or second), `index_out_of_range` (a value of first
/// outside [−1, N1)), all checked before anything is written.
inline status compose_assign(const view<const std::int64_t, 1>& first,   // (N0,) in [−1, N1)
                             const view<const std::int64_t, 1>& second,  // (N1,)
                             const view<std::int64_t, 1>& total) {       // (N0,)
  const index_t n0 = first.extent(0), n1 = second.extent(0);
  if (n0 == 0) return status::empty_input;
  if (first.data_handle() == nullptr || (n1 > 0 && second.data_handle() == nullptr)) return status::null_pointer;
  if (status s = detail::check_view(total, {n0}); s != status::ok) return s;
  if (may_overlap(total, first) || may_overlap(total, second)) return status::aliasing;
  for (index_t i = 0; i < n0; ++i)
    if (first(i) < -1 || first(i) >= n1) return status::index_out_of_range;
  for (index_t i = 0; i < n0; ++i) total(i) = first(i) < 0 ? -1 : second(first(i));
  return status::ok;
}

/// ToMe's proportional attention: bias[j] = log(sizes[j]), to be added to the attention logit
/// of every query against key j before the softmax, so that a token standing for s originals
/// weighs as much as s copies of it would. Sizes from tome are ≥ 1, so the bias is ≥ 0 (log 1 =
/// 0: unmerged tokens are unaffected); a size of 0 gives −inf, a negative one NaN.
/// Returns `empty_input`, `null_pointer`, `shape_mismatch` (bias is not (K,)) or `aliasing`.
inline status log_size_bias(const view<const float, 1>& sizes,  // (kept,)
                            const view<float, 1>& bias) {       // (kept,)
  const index_t k = sizes.extent(0);
  if (k == 0) return status::empty_input;
  if (sizes.data_handle() == nullptr) return status::null_pointer;
  if (status s = detail::check_view(bias, {k}); s != status::ok) return s;
  if (may_overlap(bias, sizes)) return status::aliasing;
  for (index_t j = 0; j < k; ++j) bias(j) = std::log(sizes(j));
  return status::ok;
}

}  // namespace tokred
