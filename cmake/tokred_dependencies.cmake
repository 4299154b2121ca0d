# Finds tokred's header dependencies, Eigen3 and xsimd. Included by the top-level CMakeLists.txt
# and, installed beside it, by tokredConfig.cmake, so the build and a consumer find them alike.
include(CMakeFindDependencyMacro)

# Inside find_package(tokred) a missing dependency makes tokred not found (find_dependency);
# in tokred's own build, or as a subproject, it is an error.
macro(_tokred_find_dependency)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "tokred")
    find_dependency(${ARGV})
  else()
    find_package(${ARGV} REQUIRED)
  endif()
endmacro()

_tokred_find_dependency(Eigen3 3.4 NO_MODULE)

# Debian bookworm's xsimd 8.1 exports a target that links a library called `xtl` but never
# finds it (fixed upstream in xsimd 9). Use the real xtl when it is installed; otherwise stand
# in an empty target so that linking xsimd does not ask the linker for -lxtl.
if(NOT TARGET xtl)
  find_package(xtl QUIET)
  if(NOT TARGET xtl)
    add_library(xtl INTERFACE IMPORTED GLOBAL)
  endif()
endif()
_tokred_find_dependency(xsimd 8)
