// tests/cpu/test_interop_eigen.cpp — Eigen matrices, maps, refs and blocks as views (both storage
// orders, inner and outer strides, negative strides, half types) and views as Eigen maps, and a
// topk through adapted views against one through direct views.
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <Eigen/Core>
#include <tokred/interop/eigen.hpp>

#include "interop_topk.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using col_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using any_stride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;

/// Fills `m` with 100·i + j so every element names its own position.
template <class M>
void number(M& m) {
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) m(i, j) = static_cast<float>(100 * i + j);
}

/// True when the view and the Eigen object address the same element at every index.
template <class V, class M>
bool same_elements(const V& v, const M& m) {
  if (v.extent(0) != m.rows() || v.extent(1) != m.cols()) return false;
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j)
      if (static_cast<const void*>(&v(i, j)) != static_cast<const void*>(&m.coeffRef(i, j)))
        return false;
  return true;
}

}  // namespace

TEST_CASE("row-major and column-major matrices give their strides", "[interop][eigen]") {
  row_major r(6, 4);
  col_major c(6, 4);
  number(r);
  number(c);
  const view<float, 2> vr = from_eigen(r);  // (6, 4)
  const view<float, 2> vc = from_eigen(c);  // (6, 4)
  CHECK((vr.stride(0) == 4 && vr.stride(1) == 1));
  CHECK((vc.stride(0) == 1 && vc.stride(1) == 6));
  CHECK(same_elements(vr, r));
  CHECK(same_elements(vc, c));
  CHECK(vc(5, 3) == 503.0f);
  vr(2, 1) = -1.0f;  // a mutable matrix gives a mutable view
  CHECK(r(2, 1) == -1.0f);

  const col_major& cref = c;
  const auto read_only = from_eigen(cref);  // (6, 4)
  static_assert(std::is_same_v<decltype(read_only), const view<const float, 2>>);
  CHECK(read_only(4, 2) == 402.0f);
}

TEST_CASE("maps with inner and outer strides, in both orders", "[interop][eigen]") {
  std::vector<float> buffer(200);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(i);
  // 5 rows of 3, rows 20 apart, every other element: Stride<outer = 20, inner = 2>.
  Eigen::Map<row_major, Eigen::Unaligned, any_stride> rm(buffer.data(), 5, 3, any_stride(20, 2));
  const view<float, 2> v = from_eigen(rm);  // (5, 3)
  CHECK((v.stride(0) == 20 && v.stride(1) == 2));
  CHECK(same_elements(v, rm));
  CHECK(v(4, 2) == 84.0f);
  // The same numbers read column-major: columns 20 apart, rows 2 apart.
  Eigen::Map<col_major, Eigen::Unaligned, any_stride> cm(buffer.data(), 3, 5, any_stride(20, 2));
  const view<float, 2> w = from_eigen(cm);  // (3, 5)
  CHECK((w.stride(0) == 2 && w.stride(1) == 20));
  CHECK(same_elements(w, cm));
  // OuterStride and InnerStride on their own.
  Eigen::Map<const row_major, Eigen::Unaligned, Eigen::OuterStride<>> padded(buffer.data(), 4, 7,
                                                                           Eigen::OuterStride<>(9));
  const auto p = from_eigen(padded);  // (4, 7)
  static_assert(std::is_same_v<decltype(p), const view<const float, 2>>);
  CHECK((p.stride(0) == 9 && p.stride(1) == 1 && p(3, 6) == 33.0f));
  Eigen::Map<col_major, Eigen::Unaligned, Eigen::InnerStride<3>> every_third(buffer.data(), 4, 2);
  const auto t = from_eigen(every_third);  // (4, 2)
  CHECK((t.stride(0) == 3 && t.stride(1) == 12 && t(3, 1) == 21.0f));
}

TEST_CASE("refs, blocks and transposes keep their parent's strides", "[interop][eigen]") {
  row_major m(8, 10);
  number(m);
  const auto block = from_eigen(m.block(2, 3, 4, 5));  // (4, 5) rvalue block: a view, not a copy
  CHECK((block.extent(0) == 4 && block.extent(1) == 5 && block.stride(0) == 10));
  CHECK(block(0, 0) == 203.0f);
  CHECK(same_elements(block, m.block(2, 3, 4, 5)));

  const auto transposed = from_eigen(m.transpose());  // (10, 8): a transpose is column-major
  CHECK((transposed.stride(0) == 1 && transposed.stride(1) == 10 && transposed(9, 7) == 709.0f));

  Eigen::Ref<row_major> ref = m.middleRows(1, 3);
  const auto rv = from_eigen(ref);  // (3, 10)
  CHECK((rv.stride(0) == 10 && rv(0, 0) == 100.0f));

  col_major c(6, 6);
  number(c);
  const Eigen::Map<const col_major, Eigen::Unaligned, Eigen::InnerStride<2>> rows_0_2_4(c.data(), 3, 6);
  Eigen::Ref<const col_major, 0, any_stride> every_other_row(rows_0_2_4);  // no copy: strides kept
  const auto eo = from_eigen(every_other_row);  // (3, 6)
  CHECK((eo.stride(0) == 2 && eo.stride(1) == 6 && eo(2, 5) == 405.0f));
  CHECK(same_elements(eo, every_other_row));
}

