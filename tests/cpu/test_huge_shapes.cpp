// tests/cpu/test_huge_shapes.cpp — absurd shapes get a status, a count of 0 and no workspace.
//
// Every policy's shape questions (can_implement, retained_count or score_count, and
// workspace_bytes on the CPU) on shapes no data could have: grids whose T·H·W overflows index_t,
// negative extents and dims, and grids that fit but whose rows · dim · sizeof do not. The contract
// (DESIGN.md §2, Errors) is a documented status, never undefined behaviour: under the sanitizers
// an overflow here aborts the test. Each policy is its own test case, so one abort hides no other
// (run them one by one). TOKRED_HUGE_VERBOSE=1 prints every answer. A workspace that wrapped
// around size_t is caught by comparing it with a smaller problem's (workspace_grows).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include <tokred/tokred.hpp>

#include "support/catch.hpp"

namespace {

using namespace tokred;

constexpr index_t most = PTRDIFF_MAX;
constexpr index_t least = PTRDIFF_MIN;
constexpr index_t p2(int e) { return index_t{1} << e; }

struct grid_case {
  const char* name;
  problem prob;
};

/// Grids `token_grid::valid()` refuses: every policy answers shape_mismatch, 0 and 0.
const grid_case malformed[] = {
    {"{3, 2^62, 1}: T·H·W overflows", {{3, p2(62), 1}, 8}},
    {"{2^40, 4096, 4096}: T·H·W overflows", {{p2(40), 4096, 4096}, 8}},
    {"{1, 2^32, 2^32}: H·W overflows", {{1, p2(32), p2(32)}, 8}},
    {"{max, max, max}", {{most, most, most}, 8}},
    {"{2, 2^62, 2}: H·W fits, T·H·W does not", {{2, p2(62), 2}, 8}},
    {"negative frames", {{-1, 4, 4}, 8}},
    {"negative height", {{1, -4, 4}, 8}},
    {"negative width", {{1, 4, -4}, 8}},
    {"PTRDIFF_MIN width", {{1, 1, least}, 8}},
    {"negative extents whose product is positive", {{-2, -3, 4}, 8}},
    {"negative extent and a huge one", {{-1, p2(62), 4}, 8}},
};

/// Problems whose grid is valid but absurd, or whose dim is: each policy answers a status (then
/// 0 and 0) or, where its docs say the dim or size does not matter to it, ok with an exact count —
/// never an overflow. Checked for consistency; the verbose run prints what each one answers.
const grid_case absurd[] = {
    {"sequence_grid(2^40), dim 2^30: rows·dim overflows", {sequence_grid(p2(40)), p2(30)}},
    {"image 24 × 24, dim PTRDIFF_MAX", {image_grid(24, 24), most}},
    {"sequence_grid(2^40), dim PTRDIFF_MAX", {sequence_grid(p2(40)), most}},
    {"image 24 × 24, dim -1", {image_grid(24, 24), -1}},
    {"image 24 × 24, dim PTRDIFF_MIN", {image_grid(24, 24), least}},
    {"sequence_grid(PTRDIFF_MAX), dim 8", {sequence_grid(most), 8}},
    {"{1, 2^31, 2^31} (2^62 tokens in one frame), dim 8", {{1, p2(31), p2(31)}, 8}},
    {"{2^40, 1, 1} (2^40 frames of one token), dim 8", {{p2(40), 1, 1}, 8}},
    {"{2^20, 2^20, 2^20} (2^60 tokens), dim 2^20", {{p2(20), p2(20), p2(20)}, p2(20)}},
    {"{PTRDIFF_MAX, 1, 1}, dim 1", {{most, 1, 1}, 1}},
    {"image 2^31 × 2^31, dim 2^31", {image_grid(p2(31), p2(31)), p2(31)}},
};

struct kv_case {
  const char* name;
  kv_problem prob;
  bool malformed;  ///< a negative extent: shape_mismatch
};

const kv_case kv_cases[] = {
    {"heads -1", {-1, 128, 128}, true},
    {"tokens -1", {8, -1, 128}, true},
    {"head_dim -128", {8, 128, -128}, true},
    {"PTRDIFF_MIN tokens", {8, least, 128}, true},
    {"heads 1, tokens 2^62, head_dim 128", {1, p2(62), 128}, false},
    {"heads 2^40, tokens 2^40, head_dim 128", {p2(40), p2(40), 128}, false},
    {"heads 8, tokens 2^40, head_dim 2^40", {8, p2(40), p2(40)}, false},
    {"heads 8, tokens 128, head_dim PTRDIFF_MAX", {8, 128, most}, false},
    {"heads PTRDIFF_MAX, tokens PTRDIFF_MAX, head_dim 128", {most, most, 128}, false},
    {"heads 1, tokens PTRDIFF_MAX, head_dim 256", {1, most, 256}, false},
};

// Which of the shape questions a policy answers (gather has no count, unmerge and kv_compact no
// can_implement; the score policies count scores with score_count).
template <class P, class Prob, class = void>
struct has_can_implement : std::false_type {};
template <class P, class Prob>
struct has_can_implement<P, Prob, std::void_t<decltype(can_implement(std::declval<const P&>(), std::declval<const Prob&>()))>>
    : std::true_type {};
template <class P, class Prob, class = void>
struct has_retained_count : std::false_type {};
template <class P, class Prob>
struct has_retained_count<P, Prob, std::void_t<decltype(retained_count(std::declval<const P&>(), std::declval<const Prob&>()))>>
    : std::true_type {};
template <class P, class Prob, class = void>
struct has_score_count : std::false_type {};
template <class P, class Prob>
struct has_score_count<P, Prob, std::void_t<decltype(score_count(std::declval<const P&>(), std::declval<const Prob&>()))>>
    : std::true_type {};

struct answer {
  bool has_code = false;
  status code = status::ok;
  bool has_count = false;
  index_t count = 0;
  std::size_t ws = 0;
};

template <class P, class Prob>
answer ask(const P& p, const Prob& prob) {
  answer a;
  if constexpr (has_can_implement<P, Prob>::value) {
    a.has_code = true;
    a.code = can_implement(p, prob);
  }
  if constexpr (std::is_same_v<P, prumerge_merge>) {
    a.has_count = true;  // its count also takes the index list's length
    a.count = retained_count(p, prob, 4);
  } else if constexpr (has_retained_count<P, Prob>::value) {
    a.has_count = true;
    a.count = retained_count(p, prob);
  } else if constexpr (has_score_count<P, Prob>::value) {
    a.has_count = true;
    a.count = score_count(p, prob);
  }
  a.ws = workspace_bytes(cpu<>{}, p, prob);
  return a;
}

bool verbose() { return std::getenv("TOKRED_HUGE_VERBOSE") != nullptr; }

void print(const char* policy, const char* shape, const answer& a) {
  if (!verbose()) return;
  std::printf("%-28s | %-56s | %-22s | count %lld | ws %zu\n", policy, shape,
              a.has_code ? to_string(a.code) : "(no can_implement)",
              a.has_count ? static_cast<long long>(a.count) : -1LL, a.ws);
  std::fflush(stdout);  // in order with the sanitizers' reports on stderr
}

/// Malformed grids: shape_mismatch, count 0, workspace 0.
template <class P>
void refuses_malformed_grids(const char* policy, const P& p) {
  for (const grid_case& c : malformed) {
    const answer a = ask(p, c.prob);
    print(policy, c.name, a);
    INFO(policy << " on " << c.name);
    if (a.has_code) CHECK(a.code == status::shape_mismatch);
    if (a.has_count) CHECK(a.count == 0);
    CHECK(a.ws == 0);
  }
}

/// Policies whose output can hold more tokens than their input: bilinear upsamples, and
/// thumbnail_sampling's thumbnail repeats tokens its sample also keeps.
template <class P>
constexpr bool may_grow_v = std::is_same_v<P, bilinear> || std::is_same_v<P, thumbnail_sampling>;

/// Absurd but valid grids and absurd dims: a refusal counts 0 and needs no workspace; an
/// acceptance counts at least 0 (at most N + 1, visionzip's [CLS] row, unless the policy grows).
/// A negative dim is refused or sizes nothing from it: its workspace is 0 or that of dim 0.
template <class P>
void answers_absurd_problems(const char* policy, const P& p) {
  for (const grid_case& c : absurd) {
    const answer a = ask(p, c.prob);
    print(policy, c.name, a);
    INFO(policy << " on " << c.name);
    if (a.has_code && a.code != status::ok) {
      if (a.has_count) CHECK(a.count == 0);
      CHECK(a.ws == 0);
    }
    if (a.has_count) {
      CHECK(a.count >= 0);
      if (!may_grow_v<P> && c.prob.grid.tokens() < most) CHECK(a.count <= c.prob.grid.tokens() + 1);
    }
    if (c.prob.dim < 0 && a.ws != 0) CHECK(a.ws == ask(p, problem{c.prob.grid, 0}).ws);
  }
}

/// A problem and a larger one (no extent smaller): where both are accepted, the larger needs at
/// least the smaller's workspace. A size that wrapped around size_t comes out smaller.
template <class Prob>
struct growth_case {
  const char* name;
  Prob small, large;
};

const growth_case<problem> growth[] = {
    {"image 24 × 24: dim 8 → PTRDIFF_MAX", {image_grid(24, 24), 8}, {image_grid(24, 24), most}},
    {"image 24 × 24: dim 8 → 2^40", {image_grid(24, 24), 8}, {image_grid(24, 24), p2(40)}},
    {"image 24 × 24: dim 8 → 2^58", {image_grid(24, 24), 8}, {image_grid(24, 24), p2(58)}},
    {"sequence 2^40: dim 8 → 2^30", {sequence_grid(p2(40)), 8}, {sequence_grid(p2(40)), p2(30)}},
    {"sequence 2^40 → PTRDIFF_MAX tokens", {sequence_grid(p2(40)), 8}, {sequence_grid(most), 8}},
    {"2^40 → PTRDIFF_MAX frames of one token", {{p2(40), 1, 1}, 8}, {{most, 1, 1}, 8}},
    {"8 frames of 24 × 24 → 2^40 frames", {{8, 24, 24}, 8}, {{p2(40), 24, 24}, 8}},
    {"one frame of 2^20 × 2^20 → 2^31 × 2^31", {{1, p2(20), p2(20)}, 8}, {{1, p2(31), p2(31)}, 8}},
};

const growth_case<kv_problem> kv_growth[] = {
    {"head_dim 128 → PTRDIFF_MAX", {8, 128, 128}, {8, 128, most}},
    {"head_dim 128 → 2^40, tokens 128 → 2^40", {8, 128, 128}, {8, p2(40), p2(40)}},
    {"tokens 128 → 2^62", {1, 128, 128}, {1, p2(62), 128}},
};

template <class P, class Prob, std::size_t N>
void workspace_grows(const char* policy, const P& p, const growth_case<Prob> (&cases)[N]) {
  for (const growth_case<Prob>& c : cases) {
    const answer small = ask(p, c.small), large = ask(p, c.large);
    INFO(policy << " on " << c.name << ": " << small.ws << " → " << large.ws << " bytes");
    if (small.has_code && (small.code != status::ok || large.code != status::ok)) continue;
    CHECK(large.ws >= small.ws);
  }
}

template <class P>
void kv_shapes(const char* policy, const P& p) {
  for (const kv_case& c : kv_cases) {
    const answer a = ask(p, c.prob);
    print(policy, c.name, a);
    INFO(policy << " on " << c.name);
    if (c.malformed) {
      if (a.has_code) CHECK(a.code == status::shape_mismatch);
      CHECK(a.ws == 0);
    } else if (a.has_code && a.code != status::ok) {
      CHECK(a.ws == 0);
    }
  }
  workspace_grows(policy, p, kv_growth);
}

template <class P>
void grid_shapes(const char* policy, const P& p) {
  refuses_malformed_grids(policy, p);
  answers_absurd_problems(policy, p);
  workspace_grows(policy, p, growth);
}

keep_budget four() { return keep_budget::count(4); }

}  // namespace

