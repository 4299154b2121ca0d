// tests/cpu/test_pipeline_spec.cpp — pipeline spec strings: what each stage parses to, the
// canonical form with defaults, a run-time chain equal to the typed one, the catalogue, and one
// precise error (message and offset) for each kind of bad spec.
#include <cstdint>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/pipeline_spec.hpp>

#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

template <class T>
const T& stage_as(const spec_result& r, std::size_t i) {
  REQUIRE(r.ok());
  REQUIRE(i < r.pipeline.stages.size());
  REQUIRE(std::holds_alternative<T>(r.pipeline.stages[i]));
  return std::get<T>(r.pipeline.stages[i]);
}

void require_error(const char* spec, const std::string& message, std::size_t offset) {
  const spec_result r = parse_pipeline(spec);
  INFO("spec: " << spec);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.error == message);
  REQUIRE(r.offset == offset);
  REQUIRE(r.pipeline.stages.empty());
}

/// Runs a chain on host buffers and returns every output, flattened.
template <class Pipeline>
struct chain_run {
  status code;
  std::vector<float> tokens, sizes;
  std::vector<std::int64_t> source, assign;
  std::vector<std::int32_t> positions;
};

template <class Pipeline>
chain_run<Pipeline> run_chain(const Pipeline& p, const pipeline_inputs<float>& in) {
  const problem prob{in.grid, in.tokens.extent(1)};
  const index_t kept = retained_count(p, prob), n = in.grid.tokens(), dim = prob.dim;
  chain_run<Pipeline> r;
  r.tokens.assign(static_cast<std::size_t>(kept * dim), 0.0f);
  r.sizes.assign(static_cast<std::size_t>(kept), 0.0f);
  r.source.assign(static_cast<std::size_t>(kept), 0);
  r.positions.assign(static_cast<std::size_t>(kept * 3), 0);
  r.assign.assign(static_cast<std::size_t>(n), 0);
  pipeline_outputs<float> out{make_view(r.tokens.data(), kept, dim), make_view(r.source.data(), kept),
                              make_view(r.positions.data(), kept, 3), make_view(r.sizes.data(), kept),
                              make_view(r.assign.data(), n)};
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, prob));
  r.code = apply(cpu<>{}, p, in, out, workspace{ws.data(), ws.size()});
  return r;
}

}  // namespace

