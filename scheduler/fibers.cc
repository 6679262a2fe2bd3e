// scheduler/fibers.cc: Sched::fibers, the snapshot behind the fiber dump (scheduler/fiber_info.h).
//
// Safe from any thread while the runtime runs, and it stops nothing: G records are allocated in blocks that live until
// the runtime is destroyed (g_records.cc), so the dump copies the list of blocks under gfree_mu_ (a few pointers) and
// then reads every record without a lock. The fields it reads are relaxed atomics their owner stores as it goes. A
// record may be recycled for another fiber while it is read: the fiber id is read before and after the other fields,
// and a record whose id changed, or that is free or finished, is left out. What remains is each fiber as it was at
// some moment during the snapshot; the fibers are not all from the same moment (nothing is stopped to make them so).
#include <mutex>
#include <vector>

#include "scheduler/fiber_info.h"
#include "scheduler/sched.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

std::vector<FiberInfo> Sched::fibers() const {
  std::vector<const G*> blocks;
  {
    std::lock_guard lk(gfree_mu_);
    blocks.reserve(gblocks_.size());
    for (const G* b : gblocks_) blocks.push_back(b);
  }
  std::vector<FiberInfo> out;
  const int64_t now = now_ns();
  for (const G* block : blocks) {
    for (size_t i = 0; i < kGBlock; i++) {
      const G& g = block[i];
      const uint64_t id = __atomic_load_n(&g.id, __ATOMIC_RELAXED);
      const GStatus st = g.status.load(std::memory_order_relaxed);
      if (st != GStatus::kRunnable && st != GStatus::kRunning && st != GStatus::kWaiting) continue;
      FiberInfo f;
      f.id = id;
      f.status = st;
      f.reason = st == GStatus::kWaiting ? g.wait_reason.load(std::memory_order_relaxed) : WaitReason::kNone;
      const int64_t since = g.since_ns.load(std::memory_order_relaxed);
      f.for_ns = since > 0 && since < now ? now - since : 0;
      f.p = g.last_p.load(std::memory_order_relaxed);
      f.site = g.spawn_site.load(std::memory_order_relaxed);
      // Recycled meanwhile (the fields may mix two fibers): leave it out. A fiber that finished meanwhile is left in
      // as it was; the next dump will not show it.
      if (__atomic_load_n(&g.id, __ATOMIC_RELAXED) != id) continue;
      out.push_back(f);
    }
  }
  return out;
}

}  // namespace tern::sched
