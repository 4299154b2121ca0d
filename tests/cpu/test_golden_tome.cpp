// tests/cpu/test_golden_tome.cpp — tome reproduces ToMe's original outputs (bipartite_soft_matching
// + merge_source + merge_wavg): the closure's unm_idx / src_idx / dst_idx of every step exactly,
// the final assign and sizes exactly, the merged rows within 1e-5. Chained cases (a `steps` list
// with more than one entry, files suffixed _step{s}) carry sizes and source between steps and use
// the current tokens as the metric, as the golden README describes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/tome.hpp>

#include "io/npy.hpp"
#include "reference/tome_ref.hpp"
#include "support/buffers.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using testing::json_int;
using testing::load_npy;

std::string params_text(const std::string& dir) {
  std::ifstream f(dir + "params.json");
  std::stringstream text;
  text << f.rdbuf();
  return text.str();
}

/// How many times `what` occurs in `text`.
std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++count;
  return count;
}

/// The current tokens of a chain and what they carry from the steps before.
struct chain_state {
  index_t n = 0, dim = 0;
  std::vector<float> tokens;            // (n, dim)
  std::vector<float> sizes;             // (n,) empty at step 0
  std::vector<std::int64_t> source;     // (n,) empty at step 0
  std::vector<std::int32_t> positions;  // (n, 3) empty at step 0
  std::vector<std::int64_t> assign;     // (N0,) slot of every original in the current tokens
};

/// One application of `p` on the current tokens (metric: `metric`, or the tokens when empty),
/// checked against the closure indices in `suffix` files; advances `state`.
void step(const std::string& dir, const std::string& suffix, const tome& p, const std::vector<float>& metric,
          index_t metric_dim, chain_state& state) {
  const index_t n = state.n, dim = state.dim;
  merge_inputs<float> in{};
  in.grid = sequence_grid(n);
  in.tokens = make_view<const float>(state.tokens.data(), n, dim);
  if (!metric.empty()) in.metric = make_view<const float>(metric.data(), n, metric_dim);
  if (!state.sizes.empty()) {
    in.sizes = make_view<const float>(state.sizes.data(), n);
    in.source = make_view<const std::int64_t>(state.source.data(), n);
    in.positions = make_view<const std::int32_t>(state.positions.data(), n, 3);
  }
  const index_t r = effective_r(p, n), a = a_tokens(n);

  // The matching, split over three shares, then tome on it over two.
  std::vector<float> similarity(static_cast<std::size_t>(a));
  std::vector<std::int64_t> partner(static_cast<std::size_t>(a));
  const tome_match matcher{p.protect};
  testing::host_workspace mws(workspace_bytes(cpu{0, 3}, matcher, problem{in.grid, dim}));
  for (int ith = 0; ith < 3; ++ith)
    REQUIRE(apply(cpu{ith, 3}, matcher, in,
                  match_outputs<>{make_view(similarity.data(), a), make_view(partner.data(), a)}, mws.get()) ==
            status::ok);
  in.similarity = make_view<const float>(similarity.data(), a);
  in.partner = make_view<const std::int64_t>(partner.data(), a);
  const index_t kept = retained_count(p, problem{in.grid, dim});
  REQUIRE(kept == n - r);
  chain_state next{kept, dim, std::vector<float>(static_cast<std::size_t>(kept * dim)),
                   std::vector<float>(static_cast<std::size_t>(kept)),
                   std::vector<std::int64_t>(static_cast<std::size_t>(kept)),
                   std::vector<std::int32_t>(static_cast<std::size_t>(kept * 3)), {}};
  std::vector<std::int64_t> assign(static_cast<std::size_t>(n));
  const merge_outputs<float> out{make_view(next.tokens.data(), kept, dim), make_view(next.source.data(), kept),
                                 make_view(next.positions.data(), kept, 3), make_view(next.sizes.data(), kept),
                                 make_view(assign.data(), n)};
  testing::host_workspace ws(workspace_bytes(cpu{0, 2}, p, problem{in.grid, dim}));
  for (int ith = 0; ith < 2; ++ith) REQUIRE(apply(cpu{ith, 2}, p, in, out, ws.get()) == status::ok);

  // src_idx: the first r candidates by (similarity descending, A index ascending); dst_idx:
  // their partners; unm_idx: the A tokens of the first |A| − r output slots, in slot order.
  const std::vector<std::int64_t> ranked = ref::rank_candidates(similarity, p.protect);
  const std::vector<std::int64_t> src(ranked.begin(), ranked.begin() + r);
  std::vector<std::int64_t> dst, unm;
  for (std::int64_t k : src) {
    dst.push_back(partner[static_cast<std::size_t>(k)]);
    CHECK(assign[static_cast<std::size_t>(2 * k)] == assign[static_cast<std::size_t>(2 * dst.back() + 1)]);
  }
  for (index_t q = 0; q < a - r; ++q) {
    const auto at = std::find(assign.begin(), assign.end(), q);
    REQUIRE(at != assign.end());
    CHECK(std::count(assign.begin(), assign.end(), q) == 1);
    unm.push_back((at - assign.begin()) / 2);
  }
  CHECK(src == load_npy(dir + "src_idx" + suffix + ".npy").as<std::int64_t>());
  CHECK(dst == load_npy(dir + "dst_idx" + suffix + ".npy").as<std::int64_t>());
  CHECK(unm == load_npy(dir + "unm_idx" + suffix + ".npy").as<std::int64_t>());

  // The slot of every original after this step.
  next.assign.resize(state.assign.size());
  REQUIRE(compose_assign(make_view<const std::int64_t>(state.assign.data(), static_cast<index_t>(state.assign.size())),
                         make_view<const std::int64_t>(assign.data(), n),
                         make_view(next.assign.data(), static_cast<index_t>(next.assign.size()))) == status::ok);
  state = std::move(next);
}

