// runtime/net/listener.cc: net::listen and Listener::accept on the current backend.
#include "runtime/net/listener.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "netpoll/io_backend.h"
#include "runtime/go.h"
#include "scheduler/park.h"

namespace tern::net {
namespace {

bool exhausted(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// accept(2): "Linux accept() passes already-pending network errors on the new socket as an error code from accept().
// [...] For reliable operation the application should detect the network errors defined for the protocol after
// accept() and treat them like EAGAIN by retrying."
bool retry_silently(int err) {
  switch (err) {
    case ECONNABORTED:
    case EINTR:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case ENETDOWN:
    case ENETUNREACH:
    case EOPNOTSUPP:
      return true;
    default:
      return false;
  }
}

}  // namespace

Listener::Listener(Listener&& o) noexcept
    : io_(std::exchange(o.io_, nullptr)),
      d_(std::exchange(o.d_, nullptr)),
      opened_(std::exchange(o.opened_, false)),
      nodelay_(o.nodelay_),
      local_(o.local_),
      backoffs_(o.backoffs_.load(std::memory_order_relaxed)) {
  gate_.take(o.gate_);
}

Listener& Listener::operator=(Listener&& o) noexcept {
  if (this != &o) {
    close();
    io_ = std::exchange(o.io_, nullptr);
    d_ = std::exchange(o.d_, nullptr);
    opened_ = std::exchange(o.opened_, false);
    gate_.take(o.gate_);
    nodelay_ = o.nodelay_;
    local_ = o.local_;
    backoffs_.store(o.backoffs_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  return *this;
}

std::error_code Listener::close() {
  // shutdown(SHUT_RD) takes a listening socket out of the listening state and wakes its waiters: an accept parked on
  // epoll sees it readable, an io_uring accept in flight completes with EINVAL, and any accept(2) after it fails
  // at once with EINVAL, so one that passed the gate just before cannot park.
  if (!gate_.shut([this] { ::shutdown(d_->fd, SHUT_RD); })) return {};
  io_->close(d_);
  d_ = nullptr;
  io_ = nullptr;
  return {};
}

int Listener::fd() const {
  if (!gate_.enter()) return -1;
  int fd = d_->fd;
  gate_.leave();
  return fd;
}

Result<Stream> Listener::accept_until(int64_t deadline) {
  if (!opened_) return Errc::not_open;
  if (!sched::in_fiber()) return Errc::not_in_fiber;
  std::chrono::nanoseconds backoff = kAcceptBackoffMin;
  for (;;) {
    {
      // In the gate only while on the socket: a back-off nap outside it, so that a close() then need not wait out
      // the nap (which nothing wakes).
      if (!gate_.enter()) return Errc::closed;
      CloseGate::Inside in(gate_);
      for (;;) {
        if (expired(deadline)) return gate_.is_shut() ? Errc::closed : errno_code(ETIMEDOUT);
        int fd = io_->accept(d_, deadline);
        if (fd >= 0) return Stream::adopt(io_, fd, nodelay_);
        // What close()'s shutdown makes accept say (EINVAL) is not the error to report.
        if (gate_.is_shut()) return Errc::closed;
        int err = -fd;
        if (retry_silently(err)) continue;
        if (!exhausted(err)) return errno_code(err);
        io_->count_accept_backoff();
        break;
      }
    }
    backoffs_.fetch_add(1, std::memory_order_relaxed);
    std::chrono::nanoseconds nap = backoff;
    if (deadline >= 0) nap = std::min(nap, std::chrono::nanoseconds(std::max<int64_t>(0, deadline - sched::now_ns())));
    tern::sleep_for(nap);
    backoff = std::min<std::chrono::nanoseconds>(backoff * 2, kAcceptBackoffMax);
  }
}

Result<Listener> listen(const Address& addr, const ListenOptions& opts) {
  if (addr.empty()) return Errc::bad_address;
  if (!sched::in_fiber()) return Errc::not_in_fiber;
  netpoll::IoBackend* io = netpoll::current_backend();
  if (io == nullptr) return Errc::no_poller;
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | io->socket_flags(), 0);
  if (fd < 0) return errno_code(errno);
  auto fail = [fd](int err) {
    ::close(fd);
    return errno_code(err);
  };
  int one = 1;
  if (opts.reuse_addr && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) return fail(errno);
  if (opts.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) return fail(errno);
  if (::bind(fd, addr.sockaddr_ptr(), addr.size()) < 0) return fail(errno);
  if (::listen(fd, opts.backlog) < 0) return fail(errno);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return fail(errno);
  Result<netpoll::Desc*> d = io->open(fd, /*listening=*/true);
  if (!d) return fail(d.error().code().value());
  Listener l;
  l.io_ = io;
  l.d_ = *d;
  l.opened_ = true;
  CloseGate open_gate(/*open=*/true);
  l.gate_.take(open_gate);
  l.nodelay_ = opts.nodelay;
  l.local_ = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return l;
}

Result<Listener> listen(std::string_view addr, const ListenOptions& opts) {
  auto a = Address::parse(addr);
  if (!a) return a.error();
  return listen(*a, opts);
}

}  // namespace tern::net
