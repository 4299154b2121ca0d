// prumerge.cpp — LLaVA-PruMerge in two policies: iqr_outliers picks the kept tokens from the
// [CLS] attention, prumerge_merge folds the tokens nearest to each by key cosine into it and
// gathers the pruned ones into one extra token. docs/policies/prumerge_merge.md quotes the region
// between the example markers verbatim; the checks after it make sure its comments tell the truth.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/outliers.hpp>
#include <tokred/cpu/prumerge.hpp>

#include "scene_checks.hpp"

namespace {

/// Token j: feature (j, 1) and a unit key at angle 0.3·j + 0.01·j², so its nearest keys are
/// j − 1, then j + 1.
void image(std::vector<float>& features, std::vector<float>& keys) {
  for (int j = 0; j < 12; ++j) {
    const double angle = 0.3 * j + 0.01 * j * j;
    features.insert(features.end(), {static_cast<float>(j), 1.0f});
    keys.insert(keys.end(), {static_cast<float>(std::cos(angle)), static_cast<float>(std::sin(angle))});
  }
}

void prumerge_scene() {
  std::printf("prumerge\n");
  std::vector<float> features, keys;  // (tokens, dim) = (12, 2) each
  image(features, keys);
  // example-begin prumerge
  // PruMerge on 12 tokens: features x (12, 2), keys k (12, 2), [CLS] attention a (12,).
  const float attention[12] = {1, 2, 3, 4, 30, 1, 2, 3, 4, 8, 12, 5};
  const tokred::problem prob{tokred::sequence_grid(12), 2};
  const tokred::view<const float, 1> a = tokred::make_view(attention, 12);               // (tokens,)
  const tokred::view<const float, 2> x = tokred::make_view<const float>(features.data(), 12, 2);  // (tokens, dim)
  const tokred::view<const float, 2> k = tokred::make_view<const float>(keys.data(), 12, 2);      // (tokens, key_dim)

  // 1. Select: the IQR outliers of the attention (iqr_outliers::prumerge_plus() for PruMerge+).
  const tokred::iqr_outliers select = tokred::iqr_outliers::prumerge();
  const tokred::prumerge_merge merge{2};  // 2 neighbours here; the original merges 32
  std::vector<std::byte> scratch(std::max(tokred::workspace_bytes(tokred::cpu{}, select, prob),
                                          tokred::workspace_bytes(tokred::cpu{}, merge, prob)));
  const tokred::workspace ws{scratch.data(), scratch.size()};
  const tokred::index_t bound = tokred::retained_count(select, prob);
  std::vector<std::int64_t> kept(static_cast<std::size_t>(bound));  // (bound,)
  std::int64_t count = 0;
  tokred::counted_outputs<float> picked{};
  picked.source = tokred::make_view(kept.data(), bound);
  picked.count = tokred::make_view(&count, 1);
  tokred::status s = tokred::apply(tokred::cpu{}, select, tokred::selection_inputs<float>{prob.grid, a, {}}, picked, ws);
  // s == ok, count == 2, kept = {4, 10}: descending attention

  // 2. Merge: each kept token absorbs its 2 nearest tokens by key, weighted by attention.
  const tokred::index_t rows = tokred::retained_count(merge, prob, count);  // 3: kept + extra token
  std::vector<float> merged(static_cast<std::size_t>(rows * 2));     // (rows, dim)
  std::vector<std::int64_t> source(static_cast<std::size_t>(rows));  // (rows,)
  tokred::prumerge_outputs<float> out{};
  out.tokens = tokred::make_view(merged.data(), rows, 2);
  out.source = tokred::make_view(source.data(), rows);
  const tokred::prumerge_inputs<float> in{prob.grid, tokred::make_view<const std::int64_t>(kept.data(), count), x, a, k};
  s = tokred::apply(tokred::cpu{}, merge, in, out, ws);
  // s == ok, source = {4, 10, -1}; merged = {21, 6,  137, 14,  217, 33}:
  //   x_4 + 4·x_3 + 1·x_5,  x_10 + 8·x_9 + 5·x_11,  Σ a_j·x_j over the 10 pruned tokens
  // example-end prumerge
  SCENE_CHECK(s == tokred::status::ok);
  SCENE_CHECK(count == 2 && kept[0] == 4 && kept[1] == 10);
  SCENE_CHECK(rows == 3);
  SCENE_CHECK((source == std::vector<std::int64_t>{4, 10, -1}));
  SCENE_CHECK((merged == std::vector<float>{21, 6, 137, 14, 217, 33}));
}

}  // namespace

int main() {
  prumerge_scene();
  return scene::finish();
}
