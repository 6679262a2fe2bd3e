// tools/top/proc_stat.h: another process's CPU time as the kernel counts it (/proc/PID/stat), for the tools that time
// a server they did not build in: tern-capacity's probe and tern-sweep's steps (tern-top reads the server's own
// process_cpu_seconds_total instead).
//
//   const double c0 = tern::top::process_cpu_seconds(pid);   // ... load ...
//   const double per_request = (tern::top::process_cpu_seconds(pid) - c0) / requests;
//
// Clock-tick resolution (10 ms at the usual USER_HZ 100): a figure over a short run is coarse; the metrics' nanosecond
// counter is better where the server has one.
#pragma once

#include <sys/types.h>

namespace tern::top {

// utime + stime of process pid in seconds; NaN when /proc/PID/stat is missing or unreadable.
double process_cpu_seconds(pid_t pid);

}  // namespace tern::top
