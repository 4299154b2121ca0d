// tools/tokred/features.cpp — reading token rows, scores and queries (see features.hpp).
#include "tokred/features.hpp"

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "io/tensor_file.hpp"

namespace tokred::cli {

const char* name_of(element e) {
  switch (e) {
    case element::f32: return "f32";
    case element::f16: return "f16";
    case element::bf16: return "bf16";
  }
  return "?";
}

bool parse_element(const std::string& text, element& out) {
  if (text == "f32" || text == "float32") return out = element::f32, true;
  if (text == "f16" || text == "float16") return out = element::f16, true;
  if (text == "bf16" || text == "bfloat16") return out = element::bf16, true;
  return false;
}

namespace {

/// A positive integer with no sign, spaces or trailing characters, below 2^31.
bool parse_extent(const std::string& text, index_t& out) {
  if (text.empty() || text.size() > 10) return false;
  std::int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > std::numeric_limits<std::int32_t>::max()) return false;
  out = static_cast<index_t>(v);
  return true;
}

/// The side of a square holding n tokens, or 0.
index_t square_side(std::int64_t n) {
  const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return side * side == n ? static_cast<index_t>(side) : 0;
}

using io::detail::shape_text;

/// Reads `spec` and converts it to float32; `what` names the input in messages.
std::string load_floats(const io::tensor_spec& spec, const char* what, io::host_tensor& tensor,
                        std::vector<float>& values) {
  if (std::string e = io::load_tensor(spec, tensor); !e.empty()) return fmt::format("{}: {}", what, e);
  if (tensor.dtype != "f32" && tensor.dtype != "f16" && tensor.dtype != "bf16")
    return fmt::format("{}: {} holds {} values; float32, float16 or bfloat16 expected", what, spec.text(),
                       tensor.dtype);
  if (std::string e = io::to_float32(tensor, values); !e.empty()) return fmt::format("{}: {}", what, e);
  return {};
}

/// The grid a shape implies (see load_tokens), or an error.
std::string infer_grid(const std::vector<std::int64_t>& shape, const std::optional<token_grid>& given,
                       token_grid& grid) {
  const std::int64_t frames = shape.size() >= 3 ? shape[0] : 1;
  std::int64_t tokens = 1;
  for (std::size_t i = 0; i + 1 < shape.size(); ++i) tokens *= shape[i];
  if (tokens > std::numeric_limits<std::int32_t>::max())
    return fmt::format("{} tokens are more than tokred indexes ({})", tokens,
                       std::numeric_limits<std::int32_t>::max());
  if (given) {
    if (given->tokens() != tokens)
      return fmt::format("--grid {}x{}x{} holds {} tokens, the input {}", given->frames, given->height,
                         given->width, given->tokens(), tokens);
    if (shape.size() >= 3 && given->frames != frames)
      return fmt::format("--grid has {} frames, the input {}", given->frames, frames);
    if (shape.size() == 4 && (given->height != shape[1] || given->width != shape[2]))
      return fmt::format("--grid {}x{} frames differ from the input's {}x{}", given->height, given->width,
                         shape[1], shape[2]);
    grid = *given;
    return {};
  }
  if (shape.size() == 4) {
    grid = {static_cast<index_t>(shape[0]), static_cast<index_t>(shape[1]), static_cast<index_t>(shape[2])};
    return {};
  }
  const std::int64_t per_frame = tokens / frames;
  const index_t side = square_side(per_frame);
  grid = side ? token_grid{static_cast<index_t>(frames), side, side}
              : token_grid{static_cast<index_t>(frames), 1, static_cast<index_t>(per_frame)};
  return {};
}

std::string load_floats(const std::string& spec, const char* what, io::host_tensor& tensor,
                        std::vector<float>& values) {
  io::tensor_spec parts;
  if (std::string e = io::split_tensor_spec(spec, parts); !e.empty()) return fmt::format("{}: {}", what, e);
  return load_floats(parts, what, tensor, values);
}

}  // namespace

std::string grid_text(const token_grid& g, const char* times) {
  return fmt::format("{}{}{}{}{}", g.frames, times, g.height, times, g.width);
}

std::string parse_grid(const std::string& text, token_grid& out) {
  std::vector<index_t> extents;
  std::size_t begin = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != ',' && text[i] != 'x') continue;
    index_t v = 0;
    if (!parse_extent(text.substr(begin, i - begin), v))
      return fmt::format("--grid '{}': expected T,H,W with positive integers", text);
    extents.push_back(v);
    begin = i + 1;
  }
  if (extents.size() != 3) return fmt::format("--grid '{}': expected three extents T,H,W", text);
  const token_grid g{extents[0], extents[1], extents[2]};
  if (static_cast<std::int64_t>(g.frames) * g.height * g.width > std::numeric_limits<std::int32_t>::max())
    return fmt::format("--grid '{}': too many tokens", text);
  out = g;
  return {};
}

std::string load_tokens(const io::tensor_spec& spec, const std::optional<token_grid>& grid, token_input& out) {
  io::host_tensor tensor;
  token_input in;
  const std::string text = spec.text();
  if (std::string e = load_floats(spec, "input", tensor, in.tokens); !e.empty()) return e;
  const auto& shape = tensor.shape;
  if (shape.size() < 2 || shape.size() > 4)
    return fmt::format("input: {} is shaped {}; expected (N, D), (T, N, D) or (T, H, W, D)", text,
                       shape_text(shape));
  for (auto e : shape)
    if (e == 0) return fmt::format("input: {} is empty {}", text, shape_text(shape));
  if (shape.back() > std::numeric_limits<std::int32_t>::max())
    return fmt::format("input: {} rows of {} values are wider than tokred indexes", text, shape.back());
  if (std::string e = infer_grid(shape, grid, in.grid); !e.empty()) return fmt::format("input: {}: {}", text, e);
  in.dim = static_cast<index_t>(shape.back());
  in.shape = shape;
  in.spec = text;
  parse_element(tensor.dtype, in.stored);
  const std::string stem = std::filesystem::path(spec.path).stem().string();
  in.name = spec.named ? stem + ":" + spec.name : stem;
  out = std::move(in);
  return {};
}

std::string load_tokens(const std::string& spec, const std::optional<token_grid>& grid, token_input& out) {
  io::tensor_spec parts;
  if (std::string e = io::split_tensor_spec(spec, parts); !e.empty()) return "input: " + e;
  return load_tokens(parts, grid, out);
}

std::string load_scores(const std::string& spec, index_t tokens, std::vector<float>& out) {
  io::host_tensor tensor;
  std::vector<float> values;
  if (std::string e = load_floats(spec, "scores", tensor, values); !e.empty()) return e;
  if (static_cast<std::int64_t>(values.size()) != tokens)
    return fmt::format("scores: {} holds {} values {}, one per token expected ({})", spec, values.size(),
                       shape_text(tensor.shape), tokens);
  out = std::move(values);
  return {};
}

std::string load_query(const std::string& spec, index_t dim, std::vector<float>& out, index_t& rows) {
  io::host_tensor tensor;
  std::vector<float> values;
  if (std::string e = load_floats(spec, "query", tensor, values); !e.empty()) return e;
  const auto& shape = tensor.shape;
  if (shape.empty() || shape.size() > 2 || shape.back() != dim || values.empty())
    return fmt::format("query: {} is shaped {}; expected (M, {}) or ({},)", spec, shape_text(shape), dim, dim);
  rows = static_cast<index_t>(values.size() / static_cast<std::size_t>(dim));
  out = std::move(values);
  return {};
}

}  // namespace tokred::cli
