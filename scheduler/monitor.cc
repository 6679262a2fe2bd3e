// scheduler/monitor.cc: the monitor thread (Go's sysmon duties tern has so far): notice a fiber holding a P while
// others wait, poll the network when nobody has for 10 ms, retry a failed thread start, trim the stack pool.
#include "scheduler/sched.h"

#include <algorithm>

#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/poller.h"
#include "scheduler/proc_local.h"

namespace tern::sched {

void Sched::monitor_main() {
  int64_t next_round = 0;  // when the 10 ms duties are next due
  int64_t fast_until = 0;  // looking every kRetakePeriodNs until then (tern::blocking calls were seen)
  for (;;) {
    if (shutting_down_.load(std::memory_order_acquire)) return;
    int n = nprocs_.load(std::memory_order_acquire);
    if (int64_t at = thread_retry_at_.load(); at != 0) {
      // A thread failed to start: with all Ps idle because of it, queued work has nobody else to start an M.
      const int64_t left = at - now_ns();
      if (left > 0) monitor_note_.sleep(std::min(left, kMonitorPeriodNs));
      if (shutting_down_.load(std::memory_order_acquire)) return;
      retry_thread_start();
      if (npidle_.load() >= n && !poller_->has_waiters()) continue;
    } else if (npidle_.load() >= n && !poller_->has_waiters()) {
      // All idle: sleep until a P goes busy (take_idle_p wakes us), so an idle runtime costs nothing here.
      monitor_sleeping_.store(true);
      if (npidle_.load() >= n && thread_retry_at_.load() == 0) monitor_note_.sleep();
      monitor_sleeping_.store(false);
      continue;
    }
    // While tern::blocking calls are in progress, look every kRetakePeriodNs for one to hand its P on; the rest of the
    // duties keep their period.
    int64_t wait = kMonitorPeriodNs;
    if (monitor_fast_.load(std::memory_order_relaxed)) wait = kRetakePeriodNs;
    if (const int64_t left = next_round - now_ns(); left > 0) wait = std::min(wait, left);
    monitor_note_.sleep(wait);
    if (shutting_down_.load(std::memory_order_acquire)) return;
    if (retake_blocked()) fast_until = now_ns() + kMonitorPeriodNs;
    monitor_fast_.store(now_ns() < fast_until, std::memory_order_relaxed);
    // The poller's look at threads that hold its work (io_uring's deferred rings): every look while tern::blocking
    // calls run, since an M inside one holds its ring's completion work; else once a period, below.
    const bool fast = monitor_fast_.load(std::memory_order_relaxed);
    if (fast) poller_->monitor_tick(now_ns());
    if (now_ns() < next_round) continue;
    next_round = now_ns() + kMonitorPeriodNs;
    refresh_coarse_clock(now_ns());  // the fiber dump's clock (g.h): at most a period behind while a P is busy
    ticks_recalibrate();             // the latency samples' tick factor (ticks.h), over a longer span each time
    retry_thread_start();
    n = scan_bound();  // a retiring P still held by a long fiber counts: its queue is stuck behind it
    bool stuck_work = false;
    for (int i = 0; i < n; i++) {
      P* p = allp_[i].load(std::memory_order_acquire);
      if (p->status.load(std::memory_order_relaxed) != PStatus::kRunning) continue;
      uint64_t tick = p->counters.switches.load(std::memory_order_relaxed);
      if (tick == p->monitor_tick.load(std::memory_order_relaxed)) {
        // One fiber held this P for a whole period: its next preempt_point() yields. Work queued behind it (fibers or
        // due timers) needs another M meanwhile.
        if (!p->preempt.exchange(true, std::memory_order_relaxed)) g_preempt_marks.fetch_add(1);
        int64_t t0 = p->timer0.load(std::memory_order_relaxed);
        if (!p->runq.empty() || !p->ioq.empty() || p->runnext.load(std::memory_order_relaxed) != nullptr ||
            (t0 != 0 && t0 <= now_ns())) {
          long_running_.fetch_add(1, std::memory_order_relaxed);
          stuck_work = true;
        }
      } else {
        p->monitor_tick.store(tick, std::memory_order_relaxed);
        p->monitor_since.store(now_ns(), std::memory_order_relaxed);
      }
    }
    if (stuck_work) wakep();
    if (opts_.stall_ns > 0) check_stalls(now_ns());
    if (!fast) poller_->monitor_tick(now_ns());
    if (poller_->has_waiters() && !polling_.load() &&
        now_ns() - last_poll_.load(std::memory_order_relaxed) > kMonitorPeriodNs) {
      GList list;
      poll_calls_.fetch_add(1, std::memory_order_relaxed);
      if (poller_->poll(0, list) > 0) {
        last_poll_.store(now_ns(), std::memory_order_relaxed);
        trace(TraceKind::kPoll, list.size);
        ready_list(list);
      }
    }
    if (int64_t now = now_ns(); now - last_trim_ >= kStackTrimPeriodNs) {
      last_trim_ = now;
      for (auto& pool : stacks_) pool->trim();
    }
    maybe_run_proc_cycle(now_ns());  // tern::Pool's victim caches age (scheduler/proc_local.h)
  }
}

}  // namespace tern::sched
