// tests/cpu/test_pipeline.cpp — pipeline<Stages...> on CPU: a chain equals its stages run one by
// one through their own apply (tokens bit for bit, provenance composed by hand), the counts and
// grids each stage hands on, the assignment of grid stages on hand-computed cases, the chain
// invariants, the visionzip stage (equal to the policy run directly on any number of shares),
// and bad input.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include <tokred/tokred.hpp>
#include <tokred/cpu/pipeline.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace {

using namespace tokred;
using namespace tokred::testing;

/// One stage run through its own apply: its rows, its stage-local source and assign, its grid.
template <class E>
struct step {
  std::vector<E> tokens;
  std::vector<std::int64_t> source;  // (kept,) into the stage's input
  std::vector<std::int64_t> assign;  // (tokens,) slot of each input, or -1
  token_grid grid;
};

bool same_grid(const token_grid& a, const token_grid& b) {
  return a.frames == b.frames && a.height == b.height && a.width == b.width;
}

/// Assign of a selection written from its kept list.
std::vector<std::int64_t> assign_of(const std::vector<std::int64_t>& kept, index_t n) {
  std::vector<std::int64_t> a(static_cast<std::size_t>(n), -1);
  for (std::size_t j = 0; j < kept.size(); ++j) a[static_cast<std::size_t>(kept[j])] = static_cast<std::int64_t>(j);
  return a;
}

/// 2 × 2 average pooling, stride 2, floor mode, run alone; its assign by the non-overlapping
/// window rule (h/2, w/2), the cut-off border dropped.
template <class E>
step<E> pool_step(const view<const E, 2>& rows, const token_grid& g) {
  const pool p{};
  const token_grid out_grid = output_grid(p, g);
  const index_t kept = out_grid.tokens(), dim = rows.extent(1);
  step<E> s;
  s.tokens.resize(static_cast<std::size_t>(kept * dim));
  s.source.resize(static_cast<std::size_t>(kept));
  grid_inputs<E> in;
  in.grid = g;
  in.tokens = rows;
  grid_outputs<E> out;
  out.tokens = make_view(s.tokens.data(), kept, dim);
  out.source = make_view(s.source.data(), kept);
  REQUIRE(apply(cpu<>{}, p, in, out) == status::ok);
  for (index_t i = 0; i < g.tokens(); ++i) {
    const token_position x = g.position(i);
    const index_t h = x.h / 2, w = x.w / 2;
    s.assign.push_back(h < out_grid.height && w < out_grid.width ? (x.t * out_grid.height + h) * out_grid.width + w : -1);
  }
  s.grid = out_grid;
  return s;
}

template <class E>
step<E> tome_step(const view<const E, 2>& rows, const token_grid& g, const std::vector<float>& sizes, index_t r) {
  const tome p{r, 0};
  const index_t kept = retained_count(p, problem{g, rows.extent(1)}), dim = rows.extent(1);
  step<E> s;
  s.tokens.resize(static_cast<std::size_t>(kept * dim));
  s.source.resize(static_cast<std::size_t>(kept));
  s.assign.resize(static_cast<std::size_t>(g.tokens()));
  merge_inputs<E> in;
  in.grid = g;
  in.tokens = rows;
  in.sizes = make_view(sizes.data(), g.tokens());
  merge_outputs<E> out;
  out.tokens = make_view(s.tokens.data(), kept, dim);
  out.source = make_view(s.source.data(), kept);
  out.assign = make_view(s.assign.data(), g.tokens());
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, problem{g, dim}));
  REQUIRE(apply(cpu<>{}, p, in, out, workspace{ws.data(), ws.size()}) == status::ok);
  s.grid = sequence_grid(kept);
  return s;
}

template <class E, class P>
step<E> select_step(const P& p, const view<const E, 2>& rows, const token_grid& g, const std::vector<float>& scores) {
  const index_t kept = retained_count(p, problem{g, rows.extent(1)}), dim = rows.extent(1);
  step<E> s;
  s.tokens.resize(static_cast<std::size_t>(kept * dim));
  s.source.resize(static_cast<std::size_t>(kept));
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, problem{g, dim}));
  if constexpr (std::is_same_v<P, topk>) {
    selection_inputs<E> in;
    in.grid = g;
    in.tokens = rows;
    in.scores = make_view(scores.data(), g.tokens());
    selection_outputs<E> out;
    out.tokens = make_view(s.tokens.data(), kept, dim);
    out.source = make_view(s.source.data(), kept);
    REQUIRE(apply(cpu<>{}, p, in, out, workspace{ws.data(), ws.size()}) == status::ok);
  } else {
    diversity_inputs<E> in;
    in.grid = g;
    in.tokens = rows;
    diversity_outputs<E> out;
    out.tokens = make_view(s.tokens.data(), kept, dim);
    out.source = make_view(s.source.data(), kept);
    REQUIRE(apply(cpu<>{}, p, in, out, workspace{ws.data(), ws.size()}) == status::ok);
  }
  s.assign = assign_of(s.source, g.tokens());
  s.grid = p.within == scope::per_frame ? token_grid{g.frames, 1, kept / g.frames} : sequence_grid(kept);
  return s;
}

