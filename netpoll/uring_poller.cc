// netpoll/uring_poller.cc: the io_uring backend's core: readiness waits, cancel, reaping, poll/wake, park in the ring.
#include "netpoll/uring_poller.h"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "netpoll/uring_internal.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern::netpoll {

using uring_detail::handoff_acquire;
using uring_detail::kKickData;
using uring_detail::kMaxUnreadChunks;
using uring_detail::kParkData;
using uring_detail::kReapBudget;
using uring_detail::kResubmit;
using uring_detail::kTagMask;
using uring_detail::kTagOp;
using uring_detail::kTagRecv;
using uring_detail::kWakeData;
using uring_detail::prep_futex_wait;
using uring_detail::this_thread_ring;
using uring_detail::ThreadRing;

int UringPoller::wait_ready(int fd, short events, int64_t deadline_ns, sched::WaitReason why) {
  for (;;) {
    int res = run_until(deadline_ns, why, [&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, events); });
    if (res != kResubmit) return res;
  }
}

void UringPoller::cancel(Ring* r, uint64_t user_data) {
  if (r->deferred() && own_ring() != r) {
    // Only the owner may cancel on a deferred ring: it makes the cancellation at its next reap, which the ring
    // message makes come soon wherever it sleeps. The caller waits for the final completion as before.
    r->queue_cancel(user_data);
    kick(r);
    return;
  }
  io_uring_sync_cancel_reg reg{};
  reg.addr = user_data;
  reg.fd = -1;
  // A zero timeout: the kernel starts the cancellation and returns rather than wait for it (-ETIME, or -EALREADY when
  // the operation is running in an io-wq worker). Callers wait for the final completion, if at all, by parking the
  // fiber; a wait in the kernel here would block an M that holds a P, for as long as the submitting thread takes to
  // run the cancellation's task work (it may be blocked in the kernel itself).
  reg.timeout.tv_sec = 0;
  reg.timeout.tv_nsec = 0;
  int rc;
  do {
    rc = io_uring_register_sync_cancel(r->uring(), &reg);
  } while (rc == -EINTR);
  // -ENOENT: it completed first; its completion is posted or reaped already.
}

Ring* UringPoller::own_ring() {
  ThreadRing* tr = this_thread_ring();
  return tr->poller_id == id_ ? tr->ring.get() : nullptr;
}

void UringPoller::kick(Ring* r) {
  // From this thread's ring if it has one (its owner is the only submitter there), else from the shared ring. Never
  // reaping here: the caller may hold another ring's cq_mu (the reaper's throttle).
  Ring* src = own_ring();
  if (src == nullptr) src = shared_.get();
  std::unique_lock<std::mutex> sq_lock;
  if (src->shared()) sq_lock = std::unique_lock(src->sq_mu);
  io_uring* u = src->uring();
  io_uring_sqe* sqe;
  while ((sqe = io_uring_get_sqe(u)) == nullptr) io_uring_submit(u);
  io_uring_prep_msg_ring(sqe, r->uring()->ring_fd, 0, kKickData, 0);
  io_uring_sqe_set_data64(sqe, kKickData);  // the sender's own completion, ignored like the message
  int rc;
  do {
    rc = io_uring_submit(u);
  } while (rc == -EINTR || rc == -EAGAIN);
  kicks_.fetch_add(1, std::memory_order_relaxed);
}

void UringPoller::owner_work(Ring* r) {
  for (uint64_t ud : r->take_cancels()) cancel(r, ud);
  if (r->work_pending()) {
    io_uring_get_events(r->uring());
    r->work_runs.fetch_add(1, std::memory_order_relaxed);
  }
}

