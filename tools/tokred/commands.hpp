// tools/tokred/commands.hpp — the program's subcommands and their options. Each returns the
// process exit code: 0 on success, 1 when the work failed (with a one-line error on stderr), 2
// for a command line that does not parse.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tokred::cli {

struct list_options {
  bool json = false;  ///< the catalogue as JSON instead of text
};

struct run_options {
  std::string pipeline;   ///< the spec, e.g. "pool(2x2) | tome(r=0.25)"
  std::string input;      ///< PATH, PATH.npz:NAME or PATH.safetensors:NAME
  std::string scores;     ///< optional: one score per token
  std::string query;      ///< optional: (M, D) query rows
  std::string grid;       ///< optional: T,H,W
  std::string out;        ///< the output directory
  std::string dtype = "auto";  ///< compute type: auto (the input's), f32, f16 or bf16
  int repetitions = 5;    ///< timed applies after one warm-up; meta.json gets the median
};

struct bench_options {
  std::string data;                    ///< a directory of inputs, or "" for the bundled sample
  std::vector<std::string> methods;    ///< empty: every method
  std::vector<double> budgets{0.5, 0.25, 0.1, 0.05};
  std::string scores;                  ///< optional directory: <item>.npy scores per input
  std::string query;                   ///< optional: (M, D) query rows for every input
  std::string grid;                    ///< optional: T,H,W of every input (as run's --grid)
  std::string out = "tokred-report";
  std::string dtype = "auto";
  std::string python;                  ///< the interpreter drawing the plots; "" = the configured one
  int repetitions = 15;                ///< timed runs per measurement, after warm-up
  int warmup = 2;
  double max_time = 0.5;               ///< seconds of timed runs per measurement (at least 3 runs)
  std::uint64_t seed = 0;              ///< the random baseline's seed
  bool quiet = false;                  ///< no summary table on stdout
  bool no_plots = false;
  bool kv = true;                      ///< also the KV-cache quantization table
};

int list_command(const list_options& opt);
int run_command(const run_options& opt);
int bench_command(const bench_options& opt);

/// Prints "tokred: <message>" on stderr and returns 1.
int fail(const std::string& message);

/// JSON text for a file: names from the file system need not be UTF-8, so invalid bytes are
/// written as U+FFFD instead of throwing.
template <class Json>
std::string json_text(const Json& j) {
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace tokred::cli
