// tools/tokred/report.cpp — the bench report in Markdown, JSON and CSV (see report.hpp).
#include "tokred/report.hpp"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "tokred/features.hpp"

namespace tokred::cli {

namespace {

/// One method at one budget over a group of inputs: how many it ran on, and its means over the
/// inputs every method that ran at that budget ran on (see `summarize`).
struct method_summary {
  std::string method, family;
  double budget = 0;
  int ran = 0, items = 0;
  int averaged = 0;     ///< the inputs the means are over
  bool shared = true;   ///< false: no input had every method, the means are over its own `ran`
  double kept = 0, rel_l2 = 0, mean_cos = 0, attention = 0, coverage_rel = 0, median_us = 0, memcpy_multiple = 0;
};

/// The inputs summarized together: still images (T = 1) and videos (T > 1).
struct item_group {
  const char* title;
  bool video;
  bool holds(const bench_row& row) const { return (row.frames > 1) == video; }
};
constexpr item_group item_groups[] = {{"images", false}, {"videos", true}};

/// The budget of a summary row standing for every budget of a method that ran at none.
constexpr double not_applicable = -1;

/// The budget column: the fraction, "own" for a method that decides its own count, "any" for a
/// method that ran at no budget.
std::string budget_label(double budget) {
  if (budget == not_applicable) return "any";
  return budget == 0 ? std::string("own") : fmt::format("{}", budget);
}

/// The rows of `group` at `budget`, by method and item.
using row_index = std::map<std::pair<std::string, std::string>, const bench_row*>;

/// The inputs of `group` on which every method that ran on any of them ran, from the `rows` of
/// one budget: the common set the summary averages over, so every method's means at that budget
/// are over the same inputs.
std::vector<std::string> common_items(const bench_report& r, const item_group& group, const row_index& rows) {
  std::vector<std::string> ran_somewhere;
  for (const method_entry& m : r.methods)
    for (const bench_item& it : r.items) {
      const auto found = rows.find({m.name, it.name});
      if (found != rows.end() && found->second->ran()) {
        ran_somewhere.push_back(m.name);
        break;
      }
    }
  std::vector<std::string> common;
  for (const bench_item& it : r.items) {
    if ((it.grid.frames > 1) != group.video) continue;
    if (std::all_of(ran_somewhere.begin(), ran_somewhere.end(), [&](const std::string& m) {
          const auto found = rows.find({m, it.name});
          return found != rows.end() && found->second->ran();
        }))
      common.push_back(it.name);
  }
  return common;
}

std::vector<method_summary> summarize(const bench_report& r, const item_group& group) {
  // Each budget (0: the methods deciding their own count) has its own common set.
  std::map<double, row_index> by_budget;
  for (const bench_row& row : r.rows)
    if (group.holds(row)) by_budget[row.budget][{row.method, row.item}] = &row;
  std::map<double, std::vector<std::string>> common;
  for (const auto& [budget, rows] : by_budget) common[budget] = common_items(r, group, rows);

  std::vector<method_summary> out;
  for (const method_entry& m : r.methods) {
    const std::size_t first = out.size();
    for (double b : budgets_of(m.own_count, r.budgets)) {
      method_summary s{m.name, m.family, b};
      const auto at = by_budget.find(b);
      if (at == by_budget.end()) continue;
      const std::vector<std::string>& shared = common[b];
      for (const auto& [key, row] : at->second) {
        if (key.first != m.name) continue;
        ++s.items;
        s.ran += row->ran() ? 1 : 0;
      }
      if (s.items == 0) continue;
      s.shared = !shared.empty();
      for (const auto& [key, row] : at->second) {
        if (key.first != m.name || !row->ran()) continue;
        if (s.shared && std::find(shared.begin(), shared.end(), key.second) == shared.end()) continue;
        ++s.averaged;
        s.kept += row->kept_fraction();
        s.rel_l2 += row->fidelity.rel_l2;
        s.mean_cos += row->fidelity.mean_cos;
        s.attention += row->fidelity.attention;
        s.coverage_rel += row->fidelity.coverage_rel;
        s.median_us += row->time.median_us;
        s.memcpy_multiple += row->memcpy_multiple();
      }
      if (s.averaged > 0)
        for (double* v : {&s.kept, &s.rel_l2, &s.mean_cos, &s.attention, &s.coverage_rel, &s.median_us,
                          &s.memcpy_multiple})
          *v /= s.averaged;
      out.push_back(s);
    }
    // A method that ran at no budget gets one row.
    if (out.size() > first + 1 &&
        std::all_of(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), [](const method_summary& s) { return s.ran == 0; })) {
      out.resize(first + 1);
      out.back().budget = not_applicable;
    }
  }
  return out;
}

/// The note under a summary when some means are not over a common set.
bool any_unshared(const std::vector<method_summary>& rows) {
  return std::any_of(rows.begin(), rows.end(), [](const method_summary& s) { return s.ran > 0 && !s.shared; });
}

/// A CSV field: quoted when it holds a comma, a quote or a newline.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

const char* metric_notes =
    "- **kept**: output tokens over input tokens (merged and pooled tokens count once).\n"
    "- **reconstruction**: every original token is replaced by the output it landed in (its merge "
    "group or pooling window, from `assign`), or by its nearest output token (Euclidean) when it was "
    "dropped; relative L2 = ‖X − X̂‖_F / ‖X‖_F, and the mean cosine between x_i and x̂_i.\n"
    "- **attention error**: ‖A − Â‖_F / ‖A‖_F with A = softmax(Q Xᵀ/√D) X over the original tokens and "
    "Â = softmax(Q Yᵀ/√D + log s) Y over the outputs, s the number of originals each stands for "
    "(ToMe's proportional attention).\n"
    "- **coverage**: the largest distance from an original token to its nearest output token, over "
    "the mean token norm of the input.\n"
    "- **median µs / p90**: wall-clock time of one `apply` (single thread, warm caches, outputs "
    "preallocated), after the warm-up runs; **× memcpy** divides it by the median memcpy of the input "
    "token rows, the floor any method that reads its input pays.\n";

/// Where the library's policies that are not a row of the tables above are.
const char* policies_elsewhere =
    "\n### Policies measured elsewhere\n\n"
    "- `gather` ends every selection above; `token_norm` is the ranking score when no `--scores` are given "
    "(topk, importance, visionzip, prumerge, prumerge+, framefusion), made once per input before timing (the "
    "inputs table's *score µs*); `query_relevance` ranks `relevance`; `temporal_similarity` "
    "ranks `temporal` (EVS) and `dtd`; `framefusion_similarity` is part of `framefusion`; `tome_match`, "
    "`log_size_bias`, `unmerge` and `compose_assign` are parts of `tome`.\n"
    "- `attention_score` computes fastv's score from stored attention weights, which the data do not carry; "
    "`fused_attention_score` (the `fastv` row) computes the same from the rows.\n"
    "- The KV-cache schemes (ggml blocks, `uniform_quantize` for KIVI and VidKV, their streaming caches) are "
    "the KV table.\n"
    "- Not token reductions, so not measured here: `pyramid_schedule` (PyramidDrop's per-layer keep counts), "
    "`sequence_positions` and the M-RoPE position ids.\n";

/// The budgets at which `method` did not run on `item` for the reason `note`, in row order.
std::vector<double> failed_budgets(const bench_report& r, const std::string& method, const std::string& item,
                                   const std::string& note) {
  std::vector<double> at;
  for (const bench_row& row : r.rows)
    if (row.method == method && row.item == item && !row.ran() && row.note == note) at.push_back(row.budget);
  return at;
}

/// The rows that did not run, one line per method and reason: the inputs, each with the budgets
/// it failed at unless that was every budget the method runs at.
std::string not_run(const bench_report& r) {
  std::string md;
  for (const method_entry& m : r.methods) {
    const std::size_t budgets = budgets_of(m.own_count, r.budgets).size();
    std::vector<std::string> notes;  // in order of first appearance
    for (const bench_row& row : r.rows)
      if (row.method == m.name && !row.ran() && std::find(notes.begin(), notes.end(), row.note) == notes.end())
        notes.push_back(row.note);
    for (const std::string& note : notes) {
      std::vector<std::string> where;
      for (const bench_item& it : r.items) {
        const std::vector<double> at = failed_budgets(r, m.name, it.name, note);
        if (at.empty()) continue;
        where.push_back(at.size() == budgets ? it.name : fmt::format("{} (at {})", it.name, fmt::join(at, ", ")));
      }
      md += fmt::format("- **{}** on {}: {}\n", m.name, fmt::join(where, ", "), note);
    }
  }
  return md.empty() ? md : "\n## Not run\n\n" + md;
}

}  // namespace