void UringPoller::monitor_tick(int64_t now_ns) {
  if (!defer_) return;
  const int count = nrings_.load(std::memory_order_acquire);
  for (int i = 0; i < count; i++) {
    Ring* r = rings_[i].load(std::memory_order_acquire);
    if (!r->deferred()) continue;
    // Work waiting since an earlier look, at least kNudgeAfterNs ago, with no run of it since: the owner has not
    // entered its ring. An owner asleep in its ring is woken by the work itself, and a busy one runs it at its next
    // poll; one inside a blocking call or one long fiber does not.
    const uint64_t runs = r->work_runs.load(std::memory_order_relaxed);
    if (!r->work_pending() || runs != r->monitor_runs) {
      r->monitor_runs = runs;
      r->monitor_since = r->work_pending() ? now_ns : 0;
      continue;
    }
    if (r->monitor_since == 0) {
      r->monitor_since = now_ns;
      continue;
    }
    if (now_ns - r->monitor_since < kNudgeAfterNs) continue;
    r->monitor_since = now_ns;  // at most one nudge a kNudgeAfterNs while it stays so
    const int tid = r->owner_tid.load(std::memory_order_relaxed);
    if (tid != 0 && ::syscall(SYS_tgkill, ::getpid(), tid, uring_detail::kNudgeSignal) == 0)
      nudges_.fetch_add(1, std::memory_order_relaxed);
  }
}

size_t UringPoller::reap(Ring* r, sched::GList& out, size_t budget) {
  // The owner sleeps in this ring (park()): what is posted here ends its sleep, and it reaps that itself.
  if (r->owner_in_park) return 0;
  io_uring* u = r->uring();
  // A deferred ring posts nothing until its owner runs its completion work; only the owner can.
  if (r->deferred() && own_ring() == r) owner_work(r);
  size_t readied = 0;
  for (;;) {
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(u, head, cqe) {
      readied += complete(r, cqe, out);
      seen++;
      if (readied >= budget) break;
    }
    if (seen > 0) {
      io_uring_cq_advance(u, seen);
      if (readied >= budget) return readied;
      continue;
    }
    // Completions the CQ had no room for wait in the kernel's overflow list until a GETEVENTS enter flushes them.
    if (!io_uring_cq_has_overflow(u)) break;
    io_uring_get_events(u);
    if (io_uring_cq_ready(u) == 0) break;
  }
  return readied;
}

void UringPoller::reap_ready(Ring* r, size_t budget) {
  sched::GList ready;
  {
    std::lock_guard lk(r->cq_mu);
    if (reap(r, ready, budget) >= budget && r->cq_pending()) wake();
  }
  if (!ready.empty()) sched::ready_list(ready);
}

size_t UringPoller::complete(Ring* r, const io_uring_cqe* cqe, sched::GList& out) {
  uint64_t ud = cqe->user_data;
  int res = cqe->res;
  sched::G* g = nullptr;
  if (ud == kParkData) {
    r->park_armed.store(false, std::memory_order_relaxed);
    return 0;
  }
  if (ud == kKickData) return 0;  // a ring message (kick) or its sender's completion: it woke the owner, its purpose
  if (ud == kWakeData) {
    // The eventfd poll of a deferred ring's owner asleep as the blocking poller (poll_in_own_ring) fired, or was
    // cancelled (its thread exited: then the count stays for the next poller).
    r->efd_armed = false;
    if (res > 0) {
      uint64_t v;
      ssize_t n = ::read(efd_, &v, sizeof v);
      (void)n;  // EAGAIN: another reader took it; either way the poll is over
      wake_pending_.store(false, std::memory_order_release);
    }
    return 0;
  }
  handoff_acquire(ud);
  if ((ud & kTagMask) == kTagRecv) {
    auto* d = reinterpret_cast<UringDesc*>(ud & ~kTagMask);
    RecvState& rs = d->recv;
    bool throttle = false;
    {
      std::lock_guard lk(rs.mu);
      if (cqe->flags & IORING_CQE_F_BUFFER) {
        const Ring::Piece p = r->delivered(cqe->flags, res);
        if (p.data) rs.chunks.push_back({r, p.bid, p.start, static_cast<uint32_t>(res), 0});
      }
      if (res == 0) {
        rs.eof = true;
      } else if (res == -ENOBUFS) {
        rs.nobufs = true;
        buffer_misses_.fetch_add(1, std::memory_order_relaxed);
        r->out_of_buffers();
      } else if (res == -EINVAL) {
        // The kernel takes RECV but not multishot: every read goes the one-shot way from now on.
        multishot_recv_.store(false, std::memory_order_relaxed);
        rs.nobufs = true;
      } else if (res < 0 && res != -ECANCELED && rs.error == 0) {
        // ECANCELED: throttled, closed, or its submitting thread exited; the next read re-arms.
        rs.error = -res;
      }
      if ((cqe->flags & IORING_CQE_F_MORE) == 0) {
        rs.armed = false;
      } else if (rs.chunks.size() - rs.head >= kMaxUnreadChunks && !rs.throttled) {
        rs.throttled = throttle = true;
      }
      g = rs.slot.notify();
      // The reader copies out of the first unread buffer as soon as it runs; it is in the cache of the CPU that ran
      // the receive's completion work, or nowhere.
      if (g != nullptr && rs.head < rs.chunks.size()) {
        const Chunk& c = rs.chunks[rs.head];
        g->prefetch_read.store(c.ring->buffer(c.bid) + c.start + c.off, std::memory_order_relaxed);
      }
    }
    if (throttle) {
      recv_throttles_.fetch_add(1, std::memory_order_relaxed);
      cancel(r, ud);
    }
  } else if ((ud & kTagMask) == kTagOp) {
    auto* op = reinterpret_cast<Op*>(ud & ~kTagMask);
    if (cqe->flags & IORING_CQE_F_BUFFER) {
      const Ring::Piece p = r->delivered(cqe->flags, res);
      if (p.data) {
        std::memcpy(op->copy_to, r->buffer(p.bid) + p.start, static_cast<size_t>(res));
        r->recycle(p.bid);
      }
    } else if (res == -ENOBUFS) {
      r->out_of_buffers();  // a one-shot receive found none (its caller retries into its own buffer)
    }
    op->res = res;
    const bool heap = op->heap;
    op->completed.store(true, std::memory_order_release);
    g = op->slot.notify();  // the last touch of a stack `op`: its fiber may return and pop it as soon as this lands
    // A heap record (run_until) is deleted by whichever of its fiber and this reaper is done with it second.
    if (heap && op->released.exchange(true, std::memory_order_acq_rel)) delete op;
  } else {
    auto* ls = reinterpret_cast<ListenState*>(ud & ~kTagMask);
    std::lock_guard lk(ls->mu);
    if (res >= 0) {
      ls->ready.push_back(res);
    } else if (res != -ECANCELED && ls->error == 0) {
      // ECANCELED: close() cancelled it, or its submitting thread exited; accept() simply re-arms.
      ls->error = -res;
    }
    ls->armed = false;
    g = ls->slot.notify();
  }
  if (g == nullptr) return 0;
  out.push(g);
  return 1;
}

