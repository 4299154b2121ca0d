// tests/cpu/test_interop_ggml.cpp — ggml tensors as views, checked: the reversed dimension order,
// byte strides, permuted and transposed ggml views, llama.cpp's KV cache layout, every status
// with the output untouched, and a topk through adapted views against one through direct views.
#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <tokred/interop/ggml.hpp>

#include "interop_topk.hpp"
#include "support/catch.hpp"

// The parts of ggml.h the adapter reads, declared as ggml declares them (in the global namespace:
// tokred has a ggml_type of its own): some of the type enum's values and the members of struct
// ggml_tensor (its other members do not matter to the adapter).
enum ggml_type { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8,
                 GGML_TYPE_I32 = 26, GGML_TYPE_BF16 = 30 };
struct ggml_tensor {
  enum ggml_type type;
  void* buffer;
  int64_t ne[4];  // elements, innermost first
  size_t nb[4];   // strides in bytes
  int op;
  void* data;
};

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A contiguous ggml tensor of `type` with element size `elem` over `data`, as ggml_new_tensor
/// lays it out: nb[0] = elem, nb[i] = nb[i-1] · ne[i-1].
ggml_tensor contiguous(::ggml_type type, std::size_t elem, void* data, std::array<std::int64_t, 4> ne) {
  ggml_tensor t{};
  t.type = type;
  t.data = data;
  for (int i = 0; i < 4; ++i) t.ne[i] = ne[static_cast<std::size_t>(i)];
  t.nb[0] = elem;
  for (int i = 1; i < 4; ++i) t.nb[i] = t.nb[i - 1] * static_cast<std::size_t>(ne[static_cast<std::size_t>(i - 1)]);
  return t;
}

/// ggml_permute's metadata change: axis i of `t` becomes axis `to[i]` of the result.
ggml_tensor permute(const ggml_tensor& t, std::array<int, 4> to) {
  ggml_tensor p = t;
  for (int i = 0; i < 4; ++i) {
    p.ne[to[static_cast<std::size_t>(i)]] = t.ne[i];
    p.nb[to[static_cast<std::size_t>(i)]] = t.nb[i];
  }
  return p;
}

std::vector<float> numbered(std::size_t n) {
  std::vector<float> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i);
  return data;
}

template <class T, int Rank, class Space>
bool same_view(const view<T, Rank, Space>& a, const view<T, Rank, Space>& b) {
  if (a.data_handle() != b.data_handle()) return false;
  for (int r = 0; r < Rank; ++r)
    if (a.extent(r) != b.extent(r) || a.stride(r) != b.stride(r)) return false;
  return true;
}

}  // namespace

TEST_CASE("the type ids are ggml's", "[interop][ggml]") {
  static_assert(ggml_type_id<float> == GGML_TYPE_F32);
  static_assert(ggml_type_id<const f16> == GGML_TYPE_F16);
  static_assert(ggml_type_id<bf16> == GGML_TYPE_BF16);
  static_assert(ggml_type_id<std::int32_t> == -1);
}

TEST_CASE("a 2-D tensor is (tokens, dim) with ne reversed", "[interop][ggml]") {
  std::vector<float> data = numbered(35);
  const ggml_tensor t = contiguous(GGML_TYPE_F32, 4, data.data(), {7, 5, 1, 1});  // 5 rows of 7
  view<const float, 2> v;
  REQUIRE(from_ggml(t, v) == status::ok);
  CHECK((v.extent(0) == 5 && v.extent(1) == 7 && v.stride(0) == 7 && v.stride(1) == 1));
  CHECK(v(4, 6) == 34.0f);
  // ggml_transpose swaps ne[0], ne[1] and nb[0], nb[1]: a (7, 5) view with strides (1, 7).
  const ggml_tensor tt = permute(t, {1, 0, 2, 3});
  REQUIRE(from_ggml(tt, v) == status::ok);
  CHECK((v.extent(0) == 7 && v.extent(1) == 5 && v.stride(0) == 1 && v.stride(1) == 7));
  CHECK(v(6, 4) == 34.0f);
  // ggml_view_2d of columns 2..5 of rows 1..4: ne {4, 3}, nb[1] kept, data advanced.
  ggml_tensor part = t;
  part.ne[0] = 4;
  part.ne[1] = 3;
  part.data = data.data() + 7 + 2;
  REQUIRE(from_ggml(part, v) == status::ok);
  CHECK((v.extent(0) == 3 && v.extent(1) == 4 && v.stride(0) == 7 && v(2, 3) == 7.0f * 3 + 5));
}

