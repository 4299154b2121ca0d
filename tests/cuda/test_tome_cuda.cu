// tests/cuda/test_tome_cuda.cu — the CUDA backends of tome and tome_match against the CPU backend
// `cpu<>` of this translation unit, bit for bit: every output of tome (rows, sizes, source,
// positions, assign) and both of tome_match.
//
// Over the shared case table (its layouts: contiguous, strided, reversed), fp32/fp16/bf16 rows,
// protect 0, 1 and 2, both output orders, carried sizes, source and positions, r from 1 to the
// clamp and r = 0; two image-sized cases (576 and 2304 tokens, D 1024:
// many tiles and k-slices); ties, zero rows and NaN rows; bad input (the CPU backend's statuses,
// `invalid_parameter` for a given matching, nothing written); and a CUDA-graph capture and
// replay. Built twice: as is, and with FMA in the host code (test_tome_cuda_fma), so that both
// roundings of the chains run on the GPU. Exits 77 (CTest's "skipped") without a CUDA device; otherwise prints one line per
// failure (the first 60) and "N passed, M failed".
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

/// Host rows, their device mirror and the carried provenance of one case.
template <class E>
struct tome_case {
  token_grid grid;
  index_t dim;
  token_matrix<E> rows;
  device_mirror<E, 2> device_rows;
  std::vector<float> sizes;
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;
  device_buffer<float> device_sizes;
  device_buffer<std::int64_t> device_source;
  device_buffer<std::int32_t> device_positions;

  /// Rows on a coarse grid of values (exact ties), or `continuous` ones (full-precision products
  /// and sums, where a fused and an unfused chain differ).
  tome_case(token_grid g, index_t d, layout how, std::uint64_t seed, bool continuous = false)
      : grid(g), dim(d),
        rows(continuous ? continuous_rows<E>(g.tokens(), d, how, seed) : make_tokens<E>(g.tokens(), d, how, seed)),
        device_rows(rows.storage, rows.rows),
        sizes(carried_sizes(g.tokens())), source(carried_source(g.tokens())),
        positions(carried_positions(g.tokens())), device_sizes(sizes), device_source(source),
        device_positions(positions) {}

