# `cmake --install` puts headers under include/tern/<module>/ and a CMake package under lib/cmake/tern, so that an
# outside project does find_package(tern) and links tern::tern.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS tern tern_base tern_alloc tern_scheduler tern_netpoll tern_runtime EXPORT ternTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tern)
install(EXPORT ternTargets NAMESPACE tern:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
configure_package_config_file(cmake/ternConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/ternConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ternConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ternConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ternConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
