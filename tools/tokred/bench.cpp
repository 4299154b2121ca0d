// tools/tokred/bench.cpp — `tokred bench`: every method at every budget on every input, on the
// same tokens, scores and queries: latency against a memcpy of the input, and fidelity.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

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

/// The inputs in `dir`: every .npy, and every member of each .npz and .safetensors, by name.
std::string find_inputs(const std::string& dir, std::vector<std::string>& specs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return fmt::format("--data {}: not a directory", dir);
  std::vector<std::string> files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string ext = it->path().extension().string();
    if (it->is_regular_file() && (ext == ".npy" || ext == ".npz" || ext == ".safetensors"))
      files.push_back(it->path().string());
  }
  if (ec) return fmt::format("--data {}: {}", dir, ec.message());
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) {
    if (f.size() > 4 && f.compare(f.size() - 4, 4, ".npy") == 0) {
      specs.push_back(f);
      continue;
    }
    std::vector<std::string> names;
    const bool npz = f.compare(f.size() - 4, 4, ".npz") == 0;
    if (std::string e = npz ? io::list_npz(f, names) : io::list_safetensors(f, names); !e.empty()) return e;
    for (const std::string& n : names) specs.push_back(f + ":" + n);
  }
  if (specs.empty()) return fmt::format("--data {}: no .npy, .npz or .safetensors inputs", dir);
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

/// Writes the plotting script into `dir` and runs it; fills `plots` or `note`.
void draw_plots(const bench_options& opt, const std::string& dir, bench_report& report) {
  const std::string script = dir + "/plot_report.py";
  if (std::string e = write_text(script, plot_script); !e.empty()) {
    report.plot_note = e;
    return;
  }
  const std::string python = opt.python.empty() ? std::string(TOKRED_PYTHON) : opt.python;
  const std::string command =
      fmt::format("{} {} {} >/dev/null 2>&1", shell_quoted(python), shell_quoted(script), shell_quoted(dir));
  if (std::system(command.c_str()) == 0) {
    report.plots = {"fidelity.png", "latency.png"};
    return;
  }
  report.plot_note = fmt::format(
      "No plots: `{}` could not draw them (it needs matplotlib; Debian: python3-matplotlib). "
      "Draw them later with `python3 plot_report.py .` in this directory.",
      python);
}

/// The queries of the attention metric and of cdpruner: the caller's rows, or evenly spaced
/// originals (bench::default_queries).
void choose_queries(const token_input& in, const std::vector<float>& given, index_t given_rows,
                    std::vector<float>& queries, index_t& rows) {
  if (given_rows > 0) {
    queries = given;
    rows = given_rows;
    return;
  }
  queries = bench::default_queries(make_view(in.tokens.data(), in.grid.tokens(), in.dim));
  rows = static_cast<index_t>(queries.size() / static_cast<std::size_t>(in.dim));
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
fidelity_figures measure(const bench::item_reference& item, const token_input& in, const reduction& r) {
  const bench::reduced_tokens y{make_view(r.tokens.data(), r.kept, in.dim),
                                make_view(r.assign.data(), in.grid.tokens()), make_view(r.sizes.data(), r.kept)};
  bench::fidelity_stats f;
  if (bench::token_fidelity(item, y, f) != status::ok) {
    const double nan = bench::detail::nan;
    return {nan, nan, nan, nan, nan};
  }
  return {f.reconstruction.relative_l2, f.reconstruction.mean_cosine, f.attention_error, f.coverage.max_distance,
          f.coverage.relative};
}

}  // namespace

