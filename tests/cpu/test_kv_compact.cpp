// tests/cpu/test_kv_compact.cpp — kv_compact on CPU: against a plain-loop oracle for every element
// type, head and row counts around the SIMD width, caches laid out heads-major and token-major
// (llama.cpp's and vLLM's strides), in place and into separate buffers, 1–4 shares; the rows past
// the kept count untouched; kept_sequence_rows for FastV's and PyramidDrop's sequences; and every
// bad input, outputs untouched.
#include <array>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// A cache of (heads, rows, width) values in one buffer, heads-major ((heads, rows, width)
/// contiguous) or token-major ((rows, heads, width) in memory, as llama.cpp's and vLLM's caches).
template <class E>
struct cache {
  std::vector<E> data;
  index_t heads, rows, width;
  bool token_major;
  cache(index_t h, index_t r, index_t w, bool tm, std::uint64_t seed) : heads(h), rows(r), width(w), token_major(tm) {
    data.resize(static_cast<std::size_t>(h * r * w));
    rng g(seed);
    for (E& x : data) x = from_float<E>(g.uniform());
  }
  view<E, 3> all() {
    if (!token_major) return make_view(data.data(), heads, rows, width);
    return view<E, 3>(data.data(), {heads, rows, width}, {width, heads * width, 1});
  }
  view<const E, 3> read() { return all(); }
  /// The first `kept` rows of every head: the output of a compaction in place.
  view<E, 3> first(index_t kept) {
    const view<E, 3> a = all();
    return view<E, 3>(data.data(), {heads, kept, width}, {a.stride(0), a.stride(1), a.stride(2)});
  }
};

/// The oracle: K'[h, j] = K[h, keep[j]], into a fresh (heads, kept, width) array.
template <class E>
std::vector<std::uint32_t> compacted(const view<const E, 3>& from, const std::vector<std::int64_t>& keep) {
  std::vector<std::uint32_t> out;
  for (index_t h = 0; h < from.extent(0); ++h)
    for (std::int64_t row : keep)
      for (index_t c = 0; c < from.extent(2); ++c) out.push_back(bits_of(from(h, static_cast<index_t>(row), c)));
  return out;
}

/// The first `kept` rows of every head of `v`, as bits.
template <class E>
std::vector<std::uint32_t> front(const view<E, 3>& v, index_t kept) {
  std::vector<std::uint32_t> out;
  for (index_t h = 0; h < v.extent(0); ++h)
    for (index_t j = 0; j < kept; ++j)
      for (index_t c = 0; c < v.extent(2); ++c) out.push_back(bits_of(v(h, j, c)));
  return out;
}

/// Keep lists over `rows` rows: everything, nothing, the first, the last, every third, and a
/// FastV-like sequence (a prefix, a quarter of the visual span, the suffix).
std::vector<std::vector<std::int64_t>> keep_lists(index_t rows) {
  std::vector<std::vector<std::int64_t>> lists(5);
  for (index_t i = 0; i < rows; ++i) lists[0].push_back(i);
  lists[2] = {0};
  lists[3] = {rows - 1};
  for (index_t i = 0; i < rows; i += 3) lists[4].push_back(i);
  if (rows >= 8) {
    const std::int64_t start = 2, span = rows - 4;
    std::vector<std::int64_t> source;
    for (std::int64_t i = 0; i < span; i += 4) source.push_back(i);
    std::vector<std::int64_t> seq(static_cast<std::size_t>(start + static_cast<std::int64_t>(source.size()) + 2));
    REQUIRE(kept_sequence_rows(make_view<const std::int64_t>(source.data(), static_cast<index_t>(source.size())),
                               start, span, rows, make_view(seq.data(), static_cast<index_t>(seq.size()))) ==
            status::ok);
    lists.push_back(seq);
  }
  return lists;
}

