// scheduler/idle.cc: the idle protocol: idle Ps and Ms, spinning Ms, the poller role, and how new work finds a thread
// to run it (wakep/startm, an idle M's park, its wakeup by its own I/O).
//
// Two StoreLoad patterns keep a wakeup from being lost (Go's proc.go states the same pair; docs/architecture.md,
// section 6, has the whole protocol):
//   1. Publish work, then check for spinning Ms. A producer puts a fiber in a queue and then calls wakep(), which loads
//      npidle_ and nmspinning_ (sequentially consistent): if an M spins, finding that work is its job, so nobody is
//      woken.
//   2. Leave spinning, then recheck. An M that found nothing gives its P back, lowers nmspinning_ (a read-modify-write:
//      a full fence) and only then looks at every queue once more, taking an idle P back if there is work. Otherwise a
//      producer that saw it spinning, and so woke nobody, would strand its fiber.
// Each pattern is a store followed by a load on each side; with both sides sequentially consistent, one of them sees
// the other. The spinning count changes only through wakep (+1 when it claims a spinner), reset_spinning (the M found
// work: -1, and wakep if it was the last), stop_spinning (gave up without work) and drop_spinning under them.
#include "scheduler/sched.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <thread>

#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/poller.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

inline void Sched::queue_ready_inline(G* g, bool next) {
  set_gstatus(g, GStatus::kRunnable);
  M* m = this_m();
  const bool own = m != nullptr && m->sched == this && m->p != nullptr;
  if (own && !hooks_) [[likely]] {
    runq_put(m->p, g, next);
    wakep();
    return;
  }
  // From a thread without a P here (a program thread, the signal relay): once queued, g may run, end the program's
  // work and have the runtime destroyed before this returns, so shutdown() waits for these to finish. The hooked
  // path (the chaos schedule) is covered too: the chaos suite found it unguarded.
  if (!own) foreign_readies_.fetch_add(1);
  if (hooks_) [[unlikely]] {
    ready_hooked(g, next);
  } else {
    global_->push(g);
    wakep();
  }
  if (!own) foreign_readies_.fetch_sub(1, std::memory_order_release);
}

void Sched::ready(G* g, bool next) {
  trace(TraceKind::kReady, g->id);
  queue_ready_inline(g, next);
}

void Sched::queue_ready(G* g, bool next) {
  queue_ready_inline(g, next);
}

void Sched::ready_list(GList& list) {
  if (list.empty()) return;
  if (tracer_ != nullptr) [[unlikely]] {
    for (G* g = list.head; g != nullptr; g = g->next) trace_slow(TraceKind::kReady, g->id, 0, 0, 0);
  }
  M* m = this_m();
  if (m != nullptr && m->sched == this && m->p != nullptr) {
    inject(list, m->p);
    return;
  }
  point(SchedPoint::kGlobalPush);
  global_put_list(list);
  point(SchedPoint::kGlobalPushed);
  wakep();
}

// Hands an idle P to an M if work may be waiting and no M is already looking for it (Go's wakep). Cheap when every P
// is busy (one load) or an M already spins (two loads).
void Sched::wakep() {
  point(SchedPoint::kWakep);
  if (npidle_.load() == 0) return;
  if (nmspinning_.load() != 0) return;
  int expected = 0;
  if (!nmspinning_.compare_exchange_strong(expected, 1)) return;
  if (wake_poller_for_p()) return;
  P* p;
  if (multi_node_) [[unlikely]] {
    // New work on this node: a P on this node, whose M steals from here before it looks at the other nodes.
    M* self = this_m();
    p = take_idle_p_on(self != nullptr && self->sched == this && self->p != nullptr ? self->p->node : -1);
  } else {
    p = take_idle_p();
  }
  if (p == nullptr) {
    drop_spinning();
    return;
  }
  startm(p, true);
}

