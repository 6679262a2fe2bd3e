// tools/echo/cpu_burn.h: spending a given amount of CPU time, for GET /work?us=N.
//
//   tern::echo::burn_cpu_us(250);   // returns after this thread has used 250 us of CPU
//
// The clock is the thread's CPU clock, not the wall clock: a burn that the OS preempts still costs the full amount of
// CPU, which is what a request that "does N us of work" means to a scheduler benchmark.
#pragma once

#include <cstdint>

namespace tern::echo {

void burn_cpu_us(uint64_t us);

}  // namespace tern::echo
