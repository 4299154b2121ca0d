// The umbrella header under the strictest settings a user may build with: no exceptions, no
// RTTI, -Wall -Wextra -Wpedantic -Werror (see CMakeLists.txt). Every CPU backend is instantiated
// for every pair of element types, so warnings inside the templates count too. Linked with
// strict_flags_second_tu.cpp, which includes the same headers (a function defined in a header
// without `inline` fails the link as a duplicate symbol) and instantiates the pipelines, so that
// the two halves compile in parallel.
#include <tokred/tokred.hpp>

#include <cstdint>
#include <type_traits>
#include <utility>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(__GXX_RTTI) || defined(__cpp_rtti)
#error "this file must be compiled without exceptions and without RTTI"
#endif

namespace tokred_compile {

// The contract's two backend calls exist for every CPU policy and return what contract.hpp says.
template <class Policy, class Inputs, class Outputs>
constexpr bool has_cpu_backend() {
  using exec = tokred::cpu<>;
  return std::is_same_v<decltype(tokred::workspace_bytes(std::declval<const exec&>(),
                                                         std::declval<const Policy&>(),
                                                         std::declval<const tokred::problem&>())),
                        std::size_t> &&
         std::is_same_v<decltype(tokred::apply(
                            std::declval<const exec&>(), std::declval<const Policy&>(),
                            std::declval<const Inputs&>(), std::declval<const Outputs&>(),
                            std::declval<tokred::workspace>())),
                        tokred::status>;
}
static_assert(has_cpu_backend<tokred::topk, tokred::selection_inputs<float>,
                              tokred::selection_outputs<float>>());
static_assert(has_cpu_backend<tokred::uniform, tokred::selection_inputs<tokred::f16>,
                              tokred::selection_outputs<tokred::bf16>>());
static_assert(has_cpu_backend<tokred::random_subset, tokred::selection_inputs<tokred::bf16>,
                              tokred::selection_outputs<float>>());
static_assert(has_cpu_backend<tokred::gather, tokred::gather_inputs<float>,
                              tokred::selection_outputs<tokred::f16>>());

// Runs one budgeted policy with Ein rows in and Eout rows out.
template <class Policy, class Ein, class Eout>
tokred::status run(const Policy& policy, const tokred::selection_inputs<Ein>& in,
                   const tokred::selection_outputs<Eout>& out, tokred::workspace ws) {
  return tokred::apply(tokred::cpu<>{}, policy, in, out, ws);
}

template <class Ein, class Eout>
int run_all(const tokred::selection_inputs<Ein>& in, const tokred::selection_outputs<Eout>& out,
            const tokred::gather_inputs<Ein>& gathered, tokred::workspace ws) {
  const tokred::keep_budget two = tokred::keep_budget::count(2);
  int failures = 0;
  failures += run(tokred::topk{two}, in, out, ws) != tokred::status::ok;
  failures += run(tokred::uniform{two}, in, out, ws) != tokred::status::ok;
  failures += run(tokred::random_subset{two, 7}, in, out, ws) != tokred::status::ok;
  failures +=
      tokred::apply(tokred::cpu<>{}, tokred::gather{}, gathered, out, ws) != tokred::status::ok;
  return failures;
}

// Every output element type for one input element type.
template <class Ein>
int run_element_pairs(tokred::workspace ws) {
  static Ein rows[4 * 3] = {};                  // (tokens, dim)
  static const float scores[4] = {1, 4, 2, 3};  // (tokens,)
  static const std::int64_t index[2] = {3, 0};  // (kept,)
  static float out_f32[2 * 3];
  static tokred::f16 out_f16[2 * 3];
  static tokred::bf16 out_bf16[2 * 3];
  static std::int64_t source[2];
  static std::int32_t positions[2 * 3];

  const tokred::token_grid grid = tokred::image_grid(2, 2);
  const tokred::selection_inputs<Ein> in{grid, tokred::make_view(scores, 4),
                                         tokred::make_view(rows, 4, 3)};
  const tokred::gather_inputs<Ein> gathered{grid, tokred::make_view(index, 2),
                                            tokred::make_view(rows, 4, 3)};
  const auto outputs = [&](auto* kept) {
    using E = std::remove_pointer_t<decltype(kept)>;
    return tokred::selection_outputs<E>{tokred::make_view(kept, 2, 3), tokred::make_view(source, 2),
                                        tokred::make_view(positions, 2, 3)};
  };
  return run_all(in, outputs(out_f32), gathered, ws) + run_all(in, outputs(out_f16), gathered, ws) +
         run_all(in, outputs(out_bf16), gathered, ws);
}

// Every grid reducer and video layout with Ein tokens in and Eout tokens out, on a 2 × 4 × 4 grid.
template <class Ein, class Eout>
int run_grid_reducers(tokred::workspace ws) {
  static Ein rows[32 * 3] = {};  // (tokens, dim)
  static Eout reduced[32 * 3];   // (kept, dim), kept <= 32
  static std::int64_t source[32];
  static std::int32_t positions[32 * 3];
  static float sizes[32];
  const tokred::grid_inputs<Ein> in{{2, 4, 4}, tokred::make_view(rows, 32, 3)};
  const auto run_one = [&](const auto& policy) {
    const tokred::index_t kept = tokred::retained_count(policy, tokred::problem{in.grid, 3});
    const tokred::grid_outputs<Eout> out{tokred::make_view(reduced, kept, 3),
                                         tokred::make_view(source, kept),
                                         tokred::make_view(positions, kept, 3),
                                         tokred::make_view(sizes, kept)};
    return tokred::apply(tokred::cpu<>{}, policy, in, out, ws) != tokred::status::ok;
  };
  tokred::slowfast slow_fast;
  slow_fast.slow_frames = 1;
  slow_fast.fast_height = slow_fast.fast_width = 2;
  tokred::thumbnail_sampling thumbnail;
  thumbnail.sampled_tokens = 8;
  thumbnail.thumbnail_frames = 2;
  return run_one(tokred::pool{}) + run_one(tokred::adaptive_pool{tokred::pool_kind::max, {1, 3, 3}}) +
         run_one(tokred::bilinear{3, 3, false}) +
         run_one(tokred::dct_lowpass{{2, 2, 2}, tokred::dct_axes::spatial,
                                     tokred::dct_output::resampled}) +
         run_one(slow_fast) + run_one(thumbnail);
}

// Every diversity selection with Ein rows in and Eout rows out, on 2 frames of 2 × 3 tokens.
template <class Ein, class Eout>
int run_diversity(tokred::workspace ws) {
  static Ein rows[12 * 3] = {};   // (tokens, dim)
  static Ein query[1 * 3] = {};   // (queries, dim)
  static const float scores[12] = {1, 4, 2, 3, 5, 6, 1, 4, 2, 3, 5, 6};  // (tokens,)
  static Eout kept_rows[4 * 3];   // (kept, dim)
  static std::int64_t source[4], picks[4];
  static std::int32_t positions[4 * 3];
  const tokred::diversity_inputs<Ein> in{{2, 2, 3}, tokred::make_view(rows, 12, 3), {},
                                         tokred::make_view(scores, 12), tokred::make_view(query, 1, 3)};
  const tokred::diversity_outputs<Eout> out{
      {tokred::make_view(kept_rows, 4, 3), tokred::make_view(source, 4), tokred::make_view(positions, 4, 3)},
      tokred::make_view(picks, 4)};
  const tokred::keep_budget two = tokred::keep_budget::count(2);
  const auto run_one = [&](const auto& policy) {
    return tokred::apply(tokred::cpu<>{}, policy, in, out, ws) != tokred::status::ok;
  };
  return run_one(tokred::divprune{two, tokred::scope::per_frame}) +
         run_one(tokred::kcenter{tokred::keep_budget::count(4)}) +
         run_one(tokred::importance_diversity{two, tokred::scope::per_frame}) +
         run_one(tokred::cdpruner{tokred::keep_budget::count(4), 0.5f, tokred::dpp_kernel::openvino, true});
}

template <class Ein>
int run_diversity_pairs(tokred::workspace ws) {
  return run_diversity<Ein, float>(ws) + run_diversity<Ein, tokred::f16>(ws) +
         run_diversity<Ein, tokred::bf16>(ws);
}

template <class Ein>
int run_grid_pairs(tokred::workspace ws) {
  return run_grid_reducers<Ein, float>(ws) + run_grid_reducers<Ein, tokred::f16>(ws) +
         run_grid_reducers<Ein, tokred::bf16>(ws);
}

}  // namespace tokred_compile

int run_second_tu(tokred::workspace ws);  // strict_flags_second_tu.cpp

int main() {
  alignas(64) static unsigned char scratch[1 << 16];
  const tokred::workspace ws{scratch, sizeof scratch};
  const int failures = tokred_compile::run_element_pairs<float>(ws) +
                       tokred_compile::run_element_pairs<tokred::f16>(ws) +
                       tokred_compile::run_element_pairs<tokred::bf16>(ws) +
                       tokred_compile::run_grid_pairs<float>(ws) +
                       tokred_compile::run_grid_pairs<tokred::f16>(ws) +
                       tokred_compile::run_grid_pairs<tokred::bf16>(ws) +
                       tokred_compile::run_diversity_pairs<float>(ws) +
                       tokred_compile::run_diversity_pairs<tokred::f16>(ws) +
                       tokred_compile::run_diversity_pairs<tokred::bf16>(ws) + run_second_tu(ws);
  return failures == 0 ? 0 : 1;
}
