// A consumer's first program: keep the 3 best of 8 tokens with tokred::topk and check every
// output. Built by the find_package/ and add_subdirectory/ consumer projects; exits 0 when the
// result is right and 1 otherwise.
#include <tokred/tokred.hpp>

#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  // A 2 x 4 image: token i sits at (h, w) = (i / 4, i % 4) and holds the row (i, 10 + i, 100 + i).
  const tokred::token_grid grid = tokred::image_grid(2, 4);
  constexpr int n = 8;
  constexpr int dim = 3;
  constexpr int k = 3;
  float rows[n * dim];  // (tokens, dim)
  for (int i = 0; i < n; ++i) {
    rows[i * dim + 0] = static_cast<float>(i);
    rows[i * dim + 1] = static_cast<float>(10 + i);
    rows[i * dim + 2] = static_cast<float>(100 + i);
  }
  // The best three: token 6 (3.0), then tokens 1 and 4 tied at 0.9 (both kept); kept tokens come
  // out in their original order.
  const float scores[n] = {0.1f, 0.9f, -1.0f, 0.5f, 0.9f, 0.2f, 3.0f, 0.0f};  // (tokens,)
  const std::int64_t want_source[k] = {1, 4, 6};
  const std::int32_t want_positions[k * 3] = {0, 0, 1, 0, 1, 0, 0, 1, 2};

  tokred::bf16 kept[k * dim];          // (kept, dim), narrowed to bf16 on the way out
  std::int64_t source[k] = {};         // (kept,)
  std::int32_t positions[k * 3] = {};  // (kept, 3)

  const tokred::selection_inputs<float> in{grid, tokred::make_view(scores, n),
                                           tokred::make_view(rows, n, dim)};
  const tokred::selection_outputs<tokred::bf16> out{tokred::make_view(kept, k, dim),
                                                    tokred::make_view(source, k),
                                                    tokred::make_view(positions, k, 3)};
  const tokred::topk policy{tokred::keep_budget::count(k)};
  const tokred::problem prob{grid, dim};

  expect(tokred::can_implement(policy, prob) == tokred::status::ok, "can_implement is ok");
  expect(tokred::retained_count(policy, prob) == k, "retained_count is 3");
  std::vector<unsigned char> scratch(tokred::workspace_bytes(tokred::cpu{}, policy, prob));
  const tokred::status s =
      tokred::apply(tokred::cpu{}, policy, in, out, {scratch.data(), scratch.size()});
  expect(s == tokred::status::ok, "apply returns ok");
  if (s != tokred::status::ok) std::printf("apply: %s\n", tokred::to_string(s));

  for (int j = 0; j < k; ++j) {
    expect(source[j] == want_source[j], "source index");
    for (int c = 0; c < 3; ++c)
      expect(positions[j * 3 + c] == want_positions[j * 3 + c], "position");
    for (int c = 0; c < dim; ++c)  // small integers are exact in bf16
      expect(tokred::to_float(kept[j * dim + c]) == rows[want_source[j] * dim + c], "kept row");
  }

  std::printf("tokred %d.%d.%d: topk kept tokens %lld %lld %lld: %s\n", TOKRED_VERSION_MAJOR,
              TOKRED_VERSION_MINOR, TOKRED_VERSION_PATCH, static_cast<long long>(source[0]),
              static_cast<long long>(source[1]), static_cast<long long>(source[2]),
              failures == 0 ? "ok" : "WRONG");
  return failures == 0 ? 0 : 1;
}
