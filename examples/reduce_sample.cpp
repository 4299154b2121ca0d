// reduce_sample.cpp — reduce real encoder features with topk and the uniform and random baselines.
//
//   reduce_sample [--sample FILE.npy] [--keep RATIO] [--out DIR]
//
// Loads a .npy of fp16 features shaped [T, H, W, D] (by default the bundled InceptionV3 `mixed5`
// features of the astronaut image, see examples/data/README.md), scores every token, keeps the
// same number of tokens with each policy and prints what was kept, where, and how long it took.
// With --out it also writes each policy's kept tokens, source indices and positions as .npy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "io/npy.hpp"

#ifndef TOKRED_SAMPLE_DIR
#define TOKRED_SAMPLE_DIR "examples/data"
#endif

namespace {

struct options {
  std::string sample = std::string(TOKRED_SAMPLE_DIR) + "/astronaut_mixed5.npy";
  double keep = 0.25;   // fraction of tokens kept, rounded down as Python's int(n * r)
  std::string out_dir;  // empty: write nothing
};

/// Reads the command line into `opt`; returns -1 to go on, or the exit code to stop with.
int parse(int argc, char** argv, options& opt) {
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    const bool has_value = a + 1 < argc;
    if (arg == "--sample" && has_value) {
      opt.sample = argv[++a];
    } else if (arg == "--keep" && has_value) {
      opt.keep = std::strtod(argv[++a], nullptr);
    } else if (arg == "--out" && has_value) {
      opt.out_dir = argv[++a];
    } else {
      std::FILE* to = arg == "--help" || arg == "-h" ? stdout : stderr;
      std::fprintf(to, "usage: %s [--sample FILE.npy] [--keep RATIO] [--out DIR]\n"
                   "  --sample  fp16 features shaped [T, H, W, D] or [H, W, D]\n"
                   "            (default: %s)\n"
                   "  --keep    fraction of tokens to keep, in (0, 1] (default: 0.25)\n"
                   "  --out     write <policy>_tokens/_source/_positions.npy and scores.npy here\n",
                   argv[0], opt.sample.c_str());
      return to == stdout ? 0 : 2;
    }
  }
  return -1;
}

/// The features of one sample: fp16 rows on a (T, H, W) grid.
struct sample {
  std::vector<tokred::f16> rows;  // (tokens, dim)
  tokred::token_grid grid;
  tokred::index_t dim = 0;
};

/// Reads `path` into `out`; returns an empty string or what went wrong.
std::string load_sample(const std::string& path, sample& out) {
  tokred::io::npy_array a;
  if (std::string error = tokred::io::read_npy(path, a); !error.empty()) return error;
  if (a.dtype != "<f2") return path + ": expected fp16 ('<f2') features, found '" + a.dtype + "'";
  if (a.shape.size() == 3) a.shape.insert(a.shape.begin(), 1);  // one frame
  if (a.shape.size() != 4) return path + ": expected a shape [T, H, W, D] or [H, W, D]";
  out.grid = tokred::token_grid{a.shape[0], a.shape[1], a.shape[2]};
  out.dim = a.shape[3];
  out.rows = a.as<tokred::f16>();
  return {};
}

/// The L2 norm of every token, accumulated in fp32.
///
/// A stand-in score, computed here until tokred's own score policies exist: a real deployment
/// ranks by what its method prescribes ([CLS] attention, last-token attention, ...). The bundled
/// features come from a CNN, which has no attention to rank by.
std::vector<float> l2_norm_scores(tokred::view<const tokred::f16, 2> tokens) {  // (tokens, dim)
  std::vector<float> scores(static_cast<std::size_t>(tokens.extent(0)));       // (tokens,)
  for (tokred::index_t i = 0; i < tokens.extent(0); ++i) {
    float sum = 0.0f;
    for (tokred::index_t c = 0; c < tokens.extent(1); ++c) {
      const float x = tokred::to_float(tokens(i, c));
      sum += x * x;
    }
    scores[static_cast<std::size_t>(i)] = std::sqrt(sum);
  }
  return scores;
}

/// What one policy kept, and what it cost.
struct reduction {
  const char* name = "";
  tokred::index_t kept = 0;
  std::size_t workspace = 0;
  double median_us = 0.0;
  std::vector<tokred::f16> tokens;      // (kept, dim)
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
};

constexpr int timed_calls = 201;

