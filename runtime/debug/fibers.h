// runtime/debug/fibers.h: renderers of the fiber dump (Runtime::dump_fibers), Go's goroutine dump for tern.
//
//   auto fibers = rt.dump_fibers();                  // any thread, any time; stops nothing
//   std::string body = tern::debug::fibers_json(fibers);   // what GET /debug/fibers serves
//   std::fputs(tern::debug::fibers_text(fibers).c_str(), stderr);
//
// Both list every live fiber and group fibers with the same state, wait reason and spawn site, the largest group
// first: a thousand fibers parked on one channel receive read as one line with a count, which is how a leak or a
// deadlock shows. Times are seconds, to within the coarse clock's 10 ms (scheduler/fiber_info.h).
//
// JSON shape (keys stable; tools may read them):
//   {"count": N, "states": {"runnable": a, "running": b, "waiting": c},
//    "groups": [{"count": k, "state": "waiting", "reason": "chan receive", "max_seconds": 1.25,
//                "site": {"file": "srv.cc", "line": 42, "function": "void serve()"}, "ids": [12, 13, ...]}, ...],
//    "fibers": [{"id": 12, "state": "waiting", "reason": "chan receive", "seconds": 1.25, "p": 0,
//                "site": {...}}, ...]}
// "reason" is present for waiting fibers only, "site" is null where the spawn site is not known, "p" is the P a running
// fiber runs on (otherwise the one it last ran on; -1: it never ran). A group's "ids" holds its first kGroupIds ids.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "runtime/runtime.h"

namespace tern::debug {

// How many fiber ids a group lists (in the JSON and the text); the count is always exact.
inline constexpr size_t kGroupIds = 32;

std::string fibers_json(const std::vector<FiberInfo>& fibers);
// Text like Go's goroutine dump (debug=1): a header with the counts, then one paragraph per group:
//   3 fibers [waiting: chan receive, up to 1.25s] spawned at srv.cc:42 in void serve()
//     ids: 12 13 14
std::string fibers_text(const std::vector<FiberInfo>& fibers);

}  // namespace tern::debug
