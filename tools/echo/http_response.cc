// tools/echo/http_response.cc: see http_response.h.
#include "tools/echo/http_response.h"

#include <charconv>

namespace tern::http {
namespace {

// Room for the header bytes of a few dozen pipelined small responses before the first growth; wrk's pipelining
// scripts send 16 at a time.
constexpr size_t kInitialBufBytes = 4 << 10;
// Referenced bodies per batch before the first growth.
constexpr size_t kInitialRefs = 8;

}  // namespace

std::string_view reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

ResponseBatch::ResponseBatch() {
  buf_.reserve(kInitialBufBytes);
  refs_.reserve(kInitialRefs);
  iov_.reserve(2 * kInitialRefs + 1);
}

void ResponseBatch::add_head(const Response& r, size_t body_size, std::string_view connection) {
  char num[24];
  buf_.append("HTTP/1.1 ");
  auto [end, ec] = std::to_chars(num, num + sizeof num, r.status);
  (void)ec;
  buf_.append(num, end);
  buf_.push_back(' ');
  buf_.append(reason_phrase(r.status));
  buf_.append("\r\nContent-Type: ");
  buf_.append(r.content_type);
  buf_.append("\r\nContent-Length: ");
  auto [lend, lec] = std::to_chars(num, num + sizeof num, body_size);
  (void)lec;
  buf_.append(num, lend);
  if (!r.allow.empty()) {
    buf_.append("\r\nAllow: ");
    buf_.append(r.allow);
  }
  if (r.retry_after_s > 0) {
    buf_.append("\r\nRetry-After: ");
    auto [rend, rec] = std::to_chars(num, num + sizeof num, r.retry_after_s);
    (void)rec;
    buf_.append(num, rend);
  }
  if (!connection.empty()) {
    buf_.append("\r\nConnection: ");
    buf_.append(connection);
  }
  buf_.append("\r\n\r\n");
}

void ResponseBatch::add_body(std::string_view body) {
  if (body.size() <= kInlineBodyMax) {
    buf_.append(body);
  } else {
    refs_.push_back(Ref{buf_.size(), body});
  }
}

void ResponseBatch::add(const Response& r, const Request& req) {
  std::string_view connection;
  if (!req.keep_alive || r.close) {
    connection = "close";
  } else if (req.minor_version == 0) {
    connection = "keep-alive";
  }
  size_t before = buf_.size();
  add_head(r, r.body.size(), connection);
  bytes_ += buf_.size() - before;
  if (req.method != "HEAD") {
    add_body(r.body);
    bytes_ += r.body.size();
  }
  count_++;
}

void ResponseBatch::add_error(int status, int retry_after_s) {
  Response r;
  r.status = status;
  r.retry_after_s = retry_after_s;
  std::string_view phrase = reason_phrase(status);
  size_t before = buf_.size();
  // The body is the reason phrase and a newline, written in place so an error costs no allocation either.
  add_head(r, phrase.size() + 1, "close");
  buf_.append(phrase);
  buf_.push_back('\n');
  bytes_ += buf_.size() - before;
  count_++;
}

std::span<const iovec> ResponseBatch::iovecs() {
  iov_.clear();
  size_t from = 0;
  for (const Ref& ref : refs_) {
    if (ref.buf_end > from) iov_.push_back(iovec{buf_.data() + from, ref.buf_end - from});
    iov_.push_back(iovec{const_cast<char*>(ref.body.data()), ref.body.size()});
    from = ref.buf_end;
  }
  if (buf_.size() > from) iov_.push_back(iovec{buf_.data() + from, buf_.size() - from});
  return iov_;
}

void ResponseBatch::clear() {
  buf_.clear();
  refs_.clear();
  iov_.clear();
  count_ = 0;
  bytes_ = 0;
}

}  // namespace tern::http
