# Installs tokred's library component from a configured build tree into an empty prefix:
#
#   cmake -D BUILD_DIR=<tokred's build folder> -D PREFIX=<prefix> [-D CONFIG=<config>]
#         -P install_tree.cmake
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE "${PREFIX}")  # nothing stale may stand in for a file the install forgot
set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
          --component tokred_development ${config_args}
  COMMAND_ERROR_IS_FATAL ANY)