/// Runs `policy` on `in` once for the result, then `timed_calls` more times for the timing.
template <class Policy>
tokred::status reduce_with(const Policy& policy, const tokred::selection_inputs<tokred::f16>& in,
                           tokred::index_t dim, reduction& r) {
  // example-begin size-and-run
  const tokred::problem prob{in.grid, dim};
  if (tokred::status s = tokred::can_implement(policy, prob); s != tokred::status::ok) return s;

  // The exact output count is known from the shapes alone: size every output before running.
  r.kept = tokred::retained_count(policy, prob);
  r.tokens.resize(static_cast<std::size_t>(r.kept * dim));
  r.source.resize(static_cast<std::size_t>(r.kept));
  r.positions.resize(static_cast<std::size_t>(r.kept * 3));
  const tokred::selection_outputs<tokred::f16> out{
      tokred::make_view(r.tokens.data(), r.kept, dim),    // (kept, dim)
      tokred::make_view(r.source.data(), r.kept),         // (kept,)
      tokred::make_view(r.positions.data(), r.kept, 3)};  // (kept, 3)

  // Scratch memory is the caller's: ask how much, hand it over, apply never allocates.
  const tokred::cpu exec{};
  r.workspace = tokred::workspace_bytes(exec, policy, prob);
  std::vector<std::byte> scratch(r.workspace);
  const tokred::workspace ws{scratch.data(), scratch.size()};

  if (tokred::status s = tokred::apply(exec, policy, in, out, ws); s != tokred::status::ok)
    return s;
  // example-end size-and-run

  std::vector<double> us(timed_calls);
  for (double& t : us) {
    const auto start = std::chrono::steady_clock::now();
    const tokred::status s = tokred::apply(exec, policy, in, out, ws);
    t = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (s != tokred::status::ok) return s;
  }
  std::nth_element(us.begin(), us.begin() + timed_calls / 2, us.end());
  r.median_us = us[timed_calls / 2];
  return tokred::status::ok;
}

/// True when every kept row is bit-identical to its source row and every position is the grid
/// position of its source.
bool consistent(const reduction& r, const sample& x) {
  for (tokred::index_t j = 0; j < r.kept; ++j) {
    const std::int64_t i = r.source[static_cast<std::size_t>(j)];
    if (i < 0 || i >= x.grid.tokens()) return false;
    if (std::memcmp(&r.tokens[static_cast<std::size_t>(j * x.dim)],
                    &x.rows[static_cast<std::size_t>(i * x.dim)],
                    static_cast<std::size_t>(x.dim) * sizeof(tokred::f16)) != 0)
      return false;
    const tokred::token_position p = x.grid.position(i);
    const std::int32_t* q = &r.positions[static_cast<std::size_t>(j * 3)];
    if (q[0] != p.t || q[1] != p.h || q[2] != p.w) return false;
  }
  return true;
}

/// Draws each frame's kept positions, one map per policy side by side: '#' kept, '.' dropped.
void print_maps(const std::vector<reduction>& rs, const tokred::token_grid& grid) {
  const int width = static_cast<int>(std::max<tokred::index_t>(grid.width, 13)) + 3;
  for (tokred::index_t t = 0; t < grid.frames; ++t) {
    std::printf("\nkept positions, frame t = %lld ('#' kept, '.' dropped):\n  ",
                static_cast<long long>(t));
    for (const reduction& r : rs) std::printf("%-*s", &r == &rs.back() ? 0 : width, r.name);
    std::printf("\n");
    for (tokred::index_t h = 0; h < grid.height; ++h) {
      std::printf("  ");
      for (const reduction& r : rs) {
        std::string line(static_cast<std::size_t>(grid.width), '.');
        for (tokred::index_t j = 0; j < r.kept; ++j) {
          const std::int32_t* p = &r.positions[static_cast<std::size_t>(j * 3)];
          if (p[0] == t && p[1] == h) line[static_cast<std::size_t>(p[2])] = '#';
        }
        std::printf("%-*s", &r == &rs.back() ? 0 : width, line.c_str());
      }
      std::printf("\n");
    }
  }
}

