# `cmake --install` puts headers under include/tern/<module>/ and a CMake package under lib/cmake/tern, so that an
# outside project does find_package(tern) and links tern::tern.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(tern_install_targets tern tern_base tern_alloc tern_scheduler tern_netpoll tern_runtime)
if(TERN_PRIVATE_JEMALLOC)
  list(APPEND tern_install_targets tern_jemalloc_private)
endif()
# tern::jemalloc_malloc needs jemalloc's package where the consumer builds; ternConfig.cmake includes its own export
# file only where pkg-config finds jemalloc (and requires it only when TERN_JEMALLOC_MALLOC put it into tern::tern).
if(TERN_JEMALLOC_MALLOC)
  list(APPEND tern_install_targets tern_jemalloc_malloc)
else()
  install(TARGETS tern_jemalloc_malloc EXPORT ternJemallocTargets)
  install(EXPORT ternJemallocTargets NAMESPACE tern:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
endif()
install(TARGETS ${tern_install_targets} EXPORT ternTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  FILE_SET HEADERS DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/tern)
install(EXPORT ternTargets NAMESPACE tern:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
configure_package_config_file(cmake/ternConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/ternConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/ternConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/ternConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/ternConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tern)
