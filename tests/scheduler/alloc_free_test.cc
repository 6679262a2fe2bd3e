// Invariant 7 (docs/architecture.md): once warm, spawning, running, parking, readying and finishing fibers allocates
// nothing from the general heap: G records and stacks come from the runtime's pools. Counted by replacing the global
// operator new for this test binary.
#include <gtest/gtest.h>

#include <execinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/park.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_news{0};
// Where the first counted allocations came from: a failure prints them (backtrace() only fills a fixed buffer; it is
// primed before counting starts, so its own first-call loading happens outside).
constexpr int kTraced = 4, kTraceDepth = 24;
void* g_traces[kTraced][kTraceDepth];
int g_trace_depth[kTraced];
std::atomic<int> g_traced{0};
}  // namespace

// Every replaceable allocation function counts (the array forms too); the rest (nothrow, aligned) are not used by the
// runtime. noinline: GCC otherwise pairs the inlined malloc/free with new/delete and warns (-Wmismatched-new-delete).
namespace {
void* counted_alloc(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_news.fetch_add(1, std::memory_order_relaxed);
    if (const int i = g_traced.fetch_add(1, std::memory_order_relaxed); i < kTraced)
      g_trace_depth[i] = backtrace(g_traces[i], kTraceDepth);
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace
__attribute__((noinline)) void* operator new(std::size_t n) {
  return counted_alloc(n);
}
__attribute__((noinline)) void* operator new[](std::size_t n) {
  return counted_alloc(n);
}
__attribute__((noinline)) void operator delete(void* p) noexcept {
  std::free(p);
}
__attribute__((noinline)) void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p) noexcept {
  std::free(p);
}
__attribute__((noinline)) void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace tern {
namespace {

// One round: spawn `n` fibers that each yield once and park once (readied by the next one), then wait for all.
void round(int n, std::atomic<int>& done) {
  done.store(0);
  for (int i = 0; i < n; i++) {
    go([&done] {
      yield();
      done.fetch_add(1, std::memory_order_relaxed);
    });
  }
  while (done.load() < n) yield();
}

TEST(AllocFree, SteadyStateSpawnParkReadyAllocatesNothing) {
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  long during = -1;
  rt.run([&] {
    std::atomic<int> done{0};
    // Warm the G and stack pools past the counted phase's peak of live fibers (at most 2000 + 1): the pools grow to
    // the peak once and then only recycle.
    for (int i = 0; i < 3; i++) round(4000, done);
    // The rounds' peak of live fibers depends on how fast the other processor runs them (they finish while more are
    // spawned): on a loaded machine a counted phase could still reach a new peak and grow the G records (a block of
    // them and the vector that holds the blocks: seen under TSan beside other tests). So hold 4000 alive at once here.
    {
      WaitGroup gate;
      gate.add(1);
      done.store(0);
      for (int i = 0; i < 4000; i++) {
        go([&] {
          gate.wait();
          done.fetch_add(1);
        });
      }
      gate.done();
      while (done.load() < 4000) yield();
    }
    std::atomic<sched::G*> slot{nullptr};
    // The pools (G records, stacks, the M threads) grow until they reach the workload's peak and then only recycle;
    // which phase reaches the peak depends on scheduling. So the phase is repeated until one allocates nothing (the
    // test fails if none of 20 does), and then kConfirm more phases run: one clean phase alone would pass an
    // allocation made only now and then (every few thousand operations, or on a steal), which recurs in later phases.
    // Growth can still come late, rarely: a per-P stack cache's vector grows the first time that P holds more free
    // stacks than ever (StackCache::put), and a loaded machine starts an M. So one later phase may allocate, once.
    constexpr int kConfirm = 10;
    int confirmed = -1;  // phases since the first clean one
    int late = 0;        // of those, the ones that allocated
    std::vector<long> phases;
    std::string log_m;
    phases.reserve(40);
    log_m.reserve(200);  // before counting: the log of phases must not allocate while counted
    {
      void* prime[1];
      backtrace(prime, 1);  // its first call loads libgcc_s (allocating): not while counted
    }
    for (int attempt = 0; attempt < 20 + kConfirm && confirmed < kConfirm; attempt++) {
      const int threads_before = rt.stats().threads;
      g_news.store(0);
      g_traced.store(0);  // the traces a failure prints are the last phase's
      g_counting.store(true);
      for (int r = 0; r < 5; r++) round(2000, done);
      // A park/ready pair through a slot, as sync primitives do.
      for (int i = 0; i < 1000; i++) {
        go([&slot] {
          sched::G* g;
          while ((g = slot.exchange(nullptr)) == nullptr) yield();
          sched::ready(g);
        });
        sched::park(
            [](sched::G* g, void* s) {
              static_cast<std::atomic<sched::G*>*>(s)->store(g);
              return true;
            },
            &slot, sched::WaitReason::kOther);
      }
      g_counting.store(false);
      during = g_news.load();
      // A phase that started an M allocated for it (its thread and record): growth, which a loaded machine can cause
      // at any time, neither clean nor a failure.
      const bool new_m = rt.stats().threads > threads_before;
      phases.push_back(during);
      if (new_m) log_m += " " + std::to_string(phases.size() - 1);
      if (during != 0 && new_m) continue;
      if (confirmed >= 0) {
        confirmed++;
        if (during != 0 && (++late > 1 || during > 1)) break;  // recurs: not growth
        during = 0;
      } else if (during == 0) {
        confirmed = 0;
      }
    }
    std::string log;
    for (long n : phases) log += " " + std::to_string(n);
    if (during != 0 || confirmed != kConfirm) {
      // Where the last phase's first counted allocations were made, for whoever reads the failure.
      for (int i = 0; i < std::min(g_traced.load(), kTraced); i++) {
        std::fprintf(stderr, "counted allocation %d:\n", i);
        backtrace_symbols_fd(g_traces[i], g_trace_depth[i], STDERR_FILENO);
      }
    }
    EXPECT_EQ(during, 0) << "operator new calls during steady-state spawn/park/ready; per phase:" << log
                         << "; phases that started an M:" << log_m;
    EXPECT_EQ(confirmed, kConfirm) << "a clean phase must stay (nearly) clean; operator new calls per phase:" << log
                                   << "; phases that started an M:" << log_m;
  });
}

}  // namespace
}  // namespace tern
