// netpoll/uring_recv.cc: io_uring reads: the multishot receive (arm, take, move, disarm) and one-shot receives.
#include "netpoll/uring_poller.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include "netpoll/sys.h"
#include "netpoll/uring_internal.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"

namespace tern::netpoll {

using uring_detail::kMaxTransfer;
using uring_detail::kMaxUnreadChunks;
using uring_detail::kResubmit;
using uring_detail::kSubmitReapBudget;
using uring_detail::kTagRecv;
using uring_detail::kWouldBlock;
using uring_detail::try_now;

namespace {

// A receive armed by a thread that has slept this long with no work moves to the thread of its next read that waits.
// Most sleeps between bursts of load are far shorter (a median of 51 us, p75 224 us at -c1000), and moving a receive
// costs a cancellation, a wakeup of the sleeper to complete it, and a new submission.
constexpr int64_t kMoveAfterNs = 2'000'000;

// Reads up to this size arm a connection's multishot receive (request-sized reads: the server side of request-response
// traffic). Larger reads are bulk transfers: receiving straight into the caller's buffer beats many small copies.
constexpr size_t kMultishotMaxRead = 16 << 10;

// A connection whose reads take at least this much from its multishot receive's buffers between two waits for data
// (a large message, or a stream) moves to one-shot receives into the caller's buffer (RecvState::bulk): the data
// would otherwise be copied twice, by the kernel into provided buffers and by take_chunks into the caller's. It moves
// back to the multishot receive after kSmallReads reads in a row of under kSmallRead bytes (one alone is the tail of
// a large message). bulk, small_reads and run_bytes are the reader's own: read and written by it alone, unlocked.
constexpr size_t kBulkRead = 8 << 10;
constexpr ssize_t kSmallRead = 1 << 10;
constexpr uint8_t kSmallReads = 4;

bool owner_asleep(const Ring* r) {
  int64_t since = r->owner_parked_since.load(std::memory_order_relaxed);
  return since != 0 && sched::now_ns() - since > kMoveAfterNs;
}

}  // namespace

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
void UringPoller::recv_cancel_wait(UringDesc* d, std::unique_lock<SpinLock>& lk) {
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
      rs.slot.wait(-1, waiters_, sched::WaitReason::kIoWait);
    } else {
      usleep(100);  // a Stream closed outside the runtime's fibers
    }
  }
}

