// scheduler/futex.h: Note, the one-waiter sleep/wakeup slot the scheduler parks threads on (the monitor, idle Ms),
// over base/futex.h's calls.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/futex.h"

namespace tern::sched {

using tern::futex_wait;
using tern::futex_wake;

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
