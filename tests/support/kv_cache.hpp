// tests/support/kv_cache.hpp — (heads, tokens, head_dim) KV caches for the KV-quantization
// tests: four memory layouts and a fill with the values quantizers find hard.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/cases.hpp"

namespace tokred::testing {

/// A (heads, tokens, head_dim) cache of E in one of four memory layouts.
enum class kv_layout {
  contiguous,  ///< (heads, tokens, head_dim) row-major
  cells,       ///< llama.cpp's cache: one token's heads side by side, strides (D, H·D, 1)
  strided,     ///< inner stride 2 and padded rows
  reversed,    ///< negative token stride
};

template <class E>
struct kv_cache {
  std::vector<E> storage;
  view<E, 3> cache;  // (heads, tokens, head_dim)
};

template <class E>
kv_cache<E> make_cache(index_t heads, index_t tokens, index_t dim, kv_layout how) {
  kv_cache<E> k;
  const index_t n = heads * tokens * dim;
  k.storage.assign(static_cast<std::size_t>(how == kv_layout::strided ? 2 * n + 3 * heads * tokens + 1 : n),
                   from_float<E>(-99.0f));
  E* base = k.storage.data();
  switch (how) {
    case kv_layout::contiguous: k.cache = view<E, 3>(base, {heads, tokens, dim}); break;
    case kv_layout::cells: k.cache = view<E, 3>(base, {heads, tokens, dim}, {dim, heads * dim, 1}); break;
    case kv_layout::strided:
      k.cache = view<E, 3>(base, {heads, tokens, dim}, {tokens * (2 * dim + 3), 2 * dim + 3, 2});
      break;
    case kv_layout::reversed:
      k.cache = view<E, 3>(base + (tokens - 1) * dim, {heads, tokens, dim}, {tokens * dim, -dim, 1});
      break;
  }
  return k;
}

/// Fills a cache: mostly N(0,1)-like values, with rows of ties (multiples of 1/16), rows of a
/// constant, zero blocks and a large-range row, each exactly representable in E.
template <class E>
void fill(view<E, 3> c, std::uint64_t seed) {
  rng r(seed);
  for (index_t h = 0; h < c.extent(0); ++h)
    for (index_t t = 0; t < c.extent(1); ++t) {
      const int kind = static_cast<int>((h * 7 + t) % 5);
      for (index_t d = 0; d < c.extent(2); ++d) {
        float v = 2.0f * r.uniform();
        if (kind == 1) v = std::round(v * 16.0f) / 16.0f;                     // ties
        if (kind == 2) v = d / 32 % 2 ? 0.0f : 0.75f;                          // constant / zero blocks
        if (kind == 3) v *= std::pow(10.0f, static_cast<float>(d % 7) - 3.0f);  // large range
        c(h, t, d) = from_float<E>(v);
      }
    }
}

/// Tokens [first, first + count) of a (heads, tokens, dim) view, read-only.
template <class E>
view<const E, 3> tokens_of(const view<E, 3>& v, index_t first, index_t count) {
  return token_range(view<const E, 3>(v), first, count);
}

}  // namespace tokred::testing