// The M holding the poller role is idle and holds no P: wakep() wakes it to take the idle P and spin, rather than
// start another M. Otherwise the poller, back with its events and finding no P left, parks, and every M in that
// rotation keeps the receives it armed: io_uring runs a receive's completion work on the thread that armed it, so each
// arrival on one of them wakes a parked M just for that (at -c1000, three Ms rotating over two Ps slept 6,800 times in
// 3 s against 1,000 for epoll). Returns false where no M holds the role; the caller then starts an M.
// The claim is handed over through poller_claim_: the poller exchanges it after clearing polling_, so whichever of the
// two sees it set owns the spinning count wakep() took.
bool Sched::wake_poller_for_p() {
  if (!polling_.load()) return false;
  poller_claim_.store(true);
  if (polling_.load()) {
    // Blocked, or about to block: wake() makes the next poll return at once too.
    poller_claims_.fetch_add(1, std::memory_order_relaxed);
    wake_monitor();
    poller_->wake();
    return true;
  }
  return !poller_claim_.exchange(false);  // the role was released meanwhile: its holder took the claim, or it is ours
}

void Sched::startm(P* p, bool spinning) {
  M* m = nullptr;
  {
    std::lock_guard lk(sched_mu_);
    if (shutting_down_.load(std::memory_order_relaxed)) {
      pidleput(p);
      if (spinning) drop_spinning();
      return;
    }
    if (midle_ != nullptr) {
      M** link = &midle_;
      if (multi_node_) [[unlikely]] {
        // An M that last ran on the P's node: its thread's stack and caches were made there.
        M** l = &midle_;
        for (int i = 0; i < kIdleMScan && *l != nullptr; i++, l = &(*l)->link) {
          if ((*l)->node == p->node) {
            link = l;
            break;
          }
        }
      }
      m = *link;
      *link = m->link;
      m->link = nullptr;
      m->in_idle_list = false;
    } else if (static_cast<int>(allm_.size()) >= opts_.max_threads) {
      // At the bound (Ms blocked in tern::blocking count): the P waits in the idle list for an M to come back.
      pidleput(p);
      if (spinning) drop_spinning();
      thread_limit_hits_.fetch_add(1, std::memory_order_relaxed);
      if (!thread_limit_reported_.exchange(true))
        std::fprintf(stderr,
                     "tern: the runtime has reached its bound of %d threads (max_threads; tern-echo --max-threads, "
                     "TERN_MAX_THREADS): work waits for a thread to come back from a blocking call. Raise the bound, "
                     "or run fewer blocking calls at once (tern::spawn_blocking's pool is bounded).\n",
                     opts_.max_threads);
      return;
    }
  }
  wake_monitor();
  if (m != nullptr) {
    m->nextp = p;
    m->next_spinning = spinning;
    m->note.wakeup();
    return;
  }
  m = newm();
  m->nextp = p;
  m->next_spinning = spinning;
  try {
    m->thread = std::thread(m_main, m);
  } catch (const std::system_error& e) {
    // Out of threads (RLIMIT_NPROC, a cgroup's pids.max, memory, vm.max_map_count): keep running on the Ms there are.
    // The P goes back to the idle list; its work stays queued. With no M running at all (the first one failed), that
    // work would wait for an unrelated wakep() that may never come: the monitor retries with back-off.
    thread_start_failures_.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lk(sched_mu_);
      // By identity: other startm calls (the spinning token serializes only some of them) may have appended since.
      allm_.erase(std::find(allm_.begin(), allm_.end(), m));
      pidleput(p);
      const int64_t delay = thread_retry_delay_.load(std::memory_order_relaxed);
      thread_retry_at_.store(now_ns() + delay);
      thread_retry_delay_.store(std::min(delay * 2, kThreadRetryMaxNs), std::memory_order_relaxed);
    }
    if (spinning) drop_spinning();
    delete m;
    monitor_note_.wakeup();  // whether it sleeps or not: its next sleep must end at the retry time
    if (!thread_failure_reported_.exchange(true)) {
      std::fprintf(stderr,
                   "tern: cannot start another scheduler thread (%s); continuing with the threads running, retrying "
                   "with back-off\n",
                   e.what());
    }
    return;
  }
  if (thread_retry_delay_.load(std::memory_order_relaxed) != kThreadRetryMinNs) {
    thread_retry_delay_.store(kThreadRetryMinNs, std::memory_order_relaxed);
  }
}

