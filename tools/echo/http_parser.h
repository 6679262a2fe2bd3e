// tools/echo/http_parser.h: a zero-allocation HTTP/1.x request parser for tern-echo and the epoll responder peer.
//
// The parser is stateless: it parses one request from the front of a buffer and returns views into that buffer. A
// connection loop calls it repeatedly on what it has read; a request that is not complete yet is simply parsed again
// once more bytes arrive (headers are bounded by Limits::max_header_bytes, and once the headers are known the result
// says how many bytes the whole request needs, so a large body is not rescanned per read).
//
//   tern::http::Request req;
//   auto r = tern::http::parse_request(buffered, limits, req);
//   switch (r.state) {
//     case ParseState::kDone:     handle(req); buffered.remove_prefix(r.consumed); break;
//     case ParseState::kNeedMore: read_more(/* at least */ r.need); break;
//     case ParseState::kError:    reply(r.status); close(); break;   // 400, 413, 431, 501 or 505
//   }
//
// What it accepts (RFC 9112): a request line "METHOD SP target SP HTTP/1.d", header fields "name: value", lines ended
// by CRLF or a bare LF, empty lines before the request line (ignored), HTTP/1.0 and HTTP/1.1 (a later 1.x minor
// version is treated as 1.1). Bodies are framed by Content-Length only: any Transfer-Encoding (chunked included) is
// answered 501, so a body the parser cannot frame is never misread as the next request. HTTP/1.1 requests must carry
// exactly one Host field. The target is the origin-form ("/path?query"), the absolute-form ("http://host/path?query",
// read as its origin-form, as RFC 9112 section 3.2.2 says a server must accept) or "*"; anything else is 400. Obsolete
// line folding, whitespace before the colon, control characters, a malformed or
// conflicting Content-Length are 400.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tern::http {

// The limit on the request line plus header fields (431 beyond it): 8 KiB, what nginx allows per header
// buffer by default and far above what wrk or curl send.
inline constexpr size_t kMaxHeaderBytes = 8 << 10;
// Default limit on a request body (413 beyond it).
inline constexpr size_t kDefaultMaxBodyBytes = 1 << 20;

struct Limits {
  size_t max_header_bytes = kMaxHeaderBytes;
  size_t max_body_bytes = kDefaultMaxBodyBytes;
};

// One parsed request. Every view points into the buffer given to parse_request().
struct Request {
  std::string_view method;
  std::string_view target;  // as sent in origin-form: "/work?us=10" (for "http://host/work?us=10" too)
  std::string_view path;    // target up to '?': "/work"
  std::string_view query;   // after '?', without it: "us=10"
  int minor_version = 1;    // 0 for HTTP/1.0, 1 for HTTP/1.1 and later 1.x
  bool keep_alive = true;   // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"
  std::string_view body;
};

enum class ParseState { kDone, kNeedMore, kError };

struct ParseResult {
  ParseState state = ParseState::kNeedMore;
  // kDone: bytes the request occupied (leading empty lines, headers and body); the next request starts there.
  size_t consumed = 0;
  // kNeedMore: the total number of bytes the request needs once its headers are known, 0 while they are not.
  size_t need = 0;
  // kError: the status to answer with before closing the connection.
  int status = 0;
};

// Parses the request at the front of `in`. On kDone fills `req`; otherwise `req` is unspecified.
ParseResult parse_request(std::string_view in, const Limits& limits, Request& req);

// The value of `key` in a query string ("us=10&x=1"), or an empty view with found == false.
struct QueryValue {
  bool found = false;
  std::string_view value;
};
QueryValue query_param(std::string_view query, std::string_view key);

// Parses an unsigned decimal with no sign, spaces or suffix; false on anything else or on overflow.
bool parse_u64(std::string_view s, uint64_t& out);

}  // namespace tern::http
