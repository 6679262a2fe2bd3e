// scheduler/blocking.cc: tern::blocking's side of the scheduler (Go's entersyscall/exitsyscall and sysmon's retake).
//
// A fiber about to call something that may block its thread (a file read, fsync, a database client, getaddrinfo)
// runs it inside tern::blocking. Entering costs a few stores: the M keeps its P reserved (status kBlocking, blocked_m
// = the M) but no longer runs fibers on it, and forgets it (m->p = nullptr, so whatever the call does to the
// scheduler, a tern::go say, goes where a plain thread's would). Leaving costs one compare-and-swap when the call was
// short: the M swaps blocked_m back from itself to nullptr and has its P again. When the call outlasts kRetakeNs and a
// look of the monitor, the monitor swaps blocked_m instead and hands the P to another M (handoffp), so the fibers
// queued on it run meanwhile. The M coming back then takes its old P if that went idle, else any idle P, else queues
// its fiber on the global queue and goes idle itself (MAction::kBlockedNoP, execute).
//
// Ownership is decided by that one swap on blocked_m: an M identity cannot recur while that M is still inside the
// call, so neither side can mistake a later call (of the P's next holder) for the one it saw.
#include <cstdio>

#include "scheduler/global_queue.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/poller.h"
#include "scheduler/sched.h"
#include "scheduler/sched_internal.h"