/// visionzip without a [CLS] row run alone on the stage's rows, with the scores carried to them;
/// its own assign (ToMe-style: every input's slot, −1 when contextual = 0 drops it).
template <class E>
step<E> vzip_step(const visionzip& p, const view<const E, 2>& rows, const token_grid& g, const std::vector<float>& scores) {
  const index_t dim = rows.extent(1), kept = retained_count(p, problem{g, dim});
  step<E> s;
  s.tokens.resize(static_cast<std::size_t>(kept * dim));
  s.source.resize(static_cast<std::size_t>(kept));
  s.assign.resize(static_cast<std::size_t>(g.tokens()));
  visionzip_inputs<E> in;
  in.grid = g;
  in.tokens = rows;
  in.scores = make_view(scores.data(), g.tokens());
  merge_outputs<E> out;
  out.tokens = make_view(s.tokens.data(), kept, dim);
  out.source = make_view(s.source.data(), kept);
  out.assign = make_view(s.assign.data(), g.tokens());
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, p, problem{g, dim}));
  REQUIRE(apply(cpu<>{}, p, in, out, workspace{ws.data(), ws.size()}) == status::ok);
  s.grid = sequence_grid(kept);
  return s;
}

/// The scores of the originals carried to a stage's tokens through the composed source.
std::vector<float> carried(const std::vector<float>& scores, const std::vector<std::int64_t>& source) {
  std::vector<float> out;
  for (std::int64_t src : source) out.push_back(scores[static_cast<std::size_t>(src)]);
  return out;
}

/// The chain's expected provenance from the steps: every original followed through each step's
/// assign; sizes counted as the originals that land in each slot; source chained back.
struct provenance {
  std::vector<std::int64_t> source, assign;
  std::vector<float> sizes;
};

template <class E>
provenance follow(const std::vector<const step<E>*>& steps, index_t n) {
  provenance p;
  for (index_t o = 0; o < n; ++o) {
    std::int64_t at = o;
    for (const step<E>* s : steps) at = at < 0 ? -1 : s->assign[static_cast<std::size_t>(at)];
    p.assign.push_back(at);
  }
  const std::size_t kept = steps.back()->source.size();
  p.sizes.assign(kept, 0.0f);
  for (std::int64_t a : p.assign)
    if (a >= 0) p.sizes[static_cast<std::size_t>(a)] += 1.0f;
  for (std::size_t j = 0; j < kept; ++j) {
    std::int64_t at = static_cast<std::int64_t>(j);
    for (auto s = steps.rbegin(); s != steps.rend(); ++s) at = (*s)->source[static_cast<std::size_t>(at)];
    p.source.push_back(at);
  }
  return p;
}

/// The outputs of a chain, sentinel-filled: a merge's five outputs.
template <class E>
struct chain_buffers : merge_buffers<E> {
  using merge_buffers<E>::merge_buffers;
  pipeline_outputs<E> outputs() { return merge_buffers<E>::template outputs<pipeline_outputs<E>>(); }
};

template <class P, class E>
status run(const P& p, const pipeline_inputs<E>& in, chain_buffers<E>& out, int nth = 1) {
  std::vector<std::byte> ws(workspace_bytes(cpu<>{0, 1}, p, problem{in.grid, in.tokens.extent(1)}));
  return apply(cpu<>{0, nth}, p, in, out.outputs(), workspace{ws.data(), ws.size()});
}

template <class E>
void require_same_bits(const std::vector<E>& a, const std::vector<E>& b) {
  REQUIRE(a.size() == b.size());
  REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(E)) == 0);
}

/// Sizes add up to the originals not dropped, and each output's source lands in that output.
template <class E>
void require_chain_invariants(const chain_buffers<E>& out) {
  const auto kept_originals = std::count_if(out.assign.begin(), out.assign.end(), [](std::int64_t a) { return a >= 0; });
  REQUIRE(std::accumulate(out.sizes.begin(), out.sizes.end(), 0.0) == static_cast<double>(kept_originals));
  for (std::size_t j = 0; j < out.source.size(); ++j)
    REQUIRE(out.assign[static_cast<std::size_t>(out.source[j])] == static_cast<std::int64_t>(j));
}

