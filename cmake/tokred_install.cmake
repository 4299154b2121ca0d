# Install rules and the CMake package, so that a consumer can write
#
#   find_package(tokred 0.1 REQUIRED)                    # tokred::tokred, plus tokred::cuda if it can
#   find_package(tokred 0.1 REQUIRED COMPONENTS cuda)    # tokred::cuda is required
#
# Included by the top-level CMakeLists.txt when TOKRED_INSTALL is ON, after tokred_cuda.cmake.
# Everything is in the install component `tokred_development`, so
# `cmake --install <build> --component tokred_development` installs the library alone.
#
# Layout under the prefix:
#   include/tokred/...              core/, policy/, cpu/, interop/, tokred.hpp
#   include/tokred/cuda/...         the CUDA backend (only when tokred::cuda was configured)
#   share/cmake/tokred/             tokredConfig.cmake, tokredConfigVersion.cmake,
#                                   tokred_dependencies.cmake, tokredTargets.cmake,
#                                   tokredCudaTargets.cmake (only with the CUDA backend)
# The package holds headers only, so it goes under share/ and its version file is
# ARCH_INDEPENDENT: a 32-bit or cross build may use the same install.
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

set(TOKRED_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/tokred" CACHE STRING
    "Where tokred's CMake package files go, relative to the install prefix")
mark_as_advanced(TOKRED_INSTALL_CMAKEDIR)

# The headers the library consists of; anything else in the source folders stays behind.
set(_tokred_header_patterns PATTERN "*.hpp" PATTERN "*.h" PATTERN "*.cuh" PATTERN "*.inl")

install(TARGETS tokred EXPORT tokredTargets COMPONENT tokred_development)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/tokred"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
        COMPONENT tokred_development
        FILES_MATCHING ${_tokred_header_patterns})
install(EXPORT tokredTargets
        NAMESPACE tokred::
        DESTINATION "${TOKRED_INSTALL_CMAKEDIR}"
        COMPONENT tokred_development)

# The CUDA backend is a separate export set, loaded by the package config only when the consumer
# finds a CUDA toolkit, so that tokred::tokred never refers to CUDA targets.
set(TOKRED_INSTALLED_CUDA OFF)
set(TOKRED_CUDA_NEEDS_CCCL OFF)
if(TARGET tokred_cuda)
  set(TOKRED_INSTALLED_CUDA ON)
  if(TARGET CCCL::CCCL)
    set(TOKRED_CUDA_NEEDS_CCCL ON)
  endif()
  install(TARGETS tokred_cuda EXPORT tokredCudaTargets COMPONENT tokred_development)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/cuda/tokred"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
          COMPONENT tokred_development
          FILES_MATCHING ${_tokred_header_patterns})
  install(EXPORT tokredCudaTargets
          NAMESPACE tokred::
          DESTINATION "${TOKRED_INSTALL_CMAKEDIR}"
          COMPONENT tokred_development)
endif()

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/tokredConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/tokredConfig.cmake"
  INSTALL_DESTINATION "${TOKRED_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/tokredConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMinorVersion  # 0.x: a minor release may change the API
  ARCH_INDEPENDENT)
install(FILES
          "${PROJECT_BINARY_DIR}/tokredConfig.cmake"
          "${PROJECT_BINARY_DIR}/tokredConfigVersion.cmake"
          "${PROJECT_SOURCE_DIR}/cmake/tokred_dependencies.cmake"  # Eigen3, xsimd, the xtl shim
        DESTINATION "${TOKRED_INSTALL_CMAKEDIR}"
        COMPONENT tokred_development)

if(EXISTS "${PROJECT_SOURCE_DIR}/LICENSE")
  install(FILES "${PROJECT_SOURCE_DIR}/LICENSE"
          DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/tokred"
          COMPONENT tokred_development)
endif()
unset(_tokred_header_patterns)
