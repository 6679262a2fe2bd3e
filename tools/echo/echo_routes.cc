// tools/echo/echo_routes.cc: see echo_routes.h.
#include "tools/echo/echo_routes.h"

#include <string>
#include <string_view>

namespace tern::echo {
namespace {

constexpr std::string_view kOk = "OK\n";

Route respond(int status, std::string_view body, std::string_view allow = {}) {
  Route r;
  r.response.status = status;
  r.response.body = body;
  r.response.allow = allow;
  return r;
}

bool is_get(std::string_view method) {
  return method == "GET" || method == "HEAD";
}

// GET /<path>?<key>=N with N in [0, max]: the action with amount N, or the error route.
Route timed(const http::Request& req, Action action, std::string_view key, uint64_t max) {
  if (!is_get(req.method)) return respond(405, "Method Not Allowed\n", "GET, HEAD");
  http::QueryValue v = http::query_param(req.query, key);
  uint64_t n = 0;
  if (!v.found || !http::parse_u64(v.value, n) || n > max) return respond(400, "Bad Request\n");
  Route r = respond(200, kOk);
  r.action = action;
  r.amount = n;
  return r;
}

// B bytes of 'x' that outlive every response (a body over kInlineBodyMax is referenced, not copied). Made on first
// use, so a server never asked for large bodies does not carry them.
std::string_view fill(uint64_t bytes) {
  static const std::string* const buf = new std::string(kMaxMixBytes, 'x');
  return std::string_view(*buf).substr(0, bytes);
}

// GET /mix?sleep_ms=M&cpu_us=N&bytes=B: each optional (0; no bytes: "OK\n"), each capped as /sleep's and /work's.
Route mix(const http::Request& req) {
  if (!is_get(req.method)) return respond(405, "Method Not Allowed\n", "GET, HEAD");
  uint64_t ms = 0, us = 0, bytes = 0;
  const http::QueryValue s = http::query_param(req.query, "sleep_ms");
  const http::QueryValue c = http::query_param(req.query, "cpu_us");
  const http::QueryValue b = http::query_param(req.query, "bytes");
  if (s.found && (!http::parse_u64(s.value, ms) || ms > kMaxSleepMs)) return respond(400, "Bad Request\n");
  if (c.found && (!http::parse_u64(c.value, us) || us > kMaxWorkUs)) return respond(400, "Bad Request\n");
  if (b.found && (!http::parse_u64(b.value, bytes) || bytes > kMaxMixBytes)) return respond(400, "Bad Request\n");
  Route r = respond(200, b.found ? fill(bytes) : kOk);
  r.action = Action::kMix;
  r.amount = ms;
  r.cpu_us = us;
  return r;
}

}  // namespace

Route route(const http::Request& req) {
  const std::string_view path = req.path;
  if (path == "/health") {
    if (!is_get(req.method)) return respond(405, "Method Not Allowed\n", "GET, HEAD");
    return respond(200, kOk);
  }
  if (path == "/echo") {
    if (req.method != "POST") return respond(405, "Method Not Allowed\n", "POST");
    Route r = respond(200, req.body);
    r.response.content_type = "application/octet-stream";
    return r;
  }
  if (path == "/work") return timed(req, Action::kWork, "us", kMaxWorkUs);
  if (path == "/sleep") return timed(req, Action::kSleep, "ms", kMaxSleepMs);
  if (path == "/block") return timed(req, Action::kBlock, "ms", kMaxBlockMs);
  if (path == "/mix") return mix(req);
  return respond(404, "Not Found\n");
}

}  // namespace tern::echo
