// tests/alloc/arena_test.cc: alloc/arena.h: per-node arenas, allocation and free across threads, statistics, and that
// linking tern leaves the program's malloc alone.
#include "alloc/arena.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <linux/mempolicy.h>
#include <malloc.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/sanitizer.h"
#include "tests/scale.h"

namespace tern::alloc {
namespace {

#if defined(TERN_ASAN) || defined(TERN_TSAN)
constexpr bool kSanitizer = true;
#else
constexpr bool kSanitizer = false;
#endif

// The file of the object that defines `symbol` as the program sees it.
std::string defining_object(const char* symbol) {
  void* f = dlsym(RTLD_DEFAULT, symbol);
  Dl_info info{};
  if (f == nullptr || dladdr(f, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

TEST(Arena, ProgramMallocStaysGlibcs) {
  if (kSanitizer) GTEST_SKIP() << "the sanitizer's runtime defines malloc";
  // Use the arenas first: the private jemalloc is initialized and has arenas before the look.
  void* p = node_alloc(1000, 16, 0);
  ASSERT_NE(p, nullptr);
  node_free(p, 1000, 16);
  EXPECT_EQ(heap_kind(), HeapKind::kPrivateJemalloc) << heap_name() << ": " << heap_fallback_reason();
  for (const char* sym : {"malloc", "free", "calloc", "realloc", "posix_memalign"}) {
    EXPECT_NE(defining_object(sym).find("libc.so"), std::string::npos) << sym << " is " << defining_object(sym);
  }
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "mallocx"), nullptr) << "jemalloc's API is visible: " << defining_object("mallocx");
  // And what malloc returns is glibc's: its usable size is glibc's chunk arithmetic (24 usable bytes for 1 byte),
  // where jemalloc's smallest class is 8.
  void* m = std::malloc(1);
  EXPECT_EQ(malloc_usable_size(m), 24u);
  std::free(m);
}

TEST(Arena, OneArenaPerNode) {
  if (heap_kind() == HeapKind::kMalloc) GTEST_SKIP() << "malloc: " << heap_fallback_reason();
  const int a0 = node_arena(0), a1 = node_arena(1), a3 = node_arena(3);
  ASSERT_GE(a0, 0);
  EXPECT_NE(a0, a1);
  EXPECT_NE(a1, a3);
  EXPECT_EQ(node_arena(0), a0);  // created once
  EXPECT_EQ(node_arena(kMaxArenaNodes + 1), a1);
  for (int node : {0, 1, 3}) {
    for (size_t n : {size_t{16}, size_t{4096}, size_t{1} << 20}) {
      void* p = node_alloc(n, 64, node);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
      EXPECT_EQ(arena_lookup(p), node_arena(node)) << "node " << node << " size " << n;
      node_free(p, n, 64);
    }
  }
}

TEST(Arena, BoundThreadAllocatesOnItsNode) {
  if (heap_kind() == HeapKind::kMalloc) GTEST_SKIP() << "malloc: " << heap_fallback_reason();
  std::thread([] {
    bind_thread(2);
    void* p = node_alloc(256, 16, 2);  // through the thread cache
    void* q = node_alloc(256, 16, 5);  // another node: straight to its arena
    EXPECT_EQ(arena_lookup(p), node_arena(2));
    EXPECT_EQ(arena_lookup(q), node_arena(5));
    node_free(p, 256, 16);
    node_free(q, 256, 16);
  }).join();
}

// Producers on two nodes hand blocks to consumers that check and free them on other threads (and other nodes'
// bindings), the pattern of a G record or a pooled buffer that moves between Ps.
TEST(Arena, AllocateAndFreeAcrossThreads) {
  const int per_thread = static_cast<int>(test::scaled(20000, 500));
  constexpr int kThreads = 4;
  struct Block {
    uint64_t owner, seq;
    char fill[240];
  };
  std::vector<std::vector<Block*>> made(kThreads);
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([t, per_thread, &made] {
      if (t % 2 == 0) bind_thread(t % 2);
      for (int i = 0; i < per_thread; i++) {
        auto* b = node_new<Block>(t % 2);
        ASSERT_NE(b, nullptr);
        b->owner = static_cast<uint64_t>(t);
        b->seq = static_cast<uint64_t>(i);
        std::memset(b->fill, t + 1, sizeof b->fill);
        made[t].push_back(b);
      }
    });
  }
  for (auto& th : ts) th.join();
  ts.clear();
  std::atomic<int> bad{0};
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([t, &made, &bad] {
      const int from = (t + 1) % kThreads;  // another thread's blocks
      if (t % 2 == 1) bind_thread(t);
      for (size_t i = 0; i < made[from].size(); i++) {
        Block* b = made[from][i];
        if (b->owner != static_cast<uint64_t>(from) || b->seq != i || b->fill[0] != from + 1 ||
            b->fill[sizeof b->fill - 1] != from + 1)
          bad.fetch_add(1);
        node_delete(b);
      }
    });
  }
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Arena, StatsCountWhatIsAllocated) {
  constexpr size_t kBytes = 32 << 20;
  const HeapStats before = heap_stats();
  void* p = node_alloc(kBytes, 64, 0);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBytes);
  const HeapStats during = heap_stats();
  EXPECT_GE(during.allocated - before.allocated, static_cast<double>(kBytes) * 0.99);
  EXPECT_GE(during.active, during.allocated * 0.99);
  EXPECT_GE(during.resident, static_cast<double>(kBytes));
  if (heap_kind() != HeapKind::kMalloc) {
    EXPECT_GT(during.metadata, 0);
  }
  node_free(p, kBytes, 64);
  EXPECT_LT(heap_stats().allocated, during.allocated - static_cast<double>(kBytes) * 0.99);
}