// Monitor thread: a thread start failed earlier and its retry time has come. wakep() starts an M if a P is idle and no
// M looks for work; a failure there schedules the next retry.
void Sched::retry_thread_start() {
  const int64_t at = thread_retry_at_.load();
  if (at == 0 || now_ns() < at) return;
  thread_retry_at_.store(0);
  wakep();
}

// Store buffering: the waker's RMW on npidle_ (pidleget) then its load of monitor_sleeping_, against the monitor's
// store of monitor_sleeping_ then its load of npidle_. All four are sequentially consistent, so in their single total
// order either the monitor's store comes first (the waker sees it and wakes it) or the waker's RMW does (the monitor
// sees the P busy and does not sleep). A relaxed load here could miss both.
void Sched::wake_monitor() {
  if (monitor_sleeping_.load() && monitor_sleeping_.exchange(false)) monitor_note_.wakeup();
}

// An M leaving the poller role takes an idle P, if there is one. `claimed`: wakep() counted it as spinning (it spins
// with the P, or gives that count back without one).
bool Sched::acquire_idle_p(M* m, bool claimed) {
  P* p = take_idle_p();
  if (p == nullptr) {
    if (claimed) drop_spinning();
    return false;
  }
  acquirep(m, p);
  m->spinning = claimed;
  return true;
}

// Every release of the poller role goes through here: the claim wakep() may have left is the releasing M's to honour.
bool Sched::release_poller_role() {
  polling_.store(false);
  return poller_claim_.exchange(false);
}

void Sched::reset_spinning(M* m) {
  if (!m->spinning) return;
  m->spinning = false;
  // The last spinning M found work: there may be more, so make sure another M looks (Go's resetspinning).
  if (drop_spinning() == 1) wakep();
}

// Lowers the count of spinning Ms and returns what it was: never below zero, or a wakeup was counted twice.
int Sched::drop_spinning() {
  const int before = nmspinning_.fetch_sub(1);
  TERN_DCHECK(before > 0);
  return before;
}

// An M that stops looking for work without having found any (its P given back, or retired): no wakep.
void Sched::stop_spinning(M* m) {
  if (!m->spinning) return;
  m->spinning = false;
  drop_spinning();
}

P* Sched::pidleget() {
  sched_mu_.assert_held();
  P* p = pidle_;
  if (p == nullptr) return nullptr;
  pidle_ = p->link;
  p->link = nullptr;
  p->status.store(PStatus::kRunning, std::memory_order_relaxed);
  npidle_.fetch_sub(1);
  return p;
}

P* Sched::take_idle_p_on(int node) {
  P* p = nullptr;
  {
    std::lock_guard lk(sched_mu_);
    for (P** link = &pidle_; *link != nullptr; link = &(*link)->link) {
      if ((*link)->node == node) {
        p = *link;
        *link = p->link;
        p->link = nullptr;
        p->status.store(PStatus::kRunning, std::memory_order_relaxed);
        npidle_.fetch_sub(1);
        break;
      }
    }
    if (p == nullptr) p = pidleget();
  }
  if (p != nullptr) wake_monitor();
  return p;
}

P* Sched::take_idle_p() {
  P* p;
  {
    std::lock_guard lk(sched_mu_);
    p = pidleget();
  }
  // Every way a P goes busy wakes the monitor if it sleeps (it sleeps only while all Ps are idle): otherwise a P taken
  // by a poller M or by an M's re-check runs with nobody to notice a fiber that holds it, or to poll for its M.
  if (p != nullptr) wake_monitor();
  return p;
}

void Sched::pidleput(P* p) {
  sched_mu_.assert_held();
  p->status.store(PStatus::kIdle, std::memory_order_relaxed);
  p->link = pidle_;
  pidle_ = p;
  npidle_.fetch_add(1);
}

void Sched::acquirep(M* m, P* p) {
  p->m = m;
  p->m_id.store(m->id, std::memory_order_relaxed);
  m->p = p;
  if (pin_) [[unlikely]]
    bind_m(m, p);
  p->status.store(PStatus::kRunning, std::memory_order_relaxed);
  const int64_t now = now_ns();
  p->busy_since.store(now, std::memory_order_relaxed);
  // A P going busy is where fibers start changing status: stamp them with a fresh clock. Stored only when it moved by
  // more than kCoarseRefreshNs: every M waking in a ping-pong across Ms stored it, and every status change on the
  // other CPU then missed on its line.
  if (now - coarse_now_ns() > kCoarseRefreshNs) refresh_coarse_clock(now);
}

