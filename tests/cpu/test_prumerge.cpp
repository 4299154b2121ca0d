// tests/cpu/test_prumerge.cpp — prumerge_merge on CPU: the original's golden outputs (alone and
// after iqr_outliers), the oracle over the shared case table (every element type and thread
// split, separate keys or the tokens as keys), the documented results for ties, zero and NaN
// keys, repeated indices and the normalised form, and bad input.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/outliers.hpp>
#include <tokred/cpu/prumerge.hpp>

#include "io/npy.hpp"
#include "reference/prumerge_ref.hpp"
#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"
#include "support/diversity.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// How far (in double) a fp32 cosine may sit from the oracle's: rows of at most 64 values.
constexpr double rounding_slack = 1e-5;

/// Sentinel-filled outputs of prumerge_merge.
template <class E>
struct prumerge_buffers {
  std::vector<E> tokens;                 // (rows, dim)
  std::vector<std::int64_t> source;      // (rows,)
  std::vector<std::int32_t> positions;   // (rows, 3)
  std::vector<std::int64_t> neighbours;  // (kept, m)
  index_t rows = 0, kept = 0, m = 0, dim = 0;

  prumerge_buffers(index_t rows_, index_t kept_, index_t m_, index_t dim_)
      : tokens(static_cast<std::size_t>(rows_ * dim_), from_float<E>(-3.5f)),
        source(static_cast<std::size_t>(rows_), -12345),
        positions(static_cast<std::size_t>(rows_ * 3), -777),
        neighbours(static_cast<std::size_t>(kept_ * m_), -12345),
        rows(rows_), kept(kept_), m(m_), dim(dim_) {}

  prumerge_outputs<E> outputs() {
    return {make_view(tokens.data(), rows, dim), make_view(source.data(), rows), make_view(positions.data(), rows, 3),
            make_view(neighbours.data(), kept, m)};
  }
  bool untouched() const {
    return std::all_of(tokens.begin(), tokens.end(), [](E t) { return to_float(t) == -3.5f; }) &&
           std::all_of(source.begin(), source.end(), [](std::int64_t s) { return s == -12345; }) &&
           std::all_of(positions.begin(), positions.end(), [](std::int32_t p) { return p == -777; }) &&
           std::all_of(neighbours.begin(), neighbours.end(), [](std::int64_t s) { return s == -12345; });
  }
  bool same_bits(const prumerge_buffers& o) const {
    return tokens.size() == o.tokens.size() &&
           (tokens.empty() || std::memcmp(tokens.data(), o.tokens.data(), tokens.size() * sizeof(E)) == 0) &&
           source == o.source && positions == o.positions && neighbours == o.neighbours;
  }
  /// The neighbours of kept token q.
  std::vector<std::int64_t> near(index_t q) const {
    const auto first = neighbours.begin() + static_cast<std::ptrdiff_t>(q * m);
    return std::vector<std::int64_t>(first, first + static_cast<std::ptrdiff_t>(m));
  }
};

