// tokred/policy/pipeline_spec.hpp — pipelines chosen at run time: a spec string such as
//   pool(2x2) | tome(r=0.25) | divprune(keep=64)
// parsed into `any_pipeline`, which has the contract of pipeline<Stages...>, and the catalogue of
// every stage a spec can name (`pipeline_catalog`), with its parameters, defaults and paper.
//
// Host-only (std::string, std::vector, std::variant); parsing allocates, `apply` does not.
//
// Grammar (whitespace between tokens is ignored):
//   spec   := stage ('|' stage)*
//   stage  := name ['(' [arg (',' arg)*] ')']
//   arg    := value | param '=' value      positional values fill the parameters in catalogue
//                                          order and must come before named ones
//   value  := a number, a size such as 2x2 or 1x2x2, or a word
// Budgets (`keep`): an integer is a count, a number with a decimal point a ratio of the stage's
// input (`keep=64`, `keep=0.25`); `round` picks the ratio's rounding. ToMe's `r` likewise: an
// integer count, or a share of the stage's tokens (`r=0.25`). Errors name the offending token and
// its offset; nothing is accepted silently (unknown or repeated parameters, values out of range,
// empty stages, trailing characters).
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

#include "tokred/core/status.hpp"
#include "tokred/policy/pipeline.hpp"

namespace tokred {

/// Every stage a spec can name.
using any_stage =
    std::variant<pool, adaptive_pool, bilinear, dct_lowpass, dct_share, topk, uniform, random_subset, divprune,
                 kcenter, importance_diversity, cdpruner, tome, tome_share, visionzip, scored<token_norm, topk>,
                 scored<query_relevance, topk>, scored<temporal_similarity, topk>,
                 scored<token_norm, importance_diversity>, scored<query_relevance, importance_diversity>,
                 scored<temporal_similarity, importance_diversity>>;

/// A pipeline built at run time: the stages, and each stage written back out with every
/// parameter after defaults (`spec()` joins them: the canonical form of the parsed string).
struct any_pipeline {
  std::vector<any_stage> stages;
  std::vector<std::string> canonical;  ///< one per stage, e.g. "tome(r=0.25, protect=0)"

  std::size_t stage_count() const noexcept { return stages.size(); }
  template <class F>
  void visit(std::size_t i, F&& f) const {
    std::visit(std::forward<F>(f), stages[i]);
  }
  std::string spec() const {
    std::string out;
    for (std::size_t i = 0; i < canonical.size(); ++i) out += (i ? " | " : "") + canonical[i];
    return out;
  }
};

/// Exact number of tokens the chain returns on `prob`; 0 exactly when `can_implement` fails
/// (an empty chain is such a failure: `invalid_parameter`).
inline index_t retained_count(const any_pipeline& p, const problem& prob) {
  return p.stages.empty() ? 0 : detail::chain_output(p, prob).kept;
}
/// `ok`, or the status of the first stage that cannot run on the shape the chain gives it.
inline status can_implement(const any_pipeline& p, const problem& prob) {
  return p.stages.empty() ? status::invalid_parameter : detail::chain_output(p, prob).code;
}
/// The first stage that cannot run on `prob` (meaningful when `can_implement` fails): 0 also
/// when the input grid itself is malformed or empty, which no stage can run on.
inline std::size_t failing_stage(const any_pipeline& p, const problem& prob) {
  return detail::chain_output(p, prob).failed_stage;
}
inline token_grid output_grid(const any_pipeline& p, const problem& prob) {
  return p.stages.empty() ? token_grid{} : detail::chain_output(p, prob).grid;
}

/// One parameter of a stage as `tokred list` shows it.
struct stage_param {
  const char* name;
  const char* fallback;  ///< the default, as a spec would write it; "" = required
  const char* meaning;
};

/// One stage a spec can name.
struct stage_info {
  const char* name;
  const char* summary;
  const char* count_rule;  ///< how many tokens come out
  const char* paper;
  std::vector<stage_param> params;
};

/// The result of parsing a spec: the pipeline, or the first error with the offset (in bytes from
/// the start of the spec) of the token it names.
struct spec_result {
  any_pipeline pipeline;
  std::string error;  ///< empty on success
  std::size_t offset = 0;
  bool ok() const noexcept { return error.empty(); }
};

/// Longest spec and most stages a spec may hold.
inline constexpr std::size_t max_spec_length = 4096;
inline constexpr std::size_t max_spec_stages = 32;

namespace detail {

/// One parsed argument: its name (after positional filling) and value, with the value's offset.
struct spec_arg {
  std::string_view name, value;
  std::size_t offset = 0;
};

/// The arguments of one stage, every parameter present (defaults filled in), in catalogue order.
class spec_args {
 public:
  spec_args(const stage_info& info, std::vector<spec_arg> args) : info_(info), args_(std::move(args)) {}

