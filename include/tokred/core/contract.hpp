// tokred/core/contract.hpp — the free functions every policy offers, routed to its backend.
//
// Every policy `P` answers the same four questions:
//   retained_count(P, problem)            how many tokens come out (pure, host-side, exact)
//   can_implement(P, problem)             whether the parameters fit the problem (a status)
//   workspace_bytes(exec, P, problem)     the scratch bytes `apply` needs on that exec
//   apply(exec, P, inputs, outputs, ws)   run it: never allocates, never throws
// The first two are declared beside each policy in `<tokred/policy/...>`; the last two are
// declared here once and forwarded to `backend<P, Exec>`. `gather` is the one exception to the
// first: it keeps what its caller's index list names, so its count is that list's length.
#pragma once

#include <cstddef>
#include <type_traits>

#include "tokred/core/exec.hpp"
#include "tokred/core/grid.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/workspace.hpp"

namespace tokred {

/// The shape facts a policy needs before any data exists: the token grid and the row width.
struct problem {
  token_grid grid;  ///< (T, H, W); N = T·H·W tokens
  index_t dim = 0;  ///< D, elements per token row
};

/// Scratch bytes `apply(exec, policy, …)` needs for `prob`, computed by the carve-up that
/// `apply` itself runs. Depends on `exec` (e.g. `nth` for CPU shares). 0 means none.
template <class Exec, class Policy>
std::size_t workspace_bytes(const Exec& exec, const Policy& policy, const problem& prob) {
  return backend<Policy, Exec>::workspace_bytes(exec, policy, prob);
}

/// Runs `policy` on `exec`. Inputs and outputs are the policy's own structs of views, all in
/// `Exec::space` memory. Returns `status::ok`, or the first failed check with nothing written.
template <class Exec, class Policy, class Inputs, class Outputs>
status apply(const Exec& exec, const Policy& policy, const Inputs& inputs, const Outputs& outputs,
             workspace ws = {}) {
  static_assert(std::is_same_v<typename Inputs::space, typename Exec::space> &&
                    std::is_same_v<typename Outputs::space, typename Exec::space>,
                "tokred: the views' memory space does not match the exec (host views need "
                "tokred::cpu, device views need tokred::cuda)");
  return backend<Policy, Exec>::apply(exec, policy, inputs, outputs, ws);
}

}  // namespace tokred
