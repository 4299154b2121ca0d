// tools/tokred/direct_methods.cpp — the bench's runners for methods no spec expresses (see
// direct_methods.hpp). Every runner owns its buffers, sized before the first `apply`, and leaves
// in `collect` what a pipeline's reducer leaves: rows, source, positions, sizes and assign.
#include "tokred/direct_methods.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include <tokred/core/config.hpp>
#include <tokred/tokred.hpp>

TOKRED_INTRINSIC_HEADERS_BEGIN
#include <Eigen/Core>
TOKRED_INTRINSIC_HEADERS_END

namespace tokred::cli {

namespace {

std::size_t size_of(index_t n) { return static_cast<std::size_t>(n); }

/// The softmax of every frame's scaled dot products, (T, 1, H·W, H·W) row-major: the stand-in for
/// an encoder's patch-to-patch attention map (one head).
std::vector<float> self_attention_maps(const token_input& in) {
  using rows_map = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  using maps_map = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  const index_t n = in.grid.frame_tokens(), d = in.dim;
  std::vector<float> maps(size_of(in.grid.frames) * size_of(n) * size_of(n));
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (index_t t = 0; t < in.grid.frames; ++t) {
    const rows_map x(in.tokens.data() + size_of(t * n * d), n, d);
    maps_map a(maps.data() + size_of(t * n * n), n, n);
    a.noalias() = x * x.transpose();
    a *= scale;
    for (index_t q = 0; q < n; ++q) {
      a.row(q).array() -= a.row(q).maxCoeff();
      a.row(q) = a.row(q).array().exp().matrix();
      a.row(q) /= a.row(q).sum();
    }
  }
  return maps;
}

/// What every runner holds: the input rows in the compute type, the outputs sized by the count
/// (or its static bound), the workspace, and the count the last apply wrote.
template <class E>
class direct_reducer : public reducer {
 public:
  direct_reducer(const token_input& in, index_t bound)
      : grid_(in.grid), dim_(in.dim), tokens_(converted<E>(in.tokens)), bound_(bound) {
    out_tokens_.resize(size_of(bound) * size_of(in.dim));
    source_.resize(size_of(bound));
    positions_.resize(size_of(bound) * 3);
  }

  void collect(reduction& out) const override {
    const std::size_t k = size_of(kept_), d = size_of(dim_);
    out.kept = kept_;
    out.grid = token_grid{1, 1, kept_};
    out.tokens.resize(k * d);
    std::transform(out_tokens_.begin(), out_tokens_.begin() + static_cast<std::ptrdiff_t>(k * d), out.tokens.begin(),
                   [](E v) { return to_float(v); });
    out.source.assign(source_.begin(), source_.begin() + static_cast<std::ptrdiff_t>(k));
    out.positions.assign(positions_.begin(), positions_.begin() + static_cast<std::ptrdiff_t>(3 * k));
    if (sizes_.empty())
      out.sizes.assign(k, 1.0f);
    else
      out.sizes.assign(sizes_.begin(), sizes_.begin() + static_cast<std::ptrdiff_t>(k));
    if (!assign_.empty()) {
      out.assign = assign_;
      return;
    }
    // A selection: each kept original lands in its own row, the others are dropped.
    out.assign.assign(size_of(grid_.tokens()), -1);
    for (std::size_t j = 0; j < k; ++j) out.assign[static_cast<std::size_t>(source_[j])] = static_cast<std::int64_t>(j);
  }
  const void* input_data() const override { return tokens_.data(); }
  std::size_t input_bytes() const override { return tokens_.size() * sizeof(E); }
  index_t kept() const override { return kept_; }

 protected:
  view<const E, 2> rows() const { return make_view(static_cast<const E*>(tokens_.data()), grid_.tokens(), dim_); }
  selection_outputs<E> selection_out() {
    return {make_view(out_tokens_.data(), bound_, dim_), make_view(source_.data(), bound_),
            make_view(positions_.data(), bound_, 3)};
  }
  workspace scratch() { return {workspace_.data(), workspace_.size()}; }
  void reserve_workspace(std::size_t bytes) { workspace_.resize(std::max(workspace_.size(), bytes)); }

