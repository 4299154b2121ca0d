// tests/cpu/test_interop_mdspan.cpp — mdspans as views and back: a small mdspan written here
// (layout_right, layout_left, layout_stride, static and dynamic extents, a 32-bit index), and
// libcu++'s cuda::std::mdspan when its headers are on the include path (they compile as host
// C++17); a topk through adapted views against one through direct views.
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <tokred/interop/mdspan.hpp>

#include "interop_topk.hpp"
#include "support/catch.hpp"

#if __has_include(<cuda/std/mdspan>)
#include <cuda/std/mdspan>
#define TOKRED_TEST_LIBCUDACXX_MDSPAN 1
#endif

namespace mini {

// Just enough of the mdspan vocabulary for the adapter: extents (static or dynamic), the three
// standard layouts' mappings, and an mdspan over a plain pointer.

inline constexpr std::size_t dyn = std::numeric_limits<std::size_t>::max();

template <class I, std::size_t... E>
struct extents {
  using index_type = I;
  using rank_type = std::size_t;
  static constexpr rank_type rank() { return sizeof...(E); }
  static constexpr std::size_t static_extent(rank_type r) {
    constexpr std::size_t fixed[] = {E...};
    return fixed[r];
  }
  std::array<I, sizeof...(E)> e{};
  extents() = default;
  template <class... J, class = std::enable_if_t<sizeof...(J) == sizeof...(E)>>
  explicit extents(J... values) : e{static_cast<I>(values)...} {}
  I extent(rank_type r) const { return e[r]; }
};

/// How many layout_right / layout_left mappings were made from extents whose product leaves
/// index_type: the standard's precondition, which the adapter must never break.
inline int broken_mapping_preconditions = 0;

template <class X>
void note_product_fits(const X& x) {
  long double product = 1;
  for (std::size_t r = 0; r < X::rank(); ++r) product *= static_cast<long double>(x.extent(r));
  if (product > static_cast<long double>(std::numeric_limits<typename X::index_type>::max()))
    ++broken_mapping_preconditions;
}

struct layout_right {
  template <class X>
  struct mapping {
    using index_type = typename X::index_type;
    X ext;
    mapping() = default;
    explicit mapping(const X& x) : ext(x) { note_product_fits(x); }
    index_type stride(std::size_t r) const {
      index_type s = 1;
      for (std::size_t q = r + 1; q < X::rank(); ++q) s *= ext.extent(q);
      return s;
    }
  };
};

struct layout_left {
  template <class X>
  struct mapping {
    using index_type = typename X::index_type;
    X ext;
    mapping() = default;
    explicit mapping(const X& x) : ext(x) { note_product_fits(x); }
    index_type stride(std::size_t r) const {
      index_type s = 1;
      for (std::size_t q = 0; q < r; ++q) s *= ext.extent(q);
      return s;
    }
  };
};

struct layout_stride {
  template <class X>
  struct mapping {
    using index_type = typename X::index_type;
    X ext;
    std::array<index_type, X::rank()> s{};
    mapping() = default;
    mapping(const X& x, const std::array<index_type, X::rank()>& strides) : ext(x), s(strides) {}
    index_type stride(std::size_t r) const { return s[r]; }
    std::array<index_type, X::rank()> strides() const { return s; }
  };
};

template <class T, class X, class L = layout_right>
struct mdspan {
  using element_type = T;
  using extents_type = X;
  using index_type = typename X::index_type;
  using mapping_type = typename L::template mapping<X>;
  using data_handle_type = T*;
  static constexpr std::size_t rank() { return X::rank(); }
  static constexpr bool is_always_strided() { return true; }

  mdspan() = default;
  mdspan(T* p, const mapping_type& m) : ptr(p), map(m) {}
  index_type extent(std::size_t r) const { return map.ext.extent(r); }
  index_type stride(std::size_t r) const { return map.stride(r); }
  const data_handle_type& data_handle() const { return ptr; }  // by reference, as std::mdspan
  template <class... I>
  T& operator()(I... i) const {
    const index_type idx[] = {static_cast<index_type>(i)...};
    index_type offset = 0;
    for (std::size_t r = 0; r < rank(); ++r) offset += idx[r] * stride(r);
    return ptr[offset];
  }

