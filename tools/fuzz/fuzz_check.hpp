// tools/fuzz/fuzz_check.hpp — what every fuzz target shares: a check that stops the run on a
// broken invariant, so libFuzzer (or the replay program) reports the input that broke it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

/// Aborts with the failed condition when `cond` is false.
#define TOKRED_FUZZ_CHECK(cond)                                                           \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace tokred::fuzz {

/// A reader's error is one non-empty line that starts with the label it was given.
inline bool well_formed_error(const std::string& e, const std::string& label) {
  return !e.empty() && e.find('\n') == std::string::npos && e.compare(0, label.size(), label) == 0;
}

}  // namespace tokred::fuzz