template <class E>
void require_chain_matches(const chain_buffers<E>& got, const step<E>& last, const provenance& want,
                           const token_grid& grid) {
  require_same_bits(got.tokens, last.tokens);
  REQUIRE(got.source == want.source);
  REQUIRE(got.assign == want.assign);
  REQUIRE(got.sizes == want.sizes);
  for (std::size_t j = 0; j < got.source.size(); ++j) {
    const token_position p = grid.position(want.source[j]);
    REQUIRE(got.positions[3 * j] == p.t);
    REQUIRE(got.positions[3 * j + 1] == p.h);
    REQUIRE(got.positions[3 * j + 2] == p.w);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("pipeline: pool | tome | divprune equals the stages run one by one", "[pipeline]", float, f16, bf16) {
  using E = TestType;
  for (const token_grid grid : {image_grid(24, 24), image_grid(27, 27), token_grid{4, 9, 10}}) {
    const index_t dim = 24, n = grid.tokens();
    const token_matrix<E> m = make_tokens<E>(n, dim, layout::strided, 7);
    const view<const E, 2> rows = m.rows;  // (tokens, dim)

    const step<E> s1 = pool_step(rows, grid);
    const std::vector<float> ones(static_cast<std::size_t>(s1.grid.tokens()), 1.0f);
    const step<E> s2 = tome_step(view<const E, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)), s1.grid, ones,
                                 s1.grid.tokens() / 3);
    const divprune d{keep_budget::count(s2.grid.tokens() / 2)};
    const step<E> s3 = select_step(d, view<const E, 2>(make_view(s2.tokens.data(), s2.grid.tokens(), dim)), s2.grid, {});

    const auto chain = make_pipeline(pool{}, tome{s1.grid.tokens() / 3, 0}, d);
    const problem prob{grid, dim};
    REQUIRE(can_implement(chain, prob) == status::ok);
    REQUIRE(retained_count(chain, prob) == s3.grid.tokens());
    REQUIRE(same_grid(output_grid(chain, prob), s3.grid));

    pipeline_inputs<E> in;
    in.grid = grid;
    in.tokens = rows;
    chain_buffers<E> out(s3.grid.tokens(), n, dim);
    REQUIRE(run(chain, in, out) == status::ok);
    require_chain_matches(out, s3, follow<E>({&s1, &s2, &s3}, n), grid);

    // Invariants: sizes add up to the originals not dropped; each output's source maps to it.
    const auto kept_originals = std::count_if(out.assign.begin(), out.assign.end(), [](std::int64_t a) { return a >= 0; });
    REQUIRE(std::accumulate(out.sizes.begin(), out.sizes.end(), 0.0) == static_cast<double>(kept_originals));
    for (std::size_t j = 0; j < out.source.size(); ++j)
      REQUIRE(out.assign[static_cast<std::size_t>(out.source[j])] == static_cast<std::int64_t>(j));
  }
}

TEST_CASE("pipeline: a second ToMe weighs its averages by the sizes the first one left", "[pipeline]") {
  const token_grid grid = image_grid(12, 12);
  const index_t dim = 16, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 3);
  const view<const float, 2> rows = m.rows;  // (tokens, dim)
  const std::vector<float> ones(static_cast<std::size_t>(n), 1.0f);
  const step<float> s1 = tome_step(rows, grid, ones, 50);
  // The sizes the second merge must see: how many originals each of s1's tokens holds.
  std::vector<float> sizes(s1.source.size(), 0.0f);
  for (std::int64_t a : s1.assign) sizes[static_cast<std::size_t>(a)] += 1.0f;
  const step<float> s2 = tome_step(view<const float, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)), s1.grid, sizes, 30);

  const auto chain = make_pipeline(tome{50, 0}, tome_share{0.32, 0}  /* floor(0.32 · 94) = 30 */);
  REQUIRE(retained_count(chain, problem{grid, dim}) == n - 80);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = rows;
  chain_buffers<float> out(n - 80, n, dim);
  REQUIRE(run(chain, in, out) == status::ok);
  require_chain_matches(out, s2, follow<float>({&s1, &s2}, n), grid);
  REQUIRE(*std::max_element(out.sizes.begin(), out.sizes.end()) > 2.0f);  // merges merged twice
}

TEST_CASE("pipeline: topk after pooling ranks each pooled token by its source's score", "[pipeline]") {
  const token_grid grid{2, 8, 8};
  const index_t dim = 8, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::reversed, 11);
  const view<const float, 2> rows = m.rows;  // (tokens, dim)
  const std::vector<float> scores = tie_heavy_scores(n, 5);

  const step<float> s1 = pool_step(rows, grid);
  std::vector<float> carried;
  for (std::int64_t src : s1.source) carried.push_back(scores[static_cast<std::size_t>(src)]);
  const topk t{keep_budget::count(5), scope::per_frame};
  const step<float> s2 = select_step(t, view<const float, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)), s1.grid, carried);
  REQUIRE(same_grid(s2.grid, token_grid{2, 1, 5}));

  const auto chain = make_pipeline(pool{}, t);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = rows;
  in.scores = make_view(scores.data(), n);
  chain_buffers<float> out(10, n, dim);
  REQUIRE(run(chain, in, out) == status::ok);
  require_chain_matches(out, s2, follow<float>({&s1, &s2}, n), grid);

  // Per-frame selections hand (T, 1, k) on: a per-frame pool after it has no 2 × 2 windows.
  REQUIRE(can_implement(make_pipeline(t, pool{}), problem{grid, dim}) == status::invalid_parameter);
  REQUIRE(retained_count(make_pipeline(t, pool{}), problem{grid, dim}) == 0);
  REQUIRE(same_grid(output_grid(make_pipeline(t, divprune{keep_budget::count(2), scope::per_frame}), problem{grid, dim}),
                    token_grid{2, 1, 2}));
}

