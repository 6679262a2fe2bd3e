// tools/echo/http_parser.cc: see http_parser.h.
#include "tools/echo/http_parser.h"

#include <array>
#include <limits>

namespace tern::http {
namespace {

// RFC 9110 section 5.6.2: the characters of a token (methods, field names, Connection options), as a table because
// every byte of every method and field name goes through it.
constexpr std::array<bool, 256> kTokenChars = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; c++) t[c] = true;
  for (int c = 'a'; c <= 'z'; c++) t[c] = true;
  for (int c = 'A'; c <= 'Z'; c++) t[c] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
  return t;
}();

bool is_tchar(unsigned char c) {
  return kTokenChars[c];
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

// A field value may hold visible characters, obs-text (bytes >= 0x80), spaces and tabs; any other control character
// (a bare CR in particular) is a framing attack or garbage.
bool is_field_value(std::string_view s) {
  for (unsigned char c : s) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

bool iequals(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (size_t i = 0; i < a.size(); i++) {
    if (lower(a[i]) != lower_b[i]) return false;
  }
  return true;
}

// request-target: visible ASCII only; spaces end it and controls are never valid.
bool is_target(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

// The request-target as the origin-form the routes match (RFC 9112 section 3.2). The absolute-form
// "http://host:port/path?query", which a server must accept (3.2.2), names the same resource as "/path?query", and an
// empty path is "/": `target` is narrowed to that. The asterisk-form ("*", for OPTIONS) stays as it is. Anything else
// (no authority, another scheme, the authority-form that only CONNECT uses, a bare word) is not a target: false.
bool origin_of(std::string_view& target) {
  if (target[0] == '/' || target == "*") return true;
  size_t colon = target.find("://");
  if (colon == std::string_view::npos) return false;
  std::string_view scheme = target.substr(0, colon);
  if (!iequals(scheme, "http") && !iequals(scheme, "https")) return false;
  std::string_view rest = target.substr(colon + 3);
  size_t end = rest.find_first_of("/?");
  if (end == 0) return false;  // no authority
  // "http://h" is "/"; "http://h?x=1" keeps its query ("?x=1"), and its empty path is read as "/" (parse_request).
  target = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
  return true;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// The line starting at `pos` without its terminator (CRLF or LF); false if no terminator has arrived yet.
bool next_line(std::string_view in, size_t pos, std::string_view& line, size_t& next) {
  size_t nl = in.find('\n', pos);
  if (nl == std::string_view::npos) return false;
  size_t end = nl;
  if (end > pos && in[end - 1] == '\r') end--;
  line = in.substr(pos, end - pos);
  next = nl + 1;
  return true;
}

ParseResult error(int status) {
  ParseResult r;
  r.state = ParseState::kError;
  r.status = status;
  return r;
}

ParseResult need_more(size_t need) {
  ParseResult r;
  r.state = ParseState::kNeedMore;
  r.need = need;
  return r;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "HTTP/1.1" -> major 1, minor 1.
bool parse_version(std::string_view v, int& major, int& minor) {
  constexpr std::string_view kPrefix = "HTTP/";
  if (v.size() != kPrefix.size() + 3 || v.substr(0, kPrefix.size()) != kPrefix) return false;
  v.remove_prefix(kPrefix.size());
  if (!is_digit(v[0]) || v[1] != '.' || !is_digit(v[2])) return false;
  major = v[0] - '0';
  minor = v[2] - '0';
  return true;
}

}  // namespace

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (!is_digit(c)) return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  out = v;
  return true;
}

QueryValue query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view k = pair.substr(0, eq);
    if (k == key) return QueryValue{true, eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1)};
  }
  return QueryValue{};
}

ParseResult parse_request(std::string_view in, const Limits& limits, Request& req) {
  // Headers are only looked for within the limit, so a flood of header lines costs at most one limit's worth of
  // scanning per call; not finding their end there is 431 once the limit's worth of bytes has arrived.
  const std::string_view head = in.substr(0, limits.max_header_bytes);
  auto headers_incomplete = [&] { return in.size() >= limits.max_header_bytes ? error(431) : need_more(0); };

  size_t pos = 0;
  // RFC 9112 section 2.2: ignore empty lines before the request line (some clients send CRLF after a body).
  for (;;) {
    if (pos < head.size() && head[pos] == '\n') {
      pos++;
    } else if (pos + 1 < head.size() && head[pos] == '\r' && head[pos + 1] == '\n') {
      pos += 2;
    } else {
      break;
    }
  }

  std::string_view line;
  size_t next = 0;
  if (!next_line(head, pos, line, next)) return headers_incomplete();
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return error(400);
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return error(400);
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  int major = 0;
  int minor = 0;
  if (!is_token(method) || !is_target(target) || !parse_version(line.substr(sp2 + 1), major, minor)) {
    return error(400);
  }
  if (major != 1) return error(505);
  if (!origin_of(target)) return error(400);
  pos = next;

  int hosts = 0;
  bool have_length = false;
  uint64_t length = 0;
  bool transfer_encoding = false;
  bool conn_close = false;
  bool conn_keep_alive = false;
  for (;;) {
    if (!next_line(head, pos, line, next)) return headers_incomplete();
    pos = next;
    if (line.empty()) break;
    // Obsolete line folding (RFC 9112 section 5.2) and whitespace before the colon are both rejected.
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return error(400);
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim_ows(line.substr(colon + 1));
    if (!is_token(name) || !is_field_value(value)) return error(400);
    if (iequals(name, "content-length")) {
      uint64_t v = 0;
      if (!parse_u64(value, v)) return error(400);
      if (have_length && v != length) return error(400);
      have_length = true;
      length = v;
    } else if (iequals(name, "transfer-encoding")) {
      transfer_encoding = true;
    } else if (iequals(name, "host")) {
      hosts++;
    } else if (iequals(name, "connection")) {
      while (!value.empty()) {
        size_t comma = value.find(',');
        std::string_view option = trim_ows(value.substr(0, comma));
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        if (iequals(option, "close")) conn_close = true;
        if (iequals(option, "keep-alive")) conn_keep_alive = true;
      }
    }
  }
  const size_t header_end = pos;

  if (transfer_encoding) return error(501);
  if (minor >= 1 && hosts != 1) return error(400);
  if (length > limits.max_body_bytes) return error(413);
  const size_t total = header_end + static_cast<size_t>(length);
  if (in.size() < total) return need_more(total);

  req.method = method;
  req.target = target;
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  if (req.path.empty()) req.path = "/";  // an absolute-form target with a query and no path
  req.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  req.minor_version = minor >= 1 ? 1 : 0;
  req.keep_alive = minor >= 1 ? !conn_close : (conn_keep_alive && !conn_close);
  req.body = in.substr(header_end, static_cast<size_t>(length));

  ParseResult r;
  r.state = ParseState::kDone;
  r.consumed = total;
  return r;
}

}  // namespace tern::http
