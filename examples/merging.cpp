// merging.cpp — token merging, one scene per idea: one ToMe merge with its provenance, merges
// chained across layers with size tracking and proportional attention, the matching split over
// threads, unmerge, and VisionZip's dominant and contextual tokens. The docs quote the regions
// between the example markers verbatim; the checks around them make sure the comments in those
// regions tell the truth.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/tome.hpp>
#include <tokred/cpu/visionzip.hpp>

#include "scene_checks.hpp"

namespace {

/// 4 x 4 image tokens of 2 values, as angles on the unit circle: each patch row turns a little
/// from the one above, and the right half of each row points elsewhere than the left half, so
/// horizontal neighbours are near-duplicates and everything else is not.
std::vector<float> image_tokens() {
  std::vector<float> rows;  // (tokens, dim) = (16, 2)
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 4; ++w) {
      const double angle = 0.4 * h + (w >= 2 ? 1.5 : 0.0) + 0.02 * w * (h + 1);
      rows.push_back(static_cast<float>(std::cos(angle)));
      rows.push_back(static_cast<float>(std::sin(angle)));
    }
  return rows;
}

void one_merge() {
  std::printf("tome\n");
  const std::vector<float> image = image_tokens();
  // example-begin tome
  // Merge r = 4 of 16 image tokens (4 x 4 patches, no class token). The tokens are their own
  // metric here; inside a ViT, pass the attention keys as `in.metric`. by_position keeps the
  // survivors in image order, so an engine can rebuild 2-D RoPE from `positions`.
  const tokred::tome policy{/*r=*/4, /*protect=*/0, tokred::merge_order::by_position};
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 16 − 4 = 12
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> merged(kept * 2);             // (kept, dim) size-weighted means
  std::vector<float> sizes(kept);                  // (kept,) originals per output token
  std::vector<std::int64_t> source(kept);          // (kept,) representative: the B token kept
  std::vector<std::int32_t> positions(kept * 3);   // (kept, 3) its (t, h, w)
  std::vector<std::int64_t> assign(16);            // (tokens,) output slot of every input token
  tokred::merge_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(image.data(), 16, 2);  // (tokens, dim)
  const tokred::merge_outputs<float> out{
      tokred::make_view(merged.data(), kept, 2), tokred::make_view(source.data(), kept),
      tokred::make_view(positions.data(), kept, 3), tokred::make_view(sizes.data(), kept),
      tokred::make_view(assign.data(), 16)};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. The A token of each of the four closest horizontal pairs merged into its B
  // neighbour: tokens 0 → 1, 2 → 3, 4 → 5 and 6 → 7 (the two top patch rows, which turn least).
  // source = {1, 3, 5, 7, 8, 9, …, 15}, sizes = {2, 2, 2, 2, 1, …, 1}, assign[0] = assign[1] = 0.
  // example-end tome
  SCENE_CHECK(s == tokred::status::ok && kept == 12);
  SCENE_CHECK((source == std::vector<std::int64_t>{1, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  SCENE_CHECK((sizes == std::vector<float>{2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1}));
  SCENE_CHECK(assign[0] == 0 && assign[1] == 0 && assign[6] == 3 && assign[15] == 11);
  SCENE_CHECK(positions[0] == 0 && positions[1] == 0 && positions[2] == 1);  // token 1 at (0, 0, 1)
  SCENE_CHECK(std::abs(merged[0] - 0.5f * (image[0] + image[2])) < 1e-6f);
  std::printf("  12 tokens, sources 1 3 5 7 8 … 15\n");
}

void layers() {
  std::printf("tome across layers\n");
  const std::vector<float> image = image_tokens();
  // example-begin tome-layers
  // ToMe between attention and MLP of every layer, r = 3 per layer, class token first
  // (protect = 1). A layer's sizes, source and positions are the next layer's inputs, so the
  // weighted means stay means of originals and the provenance stays in original terms.
  const tokred::tome policy{/*r=*/3, /*protect=*/1};
  std::vector<float> x(image);  // (n, dim) the hidden states; token 0 plays the class token
  std::vector<float> sizes;     // empty before the first merge: every token stands for 1
  std::vector<std::int64_t> source, assign_total;
  std::vector<std::int32_t> positions;
  tokred::index_t n = 16;
  for (int layer = 0; layer < 3; ++layer) {
    // … attention with the proportional bias (below), then:
    const tokred::problem prob{tokred::sequence_grid(n), 2};
    const tokred::index_t kept = tokred::retained_count(policy, prob);  // n − 3
    std::vector<float> x_next(kept * 2), sizes_next(kept);
    std::vector<std::int64_t> source_next(kept), assign(n);
    std::vector<std::int32_t> positions_next(kept * 3);
    tokred::merge_inputs<float> in{};
    in.grid = layer == 0 ? tokred::image_grid(4, 4) : prob.grid;  // positions come from the grid once
    in.tokens = tokred::make_view<const float>(x.data(), n, 2);
    if (layer > 0) {
      in.sizes = tokred::make_view<const float>(sizes.data(), n);
      in.source = tokred::make_view<const std::int64_t>(source.data(), n);
      in.positions = tokred::make_view<const std::int32_t>(positions.data(), n, 3);
    }
    const tokred::merge_outputs<float> out{
        tokred::make_view(x_next.data(), kept, 2), tokred::make_view(source_next.data(), kept),
        tokred::make_view(positions_next.data(), kept, 3), tokred::make_view(sizes_next.data(), kept),
        tokred::make_view(assign.data(), n)};
    std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
    if (tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()}) != tokred::status::ok) return;

    // Every original's slot after this layer: assign_total = assign[assign_total].
    if (layer == 0) {
      assign_total = assign;
    } else {
      std::vector<std::int64_t> composed(16);
      (void)tokred::compose_assign(tokred::make_view<const std::int64_t>(assign_total.data(), 16),
                                   tokred::make_view<const std::int64_t>(assign.data(), n),
                                   tokred::make_view(composed.data(), 16));
      assign_total = composed;
    }
    x = x_next, sizes = sizes_next, source = source_next, positions = positions_next, n = kept;
  }
  // 16 → 13 → 10 → 7 tokens. The next layer's attention adds log(size of key j) to every logit
  // against key j (ToMe's proportional attention); the class token keeps size 1, bias 0.
  std::vector<float> bias(n);  // (kept,)
  (void)tokred::log_size_bias(tokred::make_view<const float>(sizes.data(), n), tokred::make_view(bias.data(), n));
  // example-end tome-layers
  SCENE_CHECK(n == 7 && source[0] == 0 && sizes[0] == 1.0f && bias[0] == 0.0f);
  float total = 0;
  for (float s : sizes) total += s;
  SCENE_CHECK(total == 16.0f);
  int in_slot = 0;  // the originals of the last slot, from the composed assign
  for (std::int64_t a : assign_total) in_slot += a == n - 1;
  SCENE_CHECK(static_cast<float>(in_slot) == sizes[static_cast<std::size_t>(n - 1)]);
  SCENE_CHECK(std::abs(bias[static_cast<std::size_t>(n - 1)] - std::log(sizes[static_cast<std::size_t>(n - 1)])) == 0.0f);
  std::printf("  16 -> %ld tokens, sizes sum to %g\n", static_cast<long>(n), static_cast<double>(total));
}

void threads() {
  std::printf("tome on threads\n");
  const std::vector<float> image = image_tokens();
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  const tokred::tome policy{4, 0, tokred::merge_order::by_position};
  std::vector<float> merged(12 * 2);
  std::vector<std::int64_t> source(12);
  const int nth = 3;
  // example-begin tome-threads
  // The O(N²·D) matching splits over the engine's threads: tome_match's share ith matches its
  // own range of A tokens. After the join (the engine's barrier), tome on that matching only
  // ranks, lays out (O(N log N), repeated by every share) and writes its own output rows.
  const tokred::index_t a = tokred::a_tokens(16);  // 8 A tokens: 0, 2, …, 14
  std::vector<float> similarity(a);
  std::vector<std::int64_t> partner(a);
  tokred::merge_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view(image.data(), 16, 2);
  const tokred::tome_match matching{policy.protect};
  const tokred::match_outputs<> matched{tokred::make_view(similarity.data(), a), tokred::make_view(partner.data(), a)};
  std::vector<std::byte> scratch(std::max(tokred::workspace_bytes(tokred::cpu{0, nth}, matching, prob),
                                          tokred::workspace_bytes(tokred::cpu{0, nth}, policy, prob)));
  const tokred::workspace ws{scratch.data(), scratch.size()};

  std::vector<std::thread> workers;
  for (int ith = 0; ith < nth; ++ith)
    workers.emplace_back([&, ith] { (void)tokred::apply(tokred::cpu{ith, nth}, matching, in, matched, ws); });
  for (std::thread& w : workers) w.join();

  in.similarity = tokred::make_view<const float>(similarity.data(), a);
  in.partner = tokred::make_view<const std::int64_t>(partner.data(), a);
  tokred::merge_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), 12, 2);
  out.source = tokred::make_view(source.data(), 12);
  workers.clear();
  for (int ith = 0; ith < nth; ++ith)
    workers.emplace_back([&, ith] { (void)tokred::apply(tokred::cpu{ith, nth}, policy, in, out, ws); });
  for (std::thread& w : workers) w.join();
  // The same bits as one call with nth = 1: source = {1, 3, 5, 7, 8, 9, …, 15}.
  // example-end tome-threads
  SCENE_CHECK((source == std::vector<std::int64_t>{1, 3, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  SCENE_CHECK((partner == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  std::printf("  3 shares, same result\n");
}

void unmerge_scene() {
  std::printf("unmerge\n");
  // example-begin unmerge
  // ToMe-SD: after a block has run on the merged tokens, copy each result back to every
  // original slot it stands for, so the next layer sees the full sequence again.
  const float merged[3 * 2] = {1, 1, 2, 2, 3, 3};             // (kept, dim) = (3, 2)
  const std::int64_t assign[5] = {0, 0, 1, 2, 2};             // (tokens,) from tome
  float full[5 * 2];                                          // (tokens, dim)
  const tokred::unmerge_inputs<float> in{tokred::make_view(merged, 3, 2), tokred::make_view(assign, 5)};
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::unmerge{}, in,
                                         tokred::unmerge_outputs<float>{tokred::make_view(full, 5, 2)});
  // s == ok; full = {1, 1, 1, 1, 2, 2, 3, 3, 3, 3}
  // example-end unmerge
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK((std::vector<float>(full, full + 10) == std::vector<float>{1, 1, 1, 1, 2, 2, 3, 3, 3, 3}));
}

/// A CLIP-style output: a [CLS] row, then 4 x 4 patches of 2 values whose direction depends on
/// the image half: the top half (h < 2) turns from angle 0 by 0.1 per patch column, the bottom
/// half from 1.5. The [CLS] row's attention (summed over heads) favours the four centre patches.
std::vector<float> clip_rows() {
  std::vector<float> rows = {0.0f, 1.0f};  // (1 + 16, 2), [CLS] first
  for (int h = 0; h < 4; ++h)
    for (int w = 0; w < 4; ++w) {
      const double angle = 0.1 * w + (h >= 2 ? 1.5 : 0.0);
      rows.push_back(static_cast<float>(std::cos(angle)));
      rows.push_back(static_cast<float>(std::sin(angle)));
    }
  return rows;
}

void visionzip_scene() {
  std::printf("visionzip\n");
  const std::vector<float> clip = clip_rows();
  std::vector<float> cls_attention(16, 0.01f);  // (N,) head-sum [CLS] attention per patch
  for (int j : {5, 6, 9, 10}) cls_attention[static_cast<std::size_t>(j)] = 0.2f;
  // example-begin visionzip
  // VisionZip on [CLS] + 4 x 4 patches (17 rows): keep [CLS] and the 4 patches the [CLS] query
  // attends to most (dominant = 5 counts [CLS], as the original's argument does), and merge the
  // other 12 rows into 2 contextual tokens by cosine of their keys. The rows are their own keys
  // here; inside CLIP pass the same layer's head-mean keys as `in.metric`.
  const tokred::visionzip policy{/*dominant=*/5, /*contextual=*/2};
  const tokred::problem prob{tokred::image_grid(4, 4), 2};
  const tokred::index_t kept = tokred::retained_count(policy, prob);  // 5 + 2 = 7
  const tokred::index_t rows = tokred::visionzip_rows(policy, prob);  // 16 patches + [CLS] = 17
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));

  std::vector<float> reduced(kept * 2);           // (kept, dim) dominant rows, then contextual
  std::vector<std::int64_t> source(kept);         // (kept,) the row kept, or the contextual target
  std::vector<std::int32_t> positions(kept * 3);  // (kept, 3) its (t, h, w); [CLS]: (-1, -1, -1)
  std::vector<float> sizes(kept);                 // (kept,) rows each output stands for
  std::vector<std::int64_t> assign(rows);         // (rows,) output slot of every input row
  tokred::visionzip_inputs<float> in{};
  in.grid = prob.grid;
  in.tokens = tokred::make_view<const float>(clip.data(), rows, 2);      // (rows, dim)
  in.scores = tokred::make_view<const float>(cls_attention.data(), 16);  // (N,)
  const tokred::merge_outputs<float> out{
      tokred::make_view(reduced.data(), kept, 2), tokred::make_view(source.data(), kept),
      tokred::make_view(positions.data(), kept, 3), tokred::make_view(sizes.data(), kept),
      tokred::make_view(assign.data(), rows)};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  // s == ok. Dominant: [CLS], then patches 5, 6, 9, 10 (rows 6, 7, 10, 11) in row order. The 12
  // other rows give step = 12 / 2 = 6: targets the 1st and 7th of them, patch 0 (row 1) and
  // patch 8 (row 9). The top half joins the first, the bottom half the second.
  // source = {0, 6, 7, 10, 11, 1, 9}, sizes = {1, 1, 1, 1, 1, 6, 6}; reduced row 5 is
  // row 1 + mean(rows 2, 3, 4, 5, 8): the original's target + mean, not a plain mean.
  // example-end visionzip
  SCENE_CHECK(s == tokred::status::ok && kept == 7 && rows == 17);
  SCENE_CHECK((source == std::vector<std::int64_t>{0, 6, 7, 10, 11, 1, 9}));
  SCENE_CHECK((sizes == std::vector<float>{1, 1, 1, 1, 1, 6, 6}));
  SCENE_CHECK(positions[0] == -1 && positions[1] == -1 && positions[2] == -1);
  SCENE_CHECK(positions[15] == 0 && positions[16] == 0 && positions[17] == 0);  // patch 0
  SCENE_CHECK(positions[18] == 0 && positions[19] == 2 && positions[20] == 0);  // patch 8
  for (int c = 0; c < 2; ++c) {
    const float members = clip[2 * 2 + c] + clip[3 * 2 + c] + clip[4 * 2 + c] + clip[5 * 2 + c] + clip[8 * 2 + c];
    SCENE_CHECK(std::abs(reduced[5 * 2 + c] - (clip[1 * 2 + c] + members / 5)) < 1e-6f);
  }
  SCENE_CHECK(assign[0] == 0 && assign[2] == 5 && assign[8] == 5 && assign[12] == 6 && assign[16] == 6);
  std::printf("  17 rows -> 7 tokens, sources 0 6 7 10 11 1 9\n");
}

}  // namespace

int main() {
  one_merge();
  layers();
  threads();
  unmerge_scene();
  visionzip_scene();
  return scene::finish();
}
