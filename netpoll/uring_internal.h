// netpoll/uring_internal.h: what the io_uring backend's .cc files share and nothing outside them may use.
//
// The user_data tags, budgets and limits, small helpers (inline, as they were when one file held them all), the
// thread's ring, the operation and listener records, and the submission templates (submit, run, run_until),
// which every file that submits instantiates.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>

#include "base/sanitizer.h"
#include "netpoll/uring_poller.h"
#include "netpoll/uring_ring.h"
#include "netpoll/wait_slot.h"

namespace tern::netpoll {
namespace uring_detail {

// user_data is a pointer with a kind in its low bits (Op and ListenState are at least 8-byte aligned).
inline constexpr uint64_t kTagMask = 7;
inline constexpr uint64_t kTagOp = 0;
inline constexpr uint64_t kTagAccept = 1;
inline constexpr uint64_t kWakeData = 2;  // the wait ring's eventfd poll
inline constexpr uint64_t kTagRecv = 3;   // a connection's multishot receive (the UringDesc)
inline constexpr uint64_t kParkData = 4;  // a parked M's futex wait on its own ring (UringPoller::park)
inline constexpr uint64_t kKickData = 6;  // a ring message that wakes a deferred ring's owner (UringPoller::kick)

// IORING_OP_FUTEX_WAIT (Linux 6.7), which Debian 12's liburing predates; the values are the kernel's ABI.
inline constexpr uint8_t kOpFutexWait = 51;
inline constexpr uint32_t kFutex2SizeU32 = 0x02;
inline constexpr uint32_t kFutex2Private = 128;
inline constexpr uint64_t kFutexBitsetMatchAny = 0xffffffff;

// Prepares a wait while *word == val; a futex wakeup on the word (FUTEX_WAKE_PRIVATE) completes it.
inline void prep_futex_wait(io_uring_sqe* sqe, std::atomic<uint32_t>* word, uint32_t val) {
  std::memset(sqe, 0, sizeof *sqe);
  sqe->opcode = kOpFutexWait;
  sqe->fd = static_cast<int32_t>(kFutex2SizeU32 | kFutex2Private);
  sqe->addr = reinterpret_cast<uint64_t>(word);
  sqe->addr2 = val;
  sqe->addr3 = kFutexBitsetMatchAny;
}

// Fibers one reap readies at most, as the epoll backend takes at most 128 events per epoll_wait. A reap is made into
// the reaper's local run queue, and an unbounded one (a submit's system call runs all of the thread's pending
// completion work, which can be hundreds of receives at -c1000) overflows it: the oldest half of the queue then goes
// to the global queue, where it waits behind newer work (at -c1000, a third of all requests went that way, and p99
// latency was 2.7x the epoll backend's). What is left stays in the ring for the next reap.
inline constexpr size_t kReapBudget = 128;
// A submitter reaps its own ring with a smaller budget: its run queue is not empty (as a poller's is), and this reap
// is for the operation just submitted; the rest is the pollers'.
inline constexpr size_t kSubmitReapBudget = 32;

// A connection whose reader falls behind stops receiving into the ring's shared buffers once this many chunks wait
// unread (the multishot is cancelled, and re-armed when the reader has drained them); the rest of its data waits in
// the socket, under TCP flow control, instead of starving the ring's other connections of buffers.
inline constexpr size_t kMaxUnreadChunks = 16;

// An operation record reaches its reaper through the kernel (submission entry in, completion entry out), which
// ThreadSanitizer cannot see; these tell it that the submit happens before the completion is handled.
#ifdef TERN_TSAN
inline void handoff_release(uint64_t user_data) {
  __tsan_release(reinterpret_cast<void*>(user_data & ~kTagMask));
}
inline void handoff_acquire(uint64_t user_data) {
  __tsan_acquire(reinterpret_cast<void*>(user_data & ~kTagMask));
}
#else
inline void handoff_release(uint64_t) {}
inline void handoff_acquire(uint64_t) {}
#endif

// Completion results are 32-bit; larger transfers are split by the caller's loop.
inline constexpr size_t kMaxTransfer = 1u << 30;
// try_now() result: the socket has no data (or no buffer space) now, so the operation goes to the ring.
inline constexpr ssize_t kWouldBlock = -EAGAIN;

// Classifies the result of a non-blocking attempt (MSG_DONTWAIT) made before submitting: bytes moved or -errno, or
// kWouldBlock. Trying first is what makes the common cases cheap: a send almost always finds buffer space, and a
// receive on a busy connection usually finds data queued, and either then costs one plain system call, with no
// submission, completion or reap (a completion would also run as task work on this thread, in a later system call).
// `n` is a netpoll/sys.h result (bytes or -errno).
inline ssize_t try_now(ssize_t n) {
  if (n >= 0) return n;
  if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR) return kWouldBlock;
  return n;
}

// run() result meaning "the kernel cancelled this on its own (its submitting thread exited): submit it again".
inline constexpr int kResubmit = INT_MIN;

// Deferred rings (uring_setup.cc): the signal the monitor sends an owner that has left completion work waiting for a
// whole period (UringPoller::monitor_tick). Its handler runs that work (io_uring_enter GETEVENTS on the thread's own
// ring) and returns; a blocking system call it interrupted restarts (SA_RESTART), and a fiber it interrupted goes on.
// SIGURG, as Go's preemption: the default action ignores it, and programs rarely use it (out-of-band TCP data); a
// handler the program installed earlier is called after tern's.
inline constexpr int kNudgeSignal = SIGURG;
void install_nudge_handler();
// The calling thread now owns deferred ring `r` (nudges may come to it), or lets go of it (none taken after).
void own_deferred(Ring* r);
void release_deferred(Ring* r);

// The ring this thread submits to, for the poller whose id is cached (a thread serves one runtime at a time).
struct ThreadRing {
  uint64_t poller_id = 0;
  std::shared_ptr<Ring> ring;

