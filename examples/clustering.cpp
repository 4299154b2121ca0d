// clustering.cpp — merging by clustering: DPC-kNN picks one center per cluster of similar
// tokens, every other token joins its nearest center, and each cluster becomes one token; HoliTom
// does that to the still tokens of a video window and keeps the moving ones by attention, then
// folds image tokens into their most similar kept ones inside the LLM. The docs quote the
// regions between the example markers verbatim; the checks around them make sure their comments
// tell the truth.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/clustering.hpp>
#include <tokred/cpu/holitom.hpp>
#include <tokred/cpu/holitom_inner.hpp>

#include "scene_checks.hpp"

namespace {

/// 3 x 4 image tokens of 2 values: three tight groups of four (the left two columns of the top
/// two patch rows near (0, 0), their right two columns near (4, 0), the bottom row near (0, 4)),
/// each with one token closer to its neighbours than the rest.
std::vector<float> grouped_tokens() {
  const float rows[12][2] = {{0.0f, 0.0f},  {0.25f, 0.0f}, {4.0f, 0.0f},  {4.25f, 0.25f},
                             {0.0f, 0.25f}, {0.25f, 0.5f}, {4.0f, 0.25f}, {4.5f, 0.0f},
                             {0.0f, 4.0f},  {0.25f, 4.0f}, {0.5f, 4.0f},  {0.25f, 4.25f}};
  std::vector<float> x;
  for (const auto& r : rows) x.insert(x.end(), {r[0], r[1]});
  return x;
}

void clustering_scene() {
  std::printf("dpc_knn\n");
  const std::vector<float> image = grouped_tokens();
  // example-begin dpc_knn
  // Merge 12 image tokens (3 x 4 patches of 2 values) into 3 by DPC-kNN: a token is a center
  // when it is dense (close to its k = min(7, 3) nearest tokens) and far from any denser token;
  // the others join their nearest center. HoliTom's blend keeps 0.6 of the center's row and
  // takes 0.4 of its members' mean.
  const tokred::dpc_knn policy{/*clusters=*/3, /*k=*/7, /*beta=*/0.6f, tokred::cluster_merge::blend};
  const tokred::problem prob{tokred::image_grid(3, 4), 2};
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 3
  // Share 0 computes all 12 x 12 distances: the workspace holds them (4·N² bytes and a little).
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(kept * 2);            // (kept, dim) one row per cluster
  std::vector<std::int64_t> source(kept);         // (kept,) each cluster's center, ascending
  std::vector<std::int32_t> positions(kept * 3);  // (kept, 3) the center's (t, h, w)
  std::vector<float> sizes(kept);                 // (kept,) tokens each cluster stands for
  std::vector<std::int64_t> assign(12);           // (tokens,) the cluster of every token
  tokred::merge_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view<const float>(image.data(), 12, 2);  // (tokens, dim)
  const tokred::merge_outputs<float> out{
      tokred::make_view(merged.data(), kept, 2), tokred::make_view(source.data(), kept),
      tokred::make_view(positions.data(), kept, 3), tokred::make_view(sizes.data(), kept),
      tokred::make_view(assign.data(), 12)};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. One center per group, its densest token: source = {0, 6, 9}, sizes = {4, 4, 4},
  // assign = {0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2}. Cluster 0 is 0.6·(0, 0) + 0.4·(the mean of
  // tokens 1, 4 and 5) = (0.0666…, 0.1).
  // example-end dpc_knn
  SCENE_CHECK(s == tokred::status::ok && kept == 3);
  SCENE_CHECK((source == std::vector<std::int64_t>{0, 6, 9}));
  SCENE_CHECK((sizes == std::vector<float>{4, 4, 4}));
  SCENE_CHECK((assign == std::vector<std::int64_t>{0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 2, 2}));
  SCENE_CHECK(positions[3] == 0 && positions[4] == 1 && positions[5] == 2);  // token 6 at (0, 1, 2)
  SCENE_CHECK(std::abs(merged[0] - 0.4f * (0.25f + 0.0f + 0.25f) / 3) < 1e-6f);
  SCENE_CHECK(std::abs(merged[1] - (0.4f * (0.0f + 0.25f + 0.5f) / 3)) < 1e-6f);
  std::printf("  centers %lld %lld %lld\n", static_cast<long long>(source[0]), static_cast<long long>(source[1]),
              static_cast<long long>(source[2]));
}

/// 4 frames of 2 x 3 patches of 2 values: the top row and the first bottom patch never change
/// (two pairs of near-equal rows), the last two bottom patches flip sign every frame.
std::vector<float> still_and_moving_video() {
  const float frame[6][2] = {{1.0f, 1.0f}, {1.25f, 1.0f}, {4.0f, 0.0f}, {4.0f, 0.25f}, {1.0f, 2.0f}, {-2.0f, 1.0f}};
  std::vector<float> x;
  for (int t = 0; t < 4; ++t)
    for (int p = 0; p < 6; ++p) {
      const float sign = p >= 4 && t % 2 == 1 ? -1.0f : 1.0f;
      x.insert(x.end(), {sign * frame[p][0], sign * frame[p][1]});
    }
  return x;
}

void holitom_scene() {
  std::printf("holitom\n");
  const std::vector<float> video = still_and_moving_video();
  const std::vector<float> attention = {0.1f, 0.1f, 0.1f, 0.1f, 0.4f, 0.2f,   // frame 0: patch 4 gets more
                                        0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.5f,   // frame 1: patch 5
                                        0.1f, 0.1f, 0.1f, 0.1f, 0.3f, 0.3f,   // frame 2: a tie
                                        0.1f, 0.1f, 0.1f, 0.1f, 0.2f, 0.4f};  // frame 3: patch 5
  // example-begin holitom
  // HoliTom on a 4-frame video of 2 x 3 patches (2 values each), keeping r = 25 % of its 24 tokens.
  // Four patches stay still through all 4 frames (cosine > τ = 0.8 between frames), so the
  // segmentation makes one window of 4 frames, saving 4·3 = 12 tokens; the rescaled ratio is
  // r' = min(0.25 / (12/24), 1) = 0.5. The 4 still patches become their means over the window,
  // then round(4·0.5) = 2 DPC-kNN clusters; each frame keeps ⌈2·0.5⌉ = 1 of its 2 moving patches,
  // the one with the most attention.
  tokred::holitom policy{};
  policy.retain_ratio = 0.25;
  const tokred::problem prob{tokred::token_grid{4, 2, 3}, 2};
  const tokred::index_t bound = tokred::retained_count(policy, prob);  // 24: the count depends on the data
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(bound * 2);            // (bound, dim) rows [0, count) written
  std::vector<std::int64_t> source(bound);         // (bound,) each row's representative token
  std::vector<float> sizes(bound);                 // (bound,) tokens each row stands for
  std::vector<std::int64_t> assign(24);            // (tokens,) every token's row, −1: dropped
  std::vector<std::int64_t> count(1), window_start(4);
  tokred::holitom_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view<const float>(video.data(), 24, 2);   // (tokens, dim) pooled features
  in.attention = tokred::make_view<const float>(attention.data(), 24);  // (tokens,) received attention
  tokred::holitom_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), bound, 2);
  out.source = tokred::make_view(source.data(), bound);
  out.sizes = tokred::make_view(sizes.data(), bound);
  out.assign = tokred::make_view(assign.data(), 24);
  out.count = tokred::make_view(count.data(), 1);
  out.window_start = tokred::make_view(window_start.data(), 4);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok, count = {6}, window_start = {0, 0, 0, 0}. The window's two still clusters first
  // (centers: patches 0 and 2 of frame 0, each standing for 2 patches × 4 frames), then one
  // moving patch per frame: source = {0, 2, 4, 11, 16, 23}, sizes = {8, 8, 1, 1, 1, 1}. Frame 2's
  // tie goes to the lower patch. Cluster 0 is 0.6·(1, 1) + 0.4·(1.25, 1) = (1.1, 1).
  // example-end holitom
  SCENE_CHECK(s == tokred::status::ok && bound == 24);
  SCENE_CHECK((count == std::vector<std::int64_t>{6}));
  SCENE_CHECK((window_start == std::vector<std::int64_t>{0, 0, 0, 0}));
  source.resize(6);
  sizes.resize(6);
  SCENE_CHECK((source == std::vector<std::int64_t>{0, 2, 4, 11, 16, 23}));
  SCENE_CHECK((sizes == std::vector<float>{8, 8, 1, 1, 1, 1}));
  SCENE_CHECK(std::abs(merged[0] - 1.1f) < 1e-6f && std::abs(merged[1] - 1.0f) < 1e-6f);
  SCENE_CHECK(std::abs(merged[2] - 4.0f) < 1e-6f && std::abs(merged[3] - 0.1f) < 1e-6f);
  SCENE_CHECK(assign[1] == 0 && assign[21] == 1 && assign[5] == -1 && assign[11] == 3);
  std::printf("  %lld rows, sources %lld %lld %lld %lld %lld %lld\n", static_cast<long long>(count[0]),
              static_cast<long long>(source[0]), static_cast<long long>(source[1]), static_cast<long long>(source[2]),
              static_cast<long long>(source[3]), static_cast<long long>(source[4]), static_cast<long long>(source[5]));
}

