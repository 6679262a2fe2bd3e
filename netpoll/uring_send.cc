// netpoll/uring_send.cc: io_uring sends: write and writev, tried without blocking first; send_ready for a deadline.
#include "netpoll/uring_poller.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "netpoll/sys.h"
#include "netpoll/uring_internal.h"

namespace tern::netpoll {

using uring_detail::kMaxTransfer;
using uring_detail::kResubmit;
using uring_detail::kWouldBlock;
using uring_detail::try_now;

ssize_t UringPoller::write(Desc* d, const void* buf, size_t len, int64_t deadline_ns) {
  int fd = d->fd;
  len = std::min(len, kMaxTransfer);
  if (ssize_t n = try_now(sys::send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL)); n != kWouldBlock) return n;
  if (deadline_ns >= 0) {
    // As for read_once(): a send the kernel runs later reads the caller's buffer, so with a deadline the ring only
    // says when there is room.
    return send_ready(fd, deadline_ns, [&] { return sys::send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL); });
  }
  for (;;) {
    Op op;
    int res = run(op, sched::WaitReason::kNetWrite,
                  [&](io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL); });
    if (res != kResubmit) return res;
  }
}

ssize_t UringPoller::writev(Desc* d, const iovec* iov, int iovcnt, int64_t deadline_ns) {
  int fd = d->fd;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(iovcnt);
  if (ssize_t n = try_now(sys::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL)); n != kWouldBlock) return n;
  if (deadline_ns >= 0) {
    return send_ready(fd, deadline_ns, [&] { return sys::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); });
  }
  for (;;) {
    Op op;
    // SENDMSG rather than WRITEV for MSG_NOSIGNAL: a peer that went away must not raise SIGPIPE.
    int res = run(op, sched::WaitReason::kNetWrite,
                  [&](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL); });
    if (res != kResubmit) return res;
  }
}

template <class Send>
ssize_t UringPoller::send_ready(int fd, int64_t deadline_ns, Send&& send) {
  for (;;) {
    int ready = wait_ready(fd, POLLOUT, deadline_ns, sched::WaitReason::kNetWrite);
    if (ready < 0 && ready != -ETIMEDOUT) return ready;
    // Even at the deadline: room that is there is used.
    if (ssize_t n = try_now(send()); n != kWouldBlock) return n;
    if (ready == -ETIMEDOUT) {
      timeouts_.fetch_add(1, std::memory_order_relaxed);
      return -ETIMEDOUT;
    }
  }
}

}  // namespace tern::netpoll
