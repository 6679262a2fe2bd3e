// scheduler/stall.cc: the stall detector (SchedOptions::stall_ns, TERN_STALL_MS). Seastar reports a reactor task
// that runs past its budget with a backtrace; tern does the same for a fiber that holds its processor too long.
//
// The monitor already notes, per P, since when its switch count has not moved (monitor_since): a fiber running that
// long has not yielded. Past stall_ns, once per run, it asks the M's thread for its frames: it writes the fiber's id
// to M::stall_want and sends the thread SIGURG; the handler, on that thread and so on the fiber's own stack, records
// the return addresses with backtrace() into M::stall_frames, if the fiber running is still that one, and publishes
// their count. The monitor waits for them a little (kStallAnswerNs) and hands the report to SchedOptions::on_stall,
// which the runtime symbolizes and prints. Names are looked up there, not in the handler: only backtrace() runs in
// signal context, and it is called once at installation so that its lazy loading of libgcc_s does not happen there.
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <mutex>

#include "scheduler/g.h"
#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/sched.h"

namespace tern::sched {
namespace {

constexpr int kStallSignal = SIGURG;  // ignored by default (a stray one harms nobody); Go preempts with it too
constexpr int64_t kStallAnswerNs = 50'000'000;

struct sigaction g_previous_urg;

void on_stall_signal(int sig, siginfo_t* info, void* uctx) {
  M* m = this_m();
  const uint64_t want = m != nullptr ? m->stall_want.load(std::memory_order_acquire) : 0;
  if (want == 0) {
    // Not ours: whatever handled SIGURG before tern does.
    if ((g_previous_urg.sa_flags & SA_SIGINFO) != 0 && g_previous_urg.sa_sigaction != nullptr) {
      g_previous_urg.sa_sigaction(sig, info, uctx);
    } else if (g_previous_urg.sa_handler != SIG_DFL && g_previous_urg.sa_handler != SIG_IGN &&
               g_previous_urg.sa_handler != nullptr) {
      g_previous_urg.sa_handler(sig);
    }
    return;
  }
  m->stall_want.store(0, std::memory_order_relaxed);
  int n = 0;
  if (m->curg != nullptr && m->curg->id == want) {
    void* frames[M::kStallFrames + 2];
    const int got = backtrace(frames, M::kStallFrames + 2);
    // The first two are this handler and the kernel's signal trampoline.
    for (int i = 2; i < got; i++) m->stall_frames[n++] = frames[i];
  }
  m->stall_n.store(n, std::memory_order_release);
}

void install_stall_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* prime[1];
    backtrace(prime, 1);  // loads libgcc_s now, outside any signal handler
    struct sigaction sa {};
    sa.sa_sigaction = on_stall_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(kStallSignal, &sa, &g_previous_urg);
  });
}

}  // namespace

void Sched::check_stalls(int64_t now) {
  install_stall_handler();
  const int n = scan_bound();
  for (int i = 0; i < n; i++) {
    P* p = allp_[i].load(std::memory_order_acquire);
    if (p->status.load(std::memory_order_relaxed) != PStatus::kRunning) continue;
    const uint64_t fiber = p->running_g.load(std::memory_order_relaxed);
    const uint64_t switches = p->counters.switches.load(std::memory_order_relaxed);
    if (fiber == 0 || switches != p->monitor_tick.load(std::memory_order_relaxed)) continue;
    const int64_t ran = now - p->monitor_since.load(std::memory_order_relaxed);
    if (ran < opts_.stall_ns || p->stall_reported == switches + 1) continue;
    p->stall_reported = switches + 1;
    const int mid = p->m_id.load(std::memory_order_relaxed);
    M* m = nullptr;
    {
      std::lock_guard lk(sched_mu_);
      for (M* x : allm_) {
        if (x->id == mid && x->pthread.load(std::memory_order_acquire) != 0) m = x;
      }
      if (m != nullptr) {
        m->stall_n.store(-1, std::memory_order_relaxed);
        m->stall_want.store(fiber, std::memory_order_release);
        if (pthread_kill(m->pthread.load(std::memory_order_relaxed), kStallSignal) != 0) m = nullptr;
      }
    }
    StallReport r;
    r.fiber = fiber;
    r.p = p->id;
    r.m = mid;
    r.ran_ns = ran;
    r.threshold_ns = opts_.stall_ns;
    if (m != nullptr) {
      // Ms live until the Sched is destroyed, and the monitor is stopped first: m stays valid while we wait.
      const int64_t until = now_ns() + kStallAnswerNs;
      while (m->stall_n.load(std::memory_order_acquire) < 0 && now_ns() < until) monitor_note_.sleep(1'000'000);
      const int got = m->stall_n.load(std::memory_order_acquire);
      if (got > 0) {
        r.frames = m->stall_frames;
        r.nframes = std::min(got, M::kStallFrames);
      }
      m->stall_want.store(0, std::memory_order_relaxed);
    }
    stalls_.fetch_add(1, std::memory_order_relaxed);
    if (opts_.on_stall) opts_.on_stall(r);
  }
}

}  // namespace tern::sched
