// scene_checks.hpp — what the example programs share: each scene checks that the comments in its
// documented region tell the truth, and the program fails if one does not.
#pragma once

#include <cmath>
#include <cstdio>
#include <vector>

namespace scene {

inline int failures = 0;

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("  FAILED: %s\n", what);
    ++failures;
  }
}

/// The largest |q·k − logit| over every query head and key: `query` (q_heads, head_dim), `keys`
/// (kv_heads, tokens, head_dim), `logits` (q_heads, tokens), query head h reading kv head
/// h / (q_heads / kv_heads). The dot products in double.
template <class Index>
double worst_logit_error(const std::vector<float>& query, const std::vector<float>& keys,
                         const std::vector<float>& logits, Index q_heads, Index kv_heads, Index tokens, Index head_dim) {
  double worst = 0.0;
  for (Index h = 0; h < q_heads; ++h)
    for (Index t = 0; t < tokens; ++t) {
      double dot = 0.0;
      const Index kv = h / (q_heads / kv_heads);
      for (Index d = 0; d < head_dim; ++d)
        dot += static_cast<double>(query[h * head_dim + d]) * keys[(kv * tokens + t) * head_dim + d];
      worst = std::fmax(worst, std::fabs(dot - logits[h * tokens + t]));
    }
  return worst;
}

/// Prints the verdict; the program's exit status.
inline int finish() {
  std::printf(failures == 0 ? "all scenes ran as documented\n" : "%d checks failed\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace scene

#define SCENE_CHECK(expr) ::scene::check((expr), #expr)
