// When no new stack can be mapped (vm.max_map_count reached, or memory), a fiber can still start while any per-P
// cache holds a free stack: StackCache::get() and StackPool::get() take from the other caches before giving up. The
// map table is filled for real, in a child process (a death test exiting 0), so the parent's mappings stay usable.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "alloc/stack.h"

namespace tern::alloc {
namespace {

// The sanitizer runtimes map memory of their own at any time (shadow, allocator): with the map table full they abort
// before the code under test can report anything, so these tests run only in plain builds.
#if defined(TERN_SANITIZE_ADDRESS) || defined(TERN_SANITIZE_THREAD)
#define SKIP_UNDER_SANITIZER() GTEST_SKIP() << "fills the map table, which the sanitizer runtime cannot survive"
#else
#define SKIP_UNDER_SANITIZER() (void)0
#endif

// Fills the process's map table: single pages of alternating protection, which the kernel cannot merge, until mmap
// fails. Returns them, so the caller can give the table back.
std::vector<void*> fill_map_table() {
  const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<void*> pages;
  pages.reserve(1 << 17);  // allocated before the table fills: the allocator may need a mapping of its own
  for (int prot = PROT_READ;; prot = prot == PROT_READ ? PROT_NONE : PROT_READ) {
    void* p = mmap(nullptr, ps, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) break;
    pages.push_back(p);
  }
  return pages;
}

void unmap_all(const std::vector<void*>& pages) {
  const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  for (void* p : pages) munmap(p, ps);
}

// Each refill maps exactly the cache's batch (map_batch 1: a mapping holds what was asked for), so that no free stack
// waits in the pool and the caches hold every stack there is.
constexpr StackPoolOptions kOneRefillPerMapping{.stack_size = 64 << 10, .map_batch = 1};

// Checks inside the child; a failure exits with a distinct status and says which.
#define CHILD_CHECK(cond)                                      \
  do {                                                         \
    if (!(cond)) {                                             \
      std::fprintf(stderr, "child check failed: %s\n", #cond); \
      std::_Exit(3);                                           \
    }                                                          \
  } while (0)

[[noreturn]] void child_EmptyCacheTakesFromAnotherCacheWhenMappingFails() {
  StackPool pool(kOneRefillPerMapping);
  StackCache full(pool), empty(pool);
  // One refill maps a batch; handing the stack back leaves `full` holding the whole batch.
  Stack s = full.get();
  CHILD_CHECK(s.valid());
  full.put(s);
  CHILD_CHECK(full.size() == StackCache::kCacheBatch);
  std::vector<void*> filler = fill_map_table();
  CHILD_CHECK(pool.stats().free_global == 0);
  Stack got = empty.get();
  CHILD_CHECK(got.valid());  // taken from `full`, not mapped
  CHILD_CHECK(full.size() < StackCache::kCacheBatch);
  CHILD_CHECK(pool.stats().map_failures > 0);  // the pool did try to map first
  empty.put(got);
  unmap_all(filler);
  std::_Exit(0);
}

TEST(StackExhaustion, EmptyCacheTakesFromAnotherCacheWhenMappingFails) {
  SKIP_UNDER_SANITIZER();
  EXPECT_EXIT(child_EmptyCacheTakesFromAnotherCacheWhenMappingFails(), ::testing::ExitedWithCode(0), "");
}

[[noreturn]] void child_PoolGetWithoutCacheTakesFromCaches() {
  StackPool pool(kOneRefillPerMapping);
  StackCache cache(pool);
  cache.put(cache.get());
  std::vector<void*> filler = fill_map_table();
  Stack got = pool.get();
  CHILD_CHECK(got.valid());
  pool.put(got);
  unmap_all(filler);
  std::_Exit(0);
}

TEST(StackExhaustion, PoolGetWithoutCacheTakesFromCaches) {
  SKIP_UNDER_SANITIZER();
  // A fiber started from a thread without a P (Runtime::try_go outside fibers) asks the pool directly.
  EXPECT_EXIT(child_PoolGetWithoutCacheTakesFromCaches(), ::testing::ExitedWithCode(0), "");
}

[[noreturn]] void child_EveryCacheEmptyIsAnInvalidStackNotACrash() {
  StackPool pool(kOneRefillPerMapping);
  StackCache a(pool), b(pool);
  a.put(a.get());
  std::vector<void*> filler = fill_map_table();
  // Drain everything there is; then get() reports exhaustion as an invalid stack.
  std::vector<Stack> held;
  for (;;) {
    Stack s = b.get();
    if (!s.valid()) break;
    held.push_back(s);
  }
  CHILD_CHECK(held.size() == StackCache::kCacheBatch);
  CHILD_CHECK(a.size() == 0 && b.size() == 0);
  CHILD_CHECK(!pool.get().valid());
  for (Stack s : held) b.put(s);
  unmap_all(filler);
  std::_Exit(0);
}

TEST(StackExhaustion, EveryCacheEmptyIsAnInvalidStackNotACrash) {
  SKIP_UNDER_SANITIZER();
  EXPECT_EXIT(child_EveryCacheEmptyIsAnInvalidStackNotACrash(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace tern::alloc
