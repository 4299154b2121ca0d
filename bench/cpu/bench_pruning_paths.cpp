// bench/cpu/bench_pruning_paths.cpp — what an engine pays on CPU for each importance-pruning
// method: the whole path (score + select + the kept rows moved, with the positions the method
// carries), each stage alone, one memcpy per kept row, and the scalar references composed.
//
// One image at the papers' shapes; one call on one core (`cpu<>{}`):
//   fastv        fused_attention_score of the last text token: 32 heads × 128, keys 35 + 576 + 40
//                (system prompt, image, question) read in place from the k projection's output;
//                topk round(576 · (1 − R)) with R = 50 % (K = 2): 288; rows (576, 4096), source
//                and the original 1-D position ids (35 + source, with gaps)
//   pyramiddrop  the same score of the last instruction token; stage 0 of the repository schedule
//                (pyramid_schedule {8, 16, 24} × {0.5, 0.25, 0.125}: 576 → 288); rows, source
//                and contiguous ids
//   fastervlm    attention_score of CLIP block 22's [CLS] row (16 heads × 577 keys, mean); topk
//                25 % (floor: 144); rows (576, 1024) of CLIP features
//   hired        attention_score (head sum) of block 22's [CLS] row per partition (rows = T) and of
//                block 0's for the full image; hired over LLaVA-NeXT's 5 partitions × 576 at
//                budget 0.2 (at most 576 kept); rows (2880, 4096) of projected features and the
//                (p, h, w) positions the engine packs by
//   prumerge     fused_attention_score of [CLS], one head over 1024-d q and k (scale 1024^−½, CLIP's
//                last block); iqr_outliers::prumerge_plus (the count depends on the data); rows
//                (576, 1024) and source (the merge step that follows needs it)
//   fopru        top_rows of a given 24 × 24 score map, 25 % of the patch rows (6 rows: 144
//                tokens); rows (576, 1024)
//
// Stages (`BM_<method><E>/<stage>`):
//   score             the score alone (FoPru's scores are given: none)
//   score_head_major  FastV and PyramidDrop: the score with the keys copied head-major (heads,
//                     keys, head_dim), against `score`'s token-major keys read in place
//   select            the selection alone, writing only the kept indices
//   gather            gather{} of those indices, writing what the path writes (+ the 1-D ids)
//   path              all of it, as an engine composes it: the selection moves the rows itself
//   memcpy_rows       one memcpy per kept row: the floor of the gather
//   scalar_reference  the tests' oracles composed: double scores, sort-based selection, an
//                     element loop for the rows
// E is the element type of everything the model produces (q, k, attention weights, rows); scores
// are fp32.
//
// Every iteration takes the next of `score_sets` inputs (queries, attention rows or scores): with
// one input the branch predictor learns the selection (bench_data.hpp). The keys and rows stay
// the same, so they come from the cache after the first iteration, as in the other benchmarks; a
// stage timed alone keeps more of its own data in L2 than it does inside the path.
// When a case is built, the library's scores of every set are compared with the oracle and its
// kept lists with the reference selection on those scores; after timing, each stage's output is
// compared with the case's kept list. `kept` is the mean kept count over the sets;
// bytes_per_second counts the kept rows read and written, for memcpy_rows, gather, path and
// scalar_reference alike.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "bench_data.hpp"

#include "reference/attention_scores_ref.hpp"
#include "reference/gather_ref.hpp"
#include "reference/hired_ref.hpp"
#include "reference/outliers_ref.hpp"
#include "reference/row_selection_ref.hpp"

