// netpoll/uring_poller.cc: the io_uring backend: probe, setup, submission, reap/poll/park, receives, accept.
#include "netpoll/uring_poller.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>

#include "base/sanitizer.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern::netpoll {
namespace {

// user_data is a pointer with a kind in its low bits (Op and ListenState are at least 8-byte aligned).
constexpr uint64_t kTagMask = 7;
constexpr uint64_t kTagOp = 0;
constexpr uint64_t kTagAccept = 1;
constexpr uint64_t kWakeData = 2;  // the wait ring's eventfd poll
constexpr uint64_t kTagRecv = 3;   // a connection's multishot receive (the UringDesc)
constexpr uint64_t kParkData = 4;  // a parked M's futex wait on its own ring (UringPoller::park)

// IORING_OP_FUTEX_WAIT (Linux 6.7), which Debian 12's liburing predates; the values are the kernel's ABI.
constexpr uint8_t kOpFutexWait = 51;
constexpr uint32_t kFutex2SizeU32 = 0x02;
constexpr uint32_t kFutex2Private = 128;
constexpr uint64_t kFutexBitsetMatchAny = 0xffffffff;

// Prepares a wait while *word == val; a futex wakeup on the word (FUTEX_WAKE_PRIVATE) completes it.
void prep_futex_wait(io_uring_sqe* sqe, std::atomic<uint32_t>* word, uint32_t val) {
  std::memset(sqe, 0, sizeof *sqe);
  sqe->opcode = kOpFutexWait;
  sqe->fd = static_cast<int32_t>(kFutex2SizeU32 | kFutex2Private);
  sqe->addr = reinterpret_cast<uint64_t>(word);
  sqe->addr2 = val;
  sqe->addr3 = kFutexBitsetMatchAny;
}

// Whether `ring` takes futex waits: one on a word that does not hold the value must fail at once with -EAGAIN (an
// older kernel rejects the opcode with -EINVAL).
bool futex_wait_works(io_uring* ring) {
  std::atomic<uint32_t> word{1};
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) return false;
  prep_futex_wait(sqe, &word, 0);
  io_uring_sqe_set_data64(sqe, 1);
  if (io_uring_submit(ring) != 1) return false;
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};
  if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) < 0) return false;
  const int res = cqe->res;
  io_uring_cqe_seen(ring, cqe);
  return res == -EAGAIN;
}

// A receive armed by a thread that has slept this long with no work moves to the thread of its next read that waits.
// Most sleeps between bursts of load are far shorter (a median of 51 us, p75 224 us at -c1000), and moving a receive
// costs a cancellation, a wakeup of the sleeper to complete it, and a new submission.
constexpr int64_t kMoveAfterNs = 2'000'000;

// Fibers one reap readies at most, as the epoll backend takes at most 128 events per epoll_wait. A reap is made into
// the reaper's local run queue, and an unbounded one (a submit's system call runs all of the thread's pending
// completion work, which can be hundreds of receives at -c1000) overflows it: the oldest half of the queue then goes
// to the global queue, where it waits behind newer work (at -c1000, a third of all requests went that way, and p99
// latency was 2.7x the epoll backend's). What is left stays in the ring for the next reap.
constexpr size_t kReapBudget = 128;
// A submitter reaps its own ring with a smaller budget: its run queue is not empty (as a poller's is), and this reap
// is for the operation just submitted; the rest is the pollers'.
constexpr size_t kSubmitReapBudget = 32;

// A connection whose reader falls behind stops receiving into the ring's shared buffers once this many chunks wait
// unread (the multishot is cancelled, and re-armed when the reader has drained them); the rest of its data waits in
// the socket, under TCP flow control, instead of starving the ring's other connections of buffers.
constexpr size_t kMaxUnreadChunks = 16;
// Reads up to this size arm a connection's multishot receive (request-sized reads: the server side of request-response
// traffic). Larger reads are bulk transfers: receiving straight into the caller's buffer beats many small copies.
constexpr size_t kMultishotMaxRead = 16 << 10;

