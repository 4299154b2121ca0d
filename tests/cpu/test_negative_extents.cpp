// tests/cpu/test_negative_extents.cpp — a view of a negative extent is shape_mismatch at apply.
//
// Every CPU policy that takes views, given one of a negative extent (token width −4 mostly; also
// negative token counts, heads, layers, query rows, head_dim, index lists and output widths),
// read or not, with an ample workspace and with none: it returns shape_mismatch and writes
// nothing. The same call with the extent made positive succeeds, so nothing else is wrong with it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/catch.hpp"

namespace {

using namespace tokred;

const token_grid g{1, 6, 4};       // N = 24, the default grid
const token_grid video{4, 2, 3};   // N = 24 over 4 frames
const token_grid frames2{2, 4, 4};  // N = 32 over 2 frames
constexpr index_t n = 24;

/// A read-only table of `size` values value(0), value(1), … (one per call site).
template <class T, class F>
const T* table(std::size_t size, F value) {
  static const std::vector<T> v = [&] {
    std::vector<T> x(size);
    for (std::size_t i = 0; i < size; ++i) x[i] = value(i);
    return x;
  }();
  return v.data();
}
const float* values() {  // positive and varied
  return table<float>(1 << 16, [](std::size_t i) { return 0.25f + static_cast<float>((i * 37) % 101) / 101.0f; });
}
const std::int64_t* iota() { return table<std::int64_t>(256, [](std::size_t i) { return static_cast<std::int64_t>(i); }); }
const std::int64_t* mod3() { return table<std::int64_t>(256, [](std::size_t i) { return static_cast<std::int64_t>(i % 3); }); }
/// Input rows of any rank, read from values().
template <class... I>
auto in(I... extents) { return make_view<const float>(values(), static_cast<index_t>(extents)...); }

workspace ample() {
  static std::vector<std::byte> bytes(std::size_t{16} << 20);
  return {bytes.data(), bytes.size()};
}

/// Whether outputs of type O carry a `count` (1,).
template <class O, class = void>
struct has_count : std::false_type {};
template <class O>
struct has_count<O, std::void_t<decltype(std::declval<O&>().count)>> : std::true_type {};

/// Output (and state) memory for one call: each view is a fresh slice of one buffer, filled with
/// a sentinel or a given value and recorded, so `untouched()` tells whether the call wrote anything.
class arena {
  std::vector<std::byte> bytes_ = std::vector<std::byte>(std::size_t{1} << 18), expect_ = bytes_;
  std::size_t used_ = 0;

 public:
  template <class T>
  T* take(index_t count, T fill = T(-77)) {
    const std::size_t len = static_cast<std::size_t>(std::max<index_t>(count, 64));
    if (used_ + len * sizeof(T) > bytes_.size()) FAIL("the arena is full");
    std::byte* p = bytes_.data() + used_;
    for (std::size_t i = 0; i < len; ++i) std::memcpy(p + i * sizeof(T), &fill, sizeof(T));
    std::memcpy(expect_.data() + used_, p, len * sizeof(T));
    used_ += (len * sizeof(T) + 63) / 64 * 64;
    return reinterpret_cast<T*>(p);
  }
  view<float, 2> rows(index_t k, index_t w, float fill = -77) { return make_view(take<float>(k * w, fill), k, w); }
  view<float, 1> f(index_t k, float fill = -77) { return make_view(take<float>(k, fill), k); }
  view<std::int64_t, 1> idx(index_t k, std::int64_t fill = -77) { return make_view(take<std::int64_t>(k, fill), k); }
  redundancy_memory<> memory(index_t width) { return {make_view(take<double>(width, 0.0), width), idx(1, 0), {}}; }
  bool untouched() const { return bytes_ == expect_; }