  T* ptr = nullptr;
  mapping_type map{};
};

using ext2 = extents<std::int64_t, dyn, dyn>;
using ext3 = extents<std::int64_t, dyn, dyn, dyn>;

}  // namespace mini

namespace {

using namespace tokred;
using namespace tokred::testing;

/// True when the view and the mdspan address the same element at every index.
template <class V, class M>
bool same_elements(const V& v, const M& m) {
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j)
      if (static_cast<const void*>(&v(i, j)) != static_cast<const void*>(&m(i, j))) return false;
  return true;
}

std::vector<float> numbered(std::size_t n) {
  std::vector<float> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i);
  return data;
}

}  // namespace

TEST_CASE("layout_right, layout_left and layout_stride give their strides", "[interop][mdspan]") {
  std::vector<float> data = numbered(120);
  const mini::mdspan<float, mini::ext2> right(data.data(), mini::layout_right::mapping<mini::ext2>(mini::ext2(5, 6)));
  const view<float, 2> r = from_mdspan(right);  // (5, 6)
  CHECK((r.extent(0) == 5 && r.extent(1) == 6 && r.stride(0) == 6 && r.stride(1) == 1));
  CHECK(same_elements(r, right));

  const mini::mdspan<float, mini::ext2, mini::layout_left> left(
      data.data(), mini::layout_left::mapping<mini::ext2>(mini::ext2(5, 6)));
  const view<float, 2> l = from_mdspan(left);  // (5, 6): a transposed layout
  CHECK((l.stride(0) == 1 && l.stride(1) == 5 && l(4, 5) == 29.0f));
  CHECK(same_elements(l, left));

  const mini::mdspan<const float, mini::ext3, mini::layout_stride> strided(
      data.data() + 3, mini::layout_stride::mapping<mini::ext3>(mini::ext3(2, 4, 3), {60, 12, 2}));
  const auto s = from_mdspan(strided);  // (2, 4, 3)
  static_assert(std::is_same_v<decltype(s), const view<const float, 3>>);
  CHECK((s.stride(0) == 60 && s.stride(1) == 12 && s.stride(2) == 2));
  CHECK(s(1, 3, 2) == 3.0f + 60 + 36 + 4);

  // A 32-bit index type and a static extent.
  using small = mini::extents<std::int32_t, 4, mini::dyn>;
  const mini::mdspan<float, small> fixed(data.data(), mini::layout_right::mapping<small>(small(4, 7)));
  const auto f = from_mdspan(fixed);  // (4, 7)
  CHECK((f.extent(0) == 4 && f.stride(0) == 7 && f(3, 6) == 27.0f));
}

TEST_CASE("the memory space and a reinterpreted element are the caller's word", "[interop][mdspan]") {
  std::vector<std::uint16_t> halves(12, 0x3C00u);  // 1.0 in binary16
  const mini::mdspan<std::uint16_t, mini::ext2> m(halves.data(),
                                                  mini::layout_right::mapping<mini::ext2>(mini::ext2(3, 4)));
  const auto as_f16 = from_mdspan<host_space, f16>(m);  // (3, 4)
  static_assert(std::is_same_v<decltype(as_f16), const view<f16, 2>>);
  CHECK(to_float(as_f16(2, 3)) == 1.0f);
  const auto on_device = from_mdspan<device_space>(m);  // (3, 4)
  static_assert(std::is_same_v<decltype(on_device), const view<std::uint16_t, 2, device_space>>);
  CHECK(on_device.data_handle() == halves.data());
}