TEST_CASE("a 3-D tensor is (heads, tokens, head_dim), also from llama.cpp's cache layout",
          "[interop][ggml]") {
  const int heads = 3, tokens = 5, head_dim = 4;
  std::vector<float> heads_outer = numbered(static_cast<std::size_t>(heads * tokens * head_dim));
  const ggml_tensor kv = contiguous(GGML_TYPE_F32, 4, heads_outer.data(), {head_dim, tokens, heads, 1});
  view<float, 3> v;
  REQUIRE(from_ggml(kv, v) == status::ok);
  CHECK((v.extent(0) == heads && v.extent(1) == tokens && v.extent(2) == head_dim));
  CHECK((v.stride(0) == tokens * head_dim && v.stride(1) == head_dim && v.stride(2) == 1));
  view<float, 3> w;
  REQUIRE(from_ggml_kv(kv, w) == status::ok);
  CHECK(same_view(v, w));

  // llama.cpp stores one row of heads · head_dim per token and views it as ne {head_dim, heads,
  // tokens}; element (h, t, d) is at t · heads · head_dim + h · head_dim + d.
  std::vector<float> tokens_outer = numbered(static_cast<std::size_t>(heads * tokens * head_dim));
  const ggml_tensor cache = contiguous(GGML_TYPE_F32, 4, tokens_outer.data(), {head_dim, heads, tokens, 1});
  REQUIRE(from_ggml_kv(cache, w, ggml_kv_order::head_dim_heads_tokens) == status::ok);
  CHECK((w.extent(0) == heads && w.extent(1) == tokens && w.extent(2) == head_dim));
  CHECK((w.stride(0) == head_dim && w.stride(1) == heads * head_dim && w.stride(2) == 1));
  for (int h = 0; h < heads; ++h)
    for (int t = 0; t < tokens; ++t)
      for (int d = 0; d < head_dim; ++d)
        CHECK(w(h, t, d) == static_cast<float>(t * heads * head_dim + h * head_dim + d));
  // The same as from_ggml after the permute flash attention applies (ggml_permute 0, 2, 1, 3).
  REQUIRE(from_ggml(permute(cache, {0, 2, 1, 3}), v) == status::ok);
  CHECK(same_view(v, w));
}

TEST_CASE("f16 and bf16 tensors, and views of fewer dimensions", "[interop][ggml]") {
  std::vector<std::uint16_t> raw(24);
  for (std::size_t i = 0; i < raw.size(); ++i)
    raw[i] = from_float<bf16>(static_cast<float>(i)).bits;
  const ggml_tensor b = contiguous(GGML_TYPE_BF16, 2, raw.data(), {6, 4, 1, 1});
  view<const bf16, 2> vb;
  REQUIRE(from_ggml(b, vb) == status::ok);
  CHECK(to_float(vb(3, 5)) == 23.0f);
  const ggml_tensor h = contiguous(GGML_TYPE_F16, 2, raw.data(), {24, 1, 1, 1});
  view<f16, 1> vh;
  REQUIRE(from_ggml(h, vh) == status::ok);
  CHECK((vh.extent(0) == 24 && vh.stride(0) == 1));
  view<f16, 4> v4;
  REQUIRE(from_ggml(contiguous(GGML_TYPE_F16, 2, raw.data(), {2, 3, 2, 2}), v4) == status::ok);
  CHECK((v4.extent(0) == 2 && v4.extent(3) == 2 && v4.stride(0) == 12 && v4.stride(3) == 1));
}