TEST_CASE("pipeline: scored<token_norm, topk> ranks by the norms of the stage's own tokens", "[pipeline]") {
  const token_grid grid = image_grid(10, 10);
  const index_t dim = 12, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 21);
  const view<const float, 2> rows = m.rows;  // (tokens, dim)
  const step<float> s1 = pool_step(rows, grid);

  std::vector<float> norms(s1.source.size());
  feature_score_inputs<float> fi;
  fi.grid = s1.grid;
  fi.tokens = make_view(static_cast<const float*>(s1.tokens.data()), s1.grid.tokens(), dim);
  score_outputs<> fo;
  fo.scores = make_view(norms.data(), s1.grid.tokens());
  REQUIRE(apply(cpu<>{}, token_norm{}, fi, fo) == status::ok);
  const topk t{keep_budget::ratio(0.5, rounding::floor)};
  const step<float> s2 = select_step(t, view<const float, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)), s1.grid, norms);

  const auto chain = make_pipeline(pool{}, scored<token_norm, topk>{{}, t});
  pipeline_inputs<float> in;  // no scores: the scored stage makes its own
  in.grid = grid;
  in.tokens = rows;
  chain_buffers<float> out(12, n, dim);
  REQUIRE(retained_count(chain, problem{grid, dim}) == 12);
  REQUIRE(run(chain, in, out) == status::ok);
  require_chain_matches(out, s2, follow<float>({&s1, &s2}, n), grid);
}

TEMPLATE_TEST_CASE("pipeline: a visionzip stage is the policy run directly, on 1, 2 and 3 shares", "[pipeline][visionzip]",
                   float, f16, bf16) {
  using E = TestType;
  struct shape {
    token_grid grid;
    index_t dominant, contextual;
  };
  for (const shape c : {shape{image_grid(24, 24), 54, 10}, shape{image_grid(27, 27), 40, 12},
                        shape{token_grid{4, 9, 10}, 30, 6}, shape{image_grid(5, 5), 25, 0}}) {
    for (const contextual_merge merge : {contextual_merge::target_plus_mean, contextual_merge::group_mean}) {
      const token_grid grid = c.grid;
      const index_t dim = 40, n = grid.tokens(), kept = c.dominant + c.contextual;
      INFO("grid " << grid.frames << "x" << grid.height << "x" << grid.width << ", " << c.dominant << " + " << c.contextual);
      const token_matrix<E> m = make_tokens<E>(n, dim, layout::strided, 31);
      const std::vector<float> scores = tie_heavy_scores(n, 17);
      const visionzip p{c.dominant, c.contextual, false, merge};
      const auto chain = make_pipeline(p);
      const problem prob{grid, dim};
      REQUIRE(can_implement(chain, prob) == status::ok);
      REQUIRE(retained_count(chain, prob) == kept);
      REQUIRE(same_grid(output_grid(chain, prob), sequence_grid(kept)));

      pipeline_inputs<E> in;
      in.grid = grid;
      in.tokens = m.rows;
      in.scores = make_view(scores.data(), n);
      chain_buffers<E> got(kept, n, dim);
      REQUIRE(run(chain, in, got) == status::ok);
      require_chain_invariants(got);

      // Without a [CLS] row the policy's own positions are grid.position(source), and its sizes
      // count its input rows: all five outputs agree with the chain's, bit for bit.
      visionzip_inputs<E> vi;
      vi.grid = grid;
      vi.tokens = m.rows;
      vi.scores = in.scores;
      for (int nth : {1, 2, 3}) {
        INFO("nth " << nth);
        merge_buffers<E> direct(kept, n, dim);
        host_workspace ws(workspace_bytes(cpu<>{0, nth}, p, prob));
        for (int ith = nth - 1; ith >= 0; --ith)
          REQUIRE(apply(cpu<>{ith, nth}, p, vi, direct.outputs(), ws.get()) == status::ok);
        REQUIRE(direct.same_bits(got));
      }
    }
  }
}