  std::string_view text(const char* name) const { return find(name).value; }
  std::size_t offset(const char* name) const { return find(name).offset; }
  const stage_info& info() const { return info_; }
  const std::vector<spec_arg>& all() const { return args_; }

 private:
  const spec_arg& find(const char* name) const {
    for (const spec_arg& a : args_)
      if (a.name == name) return a;
    return args_.front();  // unreachable: the builders ask only for their catalogue's names
  }
  const stage_info& info_;
  std::vector<spec_arg> args_;
};

/// A builder's verdict: a stage, or an error at an offset.
struct stage_build {
  any_stage stage;
  std::string error;
  std::size_t offset = 0;
};

inline std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

/// Value parsers. Each returns false when the text is not of its form.
template <class Int>
bool parse_int(std::string_view s, Int& out) {  // an unsigned Int takes no sign
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, out);
  return r.ec == std::errc() && r.ptr == end;
}

inline bool parse_real(std::string_view s, double& out) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, out, std::chars_format::fixed);
  return r.ec == std::errc() && r.ptr == end;
}

inline bool is_integer_text(std::string_view s) {
  index_t unused = 0;
  return parse_int(s, unused);
}

/// "HxW" → (1, H, W) or "TxHxW" → (T, H, W); every side ≥ 1.
inline bool parse_size(std::string_view s, extent3& out, bool allow_two = true) {
  index_t v[3];
  int n = 0;
  while (n < 3) {
    const std::size_t x = s.find('x');
    if (!parse_int(s.substr(0, x), v[n]) || v[n] < 1) return false;
    ++n;
    if (x == std::string_view::npos) break;
    s.remove_prefix(x + 1);
    if (n == 3) return false;  // a fourth side
  }
  if (n == 2 && allow_two) out = {1, v[0], v[1]};
  else if (n == 3) out = {v[0], v[1], v[2]};
  else return false;
  return true;
}

inline bool parse_flag(std::string_view s, bool& out) {
  if (s == "true" || s == "1") out = true;
  else if (s == "false" || s == "0") out = false;
  else return false;
  return true;
}

inline stage_build bad_value(const spec_args& a, const char* name, const char* expected) {
  return {{}, "parameter " + quoted(name) + " of " + a.info().name + ": " + quoted(a.text(name)) +
                  " is not " + expected, a.offset(name)};
}

