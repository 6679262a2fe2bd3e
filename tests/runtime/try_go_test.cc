// tern::try_go and Runtime::try_go: running out of fiber stacks is an error the caller gets back (and f is not run),
// not the abort that tern::go ends in. The map table is filled for real (vm.max_map_count), in a child process (a
// death test exiting 0), so that the parent keeps its mappings.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"

namespace {

using tern::test::procs;

// Fibers started and finished before the table fills, so that their G records and stacks are free to reuse: once the
// table is full, neither a new block of G records nor a new stack can be had.
constexpr int kWarmFibers = 256;

#define CHILD_CHECK(cond)                                      \
  do {                                                         \
    if (!(cond)) {                                             \
      std::fprintf(stderr, "child check failed: %s\n", #cond); \
      std::_Exit(3);                                           \
    }                                                          \
  } while (0)

// The sanitizer runtimes map memory of their own at any time (shadow, allocator): with the map table full they abort
// before the code under test can report anything, so these tests run only in plain builds.
#if defined(TERN_SANITIZE_ADDRESS) || defined(TERN_SANITIZE_THREAD)
#define SKIP_UNDER_SANITIZER() GTEST_SKIP() << "fills the map table, which the sanitizer runtime cannot survive"
#else
#define SKIP_UNDER_SANITIZER() (void)0
#endif

std::vector<void*> fill_map_table() {
  const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<void*> pages;
  pages.reserve(1 << 17);
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

[[noreturn]] void exhaust_then_recover() {
  tern::Runtime rt(procs(2));
  std::atomic<int> ran{0};
  std::string error;
  int started = 0;
  rt.run([&] {
    {
      tern::WaitGroup warm;
      for (int i = 0; i < kWarmFibers; i++) {
        warm.add(1);
        tern::go([&] { warm.done(); });
      }
      warm.wait();
    }
    tern::WaitGroup gate(1);  // holds every fiber started below, and so its stack
    tern::WaitGroup held;
    std::vector<void*> filler = fill_map_table();
    for (;;) {
      held.add(1);
      auto r = tern::try_go([&] {
        ran++;
        gate.wait();
        held.done();
      });
      if (!r) {
        held.done();
        error = r.error().message();
        break;
      }
      started++;
      CHILD_CHECK(started <= kWarmFibers + 64);  // the stacks there were; more means none ever ran out
    }
    unmap_all(filler);
    // With the table free again, the same call succeeds.
    held.add(1);
    CHILD_CHECK(tern::try_go([&] {
      ran++;
      gate.wait();
      held.done();
    }));
    started++;
    gate.done();
    held.wait();
  });
  CHILD_CHECK(started > 0);
  CHILD_CHECK(ran.load() == started);  // the refused closure never ran
  // The refused fiber was never spawned: the counts do not leave it live forever. (run() returns when its fiber's
  // function has, a moment before the scheduler counts that fiber finished: allow it a second.)
  tern::RuntimeStats st = rt.stats();
  for (int i = 0; i < 1000 && st.live != 0; i++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    st = rt.stats();
  }
  if (st.live != 0 || st.spawned != st.finished) {
    std::fprintf(stderr, "child check failed: live %llu, spawned %llu, finished %llu\n",
                 static_cast<unsigned long long>(st.live), static_cast<unsigned long long>(st.spawned),
                 static_cast<unsigned long long>(st.finished));
    std::_Exit(3);
  }
  CHILD_CHECK(error.find("vm.max_map_count") != std::string::npos);
  CHILD_CHECK(error.find("cannot map a stack") != std::string::npos);
  std::fprintf(stderr, "started %d, then: %s\n", started, error.c_str());
  std::_Exit(0);
}

TEST(TryGo, StackExhaustionIsAnErrorNotAnAbort) {
  SKIP_UNDER_SANITIZER();
  EXPECT_EXIT(exhaust_then_recover(), ::testing::ExitedWithCode(0), "started [0-9]+, then: cannot map a stack");
}

[[noreturn]] void outside_fibers() {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::WaitGroup warm;
    for (int i = 0; i < kWarmFibers; i++) {
      warm.add(1);
      tern::go([&] { warm.done(); });
    }
    warm.wait();
  });
  std::atomic<int> ran{0};
  std::vector<void*> filler = fill_map_table();
  tern::Result<void> r;
  int started = 0;
  // The fibers park for good (destroying the runtime discards them), holding their stacks.
  while ((r = rt.try_go([&] {
    ran++;
    tern::sleep_for(std::chrono::hours::max());
  }))) {
    CHILD_CHECK(++started <= kWarmFibers + 64);
  }
  unmap_all(filler);
  CHILD_CHECK(r.error() == std::errc::not_enough_memory);
  CHILD_CHECK(r.error().message().find("vm.max_map_count") != std::string::npos);
  while (ran.load() < started) tern::sleep_for(std::chrono::milliseconds(1));
  std::_Exit(0);
}

TEST(TryGo, RuntimeTryGoFromAThreadReturnsTheError) {
  SKIP_UNDER_SANITIZER();
  EXPECT_EXIT(outside_fibers(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
