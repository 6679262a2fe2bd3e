// scheduler/proc_local.h: what the layers above need to keep data per processor (P) without locks: tern::Pool
// (runtime/pool.h) keeps a slot of objects per P.
//
//   sched::ProcRef p = sched::current_proc();   // {slot, node}; slot -1: no P (see below)
//   ... use slot p.slot's data; no switch point in between ...
//
// Slots: every live P of every runtime in the process holds a distinct slot index in [0, kMaxProcSlots), taken when
// the P is created and given back when its runtime is destroyed (two runtimes' P 0 have different slots). A slot may
// be reused by a later runtime's P, never by two live Ps.
//
// Why the slot stays the caller's: a fiber moves to another M, or its M loses its P, only at a switch point (park,
// yield, a blocking call's entry, preempt_point): tern never preempts a fiber asynchronously, and the monitor retakes
// only Ps whose M is inside tern::blocking (which has no P: current_proc() returns slot -1 there). So code that reads
// current_proc() and then uses the slot without passing a switch point runs on that P, and only it, throughout. Other
// threads touch a slot's data only by an exclusion of their own (Pool's cycle).
//
// The cycle hook: one process-wide function the runtimes' monitor threads call about every kProcCyclePeriodNs while
// any runtime has a busy P (all of them together: the period is the process's, whatever the number of runtimes). Pool
// ages its victim caches there, as Go's sync.Pool does at each garbage collection.
#pragma once

#include <cstdint>

namespace tern::sched {

inline constexpr int kMaxProcSlots = 4096;
// Go's sync.Pool ages its caches at each GC, which a busy Go server runs every second or few; tern has no GC, so a
// fixed period: an object put in a pool and not taken again is dropped after one to two periods.
inline constexpr int64_t kProcCyclePeriodNs = 1'000'000'000;

struct ProcRef {
  int slot = -1;  // -1: not on a fiber holding a P (a plain thread, or inside tern::blocking), or no slot was free
  int node = 0;   // the P's NUMA node (P::node)
};
// The P the calling fiber runs on. One thread-local read and two loads.
ProcRef current_proc();

// Slots of Ps (Sched takes one per P it creates).
int acquire_proc_slot();  // -1 when all kMaxProcSlots are taken
void release_proc_slot(int slot);

// Sets the cycle hook (nullptr: none). The hook runs on a monitor thread, never two at once.
void set_proc_cycle_hook(void (*hook)());
// Called by each monitor round: runs the hook if kProcCyclePeriodNs has passed since it last ran (process-wide).
void maybe_run_proc_cycle(int64_t now_ns);

}  // namespace tern::sched