#define TOKRED_HUGE_CASE(policy_name, ...)                                   \
  TEST_CASE("huge shapes: " policy_name, "[huge_shapes]") {                  \
    grid_shapes(policy_name, __VA_ARGS__);                                   \
  }
#define TOKRED_HUGE_KV_CASE(policy_name, ...)                                \
  TEST_CASE("huge shapes: " policy_name, "[huge_shapes][kv]") {              \
    kv_shapes(policy_name, __VA_ARGS__);                                     \
  }

// Selections.
TOKRED_HUGE_CASE("topk count", topk{four()})
TOKRED_HUGE_CASE("topk ratio per frame", topk{keep_budget::ratio(0.5, rounding::floor), scope::per_frame})
TOKRED_HUGE_CASE("uniform", uniform{four()})
TOKRED_HUGE_CASE("uniform ratio", uniform{keep_budget::ratio(0.25, rounding::ceil)})
TOKRED_HUGE_CASE("random_subset", random_subset{four(), 7})
TOKRED_HUGE_CASE("gather", gather{})
TOKRED_HUGE_CASE("threshold", threshold::dtd())
TOKRED_HUGE_CASE("top_rows", top_rows{keep_budget::count(1)})
TOKRED_HUGE_CASE("iqr_outliers", iqr_outliers::prumerge())
TOKRED_HUGE_CASE("iqr_outliers plus", iqr_outliers::prumerge_plus())
TOKRED_HUGE_CASE("hired", hired{})
TOKRED_HUGE_CASE("vidkv_salient_tokens", vidkv_salient_tokens{})

