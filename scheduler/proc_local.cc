// scheduler/proc_local.cc: see proc_local.h.
#include "scheduler/proc_local.h"

#include <atomic>
#include <mutex>
#include <vector>

#include "scheduler/m.h"
#include "scheduler/p.h"

namespace tern::sched {
namespace {

struct Slots {
  std::mutex mu;
  std::vector<int> free;  // given back, reused first
  int next = 0;           // never handed out: [next, kMaxProcSlots)
};
Slots& slots() {
  static auto* s = new Slots;  // leaked: Ps of runtimes destroyed during static destruction give slots back
  return *s;
}

std::atomic<void (*)()> g_cycle_hook{nullptr};
std::atomic<int64_t> g_last_cycle{0};
std::mutex g_cycle_mu;  // one hook run at a time, whichever monitor

}  // namespace

ProcRef current_proc() {
  M* m = this_m();
  if (m == nullptr || m->p == nullptr) return {};
  return {m->p->slot, m->p->node};
}

int acquire_proc_slot() {
  Slots& s = slots();
  std::lock_guard lk(s.mu);
  if (!s.free.empty()) {
    const int i = s.free.back();
    s.free.pop_back();
    return i;
  }
  return s.next < kMaxProcSlots ? s.next++ : -1;
}

void release_proc_slot(int slot) {
  if (slot < 0) return;
  Slots& s = slots();
  std::lock_guard lk(s.mu);
  s.free.push_back(slot);
}

void set_proc_cycle_hook(void (*hook)()) {
  g_cycle_hook.store(hook, std::memory_order_release);
}

void maybe_run_proc_cycle(int64_t now_ns) {
  void (*hook)() = g_cycle_hook.load(std::memory_order_acquire);
  if (hook == nullptr) return;
  int64_t last = g_last_cycle.load(std::memory_order_relaxed);
  if (last == 0) {
    // The first look starts the clock: a cycle right away would age objects put a moment ago.
    g_last_cycle.compare_exchange_strong(last, now_ns, std::memory_order_relaxed);
    return;
  }
  if (now_ns - last < kProcCyclePeriodNs) return;
  if (!g_last_cycle.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) return;  // another monitor
  std::lock_guard lk(g_cycle_mu);
  hook();
}

}  // namespace tern::sched
