// readme_example.cpp — the README's example: from an encoder's output pointer to the kept tokens.
//
// The lines between the example markers are pasted verbatim into README.md. Around them, this
// file makes up encoder features and scores so that it runs on its own. It is compiled with
// -fno-exceptions -fno-rtti, as an inference engine would compile it.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>

namespace {

// Stand-in encoder output: 24 x 24 patch tokens of 1024 fp16 values, and one score per token.
struct fake_encoder {
  std::vector<tokred::f16> features;  // (tokens, dim) = (576, 1024)
  std::vector<float> scores;          // (tokens,)

  fake_encoder() : features(576 * 1024), scores(576) {
    for (std::size_t i = 0; i < features.size(); ++i)
      features[i] = tokred::from_float<tokred::f16>(std::sin(0.001f * static_cast<float>(i)));
    for (std::size_t i = 0; i < scores.size(); ++i)
      scores[i] = std::cos(0.37f * static_cast<float>(i));
  }
};

int reduce(const tokred::f16* features, const float* scores) {
  // example-begin readme
  const tokred::problem prob{tokred::image_grid(24, 24), 1024};            // 576 tokens of 1024
  const tokred::topk policy{tokred::keep_budget::ratio(0.25, tokred::rounding::floor)};
  const tokred::index_t k = tokred::retained_count(policy, prob);          // 144, before any data
  std::vector<tokred::f16> kept(k * 1024);                                 // (kept, dim)
  std::vector<std::int32_t> thw(k * 3);                                    // (kept, 3) for M-RoPE
  std::vector<std::byte> ws(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  const tokred::selection_inputs<tokred::f16> in{                          // (tokens,), (tokens, dim)
      prob.grid, tokred::make_view(scores, 576), tokred::make_view(features, 576, 1024)};
  const tokred::selection_outputs<tokred::f16> out{                        // (kept, dim), -, (kept, 3)
      tokred::make_view(kept.data(), k, 1024), {}, tokred::make_view(thw.data(), k, 3)};
  tokred::status s = tokred::apply(tokred::cpu{}, policy, in, out, {ws.data(), ws.size()});
  // example-end readme

  if (s != tokred::status::ok) {
    std::printf("apply failed: %s\n", tokred::to_string(s));
    return 1;
  }
  std::printf("kept %lld of %lld tokens; the first sits at (t, h, w) = (%d, %d, %d)\n",
              static_cast<long long>(k), static_cast<long long>(prob.grid.tokens()), thw[0], thw[1],
              thw[2]);
  return 0;
}

}  // namespace

int main() {
  const fake_encoder encoder;
  return reduce(encoder.features.data(), encoder.scores.data());
}
