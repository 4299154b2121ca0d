// tests/cpu/test_golden_attention.cpp — the attention scores reproduce the originals: FastV's
// last-token score, FasterVLM's [CLS] score, HiRED's head-summed [CLS] score and PyramidDrop's
// stage-by-stage fused score (its RMSNorm, q/k projections and RoPE written here, as model code),
// each followed by topk with the original's count rule: scores within fp32 rounding, kept sets
// exactly.
#include <cmath>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/attention_scores.hpp>
#include <tokred/policy/schedule.hpp>

#include "io/npy.hpp"
#include "support/buffers.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using testing::json_int;
using testing::json_number;
using testing::json_numbers;

/// The largest |got − want| / |want|.
double worst_relative(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0.0;
  for (std::size_t j = 0; j < got.size(); ++j)
    worst = testing::worse(worst, std::fabs(static_cast<double>(got[j]) - want[j]) / std::fabs(static_cast<double>(want[j])));
  return worst;
}

std::vector<float> score(const attention_score& p, const attention_score_inputs<float>& in) {
  std::vector<float> out(static_cast<std::size_t>(in.grid.tokens()), -1.0f);
  REQUIRE(apply(cpu{}, p, in, score_outputs<>{make_view(out.data(), in.grid.tokens())}) == status::ok);
  return out;
}

/// topk's kept indices (ascending) of `scores` over `grid`.
std::vector<std::int64_t> keep(const keep_budget& budget, const token_grid& grid, const std::vector<float>& scores) {
  const topk policy{budget};
  const index_t kept = retained_count(policy, problem{grid, 0});
  REQUIRE(kept > 0);
  std::vector<std::int64_t> source(static_cast<std::size_t>(kept));
  selection_outputs<float> out;
  out.source = make_view(source.data(), kept);
  testing::host_workspace ws(workspace_bytes(cpu{}, policy, problem{grid, 0}));
  REQUIRE(apply(cpu{}, policy, selection_inputs<float>{grid, make_view(scores.data(), grid.tokens()), {}}, out,
                ws.get()) == status::ok);
  return source;
}

/// One weights row (heads, keys) from a file, scored with `p` over a 24 × 24 image, then kept with
/// `budget`: the scores against the original's within `tolerance` (relative), the set exactly.
void check_row_case(const std::string& method, const std::string& name, const std::string& attn_file,
                    const attention_score& p, const keep_budget& budget, double tolerance) {
  const std::string dir = testing::golden_case(method, name);
  const io::npy_array attn = testing::load_npy(dir + attn_file);  // (heads, keys) float32
  const io::npy_array scores = testing::load_npy(dir + "scores.npy");
  const io::npy_array kept = testing::load_npy(dir + "kept_indices.npy");
  REQUIRE((attn.dtype == "<f4" && scores.dtype == "<f4" && kept.dtype == "<i8"));
  const index_t heads = attn.shape.at(0), keys = attn.shape.at(1);
  const std::vector<float> w = attn.as<float>();
  const token_grid grid = image_grid(24, 24);
  const std::vector<float> got = score(p, {grid, make_view(w.data(), 1, 1, heads, keys)});
  CHECK(worst_relative(got, scores.as<float>()) <= tolerance);
  CHECK(keep(budget, grid, got) == kept.as<std::int64_t>());
}

}  // namespace

// FastV and FasterVLM average a power-of-two number of fp32 heads; torch sums the reduced (not
// innermost) dimension in index order, then scales by 1/H — the order attention_score uses, so
// the scores agree to the last bit (observed: 0 difference in every case). The check allows 10⁻⁷
// relative, about two roundings of the head sum, so that it does not depend on torch's order;
// the top-k boundaries are ≥ 2.5·10⁻⁷ apart (absolute, on scores ~1.7·10⁻³), and the kept sets
// are compared exactly.
TEST_CASE("FastV original: head-mean last-token attention over the image span, rank 288", "[golden][attention]") {
  const std::string dir = testing::golden_case("fastv_topk", "c01_orig_n576_sys36_rank288");
  const index_t s = json_int(dir, "sys_length / image_token_start_index");
  CHECK(s == 36);
  check_row_case("fastv_topk", "c01_orig_n576_sys36_rank288", "attn.npy", attention_score{head_reduce::mean, s},
                 keep_budget::count(json_int(dir, "fast_v_attention_rank")), 1e-7);
}

TEST_CASE("FastV llava-hf: prompt offset 5, round(576 * (1 - 0.75)) = 144", "[golden][attention]") {
  const std::string dir = testing::golden_case("fastv_topk", "c02_hf_n576_start5_R075");
  check_row_case("fastv_topk", "c02_hf_n576_start5_R075", "attn.npy",
                 attention_score{head_reduce::mean, json_int(dir, "sys_length / image_token_start_index")},
                 keep_budget::ratio(1.0 - 0.75, rounding::half_even), 1e-7);
}