  /// Outputs of type Out with `source` (kept,) and, where Out has one, `count` (1,).
  template <class Out>
  Out source(index_t kept) {
    Out o{};
    o.source = idx(kept);
    if constexpr (has_count<Out>::value) o.count = idx(1);
    return o;
  }
};

/// `x`, hidden from the optimiser: g++ would carry a negative literal into the kernels behind the
/// refusal and warn (-Wstringop-overflow) of copies of a negative size that are never reached.
index_t opaque(index_t x) {
  volatile index_t v = x;
  return v;
}

/// One section (run it alone with -c): the call `run(arena, x, workspace)` with `x = good`
/// succeeds; with `x = bad` it is shape_mismatch, with an ample workspace and with none, and
/// leaves every output as it was.
template <class Run>
void refuses(const char* what, index_t good, index_t bad, Run run) {
  SECTION(what) {
    {
      arena a;
      CHECK(std::string(to_string(run(a, opaque(good), ample()))) == "ok");
    }
    for (const workspace ws : {ample(), workspace{}}) {
      INFO((ws.data ? "ample workspace" : "workspace{}"));
      arena a;
      CHECK(std::string(to_string(run(a, opaque(bad), ws))) == "shape_mismatch");
      CHECK(a.untouched());
    }
  }
}
template <class Run>
void refuses_width(const char* what, Run run) { refuses(what, 4, -4, run); }

/// The outputs' extent: the policy's retained_count on `grid`, rows 4 wide.
template <class P>
index_t kept(const P& p, const token_grid& grid = g) { return retained_count(p, problem{grid, 4}); }

/// A selection of token rows (n, x) into `source`, and into out.tokens (kept, x) when `rows_out`.
template <class Out, class P>
auto select(P p, bool rows_out) {
  return [p, rows_out](arena& a, index_t x, workspace ws) {
    Out o = a.source<Out>(kept(p));
    if (rows_out) o.tokens = a.rows(kept(p), x);
    return apply(cpu<>{}, p, selection_inputs<float>{g, in(n), in(n, x)}, o, ws);
  };
}

/// A grid reducer or layout of rows (N, x) into `source`.
template <class P>
auto reduce(P p, token_grid grid) {
  return [p, grid](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, p, grid_inputs<float>{grid, in(grid.tokens(), x)}, a.source<grid_outputs<float>>(kept(p, grid)), ws);
  };
}

/// Merge inputs: token rows (N, x), compared on them or on a metric (N, 4).
merge_inputs<float> merging(index_t x, bool metric) {
  merge_inputs<float> mi{};
  mi.grid = g;
  mi.tokens = in(n, x);
  if (metric) mi.metric = in(n, 4);
  return mi;
}
template <class Out, class P>
auto merge(P p, bool metric) {
  return [p, metric](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, p, merging(x, metric), a.source<Out>(kept(p)), ws);
  };
}

/// A diversity selection of token rows (N, x) into `source`, compared on them or on features (N, 4).
template <class P>
auto diverse(P p, bool features) {
  return [p, features](arena& a, index_t x, workspace ws) {
    const diversity_inputs<float> di{g, in(n, x), features ? in(n, 4) : view<const float, 2>{}, in(n), {}};
    return apply(cpu<>{}, p, di, a.source<diversity_outputs<float>>(kept(p)), ws);
  };
}

/// A feature score of rows (N, x); query_relevance also reads the query rows (2, x).
template <class P>
auto feature_score(P p, token_grid grid) {
  return [p, grid](arena& a, index_t x, workspace ws) {
    const feature_score_inputs<float> fi{grid, in(grid.tokens(), x), in(2, x)};
    return apply(cpu<>{}, p, fi, score_outputs<>{a.f(grid.tokens())}, ws);
  };
}

keep_budget four() { return keep_budget::count(4); }

}  // namespace

