// scheduler/p.h: P, a processor.
//
// Fields the owner (the M holding the P) writes are grouped apart from those other threads touch (the run queue's head
// via RunQueue, runnext, the timer heap under its lock) to keep thieves off the owner's cache lines.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "alloc/stack.h"
#include "base/checked_mutex.h"
#include "scheduler/affinity.h"
#include "scheduler/g.h"
#include "scheduler/proc_local.h"
#include "scheduler/run_queue.h"
#include "scheduler/timer.h"
#include "scheduler/trace.h"

namespace tern::sched {

struct M;

enum class PStatus : uint32_t {
  kIdle,      // in the idle list
  kRunning,   // held by an M
  kRetiring,  // beyond procs(): being drained by whoever holds it
  kBlocking,  // its M runs tern::blocking: the M may take it back on return, or the monitor may hand it on
  kDead,      // retired; may be revived by a later grow
};

// Per-P counters (invariant 6): written only by the owner with relaxed load+store, read by anyone with relaxed loads.
struct PCounters {
  std::atomic<uint64_t> spawned{0}, finished{0}, switches{0}, yields{0}, parks{0}, steals{0}, global_taken{0},
      overflows{0}, timers_fired{0}, polls{0}, rescued{0};
  std::atomic<uint64_t> steals_remote{0};  // of steals, from a P on another node (SchedOptions::placement)
  std::atomic<uint64_t> io_first{0};       // fibers started from ioq, ahead of the local queue
  std::atomic<uint64_t> blocking{0};       // tern::blocking calls made on this P
  std::atomic<uint64_t> preempted{0};      // preempt_point() yields on a mark
  std::atomic<uint64_t> poll_calls{0};     // non-blocking polls of the network by this P's M, found fibers or not
  std::atomic<uint64_t> work{0};           // the application's work counter (tern::count_work) from fibers on this P
  std::atomic<uint64_t> busy_ns{0};        // time held by an M, up to its last release (see P::busy_since)
  std::atomic<uint64_t> latency[kLatencyBuckets] = {};  // sampled runnable -> running waits (G::ready_ticks)
  std::atomic<uint64_t> latency_sum_ns{0};              // their sum (the metrics' histogram _sum)
};
inline void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// The capacity of a P's queue of fibers a busy poll readied (P::ioq); more than that join the local queue's tail.
inline constexpr uint32_t kIoQueueCapacity = 64;
using IoQueue = BasicRunQueue<kIoQueueCapacity>;

// Free G records (with their stacks) kept by a P before half go back to the runtime's list (Go's value).
inline constexpr uint32_t kGFreeMax = 64;

struct alignas(64) P {
  P(int id_, alloc::StackPool& pool) : id(id_), slot(acquire_proc_slot()), stacks(pool) {}
  ~P() { release_proc_slot(slot); }
  P(const P&) = delete;
  P& operator=(const P&) = delete;

  const int id;
  // This P's process-wide slot (scheduler/proc_local.h): where per-P data of the layers above (tern::Pool) is kept.
  const int slot;
  // The NUMA node of the processing unit this P is placed on (issue 19's placement, one slot per P id; 0 without
  // one). Set before the P first runs and fixed for the runtime's life: P i always takes placement slot i, so a P
  // revived by a later grow lands where it was. Read by the per-node stack pools, the jemalloc arenas and the
  // node-aware steal and wakeup order.
  int node = 0;
  int pu = -1;   // the processing unit of its slot; -1 without a placement
  CpuMask mask;  // just that PU, made once (binding is on the path of an M taking a P)
  std::atomic<PStatus> status{PStatus::kIdle};
  M* m = nullptr;     // holder, under sched_mu_ for transitions
  P* link = nullptr;  // idle list
  // When an M last acquired this P (monotonic ns), 0 while no M holds it: busy time so far is counters.busy_ns plus
  // now - busy_since. Written by whoever hands the P to an M (acquirep) and by the holder releasing it (releasep).
  std::atomic<int64_t> busy_since{0};
  // For the debug endpoint (runtime/metrics): the holder's M id (-1 while idle; written by acquirep/releasep).
  std::atomic<int> m_id{-1};