TEST_CASE("FasterVLM: head-mean [CLS] attention to the patches, keep T", "[golden][attention]") {
  for (const std::string name : {"c01_n576_d64_T144", "c03_n576_d64_T29"}) {
    INFO(name);
    const std::string dir = testing::golden_case("fastervlm", name);
    check_row_case("fastervlm", name, "attn.npy", attention_score{head_reduce::mean, 1},
                   keep_budget::count(json_int(dir, "visual_token_num")), 1e-7);
  }
}

// HiRED sums 16 heads: the same order again, exact in practice; the top-k boundary is 1.4·10⁻⁵.
TEST_CASE("HiRED LLaVA-1.5: head-sum [CLS] attention of block 22, min(576, int(576 * 0.2)) = 115",
          "[golden][attention]") {
  const std::string dir = testing::golden_case("hired", "c01_llava15_n576_d64_b02");
  const double budget = json_numbers(dir, "token_budget_rate").at(0);
  CHECK(retained_count(topk{keep_budget::ratio(budget, rounding::floor)}, problem{image_grid(24, 24), 0}) == 115);
  check_row_case("hired", "c01_llava15_n576_d64_b02", "attn_block22.npy", attention_score{head_reduce::sum, 1},
                 keep_budget::ratio(budget, rounding::floor), 1e-7);
}

namespace {

/// PyramidDrop's scoring model, as upstream runs it in fp32 (LlamaRMSNorm, nn.Linear q/k
/// projections, LlamaRotaryEmbedding with its fp32 cos/sin cache, apply_rotary_pos_emb): the
/// model code the engine owns; tokred's part is the fused score and the selection.
struct pyramid_model {
  index_t width = 0, heads = 0, head_dim = 0;
  double eps = 0.0;
  std::vector<float> inv_freq;  // (head_dim / 2,) 1 / base^(2i / head_dim), fp32

  pyramid_model(index_t width_, index_t heads_, double base, double eps_)
      : width(width_), heads(heads_), head_dim(width_ / heads_), eps(eps_) {
    for (index_t i = 0; i < head_dim; i += 2) {
      const float exponent = static_cast<float>(i) / static_cast<float>(head_dim);
      inv_freq.push_back(1.0f / static_cast<float>(std::pow(base, static_cast<double>(exponent))));
    }
  }

  /// weight · x / sqrt(mean(x²) + eps), with upstream's fp32 roundings.
  std::vector<float> rms_norm(const float* x, const std::vector<float>& weight) const {
    double squares = 0.0;
    for (index_t c = 0; c < width; ++c) squares += static_cast<double>(x[c] * x[c]);
    const float variance = static_cast<float>(squares / static_cast<double>(width));
    const float inverse = static_cast<float>(1.0 / std::sqrt(static_cast<double>(variance + static_cast<float>(eps))));
    std::vector<float> y(static_cast<std::size_t>(width));
    for (index_t c = 0; c < width; ++c) y[static_cast<std::size_t>(c)] = weight[static_cast<std::size_t>(c)] * (x[c] * inverse);
    return y;
  }

  /// y = x·Wᵀ for a (width, width) nn.Linear weight, accumulated in double, rounded once.
  std::vector<float> project(const std::vector<float>& x, const std::vector<float>& w) const {
    std::vector<float> y(static_cast<std::size_t>(width));
    for (index_t o = 0; o < width; ++o) {
      double sum = 0.0;
      for (index_t c = 0; c < width; ++c)
        sum += static_cast<double>(w[static_cast<std::size_t>(o * width + c)]) * x[static_cast<std::size_t>(c)];
      y[static_cast<std::size_t>(o)] = static_cast<float>(sum);
    }
    return y;
  }

