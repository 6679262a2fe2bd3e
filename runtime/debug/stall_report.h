// runtime/debug/stall_report.h: the stall detector's report as people read it (SchedOptions::on_stall, TERN_STALL_MS):
// the fiber, how long it has run without a switch, and the frames where it is, named with their source lines
// (Boost.Stacktrace over the return addresses the scheduler's signal handler recorded).
//
//   tern: stall: fiber 42 has run 52 ms on processor 0 (thread 3) without a switch (TERN_STALL_MS=50); it is in:
//     #0 0x55d1c2a3f1e0 crunch(unsigned long) at /src/server.cc:31
//     #1 0x55d1c2a3f2a4 handle(tern::net::Stream&) at /src/server.cc:58
#pragma once

#include <string>

#include "scheduler/sched.h"

namespace tern::debug {

std::string format_stall(const sched::StallReport& r);

}  // namespace tern::debug