  token_grid grid_;
  index_t dim_;
  std::vector<E> tokens_;
  index_t bound_;
  index_t kept_ = 0;
  std::vector<E> out_tokens_;
  std::vector<std::int64_t> source_;
  std::vector<std::int32_t> positions_;
  std::vector<float> sizes_;          ///< empty: every output stands for one original
  std::vector<std::int64_t> assign_;  ///< empty: derived from source (a selection)
  std::vector<std::byte> workspace_;
};

/// The score a selection reads: the caller's (or the norms the bench stands in with), as given.
/// Every score source has this shape: constructed from the input, its workspace, a step run
/// inside the timed call, and the scores that step leaves.
template <class E>
class caller_score {
 public:
  caller_score(const token_input&, const side_inputs& side) : scores_(side.scores->data()) {}
  std::size_t workspace_bytes() const { return 0; }
  status operator()(const token_grid&, const view<const E, 2>&, workspace) { return status::ok; }
  const float* scores() const { return scores_; }

 private:
  const float* scores_;
};

/// What every score the runner computes holds: its policy, one score per token, the workspace.
template <class P>
class computed_score {
 public:
  std::size_t workspace_bytes() const { return bytes_; }
  const float* scores() const { return scores_.data(); }

 protected:
  computed_score(const P& policy, index_t tokens, const problem& prob)
      : policy_(policy), scores_(size_of(tokens)), bytes_(tokred::workspace_bytes(cpu<>{}, policy, prob)) {}
  /// Scores [first, first + count) as the policy's output.
  score_outputs<> outputs(index_t first, index_t count) { return {make_view(scores_.data() + first, count)}; }

  P policy_;

 private:
  std::vector<float> scores_;
  std::size_t bytes_;
};

/// TimeChat-Online DTD's score: the cosine of each token to its slot in the previous frame.
template <class E>
class dtd_score : public computed_score<temporal_similarity> {
 public:
  dtd_score(const token_input& in, const side_inputs&)
      : computed_score(temporal_similarity::dtd(), in.grid.tokens(), problem{in.grid, in.dim}) {}
  status operator()(const token_grid& grid, const view<const E, 2>& rows, workspace ws) {
    return tokred::apply(cpu<>{}, policy_, feature_score_inputs<E>{grid, rows, {}}, outputs(0, grid.tokens()), ws);
  }
};

/// STC-Pruner's score: the video streamed one frame per chunk through a fresh memory.
template <class E>
class stc_score : public computed_score<gaussian_redundancy> {
 public:
  stc_score(const token_input& in, const side_inputs&)
      : computed_score(gaussian_redundancy{}, in.grid.tokens(), problem{frame_of(in.grid), in.dim}),
        sums_(size_of(detail::redundancy_width(policy_.channel_ratio, in.dim))) {}
  status operator()(const token_grid& grid, const view<const E, 2>& rows, workspace ws) {
    chunks_ = 0;  // a new stream
    const token_grid frame = frame_of(grid);
    const index_t per = frame.tokens(), d = rows.extent(1);
    const redundancy_memory<> memory{make_view(sums_.data(), static_cast<index_t>(sums_.size())),
                                     make_view(&chunks_, 1), {}};
    for (index_t t = 0; t < grid.frames; ++t) {
      const redundancy_inputs<E> chunk{frame, make_view(rows.data_handle() + t * per * d, per, d), memory};
      if (const status s = tokred::apply(cpu<>{}, policy_, chunk, outputs(t * per, per), ws); s != status::ok)
        return s;
    }
    return status::ok;
  }

