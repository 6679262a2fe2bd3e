// A thread's first look at its io_uring ring (uring_detail::this_thread_ring, which every M makes when it parks)
// allocates nothing. An M can start while the process's map table is full: glibc reuses a cached thread stack, so
// pthread_create needs no new mapping. Its first park reached the thread_local ring, whose destructor registration
// (__cxa_thread_atexit) calls calloc, and that found no memory: SIGSEGV inside jemalloc, or glibc's "failed to
// register TLS destructor" abort. TryGo.StackExhaustionIsAnErrorNotAnAbort died so about once in 400 runs beside
// other tests that fill their own tables (a core showed the M in park_idle_m -> this_thread_ring -> calloc).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "netpoll/uring_internal.h"

namespace {

#if defined(TERN_SANITIZE_ADDRESS) || defined(TERN_SANITIZE_THREAD)
#define SKIP_UNDER_SANITIZER() GTEST_SKIP() << "fills the map table, which the sanitizer runtime cannot survive"
#else
#define SKIP_UNDER_SANITIZER() (void)0
#endif

[[noreturn]] void first_ring_look_with_the_map_table_full() {
  std::atomic<int> phase{0};
  tern::netpoll::uring_detail::ThreadRing* seen = nullptr;
  // Started before the table fills, so its stack exists; it looks at its ring only once the table is full.
  std::thread t([&] {
    while (phase.load() == 0) {
    }
    seen = tern::netpoll::uring_detail::this_thread_ring();
    phase.store(2);
  });
  const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<void*> pages;
  pages.reserve(1 << 17);
  for (int prot = PROT_READ;; prot = prot == PROT_READ ? PROT_NONE : PROT_READ) {
    void* p = mmap(nullptr, ps, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) break;
    pages.push_back(p);
  }
  phase.store(1);
  t.join();  // the thread's exit tears its ring down, with the table still full
  for (void* p : pages) munmap(p, ps);
  if (seen == nullptr || seen->poller_id != 0 || seen->ring != nullptr) {
    std::fprintf(stderr, "the thread's ring was not a fresh, empty one\n");
    std::_Exit(3);
  }
  std::fprintf(stderr, "looked at its ring with %zu pages filling the table\n", pages.size());
  std::_Exit(0);
}

TEST(UringThreadRing, FirstLookAllocatesNothingSoAThreadStartedWithTheMapTableFullSurvives) {
  SKIP_UNDER_SANITIZER();
  EXPECT_EXIT(first_ring_look_with_the_map_table_full(), ::testing::ExitedWithCode(0), "looked at its ring");
}

}  // namespace
