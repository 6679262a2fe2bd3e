# Runs the install test (see tests.cmake): install, configure and build the consumer, run it. Fails with the step's
# output on the first step that fails. The consumer also compiles README.md's example main (the first ```cpp block),
# so the README cannot drift from the API.
foreach(var TERN_BUILD_DIR TERN_CONSUMER_SOURCE_DIR TERN_README TERN_WORK_DIR TERN_GENERATOR TERN_CXX_COMPILER)
  if(NOT ${var})
    message(FATAL_ERROR "run_install_test.cmake: ${var} is not set")
  endif()
endforeach()

function(step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "install test: ${name} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "install test: ${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${TERN_WORK_DIR}/prefix)
set(consumer_build ${TERN_WORK_DIR}/consumer)
file(REMOVE_RECURSE ${TERN_WORK_DIR})

step("cmake --install" ${CMAKE_COMMAND} --install ${TERN_BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/include/tern/runtime/runtime.h)
  message(FATAL_ERROR "install test: ${prefix}/include/tern/runtime/runtime.h was not installed")
endif()

file(READ ${TERN_README} readme)
string(REGEX MATCH "```cpp\n([^`]*)```" example "${readme}")
if(NOT CMAKE_MATCH_1)
  message(FATAL_ERROR "install test: no ```cpp block in ${TERN_README}")
endif()
file(WRITE ${TERN_WORK_DIR}/readme_main.cc "${CMAKE_MATCH_1}")

step("configure consumer" ${CMAKE_COMMAND} -S ${TERN_CONSUMER_SOURCE_DIR} -B ${consumer_build} -G ${TERN_GENERATOR}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DTERN_README_MAIN=${TERN_WORK_DIR}/readme_main.cc
  -DCMAKE_CXX_COMPILER=${TERN_CXX_COMPILER}
  -DCMAKE_BUILD_TYPE=${TERN_BUILD_TYPE}
  "-DCMAKE_CXX_FLAGS=${TERN_CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${TERN_CXX_FLAGS}")
step("build consumer" ${CMAKE_COMMAND} --build ${consumer_build} --parallel 2)
step("run consumer" ${consumer_build}/tern-consumer)
message(STATUS "${step_output}")
