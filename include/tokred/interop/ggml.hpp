// tokred/interop/ggml.hpp — ggml tensors (llama.cpp, whisper.cpp, libmtmd) as tokred views,
// checked. Optional: include it where both meet; <tokred/tokred.hpp> does not.
//
// Written against `struct ggml_tensor` by member name — `type`, `ne[4]`, `nb[4]`, `data` — so it
// needs no ggml.h and works with any struct that has them. ggml lists dimensions innermost first
// (`ne[0]` is the row length) with strides in bytes (`nb[0]` is the element size for the float
// types); a tokred view lists them outermost first with strides in elements. So a view's axis r
// is ggml's axis Rank-1-r:
//
//   ggml ne {dim, tokens, 1, 1}                     -> view (tokens, dim)             from_ggml
//   ggml ne {head_dim, tokens, heads, 1}            -> view (heads, tokens, head_dim) from_ggml
//   ggml ne {head_dim, heads, tokens, 1} (a llama.cpp KV cache view, as `get_k` builds it)
//                                                   -> view (heads, tokens, head_dim) from_ggml_kv
//
// Only the unquantized float types map to a view: GGML_TYPE_F32 (float), GGML_TYPE_F16 (f16) and
// GGML_TYPE_BF16 (bf16); quantized blocks are not addressable per element (tokred's KV block
// formats, <tokred/policy/kv_quant.hpp>, read and write those). ggml strides are unsigned, so the
// views are never reversed; permuted and transposed ggml views (ggml_permute, ggml_transpose,
// ggml_view_*) map exactly. ggml keeps the memory space in the tensor's buffer, not in the
// tensor: the view's `Space` is the caller's word for it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "tokred/core/config.hpp"
#include "tokred/core/element.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

