// tools/load/response.h: where an HTTP/1.1 response ends in a stream of bytes, for a client that reads replies to
// requests it sent on a keep-alive connection.
//
//   ResponseReader r;
//   auto f = r.frame(buf, len);   // kNeedMore until the status line, headers and Content-Length body are all in
//   if (f.state == Frame::kDone) { status = f.status; consume(f.length); }
//
// Bounded: headers over kMaxHeader bytes or a body over max_body are errors, so a hostile or broken server cannot
// make the client buffer without limit. Chunked bodies are read too (tern-echo sends Content-Length, other servers may
// not); a response with neither ends at the connection's close (kUntilClose).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tern::load {

struct Frame {
  enum State { kNeedMore, kDone, kUntilClose, kBad } state = kNeedMore;
  int status = 0;
  size_t length = 0;   // kDone: bytes from the start of the buffer to the end of this response
  std::string error;   // kBad: what was wrong
  bool close = false;  // the server said Connection: close
};

class ResponseReader {
 public:
  static constexpr size_t kMaxHeader = 64 << 10;
  explicit ResponseReader(size_t max_body = 64 << 20) : max_body_(max_body) {}
  // Looks at the buffered bytes (which begin at a response's first byte).
  Frame frame(const char* p, size_t n) const;

 private:
  size_t max_body_;
};

}  // namespace tern::load