TEST_CASE("negative strides pass through", "[interop][eigen]") {
  std::vector<float> buffer(24);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(i);
  // The last of 6 rows of 4 first: outer stride -4.
  Eigen::Map<row_major, Eigen::Unaligned, any_stride> upside_down(buffer.data() + 20, 6, 4,
                                                                  any_stride(-4, 1));
  const view<float, 2> v = from_eigen(upside_down);  // (6, 4)
  CHECK((v.stride(0) == -4 && v(0, 0) == 20.0f && v(5, 3) == 3.0f));
  CHECK(v.required_span_size() == 24);
  const auto back = to_eigen(v);
  CHECK((back.outerStride() == -4 && back(5, 3) == 3.0f));
}

TEST_CASE("vectors give one-dimensional views", "[interop][eigen]") {
  Eigen::VectorXf scores(7);
  for (int i = 0; i < 7; ++i) scores(i) = static_cast<float>(i);
  const view<float, 1> s = from_eigen_vector(scores);  // (7,)
  CHECK((s.extent(0) == 7 && s.stride(0) == 1 && s(6) == 6.0f));
  col_major c(5, 3);
  number(c);
  const auto row = from_eigen_vector(c.row(2));  // (3,): a row of a column-major matrix
  CHECK((row.extent(0) == 3 && row.stride(0) == 5 && row(2) == 202.0f));
  const auto as_matrix = from_eigen(scores);  // (7, 1)
  CHECK((as_matrix.extent(0) == 7 && as_matrix.extent(1) == 1 && as_matrix(3, 0) == 3.0f));
}

TEST_CASE("Eigen::half and Eigen::bfloat16 are f16 and bf16", "[interop][eigen]") {
  Eigen::Matrix<Eigen::half, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> h(2, 3);
  Eigen::Matrix<Eigen::bfloat16, Eigen::Dynamic, Eigen::Dynamic> b(2, 3);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      h(i, j) = Eigen::half(static_cast<float>(i * 3 + j) + 0.5f);
      b(i, j) = Eigen::bfloat16(static_cast<float>(i * 3 + j) - 0.25f);
    }
  const view<f16, 2> vh = from_eigen(h);   // (2, 3)
  const view<bf16, 2> vb = from_eigen(b);  // (2, 3)
  CHECK(to_float(vh(1, 2)) == 5.5f);
  CHECK(to_float(vb(1, 2)) == 4.75f);
  CHECK(vh(1, 0).bits == Eigen::numext::bit_cast<std::uint16_t>(h(1, 0)));
  const auto mh = to_eigen(vh);
  static_assert(std::is_same_v<decltype(mh)::Scalar, Eigen::half>);
  CHECK(static_cast<float>(mh(0, 1)) == 1.5f);
}

TEST_CASE("views map back to Eigen with both strides dynamic", "[interop][eigen]") {
  std::vector<float> buffer(60);
  for (std::size_t i = 0; i < buffer.size(); ++i) buffer[i] = static_cast<float>(i);
  const view<float, 2> v = make_strided_view(buffer.data() + 1, std::array<index_t, 2>{4, 3},
                                             std::array<index_t, 2>{12, 3});  // (4, 3)
  auto rm = to_eigen(v);
  static_assert(std::is_same_v<decltype(rm),
                               Eigen::Map<row_major, Eigen::Unaligned, any_stride>>);
  CHECK((rm.rows() == 4 && rm.cols() == 3 && rm.outerStride() == 12 && rm.innerStride() == 3));
  CHECK(same_elements(v, rm));
  const auto cm = to_eigen<Eigen::ColMajor>(v);
  static_assert(std::is_same_v<std::remove_const_t<decltype(cm)>,
                               Eigen::Map<col_major, Eigen::Unaligned, any_stride>>);
  CHECK((cm.outerStride() == 3 && cm.innerStride() == 12));
  CHECK(same_elements(v, cm));
  rm(3, 2) = -7.0f;
  CHECK(buffer[1 + 36 + 6] == -7.0f);

  const view<const float, 2> read_only = v;
  const auto cr = to_eigen(read_only);
  static_assert(std::is_const_v<std::remove_pointer_t<decltype(cr.data())>>);
  CHECK(cr.sum() == rm.sum());

  const view<const float, 1> column = make_strided_view(
      static_cast<const float*>(buffer.data()), std::array<index_t, 1>{5}, std::array<index_t, 1>{10});
  const auto vec = to_eigen(column);
  CHECK((vec.size() == 5 && vec.innerStride() == 10 && vec(4) == 40.0f));
  // Through Eigen and back is the identity on pointer, extents and strides.
  const view<float, 2> again = from_eigen(to_eigen<Eigen::ColMajor>(v));  // (4, 3)
  CHECK((again.data_handle() == v.data_handle() && again.stride(0) == 12 && again.stride(1) == 3));
}