TEST_CASE("views go back to mdspans whose layout can hold them", "[interop][mdspan]") {
  std::vector<float> data = numbered(200);
  using strided2 = mini::mdspan<float, mini::ext2, mini::layout_stride>;
  using right2 = mini::mdspan<float, mini::ext2, mini::layout_right>;
  using left2 = mini::mdspan<float, mini::ext2, mini::layout_left>;
  const view<float, 2> v = make_strided_view(data.data() + 2, std::array<index_t, 2>{4, 3},
                                             std::array<index_t, 2>{20, 3});  // (4, 3)
  strided2 s;
  REQUIRE(to_mdspan(v, s) == status::ok);
  CHECK((s.extent(0) == 4 && s.extent(1) == 3 && s.stride(0) == 20 && s.stride(1) == 3));
  CHECK(same_elements(v, s));
  CHECK(from_mdspan(s).data_handle() == v.data_handle());

  right2 r;
  CHECK(to_mdspan(v, r) == status::shape_mismatch);  // strides (20, 3) are not row-major
  CHECK(r.data_handle() == nullptr);
  const view<float, 2> rows = make_view(data.data(), 5, 8);  // (5, 8)
  REQUIRE(to_mdspan(rows, r) == status::ok);
  CHECK((r.stride(0) == 8 && same_elements(rows, r)));
  left2 l;
  CHECK(to_mdspan(rows, l) == status::shape_mismatch);
  // Extent-1 dimensions may have any stride.
  const view<float, 2> one_row = make_strided_view(data.data(), std::array<index_t, 2>{1, 8},
                                                   std::array<index_t, 2>{1000, 1});  // (1, 8)
  REQUIRE(to_mdspan(one_row, r) == status::ok);
  CHECK(r.extent(0) == 1);

  // What layout_stride cannot hold, with the output untouched each time.
  const strided2 before = s;
  const auto untouched = [&] {
    return s.data_handle() == before.data_handle() && s.extent(0) == before.extent(0) &&
           s.stride(0) == before.stride(0) && s.stride(1) == before.stride(1);
  };
  const view<float, 2> reversed = make_strided_view(data.data() + 180, std::array<index_t, 2>{4, 3},
                                                    std::array<index_t, 2>{-20, 1});  // (4, 3)
  CHECK(to_mdspan(reversed, s) == status::shape_mismatch);
  CHECK(untouched());
  const view<float, 2> broadcast = make_strided_view(data.data(), std::array<index_t, 2>{4, 3},
                                                     std::array<index_t, 2>{0, 1});  // (4, 3)
  CHECK(to_mdspan(broadcast, s) == status::shape_mismatch);
  CHECK(untouched());
  const view<float, 2> overlapping = make_strided_view(data.data(), std::array<index_t, 2>{4, 3},
                                                       std::array<index_t, 2>{2, 1});  // (4, 3)
  CHECK(to_mdspan(overlapping, s) == status::shape_mismatch);
  CHECK(untouched());
  // Strides whose span no index can count (checked before the span is computed).
  const view<float, 2> past_index = make_strided_view(data.data(), std::array<index_t, 2>{4, 3},
                                                      std::array<index_t, 2>{index_t{1} << 62, 1});  // (4, 3)
  CHECK(to_mdspan(past_index, s) == status::shape_mismatch);
  CHECK(untouched());
  // The span of a 16-bit index: (3, 3) rows 20000 apart span 40003 elements.
  using tiny_strided = mini::mdspan<float, mini::extents<std::int16_t, mini::dyn, mini::dyn>, mini::layout_stride>;
  tiny_strided ts;
  std::vector<float> wide(40003);
  CHECK(to_mdspan(make_strided_view(wide.data(), std::array<index_t, 2>{3, 3}, std::array<index_t, 2>{20000, 1}), ts) ==
        status::shape_mismatch);
  CHECK(ts.data_handle() == nullptr);
  // Equal strides are fine when the earlier dimension has extent 1.
  const view<float, 2> column = make_strided_view(data.data(), std::array<index_t, 2>{5, 1},
                                                  std::array<index_t, 2>{1, 1});  // (5, 1)
  CHECK(to_mdspan(column, s) == status::ok);

  // A static extent that differs, and an extent beyond a 16-bit index.
  using fixed4 = mini::mdspan<float, mini::extents<std::int64_t, 4, mini::dyn>>;
  fixed4 f;
  CHECK(to_mdspan(rows, f) == status::shape_mismatch);
  CHECK(f.data_handle() == nullptr);
  REQUIRE(to_mdspan(make_view(data.data(), 4, 8), f) == status::ok);
  using tiny = mini::mdspan<float, mini::extents<std::int16_t, mini::dyn>>;
  tiny t;
  std::vector<float> big(40000);
  CHECK(to_mdspan(make_view(big.data(), 40000), t) == status::shape_mismatch);
  CHECK(t.data_handle() == nullptr);
  REQUIRE(to_mdspan(make_view(big.data(), 30000), t) == status::ok);
  // A broadcast view of 300 × 300 elements: each extent fits a 16-bit index, their product does
  // not, so no fixed mapping may be made of them.
  using tiny_right = mini::mdspan<float, mini::extents<std::int16_t, mini::dyn, mini::dyn>>;
  using tiny_left = mini::mdspan<float, mini::extents<std::int16_t, mini::dyn, mini::dyn>, mini::layout_left>;
  const view<float, 2> repeated = make_strided_view(data.data(), std::array<index_t, 2>{300, 300}, std::array<index_t, 2>{0, 0});
  tiny_right tr;
  tiny_left tl;
  CHECK(to_mdspan(repeated, tr) == status::shape_mismatch);
  CHECK(to_mdspan(repeated, tl) == status::shape_mismatch);
  CHECK(mini::broken_mapping_preconditions == 0);

  // A view with no elements fits every layout whatever its strides (zero, negative, or another
  // layout's); layout_stride gets row-major strides over the extents taken as at least 1.
  for (const auto& [extents, strides] :
       {std::pair<std::array<index_t, 2>, std::array<index_t, 2>>{{5, 0}, {64, 1}},
        {{0, 7}, {0, 0}}, {{0, 7}, {-7, 1}}, {{3, 0}, {1, 3}}}) {
    INFO(extents[0] << " x " << extents[1] << ", strides " << strides[0] << ", " << strides[1]);
    const view<float, 2> none = make_strided_view(data.data(), extents, strides);
    right2 er;
    left2 el;
    strided2 es;
    REQUIRE(to_mdspan(none, er) == status::ok);
    REQUIRE(to_mdspan(none, el) == status::ok);
    REQUIRE(to_mdspan(none, es) == status::ok);
    CHECK((er.extent(0) == extents[0] && er.extent(1) == extents[1] && el.extent(0) == extents[0] &&
           es.extent(0) == extents[0] && es.extent(1) == extents[1] && er.data_handle() == data.data()));
    CHECK((es.stride(1) == 1 && es.stride(0) == std::max<index_t>(extents[1], 1)));
  }
  // …unless those strides leave the mdspan's index: (0, 200, 200) row-major needs 40000.
  using tiny3 = mini::mdspan<float, mini::extents<std::int16_t, mini::dyn, mini::dyn, mini::dyn>, mini::layout_stride>;
  tiny3 t3;
  CHECK(to_mdspan(make_view(data.data(), 0, 200, 200), t3) == status::shape_mismatch);
  CHECK(t3.data_handle() == nullptr);
  REQUIRE(to_mdspan(make_view(data.data(), 0, 100, 200), t3) == status::ok);
  CHECK((t3.stride(0) == 20000 && t3.stride(1) == 200 && t3.stride(2) == 1));

  // A view of const needs an mdspan of const.
  mini::mdspan<const float, mini::ext2, mini::layout_stride> cs;
  REQUIRE(to_mdspan(view<const float, 2>(v), cs) == status::ok);
  CHECK(cs(3, 2) == v(3, 2));
}

