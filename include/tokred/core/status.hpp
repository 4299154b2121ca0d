// tokred/core/status.hpp — the status every checking or running function returns.
#pragma once

namespace tokred {

/// Outcome of `can_implement` and `apply`. Anything but `ok` means no output was written.
enum class [[nodiscard]] status : int {
  ok = 0,
  empty_input,          ///< the problem has zero tokens (N = 0) or zero-width rows
  invalid_budget,       ///< the kept count would be 0 (k = 0, or a ratio that rounds to 0)
  budget_exceeds_input, ///< k is larger than the tokens it selects from
  invalid_ratio,        ///< a keep ratio outside [0, 1], or NaN
  invalid_parameter,    ///< a policy parameter outside its domain (kernel, stride, padding, size)
  null_pointer,         ///< a null data pointer in an input (even an empty one) or an output with elements
  shape_mismatch,       ///< view extents disagree with the problem or with each other
  aliasing,             ///< an output overlaps an input or another output, or reaches an element twice
  index_out_of_range,   ///< a caller-supplied token index lies outside [0, N)
  workspace_too_small,  ///< the workspace is smaller than `workspace_bytes` asked for
  invalid_exec,         ///< the exec tag is malformed (e.g. nth < 1 or ith outside [0, nth))
  device_error,         ///< the CUDA runtime reported an error while launching
  misaligned,           ///< a view's data pointer is not aligned for its element type
};

/// A short, stable, lower-case name for `s` (e.g. "shape_mismatch").
constexpr const char* to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::empty_input: return "empty_input";
    case status::invalid_budget: return "invalid_budget";
    case status::budget_exceeds_input: return "budget_exceeds_input";
    case status::invalid_ratio: return "invalid_ratio";
    case status::invalid_parameter: return "invalid_parameter";
    case status::null_pointer: return "null_pointer";
    case status::shape_mismatch: return "shape_mismatch";
    case status::aliasing: return "aliasing";
    case status::index_out_of_range: return "index_out_of_range";
    case status::workspace_too_small: return "workspace_too_small";
    case status::invalid_exec: return "invalid_exec";
    case status::device_error: return "device_error";
    case status::misaligned: return "misaligned";
  }
  return "unknown";
}

}  // namespace tokred
