// scheduler/g.h: G, the fiber record.
//
// A G is a context (Boost.Context fcontext), a stack from alloc/, and the Task it runs. G records are pooled per P and
// reused, so a G's address is not an identity across fibers; `id` is.
#pragma once

#include <boost/context/detail/fcontext.hpp>

#include <atomic>
#include <cstdint>

#include "alloc/stack.h"
#include "base/check.h"
#include "scheduler/task.h"

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
  int64_t ready_ns = 0;        // 0 = not sampled
  void* tsan_fiber = nullptr;  // ThreadSanitizer's fiber handle (TSan builds only)
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

// The one way a G's status changes. Checked in Debug and sanitizer builds (TERN_DCHECK); one relaxed store in Release
// (and, one time in kLatencySampleEvery that a G becomes runnable, a clock read).
inline void set_gstatus(G* g, GStatus to) {
  TERN_DCHECK(gstatus_move_ok(g->status.load(std::memory_order_relaxed), to));
  if (to == GStatus::kRunnable && g->nready++ % kLatencySampleEvery == 0) [[unlikely]]
    g->ready_ns = now_ns();
  g->status.store(to, std::memory_order_relaxed);
}

}  // namespace tern::sched
