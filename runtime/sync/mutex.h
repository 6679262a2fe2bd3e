// runtime/sync/mutex.h: tern::Mutex, a mutual-exclusion lock that parks the waiting fiber, not its thread.
//
//   tern::Mutex mu;
//   int counter = 0;
//   tern::go([&] {
//     std::lock_guard lk(mu);    // or std::unique_lock, e.g. for tern::CondVar
//     counter++;
//   });
//
// Works from fibers (a waiter parks) and from plain OS threads (a waiter blocks its thread on a futex); both may mix
// on one Mutex. It is not recursive, and it must be unlocked by its owner.
//
// Fairness follows Go's sync.Mutex. Normally the lock is not handed over: unlock() wakes the oldest waiter, which then
// competes with fibers that arrive meanwhile ("barging"), because the newcomer is already running and handing over
// would cost a switch per acquisition. A woken waiter that loses goes back to the front of the queue. Once the oldest
// waiter has waited kMutexStarvationNs, the mutex enters starvation mode: unlock() hands ownership straight to the
// queue's head and newcomers queue behind it, until a waiter gets the lock having waited less than that or the queue
// empties. A woken waiter still on its way to the lock (queued behind its waker on the waker's P, say) counts too:
// once it has starved, unlock() keeps the free lock reserved for it, so the waker's next lock() parks and lets it run.
// So no waiter waits much more than kMutexStarvationNs plus one turn of the queue, even without preemption.
//
// Cost: lock/unlock without contention is one compare-and-swap each; only contended paths take the internal lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

#include "runtime/sync/wait_queue.h"
#include "runtime/sync/waiter.h"

namespace tern {

// How long the oldest waiter may wait before the mutex switches to direct handoff (Go's starvationThresholdNs: long
// enough that handoff, which costs a switch per acquisition, is rare; short enough to bound tail latency).
inline constexpr int64_t kMutexStarvationNs = 1'000'000;

class Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() {
    uint32_t s = 0;
    if (state_.compare_exchange_weak(s, kLocked, std::memory_order_acquire, std::memory_order_relaxed)) return;
    lock_slow();
  }

  // Takes the lock if it is free and no starving waiter is owed it.
  bool try_lock() {
    uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & (kLocked | kStarving)) == 0) {
      if (state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  void unlock() {
    uint32_t s = kLocked;
    if (state_.compare_exchange_strong(s, 0, std::memory_order_release, std::memory_order_relaxed)) return;
    unlock_slow();
  }

 private:
  // kLocked: held. kWoken: a waiter was woken (normal mode) and is on its way, so unlock need not wake another.
  // kStarving: handoff mode; while kLocked is clear it reserves the lock for the woken waiter. kWaiters: the queue is
  // not empty (unlock must take the slow path).
  static constexpr uint32_t kLocked = 1, kWoken = 2, kStarving = 4, kWaiters = 8;

  struct Node : detail::WaitLink<Node> {
    Waiter* waiter = nullptr;
    int64_t since = 0;     // when this lock() call started waiting
    bool handoff = false;  // unlock() passed ownership to this waiter
  };

  void lock_slow();
  void unlock_slow();

  std::atomic<uint32_t> state_{0};
  std::mutex mu_;  // guards q_, woken_since_, and every change of state_ other than taking a free lock
  detail::WaitQueue<Node> q_;
  int64_t woken_since_ = 0;  // when the waiter behind kWoken started waiting
};

}  // namespace tern
