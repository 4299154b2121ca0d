// tests/support/buffers.hpp — owning host buffers for the outputs and workspace of a test run.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include <tokred/policy/grid_reduce.hpp>
#include <tokred/policy/merge.hpp>
#include <tokred/policy/redundancy.hpp>
#include <tokred/policy/selection.hpp>

namespace tokred::testing {

/// The larger of a running worst error and a new one, a NaN winning: a NaN error fails its bound
/// where std::fmax would drop it. (g++ 12 for AArch64 also fails, with an internal error, to
/// vectorise fmax reductions of doubles widened from floats.)
inline double worse(double worst, double error) { return error > worst || std::isnan(error) ? error : worst; }

/// The rounding of one stored output value of type E (relative), for comparisons with doubles.
template <class E>
double output_eps() {
  if constexpr (std::is_same_v<E, f16>) return std::ldexp(1.0, -10);
  else if constexpr (std::is_same_v<E, bf16>) return std::ldexp(1.0, -7);
  else return 0.0;
}

/// The number of values of `got` outside 1e-5 + output_eps<E>()·|want| of the oracle's double
/// values `want` (a size difference counts every value of both).
template <class E>
std::size_t row_mismatches(const std::vector<E>& got, const std::vector<double>& want) {
  std::size_t bad = got.size() == want.size() ? 0 : got.size() + want.size();
  for (std::size_t i = 0; i < got.size() && i < want.size(); ++i)
    bad += !(std::abs(to_float(got[i]) - want[i]) <= 1e-5 + output_eps<E>() * std::abs(want[i]));
  return bad;
}

/// Sentinel-filled outputs of a selection: `untouched()` tells whether anything was written.
/// Whether two vectors hold the same bytes (NaN equal to itself, -0 apart from +0).
template <class T>
bool same_bytes(const std::vector<T>& x, const std::vector<T>& y) {
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0);
}

template <class E>
struct selection_buffers {
  static constexpr std::int64_t source_sentinel = -12345;
  static constexpr std::int32_t position_sentinel = -777;

  std::vector<E> tokens;
  std::vector<std::int64_t> source;
  std::vector<std::int32_t> positions;
  index_t kept = 0, dim = 0;

  selection_buffers(index_t kept_, index_t dim_)
      : tokens(static_cast<std::size_t>(kept_ * dim_), from_float<E>(-3.5f)),
        source(static_cast<std::size_t>(kept_), source_sentinel),
        positions(static_cast<std::size_t>(kept_ * 3), position_sentinel),
        kept(kept_),
        dim(dim_) {}

  selection_outputs<E> outputs() {
    return {make_view(tokens.data(), kept, dim), make_view(source.data(), kept),
            make_view(positions.data(), kept, 3)};
  }

  bool same_bits(const selection_buffers& o) const {
    return same_bytes(tokens, o.tokens) && source == o.source && positions == o.positions;
  }

  bool untouched() const {
    for (auto s : source) if (s != source_sentinel) return false;
    for (auto p : positions) if (p != position_sentinel) return false;
    for (auto t : tokens) if (to_float(t) != -3.5f) return false;
    return true;
  }
};

/// A caller-owned stream memory of gaussian_redundancy (and stc_pruner): sums, chunk count and the
/// latest channels, a fresh stream (chunks = 0, channels filled with `channel_sentinel`).
struct redundancy_memory_buffers {
  static constexpr std::int64_t channel_sentinel = -9;

  std::vector<double> sums;
  std::int64_t chunks = 0;
  std::vector<std::int64_t> channels;

  explicit redundancy_memory_buffers(index_t width)
      : sums(static_cast<std::size_t>(width), 0.0), channels(static_cast<std::size_t>(width), channel_sentinel) {}

  redundancy_memory<> view() {
    return {make_view(sums.data(), static_cast<index_t>(sums.size())), make_view(&chunks, 1),
            make_view(channels.data(), static_cast<index_t>(channels.size()))};
  }

  bool operator==(const redundancy_memory_buffers& o) const {
    return sums == o.sums && chunks == o.chunks && channels == o.channels;
  }
};

/// Sentinel-filled outputs of a grid reducer or layout (contiguous rows): `untouched()` tells
/// whether anything was written.
template <class E>
struct grid_buffers {
  std::vector<E> tokens;                // (kept, dim)
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<float> sizes;             // (kept,)
  index_t kept = 0, dim = 0;

