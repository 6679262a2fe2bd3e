// scheduler/ticks.cc: the hot-path tick clock's source and calibration (scheduler/ticks.h).
#include "scheduler/ticks.h"

#include <cstdio>
#include <cstring>
#include <mutex>

namespace tern::sched {

bool kernel_clock_is_tsc() {
#if defined(__x86_64__)
  FILE* f = std::fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
  if (f == nullptr) return false;
  char buf[32] = {};
  const bool ok = std::fgets(buf, sizeof buf, f) != nullptr && std::strncmp(buf, "tsc\n", 4) == 0;
  std::fclose(f);
  return ok;
#else
  return false;
#endif
}

void ticks_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_tick_clock.ns0 = now_ns();
    g_tick_clock.tsc = kernel_clock_is_tsc();
#if defined(__x86_64__)
    if (g_tick_clock.tsc) g_tick_clock.ticks0 = __builtin_ia32_rdtsc();
#endif
  });
}

void ticks_recalibrate() {
  if (!g_tick_clock.tsc) return;
  // The longer the span since the pair, the less the two reads' own skew matters: after 10 ms (the first monitor
  // tick) it is below 1e-5 of the factor. A conversion in a runtime's first moments uses a factor over a shorter span.
  const int64_t ns = now_ns() - g_tick_clock.ns0;
  const uint64_t t = fast_ticks() - g_tick_clock.ticks0;
  if (t == 0 || ns <= 0) return;
  g_tick_clock.ns_per_tick.store(static_cast<double>(ns) / static_cast<double>(t), std::memory_order_relaxed);
}

}  // namespace tern::sched
