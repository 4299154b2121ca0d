// merge_variants.cpp — the policies built on ToMe's merge: DyMU's threshold merge (how many
// tokens merge depends on the image), its calibration and its virtual unmerging, and AIM's
// per-frame repeated merging. The docs quote the regions between the example markers verbatim;
// the checks around them make sure the comments in those regions tell the truth.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/aim.hpp>
#include <tokred/cpu/dymu.hpp>

#include "scene_checks.hpp"

namespace {

/// 4 x 4 image tokens of 2 values, as angles on the unit circle: each patch row turns a little
/// from the one above, the right half of each row points elsewhere than the left half, and
/// horizontal neighbours differ by 0.02·(row + 1) radians (`spread` scales that), so the top
/// rows hold the closest pairs.
std::vector<float> image_tokens(double spread = 1.0) {
  std::vector<float> rows;  // (tokens, dim) = (16, 2)
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 4; ++w) {
      const double angle = 0.4 * h + (w >= 2 ? 1.5 : 0.0) + spread * 0.02 * (w % 2) * (h + 1);
      rows.push_back(static_cast<float>(std::cos(angle)));
      rows.push_back(static_cast<float>(std::sin(angle)));
    }
  return rows;
}

void dymu_scene() {
  std::printf("dymu\n");
  const std::vector<float> image = image_tokens();
  // example-begin dymu
  // DyMU merges every A token (even index) whose best cosine to a B token (odd index) is above
  // the layer's threshold θ, so the count depends on the image. The outputs are sized by the
  // bound N = 16 (nothing merged); `count` says how many rows were filled.
  const tokred::dymu policy{/*theta=*/0.999f, /*protect=*/0, /*max_r=*/0, tokred::merge_order::by_position};
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  const tokred::index_t bound = tokred::retained_count(policy, prob);  // 16
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(bound * 2);           // (bound, dim) size-weighted means
  std::vector<float> sizes(bound);                // (bound,) originals per output token
  std::vector<std::int64_t> source(bound);        // (bound,) representative input token
  std::vector<std::int64_t> assign(16);           // (tokens,) output slot of every input token
  std::int64_t count = 0;                         // how many rows were filled
  tokred::merge_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(image.data(), 16, 2);  // (tokens, dim); inside a ViT, keys as in.metric
  tokred::counted_merge_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), bound, 2);
  out.source = tokred::make_view(source.data(), bound);
  out.sizes = tokred::make_view(sizes.data(), bound);
  out.assign = tokred::make_view(assign.data(), 16);
  out.count = tokred::make_view(&count, 1);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Horizontal neighbours in patch row h are cos(0.02·(h + 1)) apart: 0.9998 and 0.9992
  // in the top two rows pass θ = 0.999, so the A tokens 0, 2, 4, 6 merge into 1, 3, 5, 7 and
  // count = 12: exactly tome{4}'s result. source = {1, 3, 5, 7, 8, 9, …, 15}.
  // example-end dymu
  SCENE_CHECK(s == tokred::status::ok && bound == 16 && count == 12);
  SCENE_CHECK((std::vector<std::int64_t>(source.begin(), source.begin() + 12) ==
               std::vector<std::int64_t>{1, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  SCENE_CHECK(sizes[0] == 2 && sizes[3] == 2 && sizes[4] == 1);
  std::vector<float> same(12 * 2);
  tokred::merge_outputs<float> tome_out{};
  tome_out.tokens = tokred::make_view(same.data(), 12, 2);
  std::vector<std::byte> tome_scratch(tokred::workspace_bytes(tokred::cpu{}, tokred::tome{4}, prob));
  SCENE_CHECK(tokred::apply(tokred::cpu{}, tokred::tome{4, 0, tokred::merge_order::by_position}, in, tome_out,
                            {tome_scratch.data(), tome_scratch.size()}) == tokred::status::ok);
  SCENE_CHECK((std::vector<float>(merged.begin(), merged.begin() + 24) == same));
  std::printf("  16 tokens -> %lld at theta 0.999\n", static_cast<long long>(count));
}

void dymu_calibration_scene() {
  std::printf("dymu calibration\n");
  // example-begin dymu-calibrate
  // DToMe's threshold finding for one layer: run the matching on every image of a calibration
  // batch, take the first edge the batch leaves unmerged when each image gives up r = 2 tokens,
  // and keep a running mean over batches. Two batches of two images each here.
  const tokred::index_t a = tokred::a_tokens(16);  // 8 A tokens per image: the edges
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  const tokred::tome_match matching{/*protect=*/0};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, matching, prob));
  float theta = 0;
  tokred::index_t batches = 0;
  const double spreads[2][2] = {{1.0, 2.0}, {0.5, 3.0}};  // each image's neighbour spread
  for (const auto& batch : spreads) {
    std::vector<float> best(2 * a);         // (images, a) each A token's best cosine
    std::vector<std::int64_t> partner(a);   // (a,) its B partner (not needed here)
    for (int image = 0; image < 2; ++image) {
      const std::vector<float> x = image_tokens(batch[image]);
      tokred::merge_inputs<float> in{};
      in.grid = prob.grid;
      in.tokens = tokred::make_view(x.data(), 16, 2);
      const tokred::match_outputs<> out{tokred::make_view(best.data() + image * a, a),
                                        tokred::make_view(partner.data(), a)};
      if (tokred::apply(tokred::cpu{}, matching, in, out, {scratch.data(), scratch.size()}) != tokred::status::ok) return;
    }
    float batch_theta = 0;
    if (tokred::dymu_batch_threshold(tokred::make_view<const float>(best.data(), 2, a), /*r=*/2, batch_theta) !=
        tokred::status::ok)
      return;
    theta = tokred::dymu_running_threshold(theta, batches++, batch_theta);
  }
  // The first batch's closest edges are 0.02, 0.02, 0.04, 0.04 radians apart; the fifth, the
  // first left unmerged, is 0.04 too: θ₁ = cos(0.04). The second batch's fifth: θ₂ = cos(0.03).
  // θ = (θ₁ + θ₂) / 2 = 0.999375; at inference, dymu{theta} merges what passes it.
  // example-end dymu-calibrate
  SCENE_CHECK(batches == 2);
  SCENE_CHECK(std::abs(theta - 0.5 * (std::cos(0.04) + std::cos(0.03))) < 2e-6);
  std::printf("  theta %.6f after %lld batches\n", static_cast<double>(theta), static_cast<long long>(batches));
}