  /// RoPE at `position` on each head of y, in place: y·cos + rotate_half(y)·sin, where the angle
  /// of pair i is the fp32 product position·inv_freq[i] and cos/sin are rounded to fp32.
  void rotate(std::vector<float>& y, index_t position) const {
    const index_t half = head_dim / 2;
    for (index_t h = 0; h < heads; ++h) {
      float* v = y.data() + h * head_dim;
      for (index_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(position) * inv_freq[static_cast<std::size_t>(i)];
        const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
        const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
        const float a = v[i], b = v[i + half];
        const float ac = a * c, bs = b * s, bc = b * c, as = a * s;
        v[i] = ac - bs;  // rotate_half puts −b against a
        v[i + half] = bc + as;
      }
    }
  }
};

std::vector<float> load_floats(const std::string& path) {
  const io::npy_array a = testing::load_npy(path);
  REQUIRE(a.dtype == "<f4");
  return a.as<float>();
}

/// Runs every stage of a PyramidDrop case: score the current image tokens with the scoring
/// block's q (last row) and k (all rows), keep the schedule's count, rebuild the sequence with
/// contiguous positions, and compare each stage's scores and kept set and the final ids.
void check_pyramid_case(const std::string& name) {
  const std::string dir = testing::golden_case("pyramiddrop", name);
  const index_t n = json_int(dir, "N"), width = json_int(dir, "d_model"), first = json_int(dir, "image_token_posi");
  const pyramid_model model(width, json_int(dir, "num_heads"), json_numbers(dir, "rope_base").at(0),
                            json_numbers(dir, "rmsnorm_eps").at(0));
  const std::vector<double> list = json_numbers(dir, "layer_list");
  std::vector<index_t> layers(list.begin(), list.end());
  std::vector<double> ratios = json_numbers(dir, "image_token_ratio_list");
  REQUIRE(ratios.front() == 1.0);  // upstream's prepended stage-0 ratio; the schedule omits it
  ratios.erase(ratios.begin());
  const pyramid_schedule schedule{make_view(static_cast<const index_t*>(layers.data()), static_cast<index_t>(layers.size())),
                                  make_view(static_cast<const double*>(ratios.data()), static_cast<index_t>(ratios.size()))};
  REQUIRE(check_schedule(schedule, n) == status::ok);

  std::vector<float> hidden = load_floats(dir + "input.npy");  // (L, width)
  index_t length = static_cast<index_t>(hidden.size()) / width, current = n;
  std::vector<std::int64_t> original(static_cast<std::size_t>(n));  // image token ids still present
  for (index_t i = 0; i < n; ++i) original[static_cast<std::size_t>(i)] = i;

  for (index_t stage = 0; stage < static_cast<index_t>(layers.size()); ++stage) {
    INFO(name << " stage " << stage);
    const std::string block = std::to_string(layers[static_cast<std::size_t>(stage)]);
    const std::vector<float> norm = load_floats(dir + "rmsnorm_w_layer" + block + ".npy");
    const std::vector<float> wq = load_floats(dir + "w_q_layer" + block + ".npy");
    const std::vector<float> wk = load_floats(dir + "w_k_layer" + block + ".npy");
    std::vector<float> keys(static_cast<std::size_t>(length * width));  // (L, heads·head_dim)
    std::vector<float> query;                                           // (heads·head_dim,) last row
    for (index_t t = 0; t < length; ++t) {
      const std::vector<float> h = model.rms_norm(hidden.data() + t * width, norm);
      std::vector<float> k = model.project(h, wk);
      model.rotate(k, t);  // positions re-indexed 0 … L−1 after every drop
      std::copy(k.begin(), k.end(), keys.begin() + t * width);
      if (t == length - 1) {
        query = model.project(h, wq);
        model.rotate(query, t);
      }
    }
    // q as (1 query, heads, head_dim); k as (kv_heads, L, head_dim) read in place from (L, heads, head_dim).
    const index_t hd = model.head_dim;
    const fused_attention_inputs<float> in{
        sequence_grid(current), make_view(static_cast<const float*>(query.data()), 1, model.heads, hd),
        view<const float, 3>(keys.data(), {model.heads, length, hd}, {hd, width, 1})};
    const fused_attention_score policy{head_reduce::mean, first};
    std::vector<float> scores(static_cast<std::size_t>(current));
    testing::host_workspace ws(workspace_bytes(cpu{}, policy, problem{in.grid, hd}));
    REQUIRE(apply(cpu{}, policy, in, score_outputs<>{make_view(scores.data(), current)}, ws.get()) == status::ok);
    // q and k pass through RMSNorm and two fp32 projections whose rounding order (upstream's
    // BLAS) is not reproducible: the scores agree to 1.2–2.2·10⁻⁶ relative (a double or an fp32
    // sequential projection, float or double cos/sin and pow all land there). 10⁻⁵ is far inside
    // the top-k boundaries, ≥ 1.3·10⁻⁶ absolute on scores ~1.6·10⁻³, i.e. ≥ 8·10⁻⁴ relative.
    CHECK(worst_relative(scores, load_floats(dir + "scores_stage" + std::to_string(stage) + ".npy")) <= 1e-5);

    const std::vector<std::int64_t> kept = keep(stage_budget(schedule, n, stage), in.grid, scores);
    const io::npy_array want = testing::load_npy(dir + "kept_local_stage" + std::to_string(stage) + ".npy");
    CHECK(kept == want.as<std::int64_t>());

    // The pruned sequence: text before, the kept image tokens in order, text after.
    std::vector<float> next(hidden.begin(), hidden.begin() + first * width);
    std::vector<std::int64_t> still;
    for (const std::int64_t j : kept) {
      next.insert(next.end(), hidden.begin() + (first + j) * width, hidden.begin() + (first + j + 1) * width);
      still.push_back(original[static_cast<std::size_t>(j)]);
    }
    next.insert(next.end(), hidden.begin() + (first + current) * width, hidden.end());
    hidden.swap(next);
    original.swap(still);
    current = static_cast<index_t>(kept.size());
    length = static_cast<index_t>(hidden.size()) / width;
  }
  CHECK(original == testing::load_npy(dir + "kept_indices.npy").as<std::int64_t>());
}

}  // namespace

TEST_CASE("PyramidDrop: the repository's schedule, 576 -> 288 -> 144 -> 72", "[golden][attention][pyramid]") {
  check_pyramid_case("c01_n576_d64_h4_default");
}

TEST_CASE("PyramidDrop: one stage after block 1, 576 -> 144", "[golden][attention][pyramid]") {
  check_pyramid_case("c04_n576_d64_h4_single");
}
