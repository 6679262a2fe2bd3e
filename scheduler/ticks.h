// scheduler/ticks.h: the clock the scheduler reads on its hot path to time short intervals: the sampled runnable ->
// running wait (set_gstatus stamps it, execute() records it).
//
// The TSC where the kernel itself keeps time with it (then the TSC is invariant and synchronized across CPUs: the
// kernel checks both before it picks it), else CLOCK_MONOTONIC nanoseconds. Why not always CLOCK_MONOTONIC: its vDSO
// read costs about three times a plain rdtsc on the reference VM (27 ns against 9), and a sampled stamp and its
// record are two reads per eight fiber switches: the sampling alone made a channel ping-pong about 8% slower with
// clock_gettime (docs/performance.md).
//
// Ticks become nanoseconds by a factor measured against CLOCK_MONOTONIC from one (ticks, ns) pair taken when the
// first runtime starts (ticks_init) to a later one; each monitor tick (10 ms) refreshes it (ticks_recalibrate), and
// until the first refresh a conversion measures it on the spot. Only differences of ticks mean anything.
#pragma once

#include <atomic>
#include <cstdint>

namespace tern::sched {

int64_t now_ns();  // scheduler/timer.cc: CLOCK_MONOTONIC

// Read-mostly state on its own cache line (g_coarse_ns in g.h is written every monitor period).
struct alignas(64) TickClock {
  bool tsc = false;  // set once by ticks_init(), before any fiber of any runtime runs
  uint64_t ticks0 = 0;
  int64_t ns0 = 0;
  std::atomic<double> ns_per_tick{0};  // 0 until first measured
};
inline TickClock g_tick_clock;

// Once per process, from the first Sched's constructor: picks the source and takes the calibration pair.
void ticks_init();

// Whether the kernel keeps time with the TSC: it checks that the TSC is invariant and synchronized across CPUs before
// it picks it (and falls back to another source, which this then reads, when it finds it unstable).
bool kernel_clock_is_tsc();

inline uint64_t fast_ticks() {
#if defined(__x86_64__)
  if (g_tick_clock.tsc) return __builtin_ia32_rdtsc();
#endif
  return static_cast<uint64_t>(now_ns());
}

// Re-measures the factor from the calibration pair to (now_ns(), fast_ticks()); the monitor calls it each tick.
void ticks_recalibrate();

// A difference of fast_ticks() in nanoseconds.
inline int64_t ticks_to_ns(uint64_t d) {
  if (!g_tick_clock.tsc) return static_cast<int64_t>(d);
  double f = g_tick_clock.ns_per_tick.load(std::memory_order_relaxed);
  if (f == 0) [[unlikely]] {
    ticks_recalibrate();
    f = g_tick_clock.ns_per_tick.load(std::memory_order_relaxed);
    if (f == 0) return 0;  // the clock has not moved since the calibration pair
  }
  return static_cast<int64_t>(static_cast<double>(d) * f);
}

}  // namespace tern::sched
