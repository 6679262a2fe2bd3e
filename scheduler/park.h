// scheduler/park.h: the primitives that sync/ and netpoll/ build on.
//
// Park/ready protocol (invariant 2 in docs/architecture.md):
//   1. A fiber that must wait publishes nothing yet; it calls park(commit, arg).
//   2. park() switches to the M's scheduler stack (or straight to the fiber that runs next on this P); only then does
//      that side run commit(g, arg), which makes the fiber findable (registers it as a waiter, unlocks the structure
//      it waits on). A commit must be short and must not park: it runs on whatever stack the switch went to.
//   3. A waker that finds the fiber calls ready(g) exactly once; the fiber is queued and later resumes from park().
// Because the waker can only see the fiber after commit, and commit runs after the switch, a fiber is never resumed
// while it is still running, and no wakeup is lost.
//
//   // A slot the waker polls: the commit publishes the fiber only after it has switched out.
//   sched::park([](sched::G* g, void* slot) {
//     static_cast<std::atomic<sched::G*>*>(slot)->store(g, std::memory_order_release);
//     return true;
//   }, &slot_, sched::WaitReason::kOther);
//
// Most code should use tern::Waiter (runtime/sync/waiter.h), which adds deadlines and plain-thread support. A commit
// that unlocks a std::mutex the fiber locked works, but ThreadSanitizer reports it (the unlock comes from the M's
// context); prefer a state machine that tolerates a wakeup before the park, as Waiter does.
#pragma once

#include <atomic>
#include <cstdint>

#include "scheduler/g.h"
#include "scheduler/poller.h"
#include "scheduler/wait_reason.h"

namespace tern::sched {

// The fiber running on this thread, or nullptr on a thread that is not running a fiber.
G* current();
// True on a thread that is running a fiber.
inline bool in_fiber() {
  return current() != nullptr;
}

// For the span of a wait: tells the scheduler where the calling fiber will write first when it resumes (G's
// prefetch_write), and on the way out clears both of its prefetch hints (prefetch_read is the readier's to set).
// A no-op off fibers.
class ResumeHint {
 public:
  explicit ResumeHint(void* write) : g_(current()) {
    if (g_ != nullptr) g_->prefetch_write.store(write, std::memory_order_relaxed);
  }
  ~ResumeHint() {
    if (g_ == nullptr) return;
    g_->prefetch_read.store(nullptr, std::memory_order_relaxed);
    g_->prefetch_write.store(nullptr, std::memory_order_relaxed);
  }
  ResumeHint(const ResumeHint&) = delete;
  ResumeHint& operator=(const ResumeHint&) = delete;

 private:
  G* g_;
};

// Parks the current fiber (see above). Must be called from a fiber. `why` is what the fiber waits on, as the fiber
// dump and the event trace show it (scheduler/wait_reason.h); it costs a store.
void park(ParkCommit commit, void* arg, WaitReason why);

// Makes a parked fiber runnable. Callable from any thread: a fiber of any runtime, a plain OS thread, a poller.
// From a fiber of the same runtime the fiber goes to this P's runnext (it runs next, sharing the time slice).
void ready(G* g);
// Like ready() but queues at the tail of the local queue (or the global queue), not in runnext.
void ready_tail(G* g);
// Makes a batch of fibers runnable (a poller's harvest). Callable from any thread.
void ready_list(GList& list);

// Gives up the processor: the fiber goes to the tail of the local run queue. Does nothing outside fibers.
void yield();

// The id of the current fiber, 0 outside fibers.
uint64_t current_id();

// Preemption marks (Go's 10 ms preemption, cooperative): the monitor marks a processor whose fiber has run a whole
// period (kMonitorPeriodNs, 10 ms) without a switch, and the next preempt_point() on it yields. tern's channel and
// socket operations call it; a long computation calls it in its loop. Unmarked, it costs one load of a process-wide
// word that changes only when a mark is set or honoured.
inline std::atomic<uint32_t> g_preempt_marks{0};  // marks set and not yet cleared, over every runtime
bool preempt_marked();                            // this thread's P is marked (out of line: this_m())
void preempt_yield();                             // clears the mark, counts it, yields
inline void preempt_point() {
  if (g_preempt_marks.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    if (preempt_marked()) preempt_yield();
  }
}

// Go's LockOSThread: from lock_to_thread() until as many unlock_thread() calls, the calling fiber runs only on the
// thread it runs on now, and that thread runs no other fiber (while the fiber waits, the thread sleeps and its
// processor goes to others). For thread-affine libraries and thread_local state. Off fibers they do nothing.
void lock_to_thread();
void unlock_thread();
bool thread_locked();  // the calling fiber holds a lock

// The span of a call that may block its thread (tern::blocking, runtime/blocking.h): the constructor lets go of the
// processor, the destructor takes one back (scheduler/blocking.cc). Off fibers, and nested, it does nothing. Between
// the two the fiber may block its thread but must not park (that stops the process with a message saying so).
class BlockingSection {
 public:
  BlockingSection();
  ~BlockingSection();
  BlockingSection(const BlockingSection&) = delete;
  BlockingSection& operator=(const BlockingSection&) = delete;

 private:
  struct M* m_ = nullptr;
};

}  // namespace tern::sched

namespace tern::sched {
// The id (0..kMaxProcs-1) of the P this thread holds, or -1 on a thread without one. Stable between scheduling
// points only: a fiber may move to another P when it parks or yields.
int current_p();
// How long the calling fiber waited runnable before this run began, in ns: 0 outside a fiber, and when the wait was
// not timed (G::last_wait_ns). A request read by a fiber that just woke sat queued at least this long in the server.
int64_t last_sched_wait_ns();
}  // namespace tern::sched
