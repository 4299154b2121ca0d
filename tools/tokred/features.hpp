// tools/tokred/features.hpp — what the program reduces: token rows with their (T, H, W) grid,
// and the optional scores and query rows, read from .npy, .npz members or .safetensors tensors.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <tokred/core/grid.hpp>

namespace tokred::io {
struct tensor_spec;  // io/tensor_file.hpp
}  // namespace tokred::io

namespace tokred::cli {

/// The element type a reduction computes on (the library's fp32, fp16 or bf16 storage).
enum class element { f32, f16, bf16 };

const char* name_of(element e);
/// "f32", "f16" or "bf16" (also "float32", "float16", "bfloat16"); false for anything else.
bool parse_element(const std::string& text, element& out);

/// Token rows: (N, D) float32 in the row-major (T, H, W) order, and the grid they lie on.
struct token_input {
  std::string name;                 ///< the file's stem, or STEM:NAME for a tensor of an archive
  std::string spec;                 ///< what was read: PATH, PATH.npz:NAME or PATH.safetensors:NAME
  std::vector<std::int64_t> shape;  ///< the tensor's shape as stored
  element stored = element::f32;    ///< the tensor's element type as stored
  token_grid grid;
  index_t dim = 0;
  std::vector<float> tokens;  ///< (N, D), exact conversions from the stored type
};

/// "T<times>H<times>W": "1x17x17" in messages, "1×17×17" in the report.
std::string grid_text(const token_grid& g, const char* times = "x");

/// "T,H,W" (also "TxHxW") into a grid; an error message, empty on success.
std::string parse_grid(const std::string& text, token_grid& out);

/// Reads tokens shaped (N, D), (T, N, D) or (T, H, W, D). The grid comes from the shape: (T, H, W)
/// as stored; for (T, N, D) and (N, D), H = W = sqrt(N) when N is a square, else (T, 1, N). A given
/// `grid` overrides that and must hold exactly the stored tokens (and T frames for (T, N, D) and
/// (T, H, W, D)). Returns an error message, empty on success.
std::string load_tokens(const std::string& spec, const std::optional<token_grid>& grid, token_input& out);
/// The same for a spec already split (the files `tokred bench` lists).
std::string load_tokens(const io::tensor_spec& spec, const std::optional<token_grid>& grid, token_input& out);

/// Reads one score per token (any shape holding exactly `tokens` values); float32, float16 or bf16.
std::string load_scores(const std::string& spec, index_t tokens, std::vector<float>& out);

/// Reads query rows shaped (M, D) or (D,) with D = `dim`; `rows` gets M.
std::string load_query(const std::string& spec, index_t dim, std::vector<float>& out, index_t& rows);

}  // namespace tokred::cli
