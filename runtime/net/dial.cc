// runtime/net/dial.cc: net::dial: a non-blocking connect parked on the poller, with a timeout; names resolved first.
#include "runtime/net/dial.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <string>

#include "netpoll/io_backend.h"
#include "runtime/net/resolve.h"
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
  if (auto a = Address::parse(addr)) return dial(*a, timeout, opts);  // numeric: no lookup
  if (!sched::in_fiber()) return Errc::not_in_fiber;
  int64_t deadline = deadline_after(kNoDeadline, timeout);
  const std::string what = "dial " + std::string(addr);
  auto addrs = detail::resolve_until(addr, deadline);
  if (!addrs) return addrs.error().wrap(what);
  // One address at a time, in the resolver's order (Go's dialSerial), each with an equal share of the time left but at
  // least kMinDialShare of it, so a first address that never answers does not take the whole deadline from the rest.
  std::optional<Error> first;
  const size_t n = addrs->size();
  for (size_t i = 0; i < n; i++) {
    std::chrono::nanoseconds t = kNoTimeout;
    if (deadline >= 0) {
      int64_t left = deadline - sched::now_ns();
      if (left <= 0) break;
      t = std::max(std::chrono::nanoseconds(left / static_cast<int64_t>(n - i)),
                   std::min(std::chrono::nanoseconds(left), std::chrono::nanoseconds(kMinDialShare)));
    }
    auto s = dial((*addrs)[i], t, opts);
    if (s) return s;
    if (!first) first = s.error().wrap((*addrs)[i].to_string());
  }
  if (!first) return Error(errno_code(ETIMEDOUT), what + ": timed out");
  return first->wrap(what);
}

}  // namespace tern::net