  static std::vector<float> carried_sizes(index_t n) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 1.0f + static_cast<float>(i % 5) / 3.0f;
    return v;
  }
  static std::vector<std::int64_t> carried_source(index_t n) {
    std::vector<std::int64_t> v(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = 1000 + 3 * i;
    return v;
  }
  static std::vector<std::int32_t> carried_positions(index_t n) {
    std::vector<std::int32_t> v(static_cast<std::size_t>(3 * n));
    for (index_t i = 0; i < 3 * n; ++i) v[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(7 * i);
    return v;
  }

  merge_inputs<E> host_inputs(bool carry) const {
    const index_t n = grid.tokens();
    merge_inputs<E> in{grid, rows.rows, {}, {}, {}, {}, {}, {}};
    if (carry) {
      in.sizes = make_view<const float>(sizes.data(), n);
      in.source = make_view<const std::int64_t>(source.data(), n);
      in.positions = make_view<const std::int32_t>(positions.data(), n, 3);
    }
    return in;
  }
  merge_inputs<E, device_space> device_inputs(bool carry) const {
    const index_t n = grid.tokens();
    merge_inputs<E, device_space> in{grid, device_rows.v, {}, {}, {}, {}, {}, {}};
    if (carry) {
      in.sizes = view<const float, 1, device_space>(device_sizes.get(), {n});
      in.source = view<const std::int64_t, 1, device_space>(device_source.get(), {n});
      in.positions = view<const std::int32_t, 2, device_space>(device_positions.get(), {n, 3});
    }
    return in;
  }
};

template <class Ein, class Eout>
void compare(const tome_case<Ein>& tc, const tome& p, bool carry, const std::string& what) {
  compare_merge_with_cpu<Eout>(p, problem{tc.grid, tc.dim}, tc.grid.tokens(), tc.host_inputs(carry),
                               tc.device_inputs(carry), what);
}

template <class E>
void compare_match(const tome_case<E>& tc, index_t protect, const std::string& what) {
  const index_t a = a_tokens(tc.grid.tokens());
  const problem prob{tc.grid, tc.dim};
  const tome_match p{protect};
  std::vector<float> similarity(static_cast<std::size_t>(a), -5.0f);
  std::vector<std::int64_t> partner(static_cast<std::size_t>(a), -5);
  host_workspace host_ws(workspace_bytes(cpu{}, p, prob));
  check(apply(cpu{}, p, tc.host_inputs(false),
              match_outputs<>{make_view(similarity.data(), a), make_view(partner.data(), a)}, host_ws.get()) == status::ok,
        what + ": cpu match");
  device_buffer<float> d_similarity(std::vector<float>(static_cast<std::size_t>(a), -5.0f));
  device_buffer<std::int64_t> d_partner(std::vector<std::int64_t>(static_cast<std::size_t>(a), -5));
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const status s = apply(tokred::cuda{test_stream()}, p, tc.device_inputs(false),
                         match_outputs<device_space>{view<float, 1, device_space>(d_similarity.get(), {a}),
                                                     view<std::int64_t, 1, device_space>(d_partner.get(), {a})},
                         workspace{ws.get(), ws.size()});
  check(s == status::ok, what + ": match status " + to_string(s));
  finish(what);
  check(same_bytes(d_similarity.download(), similarity), what + ": similarity");
  check(d_partner.download() == partner, what + ": partner");
}

template <class Ein, class Eout>
void case_table(bool continuous) {
  for (const shape_case& sc : shape_cases()) {
    const tome_case<Ein> tc(sc.grid, sc.dim, sc.rows, 41 + static_cast<std::uint64_t>(sc.grid.tokens()), continuous);
    const index_t n = sc.grid.tokens();
    for (const index_t protect : {0, 1, 2}) {
      compare_match(tc, protect, std::string(sc.name) + " match protect " + str(protect));
      for (const merge_order order : {merge_order::original, merge_order::by_position})
        for (const index_t r : {index_t{1}, n / 4, n, index_t{0}}) {
          const std::string what = std::string(sc.name) + " " + element_name<Ein>() + " protect " + str(protect) +
                                   (order == merge_order::original ? " original" : " by position") + " r " + str(r);
          compare<Ein, Eout>(tc, tome{r, protect, order}, false, what);
          compare<Ein, Eout>(tc, tome{r, protect, order}, true, what + " carried");
        }
    }
  }
}

/// Duplicated rows (ties), zero rows and NaN rows: the same decisions as the CPU backend.
void special_rows() {
  tome_case<float> tc(sequence_grid(40), 12, layout::contiguous, 9, true);
  view<float, 2>& x = tc.rows.rows;
  for (index_t c = 0; c < tc.dim; ++c) {
    x(3, c) = x(5, c);    // B 1 = B 2: a tie between B tokens
    x(8, c) = x(10, c);   // A 4 = A 5: a tie between candidates
    x(12, c) = x(15, c) = 0.0f;
  }
  x(20, 3) = std::numeric_limits<float>::quiet_NaN();  // an A and a B token
  x(23, 1) = std::numeric_limits<float>::infinity();
  tc.device_rows.storage.upload(tc.rows.storage);
  for (const index_t protect : {0, 3}) {
    compare_match(tc, protect, "special match protect " + str(protect));
    for (const merge_order order : {merge_order::original, merge_order::by_position})
      for (const index_t r : {1, 7, 17, 20})
        compare<float, float>(tc, tome{r, protect, order}, protect == 3,
                              "special protect " + str(protect) + " r " + str(r));
  }
}

/// Image-sized rows: many tiles along both sides and several k-slices.
void image_sized() {
  for (const index_t side : {24, 48}) {
    const tome_case<bf16> tc(image_grid(side, side), 1024, layout::contiguous, 77, true);
    const index_t n = side * side;
    compare<bf16, bf16>(tc, tome{n / 4}, false, "image " + str(n) + " bf16");
    compare_match(tc, 1, "image " + str(n) + " match");
  }
  const tome_case<float> tc(image_grid(24, 24), 1000, layout::strided, 78, true);
  compare<float, float>(tc, tome{200, 1, merge_order::by_position}, true, "image 576 fp32 strided");
}

/// Bad input: the CPU backend's statuses, then a given matching; nothing is written.
void bad_input() {
  const tome_case<float> tc(image_grid(6, 6), 8, layout::contiguous, 3);
  const index_t n = 36;
  const tome p{9};
  const device_merge_outputs<float> out(merge_buffers<float>(n - 9, n, 8));
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, problem{tc.grid, 8}));
  const workspace w{ws.get(), ws.size()};
  const auto expect = [&](status want, const tome& q, const merge_inputs<float, device_space>& in,
                          const merge_outputs<float, device_space>& o, workspace wk, const std::string& what) {
    const status got = apply(tokred::cuda{test_stream()}, q, in, o, wk);
    check(got == want, what + ": " + to_string(got) + ", expected " + to_string(want));
  };
  expect(status::invalid_parameter, tome{-1}, tc.device_inputs(false), out.views(), w, "negative r");
  merge_outputs<float, device_space> short_source = out.views();
  short_source.source = view<std::int64_t, 1, device_space>(out.source.get(), {n - 10});
  expect(status::shape_mismatch, p, tc.device_inputs(false), short_source, w, "short source");
  expect(status::workspace_too_small, p, tc.device_inputs(false), out.views(), workspace{ws.get(), 16},
         "small workspace");
  device_buffer<float> similarity(static_cast<std::size_t>(a_tokens(n)));
  device_buffer<std::int64_t> partner(static_cast<std::size_t>(a_tokens(n)));
  merge_inputs<float, device_space> given = tc.device_inputs(false);
  given.similarity = view<const float, 1, device_space>(similarity.get(), {a_tokens(n)});
  given.partner = view<const std::int64_t, 1, device_space>(partner.get(), {a_tokens(n)});
  expect(status::invalid_parameter, p, given, out.views(), w, "given matching");
  finish("bad input");
  check(out.download().untouched(), "bad input: outputs untouched");
}

