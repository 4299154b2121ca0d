// tools/tokred/main.cpp — the `tokred` program: list the stages, run a pipeline on features,
// benchmark every method on the same inputs.
//
//   tokred list [--json]
//   tokred run --pipeline SPEC --input X.npy [--scores S.npy] [--query Q.npy] [--grid T,H,W] --out DIR
//   tokred bench [--data DIR] [--methods a,b] [--budgets 0.5,0.25,0.1,0.05] [--grid T,H,W] [--out DIR]
#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <tokred/core/config.hpp>

#include "tokred/commands.hpp"

namespace tokred::cli {

int fail(const std::string& message) {
  fmt::print(stderr, "tokred: {}\n", message);
  return 1;
}

}  // namespace tokred::cli

int main(int argc, char** argv) {
  using namespace tokred::cli;
  CLI::App app{"tokred: visual-token reduction for vision-language models, on real features", "tokred"};
  app.set_version_flag("--version", fmt::format("tokred {}.{}.{}", TOKRED_VERSION_MAJOR, TOKRED_VERSION_MINOR,
                                                TOKRED_VERSION_PATCH));
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();  // --help shows every default

  list_options list;
  CLI::App* list_cmd = app.add_subcommand("list", "every stage a pipeline spec can name, with its parameters");
  list_cmd->add_flag("--json", list.json, "the catalogue as JSON");

  run_options run;
  CLI::App* run_cmd = app.add_subcommand("run", "apply a pipeline to one input and write its outputs as .npy");
  run_cmd->add_option("--pipeline", run.pipeline, "the spec, e.g. 'pool(2x2) | tome(r=0.25)'")->required();
  run_cmd->add_option("--input", run.input, "tokens: X.npy, X.npz:NAME or X.safetensors:NAME")->required();
  run_cmd->add_option("--scores", run.scores, "one score per token (e.g. [CLS] attention)");
  run_cmd->add_option("--query", run.query, "query rows (M, D), e.g. the prompt's embeddings");
  run_cmd->add_option("--grid", run.grid, "T,H,W of the tokens when the shape does not say");
  run_cmd->add_option("--out", run.out, "output directory (new, empty, or a previous run's)")->required();
  run_cmd->add_option("--dtype", run.dtype, "compute type: auto (the input's), f32, f16 or bf16");
  run_cmd->add_option("--repeat", run.repetitions, "timed runs after one warm-up (median in meta.json)");

  bench_options bench;
  CLI::App* bench_cmd =
      app.add_subcommand("bench", "compare every method on the same inputs: speed, overhead, fidelity");
  bench_cmd->add_option("--data", bench.data, "a directory of .npy/.npz/.safetensors inputs (default: the bundled sample)");
  bench_cmd->add_option("--methods", bench.methods, "methods to run (default: all; see the report)")->delimiter(',');
  bench_cmd->add_option("--budgets", bench.budgets, "fractions of the tokens kept")->delimiter(',');
  bench_cmd->add_option("--scores", bench.scores, "a directory of <item>.npy scores (default: token L2 norm)");
  bench_cmd->add_option("--query", bench.query, "query rows (M, D) for every input (default: original tokens)");
  bench_cmd->add_option("--grid", bench.grid, "T,H,W of every input when the shape does not say (as run's --grid)");
  bench_cmd->add_option("--out", bench.out, "report directory");
  bench_cmd->add_option("--dtype", bench.dtype, "compute type: auto (the input's), f32, f16 or bf16");
  bench_cmd->add_option("--repetitions", bench.repetitions, "timed runs per measurement");
  bench_cmd->add_option("--warmup", bench.warmup, "untimed runs before them");
  bench_cmd->add_option("--max-time", bench.max_time, "seconds of timed runs per measurement, at least 3 runs (0: no bound)");
  bench_cmd->add_option("--seed", bench.seed, "seed of the random baseline");
  bench_cmd->add_option("--python", bench.python, "Python with matplotlib for the plots");
  bench_cmd->add_flag("--no-plots", bench.no_plots, "write no plots");
  bench_cmd->add_flag("!--no-kv", bench.kv, "skip the KV-cache quantization table");
  bench_cmd->add_flag("--quiet", bench.quiet, "print only where the report is");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    fmt::print(stderr, "tokred: {}\n", e.what());
    return 2;
  }
  // Every error a command expects is a message and exit code 1; anything else that escapes (out
  // of memory, a library exception) is reported the same way instead of aborting.
  try {
    if (*list_cmd) return list_command(list);
    if (*run_cmd) return run_command(run);
    return bench_command(bench);
  } catch (const std::bad_alloc&) {
    return fail("out of memory");
  } catch (const std::exception& e) {
    return fail(fmt::format("internal error: {}", e.what()));
  }
}
