// tests/support/diversity.hpp — what the diversity and DPP tests share: sentinel-filled outputs
// with the pick order, a runner over CPU shares, and inputs with few near-ties.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/cases.hpp"
#include "support/catch.hpp"

namespace tokred::testing {

/// Outputs of a diversity selection, sentinel-filled, plus the pick order.
template <class E>
struct diversity_buffers : selection_buffers<E> {
  std::vector<std::int64_t> picks;
  diversity_buffers(index_t kept, index_t dim)
      : selection_buffers<E>(kept, dim), picks(static_cast<std::size_t>(kept), -1) {}
  diversity_outputs<E> outputs() {
    return {selection_buffers<E>::outputs(), make_view(picks.data(), this->kept)};
  }
  bool untouched() const {
    return selection_buffers<E>::untouched() &&
           std::all_of(picks.begin(), picks.end(), [](std::int64_t p) { return p == -1; });
  }
};

/// Runs the policy as `nth` shares (in reverse order) and returns the outputs.
template <class Ein, class Eout, class P>
diversity_buffers<Eout> run_shares(const P& p, const diversity_inputs<Ein>& in, index_t dim, int nth = 1) {
  const problem prob{in.grid, dim};
  const index_t kept = retained_count(p, prob);
  REQUIRE(kept > 0);
  diversity_buffers<Eout> out(kept, dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith)
    REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

/// Token rows with continuous values (few near-ties), in one of the case layouts.
template <class E>
token_matrix<E> continuous_rows(index_t n, index_t dim, layout how, std::uint64_t seed) {
  token_matrix<E> m = make_tokens<E>(n, dim, how, seed);
  rng r(seed * 7 + 1);
  for (index_t i = 0; i < n; ++i) {
    const float offset = r.uniform();  // a shared component, so cosines spread over (-1, 1)
    for (index_t c = 0; c < dim; ++c) m.rows(i, c) = from_float<E>(offset + 0.6f * r.uniform());
  }
  return m;
}

/// fp32 rows holding exactly the values of `m` (widened by to_float), in the same layout.
template <class E>
token_matrix<float> widened(const token_matrix<E>& m, layout how) {
  const index_t n = m.rows.extent(0), dim = m.rows.extent(1);
  token_matrix<float> f = make_tokens<float>(n, dim, how, 0);
  for (index_t i = 0; i < n; ++i)
    for (index_t c = 0; c < dim; ++c) f.rows(i, c) = to_float(m.rows(i, c));
  return f;
}

/// A max-min policy keeping `ratio` of each group of `within` (Python rounding).
template <class P>
P ratio_policy(double ratio, scope within) {
  P p{};
  p.keep = keep_budget::ratio(ratio, rounding::half_even);
  p.within = within;
  return p;
}

/// The cdpruner layouts the DPP tests run on one case: both scopes, split or not, keeping 5 % of
/// a large group and a quarter of a small one (the oracle is O(k·n·k²)); `visit(p)` for each the
/// grid can implement (openvino kernel, weight 0.5).
template <class Visit>
void for_each_dpp_layout(const shape_case& c, const Visit& visit) {
  const double ratio = c.grid.tokens() > 300 ? 0.05 : 0.25;
  for (const scope within : {scope::global, scope::per_frame})
    for (const bool split : {false, true}) {
      cdpruner p{keep_budget::ratio(ratio, rounding::half_away)};
      p.within = within;
      p.split = split;
      if (can_implement(p, problem{c.grid, c.dim}) == status::ok) visit(p);
    }
}

/// Importance scores in [0.5, 1).
inline std::vector<float> importance(index_t n, std::uint64_t seed) {
  rng r(seed);
  std::vector<float> w(static_cast<std::size_t>(n));
  for (auto& x : w) x = 0.5f + 0.5f * r.uniform();
  return w;
}

}  // namespace tokred::testing
