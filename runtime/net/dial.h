// runtime/net/dial.h: tern::net::dial, connecting a TCP stream from a fiber.
//
//   auto s = tern::net::dial("127.0.0.1:8080", std::chrono::seconds(2));
//   if (!s) return s.error();          // std::errc::connection_refused, std::errc::timed_out, ...
//   s->write_all(req.data(), req.size());
//
// The connect parks the fiber, not the thread. IPv4 and IPv6 by the address's family; TCP_NODELAY on unless turned
// off. Must run on a fiber of a Runtime (else Errc::not_in_fiber).
#pragma once

#include <chrono>
#include <string_view>

#include "runtime/net/address.h"
#include "runtime/net/deadline.h"
#include "runtime/net/error.h"
#include "runtime/net/stream.h"

namespace tern::net {

struct DialOptions {
  bool nodelay = true;  // TCP_NODELAY: request/response traffic should not wait for Nagle
};

Result<Stream> dial(const Address& addr, std::chrono::nanoseconds timeout = kNoTimeout, const DialOptions& opts = {});
Result<Stream> dial(std::string_view addr, std::chrono::nanoseconds timeout = kNoTimeout, const DialOptions& opts = {});

}  // namespace tern::net
