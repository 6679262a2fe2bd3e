// netpoll/wait_slot.h: a parking spot for the one fiber that waits on one I/O event, with an optional deadline.
//
// The state word, after the rg/wg words of Go's pollDesc (src/runtime/netpoll.go):
//   kEmpty     nobody waits, nothing pending;
//   kReady     an event arrived that nobody consumed yet: a latch, so the next wait() returns at once;
//   kExpired   the deadline passed while a fiber was waiting (transient: the woken fiber resets it);
//   a G*       that fiber is parked here.
// notify() sets kReady and hands back the parked fiber, if any, for the caller to make runnable; it never blocks and
// takes no lock, so a poller may call it for thousands of slots per wait. wait() parks until notify() or the deadline,
// using the park/commit protocol of scheduler/park.h, so a notify() that races with the park is never lost.
//
//   // reader (a fiber), readiness style:
//   while ((n = ::recv(fd, buf, len, 0)) < 0 && errno == EAGAIN)
//     if (pd->rd.wait(deadline_ns, waiters, sched::WaitReason::kNetRead) == WaitSlot::kTimedOut) return -ETIMEDOUT;
//   // poller, on EPOLLIN for pd:
//   if (sched::G* g = pd->rd.notify()) out.push(g);
//
// Ordering: notify() and the waiter's consumption of a notification are both read-modify-writes of the state word, so
// whatever a notifier stored before notify() (a hang-up flag, say) happens-before the return of the wait() that
// consumes that notification, even when it coalesced with an earlier one; or else a later wait() finds it latched.
//
// Deadlines: the slot owns one timer, which stays in a P's timer heap between waits. A wait whose deadline is no
// earlier than the timer's place touches no heap: when the timer comes due it finds the deadline moved on and moves
// itself there (scheduler/timer.h's lazy modification), or, with nobody waiting, leaves the heap. A connection whose
// every read renews its deadline thus costs the heap about one operation per timeout period instead of an insertion
// and a removal per wait. Only a deadline earlier than the timer's place takes the heap's lock.
//
// Lifetime: notify() touches the slot only up to its exchange, so a slot on a fiber's stack may be
// destroyed as soon as wait() has returned kNotified. The destructor takes the timer out of its heap.
#pragma once

#include <atomic>
#include <cstdint>

#include "scheduler/g.h"
#include "scheduler/timer.h"
#include "scheduler/wait_reason.h"

namespace tern::netpoll {

class WaitSlot {
 public:
  enum Result { kNotified, kTimedOut };

  WaitSlot();
  ~WaitSlot();
  WaitSlot(const WaitSlot&) = delete;
  WaitSlot& operator=(const WaitSlot&) = delete;

  // Parks the calling fiber until notify() or until CLOCK_MONOTONIC `deadline_ns` (-1: none). Returns at once with
  // kNotified if a notification is latched (consuming it), or with kTimedOut if the deadline has already passed.
  // `waiters` counts parked fibers for Poller::has_waiters(); `why` is what the fiber dump shows it waiting on. Must be
  // called from a fiber; one waiter at a time.
  Result wait(int64_t deadline_ns, std::atomic<int64_t>& waiters, sched::WaitReason why);

  // Latches a notification. Returns the fiber parked here, which the caller must make runnable, or nullptr.
  sched::G* notify();

  // Drops a latched notification or timeout; for reusing a slot whose previous user is gone.
  void reset() { state_.store(kEmpty, std::memory_order_release); }

 private:
  static constexpr uintptr_t kEmpty = 0, kReady = 1, kExpired = 2;  // G pointers are aligned, so never 1 or 2
  // armed_ besides a waiter's deadline: nobody waits with a deadline, but the timer is in a heap; or the timer is in
  // none (or is leaving one: a firing that set kOff still holds the heap's lock).
  static constexpr int64_t kNoWaiter = -1, kOff = -2;

  void arm(int64_t deadline_ns);
  static sched::G* fire(sched::Timer* t);

  // state_, armed_ and key_ first (24 bytes): what every wait and notify touches; the timer after them is touched only
  // when it is added, moved or fires (EpollPoller::PollDesc keeps the first part on its descriptor's cache line).
  std::atomic<uintptr_t> state_{kEmpty};
  // The waiter's deadline, kNoWaiter or kOff. The waiter moves it from kNoWaiter or kOff to its deadline and back to
  // kNoWaiter; the timer's firing moves kNoWaiter or a due deadline to kOff as it leaves the heap. Both read-modify-
  // write it, so each sees the other's last move.
  std::atomic<int64_t> armed_{kOff};
  // The timer's `when` while it is in a heap, for the waiter to read without the heap's lock.
  std::atomic<int64_t> key_{0};
  sched::Timer timer_;
};

namespace testing {
// Tests only: called by a firing that has found its wait's deadline due, between taking the timer out (armed_) and
// expiring the wait (state_), under the timer heap's lock. One relaxed load on the firing path when unset.
inline std::atomic<void (*)(WaitSlot*)> fire_hook{nullptr};
}  // namespace testing

}  // namespace tern::netpoll
