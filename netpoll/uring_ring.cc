// netpoll/uring_ring.cc: one io_uring with its provided-buffer ring: setup, buffer recycling, teardown.
#include "netpoll/uring_ring.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "base/sanitizer.h"

namespace tern::netpoll {
namespace {

// The completion of a parked operation runs as task work on the thread that submitted it. By default the kernel
// interrupts that thread for it (an IPI, then the signal-delivery path, which takes the process's shared signal lock);
// an M running fibers makes system calls constantly, and cooperative task running lets the work wait for the next
// one instead. A sleeping submitter is still woken.
constexpr unsigned kCoopFlags = IORING_SETUP_COOP_TASKRUN;

// Linux 6.12's incremental buffer consumption; Debian 12's headers predate it (io_uring_buf_reg's `pad` is the flags
// field it gave a name). The values are the kernel's ABI.
constexpr uint16_t kPbufRingInc = 2;       // IOU_PBUF_RING_INC
constexpr uint32_t kCqeBufMore = 1U << 4;  // IORING_CQE_F_BUF_MORE

}  // namespace

void unpoison_fresh_mapping(void* addr, size_t len) {
#ifdef TERN_ASAN
  __asan_unpoison_memory_region(addr, len);
#else
  (void)addr;
  (void)len;
#endif
}

void unpoison_fresh_mapping(io_uring* ring) {
  unpoison_fresh_mapping(ring->sq.ring_ptr, ring->sq.ring_sz);
  unpoison_fresh_mapping(ring->cq.ring_ptr, ring->cq.ring_sz);
  unpoison_fresh_mapping(ring->sq.sqes, sizeof(io_uring_sqe) * ring->sq.ring_entries);
}

Result<std::unique_ptr<Ring>> Ring::create(int efd, bool shared, bool incremental, bool deferred) {
  std::unique_ptr<Ring> r(new Ring());
  r->shared_ = shared;
  io_uring_params p{};
  int rc = -EINVAL;
  if (deferred && !shared) {
    // Linux 6.1: the creating thread is the only one that may submit, and completion work waits for its GETEVENTS.
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    p.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, &r->ring_, &p);
    r->deferred_ = rc >= 0;
  }
  if (rc == -EINVAL) {
    p = io_uring_params{};
    // SUBMIT_ALL: one bad entry does not strand the ones behind it. CLAMP: a kernel with smaller limits still works.
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP | kCoopFlags;
    p.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, &r->ring_, &p);
  }
  if (rc == -EINVAL) {
    p = io_uring_params{};  // before 5.19: no cooperative task running, completions interrupt the submitter
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CLAMP;
    p.cq_entries = kCqEntries;
    rc = io_uring_queue_init_params(kSqEntries, &r->ring_, &p);
  }
  if (rc < 0) return errno_error(-rc, "io_uring_setup");
  r->live_ = true;
  unpoison_fresh_mapping(&r->ring_);
  rc = io_uring_register_eventfd(&r->ring_, efd);
  if (rc < 0) return errno_error(-rc, "io_uring_register_eventfd");
  unsigned iowq[2] = {kIowqMaxWorkers, kIowqMaxWorkers};      // bounded, unbounded
  (void)io_uring_register_iowq_max_workers(&r->ring_, iowq);  // before 5.15: EINVAL, and the kernel's own limits
  r->setup_buffers(incremental && !shared);
  return r;
}

void Ring::setup_buffers(bool incremental) {
  // Optional: a kernel without buffer rings (before 5.19) reads straight into the caller's buffer instead.
  size_t ring_bytes = sizeof(io_uring_buf) * kBufCount;
  size_t total = ring_bytes + static_cast<size_t>(kBufSize) * kBufCount;
  void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;
  unpoison_fresh_mapping(mem, total);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(mem);  // page-aligned, as the kernel requires
  reg.ring_entries = kBufCount;
  reg.bgid = kBufGroup;
  reg.pad = incremental ? kPbufRingInc : 0;
  int rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  if (rc == -EINVAL && incremental) {
    reg.pad = 0;  // before 6.12: whole buffers
    rc = io_uring_register_buf_ring(&ring_, &reg, 0);
  }
  if (rc < 0) {
    munmap(mem, total);
    return;
  }
  inc_ = reg.pad != 0;
  if (inc_) {
    fill_.reset(new uint32_t[kBufCount]());
    pieces_.reset(new uint16_t[kBufCount]());
    retired_.reset(new bool[kBufCount]());
  }
  br_ = static_cast<io_uring_buf_ring*>(mem);
  bufs_ = static_cast<char*>(mem) + ring_bytes;
  br_bytes_ = total;
  io_uring_buf_ring_init(br_);
  spare_.reset(new uint16_t[kBufCount]);
  // Buffer 0 on top: the first offered are the lowest, and the never-used rest have no pages to give back.
  for (unsigned i = 0; i < kBufCount; i++) spare_[i] = static_cast<uint16_t>(kBufCount - 1 - i);
  nspare_ = kBufCount;
  top_up();
  returned_ = spare_low_ = nspare_;
}