namespace tokred::bench {
namespace {

/// The input set after `set`, cycling.
int next_set(int set) { return set + 1 == score_sets ? 0 : set + 1; }

/// Element `set` of a per-set list.
template <class T>
const T& at(const std::vector<T>& per_set, int set) {
  return per_set[static_cast<std::size_t>(set)];
}

/// A read-only (size,) view of a vector.
template <class T>
view<const T, 1> whole(const std::vector<T>& v) {
  return make_view(v.data(), static_cast<index_t>(v.size()));
}

/// `count` values uniform in [−scale, scale), in E.
template <class E>
std::vector<E> uniform_values(index_t count, float scale, std::uint64_t seed) {
  testing::rng r(seed);
  std::vector<E> v(static_cast<std::size_t>(count));
  for (E& x : v) x = from_float<E>(scale * r.uniform());
  return v;
}

/// `rows · heads` attention rows over `keys`, as a softmax leaves them: positive, about 1 / keys.
template <class E>
std::vector<E> attention_rows(index_t rows, index_t heads, index_t keys, std::uint64_t seed) {
  testing::rng r(seed);
  std::vector<E> w(static_cast<std::size_t>(rows * heads * keys));
  for (E& x : w) x = from_float<E>(0.5f / static_cast<float>(keys) * (1.0f + r.uniform()));
  return w;
}

/// The double scores of an oracle, rounded to the fp32 the selections read.
std::vector<float> to_floats(const std::vector<double>& exact) {
  std::vector<float> out(exact.size());
  std::transform(exact.begin(), exact.end(), out.begin(), [](double x) { return static_cast<float>(x); });
  return out;
}
std::vector<float> to_floats(const std::vector<ref::bounded_score>& exact) {
  std::vector<float> out(exact.size());
  std::transform(exact.begin(), exact.end(), out.begin(),
                 [](const ref::bounded_score& x) { return static_cast<float>(x.score); });
  return out;
}

/// True when fp32 `got` agrees with the oracle `want` to 10⁻⁵ relative.
bool scores_close(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return false;
  for (std::size_t j = 0; j < got.size(); ++j)
    if (!(std::fabs(got[j] - want[j]) <= 1e-5f * std::fabs(want[j]))) return false;
  return true;
}

/// What every path shares: the rows it moves, the kept list of every input set (the library's,
/// checked against the reference when the case is built), the output buffers, one workspace for
/// all its calls, and the stages that only move rows.
template <class E>
struct path_base {
  using element = E;
  token_grid grid{};
  index_t dim = 0;
  view<const E, 2> rows;                        // (tokens, dim)
  bool with_source = false;                     // the path writes source
  bool with_positions = false;                  // the path writes (t, h, w)
  index_t bound = 0;                            // the most rows a selection keeps
  std::vector<std::vector<std::int64_t>> kept;  // score_sets × (kept,)
  std::vector<E> out_rows;                      // (bound, dim)
  std::vector<std::int64_t> out_source;         // (bound,)
  std::vector<std::int32_t> out_positions;      // (bound, 3)
  std::vector<std::int64_t> picked;             // (bound,) the select stage's indices
  std::int64_t count = 0;                       // (1,) the counted selections' count
  std::vector<std::byte> scratch;
  const char* error = nullptr;                  // why the case disagrees with the reference

  path_base() = default;
  path_base(const path_base&) = delete;
  path_base& operator=(const path_base&) = delete;

  void allocate(token_grid g, index_t width, index_t bound_rows, std::size_t scratch_bytes) {
    grid = g;
    dim = width;
    rows = token_rows<E>(g.tokens(), width);
    bound = bound_rows;
    kept.resize(score_sets);
    out_rows.resize(static_cast<std::size_t>(bound * dim));
    out_source.resize(static_cast<std::size_t>(bound));
    out_positions.resize(static_cast<std::size_t>(bound * 3));
    picked.resize(static_cast<std::size_t>(bound));
    scratch.resize(scratch_bytes);
  }

  workspace ws() { return {scratch.data(), scratch.size()}; }
  index_t kept_count(int set) const { return static_cast<index_t>(at(kept, set).size()); }
  /// (kept, dim) of the output rows.
  view<const E, 2> written(index_t k) const {
    return make_view(static_cast<const E*>(out_rows.data()), k, dim);
  }

  /// The outputs the path writes, `k` rows.
  selection_outputs<E> outputs(index_t k) {
    selection_outputs<E> out;
    out.tokens = make_view(out_rows.data(), k, dim);                                  // (kept, dim)
    if (with_source) out.source = make_view(out_source.data(), k);                    // (kept,)
    if (with_positions) out.positions = make_view(out_positions.data(), k, index_t{3});  // (kept, 3)
    return out;
  }
  /// The same, sized by the bound, with the count (data-dependent selections).
  counted_outputs<E> counted() {
    counted_outputs<E> out;
    static_cast<selection_outputs<E>&>(out) = outputs(bound);
    out.count = make_view(&count, 1);
    return out;
  }
  /// Only the kept indices, `k` of them (the select stage).
  selection_outputs<E> indices(index_t k) {
    selection_outputs<E> out;
    out.source = make_view(picked.data(), k);  // (kept,)
    return out;
  }
  counted_outputs<E> counted_indices() {
    counted_outputs<E> out;
    out.source = make_view(picked.data(), bound);  // (bound,)
    out.count = make_view(&count, 1);
    return out;
  }

