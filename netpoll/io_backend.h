// netpoll/io_backend.h: the fiber-blocking socket operations a poller backend offers to runtime/net.
//
// Each backend (netpoll/epoll_poller.h, netpoll/uring_poller.h) is both a sched::Poller, which the scheduler drives,
// and an IoBackend, which runtime/net calls. An operation runs on the calling fiber: it returns at once when the
// kernel can do the work now, and otherwise parks the fiber until the poller readies it or its deadline passes. The
// runtime's scheduler never blocks in these calls.
//
//   netpoll::IoBackend* io = netpoll::current_backend();   // nullptr outside fibers or without netpoll
//   Result<netpoll::Desc*> d = io->open(fd, /*listening=*/false);
//   ssize_t n = io->read(*d, buf, sizeof buf, deadline_ns); // >= 0 bytes, or -errno (-ETIMEDOUT at the deadline)
//   io->close(*d);                                          // deregisters and closes fd
//
// Contract for callers: all operations run on fibers of the runtime whose poller owns the descriptor; at most one
// fiber reads (or accepts) and one fiber writes (or connects) a descriptor at a time; close() does not race with
// another operation on the same descriptor. Deadlines are CLOCK_MONOTONIC nanoseconds, -1 for none.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace tern::netpoll {

// The per-descriptor record a backend keeps. Backends derive from it; runtime/net sees only `fd`.
struct Desc {
  int fd = -1;
  // Bookkeeping of the backend's DescTable (netpoll/desc_table.h).
  uint32_t index = 0;
  std::atomic<uint32_t> gen{0};  // bumped on release, so events addressed to an earlier user of the slot are dropped
  bool live = false;
};

// Counters a backend keeps (cumulative). Only rare events are counted here: a shared counter on the read/write path
// would be a cache line every core writes (docs/architecture.md invariant 6).
struct IoStats {
  uint64_t timeouts = 0;         // operations that ended at their deadline
  uint64_t accept_backoffs = 0;  // accept() back-offs after EMFILE/ENFILE/ENOBUFS/ENOMEM
  uint64_t buffer_misses = 0;    // io_uring: receives that found the provided buffers all in use and were retried
  uint64_t recv_throttles = 0;   // io_uring: connection receives paused because their reader fell behind
  uint64_t recv_moves = 0;       // io_uring: connection receives moved off the ring of a thread that went to sleep
  uint64_t ring_parks = 0;       // io_uring: sleeps of an idle M in its own ring (Config::uring_park)
  uint64_t recv_bulk = 0;        // io_uring: connections moved from the multishot receive to direct ones (bulk reads)
  uint64_t ring_polls = 0;       // io_uring, deferred rings: blocking polls made asleep in the poller's own ring
  uint64_t kicks = 0;            // io_uring, deferred rings: ring messages sent to wake an owner for a cancellation
  uint64_t nudges = 0;           // io_uring, deferred rings: signals to an owner that left completion work waiting
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;

  // Extra flags for socket(2) so that the descriptor suits this backend (SOCK_NONBLOCK for a readiness backend).
  virtual int socket_flags() const = 0;

  // Registers `fd` (a connected, connecting or listening stream socket) and takes ownership of it. On failure the
  // error's code is the errno, and the fd still belongs to the caller.
  virtual Result<Desc*> open(int fd, bool listening) = 0;
  // Deregisters and closes the fd, frees `d`.
  virtual void close(Desc* d) = 0;

  // Each returns bytes moved (>= 0; a read of 0 is end of stream) or -errno; -ETIMEDOUT once the deadline passes.
  // write() and writev() may move fewer bytes than asked.
  virtual ssize_t read(Desc* d, void* buf, size_t len, int64_t deadline_ns) = 0;
  virtual ssize_t write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) = 0;
  virtual ssize_t writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) = 0;
  // Connects d's socket; 0 or -errno.
  virtual int connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) = 0;
  // Accepts one connection on a listening descriptor: the new fd (close-on-exec, with socket_flags()) or -errno.
  virtual int accept(Desc* d, int64_t deadline_ns) = 0;

  IoStats io_stats() const {
    return {timeouts_.load(std::memory_order_relaxed),      accept_backoffs_.load(std::memory_order_relaxed),
            buffer_misses_.load(std::memory_order_relaxed), recv_throttles_.load(std::memory_order_relaxed),
            recv_moves_.load(std::memory_order_relaxed),    ring_parks_.load(std::memory_order_relaxed),
            recv_bulk_.load(std::memory_order_relaxed),     ring_polls_.load(std::memory_order_relaxed),
            kicks_.load(std::memory_order_relaxed),         nudges_.load(std::memory_order_relaxed)};
  }
  void count_accept_backoff() { accept_backoffs_.fetch_add(1, std::memory_order_relaxed); }

 protected:
  std::atomic<uint64_t> timeouts_{0};
  std::atomic<uint64_t> accept_backoffs_{0};
  std::atomic<uint64_t> buffer_misses_{0};
  std::atomic<uint64_t> recv_throttles_{0};
  std::atomic<uint64_t> recv_moves_{0};
  std::atomic<uint64_t> ring_parks_{0};
  std::atomic<uint64_t> recv_bulk_{0};
  std::atomic<uint64_t> ring_polls_{0};
  std::atomic<uint64_t> kicks_{0};
  std::atomic<uint64_t> nudges_{0};
};

// The backend of the calling fiber's runtime; nullptr outside fibers, or if the runtime's poller is not a netpoll one.
IoBackend* current_backend();

}  // namespace tern::netpoll
