// Second translation unit of the strict_flags check: the same headers again, so that a function
// defined in a header without `inline` shows up as a duplicate symbol when the two are linked, and
// the pipelines' instantiations, compiled beside the first unit's.
#include <tokred/tokred.hpp>

#include <cstdint>

namespace tokred_compile {

// A typed chain with every kind of stage, and the same kind of chain parsed from a spec, with Ein
// tokens in and Eout tokens out, on a 2 × 4 × 4 grid.
template <class Ein, class Eout>
int run_pipelines(tokred::workspace ws) {
  static Ein rows[32 * 3] = {};  // (tokens, dim)
  static const float scores[32] = {};  // (tokens,)
  static Eout kept_rows[32 * 3];  // (kept, dim)
  static std::int64_t source[32], assign[32];
  static std::int32_t positions[32 * 3];
  static float sizes[32];
  const tokred::pipeline_inputs<Ein> in{{2, 4, 4}, tokred::make_view(rows, 32, 3), tokred::make_view(scores, 32), {}};
  const auto run_one = [&](const auto& chain) {
    const tokred::index_t kept = tokred::retained_count(chain, tokred::problem{in.grid, 3});
    const tokred::pipeline_outputs<Eout> out{tokred::make_view(kept_rows, kept, 3), tokred::make_view(source, kept),
                                             tokred::make_view(positions, kept, 3), tokred::make_view(sizes, kept),
                                             tokred::make_view(assign, 32)};
    return tokred::apply(tokred::cpu<>{}, chain, in, out, ws) != tokred::status::ok;
  };
  const tokred::keep_budget two = tokred::keep_budget::count(2);
  return run_one(tokred::make_pipeline(tokred::pool{}, tokred::tome{1, 0},
                                       tokred::scored<tokred::token_norm, tokred::topk>{{}, tokred::topk{two}})) +
         run_one(tokred::make_pipeline(tokred::dct_share{0.5}, tokred::topk{two}, tokred::divprune{two})) +
         run_one(tokred::parse_pipeline("bilinear(3x3) | tome(r=0.25) | kcenter(keep=2)").pipeline) +
         run_one(tokred::make_pipeline(tokred::pool{}, tokred::visionzip{2, 1, false})) +
         run_one(tokred::parse_pipeline("visionzip(dominant=3, contextual=1) | topk(keep=2)").pipeline);
}

template <class Ein>
int run_pipeline_pairs(tokred::workspace ws) {
  return run_pipelines<Ein, float>(ws) + run_pipelines<Ein, tokred::f16>(ws) + run_pipelines<Ein, tokred::bf16>(ws);
}

}  // namespace tokred_compile

int run_second_tu(tokred::workspace ws) {
  const tokred::topk policy{tokred::keep_budget::ratio(0.5, tokred::rounding::half_even)};
  const tokred::problem prob{tokred::image_grid(2, 2), 3};
  const int budget_failures = tokred::retained_count(policy, prob) == 2 &&
                                      tokred::can_implement(policy, prob) == tokred::status::ok
                                  ? 0
                                  : 1;
  return budget_failures + tokred_compile::run_pipeline_pairs<float>(ws) +
         tokred_compile::run_pipeline_pairs<tokred::f16>(ws) +
         tokred_compile::run_pipeline_pairs<tokred::bf16>(ws);
}
