// netpoll/epoll_poller.h: the epoll backend of sched::Poller and netpoll::IoBackend.
//
// Readiness, edge-triggered, after Go's netpoll_epoll.go: every socket is registered once, at open(), for input and
// output (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) with its poll descriptor's (index, generation) tag as the event
// data. An operation tries its syscall first on the non-blocking fd and parks on the descriptor's reader or writer
// WaitSlot only on EAGAIN; an edge notifies the slot, which readies the parked fiber or latches for the next attempt.
// So a read or write whose data or buffer space is there costs exactly its syscall, and one epoll_wait serves every
// readiness that arrived since the last one. One exception, for request-response traffic: a read that had to wait and
// then emptied the receive queue (got less than it asked) makes the next read park first, since its data can only come
// with a new edge; that saves the receive failing with EAGAIN after every response (uring_poller.h's read_waits does
// the same), and it is what brought the backend's -c100 tail to the epoll responder's (docs/performance.md).
//
// poll() may run on several threads at once (epoll_wait is thread-safe); wake() writes an eventfd that stays
// registered level-triggered, and only a blocking poll() reads it, so a non-blocking poll cannot swallow the wakeup
// meant for the blocked one (Go's netpollBreak does the same).
//
//   auto p = netpoll::EpollPoller::create();            // Result<std::unique_ptr<EpollPoller>>
//   opts.poller = p->get();  // sched::SchedOptions, before the Sched is constructed
#pragma once

#include <atomic>
#include <memory>

#include "base/result.h"
#include "netpoll/desc_table.h"
#include "netpoll/io_backend.h"
#include "netpoll/wait_slot.h"
#include "scheduler/poller.h"

namespace tern::netpoll {

class EpollPoller final : public sched::Poller, public IoBackend {
 public:
  static Result<std::unique_ptr<EpollPoller>> create();
  // Closes the fds of descriptors still open (their fibers were discarded with the runtime).
  ~EpollPoller() override;

  // sched::Poller
  size_t poll(int64_t timeout_ns, sched::GList& out) override;
  void wake() override;
  bool has_waiters() const override { return waiters_.load(std::memory_order_relaxed) > 0; }
  const char* name() const override { return "epoll"; }

  // IoBackend
  int socket_flags() const override;
  Result<Desc*> open(int fd, bool listening) override;
  void close(Desc* d) override;
  ssize_t read(Desc* d, void* buf, size_t len, int64_t deadline_ns) override;
  ssize_t write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) override;
  ssize_t writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) override;
  int connect(Desc* d, const sockaddr* addr, socklen_t len, int64_t deadline_ns) override;
  int accept(Desc* d, int64_t deadline_ns) override;

 private:
  // One cache line holds what a request touches (the descriptor, the flags, rd's state and deadline words); the slots'
  // timers, touched only when they are armed or fire, and the writer's slot follow.
  struct alignas(64) PollDesc : Desc {
    // The last read waited for its data and then got less than it asked, so it emptied the receive queue: the
    // connection runs request-response, and the next read parks first instead of failing a receive (Stream::read).
    bool rd_drained = false;
    // The peer hung up or the socket failed (EPOLLRDHUP, EPOLLHUP, EPOLLERR); set by the poller before it notifies
    // rd. An edge that coalesced with the one that woke the last read may have brought it, so a read that finds it
    // set never parks first: its receive returns the end of stream or the error.
    std::atomic<bool> rd_hup{false};
    WaitSlot rd;  // the reader or acceptor
    WaitSlot wr;  // the writer or connector
  };

  EpollPoller(int epfd, int efd);
  // Parks on `slot` after EAGAIN; false at the deadline (counted).
  bool await(WaitSlot& slot, int64_t deadline_ns, sched::WaitReason why);

  int epfd_;
  int efd_;                                // wake() eventfd
  std::atomic<bool> wake_pending_{false};  // a wake() write not yet read: later wake()s skip the syscall
  std::atomic<int64_t> waiters_{0};
  DescTable<PollDesc> table_;
};

}  // namespace tern::netpoll
