// pipelines.cpp — chains of reductions as one policy: a typed pipeline, the same chain from a
// spec string, the provenance that traces every output back to the originals, VisionZip after
// pooling, and the errors a bad spec gets. Each scene checks what its comments claim.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

namespace {

/// Smooth features with a few bright spots: neighbours are similar, as an encoder's are.
std::vector<float> make_features(const tokred::token_grid& grid, tokred::index_t dim) {
  std::vector<float> x(static_cast<std::size_t>(grid.tokens() * dim));
  for (tokred::index_t i = 0; i < grid.tokens(); ++i) {
    const tokred::token_position p = grid.position(i);
    for (tokred::index_t c = 0; c < dim; ++c)
      x[static_cast<std::size_t>(i * dim + c)] =
          std::sin(0.3f * static_cast<float>(p.h + c)) * std::cos(0.2f * static_cast<float>(p.w * (c % 5 + 1))) +
          (i % 97 == 0 ? 3.0f : 0.0f) + 0.1f * static_cast<float>(p.t);
  }
  return x;
}

void typed_chain() {
  std::printf("typed chain: pool 2x2, then ToMe, then DivPrune\n");
  const tokred::token_grid grid = tokred::image_grid(24, 24);  // LLaVA-1.5's 576 tokens
  const tokred::index_t dim = 64;
  const std::vector<float> features = make_features(grid, dim);
  // example-begin typed
  // pool 2x2 (576 -> 144), merge a quarter of what arrives (144 -> 108), keep 32 diverse tokens.
  const auto chain = tokred::make_pipeline(
      tokred::pool{}, tokred::tome_share{0.25, 0}, tokred::divprune{tokred::keep_budget::count(32)});
  const tokred::problem prob{grid, dim};
  const tokred::index_t kept = tokred::retained_count(chain, prob);  // 32, known before any data

  std::vector<float> tokens(kept * dim), sizes(kept);
  std::vector<std::int64_t> source(kept), assign(grid.tokens());
  std::vector<std::int32_t> positions(kept * 3);
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu<>{}, chain, prob));

  tokred::pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = tokred::make_view(features.data(), grid.tokens(), dim);  // (tokens, dim)
  const tokred::pipeline_outputs<float> out{
      tokred::make_view(tokens.data(), kept, dim),    // (kept, dim)
      tokred::make_view(source.data(), kept),         // (kept,) original token each stands for
      tokred::make_view(positions.data(), kept, 3),   // (kept, 3) its original (t, h, w)
      tokred::make_view(sizes.data(), kept),          // (kept,) originals each stands for
      tokred::make_view(assign.data(), grid.tokens())};  // (tokens,) slot of every original, or -1
  const tokred::status s =
      tokred::apply(tokred::cpu<>{}, chain, in, out, {scratch.data(), scratch.size()});
  // example-end typed
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(kept == 32);
  // Every original is either dropped or counted once in the size of the slot it landed in.
  const auto landed = std::count_if(assign.begin(), assign.end(), [](std::int64_t a) { return a >= 0; });
  SCENE_CHECK(std::accumulate(sizes.begin(), sizes.end(), 0.0) == static_cast<double>(landed));
  // An output's source token lands in that output.
  bool own_slot = true;
  for (tokred::index_t j = 0; j < kept; ++j) own_slot = own_slot && assign[source[j]] == j;
  SCENE_CHECK(own_slot);
  std::printf("  %lld tokens kept; they stand for %lld of the 576 originals\n",
              static_cast<long long>(kept), static_cast<long long>(landed));
}

