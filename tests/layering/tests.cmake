# Layering (docs/architecture.md, section 1), enforced twice: no #include runs up the layers (a CTest test), and no
# module's object calls up (link probes that must build). Included by tests/CMakeLists.txt.
add_test(NAME layering.includes
  COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -P ${CMAKE_CURRENT_LIST_DIR}/check_includes.cmake)
foreach(module alloc scheduler netpoll runtime)
  add_executable(layering_link_${module} ${CMAKE_CURRENT_LIST_DIR}/link_probe.cc)
  # Whole archive: an object nobody references is still linked, so its undefined symbols must resolve below it.
  target_link_libraries(layering_link_${module} PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,tern_${module}>")
endforeach()
