// netpoll/uring_ring.h: one io_uring instance of the io_uring backend, with its provided-buffer ring.
//
// The io_uring backend (netpoll/uring_poller.h) gives every thread that submits I/O a Ring of its own, so the
// submission queue has a single writer and needs no lock. Completions may be reaped by any thread, one at a time:
// `cq_mu` serialises reaping, and with it the producer side of the provided-buffer ring, because buffers go back to
// the kernel as their completions are reaped. Every Ring signals the poller's eventfd when it posts a completion, which
// is how a poller sleeping elsewhere learns of it.
//
//   auto r = netpoll::Ring::create(efd, /*shared=*/false);   // Result<std::unique_ptr<Ring>>
//   io_uring_sqe* sqe = (*r)->get_sqe();                      // owner thread (or under sq_mu if shared)
//   ...
//   std::lock_guard lk((*r)->cq_mu);                          // any thread
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "base/spin_lock.h"

namespace tern::netpoll {

// ASan builds: clears the shadow of memory just mapped (a no-op otherwise). This compiler's ASan does not clear
// shadow on mmap, so a fiber stack unmapped with live frames leaves its redzones behind at that address, and a ring or
// buffer mapped there later would look like stack memory to every access.
void unpoison_fresh_mapping(void* addr, size_t len);
void unpoison_fresh_mapping(io_uring* ring);  // the three mappings liburing made for `ring`

class Ring {
 public:
  // Submission entries. Operations are submitted one at a time as fibers issue them, so the queue never holds more
  // than a few entries; 256 leaves room for a burst from a shared ring.
  static constexpr unsigned kSqEntries = 256;
  // Completion entries: every parked operation of this thread can complete at once (1,000 connections on one M is
  // ordinary), and overflow, though not lossy (IORING_FEAT_NODROP), costs a syscall to flush.
  static constexpr unsigned kCqEntries = 8192;
  // The most io-wq workers (bounded and unbounded each) the kernel may start for this ring's thread: io_uring runs an
  // operation that cannot complete or poll without blocking on kernel threads of the process, by default up to
  // RLIMIT_NPROC of them (unbounded work), whose CPU a container's quota pays. tern's network operations all poll, so
  // io-wq sees only what cannot (none of tern-echo's requests); 4 keeps a stray flood from becoming hundreds of
  // threads. Linux 5.15; older kernels keep their own limits.
  static constexpr unsigned kIowqMaxWorkers = 4;
  // Provided buffers, shared by the ring's connections: a connection's multishot receive takes one each time data
  // arrives, and holds it until its reader has copied the data out. So the count bounds how many connections can have
  // data waiting to be read at once, and under a full load every connection may: with 1,000 connections on two rings,
  // 256 buffers per ring ran out on a fifth of all receives (each then costs a one-shot submission, and p99 latency
  // went from 12-15 ms to 27-30 ms: docs/performance.md). Small buffers keep that many cheap: a request fits in one,
  // and a larger one spans several. 2048 x 4 KiB = 8 MiB of address space per ring.
  //
  // Not all of it offered to the kernel at once: the kernel takes a ring's buffers in order, so with all 2048 in the
  // ring every one was written in turn and the whole 8 MiB became resident under any steady traffic (io_uring held
  // 36 MB after a -c1000 run where epoll held 19). The kernel is offered `supply` buffers beyond those the readers
  // hold (kInitialSupply, doubled each time a receive finds none, up to all; halved after a trim period with no
  // receive short), the rest wait in a stack whose top goes back first, so the same few buffers stay warm; and
  // buffers that stayed at the stack's bottom through a whole kTrimPeriodNs are handed back to the system (madvise
  // DONTNEED) when the ring's thread goes idle. Buffers offered to the kernel are never trimmed: it may write into
  // them at any moment (completion work runs on the ring's thread on any return to user space, interrupts included),
  // so a ring whose load needed all 2048 at once (-c1000 on two rings) keeps them resident until lighter traffic
  // takes them back out of the kernel's ring.
  //
  // Incremental consumption (IOU_PBUF_RING_INC, Linux 6.12), which the poller asks for and the kernel may not have:
  // a receive takes only the bytes it needs from the buffer at the head of the ring, and the next receive, of any
  // connection, continues in the same buffer; a completion with IORING_CQE_F_BUF_MORE says the kernel keeps filling
  // that buffer. A 40-byte request then takes 40 bytes and not a 4 KiB page, so 1,000 connections' requests fill a
  // handful of buffers (the -c1000 case above: 22 MB against 28). A buffer goes back to the stack when the kernel has
  // moved past it (a completion without BUF_MORE) and every piece of it has been recycled. The supply works as
  // above, from the same start: bodies of many KiB take whole buffers either way, and a smaller start (32 was tried)
  // ran short under bench/soak.sh's 64 KiB bodies and doubled its way to more memory than whole buffers. Never for a
  // shared ring: its completions may be posted by several threads, and the pieces' offsets are read from the
  // completions' order.
  static constexpr unsigned kBufSize = 4 << 10;
  static constexpr unsigned kBufCount = 2048;
  static constexpr unsigned kInitialSupply = 256;
  static constexpr int64_t kTrimPeriodNs = 1'000'000'000;
  static constexpr uint16_t kBufGroup = 0;

