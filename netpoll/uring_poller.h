// netpoll/uring_poller.h: the io_uring backend of sched::Poller and netpoll::IoBackend.
//
// Completion-based: an operation is submitted to the kernel on behalf of the fiber, which parks until the completion
// is reaped. The design, and why:
//   - One ring per submitting thread (each M), created on its first operation and handed on when the thread exits, so
//     submission takes no lock at all: only the owner writes its submission queue. Per thread rather than per P
//     because io_uring binds a request to the task that submitted it (its completion work runs on that thread, and
//     the request is cancelled if the thread exits), and a P moves between threads. A thread that cannot get a ring
//     of its own (descriptor limit, memory) shares a fallback ring under a mutex rather than fail the operation.
//   - Sends, and reads whose previous read found data, first try a plain non-blocking system call (MSG_DONTWAIT on
//     the blocking socket), exactly like the epoll backend: when the kernel can do the work now it costs one system
//     call and no ring round trip. Only what would block goes to the ring. A read after one that had to wait skips
//     the try (request-response traffic: it would fail); so does every read once the multishot receive below is armed
//     (it owns the socket's data from then on, and a plain receive beside it would reorder bytes).
//   - Completion work for a parked operation runs on its submitting thread. The rings use IORING_SETUP_COOP_TASKRUN,
//     so a thread running fibers is not interrupted for it but runs it at its next system call (or interrupt return);
//     a sleeping submitter is still woken for it, so an idle runtime pays two thread wakeups per event where epoll
//     pays one.
//   - A submitter reaps its own ring right after io_uring_submit: a send with socket buffer space, or a receive with
//     data queued, completes inline, and the fiber returns without parking. Parked operations complete later, on
//     whichever thread the kernel ran the completion for, and any thread may reap any ring (one reaper per ring at a
//     time, Ring::cq_mu).
//   - Every ring signals one eventfd per completion. A poller with nothing to do sleeps in a small wait ring on a
//     POLL_ADD of that eventfd, so a completion on any ring, or wake() from any thread (an eventfd write, coalesced by
//     a flag as in Go's netpollBreak), ends the sleep. A submitter switches its ring's eventfd notifications off
//     around its own submit, since it reaps those completions itself: otherwise every inline send would wake the
//     sleeping poller for nothing.
//   - Accept is one accept submission per accept() that finds no connection taken already, tried by the kernel at
//     once (a queued connection completes inline) and otherwise parked on the listener's poll. Not a multishot
//     accept: the kernel would take every incoming connection into the process however slowly accept() is called
//     (its loop drains the whole backlog on every arrival, faster than any reaper can cancel it), so that clients
//     see "connected" but are never served, the listen backlog stops meaning anything, and descriptors grow until
//     EMFILE. On demand, the surplus waits in the kernel's backlog as with epoll (kMaxAcceptAhead).
//   - A connection's reads of request size (up to 16 KiB) share one multishot receive into the ring's provided buffers
//     (IOSQE_BUFFER_SELECT), armed by the first read that would block: the kernel receives whenever data arrives, with
//     no submission, poll arm or failed attempt per read, and a read takes the delivered data (Chunk) and recycles
//     the buffers. A parked reader pins no memory of its own in the kernel. A reader that falls kMaxUnreadChunks
//     behind has its receive cancelled until it catches up, so one flooded connection cannot take the ring's shared
//     buffers from the others; if they run out anyway, a read receives into its own buffer once and re-arms. Larger
//     reads (bulk transfers) receive straight into the caller's buffer, one submission each. So does a connection
//     whose reads take 8 KiB or more from the multishot's buffers between two waits (large messages, streams): its
//     data would be copied twice, into the provided buffers and out of them (RecvState::bulk, IoStats::recv_bulk;
//     back to the multishot after four reads in a row under 1 KiB).
//   - A receive's completion work runs on the thread that armed it, and with COOP_TASKRUN a sleeping thread is woken
//     for it. So a receive armed on an M that has since gone to sleep with no work (sched::Poller::thread_parked)
//     would wake that M on every arrival just to run it (most of io_uring's context switches at -c1000:
//     docs/performance.md). The next read of such a connection that has to wait, once its ring's thread has
//     slept kMoveAfterNs, cancels the receive, waits for its final completion (data delivered before it stays, in
//     order) and re-arms it on its own thread's ring: IoStats::recv_moves.
//   - Where the kernel has IORING_OP_FUTEX_WAIT (6.7) and Config::uring_park is on, a parked M does not sleep on a
//     futex but in io_uring_enter on its own ring (park(): IoStats::ring_parks), on a futex wait for its note and on
//     its own completions, with its ring's eventfd signal off. The completion work of its receives then runs in that
//     sleep and ends it with their CQEs: the M takes an idle P and runs the fibers itself (SchedStats::park_io_takes),
//     or hands them to the global queue when every P is busy. One wakeup instead of three (the M for the work, the
//     poller for the eventfd, an M started for the fibers), and its receives never need to move.
//   - A reap readies at most kReapBudget fibers (kSubmitReapBudget after a submit), like epoll_wait's 128 events:
//     one reaper's local run queue takes them all without overflowing to the global queue. Completions left behind
//     stay in the ring, and wake() makes sure a blocking poller comes for them.
//   - Deadlines are scheduler timers (as for epoll), and a fiber leaves at its deadline whatever the kernel is doing:
//     the completion of an operation (or of its cancellation) is task work on the thread that submitted it, which
//     may be blocked in the kernel for as long as it likes (a vfork, say). A read that times out leaves the multishot
//     receive armed; an accept leaves its accept in flight, whose connection the next accept() takes. Any other
//     operation with a deadline references nothing of the caller's once submitted: sends and one-shot receives wait
//     for readiness (POLL_ADD) and then move the data with a plain non-blocking system call, as with epoll (data in
//     the socket is still taken at the deadline); a connect's address is copied by the kernel within the submit. Its
//     record is on the heap, and at the deadline the fiber cancels it and leaves it to the reaper. Operations with no
//     deadline submit the transfer itself, into or from the caller's buffer. Cancellation never waits in the kernel
//     (IORING_REGISTER_SYNC_CANCEL with a zero timeout): the thread holds a P.
//
// Deferred rings (Config::uring_defer, TERN_URING_DEFER; off by default): each thread's ring is created
// IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1; only with park_in_ring granted, 6.7), issue 21's ring model.
// The completion work of a ring's operations then waits until its owner asks for it (io_uring_enter GETEVENTS) and
// runs in a batch, instead of at each of the owner's system calls: 0.92x the CPU per response at -c1000 and 0.93x at
// -c10000 on one core, level with the epoll backend at -c1000 (docs/performance.md, 2026-12-08). What it takes, each
// checked on Linux 6.18:
//   - Only the owner may cancel on its ring (io_uring_register(SYNC_CANCEL) returns -EEXIST for any other thread).
//     cancel() from another thread queues the cancellation on the ring (Ring::queue_cancel) and wakes the owner with
//     a ring message (kick: IORING_OP_MSG_RING from the caller's own ring, or the shared one), and the owner makes it
//     at its next reap (owner_work). The caller waits for the final completion as before. IoStats::kicks.
//   - The owner runs the work in reap() (its busy polls, its submits' reaps) when the kernel flags some
//     (IORING_SQ_TASKRUN), and in every sleep: park() already sleeps in the ring, and the blocking poller on such a
//     thread sleeps there too (poll_in_own_ring, with a poll of the poller's eventfd armed in that ring;
//     IoStats::ring_polls): queued work does not signal a ring's eventfd (only the CQEs it posts do), so a poller
//     asleep on the wait ring would never learn of it.
//   - A thread that does not enter its ring for long, running one fiber that never yields or blocked in a system call
//     (tern::blocking), would hold its connections' data. The monitor (monitor_tick: at each of its 20-60 us looks
//     while tern::blocking calls run, else once a 10 ms period) signals (kNudgeSignal, SIGURG) an owner whose ring has
//     had work waiting kNudgeAfterNs (200 us) with no run since, and the handler runs the work (IoStats::nudges). The
//     price: a system call that a signal interrupts and SA_RESTART does not restart (nanosleep, poll, epoll_wait,
//     socket timeouts) returns EINTR inside tern::blocking, as Go's preemption signal makes its programs see; and
//     beside blocking calls the other connections still wait for nudges (tern-echo's /health p99 1.28 ms against 0.76
//     ms with the default rings, docs/performance.md). Hence off by default.
//   - A ring belongs to the thread that made it, so a thread's ring is never handed to another after it exits.
//
// Against the epoll backend (figures in docs/performance.md): fewer system calls per request and no more CPU, a better
// tail under many connections, and slightly lower throughput there. The cost is wakeups: a receive's completion work
// runs only on the thread that armed it, so an M that runs dry finds only what other threads' work has posted, parks,
// and is woken by the next arrival on any of its connections, where with epoll the M that runs dry takes up to 128
// ready connections of any thread from the shared epoll.
//
// Requires (probed by create(): ring setup, features, every opcode and registration used): Linux 6.0+ with
// IORING_FEAT_FAST_POLL, NODROP and EXT_ARG, opcodes RECV, SEND, SENDMSG, CONNECT, ACCEPT, POLL_ADD,
// eventfd registration and synchronous cancellation. Buffer rings (5.19+), multishot receives (6.0+) and futex waits
// (6.7+) are used where present (a kernel that rejects a multishot receive turns them off for the poller's lifetime).
//
// The definition, by concept: uring_setup.cc (probe, create, teardown, each thread's ring, open and close),
// uring_poller.cc (readiness waits, cancellation, reaping, the poller role, park), uring_recv.cc (reads: the multishot
// receive, one-shot receives), uring_send.cc (write, writev), uring_accept.cc (accept, connect); uring_internal.h
// holds what they share (user_data tags, budgets, helpers, the Op and ListenState records, submit/run/run_until).
//
//   auto p = netpoll::UringPoller::create();            // error text says what the kernel lacks
//   if (!p) fallback(p.error().message());
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/spin_lock.h"
#include "netpoll/desc_table.h"
#include "netpoll/io_backend.h"
#include "netpoll/uring_ring.h"
#include "netpoll/wait_slot.h"
#include "scheduler/poller.h"