/// Reads `keep` and `round` into a budget.
inline bool read_budget(const spec_args& a, keep_budget& out, stage_build& fail) {
  rounding mode = rounding::floor;
  const std::string_view r = a.text("round");
  if (r == "floor") mode = rounding::floor;
  else if (r == "even") mode = rounding::half_even;
  else if (r == "ceil") mode = rounding::ceil;
  else if (r == "away") mode = rounding::half_away;
  else return fail = bad_value(a, "round", "floor, even, ceil or away"), false;
  const std::string_view k = a.text("keep");
  index_t count = 0;
  double ratio = 0.0;
  if (parse_int(k, count)) {
    if (count < 1) return fail = bad_value(a, "keep", "a count >= 1 or a ratio in (0, 1]"), false;
    out = keep_budget::count(count);
  } else if (parse_real(k, ratio)) {
    if (!(ratio > 0.0 && ratio <= 1.0)) return fail = bad_value(a, "keep", "a count >= 1 or a ratio in (0, 1]"), false;
    out = keep_budget::ratio(ratio, mode);
  } else {
    return fail = bad_value(a, "keep", "a count >= 1 or a ratio in (0, 1]"), false;
  }
  return true;
}

inline bool read_scope(const spec_args& a, scope& out, stage_build& fail) {
  const std::string_view w = a.text("within");
  if (w == "global") out = scope::global;
  else if (w == "frame") out = scope::per_frame;
  else return fail = bad_value(a, "within", "global or frame"), false;
  return true;
}

/// The budget (`keep`, `round`) and its scope (`within`) every selection stage reads.
template <class Select>
bool read_selection(const spec_args& a, Select& p, stage_build& fail) {
  return read_budget(a, p.keep, fail) && read_scope(a, p.within, fail);
}

/// A selection with a `score` parameter: the caller's scores, or a feature score of the stage.
template <class Select>
stage_build with_score(const spec_args& a, const Select& select) {
  const std::string_view s = a.text("score");
  if (s == "input") return {select, {}, 0};
  if (s == "norm") return {scored<token_norm, Select>{{}, select}, {}, 0};
  if (s == "query") return {scored<query_relevance, Select>{{}, select}, {}, 0};
  if (s == "temporal") return {scored<temporal_similarity, Select>{temporal_similarity::evs(), select}, {}, 0};
  return bad_value(a, "score", "input, norm, query or temporal");
}

/// Reads `mode` (avg or max) into a pooling kind.
inline bool read_pool_kind(const spec_args& a, pool_kind& out, stage_build& fail) {
  const std::string_view m = a.text("mode");
  if (m == "avg") out = pool_kind::average;
  else if (m == "max") out = pool_kind::max;
  else return fail = bad_value(a, "mode", "avg or max"), false;
  return true;
}

inline stage_build build_pool(const spec_args& a) {
  pool p;
  stage_build fail;
  if (!parse_size(a.text("kernel"), p.kernel)) return bad_value(a, "kernel", "a size HxW or TxHxW");
  p.stride = p.kernel;
  if (a.text("stride") != "kernel" && !parse_size(a.text("stride"), p.stride))
    return bad_value(a, "stride", "a size HxW or TxHxW, or 'kernel'");
  if (!read_pool_kind(a, p.kind, fail)) return fail;
  if (!parse_flag(a.text("ceil"), p.ceil_mode)) return bad_value(a, "ceil", "true or false");
  return {p, {}, 0};
}

inline stage_build build_adaptive(const spec_args& a) {
  adaptive_pool p;
  stage_build fail;
  if (!parse_size(a.text("size"), p.size, false)) return bad_value(a, "size", "a size TxHxW");
  if (!read_pool_kind(a, p.kind, fail)) return fail;
  return {p, {}, 0};
}

inline stage_build build_bilinear(const spec_args& a) {
  extent3 size;
  if (!parse_size(a.text("size"), size) || size.t != 1) return bad_value(a, "size", "a size HxW");
  bilinear p{size.h, size.w, false};
  if (!parse_flag(a.text("align_corners"), p.align_corners)) return bad_value(a, "align_corners", "true or false");
  return {p, {}, 0};
}

