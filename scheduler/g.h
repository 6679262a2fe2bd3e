// scheduler/g.h: G, the fiber record.
//
// A G is a context (Boost.Context fcontext), a stack from alloc/, and the Task it runs. G records are pooled per P and
// reused, so a G's address is not an identity across fibers; `id` is.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <cstdint>
#include <source_location>

#include "alloc/stack.h"
#include "base/check.h"
#include "scheduler/task.h"
#include "scheduler/wait_reason.h"

namespace tern::sched {

class Sched;
struct M;

enum class GStatus : uint32_t {
  kIdle,      // in a free list
  kRunnable,  // in a run queue, runnext or the global queue
  kRunning,   // on an M
  kWaiting,   // parked
  kDead,      // finished, not yet recycled
};

// Commit for park(): runs on the M's scheduler stack after the fiber has switched out. Returns false to abandon the
// park (the fiber is made runnable again at once).
using ParkCommit = bool (*)(struct G* g, void* arg);

struct G {
  boost::context::detail::fcontext_t ctx = nullptr;  // saved context while not running
  alloc::Stack stack;
  Task task;
  uint64_t id = 0;
  Sched* sched = nullptr;
  G* next = nullptr;  // intrusive link: run queues' overflow batches, global queue, free lists, GList
  std::atomic<GStatus> status{GStatus::kIdle};

  // Set by park() for the M to run once the fiber has switched out.
  ParkCommit commit = nullptr;
  void* commit_arg = nullptr;

  void* user = nullptr;  // a word for the parker's use (e.g. the channel operation that woke it)
  // Memory the fiber touches first when it resumes, which the scheduler prefetches with its stack one fiber ahead of
  // its run (sched.cc, prefetch_next): data it will read (a receive's buffer, set by whoever readies it) and memory
  // it will write (a read's destination, set by the fiber before it parks). Hints only: relaxed, possibly stale.
  std::atomic<const void*> prefetch_read{nullptr};
  std::atomic<void*> prefetch_write{nullptr};
  // Scheduling latency (runnable -> running), sampled: every kLatencySampleEvery-th time this G becomes runnable,
  // set_gstatus stamps ready_ns and execute() records the wait in its P's histogram (P::counters.latency).
  uint32_t nready = 0;
  int64_t ready_ns = 0;  // 0 = not sampled
  // For the fiber dump (Sched::fibers), which reads them from any thread while the fiber runs, parks or is recycled:
  // relaxed atomics the owner stores plainly (a mov each on x86). `id` is read there with __atomic_load_n too.
  std::atomic<WaitReason> wait_reason{WaitReason::kNone};  // set by park(); stale once the fiber runs again
  std::atomic<int64_t> since_ns{0};                        // the coarse clock (coarse_now_ns) at the last status change
  std::atomic<int32_t> last_p{-1};                         // the P it runs on, or last ran on; -1 before its first run
  std::atomic<std::source_location> spawn_site{
      std::source_location{}};  // where go()/spawn() was called; line 0: unknown
  void* tsan_fiber = nullptr;   // ThreadSanitizer's fiber handle (TSan builds only)
  void* asan_fake_stack = nullptr;
};

// The moves a G's status may make (Go's casgstatus checks the same): a fiber is in exactly one place (invariant 1), so
// a move from anywhere else is a fiber readied twice, run while queued, or recycled while parked.
//   kIdle     -> kRunnable (started)              kRunnable -> kRunning (picked)
//   kRunning  -> kRunnable (yielded) / kWaiting (parked) / kDead (finished)
//   kWaiting  -> kRunnable (readied, or its park abandoned by the commit)
//   kDead     -> kIdle (recycled)                 kIdle -> kIdle (a G new_g() gave that never started: free_g)
constexpr bool gstatus_move_ok(GStatus from, GStatus to) {
  switch (to) {
    case GStatus::kRunnable:
      return from == GStatus::kIdle || from == GStatus::kRunning || from == GStatus::kWaiting;
    case GStatus::kRunning:
      return from == GStatus::kRunnable;
    case GStatus::kWaiting:
    case GStatus::kDead:
      return from == GStatus::kRunning;
    case GStatus::kIdle:
      return from == GStatus::kDead || from == GStatus::kIdle;
  }
  return false;
}

// One runnable transition in this many is timed (Go samples its /sched/latencies likewise, 1 in 8: a clock read on
// every transition would cost a ping-pong pair of fibers about a tenth of its speed). Per G, not per thread, so that
// no thread-local is touched here; a fiber's first run is always sampled.
inline constexpr uint32_t kLatencySampleEvery = 8;

// Scheduling latency histogram buckets (per P, summed in SchedStats): bucket i counts waits in [2^i, 2^(i+1)) ns
// (bucket 0 also holds 0 and 1 ns), the last one everything from 2^(kLatencyBuckets-1) ns (about 9 minutes) up.
inline constexpr int kLatencyBuckets = 40;

int64_t now_ns();  // scheduler/timer.cc: CLOCK_MONOTONIC

// The clock a G's since_ns is stamped with: CLOCK_MONOTONIC as the scheduler last read it, which is at most one
// monitor period (kMonitorPeriodNs, 10 ms) behind while any P of any runtime is busy: every monitor tick and every
// acquirep (which reads the clock anyway) store it. A status change happens only on a busy P or just before one goes
// busy, so a stamp is never later than the true time and at most a period earlier. Reading it costs a load of a line
// written every 10 ms, where now_ns() costs 27 ns on the reference VM: a channel ping-pong round trip (two parks) takes
// about 100 ns there, so stamping each park with it would add about half (an estimate from those two figures, not
// a measurement). Process-wide because it is a clock, not state: every runtime refreshes it.
inline std::atomic<int64_t> g_coarse_ns{0};
inline int64_t coarse_now_ns() {
  return g_coarse_ns.load(std::memory_order_relaxed);
}
inline void refresh_coarse_clock(int64_t now) {
  g_coarse_ns.store(now, std::memory_order_relaxed);
}

// The one way a G's status changes. Checked in Debug and sanitizer builds (TERN_DCHECK); in Release a relaxed store
// and the since_ns stamp (a load and a store), and, one time in kLatencySampleEvery that a G becomes runnable, a clock
// read.
inline void set_gstatus(G* g, GStatus to) {
  TERN_DCHECK(gstatus_move_ok(g->status.load(std::memory_order_relaxed), to));
  if (to == GStatus::kRunnable && g->nready++ % kLatencySampleEvery == 0) [[unlikely]]
    g->ready_ns = now_ns();
  g->since_ns.store(coarse_now_ns(), std::memory_order_relaxed);
  g->status.store(to, std::memory_order_relaxed);
}

}  // namespace tern::sched
