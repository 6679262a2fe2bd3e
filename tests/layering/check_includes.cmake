# The include half of the layering rule (docs/architecture.md, section 1): run as `cmake -DSOURCE_DIR=... -P` by the
# layering.includes test. Every #include "dir/..." in a module's files must name a module that module may use; the
# first upward or sideways edge found fails the test, with file, line and the rule it breaks.
#
# The link half: the layering_link_<module> executables pull every object of one module's library in and link only
# the modules below it, so a call that runs up the layers is an undefined reference at build time.
cmake_minimum_required(VERSION 3.25)
if(NOT SOURCE_DIR)
  message(FATAL_ERROR "usage: cmake -DSOURCE_DIR=<tern checkout> -P check_includes.cmake")
endif()

# Who may include whom. tools/ and bench/ are programs on the public API: base/ and runtime/, not what lies under it.
set(allowed_base base)
set(allowed_alloc base alloc)
set(allowed_scheduler base alloc scheduler)
set(allowed_netpoll base alloc scheduler netpoll)
set(allowed_runtime base alloc scheduler netpoll runtime)
set(allowed_tools base runtime tools)
set(allowed_bench base runtime tools bench)
set(checked_dirs base alloc scheduler netpoll runtime tools bench)

set(breaches "")
set(files_seen 0)
foreach(module ${checked_dirs})
  file(GLOB_RECURSE files ${SOURCE_DIR}/${module}/*.h ${SOURCE_DIR}/${module}/*.cc)
  foreach(f ${files})
    math(EXPR files_seen "${files_seen} + 1")
    file(STRINGS ${f} lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
    foreach(line ${lines})
      if(NOT line MATCHES "include[ \t]*\"([a-z_]+)/")
        continue()  # same-folder includes ("foo.h") stay in their module
      endif()
      set(target_dir ${CMAKE_MATCH_1})
      if(NOT target_dir IN_LIST checked_dirs)
        continue()  # tests/, third-party paths: not layers
      endif()
      if(NOT target_dir IN_LIST allowed_${module})
        file(RELATIVE_PATH rel ${SOURCE_DIR} ${f})
        string(STRIP "${line}" line)
        list(APPEND breaches "${rel}: ${line}  (${module}/ may include only: ${allowed_${module}})")
      endif()
    endforeach()
  endforeach()
endforeach()

if(files_seen LESS 20)
  message(FATAL_ERROR "layering: only ${files_seen} files found under ${SOURCE_DIR}: wrong SOURCE_DIR?")
endif()
if(breaches)
  list(JOIN breaches "\n  " text)
  message(FATAL_ERROR "layering: includes that run up or across the layers:\n  ${text}")
endif()
message(STATUS "layering: ${files_seen} files, no upward include")