void check_case(const std::string& name) {
  const std::string dir = testing::golden_case("tome", name);
  const std::string params = params_text(dir);
  const io::npy_array input = load_npy(dir + "input.npy");  // (N, D) float32
  REQUIRE(input.dtype == "<f4");
  const index_t n0 = input.shape.at(0), dim = input.shape.at(1);
  REQUIRE(json_int(dir, "N") == n0);
  const bool class_token = params.find("\"class_token\": true") != std::string::npos;
  REQUIRE(params.find("\"distill_token\": false") != std::string::npos);
  const std::size_t steps = occurrences(params, "\"step\":");
  REQUIRE(steps >= 1);
  const tome p{static_cast<index_t>(json_int(dir, "r")), class_token ? 1 : 0};

  chain_state state{n0, dim, input.as<float>(), {}, {}, {}, {}};
  for (index_t i = 0; i < n0; ++i) state.assign.push_back(i);
  for (std::size_t s = 0; s < steps; ++s) {
    INFO(name << " step " << s);
    if (steps == 1) {
      const io::npy_array metric = load_npy(dir + "metric.npy");  // (N, Dm) float32
      REQUIRE(metric.shape.at(0) == n0);
      step(dir, "", p, metric.as<float>(), metric.shape.at(1), state);
    } else {
      step(dir, "_step" + std::to_string(s), p, {}, 0, state);  // the metric is the current tokens
    }
  }

  const io::npy_array sizes = load_npy(dir + "sizes.npy");    // (K,) float32
  const io::npy_array tokens = load_npy(dir + "tokens.npy");  // (K, D) float32, [unm, dst]
  REQUIRE(tokens.shape.at(0) == state.n);
  CHECK(state.assign == load_npy(dir + "assign.npy").as<std::int64_t>());
  CHECK(state.sizes == sizes.as<float>());
  const std::vector<float> want = tokens.as<float>();
  REQUIRE(want.size() == state.tokens.size());
  double worst = 0;
  for (std::size_t i = 0; i < want.size(); ++i) worst = testing::worse(worst, static_cast<double>(std::abs(want[i] - state.tokens[i])));
  INFO("largest difference " << worst);
  CHECK(worst <= 1e-5);
}

}  // namespace

TEST_CASE("ToMe original: r = 1 of 16 tokens, no class token", "[golden][tome]") { check_case("r1_nocls_n16"); }

TEST_CASE("ToMe original: r = 49 of 197 tokens (ViT-B/16 with a class token)", "[golden][tome]") {
  check_case("rquarter_cls_n197");
}