  /// gather{} of set `set`'s kept indices.
  status gather_rows(int set) {
    const std::vector<std::int64_t>& list = at(kept, set);
    return apply(cpu<>{}, gather{}, gather_inputs<E>{grid, whole(list), rows}, outputs(kept_count(set)));
  }

  /// The scalar reference's row move: an element loop through fp32.
  void reference_rows(const std::vector<std::int64_t>& list) {
    ref::gather_rows(list, rows, make_view(out_rows.data(), static_cast<index_t>(list.size()), dim));
  }

  status memcpy_rows(int set) {
    bench::memcpy_rows(at(kept, set), rows.data_handle(), out_rows.data(), dim);
    return status::ok;
  }

  /// The rows (first, middle, last), source and positions written last hold set `set`'s kept list.
  bool rows_match(int set) const {
    const std::vector<std::int64_t>& list = at(kept, set);
    if (!spot_check(list, rows, written(kept_count(set)))) return false;
    if (with_source && !std::equal(list.begin(), list.end(), out_source.begin())) return false;
    if (with_positions) {
      const std::vector<std::int32_t> positions = ref::positions_of(list, grid);  // (kept, 3)
      if (!std::equal(positions.begin(), positions.end(), out_positions.begin())) return false;
    }
    return true;
  }
  /// The rows alone (the memcpy baseline writes nothing else).
  bool memcpy_matches(int set) const {
    const std::vector<std::int64_t>& list = at(kept, set);
    return spot_check(list, rows, written(kept_count(set)));
  }
  bool picked_match(int set) const {
    const std::vector<std::int64_t>& list = at(kept, set);
    return std::equal(list.begin(), list.end(), picked.begin());
  }
  /// Records what the select stage left for set `set` as its kept list; `reference` is the
  /// oracle's list on the same scores.
  void keep_picked(int set, index_t k, const std::vector<std::int64_t>& reference) {
    std::vector<std::int64_t>& list = kept[static_cast<std::size_t>(set)];
    list.assign(picked.begin(), picked.begin() + k);
    if (list != reference) error = "the selection disagrees with the reference";
  }
  double mean_kept() const {
    double total = 0.0;
    for (const auto& list : kept) total += static_cast<double>(list.size());
    return total / static_cast<double>(kept.size());
  }
};

/// FastV and PyramidDrop on LLaVA-1.5-7B (Vicuna-7B: 32 heads of 128, MHA, width 4096): the
/// image span of 576 tokens from key 35, 40 question tokens after it; q of the last token (one
/// per input set) and the keys in place in the k projection's output [L, 32·128].
template <class E>
struct llm_span_path : path_base<E> {
  static constexpr index_t sys = 35, n = 576, text = 40, heads = 32, head_dim = 128, width = 4096;
  static constexpr index_t keys_n = sys + n + text;
  const bool pyramid;  // PyramidDrop's stage budget and contiguous ids, else FastV's
  const fused_attention_score score_policy{head_reduce::mean, sys};
  const index_t layers[3] = {8, 16, 24};
  const double ratios[3] = {0.5, 0.25, 0.125};
  const pyramid_schedule schedule{make_view(layers, 3), make_view(ratios, 3)};
  std::vector<E> k_proj;                        // (keys, heads·head_dim)
  view<const E, 3> keys;                        // (heads, keys, head_dim), in place
  std::vector<E> k_heads;                       // (heads, keys, head_dim): the same keys, head-major
  std::vector<std::vector<E>> queries;          // score_sets × (1, heads, head_dim)
  std::vector<float> scores;                    // (tokens,) the path's
  std::vector<std::vector<float>> set_scores;   // score_sets × (tokens,) the select stage's input
  std::vector<std::int64_t> ids;                // (kept,) 1-D position ids