TEMPLATE_TEST_CASE("pipeline: pool | visionzip | topk equals the stages run one by one", "[pipeline][visionzip]", float,
                   f16, bf16) {
  using E = TestType;
  for (const token_grid grid : {image_grid(24, 24), image_grid(27, 27), token_grid{4, 9, 10}}) {
    const index_t dim = 24, n = grid.tokens();
    const token_matrix<E> m = make_tokens<E>(n, dim, layout::reversed, 5);
    const view<const E, 2> rows = m.rows;  // (tokens, dim)
    const std::vector<float> scores = tie_heavy_scores(n, 23);

    const step<E> s1 = pool_step(rows, grid);
    const visionzip vz{s1.grid.tokens() / 4, s1.grid.tokens() / 10, false, contextual_merge::target_plus_mean};
    const step<E> s2 = vzip_step(vz, view<const E, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)), s1.grid,
                                 carried(scores, s1.source));
    // topk after visionzip ranks each output by the score of its original: a dominant token's,
    // or a contextual token's target's.
    const topk t{keep_budget::ratio(0.5, rounding::floor)};
    std::vector<std::int64_t> through;  // the originals s2's outputs stand on
    for (std::int64_t j : s2.source) through.push_back(s1.source[static_cast<std::size_t>(j)]);
    const step<E> s3 = select_step(t, view<const E, 2>(make_view(s2.tokens.data(), s2.grid.tokens(), dim)), s2.grid,
                                   carried(scores, through));

    const auto chain = make_pipeline(pool{}, vz, t);
    const problem prob{grid, dim};
    REQUIRE(retained_count(chain, prob) == s3.grid.tokens());
    REQUIRE(same_grid(output_grid(chain, prob), s3.grid));
    pipeline_inputs<E> in;
    in.grid = grid;
    in.tokens = rows;
    in.scores = make_view(scores.data(), n);
    chain_buffers<E> out(s3.grid.tokens(), n, dim);
    REQUIRE(run(chain, in, out) == status::ok);
    require_chain_matches(out, s3, follow<E>({&s1, &s2, &s3}, n), grid);
    require_chain_invariants(out);
  }
}

TEST_CASE("pipeline: visionzip after ToMe merges stage tokens unweighted and counts originals in sizes", "[pipeline][visionzip]") {
  const token_grid grid = image_grid(12, 12);
  const index_t dim = 16, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 8);
  const view<const float, 2> rows = m.rows;  // (tokens, dim)
  const std::vector<float> scores = tie_heavy_scores(n, 3);
  const std::vector<float> ones(static_cast<std::size_t>(n), 1.0f);
  const step<float> s1 = tome_step(rows, grid, ones, 40);
  const visionzip vz{20, 6, false, contextual_merge::group_mean};
  const step<float> s2 = vzip_step(vz, view<const float, 2>(make_view(s1.tokens.data(), s1.grid.tokens(), dim)),
                                   s1.grid, carried(scores, s1.source));

  const auto chain = make_pipeline(tome{40, 0}, vz);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = rows;
  in.scores = make_view(scores.data(), n);
  chain_buffers<float> out(26, n, dim);
  REQUIRE(run(chain, in, out) == status::ok);
  require_chain_matches(out, s2, follow<float>({&s1, &s2}, n), grid);
  require_chain_invariants(out);
  // Every original lands somewhere (contextual > 0), and some dominant token holds a ToMe merge.
  REQUIRE(std::accumulate(out.sizes.begin(), out.sizes.end(), 0.0) == static_cast<double>(n));
  REQUIRE(*std::max_element(out.sizes.begin(), out.sizes.begin() + 20) > 1.0f);
}

TEST_CASE("pipeline: visionzip with contextual = 0 keeps the dominant tokens and drops the rest", "[pipeline][visionzip]") {
  const token_grid grid{2, 6, 6};
  const index_t dim = 8, n = grid.tokens();
  const token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 4);
  std::vector<float> scores(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) scores[static_cast<std::size_t>(i)] = static_cast<float>(i % 7);  // 6 wins
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = m.rows;
  in.scores = make_view(scores.data(), n);
  chain_buffers<float> out(10, n, dim);
  REQUIRE(run(make_pipeline(visionzip{10, 0, false, contextual_merge::target_plus_mean}), in, out) == status::ok);
  // The ten 6s (i = 6, 13, …, 69) in row order, each standing for itself.
  for (index_t j = 0; j < 10; ++j) REQUIRE(out.source[static_cast<std::size_t>(j)] == 6 + 7 * j);
  REQUIRE(out.sizes == std::vector<float>(10, 1.0f));
  REQUIRE(std::count(out.assign.begin(), out.assign.end(), std::int64_t{-1}) == n - 10);
  require_chain_invariants(out);
}

