// tools/tokred/timing.hpp — wall-clock timing of a call: warm-up runs, then repetitions, reported
// as the median and the 90th percentile (nearest rank).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

namespace tokred::cli {

struct timing {
  double median_us = 0;
  double p90_us = 0;
  int repetitions = 0;
};

/// The median and nearest-rank 90th percentile of `samples` (microseconds).
inline timing summarize(std::vector<double> samples) {
  timing t;
  t.repetitions = static_cast<int>(samples.size());
  if (samples.empty()) return t;
  std::sort(samples.begin(), samples.end());
  const std::size_t n = samples.size();
  t.median_us = n % 2 ? samples[n / 2] : 0.5 * (samples[n / 2 - 1] + samples[n / 2]);
  t.p90_us = samples[static_cast<std::size_t>(std::ceil(0.9 * static_cast<double>(n))) - 1];
  return t;
}

/// The timed runs a bound on the time never cuts below (fewer only when `repetitions` is fewer).
inline constexpr int min_timed_runs = 3;

/// Runs `call` up to `warmup` times untimed, then up to `repetitions` times timed one by one.
/// A positive `max_seconds` bounds the slow cases: warm-up stops once it has taken half of it,
/// and the timed runs stop once they have taken all of it and at least `min_timed_runs` ran
/// (so a run slower than the bound still gets three samples). `call` returns false to stop (a
/// failed run); the samples so far are kept.
template <class Call>
timing time_calls(Call&& call, int warmup, int repetitions, double max_seconds = 0) {
  using clock = std::chrono::steady_clock;
  const auto seconds_since = [](clock::time_point t) {
    return std::chrono::duration<double>(clock::now() - t).count();
  };
  const bool bounded = max_seconds > 0;
  const auto warm_start = clock::now();
  for (int i = 0; i < warmup; ++i) {
    if (!call()) return {};
    if (bounded && seconds_since(warm_start) > 0.5 * max_seconds) break;
  }
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(std::clamp(repetitions, 0, 4096)));  // grows past that if it must
  double spent = 0;
  for (int i = 0; i < repetitions; ++i) {
    const auto start = clock::now();
    const bool ok = call();
    const double us = std::chrono::duration<double, std::micro>(clock::now() - start).count();
    samples.push_back(us);
    spent += us * 1e-6;
    if (!ok) break;
    if (bounded && spent > max_seconds && samples.size() >= static_cast<std::size_t>(min_timed_runs)) break;
  }
  return summarize(std::move(samples));
}

/// The memcpy of `bytes` from `src` into a buffer of its own: the floor of any method that reads
/// its whole input once.
inline timing time_memcpy(const void* src, std::size_t bytes, int warmup, int repetitions, double max_seconds = 0) {
  std::vector<unsigned char> dst(bytes);
  return time_calls(
      [&] {
        std::memcpy(dst.data(), src, bytes);
        asm volatile("" : : "r"(dst.data()) : "memory");  // the copy is observed: never elided
        return true;
      },
      warmup, repetitions, max_seconds);
}

}  // namespace tokred::cli
