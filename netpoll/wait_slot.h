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
// Lifetime: notify() touches the slot only up to its exchange, so a slot on a fiber's stack may be
// destroyed as soon as wait() has returned kNotified.
#pragma once

#include <atomic>
#include <cstdint>

#include "scheduler/g.h"
#include "scheduler/wait_reason.h"

namespace tern::netpoll {

class WaitSlot {
 public:
  enum Result { kNotified, kTimedOut };

  WaitSlot() = default;
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

  std::atomic<uintptr_t> state_{kEmpty};
};

}  // namespace tern::netpoll