TEST_CASE("pipeline spec: stages parse to their policies with the documented defaults", "[pipeline][spec]") {
  const spec_result r = parse_pipeline(" pool(2x2) | tome(r=0.25)|divprune( keep = 64 ) ");
  REQUIRE(r.ok());
  REQUIRE(r.pipeline.stages.size() == 3);
  const pool& p = stage_as<pool>(r, 0);
  REQUIRE(p.kind == pool_kind::average);
  REQUIRE((p.kernel.t == 1 && p.kernel.h == 2 && p.kernel.w == 2));
  REQUIRE((p.stride.t == 1 && p.stride.h == 2 && p.stride.w == 2));
  REQUIRE_FALSE(p.ceil_mode);
  REQUIRE(stage_as<tome_share>(r, 1).share == 0.25);
  const divprune& d = stage_as<divprune>(r, 2);
  REQUIRE(d.keep.by == keep_budget::kind::count);
  REQUIRE(d.keep.k == 64);
  REQUIRE(d.within == scope::global);
  REQUIRE_FALSE(d.allow_repeats);
  REQUIRE(r.pipeline.spec() ==
          "pool(kernel=2x2, stride=kernel, mode=avg, ceil=false) | tome(r=0.25, protect=0) | "
          "divprune(keep=64, round=even, within=global, repeats=false)");
  // The canonical form parses back to itself.
  REQUIRE(parse_pipeline(r.pipeline.spec()).pipeline.spec() == r.pipeline.spec());

  const spec_result s = parse_pipeline("pool(1x2x2, 1x1x1, max, true)|topk(0.5, round=ceil, within=frame, score=norm)");
  const pool& q = stage_as<pool>(s, 0);
  REQUIRE(q.kind == pool_kind::max);
  REQUIRE((q.kernel.t == 1 && q.kernel.h == 2 && q.stride.h == 1));
  REQUIRE(q.ceil_mode);
  const auto& t = stage_as<scored<token_norm, topk>>(s, 1);
  REQUIRE(t.select.keep.by == keep_budget::kind::ratio);
  REQUIRE(t.select.keep.keep_ratio == 0.5);
  REQUIRE(t.select.keep.mode == rounding::ceil);
  REQUIRE(t.select.within == scope::per_frame);

  // r: an integer is a count, a real number a share in [0, 1] (1.0 merges all ToMe allows, as
  // tome_share{1.0} does in a typed chain; 1 is the count 1).
  const spec_result whole = parse_pipeline("tome(r=1.0)");
  REQUIRE(whole.ok());
  REQUIRE(stage_as<tome_share>(whole, 0).share == 1.0);
  REQUIRE(whole.pipeline.spec() == "tome(r=1.0, protect=0)");
  REQUIRE(retained_count(whole.pipeline, problem{image_grid(4, 4), 8}) == 8);
  REQUIRE(stage_as<tome>(parse_pipeline("tome(r=1)"), 0).r == 1);
  REQUIRE_FALSE(parse_pipeline("tome(r=1.5)").ok());
  REQUIRE(stage_as<tome>(parse_pipeline("tome(40, protect=1)"), 0).r == 40);
  REQUIRE(stage_as<tome>(parse_pipeline("tome(40, protect=1)"), 0).protect == 1);
  REQUIRE(stage_as<dct_share>(parse_pipeline("dct"), 0).ratio == 0.6666666666666666);
  REQUIRE(stage_as<dct_lowpass>(parse_pipeline("dct(keep=4x12x12, axes=spatiotemporal)"), 0).keep.h == 12);
  REQUIRE(stage_as<random_subset>(parse_pipeline("random(keep=10, seed=42)"), 0).seed == 42);
  REQUIRE(stage_as<random_subset>(parse_pipeline("random(keep=10, seed=18446744073709551615)"), 0).seed ==
          ~std::uint64_t{0});
  REQUIRE_FALSE(parse_pipeline("random(keep=10, seed=-1)").ok());
  REQUIRE_FALSE(parse_pipeline("random(keep=10, seed=18446744073709551616)").ok());
  REQUIRE(stage_as<cdpruner>(parse_pipeline("cdpruner(keep=0.1, weight=0.25, split=true)"), 0).relevance_weight == 0.25f);
  REQUIRE(stage_as<bilinear>(parse_pipeline("bilinear(14x14)"), 0).height == 14);
  REQUIRE(stage_as<adaptive_pool>(parse_pipeline("adaptive(16x12x12)"), 0).size.t == 16);
  REQUIRE(std::holds_alternative<scored<temporal_similarity, importance_diversity>>(
      parse_pipeline("importance(keep=8, score=temporal)").pipeline.stages[0]));
}

TEST_CASE("pipeline spec: visionzip parses without a [CLS] row, runs as the typed stage, and fits the shapes",
          "[pipeline][spec][visionzip]") {
  const spec_result d = parse_pipeline("visionzip");
  const visionzip& v = stage_as<visionzip>(d, 0);
  REQUIRE(v.dominant == 54);
  REQUIRE(v.contextual == 10);
  REQUIRE_FALSE(v.cls_token);
  REQUIRE(v.merge == contextual_merge::target_plus_mean);
  REQUIRE(d.pipeline.spec() == "visionzip(dominant=54, contextual=10, merge=target_plus_mean)");
  REQUIRE(parse_pipeline(d.pipeline.spec()).pipeline.spec() == d.pipeline.spec());

  const spec_result r = parse_pipeline("pool(2x2) | visionzip(24, 6, group_mean) | topk(keep=16)");
  const visionzip& w = stage_as<visionzip>(r, 1);
  REQUIRE((w.dominant == 24 && w.contextual == 6 && !w.cls_token && w.merge == contextual_merge::group_mean));
  REQUIRE(r.pipeline.spec() ==
          "pool(kernel=2x2, stride=kernel, mode=avg, ceil=false) | "
          "visionzip(dominant=24, contextual=6, merge=group_mean) | topk(keep=16, round=floor, within=global, score=input)");
  REQUIRE(parse_pipeline(r.pipeline.spec()).pipeline.spec() == r.pipeline.spec());

  const token_grid grid{2, 12, 12};
  const index_t dim = 20, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::strided, 13);
  const std::vector<float> scores = tie_heavy_scores(n, 6);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = m.rows;
  in.scores = make_view(scores.data(), n);
  const auto typed = make_pipeline(pool{}, visionzip{24, 6, false, contextual_merge::group_mean},
                                   topk{keep_budget::count(16)});
  const problem prob{grid, dim};
  REQUIRE(retained_count(r.pipeline, prob) == 16);
  const auto a = run_chain(r.pipeline, in);
  const auto b = run_chain(typed, in);
  REQUIRE(a.code == status::ok);
  REQUIRE(b.code == status::ok);
  REQUIRE(std::memcmp(a.tokens.data(), b.tokens.data(), a.tokens.size() * sizeof(float)) == 0);
  REQUIRE(a.source == b.source);
  REQUIRE(a.positions == b.positions);
  REQUIRE(a.sizes == b.sizes);
  REQUIRE(a.assign == b.assign);

  // Counts are absolute: 72 pooled tokens hold 24 + 6 but not the default 54 + 10 = 64 after a
  // 3 x 3 pool (32 tokens). A count past any grid is refused there too, without overflow.
  REQUIRE(retained_count(parse_pipeline("pool(2x2) | visionzip").pipeline, prob) == 64);
  const spec_result small = parse_pipeline("pool(3x3) | visionzip");
  REQUIRE(can_implement(small.pipeline, prob) == status::budget_exceeds_input);
  REQUIRE(failing_stage(small.pipeline, prob) == 1);
  const spec_result huge = parse_pipeline("visionzip(9223372036854775807, 1)");
  REQUIRE(can_implement(huge.pipeline, prob) == status::budget_exceeds_input);
  REQUIRE(retained_count(huge.pipeline, prob) == 0);
}