// An operation record reaches its reaper through the kernel (submission entry in, completion entry out), which
// ThreadSanitizer cannot see; these tell it that the submit happens before the completion is handled.
#ifdef TERN_TSAN
void handoff_release(uint64_t user_data) {
  __tsan_release(reinterpret_cast<void*>(user_data & ~kTagMask));
}
void handoff_acquire(uint64_t user_data) {
  __tsan_acquire(reinterpret_cast<void*>(user_data & ~kTagMask));
}
#else
void handoff_release(uint64_t) {}
void handoff_acquire(uint64_t) {}
#endif

// The wait ring holds one POLL_ADD at a time.
constexpr unsigned kWaitEntries = 4;
// Completion results are 32-bit; larger transfers are split by the caller's loop.
constexpr size_t kMaxTransfer = 1u << 30;
// try_now() result: the socket has no data (or no buffer space) now, so the operation goes to the ring.
constexpr ssize_t kWouldBlock = -EAGAIN;

// Classifies the result of a non-blocking attempt (MSG_DONTWAIT) made before submitting: bytes moved or -errno, or
// kWouldBlock. Trying first is what makes the common cases cheap: a send almost always finds buffer space, and a
// receive on a busy connection usually finds data queued, and either then costs one plain system call, with no
// submission, completion or reap (a completion would also run as task work on this thread, in a later system call).
ssize_t try_now(ssize_t n) {
  if (n >= 0) return n;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return kWouldBlock;
  return -errno;
}

// run() result meaning "the kernel cancelled this on its own (its submitting thread exited): submit it again".
constexpr int kResubmit = INT_MIN;

std::atomic<uint64_t> next_poller_id{1};

// The ring this thread submits to, for the poller whose id is cached (a thread serves one runtime at a time).
struct ThreadRing {
  uint64_t poller_id = 0;
  std::shared_ptr<Ring> ring;

  ~ThreadRing() { release(); }
  void release() {
    if (ring && !ring->shared()) ring->owned.store(false, std::memory_order_release);
    ring.reset();
    poller_id = 0;
  }
};
thread_local ThreadRing t_ring;

// The calling thread's ThreadRing. Fiber code must reach t_ring only through this: a fiber that parks may resume on
// another thread, and a compiler is free to compute a thread_local's address once per function and keep it across the
// park (it cannot know that a call switches threads), which would then submit to the old thread's ring without its
// lock: two threads writing one submission queue. GCC 12 -O2 happens to recompute it today, but inlining (LTO) or
// another compiler need not. Out of line, with a compiler barrier, every call takes the address afresh on the thread
// that runs it: the same device as sched::this_m() (scheduler/sched.cc).
__attribute__((noinline)) ThreadRing* this_thread_ring() {
  asm volatile("" ::: "memory");
  return &t_ring;
}

bool owner_asleep(const Ring* r) {
  int64_t since = r->owner_parked_since.load(std::memory_order_relaxed);
  return since != 0 && sched::now_ns() - since > kMoveAfterNs;
}

std::string errno_text(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

[[noreturn]] void fatal(const char* what, int err) {
  std::fprintf(stderr, "tern: netpoll: %s: %s\n", what, std::strerror(err));
  std::abort();
}

}  // namespace

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

