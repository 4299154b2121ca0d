// tools/tokred/bench_methods.cpp — the bench's method table (see bench_methods.hpp).
#include "tokred/bench_methods.hpp"

#include "tokred/direct_methods.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace tokred::cli {

std::string ratio_text(double budget) {
  std::string s = fmt::format("{:.6f}", budget);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.push_back('0');
  return s == "0.0" || s == "1.0" ? std::string{} : s;
}

const char* score_name(const method_context& ctx) {
  return ctx.caller_scores ? "input (--scores)" : "input (token L2 norm)";
}

index_t kept_side(index_t side, double budget) {
  return std::max<index_t>(1, static_cast<index_t>(std::lround(static_cast<double>(side) * std::sqrt(budget))));
}

kept_extent kept_grid(index_t height, index_t width, double budget) {
  const double target = budget * static_cast<double>(height) * static_cast<double>(width);
  const double aspect = static_cast<double>(height) / static_cast<double>(width);
  const double centre = static_cast<double>(height) * std::sqrt(budget);
  kept_extent best{0, 0};
  double best_gap = 0, best_skew = 0;
  const auto low = std::max<index_t>(1, static_cast<index_t>(std::floor(centre)) - 1);
  const auto high = std::min<index_t>(height, static_cast<index_t>(std::ceil(centre)) + 1);
  for (index_t h = low; h <= high; ++h) {
    const auto w = std::clamp<index_t>(static_cast<index_t>(std::lround(target / static_cast<double>(h))), 1, width);
    const double gap = std::fabs(static_cast<double>(h) * static_cast<double>(w) - target);
    const double skew = std::fabs(std::log(static_cast<double>(h) / static_cast<double>(w) / aspect));
    if (best.height == 0 || gap < best_gap || (gap == best_gap && skew < best_skew - 1e-9)) {
      best = {h, w};
      best_gap = gap;
      best_skew = skew;
    }
  }
  return best;
}

namespace {


std::string keep_spec(const char* stage, double budget, const char* extra = "") {
  return fmt::format("{}(keep={}{})", stage, ratio_text(budget), extra);
}

std::string random_spec(double b, const token_grid&, const method_context& ctx, std::string&) {
  return fmt::format("random(keep={}, seed={})", ratio_text(b), ctx.seed);
}
std::string uniform_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("uniform", b);
}
std::string downsample_spec(double b, const token_grid& g, const method_context&, std::string&) {
  const kept_extent k = kept_grid(g.height, g.width, b);
  return fmt::format("adaptive(size={}x{}x{}, mode=avg)", g.frames, k.height, k.width);
}
std::string bilinear_spec(double b, const token_grid& g, const method_context&, std::string&) {
  const kept_extent k = kept_grid(g.height, g.width, b);
  return fmt::format("bilinear(size={}x{})", k.height, k.width);
}
/// The kept block of the same extents as downsample's (Fourier-VLM states a side ratio; the
/// block that ratio names is the same kind of cut).
std::string dct_spec(double b, const token_grid& g, const method_context&, std::string&) {
  const kept_extent k = kept_grid(g.height, g.width, b);
  return fmt::format("dct(keep={}x{}x{})", g.frames, k.height, k.width);
}
/// torch's pooling with a fixed window of about 1/budget tokens: kh = round(1/sqrt(budget)) rows by
/// kw = round(1/(budget·kh)) columns (0.5: 1×2, 0.25: 2×2, 0.1: 3×3, 0.05: 4×5), floor mode; on a
/// grid of one row, 1 × round(1/budget).
std::string pool_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  // A grid of one row pools along it: a 1 x round(1/budget) window.
  const auto kh = g.height == 1 ? 1L : std::max<long>(1, std::lround(1.0 / std::sqrt(b)));
  const auto kw = std::max<long>(1, std::lround(1.0 / (b * static_cast<double>(kh))));
  if (kh > g.height || kw > g.width) return why = fmt::format("a {}x{} window exceeds the grid", kh, kw), std::string{};
  return fmt::format("pool(kernel={}x{})", kh, kw);
}
/// The score-ranked methods all read the bench's scores (the caller's, or the token norms the
/// bench computes once before timing): score=input.
std::string topk_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("topk", b, ", score=input");
}
std::string relevance_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("topk", b, ", score=query");
}
std::string temporal_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.frames < 2) return why = "needs a video (T >= 2)", std::string{};
  return keep_spec("topk", b, ", score=temporal");
}
std::string importance_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("importance", b, ", score=input");
}
std::string divprune_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("divprune", b);
}
std::string kcenter_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("kcenter", b);
}
std::string cdpruner_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("cdpruner", b);
}
/// VisionZip's counts split as its defaults do, 54 dominant to 10 contextual; it reads the
/// caller's scores as the [CLS] attention (the bench passes the L2 norms when it has none). The
/// contextual tokens are group means: the original's target-plus-mean merge adds a group's mean
/// to its target, about twice a token's norm, which the fidelity metrics (outputs against the
/// originals, no projector after them) would score as error though it is a scale.
std::string visionzip_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  const auto total = static_cast<index_t>(std::lround(b * static_cast<double>(g.tokens())));
  if (total < 1) return why = "the budget keeps no token", std::string{};
  const auto dominant = std::max<index_t>(1, static_cast<index_t>(std::lround(total * 54.0 / 64.0)));
  return fmt::format("visionzip(dominant={}, contextual={}, merge=group_mean)", dominant, total - dominant);
}
/// ToMe merges at most half of what reaches a stage, so smaller budgets chain stages of equal
/// shares: m = ceil(log2(1 / budget)) stages, each keeping budget^(1/m) of its input.
std::string tome_spec(double b, const token_grid&, const method_context&, std::string&) {
  const int stages = std::max(1, static_cast<int>(std::ceil(std::log2(1.0 / b) - 1e-9)));
  const std::string share = ratio_text(1.0 - std::pow(b, 1.0 / stages));
  std::string spec;
  for (int i = 0; i < stages; ++i) spec += fmt::format("{}tome(r={})", i ? " | " : "", share);
  return spec;
}

}  // namespace

