// tests/support/attention_inputs.hpp — attention weights, query rows and key rows in the case
// table's layouts, for the attention-score tests of every backend.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <tokred/tokred.hpp>

#include "support/cases.hpp"

namespace tokred::testing {

/// The largest |got − want| / |want| over all tokens; infinite where one side is NaN and the
/// other is not, or the sizes differ (a NaN must fail a bound, never slip past it).
inline double worst_relative(const std::vector<float>& got, const std::vector<double>& want) {
  const double inf = std::numeric_limits<double>::infinity();
  if (got.size() != want.size()) return inf;
  double worst = 0.0;
  for (std::size_t j = 0; j < got.size(); ++j) {
    if (std::isnan(got[j]) || std::isnan(want[j])) {
      if (std::isnan(got[j]) != std::isnan(want[j])) return inf;
      continue;
    }
    worst = std::max(worst, std::fabs(static_cast<double>(got[j]) - want[j]) / std::fabs(want[j]));
  }
  return worst;
}

/// A tensor of rank R in one of the case layouts, with the view over it.
template <class E, int R>
struct tensor {
  std::vector<E> storage;
  view<E, R> v;
};

/// (a, b, c, d) weights: contiguous; `strided` pads each head row and reads every second key;
/// `reversed` stores the keys back to front (a negative key stride).
template <class E>
tensor<E, 4> make_weights(index_t rows, index_t layers, index_t heads, index_t keys, layout how,
                          std::uint64_t seed) {
  tensor<E, 4> t;
  const index_t inner = how == layout::strided ? 2 : 1;
  const index_t head_stride = how == layout::strided ? 2 * keys + 5 : keys;
  const index_t span = rows * layers * heads * head_stride;
  t.storage.assign(static_cast<std::size_t>(std::max<index_t>(span, 1)), from_float<E>(-9.0f));
  E* base = t.storage.data();
  index_t key_stride = inner;
  if (how == layout::reversed && keys > 0) {
    base += keys - 1;
    key_stride = -1;
  }
  t.v = view<E, 4>(base, {rows, layers, heads, keys},
                   {layers * heads * head_stride, heads * head_stride, head_stride, key_stride});
  rng r(seed);
  for (index_t a = 0; a < rows; ++a)
    for (index_t l = 0; l < layers; ++l)
      for (index_t h = 0; h < heads; ++h)
        for (index_t k = 0; k < keys; ++k)  // softmax-sized values, a few negative
          t.v(a, l, h, k) = from_float<E>(0.004f + 0.005f * r.uniform());
  return t;
}

/// (outer, rows, dim) query or key rows: contiguous; `strided` lays them out as HF's
/// (rows, outer, dim) projection output with every second element; `reversed` stores the rows of
/// each outer index back to front.
template <class E>
tensor<E, 3> make_rows(index_t outer, index_t rows, index_t dim, layout how, float amplitude,
                       std::uint64_t seed) {
  tensor<E, 3> t;
  const index_t total = outer * rows * dim;
  if (how == layout::strided) {
    const index_t padded = 2 * dim + 1;
    t.storage.assign(static_cast<std::size_t>(std::max<index_t>(outer * rows * padded, 1)), from_float<E>(-9.0f));
    t.v = view<E, 3>(t.storage.data(), {outer, rows, dim}, {padded, outer * padded, 2});
  } else {
    t.storage.assign(static_cast<std::size_t>(std::max<index_t>(total, 1)), from_float<E>(-9.0f));
    if (how == layout::reversed && rows > 0)
      t.v = view<E, 3>(t.storage.data() + (rows - 1) * dim, {outer, rows, dim}, {rows * dim, -dim, 1});
    else
      t.v = view<E, 3>(t.storage.data(), {outer, rows, dim});
  }
  rng r(seed);
  for (index_t a = 0; a < outer; ++a)
    for (index_t b = 0; b < rows; ++b)
      for (index_t c = 0; c < dim; ++c) t.v(a, b, c) = from_float<E>(amplitude * r.uniform());
  return t;
}

/// Query and key tensors of one fused case.
template <class E>
struct fused_case {
  tensor<E, 3> query, keys;
  fused_attention_inputs<E> in;
};

template <class E>
fused_case<E> make_fused(const token_grid& grid, index_t queries, index_t heads, index_t kv_heads,
                         index_t keys, index_t dim, layout how, std::uint64_t seed) {
  fused_case<E> f;
  f.query = make_rows<E>(queries, heads, dim, how, 3.0f, seed);
  f.keys = make_rows<E>(kv_heads, keys, dim, how, 1.0f, seed + 1);
  f.in = {grid, f.query.v, f.keys.v};
  return f;
}

/// One fused case of the shared sweep: its tensors, and the head grouping, query rows and first key.
template <class E>
struct fused_sweep_case {
  fused_case<E> tensors;
  index_t heads, kv_heads, queries, first_key, keys;

  std::string label() const {
    return "heads " + std::to_string(heads) + "/" + std::to_string(kv_heads) + " queries " + std::to_string(queries) +
           " first_key " + std::to_string(first_key);
  }
};

/// Calls `check(case)` for the fused cases every backend's test sweeps on a shape case: head
/// groupings 1/1, 4/4 and 8/2, 1 and 3 query rows, the span from key 0 or from key 5 with 3
/// keys after it.
template <class E, class Check>
void for_each_fused_case(const shape_case& c, const Check& check) {
  struct grouping { index_t heads, kv_heads; };
  for (const grouping g : {grouping{1, 1}, grouping{4, 4}, grouping{8, 2}})
    for (const index_t queries : {1, 3})
      for (const index_t first : {0, 5}) {
        const index_t keys = first + c.grid.tokens() + (first > 0 ? 3 : 0);
        check(fused_sweep_case<E>{make_fused<E>(c.grid, queries, g.heads, g.kv_heads, keys, c.dim, c.rows,
                                                static_cast<std::uint64_t>(7 * g.heads + queries + first)),
                                  g.heads, g.kv_heads, queries, first, keys});
      }
}

}  // namespace tokred::testing
