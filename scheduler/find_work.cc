// scheduler/find_work.cc: where an M with a P finds its next fiber: the local run queue and runnext, the global queue,
// injection of readied batches, stealing from other Ps and rescuing a stalled one (find_runnable's order is in
// scheduler/sched.h).
#include "scheduler/sched.h"

#include <algorithm>

#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/poller.h"
#include "scheduler/sched_internal.h"
#include "scheduler/timer.h"

namespace tern::sched {

void Sched::runq_put(P* p, G* g, bool next) {
  if (next) {
    // Thieves only ever take runnext (non-null -> null), so an empty slot stays empty until its owner (us) fills
    // it: a plain store suffices, and the common case costs no atomic read-modify-write.
    G* old = p->runnext.load(std::memory_order_relaxed);
    if (old == nullptr) {
      p->runnext.store(g, std::memory_order_release);
      return;
    }
    old = p->runnext.exchange(g, std::memory_order_acq_rel);
    if (old == nullptr) return;
    g = old;  // the previous runnext goes to the tail of the queue
  }
  while (!p->runq.push(g)) {
    G* batch[RunQueue::kCapacity / 2 + 1];
    uint32_t n = p->runq.pop_half(batch);
    if (n == 0) continue;  // a thief made room
    batch[n++] = g;
    global_->push_batch(batch, n);
    bump(p->counters.overflows);
    return;
  }
}

G* Sched::runq_get(P* p, bool& inherit) {
  G* g = p->runnext.load(std::memory_order_acquire);
  if (g != nullptr) {
    if (p->runnext_chain < kRunnextChainMax) {
      if (p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
        p->runnext_chain++;
        inherit = true;
        return g;
      }
    } else if (p->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
      // The chain used up its slice: the runnext fiber waits its turn at the tail.
      runq_put(p, g, false);
    }
  }
  p->runnext_chain = 0;
  inherit = false;
  return p->runq.pop();
}

bool Sched::any_local_work() const {
  int n = scan_bound();
  for (int i = 0; i < n; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    if (!p->runq.empty() || !p->ioq.empty() || p->runnext.load(std::memory_order_acquire) != nullptr) return true;
  }
  return false;
}

// How many fibers a batch (inject, rescue_stalled) may add to pp's local queue: up to half its capacity, leaving the
// rest for fibers readied one at a time.
static uint32_t batch_room(P* pp) {
  const uint32_t size = pp->runq.size();
  return size < RunQueue::kCapacity / 2 ? RunQueue::kCapacity / 2 - size : 0;
}

void Sched::inject(GList& list, P* pp) {
  if (list.empty()) return;
  // Fibers already wait in the global queue: these are newer, and go behind them. Put locally they would run first
  // (a P reads the global queue only every kGlobalQueueInterval starts or when its own runs dry), and past the knee,
  // where every poll overflows, the global queue's fibers would wait for seconds behind each newer batch: service in
  // nearly last-in-first-out order, which an admission control timing each request's queueing cannot correct
  // (bench/overload.sh, docs/performance.md).
  if (!global_->empty()) {
    global_put_list(list);
    wakep();
    return;
  }
  // Up to half the local queue's capacity goes there, the rest (the newest) to the global queue in one batch. runq_put
  // alone would, on overflow, move the local queue's oldest half to the global queue, where it waits behind all the
  // newer local work a P runs before looking there: a poller's batch on top of a busy queue (at -c1000 the io_uring
  // backend's reaps overflowed 44 times a second) was the tail of the latency distribution. Half, not all, leaves room
  // for the fibers this P readies one at a time meanwhile (yields, wakeups), which still take runq_put's path.
  uint32_t room = batch_room(pp);
  while (room > 0 && !list.empty()) {
    G* g = list.pop();
    set_gstatus(g, GStatus::kRunnable);
    runq_put(pp, g, false);
    room--;
  }
  if (!list.empty()) {
    global_put_list(list);
    bump(pp->counters.overflows);
  }
  wakep();
}

// Queues fibers readied by an M that holds no P and found none idle (Go's injectglist without a P): globally, then
// wakep(). The wakep is what keeps them from being lost: between this M's look at the idle list and its push, the last
// busy M may have run dry, given its P back, seen an empty global queue and blocked in the poller with no deadline.
// Its P is idle now, so wakep() hands it to that poller M (or starts one); when every P is still busy it is one load.
void Sched::inject_global(GList& list) {
  if (list.empty()) return;
  point(SchedPoint::kGlobalPush);
  global_put_list(list);
  point(SchedPoint::kGlobalPushed);
  wakep();
}

// Marks the fibers runnable and queues them globally, in order, under one lock. Wakes nobody.
void Sched::global_put_list(GList& list) {
  for (G* g = list.head; g != nullptr; g = g->next) set_gstatus(g, GStatus::kRunnable);
  global_->push_list(list);
}

uint32_t Sched::random(M* m) {
  return xorshift(m->rand_state);
}

// A non-blocking poll of the network by pp's M, counted and traced; true when it readied fibers (into `list`).
bool Sched::poll_network(P* pp, GList& list) {
  bump(pp->counters.poll_calls);
  if (poller_->poll(0, list) == 0) return false;
  last_poll_.store(now_ns(), std::memory_order_relaxed);
  bump(pp->counters.polls);
  trace_p(pp, TraceKind::kPoll, list.size);
  return true;
}

G* Sched::find_runnable(M* m) {
top:
  if (shutting_down_.load(std::memory_order_acquire)) return nullptr;
  if (m->p->id >= nprocs_.load(std::memory_order_acquire) && retire_if_needed(m)) {
    idle_without_p(m);
    goto top;
  }
  P* pp = m->p;
  if (int64_t now; timer_due(pp->timer0.load(std::memory_order_relaxed), now)) run_timers(pp, now, pp);
  if (pp->schedtick % kStallCheckInterval == 0) rescue_stalled(pp);
  // Every kBusyPollInterval ticks, the network even though this P has work queued (Tokio polls its driver every 61
  // ticks for the same reason). Without it a lone busy P read new requests only when its queue ran dry: requests that
  // arrived during a CPU burst were all read together, slept together and woke together, a convoy that renewed itself
  // (tern-echo, one processor, /mix?cpu_us=100&sleep_ms=5 open loop at 5000/s: p50 9.6 ms against 5.3 ms unloaded, at
  // 62% CPU).
  //
  // What the poll readies runs next, ahead of the queued work (P::ioq; beyond its capacity, the local queue's tail).
  // Joining the tail was not enough: a fiber readied by the network usually reads a request and starts what it waits
  // on next (a sleep, a database call), a few microseconds, but at the tail it first waited out every queued CPU burst,
  // so requests that arrived during a burst still started their waits together and came back together. With one
  // processor and /mix?cpu_us=100&sleep_ms=5 closed loop, 16 connections took 7.1 ms a request (the convoy's bound
  // R0 + 15 x D) and 95% of peak throughput needed 128 of them; ahead of the queue, 5.6 ms and 48, where the
  // unloaded latency and the CPU per request predict 45 (docs/performance.md). The queued work is not starved: the
  // next busy poll waits until ioq has run dry and kBusyPollInterval more fibers have started from the queues (ioq's
  // fibers do not advance schedtick), so it gets at least 4 of every 4 + kIoQueueCapacity starts, and the global
  // queue's fairness tick still comes every kGlobalQueueInterval of them.
  if (pp->schedtick % kBusyPollInterval == 0 && pp->last_busy_poll != pp->schedtick && !pp->ioq_filled &&
      poller_->has_waiters() && !polling_.load(std::memory_order_relaxed)) {
    pp->last_busy_poll = pp->schedtick;
    GList list;
    if (poll_network(pp, list)) {
      // Ahead of the queue only while the queue is short. Past the knee (the global queue holds overflow, or the
      // local queue more than ioq could jump) new arrivals would be served before everything that waits, the
      // oldest last: the readied fibers take their turn at the tail instead (inject), first in, first out.
      // Owner-only pushes, and thieves only shrink it: a push below the capacity cannot fail.
      const bool backlog = !global_->empty() || pp->runq.size() >= kIoQueueCapacity;
      while (!backlog && pp->ioq.size() < kIoQueueCapacity && !list.empty()) {
        G* g = list.pop();
        set_gstatus(g, GStatus::kRunnable);
        pp->ioq.push(g);
        pp->ioq_filled = true;
      }
      inject(list, pp);
    }
  }
  if (G* g = m->yielded) {
    m->yielded = nullptr;
    if (pp->runq.empty() && !pp->ioq_filled && (pp->schedtick % kGlobalQueueInterval != 0 || global_->empty())) {
      pp->schedtick++;
      return g;
    }
    runq_put(pp, g, false);  // timers or the global queue have work: the yielder waits its turn
  }
  // The chaos schedule looks at the global queue first now and then, as if at a fairness tick.
  if ((pp->schedtick % kGlobalQueueInterval == 0 || (chaos_ && chaos_rand() % 8 == 0)) && !global_->empty()) {
    if (G* g = global_->pop()) {
      bump(pp->counters.global_taken);
      pp->schedtick++;
      pp->runnext_chain = 0;
      reset_spinning(m);
      return g;
    }
  }
  if (pp->ioq_filled) {
    if (G* g = pp->ioq.pop()) {
      bump(pp->counters.io_first);
      pp->runnext_chain = 0;
      reset_spinning(m);
      return g;
    }
    pp->ioq_filled = false;
  }
  bool inherit = false;
  if (G* g = runq_get(pp, inherit)) {
    if (!inherit) pp->schedtick++;
    reset_spinning(m);
    return g;
  }
  if (!global_->empty()) {
    // A fair share of the global queue, at most half a local queue.
    int n = nprocs_.load(std::memory_order_relaxed);
    uint32_t want = static_cast<uint32_t>(std::min<uint64_t>(global_->size() / n + 1, RunQueue::kCapacity / 2));
    G* batch[RunQueue::kCapacity / 2];
    uint32_t got = global_->pop_batch(batch, want);
    if (got > 0) {
      bump(pp->counters.global_taken, got);
      for (uint32_t i = 1; i < got; i++) runq_put(pp, batch[i], false);
      pp->schedtick++;
      reset_spinning(m);
      return batch[0];
    }
  }
  if (poller_->has_waiters() && !polling_.load(std::memory_order_relaxed)) {
    GList list;
    if (poll_network(pp, list)) {
      G* g = list.pop();
      inject(list, pp);
      set_gstatus(g, GStatus::kRunnable);
      pp->schedtick++;
      reset_spinning(m);
      return g;
    }
  }
  // Steal, unless enough Ms already spin: at most half as many as there are busy Ps.
  {
    int busy = nprocs_.load(std::memory_order_relaxed) - npidle_.load(std::memory_order_relaxed);
    if (m->spinning || 2 * nmspinning_.load(std::memory_order_relaxed) < busy) {
      if (!m->spinning) {
        m->spinning = true;
        nmspinning_.fetch_add(1);
      }
      if (G* g = steal_work(m, pp)) {
        pp->schedtick++;
        reset_spinning(m);
        return g;
      }
    }
  }
  // Nothing. Give the P back.
  {
    std::unique_lock lk(sched_mu_);
    if (!global_->empty() || pp->id >= nprocs_.load(std::memory_order_relaxed) ||
        shutting_down_.load(std::memory_order_relaxed)) {
      lk.unlock();
      goto top;
    }
    pidleput(releasep(m));
  }
  point(SchedPoint::kReleasedP);
  bool was_spinning = m->spinning;
  stop_spinning(m);
  // A producer that saw a spinning M did not wake anyone; with the spinning count lowered (a full fence), look again
  // before sleeping, so its fiber cannot be stranded.
  if (any_local_work() || !global_->empty() || timers_due()) {
    P* p = take_idle_p();
    if (p != nullptr) {
      acquirep(m, p);
      if (was_spinning) {
        m->spinning = true;
        nmspinning_.fetch_add(1);
      }
      goto top;
    }
  }
  idle_without_p(m);
  goto top;
}

G* Sched::steal_work(M* m, P* pp) {
  // Retiring Ps beyond procs() whose M still runs a fiber are victims too: until that fiber reaches a scheduling point
  // they hold queued fibers and timers that nobody else would run (and earliest_timer() counts their timers, so an idle
  // M would wake for them, find nothing to steal, and spin).
  const int n = scan_bound();
  if (n <= 1) return nullptr;
  G* found = nullptr;
  auto node_of = [&](int i) { return allp_[i].load(std::memory_order_acquire)->node; };
  auto rand = [&] { return random(m); };
  visit_victims(n, pp->id, multi_node_, node_of, rand, [&](int vi, int pass, bool remote) {
    P* v = allp_[vi].load(std::memory_order_acquire);
    if (v->status.load(std::memory_order_relaxed) == PStatus::kDead) return false;
    auto count = [&](uint32_t got) {
      bump(pp->counters.steals, got);
      if (remote) bump(pp->counters.steals_remote, got);
      trace_p(pp, TraceKind::kSteal, got, static_cast<uint32_t>(v->id));
    };
    // Timers of a P whose M is busy (or that is idle) would otherwise wait; run them here.
    int64_t t0 = v->timer0.load(std::memory_order_relaxed);
    if (t0 != 0) {
      int64_t now = now_ns();
      if (t0 <= now) {
        run_timers(v, now, pp);
        bool inherit;
        if ((found = runq_get(pp, inherit)) != nullptr) return true;
      }
    }
    // A busy poll's fibers first: they were to run first there.
    G* batch[kIoQueueCapacity / 2];
    uint32_t got = v->ioq.steal_batch(batch, kIoQueueCapacity / 2);
    if (got > 0) {
      count(got);
      for (uint32_t k = 1; k < got; k++) runq_put(pp, batch[k], false);
      found = batch[0];
      return true;
    }
    got = v->runq.steal_into(pp->runq);
    if (got > 0) {
      count(got);
      bool inherit;
      if ((found = runq_get(pp, inherit)) != nullptr) return true;
    }
    // The runnext slot of a running P is about to run there; take it only on the last pass.
    if (pass == kStealPasses - 1 && v->status.load(std::memory_order_relaxed) == PStatus::kRunning) {
      G* g = v->runnext.load(std::memory_order_acquire);
      if (g != nullptr && v->runnext.compare_exchange_strong(g, nullptr, std::memory_order_acq_rel)) {
        count(1);
        found = g;
        return true;
      }
    }
    return false;
  });
  return found;
}

// Fibers queued on a P whose M has stopped running them (descheduled by the OS: on a machine shared with other
// processes a runnable thread waits out another's time slice, 4 ms at HZ=250; or one fiber holding the P) wait until
// it resumes, while the other Ms only steal once their own queues run dry, which under load is never. At -c1000 that
// was a second mode in the time from a fiber's readying to its run: 12% of requests waited 2-8 ms. So a busy M keeps
// a watch on one other P at a time, every kStallCheckInterval fibers: once the watched P has had fibers queued and
// started none for kStallNs, the watcher takes half its queue (up to its own batch_room, like inject). The watch reads
// only the P's switch counter, so running fibers pay nothing for it.
void Sched::rescue_stalled(P* pp) {
  const int n = scan_bound();  // a retiring P whose M runs one long fiber is the stalled P this is for
  if (n <= 1) return;
  const auto np = static_cast<uint32_t>(n);
  auto other = [&](uint32_t i) { return static_cast<int>(i % np) == pp->id ? (i + 1) % np : i % np; };
  uint32_t vi = other(pp->watch);
  P* v = allp_[vi].load(std::memory_order_acquire);
  uint64_t switches = v->counters.switches.load(std::memory_order_relaxed);
  const int64_t now = now_ns();
  if (vi == pp->watch && switches == pp->watch_switches && (!v->runq.empty() || !v->ioq.empty())) {
    if (now - pp->watch_since < kStallNs) return;
    pp->watch_since = now;
    const uint32_t room = batch_room(pp);
    if (room == 0) return;
    G* batch[RunQueue::kCapacity / 2];
    uint32_t got = v->ioq.steal_batch(batch, std::min(room, kIoQueueCapacity / 2));
    got += v->runq.steal_batch(batch + got, room - got);
    if (got == 0) return;
    bump(pp->counters.steals, got);
    if (v->node != pp->node) bump(pp->counters.steals_remote, got);
    bump(pp->counters.rescued, got);
    trace_p(pp, TraceKind::kSteal, got, vi, 0, 1);
    for (uint32_t i = 0; i < got; i++) runq_put(pp, batch[i], false);
    return;
  }
  // A new watch, or the watched P has nothing queued (time it afresh) or moved on (watch the next P in turn).
  if (vi == pp->watch && switches != pp->watch_switches) {
    vi = other(vi + 1);
    switches = allp_[vi].load(std::memory_order_acquire)->counters.switches.load(std::memory_order_relaxed);
  }
  pp->watch = vi;
  pp->watch_switches = switches;
  pp->watch_since = now;
}

}  // namespace tern::sched
