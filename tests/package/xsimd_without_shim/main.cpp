#include <xsimd/xsimd.hpp>

int main() { return static_cast<int>(xsimd::batch<float>::size) > 0 ? 0 : 1; }
