// runtime/net/deadline.h: deadline arithmetic shared by Stream, Listener and dial.
//
// A deadline is CLOCK_MONOTONIC nanoseconds (sched::now_ns), -1 for none. std::chrono::steady_clock is
// CLOCK_MONOTONIC on Linux (libstdc++ and libc++), so its time points convert by their count since the epoch.
//
//   int64_t d = net::deadline_after(stream_deadline, 50ms);   // the earlier of the two
//   if (net::expired(d)) return timed_out();
#pragma once

#include <chrono>
#include <cstdint>

#include "scheduler/timer.h"

namespace tern::net {

using Clock = std::chrono::steady_clock;
// "No timeout" for the operations that take one.
inline constexpr std::chrono::nanoseconds kNoTimeout = std::chrono::nanoseconds::max();
inline constexpr int64_t kNoDeadline = -1;

inline int64_t to_deadline(Clock::time_point t) {
  if (t == Clock::time_point::max()) return kNoDeadline;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  return ns < 0 ? 0 : ns;
}

// The earlier of `base` and now + timeout, with `now` a clock reading the caller took.
inline int64_t deadline_after(int64_t base, std::chrono::nanoseconds timeout, int64_t now) {
  if (timeout == kNoTimeout) return base;
  int64_t t = timeout.count() <= 0 ? now : (timeout.count() > INT64_MAX - now ? INT64_MAX : now + timeout.count());
  return base < 0 || t < base ? t : base;
}

// The earlier of `base` and now + timeout.
inline int64_t deadline_after(int64_t base, std::chrono::nanoseconds timeout) {
  if (timeout == kNoTimeout) return base;
  return deadline_after(base, timeout, sched::now_ns());
}

// Whether `deadline` has passed; `now` is a clock reading the caller took, or -1 to read the clock.
inline bool expired(int64_t deadline, int64_t now = -1) {
  return deadline >= 0 && (now >= 0 ? now : sched::now_ns()) >= deadline;
}

}  // namespace tern::net