namespace tern::netpoll {

class UringPoller final : public sched::Poller, public IoBackend {
 public:
  // Rings (threads with their own ring) per poller; beyond this, threads share the fallback ring. One per M, and a
  // runtime has at most sched::kMaxProcs Ms running fibers.
  static constexpr int kMaxRings = 1024;
  // Connections a listener takes into the process ahead of accept() calls: the result of the one accept in flight,
  // when the accept() that submitted it timed out first (the next accept() returns it). The epoll backend takes none.
  static constexpr size_t kMaxAcceptAhead = 1;

  // Probes io_uring and builds the poller; the error says what is missing.
  // park_in_ring: idle Ms sleep in their own rings (park()) where the kernel has IORING_OP_FUTEX_WAIT.
  // deferred: each thread's ring is created SINGLE_ISSUER | DEFER_TASKRUN (Config::uring_defer) where the kernel has
  // it and idle Ms sleep in their rings (park_in_ring, futex waits); see "Deferred rings" above.
  static Result<std::unique_ptr<UringPoller>> create(bool park_in_ring = true, bool deferred = false);
  // The rings are deferred (create's `deferred`, granted).
  bool deferred() const { return defer_; }
  // Empty if io_uring can serve as a backend here, else why not.
  static std::string probe();
  // Closes what fibers discarded with the runtime left open: descriptors, and connections accepted but not taken.
  ~UringPoller() override;