void spec_chain() {
  std::printf("the same chain from a spec string\n");
  // example-begin spec
  const tokred::spec_result parsed = tokred::parse_pipeline("pool(2x2) | tome(r=0.25) | divprune(keep=32)");
  if (!parsed.ok()) std::printf("bad spec at %zu: %s\n", parsed.offset, parsed.error.c_str());
  const tokred::any_pipeline& chain = parsed.pipeline;
  // Every parameter after defaults, for a log or a report:
  // pool(kernel=2x2, stride=kernel, mode=avg, ceil=false) | tome(r=0.25, protect=0) |
  // divprune(keep=32, round=even, within=global, repeats=false)
  std::printf("  %s\n", chain.spec().c_str());
  // any_pipeline has the contract of a typed one: retained_count, workspace_bytes, apply.
  // example-end spec
  SCENE_CHECK(parsed.ok());
  SCENE_CHECK(chain.spec() ==
              "pool(kernel=2x2, stride=kernel, mode=avg, ceil=false) | tome(r=0.25, protect=0) | "
              "divprune(keep=32, round=even, within=global, repeats=false)");

  const tokred::token_grid grid = tokred::image_grid(24, 24);
  const tokred::index_t dim = 64;
  const std::vector<float> features = make_features(grid, dim);
  const tokred::problem prob{grid, dim};
  const auto typed = tokred::make_pipeline(
      tokred::pool{}, tokred::tome_share{0.25, 0}, tokred::divprune{tokred::keep_budget::count(32)});
  SCENE_CHECK(tokred::retained_count(chain, prob) == tokred::retained_count(typed, prob));
  std::vector<std::int64_t> a(32), b(32);
  tokred::pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = tokred::make_view(features.data(), grid.tokens(), dim);
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu<>{}, chain, prob));
  tokred::pipeline_outputs<float> out;
  out.source = tokred::make_view(a.data(), 32);
  SCENE_CHECK(tokred::apply(tokred::cpu<>{}, chain, in, out, {scratch.data(), scratch.size()}) == tokred::status::ok);
  scratch.resize(tokred::workspace_bytes(tokred::cpu<>{}, typed, prob));
  out.source = tokred::make_view(b.data(), 32);
  SCENE_CHECK(tokred::apply(tokred::cpu<>{}, typed, in, out, {scratch.data(), scratch.size()}) == tokred::status::ok);
  SCENE_CHECK(a == b);
}

