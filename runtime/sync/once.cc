// runtime/sync/once.cc: Once: phase and lock in one word; waiters told through their own node.
#include "runtime/sync/once.h"

#include <sched.h>

#include "runtime/sync/spin_lock.h"

namespace tern {

// The lock is held for a few instructions and never across a park, so waiting for it spins, yielding the thread after
// a while in case its holder was preempted (as SpinLock does).
uint32_t Once::lock_unless_done() {
  int spins = 0;
  uint32_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if ((s & kPhase) == kDone) return kDone;
    if ((s & kLocked) != 0) {
      if (++spins > kSpinLockSpins) sched_yield();
      s = state_.load(std::memory_order_acquire);
      continue;
    }
    if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_acquire)) {
      return s & kPhase;
    }
  }
}

bool Once::begin() {
  for (;;) {
    const uint32_t phase = lock_unless_done();
    if (phase == kDone) return false;
    if (phase == kIdle) {
      state_.store(kRunning, std::memory_order_release);  // and unlocks
      return true;
    }
    Waiter w;
    Node n;
    n.waiter = &w;
    q_.push_back(&n);
    state_.store(kRunning, std::memory_order_release);  // unlocks, publishing the queued node to finish()
    w.wait(sched::WaitReason::kOnce);
    // Done: the Once may already be destroyed by whoever saw it done, so leave without touching it. Otherwise f failed
    // in its runner, and this caller tries again.
    if (n.done) return false;
  }
}

void Once::finish(bool ok) {
  lock_unless_done();  // never done here: only this caller can make it so
  Node* first = q_.detach_front();
  for (Node* n = first; n != nullptr; n = n->next) n->done = ok;
  // Release: whoever sees kDone on the fast path also sees what f wrote. This store is the last touch of *this; the
  // nodes live on their waiters' stacks, and each waiter stays parked until its notify.
  state_.store(ok ? kDone : kIdle, std::memory_order_release);
  detail::wake_chain(first);
}

}  // namespace tern