  llm_span_path(bool pyramid_drop, std::uint64_t seed) : pyramid(pyramid_drop) {
    const token_grid image = image_grid(24, 24);
    k_proj = uniform_values<E>(keys_n * heads * head_dim, 1.0f, seed);
    keys = view<const E, 3>(k_proj.data(), {heads, keys_n, head_dim}, {head_dim, heads * head_dim, 1});
    for (index_t h = 0; h < heads; ++h)
      for (index_t key = 0; key < keys_n; ++key)
        for (index_t c = 0; c < head_dim; ++c) k_heads.push_back(keys(h, key, c));
    for (int set = 0; set < score_sets; ++set)
      queries.push_back(uniform_values<E>(heads * head_dim, 2.0f, seed + 1 + static_cast<unsigned>(set)));
    const topk select = selection();
    const index_t k = retained_count(select, problem{image, width});
    this->allocate(image, width, k,
                   std::max(workspace_bytes(cpu<>{}, score_policy, problem{image, head_dim}),
                            workspace_bytes(cpu<>{}, select, problem{image, width})));
    this->with_source = true;
    scores.resize(static_cast<std::size_t>(n));
    ids.resize(static_cast<std::size_t>(k));
    for (int set = 0; set < score_sets; ++set) {
      if (score(set) != status::ok) this->error = "score failed";
      set_scores.push_back(scores);
      if (!scores_close(scores, to_floats(ref::fused_attention_score(score_policy, image, query(set), keys))))
        this->error = "the scores disagree with the oracle";
      if (select_only(set) != status::ok) this->error = "select failed";
      this->keep_picked(set, k, ref::kept_indices(select, image, scores));
    }
  }

  view<const E, 3> query(int set) const {  // (1, heads, head_dim)
    return make_view(at(queries, set).data(), 1, heads, head_dim);
  }
  /// FastV (llava-hf): round(N · (1 − R)), Python's round; PyramidDrop: the stage's int(N · r).
  topk selection() const {
    if (pyramid) return topk{stage_budget(schedule, n, 0)};
    return topk{keep_budget::ratio(1.0 - 0.5, rounding::half_even)};
  }
  position_ids id_mode() const { return pyramid ? position_ids::contiguous : position_ids::original; }

  status score(int set) {
    return apply(cpu<>{}, score_policy, fused_attention_inputs<E>{this->grid, query(set), keys},
                 score_outputs<>{make_view(scores.data(), n)}, this->ws());
  }
  /// The same score over the head-major copy of the keys: the layout of a model that stores K
  /// transposed (HF after RoPE) rather than token-major (the projection output, vLLM's and
  /// llama.cpp's caches).
  status score_head_major(int set) {
    const view<const E, 3> by_head = make_view(static_cast<const E*>(k_heads.data()), heads, keys_n, head_dim);
    return apply(cpu<>{}, score_policy, fused_attention_inputs<E>{this->grid, query(set), by_head},
                 score_outputs<>{make_view(scores.data(), n)}, this->ws());
  }
  status select_only(int set) {
    const topk select = selection();
    const index_t k = retained_count(select, problem{this->grid, width});
    const selection_inputs<E> in{this->grid, whole(at(set_scores, set)), {}};
    return apply(cpu<>{}, select, in, this->indices(k), this->ws());
  }
  status write_ids(index_t k) {
    const view<const std::int64_t, 1> source = make_view(this->out_source.data(), k);  // (kept,)
    return sequence_positions(source, sys, id_mode(), make_view(ids.data(), k));
  }
  status gather(int set) {
    status s = this->gather_rows(set);
    return s == status::ok ? write_ids(this->kept_count(set)) : s;
  }
  status path(int set) {
    status s = score(set);
    const topk select = selection();
    const index_t k = retained_count(select, problem{this->grid, width});
    const selection_inputs<E> in{this->grid, whole(scores), this->rows};
    if (s == status::ok) s = apply(cpu<>{}, select, in, this->outputs(k), this->ws());
    return s == status::ok ? write_ids(k) : s;
  }
  status scalar(int set) {
    const std::vector<double> exact = ref::fused_attention_score(score_policy, this->grid, query(set), keys);
    const std::vector<std::int64_t> list = ref::kept_indices(selection(), this->grid, to_floats(exact));
    this->reference_rows(list);
    for (std::size_t j = 0; j < list.size(); ++j)
      ids[j] = sys + (pyramid ? static_cast<std::int64_t>(j) : list[j]);
    return status::ok;
  }