  grid_buffers(index_t kept_, index_t dim_)
      : tokens(static_cast<std::size_t>(kept_ * dim_), from_float<E>(-3.5f)),
        source(static_cast<std::size_t>(kept_), selection_buffers<E>::source_sentinel),
        positions(static_cast<std::size_t>(kept_ * 3), selection_buffers<E>::position_sentinel),
        sizes(static_cast<std::size_t>(kept_), -1.0f),
        kept(kept_),
        dim(dim_) {}

  grid_outputs<E> outputs() {
    return {make_view(tokens.data(), kept, dim), make_view(source.data(), kept),
            make_view(positions.data(), kept, 3), make_view(sizes.data(), kept)};
  }
  bool untouched() const {
    for (auto s : source) if (s != selection_buffers<E>::source_sentinel) return false;
    for (auto p : positions) if (p != selection_buffers<E>::position_sentinel) return false;
    for (auto s : sizes) if (s != -1.0f) return false;
    for (auto t : tokens) if (to_float(t) != -3.5f) return false;
    return true;
  }
};

/// Sentinel-filled outputs of a merge (or anything with a merge's five outputs: a pipeline, a
/// FrameFusion layer): `untouched()` tells whether anything was written, `same_bits` compares
/// every output bit for bit.
template <class E>
struct merge_buffers {
  std::vector<E> tokens;                // (kept, dim)
  std::vector<std::int64_t> source;     // (kept,)
  std::vector<std::int32_t> positions;  // (kept, 3)
  std::vector<float> sizes;             // (kept,)
  std::vector<std::int64_t> assign;     // (tokens,)
  index_t kept = 0, n = 0, dim = 0;

  merge_buffers(index_t kept_, index_t n_, index_t dim_)
      : tokens(static_cast<std::size_t>(kept_ * dim_), from_float<E>(-3.5f)),
        source(static_cast<std::size_t>(kept_), -12345),
        positions(static_cast<std::size_t>(kept_ * 3), -777),
        sizes(static_cast<std::size_t>(kept_), -1.0f),
        assign(static_cast<std::size_t>(n_), -12345),
        kept(kept_), n(n_), dim(dim_) {}

  /// The five views, as `Outputs` (merge_outputs, pipeline_outputs, or a struct extending them).
  template <class Outputs = merge_outputs<E>>
  Outputs outputs() {
    Outputs o{};
    o.tokens = make_view(tokens.data(), kept, dim);
    o.source = make_view(source.data(), kept);
    o.positions = make_view(positions.data(), kept, 3);
    o.sizes = make_view(sizes.data(), kept);
    o.assign = make_view(assign.data(), n);
    return o;
  }
  bool untouched() const {
    return std::all_of(tokens.begin(), tokens.end(), [](E t) { return to_float(t) == -3.5f; }) &&
           std::all_of(source.begin(), source.end(), [](std::int64_t s) { return s == -12345; }) &&
           std::all_of(positions.begin(), positions.end(), [](std::int32_t p) { return p == -777; }) &&
           std::all_of(sizes.begin(), sizes.end(), [](float s) { return s == -1.0f; }) &&
           std::all_of(assign.begin(), assign.end(), [](std::int64_t a) { return a == -12345; });
  }
  bool same_bits(const merge_buffers& o) const {
    return same_bytes(tokens, o.tokens) && source == o.source && positions == o.positions &&
           same_bytes(sizes, o.sizes) && assign == o.assign;
  }
};

/// Sentinel-filled outputs of a selection whose count depends on the data, sized by its bound.
template <class E>
struct counted_buffers : selection_buffers<E> {
  static constexpr std::int64_t count_sentinel = -99;
  std::int64_t count = count_sentinel;

  counted_buffers(index_t bound, index_t dim) : selection_buffers<E>(bound, dim) {}
  counted_outputs<E> outputs() { return {selection_buffers<E>::outputs(), make_view(&count, 1)}; }
  bool untouched() const { return count == count_sentinel && selection_buffers<E>::untouched(); }
};

/// A host workspace of exactly the requested size.
struct host_workspace {
  std::vector<std::byte> bytes;
  explicit host_workspace(std::size_t n) : bytes(n) {}
  workspace get() { return {bytes.empty() ? nullptr : bytes.data(), bytes.size()}; }
};

/// Bit pattern of a stored element, for exact comparisons that also cover NaN.
template <class E>
std::uint32_t bits_of(E x) {
  if constexpr (std::is_same_v<E, float>) return detail::float_bits(x);
  else return x.bits;
}

}  // namespace tokred::testing
