// attention_scores.cpp — attention-based importance, one scene per method: FastV, FasterVLM
// (image and video), VTC-CLS, HiRED, PyramidDrop and FoPru (rank and row), each a score policy
// followed by a selection; then the KV-cache compaction an engine performs at FastV's boundary. The docs quote the regions between the example markers verbatim; the
// checks around them make sure the comments in those regions tell the truth.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

namespace {

/// A softmax-like row: positive weights that favour keys near `peak`.
void fill_row(float* row, tokred::index_t keys, tokred::index_t peak) {
  double z = 0.0;
  for (tokred::index_t k = 0; k < keys; ++k) z += std::exp(-0.1 * std::fabs(static_cast<double>(k - peak)));
  for (tokred::index_t k = 0; k < keys; ++k)
    row[k] = static_cast<float>(std::exp(-0.1 * std::fabs(static_cast<double>(k - peak))) / z);
}

/// The kept indices of a selection over `scores` (ascending).
template <class Selection>
std::vector<std::int64_t> keep(const Selection& policy, const tokred::token_grid& grid, const std::vector<float>& scores) {
  const tokred::problem prob{grid, 0};
  std::vector<std::int64_t> source(static_cast<std::size_t>(tokred::retained_count(policy, prob)));
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  tokred::selection_outputs<float> out{};
  out.source = tokred::make_view(source.data(), static_cast<tokred::index_t>(source.size()));
  const tokred::selection_inputs<float> in{grid, tokred::make_view(scores.data(), grid.tokens()), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  SCENE_CHECK(s == tokred::status::ok);
  return source;
}

void fastv() {
  std::printf("fastv\n");
  const tokred::index_t heads = 4, L = 6 + 16 + 3;  // 6 system tokens, a 4 x 4 image, 3 text tokens
  std::vector<float> attn(static_cast<std::size_t>(heads * L * L));  // [1, H, L, L], layer K−1
  for (tokred::index_t h = 0; h < heads; ++h) fill_row(&attn[static_cast<std::size_t>((h * L + L - 1) * L)], L, 6 + 5 + h);
  // example-begin fastv
  // FastV: the attention the LAST token pays to each image token in layer K−1, mean over heads.
  // The weights view picks row L−1 out of the [1, H, L, L] tensor: no copy.
  const tokred::token_grid grid = tokred::image_grid(4, 4);      // the image span, N = 16
  const tokred::index_t sys = 6;                                 // the span starts at key 6
  const tokred::view<const float, 4> last_row(                   // (rows, layers, heads, keys)
      attn.data() + (L - 1) * L, {1, 1, heads, L}, {0, 0, L * L, 1});
  std::vector<float> scores(16);                                 // (tokens,)
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::attention_score{tokred::head_reduce::mean, sys},
                                         tokred::attention_score_inputs<float>{grid, last_row},
                                         tokred::score_outputs<>{tokred::make_view(scores.data(), 16)});
  // Keep 8: the eval scripts' absolute rank; llava-hf's round(N·(1 − R)) is
  // keep_budget::ratio(1 - R, rounding::half_even).
  const std::vector<std::int64_t> kept = keep(tokred::topk{tokred::keep_budget::count(8)}, grid, scores);
  // FastV keeps the kept tokens' original position ids, gaps included: sys + index.
  std::vector<std::int64_t> ids(8);
  const tokred::status sp = tokred::sequence_positions(tokred::make_view(kept.data(), 8), sys,
                                                       tokred::position_ids::original, tokred::make_view(ids.data(), 8));
  // example-end fastv
  SCENE_CHECK(sp == tokred::status::ok && ids[0] == sys + kept[0] && ids[7] == sys + kept[7]);
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(kept.size() == 8);
  // The heads peak at image tokens 5 … 8, so those are kept.
  for (std::int64_t j = 5; j <= 8; ++j) SCENE_CHECK(std::count(kept.begin(), kept.end(), j) == 1);
}

void fastervlm() {
  std::printf("fastervlm\n");
  const tokred::index_t heads = 16, keys = 1 + 24 * 24;
  std::vector<float> cls(static_cast<std::size_t>(heads * keys));  // attentions[-2][0, :, 0, :]
  for (tokred::index_t h = 0; h < heads; ++h) fill_row(&cls[static_cast<std::size_t>(h * keys)], keys, 100 + 7 * h);
  // example-begin fastervlm
  // FasterVLM: the [CLS] row of the select layer (CLIP block 22), mean over heads, over the
  // patches: [CLS] is key 0, so patch j is key 1 + j. Keep T = 144 (75 % reduction).
  const tokred::token_grid grid = tokred::image_grid(24, 24);
  const tokred::attention_score_inputs<float> in{grid, tokred::make_view(cls.data(), 1, 1, heads, keys)};
  std::vector<float> scores(576);
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::attention_score{tokred::head_reduce::mean, 1}, in,
                                         tokred::score_outputs<>{tokred::make_view(scores.data(), 576)});
  const std::vector<std::int64_t> kept = keep(tokred::topk{tokred::keep_budget::count(144)}, grid, scores);
  // example-end fastervlm
  SCENE_CHECK(s == tokred::status::ok && kept.size() == 144);