// Diversity.
TOKRED_HUGE_CASE("divprune", divprune{four()})
TOKRED_HUGE_CASE("divprune widen_once", divprune{four(), scope::global, false, true})
TOKRED_HUGE_CASE("kcenter", kcenter{four()})
TOKRED_HUGE_CASE("importance_diversity", importance_diversity{four()})
TOKRED_HUGE_CASE("cdpruner", cdpruner{four()})
TOKRED_HUGE_CASE("cdpruner per frame", cdpruner{four(), 0.5f, dpp_kernel::openvino, false, scope::per_frame})

// Merges.
TOKRED_HUGE_CASE("tome", tome{2, 0})
TOKRED_HUGE_CASE("tome_match", tome_match{})
TOKRED_HUGE_CASE("unmerge", unmerge{})
TOKRED_HUGE_CASE("visionzip", visionzip{4, 2})
TOKRED_HUGE_CASE("prumerge_merge", prumerge_merge{})
TOKRED_HUGE_CASE("dpc_knn", dpc_knn{4})
TOKRED_HUGE_CASE("dymu", dymu{})
TOKRED_HUGE_CASE("aim", aim{})
TOKRED_HUGE_CASE("holitom", holitom{})
TOKRED_HUGE_CASE("holitom_inner", holitom_inner{})

