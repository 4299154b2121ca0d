// tools/tokred/bench_methods.hpp — the methods `tokred bench` compares: each as the pipeline spec
// that keeps a given fraction of an input's tokens, or as its own runner (tokred/direct_methods.hpp)
// where a spec cannot say it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <tokred/core/grid.hpp>

#include "tokred/features.hpp"
#include "tokred/reduce.hpp"

namespace tokred::cli {

/// What a method's spec may depend on besides the budget and the grid.
struct method_context {
  bool caller_scores = false;  ///< the user gave scores: score-ranked methods use them (score=input)
  std::uint64_t seed = 0;
};

/// The spec keeping about `budget` of the tokens of `grid`; "" when the method does not apply
/// (with the reason in `why`).
using spec_maker = std::string (*)(double budget, const token_grid& grid, const method_context& ctx,
                                   std::string& why);

/// A method a spec cannot express, bound to one input: `out` gets the reducer and `description`
/// the call it makes (the report's spec column). Returns why it does not apply, empty when it does.
using runner_function = std::string(double budget, const token_input& in, const side_inputs& side, element e,
                                    const method_context& ctx, std::unique_ptr<reducer>& out,
                                    std::string& description);
using runner_maker = runner_function*;

struct bench_method {
  const char* name;
  const char* family;  ///< baseline, pooling, pruning, diversity, merging, layout
  const char* paper;
  bool ranks_by_score;  ///< reads the bench's score: the caller's, else the tokens' L2 norm (made before timing)
  spec_maker spec;      ///< the spec, or null for a runner
  runner_maker runner = nullptr;
  /// The method decides its own count from the data (PruMerge's outliers, DTD's threshold): it runs
  /// once per input at its original's parameters, its row's budget is 0 ("own").
  bool own_count = false;
  /// The outputs carry the DCT's √(N/N') gain (the inverse runs orthonormal at the kept size):
  /// the fidelity metrics read them divided by it, so they measure the low-pass, not the scale.
  bool unit_gain = false;
};

/// Every method, baselines first.
const std::vector<bench_method>& bench_methods();

/// The ranking score every score-ranked method reads, for the report: always the bench's scores
/// (score=input), the caller's or the token norms computed once per input before timing.
const char* score_name(const method_context& ctx);

/// The side a fraction `budget` of a grid's area keeps of `side`: round(side · √budget), ≥ 1.
index_t kept_side(index_t side, double budget);

struct kept_extent {
  index_t height, width;
};
/// The grid the pooling baselines reduce an H × W frame to: the (h, w) with h·w nearest
/// budget·H·W (h within one of H·√budget, w = round(budget·H·W / h) ≤ W), the aspect nearest
/// H : W among equals (then the lower h). So they keep about what random and uniform keep (17 × 17 at 0.25: 8 × 9 =
/// 72 tokens, where round(17·0.5)² = 81 kept 0.280), and a 1-row grid pools along the row.
kept_extent kept_grid(index_t height, index_t width, double budget);

/// `budget` as a spec ratio: decimal, with a point, at most six decimals ("0.25"); "" if it would
/// round to 0 or 1.
std::string ratio_text(double budget);

}  // namespace tokred::cli
