// tools/top/proc_stat.h: another process's CPU time as the kernel counts it, for the tools that time a server they did
// not build in: tern-capacity's probe and tern-sweep's steps (tern-top reads the server's own
// process_cpu_seconds_total instead).
//
//   const double c0 = tern::top::process_cpu_seconds(pid);   // ... load ...
//   const double per_request = (tern::top::process_cpu_seconds(pid) - c0) / requests;
//
// Nanoseconds where the kernel lets this process read the other's CPU-time clock (clock_getcpuclockid: same user, or
// root), which counts exited threads too; else /proc/PID/stat's utime + stime in clock ticks (10 ms at the usual
// USER_HZ 100), too coarse for a short run: a 1 s probe of a server spending 40 us a request at 200 requests a second
// read 0 or 1 tick, 0 or 100 us a request.
#pragma once

#include <sys/types.h>

namespace tern::top {

// Process pid's CPU time (user + system, all its threads) in seconds; NaN when neither source can be read.
double process_cpu_seconds(pid_t pid);
// The same from /proc/PID/stat alone (clock ticks), for the tests.
double process_cpu_seconds_from_stat(pid_t pid);

}  // namespace tern::top