  const tokred::index_t frames = 8, frame_keys = 1 + 16 * 16;
  std::vector<float> video(static_cast<std::size_t>(frames * heads * frame_keys));  // [T, H, 1 + 256] [CLS] rows
  for (tokred::index_t r = 0; r < frames * heads; ++r) fill_row(&video[static_cast<std::size_t>(r * frame_keys)], frame_keys, 1 + r % 200);
  // example-begin fastervlm-video
  // Video (LanguageBind, 8 frames of 16 x 16): one [CLS] row per frame (rows = T), and 26 of
  // each frame's 256 tokens kept, frame by frame.
  const tokred::token_grid clip{8, 16, 16};
  const tokred::attention_score_inputs<float> per_frame{clip, tokred::make_view(video.data(), 8, 1, heads, frame_keys)};
  std::vector<float> frame_scores(8 * 256);
  const tokred::status sv = tokred::apply(tokred::cpu{}, tokred::attention_score{tokred::head_reduce::mean, 1}, per_frame,
                                          tokred::score_outputs<>{tokred::make_view(frame_scores.data(), 8 * 256)});
  const std::vector<std::int64_t> kept_video =
      keep(tokred::topk{tokred::keep_budget::count(26), tokred::scope::per_frame}, clip, frame_scores);  // 208
  // example-end fastervlm-video
  SCENE_CHECK(sv == tokred::status::ok && kept_video.size() == 208);
}

void vtc_cls_and_hired() {
  std::printf("vtc-cls, hired\n");
  const tokred::index_t heads = 16, keys = 577, layers = 7;
  std::vector<float> stacked(static_cast<std::size_t>(layers * heads * keys));  // blocks 16 … 22
  for (tokred::index_t r = 0; r < layers * heads; ++r) fill_row(&stacked[static_cast<std::size_t>(r * keys)], keys, 1 + (37 * r) % 576);
  // example-begin vtc-cls
  // VTC-CLS: the [CLS] rows of blocks 16 … 22 (start layer 16 up to the penultimate block),
  // copied into one (layers, heads, keys) buffer; each layer's head mean, summed over layers.
  const tokred::token_grid grid = tokred::image_grid(24, 24);
  const tokred::attention_score_inputs<float> ensemble{grid, tokred::make_view(stacked.data(), 1, layers, heads, keys)};
  std::vector<float> scores(576);
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::attention_score{tokred::head_reduce::mean, 1}, ensemble,
                                         tokred::score_outputs<>{tokred::make_view(scores.data(), 576)});
  const std::vector<std::int64_t> kept = keep(tokred::topk{tokred::keep_budget::count(36)}, grid, scores);  // token_num
  // example-end vtc-cls
  SCENE_CHECK(s == tokred::status::ok && kept.size() == 36);

  // example-begin hired
  // HiRED (LLaVA-1.5): block 22's [CLS] row summed over heads; keep min(576, int(576 · 0.2)),
  // Python's int: a floor.
  const tokred::view<const float, 4> block22 = tokred::make_view(stacked.data() + 6 * heads * keys, 1, 1, heads, keys);
  const tokred::status sh = tokred::apply(tokred::cpu{}, tokred::attention_score{tokred::head_reduce::sum, 1},
                                          tokred::attention_score_inputs<float>{grid, block22},
                                          tokred::score_outputs<>{tokred::make_view(scores.data(), 576)});
  const tokred::topk hired{tokred::keep_budget::ratio(0.2, tokred::rounding::floor)};  // 115 tokens
  // example-end hired
  SCENE_CHECK(sh == tokred::status::ok);
  SCENE_CHECK(tokred::retained_count(hired, {grid, 0}) == 115 && keep(hired, grid, scores).size() == 115);
}

