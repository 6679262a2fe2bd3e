// Tests of tools/echo/http_parser.h: framing, pipelining, keep-alive rules and every error status the parser returns.
#include "tools/echo/http_parser.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tern::http {
namespace {

using namespace std::string_view_literals;

ParseResult parse(std::string_view in, Request& req, Limits limits = {}) {
  return parse_request(in, limits, req);
}

int error_status(std::string_view in, Limits limits = {}) {
  Request req;
  ParseResult r = parse(in, req, limits);
  EXPECT_EQ(r.state, ParseState::kError) << in;
  return r.status;
}

// A GET whose header block is exactly `size` bytes, padded with one X-Pad field.
std::string get_with_header_block(size_t size) {
  const std::string start = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  const std::string end = "\r\n\r\n";
  return start + std::string(size - start.size() - end.size(), 'p') + end;
}

TEST(HttpParser, ParsesAGet) {
  const std::string in = "GET /work?us=10&x=2 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n";
  Request req;
  ParseResult r = parse(in, req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(req.method, "GET");
  EXPECT_EQ(req.target, "/work?us=10&x=2");
  EXPECT_EQ(req.path, "/work");
  EXPECT_EQ(req.query, "us=10&x=2");
  EXPECT_EQ(req.minor_version, 1);
  EXPECT_TRUE(req.keep_alive);
  EXPECT_TRUE(req.body.empty());
}

TEST(HttpParser, ParsesAPostBody) {
  const std::string in = "POST /echo HTTP/1.1\r\nHost: h\r\ncontent-LENGTH:  5 \r\n\r\nhello";
  Request req;
  ParseResult r = parse(in, req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(req.body, "hello");
  EXPECT_EQ(req.path, "/echo");
  EXPECT_TRUE(req.query.empty());
}

TEST(HttpParser, AcceptsBareLineFeeds) {
  const std::string in = "GET /health HTTP/1.1\nHost: h\n\n";
  Request req;
  ParseResult r = parse(in, req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(req.path, "/health");
}

TEST(HttpParser, IgnoresEmptyLinesBeforeTheRequestLine) {
  const std::string in = "\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\n\r\n";
  Request req;
  ParseResult r = parse(in, req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, in.size());
  EXPECT_EQ(req.method, "GET");
}

TEST(HttpParser, EveryPrefixNeedsMore) {
  const std::string in = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
  const size_t header_end = in.find("\r\n\r\n") + 4;
  for (size_t n = 0; n < in.size(); n++) {
    Request req;
    ParseResult r = parse(std::string_view(in).substr(0, n), req);
    ASSERT_EQ(r.state, ParseState::kNeedMore) << n;
    // Once the headers are in, the parser knows the request's full size.
    EXPECT_EQ(r.need, n >= header_end ? in.size() : 0u) << n;
  }
  Request req;
  EXPECT_EQ(parse(in, req).state, ParseState::kDone);
}

TEST(HttpParser, Pipelining) {
  const std::vector<std::string> requests = {
      "GET /health HTTP/1.1\r\nHost: h\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
      "GET /sleep?ms=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
  };
  std::string all;
  for (const auto& r : requests) all += r;
  all += "GET /hea";  // the start of a fourth request

  std::string_view rest = all;
  for (size_t i = 0; i < requests.size(); i++) {
    Request req;
    ParseResult r = parse(rest, req);
    ASSERT_EQ(r.state, ParseState::kDone) << i;
    EXPECT_EQ(r.consumed, requests[i].size()) << i;
    if (i == 1) {
      EXPECT_EQ(req.body, "abc");
    }
    EXPECT_EQ(req.keep_alive, i != 2) << i;
    rest.remove_prefix(r.consumed);
  }
  Request req;
  EXPECT_EQ(parse(rest, req).state, ParseState::kNeedMore);
  EXPECT_EQ(rest, "GET /hea");
}

TEST(HttpParser, KeepAliveRules) {
  struct Case {
    const char* in;
    int minor;
    bool keep_alive;
  };
  const Case cases[] = {
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 1, true},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 1, false},
      {"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n", 1, false},
      {"GET / HTTP/1.0\r\n\r\n", 0, false},
      {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, true},
      {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", 0, false},
      // A later 1.x minor version is handled as 1.1 (RFC 9110 section 2.5).
      {"GET / HTTP/1.7\r\nHost: h\r\n\r\n", 1, true},
  };
  for (const Case& c : cases) {
    Request req;
    ASSERT_EQ(parse(c.in, req).state, ParseState::kDone) << c.in;
    EXPECT_EQ(req.minor_version, c.minor) << c.in;
    EXPECT_EQ(req.keep_alive, c.keep_alive) << c.in;
  }
}

TEST(HttpParser, HostIsOptionalForHttp10Only) {
  Request req;
  EXPECT_EQ(parse("GET / HTTP/1.0\r\n\r\n", req).state, ParseState::kDone);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

// RFC 9112 section 3.2.2: a server must accept the absolute-form, which names the same resource as the origin-form
// after the authority ("GET http://host/health" is "GET /health"); an empty path is "/".
TEST(HttpParser, AbsoluteFormNamesTheSameResourceAsTheOriginForm) {
  Request req;
  ASSERT_EQ(parse("GET http://example.com:8080/work?us=10 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", req).state,
            ParseState::kDone);
  EXPECT_EQ(req.target, "/work?us=10");
  EXPECT_EQ(req.path, "/work");
  EXPECT_EQ(req.query, "us=10");
  ASSERT_EQ(parse("GET HTTPS://h/health HTTP/1.1\r\nHost: h\r\n\r\n", req).state, ParseState::kDone);
  EXPECT_EQ(req.path, "/health");
  ASSERT_EQ(parse("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", req).state, ParseState::kDone);
  EXPECT_EQ(req.target, "/");
  EXPECT_EQ(req.path, "/");
  EXPECT_EQ(req.query, "");
  ASSERT_EQ(parse("GET http://h?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", req).state, ParseState::kDone);
  EXPECT_EQ(req.path, "/");
  EXPECT_EQ(req.query, "x=1");
  // The Host field is still required of HTTP/1.1 (section 3.2), whatever the target says.
  EXPECT_EQ(error_status("GET http://h/ HTTP/1.1\r\n\r\n"), 400);
  // No authority, another scheme, or a scheme that is not one: 400.
  EXPECT_EQ(error_status("GET http:///health HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET ftp://h/health HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET http:/h/health HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET 1http://h/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

TEST(HttpParser, MalformedRequestLineIs400) {
  EXPECT_EQ(error_status("GET\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET /\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n"sv), 400);  // a TLS hello, say
}

TEST(HttpParser, MalformedHeaderIs400) {
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\n: v\r\nHost: h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"), 400);
}

TEST(HttpParser, BadContentLengthIs400) {
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 12a\r\n\r\n"), 400);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n"), 400);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx"), 400);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy"), 400);
  // Repeating the same value is harmless.
  Request req;
  ParseResult r = parse("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nxy", req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(req.body, "xy");
}

TEST(HttpParser, UnsupportedVersionIs505) {
  EXPECT_EQ(error_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/0.9\r\n\r\n"), 505);
}

TEST(HttpParser, TransferEncodingIs501) {
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            501);
  // With a Content-Length as well (a request-smuggling shape): still never framed by the length.
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            501);
}

TEST(HttpParser, HeaderLimitIs431) {
  Request req;
  const std::string at_limit = get_with_header_block(kMaxHeaderBytes);
  ParseResult r = parse(at_limit, req);
  ASSERT_EQ(r.state, ParseState::kDone);
  EXPECT_EQ(r.consumed, kMaxHeaderBytes);

  EXPECT_EQ(error_status(get_with_header_block(kMaxHeaderBytes + 1)), 431);

  // Headers that have not ended within the limit are 431 as soon as the limit's worth has arrived, not before.
  std::string endless = "GET / HTTP/1.1\r\nHost: h\r\n";
  while (endless.size() < kMaxHeaderBytes - 1) endless += "X: y\r\n";
  endless.resize(kMaxHeaderBytes - 1);
  EXPECT_EQ(parse(endless, req).state, ParseState::kNeedMore);
  endless += "z";
  EXPECT_EQ(error_status(endless), 431);
  // A request line longer than the limit, even without its line end.
  EXPECT_EQ(error_status("GET /" + std::string(kMaxHeaderBytes, 'a')), 431);
}

TEST(HttpParser, ErrorsInTheFirstLinesAreFoundBeforeTheLimit) {
  // A 400 does not wait for the rest of the headers to arrive.
  EXPECT_EQ(error_status("BAD\r\nX: partial"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nno colon\r\nX: part"), 400);
}

TEST(HttpParser, BodyLimitIs413) {
  Limits limits;
  limits.max_body_bytes = 100;
  Request req;
  const std::string at_limit = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n";
  ParseResult r = parse(at_limit, req, limits);
  EXPECT_EQ(r.state, ParseState::kNeedMore);
  EXPECT_EQ(r.need, at_limit.size() + 100);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", limits), 413);
  EXPECT_EQ(error_status("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n"), 413);
}

TEST(HttpParser, CustomHeaderLimit) {
  Limits limits;
  limits.max_header_bytes = 64;
  EXPECT_EQ(error_status(get_with_header_block(65), limits), 431);
  Request req;
  EXPECT_EQ(parse(get_with_header_block(64), req, limits).state, ParseState::kDone);
}

TEST(HttpQuery, FindsParameters) {
  EXPECT_EQ(query_param("us=10", "us").value, "10");
  EXPECT_EQ(query_param("a=1&us=20&b", "us").value, "20");
  EXPECT_TRUE(query_param("a=1&us&b", "us").found);
  EXPECT_EQ(query_param("a=1&us&b", "us").value, "");
  EXPECT_FALSE(query_param("a=1&usx=3", "us").found);
  EXPECT_FALSE(query_param("", "us").found);
}

TEST(HttpQuery, ParsesUnsigned) {
  uint64_t v = 0;
  EXPECT_TRUE(parse_u64("0", v));
  EXPECT_EQ(v, 0u);
  EXPECT_TRUE(parse_u64("18446744073709551615", v));
  EXPECT_EQ(v, 18446744073709551615ull);
  EXPECT_FALSE(parse_u64("18446744073709551616", v));
  EXPECT_FALSE(parse_u64("", v));
  EXPECT_FALSE(parse_u64("+1", v));
  EXPECT_FALSE(parse_u64("1 ", v));
}

}  // namespace
}  // namespace tern::http
