// Tests of tools/echo/http_response.h: the bytes of each kind of response and how a batch turns into iovecs.
#include "tools/echo/http_response.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <string>
#include <utility>

#include "tools/echo/echo_routes.h"

// Counts every allocation in this test binary, to check the steady-state request path makes none.
namespace {
std::atomic<uint64_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
// Not inlined: inlined into a delete-expression, GCC would take this free() of new's memory for a mismatch
// (-Wmismatched-new-delete), though malloc/free is the standard way to replace the global allocation functions.
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept {
  std::free(p);
}

namespace tern::http {
namespace {

Request request(std::string_view method, int minor, bool keep_alive) {
  Request r;
  r.method = method;
  r.minor_version = minor;
  r.keep_alive = keep_alive;
  return r;
}

Response resp(int status, std::string_view body, std::string_view allow = {}) {
  Response r;
  r.status = status;
  r.body = body;
  r.allow = allow;
  return r;
}

std::string flatten(ResponseBatch& b) {
  std::string s;
  for (const iovec& v : b.iovecs()) s.append(static_cast<const char*>(v.iov_base), v.iov_len);
  return s;
}

TEST(ResponseBatch, KeepAliveResponse) {
  ResponseBatch b;
  b.add(resp(200, "OK\n"), request("GET", 1, true));
  const std::string want = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
  EXPECT_EQ(flatten(b), want);
  EXPECT_EQ(b.bytes(), want.size());
  EXPECT_EQ(b.count(), 1u);
  EXPECT_EQ(b.iovecs().size(), 1u);
}

TEST(ResponseBatch, ConnectionFieldFollowsTheRequest) {
  ResponseBatch b;
  b.add(resp(404, "x"), request("GET", 1, false));
  EXPECT_EQ(flatten(b),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
  b.clear();
  b.add(resp(200, "x"), request("GET", 0, true));
  EXPECT_EQ(flatten(b),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx");
}

TEST(ResponseBatch, HeadHasLengthButNoBody) {
  ResponseBatch b;
  b.add(resp(200, "OK\n"), request("HEAD", 1, true));
  EXPECT_EQ(flatten(b), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n");
}

TEST(ResponseBatch, AllowField) {
  ResponseBatch b;
  b.add(resp(405, "", "POST"), request("GET", 1, true));
  EXPECT_EQ(flatten(b),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nAllow: POST\r\n\r\n");
}

// The expected bytes are written out here, not built from reason_phrase(): a wrong phrase or length must show.
TEST(ResponseBatch, ErrorsClose) {
  const std::pair<int, std::string> cases[] = {
      {400,
       "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
       "Bad Request\n"},
      {413,
       "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
       "Connection: close\r\n\r\nContent Too Large\n"},
      {431,
       "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 32\r\n"
       "Connection: close\r\n\r\nRequest Header Fields Too Large\n"},
      {501,
       "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
       "Connection: close\r\n\r\nNot Implemented\n"},
      {505,
       "HTTP/1.1 505 HTTP Version Not Supported\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n"
       "Connection: close\r\n\r\nHTTP Version Not Supported\n"},
  };
  ResponseBatch b;
  for (const auto& [status, want] : cases) {
    b.clear();
    b.add_error(status);
    EXPECT_EQ(flatten(b), want) << status;
  }
}

TEST(ResponseBatch, PipelinedSmallResponsesShareOneIovec) {
  ResponseBatch b;
  for (int i = 0; i < 16; i++) b.add(resp(200, "OK\n"), request("GET", 1, true));
  EXPECT_EQ(b.count(), 16u);
  EXPECT_EQ(b.iovecs().size(), 1u);
  EXPECT_EQ(b.iovecs()[0].iov_len, b.bytes());
}

TEST(ResponseBatch, LargeBodiesAreReferencedInOrder) {
  const std::string big1(kInlineBodyMax + 1, 'a');
  const std::string big2(kInlineBodyMax * 3, 'b');
  ResponseBatch b;
  b.add(resp(200, "1"), request("POST", 1, true));
  b.add(resp(200, big1), request("POST", 1, true));
  b.add(resp(200, big2), request("POST", 1, true));
  b.add(resp(200, "4"), request("POST", 1, true));

  auto iov = b.iovecs();
  ASSERT_EQ(iov.size(), 5u);  // head+"1"+head, big1, head, big2, head+"4"
  EXPECT_EQ(iov[1].iov_base, big1.data());
  EXPECT_EQ(iov[3].iov_base, big2.data());

  std::string want;
  for (const std::string& body : {std::string("1"), big1, big2, std::string("4")}) {
    want += "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n" + body;
  }
  EXPECT_EQ(flatten(b), want);
  EXPECT_EQ(b.bytes(), want.size());
}

TEST(ResponseBatch, BodyAtTheInlineLimitIsCopied) {
  const std::string body(kInlineBodyMax, 'c');
  ResponseBatch b;
  b.add(resp(200, body), request("POST", 1, true));
  ASSERT_EQ(b.iovecs().size(), 1u);
  EXPECT_NE(b.iovecs()[0].iov_base, body.data());
}

TEST(ResponseBatch, ClearEmpties) {
  const std::string big(kInlineBodyMax + 1, 'x');
  ResponseBatch b;
  b.add(resp(200, big), request("POST", 1, true));
  b.clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.bytes(), 0u);
  EXPECT_TRUE(b.iovecs().empty());
}

// The connection loop's work per read: parse every pipelined request, route it, batch the answers, hand the batch to
// writev, clear. After the first round has sized the batch, no round allocates.
TEST(ResponseBatch, SteadyStateRequestsAllocateNothing) {
  std::string reads;
  for (int i = 0; i < 16; i++) reads += "GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
  reads += "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'e');
  reads += "GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n";
  const Limits limits;
  ResponseBatch b;
  size_t bytes = 0;
  uint64_t before = 0;
  for (int round = 0; round < 100; round++) {
    if (round == 1) before = g_allocations.load();
    std::string_view in = reads;
    while (!in.empty()) {
      Request req;
      ParseResult r = parse_request(in, limits, req);
      ASSERT_EQ(r.state, ParseState::kDone);
      b.add(echo::route(req).response, req);
      in.remove_prefix(r.consumed);
    }
    for (const iovec& v : b.iovecs()) bytes += v.iov_len;
    b.clear();
  }
  EXPECT_EQ(g_allocations.load() - before, 0u);
  EXPECT_GT(bytes, 0u);
}

TEST(ReasonPhrase, KnownAndUnknown) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(400), "Bad Request");
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(405), "Method Not Allowed");
  EXPECT_EQ(reason_phrase(413), "Content Too Large");
  EXPECT_EQ(reason_phrase(500), "Internal Server Error");
  EXPECT_EQ(reason_phrase(501), "Not Implemented");
  EXPECT_EQ(reason_phrase(505), "HTTP Version Not Supported");
  EXPECT_EQ(reason_phrase(299), "Unknown");
}

}  // namespace
}  // namespace tern::http
