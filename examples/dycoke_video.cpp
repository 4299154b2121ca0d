// dycoke_video.cpp — DyCoke's temporal token merging (TTM) on a small clip: the count known from
// the shapes, the original's output order and its bookkeeping, then the same reduction split
// over an engine's threads in position order with the (t, h, w) positions M-RoPE needs. The docs
// quote the regions between the example markers verbatim; the checks around them make sure the
// comments in those regions tell the truth.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/dycoke.hpp>

#include "scene_checks.hpp"

namespace {

/// A clip of 8 frames of 2 x 3 tokens, 4 values each: slot p holds a still background row
/// (p + 1)·e_{p mod 4}, except where an object — (2, −2, 2, −2) — sits (slot 0, 1, 3, 3, 4, 4, 2, 5
/// in frames 0–7). Cosines are exact: 1 between equal backgrounds, ±0.5 between the object and
/// a background.
struct clip {
  static constexpr tokred::index_t frames = 8, height = 2, width = 3, dim = 4;
  static constexpr tokred::index_t n = frames * height * width;
  std::vector<float> rows = std::vector<float>(n * dim);  // (tokens, dim) frame-major
  clip() {
    const tokred::index_t object_at[frames] = {0, 1, 3, 3, 4, 4, 2, 5};
    for (tokred::index_t i = 0; i < n; ++i) {
      const tokred::index_t t = i / (height * width), slot = i % (height * width);
      for (tokred::index_t c = 0; c < dim; ++c)
        rows[static_cast<std::size_t>(i * dim + c)] =
            slot == object_at[t] ? (c % 2 == 0 ? 2.0f : -2.0f) : (c == slot % 4 ? static_cast<float>(slot + 1) : 0.0f);
    }
  }
};

void ttm_scene() {
  std::printf("dycoke\n");
  const clip x;
  // example-begin dycoke
  // DyCoke's TTM on T = 8 frames of 2 x 3 tokens (n = 6), dim 4, at merging ratio k = 0.5: a
  // pruned frame keeps int((1 − 0.5)·6) = 3 tokens, those least similar to its reference frame.
  const tokred::problem prob{tokred::token_grid{8, 2, 3}, 4};
  const tokred::dycoke ttm{0.5};
  // Known before the encoder runs: frames 0, 4, 6 whole (3·6), five pruned frames (5·3).
  const tokred::index_t k = tokred::retained_count(ttm, prob);  // 33 of 48

  std::vector<float> kept(k * 4);              // (kept, dim)
  std::vector<std::int64_t> source(k);         // (kept,) original row of each output
  std::vector<std::int64_t> assign(48);        // (tokens,) output slot of each input, −1 dropped
  tokred::merge_outputs<float> out;
  out.tokens = tokred::make_view(kept.data(), k, 4);
  out.source = tokred::make_view(source.data(), k);
  out.assign = tokred::make_view(assign.data(), 48);
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{}, ttm, prob));
  const tokred::dycoke_inputs<float> video{prob.grid, tokred::make_view(x.rows.data(), 48, 4), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, ttm, video, out, {scratch.data(), scratch.size()});
  // s == ok. Frames 1, 3, 5, 7 are pruned against the frame before them, frame 2 against
  // frame 0 (the group step); frame 6 stays whole (the group loop stops at i < T − 4).
  // A pruned frame's tokens come by ascending similarity: frame 1 gives source 7 (cos −0.5, the
  // object arrived), 6 (cos 0.5, it left), then 8 (the first of the unchanged slots, cos 1).
  // Nothing is averaged: kept rows are copies. assign is −1 for the 15 dropped tokens.
  // example-end dycoke
  SCENE_CHECK(s == tokred::status::ok && k == 33);
  SCENE_CHECK(source == (std::vector<std::int64_t>{0,  1,  2,  3,  4,  5,  7,  6,  8,  15, 12,
                                                   13, 18, 19, 20, 24, 25, 26, 27, 28, 29, 30,
                                                   31, 32, 36, 37, 38, 39, 40, 41, 47, 44, 42}));
  SCENE_CHECK(assign[7] == 6 && assign[6] == 7 && assign[9] == -1);
  SCENE_CHECK(kept[6 * 4 + 1] == x.rows[7 * 4 + 1]);
  std::size_t dropped = 0;
  for (std::int64_t a : assign) dropped += a < 0;
  SCENE_CHECK(dropped == 15);
}

void threads_scene() {
  std::printf("dycoke on threads\n");
  const clip x;
  const tokred::problem prob{tokred::token_grid{8, 2, 3}, 4};
  const tokred::index_t k = 33;
  // example-begin dycoke-threads
  // The same reduction on an engine's 3 threads, in position order (each pruned frame's kept
  // tokens by slot), with the (t, h, w) of every kept token for M-RoPE. Call ith writes the
  // frames [T·ith/3, T·(ith+1)/3); the calls share one workspace sized for 3 (each carves its
  // own slice), and the union is bit-identical to one call.
  const tokred::dycoke ttm{0.5, tokred::merge_order::by_position};
  std::vector<std::int64_t> source(k);         // (kept,) ascending
  std::vector<std::int32_t> positions(k * 3);  // (kept, 3)
  tokred::merge_outputs<float> out;
  out.source = tokred::make_view(source.data(), k);
  out.positions = tokred::make_view(positions.data(), k, 3);
  const int nth = 3;
  std::vector<std::byte> scratch(tokred::workspace_bytes(tokred::cpu{0, nth}, ttm, prob));
  const tokred::dycoke_inputs<float> video{prob.grid, tokred::make_view(x.rows.data(), 48, 4), {}};
  bool ok = true;
  for (int ith = 0; ith < nth; ++ith)  // each call on its own thread in an engine
    ok &= tokred::apply(tokred::cpu{ith, nth}, ttm, video, out, {scratch.data(), scratch.size()}) ==
          tokred::status::ok;
  // Frame 1 now gives source 6, 7, 8; source 47 (frame 7, slot 5) sits at (t, h, w) = (7, 1, 2).
  // example-end dycoke-threads
  SCENE_CHECK(ok);
  SCENE_CHECK(source[6] == 6 && source[7] == 7 && source[8] == 8);
  SCENE_CHECK(source[32] == 47 && positions[32 * 3] == 7 && positions[32 * 3 + 1] == 1 && positions[32 * 3 + 2] == 2);
  bool ascending = true;
  for (tokred::index_t j = 1; j < k; ++j) ascending &= source[j] > source[j - 1];
  SCENE_CHECK(ascending);
}

}  // namespace

int main() {
  ttm_scene();
  threads_scene();
  return scene::finish();
}