/// prumerge_merge run as `nth` shares, in reverse order.
template <class Ein, class Eout>
prumerge_buffers<Eout> run_merge(const prumerge_merge& p, const prumerge_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t kept = in.kept.extent(0), rows = retained_count(p, prob, kept);
  REQUIRE(rows > 0);
  prumerge_buffers<Eout> out(rows, kept, p.neighbours, dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// The number of token values outside the fp32 error bound of a sequential sum of the oracle's
/// terms ((terms + 2)·2⁻²³ of their magnitude) plus the output type's rounding.
template <class E>
std::size_t row_mismatches(const std::vector<E>& got, const ref::prumerge_result& want, index_t dim) {
  std::size_t bad = got.size() == want.tokens.size() ? 0 : got.size() + want.tokens.size();
  for (std::size_t v = 0; v < got.size() && v < want.tokens.size(); ++v) {
    const double terms = static_cast<double>(want.terms[v / static_cast<std::size_t>(dim)]);
    const double bound = (terms + 2) * std::ldexp(1.0, -23) * want.magnitude[v] + output_eps<E>() * std::abs(want.tokens[v]);
    bad += !(std::abs(to_float(got[v]) - want.tokens[v]) <= bound);
  }
  return bad;
}

/// A kept list for n tokens: a fifth of them (at least one) in a scrambled order, then the
/// first again (a repeat).
std::vector<std::int64_t> kept_list(index_t n, std::uint64_t seed) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  rng r(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[r.next() % i]);
  order.resize(static_cast<std::size_t>(std::max<index_t>(1, n / 5)));
  order.push_back(order.front());
  return order;
}

/// One (case, policy) run: source and positions exactly as the oracle's, each neighbour list
/// certified against the oracle's cosines, the rows against the oracle built from the backend's
/// neighbours, and the thread splits bit for bit.
template <class Ein, class Eout>
void check_against_oracle(const prumerge_merge& p, const shape_case& c, bool separate_keys) {
  const index_t n = c.grid.tokens();
  const std::uint64_t seed = 17 + static_cast<std::uint64_t>(n * 3 + p.neighbours);
  const token_matrix<Ein> x = continuous_rows<Ein>(n, c.dim, c.rows, seed);
  const token_matrix<Ein> k = continuous_rows<Ein>(n, c.dim / 2 + 1, c.rows, seed + 1);
  const view<const Ein, 2> keys = separate_keys ? view<const Ein, 2>(k.rows) : view<const Ein, 2>(x.rows);
  const std::vector<float> scores = importance(n, seed + 2);
  const std::vector<std::int64_t> kept = kept_list(n, seed + 3);
  prumerge_inputs<Ein> in{};
  in.grid = c.grid;
  in.kept = make_view<const std::int64_t>(kept.data(), static_cast<index_t>(kept.size()));
  in.tokens = x.rows;
  in.scores = make_view<const float>(scores.data(), n);
  if (separate_keys) in.keys = keys;

  REQUIRE(can_implement(p, problem{c.grid, c.dim}) == status::ok);
  const prumerge_buffers<Eout> got = run_merge<Ein, Eout>(p, in, c.dim);

  // Each neighbour list: m distinct tokens other than its own, nearest first, and none farther
  // than the oracle's m-th nearest, up to rounding.
  std::vector<std::vector<std::int64_t>> near;
  index_t bad_list = 0;
  double worst_shortfall = 0, worst_disorder = 0;
  for (std::size_t q = 0; q < kept.size(); ++q) {
    const std::int64_t i = kept[q];
    near.push_back(got.near(static_cast<index_t>(q)));
    std::vector<std::int64_t> sorted = near.back();
    std::sort(sorted.begin(), sorted.end());
    bad_list += std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end() ||
                std::find(sorted.begin(), sorted.end(), i) != sorted.end() ||
                (!sorted.empty() && (sorted.front() < 0 || sorted.back() >= n));
    if (bad_list > 0 || p.neighbours == 0) continue;
    const std::vector<double> cos = ref::key_cosines(keys, i);
    const std::vector<std::int64_t> want = ref::nearest(keys, i, p.neighbours);
    const double mth = cos[static_cast<std::size_t>(want.back())];
    for (std::size_t t = 0; t < near.back().size(); ++t) {
      const double v = cos[static_cast<std::size_t>(near.back()[t])];
      worst_shortfall = worse(worst_shortfall, mth - v);
      if (t > 0) worst_disorder = worse(worst_disorder, v - cos[static_cast<std::size_t>(near.back()[t - 1])]);
    }
  }
  REQUIRE(bad_list == 0);
  CHECK(worst_shortfall <= rounding_slack);
  CHECK(worst_disorder <= rounding_slack);

  const ref::prumerge_result want =
      ref::prumerge_outputs_for(p, c.grid, kept, view<const Ein, 2>(x.rows), scores, near);
  CHECK(got.source == want.source);
  CHECK(got.positions == want.positions);
  CHECK(row_mismatches(got.tokens, want, c.dim) == 0);

  for (int nth : {2, 3}) {
    INFO("nth " << nth);
    CHECK(run_merge<Ein, Eout>(p, in, c.dim, nth).same_bits(got));
  }
}

/// The policies every case runs, those valid on n tokens: the original's, the normalised form
/// with few neighbours, every other token without the extra token, and no neighbour at all.
std::vector<prumerge_merge> policies_for(index_t n) {
  const std::vector<prumerge_merge> all = {
      prumerge_merge{std::min<index_t>(32, n - 1)},
      prumerge_merge{std::min<index_t>(5, n - 1), prumerge_weights::normalized},
      prumerge_merge{n - 1, prumerge_weights::sum, false},
      prumerge_merge{0, prumerge_weights::normalized, true},
  };
  std::vector<prumerge_merge> valid;
  for (const prumerge_merge& p : all)
    if (can_implement(p, problem{sequence_grid(n), 1}) == status::ok) valid.push_back(p);
  return valid;
}

}  // namespace

