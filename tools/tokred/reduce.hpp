// tools/tokred/reduce.hpp — one pipeline applied to one input in a chosen element type, with every
// buffer allocated up front so that `apply` can be timed on its own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/grid.hpp>
#include <tokred/core/status.hpp>
#include <tokred/policy/pipeline_spec.hpp>

#include "tokred/features.hpp"

namespace tokred::cli {

/// What a pipeline returned, in the program's output types.
struct reduction {
  index_t kept = 0;
  token_grid grid;                      ///< the grid the last stage handed on
  std::vector<float> tokens;            ///< (kept, dim), converted to float32
  std::vector<std::int64_t> source;     ///< (kept,) original flat index each output stands for
  std::vector<std::int32_t> positions;  ///< (kept, 3) its original (t, h, w)
  std::vector<float> sizes;             ///< (kept,) originals landing in each output
  std::vector<std::int64_t> assign;     ///< (tokens,) output of every original, or -1
};

/// Optional inputs of a reduction besides the tokens.
struct side_inputs {
  const std::vector<float>* scores = nullptr;  ///< one per token
  const std::vector<float>* query = nullptr;   ///< (query_rows, dim)
  index_t query_rows = 0;
};

/// A pipeline bound to one input: the tokens converted to the compute type, the workspace and the
/// outputs sized from the shapes.
class reducer {
 public:
  virtual ~reducer() = default;
  /// One `apply` of the pipeline (single-threaded; the outputs are overwritten).
  virtual status apply() = 0;
  /// The last apply's outputs.
  virtual void collect(reduction& out) const = 0;
  /// The token rows as the pipeline reads them (for the memcpy baseline).
  virtual const void* input_data() const = 0;
  virtual std::size_t input_bytes() const = 0;
  virtual index_t kept() const = 0;
};

/// Makes `Runner<E>` from `args` for the compute type `e`.
template <template <class> class Runner, class... Args>
std::unique_ptr<reducer> for_element(element e, const Args&... args) {
  switch (e) {
    case element::f16: return std::make_unique<Runner<f16>>(args...);
    case element::bf16: return std::make_unique<Runner<bf16>>(args...);
    case element::f32: break;
  }
  return std::make_unique<Runner<float>>(args...);
}

/// Binds `p` to `in` computing in `e`. An error message when the pipeline cannot run on the input
/// (naming the stage and the reason) or lacks an input it needs; empty on success.
std::string make_reducer(const any_pipeline& p, const token_input& in, const side_inputs& side, element e,
                         std::unique_ptr<reducer>& out);

/// `x` rounded to the element type `E` (round to nearest even; exact for float).
template <class E>
std::vector<E> converted(const std::vector<float>& x) {
  std::vector<E> out(x.size());
  std::transform(x.begin(), x.end(), out.begin(), [](float v) { return from_float<E>(v); });
  return out;
}

/// The L2 norm of every token (the library's `token_norm` on the fp32 tokens): the stand-in score
/// when the data carries no attention. The one place the program computes it: `tokred bench`
/// makes it once per input, outside every method's timing, and times it on its own.
class norm_scorer {
 public:
  explicit norm_scorer(const token_input& in);  ///< `in` must outlive the scorer
  /// Computes the norms into `scores()`; allocates nothing.
  status operator()();
  const std::vector<float>& scores() const { return scores_; }

 private:
  const token_input& in_;
  std::vector<float> scores_;
  std::vector<std::byte> workspace_;
};

/// The norms of `norm_scorer`, computed once.
std::vector<float> norm_scores(const token_input& in);

}  // namespace tokred::cli
