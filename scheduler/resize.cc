// scheduler/resize.cc: changing the number of Ps while fibers run: growing, retiring Ps beyond procs() at their next
// scheduling point, and draining a retired P's queue and timers (invariant 4).
#include "scheduler/sched.h"

#include <algorithm>

#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/sched_internal.h"
#include "scheduler/timer.h"

namespace tern::sched {

void Sched::set_procs(int n) {
  n = std::clamp(n, 1, kMaxProcs);
  std::lock_guard rl(resize_mu_);
  int old = nprocs_.load(std::memory_order_acquire);
  if (n == old) return;
  trace(TraceKind::kResize, 0, static_cast<uint32_t>(old), static_cast<uint16_t>(n));
  if (n > old) {
    for (int i = old; i < n; i++) {
      if (allp_[i].load(std::memory_order_acquire) == nullptr) {
        P* p = make_p(i);
        p->status.store(PStatus::kDead, std::memory_order_relaxed);
        allp_[i].store(p, std::memory_order_release);
      }
    }
    {
      std::lock_guard lk(sched_mu_);
      nprocs_.store(n, std::memory_order_release);
      update_scan_bound();
      for (int i = old; i < n; i++) {
        P* p = allp_[i].load(std::memory_order_relaxed);
        // A P still held by its M (it had not reached a scheduling point since the shrink) simply stays.
        if (p->status.load(std::memory_order_relaxed) == PStatus::kDead) pidleput(p);
      }
    }
    for (int i = old; i < n; i++) wakep();
    return;
  }
  // Shrink: idle Ps beyond n are retired here; running ones retire themselves at their next scheduling point.
  std::vector<P*> idle;
  {
    std::lock_guard lk(sched_mu_);
    nprocs_.store(n, std::memory_order_release);
    P** link = &pidle_;
    while (*link != nullptr) {
      P* p = *link;
      if (p->id >= n) {
        *link = p->link;
        p->link = nullptr;
        p->status.store(PStatus::kRetiring, std::memory_order_relaxed);
        npidle_.fetch_sub(1);
        idle.push_back(p);
      } else {
        link = &p->link;
      }
    }
  }
  for (P* p : idle) drain_p(p);
  {
    std::lock_guard lk(sched_mu_);
    for (P* p : idle) p->status.store(PStatus::kDead, std::memory_order_relaxed);
    update_scan_bound();
  }
  wakep();
}

// Ps beyond procs() stay in the scan (stealing, the monitor, rescue) until they are dead: a retiring P whose M runs a
// long fiber still holds work. Shrinks the bound past dead Ps at the top; grows it to procs().
void Sched::update_scan_bound() {
  sched_mu_.assert_held();
  const int n = nprocs_.load(std::memory_order_relaxed);
  int b = std::max(n, nscan_.load(std::memory_order_relaxed));
  while (b > n) {
    P* p = allp_[b - 1].load(std::memory_order_relaxed);
    if (p != nullptr && p->status.load(std::memory_order_relaxed) != PStatus::kDead) break;
    b--;
  }
  nscan_.store(b, std::memory_order_release);
}

bool Sched::retire_if_needed(M* m) {
  P* p = m->p;
  if (p->id < nprocs_.load(std::memory_order_acquire)) return false;
  if (G* g = m->yielded) {
    m->yielded = nullptr;
    runq_put(p, g, false);
  }
  p->status.store(PStatus::kRetiring, std::memory_order_relaxed);
  drain_p(p);
  {
    std::lock_guard lk(sched_mu_);
    if (p->id < nprocs_.load(std::memory_order_relaxed)) {
      // Grown back meanwhile: keep the (now drained) P.
      p->status.store(PStatus::kRunning, std::memory_order_relaxed);
      return false;
    }
    releasep(m);
    p->status.store(PStatus::kDead, std::memory_order_relaxed);
    update_scan_bound();
  }
  unbind_m(m);  // the retired P's pinning goes with it
  stop_spinning(m);
  wakep();
  return true;
}

// Moves everything a P holds to places that outlive it (invariant 4): fibers to the global queue, timers to P 0,
// cached G records and stacks to the runtime's lists. The caller owns p (its M, or set_procs for an idle P).
void Sched::drain_p(P* p) {
  GList moved;
  if (G* g = p->runnext.exchange(nullptr, std::memory_order_acq_rel)) moved.push(g);
  while (G* g = p->ioq.pop()) moved.push(g);
  while (G* g = p->runq.pop()) moved.push(g);
  if (!moved.empty()) global_->push_list(moved);

  P* dst = allp_[0].load(std::memory_order_acquire);
  if (dst != p) {
    // Lock order: lower P id first.
    std::scoped_lock lk(dst->timers_mu, p->timers_mu);
    for (Timer* t : p->timers) {
      t->index = -1;
      timer_heap_push(dst, t);
    }
    p->timers.clear();
    p->timer0.store(0);
  }
  wake_poller_for(dst->timer0.load());

  std::lock_guard lk(gfree_mu_);
  while (p->gfree != nullptr) {
    G* f = p->gfree;
    p->gfree = f->next;
    f->next = gfree_;
    gfree_ = f;
  }
  p->ngfree = 0;
  p->stacks.flush();
}

}  // namespace tern::sched
