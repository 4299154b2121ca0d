// scene_checks.hpp — what the example programs share: each scene checks that the comments in its
// documented region tell the truth, and the program fails if one does not.
#pragma once

#include <cstdio>

namespace scene {

inline int failures = 0;

inline void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("  FAILED: %s\n", what);
    ++failures;
  }
}

/// Prints the verdict; the program's exit status.
inline int finish() {
  std::printf(failures == 0 ? "all scenes ran as documented\n" : "%d checks failed\n", failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace scene

#define SCENE_CHECK(expr) ::scene::check((expr), #expr)