#if defined(TOKRED_TEST_LIBCUDACXX_MDSPAN)
TEST_CASE("libcu++'s cuda::std::mdspan, as host C++17", "[interop][mdspan]") {
  namespace cs = cuda::std;
  std::vector<float> data = numbered(120);
  const cs::mdspan<float, cs::dextents<int, 2>> right(data.data(), 5, 6);
  const view<float, 2> r = from_mdspan(right);  // (5, 6)
  CHECK((r.stride(0) == 6 && r.stride(1) == 1 && r(4, 5) == 29.0f));
  const cs::mdspan<float, cs::dextents<long, 2>, cs::layout_left> left(data.data(), 5, 6);
  const view<float, 2> l = from_mdspan(left);  // (5, 6)
  CHECK((l.stride(0) == 1 && l.stride(1) == 5 && l(4, 5) == 29.0f));
  using E3 = cs::extents<std::size_t, 2, cs::dynamic_extent, 3>;
  const cs::layout_stride::mapping<E3> map(E3(4), cs::array<std::size_t, 3>{60, 12, 2});
  const cs::mdspan<const float, E3, cs::layout_stride> strided(data.data() + 3, map);
  const auto s = from_mdspan<device_space>(strided);  // (2, 4, 3)
  static_assert(std::is_same_v<decltype(s), const view<const float, 3, device_space>>);
  CHECK((s.extent(1) == 4 && s.stride(0) == 60 && s.stride(1) == 12 && s.stride(2) == 2));

  cs::mdspan<float, cs::dextents<long, 2>, cs::layout_stride> back;
  const view<float, 2> v = make_strided_view(data.data() + 2, std::array<index_t, 2>{4, 3},
                                             std::array<index_t, 2>{20, 3});  // (4, 3)
  REQUIRE(to_mdspan(v, back) == status::ok);
  CHECK((back.stride(0) == 20 && back.stride(1) == 3 && back.extent(0) == 4));
  CHECK(&back(3, 2) == &v(3, 2));
  cs::mdspan<float, cs::dextents<long, 2>> back_right;
  CHECK(to_mdspan(v, back_right) == status::shape_mismatch);
  CHECK(to_mdspan(make_view(data.data(), 6, 7), back_right) == status::ok);
  CHECK(&back_right(5, 6) == &data[41]);
  cs::mdspan<float, cs::extents<int, 6, 7>> back_fixed(data.data() + 50);  // (no default: all static)
  CHECK(to_mdspan(make_view(data.data(), 7, 6), back_fixed) == status::shape_mismatch);
  CHECK(to_mdspan(make_view(data.data(), 6, 7), back_fixed) == status::ok);
  // An empty view with a zero stride (a broadcast dimension of no rows): libcu++'s layout_stride
  // takes the row-major strides it gets.
  const view<float, 2> none = make_strided_view(data.data(), std::array<index_t, 2>{0, 7}, std::array<index_t, 2>{0, 1});
  REQUIRE(to_mdspan(none, back) == status::ok);
  CHECK((back.extent(0) == 0 && back.extent(1) == 7 && back.stride(0) == 7 && back.stride(1) == 1 && back.size() == 0));
}
#endif

