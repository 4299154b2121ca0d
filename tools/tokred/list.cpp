// tools/tokred/list.cpp — `tokred list`: every stage a pipeline spec can name, with its
// parameters, defaults, output-count rule and paper.
#include <cstdio>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <tokred/policy/pipeline_spec.hpp>

#include "tokred/commands.hpp"

namespace tokred::cli {

namespace {

void print_text(const std::vector<stage_info>& catalog) {
  fmt::print("Stages of a pipeline spec, chained with '|', e.g. tokred run --pipeline "
             "'pool(2x2) | tome(r=0.25) | divprune(keep=64)'.\n"
             "Budgets: an integer is a count (keep=64), a number with a point a ratio of the stage's "
             "input (keep=0.25).\n");
  for (const stage_info& s : catalog) {
    fmt::print("\n{}  {}\n", s.name, s.summary);
    fmt::print("  tokens out: {}\n", s.count_rule);
    fmt::print("  paper:      {}\n", s.paper);
    for (const stage_param& p : s.params)
      fmt::print("  {:<14} {:<20} {}\n", p.name, *p.fallback ? fmt::format("= {}", p.fallback) : "(required)",
                 p.meaning);
  }
}

nlohmann::json as_json(const std::vector<stage_info>& catalog) {
  nlohmann::json stages = nlohmann::json::array();
  for (const stage_info& s : catalog) {
    nlohmann::json params = nlohmann::json::array();
    for (const stage_param& p : s.params)
      params.push_back({{"name", p.name},
                        {"default", *p.fallback ? nlohmann::json(p.fallback) : nlohmann::json(nullptr)},
                        {"meaning", p.meaning}});
    stages.push_back({{"name", s.name},
                      {"summary", s.summary},
                      {"tokens_out", s.count_rule},
                      {"paper", s.paper},
                      {"parameters", params}});
  }
  return {{"stages", stages}};
}

}  // namespace

int list_command(const list_options& opt) {
  const std::vector<stage_info> catalog = pipeline_catalog();
  if (opt.json)
    fmt::print("{}", json_text(as_json(catalog)));
  else
    print_text(catalog);
  return 0;
}

}  // namespace tokred::cli