  bool score_matches(int set) const { return scores == at(set_scores, set); }
  bool select_matches(int set) const { return this->picked_match(set); }
  bool rows_and_ids_match(int set) const {
    const std::vector<std::int64_t>& list = at(this->kept, set);
    for (std::size_t j = 0; j < list.size(); ++j)
      if (ids[j] != sys + (pyramid ? static_cast<std::int64_t>(j) : list[j])) return false;
    return this->rows_match(set);
  }
  bool gather_matches(int set) const { return rows_and_ids_match(set); }
  bool path_matches(int set) const { return rows_and_ids_match(set); }
};

template <class E>
struct fastv_path : llm_span_path<E> {
  fastv_path() : llm_span_path<E>(false, 0xFA57u) {}
};
template <class E>
struct pyramiddrop_path : llm_span_path<E> {
  pyramiddrop_path() : llm_span_path<E>(true, 0x9D809u) {}
};

/// FasterVLM on LLaVA-1.5 (CLIP ViT-L/14-336): block 22's [CLS] rows of 16 heads over [CLS] + 576
/// patches, mean over heads, from key 1; 144 of the 576 block-22 features (1024) kept.
template <class E>
struct fastervlm_path : path_base<E> {
  static constexpr index_t n = 576, heads = 16, keys_n = 577, width = 1024;
  const attention_score score_policy{head_reduce::mean, 1};
  const topk select_policy{keep_budget::ratio(0.25, rounding::floor)};
  std::vector<std::vector<E>> weights;         // score_sets × (1, 1, heads, keys)
  std::vector<float> scores;                   // (tokens,)
  std::vector<std::vector<float>> set_scores;  // score_sets × (tokens,)

  fastervlm_path() {
    const token_grid image = image_grid(24, 24);
    for (int set = 0; set < score_sets; ++set)
      weights.push_back(attention_rows<E>(1, heads, keys_n, 0xFA5u + static_cast<unsigned>(set)));
    const index_t k = retained_count(select_policy, problem{image, width});
    this->allocate(image, width, k, workspace_bytes(cpu<>{}, select_policy, problem{image, width}));
    scores.resize(static_cast<std::size_t>(n));
    for (int set = 0; set < score_sets; ++set) {
      if (score(set) != status::ok) this->error = "score failed";
      set_scores.push_back(scores);
      if (!scores_close(scores, to_floats(ref::attention_score(score_policy, image, cls_rows(set)))))
        this->error = "the scores disagree with the oracle";
      if (select_only(set) != status::ok) this->error = "select failed";
      this->keep_picked(set, k, ref::kept_indices(select_policy, image, scores));
    }
  }

  view<const E, 4> cls_rows(int set) const {  // (1, 1, heads, keys)
    return make_view(at(weights, set).data(), 1, 1, heads, keys_n);
  }
  status score(int set) {
    return apply(cpu<>{}, score_policy, attention_score_inputs<E>{this->grid, cls_rows(set)},
                 score_outputs<>{make_view(scores.data(), n)}, this->ws());
  }
  status select_only(int set) {
    const selection_inputs<E> in{this->grid, whole(at(set_scores, set)), {}};
    return apply(cpu<>{}, select_policy, in, this->indices(this->bound), this->ws());
  }
  status gather(int set) { return this->gather_rows(set); }
  status path(int set) {
    status s = score(set);
    const selection_inputs<E> in{this->grid, whole(scores), this->rows};
    return s == status::ok ? apply(cpu<>{}, select_policy, in, this->outputs(this->bound), this->ws()) : s;
  }
  status scalar(int set) {
    const std::vector<float> exact = to_floats(ref::attention_score(score_policy, this->grid, cls_rows(set)));
    this->reference_rows(ref::kept_indices(select_policy, this->grid, exact));
    return status::ok;
  }

  bool score_matches(int set) const { return scores == at(set_scores, set); }
  bool select_matches(int set) const { return this->picked_match(set); }
  bool gather_matches(int set) const { return this->rows_match(set); }
  bool path_matches(int set) const { return this->rows_match(set); }
};

/// HiRED on LLaVA-NeXT-7B (2 × 2 anyres crops): 5 partitions of 24 × 24; block 22's [CLS] row of
/// every partition and block 0's of the full image, 16 heads over 577 keys, summed over heads;
/// the projected features (4096) of the kept tokens with their (p, h, w).
template <class E>
struct hired_path : path_base<E> {
  static constexpr index_t parts = 5, per = 576, heads = 16, keys_n = 577, width = 4096;
  static constexpr index_t n = parts * per;
  const attention_score score_policy{head_reduce::sum, 1};
  const hired select_policy{};                       // budget 0.2, alpha 0.5, 2 × 2 crops
  const token_grid full = image_grid(24, 24);        // partition 0, the early scores' grid
  std::vector<std::vector<E>> late;                  // score_sets × (parts, 1, heads, keys)
  std::vector<std::vector<E>> early;                 // score_sets × (1, 1, heads, keys)
  std::vector<float> scores, early_scores;           // (tokens,), (per,)
  std::vector<std::vector<float>> set_scores, set_early;  // score_sets × the same