inline stage_build build_dct(const spec_args& a) {
  const std::string_view keep = a.text("keep");
  const std::string_view axes = a.text("axes");
  dct_lowpass p;
  if (axes == "spatial") p.axes = dct_axes::spatial;
  else if (axes == "temporal") p.axes = dct_axes::temporal;
  else if (axes == "spatiotemporal") p.axes = dct_axes::spatiotemporal;
  else return bad_value(a, "axes", "spatial, temporal or spatiotemporal");
  double ratio = 0.0;
  if (keep.find('x') == std::string_view::npos) {
    if (!parse_real(keep, ratio) || !(ratio > 0.0 && ratio <= 1.0) || p.axes != dct_axes::spatial)
      return bad_value(a, "keep", "a size TxHxW, or a side ratio in (0, 1] with axes=spatial");
    return {dct_share{ratio}, {}, 0};
  }
  if (!parse_size(a.text("keep"), p.keep, false)) return bad_value(a, "keep", "a size TxHxW, or a side ratio in (0, 1]");
  return {p, {}, 0};
}

inline stage_build build_topk(const spec_args& a) {
  topk p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  return with_score(a, p);
}

inline stage_build build_uniform(const spec_args& a) {
  uniform p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  return {p, {}, 0};
}

inline stage_build build_random(const spec_args& a) {
  random_subset p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  if (!parse_int(a.text("seed"), p.seed)) return bad_value(a, "seed", "an integer in [0, 2^64)");
  return {p, {}, 0};
}

inline stage_build build_divprune(const spec_args& a) {
  divprune p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  if (!parse_flag(a.text("repeats"), p.allow_repeats)) return bad_value(a, "repeats", "true or false");
  return {p, {}, 0};
}

inline stage_build build_kcenter(const spec_args& a) {
  kcenter p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  if (!parse_int(a.text("first"), p.first) || p.first < 0) return bad_value(a, "first", "an index >= 0");
  return {p, {}, 0};
}

inline stage_build build_importance(const spec_args& a) {
  importance_diversity p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  return with_score(a, p);
}

inline stage_build build_cdpruner(const spec_args& a) {
  cdpruner p;
  stage_build fail;
  if (!read_selection(a, p, fail)) return fail;
  double w = 0.0;
  if (!parse_real(a.text("weight"), w) || !(w >= 0.0 && w <= 1.0)) return bad_value(a, "weight", "a number in [0, 1]");
  p.relevance_weight = static_cast<float>(w);
  const std::string_view k = a.text("kernel");
  if (k == "openvino") p.kernel = dpp_kernel::openvino;
  else if (k == "original") p.kernel = dpp_kernel::original;
  else return bad_value(a, "kernel", "openvino or original");
  if (!parse_flag(a.text("split"), p.split)) return bad_value(a, "split", "true or false");
  return {p, {}, 0};
}

inline stage_build build_tome(const spec_args& a) {
  index_t protect = 0;
  if (!parse_int(a.text("protect"), protect) || protect < 0) return bad_value(a, "protect", "an integer >= 0");
  index_t r = 0;
  double share = 0.0;
  if (parse_int(a.text("r"), r)) {
    if (r < 0) return bad_value(a, "r", "a count >= 0 or a share in [0, 1]");
    return {tome{r, protect}, {}, 0};
  }
  if (!parse_real(a.text("r"), share) || !(share >= 0.0 && share <= 1.0))
    return bad_value(a, "r", "a count >= 0 or a share in [0, 1]");
  return {tome_share{share, protect}, {}, 0};
}

/// VisionZip without a [CLS] row (a chain's tokens are patches): counts >= 0, at least one token.
inline stage_build build_visionzip(const spec_args& a) {
  visionzip p;
  p.cls_token = false;
  if (!parse_int(a.text("dominant"), p.dominant) || p.dominant < 0)
    return bad_value(a, "dominant", "a count >= 0");
  if (!parse_int(a.text("contextual"), p.contextual) || p.contextual < 0 || (p.dominant == 0 && p.contextual == 0))
    return bad_value(a, "contextual", "a count >= 0, with dominant + contextual >= 1");
  const std::string_view m = a.text("merge");
  if (m == "target_plus_mean") p.merge = contextual_merge::target_plus_mean;
  else if (m == "group_mean") p.merge = contextual_merge::group_mean;
  else return bad_value(a, "merge", "target_plus_mean or group_mean");
  return {p, {}, 0};
}

