// tests/support/selection_runs.hpp — running a policy whose outputs are those of a selection as
// several shares, into sentinel-filled buffers.
#pragma once

#include <tokred/core/contract.hpp>
#include <tokred/core/exec.hpp>

#include "support/buffers.hpp"
#include "support/catch.hpp"

namespace tokred::testing {

/// Runs `p` on `prob` as `nth` shares (in reverse order) into sentinel-filled selection outputs of
/// `retained_count(p, prob)` rows; every share must return `ok`.
template <class Eout, class P, class In>
selection_buffers<Eout> run_selection_shares(const P& p, const In& in, const problem& prob, int nth = 1) {
  selection_buffers<Eout> out(retained_count(p, prob), prob.dim);
  host_workspace ws(workspace_bytes(cpu{0, nth}, p, prob));
  for (int ith = nth - 1; ith >= 0; --ith) REQUIRE(apply(cpu{ith, nth}, p, in, out.outputs(), ws.get()) == status::ok);
  return out;
}

}  // namespace tokred::testing