size_t UringPoller::reap_all(sched::GList& out, bool wait_for_locks) {
  int count = nrings_.load(std::memory_order_acquire);
  // Each ring's completions are in arrival order, but the rings' backlogs are not ordered among themselves. Taking
  // the whole budget from the first ring with completions (the earlier way) served the ring after an empty one first
  // most of the time, and the others' connections waited longer: an equal share of the budget from every ring with
  // completions keeps them abreast. What a share leaves unused goes to a second pass.
  // This thread's deferred ring has completions to post when it runs their work, which only it can.
  Ring* own = defer_ ? own_ring() : nullptr;
  auto has_work = [own](Ring* r) { return r->cq_pending() || (r == own && r->work_pending()); };
  int pending = 0;
  for (int i = 0; i < count; i++) pending += has_work(rings_[i].load(std::memory_order_acquire));
  if (pending == 0) return 0;
  const size_t share = std::max<size_t>(kReapBudget / static_cast<size_t>(pending), 1);
  // Starting at a different ring each time, so that the rounding of shares favours none.
  int start = count > 1 ? static_cast<int>(reap_start_.fetch_add(1, std::memory_order_relaxed) % count) : 0;
  size_t n = 0;
  for (int pass = 0; pass < 2 && n < kReapBudget; pass++) {
    for (int k = 0; k < count && n < kReapBudget; k++) {
      Ring* r = rings_[(start + k) % count].load(std::memory_order_acquire);
      if (!has_work(r)) continue;
      size_t want = pass == 0 ? std::min(share, kReapBudget - n) : kReapBudget - n;
      if (wait_for_locks) {
        std::lock_guard lk(r->cq_mu);
        n += reap(r, out, want);
      } else {
        // A busy lock means another thread is reaping this ring right now; it will take what is there.
        std::unique_lock lk(r->cq_mu, std::try_to_lock);
        if (lk.owns_lock()) n += reap(r, out, want);
      }
    }
  }
  if (n >= kReapBudget) wake_if_left(count);
  return n;
}