/// The catalogue, with the builder of each entry (same order).
struct stage_entry {
  stage_info info;
  stage_build (*build)(const spec_args&);
};

inline const std::vector<stage_entry>& stage_entries() {
  static const stage_param keep{"keep", "", "tokens kept: a count (64) or a ratio of the stage's input (0.25)"};
  static const stage_param round{"round", "floor", "rounding of a ratio: floor, even (Python round), ceil, away"};
  static const stage_param within{"within", "global", "budget over all tokens (global) or each frame (frame)"};
  static const stage_param score{"score", "input",
                                 "ranking score: input (the caller's, carried by source), norm, query, temporal"};
  static const std::vector<stage_entry> entries = {
      {{"pool", "average or max pooling over (T, H, W) windows, torch semantics",
        "floor((in - k) / s) + 1 per axis (ceil with ceil=true)", "LLaVA-OneVision get_2dPool (arXiv 2408.03326)",
        {{"kernel", "2x2", "window HxW or TxHxW"},
         {"stride", "kernel", "step HxW or TxHxW; 'kernel' = the window"},
         {"mode", "avg", "avg or max"},
         {"ceil", "false", "torch ceil_mode"}}},
       build_pool},
      {{"adaptive", "adaptive pooling to a target grid", "T' x H' x W'", "PLLaVA (arXiv 2404.16994)",
        {{"size", "", "target TxHxW"}, {"mode", "avg", "avg or max"}}},
       build_adaptive},
      {{"bilinear", "bilinear resampling of every frame, torch interpolate", "T x H' x W'",
        "LLaVA-OneVision (arXiv 2408.03326)",
        {{"size", "", "target HxW"}, {"align_corners", "false", "torch align_corners"}}},
       build_bilinear},
      {{"dct", "DCT-II low-pass: keep the low-frequency block, inverse at the kept size",
        "the kept block; a ratio keeps max(int(side * ratio), 1) of each side", "Fourier-VLM (arXiv 2508.06038)",
        {{"keep", "0.6666666666666666", "kept block TxHxW, or a side ratio (frames kept whole)"},
         {"axes", "spatial", "spatial, temporal or spatiotemporal"}}},
       build_dct},
      {{"topk", "the highest-scoring tokens, original order; ties to the lower index, NaN last", "keep",
        "FastV (arXiv 2403.06764), FasterVLM (arXiv 2412.01818)", {keep, round, within, score}},
       build_topk},
      {{"uniform", "evenly spaced tokens (the downsample baseline)", "keep", "baseline",
        {keep, round, within}},
       build_uniform},
      {{"random", "a seeded random subset, original order (the random baseline)", "keep", "baseline",
        {keep, round, within, {"seed", "0", "64-bit seed"}}},
       build_random},
      {{"divprune", "max-min diversity: greedy farthest token by cosine distance", "keep",
        "DivPrune (arXiv 2503.02175)",
        {keep, {"round", "even", "rounding of a ratio (the original: Python round)"}, within,
         {"repeats", "false", "the original's repeated picks"}}},
       build_divprune},
      {{"kcenter", "k-center greedy (farthest point, Euclidean): the coverage baseline", "keep",
        "Gonzalez 1985", {keep, round, within, {"first", "0", "group-local index of the first pick"}}},
       build_kcenter},
      {{"importance", "max-min diversity weighted by an importance score", "keep", "importance x DivPrune",
        {keep, round, within, score}},
       build_importance},
      {{"cdpruner", "conditional DPP: greedy MAP over similarity and relevance to the query", "keep",
        "CDPruner (arXiv 2506.10967), as OpenVINO GenAI ships it",
        {keep, {"round", "away", "rounding of a ratio (OpenVINO: std::round)"}, within,
         {"weight", "0.5", "relevance weight in [0, 1]"},
         {"kernel", "openvino", "openvino or original"},
         {"split", "false", "two halves in parallel, OpenVINO's CPU split"}}},
       build_cdpruner},
      {{"tome", "bipartite soft matching: merge r tokens, size-weighted averages", "N - min(r, (N - protect) / 2)",
        "ToMe (arXiv 2210.09461)",
        {{"r", "", "tokens merged: a count (40) or a share in [0, 1] of the stage's tokens (0.25)"},
         {"protect", "0", "leading tokens that never merge (class token: 1)"}}},
       build_tome},
      {{"visionzip", "the top-scoring tokens kept, the rest merged into contextual tokens by cosine",
        "dominant + contextual", "VisionZip (arXiv 2412.04467)",
        {{"dominant", "54", "tokens kept by score (the caller's, carried by source); no [CLS] row in a chain"},
         {"contextual", "10", "contextual tokens the rest is merged into; 0 drops the rest"},
         {"merge", "target_plus_mean", "target_plus_mean (the original) or group_mean"}}},
       build_visionzip},
  };
  return entries;
}

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}
inline bool is_value_char(char c) { return is_name_char(c) || c == '.' || c == '-' || c == '+'; }