TEST_CASE("prumerge_merge matches the oracle on the case table", "[prumerge]") {
  for (const shape_case& c : shape_cases()) {
    int variant = 0;
    for (const prumerge_merge& p : policies_for(c.grid.tokens())) {
      INFO(c.name << " neighbours " << p.neighbours << (p.weights == prumerge_weights::normalized ? " normalized" : " sum")
                  << (p.extra_token ? " extra" : ""));
      const bool keys = variant % 2 == 0;
      check_against_oracle<float, float>(p, c, keys);
      check_against_oracle<bf16, bf16>(p, c, !keys);
      check_against_oracle<f16, float>(p, c, keys);
      if (variant == 0) check_against_oracle<f16, f16>(p, c, !keys);
      ++variant;
    }
  }
}

namespace {

/// One golden case of the original: the neighbour sets exactly, the tokens within 1e-5
/// relative, for every split; then the same from the kept list iqr_outliers selects.
void check_golden(const std::string& name, const iqr_outliers& selection) {
  const std::string dir = golden_case("prumerge", name);
  const io::npy_array input = load_npy(dir + "input.npy");               // (1 + N, D) [CLS] row 0
  const io::npy_array key = load_npy(dir + "key.npy");                   // (1 + N, D) block-23 keys
  const io::npy_array scores = load_npy(dir + "scores.npy");             // (N,) cls_attn
  const io::npy_array kept = load_npy(dir + "kept_indices.npy");         // (K,) idx, upstream order
  const io::npy_array neighbours = load_npy(dir + "merge_neighbors.npy");  // (K, 32) topk order
  const io::npy_array tokens = load_npy(dir + "tokens.npy");             // (K + 1, D)
  REQUIRE(input.dtype == "<f4");
  REQUIRE(key.dtype == "<f4");
  const token_grid grid = image_grid(24, 24);
  const index_t n = grid.tokens(), dim = input.shape.at(1);
  REQUIRE(input.shape.at(0) == n + 1);
  REQUIRE(key.shape.at(0) == n + 1);

  const std::vector<float> x = input.as<float>(), k = key.as<float>(), s = scores.as<float>();
  const std::vector<std::int64_t> idx = kept.as<std::int64_t>();
  const auto count = static_cast<index_t>(idx.size());
  REQUIRE(count == json_int(dir, "k"));
  prumerge_inputs<float> in{};
  in.grid = grid;
  in.kept = make_view<const std::int64_t>(idx.data(), count);
  in.tokens = make_view<const float>(x.data() + dim, n, dim);  // the patch rows, after [CLS]
  in.keys = make_view<const float>(k.data() + key.shape.at(1), n, key.shape.at(1));
  in.scores = make_view<const float>(s.data(), n);
  const prumerge_merge p{};
  const prumerge_buffers<float> got = run_merge<float, float>(p, in, dim, 1);
  for (int nth : {2, 3}) CHECK(run_merge<float, float>(p, in, dim, nth).same_bits(got));

  const std::vector<std::int64_t> want_near = neighbours.as<std::int64_t>();
  REQUIRE(static_cast<index_t>(want_near.size()) == count * 32);
  index_t different_sets = 0, different_order = 0;
  for (index_t q = 0; q < count; ++q) {
    std::vector<std::int64_t> a = got.near(q);
    std::vector<std::int64_t> b(want_near.begin() + q * 32, want_near.begin() + (q + 1) * 32);
    different_order += a != b;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    different_sets += a != b;
  }
  CHECK(different_sets == 0);
  CHECK(different_order == 0);  // no ties in these cases: torch.topk's order, nearest first

  const std::vector<float> want = tokens.as<float>();
  REQUIRE(want.size() == got.tokens.size());
  double worst = 0;
  for (std::size_t v = 0; v < want.size(); ++v)
    worst = worse(worst, std::abs(static_cast<double>(want[v]) - got.tokens[v]) /
                                std::max(1.0, std::abs(static_cast<double>(want[v]))));
  INFO("largest relative difference " << worst);
  CHECK(worst <= 1e-5);
  CHECK(got.source.back() == -1);
  CHECK(std::vector<std::int64_t>(got.source.begin(), got.source.end() - 1) == idx);

  // PruMerge end to end: iqr_outliers' `source` and `count` are the merge's kept list.
  const index_t bound = retained_count(selection, problem{grid, dim});
  std::vector<std::int64_t> source(static_cast<std::size_t>(bound));
  std::int64_t selected = 0;
  counted_outputs<float> picked{};
  picked.source = make_view(source.data(), bound);
  picked.count = make_view(&selected, 1);
  host_workspace ws(workspace_bytes(cpu{}, selection, problem{grid, dim}));
  REQUIRE(apply(cpu{}, selection, selection_inputs<float>{grid, in.scores, {}}, picked, ws.get()) == status::ok);
  REQUIRE(selected == count);
  in.kept = make_view<const std::int64_t>(source.data(), selected);
  CHECK(run_merge<float, float>(p, in, dim, 2).same_bits(got));
}

}  // namespace

