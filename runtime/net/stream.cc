// runtime/net/stream.cc: net::Stream: reads, writes and their deadlines.
#include "runtime/net/stream.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "netpoll/io_backend.h"
#include "runtime/metrics/runtime_metrics.h"
#include "scheduler/park.h"

namespace tern::net {
namespace {

// iovecs handed to one writev: enough for any realistic gather list, small enough for the stack (IOV_MAX is 1024).
constexpr int kIovBatch = 64;

std::error_code timed_out() {
  return errno_code(ETIMEDOUT);
}

}  // namespace

Stream::Stream(Stream&& o) noexcept
    : io_(std::exchange(o.io_, nullptr)),
      d_(std::exchange(o.d_, nullptr)),
      opened_(std::exchange(o.opened_, false)),
      rd_deadline_(o.rd_deadline_),
      wr_deadline_(o.wr_deadline_) {
  gate_.take(o.gate_);
}

Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    close();
    io_ = std::exchange(o.io_, nullptr);
    d_ = std::exchange(o.d_, nullptr);
    opened_ = std::exchange(o.opened_, false);
    gate_.take(o.gate_);
    rd_deadline_ = o.rd_deadline_;
    wr_deadline_ = o.wr_deadline_;
  }
  return *this;
}

Result<Stream> Stream::adopt(netpoll::IoBackend* io, int fd, bool nodelay) {
  if (nodelay) {
    int one = 1;
    // Best effort: it fails only for sockets that are not TCP, which then simply have no Nagle to turn off.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  Result<netpoll::Desc*> d = io->open(fd, /*listening=*/false);
  if (!d) {
    ::close(fd);
    return d.error();
  }
  metrics::connections_open().add(1);
  return Stream(io, *d);
}

std::error_code Stream::enter() {
  // Every operation passes here first: a fiber marked by the monitor yields, before the gate, so that a close()
  // meanwhile need not wait for it to be scheduled again.
  if (sched::in_fiber()) sched::preempt_point();
  if (!gate_.enter()) return opened_ ? Errc::closed : Errc::not_open;
  if (!sched::in_fiber()) {
    gate_.leave();
    return Errc::not_in_fiber;
  }
  return {};
}

std::error_code Stream::failed(std::error_code ec) const {
  return gate_.is_shut() ? make_error_code(Errc::closed) : ec;
}

IoResult Stream::read_until(void* buf, size_t len, int64_t deadline, int64_t now) {
  if (auto ec = enter()) return {0, ec};
  CloseGate::Inside in(gate_);
  if (expired(deadline, now)) return {0, timed_out()};
  ssize_t n = io_->read(d_, buf, len, deadline);
  if (n < 0) return {0, failed(errno_code(static_cast<int>(-n)))};
  // The end of stream close()'s shutdown makes is not the peer's: report the close.
  if (n == 0 && len > 0 && gate_.is_shut()) return {0, Errc::closed};
  return {static_cast<size_t>(n), {}};
}

IoResult Stream::read_full_until(void* buf, size_t len, int64_t deadline) {
  if (auto ec = enter()) return {0, ec};
  CloseGate::Inside in(gate_);
  auto* p = static_cast<char*>(buf);
  size_t got = 0;
  while (got < len) {
    if (expired(deadline)) return {got, failed(timed_out())};
    ssize_t n = io_->read(d_, p + got, len - got, deadline);
    if (n < 0) return {got, failed(errno_code(static_cast<int>(-n)))};
    if (n == 0) return {got, failed(Errc::eof)};
    got += static_cast<size_t>(n);
  }
  return {got, {}};
}

IoResult Stream::write_all_until(const void* buf, size_t len, int64_t deadline) {
  if (auto ec = enter()) return {0, ec};
  CloseGate::Inside in(gate_);
  const auto* p = static_cast<const char*>(buf);
  size_t put = 0;
  while (put < len) {
    if (expired(deadline)) return {put, failed(timed_out())};
    ssize_t n = io_->write(d_, p + put, len - put, deadline);
    if (n < 0) return {put, failed(errno_code(static_cast<int>(-n)))};
    put += static_cast<size_t>(n);
  }
  return {put, {}};
}

IoResult Stream::writev_until(const iovec* iov, int iovcnt, int64_t deadline, int64_t now) {
  if (auto ec = enter()) return {0, ec};
  CloseGate::Inside in(gate_);
  size_t want = 0;
  for (int i = 0; i < iovcnt; i++) want += iov[i].iov_len;
  size_t put = 0;
  int first = 0;    // the first buffer not fully written
  size_t skip = 0;  // bytes of iov[first] already written
  while (put < want) {
    if (expired(deadline, now)) return {put, failed(timed_out())};
    now = -1;  // the caller's reading serves the first check only
    iovec batch[kIovBatch];
    int k = 0;
    for (int i = first; i < iovcnt && k < kIovBatch; i++) {
      if (iov[i].iov_len == 0) continue;
      batch[k] = iov[i];
      if (i == first) {
        batch[k].iov_base = static_cast<char*>(batch[k].iov_base) + skip;
        batch[k].iov_len -= skip;
      }
      k++;
    }
    ssize_t n = io_->writev(d_, batch, k, deadline);
    if (n < 0) return {put, failed(errno_code(static_cast<int>(-n)))};
    put += static_cast<size_t>(n);
    auto left = static_cast<size_t>(n);
    while (first < iovcnt && left >= iov[first].iov_len - skip) {
      left -= iov[first].iov_len - skip;
      skip = 0;
      first++;
    }
    skip += left;
  }
  return {put, {}};
}

std::error_code Stream::shutdown(Shutdown how) {
  if (!gate_.enter()) return opened_ ? Errc::closed : Errc::not_open;
  CloseGate::Inside in(gate_);
  int h = how == Shutdown::read ? SHUT_RD : how == Shutdown::write ? SHUT_WR : SHUT_RDWR;
  if (::shutdown(d_->fd, h) < 0) return errno_code(errno);
  return {};
}

std::error_code Stream::close() {
  // Shutting both directions down wakes whatever the fibers inside wait for, in either backend: a parked read sees
  // end of stream, a parked or in-flight send EPIPE, an io_uring receive or send in flight completes; and it stays
  // shut, so an operation between its gate check and its system call fails at once rather than park. ENOTCONN (the
  // peer reset it) needs nothing woken.
  if (!gate_.shut([this] { ::shutdown(d_->fd, SHUT_RDWR); })) return {};
  io_->close(d_);
  metrics::connections_open().add(-1);
  d_ = nullptr;
  io_ = nullptr;
  return {};
}

int Stream::fd() const {
  if (!gate_.enter()) return -1;
  int fd = d_->fd;
  gate_.leave();
  return fd;
}

Result<Address> Stream::local_addr() const {
  if (!gate_.enter()) return opened_ ? Errc::closed : Errc::not_open;
  CloseGate::Inside in(gate_);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(d_->fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return errno_code(errno);
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Result<Address> Stream::peer_addr() const {
  if (!gate_.enter()) return opened_ ? Errc::closed : Errc::not_open;
  CloseGate::Inside in(gate_);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(d_->fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return errno_code(errno);
  return Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace tern::net
