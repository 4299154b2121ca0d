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

const char* score_name(const method_context& ctx) { return ctx.caller_scores ? "input" : "norm"; }

index_t kept_side(index_t side, double budget) {
  return std::max<index_t>(1, static_cast<index_t>(std::lround(static_cast<double>(side) * std::sqrt(budget))));
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
std::string downsample_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.height == 1) return why = "the input has no 2-D grid", std::string{};
  return fmt::format("adaptive(size={}x{}x{}, mode=avg)", g.frames, kept_side(g.height, b), kept_side(g.width, b));
}
std::string bilinear_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.height == 1) return why = "the input has no 2-D grid", std::string{};
  return fmt::format("bilinear(size={}x{})", kept_side(g.height, b), kept_side(g.width, b));
}
std::string dct_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.height == 1) return why = "the input has no 2-D grid", std::string{};
  return fmt::format("dct(keep={})", ratio_text(std::sqrt(b)));
}
/// torch's pooling with a fixed window of about 1/budget tokens: kh = round(1/sqrt(budget)) rows by
/// kw = round(1/(budget·kh)) columns (0.5: 1×2, 0.25: 2×2, 0.1: 3×3, 0.05: 4×5), floor mode.
std::string pool_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.height == 1) return why = "the input has no 2-D grid", std::string{};
  const auto kh = std::max<long>(1, std::lround(1.0 / std::sqrt(b)));
  const auto kw = std::max<long>(1, std::lround(1.0 / (b * static_cast<double>(kh))));
  if (kh > g.height || kw > g.width) return why = fmt::format("a {}x{} window exceeds the grid", kh, kw), std::string{};
  return fmt::format("pool(kernel={}x{})", kh, kw);
}
std::string topk_spec(double b, const token_grid&, const method_context& ctx, std::string&) {
  return keep_spec("topk", b, fmt::format(", score={}", score_name(ctx)).c_str());
}
std::string relevance_spec(double b, const token_grid&, const method_context&, std::string&) {
  return keep_spec("topk", b, ", score=query");
}
std::string temporal_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.frames < 2) return why = "needs a video (T >= 2)", std::string{};
  return keep_spec("topk", b, ", score=temporal");
}
std::string importance_spec(double b, const token_grid&, const method_context& ctx, std::string&) {
  return keep_spec("importance", b, fmt::format(", score={}", score_name(ctx)).c_str());
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
/// caller's scores as the [CLS] attention (the bench passes the L2 norms when it has none).
std::string visionzip_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  const auto total = static_cast<index_t>(std::lround(b * static_cast<double>(g.tokens())));
  if (total < 1) return why = "the budget keeps no token", std::string{};
  const auto dominant = std::max<index_t>(1, static_cast<index_t>(std::lround(total * 54.0 / 64.0)));
  return fmt::format("visionzip(dominant={}, contextual={})", dominant, total - dominant);
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
      {"downsample", "baseline", "average pooling to the kept grid", false, downsample_spec, nullptr, false},
      {"pool", "pooling", "LLaVA-OneVision get_2dPool (arXiv 2408.03326)", false, pool_spec, nullptr, false},
      {"bilinear", "pooling", "bilinear resampling (LLaVA-style projector)", false, bilinear_spec, nullptr, false},
      {"dct", "pooling", "Fourier-VLM (arXiv 2508.06038)", false, dct_spec, nullptr, false},
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
      {"visionzip", "merging", "VisionZip (arXiv 2412.04467)", true, visionzip_spec, nullptr, false},
      {"framefusion", "merging", "FrameFusion (arXiv 2501.01986)", true, nullptr, make_framefusion, false},
      {"slowfast", "layout", "SlowFast-LLaVA (arXiv 2407.15841)", false, nullptr, make_slowfast, false},
      {"thumbnail", "layout", "TS-LLaVA (arXiv 2411.11066)", false, nullptr, make_thumbnail, false},
  };
  return methods;
}

}  // namespace tokred::cli
