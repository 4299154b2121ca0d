# Configures, builds and tests one consumer project from scratch; the package tests run it as
#
#   cmake -D SOURCE_DIR=<consumer> -D BINARY_DIR=<scratch build> -D GENERATOR=<generator>
#         [-D MAKE_PROGRAM=<ninja/make>] [-D CXX_COMPILER=<c++>] [-D CONFIG=<Release...>]
#         [-D CTEST_COMMAND=<ctest>]
#         [-D EXPECT_CONFIGURE_ERROR=<regex> | -D EXPECT_BUILD_ERROR=<regex>]
#         -P run_consumer.cmake [-- <cache arguments for the consumer, e.g. -DFOO=1>]
#
# With EXPECT_CONFIGURE_ERROR (or EXPECT_BUILD_ERROR) that step must fail with output matching
# the regex, and the script succeeds only then.
cmake_minimum_required(VERSION 3.25)

foreach(required IN ITEMS SOURCE_DIR BINARY_DIR GENERATOR)
  if(NOT DEFINED ${required})
    message(FATAL_ERROR "run_consumer.cmake: -D ${required}=... is required")
  endif()
endforeach()

if(NOT CTEST_COMMAND)  # script mode knows cmake's path only; ctest sits beside it
  get_filename_component(cmake_bin_dir "${CMAKE_COMMAND}" DIRECTORY)
  set(CTEST_COMMAND "${cmake_bin_dir}/ctest")
endif()

# Everything after `--` on the command line goes to the consumer's configure step.
set(consumer_args "")
set(forward FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(forward)
    list(APPEND consumer_args "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(forward TRUE)
  endif()
endforeach()

set(configure_args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}")
if(MAKE_PROGRAM)
  list(APPEND configure_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
set(build_args --build "${BINARY_DIR}")
set(ctest_args --test-dir "${BINARY_DIR}" --output-on-failure)
if(CONFIG)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONFIG}")  # ignored by multi-config generators
  list(APPEND build_args --config "${CONFIG}")
  list(APPEND ctest_args -C "${CONFIG}")
endif()

# Runs one step; fails the script unless the step's outcome is the expected one.
function(run_step name expected_error)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(expected_error)
    if(result EQUAL 0)
      message(FATAL_ERROR "${name} succeeded but was expected to fail:\n${output}")
    elseif(NOT output MATCHES "${expected_error}")
      message(FATAL_ERROR "${name} failed, but not with the expected error (${expected_error}):\n${output}")
    endif()
    message(STATUS "${name} failed as expected (${expected_error})")
    set(step_failed_as_expected TRUE PARENT_SCOPE)
  elseif(NOT result EQUAL 0)
    message(FATAL_ERROR "${name} failed (${result}):\n${output}")
  else()
    message(STATUS "${name}: ok")
    if(name STREQUAL "test")
      message("${output}")
    endif()
  endif()
endfunction()

file(REMOVE_RECURSE "${BINARY_DIR}")
set(step_failed_as_expected FALSE)
run_step(configure "${EXPECT_CONFIGURE_ERROR}" "${CMAKE_COMMAND}" ${configure_args} ${consumer_args})
if(step_failed_as_expected)
  return()
endif()
run_step(build "${EXPECT_BUILD_ERROR}" "${CMAKE_COMMAND}" ${build_args})
if(step_failed_as_expected)
  return()
endif()
run_step(test "" "${CTEST_COMMAND}" ${ctest_args})