void pyramiddrop() {
  std::printf("pyramiddrop\n");
  const tokred::index_t heads = 4, head_dim = 16, width = heads * head_dim, L = 35 + 576 + 40;
  std::vector<float> q_last(static_cast<std::size_t>(width)), k(static_cast<std::size_t>(L * width));
  for (std::size_t i = 0; i < q_last.size(); ++i) q_last[i] = std::sin(0.37f * static_cast<float>(i));
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::cos(0.011f * static_cast<float>(i % 4099));
  // example-begin fused
  // PyramidDrop, one stage: q of the last prompt token and k of every token, from the NEXT
  // block's projections with RoPE applied (engine code). k is the projection output [L, heads ·
  // head_dim]; the view reads it as (kv_heads, keys, head_dim) in place.
  const tokred::token_grid image = tokred::image_grid(24, 24);    // the current image span
  const tokred::fused_attention_score policy{tokred::head_reduce::mean, 35};  // span from key 35
  const tokred::fused_attention_inputs<float> in{
      image, tokred::make_view(q_last.data(), 1, heads, head_dim),  // (queries, heads, head_dim)
      tokred::view<const float, 3>(k.data(), {heads, L, head_dim}, {head_dim, width, 1})};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, {image, head_dim}));
  std::vector<float> scores(576);
  const tokred::status s = tokred::apply(tokred::cpu{}, policy, in, tokred::score_outputs<>{tokred::make_view(scores.data(), 576)},
                                         {scratch.data(), scratch.size()});
  // example-end fused
  SCENE_CHECK(s == tokred::status::ok);

  // example-begin schedule
  // The repository's schedule: before blocks 8, 16 and 24, keep int(576 · r) with r relative to
  // the ORIGINAL 576 (upstream's list is [1.0, 0.5, 0.25, 0.125]; the 1.0 is left out here).
  const tokred::index_t layers[] = {8, 16, 24};
  const double ratios[] = {0.5, 0.25, 0.125};
  const tokred::pyramid_schedule schedule{tokred::make_view(layers, 3), tokred::make_view(ratios, 3)};
  tokred::index_t current = 576;  // image tokens entering the stage
  for (tokred::index_t stage = 0; stage < 3; ++stage) {
    // ... run the blocks before layers[stage]; score the current tokens as above ...
    const tokred::topk drop{tokred::stage_budget(schedule, 576, stage)};  // 288, 144, 72
    current = tokred::retained_count(drop, {tokred::sequence_grid(current), 0});
    // ... keep those rows and renumber the sequence 0 … L'−1 (PyramidDrop re-indexes; for the
    // span, sequence_positions with position_ids::contiguous) ...
  }
  // example-end schedule
  SCENE_CHECK(tokred::check_schedule(schedule, 576) == tokred::status::ok);
  SCENE_CHECK(current == 72);
  SCENE_CHECK(keep(tokred::topk{tokred::stage_budget(schedule, 576, 0)}, image, scores).size() == 288);
}

/// A [1, 16, 577, 577] softmax map whose attention falls on the patches of rows 9 … 14, columns
/// 9 … 14 (logit 3 instead of 0, with a small deterministic ripple that breaks ties).
std::vector<float> focused_map() {
  const tokred::index_t heads = 16, side = 24, L = 1 + side * side;  // [CLS] + 24 × 24 patches
  std::vector<float> attn(static_cast<std::size_t>(heads * L * L));
  std::vector<double> e(static_cast<std::size_t>(L));
  for (tokred::index_t h = 0; h < heads; ++h)
    for (tokred::index_t q = 0; q < L; ++q) {
      double z = 0.0;
      for (tokred::index_t k = 0; k < L; ++k) {
        const tokred::index_t r = (k - 1) / side, c = (k - 1) % side;
        const bool focus = k > 0 && r >= 9 && r <= 14 && c >= 9 && c <= 14;
        z += e[static_cast<std::size_t>(k)] = std::exp((focus ? 3.0 : 0.0) + 0.01 * static_cast<double>((7 * k + 3 * q + h) % 11));
      }
      for (tokred::index_t k = 0; k < L; ++k)
        attn[static_cast<std::size_t>((h * L + q) * L + k)] = static_cast<float>(e[static_cast<std::size_t>(k)] / z);
    }
  return attn;
}