TEST_CASE("PruMerge+ original: 108 kept tokens merged, then the extra token", "[golden][prumerge]") {
  check_golden("c01_plus_n576_d64", iqr_outliers::prumerge_plus());
}

TEST_CASE("PruMerge original: the 50 outliers merged, then the extra token", "[golden][prumerge]") {
  check_golden("c02_prumerge_n576_d64", iqr_outliers::prumerge());
}

TEST_CASE("prumerge_merge: neighbours, ties, weights and the extra token on a small case", "[prumerge]") {
  // Six tokens with 2-D keys at angles: token 0 at 0°, 1 at 10°, 2 at 20°, 3 at 90°, 4 the same
  // direction as 1 (a tie with 1, twice its length), 5 at 180°.
  const float keys[6 * 2] = {1, 0, 0.98480775f, 0.17364818f, 0.93969262f, 0.34202014f,
                             0, 1, 1.9696155f, 0.34729636f, -1, 0};
  const float x[6 * 2] = {1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60};  // token j: (j + 1, 10·(j + 1))
  const std::vector<float> scores = {0.5f, 0.25f, 0.125f, 1, 2, 4};
  const std::vector<std::int64_t> kept = {2, 0};
  prumerge_inputs<float> in{};
  in.grid = image_grid(2, 3);
  in.kept = make_view<const std::int64_t>(kept.data(), 2);
  in.tokens = make_view(x, 6, 2);
  in.keys = make_view(keys, 6, 2);
  in.scores = make_view(scores.data(), 6);

  const prumerge_buffers<float> got = run_merge<float, float>(prumerge_merge{2}, in, 2, 2);
  // Token 2 (20°): 1 and 4 at 10° tie, the lower index first; token 0: 1 and 4 again (10°).
  CHECK(got.near(0) == std::vector<std::int64_t>{1, 4});
  CHECK(got.near(1) == std::vector<std::int64_t>{1, 4});
  CHECK(got.source == std::vector<std::int64_t>{2, 0, -1});
  CHECK(got.positions == std::vector<std::int32_t>{0, 0, 2, 0, 0, 0, -1, -1, -1});
  // x_2 + 0.25·x_1 + 2·x_4 = (3 + 0.5 + 10, 30 + 5 + 100); x_0 + the same.
  // Extra: the pruned 1, 3, 4, 5: 0.25·2 + 1·4 + 2·5 + 4·6 = 38.5, ×10 = 385.
  CHECK(got.tokens == std::vector<float>{13.5f, 135, 11.5f, 115, 38.5f, 385});

  // normalized: divided by 1 + 2.25, the extra token by 7.25.
  const prumerge_buffers<float> mean = run_merge<float, float>(prumerge_merge{2, prumerge_weights::normalized}, in, 2, 3);
  CHECK(mean.tokens == std::vector<float>{13.5f / 3.25f, 135 / 3.25f, 11.5f / 3.25f, 115 / 3.25f, 38.5f / 7.25f,
                                          385 / 7.25f});

  // Every other token, nearest first; without the extra token.
  const prumerge_buffers<float> all = run_merge<float, float>(prumerge_merge{5, prumerge_weights::sum, false}, in, 2, 1);
  CHECK(all.near(0) == std::vector<std::int64_t>{1, 4, 0, 3, 5});  // 10°, 10°, 20°, 70°, 160°
  CHECK(all.near(1) == std::vector<std::int64_t>{1, 4, 2, 3, 5});
  CHECK(all.rows == 2);

  // A zero key has cosine 0 with every token (ties: the lowest indices); a NaN key ranks last
  // for everyone, and its own cosines are all NaN.
  const float odd_keys[6 * 2] = {0, 0, 1, 0, -1, 0, 0.5f, 0.5f, NAN, 1, 0, -1};
  in.keys = make_view(odd_keys, 6, 2);
  const std::vector<std::int64_t> three = {0, 4, 2};
  in.kept = make_view<const std::int64_t>(three.data(), 3);
  const prumerge_buffers<float> odd = run_merge<float, float>(prumerge_merge{5, prumerge_weights::sum, false}, in, 2, 2);
  CHECK(odd.near(0) == std::vector<std::int64_t>{1, 2, 3, 5, 4});  // all 0, in index order, but 4 (NaN)
  CHECK(odd.near(1) == std::vector<std::int64_t>{0, 1, 2, 3, 5});  // all NaN: index order
  CHECK(odd.near(2) == std::vector<std::int64_t>{0, 5, 3, 1, 4});  // 0 (zero key), 0, −0.7, −1, NaN

  // Repeats: both copies give the same row; a repeated token is kept, never its own neighbour.
  in.keys = make_view(keys, 6, 2);
  const std::vector<std::int64_t> twice = {2, 2};
  in.kept = make_view<const std::int64_t>(twice.data(), 2);
  const prumerge_buffers<float> rep = run_merge<float, float>(prumerge_merge{1}, in, 2, 3);
  CHECK(rep.near(0) == std::vector<std::int64_t>{1});
  CHECK(rep.near(1) == std::vector<std::int64_t>{1});
  // x_2 + 0.25·x_1 twice; the extra token sums all but token 2: 0.5 + 0.5 + 4 + 10 + 24 = 39.
  CHECK(rep.tokens == std::vector<float>{3.5f, 35, 3.5f, 35, 39, 390});

  // An empty list: the extra token alone, every token pruned.
  in.kept = view<const std::int64_t, 1>{};
  const prumerge_buffers<float> none = run_merge<float, float>(prumerge_merge{2}, in, 2, 2);
  CHECK(none.source == std::vector<std::int64_t>{-1});
  CHECK(none.tokens == std::vector<float>{0.5f + 0.5f + 0.375f + 4 + 10 + 24, 393.75f});
  // Every token kept: the extra token is the zero row, also normalised (a zero divisor).
  const std::vector<std::int64_t> every = {0, 1, 2, 3, 4, 5};
  in.kept = make_view<const std::int64_t>(every.data(), 6);
  const prumerge_buffers<float> full = run_merge<float, float>(prumerge_merge{1, prumerge_weights::normalized}, in, 2, 1);
  CHECK(full.tokens[12] == 0.0f);
  CHECK(full.tokens[13] == 0.0f);
}