std::string UringPoller::probe() {
  io_uring ring;
  io_uring_params p{};
  int rc = io_uring_queue_init_params(kWaitEntries, &ring, &p);
  if (rc < 0) return errno_text("io_uring_setup", -rc);
  unpoison_fresh_mapping(&ring);
  struct Cleanup {
    io_uring* ring;
    int efd = -1, sock = -1;
    ~Cleanup() {
      io_uring_queue_exit(ring);
      if (efd >= 0) ::close(efd);
      if (sock >= 0) ::close(sock);
    }
  } cleanup{&ring};

  const struct {
    uint32_t bit;
    const char* name;
  } features[] = {{IORING_FEAT_FAST_POLL, "IORING_FEAT_FAST_POLL"},
                  {IORING_FEAT_NODROP, "IORING_FEAT_NODROP"},
                  {IORING_FEAT_EXT_ARG, "IORING_FEAT_EXT_ARG"}};
  for (const auto& f : features)
    if ((p.features & f.bit) == 0) return std::string("kernel lacks ") + f.name;

  io_uring_probe* pr = io_uring_get_probe_ring(&ring);
  if (pr == nullptr) return "IORING_REGISTER_PROBE failed";
  const struct {
    int op;
    const char* name;
  } ops[] = {{IORING_OP_RECV, "RECV"},       {IORING_OP_SEND, "SEND"},     {IORING_OP_SENDMSG, "SENDMSG"},
             {IORING_OP_CONNECT, "CONNECT"}, {IORING_OP_ACCEPT, "ACCEPT"}, {IORING_OP_POLL_ADD, "POLL_ADD"}};
  for (const auto& o : ops) {
    if (!io_uring_opcode_supported(pr, o.op)) {
      io_uring_free_probe(pr);
      return std::string("kernel lacks IORING_OP_") + o.name;
    }
  }
  io_uring_free_probe(pr);

  cleanup.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (cleanup.efd < 0) return errno_text("eventfd", errno);
  rc = io_uring_register_eventfd(&ring, cleanup.efd);
  if (rc < 0) return errno_text("IORING_REGISTER_EVENTFD", -rc);

  // Accept and synchronous cancellation, for real: arm one on an autobound abstract unix socket (no network needed),
  // cancel it, and expect -ECANCELED.
  cleanup.sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cleanup.sock < 0) return errno_text("socket(AF_UNIX)", errno);
  sockaddr_un sun{};
  sun.sun_family = AF_UNIX;
  if (bind(cleanup.sock, reinterpret_cast<sockaddr*>(&sun), sizeof(sa_family_t)) < 0 || listen(cleanup.sock, 1) < 0)
    return errno_text("probe socket", errno);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_accept(sqe, cleanup.sock, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, 1);
  rc = io_uring_submit(&ring);
  if (rc < 0) return errno_text("io_uring_enter", -rc);
  io_uring_sync_cancel_reg reg{};
  reg.addr = 1;
  reg.timeout.tv_sec = -1;
  reg.timeout.tv_nsec = -1;
  rc = io_uring_register_sync_cancel(&ring, &reg);
  if (rc == -EINVAL) return "kernel lacks IORING_REGISTER_SYNC_CANCEL";
  io_uring_cqe* cqe = nullptr;
  __kernel_timespec ts{1, 0};  // the completion is posted before the cancel returns; a second is slack
  rc = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
  if (rc < 0) return errno_text("accept probe", -rc);
  int res = cqe->res;
  io_uring_cqe_seen(&ring, cqe);
  if (res != -ECANCELED) return errno_text("accept", res < 0 ? -res : EPROTO);
  return {};
}

Result<std::unique_ptr<UringPoller>> UringPoller::create(bool park_in_ring) {
  std::string why = probe();
  if (!why.empty()) return make_error(why);
  int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return make_error(errno_text("eventfd", errno));
  std::unique_ptr<UringPoller> p(new UringPoller(efd));
  int rc = io_uring_queue_init(kWaitEntries, &p->wait_ring_, 0);
  if (rc < 0) return make_error(errno_text("io_uring_setup", -rc));
  p->wait_ring_ok_ = true;
  unpoison_fresh_mapping(&p->wait_ring_);
  p->futex_park_ = park_in_ring && futex_wait_works(&p->wait_ring_);
  auto shared = Ring::create(efd, /*shared=*/true);
  if (!shared) return make_error(shared.error());
  p->shared_ = std::shared_ptr<Ring>(std::move(*shared));
  p->owners_.push_back(p->shared_);
  p->rings_[0].store(p->shared_.get(), std::memory_order_release);
  p->nrings_.store(1, std::memory_order_release);
  return p;
}

UringPoller::UringPoller(int efd) : id_(next_poller_id.fetch_add(1, std::memory_order_relaxed)), efd_(efd) {}

UringPoller::~UringPoller() {
  // Fibers are gone: completions still queued are dropped unread, except accepted connections, which are closed.
  for (auto& r : owners_) {
    std::lock_guard lk(r->cq_mu);
    io_uring* u = r->uring();
    unsigned head, seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(u, head, cqe) {
      if ((cqe->user_data & kTagMask) == kTagAccept && cqe->res >= 0) ::close(cqe->res);
      seen++;
    }
    io_uring_cq_advance(u, seen);
  }
  descs_.for_each_live([](UringDesc* d) {
    if (d->listen != nullptr) {
      for (int fd : d->listen->ready) ::close(fd);
      delete d->listen;
    }
    if (d->fd >= 0) ::close(d->fd);
  });
  if (wait_ring_ok_) io_uring_queue_exit(&wait_ring_);
  ::close(efd_);
}

