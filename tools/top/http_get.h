// tools/top/http_get.h: one blocking HTTP/1.1 GET over a plain socket, for tern-top's scrapes (a plain program: no
// runtime, no fibers).
//
//   auto body = tern::top::http_get(*tern::net::Address::parse("127.0.0.1:9100"), "/metrics", 2000);
//
// The whole exchange (connect, send, read to the end) must finish within timeout_ms. A status other than 200, a
// response without a length that does not end with the connection, chunked encoding (which tern's endpoint does not
// send), or a body over max_body bytes is an error that says which.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/result.h"
#include "runtime/net/address.h"

namespace tern::top {

Result<std::string> http_get(const net::Address& addr, std::string_view path, int timeout_ms,
                             size_t max_body = 64 << 20);

}  // namespace tern::top
