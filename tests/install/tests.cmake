# The install test: `cmake --install` this build into a scratch prefix, build tests/install/consumer against it with
# find_package(tern) as an outside project would, and run the consumer. Included by tests/CMakeLists.txt.
#
# The library is static and, in a sanitizer build, instrumented, so the consumer is compiled with the same compiler and
# sanitizer flags or it would not link.
set(tern_install_test_flags "")
if(TERN_SANITIZE_FLAGS)
  list(JOIN TERN_SANITIZE_FLAGS " " tern_install_test_flags)
endif()
add_test(NAME install.consumer
  COMMAND ${CMAKE_COMMAND}
    -DTERN_BUILD_DIR=${CMAKE_BINARY_DIR}
    -DTERN_CONSUMER_SOURCE_DIR=${CMAKE_CURRENT_LIST_DIR}/consumer
    -DTERN_README=${PROJECT_SOURCE_DIR}/README.md
    -DTERN_WORK_DIR=${CMAKE_BINARY_DIR}/install-test
    -DTERN_GENERATOR=${CMAKE_GENERATOR}
    -DTERN_CXX_COMPILER=${CMAKE_CXX_COMPILER}
    -DTERN_BUILD_TYPE=${CMAKE_BUILD_TYPE}
    -DTERN_CXX_FLAGS=${tern_install_test_flags}
    -P ${CMAKE_CURRENT_LIST_DIR}/run_install_test.cmake)
# Configuring and building the consumer from scratch takes a while on two cores.
set_tests_properties(install.consumer PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE)