void Ring::top_up() {
  const int mask = io_uring_buf_ring_mask(kBufCount);
  int n = 0;
  while (offered_ < supply_ && nspare_ > 0) {
    const uint16_t bid = spare_[--nspare_];
    io_uring_buf_ring_add(br_, bufs_ + static_cast<size_t>(bid) * kBufSize, kBufSize, bid, mask, n++);
    offered_++;
  }
  if (n == 0) return;
  io_uring_buf_ring_advance(br_, n);
  returned_ = std::min(returned_, nspare_);
  spare_low_ = std::min(spare_low_, nspare_);
}

void Ring::taken() {
  if (offered_ > 0) offered_--;
  top_up();
}

Ring::Piece Ring::delivered(uint32_t cqe_flags, int res) {
  const unsigned bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
  if (!inc_) {
    taken();
    if (res > 0) return {true, bid, 0};
    recycle(bid);
    return {false, bid, 0};
  }
  // Incremental: nothing consumed stays in the kernel's ring (a commit of zero bytes does not move its head).
  if (res <= 0) return {false, bid, 0};
  const uint32_t start = fill_[bid];
  if (start == 0) filling_++;
  fill_[bid] = start + static_cast<uint32_t>(res);
  pieces_[bid]++;
  if ((cqe_flags & kCqeBufMore) == 0) {
    // The kernel has moved past it: it is out of the kernel's ring, and comes back to the stack with its last piece.
    retired_[bid] = true;
    filling_--;
    taken();
  }
  return {true, bid, start};
}

void Ring::recycle(unsigned bid) {
  if (inc_) {
    if (pieces_[bid] > 0) pieces_[bid]--;
    if (pieces_[bid] > 0 || !retired_[bid]) return;
    retired_[bid] = false;
    fill_[bid] = 0;
  }
  spare_[nspare_++] = static_cast<uint16_t>(bid);
  top_up();
}

void Ring::out_of_buffers() {
  // Every offered buffer was taken before its completions were reaped: a burst larger than the supply.
  supply_ = std::min(kBufCount, supply_ * 2);
  short_in_period_ = true;
  top_up();
}

size_t Ring::trim_idle_buffers(int64_t now_ns) {
  if (br_ == nullptr || now_ns - last_trim_ns_ < kTrimPeriodNs) return 0;
  last_trim_ns_ = now_ns;
  // A whole period with no receive short of buffers: the supply halves (the buffers offered beyond it are not
  // replaced as the kernel takes them, and once back in the stack can be trimmed in turn).
  if (!short_in_period_) supply_ = std::max(kInitialSupply, supply_ / 2);
  short_in_period_ = false;
  const unsigned from = returned_, to = spare_low_;
  spare_low_ = nspare_;
  if (to <= from) return 0;
  // Unused for a whole period: their order in the stack no longer matters, so they are sorted and handed back in runs
  // of adjacent buffers, one madvise a run.
  std::sort(spare_.get() + from, spare_.get() + to);
  for (unsigned i = from; i < to;) {
    unsigned j = i + 1;
    while (j < to && spare_[j] == spare_[j - 1] + 1) j++;
    madvise(bufs_ + static_cast<size_t>(spare_[i]) * kBufSize, static_cast<size_t>(j - i) * kBufSize, MADV_DONTNEED);
    i = j;
  }
  returned_ = to;
  return to - from;
}

Ring::BufferStats Ring::buffer_stats() const {
  return {offered_, supply_, nspare_, returned_, filling_};
}

Ring::~Ring() {
  // Closing the ring cancels whatever is still in flight; the kernel may finish tearing it down later, but it holds
  // its own references to the ring memory, and a provided buffer unmapped under it only turns a late receive into
  // EFAULT.
  // (A ring that failed setup has no fd: its zeroed struct would name fd 0.)
  if (live_) io_uring_queue_exit(&ring_);
  if (br_ != nullptr) munmap(br_, br_bytes_);
}

bool Ring::work_pending() const {
  return deferred_ && (__atomic_load_n(ring_.sq.kflags, __ATOMIC_RELAXED) & IORING_SQ_TASKRUN) != 0;
}

void Ring::queue_cancel(uint64_t user_data) {
  std::lock_guard lk(cancel_mu_);
  cancels_.push_back(user_data);
  cancels_pending_.store(true, std::memory_order_release);
}

std::vector<uint64_t> Ring::take_cancels() {
  std::vector<uint64_t> out;
  if (!cancels_pending_.load(std::memory_order_acquire)) return out;
  std::lock_guard lk(cancel_mu_);
  out.swap(cancels_);
  cancels_pending_.store(false, std::memory_order_relaxed);
  return out;
}

bool Ring::cq_pending() const {
  // io_uring_cq_ready() reads the head without an atomic load; here the head may be advancing under another thread's
  // cq_mu, so both words are read atomically.
  unsigned tail = __atomic_load_n(ring_.cq.ktail, __ATOMIC_ACQUIRE);
  unsigned head = __atomic_load_n(ring_.cq.khead, __ATOMIC_RELAXED);
  return tail != head || io_uring_cq_has_overflow(&ring_);
}

}  // namespace tern::netpoll
