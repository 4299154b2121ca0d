// tests/cuda/harness.cuh — the frame of every CUDA test program: a checked CUDA call, the
// pass/fail tally, the skip without a device, the one test stream, CUDA-graph capture and replay,
// and the closing line. Device memory and layouts are in cuda/device_buffers.cuh.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <tokred/core/config.hpp>
#include <tokred/core/status.hpp>

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

/// An index or count in a failure message.
inline std::string str(index_t v) { return std::to_string(v); }

/// True when a CUDA device is present; otherwise prints why the program skips.
inline bool have_device() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return false;
  }
  return true;
}

/// True, with a message, when this program's host code was built for FMA (TOKRED_TEST_HOST_FMA:
/// the `_fma` twins of tests/cuda/CMakeLists.txt) and this CPU has no AVX2 or FMA: it skips.
inline bool lacks_host_fma() {
#if defined(TOKRED_TEST_HOST_FMA)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::printf("no AVX2 and FMA on this CPU: skipped\n");
    return true;
  }
#endif
  return false;
}

/// The non-blocking stream every launch of a test program goes to, made on first use.
inline cudaStream_t test_stream() {
  static cudaStream_t s = [] {
    cudaStream_t made = nullptr;
    TOKRED_TEST_CUDA(cudaStreamCreateWithFlags(&made, cudaStreamNonBlocking));
    return made;
  }();
  return s;
}

/// Waits for the test stream and reports (as a failure) any asynchronous kernel error.
inline void finish(const std::string& label) {
  const cudaError_t e = cudaStreamSynchronize(test_stream());
  check(e == cudaSuccess, label + ": stream error " + cudaGetErrorString(e));
}

/// Captures into a CUDA graph what `enqueue` launches on the test stream, checks that capture
/// worked and that every launch returned ok, then replays the graph twice and waits for it.
/// `enqueue()` returns the launches' statuses, in launch order. Returns false when nothing could
/// be replayed; the outputs then hold no result to compare.
template <class Enqueue>
bool capture_and_replay(const Enqueue& enqueue) {
  cudaGraph_t graph = nullptr;
  TOKRED_TEST_CUDA(cudaStreamBeginCapture(test_stream(), cudaStreamCaptureModeGlobal));
  bool all_ok = true;
  std::string statuses;
  const std::vector<status> launched = enqueue();
  for (const status s : launched) {
    all_ok = all_ok && s == status::ok;
    statuses += std::string(" ") + to_string(s);
  }
  const cudaError_t captured = cudaStreamEndCapture(test_stream(), &graph);
  check(all_ok && captured == cudaSuccess,
        "graph capture:" + statuses + " " + cudaGetErrorString(captured));
  if (captured != cudaSuccess) return false;
  cudaGraphExec_t instance = nullptr;
  TOKRED_TEST_CUDA(cudaGraphInstantiate(&instance, graph, 0));
  for (int replay = 0; replay < 2; ++replay)
    TOKRED_TEST_CUDA(cudaGraphLaunch(instance, test_stream()));
  finish("graph replay");
  TOKRED_TEST_CUDA(cudaGraphExecDestroy(instance));
  TOKRED_TEST_CUDA(cudaGraphDestroy(graph));
  return true;
}

/// Releases the test stream, prints "N passed, M failed" and returns the program's exit status.
inline int summary() {
  TOKRED_TEST_CUDA(cudaStreamDestroy(test_stream()));
  std::printf("%d passed, %d failed\n", results().passed, results().failed);
  return results().failed == 0 ? 0 : 1;
}

}  // namespace tokred::testing
