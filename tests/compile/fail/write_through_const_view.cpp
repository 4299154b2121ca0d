// A view of const elements is read-only. Without TOKRED_SHOULD_FAIL this file reads an element
// and must compile; with it, it assigns one and must not.
#include <tokred/core/view.hpp>

int main() {
  float storage[6] = {0, 1, 2, 3, 4, 5};
  const tokred::view<const float, 2> rows = tokred::make_view(storage, 2, 3);  // (2, 3)
#if defined(TOKRED_SHOULD_FAIL)
  rows(1, 2) = 0.0f;
  return 0;
#else
  return rows(1, 2) == 5.0f ? 0 : 1;
#endif
}