TEST_CASE("topk through mdspan views matches topk through direct views", "[interop][mdspan]") {
  // 29 tokens of 5 values stored column-major (layout_left) and as every other row of a padded
  // buffer (layout_stride); scores every third float of a buffer.
  const index_t n = 29, dim = 5;
  std::vector<float> left(static_cast<std::size_t>(n * dim));
  std::vector<float> padded(static_cast<std::size_t>(2 * n * 8));
  std::vector<float> scores(static_cast<std::size_t>(3 * n));
  for (index_t i = 0; i < n; ++i) {
    scores[static_cast<std::size_t>(3 * i)] = static_cast<float>((i * 13) % 7);
    for (index_t c = 0; c < dim; ++c) {
      const float x = static_cast<float>(i) + 0.25f * static_cast<float>(c);
      left[static_cast<std::size_t>(c * n + i)] = x;
      padded[static_cast<std::size_t>(2 * i * 8 + c)] = x;
    }
  }
  using ext1 = mini::extents<std::int64_t, mini::dyn>;
  const mini::mdspan<const float, mini::ext2, mini::layout_left> m_left(
      left.data(), mini::layout_left::mapping<mini::ext2>(mini::ext2(n, dim)));
  const mini::mdspan<const float, mini::ext2, mini::layout_stride> m_padded(
      padded.data(), mini::layout_stride::mapping<mini::ext2>(mini::ext2(n, dim), {16, 1}));
  const mini::mdspan<const float, ext1, mini::layout_stride> m_scores(
      scores.data(), mini::layout_stride::mapping<ext1>(ext1(n), {3}));
  const view<const float, 1> direct_scores = make_strided_view(  // (tokens,)
      static_cast<const float*>(scores.data()), std::array<index_t, 1>{n}, std::array<index_t, 1>{3});
  const view<const float, 2> direct_left = make_strided_view(  // (tokens, dim)
      static_cast<const float*>(left.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{1, n});
  const view<const float, 2> direct_padded = make_strided_view(  // (tokens, dim)
      static_cast<const float*>(padded.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{16, 1});
  for (int nth = 1; nth <= 3; ++nth) {
    CAPTURE(nth);
    const topk_run<float> want = run_topk<float>(direct_left, direct_scores, 8, nth);
    CHECK(same_run(want, run_topk<float>(from_mdspan(m_left), from_mdspan(m_scores), 8, nth)));
    CHECK(same_run(want, run_topk<float>(direct_padded, direct_scores, 8, nth)));
    CHECK(same_run(want, run_topk<float>(from_mdspan(m_padded), from_mdspan(m_scores), 8, nth)));
  }
}
