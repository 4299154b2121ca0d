// tests/cpu/interop_topk.hpp — what the adapter tests share: a topk run over any pair of views,
// so a reduction through adapted views can be compared with one through direct views, bit for bit.
#pragma once

#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"

namespace tokred::testing {

/// Everything a topk writes: the kept rows, their source indices and positions.
template <class E>
struct topk_run {
  std::vector<E> rows;
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;
};

/// topk keeping `keep` of `tokens` (tokens, dim) by `scores` (tokens,), as `nth` shares.
template <class E>
topk_run<E> run_topk(const view<const E, 2>& tokens, const view<const float, 1>& scores,
                     index_t keep, int nth) {
  const topk policy{keep_budget::count(keep)};
  const problem prob{sequence_grid(tokens.extent(0)), tokens.extent(1)};
  selection_buffers<E> got(keep, tokens.extent(1));
  host_workspace ws(workspace_bytes(cpu{0, nth}, policy, prob));
  const selection_inputs<E> in{prob.grid, scores, tokens};
  for (int ith = 0; ith < nth; ++ith)
    REQUIRE(apply(cpu{ith, nth}, policy, in, got.outputs(), ws.get()) == status::ok);
  return {got.tokens, got.source, got.positions};
}

/// True when two runs kept the same tokens with the same bits.
template <class E>
bool same_run(const topk_run<E>& a, const topk_run<E>& b) {
  if (a.source != b.source || a.positions != b.positions || a.rows.size() != b.rows.size())
    return false;
  for (std::size_t i = 0; i < a.rows.size(); ++i)
    if (bits_of(a.rows[i]) != bits_of(b.rows[i])) return false;
  return true;
}

}  // namespace tokred::testing
