// tools/tokred/report.hpp — what `tokred bench` measured, and the report made of it: Markdown,
// JSON, CSV and the summary printed on the terminal.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <tokred/core/grid.hpp>

#include "tokred/timing.hpp"

namespace tokred::cli {

/// One input of the bench.
struct bench_item {
  std::string name;
  std::string spec;     ///< the file (and member) it was read from
  std::string dtype;    ///< as stored
  token_grid grid;
  index_t dim = 0;
  std::string scorer;   ///< what score-ranked methods read: "`<file>`" (--scores) or "token L2 norm"
  std::string queries;  ///< the attention metric's queries, and those the query-ranked methods rank with
  index_t query_rows = 0;          ///< the metric's
  index_t ranking_query_rows = 0;  ///< the query-ranked methods'
  double memcpy_us = 0;  ///< median memcpy of the token rows (the compute type's bytes)
  double score_us = 0;   ///< median time of the token norms, timed apart from every method (0: the caller's scores)
};

/// How well the reduced tokens stand for the originals (see bench/fidelity.hpp).
struct fidelity_figures {
  double rel_l2 = 0;        ///< reconstruction: ||X - X^||_F / ||X||_F
  double mean_cos = 0;      ///< reconstruction: mean cos(x_i, x^_i)
  double attention = 0;     ///< relative error of softmax(Q K^T / sqrt(D)) V
  double coverage = 0;      ///< max over originals of the distance to the nearest output
  double coverage_rel = 0;  ///< the same over the mean token norm
};

/// One method at one budget on one item.
struct bench_row {
  std::string item, method, family;
  double budget = 0;  ///< 0 for a method that decides its own count
  std::string spec;  ///< canonical, every parameter after defaults; "" when it did not run
  std::string note;  ///< why it did not run; "" when it ran
  index_t frames = 1;  ///< T of the item: images (1) and videos are summarized apart
  index_t tokens_in = 0, kept = 0;
  timing time;
  double memcpy_us = 0;
  fidelity_figures fidelity;
  bool ran() const { return note.empty(); }
  double kept_fraction() const { return tokens_in ? static_cast<double>(kept) / static_cast<double>(tokens_in) : 0; }
  double memcpy_multiple() const { return memcpy_us > 0 ? time.median_us / memcpy_us : 0; }
};

/// One KV-cache quantization scheme on one item (its tokens as keys and values).
struct kv_row {
  std::string item, scheme;
  double bits_per_value = 0;
  timing time;  ///< quantize + dequantize of keys and values
  double memcpy_us = 0;
  double mse_keys = 0, mse_values = 0, attention_kl = 0;
  std::string note;
};

struct method_entry {
  std::string name, family, paper;
  bool ranks_by_score = false;
  bool own_count = false;  ///< decides its count from the data: one row per item, budget 0
  bool unit_gain = false;  ///< its outputs are measured divided by the DCT's √(N/N') gain
};

struct bench_report {
  std::string tokred_version;
  std::string compute_dtype;  ///< "auto" or a fixed type
  std::vector<double> budgets;
  int repetitions = 0, warmup = 0;
  double max_time = 0;  ///< seconds of timed runs per measurement (0: unbounded)
  std::uint64_t seed = 0;
  std::vector<method_entry> methods;
  std::vector<bench_item> items;
  std::vector<bench_row> rows;
  std::vector<kv_row> kv;
  std::vector<std::string> plots;  ///< files drawn; empty when none
  std::string plot_note;           ///< why there are no plots
};

/// The budgets a method runs at: each of the bench's, or only 0 ("its own count").
inline std::vector<double> budgets_of(bool own_count, const std::vector<double>& budgets) {
  return own_count ? std::vector<double>{0.0} : budgets;
}

std::string report_markdown(const bench_report& r);
nlohmann::ordered_json report_json(const bench_report& r);
std::string report_csv(const bench_report& r);
std::string kv_csv(const bench_report& r);
/// The terminal summary: per method and budget, the means over the images and over the videos.
std::string summary_table(const bench_report& r);

}  // namespace tokred::cli