std::string report_markdown(const bench_report& r) {
  std::string md = "# tokred bench\n\n";
  md += fmt::format(
      "tokred {} · compute type: {} · up to {} timed runs after up to {} warm-up runs{}, one thread · seed {} · "
      "budgets {}\n\n",
      r.tokred_version, r.compute_dtype == "auto" ? "as stored" : r.compute_dtype, r.repetitions, r.warmup,
      r.max_time > 0 ? fmt::format(" (at least {}, {} s of runs at most per measurement)",
                                   std::min(r.repetitions, min_timed_runs), r.max_time)
                     : "",
      r.seed,
      fmt::join(r.budgets, ", "));
  md += "Random, uniform and downsample (average pooling) are the baselines every method should beat; they run in "
        "every bench, whichever `--methods` are named.\n\n";

  md += "## Inputs\n\n| item | file | grid (T×H×W) | tokens | dim | stored | ranking score | score µs | queries | "
        "memcpy µs |\n|---|---|---|---:|---:|---|---|---:|---|---:|\n";
  for (const bench_item& it : r.items)
    md += fmt::format("| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {:.1f} |\n", it.name, it.spec,
                      grid_text(it.grid, "×"), it.grid.tokens(), it.dim, it.dtype, it.scorer,
                      it.score_us > 0 ? fmt::format("{:.1f}", it.score_us) : std::string("—"), it.queries,
                      it.memcpy_us);
  md += "\nThe ranking score is made once per input before any method is timed, and every score-ranked method "
        "(topk, importance, visionzip, prumerge, prumerge+, framefusion) reads it as the caller's (`score=input`), so "
        "none of their times includes it; *score µs* is what the token norms cost on their own (fp32, one thread).\n";

  for (const item_group& g : item_groups) {
    const std::vector<method_summary> rows = summarize(r, g);
    if (rows.empty()) continue;
    md += fmt::format(
        "\n## Summary: {}\n\n"
        "Means over the n inputs on which every method that ran at that budget ran, so the rows of one budget "
        "average the same inputs (*ran* counts the inputs each method ran on).\n\n"
        "| method | family | budget | kept | recon. rel. L2 | mean cos | attention error | coverage | "
        "median µs | × memcpy | n | ran |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        g.title);
    for (const method_summary& s : rows) {
      if (s.ran == 0) {
        md += fmt::format("| {} | {} | {} | — | — | — | — | — | — | — | 0 | 0 of {} |\n", s.method, s.family,
                          budget_label(s.budget), s.items);
        continue;
      }
      md += fmt::format(
          "| {} | {} | {} | {:.3f} | {:.4f} | {:.4f} | {:.4f} | {:.3f} | {:.1f} | {:.1f} | {}{} | {} of {} |\n",
          s.method, s.family, budget_label(s.budget), s.kept, s.rel_l2, s.mean_cos, s.attention, s.coverage_rel,
          s.median_us, s.memcpy_multiple, s.averaged, s.shared ? "" : "*", s.ran, s.items);
    }
    if (any_unshared(rows))
      md += "\n\\* No input had every method of that budget: the means are over the inputs this method ran on, "
            "and are not comparable with the other rows.\n";
  }

  if (!r.plots.empty()) {
    md += "\n## Plots\n\n";
    for (const std::string& p : r.plots) md += fmt::format("![{}]({})\n\n", p, p);
  } else if (!r.plot_note.empty()) {
    md += fmt::format("\n## Plots\n\n{}\n", r.plot_note);
  }

  if (!r.kv.empty()) {
    md += "\n## KV-cache quantization (each item's tokens as keys and values)\n\n"
          "| item | scheme | bits / value | MSE keys | MSE values | attention KL | median µs | × memcpy |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (const kv_row& k : r.kv) {
      if (!k.note.empty()) {
        md += fmt::format("| {} | {} | — | — | — | — | — | {} |\n", k.item, k.scheme, k.note);
        continue;
      }
      md += fmt::format("| {} | {} | {:.3f} | {:.3e} | {:.3e} | {:.3e} | {:.1f} | {:.1f} |\n", k.item, k.scheme,
                        k.bits_per_value, k.mse_keys, k.mse_values, k.attention_kl, k.time.median_us,
                        k.memcpy_us > 0 ? k.time.median_us / k.memcpy_us : 0.0);
    }
  }

  md += "\n## Methods\n\n| method | family | source | ranks by a score | spec (first item, first budget) |\n"
        "|---|---|---|---|---|\n";
  for (const method_entry& m : r.methods) {
    std::string spec = "—";
    for (const bench_row& row : r.rows)
      if (row.method == m.name && row.ran()) {
        spec = fmt::format("`{}`", row.spec);
        break;
      }
    md += fmt::format("| {} | {} | {} | {} | {} |\n", m.name, m.family, m.paper, m.ranks_by_score ? "yes" : "no",
                      spec);
  }

  md += "\n`dct`'s outputs carry its documented √(N/N') gain (Fourier-VLM's inverse DCT is orthonormal at the kept "
        "size, so a constant comes back √(N/N') times larger; the model's projector was trained on that scale). "
        "The metrics compare outputs with the originals directly, so they read `dct`'s outputs divided by "
        "√(N/N'): its figures measure the low-pass, not the scale; its timing includes the gain. `visionzip` runs "
        "with `merge=group_mean`: the original's target-plus-mean merge adds a group's mean to its target, about "
        "twice a token's norm, which the metrics would score the same way.\n";
  md += "\nRandom and uniform keep ⌊b·N⌋ tokens; downsample, bilinear and dct reduce each frame to the grid whose "
        "token count is nearest b·H·W (a 1-row grid along the row); pool uses LLaVA-OneVision's fixed windows, so "
        "its kept fraction differs: compare methods at their *kept* column (the plots' x axis).\n";
  md += "\nMethods marked *own* in the budget column decide their count from the data (PruMerge's outliers, "
        "DTD's threshold): they run once per input at their original's parameters, and the kept column shows "
        "what they chose.\n";
  md += policies_elsewhere;

  md += not_run(r);

  md += "\n## Metrics\n\n";
  md += metric_notes;
  md += "\nEvery row, per item, is in `results.csv` and `results.json`.\n";
  return md;
}

