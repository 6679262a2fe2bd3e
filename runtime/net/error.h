// runtime/net/error.h: how tern::net reports errors: values, never exceptions.
//
// Operations that produce a value return tern::Result<T> (base/result.h), whose Error holds a std::error_code: system
// errors in std::system_category (compare with std::errc: a deadline gives std::errc::timed_out, a reset peer
// std::errc::connection_reset), tern::net's own conditions as net::Errc. Reads and writes return IoResult, the bytes
// moved beside the error_code, because a transfer can fail part way.
//
//   tern::net::IoResult r = stream.read(buf, sizeof buf);
//   if (r.ec == std::errc::timed_out) { ... }      // the stream stays usable
//   else if (!r) return r.ec;
//   else if (r.n == 0) { ... }                     // end of stream
//
//   tern::Result<tern::net::Stream> s = tern::net::dial(addr, 1s);
//   if (!s) log(s.error().message());
#pragma once

#include <cstddef>
#include <system_error>
#include <type_traits>

#include "base/result.h"

namespace tern::net {

enum class Errc {
  eof = 1,        // the stream ended before read_full() had all it asked for
  not_in_fiber,   // called outside a fiber of a Runtime: tern::net operations must run on fibers
  no_poller,      // the calling fiber's runtime has no network poller
  not_open,       // the Stream or Listener was never opened (default-constructed, or moved from)
  bad_address,    // an address that does not parse
  no_such_host,   // resolve/dial: the name service does not know the host (the message names it)
  lookup_failed,  // resolve/dial: the name service could not answer (the message names the host and says why)
  too_long,       // a BufReader line or peek longer than its maximum size (runtime/net/buffered.h)
  closed,         // the Stream or Listener was closed: before the operation, or during it by another fiber (Go's
                  // net.ErrClosed)
};

const std::error_category& net_category();
std::error_code make_error_code(Errc e);

// The outcome of a read or write: bytes moved, and the error that stopped it (n may be non-zero with an error: the
// bytes moved before it).
struct [[nodiscard]] IoResult {
  size_t n = 0;
  std::error_code ec;

  explicit operator bool() const { return !ec; }
};

}  // namespace tern::net

template <>
struct std::is_error_code_enum<tern::net::Errc> : std::true_type {};
