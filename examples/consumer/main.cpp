// main.cpp — the smallest program that uses tokred: keep every fourth token of eight.
#include <cstdint>
#include <cstdio>

#include <tokred/tokred.hpp>

int main() {
  const float rows[8][2] = {{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}, {5, 5}, {6, 6}, {7, 7}};  // (tokens, dim)
  float kept[2][2];                                                                           // (kept, dim)
  std::int64_t source[2];                                                                     // (kept,)
  const tokred::selection_inputs<float> in{tokred::sequence_grid(8), {}, tokred::make_view(&rows[0][0], 8, 2)};
  const tokred::selection_outputs<float> out{tokred::make_view(&kept[0][0], 2, 2), tokred::make_view(source, 2), {}};
  const tokred::status s = tokred::apply(tokred::cpu{}, tokred::uniform{tokred::keep_budget::count(2)}, in, out);
  std::printf("%s: kept tokens %lld and %lld\n", tokred::to_string(s), static_cast<long long>(source[0]),
              static_cast<long long>(source[1]));
  return s == tokred::status::ok ? 0 : 1;
}
