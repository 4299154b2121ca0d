// tools/tokred/reduce.cpp — pipelines bound to inputs (see reduce.hpp). The only file of the
// program that instantiates the policies, once per element type.
#include "tokred/reduce.hpp"

#include <algorithm>

#include <fmt/format.h>

#include <tokred/tokred.hpp>

namespace tokred::cli {

namespace {

/// Why `p` cannot run on `prob`: the stage, the grid that reaches it and the status.
std::string cannot_run(const any_pipeline& p, const problem& prob, status why) {
  if (p.stages.empty()) return "the pipeline has no stage";
  const std::size_t failed = failing_stage(p, prob);
  token_grid reaching = prob.grid;
  detail::walk_chain(p, prob, [&](std::size_t i, const problem& at, const detail::stage_shape&) {
    if (i == failed) reaching = at.grid;
  });
  return fmt::format("stage {} '{}' cannot run on the {} tokens ({}) that reach it: {}", failed + 1,
                     p.canonical[failed], reaching.tokens(), grid_text(reaching), to_string(why));
}

template <class E>
class typed_reducer final : public reducer {
 public:
  typed_reducer(const any_pipeline& p, const token_input& in, const side_inputs& side)
      : pipeline_(p), prob_{in.grid, in.dim}, tokens_(converted<E>(in.tokens)) {
    kept_ = retained_count(pipeline_, prob_);
    const auto n = static_cast<std::size_t>(in.grid.tokens());
    const auto k = static_cast<std::size_t>(kept_);
    out_tokens_.resize(k * static_cast<std::size_t>(in.dim));
    source_.resize(k);
    positions_.resize(k * 3);
    sizes_.resize(k);
    assign_.resize(n);
    workspace_.resize(workspace_bytes(cpu<>{}, pipeline_, prob_));
    inputs_.grid = in.grid;
    inputs_.tokens = make_view(static_cast<const E*>(tokens_.data()), in.grid.tokens(), in.dim);
    if (side.scores) inputs_.scores = make_view(side.scores->data(), in.grid.tokens());
    if (side.query) {
      query_ = converted<E>(*side.query);
      inputs_.query = make_view(static_cast<const E*>(query_.data()), side.query_rows, in.dim);
    }
    outputs_ = {make_view(out_tokens_.data(), kept_, in.dim), make_view(source_.data(), kept_),
                make_view(positions_.data(), kept_, 3), make_view(sizes_.data(), kept_),
                make_view(assign_.data(), in.grid.tokens())};
    grid_ = output_grid(pipeline_, prob_);
  }

  status apply() override {
    return tokred::apply(cpu<>{}, pipeline_, inputs_, outputs_, {workspace_.data(), workspace_.size()});
  }
  void collect(reduction& out) const override {
    out.kept = kept_;
    out.grid = grid_;
    out.tokens.resize(out_tokens_.size());
    std::transform(out_tokens_.begin(), out_tokens_.end(), out.tokens.begin(), [](E v) { return to_float(v); });
    out.source = source_;
    out.positions = positions_;
    out.sizes = sizes_;
    out.assign = assign_;
  }
  const void* input_data() const override { return tokens_.data(); }
  std::size_t input_bytes() const override { return tokens_.size() * sizeof(E); }
  index_t kept() const override { return kept_; }

 private:
  any_pipeline pipeline_;
  problem prob_;
  index_t kept_ = 0;
  token_grid grid_;
  std::vector<E> tokens_, query_, out_tokens_;
  std::vector<std::int64_t> source_, assign_;
  std::vector<std::int32_t> positions_;
  std::vector<float> sizes_;
  std::vector<std::byte> workspace_;
  pipeline_inputs<E> inputs_;
  pipeline_outputs<E> outputs_;
};

}  // namespace

std::string make_reducer(const any_pipeline& p, const token_input& in, const side_inputs& side, element e,
                         std::unique_ptr<reducer>& out) {
  const problem prob{in.grid, in.dim};
  if (const status s = can_implement(p, prob); s != status::ok) return cannot_run(p, prob, s);
  const detail::chain_shape shape = detail::chain_output(p, prob);
  if (shape.reads_scores && !side.scores)
    return "the pipeline reads the caller's scores (visionzip, or score=input): give --scores, or rank "
           "by a score computed from the tokens (score=norm, score=query or score=temporal)";
  if (shape.reads_query && !side.query) return "the pipeline needs query rows: give --query";
  out = for_element<typed_reducer>(e, p, in, side);
  return {};
}

norm_scorer::norm_scorer(const token_input& in)
    : in_(in), scores_(static_cast<std::size_t>(in.grid.tokens())),
      workspace_(workspace_bytes(cpu<>{}, token_norm{}, problem{in.grid, in.dim})) {}

status norm_scorer::operator()() {
  const index_t n = in_.grid.tokens();
  const feature_score_inputs<float> inputs{in_.grid, make_view(in_.tokens.data(), n, in_.dim), {}};
  return tokred::apply(cpu<>{}, token_norm{}, inputs, score_outputs<>{make_view(scores_.data(), n)},
                       {workspace_.data(), workspace_.size()});
}

std::vector<float> norm_scores(const token_input& in) {
  norm_scorer score(in);
  if (score() != status::ok)  // unreachable: the input is checked
    return std::vector<float>(static_cast<std::size_t>(in.grid.tokens()), 0.0f);
  return score.scores();
}

}  // namespace tokred::cli
