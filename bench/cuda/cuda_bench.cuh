// bench/cuda/cuda_bench.cuh — what every CUDA benchmark shares: a stream with an event pair
// for manual timing, the timed loop, owning device arrays, the skip when no device is present,
// the CPU backend's time on the same batch, and host setup built once per case.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include <benchmark/benchmark.h>

#include <tokred/core/config.hpp>
#include <tokred/tokred.hpp>

namespace tokred::bench {

/// `count` elements starting at `first` copied to the host (empty on a runtime error).
template <class T>
std::vector<T> download(const T* first, index_t count) {
  std::vector<T> host(static_cast<std::size_t>(count));
  if (cudaMemcpy(host.data(), first, host.size() * sizeof(T), cudaMemcpyDeviceToHost) !=
      cudaSuccess)
    host.clear();
  return host;
}

/// An owning device allocation, optionally filled from the host; `ok()` is false when cudaMalloc
/// or the upload failed.
template <class T>
class device_array {
 public:
  explicit device_array(std::size_t count) : count_(count) {
    if (cudaMalloc(&data_, (count > 0 ? count : 1) * sizeof(T)) != cudaSuccess) data_ = nullptr;
  }
  explicit device_array(const std::vector<T>& host) : device_array(host.size()) {
    // Waits for the copy to land: one from pageable memory may return before its DMA completes,
    // and the benchmarks' stream (non-blocking) is not ordered after it.
    if (data_ && (cudaMemcpy(data_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) != cudaSuccess ||
                  cudaDeviceSynchronize() != cudaSuccess))
      ok_ = false;
  }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
  ~device_array() { cudaFree(data_); }

  bool ok() const { return data_ != nullptr && ok_; }
  T* get() const { return data_; }
  std::size_t size() const { return count_; }
  std::vector<T> download() const { return bench::download(data_, static_cast<index_t>(count_)); }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
  bool ok_ = true;
};

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

/// Times one device-to-device copy of `bytes` bytes (which reads them and writes as many): the
/// bandwidth bound a kernel that moves 2·bytes is measured against. False, with the benchmark
/// marked as failed, when the device setup or a copy fails.
inline bool time_copy(benchmark::State& state, std::size_t bytes) {
  device_array<std::byte> from(bytes), to(bytes);
  device_timer timer;
  if (!from.ok() || !to.ok() || !timer.ok()) {
    state.SkipWithError("device setup failed");
    return false;
  }
  return time_iterations(state, timer, [&] {
    return cudaMemcpyAsync(to.get(), from.get(), bytes, cudaMemcpyDeviceToDevice, timer.stream()) == cudaSuccess;
  });
}

/// The CPU backend on a batch of `images`: `apply(cpu<>{}, policy, inputs(i), out, ws)` for
/// i = 0 … images − 1 per iteration, each image's output written over the last, with the
/// workspace one image of `prob` asks for. False, with the benchmark marked as failed, when a
/// call fails.
template <class Policy, class Inputs, class Out>
bool time_cpu_images(benchmark::State& state, const Policy& policy, const problem& prob, index_t images,
                     const Inputs& inputs, const Out& out) {
  std::vector<std::byte> ws(workspace_bytes(cpu<>{}, policy, prob));
  for (auto _ : state) {
    for (index_t image = 0; image < images; ++image)
      if (apply(cpu<>{}, policy, inputs(image), out, workspace{ws.data(), ws.size()}) != status::ok) {
        state.SkipWithError("the CPU backend failed");
        return false;
      }
    benchmark::ClobberMemory();
  }
  return true;
}

/// The `T` that `make()` returns, built for `key` (a case's arguments) and kept while the same
/// case asks again. Google Benchmark calls a benchmark function once per iteration-count probe
/// and once per repetition, a case's calls in a row: host setup that takes seconds (a CPU
/// prefill, a CPU quantization the device's output is checked against, a double oracle) then
/// runs once per case, not once per call. One value is kept per call site (each `make` lambda,
/// in each instantiation of a template, is a type of its own): a function that several
/// benchmarks share makes them share it. A call that changes the value works on a copy.
///
/// The checks after timing use it as well (`built_once<bool>`): every call of a case leaves the
/// same result, so the first call's verdict holds for the rest.
template <class T, class Make>
const T& built_once(const std::vector<std::int64_t>& key, const Make& make) {
  static std::vector<std::int64_t> last;
  static std::optional<T> value;
  if (!value || key != last) {
    value.reset();
    value.emplace(make());
    last = key;
  }
  return *value;
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
