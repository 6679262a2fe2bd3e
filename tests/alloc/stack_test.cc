#include "alloc/stack.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace tern::alloc {
namespace {

size_t resident_pages(const Stack& s) {
  size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec(s.size / ps);
  EXPECT_EQ(mincore(s.lo, s.size, vec.data()), 0);
  size_t n = 0;
  for (unsigned char c : vec) n += c & 1;
  return n;
}

TEST(Stack, GuardPageBelowUsableRange) {
  StackPool pool({.stack_size = 64 << 10});
  Stack s = pool.get();
  ASSERT_TRUE(s.valid());
  EXPECT_EQ(s.size, 64u << 10);
  EXPECT_TRUE(s.in_guard(static_cast<char*>(s.lo) - 1));
  EXPECT_FALSE(s.in_guard(s.lo));
  // A write to the guard page faults (a sanitizer's SEGV handler may turn the signal into an exit code).
  EXPECT_DEATH(
      {
        volatile char* p = static_cast<char*>(s.lo) - 1;
        *p = 1;
      },
      "");
  pool.put(s);
}

size_t mapping_count() {
  std::ifstream maps("/proc/self/maps");
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(maps), {}, '\n'));
}

TEST(Stack, LiveStacksAreNotCappedByTheMappingLimit) {
  // A one-page guard: ThreadSanitizer shadows each mapping whole (4 bytes per byte, committed), and 40000 stacks with
  // the default guard would need more than the machine has; the mapping count does not depend on the guard's size.
  StackPool pool({.stack_size = 16 << 10, .guard_size = 4096, .max_free = 0});
  if (!pool.guard_regions()) {
    // Detected on the first mapping; a kernel before 6.13 has no guard regions.
    Stack probe = pool.get();
    pool.put(probe);
    if (!pool.guard_regions()) GTEST_SKIP() << "kernel without MADV_GUARD_INSTALL: guards are mprotect'ed pages";
  }
  const size_t before = mapping_count();
  std::vector<Stack> v;
  for (int i = 0; i < 40000; i++) {  // more than vm.max_map_count / 2 under the default limit
    Stack s = pool.get();
    ASSERT_TRUE(s.valid()) << "stack " << i;
    v.push_back(s);
  }
  EXPECT_TRUE(pool.guard_regions());
  EXPECT_LT(mapping_count(), before + 1000) << "guarded stacks should merge into few mappings";
  EXPECT_DEATH(
      {
        volatile char* p = static_cast<char*>(v[12345].lo) - 1;
        *p = 1;
      },
      "");
  for (auto& s : v) pool.put(s);
}

TEST(Stack, CommitsLazily) {
  StackPool pool({.stack_size = 1 << 20, .prefault_pages = 0});
  Stack s = pool.get();
  ASSERT_TRUE(s.valid());
  EXPECT_EQ(resident_pages(s), 0u) << "a fresh stack must not be resident";
  std::memset(static_cast<char*>(s.top()) - 8192, 1, 8192);  // a shallow fiber touches the top only
  EXPECT_LE(resident_pages(s), 3u);
  pool.put(s);
}

bool page_resident(const void* addr) {
  unsigned char v = 0;
  EXPECT_EQ(mincore(const_cast<void*>(addr), 1, &v), 0);
  return (v & 1) != 0;
}

// A new batch comes with the top page of every stack resident (one process_madvise for the batch), and nothing else:
// the page a fiber's first run writes its context and first frames to.
TEST(Stack, NewBatchesComeWithTheirTopPagesResident) {
  const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  StackPool pool({.stack_size = 256 << 10, .map_batch = 8});
  std::vector<Stack> v;
  for (int i = 0; i < 8; i++) v.push_back(pool.get());
  if (pool.stats().prefaulted == 0) {
    for (auto& s : v) pool.put(s);
    GTEST_SKIP() << "this kernel refuses process_madvise(MADV_POPULATE_WRITE) on the calling process (before 6.15)";
  }
  EXPECT_EQ(pool.stats().prefaulted, 8u);
  EXPECT_EQ(pool.stats().batches, 1u);
  for (auto& s : v) {
    EXPECT_TRUE(page_resident(static_cast<char*>(s.top()) - ps)) << "the top page";
    EXPECT_EQ(resident_pages(s), 1u) << "only the top page";
    EXPECT_TRUE(s.in_guard(static_cast<char*>(s.lo) - 1)) << "the guard is still a guard";
  }
  for (auto& s : v) pool.put(s);

  StackPool lazy({.stack_size = 256 << 10, .map_batch = 8, .prefault_pages = 0});
  Stack s = lazy.get();
  EXPECT_FALSE(page_resident(static_cast<char*>(s.top()) - ps));
  EXPECT_EQ(lazy.stats().prefaulted, 0u);
  lazy.put(s);
}

TEST(Stack, PoolReusesLifoAndTrimsIdleAboveWatermark) {
  // One stack per mapping: the counts below are of stacks handed out and returned, with no batch's rest in the pool.
  StackPool pool({.stack_size = 64 << 10, .high_watermark = 2, .max_free = 8, .map_batch = 1});
  std::vector<Stack> v;
  for (int i = 0; i < 6; i++) v.push_back(pool.get());
  for (auto& s : v) std::memset(s.lo, 1, s.size);
  Stack last = v.back();
  for (auto& s : v) pool.put(s);
  EXPECT_EQ(pool.stats().free_global, 6u);
  Stack again = pool.get();
  EXPECT_EQ(again.lo, last.lo) << "the most recently freed (hottest) stack comes back first";
  pool.put(again);
  // The first trim only starts the observation period; the second releases what stayed unused above the watermark.
  pool.trim();
  EXPECT_EQ(pool.trim(), 4u);
  EXPECT_EQ(pool.stats().released, 4u);
  size_t resident = 0;
  for (int i = 0; i < 6; i++) {
    Stack s = pool.get();
    resident += resident_pages(s) > 0;
    v[i] = s;
  }
  EXPECT_EQ(resident, 2u) << "exactly high_watermark stacks stay resident";
  for (auto& s : v) pool.put(s);
}

TEST(Stack, UnmapsAboveMaxFree) {
  StackPool pool({.stack_size = 16 << 10, .high_watermark = 1, .max_free = 2, .map_batch = 1});
  std::vector<Stack> v;
  for (int i = 0; i < 5; i++) v.push_back(pool.get());
  EXPECT_EQ(pool.stats().mapped, 5u);
  for (auto& s : v) pool.put(s);
  EXPECT_EQ(pool.stats().mapped, 2u);
  EXPECT_EQ(pool.stats().unmapped, 3u);
}

TEST(StackCache, BatchesTripsToThePool) {
  StackPool pool({.stack_size = 16 << 10});
  {
    StackCache cache(pool);
    Stack s = cache.get();
    ASSERT_TRUE(s.valid());
    EXPECT_EQ(cache.size(), StackCache::kCacheBatch - 1);
    cache.put(s);
  }
  EXPECT_EQ(pool.stats().in_use, 0u) << "a destroyed cache returns everything";
}

}  // namespace
}  // namespace tern::alloc