const std::vector<bench_method>& bench_methods() {
  static const std::vector<bench_method> methods = {
      {"random", "baseline", "a seeded random subset", false, random_spec, nullptr, false},
      {"uniform", "baseline", "evenly spaced tokens", false, uniform_spec, nullptr, false},
      {"downsample", "baseline", "average pooling to the kept grid (along the row on a 1-row grid)", false,
       downsample_spec, nullptr, false},
      {"pool", "pooling", "LLaVA-OneVision get_2dPool (arXiv 2408.03326)", false, pool_spec, nullptr, false},
      {"bilinear", "pooling", "bilinear resampling (LLaVA-style projector)", false, bilinear_spec, nullptr, false},
      {"dct", "pooling", "Fourier-VLM (arXiv 2508.06038)", false, dct_spec, nullptr, false, true},
      {"topk", "pruning", "FastV / FasterVLM (arXiv 2403.06764, 2412.01818)", true, topk_spec, nullptr, false},
      {"relevance", "pruning", "cosine relevance to the queries (Free Video-LLM, arXiv 2410.10441)", false,
       relevance_spec, nullptr, false},
      {"fastv", "pruning", "FastV's attention score (arXiv 2403.06764)", false, nullptr, make_fastv, false},
      {"fopru", "pruning", "FoPru's row strategy (arXiv 2411.14164)", false, nullptr, make_fopru, false},
      {"prumerge", "pruning", "LLaVA-PruMerge's outliers (arXiv 2403.15388)", true, nullptr, make_prumerge, true},
      {"prumerge+", "pruning", "PruMerge+'s outliers and extras (arXiv 2403.15388)", true, nullptr,
       make_prumerge_plus, true},
      {"hired", "pruning", "HiRED (arXiv 2408.10945)", true, nullptr, make_hired, false},
      {"temporal", "pruning", "temporal redundancy: vLLM EVS (arXiv 2510.14624)", false, temporal_spec, nullptr,
       false},
      {"dtd", "pruning", "TimeChat-Online DTD (arXiv 2504.17343)", false, nullptr, make_dtd, true},
      {"stc", "pruning", "STC-Pruner (arXiv 2512.00891)", false, nullptr, make_stc, false},
      {"divprune", "diversity", "DivPrune (arXiv 2503.02175)", false, divprune_spec, nullptr, false},
      {"kcenter", "diversity", "k-center greedy (Gonzalez 1985)", false, kcenter_spec, nullptr, false},
      {"importance", "diversity", "importance-weighted DivPrune", true, importance_spec, nullptr, false},
      {"cdpruner", "diversity", "CDPruner (arXiv 2506.10967)", false, cdpruner_spec, nullptr, false},
      {"tome", "merging", "ToMe (arXiv 2210.09461)", false, tome_spec, nullptr, false},
      {"visionzip", "merging", "VisionZip (arXiv 2412.04467), contextual tokens as group means", true,
       visionzip_spec, nullptr, false},
      {"framefusion", "merging", "FrameFusion (arXiv 2501.01986)", true, nullptr, make_framefusion, false},
      {"slowfast", "layout", "SlowFast-LLaVA (arXiv 2407.15841)", false, nullptr, make_slowfast, false},
      {"thumbnail", "layout", "TS-LLaVA (arXiv 2411.11066)", false, nullptr, make_thumbnail, false},
  };
  return methods;
}

}  // namespace tokred::cli