Ring* UringPoller::thread_ring() {
  ThreadRing* tr = this_thread_ring();
  if (tr->poller_id == id_) [[likely]]
    return tr->ring.get();
  return adopt_ring();
}

Ring* UringPoller::adopt_ring() {
  ThreadRing* tr = this_thread_ring();
  tr->release();
  std::shared_ptr<Ring> pick;
  {
    std::lock_guard lk(rings_mu_);
    // A ring whose thread exited is reused before a new one is made, so thread churn does not grow the set.
    for (auto& r : owners_) {
      bool expected = false;
      if (!r->shared() && r->owned.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
        pick = r;
        break;
      }
    }
    int n = nrings_.load(std::memory_order_relaxed);
    if (!pick && n < kMaxRings) {
      auto created = Ring::create(efd_, /*shared=*/false);
      if (created) {
        pick = std::shared_ptr<Ring>(std::move(*created));
        pick->owned.store(true, std::memory_order_relaxed);
        owners_.push_back(pick);
        rings_[n].store(pick.get(), std::memory_order_release);
        nrings_.store(n + 1, std::memory_order_release);
      }
    }
    if (!pick) pick = shared_;
  }
  tr->poller_id = id_;
  tr->ring = std::move(pick);
  return tr->ring.get();
}

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
  handoff_release(user_data);
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
    fatal("io_uring_enter", -rc);  // EBADF, EFAULT, EINVAL: the ring itself is broken
  }
  io_uring_cq_eventfd_toggle(u, true);
  if (sq_lock.owns_lock()) sq_lock.unlock();
  // Blocking on cq_mu, not try_lock: a reaper that holds the lock may have read the tail before these completions were
  // posted, and with the eventfd off nobody else would learn of them.
  reap_ready(r, kSubmitReapBudget);
  return r;
}

template <class Prep>
int UringPoller::run(Op& op, Prep&& prep) {
  uint64_t ud = reinterpret_cast<uint64_t>(&op) | kTagOp;
  submit(prep, ud);
  op.waited = !op.completed.load(std::memory_order_relaxed);
  op.slot.wait(-1, waiters_);
  return op.res == -ECANCELED ? kResubmit : op.res;
}

template <class Prep>
int UringPoller::run_until(int64_t deadline_ns, Prep&& prep) {
  auto* op = new Op();
  op->heap = true;
  uint64_t ud = reinterpret_cast<uint64_t>(op) | kTagOp;
  Ring* r = submit(prep, ud);
  int res;
  if (op->slot.wait(deadline_ns, waiters_) == WaitSlot::kNotified) {
    res = op->res == -ECANCELED ? kResubmit : op->res;
  } else if (op->completed.load(std::memory_order_acquire)) {
    res = op->res == -ECANCELED ? kResubmit : op->res;  // it completed right at the deadline: its result stands
  } else {
    // The fiber leaves now, and the record goes to the reaper of the completion. Cancelled before `released`, while
    // the record cannot be freed, so that its address names no other operation yet.
    cancel(r, ud);
    res = -ETIMEDOUT;
  }
  if (op->released.exchange(true, std::memory_order_acq_rel)) delete op;
  return res;
}

int UringPoller::wait_ready(int fd, short events, int64_t deadline_ns) {
  for (;;) {
    int res = run_until(deadline_ns, [&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, events); });
    if (res != kResubmit) return res;
  }
}

