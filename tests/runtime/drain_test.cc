// tern::net::Drain (runtime/net/drain.h) on real loopback sockets: a drain stops the accept loop, closes idle
// keep-alive connections at once, lets a request in flight finish with its whole answer, and returns by its deadline
// when a connection does not leave.
#include "runtime/net/drain.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A blocking client socket (run on plain threads: blocking calls on a fiber would hold its M).
int dial_blocking(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Everything the peer sends until it closes (or 10 s pass).
std::string read_to_eof(int fd) {
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return n == 0 ? out : out + "<error>";
}

// A line server: each line "work MS\n" is answered "done MS\n" after MS milliseconds of sleep, or "bye\n" when the
// drain has begun (then it closes), as an HTTP server says Connection: close.
struct LineServer {
  tern::net::Drain drain;
  tern::WaitGroup conns;
  std::atomic<int> answered{0};
  uint16_t port = 0;

  void serve(tern::net::Listener& l) {
    drain.watch(l);
    for (;;) {
      auto s = l.accept();
      if (!s) return;  // closed by the drain
      conns.add(1);
      tern::go([this, s = std::move(*s)]() mutable {
        {
          auto conn = drain.join(s);
          char buf[64];
          while (conn.idle()) {
            auto r = s.read(buf, sizeof buf);
            if (!r || r.n == 0 || !conn.busy()) break;
            const int ms = std::atoi(std::string(buf, r.n).substr(5).c_str());
            tern::sleep_for(std::chrono::milliseconds(ms));
            const std::string reply = "done " + std::to_string(ms) + (conn.draining() ? "\nbye\n" : "\n");
            if (!s.write_all(reply.data(), reply.size())) break;
            answered++;
          }
          s.shutdown();  // FIN after the last answer; then leave the drain
        }
        s.close();
        conns.done();
      });
    }
  }
};

TEST(Drain, StopsAcceptingClosesIdleConnectionsAndLetsARequestInFlightFinish) {
  tern::Runtime rt(tern::test::procs(2));
  rt.run([] {
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    LineServer srv;
    const uint16_t port = l->local_addr().port();
    tern::WaitGroup accept_loop(1);
    tern::go([&] {
      srv.serve(*l);
      accept_loop.done();
    });
    std::string idle_got, busy_got;
    int refused_connect = 0;
    std::atomic<bool> busy_sent{false};
    std::thread clients([&] {
      int idle_fd = dial_blocking(port);
      int busy_fd = dial_blocking(port);
      ASSERT_GE(idle_fd, 0);
      ASSERT_GE(busy_fd, 0);
      ASSERT_EQ(write(busy_fd, "work 300", 8), 8);
      busy_sent = true;
      idle_got = read_to_eof(idle_fd);  // closed by the drain, with nothing sent
      busy_got = read_to_eof(busy_fd);  // the answer, then the close
      close(idle_fd);
      close(busy_fd);
      refused_connect = dial_blocking(port) < 0 ? 1 : 0;
    });
    while (!busy_sent.load() || srv.drain.open() < 2) tern::sleep_for(1ms);
    tern::sleep_for(20ms);  // the request is read and its 300 ms have begun
    const auto t0 = Clock::now();
    EXPECT_TRUE(srv.drain.wait(t0 + 5s));
    const auto took = Clock::now() - t0;
    accept_loop.wait();
    srv.conns.wait();
    tern::blocking([&] { clients.join(); });
    EXPECT_EQ(idle_got, "");
    EXPECT_EQ(busy_got, "done 300\nbye\n");
    EXPECT_EQ(srv.answered.load(), 1);
    EXPECT_EQ(refused_connect, 1);  // the listener is closed
    EXPECT_LT(took, 2s);
  });
}

TEST(Drain, ItsDeadlineClosesWhatIsStillThereAndReturns) {
  tern::Runtime rt(tern::test::procs(2));
  rt.run([] {
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    LineServer srv;
    const uint16_t port = l->local_addr().port();
    tern::WaitGroup accept_loop(1);
    tern::go([&] {
      srv.serve(*l);
      accept_loop.done();
    });
    std::atomic<bool> sent{false};
    std::string got;
    std::thread client([&] {
      int fd = dial_blocking(port);
      ASSERT_EQ(write(fd, "work 1500", 9), 9);
      sent = true;
      got = read_to_eof(fd);
      close(fd);
    });
    while (!sent.load() || srv.drain.open() < 1) tern::sleep_for(1ms);
    tern::sleep_for(20ms);
    const auto t0 = Clock::now();
    EXPECT_FALSE(srv.drain.wait(t0 + 200ms));
    const auto took = Clock::now() - t0;
    EXPECT_GE(took, 200ms);
    EXPECT_LT(took, 1000ms);  // not the request's 1.5 s
    accept_loop.wait();
    srv.conns.wait();  // the request ends; its write finds the stream closed
    tern::blocking([&] { client.join(); });
    EXPECT_EQ(got, "");
    EXPECT_EQ(srv.answered.load(), 0);
  });
}

// The drain's list holds each handle's entry, which lives inside the handle: a handle moved elsewhere stays joined
// (the list follows the move), handles leave in any order and each takes exactly its own entry out (the last entry
// takes its place), and start() then closes exactly the idle ones still there.
TEST(Drain, HandlesLeaveInAnyOrderAndMovedHandlesStayJoined) {
  tern::Runtime rt(tern::test::procs(1));
  rt.run([] {
    tern::net::Drain d;
    constexpr int kN = 64;
    std::vector<tern::net::Stream> streams(kN);  // never opened: the drain's close() of one is harmless
    std::vector<std::optional<tern::net::Drain::Conn>> conns(kN);
    for (int i = 0; i < kN; i++) conns[i].emplace(d.join(streams[i]));  // a move of each handle
    ASSERT_EQ(d.open(), size_t{kN});
    size_t left = kN;
    for (int i = 0; i < kN; i += 3) {
      conns[i].reset();
      EXPECT_EQ(d.open(), --left);
    }
    for (int i = kN - 1; i >= 0; i--) {
      if (conns[i] && i % 2 == 0) {
        EXPECT_TRUE(conns[i]->idle());
      }
    }
    EXPECT_TRUE(d.start());
    for (int i = 0; i < kN; i++) {
      if (!conns[i]) continue;
      if (i % 2 == 0) {
        EXPECT_FALSE(conns[i]->busy()) << "idle connection " << i << " was not closed by the drain";
      } else {
        EXPECT_TRUE(conns[i]->busy()) << "busy connection " << i << " was closed by the drain";
      }
    }
    for (int i = kN - 1; i >= 0; i--) {
      if (!conns[i]) continue;
      conns[i].reset();
      EXPECT_EQ(d.open(), --left);
    }
    EXPECT_TRUE(d.wait(Clock::now()));
  });
}

TEST(Drain, AConnectionJoiningAfterTheStartIsNotJoined) {
  tern::Runtime rt(tern::test::procs(1));
  rt.run([] {
    tern::net::Drain d;
    EXPECT_TRUE(d.start());
    EXPECT_FALSE(d.start());
    tern::net::Stream s;
    auto c = d.join(s);
    EXPECT_FALSE(c.joined());
    EXPECT_FALSE(c.idle());
    EXPECT_TRUE(d.wait(Clock::now()));
    auto l = tern::net::listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    d.watch(*l);  // closed at once
    EXPECT_FALSE(l->accept());
  });
}

}  // namespace