nlohmann::ordered_json report_json(const bench_report& r) {
  nlohmann::ordered_json items = nlohmann::ordered_json::array(), rows = nlohmann::ordered_json::array(), kv = nlohmann::ordered_json::array(),
                 methods = nlohmann::ordered_json::array();
  for (const method_entry& m : r.methods)
    methods.push_back({{"name", m.name},
                       {"family", m.family},
                       {"source", m.paper},
                       {"ranks_by_score", m.ranks_by_score},
                       {"own_count", m.own_count},
                       {"measured_without_gain", m.unit_gain}});
  for (const bench_item& it : r.items)
    items.push_back({{"name", it.name},
                     {"file", it.spec},
                     {"dtype", it.dtype},
                     {"grid", {it.grid.frames, it.grid.height, it.grid.width}},
                     {"dim", it.dim},
                     {"scorer", it.scorer},
                     {"queries", it.queries},
                     {"query_rows", it.query_rows},
                     {"ranking_query_rows", it.ranking_query_rows},
                     {"score_us", it.score_us},
                     {"memcpy_us", it.memcpy_us}});
  for (const bench_row& row : r.rows) {
    nlohmann::ordered_json j = {{"item", row.item},     {"frames", row.frames}, {"method", row.method},
                                {"family", row.family}, {"budget", row.budget}};
    if (!row.ran()) {
      j["note"] = row.note;
    } else {
      j.update({{"spec", row.spec},
                {"tokens_in", row.tokens_in},
                {"kept", row.kept},
                {"kept_fraction", row.kept_fraction()},
                {"median_us", row.time.median_us},
                {"p90_us", row.time.p90_us},
                {"repetitions", row.time.repetitions},
                {"memcpy_us", row.memcpy_us},
                {"memcpy_multiple", row.memcpy_multiple()},
                {"recon_rel_l2", row.fidelity.rel_l2},
                {"recon_mean_cos", row.fidelity.mean_cos},
                {"attention_rel_err", row.fidelity.attention},
                {"coverage", row.fidelity.coverage},
                {"coverage_rel", row.fidelity.coverage_rel}});
    }
    rows.push_back(j);
  }
  for (const kv_row& k : r.kv) {
    nlohmann::ordered_json j = {{"item", k.item}, {"scheme", k.scheme}};
    if (!k.note.empty())
      j["note"] = k.note;
    else
      j.update({{"bits_per_value", k.bits_per_value},
                {"median_us", k.time.median_us},
                {"p90_us", k.time.p90_us},
                {"memcpy_us", k.memcpy_us},
                {"mse_keys", k.mse_keys},
                {"mse_values", k.mse_values},
                {"attention_kl", k.attention_kl}});
    kv.push_back(j);
  }
  return {{"tokred_version", r.tokred_version},
          {"compute_dtype", r.compute_dtype},
          {"budgets", r.budgets},
          {"repetitions", r.repetitions},
          {"warmup", r.warmup},
          {"max_time_s", r.max_time},
          {"seed", r.seed},
          {"methods", methods},
          {"items", items},
          {"results", rows},
          {"kv", kv},
          {"plots", r.plots}};
}

