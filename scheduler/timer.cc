// scheduler/timer.cc: per-P timer heaps (see scheduler/timer.h).
//
// Each P keeps a binary min-heap of Timer pointers under its own mutex; a Timer records its index so cancel is
// O(log n). P::timer0 mirrors the root's `when` (0 = empty) so the scheduler's "anything due?" check costs one load and
// a clock read only when there is a timer at all.
#include <time.h>

#include <algorithm>

#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"

namespace tern::sched {

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

void heap_set(std::vector<Timer*>& h, size_t i, Timer* t) {
  h[i] = t;
  t->index = static_cast<int32_t>(i);
}

void sift_up(std::vector<Timer*>& h, size_t i) {
  Timer* t = h[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (h[parent]->when <= t->when) break;
    heap_set(h, i, h[parent]);
    i = parent;
  }
  heap_set(h, i, t);
}

void sift_down(std::vector<Timer*>& h, size_t i) {
  Timer* t = h[i];
  const size_t n = h.size();
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && h[c + 1]->when < h[c]->when) c++;
    if (h[c]->when >= t->when) break;
    heap_set(h, i, h[c]);
    i = c;
  }
  heap_set(h, i, t);
}

void update_timer0(P* p) {
  p->timer0.store(p->timers.empty() ? 0 : std::max<int64_t>(p->timers[0]->when, 1));
}

// Removes the timer at heap index i; p->timers_mu held (asserted). t->p is left for the caller to clear: cancel_timer
// relies on it staying set until `fire` has returned.
Timer* heap_remove(P* p, int32_t i) {
  p->timers_mu.assert_held();
  auto& h = p->timers;
  Timer* t = h[i];
  Timer* last = h.back();
  h.pop_back();
  if (static_cast<size_t>(i) < h.size()) {
    heap_set(h, i, last);
    sift_down(h, i);
    sift_up(h, last->index);
  }
  t->index = -1;
  update_timer0(p);
  return t;
}

}  // namespace

void Sched::timer_heap_push(P* p, Timer* t) {
  p->timers_mu.assert_held();
  p->timers.push_back(t);
  t->p.store(p, std::memory_order_release);
  sift_up(p->timers, p->timers.size() - 1);
  update_timer0(p);
}

void Sched::add_timer(P* p, Timer* t) {
  // Read before the timer is published: once the lock drops it may fire and its owner may be gone.
  const int64_t when = t->when;
  {
    std::lock_guard lk(p->timers_mu);
    timer_heap_push(p, t);
  }
  wake_poller_for(when);
}

// The M blocked in the poller sleeps until poll_until_; a timer due earlier must cut that sleep short. The store of
// timer0 above and the load of polling_ here are sequentially consistent, as are the poller's store of polling_ and
// its read of timer0, so one side always sees the other.
void Sched::wake_poller_for(int64_t when) {
  if (when == 0 || !polling_.load()) return;
  int64_t until = poll_until_.load();
  if (until == 0 || when < until) poller_->wake();
}

void Sched::run_timers(P* p, int64_t now, P* into) {
  // Fired fibers are readied after the lock is dropped (ready() must not run under a timer lock).
  constexpr size_t kBatch = 64;
  G* fired[kBatch];
  size_t n = 0;
  {
    std::lock_guard lk(p->timers_mu);
    // Timers that only move later (lazy modification) count too, so one call's time under the lock stays bounded.
    for (size_t seen = 0; !p->timers.empty() && p->timers[0]->when <= now && n < kBatch && seen < 4 * kBatch; seen++) {
      Timer* t = p->timers[0];
      const int64_t was = t->when;
      G* g = t->fire(t);
      if (t->when != was) {  // moved later: it stays, at its new place
        sift_down(p->timers, 0);
        update_timer0(p);
      } else {
        heap_remove(p, 0);
        // Only now, still under the lock, is the timer let go: a cancel_timer() waiting on the lock then sees it gone
        // and returns knowing fire has finished, so its owner may free it.
        t->p.store(nullptr, std::memory_order_release);
      }
      if (g != nullptr) fired[n++] = g;
    }
  }
  if (n == 0) return;
  bump(into->counters.timers_fired, n);
  for (size_t i = 0; i < n; i++) {
    set_gstatus(fired[i], GStatus::kRunnable);
    trace_p(into, TraceKind::kReady, fired[i]->id, 0, 0, 1);
    runq_put(into, fired[i], false);
  }
  wakep();
}

bool Sched::timers_due() const {
  int64_t t = earliest_timer();
  return t != 0 && t <= now_ns();
}

int64_t Sched::earliest_timer() const {
  int64_t best = 0;
  for (int i = 0; i < kMaxProcs; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    if (p == nullptr) break;
    int64_t t = p->timer0.load();
    if (t != 0 && (best == 0 || t < best)) best = t;
  }
  return best;
}

void add_timer(Timer* t) {
  M* m = this_m();
  m->sched->add_timer(m->p, t);
}

bool cancel_timer(Timer* t) {
  for (;;) {
    P* p = t->p.load(std::memory_order_acquire);
    if (p == nullptr) return false;
    std::lock_guard lk(p->timers_mu);
    // The timer may have fired, or moved to another P when its P retired, between the load and the lock.
    if (t->p.load(std::memory_order_relaxed) != p) continue;
    heap_remove(p, t->index);
    t->p.store(nullptr, std::memory_order_release);
    return true;
  }
}

bool move_timer_earlier(Timer* t, int64_t when) {
  for (;;) {
    P* p = t->p.load(std::memory_order_acquire);
    if (p == nullptr) return false;
    {
      std::lock_guard lk(p->timers_mu);
      if (t->p.load(std::memory_order_relaxed) != p) continue;  // fired, or moved off a retired P
      if (t->when <= when) return true;
      t->when = when;
      sift_up(p->timers, t->index);
      update_timer0(p);
    }
    this_m()->sched->wake_poller_for(when);
    return true;
  }
}

}  // namespace tern::sched