TEST_CASE("topk through Eigen views matches topk through direct views", "[interop][eigen]") {
  // 37 tokens of 6 values held three ways: column-major (tokens, dim), the transpose of a
  // column-major (dim, tokens), and every other row of a padded row-major block.
  const index_t n = 37, dim = 6;
  col_major tokens_cm(n, dim);
  col_major dim_by_tokens(dim, n);
  row_major padded(2 * n, dim + 3);
  Eigen::VectorXf scores(n);
  for (index_t i = 0; i < n; ++i) {
    scores(i) = static_cast<float>((i * 17) % 11) - 0.01f * static_cast<float>(i % 3);
    for (index_t c = 0; c < dim; ++c) {
      const float x = static_cast<float>(i) + 0.125f * static_cast<float>(c);
      tokens_cm(i, c) = x;
      dim_by_tokens(c, i) = x;
      padded(2 * i, c) = x;
    }
  }
  const auto direct_scores = make_view(static_cast<const float*>(scores.data()), n);  // (tokens,)
  const view<const float, 1> eigen_scores = from_eigen_vector(scores);                // (tokens,)
  const view<const float, 2> direct_cm = make_strided_view(  // (tokens, dim)
      static_cast<const float*>(tokens_cm.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{1, n});
  const view<const float, 2> direct_t = make_strided_view(  // (tokens, dim)
      static_cast<const float*>(dim_by_tokens.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{dim, 1});
  const view<const float, 2> direct_padded = make_strided_view(  // (tokens, dim)
      static_cast<const float*>(padded.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{2 * (dim + 3), 1});
  const Eigen::Map<const row_major, Eigen::Unaligned, Eigen::OuterStride<>> every_other(
      padded.data(), n, dim, Eigen::OuterStride<>(2 * (dim + 3)));
  for (int nth = 1; nth <= 3; ++nth) {
    CAPTURE(nth);
    const topk_run<float> want = run_topk<float>(direct_cm, direct_scores, 9, nth);
    CHECK(same_run(want, run_topk<float>(from_eigen(tokens_cm), eigen_scores, 9, nth)));
    CHECK(same_run(want, run_topk<float>(from_eigen(dim_by_tokens.transpose()), eigen_scores, 9, nth)));
    CHECK(same_run(want, run_topk<float>(direct_t, direct_scores, 9, nth)));
    CHECK(same_run(want, run_topk<float>(from_eigen(every_other), eigen_scores, 9, nth)));
    CHECK(same_run(want, run_topk<float>(direct_padded, direct_scores, 9, nth)));
  }

  // And into Eigen outputs: a column-major (kept, dim) matrix and a vector of indices.
  col_major kept_rows = col_major::Constant(9, dim, -1.0f);
  Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> source(9);
  const selection_outputs<float> out{from_eigen(kept_rows), from_eigen_vector(source), {}};
  const problem prob{sequence_grid(n), dim};
  host_workspace ws(workspace_bytes(cpu{}, topk{keep_budget::count(9)}, prob));
  REQUIRE(apply(cpu{}, topk{keep_budget::count(9)},
                selection_inputs<float>{prob.grid, eigen_scores, from_eigen(tokens_cm)}, out,
                ws.get()) == status::ok);
  const topk_run<float> want = run_topk<float>(direct_cm, direct_scores, 9, 1);
  for (index_t k = 0; k < 9; ++k) {
    CHECK(source(k) == want.source[static_cast<std::size_t>(k)]);
    for (index_t c = 0; c < dim; ++c)
      CHECK(kept_rows(k, c) == want.rows[static_cast<std::size_t>(k * dim + c)]);
  }
}
