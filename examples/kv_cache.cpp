// kv_cache.cpp — a KV cache quantized to llama.cpp's block formats, rotated first as llama.cpp
// does, and read back. The docs quote the regions between the example markers verbatim; the checks
// around them make sure the comments in those regions tell the truth.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tokred/tokred.hpp>

#include "scene_checks.hpp"

int main() {
  using scene::check;

  // A small fp16 key cache: 4 heads, 8 tokens, head_dim 128.
  std::vector<tokred::f16> keys(4 * 8 * 128);
  for (std::size_t i = 0; i < keys.size(); ++i)
    keys[i] = tokred::from_float<tokred::f16>(std::sin(0.37f * static_cast<float>(i)));

  // example-begin ggml-quantize
  // (heads, tokens, head_dim) fp16 keys -> q4_0 blocks, 4 per row, exactly as ggml writes them.
  const tokred::index_t heads = 4, tokens = 8, head_dim = 128;
  const tokred::ggml_quantize q4{tokred::ggml_type::q4_0};
  const tokred::index_t row = tokred::ggml_row_bytes(q4.type, head_dim);  // 4 blocks of 18 B = 72

  std::vector<std::uint8_t> packed(heads * tokens * row);  // (heads, tokens, row bytes)
  const tokred::kv_inputs<tokred::f16> in{tokred::make_view(keys.data(), heads, tokens, head_dim)};
  const tokred::kv_block_outputs<> out{tokred::make_view(packed.data(), heads, tokens, row)};
  tokred::status s = tokred::apply(tokred::cpu{}, q4, in, out);  // no workspace needed
  // example-end ggml-quantize
  check(s == tokred::status::ok && row == 72, "q4_0 quantize");

  // example-begin ggml-dequantize
  std::vector<float> restored(heads * tokens * head_dim);  // (heads, tokens, head_dim)
  s = tokred::apply(tokred::cpu{}, tokred::ggml_dequantize{tokred::ggml_type::q4_0},
                    tokred::kv_block_inputs<>{out.blocks},
                    tokred::kv_outputs<float>{tokred::make_view(restored.data(), heads, tokens, head_dim)});
  // example-end ggml-dequantize
  check(s == tokred::status::ok, "q4_0 dequantize");
  double worst = 0.0;  // a NaN difference becomes the worst, and fails the check
  for (std::size_t i = 0; i < restored.size(); ++i) {
    const double e = std::fabs(restored[i] - tokred::to_float(keys[i]));
    if (!(e <= worst)) worst = e;
  }
  check(worst <= 1.0 / 8.0 + 1e-3, "q4_0 error at most one step (|x| <= 1: d <= 1/8)");

  // example-begin ggml-cells
  // llama.cpp's K cache stores one row per token (cell) holding all heads: strides (D, H·D, 1)
  // on the float side and (row, H·row, 1) on the packed side. q8_0 here, rotated in blocks of
  // 128 channels first, as llama.cpp does for quantized caches.
  const tokred::index_t r8 = tokred::ggml_row_bytes(tokred::ggml_type::q8_0, head_dim);  // 136
  std::vector<std::uint8_t> cells(tokens * heads * r8);                                  // ggml tensor data
  const tokred::view<const tokred::f16, 3> k_cells(keys.data(), {heads, tokens, head_dim},
                                                   {head_dim, heads * head_dim, 1});
  const tokred::view<std::uint8_t, 3> b_cells(cells.data(), {heads, tokens, r8}, {r8, heads * r8, 1});
  s = tokred::apply(tokred::cpu{}, tokred::ggml_quantize{tokred::ggml_type::q8_0, /*rotation=*/128},
                    tokred::kv_inputs<tokred::f16>{k_cells}, tokred::kv_block_outputs<>{b_cells});
  // example-end ggml-cells
  check(s == tokred::status::ok, "q8_0 cells with rotation");

  // example-begin hadamard
  // Rotate a cache in place (orthonormal: norms and dot products are kept; twice = identity).
  const tokred::view<float, 3> cache = tokred::make_view(restored.data(), heads, tokens, head_dim);
  s = tokred::apply(tokred::cpu{}, tokred::hadamard{/*block=*/64}, tokred::kv_inputs<float>{cache},
                    tokred::kv_outputs<float>{cache});
  // example-end hadamard
  check(s == tokred::status::ok, "hadamard in place");

  // example-begin ggml-bad-input
  // head_dim must be a multiple of 32 (ggml's block): refused before anything is written.
  const tokred::status bad = tokred::can_implement(q4, tokred::kv_problem{heads, tokens, 80});
  // bad == tokred::status::invalid_parameter
  // example-end ggml-bad-input
  check(bad == tokred::status::invalid_parameter, "head_dim 80 refused");

  return scene::finish();
}
