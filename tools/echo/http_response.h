// tools/echo/http_response.h: HTTP/1.1 responses collected into a batch that one writev sends.
//
// A connection parses every complete request it has read, adds one response per request to its batch, then sends the
// batch with a single write and clears it. The batch keeps its capacity across clear(), so a connection in steady
// state allocates nothing per request.
//
//   tern::http::ResponseBatch out;
//   out.add({.status = 200, .body = "OK\n"}, req);
//   out.add({.status = 200, .body = req.body}, req);   // a large body is referenced, not copied
//   stream.writev(out.iovecs());
//   out.clear();
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tools/echo/http_parser.h"

namespace tern::http {

// Bodies up to this size are copied into the batch: one iovec for a run of small responses beats one per body, and a
// copy of a few KiB costs less than the extra iovec bookkeeping. Larger bodies are referenced in place.
inline constexpr size_t kInlineBodyMax = 4 << 10;

struct Response {
  int status = 200;
  std::string_view content_type = "text/plain";
  std::string_view body;
  std::string_view allow;  // the Allow field of a 405, empty otherwise
  int retry_after_s = 0;   // a Retry-After field (a 503 of load shedding), 0 for none
  bool close = false;      // end the connection after it whatever the request asked (the server is draining)
};

// "OK", "Not Found", ...; "Unknown" for a status this server never sends.
std::string_view reason_phrase(int status);

class ResponseBatch {
 public:
  ResponseBatch();

  // Appends the response to `req`: "Connection: close" when the request does not keep the connection alive,
  // "Connection: keep-alive" for an HTTP/1.0 request that does, no body for HEAD. A body longer than kInlineBodyMax
  // must stay valid until the batch is cleared.
  void add(const Response& r, const Request& req);
  // Appends a response to a request that could not be parsed (or timed out, or was refused before it was read whole:
  // retry_after_s for a Retry-After field); the connection closes after it.
  void add_error(int status, int retry_after_s = 0);

  bool empty() const { return count_ == 0; }
  size_t count() const { return count_; }
  size_t bytes() const { return bytes_; }
  // The batch as iovecs; valid until the next add or clear.
  std::span<const iovec> iovecs();
  void clear();

 private:
  void add_head(const Response& r, size_t body_size, std::string_view connection);
  void add_body(std::string_view body);

  // Header bytes and inline bodies.
  std::string buf_;
  // A referenced body follows buf_[0, buf_end) (all of buf_ up to that point precedes it on the wire).
  struct Ref {
    size_t buf_end;
    std::string_view body;
  };
  std::vector<Ref> refs_;
  std::vector<iovec> iov_;
  size_t count_ = 0;
  size_t bytes_ = 0;
};

}  // namespace tern::http