TEST_CASE("pipeline: a visionzip stage's bad parameters and shapes get their status, outputs untouched", "[pipeline][visionzip][bad-input]") {
  const token_grid grid = image_grid(8, 8);
  const index_t dim = 8, n = grid.tokens();
  token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 2);
  const std::vector<float> scores(static_cast<std::size_t>(n), 1.0f);
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = m.rows;
  in.scores = make_view(scores.data(), n);
  const problem prob{grid, dim};
  const auto expect = [&](const auto& chain, status want, index_t kept) {
    REQUIRE(can_implement(chain, prob) == want);
    REQUIRE(retained_count(chain, prob) == 0);
    REQUIRE(workspace_bytes(cpu<>{}, chain, prob) == 0);
    chain_buffers<float> out(kept, n, dim);
    std::vector<std::byte> ws(1 << 16);
    REQUIRE(apply(cpu<>{}, chain, in, out.outputs(), workspace{ws.data(), ws.size()}) == want);
    REQUIRE(out.untouched());
  };
  // A chain's tokens have no [CLS] row: the policy's default cls_token = true is refused.
  expect(make_pipeline(visionzip{}), status::invalid_parameter, 64);
  expect(make_pipeline(pool{}, visionzip{4, 2, true, contextual_merge::target_plus_mean}), status::invalid_parameter, 6);
  expect(make_pipeline(visionzip{-1, 2, false, contextual_merge::group_mean}), status::invalid_parameter, 1);
  expect(make_pipeline(visionzip{0, 0, false, contextual_merge::group_mean}), status::invalid_budget, 1);
  // 16 pooled tokens: 12 + 5 is one too many; 12 + 4 keeps every one.
  expect(make_pipeline(pool{}, visionzip{12, 5, false, contextual_merge::group_mean}), status::budget_exceeds_input, 17);
  REQUIRE(retained_count(make_pipeline(pool{}, visionzip{12, 4, false, contextual_merge::group_mean}), prob) == 16);

  const auto chain = make_pipeline(pool{}, visionzip{6, 2, false, contextual_merge::target_plus_mean});
  REQUIRE(retained_count(chain, prob) == 8);
  {
    chain_buffers<float> out(8, n, dim);
    pipeline_inputs<float> no_scores = in;  // visionzip reads the carried scores
    no_scores.scores = {};
    REQUIRE(run(chain, no_scores, out) == status::shape_mismatch);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(8, n, dim);
    REQUIRE(run(chain, in, out, 2) == status::invalid_exec);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(8, n, dim);
    std::vector<std::byte> ws(workspace_bytes(cpu<>{}, chain, prob) - 1);
    REQUIRE(apply(cpu<>{}, chain, in, out.outputs(), workspace{ws.data(), ws.size()}) == status::workspace_too_small);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(8, n, dim);
    REQUIRE(run(chain, in, out) == status::ok);
    REQUIRE_FALSE(out.untouched());
  }
}

TEST_CASE("pipeline: grid stages assign every input to the cell that covers it", "[pipeline]") {
  // Width 7, kernel 3, stride 2, padding 1: windows [0, 2), [1, 4), [3, 6), [5, 7) once the
  // padding is clipped, middles (the sources) 0, 2, 4, 5. Token 5 lies in the last two windows
  // and is the last one's source, so it goes there; tokens 1 and 3 lie midway between two
  // middles and go to the lower window.
  const token_grid in = image_grid(1, 7);
  pool p;
  p.kernel = {1, 1, 3};
  p.stride = {1, 1, 2};
  p.padding = {0, 0, 1};
  const token_grid out = output_grid(p, in);
  REQUIRE(same_grid(out, image_grid(1, 4)));
  const std::int64_t want[] = {0, 0, 1, 1, 2, 3, 3};
  for (index_t i = 0; i < 7; ++i) REQUIRE(detail::stage_cell(p, in, out, i) == want[i]);

  // Floor mode cuts the last column of 27 off: its tokens are dropped.
  const token_grid wide = image_grid(2, 27);
  REQUIRE(detail::stage_cell(pool{}, wide, output_grid(pool{}, wide), 25) == 12);
  REQUIRE(detail::stage_cell(pool{}, wide, output_grid(pool{}, wide), 26) == -1);
  REQUIRE(detail::stage_cell(pool{}, wide, output_grid(pool{}, wide), 27 + 24) == 12);

  // Adaptive 5 -> 3: bins [0, 2), [1, 4), [3, 5), middles 0, 2, 3; token 3 is the last bin's.
  // Bilinear 5 -> 2: nearest taps 1 and 3; token 2 is midway and goes to the lower.
  const token_grid five = image_grid(1, 5);
  const adaptive_pool ap{pool_kind::average, {1, 1, 3}};
  const std::int64_t want_adaptive[] = {0, 0, 1, 2, 2};
  for (index_t i = 0; i < 5; ++i) REQUIRE(detail::stage_cell(ap, five, output_grid(ap, five), i) == want_adaptive[i]);
  const bilinear bl{1, 2, false};
  const std::int64_t want_bilinear[] = {0, 0, 0, 1, 1};
  for (index_t i = 0; i < 5; ++i) REQUIRE(detail::stage_cell(bl, five, output_grid(bl, five), i) == want_bilinear[i]);
  // DCT 5 -> 4: stretch centres 0, 1, 3, 4.
  const dct_lowpass dct{{1, 1, 4}};
  const std::int64_t want_dct[] = {0, 1, 1, 2, 3};
  for (index_t i = 0; i < 5; ++i) REQUIRE(detail::stage_cell(dct, five, output_grid(dct, five), i) == want_dct[i]);

  // The sizes of a chain are the originals per cell, and each output gets its own source.
  const token_matrix<float> m = make_tokens<float>(7, 4, layout::contiguous, 1);
  pipeline_inputs<float> pin;
  pin.grid = in;
  pin.tokens = m.rows;
  chain_buffers<float> o(4, 7, 4);
  REQUIRE(run(make_pipeline(p), pin, o) == status::ok);
  REQUIRE(o.sizes == std::vector<float>{2.0f, 2.0f, 1.0f, 2.0f});
  REQUIRE(o.assign == std::vector<std::int64_t>{0, 0, 1, 1, 2, 3, 3});
  require_chain_invariants(o);
}