TEST_CASE("negative extents: selections", "[negative][bad-input]") {
  refuses_width("topk: rows (24, -4) into out.tokens (6, -4)", select<selection_outputs<float>>(topk{keep_budget::count(6)}, true));
  refuses_width("topk: unread rows (24, -4), out.source only", select<selection_outputs<float>>(topk{keep_budget::count(6)}, false));
  refuses_width("topk: out.tokens (6, -4) from rows (24, 4)", [](arena& a, index_t x, workspace ws) {
    selection_outputs<float> o{a.rows(6, x), a.idx(6), {}};
    return apply(cpu<>{}, topk{keep_budget::count(6)}, selection_inputs<float>{g, in(n), in(n, 4)}, o, ws);
  });
  refuses_width("uniform: unread rows (24, -4)", select<selection_outputs<float>>(uniform{four()}, false));
  refuses_width("random_subset: unread rows (24, -4)", select<selection_outputs<float>>(random_subset{four(), 7}, false));
  refuses_width("top_rows: rows (24, -4)", select<selection_outputs<float>>(top_rows{keep_budget::count(1)}, true));
  refuses_width("top_rows: unread rows (24, -4)", select<selection_outputs<float>>(top_rows{keep_budget::count(1)}, false));
  refuses_width("iqr_outliers: unread rows (24, -4)", select<counted_outputs<float>>(iqr_outliers::prumerge(), false));
  refuses_width("threshold: unread rows (24, -4)", select<counted_outputs<float>>(threshold::dtd(), false));
  refuses_width("hired: unread rows (80, -4)", [](arena& a, index_t x, workspace ws) {
    const token_grid crops{5, 4, 4};
    const hired_inputs<float> hi{crops, in(80), in(16), in(80, x)};
    return apply(cpu<>{}, hired{}, hi, a.source<counted_outputs<float>>(kept(hired{}, crops)), ws);
  });
  refuses("gather: index list of extent -1, no outputs", 6, -1, [](arena&, index_t x, workspace ws) {
    return apply(cpu<>{}, gather{}, gather_inputs<float>{g, make_view(iota(), x), in(n, 4)}, selection_outputs<float>{}, ws);
  });
  refuses("gather: index list and out.source of extent -1", 6, -1, [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, gather{}, gather_inputs<float>{g, make_view(iota(), x), in(n, 4)}, a.source<selection_outputs<float>>(x), ws);
  });
  refuses_width("gather: unread rows (24, -4)", [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, gather{}, gather_inputs<float>{g, make_view(iota(), 6), in(n, x)}, a.source<selection_outputs<float>>(6), ws);
  });
  refuses("vidkv_salient_tokens: scores of extent -128", 128, -128, [](arena& a, index_t x, workspace ws) {
    const vidkv_salient_tokens p{0.5};
    const vidkv_salient_outputs<> o{a.idx(retained_count(p, problem{sequence_grid(128), 0}))};
    return apply(cpu<>{}, p, vidkv_salient_inputs<>{make_view(values(), x)}, o, ws);
  });
}

TEST_CASE("negative extents: diversity", "[negative][bad-input]") {
  refuses_width("divprune: rows (24, -4)", diverse(divprune{four()}, false));
  refuses_width("divprune: unread rows (24, -4) beside features (24, 4)", diverse(divprune{four()}, true));
  refuses_width("kcenter: rows (24, -4)", diverse(kcenter{four()}, false));
  refuses_width("importance_diversity: rows (24, -4)", diverse(importance_diversity{four()}, false));
  refuses_width("cdpruner: rows (24, -4)", diverse(cdpruner{four()}, false));
}

