// from_eigen of a temporary Eigen::Ref<const …> must not compile: bound to an expression, the Ref
// holds the expression's value, which would die with it and leave the view dangling. Without
// TOKRED_SHOULD_FAIL this file views a named Ref and must compile; with it, a temporary one.
#include <Eigen/Dense>
#include <tokred/interop/eigen.hpp>

int main() {
  const Eigen::MatrixXf a = Eigen::MatrixXf::Constant(2, 3, 1.0f);
#if defined(TOKRED_SHOULD_FAIL)
  const auto v = tokred::from_eigen(Eigen::Ref<const Eigen::MatrixXf>(a + a));
#else
  const Eigen::Ref<const Eigen::MatrixXf> sum(a + a);  // a copy of a + a, as long as `sum` lives
  const auto v = tokred::from_eigen(sum);
#endif
  return v(1, 2) == 2.0f ? 0 : 1;
}