P* Sched::releasep(M* m) {
  P* p = m->p;
  const int64_t since = p->busy_since.exchange(0, std::memory_order_relaxed);
  if (since != 0) bump(p->counters.busy_ns, static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - since)));
  p->m = nullptr;
  p->m_id.store(-1, std::memory_order_relaxed);
  m->p = nullptr;
  return p;
}

// Every acquirep runs on the acquiring M's own thread, so the M binds itself. Binding costs a system call, paid only
// when the M's PU changes: an M that keeps taking the same P back (one processor; a P handed back after a short
// blocking call) binds once.
void Sched::bind_m(M* m, P* p) {
  m->node = p->node;
  if (m->bound_pu == p->pu) return;
  m->bound_pu = p->pu;
  if (p->mask.bind_this_thread() == 0) return;
  // A PU the kernel will not run this thread on (outside the cpuset, a synthetic topology): the M runs unbound.
  const int err = errno;
  process_mask_.bind_this_thread();
  if (!bind_warned_.exchange(true))
    std::fprintf(stderr,
                 "tern: cannot bind a scheduler thread to processing unit %d (%s); threads that cannot be bound run "
                 "unbound (--numa none / TERN_NUMA=none pins nothing)\n",
                 p->pu, std::strerror(err));
}

void Sched::unbind_m(M* m) {
  if (!pin_ || m->bound_pu == M::kUnbound) return;
  m->bound_pu = M::kUnbound;
  process_mask_.bind_this_thread();
}

void Sched::place(P* p) {
  if (const PlacementSlot* sl = slot(p->id)) {
    p->pu = sl->pu;
    p->node = sl->node;
    p->mask = CpuMask::one(sl->pu);
  }
}

// Blocks an M that holds no P until it gets one (returns with m->p set) or the runtime shuts down. The first idle M
// takes the poller role and waits in the poller until the earliest timer; the others sleep on their note.
void Sched::idle_without_p(M* m) {
  for (;;) {
    if (shutting_down_.load(std::memory_order_acquire)) return;
    bool expected = false;
    if (polling_.compare_exchange_strong(expected, true)) {
      // Work this M could run if it had a P: take the P rather than poll. (Queued work on busy Ps is theirs; polling
      // with a zero timeout because of it would spin this M while every P is busy.)
      if (npidle_.load() > 0 && (!global_->empty() || any_local_work() || timers_due())) {
        if (acquire_idle_p(m, release_poller_role())) {
          handoff_poller_role();
          return;
        }
        continue;
      }
      if (npidle_.load() == 0) {
        // Every P is busy: they poll without blocking whenever their queues run dry (and the monitor does if none has
        // for 10 ms), and each checks its timers. A blocked poller here would only wake on every event, find no P,
        // and hand the fibers to the global queue: two context switches per event for nothing. Sleep instead; the M
        // whose P goes idle next takes the poller role.
        if (release_poller_role()) {
          // wakep() claimed this M for an idle P, and there is none now: whoever took it runs the work.
          drop_spinning();
          continue;
        }
        if (npidle_.load() > 0) continue;  // a P went idle meanwhile; its M may have seen polling_ set
        park_idle_m(m);
        if (m->p != nullptr || shutting_down_.load(std::memory_order_acquire)) return;
        continue;
      }
      int64_t until = earliest_timer();
      int64_t timeout = -1;
      if (until != 0) timeout = std::max<int64_t>(0, until - now_ns());
      poll_until_.store(until == 0 ? INT64_MAX : until);
      GList list;
      poll_calls_.fetch_add(1, std::memory_order_relaxed);
      poller_->poll(timeout, list);
      poll_until_.store(0);
      if (!list.empty()) trace(TraceKind::kPoll, list.size, 0, 0, 1);
      const bool claimed = release_poller_role();
      last_poll_.store(now_ns(), std::memory_order_relaxed);
      if (claimed || !list.empty() || (npidle_.load() > 0 && (!global_->empty() || any_local_work() || timers_due()))) {
        if (acquire_idle_p(m, claimed)) {
          if (!list.empty()) bump(m->p->counters.polls);
          inject(list, m->p);
          handoff_poller_role();
          return;
        }
        // Every P was busy a moment ago: their Ms find the harvest in the global queue, unless one ran dry meanwhile.
        point(SchedPoint::kReadiedWithoutP);
        inject_global(list);
      }
      continue;
    }
    park_idle_m(m);
    if (m->p != nullptr) return;
    // Woken without a P: for shutdown.
  }
}

