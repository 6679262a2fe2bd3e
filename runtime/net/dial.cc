// runtime/net/dial.cc: net::dial: a non-blocking connect parked on the poller, with a timeout.
#include "runtime/net/dial.h"

#include <sys/socket.h>

#include <cerrno>

#include "netpoll/io_backend.h"
#include "scheduler/park.h"

namespace tern::net {

Result<Stream> dial(const Address& addr, std::chrono::nanoseconds timeout, const DialOptions& opts) {
  if (addr.empty()) return Errc::bad_address;
  if (!sched::in_fiber()) return Errc::not_in_fiber;
  netpoll::IoBackend* io = netpoll::current_backend();
  if (io == nullptr) return Errc::no_poller;
  int64_t deadline = deadline_after(kNoDeadline, timeout);
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | io->socket_flags(), 0);
  if (fd < 0) return errno_code(errno);
  auto s = Stream::adopt(io, fd, opts.nodelay);
  if (!s) return s.error();
  if (expired(deadline)) return errno_code(ETIMEDOUT);
  int rc = io->connect(s->d_, addr.sockaddr_ptr(), addr.size(), deadline);
  if (rc < 0) return errno_code(-rc);  // s closes the socket
  return s;
}

Result<Stream> dial(std::string_view addr, std::chrono::nanoseconds timeout, const DialOptions& opts) {
  auto a = Address::parse(addr);
  if (!a) return a.error();
  return dial(*a, timeout, opts);
}

}  // namespace tern::net
