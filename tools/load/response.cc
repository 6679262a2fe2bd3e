// tools/load/response.cc: finding where an HTTP/1.1 response ends (see response.h).
#include "tools/load/response.h"

#include <strings.h>

#include <cstdlib>

namespace tern::load {
namespace {

bool header_is(std::string_view line, std::string_view name) {
  return line.size() > name.size() && line[name.size()] == ':' &&
         strncasecmp(line.data(), name.data(), name.size()) == 0;
}

std::string_view value_of(std::string_view line, size_t name_len) {
  std::string_view v = line.substr(name_len + 1);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

bool starts_ci(std::string_view v, std::string_view word) {
  return v.size() >= word.size() && strncasecmp(v.data(), word.data(), word.size()) == 0;
}

bool parse_size(std::string_view s, int base, size_t* out) {
  if (s.empty() || s.size() > 16) return false;
  size_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (base == 16 && c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (base == 16 && c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = v * static_cast<size_t>(base) + static_cast<size_t>(d);
  }
  *out = v;
  return true;
}

Frame bad(std::string why) {
  Frame f;
  f.state = Frame::kBad;
  f.error = std::move(why);
  return f;
}

}  // namespace

Frame ResponseReader::frame(const char* p, size_t n) const {
  const std::string_view buf(p, n);
  const size_t head_end = buf.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (n > kMaxHeader) return bad("response headers over 64 KiB");
    return {};
  }
  const std::string_view head = buf.substr(0, head_end);
  if (head.size() < 12 || (head.substr(0, 9) != "HTTP/1.1 " && head.substr(0, 9) != "HTTP/1.0 "))
    return bad("not an HTTP/1.x status line");
  size_t status = 0;
  if (!parse_size(head.substr(9, 3), 10, &status) || status < 100 || status > 999) return bad("bad status code");
  Frame f;
  f.status = static_cast<int>(status);
  size_t content_length = 0;
  bool have_length = false, chunked = false;
  size_t at = head.find("\r\n");
  while (at != std::string_view::npos) {
    const size_t next = head.find("\r\n", at + 2);
    const std::string_view line = head.substr(at + 2, (next == std::string_view::npos ? head.size() : next) - at - 2);
    if (header_is(line, "content-length")) {
      if (!parse_size(value_of(line, 14), 10, &content_length)) return bad("bad Content-Length");
      have_length = true;
    } else if (header_is(line, "transfer-encoding")) {
      chunked = starts_ci(value_of(line, 17), "chunked");
    } else if (header_is(line, "connection")) {
      f.close = starts_ci(value_of(line, 10), "close");
    }
    at = next;
  }
  size_t pos = head_end + 4;
  if (status / 100 == 1 || status == 204 || status == 304) {  // no body
    f.state = Frame::kDone;
    f.length = pos;
    return f;
  }
  if (chunked) {
    for (;;) {
      const size_t eol = buf.find("\r\n", pos);
      if (eol == std::string_view::npos) return n - pos > 64 ? bad("chunk size line too long") : Frame{};
      std::string_view size_text = buf.substr(pos, eol - pos);
      if (const size_t semi = size_text.find(';'); semi != std::string_view::npos)
        size_text = size_text.substr(0, semi);
      size_t size = 0;
      if (!parse_size(size_text, 16, &size)) return bad("bad chunk size");
      if (size > max_body_) return bad("chunk over the body limit");
      pos = eol + 2;
      if (size == 0) {  // trailers, then an empty line
        const size_t end = buf.find("\r\n", pos);
        if (end == std::string_view::npos) return {};
        if (end != pos) {
          const size_t trailers_end = buf.find("\r\n\r\n", pos);
          if (trailers_end == std::string_view::npos) return {};
          pos = trailers_end + 4;
        } else {
          pos = end + 2;
        }
        f.state = Frame::kDone;
        f.length = pos;
        return f;
      }
      if (n < pos + size + 2) return {};
      if (buf.substr(pos + size, 2) != "\r\n") return bad("chunk not followed by CRLF");
      pos += size + 2;
    }
  }
  if (!have_length) {
    f.state = Frame::kUntilClose;
    f.length = pos;
    return f;
  }
  if (content_length > max_body_) return bad("Content-Length over the body limit");
  if (n < pos + content_length) return {};
  f.state = Frame::kDone;
  f.length = pos + content_length;
  return f;
}

}  // namespace tern::load