  // A ring whose completions signal `efd`. `shared`: submissions from several threads, serialised by sq_mu.
  // `incremental`: buffers consumed incrementally where the kernel can (never for a shared ring). `deferred`: created
  // IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the kernel can (6.1; never for a shared ring; deferred() says).
  static Result<std::unique_ptr<Ring>> create(int efd, bool shared, bool incremental = true, bool deferred = false);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* uring() { return &ring_; }
  bool shared() const { return shared_; }
  bool has_buffers() const { return br_ != nullptr; }
  // The provided buffers are consumed incrementally (IOU_PBUF_RING_INC).
  bool incremental() const { return inc_; }
  // Completions waiting to be reaped (a relaxed look at the shared tail; for deciding whether to take cq_mu).
  bool cq_pending() const;

  // Deferred task running (Config::uring_defer; UringPoller's "deferred rings"). Only the thread that created the ring
  // may submit to it or cancel on it (io_uring_register returns -EEXIST to any other), and the completion work of its
  // operations runs only when that thread enters the kernel with GETEVENTS (io_uring_get_events, a wait): until then
  // nothing is posted and its eventfd is not signalled. work_pending(): such work is queued (IORING_SQ_TASKRUN).
  bool deferred() const { return deferred_; }
  bool work_pending() const;
  // The owner's kernel thread id while it lives (0 after it exits), for the monitor's nudge
  // (UringPoller::monitor_tick); how many times the owner has run this ring's completion work; and what the monitor saw
  // at its last look (its own).
  std::atomic<int> owner_tid{0};
  std::atomic<uint64_t> work_runs{0};
  uint64_t monitor_runs = 0;
  int64_t monitor_since = 0;  // when the monitor first saw work waiting with no run since (0: none)
  // Cancellations asked for by other threads, which the owner makes (UringPoller::cancel, reap).
  void queue_cancel(uint64_t user_data);
  std::vector<uint64_t> take_cancels();  // the owner: what was queued (empty at the cost of one load if nothing)

  // The data of provided buffer `bid`. With cq_mu held: delivered() for each completion that carries
  // IORING_CQE_F_BUFFER, recycle() once for each piece it returned when its data has been copied out,
  // out_of_buffers() for a receive that found none.
  const char* buffer(unsigned bid) const { return bufs_ + static_cast<size_t>(bid) * kBufSize; }
  struct Piece {
    bool data;       // false: the completion delivered nothing (res <= 0); there is nothing to recycle
    unsigned bid;    // its buffer
    uint32_t start;  // where its res bytes start in the buffer
  };
  Piece delivered(uint32_t cqe_flags, int res);
  void recycle(unsigned bid);
  void out_of_buffers();
  // The classic mode's accounting for a buffer the kernel took (delivered() calls it); for tests.
  void taken();
  // With cq_mu held, by the ring's thread as it goes idle: at most once per kTrimPeriodNs, returns the pages of the
  // buffers that stayed unused (at the bottom of the spare stack) since the last call. The number of buffers returned.
  size_t trim_idle_buffers(int64_t now_ns);
  struct BufferStats {
    unsigned offered;   // in the kernel's ring
    unsigned supply;    // what the ring is topped up to
    unsigned spare;     // in the stack, not offered
    unsigned returned;  // of those, with their pages handed back
    unsigned filling;   // incremental: buffers the kernel has written into and not moved past
  };
  BufferStats buffer_stats() const;  // with cq_mu held

  std::mutex cq_mu;                // reapers; the buffer ring's producer side
  std::mutex sq_mu;                // submitters of a shared ring
  std::atomic<bool> owned{false};  // a thread submits here (owned rings only)
  // When its thread went to sleep with no work (Poller::thread_parked), or 0 while it runs.
  std::atomic<int64_t> owner_parked_since{0};
  // The owner's futex wait (UringPoller::park) is in flight: submitted, its completion not reaped yet.
  std::atomic<bool> park_armed{false};
  // Under cq_mu: the owner has decided to sleep in this ring (UringPoller::park) and has not reaped since it woke.
  // Meanwhile only the owner reaps here, so that every completion posted after its decision stays in the ring and
  // ends its sleep.
  bool owner_in_park = false;
  // Under cq_mu, deferred rings: a poll of the poller's eventfd is armed on this ring (UringPoller::poll, whose
  // owner sleeps here as the blocking poller).
  bool efd_armed = false;

 private:
  Ring() = default;
  void setup_buffers(bool incremental);
  void top_up();

  io_uring ring_{};
  bool live_ = false;  // set up: ring_ holds a ring fd
  bool shared_ = false;
  bool deferred_ = false;
  SpinLock cancel_mu_;
  std::vector<uint64_t> cancels_;  // under cancel_mu_
  std::atomic<bool> cancels_pending_{false};
  io_uring_buf_ring* br_ = nullptr;
  bool inc_ = false;
  char* bufs_ = nullptr;
  size_t br_bytes_ = 0;
  // The buffers' accounting, under cq_mu. spare_ is a stack (the top is reused first) holding every buffer neither
  // offered nor held by a reader; its entries below returned_ have had their pages handed back, and none below
  // spare_low_ has been used since the last trim.
  std::unique_ptr<uint16_t[]> spare_;
  unsigned nspare_ = 0;
  unsigned returned_ = 0;
  unsigned spare_low_ = 0;
  unsigned offered_ = 0;
  unsigned supply_ = kInitialSupply;
  // Incremental mode, per buffer: the bytes the kernel has written (where the next piece starts), the pieces
  // delivered and not recycled, and whether the kernel has moved past it.
  std::unique_ptr<uint32_t[]> fill_;
  std::unique_ptr<uint16_t[]> pieces_;
  std::unique_ptr<bool[]> retired_;
  unsigned filling_ = 0;
  bool short_in_period_ = false;  // out_of_buffers() since the last trim
  int64_t last_trim_ns_ = 0;
};

}  // namespace tern::netpoll
