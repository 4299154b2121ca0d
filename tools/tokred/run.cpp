// tools/tokred/run.cpp — `tokred run`: one pipeline applied to one input; the outputs written as
// .npy files and meta.json into a directory.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <tokred/core/config.hpp>
#include <tokred/policy/pipeline_spec.hpp>

#include "io/npy.hpp"
#include "tokred/commands.hpp"
#include "tokred/features.hpp"
#include "tokred/output_dir.hpp"
#include "tokred/reduce.hpp"
#include "tokred/timing.hpp"

namespace tokred::cli {

namespace {

const std::vector<std::string> run_files = {"tokens.npy", "source.npy", "positions.npy",
                                            "sizes.npy",  "assign.npy", "meta.json"};

/// The outputs as the .npy files of `tokred run` (see README: float32 tokens and sizes, int64
/// indices and positions).
std::string write_outputs(const std::string& dir, const reduction& r, index_t dim, index_t tokens) {
  const auto k = static_cast<std::int64_t>(r.kept);
  std::vector<std::int64_t> positions(r.positions.begin(), r.positions.end());
  const std::string d = dir + "/";
  for (std::string e : {io::write_npy(d + "tokens.npy", "<f4", {k, dim}, r.tokens.data(), r.tokens.size() * 4),
                        io::write_npy(d + "source.npy", "<i8", {k}, r.source.data(), r.source.size() * 8),
                        io::write_npy(d + "positions.npy", "<i8", {k, 3}, positions.data(), positions.size() * 8),
                        io::write_npy(d + "sizes.npy", "<f4", {k}, r.sizes.data(), r.sizes.size() * 4),
                        io::write_npy(d + "assign.npy", "<i8", {tokens}, r.assign.data(), r.assign.size() * 8)})
    if (!e.empty()) return e;
  return {};
}

/// One line: the parser's message and where in the spec it points.
std::string describe_spec_error(const std::string& spec, const spec_result& r) {
  return fmt::format("--pipeline '{}': {} (at offset {})", spec, r.error, r.offset);
}

nlohmann::ordered_json grid_json(const token_grid& g) { return {g.frames, g.height, g.width}; }

}  // namespace

int run_command(const run_options& opt) {
  const spec_result parsed = parse_pipeline(opt.pipeline);
  if (!parsed.ok()) return fail(describe_spec_error(opt.pipeline, parsed));
  std::optional<token_grid> grid;
  if (!opt.grid.empty()) {
    token_grid g;
    if (std::string e = parse_grid(opt.grid, g); !e.empty()) return fail(e);
    grid = g;
  }
  if (opt.repetitions < 1) return fail("--repeat must be at least 1");
  token_input in;
  if (std::string e = load_tokens(opt.input, grid, in); !e.empty()) return fail(e);
  element compute = in.stored;
  if (opt.dtype != "auto" && !parse_element(opt.dtype, compute))
    return fail(fmt::format("--dtype '{}': expected auto, f32, f16 or bf16", opt.dtype));

  side_inputs side;
  std::vector<float> scores, query;
  if (!opt.scores.empty()) {
    if (std::string e = load_scores(opt.scores, in.grid.tokens(), scores); !e.empty()) return fail(e);
    side.scores = &scores;
  }
  if (!opt.query.empty()) {
    if (std::string e = load_query(opt.query, in.dim, query, side.query_rows); !e.empty()) return fail(e);
    side.query = &query;
  }

  std::unique_ptr<reducer> r;
  if (std::string e = make_reducer(parsed.pipeline, in, side, compute, r); !e.empty()) return fail(e);
  if (std::string e = prepare_output_dir(opt.out, run_files); !e.empty()) return fail(e);

  status s = status::ok;
  const timing t = time_calls([&] { return (s = r->apply()) == status::ok; }, 1, opt.repetitions);
  if (s != status::ok) return fail(fmt::format("the pipeline failed: {}", to_string(s)));
  reduction out;
  r->collect(out);
  if (std::string e = write_outputs(opt.out, out, in.dim, in.grid.tokens()); !e.empty()) return fail(e);

  const nlohmann::ordered_json meta = {
      {"tokred_version", fmt::format("{}.{}.{}", TOKRED_VERSION_MAJOR, TOKRED_VERSION_MINOR, TOKRED_VERSION_PATCH)},
      {"pipeline", parsed.pipeline.spec()},
      {"stages", parsed.pipeline.canonical},
      {"spec", opt.pipeline},
      {"input", {{"path", opt.input}, {"shape", in.shape}, {"dtype", name_of(in.stored)}}},
      {"scores", opt.scores.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(opt.scores)},
      {"query", opt.query.empty() ? nlohmann::ordered_json(nullptr)
                                  : nlohmann::ordered_json{{"path", opt.query}, {"rows", side.query_rows}}},
      {"compute_dtype", name_of(compute)},
      {"grid", grid_json(in.grid)},
      {"dim", in.dim},
      {"tokens_in", in.grid.tokens()},
      {"tokens_out", out.kept},
      {"output_grid", grid_json(out.grid)},
      {"time_us", {{"median", t.median_us}, {"p90", t.p90_us}, {"repetitions", t.repetitions}, {"threads", 1}}},
      {"files", run_files}};
  if (std::string e = write_text(opt.out + "/meta.json", json_text(meta)); !e.empty()) return fail(e);
  fmt::print("{} -> {} tokens ({:.1f} %) in {:.1f} us (median of {}): {}\n", in.grid.tokens(), out.kept,
             100.0 * static_cast<double>(out.kept) / static_cast<double>(in.grid.tokens()), t.median_us,
             t.repetitions, opt.out);
  return 0;
}

}  // namespace tokred::cli
