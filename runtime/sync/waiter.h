// runtime/sync/waiter.h: a one-shot wait/notify that works from a fiber (parks the fiber) and from a plain OS thread
// (blocks the thread on a futex). Every blocking primitive in runtime/sync is built on it.
//
//   Waiter w;
//   list.push(&w);                  // under the structure's lock
//   lk.unlock(); w.wait();          // or: w.wait(lk) to unlock only after the fiber has switched out
//   ...
//   w.notify();                     // exactly once per Waiter; the waiter may be gone once notify() returns
//
// A Waiter lives on the waiting side's stack; after notify() the notifier must not touch it.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "runtime/sync/spin_lock.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern {

class Waiter {
 public:
  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // Blocks until notify(). `why` is what the fiber dump shows the fiber waiting on (scheduler/wait_reason.h): each
  // primitive of runtime/sync names its own; a program's own structure built on Waiter shows as "other" unless it
  // names one.
  void wait(sched::WaitReason why = sched::WaitReason::kOther);
  // Unlocks `lk` (a std::mutex lock), waits, and locks it again before returning. A notify() that comes after the
  // unlock but before the fiber has parked is not lost: the park is abandoned.
  void wait(std::unique_lock<std::mutex>& lk, sched::WaitReason why = sched::WaitReason::kOther);
  // Waits until notify() or the CLOCK_MONOTONIC deadline; returns true if notified. After a timeout, notify() may
  // still be called (it does nothing), so waiters can stay in their list until the structure's lock removes them.
  bool wait_until(int64_t deadline_ns, std::unique_lock<std::mutex>* lk = nullptr,
                  sched::WaitReason why = sched::WaitReason::kOther);

  // Wakes the waiter; returns false if it had already timed out (nothing was woken).
  bool notify();
  // Whether notify() has happened.
  bool notified() const { return state_.load(std::memory_order_acquire) == kNotified; }

  // A cheaper protocol for a waiter that is only ever found, and notified, by whoever pops it from a structure guarded
  // by a SpinLock (a plain channel send or recv). wait_locked(mu): call with mu held and the waiter queued; mu is
  // released only once the fiber has switched out (a thread: once it has published that it sleeps), so whoever pops
  // the waiter under mu afterwards knows it is waiting and is its only notifier. notify_popped() then wakes it with
  // plain stores instead of the compare-and-swaps notify() needs to race a park or a timeout, and may be called after
  // mu is released. Not for waiters with a deadline or shared by a select (those use wait_until()/notify()).
  void wait_locked(SpinLock& mu, sched::WaitReason why = sched::WaitReason::kOther);
  void notify_popped();

  // A word for the notifier to pass a value to the waiter (e.g. which select case fired).
  void* data = nullptr;

 private:
  // kParked: a fiber is parked (notify readies g_); kBlocked: a thread sleeps on the futex. They differ so that
  // notify() knows which without reading g_, which a thread waiter may already have freed by then.
  static constexpr uint32_t kEmpty = 0, kParked = 1, kNotified = 2, kTimedOut = 3, kBlocked = 4;
  bool wait_fiber(int64_t deadline_ns, std::unique_lock<std::mutex>* lk, sched::WaitReason why);
  bool wait_thread(int64_t deadline_ns, std::unique_lock<std::mutex>* lk);

  std::atomic<uint32_t> state_{kEmpty};
  sched::G* g_ = nullptr;
  SpinLock* lock_ = nullptr;  // wait_locked(): released by the park commit
  sched::Timer timer_;
};

}  // namespace tern
