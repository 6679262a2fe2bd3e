// scheduler/locked.cc: fibers locked to their thread (park.h, lock_to_thread; Go's LockOSThread, lockedm/lockedg).
//
// While a fiber is locked, its M runs it and nothing else. When it switches out (parks, yields, or comes back from
// tern::blocking without a processor), m_main calls run_locked: the M gives its P to others (handoffp) and sleeps on
// its note, apart from the idle list, so that startm never gives it other work. Whoever next takes the fiber from a
// queue, on any M (find_runnable, stealing included), sees it locked to another M and calls hand_to_locked: it hands
// its own P to that M (M::nextp, under sched_mu_, then a wakeup) and goes idle itself; the locked M wakes with the P
// and runs the fiber. A switch to the fiber never happens on another M: take_handoff refuses both a locked parker and a
// locked runnext. Each wait of a locked fiber therefore costs two thread wakeups, as in Go.
#include "scheduler/g.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"

namespace tern::sched {

void lock_to_thread() {
  M* m = this_m();
  if (m == nullptr || m->curg == nullptr) return;
  G* g = m->curg;
  if (g->lock_count++ == 0) {
    g->locked_m.store(m, std::memory_order_relaxed);
    m->locked_g = g;
  }
}

void unlock_thread() {
  M* m = this_m();
  if (m == nullptr || m->curg == nullptr) return;
  G* g = m->curg;
  if (g->lock_count == 0) return;  // more unlocks than locks: nothing to undo (Go ignores them too)
  if (--g->lock_count == 0) {
    g->locked_m.store(nullptr, std::memory_order_relaxed);
    m->locked_g = nullptr;
  }
}

bool thread_locked() {
  M* m = this_m();
  return m != nullptr && m->curg != nullptr && m->curg->lock_count > 0;
}

bool Sched::run_locked(M* m) {
  G* lg = m->locked_g;
  if (m->p != nullptr) {
    if (m->yielded == lg) m->yielded = nullptr;  // never kept M-local (execute), but be sure
    handoffp(releasep(m));
  }
  // Sequentially consistent, as is the flag's load below: shutdown sets its flag and then reads this one, so either
  // this M sees the shutdown and does not sleep, or shutdown sees it waiting and wakes it.
  m->locked_wait.store(true);
  P* p = nullptr;
  for (;;) {
    // Sleep first, even when a P is already there: hand_to_locked sets nextp and then wakes the note, so each P comes
    // with exactly one wakeup, and it is taken here. Taking a P set before this M got here without sleeping left its
    // wakeup in the note; the M's next idle park then returned at once while the M stayed on the idle list, and its
    // park after that pushed it again (idle_list_corrupt).
    if (!shutting_down_.load()) m->note.sleep();
    {
      std::lock_guard lk(sched_mu_);
      p = m->nextp;
      m->nextp = nullptr;
    }
    if (p != nullptr || shutting_down_.load(std::memory_order_acquire)) break;
  }
  m->locked_wait.store(false);
  if (p == nullptr) return false;
  acquirep(m, p);
  execute(m, lg);
  return true;
}

void Sched::hand_to_locked(M* m, G* g) {
  M* lm = g->locked_m.load(std::memory_order_relaxed);
  P* p = releasep(m);
  {
    std::lock_guard lk(sched_mu_);
    lm->nextp = p;
  }
  lm->note.wakeup();
  idle_without_p(m);
}

}  // namespace tern::sched