void holitom_inner_scene() {
  std::printf("holitom_inner\n");
  // 6 image tokens of 2 values at the merge layer, and the last query's attention to them.
  const std::vector<float> hidden = {1, 0.25f, 1, 0, 0.8f, 0.6f, 0.6f, 0.8f, 4, 3, 0, 2};
  const std::vector<float> attention = {0.1f, 0.5f, 0.2f, 0.7f, 0.1f, 0.6f};
  // example-begin holitom_inner
  // HoliTom's merge inside the LLM: keep round(6·(1 − 0.5)) = 3 image tokens, those the last query
  // attends to most (3, 5, 1), and fold every other token into its most cosine-similar kept one,
  // in index order, by halving: h ← (h + x) / 2.
  const tokred::holitom_inner policy{/*r=*/0.5};
  const tokred::problem prob{tokred::sequence_grid(6), 2};
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 3
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(kept * 2);     // (kept, dim) the kept tokens, in index order
  std::vector<std::int64_t> source(kept);  // (kept,) their indices: RoPE positions start + source
  std::vector<float> sizes(kept);          // (kept,) 1 + the tokens folded in
  std::vector<std::int64_t> assign(6);     // (tokens,) every token's row
  const tokred::holitom_inner_inputs<float> in{tokred::make_view<const float>(hidden.data(), 6, 2),
                                               tokred::make_view<const float>(attention.data(), 6)};
  const tokred::holitom_inner_outputs<float> out{
      tokred::make_view(merged.data(), kept, 2), tokred::make_view(source.data(), kept),
      tokred::make_view(sizes.data(), kept), tokred::make_view(assign.data(), 6)};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. source = {1, 3, 5}, assign = {0, 0, 1, 1, 1, 2}, sizes = {2, 3, 1}: token 0 joins
  // token 1 (1, 0) → (1, 0.125); tokens 2 and 4 join token 3 (0.6, 0.8) → (0.7, 0.7) → (2.35, 1.85).
  // example-end holitom_inner
  SCENE_CHECK(s == tokred::status::ok && kept == 3);
  SCENE_CHECK((source == std::vector<std::int64_t>{1, 3, 5}));
  SCENE_CHECK((assign == std::vector<std::int64_t>{0, 0, 1, 1, 1, 2}));
  SCENE_CHECK((sizes == std::vector<float>{2, 3, 1}));
  SCENE_CHECK(merged[0] == 1.0f && merged[1] == 0.125f);
  SCENE_CHECK(std::abs(merged[2] - 2.35f) < 1e-6f && std::abs(merged[3] - 1.85f) < 1e-6f);
  SCENE_CHECK(merged[4] == 0.0f && merged[5] == 2.0f);
  std::printf("  kept %lld %lld %lld\n", static_cast<long long>(source[0]), static_cast<long long>(source[1]),
              static_cast<long long>(source[2]));
}

}  // namespace

int main() {
  clustering_scene();
  holitom_scene();
  holitom_inner_scene();
  return scene::finish();
}