std::string report_csv(const bench_report& r) {
  std::string csv =
      "item,frames,method,family,budget,spec,tokens_in,kept,kept_fraction,median_us,p90_us,memcpy_us,memcpy_multiple,"
      "recon_rel_l2,recon_mean_cos,attention_rel_err,coverage,coverage_rel,note\n";
  for (const bench_row& row : r.rows) {
    csv += fmt::format("{},{},{},{},{},{},", csv_field(row.item), row.frames, csv_field(row.method), row.family,
                       row.budget, csv_field(row.spec));
    if (row.ran())
      csv += fmt::format("{},{},{:.6f},{:.3f},{:.3f},{:.3f},{:.4f},{:.6g},{:.6g},{:.6g},{:.6g},{:.6g},\n",
                         row.tokens_in, row.kept, row.kept_fraction(), row.time.median_us, row.time.p90_us,
                         row.memcpy_us, row.memcpy_multiple(), row.fidelity.rel_l2, row.fidelity.mean_cos,
                         row.fidelity.attention, row.fidelity.coverage, row.fidelity.coverage_rel);
    else
      csv += fmt::format(",,,,,,,,,,,,{}\n", csv_field(row.note));
  }
  return csv;
}

std::string kv_csv(const bench_report& r) {
  std::string csv = "item,scheme,bits_per_value,median_us,p90_us,memcpy_us,mse_keys,mse_values,attention_kl,note\n";
  for (const kv_row& k : r.kv)
    csv += k.note.empty()
               ? fmt::format("{},{},{:.4f},{:.3f},{:.3f},{:.3f},{:.6g},{:.6g},{:.6g},\n", csv_field(k.item), k.scheme,
                             k.bits_per_value, k.time.median_us, k.time.p90_us, k.memcpy_us, k.mse_keys,
                             k.mse_values, k.attention_kl)
               : fmt::format("{},{},,,,,,,,{}\n", csv_field(k.item), k.scheme, csv_field(k.note));
  return csv;
}