  hired_path() {
    const token_grid partitions{parts, 24, 24};
    for (int set = 0; set < score_sets; ++set) {
      late.push_back(attention_rows<E>(parts, heads, keys_n, 0x41EDu + static_cast<unsigned>(set)));
      early.push_back(attention_rows<E>(1, heads, keys_n, 0xEA21u + static_cast<unsigned>(set)));
    }
    this->allocate(partitions, width, retained_count(select_policy, problem{partitions, width}),
                   workspace_bytes(cpu<>{}, select_policy, problem{partitions, width}));
    this->with_positions = true;
    scores.resize(static_cast<std::size_t>(n));
    early_scores.resize(static_cast<std::size_t>(per));
    for (int set = 0; set < score_sets; ++set) {
      if (score(set) != status::ok) this->error = "score failed";
      set_scores.push_back(scores);
      set_early.push_back(early_scores);
      if (!scores_close(scores, to_floats(ref::attention_score(score_policy, partitions, late_rows(set)))) ||
          !scores_close(early_scores, to_floats(ref::attention_score(score_policy, full, early_row(set)))))
        this->error = "the scores disagree with the oracle";
      if (select_only(set) != status::ok) this->error = "select failed";
      this->keep_picked(set, static_cast<index_t>(this->count),
                        ref::hired_indices(select_policy, partitions, scores, early_scores));
    }
  }

  view<const E, 4> late_rows(int set) const {  // (parts, 1, heads, keys): one row per partition
    return make_view(at(late, set).data(), parts, 1, heads, keys_n);
  }
  view<const E, 4> early_row(int set) const {  // (1, 1, heads, keys)
    return make_view(at(early, set).data(), 1, 1, heads, keys_n);
  }
  status score(int set) {
    status s = apply(cpu<>{}, score_policy, attention_score_inputs<E>{this->grid, late_rows(set)},
                     score_outputs<>{make_view(scores.data(), n)}, this->ws());
    if (s == status::ok)
      s = apply(cpu<>{}, score_policy, attention_score_inputs<E>{full, early_row(set)},
                score_outputs<>{make_view(early_scores.data(), per)}, this->ws());
    return s;
  }
  hired_inputs<E> inputs(const std::vector<float>& late_scores, const std::vector<float>& early_map,
                         view<const E, 2> tokens) const {
    hired_inputs<E> in{};
    in.grid = this->grid;
    in.scores = make_view(late_scores.data(), n);       // (tokens,)
    in.early_scores = make_view(early_map.data(), per);  // (per,)
    in.tokens = tokens;                                  // (tokens, dim) or none
    return in;
  }
  status select_only(int set) {
    const hired_inputs<E> in = inputs(at(set_scores, set), at(set_early, set), {});
    return apply(cpu<>{}, select_policy, in, this->counted_indices(), this->ws());
  }
  status gather(int set) { return this->gather_rows(set); }
  status path(int set) {
    status s = score(set);
    const hired_inputs<E> in = inputs(scores, early_scores, this->rows);
    return s == status::ok ? apply(cpu<>{}, select_policy, in, this->counted(), this->ws()) : s;
  }
  status scalar(int set) {
    const std::vector<float> late_s = to_floats(ref::attention_score(score_policy, this->grid, late_rows(set)));
    const std::vector<float> early_s = to_floats(ref::attention_score(score_policy, full, early_row(set)));
    const std::vector<std::int64_t> list = ref::hired_indices(select_policy, this->grid, late_s, early_s);
    this->reference_rows(list);
    const std::vector<std::int32_t> positions = ref::positions_of(list, this->grid);  // (kept, 3)
    std::copy(positions.begin(), positions.end(), this->out_positions.begin());
    return status::ok;
  }

  bool score_matches(int set) const {
    return scores == at(set_scores, set) && early_scores == at(set_early, set);
  }
  bool select_matches(int set) const { return this->count == this->kept_count(set) && this->picked_match(set); }
  bool gather_matches(int set) const { return this->rows_match(set); }
  bool path_matches(int set) const { return this->count == this->kept_count(set) && this->rows_match(set); }
};

/// PruMerge+ on LLaVA-1.5: one head over CLIP's last block's 1024-d q and k, [CLS] against
/// [CLS] + 576 patches, scale 1024^−½, from key 1; the block-22 features (1024) of the kept
/// tokens, with source for the merge step. Each set's [CLS] query leans towards 16 … 31 patches'
/// keys, so their attention stands out as the outliers of a real [CLS] row do.
template <class E>
struct prumerge_path : path_base<E> {
  static constexpr index_t n = 576, keys_n = 577, width = 1024;
  const fused_attention_score score_policy{head_reduce::mean, 1, 0.03125f};  // 1024^−½
  const iqr_outliers select_policy = iqr_outliers::prumerge_plus();
  std::vector<E> k_proj;                       // (keys, width)
  std::vector<std::vector<E>> queries;         // score_sets × (1, 1, width)
  std::vector<float> scores;                   // (tokens,)
  std::vector<std::vector<float>> set_scores;  // score_sets × (tokens,)

