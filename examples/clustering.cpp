// clustering.cpp — merging by clustering: DPC-kNN picks one center per cluster of similar
// tokens, every other token joins its nearest center, and each cluster becomes one token
// (HoliTom's merge of a window's static tokens). The docs quote the region between the example
// markers verbatim; the checks around it make sure its comments tell the truth.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/clustering.hpp>

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

}  // namespace

int main() {
  clustering_scene();
  return scene::finish();
}
