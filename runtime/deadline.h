// runtime/deadline.h: a caller's std::chrono duration or time point as a CLOCK_MONOTONIC deadline, without overflow.
//
// Every timed wait in tern ends as an int64 nanosecond deadline on CLOCK_MONOTONIC (sched::now_ns; steady_clock is
// that clock on Linux), kNoDeadline (-1) for none. Callers say "forever" as hours::max(), nanoseconds::max() or a
// huge floating duration, and `steady_clock::now() + d` overflows int64 nanoseconds for any of them: it wraps into
// the past (or anywhere), so the wait returns at once and `while (!pred) cv.wait_for(lk, hours::max())` spins. These
// helpers saturate instead, as runtime/net/deadline.h does for the network calls: a deadline that int64 nanoseconds
// since boot cannot hold (about 292 years of uptime) is no deadline, and a negative duration is "now".
//
//   int64_t d = tern::detail::deadline_after(std::chrono::hours::max());      // kNoDeadline: wait untimed
//   int64_t e = tern::detail::deadline_after(std::chrono::milliseconds(5));   // now_ns() + 5'000'000
//   int64_t f = tern::detail::deadline_at(std::chrono::system_clock::now() + 1s);  // through both clocks' "now"
//   auto ns = tern::detail::saturating_ns(std::chrono::duration<double>(1e300));  // nanoseconds::max()
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <ratio>
#include <type_traits>
#include <utility>

#include "scheduler/timer.h"

namespace tern::detail {

inline constexpr int64_t kNoDeadline = -1;

// d in nanoseconds, clamped to [nanoseconds::min(), nanoseconds::max()] (NaN is zero). Any representation and
// period: a plain duration_cast multiplies hours::max() by 3.6e12 and wraps.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_ns(std::chrono::duration<Rep, Period> d) {
  using std::chrono::nanoseconds;
  using R = std::ratio_divide<Period, std::nano>;  // nanoseconds per tick, reduced
  // The range check runs in long double, whose 64-bit (x86) or 113-bit (aarch64) mantissa holds every int64, so the
  // comparisons against +-2^63 are exact.
  const long double ns = static_cast<long double>(d.count()) * R::num / R::den;
  if (ns != ns) return nanoseconds::zero();
  if (ns >= 0x1p63L) return nanoseconds::max();
  if (ns <= -0x1p63L) return nanoseconds::min();
  if constexpr (std::is_floating_point_v<Rep> || (R::num != 1 && R::den != 1)) {
    // Truncates toward zero, as duration_cast does; an integral period with both factors above one could overflow in
    // duration_cast's intermediate product even though the result fits.
    return nanoseconds(static_cast<int64_t>(ns));
  } else {
    return std::chrono::duration_cast<nanoseconds>(d);  // in range: a product or a quotient, exact
  }
}

// The deadline `d` from now: now_ns() for d <= 0, kNoDeadline when now + d would not fit in int64.
template <class Rep, class Period>
int64_t deadline_after(std::chrono::duration<Rep, Period> d) {
  const int64_t ns = saturating_ns(d).count();
  const int64_t now = sched::now_ns();
  if (ns <= 0) return now;
  if (ns >= std::numeric_limits<int64_t>::max() - now) return kNoDeadline;
  return now + ns;
}

// A time point of any clock as a deadline. steady_clock's converts directly (a point before boot is 0, already past;
// its far end is kNoDeadline); another clock's goes through the distance from that clock's "now", so that moving its
// time point to time_point::max() means never rather than a wrapped sum.
template <class Clock, class Duration>
int64_t deadline_at(const std::chrono::time_point<Clock, Duration>& t) {
  if constexpr (std::is_same_v<Clock, std::chrono::steady_clock>) {
    const int64_t ns = saturating_ns(t.time_since_epoch()).count();
    if (ns == std::numeric_limits<int64_t>::max()) return kNoDeadline;
    return ns < 0 ? 0 : ns;
  } else {
    const int64_t at = saturating_ns(t.time_since_epoch()).count();
    if (at == std::numeric_limits<int64_t>::max()) return kNoDeadline;
    const int64_t now = saturating_ns(Clock::now().time_since_epoch()).count();
    int64_t left;
    if (__builtin_sub_overflow(at, now, &left)) {
      left = at > now ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
    }
    return deadline_after(std::chrono::nanoseconds(left));
  }
}

}  // namespace tern::detail
