// base/futex.h: the futex calls every layer parks threads with (private futexes, CLOCK_MONOTONIC).
//
//   std::atomic<uint32_t> word{0};
//   tern::futex_wait(&word, 0);            // sleeps while word == 0 (spurious returns possible: re-check)
//   word.store(1); tern::futex_wake(&word, 1);
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

namespace tern {

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

// Blocks while *word == expected, until the CLOCK_MONOTONIC time *abs (nullptr: no limit). Spurious returns are
// possible. An absolute deadline does not drift when a wait is retried after a spurious return.
inline void futex_wait_until(std::atomic<uint32_t>* word, uint32_t expected, const timespec* abs) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_BITSET_PRIVATE, expected, abs, nullptr,
          FUTEX_BITSET_MATCH_ANY);
}

// Wakes up to n waiters on word.
inline void futex_wake(std::atomic<uint32_t>* word, int n = INT_MAX) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, n, nullptr, nullptr, 0);
}

}  // namespace tern
