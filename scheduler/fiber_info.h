// scheduler/fiber_info.h: FiberInfo, one live fiber as the fiber dump sees it (Sched::fibers, scheduler/fibers.cc).
//
// The dump is Go's goroutine dump: every fiber with its state, what it waits on and for how long, and where it was
// spawned; runtime/debug/fibers.h renders it as JSON and as text grouped by state, reason and site.
#pragma once

#include <cstdint>
#include <source_location>

#include "scheduler/g.h"
#include "scheduler/wait_reason.h"

namespace tern::sched {

struct FiberInfo {
  uint64_t id = 0;
  GStatus status = GStatus::kRunnable;    // kRunnable, kRunning or kWaiting
  WaitReason reason = WaitReason::kNone;  // kWaiting only; kNone otherwise
  // How long it has been in `status` at the time of the snapshot: from a stamp of the coarse clock (g.h,
  // coarse_now_ns), so never less than the truth and at most about one monitor period (10 ms) more.
  int64_t for_ns = 0;
  int p = -1;                 // kRunning: the P it runs on; otherwise the P it last ran on (-1: never ran yet)
  std::source_location site;  // where it was spawned; line() == 0 when not known (a fiber started by Sched::go)
};

// "runnable", "running", "waiting" (and "idle", "dead" for records not in use, which a dump never lists).
constexpr const char* gstatus_name(GStatus s) {
  switch (s) {
    case GStatus::kIdle:
      return "idle";
    case GStatus::kRunnable:
      return "runnable";
    case GStatus::kRunning:
      return "running";
    case GStatus::kWaiting:
      return "waiting";
    case GStatus::kDead:
      return "dead";
  }
  return "idle";
}

}  // namespace tern::sched
