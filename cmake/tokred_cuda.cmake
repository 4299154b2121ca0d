# The CUDA backend target tokred::cuda, created only when a CUDA compiler is available.
if(TOKRED_ENABLE_CUDA STREQUAL "OFF")
  return()
endif()
include(CheckLanguage)
# nvcc is usually not on PATH (the toolkit lives in /usr/local/cuda); point CMake at it unless
# the user chose a compiler, and as a cache entry so parent projects see the same one.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc CACHE FILEPATH "CUDA compiler")
endif()
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(TOKRED_ENABLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "tokred: TOKRED_ENABLE_CUDA=ON but no CUDA compiler was found")
  endif()
  message(STATUS "tokred: no CUDA compiler found; tokred::cuda is not built")
  return()
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
find_package(CCCL CONFIG QUIET HINTS "${CUDAToolkit_LIBRARY_DIR}/cmake")

add_library(tokred_cuda INTERFACE)
add_library(tokred::cuda ALIAS tokred_cuda)
set_target_properties(tokred_cuda PROPERTIES EXPORT_NAME cuda)
target_include_directories(tokred_cuda INTERFACE
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/cuda>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
# The static runtime is what CMake links into CUDA executables by default; naming the same one
# here keeps consumers from linking both the static and the shared runtime.
target_link_libraries(tokred_cuda INTERFACE tokred CUDA::cudart_static)
if(TARGET CCCL::CCCL)
  target_link_libraries(tokred_cuda INTERFACE CCCL::CCCL)
endif()
set(TOKRED_HAVE_CUDA ON)

# What tokred's own CUDA test and benchmark programs share: C++17, warnings, the architectures.
function(tokred_cuda_program_defaults target)
  target_compile_features(${target} PRIVATE cuda_std_17)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>)
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
endfunction()
