// netpoll/wait_slot.cc: WaitSlot, the one-fiber parking spot an I/O operation waits in.
#include "netpoll/wait_slot.h"

#include "scheduler/park.h"

namespace tern::netpoll {
namespace {

// Lives on the waiting fiber's stack for the duration of one park.
struct Park {
  std::atomic<uintptr_t>* state;
  std::atomic<int64_t>* waiters;
  bool parked = false;
};

}  // namespace

// The timer's callback and argument never change (a slot neither copies nor moves): set once, here.
WaitSlot::WaitSlot() {
  timer_.fire = &WaitSlot::fire;
  timer_.arg = this;
}

WaitSlot::~WaitSlot() {
  sched::cancel_timer(&timer_);
}

WaitSlot::Result WaitSlot::wait(int64_t deadline_ns, std::atomic<int64_t>& waiters, sched::WaitReason why) {
  uintptr_t s = state_.load(std::memory_order_acquire);
  // Only the waiter moves the word away from kReady, so taking it cannot lose a notification. An exchange, not a
  // store: it reads the latest notify(), so it acquires what that notifier published.
  if (s == kReady) {
    state_.exchange(kEmpty, std::memory_order_acq_rel);
    return kNotified;
  }
  const bool timed = deadline_ns >= 0;
  if (timed) {
    if (sched::now_ns() >= deadline_ns) return kTimedOut;
    arm(deadline_ns);
  }

  Park p{&state_, &waiters, false};
  sched::park(
      [](sched::G* g, void* arg) {
        auto* p = static_cast<Park*>(arg);
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
  if (timed) {
    // Nobody waits any more; the timer stays where it is. The CAS fails when this wait's deadline fired (kOff), and
    // that firing, under its heap's lock, may not have reached the state word yet: it must finish before the state is
    // reset below, or it would expire the next wait. cancel_timer returns once it has.
    int64_t d = deadline_ns;
    if (!armed_.compare_exchange_strong(d, kNoWaiter, std::memory_order_acq_rel)) sched::cancel_timer(&timer_);
  }
  if (p.parked) waiters.fetch_sub(1, std::memory_order_relaxed);
  // Whoever woke us left kReady or kExpired; a notify() after a timeout turns kExpired into kReady, and then the
  // caller simply retries its operation.
  s = state_.exchange(kEmpty, std::memory_order_acq_rel);
  return s == kReady ? kNotified : kTimedOut;
}

// Makes the timer fire no later than `deadline_ns` for the wait about to park.
void WaitSlot::arm(int64_t deadline_ns) {
  const int64_t was = armed_.exchange(deadline_ns, std::memory_order_acq_rel);
  if (was == kOff) {
    // In no heap, or leaving one under its lock: cancel_timer returns once that firing has let it go.
    sched::cancel_timer(&timer_);
    timer_.when = deadline_ns;
    key_.store(deadline_ns, std::memory_order_relaxed);
    sched::add_timer(&timer_);
    return;
  }
  // kNoWaiter: the timer is in a heap, and a firing from now on sees this deadline. Due no later than it: it will
  // move itself here when it comes due.
  if (key_.load(std::memory_order_relaxed) <= deadline_ns) return;
  // Due later: move it. False means it fired meanwhile, which found this deadline due and expired the wait.
  if (sched::move_timer_earlier(&timer_, deadline_ns)) key_.store(deadline_ns, std::memory_order_relaxed);
}

// Runs under the timer heap's lock when timer_.when has passed: one or two CASes, and the fiber (if it really parked)
// goes back to the M to ready.
sched::G* WaitSlot::fire(sched::Timer* t) {
  auto* slot = static_cast<WaitSlot*>(t->arg);
  int64_t a = slot->armed_.load(std::memory_order_acquire);
  for (;;) {
    if (a == kNoWaiter) {  // nobody waits: leave the heap
      if (slot->armed_.compare_exchange_weak(a, kOff, std::memory_order_acq_rel)) return nullptr;
      continue;
    }
    if (a > t->when) {  // the deadline moved on since the timer took its place: follow it
      t->when = a;
      slot->key_.store(a, std::memory_order_relaxed);
      return nullptr;
    }
    // Due. Once armed_ is kOff the waiter's end-of-wait CAS fails, and it leaves the state word alone until this
    // firing is over, so the state below is still this wait's.
    if (slot->armed_.compare_exchange_weak(a, kOff, std::memory_order_acq_rel)) break;
  }
  if (auto hook = testing::fire_hook.load(std::memory_order_relaxed)) [[unlikely]]
    hook(slot);
  uintptr_t cur = slot->state_.load(std::memory_order_acquire);
  while (cur != kReady && cur != kExpired) {
    // From kEmpty: the fiber is between arm() and its commit CAS, which now fails and abandons the park.
    if (slot->state_.compare_exchange_weak(cur, kExpired, std::memory_order_acq_rel, std::memory_order_acquire))
      return cur == kEmpty ? nullptr : reinterpret_cast<sched::G*>(cur);
  }
  return nullptr;
}

sched::G* WaitSlot::notify() {
  // An exchange even when kReady is latched already: every notify() is then ordered against the waiter's consuming
  // exchange, so what the notifier wrote before it is visible to whoever consumes this or a later notification.
  uintptr_t s = state_.exchange(kReady, std::memory_order_acq_rel);
  return (s == kEmpty || s == kReady || s == kExpired) ? nullptr : reinterpret_cast<sched::G*>(s);
}

}  // namespace tern::netpoll