 private:
  static token_grid frame_of(const token_grid& g) { return {1, g.height, g.width}; }
  std::vector<double> sums_;
  std::int64_t chunks_ = 0;
};

/// FastV's score without an attention matrix: the attention the query rows pay each token, one
/// head of the full width, the tokens as keys.
template <class E>
class fastv_score : public computed_score<fused_attention_score> {
 public:
  fastv_score(const token_input& in, const side_inputs& side)
      : computed_score(fused_attention_score{}, in.grid.tokens(), problem{in.grid, in.dim}),
        query_(converted<E>(*side.query)),
        rows_(side.query_rows) {}
  status operator()(const token_grid& grid, const view<const E, 2>& rows, workspace ws) {
    const index_t d = rows.extent(1);
    const fused_attention_inputs<E> in{grid, make_view(static_cast<const E*>(query_.data()), rows_, 1, d),
                                       make_view(rows.data_handle(), 1, grid.tokens(), d)};
    return tokred::apply(cpu<>{}, policy_, in, outputs(0, grid.tokens()), ws);
  }

 private:
  std::vector<E> query_;
  index_t rows_;
};

/// FoPru's significance: the column or row means of each frame's attention map (the stand-in map
/// of `self_attention_maps`, made before timing as an encoder would hand it over).
template <class E>
class fopru_score : public computed_score<attention_significance> {
 public:
  fopru_score(const token_input& in, const side_inputs&)
      : computed_score(attention_significance{}, in.grid.tokens(), problem{in.grid, 0}),
        maps_(self_attention_maps(in)) {}
  status operator()(const token_grid& grid, const view<const E, 2>&, workspace ws) {
    const index_t n = grid.frame_tokens();
    const attention_significance_inputs<float> in{grid, make_view(static_cast<const float*>(maps_.data()),
                                                                  grid.frames, index_t{1}, n, n)};
    return tokred::apply(cpu<>{}, policy_, in, outputs(0, grid.tokens()), ws);
  }

 private:
  std::vector<float> maps_;
};

/// A selection over the scores of `Score`, computed inside the timed call. `Counted` selections
/// decide their count from the data and write it to `count`; the others keep exactly
/// `retained_count`.
template <class E, class Select, bool Counted, template <class> class Score>
class select_runner final : public direct_reducer<E> {
 public:
  select_runner(const Select& p, const token_input& in, const side_inputs& side)
      : direct_reducer<E>(in, retained_count(p, problem{in.grid, in.dim})), policy_(p), score_(in, side) {
    this->reserve_workspace(tokred::workspace_bytes(cpu<>{}, p, problem{in.grid, in.dim}));
    this->reserve_workspace(score_.workspace_bytes());
  }

  status apply() override {
    if (const status s = score_(this->grid_, this->rows(), this->scratch()); s != status::ok) return s;
    const selection_inputs<E> in{this->grid_, make_view(score_.scores(), this->grid_.tokens()), this->rows()};
    if constexpr (Counted) {
      const counted_outputs<E> out{this->selection_out(), make_view(&count_, 1)};
      const status s = tokred::apply(cpu<>{}, policy_, in, out, this->scratch());
      this->kept_ = s == status::ok ? static_cast<index_t>(count_) : 0;
      return s;
    } else {
      const status s = tokred::apply(cpu<>{}, policy_, in, this->selection_out(), this->scratch());
      this->kept_ = s == status::ok ? this->bound_ : 0;
      return s;
    }
  }

 private:
  Select policy_;
  Score<E> score_;
  std::int64_t count_ = 0;
};

/// One of the video layouts (grid outputs with sizes). Pooled outputs overlap (a token sits in a
/// slow and a fast window), so no original is assigned to one output: the fidelity metrics pair
/// each with its nearest output.
template <class E, class Layout>
class layout_runner final : public direct_reducer<E> {
 public:
  layout_runner(const Layout& p, const token_input& in)
      : direct_reducer<E>(in, retained_count(p, problem{in.grid, in.dim})), policy_(p) {
    this->sizes_.resize(size_of(this->bound_));
    this->assign_.assign(size_of(in.grid.tokens()), -1);
  }
  status apply() override {
    const index_t k = this->bound_;
    const grid_outputs<E> out{make_view(this->out_tokens_.data(), k, this->dim_), make_view(this->source_.data(), k),
                              make_view(this->positions_.data(), k, 3), make_view(this->sizes_.data(), k)};
    const status s = tokred::apply(cpu<>{}, policy_, grid_inputs<E>{this->grid_, this->rows()}, out, {});
    this->kept_ = s == status::ok ? k : 0;
    return s;
  }