namespace tern::sched {

void blocking_misuse(const char* what) {
  std::fprintf(stderr,
               "tern: fatal: a fiber inside tern::blocking %s. The function given to tern::blocking runs on a thread "
               "that has let go of its processor; it may call anything that blocks the thread, but nothing that "
               "parks a fiber. Do the waiting outside the call, or run the function on its own fiber.\n",
               what);
  std::fflush(stderr);
  std::abort();
}

BlockingSection::BlockingSection() {
  M* m = this_m();
  if (m == nullptr || m->curg == nullptr || m->p == nullptr) return;  // a plain thread, or nested
  m_ = m;
  m->sched->enter_blocking(m);
}

BlockingSection::~BlockingSection() {
  if (m_ != nullptr) m_->sched->exit_blocking(m_);  // the same thread: the call ran on it
}

void Sched::enter_blocking(M* m) {
  P* p = m->p;
  bump(p->counters.blocking);
  p->blocking_calls.store(p->blocking_calls.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  m->blocking_p.store(p, std::memory_order_relaxed);
  p->status.store(PStatus::kBlocking, std::memory_order_relaxed);
  p->blocked_m.store(m, std::memory_order_release);  // publishes the P's state to whoever swaps it next
  m->p = nullptr;
  // Without a P the M is unbound (SchedOptions::placement): the P may go to another M, bound to the same PU, while
  // this thread still has the call to finish.
  if (pin_) [[unlikely]]
    unbind_m(m);
  // A monitor on its 10 ms period would leave the P reserved that long (and the requests that arrive meanwhile
  // unread). It keeps looking every kRetakePeriodNs for kMonitorPeriodNs after it last saw a call start, so only the
  // first call after a quiet spell pays for waking it (a futex wake, about a microsecond).
  if (!monitor_fast_.load(std::memory_order_relaxed)) {
    monitor_fast_.store(true, std::memory_order_relaxed);
    monitor_note_.wakeup();
  }
}

void Sched::exit_blocking(M* m) {
  P* p = m->blocking_p.load(std::memory_order_relaxed);
  m->blocking_p.store(nullptr, std::memory_order_relaxed);
  M* expected = m;
  if (p->blocked_m.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel)) {
    p->status.store(PStatus::kRunning, std::memory_order_relaxed);
    m->p = p;
    if (pin_) [[unlikely]]
      bind_m(m, p);
    return;
  }
  exit_blocking_slow(m, p);
}

// The monitor handed `old` on while the call ran. Another P, or none.
void Sched::exit_blocking_slow(M* m, P* old) {
  if (P* p = take_idle_p_prefer(old)) {
    acquirep(m, p);
    p->running_g.store(m->curg->id, std::memory_order_relaxed);
    return;
  }
  // No P for this fiber: it waits in the global queue, and this M joins the idle ones (execute does both once the
  // fiber has switched out). Returns when some M runs the fiber again.
  leave_to_g0(m, MAction::kBlockedNoP);
}

// An idle P, `want` if it is one of them (a fiber back from a blocking call returns to its old P when it can: its
// caches and timers are there).
P* Sched::take_idle_p_prefer(P* want) {
  P* p = nullptr;
  {
    std::lock_guard lk(sched_mu_);
    if (want->status.load(std::memory_order_relaxed) == PStatus::kIdle && want->id < nprocs_.load()) {
      for (P** link = &pidle_; *link != nullptr; link = &(*link)->link) {
        if (*link == want) {
          *link = want->link;
          want->link = nullptr;
          want->status.store(PStatus::kRunning, std::memory_order_relaxed);
          npidle_.fetch_sub(1);
          p = want;
          break;
        }
      }
    }
    if (p == nullptr) p = pidleget();
  }
  if (p != nullptr) wake_monitor();
  return p;
}

// Monitor thread. A call seen with the same count at two looks kRetakeNs apart has lasted at least that long: its P
// goes to another M. Returns whether any call started or was in progress since the last look (the monitor then keeps
// looking every kRetakePeriodNs).
bool Sched::retake_blocked() {
  bool pending = false;
  const int n = scan_bound();
  const int64_t now = now_ns();
  for (int i = 0; i < n; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    const uint64_t call = p->blocking_calls.load(std::memory_order_relaxed);
    if (call != p->retake_calls) {
      p->retake_calls = call;
      pending = true;
    }
    if (p->status.load(std::memory_order_relaxed) != PStatus::kBlocking) continue;
    M* bm = p->blocked_m.load(std::memory_order_acquire);
    if (bm == nullptr) continue;
    if (call != p->retake_seen) {
      p->retake_seen = call;
      p->retake_since = now;
      pending = true;
      continue;
    }
    if (now - p->retake_since < kRetakeNs) {
      pending = true;
      continue;
    }
    if (!p->blocked_m.compare_exchange_strong(bm, nullptr, std::memory_order_acq_rel)) continue;  // it came back
    // The P is the monitor's now: close the blocked M's busy span, as releasep would have.
    const int64_t since = p->busy_since.exchange(0, std::memory_order_relaxed);
    if (since != 0) bump(p->counters.busy_ns, static_cast<uint64_t>(std::max<int64_t>(0, now - since)));
    p->m = nullptr;
    p->m_id.store(-1, std::memory_order_relaxed);
    p->running_g.store(0, std::memory_order_relaxed);
    p->status.store(PStatus::kRunning, std::memory_order_relaxed);  // held, by nobody yet
    retakes_.fetch_add(1, std::memory_order_relaxed);
    handoffp(p);
  }
  return pending;
}

// A P no M holds (Go's handoffp): to a new or idle M when anything may be waiting for it: its own queues or timers,
// the global queue, or the network with nobody polling it (that M finds nothing, gives the P back and takes the
// poller role). Otherwise to the idle list, where wakep() finds it for the next work that arrives.
void Sched::handoffp(P* p) {
  // A P beyond procs() (a shrink while the call ran) goes to an M all the same: find_runnable retires it there.
  const bool work = p->id >= nprocs_.load(std::memory_order_acquire) || !p->runq.empty() || !p->ioq.empty() ||
                    p->runnext.load(std::memory_order_relaxed) != nullptr ||
                    p->timer0.load(std::memory_order_relaxed) != 0 || !global_->empty() ||
                    (poller_->has_waiters() && !polling_.load());
  if (work) {
    startm(p, false);
    return;
  }
  {
    std::lock_guard lk(sched_mu_);
    pidleput(p);
  }
  // Work published before the P went idle saw no idle P and woke nobody: look once more (the idle protocol's rule 2).
  if (!p->runq.empty() || !global_->empty()) wakep();
}

}  // namespace tern::sched