template <class E>
void check_compaction(index_t heads, index_t rows, index_t width, bool token_major, int nth) {
  for (const std::vector<std::int64_t>& keep : keep_lists(rows)) {
    const auto kept = static_cast<index_t>(keep.size());
    CAPTURE(heads, rows, width, token_major, nth, kept);
    const view<const std::int64_t, 1> keep_view = make_view(keep.data(), kept);

    // Into separate buffers, values narrower than keys.
    cache<E> k(heads, rows, width, token_major, 7), v(heads, rows, width / 2 + 1, token_major, 8);
    cache<E> k_out(heads, kept, width, false, 9), v_out(heads, kept, width / 2 + 1, true, 10);
    const kv_compact_inputs<E> in{keep_view, k.read(), v.read()};
    for (int ith = nth - 1; ith >= 0; --ith)
      REQUIRE(apply(cpu{ith, nth}, kv_compact{}, in, kv_compact_outputs<E>{k_out.all(), v_out.all()}) == status::ok);
    CHECK(front(k_out.all(), kept) == compacted(k.read(), keep));
    CHECK(front(v_out.all(), kept) == compacted(v.read(), keep));

    // In place: the same result in the first rows, the rest untouched.
    cache<E> k_in(heads, rows, width, token_major, 7), v_in(heads, rows, width / 2 + 1, token_major, 8);
    const std::vector<E> before = k_in.data;
    const kv_compact_inputs<E> same{keep_view, k_in.read(), v_in.read()};
    for (int ith = nth - 1; ith >= 0; --ith)
      REQUIRE(apply(cpu{ith, nth}, kv_compact{}, same, kv_compact_outputs<E>{k_in.first(kept), v_in.first(kept)}) ==
              status::ok);
    CHECK(front(k_in.all(), kept) == compacted(k.read(), keep));
    CHECK(front(v_in.all(), kept) == compacted(v.read(), keep));
    bool tail_untouched = true;
    for (index_t h = 0; h < heads; ++h)
      for (index_t r = kept; r < rows; ++r)
        for (index_t c = 0; c < width; ++c) {
          const view<E, 3> now = k_in.all();
          const E was = token_major ? before[static_cast<std::size_t>((r * heads + h) * width + c)]
                                    : before[static_cast<std::size_t>((h * rows + r) * width + c)];
          tail_untouched = tail_untouched && bits_of(now(h, r, c)) == bits_of(was);
        }
    CHECK(tail_untouched);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("kv_compact matches the oracle, in place and not, every layout and share split", "[kv_compact]",
                   float, f16, bf16) {
  for (index_t heads : {1, 3, 8})
    for (index_t rows : {1, 15, 17, 64})
      for (index_t width : {1, 15, 16, 17, 64})
        for (bool token_major : {false, true})
          for (int nth : {1, 2, 4}) check_compaction<TestType>(heads, rows, width, token_major, nth);
}

TEST_CASE("kv_compact in place over keys and values interleaved in one buffer", "[kv_compact]") {
  // Token-major rows [K heads × 8 | V heads × 8 ... ]: per (token, head) 8 key then 5 value
  // channels. The two caches' byte ranges overlap, their elements do not.
  const index_t heads = 3, rows = 17, wk = 8, wv = 5, pitch = wk + wv;
  std::vector<float> buffer(static_cast<std::size_t>(rows * heads * pitch));
  rng g(11);
  for (float& x : buffer) x = g.uniform();
  const std::array<index_t, 3> strides{pitch, heads * pitch, 1};
  const view<float, 3> keys(buffer.data(), {heads, rows, wk}, strides), values(buffer.data() + wk, {heads, rows, wv}, strides);
  const std::vector<float> before = buffer;
  const view<const float, 3> keys_before(before.data(), {heads, rows, wk}, strides),
      values_before(before.data() + wk, {heads, rows, wv}, strides);
  for (const std::vector<std::int64_t>& keep : keep_lists(rows)) {
    buffer = before;
    const auto kept = static_cast<index_t>(keep.size());
    CAPTURE(kept);
    const auto first = [&](const view<float, 3>& v) {
      return view<float, 3>(v.data_handle(), {heads, kept, v.extent(2)}, strides);
    };
    for (int ith = 1; ith >= 0; --ith)
      REQUIRE(apply(cpu{ith, 2}, kv_compact{},
                    kv_compact_inputs<float>{make_view(keep.data(), kept), keys, values},
                    kv_compact_outputs<float>{first(keys), first(values)}) == status::ok);
    CHECK(front(keys, kept) == compacted(keys_before, keep));
    CHECK(front(values, kept) == compacted(values_before, keep));
  }
}

TEST_CASE("kv_compact: a FastV boundary at 576 + 100 rows, keys only", "[kv_compact]") {
  const index_t heads = 4, rows = 35 + 576 + 65, width = 128;
  std::vector<std::int64_t> source;  // every other visual token
  for (std::int64_t i = 0; i < 576; i += 2) source.push_back(i);
  std::vector<std::int64_t> keep(35 + 288 + 65);
  REQUIRE(kept_sequence_rows(make_view<const std::int64_t>(source.data(), 288), 35, 576, rows,
                             make_view(keep.data(), static_cast<index_t>(keep.size()))) == status::ok);
  CHECK(keep[34] == 34);
  CHECK(keep[35] == 35);
  CHECK(keep[36] == 37);
  CHECK(keep[35 + 287] == 35 + 574);
  CHECK(keep[35 + 288] == 35 + 576);
  CHECK(keep.back() == rows - 1);
  cache<bf16> k(heads, rows, width, true, 3);
  const std::vector<std::uint32_t> want = compacted(k.read(), keep);
  const auto kept = static_cast<index_t>(keep.size());
  REQUIRE(apply(cpu{}, kv_compact{}, kv_compact_inputs<bf16>{make_view<const std::int64_t>(keep.data(), kept), k.read(), {}},
                kv_compact_outputs<bf16>{k.first(kept), {}}) == status::ok);
  CHECK(front(k.all(), kept) == want);
}

TEST_CASE("kept_sequence_rows: bad input writes nothing", "[kv_compact][bad-input]") {
  const std::int64_t source[3] = {0, 2, 3};
  std::vector<std::int64_t> rows(2 + 3 + 1, -5);
  const auto src = make_view(source, 3);
  const auto out = make_view(rows.data(), 6);
  REQUIRE(kept_sequence_rows(src, 2, 4, 7, out) == status::ok);
  CHECK(rows == std::vector<std::int64_t>{0, 1, 2, 4, 5, 6});
  std::fill(rows.begin(), rows.end(), -5);
  CHECK(kept_sequence_rows(src, 2, 4, 5, out) == status::shape_mismatch);   // span past the end
  CHECK(kept_sequence_rows(src, -1, 4, 7, out) == status::shape_mismatch);  // negative start
  CHECK(kept_sequence_rows(src, 2, 4, 8, out) == status::shape_mismatch);   // rows of another length
  CHECK(kept_sequence_rows(src, 2, 3, 6, out) == status::index_out_of_range);  // source 3 outside a span of 3
  // Extreme lengths are shape_mismatch without an overflowing difference or sum (UBSan).
  CHECK(kept_sequence_rows(src, 0, 1, INT64_MIN, out) == status::shape_mismatch);
  CHECK(kept_sequence_rows(src, 0, 0, INT64_MAX, out) == status::shape_mismatch);
  CHECK(kept_sequence_rows(src, INT64_MAX, 4, 7, out) == status::shape_mismatch);
  const std::int64_t unsorted[3] = {0, 3, 2};
  CHECK(kept_sequence_rows(make_view(unsorted, 3), 2, 4, 7, out) == status::index_out_of_range);
  CHECK(kept_sequence_rows(make_view(static_cast<const std::int64_t*>(nullptr), 3), 2, 4, 7, out) ==
        status::null_pointer);
  CHECK(rows == std::vector<std::int64_t>(6, -5));
}

TEST_CASE("kv_compact: bad input returns its status and writes nothing", "[kv_compact][bad-input]") {
  const index_t heads = 2, rows = 6, width = 4;
  cache<float> k(heads, rows, width, false, 1), v(heads, rows, width, false, 2);
  cache<float> k_out(heads, 3, width, false, 3), v_out(heads, 3, width, false, 4);
  const std::vector<float> k_was = k.data, v_was = v.data, ko_was = k_out.data, vo_was = v_out.data;
  std::vector<std::int64_t> keep = {0, 2, 5};
  const auto expect = [&](status want, const kv_compact_inputs<float>& in, const kv_compact_outputs<float>& out,
                          cpu<> exec = cpu{}) {
    CHECK(apply(exec, kv_compact{}, in, out) == want);
    CHECK(k.data == k_was);
    CHECK(v.data == v_was);
    CHECK(k_out.data == ko_was);
    CHECK(v_out.data == vo_was);
  };
  const auto keep_view = [&] { return make_view<const std::int64_t>(keep.data(), 3); };
  const kv_compact_inputs<float> good{keep_view(), k.read(), v.read()};
  const kv_compact_outputs<float> good_out{k_out.all(), v_out.all()};

  expect(status::invalid_exec, good, good_out, cpu{2, 2});
  keep = {0, 2, 2};  // a repeated row
  expect(status::index_out_of_range, good, good_out);
  keep = {2, 0, 5};  // not ascending
  expect(status::index_out_of_range, good, good_out);
  keep = {0, 2, 6};  // past the cache
  expect(status::index_out_of_range, good, good_out);
  keep = {-1, 2, 5};
  expect(status::index_out_of_range, good, good_out);
  keep = {0, 2, 5};
  expect(status::null_pointer, kv_compact_inputs<float>{make_view(static_cast<const std::int64_t*>(nullptr), 3),
                                                        k.read(), v.read()},
         good_out);
  // Outputs of the wrong size; values on one side only; values of another row count.
  cache<float> small(heads, 2, width, false, 5);
  expect(status::shape_mismatch, good, kv_compact_outputs<float>{small.all(), v_out.all()});
  expect(status::shape_mismatch, good, kv_compact_outputs<float>{k_out.all(), {}});
  expect(status::shape_mismatch, kv_compact_inputs<float>{keep_view(), k.read(), {}}, good_out);
  cache<float> short_v(heads, rows - 1, width, false, 6);
  expect(status::shape_mismatch, kv_compact_inputs<float>{keep_view(), k.read(), short_v.read()}, good_out);
  expect(status::empty_input,
         kv_compact_inputs<float>{keep_view(), make_view<const float>(k.data.data(), heads, rows, index_t{0}), {}},
         kv_compact_outputs<float>{make_view(k_out.data.data(), heads, index_t{3}, index_t{0}), {}});
  // Overlaps that are not "in place": the output one row further into the input, the keys'
  // output over the values, and the two outputs over each other.
  const view<float, 3> shifted(k.data.data() + width, {heads, 3, width}, {rows * width, width, 1});
  expect(status::aliasing, good, kv_compact_outputs<float>{shifted, v_out.all()});
  expect(status::aliasing, good, kv_compact_outputs<float>{make_view(v.data.data(), heads, index_t{3}, width), v_out.all()});
  expect(status::aliasing, good, kv_compact_outputs<float>{k_out.all(), k_out.all()});
  // A compaction in place over caches that share elements: the keys' pass (or another share)
  // would move rows the values' pass still reads. The same cache as keys and values, and values
  // one row into the keys, with either output or both in place.
  expect(status::aliasing, kv_compact_inputs<float>{keep_view(), k.read(), k.read()},
         kv_compact_outputs<float>{k.first(3), k.first(3)});
  std::vector<float> joint(static_cast<std::size_t>(heads * (rows + 1) * width), 0.5f);
  const std::vector<float> joint_was = joint;
  const std::array<index_t, 3> joint_strides{(rows + 1) * width, width, 1};
  const view<float, 3> jk(joint.data(), {heads, rows, width}, joint_strides),
      jv(joint.data() + width, {heads, rows, width}, joint_strides);
  const auto joint_first = [&](const view<float, 3>& c) { return view<float, 3>(c.data_handle(), {heads, 3, width}, joint_strides); };
  const kv_compact_inputs<float> joint_in{keep_view(), jk, jv};
  expect(status::aliasing, joint_in, kv_compact_outputs<float>{joint_first(jk), joint_first(jv)});
  expect(status::aliasing, joint_in, kv_compact_outputs<float>{joint_first(jk), v_out.all()});
  expect(status::aliasing, joint_in, kv_compact_outputs<float>{k_out.all(), joint_first(jv)});
  CHECK(joint == joint_was);
}