 private:
  Layout policy_;
};

/// FrameFusion's merge layer, then a top-k of the merged rows by the score of each chain's head.
template <class E>
class framefusion_runner final : public direct_reducer<E> {
 public:
  framefusion_runner(const framefusion& p, index_t keep, const token_input& in, const std::vector<float>& scores)
      : direct_reducer<E>(in, keep), merge_(p), scores_(scores) {
    const std::size_t n = size_of(in.grid.tokens());
    merged_tokens_.resize(n * size_of(in.dim));
    merged_source_.resize(n);
    merged_positions_.resize(3 * n);
    merged_sizes_.resize(n);
    merged_assign_.resize(n);
    head_scores_.resize(n);
    picked_.resize(size_of(keep));
    picked_positions_.resize(3 * size_of(keep));
    slot_of_.resize(n);
    this->sizes_.resize(size_of(keep));
    this->assign_.resize(n);
    const problem prob{in.grid, in.dim};
    this->reserve_workspace(workspace_bytes(cpu<>{}, p, prob));
    this->reserve_workspace(workspace_bytes(cpu<>{}, topk{keep_budget::count(keep)}, prob));
  }

  status apply() override {
    const index_t n = this->grid_.tokens(), d = this->dim_, k = this->bound_;
    std::int64_t count = 0;
    const framefusion_outputs<E> merged{
        {make_view(merged_tokens_.data(), n, d), make_view(merged_source_.data(), n),
         make_view(merged_positions_.data(), n, 3), make_view(merged_sizes_.data(), n),
         make_view(merged_assign_.data(), n)},
        make_view(&count, 1),
        {},
        {}};
    const framefusion_inputs<E> in{this->grid_, this->rows(), {}, {}, {}, {}};
    if (const status s = tokred::apply(cpu<>{}, merge_, in, merged, this->scratch()); s != status::ok) return s;
    const index_t rows = static_cast<index_t>(count);
    for (index_t r = 0; r < rows; ++r) head_scores_[size_of(r)] = scores_[static_cast<std::size_t>(merged_source_[size_of(r)])];
    // The budget is at most what the merge left (it merges at most 1 − budget of the rows).
    const index_t keep = std::min(k, rows);
    const selection_inputs<E> prune_in{token_grid{1, 1, rows}, make_view(head_scores_.data(), rows),
                                       make_view(static_cast<const E*>(merged_tokens_.data()), rows, d)};
    const selection_outputs<E> prune_out{make_view(this->out_tokens_.data(), keep, d), make_view(picked_.data(), keep),
                                         make_view(picked_positions_.data(), keep, 3)};
    if (const status s = tokred::apply(cpu<>{}, topk{keep_budget::count(keep)}, prune_in, prune_out, this->scratch());
        s != status::ok)
      return s;
    std::fill(slot_of_.begin(), slot_of_.begin() + rows, -1);
    for (index_t j = 0; j < keep; ++j) {
      const auto r = static_cast<std::size_t>(picked_[size_of(j)]);
      slot_of_[r] = j;
      this->source_[size_of(j)] = merged_source_[r];
      std::copy_n(merged_positions_.begin() + static_cast<std::ptrdiff_t>(3 * r), 3,
                  this->positions_.begin() + static_cast<std::ptrdiff_t>(3 * j));
      this->sizes_[size_of(j)] = merged_sizes_[r];
    }
    for (index_t i = 0; i < n; ++i)
      this->assign_[size_of(i)] = slot_of_[static_cast<std::size_t>(merged_assign_[size_of(i)])];
    this->kept_ = keep;
    return status::ok;
  }

