// Views say where their memory is; apply() refuses, at compile time, to run host views on a CUDA
// stream. Without TOKRED_SHOULD_FAIL this file runs them on the CPU and must compile; with it,
// only the exec tag changes to tokred::cuda, and the static_assert in core/contract.hpp must fire.
#include <tokred/tokred.hpp>

#include <cstdint>

int main() {
  const float scores[4] = {0.5f, 2.0f, 1.0f, -1.0f};  // (tokens,) in host memory
  std::int64_t source[2] = {};                        // (kept,) in host memory
  alignas(64) unsigned char scratch[1024];            // topk's workspace, in host memory
  const tokred::selection_inputs<float> in{
      tokred::sequence_grid(4), tokred::make_view(scores, 4), {}};
  const tokred::selection_outputs<float> out{{}, tokred::make_view(source, 2), {}};
#if defined(TOKRED_SHOULD_FAIL)
  const tokred::cuda exec{};
#else
  const tokred::cpu<> exec{};
#endif
  const tokred::status s = tokred::apply(exec, tokred::topk{tokred::keep_budget::count(2)}, in, out,
                                         {scratch, sizeof scratch});
  return s == tokred::status::ok && source[0] == 1 && source[1] == 2 ? 0 : 1;
}
