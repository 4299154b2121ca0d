# cmake/aarch64-linux-gnu.cmake — a toolchain file for AArch64 Linux (NEON) with Debian's
# g++-aarch64-linux-gnu. Libraries come from the target's multiarch folders (zlib1g-dev:arm64,
# libxsimd-dev:arm64); header-only packages without a target copy (Eigen, Catch2) from the host.
# Programs built with it run under qemu-user: ctest and Catch2's test discovery go through
# CMAKE_CROSSCOMPILING_EMULATOR. tools/cross_test.sh sets this up and runs the CPU tests.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