TEST_CASE("negative extents: merges", "[negative][bad-input]") {
  refuses_width("tome: rows (24, -4)", merge<merge_outputs<float>>(tome{2, 0}, false));
  refuses_width("tome: unread rows (24, -4) beside a metric (24, 4)", merge<merge_outputs<float>>(tome{2, 0}, true));
  refuses_width("tome: rows (24, -4) into out.tokens (22, -4)", [](arena& a, index_t x, workspace ws) {
    merge_outputs<float> o = a.source<merge_outputs<float>>(22);
    o.tokens = a.rows(22, x);
    return apply(cpu<>{}, tome{2, 0}, merging(x, false), o, ws);
  });
  for (const bool metric : {false, true})
    refuses_width(metric ? "tome_match: rows (24, -4) beside a metric (24, 4)" : "tome_match: rows (24, -4)",
                  [metric](arena& a, index_t x, workspace ws) {
                    return apply(cpu<>{}, tome_match{}, merging(x, metric), match_outputs<>{a.f(12), a.idx(12)}, ws);
                  });
  refuses_width("dpc_knn: rows (24, -4)", merge<merge_outputs<float>>(dpc_knn{4}, false));
  refuses_width("dpc_knn: unread rows (24, -4) beside a metric (24, 4)", merge<merge_outputs<float>>(dpc_knn{4}, true));
  refuses_width("dymu: rows (24, -4)", merge<counted_merge_outputs<float>>(dymu{}, false));
  refuses_width("aim: rows (32, -4)", [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, aim{}, aim_inputs<float>{frames2, in(32, x)}, a.source<merge_outputs<float>>(kept(aim{}, frames2)), ws);
  });
  refuses_width("visionzip: rows (25, -4)", [](arena& a, index_t x, workspace ws) {
    const visionzip p{4, 2};
    return apply(cpu<>{}, p, visionzip_inputs<float>{g, in(n + 1, x), in(n), {}}, a.source<merge_outputs<float>>(kept(p)), ws);
  });
  for (const bool keys : {false, true})
    refuses_width(keys ? "prumerge_merge: unread rows (24, -4) beside keys (24, 4)" : "prumerge_merge: rows (24, -4)",
                  [keys](arena& a, index_t x, workspace ws) {
                    const prumerge_inputs<float> pi{g, make_view(iota(), 6), in(n, x), in(n), keys ? in(n, 4) : view<const float, 2>{}};
                    return apply(cpu<>{}, prumerge_merge{4}, pi, prumerge_outputs<float>{{}, a.idx(7), {}, {}}, ws);
                  });
  refuses_width("holitom: rows (32, -4), no out.tokens", [](arena& a, index_t x, workspace ws) {
    const holitom_inputs<float> hi{frames2, in(32, x), in(32), {}};
    return apply(cpu<>{}, holitom{}, hi, a.source<holitom_outputs<float>>(kept(holitom{}, frames2)), ws);
  });
  const index_t inner_kept = retained_count(holitom_inner{}, problem{sequence_grid(n), 4});
  refuses_width("holitom_inner: rows (24, -4), no out.tokens", [inner_kept](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, holitom_inner{}, holitom_inner_inputs<float>{in(n, x), in(n)}, holitom_inner_outputs<float>{{}, a.idx(inner_kept), {}, {}}, ws);
  });
  refuses("holitom_inner: rows (-24, 4)", n, -n, [inner_kept](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, holitom_inner{}, holitom_inner_inputs<float>{in(x, 4), in(n)}, holitom_inner_outputs<float>{{}, a.idx(inner_kept), {}, {}}, ws);
  });
  refuses_width("unmerge: rows (3, -4) into (24, -4)", [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, unmerge{}, unmerge_inputs<float>{in(3, x), make_view(mod3(), n)}, unmerge_outputs<float>{a.rows(n, x)}, ws);
  });
  refuses("unmerge: rows (-3, 4)", 3, -3, [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, unmerge{}, unmerge_inputs<float>{in(x, 4), make_view(mod3(), n)}, unmerge_outputs<float>{a.rows(n, 4)}, ws);
  });
}