int bench_command(const bench_options& opt) {
  for (double b : opt.budgets)
    if (!(b > 0 && b < 1) || ratio_text(b).empty())
      return fail(fmt::format("--budgets: {} is not a fraction in (0, 1) with at most six decimals", b));
  if (opt.repetitions < 1 || opt.warmup < 0 || !(opt.max_time >= 0))
    return fail("--repetitions must be >= 1, --warmup and --max-time >= 0");
  element fixed = element::f32;
  if (opt.dtype != "auto" && !parse_element(opt.dtype, fixed))
    return fail(fmt::format("--dtype '{}': expected auto, f32, f16 or bf16", opt.dtype));

  std::vector<const bench_method*> methods;
  for (const bench_method& m : bench_methods())
    if (opt.methods.empty() || std::find(opt.methods.begin(), opt.methods.end(), m.name) != opt.methods.end())
      methods.push_back(&m);
  for (const std::string& name : opt.methods)
    if (std::none_of(bench_methods().begin(), bench_methods().end(),
                     [&](const bench_method& m) { return name == m.name; })) {
      std::string known;
      for (const bench_method& m : bench_methods()) known += (known.empty() ? "" : ", ") + std::string(m.name);
      return fail(fmt::format("--methods: unknown method '{}' (known: {})", name, known));
    }

  const std::string data = opt.data.empty() ? std::string(TOKRED_SAMPLE_DIR) : opt.data;
  std::vector<std::string> specs;
  if (std::string e = find_inputs(data, specs); !e.empty()) return fail(e);
  std::vector<token_input> inputs(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i)
    if (std::string e = load_tokens(specs[i], std::nullopt, inputs[i]); !e.empty()) return fail(e);
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
  report.budgets = opt.budgets;
  report.repetitions = opt.repetitions;
  report.warmup = opt.warmup;
  report.max_time = opt.max_time;
  report.seed = opt.seed;
  std::size_t runs = 0;
  for (const bench_method* m : methods) {
    report.methods.push_back({m->name, m->family, m->paper, m->ranks_by_score, m->own_count});
    runs += budgets_of(m->own_count, opt.budgets).size();
  }

  const std::size_t schemes = opt.kv ? std::size(bench::kv_codecs) : 0;
  progress bar(inputs.size() * (runs + schemes), !opt.quiet);
  for (const token_input& in : inputs) {
    const element compute = opt.dtype == "auto" ? in.stored : fixed;
    bench_item item;
    item.name = in.name;
    item.spec = in.spec;
    item.dtype = name_of(in.stored);
    item.grid = in.grid;
    item.dim = in.dim;
    item.scorer = "token L2 norm";
    side_inputs side;
    std::vector<float> scores, queries;
    const std::string score_file = opt.scores.empty() ? "" : opt.scores + "/" + in.name + ".npy";
    const bool caller_scores = !score_file.empty() && std::filesystem::exists(score_file);
    if (caller_scores) {
      if (std::string e = load_scores(score_file, in.grid.tokens(), scores); !e.empty()) return fail(e);
      item.scorer = fmt::format("`{}`", score_file);
    } else {
      scores = norm_scores(in);  // for stages that read the caller's scores
    }
    const method_context ctx{caller_scores, opt.seed};
    side.scores = &scores;
    choose_queries(in, given_query, given_rows, queries, side.query_rows);
    side.query = &queries;
    item.query_rows = side.query_rows;
    bench::item_reference reference;
    if (const status s = reference.prepare(make_view(in.tokens.data(), in.grid.tokens(), in.dim),
                                           make_view(queries.data(), side.query_rows, in.dim));
        s != status::ok)
      return fail(fmt::format("{}: the fidelity reference cannot be built: {}", in.name, to_string(s)));
    item.queries = given_rows ? fmt::format("`{}` ({} rows)", opt.query, given_rows)
                              : fmt::format("{} evenly spaced input tokens", side.query_rows);

    for (const bench_method* m : methods)
      for (double budget : budgets_of(m->own_count, opt.budgets)) {
        bar.step(fmt::format("{} on {} at {}", m->name, in.name, m->own_count ? "its own count" : ratio_text(budget)));
        bench_row row;
        row.item = in.name;
        row.method = m->name;
        row.family = m->family;
        row.budget = budget;
        row.frames = in.grid.frames;
        row.tokens_in = in.grid.tokens();
        std::unique_ptr<reducer> r;
        if (std::string why = make_method(*m, budget, in, side, compute, ctx, r, row.spec); !why.empty()) {
          row.note = why;
          row.spec.clear();
          report.rows.push_back(row);
          continue;
        }
        if (item.memcpy_us == 0) item.memcpy_us = time_memcpy(r->input_data(), r->input_bytes(), opt.warmup, opt.repetitions, opt.max_time).median_us;
        status s = status::ok;
        row.time = time_calls([&] { return (s = r->apply()) == status::ok; }, opt.warmup, opt.repetitions,
                              opt.max_time);
        if (s != status::ok) {
          row.note = fmt::format("apply failed: {}", to_string(s));
          row.spec.clear();
          report.rows.push_back(row);
          continue;
        }
        reduction out;
        r->collect(out);
        row.kept = out.kept;
        row.memcpy_us = item.memcpy_us;
        row.fidelity = measure(reference, in, out);
        report.rows.push_back(row);
      }
    for (std::size_t c = 0; c < schemes; ++c) {
      const bench::kv_codec& codec = bench::kv_codecs[c];
      bar.step(fmt::format("{} on {}", codec.name, in.name));
      report.kv.push_back(measure_kv(codec, in, queries, side.query_rows, opt.warmup, opt.repetitions, opt.max_time));
    }
    report.items.push_back(item);
  }

  // The plotting script reads results.csv and kv.csv; the Markdown shows what it drew.
  for (const auto& [name, text] : {std::pair<const char*, std::string>{"results.csv", report_csv(report)},
                                   {"kv.csv", kv_csv(report)}})
    if (std::string e = write_text(opt.out + "/" + name, text); !e.empty()) return fail(e);
  if (opt.no_plots)
    report.plot_note = "No plots (--no-plots).";
  else
    draw_plots(opt, opt.out, report);
  for (const auto& [name, text] : {std::pair<const char*, std::string>{"report.md", report_markdown(report)},
                                   {"results.json", report_json(report).dump(2) + "\n"}})
    if (std::string e = write_text(opt.out + "/" + name, text); !e.empty()) return fail(e);
  if (!opt.quiet) fmt::print("{}\n", summary_table(report));
  fmt::print("report: {}/report.md ({} inputs, {} methods, {} budgets)\n", opt.out, report.items.size(),
             report.methods.size(), report.budgets.size());
  return 0;
}

}  // namespace tokred::cli
