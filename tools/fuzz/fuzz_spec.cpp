// tools/fuzz/fuzz_spec.cpp — fuzzes the pipeline spec parser. Any input must parse or give an
// error with an offset inside the spec; a parsed pipeline's canonical form must parse back to
// itself, and its shape rules (retained_count, can_implement) must agree on a few problems.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <tokred/policy/pipeline_spec.hpp>

#include "fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tokred;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const spec_result r = parse_pipeline(text);
  if (!r.ok()) {
    TOKRED_FUZZ_CHECK(r.offset <= size && r.pipeline.stages.empty());
    return 0;
  }
  const any_pipeline& p = r.pipeline;
  TOKRED_FUZZ_CHECK(p.stage_count() >= 1 && p.canonical.size() == p.stage_count());
  const std::string canonical = p.spec();
  const spec_result again = parse_pipeline(canonical);
  TOKRED_FUZZ_CHECK(again.ok());
  TOKRED_FUZZ_CHECK(again.pipeline.spec() == canonical);

  const problem problems[] = {{image_grid(24, 24), 64}, {token_grid{8, 12, 12}, 16}, {sequence_grid(1), 4},
                              {image_grid(27, 27), 1}, {token_grid{0, 0, 0}, 8}};
  for (const problem& prob : problems) {
    const status code = can_implement(p, prob);
    const index_t kept = retained_count(p, prob);
    TOKRED_FUZZ_CHECK((code == status::ok) == (kept > 0));  // 0 exactly when it cannot run
    TOKRED_FUZZ_CHECK(can_implement(again.pipeline, prob) == code);
    TOKRED_FUZZ_CHECK(retained_count(again.pipeline, prob) == kept);
    if (code != status::ok) TOKRED_FUZZ_CHECK(failing_stage(p, prob) < p.stage_count());
  }
  return 0;
}