  // Test-only: when set, park() calls it on the parking thread right before it sleeps in io_uring_enter, after it has
  // decided how (tests/netpoll/uring_park_test.cc widens the window between that decision and the sleep with it).
  static inline std::atomic<void (*)()> park_enter_hook{nullptr};

  // sched::Poller
  size_t poll(int64_t timeout_ns, sched::GList& out) override;
  void wake() override;
  bool has_waiters() const override { return waiters_.load(std::memory_order_relaxed) > 0; }
  const char* name() const override { return "uring"; }
  void thread_parked(bool parked) override;
  // Deferred rings: signals (kNudgeSignal) each owner that left completion work waiting for kNudgeAfterNs, busy with
  // one fiber or blocked in the kernel; its handler runs the work.
  void monitor_tick(int64_t now_ns) override;
  // How long a deferred ring's work may wait unrun before its owner is nudged. The monitor looks every 20-60 us while
  // tern::blocking calls run (an M inside one holds its ring's work) and every 10 ms otherwise, so the wait is about
  // this long in the first case and one to two periods in the second.
  static constexpr int64_t kNudgeAfterNs = 200'000;
  bool park(std::atomic<uint32_t>* word, sched::GList& out) override;

  // IoBackend
  int socket_flags() const override { return 0; }
  Result<Desc*> open(int fd, bool listening) override;
  void close(Desc* d) override;
  ssize_t read(Desc* d, void* buf, size_t len, int64_t deadline_ns) override;
  ssize_t write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) override;
  ssize_t writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) override;
  int connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) override;
  int accept(Desc* d, int64_t deadline_ns) override;

 private:
  struct Op;
  struct ListenState;
  void trim_own_ring();
  // Data a multishot receive delivered and no read has taken yet: part of provided buffer `bid` of `ring`.
  struct Chunk {
    Ring* ring;
    uint32_t bid;
    uint32_t start;  // where the piece starts in its buffer (not 0 where buffers are consumed incrementally)
    uint32_t len;
    uint32_t off;  // read so far, from start
  };
  // A connection's multishot receive (see read()). The reaper appends, the one reader takes; `mu` guards all but the
  // last three fields, which are the reader's own. A SpinLock: every section under it is a few dozen instructions (a
  // request's copy out of a buffer at most) and none blocks, and a request takes it about three times, where
  // std::mutex's lock and unlock cost 5.9% of tern-echo's instructions on this backend (callgrind, 2026-12-08).
  struct RecvState {
    SpinLock mu;
    std::vector<Chunk> chunks;  // [head, size) not yet read; cleared whenever emptied, so it stops growing
    size_t head = 0;
    Ring* ring = nullptr;    // the ring the multishot is armed on
    bool armed = false;      // a multishot receive is in flight
    bool throttled = false;  // cancelled because its unread chunks reached kMaxUnreadChunks
    bool nobufs = false;     // it ended because the ring's buffers were all taken: the next read uses its own buffer
    bool eof = false;
    int error = 0;  // ended by this errno; reported once
    WaitSlot slot;  // the reader, or close() waiting for the final completion
    // The reader's own (read and written by it alone, without mu): whether the connection reads in bulk, one-shot
    // into the caller's buffer (uring_recv.cc, kBulkRead), and what decides it.
    bool bulk = false;
    uint8_t small_reads = 0;  // consecutive reads of under kSmallRead while bulk
    uint32_t run_bytes = 0;   // taken from the multishot's buffers since the reader last waited for data
  };
  struct UringDesc : Desc {
    ListenState* listen = nullptr;
    bool read_waits = false;  // the last read had to wait for data (read(): whether to try a plain receive first)
    RecvState recv;
  };

  explicit UringPoller(int efd);
  Ring* thread_ring();
  Ring* adopt_ring();
  template <class Prep>
  Ring* submit(Prep&& prep, uint64_t user_data);
  // Submits an operation with no deadline and parks until it completes; its result, or kResubmit.
  template <class Prep>
  int run(Op& op, sched::WaitReason why, Prep&& prep);
  // Submits an operation that references no memory of the caller's once submitted, and parks until it completes or
  // deadline_ns passes: its result, kResubmit, or -ETIMEDOUT, at the deadline whatever the kernel is doing.
  template <class Prep>
  int run_until(int64_t deadline_ns, sched::WaitReason why, Prep&& prep);
  // Waits (POLL_ADD) until fd has `events`: the poll mask, -ETIMEDOUT at the deadline, or -errno.
  int wait_ready(int fd, short events, int64_t deadline_ns, sched::WaitReason why);
  // A send with a deadline: waits for room, then sends without blocking; `send` returns bytes or -errno
  // (netpoll/sys.h).
  template <class Send>
  ssize_t send_ready(int fd, int64_t deadline_ns, Send&& send);
  void cancel(Ring* r, uint64_t user_data);
  // This thread's ring of this poller, if it has one (no ring is made).
  Ring* own_ring();
  // Wakes a deferred ring's owner to make the cancellations queued for it: a ring message (a CQE it must run).
  void kick(Ring* r);
  // The owner of a deferred ring, before reaping it: makes the cancellations others queued and runs the completion
  // work waiting for it.
  void owner_work(Ring* r);
  size_t poll_in_own_ring(Ring* r, int64_t timeout_ns, sched::GList& out);
  // Reaps r's completions until `budget` fibers are readied; r->cq_mu held.
  size_t reap(Ring* r, sched::GList& out, size_t budget = SIZE_MAX);
  // reap() under r->cq_mu (waiting for it), then readies the fibers from here; with a budget, completions left over
  // get a blocking poller (wake()).
  void reap_ready(Ring* r, size_t budget = SIZE_MAX);
  size_t reap_all(sched::GList& out, bool wait_for_locks);
  void wake_if_left(int count);
  size_t complete(Ring* r, const io_uring_cqe* cqe, sched::GList& out);
  void wait_disarmed(ListenState* ls);
  ssize_t read_once(UringDesc* d, void* buf, size_t len, int64_t deadline_ns, bool select);
  size_t take_chunks(RecvState& rs, void* buf, size_t len, std::unique_lock<SpinLock>& lk);
  void recv_disarm(UringDesc* d);
  void recv_cancel_wait(UringDesc* d, std::unique_lock<SpinLock>& lk);

  const uint64_t id_;  // tells this poller's thread-local ring cache apart from another runtime's
  int efd_;
  std::atomic<bool> wake_pending_{false};
  std::atomic<int64_t> waiters_{0};
  std::atomic<bool> multishot_recv_{true};  // cleared if the kernel rejects multishot receives

  std::mutex wait_mu_;  // the one blocking poller: wait_ring_ and efd_armed_
  io_uring wait_ring_{};
  bool wait_ring_ok_ = false;
  bool efd_armed_ = false;
  // The kernel has IORING_OP_FUTEX_WAIT (6.7): a parked M sleeps in its own ring (park()).
  bool futex_park_ = false;
  bool defer_ = false;  // threads' rings are deferred (create())

  std::mutex rings_mu_;  // owners_, and adding to rings_
  std::vector<std::shared_ptr<Ring>> owners_;
  std::shared_ptr<Ring> shared_;
  std::atomic<Ring*> rings_[kMaxRings] = {};  // lock-free scan for reapers
  std::atomic<int> nrings_{0};
  std::atomic<uint32_t> reap_start_{0};

  DescTable<UringDesc> descs_;
};

}  // namespace tern::netpoll
