// netpoll/wait_slot.cc: WaitSlot, the one-fiber parking spot an I/O operation waits in.
#include "netpoll/wait_slot.h"

#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern::netpoll {
namespace {

// Lives on the waiting fiber's stack for the duration of one park.
struct Park {
  std::atomic<uintptr_t>* state;
  std::atomic<int64_t>* waiters;
  sched::Timer timer;
  bool timed = false;
  bool parked = false;
};

}  // namespace

WaitSlot::Result WaitSlot::wait(int64_t deadline_ns, std::atomic<int64_t>& waiters, sched::WaitReason why) {
  uintptr_t s = state_.load(std::memory_order_acquire);
  // Only the waiter moves the word away from kReady, so taking it cannot lose a notification. An exchange, not a
  // store: it reads the latest notify(), so it acquires what that notifier published.
  if (s == kReady) {
    state_.exchange(kEmpty, std::memory_order_acq_rel);
    return kNotified;
  }
  if (deadline_ns >= 0 && sched::now_ns() >= deadline_ns) return kTimedOut;

  Park p{&state_, &waiters, {}, deadline_ns >= 0, false};
  if (p.timed) {
    p.timer.when = deadline_ns;
    p.timer.arg = &state_;
    // Runs under the timer heap's lock: one CAS, and the fiber (if it really parked) goes back to the M to ready.
    p.timer.fire = [](sched::Timer* t) -> sched::G* {
      auto* st = static_cast<std::atomic<uintptr_t>*>(t->arg);
      uintptr_t cur = st->load(std::memory_order_acquire);
      while (cur != kReady && cur != kExpired) {
        // From kEmpty: the fiber is between add_timer and its commit CAS, which now fails and abandons the park.
        if (st->compare_exchange_weak(cur, kExpired, std::memory_order_acq_rel, std::memory_order_acquire))
          return cur == kEmpty ? nullptr : reinterpret_cast<sched::G*>(cur);
      }
      return nullptr;
    };
  }
  sched::park(
      [](sched::G* g, void* arg) {
        auto* p = static_cast<Park*>(arg);
        if (p->timed) sched::add_timer(&p->timer);
        // Counted before the fiber becomes findable, so has_waiters() is never false while a fiber waits here.
        p->waiters->fetch_add(1, std::memory_order_relaxed);
        // Written before the CAS: once it succeeds a notifier may ready the fiber, which can resume on another M and
        // pop `p` while this commit is still returning, so nothing may touch `p` after it.
        p->parked = true;
        uintptr_t expected = kEmpty;
        if (p->state->compare_exchange_strong(expected, reinterpret_cast<uintptr_t>(g), std::memory_order_acq_rel,
                                              std::memory_order_acquire))
          return true;
        p->parked = false;
        p->waiters->fetch_sub(1, std::memory_order_relaxed);
        return false;  // a notification or the deadline came first
      },
      &p, why);
  if (p.timed) sched::cancel_timer(&p.timer);
  if (p.parked) waiters.fetch_sub(1, std::memory_order_relaxed);
  // Whoever woke us left kReady or kExpired; a notify() after a timeout turns kExpired into kReady, and then the
  // caller simply retries its operation.
  s = state_.exchange(kEmpty, std::memory_order_acq_rel);
  return s == kReady ? kNotified : kTimedOut;
}

sched::G* WaitSlot::notify() {
  // An exchange even when kReady is latched already: every notify() is then ordered against the waiter's consuming
  // exchange, so what the notifier wrote before it is visible to whoever consumes this or a later notification.
  uintptr_t s = state_.exchange(kReady, std::memory_order_acq_rel);
  return (s == kEmpty || s == kReady || s == kExpired) ? nullptr : reinterpret_cast<sched::G*>(s);
}

}  // namespace tern::netpoll
