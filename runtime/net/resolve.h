// runtime/net/resolve.h: tern::net::resolve, host names to addresses from a fiber, and what dial uses for names.
//
//   auto addrs = tern::net::resolve("db.internal:5432", 2s);   // Result<std::vector<Address>>
//   if (!addrs) log(addrs.error().message());                   // "lookup db.internal: no such host"
//   auto s = tern::net::dial("db.internal:5432", 2s);           // resolves, then tries each address in turn
//
// getaddrinfo blocks its thread for as long as the name service takes (seconds, when a DNS server does not answer), so
// it runs on spawn_blocking's pool (runtime/blocking.h) and the fiber parks until the answer or its deadline, whichever
// comes first: a processor never waits for DNS. getaddrinfo cannot be cancelled, so a lookup that outlives its
// deadline runs on in the pool and its answer is dropped when it comes (the lookup's state is shared with the pool
// thread, which frees it last). Addresses come in getaddrinfo's order (RFC 6724: the ones most likely to work first).
// A numeric address (and "localhost", which Address::parse maps to 127.0.0.1) takes no lookup at all: resolve() returns
// it as is. Errors say which host: Errc::no_such_host for a name the name service does not know, Errc::lookup_failed
// for one it could not answer for (with getaddrinfo's reason), std::errc::timed_out at the deadline,
// Errc::bad_address for text that is not host:port with a numeric port.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "runtime/net/address.h"
#include "runtime/net/deadline.h"
#include "runtime/net/error.h"

namespace tern::net {

// "host:port" or "[v6 literal]:port"; the port is numeric. Must run on a fiber of a Runtime (else
// Errc::not_in_fiber): the wait parks it.
Result<std::vector<Address>> resolve(std::string_view host_port, std::chrono::nanoseconds timeout = kNoTimeout);

namespace detail {

// resolve() with a CLOCK_MONOTONIC deadline (-1: none), for dial, which shares its deadline with the connects.
Result<std::vector<Address>> resolve_until(std::string_view host_port, int64_t deadline);

// Test-only: when set, the pool thread calls it right before getaddrinfo (tests make a lookup outlast its deadline).
inline std::atomic<void (*)()> lookup_hook{nullptr};

}  // namespace detail

}  // namespace tern::net
