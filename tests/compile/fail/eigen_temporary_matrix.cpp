// from_eigen of a temporary Eigen::Matrix must not compile: its storage dies with it and would
// leave the view dangling. Without TOKRED_SHOULD_FAIL this file views a named matrix and must
// compile; with it, a temporary one.
#include <Eigen/Dense>
#include <tokred/interop/eigen.hpp>

int main() {
#if defined(TOKRED_SHOULD_FAIL)
  const auto v = tokred::from_eigen(Eigen::MatrixXf::Constant(2, 3, 2.0f).eval());
#else
  const Eigen::MatrixXf m = Eigen::MatrixXf::Constant(2, 3, 2.0f);
  const auto v = tokred::from_eigen(m);
#endif
  return v(1, 2) == 2.0f ? 0 : 1;
}