void UringPoller::cancel(Ring* r, uint64_t user_data) {
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

size_t UringPoller::reap(Ring* r, sched::GList& out, size_t budget) {
  // The owner sleeps in this ring (park()): what is posted here ends its sleep, and it reaps that itself.
  if (r->owner_in_park) return 0;
  io_uring* u = r->uring();
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
  handoff_acquire(ud);
  if ((ud & kTagMask) == kTagRecv) {
    auto* d = reinterpret_cast<UringDesc*>(ud & ~kTagMask);
    RecvState& rs = d->recv;
    bool throttle = false;
    {
      std::lock_guard lk(rs.mu);
      if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0) {
          rs.chunks.push_back({r, bid, static_cast<uint32_t>(res), 0});
        } else {
          r->recycle(bid);
        }
      }
      if (res == 0) {
        rs.eof = true;
      } else if (res == -ENOBUFS) {
        rs.nobufs = true;
        buffer_misses_.fetch_add(1, std::memory_order_relaxed);
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
        g->prefetch_read.store(rs.chunks[rs.head].ring->buffer(rs.chunks[rs.head].bid), std::memory_order_relaxed);
      }
    }
    if (throttle) {
      recv_throttles_.fetch_add(1, std::memory_order_relaxed);
      cancel(r, ud);
    }
  } else if ((ud & kTagMask) == kTagOp) {
    auto* op = reinterpret_cast<Op*>(ud & ~kTagMask);
    if (cqe->flags & IORING_CQE_F_BUFFER) {
      unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
      if (res > 0) std::memcpy(op->copy_to, r->buffer(bid), static_cast<size_t>(res));
      r->recycle(bid);
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
  int pending = 0;
  for (int i = 0; i < count; i++) pending += rings_[i].load(std::memory_order_acquire)->cq_pending();
  if (pending == 0) return 0;
  const size_t share = std::max<size_t>(kReapBudget / static_cast<size_t>(pending), 1);
  // Starting at a different ring each time, so that the rounding of shares favours none.
  int start = count > 1 ? static_cast<int>(reap_start_.fetch_add(1, std::memory_order_relaxed) % count) : 0;
  size_t n = 0;
  for (int pass = 0; pass < 2 && n < kReapBudget; pass++) {
    for (int k = 0; k < count && n < kReapBudget; k++) {
      Ring* r = rings_[(start + k) % count].load(std::memory_order_acquire);
      if (!r->cq_pending()) continue;
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

void UringPoller::wake() {
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  uint64_t one = 1;
  ssize_t r = ::write(efd_, &one, sizeof one);
  (void)r;
}

Desc* UringPoller::open(int fd, bool listening, int* err) {
  UringDesc* d = descs_.acquire();
  if (d == nullptr) {
    *err = ENOMEM;
    return nullptr;
  }
  d->fd = fd;
  d->listen = listening ? new ListenState() : nullptr;
  d->read_waits = false;
  RecvState& rs = d->recv;
  rs.chunks.clear();
  rs.head = 0;
  rs.ring = nullptr;
  rs.armed = rs.throttled = rs.nobufs = rs.eof = false;
  rs.error = 0;
  rs.slot.reset();
  return d;
}

// Ends a connection's multishot receive before its descriptor goes: cancels it, waits for its final completion (until
// then the kernel may still post into the record), and hands unread buffers back to their rings.
void UringPoller::recv_disarm(UringDesc* d) {
  RecvState& rs = d->recv;
  std::unique_lock lk(rs.mu);
  recv_cancel_wait(d, lk);
  std::vector<Chunk> left(rs.chunks.begin() + static_cast<std::ptrdiff_t>(rs.head), rs.chunks.end());
  rs.chunks.clear();
  rs.head = 0;
  lk.unlock();
  for (const Chunk& c : left) {
    std::lock_guard cl(c.ring->cq_mu);
    c.ring->recycle(c.bid);
  }
}

// Cancels d's multishot receive, if armed, and waits for its final completion. rs.mu is held through `lk` on entry and
// on return. Data delivered before the cancellation took effect stays in rs.chunks.
void UringPoller::recv_cancel_wait(UringDesc* d, std::unique_lock<std::mutex>& lk) {
  RecvState& rs = d->recv;
  if (!rs.armed) return;
  Ring* r = rs.ring;
  lk.unlock();
  cancel(r, reinterpret_cast<uint64_t>(d) | kTagRecv);
  for (;;) {
    reap_ready(r);  // the final completion may sit unreaped in the ring: reap it here rather than wait for a poller
    lk.lock();
    if (!rs.armed) return;
    lk.unlock();
    if (sched::in_fiber()) {
      rs.slot.wait(-1, waiters_);
    } else {
      usleep(100);  // a Stream closed outside the runtime's fibers
    }
  }
}

void UringPoller::thread_parked(bool parked) {
  // A thread parked in its own ring (park()) runs its completion work and readies its fibers as they come: its
  // receives need not move.
  if (futex_park_) return;
  ThreadRing* tr = this_thread_ring();
  if (tr->poller_id != id_) return;  // this thread has no ring of this poller
  Ring* r = tr->ring.get();
  if (!r->shared()) r->owner_parked_since.store(parked ? sched::now_ns() : 0, std::memory_order_relaxed);
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
  }
  ring_parks_.fetch_add(1, std::memory_order_relaxed);
  if (auto hook = park_enter_hook.load(std::memory_order_relaxed)) hook();
  io_uring_cq_eventfd_toggle(u, false);
  // Errors (EINTR from a signal, EBUSY with the CQ overflowing) are early returns: the reap below and the caller's
  // loop handle them.
  io_uring_submit_and_wait(u, 1);
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

void UringPoller::wait_disarmed(ListenState* ls) {
  for (;;) {
    {
      // Seeing armed == false under the lock means the reaper of the final completion is done with `ls`.
      std::lock_guard lk(ls->mu);
      if (!ls->armed) return;
    }
    if (sched::in_fiber()) {
      ls->slot.wait(-1, waiters_);
    } else {
      // A Listener destroyed outside the runtime's fibers: reap on this thread until the final completion shows.
      sched::GList ready;
      reap_all(ready, true);
      if (!ready.empty()) sched::ready_list(ready);
      usleep(100);
    }
  }
}

void UringPoller::close(Desc* d) {
  auto* ud = static_cast<UringDesc*>(d);
  if (ListenState* ls = ud->listen) {
    bool armed;
    {
      std::lock_guard lk(ls->mu);
      armed = ls->armed;
    }
    if (armed) {
      cancel(ls->ring, reinterpret_cast<uint64_t>(ls) | kTagAccept);
      wait_disarmed(ls);
    }
    for (int fd : ls->ready) ::close(fd);
    delete ls;
    ud->listen = nullptr;
  } else {
    recv_disarm(ud);
  }
  ::close(ud->fd);
  descs_.release(ud);
}

ssize_t UringPoller::read(Desc* d, void* buf, size_t len, int64_t deadline_ns) {
  // A zero length means "the whole buffer" to a buffer-select receive, which would then copy a provided buffer's
  // worth into a caller's empty one.
  if (len == 0) return 0;
  len = std::min(len, kMaxTransfer);
  auto* ud = static_cast<UringDesc*>(d);
  RecvState& rs = ud->recv;
  for (;;) {
    bool arm = false;
    bool once = false;
    bool select = true;
    {
      std::unique_lock lk(rs.mu);
      if (rs.head < rs.chunks.size()) return static_cast<ssize_t>(take_chunks(rs, buf, len, lk));
      if (rs.error != 0) {
        int e = rs.error;
        rs.error = 0;
        return -e;
      }
      if (rs.eof) return 0;
      if (rs.armed && owner_asleep(rs.ring) && rs.ring != thread_ring()) {
        // The receive's completion work runs on the thread that armed it, and that thread sleeps with no work: every
        // arrival would wake it just to run that work. Move the receive here, to a thread that is running.
        recv_moves_.fetch_add(1, std::memory_order_relaxed);
        recv_cancel_wait(ud, lk);
        continue;
      }
      if (!rs.armed) {
        // Nothing in flight and nothing unread, so a receive of any kind keeps the byte order.
        if (!ud->read_waits) {
          // The previous read did not wait (or this is the first): the data may be there already. Request-response
          // traffic alternates, so after a read that had to wait the next would only fail here; it goes to the ring.
          lk.unlock();
          if (ssize_t n = try_now(::recv(ud->fd, buf, len, MSG_DONTWAIT)); n != kWouldBlock) return n;
          ud->read_waits = true;
          continue;
        }
        Ring* r = thread_ring();
        if (rs.nobufs || len > kMultishotMaxRead || !multishot_recv_.load(std::memory_order_relaxed) ||
            !r->has_buffers()) {
          once = true;
          select = !rs.nobufs;  // out of buffers: this read receives into its own
          rs.nobufs = false;
        } else {
          rs.armed = arm = true;
          rs.throttled = false;
          rs.ring = r;
        }
      }
    }
    if (once) return read_once(ud, buf, len, deadline_ns, select);
    if (arm) {
      // One multishot receive serves every later read of this connection: the kernel receives into the ring's
      // buffers whenever data arrives, with no submission per read, until EOF, an error, or throttling ends it.
      int fd = ud->fd;
      submit(
          [&](io_uring_sqe* sqe) {
            io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = Ring::kBufGroup;
          },
          reinterpret_cast<uint64_t>(ud) | kTagRecv);
      continue;  // the submit reaped what completed inline
    }
    WaitSlot::Result woke;
    {
      sched::ResumeHint hint(buf);  // where the data goes; complete() records where it comes from
      woke = rs.slot.wait(deadline_ns, waiters_);
    }
    if (woke == WaitSlot::kTimedOut) {
      // The receive stays armed: what arrives later waits for the next read. One last look for data that landed
      // right at the deadline.
      Ring* here = thread_ring();
      Ring* mine = nullptr;
      {
        std::unique_lock lk(rs.mu);
        if (rs.head < rs.chunks.size()) return static_cast<ssize_t>(take_chunks(rs, buf, len, lk));
        if (rs.armed && rs.ring == here) mine = here;
      }
      if (mine != nullptr) {
        // Armed by this thread: data that is in the socket may still wait for the receive's completion work, which
        // cooperative task running defers to this thread's next system call, or sit unreaped in the ring. Run the
        // work and reap, so that a deadline never hides data that is there (as it cannot with epoll).
        io_uring_get_events(mine->uring());
        reap_ready(mine, kSubmitReapBudget);
        std::unique_lock lk(rs.mu);
        if (rs.head < rs.chunks.size()) return static_cast<ssize_t>(take_chunks(rs, buf, len, lk));
      }
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
  }
}

// Copies unread chunks into buf; rs.mu held through `lk`, which this releases. Emptied buffers go back to their ring.
size_t UringPoller::take_chunks(RecvState& rs, void* buf, size_t len, std::unique_lock<std::mutex>& lk) {
  size_t n = 0;
  Chunk done[kMaxUnreadChunks];
  size_t ndone = 0;
  while (n < len && rs.head < rs.chunks.size() && ndone < kMaxUnreadChunks) {
    Chunk& c = rs.chunks[rs.head];
    size_t k = std::min<size_t>(len - n, c.len - c.off);
    std::memcpy(static_cast<char*>(buf) + n, c.ring->buffer(c.bid) + c.off, k);
    n += k;
    c.off += static_cast<uint32_t>(k);
    if (c.off < c.len) break;
    done[ndone++] = c;
    rs.head++;
  }
  if (rs.head == rs.chunks.size()) {
    rs.chunks.clear();
    rs.head = 0;
  }
  lk.unlock();
  for (size_t i = 0; i < ndone;) {
    // Usually every buffer is of one ring: one lock for the lot.
    Ring* r = done[i].ring;
    std::lock_guard cl(r->cq_mu);
    for (; i < ndone && done[i].ring == r; i++) r->recycle(done[i].bid);
  }
  return n;
}

// One receive submitted on its own, into a provided buffer if `select`, else into buf: for kernels without buffer
// rings or multishot receives, for bulk reads, and after a multishot ran out of buffers. read() has already made the
// plain non-blocking attempt where one was worth making, so this read is expected to wait.
ssize_t UringPoller::read_once(UringDesc* ud, void* buf, size_t len, int64_t deadline_ns, bool select) {
  int fd = ud->fd;
  if (deadline_ns >= 0) {
    // A receive the kernel runs later writes the caller's buffer (or, buffer-selected, needs the reaper to copy into
    // it), so a fiber could not leave it at its deadline. With a deadline the ring only says when data is there.
    ud->read_waits = true;
    for (;;) {
      int ready = wait_ready(fd, POLLIN, deadline_ns);
      if (ready < 0 && ready != -ETIMEDOUT) return ready;
      // Even at the deadline: data that is in the socket is taken, not hidden by a timeout.
      if (ssize_t n = try_now(::recv(fd, buf, len, MSG_DONTWAIT)); n != kWouldBlock) return n;
      if (ready == -ETIMEDOUT) {
        timeouts_.fetch_add(1, std::memory_order_relaxed);
        return -ETIMEDOUT;
      }
    }
  }
  for (;;) {
    Op op;
    Ring* r = thread_ring();
    bool provided = select && r->has_buffers() && len <= Ring::kBufSize;
    if (provided) op.copy_to = static_cast<char*>(buf);
    int res = run(op, [&](io_uring_sqe* sqe) {
      if (provided) {
        io_uring_prep_recv(sqe, fd, nullptr, len, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = Ring::kBufGroup;
      } else {
        io_uring_prep_recv(sqe, fd, buf, len, 0);
      }
      // Expected to wait: skip the kernel's own first attempt too, which would fail the same way; the receive runs
      // once, when the socket's poll fires.
      sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    });
    if (res == -ENOBUFS && provided) {
      buffer_misses_.fetch_add(1, std::memory_order_relaxed);
      select = false;  // the ring's buffers are all in flight: this read uses the caller's buffer
      continue;
    }
    if (res == kResubmit) continue;
    ud->read_waits = op.waited;
    return res;
  }
}

ssize_t UringPoller::write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) {
  int fd = d->fd;
  len = std::min(len, kMaxTransfer);
  if (ssize_t n = try_now(::send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)); n != kWouldBlock) return n;
  if (deadline_ns >= 0) {
    // As for read_once(): a send the kernel runs later reads the caller's buffer, so with a deadline the ring only
    // says when there is room.
    return send_ready(fd, deadline_ns, [&] { return ::send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL); });
  }
  for (;;) {
    Op op;
    int res = run(op, [&](io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL); });
    if (res != kResubmit) return res;
  }
}

ssize_t UringPoller::writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) {
  int fd = d->fd;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  if (ssize_t n = try_now(::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)); n != kWouldBlock) return n;
  if (deadline_ns >= 0) {
    return send_ready(fd, deadline_ns, [&] { return ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); });
  }
  for (;;) {
    Op op;
    // SENDMSG rather than WRITEV for MSG_NOSIGNAL: a peer that went away must not raise SIGPIPE.
    int res = run(op, [&](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL); });
    if (res != kResubmit) return res;
  }
}

