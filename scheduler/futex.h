// scheduler/futex.h: the two futex calls the scheduler parks threads with (private futexes, CLOCK_MONOTONIC).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

namespace tern::sched {

// Blocks while *word == expected, at most timeout_ns (< 0: no limit). Spurious returns are possible.
inline void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns = -1) {
  timespec ts{};
  if (timeout_ns >= 0) {
    ts.tv_sec = timeout_ns / 1'000'000'000;
    ts.tv_nsec = timeout_ns % 1'000'000'000;
  }
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, timeout_ns >= 0 ? &ts : nullptr,
          nullptr, 0);
}

inline void futex_wake(std::atomic<uint32_t>* word, int n = INT_MAX) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

// A one-waiter sleep/wakeup slot (Go's note): sleep() returns after wakeup(); wakeup() before sleep() is kept.
class Note {
 public:
  // Returns after wakeup(), or (timeout_ns >= 0) after at most timeout_ns, possibly early: callers re-check.
  void sleep(int64_t timeout_ns = -1) {
    if (word_.exchange(0, std::memory_order_acquire) != 0) return;
    if (timeout_ns < 0) {
      do {
        futex_wait(&word_, 0);
      } while (word_.exchange(0, std::memory_order_acquire) == 0);
      return;
    }
    futex_wait(&word_, 0, timeout_ns);
    word_.exchange(0, std::memory_order_acquire);
  }
  void wakeup() {
    if (word_.exchange(1, std::memory_order_release) == 0) futex_wake(&word_, 1);
  }
  // For a sleeper that waits on the word some other way (Poller::park): takes a wakeup if one is there.
  bool try_consume() { return word_.exchange(0, std::memory_order_acquire) != 0; }
  // The futex word: 0 until wakeup(), which sets it and wakes one futex waiter on it.
  std::atomic<uint32_t>* word() { return &word_; }

 private:
  std::atomic<uint32_t> word_{0};
};

}  // namespace tern::sched