TEST_CASE("negative extents: grid reducers and layouts", "[negative][bad-input]") {
  const token_grid wide{1, 4, 6};
  refuses_width("pool: unread rows (24, -4)", reduce(pool{}, wide));
  refuses_width("pool: rows (24, -4) into out.tokens (6, -4)", [wide](arena& a, index_t x, workspace ws) {
    grid_outputs<float> o{a.rows(6, x), {}, {}, {}};
    return apply(cpu<>{}, pool{}, grid_inputs<float>{wide, in(n, x)}, o, ws);
  });
  refuses_width("adaptive_pool: unread rows (24, -4)", reduce(adaptive_pool{pool_kind::average, {1, 2, 2}}, wide));
  refuses_width("bilinear: unread rows (24, -4)", reduce(bilinear{2, 2}, wide));
  refuses_width("dct_lowpass: unread rows (24, -4)", reduce(dct_lowpass{{1, 2, 2}}, wide));
  refuses_width("slowfast: unread rows (24, -4)", reduce(slowfast{1, slow_aggregation::spatial_1d_max_pool, 1, 1}, video));
  refuses_width("thumbnail_sampling: unread rows (24, -4)", reduce(thumbnail_sampling{4, 1}, video));
  refuses_width("pipeline pool | tome: rows (24, -4)", [](arena& a, index_t x, workspace ws) {
    const auto p = make_pipeline(pool{}, tome{2, 0});
    pipeline_inputs<float> pi{};
    pi.grid = g;
    pi.tokens = in(n, x);
    return apply(cpu<>{}, p, pi, a.source<pipeline_outputs<float>>(kept(p)), ws);
  });
}

TEST_CASE("negative extents: video and streams", "[negative][bad-input]") {
  for (const bool metric : {false, true})
    refuses_width(metric ? "dycoke: unread rows (24, -4) beside a metric (24, 4)" : "dycoke: rows (24, -4)",
                  [metric](arena& a, index_t x, workspace ws) {
                    const dycoke_inputs<float> di{video, in(n, x), metric ? in(n, 4) : view<const float, 2>{}};
                    return apply(cpu<>{}, dycoke{}, di, a.source<merge_outputs<float>>(kept(dycoke{}, video)), ws);
                  });
  refuses_width("framefusion: unread rows (24, -4) beside a metric (24, 4)", [](arena& a, index_t x, workspace ws) {
    framefusion_inputs<float> fi{};
    fi.grid = video;
    fi.tokens = in(n, x);
    fi.metric = in(n, 4);
    return apply(cpu<>{}, framefusion{}, fi, a.source<framefusion_outputs<float>>(n), ws);
  });
  refuses("framefusion: a carried source and rows of extent -3", n, -3, [](arena& a, index_t x, workspace ws) {
    framefusion_inputs<float> fi{};
    fi.grid = video;
    fi.tokens = in(x, 4);
    fi.source = make_view(iota(), x);
    return apply(cpu<>{}, framefusion{}, fi, a.source<framefusion_outputs<float>>(x), ws);
  });
  refuses_width("framefusion_similarity: rows (24, -4)", [](arena& a, index_t x, workspace ws) {
    framefusion_inputs<float> fi{};
    fi.grid = video;
    fi.tokens = in(n, x);
    return apply(cpu<>{}, framefusion_similarity{}, fi, framefusion_similarity_outputs<>{a.f(n)}, ws);
  });
  refuses_width("stc_cacher: keys (32, -4), reference (16, -4)", [](arena& a, index_t x, workspace ws) {
    const stc_cacher_inputs<float> si{frames2, in(32, x), in(16, x)};
    return apply(cpu<>{}, stc_cacher{}, si, a.source<selection_outputs<float>>(kept(stc_cacher{}, frames2)), ws);
  });
  refuses_width("stc_pruner: rows (32, -4)", [](arena& a, index_t x, workspace ws) {
    const stc_pruner p{gaussian_redundancy{}, four()};
    const stc_pruner_inputs<float> si{frames2, 0, in(32, x), a.memory(redundancy_channels(p.score, x))};
    return apply(cpu<>{}, p, si, a.source<selection_outputs<float>>(kept(p, frames2)), ws);
  });
  refuses_width("temporal_stream dtd: rows (16, -4), state (16, -4)", [](arena& a, index_t x, workspace ws) {
    const temporal_state<float> state{a.rows(16, x, 0.0f), a.f(16, 0.0f), a.idx(1, 0)};
    const temporal_stream_inputs<float> ti{{1, 4, 4}, 0, in(16, x), state};
    return apply(cpu<>{}, temporal_stream::dtd(), ti, a.source<counted_outputs<float>>(16), ws);
  });
}

