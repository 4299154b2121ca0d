// Second translation unit of the strict_flags check: the same headers again, so that a function
// defined in a header without `inline` shows up as a duplicate symbol when the two are linked.
#include <tokred/tokred.hpp>

int run_second_tu() {
  const tokred::topk policy{tokred::keep_budget::ratio(0.5, tokred::rounding::half_even)};
  const tokred::problem prob{tokred::image_grid(2, 2), 3};
  return tokred::retained_count(policy, prob) == 2 &&
                 tokred::can_implement(policy, prob) == tokred::status::ok
             ? 0
             : 1;
}