  ~ThreadRing() { release(); }
  void release() {
    if (ring && ring->deferred()) release_deferred(ring.get());
    if (ring && !ring->shared()) ring->owned.store(false, std::memory_order_release);
    ring.reset();
    poller_id = 0;
  }
};

// The calling thread's ThreadRing: fiber code reaches the thread's ring only through this, out of line (its
// definition, with t_ring, in uring_setup.cc, says why).
__attribute__((noinline)) ThreadRing* this_thread_ring();

[[noreturn]] inline void fatal(const char* what, int err) {
  std::fprintf(stderr, "tern: netpoll: %s: %s\n", what, std::strerror(err));
  std::abort();
}

}  // namespace uring_detail

struct UringPoller::Op {
  WaitSlot slot;
  int32_t res = 0;
  char* copy_to = nullptr;  // a buffer-select receive: where the reaper copies the data
  // Set by the reaper before it notifies: seen right after the submit, it means the operation did not wait.
  std::atomic<bool> completed{false};
  bool waited = false;  // run(): the completion was not there when the submit returned
  // run_until(): the record is on the heap, and its fiber may leave at its deadline before the completion. Whichever
  // of the fiber and the reaper comes second to `released` deletes it.
  bool heap = false;
  std::atomic<bool> released{false};
};

struct UringPoller::ListenState {
  std::mutex mu;          // ready, error, armed: the reaper and the acceptor
  std::deque<int> ready;  // at most kMaxAcceptAhead: the result of an accept whose accept() call timed out
  int error = 0;          // an accept's error, for accept() to report
  bool armed = false;     // an accept is in flight
  Ring* ring = nullptr;
  WaitSlot slot;  // the acceptor, or close() waiting for the accept in flight to end
};

template <class Prep>
Ring* UringPoller::submit(Prep&& prep, uint64_t user_data) {
  Ring* r = thread_ring();
  io_uring* u = r->uring();
  std::unique_lock<std::mutex> sq_lock;
  if (r->shared()) sq_lock = std::unique_lock(r->sq_mu);
  io_uring_sqe* sqe;
  while ((sqe = io_uring_get_sqe(u)) == nullptr) io_uring_submit(u);
  prep(sqe);
  io_uring_sqe_set_data64(sqe, user_data);
  uring_detail::handoff_release(user_data);
  // What completes during this submit is reaped just below, so it needs no eventfd signal (which would wake a
  // sleeping poller for nothing).
  io_uring_cq_eventfd_toggle(u, false);
  for (;;) {
    int rc = io_uring_submit(u);
    if (rc >= 0) break;
    if (rc == -EINTR || rc == -EAGAIN) continue;  // EAGAIN: the kernel is short of request memory for a moment
    if (rc == -EBUSY) {                           // completions backed up: make room, then submit
      reap_ready(r);
      continue;
    }
    uring_detail::fatal("io_uring_enter", -rc);  // EBADF, EFAULT, EINVAL: the ring itself is broken
  }
  io_uring_cq_eventfd_toggle(u, true);
  if (sq_lock.owns_lock()) sq_lock.unlock();
  // Blocking on cq_mu, not try_lock: a reaper that holds the lock may have read the tail before these completions were
  // posted, and with the eventfd off nobody else would learn of them.
  reap_ready(r, uring_detail::kSubmitReapBudget);
  return r;
}

template <class Prep>
int UringPoller::run(Op& op, sched::WaitReason why, Prep&& prep) {
  uint64_t ud = reinterpret_cast<uint64_t>(&op) | uring_detail::kTagOp;
  submit(prep, ud);
  op.waited = !op.completed.load(std::memory_order_relaxed);
  op.slot.wait(-1, waiters_, why);
  return op.res == -ECANCELED ? uring_detail::kResubmit : op.res;
}

template <class Prep>
int UringPoller::run_until(int64_t deadline_ns, sched::WaitReason why, Prep&& prep) {
  auto* op = new Op();
  op->heap = true;
  uint64_t ud = reinterpret_cast<uint64_t>(op) | uring_detail::kTagOp;
  Ring* r = submit(prep, ud);
  int res;
  if (op->slot.wait(deadline_ns, waiters_, why) == WaitSlot::kNotified) {
    res = op->res == -ECANCELED ? uring_detail::kResubmit : op->res;
  } else if (op->completed.load(std::memory_order_acquire)) {
    // it completed right at the deadline: its result stands
    res = op->res == -ECANCELED ? uring_detail::kResubmit : op->res;
  } else {
    // The fiber leaves now, and the record goes to the reaper of the completion. Cancelled before `released`, while
    // the record cannot be freed, so that its address names no other operation yet.
    cancel(r, ud);
    res = -ETIMEDOUT;
  }
  if (op->released.exchange(true, std::memory_order_acq_rel)) delete op;
  return res;
}

}  // namespace tern::netpoll