 private:
  framefusion merge_;
  const std::vector<float>& scores_;
  std::vector<E> merged_tokens_;
  std::vector<std::int64_t> merged_source_, merged_assign_, picked_, slot_of_;
  std::vector<std::int32_t> merged_positions_, picked_positions_;
  std::vector<float> merged_sizes_, head_scores_;
};

template <class Select, bool Counted, template <class> class Score>
struct selection_by {
  template <class E>
  using runner = select_runner<E, Select, Counted, Score>;
};
template <class Layout>
struct layout_by {
  template <class E>
  using runner = layout_runner<E, Layout>;
};

/// Why `p` cannot run on the input, "" when it can.
template <class P>
std::string cannot_run(const P& p, const token_input& in) {
  const status s = can_implement(p, problem{in.grid, in.dim});
  return s == status::ok ? std::string{} : fmt::format("cannot run on {}×{}×{}: {}", in.grid.frames, in.grid.height,
                                                       in.grid.width, to_string(s));
}

std::string needs_video(const token_input& in) { return in.grid.frames < 2 ? "needs a video (T >= 2)" : ""; }

/// A selection of `p` over the scores of `Score`, or why it cannot run.
template <bool Counted, template <class> class Score, class Select>
std::string select(const Select& p, const token_input& in, const side_inputs& side, element e,
                   std::unique_ptr<reducer>& out) {
  if (std::string why = cannot_run(p, in); !why.empty()) return why;
  out = for_element<selection_by<Select, Counted, Score>::template runner>(e, p, in, side);
  return {};
}

}  // namespace

std::string make_prumerge(double, const token_input& in, const side_inputs& side, element e,
                          const method_context& ctx, std::unique_ptr<reducer>& out, std::string& description) {
  description = fmt::format("iqr_outliers::prumerge() on score={}", score_name(ctx));
  return select<true, caller_score>(iqr_outliers::prumerge(), in, side, e, out);
}

std::string make_prumerge_plus(double, const token_input& in, const side_inputs& side, element e,
                               const method_context& ctx, std::unique_ptr<reducer>& out, std::string& description) {
  description = fmt::format("iqr_outliers::prumerge_plus() on score={}", score_name(ctx));
  return select<true, caller_score>(iqr_outliers::prumerge_plus(), in, side, e, out);
}

std::string make_dtd(double, const token_input& in, const side_inputs& side, element e, const method_context&,
                     std::unique_ptr<reducer>& out, std::string& description) {
  if (std::string why = needs_video(in); !why.empty()) return why;
  const threshold p = threshold::dtd();
  description = fmt::format("temporal_similarity::dtd() | threshold::dtd({})", p.tau);
  return select<true, dtd_score>(p, in, side, e, out);
}

std::string make_stc(double budget, const token_input& in, const side_inputs& side, element e, const method_context&,
                     std::unique_ptr<reducer>& out, std::string& description) {
  const topk p{keep_budget::ratio(budget, rounding::floor), scope::per_frame};
  description = fmt::format("gaussian_redundancy(channel_ratio={}) per frame | topk(keep={}, within=frame)",
                            gaussian_redundancy{}.channel_ratio, ratio_text(budget));
  return select<false, stc_score>(p, in, side, e, out);
}

std::string make_fastv(double budget, const token_input& in, const side_inputs& side, element e,
                       const method_context&, std::unique_ptr<reducer>& out, std::string& description) {
  const topk p{keep_budget::ratio(budget, rounding::floor)};
  description = fmt::format("fused_attention_score({} query rows, 1 head) | topk(keep={})", side.query_rows,
                            ratio_text(budget));
  return select<false, fastv_score>(p, in, side, e, out);
}

std::string make_fopru(double budget, const token_input& in, const side_inputs& side, element e,
                       const method_context&, std::unique_ptr<reducer>& out, std::string& description) {
  const top_rows p{keep_budget::ratio(budget, rounding::floor)};
  if (round_by(budget * static_cast<double>(in.grid.height), rounding::floor) < 1)
    return fmt::format("keeps no patch row: floor({} × {}) = 0", in.grid.height, ratio_text(budget));
  // The stand-in attention map holds T·(H·W)² floats: refused past the cap, never allocated.
  const double map_bytes = static_cast<double>(in.grid.frames) * static_cast<double>(in.grid.frame_tokens()) *
                           static_cast<double>(in.grid.frame_tokens()) * sizeof(float);
  if (map_bytes > static_cast<double>(fopru_map_cap_bytes))
    return fmt::format("its stand-in attention map, T·(H·W)² floats, would take {:.1f} GiB (the bench's cap is "
                       "{} GiB)",
                       map_bytes / (1u << 30), fopru_map_cap_bytes >> 30);
  description = fmt::format(
      "attention_significance() on softmax(X Xᵀ/√D) per frame | top_rows(keep={} of the rows)", ratio_text(budget));
  return select<false, fopru_score>(p, in, side, e, out);
}

std::string make_framefusion(double budget, const token_input& in, const side_inputs& side, element e,
                             const method_context& ctx, std::unique_ptr<reducer>& out, std::string& description) {
  if (std::string why = needs_video(in); !why.empty()) return why;
  framefusion p;
  p.cost = budget;  // with no layer merged yet, at most 1 − cost of the rows merge
  if (std::string why = cannot_run(p, in); !why.empty()) return why;
  const auto keep = static_cast<index_t>(std::floor(budget * static_cast<double>(in.grid.tokens())));
  if (keep < 1) return "the budget keeps no token";
  description = fmt::format("framefusion(threshold={}, cost={}) | topk(keep={}, score={})", p.threshold,
                            ratio_text(budget), keep, score_name(ctx));
  out = for_element<framefusion_runner>(e, p, keep, in, *side.scores);
  return {};
}

std::string make_slowfast(double budget, const token_input& in, const side_inputs&, element e, const method_context&,
                          std::unique_ptr<reducer>& out, std::string& description) {
  if (std::string why = needs_video(in); !why.empty()) return why;
  const token_grid& g = in.grid;
  slowfast p;
  p.fast_height = kept_side(g.height, budget / 4);
  p.fast_width = kept_side(g.width, budget / 4);
  const double target = budget * static_cast<double>(g.tokens());
  const double fast = static_cast<double>(g.frames * p.fast_height * p.fast_width);
  const double per_slow_frame = static_cast<double>(g.frame_tokens() / 2);  // MaxPool1d(2, 2) halves a frame
  // As many slow frames as fit in the rest of the budget, at least one.
  p.slow_frames = std::clamp<index_t>(static_cast<index_t>(std::floor((target - fast) / per_slow_frame)), 1, g.frames);
  if (std::string why = cannot_run(p, in); !why.empty()) return why;
  description = fmt::format("slowfast(slow_frames={}, slow=spatial_1d_max_pool, fast={}x{})", p.slow_frames,
                            p.fast_height, p.fast_width);
  out = for_element<layout_by<slowfast>::runner>(e, p, in);
  return {};
}

std::string make_thumbnail(double budget, const token_input& in, const side_inputs&, element e,
                           const method_context&, std::unique_ptr<reducer>& out, std::string& description) {
  if (std::string why = needs_video(in); !why.empty()) return why;
  thumbnail_sampling p;
  p.thumbnail_frames = std::min<index_t>(p.thumbnail_frames, in.grid.frames);
  p.sampled_tokens = 1;
  const index_t thumbnail = layout_of(p, in.grid).thumbnail_count;
  const auto target = static_cast<index_t>(std::lround(budget * static_cast<double>(in.grid.tokens())));
  if (target <= thumbnail)
    return fmt::format("the thumbnail alone ({} tokens) fills the budget ({} tokens)", thumbnail, target);
  p.sampled_tokens = target - thumbnail;
  if (std::string why = cannot_run(p, in); !why.empty()) return why;
  description = fmt::format("thumbnail_sampling(sampled_tokens={}, thumbnail_frames={})", p.sampled_tokens,
                            p.thumbnail_frames);
  out = for_element<layout_by<thumbnail_sampling>::runner>(e, p, in);
  return {};
}

std::string make_hired(double, const token_input&, const side_inputs&, element, const method_context&,
                       std::unique_ptr<reducer>&, std::string&) {
  return "needs the full image and its sub-crops (LLaVA-NeXT's anyres, T = 1 + rows·cols partitions) and "
         "early-layer attention; on one image HiRED is topk with a floor ratio";
}

}  // namespace tokred::cli
