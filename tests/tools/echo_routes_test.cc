// Tests of tools/echo/echo_routes.h: every path, method and argument check of tern-echo.
#include "tools/echo/echo_routes.h"

#include <gtest/gtest.h>

#include <string>

namespace tern::echo {
namespace {

Route route_of(std::string_view method, std::string_view path, std::string_view query = {},
               std::string_view body = {}) {
  http::Request req;
  req.method = method;
  req.path = path;
  req.query = query;
  req.body = body;
  return route(req);
}

TEST(EchoRoutes, Health) {
  Route r = route_of("GET", "/health");
  EXPECT_EQ(r.action, Action::kRespond);
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body, "OK\n");
  EXPECT_EQ(route_of("HEAD", "/health").response.status, 200);
}

TEST(EchoRoutes, EchoReturnsTheBody) {
  const std::string body("some bytes\0with a nul", 21);
  Route r = route_of("POST", "/echo", {}, body);
  EXPECT_EQ(r.response.status, 200);
  EXPECT_EQ(r.response.body.data(), body.data());
  EXPECT_EQ(r.response.body.size(), body.size());
}

TEST(EchoRoutes, TimedPaths) {
  Route w = route_of("GET", "/work", "us=250");
  EXPECT_EQ(w.action, Action::kWork);
  EXPECT_EQ(w.amount, 250u);
  EXPECT_EQ(w.response.status, 200);
  Route s = route_of("GET", "/sleep", "x=1&ms=7");
  EXPECT_EQ(s.action, Action::kSleep);
  EXPECT_EQ(s.amount, 7u);
  Route b = route_of("GET", "/block", "ms=0");
  EXPECT_EQ(b.action, Action::kBlock);
  EXPECT_EQ(b.amount, 0u);
  EXPECT_EQ(route_of("GET", "/work", "us=" + std::to_string(kMaxWorkUs)).action, Action::kWork);
  EXPECT_EQ(route_of("GET", "/sleep", "ms=" + std::to_string(kMaxSleepMs)).action, Action::kSleep);
  EXPECT_EQ(route_of("GET", "/block", "ms=" + std::to_string(kMaxBlockMs)).action, Action::kBlock);
  Route m = route_of("GET", "/mix", "sleep_ms=5&cpu_us=100");
  EXPECT_EQ(m.action, Action::kMix);
  EXPECT_EQ(m.amount, 5u);
  EXPECT_EQ(m.cpu_us, 100u);
  Route only_cpu = route_of("GET", "/mix", "cpu_us=20");
  EXPECT_EQ(only_cpu.action, Action::kMix);
  EXPECT_EQ(only_cpu.amount, 0u);
  EXPECT_EQ(only_cpu.cpu_us, 20u);
  EXPECT_EQ(route_of("GET", "/mix").action, Action::kMix);
  EXPECT_EQ(route_of("GET", "/mix").response.body, "OK\n");
}

TEST(EchoRoutes, MixBytesSizesTheBody) {
  Route big = route_of("GET", "/mix", "sleep_ms=5&bytes=65536");
  EXPECT_EQ(big.action, Action::kMix);
  EXPECT_EQ(big.amount, 5u);
  EXPECT_EQ(big.response.status, 200);
  EXPECT_EQ(big.response.body, std::string(65536, 'x'));
  EXPECT_EQ(route_of("GET", "/mix", "bytes=0").response.body.size(), 0u);
  EXPECT_EQ(route_of("GET", "/mix", "bytes=" + std::to_string(kMaxMixBytes)).response.body.size(), kMaxMixBytes);
  // Two replies share the buffer: a referenced body stays valid after the route that made it is gone.
  EXPECT_EQ(route_of("GET", "/mix", "bytes=10").response.body.data(), big.response.body.data());
}

TEST(EchoRoutes, BadArgumentsAre400) {
  for (auto [path, query] : {std::pair{"/work", ""},
                             {"/work", "ms=1"},
                             {"/work", "us=-1"},
                             {"/work", "us=1x"},
                             {"/sleep", "ms="},
                             {"/block", "ms"},
                             {"/mix", "sleep_ms=x"},
                             {"/mix", "cpu_us=-1"},
                             {"/mix", "sleep_ms=1&cpu_us=10000001"},
                             {"/mix", "sleep_ms=60001"},
                             {"/mix", "bytes=1k"}}) {
    Route r = route_of("GET", path, query);
    EXPECT_EQ(r.action, Action::kRespond) << path << "?" << query;
    EXPECT_EQ(r.response.status, 400) << path << "?" << query;
  }
  EXPECT_EQ(route_of("GET", "/work", "us=" + std::to_string(kMaxWorkUs + 1)).response.status, 400);
  EXPECT_EQ(route_of("GET", "/sleep", "ms=" + std::to_string(kMaxSleepMs + 1)).response.status, 400);
  EXPECT_EQ(route_of("GET", "/block", "ms=" + std::to_string(kMaxBlockMs + 1)).response.status, 400);
  static_assert(kMaxWorkUs == 10'000'000 && kMaxSleepMs == 60'000, "the /mix cases above sit one past these caps");
  EXPECT_EQ(route_of("GET", "/mix", "bytes=" + std::to_string(kMaxMixBytes + 1)).response.status, 400);
}

TEST(EchoRoutes, WrongMethodIs405WithAllow) {
  Route r = route_of("POST", "/health");
  EXPECT_EQ(r.response.status, 405);
  EXPECT_EQ(r.response.allow, "GET, HEAD");
  EXPECT_EQ(route_of("GET", "/echo").response.allow, "POST");
  EXPECT_EQ(route_of("PUT", "/sleep", "ms=1").response.status, 405);
  EXPECT_EQ(route_of("PUT", "/sleep", "ms=1").action, Action::kRespond);
}

TEST(EchoRoutes, UnknownPathIs404) {
  EXPECT_EQ(route_of("GET", "/").response.status, 404);
  EXPECT_EQ(route_of("GET", "/healthz").response.status, 404);
  EXPECT_EQ(route_of("POST", "/echo/").response.status, 404);
}

}  // namespace
}  // namespace tern::echo