  prumerge_path() {
    const token_grid image = image_grid(24, 24);
    k_proj = uniform_values<E>(keys_n * width, 1.0f, 0x9E46u);
    for (int set = 0; set < score_sets; ++set) {
      testing::rng r(0xC15u + static_cast<unsigned>(set));
      std::vector<float> q(static_cast<std::size_t>(width));  // (width,)
      for (float& x : q) x = r.uniform();
      // + 0.28·k_i lifts logit i by about 0.28·|k_i|²/32 = 3: twenty times the attention.
      for (int peak = 0; peak < 16 + set; ++peak) {
        const E* key = k_proj.data() + (1 + r.next() % n) * width;
        for (std::size_t c = 0; c < q.size(); ++c) q[c] += 0.28f * to_float(key[c]);
      }
      std::vector<E> stored(q.size());
      std::transform(q.begin(), q.end(), stored.begin(), [](float x) { return from_float<E>(x); });
      queries.push_back(std::move(stored));
    }
    this->allocate(image, width, retained_count(select_policy, problem{image, width}),
                   std::max(workspace_bytes(cpu<>{}, score_policy, problem{image, width}),
                            workspace_bytes(cpu<>{}, select_policy, problem{image, width})));
    this->with_source = true;
    scores.resize(static_cast<std::size_t>(n));
    for (int set = 0; set < score_sets; ++set) {
      if (score(set) != status::ok) this->error = "score failed";
      set_scores.push_back(scores);
      if (!scores_close(scores, to_floats(ref::fused_attention_score(score_policy, image, query(set), keys()))))
        this->error = "the scores disagree with the oracle";
      if (select_only(set) != status::ok) this->error = "select failed";
      this->keep_picked(set, static_cast<index_t>(this->count), ref::outlier_indices(select_policy, scores));
    }
  }

  view<const E, 3> query(int set) const {  // (1, 1, width)
    return make_view(at(queries, set).data(), 1, 1, width);
  }
  view<const E, 3> keys() const {  // (1, keys, width)
    return make_view(k_proj.data(), 1, keys_n, width);
  }
  status score(int set) {
    return apply(cpu<>{}, score_policy, fused_attention_inputs<E>{this->grid, query(set), keys()},
                 score_outputs<>{make_view(scores.data(), n)}, this->ws());
  }
  status select_only(int set) {
    const selection_inputs<E> in{this->grid, whole(at(set_scores, set)), {}};
    return apply(cpu<>{}, select_policy, in, this->counted_indices(), this->ws());
  }
  status gather(int set) { return this->gather_rows(set); }
  status path(int set) {
    status s = score(set);
    const selection_inputs<E> in{this->grid, whole(scores), this->rows};
    return s == status::ok ? apply(cpu<>{}, select_policy, in, this->counted(), this->ws()) : s;
  }
  status scalar(int set) {
    const std::vector<double> exact = ref::fused_attention_score(score_policy, this->grid, query(set), keys());
    const std::vector<std::int64_t> list = ref::outlier_indices(select_policy, to_floats(exact));
    this->reference_rows(list);
    std::copy(list.begin(), list.end(), this->out_source.begin());
    return status::ok;
  }

  bool score_matches(int set) const { return scores == at(set_scores, set); }
  bool select_matches(int set) const { return this->count == this->kept_count(set) && this->picked_match(set); }
  bool gather_matches(int set) const { return this->rows_match(set); }
  bool path_matches(int set) const { return this->count == this->kept_count(set) && this->rows_match(set); }
};

/// FoPru's row strategy on LLaVA-1.5: a given 24 × 24 significance map (FoPru's score needs the
/// full patch-to-patch attention, which tokred does not compute), the 6 best patch rows, the CLIP
/// features (1024) of their 144 tokens.
template <class E>
struct fopru_path : path_base<E> {
  static constexpr index_t n = 576, width = 1024;
  const top_rows select_policy{keep_budget::ratio(0.25, rounding::floor)};
  const std::vector<view<const float, 1>> maps = score_views(n);  // score_sets × (tokens,)

