// bench/cuda/cuda_bench.cuh — what every CUDA benchmark shares: a stream with an event pair
// for manual timing, the timed loop, and the skip when no device is present.
#pragma once

#include <cuda_runtime.h>

#include <benchmark/benchmark.h>

namespace tokred::bench {

/// A stream and an event pair that time what is enqueued between `start()` and `stop()`.
class device_timer {
 public:
  device_timer() {
    ok_ = cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking) == cudaSuccess &&
          cudaEventCreate(&start_) == cudaSuccess && cudaEventCreate(&stop_) == cudaSuccess;
  }
  device_timer(const device_timer&) = delete;
  device_timer& operator=(const device_timer&) = delete;
  ~device_timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaStreamDestroy(stream_);
  }

  bool ok() const { return ok_; }
  cudaStream_t stream() const { return stream_; }
  void start() { cudaEventRecord(start_, stream_); }
  /// Seconds since `start()`, or a negative number on a runtime error.
  double stop() {
    cudaEventRecord(stop_, stream_);
    float ms = 0.0f;
    if (cudaEventSynchronize(stop_) != cudaSuccess ||
        cudaEventElapsedTime(&ms, start_, stop_) != cudaSuccess)
      return -1.0;
    return static_cast<double>(ms) * 1e-3;
  }

 private:
  cudaStream_t stream_ = nullptr;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  bool ok_ = false;
};

/// Runs `enqueue()` once untimed (first-launch costs), then once per iteration between events.
template <class Enqueue>
bool time_iterations(benchmark::State& state, device_timer& timer, const Enqueue& enqueue) {
  if (!enqueue() || cudaStreamSynchronize(timer.stream()) != cudaSuccess) {
    state.SkipWithError("the warm-up run failed");
    return false;
  }
  for (auto _ : state) {
    timer.start();
    const bool launched = enqueue();
    const double seconds = timer.stop();
    if (!launched || seconds < 0.0) {
      state.SkipWithError("a timed run failed");
      return false;
    }
    state.SetIterationTime(seconds);
  }
  return true;
}

/// False, with the benchmark marked as skipped, when there is no CUDA device.
inline bool have_device(benchmark::State& state) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    state.SkipWithError("no CUDA device");
    return false;
  }
  return true;
}

}  // namespace tokred::bench