TEST_CASE("pipeline spec: every catalogue entry parses with only its required parameters", "[pipeline][spec]") {
  const std::vector<stage_info> catalog = pipeline_catalog();
  REQUIRE(catalog.size() == 13);
  for (const stage_info& info : catalog) {
    std::string spec = std::string(info.name) + "(";
    bool first = true;
    for (const stage_param& p : info.params) {
      if (*p.fallback != '\0') continue;
      const std::string value = std::string(p.name) == "keep" ? "8" : std::string(p.name) == "r" ? "4"
                              : std::string(info.name) == "adaptive" ? "1x4x4" : "4x4";
      spec += (first ? "" : ", ") + std::string(p.name) + "=" + value;
      first = false;
    }
    INFO("spec: " << spec);
    const spec_result r = parse_pipeline(spec + ")");
    REQUIRE(r.ok());
    REQUIRE(r.pipeline.canonical.size() == 1);
    for (const stage_param& p : info.params)  // every parameter is written out, defaults included
      REQUIRE(r.pipeline.canonical[0].find(std::string(p.name) + "=") != std::string::npos);
    REQUIRE(std::strlen(info.paper) > 0);
    REQUIRE(std::strlen(info.count_rule) > 0);
  }
}

TEST_CASE("pipeline spec: a parsed chain runs exactly as the typed one", "[pipeline][spec]") {
  const token_grid grid{2, 12, 12};
  const index_t dim = 20, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::strided, 9);
  const std::vector<float> scores = tie_heavy_scores(n, 4);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = m.rows;
  in.scores = make_view(scores.data(), n);

  const spec_result r = parse_pipeline("pool(2x2) | tome(r=0.25) | topk(keep=0.5) | divprune(keep=16)");
  REQUIRE(r.ok());
  const auto typed = make_pipeline(pool{}, tome_share{0.25, 0}, topk{keep_budget::ratio(0.5, rounding::floor)},
                                   divprune{keep_budget::count(16)});
  const problem prob{grid, dim};
  REQUIRE(retained_count(r.pipeline, prob) == 16);
  REQUIRE(retained_count(typed, prob) == 16);
  const auto a = run_chain(r.pipeline, in);
  const auto b = run_chain(typed, in);
  REQUIRE(a.code == status::ok);
  REQUIRE(b.code == status::ok);
  REQUIRE(std::memcmp(a.tokens.data(), b.tokens.data(), a.tokens.size() * sizeof(float)) == 0);
  REQUIRE(a.source == b.source);
  REQUIRE(a.positions == b.positions);
  REQUIRE(a.sizes == b.sizes);
  REQUIRE(a.assign == b.assign);

  // A chain that cannot run names its stage: 72 pooled tokens, then 36 after ToMe; 40 > 36.
  const spec_result big = parse_pipeline("pool(2x2)|tome(r=0.5)|topk(keep=40)");
  REQUIRE(can_implement(big.pipeline, prob) == status::budget_exceeds_input);
  REQUIRE(failing_stage(big.pipeline, prob) == 2);
  REQUIRE(retained_count(big.pipeline, prob) == 0);
  REQUIRE(can_implement(any_pipeline{}, prob) == status::invalid_parameter);
}

