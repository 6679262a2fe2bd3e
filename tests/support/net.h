// tests/support/net.h: what the tern::net tests share: the NetTest fixture (each test runs once per netpoll backend,
// epoll and io_uring), a checkable byte stream, and connected stream pairs over loopback.
//
//   using test::NetTest;  // TEST_P(NetTest, ...) keeps the suite's name
//   INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring"),
//                            [](const auto& info) { return info.param; });
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/config.h"
#include "runtime/net/net.h"
#include "tests/support/require.h"

namespace tern::test {

// A deterministic byte stream, so the receiver can check every byte without a copy of what was sent.
struct Pattern {
  uint64_t state;
  explicit Pattern(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
  void fill(char* p, size_t n) {
    for (size_t i = 0; i < n; i++) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      p[i] = static_cast<char>(state);
    }
  }
};

// Dials `l` n times and accepts each connection: clients[i] is connected to servers[i].
inline void connect_pairs(net::Listener& l, int n, std::vector<net::Stream>& clients,
                          std::vector<net::Stream>& servers) {
  using namespace std::chrono_literals;
  for (int i = 0; i < n; i++) {
    auto c = net::dial(l.local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l.accept(10s);
    ASSERT_TRUE(s);
    clients.push_back(std::move(*c));
    servers.push_back(std::move(*s));
  }
}

// One connection over a loopback listener that is closed again: clients[0] is connected to servers[0].
inline void connect_loopback_pair(std::vector<net::Stream>& clients, std::vector<net::Stream>& servers) {
  auto l = net::listen("127.0.0.1:0");
  ASSERT_TRUE(l);
  connect_pairs(*l, 1, clients, servers);
}

// The parameter is the backend's name ("epoll" or "uring"); io_uring tests skip where it is unusable (require.h).
// Parameters: "epoll", "uring", and "uring_defer" (io_uring with Config::uring_defer: each M's ring deferred).
class NetTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() != "epoll") TERN_SKIP_UNLESS_URING();
  }
  Config config(int procs = 2) const {
    Config c;
    c.procs = procs;
    c.poller = GetParam() == "uring_defer" ? "uring" : GetParam();
    c.uring_defer = GetParam() == "uring_defer";
    return c;
  }
};

}  // namespace tern::test
