// tern::net::Listener over both netpoll backends (every test runs once with epoll and once with io_uring): accept's
// deadline, SO_REUSEPORT, and a close with connections still queued. Accepting under load and under descriptor
// exhaustion: net_accept_bound_test.cc, net_accept_emfile_test.cc.
#include <gtest/gtest.h>

#include <chrono>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

using test::NetTest;

TEST_P(NetTest, AcceptTimeout) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto t0 = Clock::now();
    auto s = l->accept(30ms);
    EXPECT_EQ(s.error(), std::errc::timed_out);
    EXPECT_GE(Clock::now() - t0, 30ms);
    // The listener still works.
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s2 = l->accept(10s);
    EXPECT_TRUE(s2) << s2.error().message();
  });
}

TEST_P(NetTest, ReusePortLetsTwoListenersShareAPort) {
  Runtime rt(config());
  rt.run([] {
    auto a = listen("127.0.0.1:0", {.reuse_port = true});
    ASSERT_TRUE(a) << a.error().message();
    auto b = listen(a->local_addr(), {.reuse_port = true});
    EXPECT_TRUE(b) << b.error().message();
    auto c = listen(a->local_addr());  // without the option the port is taken
    EXPECT_EQ(c.error(), std::errc::address_in_use);
  });
}

TEST_P(NetTest, ListenerClosesWithConnectionsPending) {
  // Connections the kernel queued on the listener that nobody accepted end when it closes (the peers see them end);
  // with io_uring, an accept taken before leaves no submission behind that could take them after the close.
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c1 = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c1);
    auto s1 = l->accept(10s);  // io_uring: one ACCEPT submission, completed
    ASSERT_TRUE(s1);
    auto c2 = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c2);
    sleep_for(20ms);  // c2 lands in the listener's queue
    l->close();
    char b[1];
    auto r = c2->read(b, 1, 10s);
    EXPECT_TRUE(r.n == 0 || r.ec == std::errc::connection_reset) << r.ec.message();
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