void dymu_unmerge_scene() {
  std::printf("dymu virtual unmerging\n");
  const std::vector<float> image = image_tokens();
  const tokred::dymu policy{0.999f};
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  std::vector<float> merged(16 * 2);
  std::vector<std::int64_t> assign(16);
  std::int64_t count = 0;
  tokred::merge_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(image.data(), 16, 2);
  tokred::counted_merge_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), 16, 2);
  out.assign = tokred::make_view(assign.data(), 16);
  out.count = tokred::make_view(&count, 1);
  if (tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()}) != tokred::status::ok) return;
  // example-begin dymu-unmerge
  // Virtual unmerging: the LLM sees the full 16 slots again, each merged row repeated at every
  // original position it stands for (so RoPE positions are the original ones). With several
  // layers of merging, fold their assigns with compose_assign first.
  std::vector<float> full(16 * 2);  // (tokens, dim)
  const tokred::unmerge_inputs<float> merged_rows{tokred::make_view<const float>(merged.data(), count, 2),
                                                  tokred::make_view<const std::int64_t>(assign.data(), 16)};
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::unmerge{}, merged_rows,
                                         tokred::unmerge_outputs<float>{tokred::make_view(full.data(), 16, 2)});
  // s == ok. Slots 0 and 1 both hold the mean of tokens 0 and 1; slot 8 holds token 8 unchanged.
  // example-end dymu-unmerge
  SCENE_CHECK(s == tokred::status::ok && count == 12);
  SCENE_CHECK(full[0] == full[2] && full[1] == full[3]);
  SCENE_CHECK(std::abs(full[0] - 0.5f * (image[0] + image[2])) < 1e-6f);
  SCENE_CHECK(full[16] == image[16] && full[17] == image[17]);
  std::printf("  12 merged rows -> 16 slots\n");
}

void aim_scene() {
  std::printf("aim\n");
  std::vector<float> clip;  // 2 frames of the 4 x 4 image, the second a little further apart
  for (double spread : {1.0, 2.0}) {
    const std::vector<float> frame = image_tokens(spread);
    clip.insert(clip.end(), frame.begin(), frame.end());
  }
  // example-begin aim
  // AIM before the LLM: within every frame, ToMe steps on the tokens themselves, each a plain
  // mean, r = n/2 then r = n/4 of the frame's original n = 16: 16 -> 8 -> 4 tokens a frame.
  const tokred::aim policy{/*steps=*/2};
  const tokred::problem prob{tokred::token_grid{2, 4, 4}, 2};  // 2 frames of 4 x 4
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 2 · 4 = 8
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(kept * 2);            // (kept, dim) frame 0's 4 rows, then frame 1's
  std::vector<float> sizes(kept);                 // (kept,) originals per output token
  std::vector<std::int64_t> source(kept);         // (kept,) original index of the representative
  std::vector<std::int64_t> assign(32);           // (tokens,) output row of every input token
  const tokred::aim_inputs<float> in{prob.grid, tokred::make_view(clip.data(), 32, 2)};
  tokred::merge_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), kept, 2);
  out.source = tokred::make_view(source.data(), kept);
  out.sizes = tokred::make_view(sizes.data(), kept);
  out.assign = tokred::make_view(assign.data(), 32);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Step 1 merges every even token into its right neighbour: 8 pairs a frame. Step 2
  // splits the pairs by parity again: the 4 left-half pairs (A) all find the top row's right
  // pair (tokens 2, 3) closest and merge into it, a plain mean of 5 pair means. Per frame:
  // sizes = {10, 2, 2, 2}, source = {3, 7, 11, 15} (frame 1: {19, 23, 27, 31}); assign[0] = 0.
  // example-end aim
  SCENE_CHECK(s == tokred::status::ok && kept == 8);
  SCENE_CHECK((sizes == std::vector<float>{10, 2, 2, 2, 10, 2, 2, 2}));
  SCENE_CHECK((source == std::vector<std::int64_t>{3, 7, 11, 15, 19, 23, 27, 31}));
  SCENE_CHECK(assign[0] == 0 && assign[1] == 0 && assign[6] == 1 && assign[16] == 4);
  for (int c = 0; c < 2; ++c) {  // the plain mean of the 5 pair means
    float pairs = 0;
    for (int i : {0, 4, 8, 12, 2}) pairs += 0.5f * (clip[2 * i + c] + clip[2 * (i + 1) + c]);
    SCENE_CHECK(std::abs(merged[c] - pairs / 5) < 1e-6f);
  }
  std::printf("  32 tokens in 2 frames -> %lld\n", static_cast<long long>(kept));
}

}  // namespace

int main() {
  dymu_scene();
  dymu_calibration_scene();
  dymu_unmerge_scene();
  aim_scene();
  return scene::finish();
}
