// tokred/core/exec.hpp — execution tags: which backend runs a policy, chosen at compile time.
//
// The first argument of every `apply` is an exec tag. Its type picks the backend; its value
// carries what the backend needs at run time (the thread share, the CUDA stream). tokred starts
// no threads and makes no device-wide synchronisation: the engine owns both.
#pragma once

#include "tokred/core/config.hpp"
#include "tokred/core/status.hpp"
#include "tokred/core/view.hpp"

// The CUDA runtime's stream handle, `cudaStream_t`, is `CUstream_st*`; declaring the struct here
// keeps this header free of CUDA includes while staying the same type.
struct CUstream_st;

namespace tokred {

/// The CPU instruction set chosen by the compile flags (xsimd's `default_arch`). Name an xsimd
/// architecture instead (e.g. `xsimd::avx2`) to pin one; runtime dispatch is the caller's choice.
struct compile_time_arch {};

/// Runs the share `ith` of `nth` of a policy on the calling CPU thread.
///
/// Call `apply` once from each of `nth` threads with `ith = 0 … nth-1` and the same arguments
/// (as ggml's custom operators are called). Each call writes a disjoint part of the outputs; the
/// union is bit-identical to a single call with `nth = 1`. The workspace is shared: each share
/// uses its own slice of it.
template <class Arch = compile_time_arch>
struct cpu {
  using space = host_space;
  using arch = Arch;

  int ith = 0;  ///< this call's share, 0 <= ith < nth
  int nth = 1;  ///< number of shares the caller runs

  constexpr cpu(int ith_ = 0, int nth_ = 1) noexcept : ith(ith_), nth(nth_) {}
};

/// Runs a policy on a CUDA stream: stream-ordered, no allocation, no device-wide sync, launch
/// shapes fixed by static upper bounds so the work can be captured into a CUDA graph.
struct cuda {
  using space = device_space;

  CUstream_st* stream = nullptr;  ///< `cudaStream_t`; null is the legacy default stream

  constexpr cuda(CUstream_st* stream_ = nullptr) noexcept : stream(stream_) {}
};

/// `invalid_exec` for a malformed CPU share, `ok` otherwise.
template <class Arch>
constexpr status check_exec(const cpu<Arch>& exec) noexcept {
  return exec.nth >= 1 && exec.ith >= 0 && exec.ith < exec.nth ? status::ok : status::invalid_exec;
}
constexpr status check_exec(const cuda&) noexcept { return status::ok; }

namespace detail {

template <class T>
inline constexpr bool dependent_false = false;

/// The half-open share `[begin, end)` of `count` items that call `ith` of `nth` owns.
constexpr index_t share_begin(index_t count, int ith, int nth) noexcept {
  return count * ith / nth;
}

}  // namespace detail

/// The implementation of `Policy` on `Exec`. Backends specialise it: CPU ones in
/// `<tokred/cpu/...>`, CUDA ones in `<tokred/cuda/...>` (from .cu files only).
template <class Policy, class Exec>
struct backend {
  template <class... Args>
  static status apply(Args&&...) {
    static_assert(detail::dependent_false<Exec>,
                  "tokred: no backend for this (policy, exec) pair; for tokred::cuda include "
                  "<tokred/cuda/tokred.cuh> from a .cu file");
    return status::invalid_exec;
  }
  template <class... Args>
  static std::size_t workspace_bytes(Args&&...) {
    static_assert(detail::dependent_false<Exec>,
                  "tokred: no backend for this (policy, exec) pair; for tokred::cuda include "
                  "<tokred/cuda/tokred.cuh> from a .cu file");
    return 0;
  }
};

}  // namespace tokred