ssize_t UringPoller::read(Desc* d, void* buf, size_t len, int64_t deadline_ns) {
  // A zero length means "the whole buffer" to a buffer-select receive, which would then copy a provided buffer's
  // worth into a caller's empty one.
  if (len == 0) return 0;
  len = std::min(len, kMaxTransfer);
  auto* ud = static_cast<UringDesc*>(d);
  RecvState& rs = ud->recv;
  // After a read of n bytes (or an error) not taken from the multishot's buffers, on a bulk connection.
  auto note_direct_read = [&rs](ssize_t n) {
    if (n >= kSmallRead) {
      rs.small_reads = 0;
    } else if (++rs.small_reads >= kSmallReads) {
      rs.bulk = false;
      rs.small_reads = 0;
    }
  };
  for (;;) {
    bool arm = false;
    bool once = false;
    bool select = true;
    // Outside rs.mu, a spin lock: a thread's first operation creates its ring (system calls).
    Ring* const here = thread_ring();
    {
      std::unique_lock lk(rs.mu);
      if (rs.head < rs.chunks.size()) {
        const bool armed = rs.armed;  // read under rs.mu: the reaper clears it
        const size_t n = take_chunks(rs, buf, len, lk);
        // Whether a message is large shows in what arrives between two waits, not in one read: the reader may wake
        // at the first of its pieces.
        rs.run_bytes = static_cast<uint32_t>(std::min<size_t>(rs.run_bytes + n, kBulkRead));
        if (rs.run_bytes >= kBulkRead && armed && !rs.bulk) {
          rs.bulk = true;
          rs.small_reads = 0;
          recv_bulk_.fetch_add(1, std::memory_order_relaxed);
        }
        return static_cast<ssize_t>(n);
      }
      if (rs.error != 0) {
        int e = rs.error;
        rs.error = 0;
        return -e;
      }
      if (rs.eof) return 0;
      if (rs.armed && owner_asleep(rs.ring) && rs.ring != here) {
        // The receive's completion work runs on the thread that armed it, and that thread sleeps with no work: every
        // arrival would wake it just to run that work. Move the receive here, to a thread that is running.
        recv_moves_.fetch_add(1, std::memory_order_relaxed);
        recv_cancel_wait(ud, lk);
        continue;
      }
      if (rs.armed && rs.bulk) {
        // Bulk reads: end the multishot receive (what it delivered before the cancellation is read first).
        recv_cancel_wait(ud, lk);
        continue;
      }
      if (!rs.armed) {
        // Nothing in flight and nothing unread, so a receive of any kind keeps the byte order.
        if (!ud->read_waits) {
          // The previous read did not wait (or this is the first): the data may be there already. Request-response
          // traffic alternates, so after a read that had to wait the next would only fail here; it goes to the ring.
          lk.unlock();
          if (ssize_t n = try_now(sys::recv(ud->fd, buf, len, MSG_DONTWAIT)); n != kWouldBlock) {
            if (rs.bulk) note_direct_read(n);
            return n;
          }
          ud->read_waits = true;
          continue;
        }
        Ring* r = here;
        if (rs.nobufs || rs.bulk || len > kMultishotMaxRead || !multishot_recv_.load(std::memory_order_relaxed) ||
            !r->has_buffers()) {
          once = true;
          select = !rs.nobufs && !rs.bulk;  // out of buffers, or bulk: this read receives into its own
          rs.nobufs = false;
        } else {
          rs.armed = arm = true;
          rs.throttled = false;
          rs.ring = r;
        }
      }
    }
    if (once) {
      const ssize_t n = read_once(ud, buf, len, deadline_ns, select);
      if (rs.bulk) note_direct_read(n);
      return n;
    }
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
    rs.run_bytes = 0;
    WaitSlot::Result woke;
    {
      sched::ResumeHint hint(buf);  // where the data goes; complete() records where it comes from
      woke = rs.slot.wait(deadline_ns, waiters_, sched::WaitReason::kNetRead);
    }
    if (woke == WaitSlot::kTimedOut) {
      // The receive stays armed: what arrives later waits for the next read. One last look for data that landed
      // right at the deadline.
      Ring* const now_here = thread_ring();  // the wait may have moved this fiber to another thread
      Ring* mine = nullptr;
      {
        std::unique_lock lk(rs.mu);
        if (rs.head < rs.chunks.size()) return static_cast<ssize_t>(take_chunks(rs, buf, len, lk));
        if (rs.armed && rs.ring == now_here) mine = now_here;
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
size_t UringPoller::take_chunks(RecvState& rs, void* buf, size_t len, std::unique_lock<SpinLock>& lk) {
  size_t n = 0;
  Chunk done[kMaxUnreadChunks];
  size_t ndone = 0;
  while (n < len && rs.head < rs.chunks.size() && ndone < kMaxUnreadChunks) {
    Chunk& c = rs.chunks[rs.head];
    size_t k = std::min<size_t>(len - n, c.len - c.off);
    std::memcpy(static_cast<char*>(buf) + n, c.ring->buffer(c.bid) + c.start + c.off, k);
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
      int ready = wait_ready(fd, POLLIN, deadline_ns, sched::WaitReason::kNetRead);
      if (ready < 0 && ready != -ETIMEDOUT) return ready;
      // Even at the deadline: data that is in the socket is taken, not hidden by a timeout.
      if (ssize_t n = try_now(sys::recv(fd, buf, len, MSG_DONTWAIT)); n != kWouldBlock) return n;
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
    int res = run(op, sched::WaitReason::kNetRead, [&](io_uring_sqe* sqe) {
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

}  // namespace tern::netpoll