/// One axis of a grid stage by brute force: of the outputs o that take x in, the first whose
/// representative is nearest; −1 when none does.
template <class Holds, class Rep>
index_t brute_cell(index_t x, index_t out, const Holds& holds, const Rep& rep) {
  index_t best = -1, gap = 0;
  for (index_t o = 0; o < out; ++o) {
    if (!holds(o)) continue;
    const index_t d = rep(o) > x ? rep(o) - x : x - rep(o);
    if (best < 0 || d < gap) {
      best = o;
      gap = d;
    }
  }
  return best;
}

/// A grid stage's cells against the brute force on every token, and, run as a chain, every
/// output whose source no other output shares is assigned that source.
template <class P, class Holds, class Rep>
void require_grid_stage_assign(const P& p, const token_grid& in, const Holds& holds, const Rep& rep) {
  const token_grid out = output_grid(p, in);
  REQUIRE(out.tokens() > 0);
  const index_t ext_in[3] = {in.frames, in.height, in.width}, ext_out[3] = {out.frames, out.height, out.width};
  for (index_t i = 0; i < in.tokens(); ++i) {
    const token_position x = in.position(i);
    const index_t at[3] = {x.t, x.h, x.w};
    index_t cell[3];
    for (int a = 0; a < 3; ++a)
      cell[a] = brute_cell(at[a], ext_out[a], [&](index_t o) { return holds(a, o, at[a], ext_in[a], ext_out[a]); },
                           [&](index_t o) { return rep(a, o, ext_in[a], ext_out[a]); });
    const index_t want = cell[0] < 0 || cell[1] < 0 || cell[2] < 0 ? -1 : detail::flat_index(out, cell[0], cell[1], cell[2]);
    REQUIRE(detail::stage_cell(p, in, out, i) == want);
  }
  const index_t dim = 3;
  const token_matrix<float> m = make_tokens<float>(in.tokens(), dim, layout::contiguous, 5);
  pipeline_inputs<float> pin;
  pin.grid = in;
  pin.tokens = m.rows;
  chain_buffers<float> o(out.tokens(), in.tokens(), dim);
  REQUIRE(run(make_pipeline(p), pin, o) == status::ok);
  const auto kept = std::count_if(o.assign.begin(), o.assign.end(), [](std::int64_t a) { return a >= 0; });
  REQUIRE(std::accumulate(o.sizes.begin(), o.sizes.end(), 0.0) == static_cast<double>(kept));
  for (std::size_t j = 0; j < o.source.size(); ++j)
    if (std::count(o.source.begin(), o.source.end(), o.source[j]) == 1)
      REQUIRE(o.assign[static_cast<std::size_t>(o.source[j])] == static_cast<std::int64_t>(j));
}

TEST_CASE("pipeline: a grid stage assigns each input to the nearest representative of the cells holding it", "[pipeline]") {
  rng r(91);
  const auto pick = [&r](index_t lo, index_t hi) { return lo + static_cast<index_t>(r.next() % static_cast<std::uint64_t>(hi - lo + 1)); };
  const auto holds_all = [](int, index_t, index_t, index_t, index_t) { return true; };
  for (int round = 0; round < 300; ++round) {
    const token_grid in{pick(1, 3), pick(1, 11), pick(1, 11)};
    CAPTURE(round, in.frames, in.height, in.width);
    {
      pool p;
      p.kernel = {pick(1, std::min<index_t>(in.frames, 2)), pick(1, std::min<index_t>(in.height, 4)), pick(1, std::min<index_t>(in.width, 4))};
      p.stride = {pick(1, 2), pick(1, 3), pick(1, 3)};
      p.padding = {pick(0, p.kernel.t / 2), pick(0, p.kernel.h / 2), pick(0, p.kernel.w / 2)};
      p.ceil_mode = r.next() % 2 == 1;
      const auto window = [&](int a, index_t o, index_t n) {
        return detail::pool_window_at(o, n, axis_of(p.kernel, a), axis_of(p.stride, a), axis_of(p.padding, a)).tokens;
      };
      if (detail::reduced_grid(p, in).code == status::ok)
        require_grid_stage_assign(
            p, in, [&](int a, index_t o, index_t x, index_t n, index_t) { const auto w = window(a, o, n); return w.begin <= x && x < w.end; },
            [&](int a, index_t o, index_t n, index_t) { return detail::middle(window(a, o, n)); });
    }
    {
      const adaptive_pool ap{pool_kind::max, {pick(1, in.frames + 1), pick(1, in.height + 3), pick(1, in.width + 3)}};
      require_grid_stage_assign(
          ap, in,
          [](int, index_t o, index_t x, index_t n, index_t m) { const auto b = detail::adaptive_bin(o, n, m); return b.begin <= x && x < b.end; },
          [](int, index_t o, index_t n, index_t m) { return detail::middle(detail::adaptive_bin(o, n, m)); });
    }
    {
      const bilinear bl{pick(1, in.height + 3), pick(1, in.width + 3), r.next() % 2 == 1};
      require_grid_stage_assign(bl, in, holds_all, [&](int a, index_t o, index_t n, index_t m) {
        return a == 0 ? o : detail::bilinear_nearest_tap(o, n, m, bl.align_corners);
      });
    }
    {
      const dct_lowpass dct{{in.frames, pick(1, in.height), pick(1, in.width)}};
      require_grid_stage_assign(dct, in, holds_all,
                                [](int, index_t o, index_t n, index_t m) { return detail::stretch_centre(o, n, m); });
    }
  }
}

