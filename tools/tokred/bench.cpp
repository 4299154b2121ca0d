// tools/tokred/bench.cpp — `tokred bench`: every method at every budget on every input, on the
// same tokens, scores and queries: latency against a memcpy of the input, and fidelity.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <tokred/core/config.hpp>
#include <tokred/policy/pipeline_spec.hpp>

#include "bench/fidelity.hpp"
#include "io/tensor_file.hpp"
#include "plot_script.hpp"
#include "tokred/bench_kv.hpp"
#include "tokred/bench_methods.hpp"
#include "tokred/commands.hpp"
#include "tokred/features.hpp"
#include "tokred/output_dir.hpp"
#include "tokred/reduce.hpp"
#include "tokred/report.hpp"
#include "tokred/timing.hpp"

#ifndef TOKRED_SAMPLE_DIR
#define TOKRED_SAMPLE_DIR "examples/data"
#endif
#ifndef TOKRED_PYTHON
#define TOKRED_PYTHON "python3"
#endif

namespace tokred::cli {

namespace {

const std::vector<std::string> report_files = {"report.md",      "results.json", "results.csv", "kv.csv",
                                               "plot_report.py", "fidelity.png", "latency.png"};

/// The inputs in `dir`: every .npy, and every member of each .npz and .safetensors, by name. The
/// files are told apart by `io::file_kind`, as `tokred run` tells them apart, and handed on
/// split (no spec text is parsed again).
std::string find_inputs(const std::string& dir, std::vector<io::tensor_spec>& specs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return fmt::format("--data {}: not a directory", dir);
  std::vector<io::tensor_spec> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    io::tensor_spec f;
    f.path = it->path().string();
    if (it->is_regular_file() && io::file_kind(f.path, f.format)) files.push_back(f);
  }
  if (ec) return fmt::format("--data {}: {}", dir, ec.message());
  std::sort(files.begin(), files.end(),
            [](const io::tensor_spec& a, const io::tensor_spec& b) { return a.path < b.path; });
  for (const io::tensor_spec& f : files) {
    if (f.format == io::tensor_spec::kind::npy) {
      specs.push_back(f);
      continue;
    }
    std::vector<std::string> names;
    const bool npz = f.format == io::tensor_spec::kind::npz;
    if (std::string e = npz ? io::list_npz(f.path, names) : io::list_safetensors(f.path, names); !e.empty()) return e;
    for (const std::string& n : names) {
      io::tensor_spec member = f;
      member.name = n;
      member.named = true;
      specs.push_back(member);
    }
  }
  if (specs.empty()) return fmt::format("--data {}: no .npy, .npz or .safetensors inputs", dir);
  return {};
}

/// Refuses two inputs of one name (a.npy beside a.npz:x cannot clash, a.npz:x beside
/// a.safetensors:x can): the report, the plots and --scores find inputs by name.
std::string unique_names(const std::vector<token_input>& inputs) {
  for (std::size_t i = 0; i < inputs.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (inputs[i].name == inputs[j].name)
        return fmt::format("--data: {} and {} are both named '{}'; rename one (the report and --scores name inputs "
                           "by file stem and member)",
                           inputs[j].spec, inputs[i].spec, inputs[i].name);
  return {};
}

/// A progress line on stderr, redrawn in place; only on a terminal.
class progress {
 public:
  progress(std::size_t total, bool enabled) : total_(total), enabled_(enabled && isatty(2)) {}
  void step(const std::string& what) {
    ++done_;
    if (!enabled_) return;
    const std::size_t width = 30, filled = total_ ? width * done_ / total_ : width;
    fmt::print(stderr, "\r[{}{}] {}/{} {:<40.40}", std::string(filled, '#'), std::string(width - filled, ' '), done_,
               total_, what);
    std::fflush(stderr);
  }
  ~progress() {
    if (enabled_ && done_) fmt::print(stderr, "\r{:<90}\r", "");
  }

 private:
  std::size_t total_, done_ = 0;
  bool enabled_;
};

/// `s` quoted for a POSIX shell.
std::string shell_quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

const char* const plot_files[] = {"fidelity.png", "latency.png"};

/// Writes the plotting script into `dir` and runs it; fills `plots` or `note`. A previous run's
/// plots are removed first, so the directory never shows figures of other results.
void draw_plots(const bench_options& opt, const std::string& dir, bench_report& report) {
  for (const char* f : plot_files)
    if (std::string e = remove_owned(dir + "/" + f); !e.empty()) {
      report.plot_note = fmt::format("No plots: a previous run's plot could not be removed ({}).", e);
      return;
    }
  if (opt.no_plots) {
    report.plot_note = "No plots (--no-plots).";
    return;
  }
  const std::string script = dir + "/plot_report.py";
  if (std::string e = write_text(script, plot_script); !e.empty()) {
    report.plot_note = e;
    return;
  }
  const std::string python = opt.python.empty() ? std::string(TOKRED_PYTHON) : opt.python;
  const std::string command =
      fmt::format("{} {} {} >/dev/null 2>&1", shell_quoted(python), shell_quoted(script), shell_quoted(dir));
  if (std::system(command.c_str()) == 0) {
    report.plots.assign(std::begin(plot_files), std::end(plot_files));
    return;
  }
  report.plot_note = fmt::format(
      "No plots: `{}` could not draw them (it needs matplotlib; Debian: python3-matplotlib). "
      "Draw them later with `python3 plot_report.py .` in this directory.",
      python);
}

/// The queries of the attention metric and the KV cache (`metric`), and those the query-ranked
/// methods rank with (`ranking`): the caller's rows for both, or two disjoint sets of evenly
/// spaced originals (bench::default_query_rows).
struct chosen_queries {
  std::vector<float> metric, ranking;  // (rows, dim) row-major each
  index_t dim = 1;
  index_t metric_rows() const { return static_cast<index_t>(metric.size()) / dim; }
  index_t ranking_rows() const { return static_cast<index_t>(ranking.size()) / dim; }
};

chosen_queries choose_queries(const token_input& in, const std::vector<float>& given, index_t given_rows) {
  if (given_rows > 0) return {given, given, in.dim};
  const auto x = make_view(in.tokens.data(), in.grid.tokens(), in.dim);
  return {bench::default_queries(x, bench::query_set::metric), bench::default_queries(x, bench::query_set::ranking),
          in.dim};
}

/// Binds method `m` at `budget` to the input: its pipeline, or its own runner. Returns why it does
/// not run, empty when `out` holds the reducer and `spec` what it applies.
std::string make_method(const bench_method& m, double budget, const token_input& in, const side_inputs& side,
                        element compute, const method_context& ctx, std::unique_ptr<reducer>& out,
                        std::string& spec) {
  std::string why;
  if (m.runner) return m.runner(budget, in, side, compute, ctx, out, spec);
  const std::string text = m.spec(budget, in.grid, ctx, why);
  if (text.empty()) return why;
  const spec_result parsed = parse_pipeline(text);
  if (!parsed.ok()) return fmt::format("internal: the spec '{}' does not parse: {}", text, parsed.error);
  spec = parsed.pipeline.spec();
  return make_reducer(parsed.pipeline, in, side, compute, out);
}

/// The fidelity of one reduction against its item (whose originals' attention is computed once).
/// `gain` divides the outputs first (the DCT's √(N/N'); 1 for every other method).
fidelity_figures measure(const bench::item_reference& item, const token_input& in, const reduction& r, double gain) {
  std::vector<float> unscaled;
  const float* tokens = r.tokens.data();
  if (gain != 1.0) {
    unscaled.resize(r.tokens.size());
    std::transform(r.tokens.begin(), r.tokens.end(), unscaled.begin(),
                   [gain](float v) { return static_cast<float>(static_cast<double>(v) / gain); });
    tokens = unscaled.data();
  }
  const bench::reduced_tokens y{make_view(tokens, r.kept, in.dim), make_view(r.assign.data(), in.grid.tokens()),
                                make_view(r.sizes.data(), r.kept)};
  bench::fidelity_stats f;
  if (bench::token_fidelity(item, y, f) != status::ok) {
    const double nan = bench::detail::nan;
    return {nan, nan, nan, nan, nan};
  }
  return {f.reconstruction.relative_l2, f.reconstruction.mean_cosine, f.attention_error, f.coverage.max_distance,
          f.coverage.relative};
}

/// The methods to run: those named (every one when none is), and the baselines always.
std::string choose_methods(const std::vector<std::string>& names, std::vector<const bench_method*>& out) {
  for (const std::string& name : names)
    if (std::none_of(bench_methods().begin(), bench_methods().end(),
                     [&](const bench_method& m) { return name == m.name; })) {
      std::string known;
      for (const bench_method& m : bench_methods()) known += (known.empty() ? "" : ", ") + std::string(m.name);
      return fmt::format("--methods: unknown method '{}' (known: {})", name, known);
    }
  for (const bench_method& m : bench_methods())
    if (names.empty() || std::string(m.family) == "baseline" ||
        std::find(names.begin(), names.end(), m.name) != names.end())
      out.push_back(&m);
  return {};
}

/// One method at one budget on one input: binds, times and measures it into `row`; a note in
/// the row when it does not run.
void run_method(const bench_method& m, double budget, const token_input& in, const side_inputs& side, element compute,
                const method_context& ctx, const bench::item_reference& reference, const bench_options& opt,
                bench_item& item, bench_row& row) {
  std::unique_ptr<reducer> r;
  if (std::string why = make_method(m, budget, in, side, compute, ctx, r, row.spec); !why.empty()) {
    row.note = why;
    row.spec.clear();
    return;
  }
  if (item.memcpy_us == 0)
    item.memcpy_us =
        time_memcpy(r->input_data(), r->input_bytes(), opt.warmup, opt.repetitions, opt.max_time).median_us;
  status s = status::ok;
  row.time = time_calls([&] { return (s = r->apply()) == status::ok; }, opt.warmup, opt.repetitions, opt.max_time);
  if (s != status::ok) {
    row.note = fmt::format("apply failed: {}", to_string(s));
    row.spec.clear();
    return;
  }
  reduction out;
  r->collect(out);
  row.kept = out.kept;
  if (out.kept == 0) {  // no output to measure: its figures would be NaN
    row.note = "kept no token";
    return;
  }
  row.memcpy_us = item.memcpy_us;
  const double gain = m.unit_gain ? std::sqrt(static_cast<double>(in.grid.tokens()) / static_cast<double>(out.kept))
                                  : 1.0;
  row.fidelity = measure(reference, in, out, gain);
}

}  // namespace

int bench_command(const bench_options& opt) {
  for (double b : opt.budgets)
    if (!(b > 0 && b < 1) || ratio_text(b).empty())
      return fail(fmt::format("--budgets: {} is not a fraction in (0, 1) with at most six decimals", b));
  std::vector<double> budgets;  // each once, in the order given
  for (double b : opt.budgets)
    if (std::find(budgets.begin(), budgets.end(), b) == budgets.end()) budgets.push_back(b);
  if (opt.repetitions < 1 || opt.warmup < 0 || !(opt.max_time >= 0))
    return fail("--repetitions must be >= 1, --warmup and --max-time >= 0");
  element fixed = element::f32;
  if (opt.dtype != "auto" && !parse_element(opt.dtype, fixed))
    return fail(fmt::format("--dtype '{}': expected auto, f32, f16 or bf16", opt.dtype));
  std::optional<token_grid> grid;
  if (!opt.grid.empty()) {
    token_grid g;
    if (std::string e = parse_grid(opt.grid, g); !e.empty()) return fail(e);
    grid = g;
  }
  namespace fs = std::filesystem;
  if (std::error_code ec; !opt.scores.empty() && !fs::is_directory(opt.scores, ec))
    return fail(fmt::format("--scores {}: not a directory (it holds <item>.npy per input)", opt.scores));

  std::vector<const bench_method*> methods;
  if (std::string e = choose_methods(opt.methods, methods); !e.empty()) return fail(e);

  const std::string data = opt.data.empty() ? std::string(TOKRED_SAMPLE_DIR) : opt.data;
  std::vector<io::tensor_spec> specs;
  if (std::string e = find_inputs(data, specs); !e.empty()) return fail(e);
  std::vector<token_input> inputs(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i)
    if (std::string e = load_tokens(specs[i], grid, inputs[i]); !e.empty()) return fail(e);
  if (std::string e = unique_names(inputs); !e.empty()) return fail(e);
  std::vector<float> given_query;
  index_t given_rows = 0;
  if (!opt.query.empty()) {
    if (std::string e = load_query(opt.query, inputs.front().dim, given_query, given_rows); !e.empty())
      return fail(e);
    for (const token_input& in : inputs)
      if (in.dim != inputs.front().dim)
        return fail(fmt::format("--query: the inputs differ in width ({} and {})", inputs.front().dim, in.dim));
  }
  if (std::string e = prepare_output_dir(opt.out, report_files); !e.empty()) return fail(e);

  bench_report report;
  report.tokred_version = fmt::format("{}.{}.{}", TOKRED_VERSION_MAJOR, TOKRED_VERSION_MINOR, TOKRED_VERSION_PATCH);
  report.compute_dtype = opt.dtype;
  report.budgets = budgets;
  report.repetitions = opt.repetitions;
  report.warmup = opt.warmup;
  report.max_time = opt.max_time;
  report.seed = opt.seed;
  std::size_t runs = 0;
  for (const bench_method* m : methods) {
    report.methods.push_back({m->name, m->family, m->paper, m->ranks_by_score, m->own_count, m->unit_gain});
    runs += budgets_of(m->own_count, budgets).size();
  }

  const std::size_t schemes = opt.kv ? std::size(bench::kv_codecs) : 0;
  std::size_t scored = 0;  // inputs with a --scores file
  progress bar(inputs.size() * (runs + schemes), !opt.quiet);
  for (const token_input& in : inputs) {
    const element compute = opt.dtype == "auto" ? in.stored : fixed;
    bench_item item;
    item.name = in.name;
    item.spec = in.spec;
    item.dtype = name_of(in.stored);
    item.grid = in.grid;
    item.dim = in.dim;
    side_inputs side;
    // Every score-ranked method reads these scores as the caller's (score=input), made here
    // once, outside every method's timing: the caller's file, or the token norms (timed apart).
    std::vector<float> scores;
    const std::string score_file = opt.scores.empty() ? "" : opt.scores + "/" + in.name + ".npy";
    const bool caller_scores = !score_file.empty() && fs::exists(score_file);
    if (caller_scores) {
      if (std::string e = load_scores(score_file, in.grid.tokens(), scores); !e.empty()) return fail(e);
      item.scorer = fmt::format("`{}`", score_file);
      ++scored;
    } else {
      norm_scorer norms(in);
      status s = status::ok;
      item.score_us = time_calls([&] { return (s = norms()) == status::ok; }, opt.warmup, opt.repetitions,
                                 opt.max_time).median_us;
      if (s != status::ok) return fail(fmt::format("{}: the token norms failed: {}", in.name, to_string(s)));
      scores = norms.scores();
      item.scorer = "token L2 norm";
    }
    const method_context ctx{caller_scores, opt.seed};
    side.scores = &scores;
    const chosen_queries queries = choose_queries(in, given_query, given_rows);
    side.query = &queries.ranking;
    side.query_rows = queries.ranking_rows();
    item.query_rows = queries.metric_rows();
    item.ranking_query_rows = queries.ranking_rows();
    bench::item_reference reference;
    if (const status s = reference.prepare(make_view(in.tokens.data(), in.grid.tokens(), in.dim),
                                           make_view(queries.metric.data(), queries.metric_rows(), in.dim));
        s != status::ok)
      return fail(fmt::format("{}: the fidelity reference cannot be built: {}", in.name, to_string(s)));
    item.queries = given_rows               ? fmt::format("`{}` ({} rows)", opt.query, given_rows)
                   : in.grid.tokens() == 1 ? std::string("the one input token (the ranking's too)")
                                            : fmt::format("{} evenly spaced input tokens (ranking: {} others)",
                                                          queries.metric_rows(), queries.ranking_rows());

    for (const bench_method* m : methods)
      for (double budget : budgets_of(m->own_count, budgets)) {
        bar.step(fmt::format("{} on {} at {}", m->name, in.name, m->own_count ? "its own count" : ratio_text(budget)));
        bench_row row;
        row.item = in.name;
        row.method = m->name;
        row.family = m->family;
        row.budget = budget;
        row.frames = in.grid.frames;
        row.tokens_in = in.grid.tokens();
        try {
          run_method(*m, budget, in, side, compute, ctx, reference, opt, item, row);
        } catch (const std::bad_alloc&) {  // one method too large for this machine: the others still run
          row.spec.clear();
          row.note = "out of memory";
          row.kept = 0;
          row.time = {};
          row.fidelity = {};
        }
        report.rows.push_back(row);
      }
    for (std::size_t c = 0; c < schemes; ++c) {
      const bench::kv_codec& codec = bench::kv_codecs[c];
      bar.step(fmt::format("{} on {}", codec.name, in.name));
      try {
        report.kv.push_back(measure_kv(codec, in, queries.metric, queries.metric_rows(), opt.warmup, opt.repetitions, opt.max_time));
      } catch (const std::bad_alloc&) {
        kv_row row;
        row.item = in.name;
        row.scheme = codec.name;
        row.note = "out of memory";
        report.kv.push_back(row);
      }
    }
    report.items.push_back(item);
  }
  if (!opt.scores.empty() && scored == 0) {
    std::vector<std::string> names;
    for (const bench_item& it : report.items) names.push_back(it.name + ".npy");
    fmt::print(stderr, "tokred: warning: --scores {}: no file matched an input (expected {}); every input is "
                       "ranked by its token L2 norm\n",
               opt.scores, fmt::join(names, ", "));
  }

  // The plotting script reads results.csv and kv.csv; the Markdown shows what it drew.
  for (const auto& [name, text] : {std::pair<const char*, std::string>{"results.csv", report_csv(report)},
                                   {"kv.csv", kv_csv(report)}})
    if (std::string e = write_text(opt.out + "/" + name, text); !e.empty()) return fail(e);
  draw_plots(opt, opt.out, report);
  for (const auto& [name, text] : {std::pair<const char*, std::string>{"report.md", report_markdown(report)},
                                   {"results.json", json_text(report_json(report))}})
    if (std::string e = write_text(opt.out + "/" + name, text); !e.empty()) return fail(e);
  if (!opt.quiet) fmt::print("{}\n", summary_table(report));
  fmt::print("report: {}/report.md ({} inputs, {} methods, {} budgets)\n", opt.out, report.items.size(),
             report.methods.size(), report.budgets.size());
  return 0;
}

}  // namespace tokred::cli
