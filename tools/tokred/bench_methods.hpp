// tools/tokred/bench_methods.hpp — the methods `tokred bench` compares, each as the pipeline spec
// that keeps a given fraction of an input's tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <tokred/core/grid.hpp>

namespace tokred::cli {

/// What a method's spec may depend on besides the budget and the grid.
struct method_context {
  bool caller_scores = false;  ///< the user gave scores: score-ranked methods use them (score=input)
  std::uint64_t seed = 0;
};

struct bench_method {
  const char* name;
  const char* family;  ///< baseline, pooling, pruning, diversity, merging
  const char* paper;
  bool ranks_by_score;  ///< reads a score: the caller's, else the tokens' L2 norm
  /// The spec keeping about `budget` of the tokens of `grid`; "" when the method does not apply
  /// (with the reason in `why`).
  std::string (*spec)(double budget, const token_grid& grid, const method_context& ctx, std::string& why);
};

/// Every method, baselines first.
const std::vector<bench_method>& bench_methods();

/// `budget` as a spec ratio: decimal, with a point, at most six decimals ("0.25"); "" if it would
/// round to 0 or 1.
std::string ratio_text(double budget);

}  // namespace tokred::cli
