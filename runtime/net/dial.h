// runtime/net/dial.h: tern::net::dial, connecting a TCP stream from a fiber.
//
//   auto s = tern::net::dial("127.0.0.1:8080", std::chrono::seconds(2));
//   if (!s) return s.error();          // std::errc::connection_refused, std::errc::timed_out, ...
//   s->write_all(req.data(), req.size());
//
// The connect parks the fiber, not the thread. IPv4 and IPv6 by the address's family; TCP_NODELAY on unless turned
// off. Must run on a fiber of a Runtime (else Errc::not_in_fiber). A numeric address connects at once; a host name is
// resolved first (runtime/net/resolve.h: getaddrinfo on the blocking pool, within the same timeout) and its
// addresses are tried in turn, each with an equal share of the time left (at least kMinDialShare); the error is the
// first address's, or the lookup's, and names the host: "dial db:5432: lookup db: no such host".
//
//   auto s = tern::net::dial("localhost:6379", std::chrono::seconds(2));
#pragma once

#include <chrono>
#include <string_view>

#include "runtime/net/address.h"
#include "runtime/net/deadline.h"
#include "runtime/net/error.h"
#include "runtime/net/stream.h"

namespace tern::net {

// Go's minimum share of a dial's time for one of several addresses (net/dial.go, partialDeadline): below it, a
// connect to an address that is merely slow would be cut short for the sake of the ones after it.
inline constexpr std::chrono::seconds kMinDialShare{2};

struct DialOptions {
  bool nodelay = true;  // TCP_NODELAY: request/response traffic should not wait for Nagle
};

Result<Stream> dial(const Address& addr, std::chrono::nanoseconds timeout = kNoTimeout, const DialOptions& opts = {});
Result<Stream> dial(std::string_view addr, std::chrono::nanoseconds timeout = kNoTimeout, const DialOptions& opts = {});

}  // namespace tern::net
