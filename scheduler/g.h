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
#include "scheduler/ticks.h"
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
  // lock_to_thread (park.h): the M this fiber runs on only, and how many locks it holds (written by the fiber itself
  // while it runs; read by an M that takes it from a queue, after the queue's publication).
  std::atomic<struct M*> locked_m{nullptr};
  uint32_t lock_count = 0;

  // Set by park() for the M to run once the fiber has switched out.
  ParkCommit commit = nullptr;
  void* commit_arg = nullptr;

  void* user = nullptr;  // a word for the parker's use (e.g. the channel operation that woke it)
  // Memory the fiber touches first when it resumes, which the scheduler prefetches with its stack one fiber ahead of
  // its run (sched.cc, prefetch_next): data it will read (a receive's buffer, set by whoever readies it) and memory
  // it will write (a read's destination, set by the fiber before it parks). Hints only: relaxed, possibly stale.
  std::atomic<const void*> prefetch_read{nullptr};
  std::atomic<void*> prefetch_write{nullptr};
  // Scheduling latency (runnable -> running), sampled (set_gstatus says which times): set_gstatus stamps ready_ticks
  // (scheduler/ticks.h) and ready_weight, and execute() records the wait in its P's histogram (P::counters.latency)
  // as that many waits.
  uint32_t nready = 0;  // runnable transitions in the fiber's busy stretches (see set_gstatus)
  uint32_t ready_weight = 0;
  uint64_t ready_ticks = 0;  // 0 = not sampled
  // The runnable -> running wait that began this run, in ns, when it was timed (0 when not: a fiber readied again
  // within one coarse-clock period is timed one time in kLatencySampleEvery). Owner-only; read by the fiber itself
  // (sched::last_sched_wait_ns) to learn how long its work sat queued before it ran: admission control's signal.
  int64_t last_wait_ns = 0;
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

// Which runnable transitions are timed (Go samples its /sched/latencies too: a tick read at each would cost a
// ping-pong pair of fibers several percent of its speed). A fiber's first transition in each coarse-clock period (its
// last status change was in an earlier one: the monitor moves that clock every 10 ms) is always timed, and counted
// once; the rest, a fiber switching many times within one period, are timed one in kLatencySampleEvery and each
// counted as kLatencySampleEvery waits. So fibers that run now and then (a connection's handler between requests)
// are all seen, hot ones cost about one tick read per kLatencySampleEvery switches, and the histogram's counts are an
// unbiased estimate of all transitions rather than a count of some (the weights make up for the sampling). Per G, not
// per thread, so that no thread-local is touched here. A wake from a socket read is always timed: admission control
// (runtime/limiter.h) reads each request's queueing from it.
inline constexpr uint32_t kLatencySampleEvery = 32;

// Scheduling latency histogram buckets (per P, summed in SchedStats): bucket i counts waits in [2^i, 2^(i+1)) ns
// (bucket 0 also holds 0 and 1 ns), the last one everything from 2^(kLatencyBuckets-1) ns (about 9 minutes) up.
inline constexpr int kLatencyBuckets = 40;

int64_t now_ns();  // scheduler/timer.cc: CLOCK_MONOTONIC

// The clock a G's since_ns is stamped with: CLOCK_MONOTONIC as the scheduler last read it, which is at most one
// monitor period (kMonitorPeriodNs, 10 ms) behind while any P of any runtime is busy: every monitor tick stores it, and
// so does every acquirep (which reads the clock anyway) that finds it more than kCoarseRefreshNs behind. A status
// change happens only on a busy P or just before one goes busy, so a stamp is never later than the true time and at
// most a period earlier. Reading it costs a load of a line written rarely, where now_ns() costs 27 ns on the
// reference VM: a channel ping-pong round trip (two parks) takes about 100 ns there, so stamping each park with it
// would add about half (an estimate from those two figures, not a measurement). Process-wide because it is a clock,
// not state: every runtime refreshes it.
inline std::atomic<int64_t> g_coarse_ns{0};
inline int64_t coarse_now_ns() {
  return g_coarse_ns.load(std::memory_order_relaxed);
}
// acquirep refreshes it only when it is this far behind: the stamps it serves are read by people (the fiber dump's
// "waiting for 3.2 s"), for whom 100 us is nothing.
inline constexpr int64_t kCoarseRefreshNs = 100'000;
inline void refresh_coarse_clock(int64_t now) {
  g_coarse_ns.store(now, std::memory_order_relaxed);
}

// Whether a P's earliest timer `t0` (P::timer0; 0: none) is due, reading the clock (into `now`) only when it may be. A
// timer more than kTimerCoarseSlackNs past the coarse clock, which is never ahead of the true time and, while a P is
// busy, at most a monitor period behind it, is not due and costs no clock read: with deadlines left in the heap
// between waits (netpoll/wait_slot.h) a busy P nearly always has a timer, seconds away, and this check runs at every
// scheduling round. Should the coarse clock fall more than the slack behind (a monitor thread starved that long), such
// a timer fires that much late.
inline constexpr int64_t kTimerCoarseSlackNs = 1'000'000'000;
inline bool timer_due(int64_t t0, int64_t& now) {
  if (t0 == 0 || t0 - coarse_now_ns() > kTimerCoarseSlackNs) return false;
  now = now_ns();
  return t0 <= now;
}

// The one way a G's status changes. Checked in Debug and sanitizer builds (TERN_DCHECK); in Release a relaxed store
// and the since_ns stamp (a load and a store), and for a transition to runnable a compare with the old stamp and, for
// the sampled ones (kLatencySampleEvery), a tick read (rdtsc where the kernel's clock is the TSC).
inline void set_gstatus(G* g, GStatus to) {
  TERN_DCHECK(gstatus_move_ok(g->status.load(std::memory_order_relaxed), to));
  const int64_t now = coarse_now_ns();
  if (to == GStatus::kRunnable) {
    if (g->since_ns.load(std::memory_order_relaxed) != now) [[unlikely]] {
      g->ready_weight = 1;
      g->ready_ticks = fast_ticks();
    } else if (g->wait_reason.load(std::memory_order_relaxed) == WaitReason::kNetRead &&
               g->status.load(std::memory_order_relaxed) == GStatus::kWaiting) {
      // Woken by the network: always timed (and counted once), so that a server fiber knows how long each request it
      // reads sat queued (this_fiber::queued, admission control), however soon after its last run it arrived.
      g->ready_weight = 1;
      g->ready_ticks = fast_ticks();
    } else if (++g->nready % kLatencySampleEvery == 0) [[unlikely]] {
      g->ready_weight = kLatencySampleEvery;
      g->ready_ticks = fast_ticks();
    }
  }
  g->since_ns.store(now, std::memory_order_relaxed);
  g->status.store(to, std::memory_order_relaxed);
}

}  // namespace tern::sched