// After a reap that stopped at its budget: completions left in a ring signal nobody (their eventfd signal may have
// been consumed, or never sent), so make the next blocking poll return at once rather than sleep past them.
void UringPoller::wake_if_left(int count) {
  for (int i = 0; i < count; i++) {
    if (rings_[i].load(std::memory_order_acquire)->cq_pending()) {
      wake();
      return;
    }
  }
}

size_t UringPoller::poll(int64_t timeout_ns, sched::GList& out) {
  if (timeout_ns == 0) return reap_all(out, false);
  std::unique_lock lk(wait_mu_, std::try_to_lock);
  if (!lk.owns_lock()) return reap_all(out, false);  // another thread is the blocking poller
  trim_own_ring();
  if (defer_) {
    if (Ring* own = own_ring(); own != nullptr && own->deferred()) {
      // Its completion work signals nothing until this thread runs it: the wait must be in its own ring.
      size_t n = poll_in_own_ring(own, timeout_ns, out);
      lk.unlock();
      return n + reap_all(out, true);
    }
  }

  if (!efd_armed_) {
    // The eventfd counts completions on every ring and wake() calls since it was last read; if any happened the
    // poll completes at once, so nothing between the caller's last look and this sleep is missed.
    io_uring_sqe* sqe = io_uring_get_sqe(&wait_ring_);
    io_uring_prep_poll_add(sqe, efd_, POLLIN);
    io_uring_sqe_set_data64(sqe, kWakeData);
    efd_armed_ = true;
  }
  const int64_t until = timeout_ns > 0 ? sched::now_ns() + timeout_ns : 0;
  io_uring_cqe* cqe = nullptr;
  for (;;) {
    __kernel_timespec ts{};
    __kernel_timespec* tsp = nullptr;
    if (timeout_ns > 0) {
      int64_t left = std::max<int64_t>(0, until - sched::now_ns());
      ts.tv_sec = left / 1'000'000'000;
      ts.tv_nsec = left % 1'000'000'000;
      tsp = &ts;
    }
    int rc = io_uring_submit_and_wait_timeout(&wait_ring_, &cqe, 1, tsp, nullptr);
    if (rc != -EINTR) break;  // -ETIME: the timeout; a signal is no reason to return early
  }

  unsigned head, seen = 0;
  io_uring_for_each_cqe(&wait_ring_, head, cqe) seen++;  // the eventfd poll fired (or failed: re-armed next time)
  io_uring_cq_advance(&wait_ring_, seen);
  if (seen > 0) {
    efd_armed_ = false;
    uint64_t v;
    ssize_t r = ::read(efd_, &v, sizeof v);
    (void)r;
    // After the read, as in the epoll backend: a wake() in between skipped its write, and this poll is returning.
    wake_pending_.store(false, std::memory_order_release);
  }
  lk.unlock();
  // Waiting for each ring's lock: a completion whose signal was just consumed must not be left to a reaper that
  // already read the tail.
  return reap_all(out, true);
}

// The blocking poller on a thread with a deferred ring: it sleeps in that ring, on its own completions (their work
// runs in the sleep) and on a poll of the eventfd every other ring signals and wake() writes, until the timeout.
size_t UringPoller::poll_in_own_ring(Ring* r, int64_t timeout_ns, sched::GList& out) {
  io_uring* u = r->uring();
  {
    std::lock_guard lk(r->cq_mu);
    if (size_t n = reap(r, out, kReapBudget); n > 0) return n;
    if (!r->efd_armed) {
      io_uring_sqe* sqe;
      while ((sqe = io_uring_get_sqe(u)) == nullptr) io_uring_submit(u);
      io_uring_prep_poll_add(sqe, efd_, POLLIN);
      io_uring_sqe_set_data64(sqe, kWakeData);
      r->efd_armed = true;
    }
    // As in park(): until it wakes, only this thread reaps here, so what is posted meanwhile ends the sleep.
    r->owner_in_park = true;
  }
  ring_polls_.fetch_add(1, std::memory_order_relaxed);
  __kernel_timespec ts{};
  __kernel_timespec* tsp = nullptr;
  if (timeout_ns > 0) {
    ts.tv_sec = timeout_ns / 1'000'000'000;
    ts.tv_nsec = timeout_ns % 1'000'000'000;
    tsp = &ts;
  }
  io_uring_cq_eventfd_toggle(u, false);  // its own completions must not fire its own eventfd poll
  io_uring_cqe* cqe = nullptr;
  // -ETIME at the timeout, -EINTR on a signal: early or on time, the caller's loop looks again.
  io_uring_submit_and_wait_timeout(u, &cqe, 1, tsp, nullptr);
  r->work_runs.fetch_add(1, std::memory_order_relaxed);
  io_uring_cq_eventfd_toggle(u, true);
  std::lock_guard lk(r->cq_mu);
  r->owner_in_park = false;
  return reap(r, out, kReapBudget);
}