TEST_CASE("every mismatch has its status and leaves the output untouched", "[interop][ggml]") {
  std::vector<float> data = numbered(64);
  std::vector<float> other(4);
  const view<float, 2> sentinel = make_strided_view(other.data(), std::array<index_t, 2>{2, 2},
                                                    std::array<index_t, 2>{-1, 7});  // (2, 2)
  const auto run = [&](const ggml_tensor& t) {
    view<float, 2> out = sentinel;
    const status s = from_ggml(t, out);
    CHECK(same_view(out, sentinel));
    return s;
  };
  const ggml_tensor good = contiguous(GGML_TYPE_F32, 4, data.data(), {8, 4, 1, 1});
  {
    view<float, 2> out;
    REQUIRE(from_ggml(good, out) == status::ok);
  }
  for (::ggml_type q : {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_I32}) {
    ggml_tensor t = good;
    t.type = q;
    CHECK(run(t) == status::invalid_parameter);
  }
  {
    ggml_tensor t = good;
    t.ne[2] = 2;  // a third dimension the 2-D view lacks
    CHECK(run(t) == status::shape_mismatch);
  }
  {
    ggml_tensor t = good;
    t.ne[3] = 0;
    CHECK(run(t) == status::shape_mismatch);
  }
  {
    ggml_tensor t = good;
    t.ne[1] = -4;
    CHECK(run(t) == status::shape_mismatch);
  }
  {
    ggml_tensor t = good;
    t.ne[0] = std::int64_t{1} << 40;
    t.ne[1] = std::int64_t{1} << 40;
    CHECK(run(t) == status::shape_mismatch);  // 2^80 elements
  }
  {
    ggml_tensor t = good;
    t.nb[1] = ~std::size_t{0} - 3;  // a stride no index can hold
    CHECK(run(t) == status::shape_mismatch);
  }
  {
    ggml_tensor t = good;
    t.nb[1] = std::size_t{1} << 62;  // an index each, but 3 rows 2^62 bytes apart reach past one
    CHECK(run(t) == status::shape_mismatch);
  }
  {
    ggml_tensor t = good;
    t.data = nullptr;
    CHECK(run(t) == status::null_pointer);
  }
  {
    ggml_tensor t = good;
    t.nb[1] = 34;  // rows padded to 34 bytes: not a whole number of floats
    CHECK(run(t) == status::misaligned);
  }
  {
    ggml_tensor t = good;
    t.nb[0] = 6;
    CHECK(run(t) == status::misaligned);
  }
  {
    ggml_tensor t = good;
    t.data = reinterpret_cast<unsigned char*>(data.data()) + 2;
    CHECK(run(t) == status::misaligned);
  }
  {
    ggml_tensor t = good;  // strides of the dimensions the view lacks are not looked at
    t.nb[2] = 3;
    t.nb[3] = 5;
    view<float, 2> out;
    CHECK(from_ggml(t, out) == status::ok);
  }
  {
    // The first failing check wins: a quantized, null, misaligned tensor of too many dimensions.
    ggml_tensor t = good;
    t.type = GGML_TYPE_Q8_0;
    t.ne[2] = 3;
    t.data = nullptr;
    t.nb[1] = 34;
    CHECK(run(t) == status::invalid_parameter);
    t.type = GGML_TYPE_F32;
    CHECK(run(t) == status::shape_mismatch);
    t.ne[2] = 1;
    CHECK(run(t) == status::null_pointer);
    t.data = data.data();
    CHECK(run(t) == status::misaligned);
  }
  // An empty tensor needs no data.
  ggml_tensor empty = good;
  empty.ne[1] = 0;
  empty.data = nullptr;
  view<float, 2> e;
  REQUIRE(from_ggml(empty, e) == status::ok);
  CHECK((e.empty() && e.extent(1) == 8));
  // The KV reading checks the same way.
  view<float, 3> kv = make_strided_view(other.data(), std::array<index_t, 3>{1, 2, 2},
                                        std::array<index_t, 3>{0, 2, 1});  // (heads, tokens, head_dim)
  const view<float, 3> kv_before = kv;
  ggml_tensor q = contiguous(GGML_TYPE_Q4_0, 18, data.data(), {4, 2, 2, 1});
  CHECK(from_ggml_kv(q, kv, ggml_kv_order::head_dim_heads_tokens) == status::invalid_parameter);
  CHECK(same_view(kv, kv_before));
}

TEST_CASE("topk through ggml views matches topk through direct views", "[interop][ggml]") {
  // 33 f16 tokens of 5 values in rows padded to 8 (ggml_view_2d of a wider tensor), and the same
  // tokens transposed (ggml_transpose of a {tokens, dim} tensor); fp32 scores.
  const index_t n = 33, dim = 5, pitch = 8;
  std::vector<f16> padded(static_cast<std::size_t>(n * pitch));
  std::vector<f16> columns(static_cast<std::size_t>(n * dim));
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    scores[static_cast<std::size_t>(i)] = static_cast<float>((i * 7) % 10);
    for (index_t c = 0; c < dim; ++c) {
      const f16 x = from_float<f16>(static_cast<float>(i) - 0.5f * static_cast<float>(c));
      padded[static_cast<std::size_t>(i * pitch + c)] = x;
      columns[static_cast<std::size_t>(c * n + i)] = x;
    }
  }
  ggml_tensor rows = contiguous(GGML_TYPE_F16, 2, padded.data(), {pitch, n, 1, 1});
  rows.ne[0] = dim;  // the first dim of each padded row
  const ggml_tensor transposed =
      permute(contiguous(GGML_TYPE_F16, 2, columns.data(), {n, dim, 1, 1}), {1, 0, 2, 3});
  const ggml_tensor s = contiguous(GGML_TYPE_F32, 4, scores.data(), {n, 1, 1, 1});
  view<const f16, 2> from_rows, from_columns;  // (tokens, dim)
  view<const float, 1> from_scores;            // (tokens,)
  REQUIRE(from_ggml(rows, from_rows) == status::ok);
  REQUIRE(from_ggml(transposed, from_columns) == status::ok);
  REQUIRE(from_ggml(s, from_scores) == status::ok);
  const view<const f16, 2> direct_rows = make_strided_view(  // (tokens, dim)
      static_cast<const f16*>(padded.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{pitch, 1});
  const view<const f16, 2> direct_columns = make_strided_view(  // (tokens, dim)
      static_cast<const f16*>(columns.data()), std::array<index_t, 2>{n, dim},
      std::array<index_t, 2>{1, n});
  const auto direct_scores = make_view(static_cast<const float*>(scores.data()), n);  // (tokens,)
  for (int nth = 1; nth <= 3; ++nth) {
    CAPTURE(nth);
    const topk_run<f16> want = run_topk<f16>(direct_rows, direct_scores, 10, nth);
    CHECK(same_run(want, run_topk<f16>(from_rows, from_scores, 10, nth)));
    CHECK(same_run(want, run_topk<f16>(direct_columns, direct_scores, 10, nth)));
    CHECK(same_run(want, run_topk<f16>(from_columns, from_scores, 10, nth)));
  }
}