namespace tokred {

/// ggml's `enum ggml_type` value of a view element type: GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1,
/// GGML_TYPE_BF16 = 30 (ggml/include/ggml.h). -1 for a type ggml has no float type for.
template <class T>
inline constexpr int ggml_type_id = std::is_same_v<std::remove_cv_t<T>, float>  ? 0
                                    : std::is_same_v<std::remove_cv_t<T>, f16>  ? 1
                                    : std::is_same_v<std::remove_cv_t<T>, bf16> ? 30
                                                                                : -1;

/// The two axis orders of a 3-D ggml KV tensor that `from_ggml_kv` reads as (heads, tokens,
/// head_dim), in ggml's innermost-first `ne` order.
enum class ggml_kv_order {
  head_dim_tokens_heads,  ///< ne = {head_dim, tokens, heads}: heads outermost (the plain reversal)
  head_dim_heads_tokens,  ///< ne = {head_dim, heads, tokens}: tokens outermost, as llama.cpp's
                          ///< cache stores rows of n_embd_k_gqa = heads · head_dim
};

namespace detail {

/// The checks and the reversal every ggml adaptation shares: `axis[r]` is the ggml axis that
/// becomes view axis r. Writes `out` only on success.
template <class T, int Rank, class Space, class Tensor>
status view_ggml_axes(const Tensor& t, const std::array<int, static_cast<std::size_t>(Rank)>& axis,
                      view<T, Rank, Space>& out) noexcept {
  static_assert(Rank >= 1 && Rank <= 4,
                "tokred::from_ggml: ggml tensors have at most 4 dimensions");
  constexpr auto elem = static_cast<index_t>(sizeof(T));
  if (static_cast<int>(t.type) != ggml_type_id<T>) return status::invalid_parameter;
  index_t size = 1;
  for (int g = 0; g < 4; ++g) {
    if (t.ne[g] < 0) return status::shape_mismatch;
    if (g >= Rank && t.ne[g] != 1) return status::shape_mismatch;  // a dimension the view lacks
    const auto n = static_cast<index_t>(t.ne[g]);
    if (n != 0 && size > std::numeric_limits<index_t>::max() / n) return status::shape_mismatch;
    size *= n;
  }
  std::array<index_t, static_cast<std::size_t>(Rank)> extents{};
  std::array<index_t, static_cast<std::size_t>(Rank)> strides{};
  for (int r = 0; r < Rank; ++r) {
    const int g = axis[static_cast<std::size_t>(r)];
    const auto bytes = static_cast<std::uint64_t>(t.nb[g]);
    if (bytes > static_cast<std::uint64_t>(std::numeric_limits<index_t>::max()))
      return status::shape_mismatch;
    extents[static_cast<std::size_t>(r)] = static_cast<index_t>(t.ne[g]);
    strides[static_cast<std::size_t>(r)] = static_cast<index_t>(bytes) / elem;
  }
  if (!detail::span_fits(extents, strides, elem)) return status::shape_mismatch;  // past what an index can address
  if (size != 0 && t.data == nullptr) return status::null_pointer;
  for (int r = 0; r < Rank; ++r)
    if (static_cast<std::uint64_t>(t.nb[axis[static_cast<std::size_t>(r)]]) % sizeof(T) != 0)
      return status::misaligned;
  if (reinterpret_cast<std::uintptr_t>(t.data) % alignof(T) != 0) return status::misaligned;
  out = view<T, Rank, Space>{static_cast<T*>(t.data), extents, strides};
  return status::ok;
}

}  // namespace detail

/// Makes `out` a view of the ggml tensor `tensor` with its axes reversed: view axis r is ggml axis
/// `Rank-1-r`, with extent `ne[Rank-1-r]` and stride `nb[Rank-1-r] / sizeof(T)` elements. A 2-D
/// tensor of `ne = {dim, tokens}` gives `(tokens, dim)`, a 3-D one of `ne = {head_dim, tokens,
/// heads}` gives `(heads, tokens, head_dim)`. On failure `out` is left as it was.
///
/// `tensor` is a `ggml_tensor` (or any struct with its `type`, `ne`, `nb` and `data`); `T` is
/// float, f16 or bf16, const or not; `Space` is where the tensor's buffer lives.
///
/// Returns, in this order of checks:
///   invalid_parameter  `type` is not `T`'s (a quantized type, another float type, …)
///   shape_mismatch     a negative `ne`, an `ne[g] != 1` for a dimension g >= Rank, more
///                      elements than `index_t` counts, a stride beyond `index_t`, or strides
///                      that reach further than `index_t` counts in bytes
///   null_pointer       `data` is NULL while the tensor has elements
///   misaligned         a byte stride `nb[g]` (g < Rank) is not a multiple of `sizeof(T)`, or
///                      `data` is not aligned for `T`
///   ok                 `out` views the tensor
template <class Tensor, class T, int Rank, class Space>
status from_ggml(const Tensor& tensor, view<T, Rank, Space>& out) noexcept {
  static_assert(ggml_type_id<T> >= 0,
                "tokred::from_ggml: the view element must be float, f16 or bf16");
  std::array<int, static_cast<std::size_t>(Rank)> axis{};
  for (int r = 0; r < Rank; ++r) axis[static_cast<std::size_t>(r)] = Rank - 1 - r;
  return detail::view_ggml_axes(tensor, axis, out);
}

/// Makes `out` a `(heads, tokens, head_dim)` view of a 3-D ggml KV tensor laid out in `order`; on
/// failure `out` is left as it was. `head_dim_tokens_heads` is `from_ggml`; `head_dim_heads_tokens`
/// reads the view llama.cpp's KV cache hands out for one layer (`ne = {head_dim, n_head_kv, n_kv,
/// 1}`) without a ggml_permute. Statuses as `from_ggml`.
template <class Tensor, class T, class Space>
status from_ggml_kv(const Tensor& tensor, view<T, 3, Space>& out,
                    ggml_kv_order order = ggml_kv_order::head_dim_tokens_heads) noexcept {
  static_assert(ggml_type_id<T> >= 0,
                "tokred::from_ggml_kv: the view element must be float, f16 or bf16");
  const std::array<int, 3> axis = order == ggml_kv_order::head_dim_heads_tokens
                                      ? std::array<int, 3>{1, 2, 0}
                                      : std::array<int, 3>{2, 1, 0};
  return detail::view_ggml_axes(tensor, axis, out);
}

}  // namespace tokred
