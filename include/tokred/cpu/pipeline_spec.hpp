// tokred/cpu/pipeline_spec.hpp — the CPU backend of any_pipeline, the run-time chain a spec
// string builds: the same chain runner as pipeline<Stages...>, over a vector of stages.
#pragma once

#include "tokred/cpu/pipeline.hpp"
#include "tokred/policy/pipeline_spec.hpp"

namespace tokred {

/// A run-time pipeline on CPU: as pipeline<Stages...> (one share; `invalid_parameter` when it has
/// no stage).
template <class Arch>
struct backend<any_pipeline, cpu<Arch>> {
  static std::size_t workspace_bytes(const cpu<Arch>& exec, const any_pipeline& p, const problem& prob) {
    return detail::chain_workspace_bytes(exec, p, prob);
  }

  template <class Ein, class Eout>
  static status apply(const cpu<Arch>& exec, const any_pipeline& p, const pipeline_inputs<Ein>& in,
                      const pipeline_outputs<Eout>& out, workspace ws) {
    return detail::run_chain(exec, p, in, out, ws);
  }
};

}  // namespace tokred
