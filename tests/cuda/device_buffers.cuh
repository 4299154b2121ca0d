// tests/cuda/device_buffers.cuh — device memory of the CUDA tests: owning buffers, matrices and
// vectors placed in device storage in one of the case table's layouts (with a host image of the
// whole storage, so writes outside a view show), and token rows made by the shared generator.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <tokred/core/element.hpp>
#include <tokred/core/view.hpp>

#include "cuda/harness.cuh"
#include "support/buffers.hpp"
#include "support/cases.hpp"

namespace tokred::testing {

/// An owning device allocation of `count` T (at least one, so every pointer is non-null).
template <class T>
class device_buffer {
 public:
  explicit device_buffer(std::size_t count) : count_(count) {
    TOKRED_TEST_CUDA(cudaMalloc(&data_, (count > 0 ? count : 1) * sizeof(T)));
  }
  explicit device_buffer(const std::vector<T>& host) : device_buffer(host.size()) { upload(host); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer() { cudaFree(data_); }

  T* get() const { return data_; }
  std::size_t size() const { return count_; }
  /// Copies `host` in and waits until it has landed: a copy from pageable memory may return
  /// before its DMA completes, and the test stream (non-blocking) is not ordered after it.
  void upload(const std::vector<T>& host) {
    TOKRED_TEST_CUDA(
        cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    TOKRED_TEST_CUDA(cudaDeviceSynchronize());
  }
  std::vector<T> download() const {
    std::vector<T> host(count_);
    TOKRED_TEST_CUDA(cudaMemcpy(host.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
};

/// A host view's whole storage copied to the device, and the same view over the copy: the host
/// view's offset into its storage, its extents and strides. Writes outside the view show in
/// `download()`.
template <class E, int R>
struct device_mirror {
  device_buffer<E> storage;
  view<E, R, device_space> v;

  device_mirror(const std::vector<E>& host_storage, const view<E, R>& host_view) : storage(host_storage) {
    std::array<index_t, R> extents{}, strides{};
    for (int d = 0; d < R; ++d) {
      extents[static_cast<std::size_t>(d)] = host_view.extent(d);
      strides[static_cast<std::size_t>(d)] = host_view.stride(d);
    }
    v = view<E, R, device_space>(storage.get() + (host_view.data_handle() - host_storage.data()), extents, strides);
  }
  std::vector<E> download() const { return storage.download(); }
};

/// Where a (rows, cols) matrix sits inside its storage: element (r, c) at
/// `offset + r·row_stride + c·inner`.
struct placement {
  index_t storage = 1;  ///< elements of storage
  index_t offset = 0;   ///< element (0, 0)
  index_t row_stride = 0;
  index_t inner = 1;

  index_t at(index_t r, index_t c) const { return offset + r * row_stride + c * inner; }
};

/// The case table's three layouts, and `padded`: unit inner stride, rows 16-byte aligned but
/// wider than the row, so the vector paths run with a partial last chunk.
enum class rows_layout { contiguous, strided, reversed, padded };

inline rows_layout layout_of(layout how) {
  return how == layout::strided    ? rows_layout::strided
         : how == layout::reversed ? rows_layout::reversed
                                   : rows_layout::contiguous;
}

inline const char* name_of(rows_layout how) {
  switch (how) {
    case rows_layout::contiguous: return "contiguous";
    case rows_layout::strided: return "strided";
    case rows_layout::reversed: return "reversed";
    case rows_layout::padded: return "padded";
  }
  return "?";
}

/// A (rows, cols) matrix in a layout; strided and reversed match make_tokens's storage exactly.
inline placement place(index_t rows, index_t cols, rows_layout how) {
  placement p;
  switch (how) {
    case rows_layout::strided:
      p.row_stride = 2 * cols + 3;
      p.inner = 2;
      break;
    case rows_layout::reversed:
      p.row_stride = -cols;
      p.offset = rows > 0 ? (rows - 1) * cols : 0;
      break;
    case rows_layout::padded: p.row_stride = (cols + 7) / 8 * 8 + 8; break;
    case rows_layout::contiguous: p.row_stride = cols; break;
  }
  p.storage = std::max<index_t>(1, rows * std::abs(p.row_stride));
  return p;
}

/// A vector of `n` elements: every third element (strided), stride -1 (reversed), or packed.
inline placement place_vector(index_t n, rows_layout how) {
  placement p;
  p.row_stride = how == rows_layout::strided ? 3 : how == rows_layout::reversed ? -1 : 1;
  p.offset = how == rows_layout::reversed && n > 0 ? n - 1 : 0;
  p.storage = std::max<index_t>(1, how == rows_layout::strided ? 3 * n : n);
  return p;
}

/// Device storage of a placed (rows, cols) matrix, pre-filled with `fill`, and its host image:
/// the whole storage, padding included, as last uploaded.
template <class T>
struct placed {
  placement where;
  index_t rows, cols;
  std::vector<T> image;
  device_buffer<T> buffer;

  placed(placement w, index_t rows_, index_t cols_, T fill)
      : where(w), rows(rows_), cols(cols_), image(static_cast<std::size_t>(w.storage), fill),
        buffer(image) {}

  T* origin() const { return buffer.get() + where.offset; }
  view<T, 2, device_space> matrix() const {  // (rows, cols)
    return {origin(), {rows, cols}, {where.row_stride, where.inner}};
  }
  view<T, 1, device_space> vector() const { return {origin(), {rows}, {where.row_stride}}; }
  /// Element (r, c) of the host image.
  T& at(index_t r, index_t c) { return image[static_cast<std::size_t>(where.at(r, c))]; }
  /// Element (r, c) of a downloaded copy of the storage.
  const T& at(const std::vector<T>& now, index_t r, index_t c) const {
    return now[static_cast<std::size_t>(where.at(r, c))];
  }
  /// True when, bit for bit, nothing outside the view changed and, with `all`, nothing inside
  /// either.
  bool untouched(const std::vector<T>& now, bool all) const {
    std::vector<bool> in(image.size(), false);
    for (index_t r = 0; r < rows; ++r)
      for (index_t c = 0; c < cols; ++c) in[static_cast<std::size_t>(where.at(r, c))] = true;
    for (std::size_t i = 0; i < now.size(); ++i)
      if ((all || !in[i]) && std::memcmp(&now[i], &image[i], sizeof(T)) != 0) return false;
    return true;
  }
  bool untouched() const { return untouched(buffer.download(), true); }
};

/// A case's token rows, made by the shared generator, in any layout, on the host and device.
/// For the case table's layouts the storage is make_tokens's, element for element.
template <class E>
struct rows_on_device {
  placed<E> storage;

  rows_on_device(index_t n, index_t dim, rows_layout how, std::uint64_t seed)
      : storage(place(n, dim, how), n, dim, from_float<E>(-7.0f)) {
    const token_matrix<E> made = make_tokens<E>(n, dim, layout::contiguous, seed);
    for (index_t i = 0; i < n; ++i)
      for (index_t c = 0; c < dim; ++c) set(i, c, made.rows(i, c));
    sync();
  }
  void set(index_t i, index_t c, E value) { storage.at(i, c) = value; }
  void sync() { storage.buffer.upload(storage.image); }
  view<const E, 2> host() const {  // (tokens, dim)
    return {storage.image.data() + storage.where.offset,
            {storage.rows, storage.cols},
            {storage.where.row_stride, storage.where.inner}};
  }
  view<const E, 2, device_space> device() const { return storage.matrix(); }  // (tokens, dim)
};

/// Device copies of a merge's sentinel-filled outputs (support/buffers.hpp's merge_buffers), their
/// device views, and the whole of them downloaded.
template <class E>
struct device_merge_outputs {
  device_buffer<E> tokens;
  device_buffer<std::int64_t> source;
  device_buffer<std::int32_t> positions;
  device_buffer<float> sizes;
  device_buffer<std::int64_t> assign;
  index_t kept, n, dim;

  explicit device_merge_outputs(const merge_buffers<E>& sentinels)
      : tokens(sentinels.tokens), source(sentinels.source), positions(sentinels.positions),
        sizes(sentinels.sizes), assign(sentinels.assign), kept(sentinels.kept), n(sentinels.n),
        dim(sentinels.dim) {}
  merge_outputs<E, device_space> views() const {
    return {view<E, 2, device_space>(tokens.get(), {kept, dim}), view<std::int64_t, 1, device_space>(source.get(), {kept}),
            view<std::int32_t, 2, device_space>(positions.get(), {kept, 3}),
            view<float, 1, device_space>(sizes.get(), {kept}), view<std::int64_t, 1, device_space>(assign.get(), {n})};
  }
  merge_buffers<E> download() const {
    merge_buffers<E> got(kept, n, dim);
    got.tokens = tokens.download();
    got.source = source.download();
    got.positions = positions.download();
    got.sizes = sizes.download();
    got.assign = assign.download();
    return got;
  }
};

/// Which of a merge's five outputs a call requests (a set of bits).
enum merge_output : unsigned {
  merged_tokens = 1, merged_source = 2, merged_positions = 4, merged_sizes = 8, merged_assign = 16,
  every_merge_output = 31
};

/// Each output alone, and source with positions (the outputs that need no merged rows).
inline constexpr unsigned merge_output_subsets[] = {merged_tokens, merged_source, merged_positions, merged_sizes,
                                                    merged_assign, merged_source | merged_positions};

/// `o` with the outputs outside `wanted` left unrequested (empty views).
template <class Outputs>
Outputs only_outputs(Outputs o, unsigned wanted) {
  if ((wanted & merged_tokens) == 0) o.tokens = {};
  if ((wanted & merged_source) == 0) o.source = {};
  if ((wanted & merged_positions) == 0) o.positions = {};
  if ((wanted & merged_sizes) == 0) o.sizes = {};
  if ((wanted & merged_assign) == 0) o.assign = {};
  return o;
}

/// Runs merge policy `p` (outputs into Eout) on the CPU backend `cpu<>` and on the CUDA stream
/// with the same inputs (`rows` of them), and checks every output bit for bit. With `captured`,
/// the CUDA call is captured into a graph and replayed (capture_and_replay) instead. Only the
/// outputs in `wanted` are requested from either backend; the others must keep their sentinels.
template <class Eout, class P, class HostInputs, class DeviceInputs>
void compare_merge_with_cpu(const P& p, const problem& prob, index_t rows, const HostInputs& host_in,
                            const DeviceInputs& device_in, const std::string& what, bool captured = false,
                            unsigned wanted = every_merge_output) {
  const index_t kept = retained_count(p, prob);
  merge_buffers<Eout> expected(kept, rows, prob.dim);
  host_workspace host_ws(workspace_bytes(cpu{}, p, prob));
  check(apply(cpu{}, p, host_in, only_outputs(expected.outputs(), wanted), host_ws.get()) == status::ok,
        what + ": cpu");
  const device_merge_outputs<Eout> out(merge_buffers<Eout>(kept, rows, prob.dim));
  device_buffer<std::byte> ws(workspace_bytes(tokred::cuda{}, p, prob));
  const auto enqueue = [&] {
    return apply(tokred::cuda{test_stream()}, p, device_in, only_outputs(out.views(), wanted),
                 workspace{ws.get(), ws.size()});
  };
  if (captured) {
    if (!capture_and_replay([&] { return std::vector<status>{enqueue()}; })) return;
  } else {
    const status s = enqueue();
    check(s == status::ok, what + ": status " + to_string(s));
    finish(what);
  }
  const merge_buffers<Eout> got = out.download();
  check(same_bytes(got.tokens, expected.tokens), what + ": tokens");
  check(same_bytes(got.sizes, expected.sizes), what + ": sizes");
  check(got.source == expected.source, what + ": source");
  check(got.positions == expected.positions, what + ": positions");
  check(got.assign == expected.assign, what + ": assign");
}

}  // namespace tokred::testing