std::string summary_table(const bench_report& r) {
  std::string t;
  for (const item_group& g : item_groups) {
    const std::vector<method_summary> rows = summarize(r, g);
    if (rows.empty()) continue;
    t += fmt::format("{}{} (means over the n inputs where every method of the budget ran)\n", t.empty() ? "" : "\n",
                     g.title);
    t += fmt::format("{:<11} {:>6} {:>6} {:>9} {:>9} {:>9} {:>10} {:>9} {:>4}\n", "method", "budget", "kept",
                     "recon L2", "attn err", "coverage", "median us", "x memcpy", "n");
    for (const method_summary& s : rows) {
      if (s.ran == 0) {
        t += fmt::format("{:<11} {:>6} {:>6}\n", s.method, budget_label(s.budget), "n/a");
        continue;
      }
      t += fmt::format("{:<11} {:>6} {:>6.3f} {:>9.4f} {:>9.4f} {:>9.3f} {:>10.1f} {:>9.1f} {:>4}\n", s.method,
                       budget_label(s.budget), s.kept, s.rel_l2, s.attention, s.coverage_rel, s.median_us,
                       s.memcpy_multiple, fmt::format("{}{}", s.averaged, s.shared ? "" : "*"));
    }
    if (any_unshared(rows)) t += "* no input had every method of that budget: means over this method's own inputs\n";
  }
  return t;
}

}  // namespace tokred::cli