TEST_CASE("prumerge_merge: bad input leaves every output untouched", "[prumerge][bad-input]") {
  const index_t n = 16, dim = 8;
  const token_matrix<float> x = continuous_rows<float>(n, dim, layout::contiguous, 4);
  const std::vector<float> scores(static_cast<std::size_t>(n), 0.5f);
  std::vector<std::int64_t> kept = {3, 7, 1};
  prumerge_inputs<float> in{};
  in.grid = image_grid(4, 4);
  in.kept = make_view<const std::int64_t>(kept.data(), 3);
  in.tokens = x.rows;
  in.scores = make_view<const float>(scores.data(), n);
  const prumerge_merge p{4};
  const problem prob{in.grid, dim};
  REQUIRE(retained_count(p, prob, 3) == 4);
  prumerge_buffers<float> out(4, 3, 4, dim);
  host_workspace ws(workspace_bytes(cpu{}, p, prob));

  CHECK(apply(cpu{1, 1}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  CHECK(apply(cpu{0, 0}, p, in, out.outputs(), ws.get()) == status::invalid_exec);
  const auto rejects = [&](const prumerge_merge& q, const problem& pr, status want) {
    CHECK(can_implement(q, pr) == want);
    CHECK(retained_count(q, pr, 3) == 0);
    CHECK(workspace_bytes(cpu{}, q, pr) == 0);
  };
  rejects(prumerge_merge{-1}, prob, status::invalid_parameter);
  rejects(prumerge_merge{4, static_cast<prumerge_weights>(5)}, prob, status::invalid_parameter);
  rejects(prumerge_merge{16}, prob, status::budget_exceeds_input);  // 15 other tokens
  rejects(prumerge_merge{}, problem{sequence_grid(32), dim}, status::budget_exceeds_input);
  rejects(p, problem{sequence_grid(0), dim}, status::empty_input);
  rejects(p, problem{token_grid{1, -1, 4}, dim}, status::shape_mismatch);
  CHECK(can_implement(prumerge_merge{15}, prob) == status::ok);
  CHECK(retained_count(p, prob, -1) == 0);
  CHECK(retained_count(prumerge_merge{4, prumerge_weights::sum, false}, prob, 0) == 0);
  CHECK(apply(cpu{}, prumerge_merge{16}, in, out.outputs(), ws.get()) == status::budget_exceeds_input);
  CHECK(apply(cpu{}, prumerge_merge{4, prumerge_weights::sum, false}, prumerge_inputs<float>{in.grid, {}, in.tokens, in.scores, {}},
              prumerge_outputs<float>{}, ws.get()) == status::invalid_budget);

  prumerge_inputs<float> bad = in;
  bad.kept = view<const std::int64_t, 1>(nullptr, {3});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad = in;
  bad.scores = make_view<const float>(scores.data(), n - 1);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad.scores = view<const float, 1>(nullptr, {n});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad = in;
  bad.keys = view<const float, 2>(&x.rows(0, 0), {n, 0}, {dim, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::empty_input);
  bad.keys = view<const float, 2>(nullptr, {n, 4}, {4, 1});
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::null_pointer);
  bad.keys = make_view<const float>(&x.rows(0, 0), n - 1, dim);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);
  bad = in;
  bad.tokens = make_view<const float>(&x.rows(0, 0), n - 1, dim);
  CHECK(apply(cpu{}, p, bad, out.outputs(), ws.get()) == status::shape_mismatch);

  prumerge_outputs<float> wrong = out.outputs();
  wrong.tokens = make_view(out.tokens.data(), 3, dim);  // the extra token's row is missing
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.source = make_view(out.source.data(), 3);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.positions = make_view(out.positions.data(), 4, 2);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.neighbours = make_view(out.neighbours.data(), 3, 3);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::shape_mismatch);
  wrong = out.outputs();
  wrong.neighbours = make_view(reinterpret_cast<std::int64_t*>(out.tokens.data()), 3, 4);
  CHECK(apply(cpu{}, p, in, wrong, ws.get()) == status::aliasing);
  std::vector<std::int64_t> list = {3, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  prumerge_inputs<float> listed = in;
  listed.kept = make_view<const std::int64_t>(list.data(), 3);
  wrong = out.outputs();
  wrong.neighbours = make_view(list.data(), 3, 4);  // over the kept list
  CHECK(apply(cpu{}, p, listed, wrong, ws.get()) == status::aliasing);
  std::vector<float> copy(x.storage.begin(), x.storage.end());
  prumerge_inputs<float> self = in;
  self.tokens = make_view<const float>(copy.data(), n, dim);
  wrong = out.outputs();
  wrong.tokens = make_view(copy.data(), 4, dim);  // in place
  CHECK(apply(cpu{}, p, self, wrong, ws.get()) == status::aliasing);

  kept[1] = n;
  CHECK(apply(cpu{}, p, in, out.outputs(), ws.get()) == status::index_out_of_range);
  kept[1] = -1;
  CHECK(apply(cpu{0, 2}, p, in, out.outputs(), ws.get()) == status::index_out_of_range);
  kept[1] = 7;
  host_workspace small(ws.bytes.size() - 1);
  CHECK(apply(cpu{}, p, in, out.outputs(), small.get()) == status::workspace_too_small);
  CHECK(apply(cpu{}, p, in, out.outputs(), workspace{nullptr, ws.bytes.size()}) == status::null_pointer);
  CHECK(out.untouched());

  // NaN scores are no error: the rows they weigh are NaN, the others are numbers.
  std::vector<float> nan_scores = scores;
  nan_scores[15] = std::numeric_limits<float>::quiet_NaN();
  bad = in;
  bad.scores = make_view<const float>(nan_scores.data(), n);
  const prumerge_buffers<float> got = run_merge<float, float>(p, bad, dim, 2);
  CHECK(std::isnan(got.tokens.back()));  // token 15 is pruned
  for (index_t q = 0; q < 3; ++q) {
    const std::vector<std::int64_t> near = got.near(q);
    const bool weighs_15 = std::find(near.begin(), near.end(), 15) != near.end();
    CHECK(std::isnan(got.tokens[static_cast<std::size_t>(q * dim)]) == weighs_15);
  }
}

TEST_CASE("prumerge_merge: the workspace is the carve-up, per share", "[prumerge]") {
  const problem prob{image_grid(24, 24), 1024};
  const prumerge_merge p{};
  const std::size_t one = workspace_bytes(cpu{}, p, prob), three = workspace_bytes(cpu{0, 3}, p, prob);
  // 32·N bytes (four kept tokens' cosines among them), and 63 of alignment slack per buffer (4);
  // independent of the kept count.
  CHECK(one == 32 * 576 + 4 * 63);
  CHECK(three == 3 * one);
  CHECK(workspace_bytes(cpu{0, 0}, p, prob) == 0);
  std::vector<std::byte> bytes(one + 64);
  for (std::size_t shift = 0; shift < 64; shift += 8) {
    detail::arena carver(workspace{bytes.data() + shift, one});
    (void)backend<prumerge_merge, cpu<>>::carve(carver, prob.grid.tokens(), 0, 1);
    CHECK(carver.fits());
  }
}
