// scheduler/limits.h: the scheduler's fixed bounds that code outside it checks settings against (runtime/config),
// apart from sched.h so that a settings parser can be built alone (tests/fuzz/config_fuzz.cc).
#pragma once

namespace tern::sched {

// Ps are stored in a fixed array so that stealers can read it without a lock while set_procs() grows it.
inline constexpr int kMaxProcs = 1024;

}  // namespace tern::sched