// Grid reducers and layouts.
TOKRED_HUGE_CASE("pool", pool{})
TOKRED_HUGE_CASE("adaptive_pool", adaptive_pool{pool_kind::average, {1, 2, 2}})
TOKRED_HUGE_CASE("bilinear", bilinear{2, 2})
TOKRED_HUGE_CASE("dct_lowpass", dct_lowpass{{1, 2, 2}})
TOKRED_HUGE_CASE("slowfast", slowfast{1, slow_aggregation::spatial_1d_max_pool, 1, 1})
TOKRED_HUGE_CASE("thumbnail_sampling", thumbnail_sampling{4, 1})

// Video and streaming.
TOKRED_HUGE_CASE("dycoke", dycoke{})
TOKRED_HUGE_CASE("framefusion", framefusion{})
TOKRED_HUGE_CASE("framefusion_similarity", framefusion_similarity{})
TOKRED_HUGE_CASE("stc_cacher", stc_cacher{})
TOKRED_HUGE_CASE("stc_pruner", stc_pruner{gaussian_redundancy{}, four()})
TOKRED_HUGE_CASE("temporal_stream dtd", temporal_stream::dtd())
TOKRED_HUGE_CASE("temporal_stream evs", temporal_stream::evs(keep_budget::count(2)))

// Scores.
TOKRED_HUGE_CASE("attention_score", attention_score{})
TOKRED_HUGE_CASE("fused_attention_score", fused_attention_score{})
TOKRED_HUGE_CASE("attention_significance", attention_significance{})
TOKRED_HUGE_CASE("token_norm", token_norm{})
TOKRED_HUGE_CASE("query_relevance", query_relevance{})
TOKRED_HUGE_CASE("temporal_similarity", temporal_similarity{})
TOKRED_HUGE_CASE("gaussian_redundancy", gaussian_redundancy{})

// KV compaction and pipelines (typed and from a spec).
TOKRED_HUGE_CASE("kv_compact", kv_compact{})
TOKRED_HUGE_CASE("pipeline pool | tome", make_pipeline(pool{}, tome{2, 0}))
TOKRED_HUGE_CASE("pipeline spec", parse_pipeline("pool(2x2)|tome(r=0.25)|divprune(keep=4)").pipeline)

// KV quantisation: kv_problem{heads, tokens, head_dim}.
TOKRED_HUGE_KV_CASE("ggml_quantize", ggml_quantize{})
TOKRED_HUGE_KV_CASE("ggml_quantize rotated", ggml_quantize{ggml_type::q4_0, 32})
TOKRED_HUGE_KV_CASE("ggml_dequantize", ggml_dequantize{})
TOKRED_HUGE_KV_CASE("hadamard", hadamard{})
TOKRED_HUGE_KV_CASE("uniform_quantize", uniform_quantize{})
TOKRED_HUGE_KV_CASE("uniform_quantize channels", uniform_quantize{{4, 64, kv_group_axis::channels}})
TOKRED_HUGE_KV_CASE("uniform_dequantize", uniform_dequantize{})
TOKRED_HUGE_KV_CASE("packed_key_scores", packed_key_scores{})
TOKRED_HUGE_KV_CASE("vidkv_key_quantize", vidkv_key_quantize{})
TOKRED_HUGE_KV_CASE("vidkv_key_dequantize", vidkv_key_dequantize{})
TOKRED_HUGE_KV_CASE("vidkv_key_scores", vidkv_key_scores{})
TOKRED_HUGE_KV_CASE("kivi_append", kivi_append{})
TOKRED_HUGE_KV_CASE("kivi_read", kivi_read{})
TOKRED_HUGE_KV_CASE("vidkv_append", vidkv_append{})
TOKRED_HUGE_KV_CASE("vidkv_read", vidkv_read{})