// A broken scheduler invariant, not a condition to survive: continuing would strand threads and their processors.
void Sched::idle_list_corrupt(const M* m) {
  std::fprintf(
      stderr, "tern: fatal: scheduler thread %d parked while already on the idle list (a wakeup taken twice)\n", m->id);
  std::fflush(stderr);
  std::abort();
}

// Sleeps on the M's note in the idle list until startm() hands it a P (then m->p is set) or it is woken without one
// (for shutdown). Where the poller can (Poller::park), the M sleeps in it instead, so that the completions of I/O it
// submitted wake it with their fibers: it then takes an idle P and runs them itself, rather than run their completion
// work in the kernel, sleep again, and leave them to the poller M (a second wakeup) and to whichever M that one starts
// for them (a third).
void Sched::park_idle_m(M* m) {
  {
    std::lock_guard lk(sched_mu_);
    if (shutting_down_.load(std::memory_order_relaxed)) return;
    // An M is on the list only while it parks here: pushed a second time, it would link to itself or cut the list
    // after it, and the Ms beyond would never be woken, not even by a shutdown that waits for them.
    if (m->in_idle_list) idle_list_corrupt(m);
    m->in_idle_list = true;
    m->link = midle_;
    midle_ = m;
  }
  poller_->thread_parked(true);
  GList ready;
  for (;;) {
    if (!poller_->park(m->note.word(), ready)) {
      m->note.sleep();
      break;
    }
    if (m->note.try_consume()) break;
    if (ready.empty()) continue;
    park_io_wakes_.fetch_add(1, std::memory_order_relaxed);
    if (leave_idle_list(m)) {
      park_io_takes_.fetch_add(1, std::memory_order_relaxed);
      break;
    }
    // Every P is busy (their Ms find these in the global queue), or startm() is handing this M one right now.
    point(SchedPoint::kReadiedWithoutP);
    inject_global(ready);
  }
  poller_->thread_parked(false);
  if (m->nextp != nullptr) {
    P* p = m->nextp;
    m->nextp = nullptr;
    acquirep(m, p);
    m->spinning = m->next_spinning;
  }
  if (ready.empty()) return;
  if (m->p != nullptr) {
    bump(m->p->counters.polls);
    inject(ready, m->p);
    return;
  }
  ready_list(ready);  // woken without a P (shutdown)
}

// A parked M woken by its own completions takes itself out of the idle list with an idle P (not spinning: it has
// work). False if no P is idle, or if startm() already took it from the list (its P and wakeup are on the way).
bool Sched::leave_idle_list(M* m) {
  std::unique_lock lk(sched_mu_);
  if (shutting_down_.load(std::memory_order_relaxed) || pidle_ == nullptr) return false;
  M** link = &midle_;
  while (*link != nullptr && *link != m) link = &(*link)->link;
  if (*link == nullptr) return false;
  *link = m->link;
  m->link = nullptr;
  m->in_idle_list = false;
  acquirep(m, pidleget());
  m->spinning = false;
  lk.unlock();
  wake_monitor();
  return true;
}

// The poller M got a P and leaves the role. If a P is still idle and timers or I/O waiters remain, start an M with
// that P (wakep): spinning, it runs what the poller just readied, or gives the P back and takes the poller role. Waking
// an M without a P for the role instead (the earlier way) made the ready() that follows start a third M for the idle
// P, and Ms rotating through parks: an M parked with receives armed is woken for each of their completions.
void Sched::handoff_poller_role() {
  if (npidle_.load() == 0) return;  // all busy: nobody needs to block in the poller (see idle_without_p)
  if (earliest_timer() == 0 && !poller_->has_waiters()) return;
  wakep();
}

}  // namespace tern::sched