// The memory policy the kernel holds for the page at p: its mode and the first word of its node mask.
struct Policy {
  int mode = -1;
  unsigned long nodes = 0;
};
Policy policy_at(const void* p) {
  Policy pol;
  unsigned long mask[16] = {};
  if (syscall(SYS_get_mempolicy, &pol.mode, mask, 16 * 8 * sizeof(unsigned long), p, MPOL_F_ADDR) != 0) return {};
  pol.nodes = mask[0];
  return pol;
}

// Runs in a process of its own (the arenas' hooks and statistics are process-wide): exits 0 when a node arena's memory
// is unbound before bind_arenas_to_nodes and bound to its node after it, else says what it saw.
[[noreturn]] void extents_bound_after_binding() {
  auto fail = [](int code, const char* what, Policy pol) {
    std::fprintf(stderr, "%s: mode %d nodes %#lx\n", what, pol.mode, pol.nodes);
    _exit(code);
  };
  void* before = node_alloc(1 << 20, 4096, 0);
  if (before == nullptr) _exit(10);
  if (Policy pol = policy_at(before); pol.mode != MPOL_DEFAULT) fail(11, "before binding", pol);
  if (!bind_arenas_to_nodes()) _exit(12);
  // Larger than anything the arena has mapped: a new extent, mapped through the hooks.
  constexpr size_t kBig = 64 << 20;
  auto* after = static_cast<char*>(node_alloc(kBig, 4096, 0));
  if (after == nullptr) _exit(13);
  for (const char* at : {after, after + kBig / 2, after + kBig - 4096}) {
    if (Policy pol = policy_at(at); pol.mode != MPOL_PREFERRED || pol.nodes != 1) fail(14, "after binding", pol);
  }
  // What the arena mapped before stays as it was; the pages are usable either way.
  std::memset(after, 1, kBig);
  const ArenaBindStats st = arena_bind_stats();
  if (st.bound_extents == 0 || st.failures != 0) {
    std::fprintf(stderr, "bound %llu failures %llu\n", static_cast<unsigned long long>(st.bound_extents),
                 static_cast<unsigned long long>(st.failures));
    _exit(15);
  }
  node_free(after, kBig, 4096);
  node_free(before, 1 << 20, 4096);
  _exit(0);
}

TEST(ArenaBindDeathTest, NodeArenaExtentsAreBoundToTheirNode) {
  if (heap_kind() == HeapKind::kMalloc) GTEST_SKIP() << "malloc: " << heap_fallback_reason();
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: no arena made or bound yet
  EXPECT_EXIT(extents_bound_after_binding(), testing::ExitedWithCode(0), "");
}

// A node the machine does not have (the hooks bind to whatever node id the placement names): one warning, the
// allocation still works, the failure is counted.
[[noreturn]] void binding_to_a_missing_node() {
  constexpr int kMissing = kMaxArenaNodes - 1;
  if (!bind_arenas_to_nodes()) _exit(10);
  for (int i = 0; i < 3; i++) {
    auto* p = static_cast<char*>(node_alloc(16 << 20, 4096, kMissing));  // a new extent each time
    if (p == nullptr) _exit(11);
    std::memset(p, 1, 16 << 20);
  }
  _exit(arena_bind_stats().failures >= 1 ? 0 : 12);
}

TEST(ArenaBindDeathTest, ANodeTheMachineLacksIsOneWarning) {
  if (heap_kind() == HeapKind::kMalloc) GTEST_SKIP() << "malloc: " << heap_fallback_reason();
  if (access("/sys/devices/system/node/node63", F_OK) == 0) GTEST_SKIP() << "this machine has a node 63";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(binding_to_a_missing_node(), testing::ExitedWithCode(0),
              "cannot bind the heap's pages to NUMA node 63 .mbind: .*they stay where first touched");
}

}  // namespace
}  // namespace tern::alloc
