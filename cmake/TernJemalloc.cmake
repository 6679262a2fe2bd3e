# jemalloc, used on purpose (alloc/arena.h):
#
# tern_jemalloc_private: a private copy of jemalloc for tern's own arenas, that leaves the program's malloc alone.
#   Debian's libjemalloc_pic.a is linked partially (ld -r) into one object, whose global symbols are then all made
#   local except mallocx, sdallocx, mallctl and malloc_conf, renamed tern_je_*. Its malloc, free and operator new stay inside it,
#   so linking tern never replaces the program's allocator. (dlopen'ing libjemalloc.so.2 with RTLD_LOCAL would do the
#   same, but glibc refuses it: jemalloc's TLS is initial-exec, "cannot allocate memory in static TLS block".)
#   Not built in sanitizer builds (tern then allocates with malloc, which the sanitizer sees) or where the archive is
#   missing (then tern falls back to malloc at run time and says so).
#
# tern_jemalloc_malloc (tern::jemalloc_malloc): jemalloc as the whole program's malloc, for users who choose it: link
#   it, or configure tern with TERN_JEMALLOC_MALLOC=ON to make tern::tern carry it. tern's arenas then live in that
#   jemalloc (alloc/arena.cc finds it at run time).
option(TERN_JEMALLOC_MALLOC "Replace the malloc of every program that links tern::tern with jemalloc's" OFF)

set(TERN_PRIVATE_JEMALLOC OFF)
if(NOT TERN_SANITIZE)
  find_file(TERN_JEMALLOC_PIC_ARCHIVE libjemalloc_pic.a HINTS ${jemalloc_LIBDIR} ${jemalloc_LIBRARY_DIRS}
            PATH_SUFFIXES ${CMAKE_LIBRARY_ARCHITECTURE})
  find_program(TERN_OBJCOPY NAMES ${CMAKE_OBJCOPY} objcopy)
  if(TERN_JEMALLOC_PIC_ARCHIVE AND TERN_OBJCOPY AND CMAKE_LINKER)
    set(TERN_PRIVATE_JEMALLOC ON)
  else()
    message(WARNING "libjemalloc_pic.a or objcopy not found: tern's allocations will use malloc "
                    "(apt-get install libjemalloc-dev binutils)")
  endif()
endif()

if(TERN_PRIVATE_JEMALLOC)
  set(dir ${CMAKE_BINARY_DIR}/jemalloc_private)
  set(obj ${dir}/tern_jemalloc.o)
  file(MAKE_DIRECTORY ${dir})
  # malloc_conf (a weak definition) stays global, renamed, so that alloc/arena.cc can define the copy's options.
  file(WRITE ${dir}/keep.txt "tern_je_mallocx\ntern_je_sdallocx\ntern_je_mallctl\ntern_je_malloc_conf\n")
  add_custom_command(OUTPUT ${obj}
    COMMAND ${CMAKE_LINKER} -r --whole-archive ${TERN_JEMALLOC_PIC_ARCHIVE} -o ${dir}/all.o
    COMMAND ${TERN_OBJCOPY} --redefine-sym mallocx=tern_je_mallocx --redefine-sym sdallocx=tern_je_sdallocx
            --redefine-sym mallctl=tern_je_mallctl --redefine-sym malloc_conf=tern_je_malloc_conf
            --keep-global-symbols=${dir}/keep.txt ${dir}/all.o ${obj}
    DEPENDS ${TERN_JEMALLOC_PIC_ARCHIVE}
    COMMENT "Making tern's private jemalloc (jemalloc_pic.a with every symbol local but tern_je_*)"
    VERBATIM)
  add_library(tern_jemalloc_private STATIC ${obj})
  set_source_files_properties(${obj} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  set_target_properties(tern_jemalloc_private PROPERTIES LINKER_LANGUAGE CXX)
  # What jemalloc itself calls: pthreads, libm (exp, log, round), dlsym; its operator new needs libstdc++, which every
  # C++ program has.
  find_library(TERN_LIBM m)
  target_link_libraries(tern_jemalloc_private INTERFACE Threads::Threads ${CMAKE_DL_LIBS}
                        $<$<BOOL:${TERN_LIBM}>:m>)
endif()

add_library(tern_jemalloc_malloc INTERFACE)
add_library(tern::jemalloc_malloc ALIAS tern_jemalloc_malloc)
target_link_libraries(tern_jemalloc_malloc INTERFACE PkgConfig::jemalloc)
