// tests/cpu/test_golden_fastv.cpp — topk + gather reproduce FastV's original outputs: the kept
// image tokens (set and order), their hidden-state rows, and the count rule of each variant.
#include <cstdint>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "io/npy.hpp"
#include "support/buffers.hpp"
#include "support/catch.hpp"
#include "support/golden.hpp"

namespace {

using namespace tokred;
using testing::json_int;

void check_case(const std::string& name, const keep_budget& keep) {
  const std::string dir = testing::golden_case("fastv_topk", name);
  const io::npy_array scores = testing::load_npy(dir + "scores.npy");     // (N,) float32
  const io::npy_array hidden = testing::load_npy(dir + "input.npy");      // (L, D) float32, image at [s, s+N)
  const io::npy_array kept_ref = testing::load_npy(dir + "kept_indices.npy");  // (k,) int64, ascending
  const io::npy_array rows_ref = testing::load_npy(dir + "tokens.npy");   // (k, D) float32
  REQUIRE(scores.dtype == "<f4");
  REQUIRE(kept_ref.dtype == "<i8");
  const index_t n = scores.shape.at(0), dim = hidden.shape.at(1);
  const index_t start = json_int(dir, "sys_length / image_token_start_index");
  const token_grid grid{1, 24, 24};
  REQUIRE(grid.tokens() == n);

  const topk policy{keep};
  const index_t kept = retained_count(policy, problem{grid, dim});
  CHECK(kept == json_int(dir, "k"));
  REQUIRE(kept == kept_ref.shape.at(0));

  const std::vector<float> s = scores.as<float>();
  const std::vector<float> h = hidden.as<float>();
  // The image span is a view into the whole sequence's hidden states: no copy.
  const view<const float, 2> image_rows = make_view(h.data() + start * dim, n, dim);  // (N, D)
  testing::selection_buffers<float> out(kept, dim);
  testing::host_workspace ws(workspace_bytes(cpu{}, policy, problem{grid, dim}));
  REQUIRE(apply(cpu{}, policy, selection_inputs<float>{grid, make_view(s.data(), n), image_rows},
                out.outputs(), ws.get()) == status::ok);
  CHECK(out.source == kept_ref.as<std::int64_t>());
  CHECK(out.tokens == rows_ref.as<float>());
}

}  // namespace

TEST_CASE("FastV original: fast_v_attention_rank = 288 of 576, system prompt 36", "[golden][fastv]") {
  check_case("c01_orig_n576_sys36_rank288", keep_budget::count(288));
}

TEST_CASE("FastV llava-hf: round(576 * (1 - 0.75)) = 144, prompt offset 5", "[golden][fastv]") {
  check_case("c02_hf_n576_start5_R075", keep_budget::ratio(1.0 - 0.75, rounding::half_even));
}