/// A cursor over the spec with its error slot.
class spec_parser {
 public:
  explicit spec_parser(std::string_view spec) : s_(spec) {}

  spec_result parse() {
    spec_result out;
    if (s_.size() > max_spec_length)
      return fail_at(max_spec_length, "spec is " + std::to_string(s_.size()) + " characters; the limit is " +
                                          std::to_string(max_spec_length));
    skip();
    if (at_end()) return fail_at(i_, "empty spec: name at least one stage, e.g. pool(2x2)");
    while (true) {
      if (out.pipeline.stages.size() == max_spec_stages)
        return fail_at(i_, "more than " + std::to_string(max_spec_stages) + " stages");
      if (!stage(out.pipeline)) return error_;
      skip();
      if (at_end()) break;
      if (s_[i_] != '|') return fail_at(i_, "unexpected " + quoted(s_.substr(i_, 1)) + " after a stage; stages are separated by '|'");
      ++i_;
      skip();
      if (at_end() || s_[i_] == '|') return fail_at(i_, "empty stage after '|'");
    }
    return out;
  }

 private:
  bool stage(any_pipeline& pipe) {
    const std::size_t start = i_;
    while (!at_end() && is_name_char(s_[i_])) ++i_;
    const std::string_view name = s_.substr(start, i_ - start);
    if (name.empty()) return fail(start, "expected a stage name, found " + quoted(s_.substr(start, 1))), false;
    const stage_entry* entry = nullptr;
    for (const stage_entry& e : stage_entries())
      if (name == e.info.name) entry = &e;
    if (!entry) {
      std::string known;
      for (const stage_entry& e : stage_entries()) known += (known.empty() ? "" : ", ") + std::string(e.info.name);
      return fail(start, "unknown policy " + quoted(name) + " (known: " + known + ")"), false;
    }
    std::vector<spec_arg> given;
    skip();
    if (!at_end() && s_[i_] == '(') {
      ++i_;
      if (!arguments(*entry, given)) return false;
    }
    // Fill the defaults; a parameter without one must have been given.
    std::vector<spec_arg> all;
    for (const stage_param& p : entry->info.params) {
      const spec_arg* found = nullptr;
      for (const spec_arg& g : given)
        if (g.name == p.name) found = &g;
      if (found) {
        all.push_back(*found);
      } else if (*p.fallback == '\0') {
        return fail(start, "stage " + quoted(name) + " needs parameter " + quoted(p.name) + " (" + p.meaning + ")"), false;
      } else {
        all.push_back({p.name, p.fallback, start});
      }
    }
    const spec_args args(entry->info, std::move(all));
    stage_build built = entry->build(args);
    if (!built.error.empty()) return fail(built.offset, built.error), false;
    pipe.stages.push_back(std::move(built.stage));
    std::string canonical = std::string(name) + "(";
    for (std::size_t k = 0; k < args.all().size(); ++k)
      canonical += (k ? ", " : "") + std::string(args.all()[k].name) + "=" + std::string(args.all()[k].value);
    pipe.canonical.push_back(canonical + ")");
    return true;
  }