void visionzip_chain() {
  std::printf("VisionZip after pooling, from a spec\n");
  const tokred::token_grid grid = tokred::image_grid(24, 24);
  const tokred::index_t dim = 64;
  const std::vector<float> features = make_features(grid, dim);
  std::vector<float> cls_attention(static_cast<std::size_t>(grid.tokens()));  // a stand-in: one per patch
  for (tokred::index_t i = 0; i < grid.tokens(); ++i)
    cls_attention[static_cast<std::size_t>(i)] = features[static_cast<std::size_t>(i * dim)] + 0.001f * static_cast<float>(i % 13);
  // example-begin visionzip
  // Pool 2x2 (576 -> 144), then VisionZip: keep the 28 pooled tokens whose source patch the [CLS]
  // query attends to most, and merge the other 116 into 4 contextual tokens: 32 in all. A chain's
  // tokens have no [CLS] row, so the spec builds visionzip{28, 4, /*cls_token=*/false}.
  const tokred::spec_result parsed = tokred::parse_pipeline("pool(2x2) | visionzip(dominant=28, contextual=4)");
  const tokred::any_pipeline& chain = parsed.pipeline;
  const tokred::problem prob{grid, dim};
  const tokred::index_t kept = tokred::retained_count(chain, prob);  // 28 + 4 = 32

  std::vector<float> tokens(kept * dim), sizes(kept);
  std::vector<std::int64_t> source(kept), assign(grid.tokens());
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu<>{}, chain, prob));
  tokred::pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = tokred::make_view(features.data(), grid.tokens(), dim);        // (tokens, dim)
  in.scores = tokred::make_view(cls_attention.data(), grid.tokens());        // (tokens,) per original
  tokred::pipeline_outputs<float> out;                                       // positions not requested
  out.tokens = tokred::make_view(tokens.data(), kept, dim);                  // (kept, dim)
  out.source = tokred::make_view(source.data(), kept);                       // (kept,)
  out.sizes = tokred::make_view(sizes.data(), kept);                         // (kept,)
  out.assign = tokred::make_view(assign.data(), grid.tokens());              // (tokens,)
  const tokred::status s = tokred::apply(tokred::cpu<>{}, chain, in, out, {scratch.data(), scratch.size()});
  // s == ok. Each dominant token is one 2x2 window: size 4. Each contextual token stands for the
  // windows merged into it, 4 originals each; nothing is dropped, so the sizes add up to 576.
  // example-end visionzip
  SCENE_CHECK(parsed.ok());
  SCENE_CHECK(chain.spec() ==
              "pool(kernel=2x2, stride=kernel, mode=avg, ceil=false) | "
              "visionzip(dominant=28, contextual=4, merge=target_plus_mean)");
  SCENE_CHECK(kept == 32);
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(std::all_of(sizes.begin(), sizes.begin() + 28, [](float z) { return z == 4.0f; }));
  SCENE_CHECK(std::all_of(sizes.begin() + 28, sizes.end(), [](float z) { return z >= 4.0f && std::fmod(z, 4.0f) == 0.0f; }));
  SCENE_CHECK(std::accumulate(sizes.begin(), sizes.end(), 0.0) == 576.0);
  SCENE_CHECK(std::none_of(assign.begin(), assign.end(), [](std::int64_t a) { return a < 0; }));
  bool own_slot = true;
  for (tokred::index_t j = 0; j < kept; ++j) own_slot = own_slot && assign[source[j]] == j;
  SCENE_CHECK(own_slot);
  // The same chain typed: visionzip with cls_token = false.
  const auto typed = tokred::make_pipeline(tokred::pool{}, tokred::visionzip{28, 4, false});
  std::vector<std::int64_t> typed_source(kept);
  tokred::pipeline_outputs<float> typed_out;
  typed_out.source = tokred::make_view(typed_source.data(), kept);
  scratch.resize(tokred::workspace_bytes(tokred::cpu<>{}, typed, prob));
  SCENE_CHECK(tokred::apply(tokred::cpu<>{}, typed, in, typed_out, {scratch.data(), scratch.size()}) == tokred::status::ok);
  SCENE_CHECK(typed_source == source);
  std::printf("  %s: %lld tokens, the contextual ones standing for %g, %g, %g and %g originals\n",
              chain.spec().c_str(), static_cast<long long>(kept), sizes[28], sizes[29], sizes[30], sizes[31]);
}

void bad_specs() {
  std::printf("bad specs\n");
  // example-begin errors
  // Each error names the offending token; `offset` is where it starts in the spec.
  // unknown policy 'tomee' (known: pool, adaptive, bilinear, dct, topk, uniform, random, ...)
  const tokred::spec_result unknown = tokred::parse_pipeline("pool | tomee(r=8)");
  // unknown parameter 'q' for tome (it takes r, protect)
  const tokred::spec_result param = tokred::parse_pipeline("tome(r=8, q=1)");
  // parameter 'keep' of topk: '0' is not a count >= 1 or a ratio in (0, 1]
  const tokred::spec_result range = tokred::parse_pipeline("topk(keep=0)");
  // example-end errors
  SCENE_CHECK(!unknown.ok() && unknown.offset == 7);
  SCENE_CHECK(!param.ok() && param.error == "unknown parameter 'q' for tome (it takes r, protect)");
  SCENE_CHECK(!range.ok() && range.error == "parameter 'keep' of topk: '0' is not a count >= 1 or a ratio in (0, 1]");
  std::printf("  %s\n", unknown.error.c_str());

  // A spec that parses can still not fit the shapes: the status names the reason, and
  // failing_stage the stage. 576 -> 144 after pooling; 200 cannot be kept of 144.
  const tokred::spec_result big = tokred::parse_pipeline("pool(2x2) | topk(keep=200, score=norm)");
  const tokred::problem prob{tokred::image_grid(24, 24), 64};
  SCENE_CHECK(tokred::can_implement(big.pipeline, prob) == tokred::status::budget_exceeds_input);
  SCENE_CHECK(tokred::failing_stage(big.pipeline, prob) == 1);
}

}  // namespace

int main() {
  typed_chain();
  spec_chain();
  visionzip_chain();
  bad_specs();
  return scene::finish();
}