  RunQueue runq;
  // Fibers readied by find_runnable's busy poll (a non-blocking poll of the network while work is queued). They run
  // before runq's fibers, so a request that arrived during a burst of queued work is read, and whatever it waits on
  // next is started, without first waiting out the burst (Sched::find_runnable says why and what bounds it). Thieves,
  // the stall rescue and a retiring P's drain take from it first.
  IoQueue ioq;
  // While its M runs tern::blocking (status kBlocking): that M. Whoever swaps it to nullptr owns the P: the M on its
  // way back (exit_blocking), or the monitor handing it to another M (retake_blocked). An M identity cannot recur
  // while that M is still inside the call, so the swap is free of ABA.
  alignas(64) std::atomic<M*> blocked_m{nullptr};
  // Set by the monitor when the running fiber has held the P a whole period (preempt_point); cleared by the next
  // switch or the yield it causes. Every set and clear moves g_preempt_marks (park.h) with it.
  std::atomic<bool> preempt{false};
  uint64_t stall_reported = 0;  // the monitor's: switches + 1 of the run it last reported (one report a run)
  std::atomic<uint64_t> blocking_calls{0};  // owner-written: a new value marks a new call for the monitor
  // The monitor's: the call it saw last and since when.
  uint64_t retake_seen = 0;
  int64_t retake_since = 0;
  uint64_t retake_calls = 0;  // blocking_calls at the monitor's last look
  alignas(64) std::atomic<G*> runnext{nullptr};

  // Owner-only state.
  alignas(64) uint32_t schedtick = 0;    // fibers started from a fresh time slice
  uint32_t runnext_chain = 0;            // consecutive runnext picks sharing the current slice
  uint32_t last_busy_poll = UINT32_MAX;  // the schedtick of find_runnable's last poll with work queued
  // Set when the busy poll fills ioq, cleared when the owner finds it empty: the owner's hot paths test this line it
  // owns instead of ioq's head and tail (thieves may have emptied it meanwhile, so true means "look", not "there is").
  bool ioq_filled = false;
  // The fiber running on this P (0 between fibers), for the debug endpoint: written around each switch on this line,
  // which the owner dirties per switch anyway, read rarely by others (relaxed).
  std::atomic<uint64_t> running_g{0};
  // Not the owner's: the monitor thread alone writes them (counters.switches as it saw it last period, and when it saw
  // that count first: the fiber running now has run at least since then if the count has not moved, as Go's sysmon
  // keeps schedtick/schedwhen). Atomic for the debug endpoint, which reads them.
  std::atomic<uint64_t> monitor_tick{0};
  std::atomic<int64_t> monitor_since{0};
  // Sched::rescue_stalled's watch on another P: which (an index into allp_), its switch count, and since when.
  uint32_t watch = 0;
  uint64_t watch_switches = 0;
  int64_t watch_since = 0;
  G* gfree = nullptr;
  uint32_t ngfree = 0;
  alloc::StackCache stacks;
  uint64_t rand_state = 0;
  // This P's event trace (scheduler/trace.h), written by the holder; nullptr when tracing is off, which is what every
  // event site tests (trace_p).
  TraceBuffer* trace = nullptr;

  // Timer heap (binary min-heap on `when`), guarded by timers_mu. timer0 mirrors the earliest `when` (0 = empty) so
  // that "any timer due?" is one relaxed load.
  CheckedMutex timers_mu;
  std::vector<Timer*> timers;
  std::atomic<int64_t> timer0{0};

  PCounters counters;
};

// Records an event in p's trace buffer; one predictable branch when tracing is off. p must be held by the caller.
// A full buffer takes the P out of tracing: counting every later event as dropped cost skynet about a tenth of its
// speed once the buffers had filled (each P keeps its first kTraceEventsPerP events either way).
inline void trace_p(P* p, TraceKind kind, uint64_t g, uint32_t a = 0, uint16_t b = 0, uint8_t sub = 0) {
  if (p->trace != nullptr) [[unlikely]]
    if (!p->trace->record(kind, g, a, b, sub)) p->trace = nullptr;
}

}  // namespace tern::sched