void fopru() {
  const tokred::index_t heads = 16, L = 1 + 24 * 24;  // [CLS] + 24 × 24 patches
  std::printf("fopru rank, row\n");
  const std::vector<float> attn = focused_map();  // attentions[-2]: CLIP block 22, [1, H, L, L]
  // example-begin fopru-rank
  // FoPru, rank strategy. A patch's significance is the mean attention it receives from every
  // patch in CLIP's select layer (block 22, [1, 16, 577, 577]; [CLS] is query 0 and key 0), or
  // the mean it pays, whichever varies more (larger_variance, the default). Keep
  // floor(576 · 0.25) = 144 patches, in original order.
  const tokred::token_grid grid = tokred::image_grid(24, 24);
  const tokred::attention_significance fopru{tokred::significance_axis::larger_variance, 1, 1};
  const tokred::attention_significance_inputs<float> in{grid, tokred::make_view(attn.data(), 1, heads, L, L)};
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, fopru, tokred::problem{grid, 0}));
  std::vector<float> significance(576);  // (tokens,)
  const tokred::status s = tokred::apply(tokred::cpu{}, fopru, in,
                                         tokred::score_outputs<>{tokred::make_view(significance.data(), 576)},
                                         {scratch.data(), scratch.size()});
  const std::vector<std::int64_t> kept = keep(tokred::topk{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)},
                                              grid, significance);
  // The 36 patches the attention falls on are among the 144.
  // example-end fopru-rank
  SCENE_CHECK(s == tokred::status::ok && kept.size() == 144);
  SCENE_CHECK(std::is_sorted(kept.begin(), kept.end()));
  for (std::int64_t r = 9; r <= 14; ++r)
    for (std::int64_t c = 9; c <= 14; ++c) SCENE_CHECK(std::count(kept.begin(), kept.end(), r * 24 + c) == 1);
  // A softmax map: the column means vary, the row means hardly, so the rule took the columns.
  std::vector<float> received(576);
  const tokred::status sc = tokred::apply(tokred::cpu{}, tokred::attention_significance{tokred::significance_axis::column, 1, 1},
                                          in, tokred::score_outputs<>{tokred::make_view(received.data(), 576)},
                                          {scratch.data(), scratch.size()});
  SCENE_CHECK(sc == tokred::status::ok && received == significance);

  // example-begin fopru-row
  // FoPru, row strategy: the same significance summed over each patch row; keep the
  // floor(24 · 0.25) = 6 best rows whole, 6 × 24 = 144 tokens in original order. The attention
  // falls on rows 9 … 14, so tokens 216 … 359 are kept.
  const std::vector<std::int64_t> rows = keep(tokred::top_rows{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)},
                                              grid, significance);
  // example-end fopru-row
  SCENE_CHECK(rows.size() == 144 && rows.front() == 216 && rows.back() == 359);
  for (std::size_t i = 0; i < rows.size(); ++i) SCENE_CHECK(rows[i] == 216 + static_cast<std::int64_t>(i));
}

}  // namespace

void kv_compaction() {
  std::printf("kv compaction\n");
  // example-begin kv-compact
  // FastV after layer K = 2: the sequence is 35 prompt tokens, 576 image tokens, 65 text tokens,
  // and topk kept 288 of the image tokens (`source`, ascending). Every layer's cache drops the
  // other rows: the surviving sequence rows, then one compaction in place per layer.
  const tokred::index_t heads = 8, head_dim = 64, prefix = 35, image = 576, rows = 35 + 576 + 65;
  std::vector<std::int64_t> source(288);
  for (std::int64_t j = 0; j < 288; ++j) source[static_cast<std::size_t>(j)] = 2 * j;  // from topk
  std::vector<std::int64_t> keep(prefix + 288 + 65);
  tokred::status s = tokred::kept_sequence_rows(tokred::make_view<const std::int64_t>(source.data(), 288), prefix,
                                                image, rows, tokred::make_view(keep.data(), 388));
  // keep == {0 … 34, 35, 37, 39, … 609, 611 … 675}: 388 rows.

  // One layer's cache, token-major as llama.cpp and vLLM store it: (rows, heads, head_dim).
  std::vector<tokred::f16> k(rows * heads * head_dim), v(rows * heads * head_dim);
  const auto as_heads = [&](tokred::f16* data, tokred::index_t n) {  // seen as (heads, n, head_dim)
    return tokred::view<tokred::f16, 3>(data, {heads, n, head_dim}, {head_dim, heads * head_dim, 1});
  };
  const tokred::kv_compact_inputs<tokred::f16> cache{tokred::make_view<const std::int64_t>(keep.data(), 388),
                                                      as_heads(k.data(), rows), as_heads(v.data(), rows)};
  s = tokred::apply(tokred::cpu{}, tokred::kv_compact{}, cache,
                    tokred::kv_compact_outputs<tokred::f16>{as_heads(k.data(), 388), as_heads(v.data(), 388)});
  // s == ok: rows 0 … 387 of K and V now hold the surviving rows; the cache length is 388.
  // example-end kv-compact
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(keep[35] == 35 && keep[36] == 37 && keep[35 + 287] == 35 + 574 && keep[35 + 288] == 611 &&
              keep.back() == rows - 1);
}

int main() {
  fastv();
  fastervlm();
  vtc_cls_and_hired();
  pyramiddrop();
  fopru();
  kv_compaction();
  return scene::finish();
}
