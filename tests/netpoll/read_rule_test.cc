// The read rule of docs/architecture.md 7.1 (EpollPoller::read; io_uring's read_waits is the same rule for its plain
// first receive), through tern::net on both backends: a read after one that emptied the receive queue parks for an
// edge first, yet must see data and hang-ups whose edges came and went, and data that is there at its deadline.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/scale.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

using test::connect_loopback_pair;
using test::NetTest;

TEST_P(NetTest, AReadAfterOneThatEmptiedTheQueueSeesWhatCameBetween) {
  // The epoll backend's read after one that emptied the receive queue waits for an edge before it receives: data that
  // arrived in between (its edge already handled by a poll, and latched) must be read at once, data that arrives
  // later must wake the reader, and an expired deadline with nothing there must time out and leave the stream usable.
  Runtime rt(config());
  rt.run([] {
    std::vector<Stream> clients, servers;
    ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
    Stream* c = &clients[0];
    Stream* s = &servers[0];
    char buf[64];
    for (int round = 0; round < 20; round++) {
      const std::string msg = "m" + std::to_string(round);
      ASSERT_TRUE(c->write_all(msg.data(), msg.size()));
      auto r = s->read(buf, sizeof buf, 10s);  // less than asked: the queue is empty now
      ASSERT_TRUE(r) << r.ec.message();
      ASSERT_EQ(std::string(buf, r.n), msg);
      // Between reads: data arrives and a poll handles its edge (the sleep lets the Ms poll) before the next read.
      ASSERT_TRUE(c->write_all("x", 1));
      if (round % 2 == 0) tern::sleep_for(2ms);
      r = s->read(buf, sizeof buf, 10s);
      ASSERT_TRUE(r) << r.ec.message();
      ASSERT_EQ(std::string(buf, r.n), "x");
    }
    // Nothing there and the deadline already past: a timeout, and the stream still reads what comes next.
    auto r = s->read(buf, sizeof buf, 0ms);
    EXPECT_EQ(r.ec, std::errc::timed_out);
    auto late = spawn([&] {
      tern::sleep_for(5ms);
      EXPECT_TRUE(c->write_all("late", 4));
    });
    r = s->read(buf, sizeof buf, 10s);
    ASSERT_TRUE(r) << r.ec.message();
    EXPECT_EQ(std::string(buf, r.n), "late");
    late.join();
  });
}

TEST_P(NetTest, AReadWhoseDeadlinePassesStillTakesDataThatIsThere) {
  // One processor, so no other M polls: data written after a read that emptied the queue sits in the socket with its
  // edge (or its io_uring completion) unhandled while a CPU-bound fiber runs past the read's deadline. The read must
  // then return the data, not a timeout.
  Runtime rt(config(1));
  rt.run([] {
    std::vector<Stream> clients, servers;
    ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
    Stream* c = &clients[0];
    Stream* s = &servers[0];
    char buf[64];
    for (int round = 0; round < 20; round++) {
      auto writer = spawn([&] {
        tern::sleep_for(1ms);
        EXPECT_TRUE(c->write_all("a", 1));
      });
      auto r = s->read(buf, sizeof buf, 10s);  // waits, and gets less than it asked
      ASSERT_TRUE(r) << r.ec.message();
      ASSERT_EQ(std::string(buf, r.n), "a");
      writer.join();
      ASSERT_TRUE(c->write_all("x", 1));
      // The read parks until its deadline, and meanwhile a fiber keeps the only M from polling past it.
      auto burner = spawn([] {
        const auto until = std::chrono::steady_clock::now() + 2ms;
        while (std::chrono::steady_clock::now() < until) {
        }
      });
      r = s->read(buf, sizeof buf, 200us);
      burner.join();
      ASSERT_TRUE(r) << "round " << round << ": " << r.ec.message();
      ASSERT_EQ(std::string(buf, r.n), "x");
    }
  });
}

TEST_P(NetTest, DataAndAHangUpThatArriveTogetherEndTheStream) {
  // A plain-thread peer sends a few bytes and its FIN back to back, each with its own edge, while the reader waits.
  // The reader gets the bytes (less than it asked for) and must then see the end of stream, whose edge may have
  // coalesced with the one that woke it: the epoll backend's read after a draining one must not park for an edge that
  // has come and gone.
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    const Address addr = l->local_addr();
    for (int round = 0; round < test::scaled(200, 20); round++) {
      std::thread peer([&addr, round] {
        int fd = ::socket(addr.sockaddr_ptr()->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || ::connect(fd, addr.sockaddr_ptr(), addr.size()) != 0) std::abort();
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (round % 2 == 1) std::this_thread::sleep_for(1ms);  // let the reader park first in half the rounds
        if (::send(fd, "ping", 4, MSG_NOSIGNAL) != 4) std::abort();
        ::shutdown(fd, SHUT_WR);
        char b[16];
        while (::recv(fd, b, sizeof b, 0) > 0) {
        }
        ::close(fd);
      });
      auto s = l->accept(10s);
      ASSERT_TRUE(s) << s.error().message();
      char buf[64];
      std::string got;
      for (;;) {
        auto r = s->read(buf, sizeof buf, 5s);
        ASSERT_TRUE(r) << "round " << round << " after \"" << got << "\": " << r.ec.message();
        if (r.n == 0) break;
        got.append(buf, r.n);
      }
      EXPECT_EQ(got, "ping");
      s->close();
      peer.join();
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