  bool arguments(const stage_entry& entry, std::vector<spec_arg>& given) {
    const std::vector<stage_param>& params = entry.info.params;
    bool named_seen = false;
    skip();
    if (!at_end() && s_[i_] == ')') return ++i_, true;
    while (true) {
      skip();
      const std::size_t start = i_;
      while (!at_end() && is_value_char(s_[i_])) ++i_;
      std::string_view first = s_.substr(start, i_ - start);
      skip();
      std::string_view pname, value = first;
      std::size_t value_at = start;
      if (!at_end() && s_[i_] == '=') {
        pname = first;
        if (pname.empty()) return fail(i_, "'=' without a parameter name"), false;
        ++i_;
        skip();
        value_at = i_;
        while (!at_end() && is_value_char(s_[i_])) ++i_;
        value = s_.substr(value_at, i_ - value_at);
        skip();
        bool known = false;
        for (const stage_param& p : params) known = known || pname == p.name;
        if (!known) {
          std::string names;
          for (const stage_param& p : params) names += (names.empty() ? "" : ", ") + std::string(p.name);
          return fail(start, "unknown parameter " + quoted(pname) + " for " + entry.info.name + " (it takes " +
                                 names + ")"),
                 false;
        }
        named_seen = true;
      } else {
        if (named_seen) return fail(start, "positional value " + quoted(first) + " after a named parameter"), false;
        if (given.size() >= params.size())
          return fail(start, "too many values for " + std::string(entry.info.name) + ": " + quoted(first)), false;
        pname = params[given.size()].name;
      }
      if (value.empty()) {
        if (at_end()) return fail(i_, "unterminated arguments of " + std::string(entry.info.name) + ": missing ')'"), false;
        return fail(i_, "expected a value, found " + quoted(s_.substr(i_, 1))), false;
      }
      for (const spec_arg& g : given)
        if (g.name == pname) return fail(start, "duplicate parameter " + quoted(pname) + " for " + entry.info.name), false;
      given.push_back({pname, value, value_at});
      if (at_end()) return fail(i_, "unterminated arguments of " + std::string(entry.info.name) + ": missing ')'"), false;
      if (s_[i_] == ')') return ++i_, true;
      if (s_[i_] != ',') return fail(i_, "unexpected " + quoted(s_.substr(i_, 1)) + " in the arguments of " + entry.info.name), false;
      ++i_;
    }
  }

  void skip() {
    while (!at_end() && is_space(s_[i_])) ++i_;
  }
  bool at_end() const { return i_ >= s_.size(); }
  void fail(std::size_t at, std::string message) {
    error_.error = std::move(message);
    error_.offset = at;
  }
  spec_result fail_at(std::size_t at, std::string message) {
    fail(at, std::move(message));
    return std::move(error_);
  }

  std::string_view s_;
  std::size_t i_ = 0;
  spec_result error_;
};

}  // namespace detail

/// Parses a pipeline spec. On error `ok()` is false, `error` says what and where, and `offset`
/// points at the offending token.
inline spec_result parse_pipeline(std::string_view spec) { return detail::spec_parser(spec).parse(); }

/// Every stage a spec can name, with its parameters, defaults, output count and paper.
inline std::vector<stage_info> pipeline_catalog() {
  std::vector<stage_info> out;
  for (const detail::stage_entry& e : detail::stage_entries()) out.push_back(e.info);
  return out;
}

}  // namespace tokred