TEST_CASE("pipeline spec: each bad spec gets one precise error", "[pipeline][spec]") {
  require_error("", "empty spec: name at least one stage, e.g. pool(2x2)", 0);
  require_error("   ", "empty spec: name at least one stage, e.g. pool(2x2)", 3);
  require_error("pool|tomee(r=4)",
                "unknown policy 'tomee' (known: pool, adaptive, bilinear, dct, topk, uniform, random, divprune, "
                "kcenter, importance, cdpruner, tome, visionzip)",
                5);
  require_error("tome(r=4, q=1)", "unknown parameter 'q' for tome (it takes r, protect)", 10);
  require_error("tome(r=4, r=5)", "duplicate parameter 'r' for tome", 10);
  require_error("tome(4, r=5)", "duplicate parameter 'r' for tome", 8);
  require_error("tome(r=4, 1)", "positional value '1' after a named parameter", 10);
  require_error("tome(4, 1, 2)", "too many values for tome: '2'", 11);
  require_error("topk(keep=0)", "parameter 'keep' of topk: '0' is not a count >= 1 or a ratio in (0, 1]", 10);
  require_error("topk(keep=1.5)", "parameter 'keep' of topk: '1.5' is not a count >= 1 or a ratio in (0, 1]", 10);
  require_error("topk(keep=8, round=up)", "parameter 'round' of topk: 'up' is not floor, even, ceil or away", 19);
  require_error("topk(keep=8, within=video)", "parameter 'within' of topk: 'video' is not global or frame", 20);
  require_error("topk(keep=8, score=cls)",
                "parameter 'score' of topk: 'cls' is not input, norm, query or temporal", 19);
  require_error("tome(r=-1)", "parameter 'r' of tome: '-1' is not a count >= 0 or a share in [0, 1]", 7);
  require_error("cdpruner(keep=8, weight=2)", "parameter 'weight' of cdpruner: '2' is not a number in [0, 1]", 24);
  require_error("pool(2x2x2x2)", "parameter 'kernel' of pool: '2x2x2x2' is not a size HxW or TxHxW", 5);
  require_error("pool(0x2)", "parameter 'kernel' of pool: '0x2' is not a size HxW or TxHxW", 5);
  require_error("adaptive(12x12)", "parameter 'size' of adaptive: '12x12' is not a size TxHxW", 9);
  require_error("dct(keep=0.5, axes=temporal)",
                "parameter 'keep' of dct: '0.5' is not a size TxHxW, or a side ratio in (0, 1] with axes=spatial", 9);
  require_error("topk", "stage 'topk' needs parameter 'keep' (tokens kept: a count (64) or a ratio of the stage's input (0.25))", 0);
  require_error("pool||topk(keep=4)", "empty stage after '|'", 5);
  require_error("pool|", "empty stage after '|'", 5);
  require_error("|pool", "expected a stage name, found '|'", 0);
  require_error("pool(2x2))", "unexpected ')' after a stage; stages are separated by '|'", 9);
  require_error("pool(2x2) tome(r=4)", "unexpected 't' after a stage; stages are separated by '|'", 10);
  require_error("pool(2x2", "unterminated arguments of pool: missing ')'", 8);
  require_error("pool(2x2,)", "expected a value, found ')'", 9);
  require_error("pool(=2x2)", "'=' without a parameter name", 5);
  require_error("pool(2x2;3)", "unexpected ';' in the arguments of pool", 8);
  require_error("tome(r=)", "expected a value, found ')'", 7);
  require_error("visionzip(dominant=-1)", "parameter 'dominant' of visionzip: '-1' is not a count >= 0", 19);
  require_error("visionzip(0.5)", "parameter 'dominant' of visionzip: '0.5' is not a count >= 0", 10);
  require_error("visionzip(dominant=0, contextual=0)",
                "parameter 'contextual' of visionzip: '0' is not a count >= 0, with dominant + contextual >= 1", 33);
  require_error("visionzip(8, -2)",
                "parameter 'contextual' of visionzip: '-2' is not a count >= 0, with dominant + contextual >= 1", 13);
  require_error("pool | visionzip(merge=sum)",
                "parameter 'merge' of visionzip: 'sum' is not target_plus_mean or group_mean", 23);
  require_error("visionzip(cls_token=true)",
                "unknown parameter 'cls_token' for visionzip (it takes dominant, contextual, merge)", 10);

  const std::string too_long(max_spec_length + 1, 'a');
  require_error(too_long.c_str(), "spec is 4097 characters; the limit is 4096", max_spec_length);
  std::string many = "pool(1x1)";
  for (std::size_t i = 1; i <= max_spec_stages; ++i) many += "|pool(1x1)";
  require_error(many.c_str(), "more than 32 stages", 32 * 10);
}