TEST_CASE("pipeline: bad input gets a status and leaves every output untouched", "[pipeline]") {
  const token_grid grid = image_grid(8, 8);
  const index_t dim = 8, n = grid.tokens();
  token_matrix<float> m = make_tokens<float>(n, dim, layout::contiguous, 2);
  const std::vector<float> scores(static_cast<std::size_t>(n), 1.0f);
  const auto chain = make_pipeline(pool{}, topk{keep_budget::count(4)});
  pipeline_inputs<float> in;
  in.grid = grid;
  in.tokens = m.rows;
  in.scores = make_view(scores.data(), n);
  const problem prob{grid, dim};
  const std::size_t need = workspace_bytes(cpu<>{}, chain, prob);
  REQUIRE(need > 0);

  {
    chain_buffers<float> out(4, n, dim);
    REQUIRE(run(chain, in, out, 2) == status::invalid_exec);
    REQUIRE(out.untouched());
    REQUIRE(workspace_bytes(cpu<>{0, 2}, chain, prob) == 0);
  }
  {
    chain_buffers<float> out(4, n, dim);
    pipeline_inputs<float> no_scores = in;
    no_scores.scores = {};
    REQUIRE(run(chain, no_scores, out) == status::shape_mismatch);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(5, n, dim);  // one row too many
    REQUIRE(run(chain, in, out) == status::shape_mismatch);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(4, n, dim);
    std::vector<std::byte> ws(need - 1);
    REQUIRE(apply(cpu<>{}, chain, in, out.outputs(), workspace{ws.data(), ws.size()}) == status::workspace_too_small);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(4, n, dim);
    pipeline_outputs<float> o = out.outputs();
    o.tokens = make_view(m.storage.data(), 4, dim);  // writes over the input rows
    std::vector<std::byte> ws(need);
    REQUIRE(apply(cpu<>{}, chain, in, o, workspace{ws.data(), ws.size()}) == status::aliasing);
    REQUIRE(out.untouched());
  }
  {
    chain_buffers<float> out(4, n, dim);
    const auto too_many = make_pipeline(pool{}, topk{keep_budget::count(17)});  // 16 pooled tokens
    REQUIRE(can_implement(too_many, prob) == status::budget_exceeds_input);
    REQUIRE(run(too_many, in, out) == status::budget_exceeds_input);
    REQUIRE(out.untouched());
  }
  REQUIRE(can_implement(chain, problem{token_grid{}, dim}) == status::empty_input);
  REQUIRE(can_implement(chain, problem{grid, 0}) == status::empty_input);
  REQUIRE(can_implement(make_pipeline(tome_share{1.5, 0}), prob) == status::invalid_ratio);

  // Stages that may leave outputs standing for no original (size 0) before ToMe, which refuses
  // such sizes: refused from the shapes alone.
  CHECK(can_implement(make_pipeline(bilinear{16, 16}, tome{4}), prob) == status::invalid_parameter);
  CHECK(can_implement(make_pipeline(bilinear{16, 16}, topk{keep_budget::count(4)}, tome_share{0.5, 0}), prob) ==
        status::invalid_parameter);
  CHECK(can_implement(make_pipeline(bilinear{4, 4}, tome{4}), prob) == status::ok);
  CHECK(can_implement(make_pipeline(bilinear{16, 16}, topk{keep_budget::count(4)}), prob) == status::ok);
  divprune repeating{keep_budget::count(8)};
  repeating.allow_repeats = true;
  CHECK(can_implement(make_pipeline(repeating, tome{2}), prob) == status::invalid_parameter);
  CHECK(can_implement(make_pipeline(divprune{keep_budget::count(8)}, tome{2}), prob) == status::ok);
  {
    chain_buffers<float> out(60, n, dim);
    const auto upsampled = make_pipeline(bilinear{16, 16}, tome{196});
    REQUIRE(run(upsampled, in, out) == status::invalid_parameter);
    REQUIRE(out.untouched());
  }
  // A stage of more rows than an index can address: refused before any size is formed.
  const auto huge = make_pipeline(bilinear{index_t{1} << 31, index_t{1} << 31}, tome{1});
  CHECK(can_implement(huge, problem{grid, 4096}) == status::shape_mismatch);
  CHECK(workspace_bytes(cpu<>{}, huge, problem{grid, 4096}) == 0);
}