/// Subsets of the outputs (merge_output_subsets), with carried sizes: the outputs left out stay
/// untouched, the others are the CPU backend's.
void output_subsets() {
  const tome_case<float> tc(image_grid(12, 12), 24, layout::contiguous, 19, true);
  for (const unsigned wanted : merge_output_subsets)
    for (const index_t r : {0, 30})
      compare_merge_with_cpu<float>(tome{r, 1}, problem{tc.grid, tc.dim}, tc.grid.tokens(), tc.host_inputs(true),
                                    tc.device_inputs(true), "outputs " + str(wanted) + " r " + str(r), false, wanted);
}

/// tome captured into a graph and replayed: the CPU backend's outputs.
void graph_capture() {
  const tome_case<f16> tc(image_grid(12, 12), 40, layout::contiguous, 11, true);
  compare_merge_with_cpu<float>(tome{30, 1}, problem{tc.grid, tc.dim}, tc.grid.tokens(), tc.host_inputs(true),
                                tc.device_inputs(true), "graph", true);
}

}  // namespace

#if defined(TOKRED_TEST_HOST_FMA)
static_assert(detail::cuda_tome::fused, "this build's host code has FMA: the kernels' chains fuse");
#endif

int main() {
  if (lacks_host_fma() || !have_device()) return 77;
  case_table<float, float>(false);
  case_table<float, float>(true);
  case_table<bf16, bf16>(true);
  case_table<f16, float>(false);
  special_rows();
  image_sized();
  bad_input();
  output_subsets();
  graph_capture();
  return summary();
}
