// runtime/sync/waiter.cc: Waiter, the one-shot wait under every sync primitive (fiber park or thread futex).
#include "runtime/sync/waiter.h"

#include <time.h>

#include <cerrno>

#include "base/futex.h"

namespace tern {

void Waiter::wait(sched::WaitReason why) {
  wait_until(-1, nullptr, why);
}
void Waiter::wait(std::unique_lock<std::mutex>& lk, sched::WaitReason why) {
  wait_until(-1, &lk, why);
}

bool Waiter::wait_until(int64_t deadline_ns, std::unique_lock<std::mutex>* lk, sched::WaitReason why) {
  if (sched::in_fiber()) return wait_fiber(deadline_ns, lk, why);
  return wait_thread(deadline_ns, lk);
}

bool Waiter::wait_fiber(int64_t deadline_ns, std::unique_lock<std::mutex>* lk, sched::WaitReason why) {
  g_ = sched::current();
  timer_.fire = nullptr;
  if (deadline_ns >= 0) {
    timer_.when = deadline_ns;
    timer_.arg = this;
    // Runs under the timer heap's lock: only a CAS; the fiber is returned for the M to ready.
    timer_.fire = [](sched::Timer* t) -> sched::G* {
      // The timer is added before the park commit publishes kParked, so it may find kEmpty: then the commit's
      // CAS fails and the park is abandoned; only a fiber that really parked is returned to be readied.
      auto* w = static_cast<Waiter*>(t->arg);
      uint32_t s = w->state_.load(std::memory_order_acquire);
      while (s == kEmpty || s == kParked) {
        if (w->state_.compare_exchange_weak(s, kTimedOut, std::memory_order_acq_rel)) {
          return s == kParked ? w->g_ : nullptr;
        }
      }
      return nullptr;
    };
  }
  // The lock can go before the switch: the state machine makes a notify() that lands between here and the park
  // commit abandon the park instead of being lost. (Unlocking in the commit would also confuse ThreadSanitizer,
  // which sees the unlock come from another context than the lock.)
  if (lk != nullptr) lk->unlock();
  sched::park(
      [](sched::G*, void* arg) {
        auto* w = static_cast<Waiter*>(arg);
        const bool timed = w->timer_.fire != nullptr;
        if (timed) sched::add_timer(&w->timer_);
        // Publish "parked" only now that the fiber has switched out. Once the CAS succeeds a notifier or the timer
        // may ready the fiber, which can resume elsewhere and destroy *w: nothing touches w after it.
        uint32_t expected = kEmpty;
        if (w->state_.compare_exchange_strong(expected, kParked, std::memory_order_acq_rel)) return true;
        if (timed) sched::cancel_timer(&w->timer_);
        return false;  // notified or timed out first
      },
      this, why);
  if (timer_.fire != nullptr) sched::cancel_timer(&timer_);
  if (lk != nullptr) lk->lock();
  return state_.load(std::memory_order_acquire) == kNotified;
}

bool Waiter::wait_thread(int64_t deadline_ns, std::unique_lock<std::mutex>* lk) {
  std::mutex* mu = nullptr;
  if (lk != nullptr) {
    mu = lk->release();
    mu->unlock();
  }
  uint32_t expected = kEmpty;
  state_.compare_exchange_strong(expected, kBlocked, std::memory_order_acq_rel);
  timespec ts{};
  if (deadline_ns >= 0) {
    ts.tv_sec = deadline_ns / 1'000'000'000;
    ts.tv_nsec = deadline_ns % 1'000'000'000;
  }
  for (;;) {
    uint32_t s = state_.load(std::memory_order_acquire);
    if (s == kNotified) break;
    if (deadline_ns >= 0 && sched::now_ns() >= deadline_ns) {
      expected = kBlocked;
      if (state_.compare_exchange_strong(expected, kTimedOut, std::memory_order_acq_rel)) break;
      continue;  // notified meanwhile
    }
    futex_wait_until(&state_, s, deadline_ns >= 0 ? &ts : nullptr);
  }
  if (lk != nullptr) *lk = std::unique_lock<std::mutex>(*mu);
  return state_.load(std::memory_order_acquire) == kNotified;
}

void Waiter::wait_locked(SpinLock& mu, sched::WaitReason why) {
  if (!sched::in_fiber()) {
    state_.store(kBlocked, std::memory_order_relaxed);
    mu.unlock();
    while (state_.load(std::memory_order_acquire) != kNotified) futex_wait_until(&state_, kBlocked, nullptr);
    return;
  }
  g_ = sched::current();
  lock_ = &mu;
  // The lock is held across the switch to the scheduler stack (a few dozen instructions) and released by the commit:
  // nobody can pop this waiter before the fiber has switched out, so the park cannot be raced and needs no CAS.
  sched::park(
      [](sched::G*, void* arg) {
        auto* w = static_cast<Waiter*>(arg);
        w->state_.store(kParked, std::memory_order_relaxed);
        w->lock_->unlock();  // from here a notifier may ready the fiber, which may resume elsewhere: w is not touched
        return true;
      },
      this, why);
}

void Waiter::notify_popped() {
  // The waiter published kParked or kBlocked before releasing the lock it was popped under, and nothing else can
  // change it: plain stores suffice.
  if (state_.load(std::memory_order_relaxed) == kParked) {
    sched::G* g = g_;
    state_.store(kNotified, std::memory_order_relaxed);  // the fiber cannot resume (and free *this) before ready()
    sched::ready(g);
  } else {
    state_.store(kNotified, std::memory_order_release);
    futex_wake(&state_);  // as in notify(): at worst it touches an address whose waiter already returned
  }
}

bool Waiter::notify() {
  uint32_t s = state_.load(std::memory_order_acquire);
  for (;;) {
    if (s == kTimedOut || s == kNotified) return false;
    if (state_.compare_exchange_weak(s, kNotified, std::memory_order_acq_rel)) break;
  }
  // A parked fiber cannot resume before ready(), so g_ is still valid here. A blocked thread may see kNotified on a
  // spurious wakeup and return at once; the futex wake then only touches an address, which is harmless.
  if (s == kParked) {
    sched::ready(g_);
  } else if (s == kBlocked) {
    futex_wake(&state_);
  }
  return true;
}

}  // namespace tern