template <class Send>
ssize_t UringPoller::send_ready(int fd, int64_t deadline_ns, Send&& send) {
  for (;;) {
    int ready = wait_ready(fd, POLLOUT, deadline_ns);
    if (ready < 0 && ready != -ETIMEDOUT) return ready;
    // Even at the deadline: room that is there is used.
    if (ssize_t n = try_now(send()); n != kWouldBlock) return n;
    if (ready == -ETIMEDOUT) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
  }
}

int UringPoller::connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) {
  int fd = d->fd;
  for (;;) {
    int res;
    if (deadline_ns >= 0) {
      // The kernel copies the address when it first issues the connect, within the submit: nothing of the caller's
      // is left for it to read, and the fiber may leave at its deadline.
      res = run_until(deadline_ns, [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, addr, len); });
      if (res == -ETIMEDOUT) timeouts_.fetch_add(1, std::memory_order_relaxed);
    } else {
      Op op;
      res = run(op, [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, addr, len); });
    }
    if (res != kResubmit) return res;
  }
}

int UringPoller::accept(Desc* d, int64_t deadline_ns) {
  auto* ud = static_cast<UringDesc*>(d);
  ListenState* ls = ud->listen;
  if (ls == nullptr) return -EINVAL;
  for (;;) {
    bool arm = false;
    {
      std::lock_guard lk(ls->mu);
      if (!ls->ready.empty()) {
        int fd = ls->ready.front();
        ls->ready.pop_front();
        return fd;
      }
      if (ls->error != 0) {
        int e = ls->error;
        ls->error = 0;
        return -e;
      }
      if (!ls->armed) arm = ls->armed = true;
    }
    if (arm) {
      // One connection per submission, on demand: a multishot accept would take every incoming connection into the
      // process however slowly accept() is called (see kMaxAcceptAhead). The kernel tries the accept at once, so
      // with a connection queued it completes inline and the submit's reap has it.
      int lfd = ud->fd;
      ls->ring = thread_ring();
      submit([&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, lfd, nullptr, nullptr, SOCK_CLOEXEC); },
             reinterpret_cast<uint64_t>(ls) | kTagAccept);
      continue;  // the submit reaped inline completions: look at the queue again
    }
    if (ls->slot.wait(deadline_ns, waiters_) == WaitSlot::kTimedOut) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
  }
}

}  // namespace tern::netpoll