/// Writes scores and each policy's outputs to `dir`; returns an empty string or the error.
std::string write_outputs(const std::string& dir, const std::vector<reduction>& rs,
                          const std::vector<float>& scores, tokred::index_t dim) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return "cannot create " + dir + ": " + ec.message();
  if (std::string e = tokred::io::write_npy(dir + "/scores.npy", "<f4",
                                            {static_cast<std::int64_t>(scores.size())},
                                            scores.data(), scores.size() * sizeof(float));
      !e.empty())
    return e;
  for (const reduction& r : rs) {
    const std::string stem = dir + "/" + r.name;
    const std::int64_t k = r.kept;
    std::string e = tokred::io::write_npy(stem + "_tokens.npy", "<f2", {k, dim}, r.tokens.data(),
                                          r.tokens.size() * sizeof(tokred::f16));
    if (e.empty())
      e = tokred::io::write_npy(stem + "_source.npy", "<i8", {k}, r.source.data(),
                                r.source.size() * sizeof(std::int64_t));
    if (e.empty())
      e = tokred::io::write_npy(stem + "_positions.npy", "<i4", {k, 3}, r.positions.data(),
                                r.positions.size() * sizeof(std::int32_t));
    if (!e.empty()) return e;
    std::printf("wrote %s_{tokens,source,positions}.npy\n", stem.c_str());
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  if (int code = parse(argc, argv, opt); code >= 0) return code;

  sample x;
  if (std::string error = load_sample(opt.sample, x); !error.empty()) {
    std::fprintf(stderr, "reduce_sample: %s\n", error.c_str());
    return 1;
  }
  const tokred::index_t n = x.grid.tokens();

  // example-begin sample-view
  // The .npy holds [T, H, W, D] in C order: flattened, that is N = T·H·W rows of D values in
  // frame-major, row-major order, exactly the token order a tokred::token_grid describes.
  const tokred::view<const tokred::f16, 2> tokens = tokred::make_view(x.rows.data(), n, x.dim);  // (tokens, dim)
  // example-end sample-view

  auto start = std::chrono::steady_clock::now();
  const std::vector<float> scores = l2_norm_scores(tokens);  // (tokens,)
  const double score_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
  const auto [lo, hi] = std::minmax_element(scores.begin(), scores.end());

  const tokred::selection_inputs<tokred::f16> in{x.grid, tokred::make_view(scores.data(), n), tokens};

  // One budget for all three: the same number of tokens survives each policy.
  const tokred::keep_budget budget = tokred::keep_budget::ratio(opt.keep, tokred::rounding::floor);
  std::vector<reduction> rs(3);
  rs[0].name = "topk";
  rs[1].name = "uniform";
  rs[2].name = "random_subset";
  const tokred::status results[3] = {
      reduce_with(tokred::topk{budget}, in, x.dim, rs[0]),
      reduce_with(tokred::uniform{budget}, in, x.dim, rs[1]),
      reduce_with(tokred::random_subset{budget, /*seed=*/2026}, in, x.dim, rs[2])};
  for (int m = 0; m < 3; ++m) {
    if (results[m] != tokred::status::ok) {
      std::fprintf(stderr, "reduce_sample: %s failed: %s\n", rs[m].name,
                   tokred::to_string(results[m]));
      return 1;
    }
  }

  std::printf("tokred %d.%d.%d: reduce_sample\n", TOKRED_VERSION_MAJOR, TOKRED_VERSION_MINOR,
              TOKRED_VERSION_PATCH);
  std::printf("  sample   %s\n", opt.sample.c_str());
  std::printf("  input    %lld tokens of %lld fp16 values on a (T, H, W) = (%lld, %lld, %lld) grid\n",
              static_cast<long long>(n), static_cast<long long>(x.dim),
              static_cast<long long>(x.grid.frames), static_cast<long long>(x.grid.height),
              static_cast<long long>(x.grid.width));
  std::printf("  scores   L2 norm of each token (fp32): min %.2f, max %.2f, %.1f us for all %lld\n",
              static_cast<double>(*lo), static_cast<double>(*hi), score_us, static_cast<long long>(n));
  std::printf("  budget   keep %g of %lld tokens, rounded down (Python int(n * r)) -> %lld tokens\n",
              opt.keep, static_cast<long long>(n), static_cast<long long>(rs[0].kept));
  std::printf("\n  %-14s %6s %11s %16s  %s\n", "policy", "kept", "workspace", "apply, median",
              "rows and positions");
  for (const reduction& r : rs)
    std::printf("  %-14s %6lld %9zu B %13.1f us  %s\n", r.name, static_cast<long long>(r.kept),
                r.workspace, r.median_us, consistent(r, x) ? "match their sources" : "MISMATCH");
  std::printf("  (apply times are the median of %d calls on one thread)\n", timed_calls);

  print_maps(rs, x.grid);

  for (const reduction& r : rs)
    if (!consistent(r, x)) return 1;
  if (!opt.out_dir.empty()) {
    std::printf("\n");
    if (std::string error = write_outputs(opt.out_dir, rs, scores, x.dim); !error.empty()) {
      std::fprintf(stderr, "reduce_sample: %s\n", error.c_str());
      return 1;
    }
  }
  return 0;
}
