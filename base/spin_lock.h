// base/spin_lock.h: tern::SpinLock, the lock for critical sections of a few dozen instructions that never
// block (a channel's queues and buffer, an io_uring connection's received chunks). In base/ so that every layer may
// use it; programs include it through runtime/sync/sync.h.
//
//   tern::SpinLock lk;
//   {
//     std::lock_guard g(lk);   // or std::unique_lock; it is Lockable
//     queue.push_back(x);
//   }
//
// Cost: lock is one atomic exchange, unlock one release store (std::mutex unlocks with an atomic read-modify-write
// and a branch for sleepers; on a channel's ping-pong path that is a quarter of the time). Under contention it spins
// reading the word (no cache-line ping-pong), and after kSpinLockSpins rounds yields the thread to the kernel
// instead, so a holder preempted by the kernel gets its core back. Never hold it across anything that parks a fiber
// or blocks a thread (waiters spin on it), with one exception made on purpose: Waiter::wait_locked() parks with it
// held and has the park commit release it once the fiber has switched out (runtime/sync/waiter.h), a few instructions.
#pragma once

#include <sched.h>

#include <atomic>

namespace tern {

// Pause rounds before a contended lock() starts yielding its thread: long enough to cover a critical section that
// is running on another core, short enough not to burn a time slice when the holder was preempted.
inline constexpr int kSpinLockSpins = 64;

class SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock() {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() { locked_.store(false, std::memory_order_release); }

 private:
  [[gnu::noinline]] void lock_slow() {
    int spins = 0;
    for (;;) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < kSpinLockSpins) {
          pause();
          spins++;
        } else {
          sched_yield();
        }
      }
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  std::atomic<bool> locked_{false};
};

}  // namespace tern