TEST_CASE("negative extents: scores", "[negative][bad-input]") {
  refuses_width("token_norm: rows (24, -4)", feature_score(token_norm{}, g));
  refuses_width("query_relevance: rows (24, -4), query (2, -4)", feature_score(query_relevance{}, g));
  refuses_width("temporal_similarity: rows (24, -4)", feature_score(temporal_similarity{}, {2, 3, 4}));
  SECTION("token_norm on no tokens: a negative width before N = 0, as can_implement reads them") {
    const token_grid none{1, 0, 4};
    const auto run = [&](index_t x) {
      return apply(cpu<>{}, token_norm{}, feature_score_inputs<float>{none, in(0, opaque(x)), {}}, score_outputs<>{},
                   ample());
    };
    CHECK(can_implement(token_norm{}, problem{none, -4}) == status::shape_mismatch);
    CHECK(run(-4) == status::shape_mismatch);
    CHECK(can_implement(token_norm{}, problem{none, 4}) == status::empty_input);
    CHECK(run(4) == status::empty_input);
  }
  refuses_width("gaussian_redundancy: rows (24, -4)", [](arena& a, index_t x, workspace ws) {
    const redundancy_inputs<float> ri{g, in(n, x), a.memory(redundancy_channels(gaussian_redundancy{}, x))};
    return apply(cpu<>{}, gaussian_redundancy{}, ri, score_outputs<>{a.f(n)}, ws);
  });
  refuses("attention_score: weights (1, -1 layers, 4, 24)", 2, -1, [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, attention_score{}, attention_score_inputs<float>{g, in(1, x, 4, n)}, score_outputs<>{a.f(n)}, ws);
  });
  refuses("attention_score: weights (1, 2, -4 heads, 24)", 4, -4, [](arena& a, index_t x, workspace ws) {
    return apply(cpu<>{}, attention_score{}, attention_score_inputs<float>{g, in(1, 2, x, n)}, score_outputs<>{a.f(n)}, ws);
  });
  refuses("attention_significance: weights (1, -2 heads, 24, 24)", 2, -2, [](arena& a, index_t x, workspace ws) {
    const attention_significance_inputs<float> ai{g, in(1, x, n, n)};
    return apply(cpu<>{}, attention_significance{}, ai, score_outputs<>{a.f(n)}, ws);
  });
  refuses("fused_attention_score: query (1, 4, -8), keys (2, 24, -8)", 8, -8, [](arena& a, index_t x, workspace ws) {
    const fused_attention_inputs<float> fi{g, in(1, 4, x), in(2, n, x)};
    return apply(cpu<>{}, fused_attention_score{}, fi, score_outputs<>{a.f(n)}, ws);
  });
  refuses("fused_attention_score: query (-1, 4, 8)", 1, -1, [](arena& a, index_t x, workspace ws) {
    const fused_attention_inputs<float> fi{g, in(x, 4, 8), in(2, n, 8)};
    return apply(cpu<>{}, fused_attention_score{}, fi, score_outputs<>{a.f(n)}, ws);
  });
}

TEST_CASE("negative extents: kv_compact", "[negative][bad-input]") {
  refuses("kv_compact: keys (-2, 4, 8) into (-2, 2, 8)", 2, -2, [](arena& a, index_t x, workspace ws) {
    const kv_compact_outputs<float> o{make_view(a.take<float>(64), x, 2, 8), {}};
    return apply(cpu<>{}, kv_compact{}, kv_compact_inputs<float>{make_view(iota(), 2), in(x, 4, 8), {}}, o, ws);
  });
  refuses("kv_compact: keys (2, 4, -8) into (2, 2, -8)", 8, -8, [](arena& a, index_t x, workspace ws) {
    const kv_compact_outputs<float> o{make_view(a.take<float>(64), 2, 2, x), {}};
    return apply(cpu<>{}, kv_compact{}, kv_compact_inputs<float>{make_view(iota(), 2), in(2, 4, x), {}}, o, ws);
  });
}
