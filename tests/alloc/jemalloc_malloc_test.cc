// tests/alloc/jemalloc_malloc_test.cc: a program that chose jemalloc as its malloc (linked tern::jemalloc_malloc, see
// cmake/TernJemalloc.cmake) has jemalloc's malloc, and tern's arenas are arenas of that same jemalloc.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "alloc/arena.h"
#include "base/sanitizer.h"

namespace tern::alloc {
namespace {

std::string defining_object(const char* symbol) {
  void* f = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info{};
  if (f == nullptr || dladdr(f, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

TEST(JemallocMalloc, ProgramMallocIsJemallocAndTernUsesIt) {
#if defined(TERN_ASAN) || defined(TERN_TSAN)
  GTEST_SKIP() << "the sanitizer's runtime defines malloc";
#endif
  EXPECT_NE(defining_object("malloc").find("libjemalloc"), std::string::npos) << defining_object("malloc");
  EXPECT_EQ(heap_kind(), HeapKind::kProcessJemalloc) << heap_name() << ": " << heap_fallback_reason();
  // One jemalloc: a node arena's pointer is known to the program's mallctl, and malloc's memory to tern's lookup.
  void* p = node_alloc(4096, 64, 1);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(arena_lookup(p), node_arena(1));
  void* m = std::malloc(100);
  EXPECT_GE(arena_lookup(m), 0);
  std::free(m);
  node_free(p, 4096, 64);
  const HeapStats s = heap_stats();
  EXPECT_GT(s.allocated, 0);
  EXPECT_GT(s.metadata, 0);
}

}  // namespace
}  // namespace tern::alloc
