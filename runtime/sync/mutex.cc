// runtime/sync/mutex.cc: Mutex: the slow paths (spinning, queueing, starvation mode, handoff).
#include "runtime/sync/mutex.h"

#include "runtime/metrics/runtime_metrics.h"
#include "scheduler/sched.h"

namespace tern {
namespace {

// Tries of try_lock() before queueing, when the holder may be running on another core: a critical section is often
// shorter than a park and wake. Go spins 4 times with 30 pauses each for the same reason.
constexpr int kSpinTries = 4;
constexpr int kSpinPauses = 30;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spinning helps only if the holder can run meanwhile: never on a runtime with one P, where the holder waits for this
// very P.
bool may_spin() {
  sched::Sched* s = sched::Sched::current();
  return s == nullptr || s->procs() > 1;
}

}  // namespace

void Mutex::lock_slow() {
  if (may_spin()) {
    for (int i = 0; i < kSpinTries; i++) {
      // Starvation mode promises the lock to a waiter: spinning for it is futile.
      if ((state_.load(std::memory_order_relaxed) & kStarving) != 0) break;
      for (int j = 0; j < kSpinPauses; j++) cpu_relax();
      if (try_lock()) return;
    }
  }
  Node n;
  n.since = sched::now_ns();
  // tern_mutex_wait_seconds_total: the time from here to the return, counted only if the fiber had to wait.
  struct WaitTime {
    const Node& n;
    bool waited = false;
    ~WaitTime() {
      if (waited) metrics::mutex_wait_ns().inc(static_cast<uint64_t>(std::max<int64_t>(0, sched::now_ns() - n.since)));
    }
  } wait_time{n};
  bool woken = false;
  std::unique_lock lk(mu_);
  for (;;) {
    // Holding mu_ while the lock is held freezes every bit but kLocked, so a failed CAS means the lock was released.
    uint32_t s = state_.load(std::memory_order_relaxed);
    uint32_t clear = woken ? kWoken : 0;
    for (;;) {
      // A free lock may be taken unless starvation mode reserves it, and the reservation is for a woken waiter.
      bool free = (s & kLocked) == 0 && ((s & kStarving) == 0 || woken);
      if (free) {
        if (state_.compare_exchange_weak(s, (s | kLocked) & ~clear, std::memory_order_acquire,
                                         std::memory_order_relaxed)) {
          return;
        }
        continue;
      }
      if (state_.compare_exchange_weak(s, (s | kWaiters) & ~clear, std::memory_order_relaxed)) break;
    }
    // A waiter that already waited keeps its place at the front, so that its age counts towards starvation mode.
    if (woken) {
      q_.push_front(&n);
    } else {
      q_.push_back(&n);
    }
    Waiter w;
    n.waiter = &w;
    n.handoff = false;
    lk.unlock();
    wait_time.waited = true;
    w.wait(sched::WaitReason::kMutex);
    if (n.handoff) return;
    woken = true;
    lk.lock();
  }
}

void Mutex::unlock_slow() {
  std::unique_lock lk(mu_);
  for (;;) {
    // While kLocked is set, state_ changes only under mu_, which we hold: plain stores are safe until we drop kLocked.
    uint32_t s = state_.load(std::memory_order_relaxed);
    int64_t now = sched::now_ns();
    Node* head = q_.front();
    if (head != nullptr && ((s & kStarving) != 0 || now - head->since >= kMutexStarvationNs)) {
      q_.pop_front();
      head->handoff = true;
      uint32_t next = kLocked | (s & kWoken);
      if (!q_.empty()) {
        next |= kWaiters;
        // Go's rule: leave starvation mode once a waiter got the lock without having starved.
        if (now - head->since >= kMutexStarvationNs) next |= kStarving;
      }
      state_.store(next, std::memory_order_relaxed);
      Waiter* w = head->waiter;
      lk.unlock();
      w->notify();  // publishes the handoff; the waiter cannot time out, so it is still there
      return;
    }
    // The two paths below free the lock while still holding mu_. That is safe only because a waiter they leave woken
    // (kWoken) is still inside lock() and must take mu_ before it can return: nobody can own the Mutex, let alone
    // destroy it, until mu_'s release, and a released glibc mutex is not touched again (std::mutex's own promise).
    if ((s & kWoken) != 0) {
      // A woken waiter is on its way; if it has starved meanwhile, the lock stays reserved for it.
      uint32_t next = s & ~(kLocked | kStarving);
      if (now - woken_since_ >= kMutexStarvationNs) next |= kStarving;
      state_.store(next, std::memory_order_release);
      return;
    }
    if (head == nullptr) {
      // Nobody waits and nobody is on the way, so once the lock is free a newcomer may take it, release it and
      // destroy the Mutex, which std::mutex allows: freeing it must be this unlock's last touch of *this, after mu_'s
      // release. Drop the bits a starving waiter leaves behind (kStarving, when it took the lock reserved for it) while
      // the lock is still ours, release mu_, and free the lock in one CAS. Meanwhile lock_slow may queue a waiter
      // (setting kWaiters under mu_): the CAS then fails, and we go round again to wake it.
      if (s != kLocked) state_.store(kLocked, std::memory_order_relaxed);
      lk.unlock();
      uint32_t locked = kLocked;
      if (state_.compare_exchange_strong(locked, 0, std::memory_order_release, std::memory_order_relaxed)) return;
      lk.lock();
      continue;
    }
    q_.pop_front();
    woken_since_ = head->since;
    uint32_t next = (q_.empty() ? 0 : kWaiters) | kWoken;
    state_.store(next, std::memory_order_release);
    Waiter* w = head->waiter;
    lk.unlock();
    w->notify();
    return;
  }
}

}  // namespace tern