  fopru_path() {
    const token_grid image = image_grid(24, 24);
    const index_t k = retained_count(select_policy, problem{image, width});
    this->allocate(image, width, k, workspace_bytes(cpu<>{}, select_policy, problem{image, width}));
    for (int set = 0; set < score_sets; ++set) {
      if (select_only(set) != status::ok) this->error = "select failed";
      this->keep_picked(set, k, ref::row_indices(select_policy, image, scores_of(n, set)));
    }
  }

  status select_only(int set) {
    const selection_inputs<E> in{this->grid, at(maps, set), {}};
    return apply(cpu<>{}, select_policy, in, this->indices(this->bound), this->ws());
  }
  status gather(int set) { return this->gather_rows(set); }
  status path(int set) {
    const selection_inputs<E> in{this->grid, at(maps, set), this->rows};
    return apply(cpu<>{}, select_policy, in, this->outputs(this->bound), this->ws());
  }
  status scalar(int set) {
    this->reference_rows(ref::row_indices(select_policy, this->grid, scores_of(n, set)));
    return status::ok;
  }

  bool select_matches(int set) const { return this->picked_match(set); }
  bool gather_matches(int set) const { return this->rows_match(set); }
  bool path_matches(int set) const { return this->rows_match(set); }
};

/// The one instance of a case, built on first use (outside the timed loops) and kept.
template <class Case>
Case& instance() {
  static Case c;
  return c;
}

/// Times `run` on the cycled input sets, then checks the last call with `matches`.
template <class Case>
void time_stage(benchmark::State& state, status (Case::*run)(int), bool (Case::*matches)(int) const,
                bool moves_rows) {
  Case& c = instance<Case>();
  if (c.error != nullptr) {
    state.SkipWithError(c.error);
    return;
  }
  int set = 0;
  for (auto _ : state) {
    set = next_set(set);
    if (const status s = (c.*run)(set); s != status::ok) {
      state.SkipWithError(to_string(s));
      return;
    }
    benchmark::ClobberMemory();
  }
  if (matches != nullptr && !(c.*matches)(set)) {
    state.SkipWithError("the result disagrees with the reference");
    return;
  }
  state.counters["kept"] = c.mean_kept();
  if (moves_rows)
    state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * c.mean_kept() *
                                                      static_cast<double>(c.dim) * 2.0 *
                                                      static_cast<double>(sizeof(typename Case::element))));
}

template <class Case>
void add(const std::string& name, status (Case::*run)(int), bool (Case::*matches)(int) const, bool moves_rows) {
  const auto timed = [=](benchmark::State& state) { time_stage<Case>(state, run, matches, moves_rows); };
  benchmark::RegisterBenchmark(name.c_str(), timed)->Unit(benchmark::kMicrosecond);
}

/// The stages and baselines of one method and element type, as `BM_<method><E>/<stage>`.
template <template <class> class Path, class E, bool Scores = true>
void register_path(const std::string& method) {
  using Case = Path<E>;
  const std::string prefix = "BM_" + method + (std::is_same_v<E, float> ? "<float>/" : "<bf16>/");
  add<Case>(prefix + "memcpy_rows", &Case::memcpy_rows, &Case::memcpy_matches, true);
  if constexpr (Scores) add<Case>(prefix + "score", &Case::score, &Case::score_matches, false);
  if constexpr (std::is_base_of_v<llm_span_path<E>, Case>)
    add<Case>(prefix + "score_head_major", &Case::score_head_major, &Case::score_matches, false);
  add<Case>(prefix + "select", &Case::select_only, &Case::select_matches, false);
  add<Case>(prefix + "gather", &Case::gather, &Case::gather_matches, true);
  add<Case>(prefix + "path", &Case::path, &Case::path_matches, true);
  add<Case>(prefix + "scalar_reference", &Case::scalar, nullptr, true);
}

template <template <class> class Path, bool Scores = true>
void register_both(const std::string& method) {
  register_path<Path, float, Scores>(method);
  register_path<Path, bf16, Scores>(method);
}

[[maybe_unused]] const bool registered = [] {
  register_both<fastv_path>("fastv");
  register_both<pyramiddrop_path>("pyramiddrop");
  register_both<fastervlm_path>("fastervlm");
  register_both<hired_path>("hired");
  register_both<prumerge_path>("prumerge");
  register_both<fopru_path, false>("fopru");
  return true;
}();

}  // namespace
}  // namespace tokred::bench
