// tools/tokred/bench_methods.cpp — the bench's method table (see bench_methods.hpp).
#include "tokred/bench_methods.hpp"

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

namespace {

/// The side a fraction `budget` of the area keeps of `side`: round(side * sqrt(budget)), >= 1.
index_t kept_side(index_t side, double budget) {
  return std::max<index_t>(1, static_cast<index_t>(std::lround(static_cast<double>(side) * std::sqrt(budget))));
}

/// The score a ranking stage reads: the caller's, or the L2 norm the library computes.
const char* score_of(const method_context& ctx) { return ctx.caller_scores ? "input" : "norm"; }

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
std::string topk_spec(double b, const token_grid&, const method_context& ctx, std::string&) {
  return keep_spec("topk", b, fmt::format(", score={}", score_of(ctx)).c_str());
}
std::string temporal_spec(double b, const token_grid& g, const method_context&, std::string& why) {
  if (g.frames < 2) return why = "needs a video (T >= 2)", std::string{};
  return keep_spec("topk", b, ", score=temporal");
}
std::string importance_spec(double b, const token_grid&, const method_context& ctx, std::string&) {
  return keep_spec("importance", b, fmt::format(", score={}", score_of(ctx)).c_str());
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
      {"random", "baseline", "a seeded random subset", false, random_spec},
      {"uniform", "baseline", "evenly spaced tokens", false, uniform_spec},
      {"downsample", "baseline", "average pooling to the kept grid", false, downsample_spec},
      {"bilinear", "pooling", "bilinear resampling (LLaVA-style projector)", false, bilinear_spec},
      {"dct", "pooling", "Fourier-VLM (arXiv 2508.06038)", false, dct_spec},
      {"topk", "pruning", "FastV / FasterVLM (arXiv 2403.06764, 2412.01818)", true, topk_spec},
      {"temporal", "pruning", "temporal redundancy: vLLM EVS, TimeChat-Online DTD", false, temporal_spec},
      {"divprune", "diversity", "DivPrune (arXiv 2503.02175)", false, divprune_spec},
      {"kcenter", "diversity", "k-center greedy (Gonzalez 1985)", false, kcenter_spec},
      {"importance", "diversity", "importance-weighted DivPrune", true, importance_spec},
      {"cdpruner", "diversity", "CDPruner (arXiv 2506.10967)", false, cdpruner_spec},
      {"tome", "merging", "ToMe (arXiv 2210.09461)", false, tome_spec},
      {"visionzip", "merging", "VisionZip (arXiv 2412.04467)", true, visionzip_spec},
  };
  return methods;
}

}  // namespace tokred::cli