void UringPoller::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t r = ::write(efd_, &one, sizeof one);
  (void)r;
}

void UringPoller::thread_parked(bool parked) {
  // A thread parked in its own ring (park()) runs its completion work and readies its fibers as they come: its
  // receives need not move.
  if (futex_park_) return;
  ThreadRing* tr = this_thread_ring();
  if (tr->poller_id != id_) return;  // this thread has no ring of this poller
  Ring* r = tr->ring.get();
  if (!r->shared()) r->owner_parked_since.store(parked ? sched::now_ns() : 0, std::memory_order_relaxed);
  if (parked) trim_own_ring();
}

// This thread is going idle: its ring's buffers unused since the last look give their pages back (at most once a
// period; see Ring).
void UringPoller::trim_own_ring() {
  ThreadRing* tr = this_thread_ring();
  if (tr->poller_id != id_) return;
  Ring* r = tr->ring.get();
  std::unique_lock lk(r->cq_mu, std::try_to_lock);
  if (lk.owns_lock()) r->trim_idle_buffers(sched::now_ns());
}

// The M sleeps in io_uring_enter on its own ring, on a futex wait for its note and on the completions of what it
// submitted. Their completion work (receives on its connections) runs right there, on this thread, as it must, and
// the CQEs it posts end the sleep, so the M takes them itself. While it sleeps so, its ring does not signal the
// eventfd: the blocking poller is not woken for completions this M is handling.
bool UringPoller::park(std::atomic<uint32_t>* word, sched::GList& out) {
  ThreadRing* tr = this_thread_ring();
  if (!futex_park_ || tr->poller_id != id_) return false;
  Ring* r = tr->ring.get();
  if (r->shared()) return false;  // others submit here: their completion work is not this thread's
  io_uring* u = r->uring();
  {
    std::lock_guard lk(r->cq_mu);
    if (reap(r, out, kReapBudget) > 0) return true;
    if (!r->park_armed.load(std::memory_order_relaxed)) {
      // One wait stays armed across parks until a wakeup completes it; a new one would be a second waiter on the
      // word.
      io_uring_sqe* sqe;
      while ((sqe = io_uring_get_sqe(u)) == nullptr) io_uring_submit(u);
      prep_futex_wait(sqe, word, 0);
      io_uring_sqe_set_data64(sqe, kParkData);
      r->park_armed.store(true, std::memory_order_relaxed);
    }
    // Reusing a wait decided under cq_mu is sound only if its completion cannot vanish before the sleep: had another
    // thread reaped it between this decision and io_uring_enter (a wakeup of the note in between), the M would sleep
    // with no wait armed until unrelated I/O, stranding the P and the spinning token startm() handed it. So from here
    // until it wakes, only this thread reaps the ring (reap() skips it): whatever is posted meanwhile stays in the
    // ring, and io_uring_enter returns at once for it or is woken by it.
    r->owner_in_park = true;
    r->trim_idle_buffers(sched::now_ns());  // going idle: see Ring (at most once a period)
  }
  ring_parks_.fetch_add(1, std::memory_order_relaxed);
  if (auto hook = park_enter_hook.load(std::memory_order_relaxed)) hook();
  io_uring_cq_eventfd_toggle(u, false);
  // Errors (EINTR from a signal, EBUSY with the CQ overflowing) are early returns: the reap below and the caller's
  // loop handle them.
  io_uring_submit_and_wait(u, 1);
  r->work_runs.fetch_add(1, std::memory_order_relaxed);
  io_uring_cq_eventfd_toggle(u, true);
  {
    std::lock_guard lk(r->cq_mu);
    r->owner_in_park = false;
    reap(r, out, kReapBudget);
  }
  // Completions posted with the eventfd off and not taken above (the budget) would signal nobody.
  if (r->cq_pending()) wake();
  return true;
}

}  // namespace tern::netpoll
