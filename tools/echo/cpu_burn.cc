// tools/echo/cpu_burn.cc: see cpu_burn.h.
#include "tools/echo/cpu_burn.h"

#include <time.h>

namespace tern::echo {
namespace {

int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Iterations of arithmetic between clock reads: the thread CPU clock is a system call (no vDSO path), so reading it
// every iteration would turn the burn into mostly kernel time; a few thousand multiply-adds take about a microsecond.
constexpr int kSpinsPerCheck = 2048;
// Knuth's MMIX linear congruential step: a dependent chain the compiler cannot fold away.
constexpr uint64_t kLcgMul = 6364136223846793005ull;
constexpr uint64_t kLcgAdd = 1442695040888963407ull;

}  // namespace

void burn_cpu_us(uint64_t us) {
  const int64_t end = thread_cpu_ns() + static_cast<int64_t>(us) * 1000;
  volatile uint64_t sink = 1;
  while (thread_cpu_ns() < end) {
    uint64_t x = sink;
    for (int i = 0; i < kSpinsPerCheck; i++) x = x * kLcgMul + kLcgAdd;
    sink = x;
  }
}

}  // namespace tern::echo
