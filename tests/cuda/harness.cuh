// tests/cuda/harness.cuh — what every CUDA test program shares: a checked CUDA call, the
// pass/fail tally with its closing line, owning device buffers, and the placement of a matrix in
// one of the case table's layouts.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <tokred/core/config.hpp>

/// Runs a CUDA runtime call and exits with status 2 and a message if it fails.
#define TOKRED_TEST_CUDA(call)                                           \
  do {                                                                   \
    const cudaError_t tokred_test_err_ = (call);                         \
    if (tokred_test_err_ != cudaSuccess) {                               \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
                   cudaGetErrorString(tokred_test_err_));                \
      std::exit(2);                                                      \
    }                                                                    \
  } while (0)

namespace tokred::testing {

/// Passed and failed checks of one test program.
struct tally {
  int passed = 0;
  int failed = 0;
};

inline tally& results() {
  static tally t;
  return t;
}

/// Records one check; prints the first failures in full (the rest are only counted).
inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++results().passed;
    return;
  }
  if (++results().failed <= 60) std::printf("FAIL: %s\n", what.c_str());
}

/// True when a CUDA device is present; otherwise prints why the program skips.
inline bool have_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return false;
  }
  return true;
}

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
  void upload(const std::vector<T>& host) {
    TOKRED_TEST_CUDA(
        cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
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

/// Where a (rows, cols) matrix sits inside its storage: element (r, c) at
/// `offset + r·row_stride + c·inner`.
struct placement {
  index_t storage = 1;  ///< elements of storage
  index_t offset = 0;   ///< element (0, 0)
  index_t row_stride = 0;
  index_t inner = 1;

  index_t at(index_t r, index_t c) const { return offset + r * row_stride + c * inner; }
};

}  // namespace tokred::testing
