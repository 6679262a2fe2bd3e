// tern::net streams over both netpoll backends (every test runs once with epoll and once with io_uring): echo at scale,
// bulk and gathered transfers arriving intact, read and write deadlines, dial errors, resets, half close, IPv6, socket
// options, closed streams, and calls from outside fibers. Listeners: net_listener_test.cc; the backends' read rules:
// tests/netpoll/read_rule_test.cc and uring_ring_model_test.cc.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "netpoll/io_backend.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/scale.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

// Upper bounds that catch a deadline that never fires, not scheduler jitter.
constexpr auto kSlack = 2s;

using test::NetTest;
using test::Pattern;

TEST_P(NetTest, RuntimeUsesTheBackendAsked) {
  Runtime rt(config());
  EXPECT_EQ(std::string(rt.poller_name()), config().poller);
}

TEST_P(NetTest, ThousandConcurrentConnectionsEcho) {
  Runtime rt(config());
  const int conns = static_cast<int>(test::scaled(1000, 50));
  constexpr int kRounds = 3;
  std::atomic<int> ok{0};
  rt.run([&] {
    auto l = listen("127.0.0.1:0", {.backlog = 4096});
    ASSERT_TRUE(l) << l.error().message();
    WaitGroup served;
    auto acceptor = spawn([&] {
      for (int i = 0; i < conns; i++) {
        auto s = l->accept(10s);
        ASSERT_TRUE(s) << s.error().message();
        served.add(1);
        go([&served, s = std::move(*s)]() mutable {
          char buf[512];
          for (;;) {
            auto r = s.read(buf, sizeof buf);
            if (!r || r.n == 0) break;
            if (!s.write_all(buf, r.n)) break;
          }
          served.done();
        });
      }
    });
    WaitGroup clients;
    for (int i = 0; i < conns; i++) {
      clients.add(1);
      go([&, i] {
        auto c = dial(l->local_addr(), 10s);
        EXPECT_TRUE(c) << c.error().message();
        if (c) {
          bool good = true;
          for (int round = 0; round < kRounds && good; round++) {
            char msg[64], back[64];
            int n = std::snprintf(msg, sizeof msg, "connection %d round %d", i, round);
            good = c->write_all(msg, static_cast<size_t>(n)) && c->read_full(back, static_cast<size_t>(n), 10s) &&
                   std::memcmp(msg, back, static_cast<size_t>(n)) == 0;
            yield();  // interleave the connections
          }
          if (good) ok.fetch_add(1);
        }
        clients.done();
      });
    }
    clients.wait();
    acceptor.join();
    served.wait();
  });
  EXPECT_EQ(ok.load(), conns);
}

// Sends `total` bytes in `wchunk` writes and receives them in `rchunk` reads, checking every byte.
void transfer(size_t total, size_t wchunk, size_t rchunk) {
  auto l = listen("127.0.0.1:0");
  ASSERT_TRUE(l) << l.error().message();
  auto sender = spawn([&] {
    auto s = l->accept(10s);
    ASSERT_TRUE(s) << s.error().message();
    Pattern pat(7);
    std::vector<char> buf(wchunk);
    for (size_t sent = 0; sent < total;) {
      size_t n = std::min(wchunk, total - sent);
      pat.fill(buf.data(), n);
      auto r = s->write_all(buf.data(), n);
      ASSERT_TRUE(r) << r.ec.message();
      sent += n;
    }
    s->shutdown(Shutdown::write);
  });
  auto c = dial(l->local_addr(), 10s);
  ASSERT_TRUE(c) << c.error().message();
  Pattern pat(7);
  std::vector<char> buf(rchunk), want(rchunk);
  size_t got = 0;
  for (;;) {
    auto r = c->read(buf.data(), rchunk);
    ASSERT_TRUE(r) << r.ec.message();
    if (r.n == 0) break;
    pat.fill(want.data(), r.n);
    ASSERT_EQ(std::memcmp(buf.data(), want.data(), r.n), 0) << "corrupt data at offset " << got;
    got += r.n;
  }
  EXPECT_EQ(got, total);
  sender.join();
}

TEST_P(NetTest, SixtyFourMiBThroughOneConnectionArriveIntact) {
  Runtime rt(config());
  const size_t total = static_cast<size_t>(test::scaled(64, 4)) << 20;
  rt.run([&] { transfer(total, 256 << 10, 64 << 10); });
}

TEST_P(NetTest, SmallReadsArriveIntact) {
  // Reads of a few KiB take the io_uring backend's provided-buffer path; odd sizes catch copy-length mistakes.
  Runtime rt(config());
  const size_t total = static_cast<size_t>(test::scaled(8, 1)) << 20;
  rt.run([&] { transfer(total, 7777, 3001); });
}

TEST_P(NetTest, WritevGathersEveryBuffer) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    // 200 buffers (more than one writev batch), some empty, 3 MiB in all: several partial sends.
    constexpr int kBufs = 200;
    std::vector<std::vector<char>> bufs(kBufs);
    std::vector<iovec> iov(kBufs);
    Pattern pat(11);
    size_t total = 0;
    for (int i = 0; i < kBufs; i++) {
      bufs[i].resize(i % 10 == 3 ? 0 : static_cast<size_t>((i * 7919) % 31000 + 1));
      pat.fill(bufs[i].data(), bufs[i].size());
      iov[i] = {bufs[i].data(), bufs[i].size()};
      total += bufs[i].size();
    }
    auto writer = spawn([&] {
      auto s = l->accept(10s);
      ASSERT_TRUE(s);
      auto r = s->writev(iov.data(), kBufs);
      EXPECT_TRUE(r) << r.ec.message();
      EXPECT_EQ(r.n, total);
    });
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    std::vector<char> got(total);
    auto r = c->read_full(got.data(), total, 10s);
    ASSERT_TRUE(r) << r.ec.message();
    size_t off = 0;
    for (auto& b : bufs) {
      if (b.empty()) continue;
      ASSERT_EQ(std::memcmp(got.data() + off, b.data(), b.size()), 0);
      off += b.size();
    }
    writer.join();
  });
}

TEST_P(NetTest, ReadTimeoutFiresAndTheStreamStaysUsable) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    char buf[16];
    netpoll::IoBackend* io = netpoll::current_backend();
    ASSERT_NE(io, nullptr);
    uint64_t timeouts = io->io_stats().timeouts;
    auto t0 = Clock::now();
    auto r = c->read(buf, sizeof buf, 50ms);
    auto took = Clock::now() - t0;
    EXPECT_EQ(r.ec, std::errc::timed_out);
    EXPECT_EQ(io->io_stats().timeouts, timeouts + 1);
    EXPECT_EQ(r.n, 0u);
    EXPECT_GE(took, 50ms);
    EXPECT_LT(took, 50ms + kSlack);
    // Data sent after the timeout is read in full: nothing was lost to the cancelled read.
    ASSERT_TRUE(s->write_all("after", 5));
    r = c->read_full(buf, 5, 10s);
    ASSERT_TRUE(r) << r.ec.message();
    EXPECT_EQ(std::string(buf, 5), "after");
    // And timeouts keep working on the same stream.
    r = c->read(buf, sizeof buf, 10ms);
    EXPECT_EQ(r.ec, std::errc::timed_out);
  });
}

TEST_P(NetTest, SetDeadlineAppliesToLaterOperationsUntilCleared) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    char buf[8];
    c->set_read_deadline(Clock::now() + 30ms);
    auto t0 = Clock::now();
    EXPECT_EQ(c->read(buf, sizeof buf).ec, std::errc::timed_out);
    EXPECT_GE(Clock::now() - t0, 30ms);
    // Expired: fails at once, without waiting.
    t0 = Clock::now();
    EXPECT_EQ(c->read_full(buf, sizeof buf).ec, std::errc::timed_out);
    EXPECT_LT(Clock::now() - t0, kSlack);
    // A per-operation timeout cannot extend the stream's deadline.
    EXPECT_EQ(c->read(buf, sizeof buf, 10s).ec, std::errc::timed_out);
    c->set_deadline(Clock::time_point::max());
    ASSERT_TRUE(s->write_all("x", 1));
    auto r = c->read(buf, sizeof buf);
    ASSERT_TRUE(r) << r.ec.message();
    EXPECT_EQ(r.n, 1u);
  });
}

TEST_P(NetTest, WriteTimeoutReportsPartialProgressAndTheStreamRecovers) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    // Small buffers so the peer's receive window and our send buffer fill quickly.
    int small = 16 << 10;
    setsockopt(c->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(s->fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    const size_t big = 32 << 20;  // far more than fits in the socket buffers
    std::vector<char> data(big, 'w');
    auto r = c->write_all(data.data(), big, 50ms);
    EXPECT_EQ(r.ec, std::errc::timed_out);
    EXPECT_GT(r.n, 0u);
    EXPECT_LT(r.n, big);
    // The peer drains; the rest goes through on the same stream.
    size_t sent = r.n;
    auto reader = spawn([&] {
      std::vector<char> buf(64 << 10);
      size_t got = 0;
      while (got < big) {
        auto rr = s->read(buf.data(), buf.size(), 10s);
        if (!rr || rr.n == 0) break;
        got += rr.n;
      }
      return got;
    });
    auto r2 = c->write_all(data.data() + sent, big - sent, 10s);
    EXPECT_TRUE(r2) << r2.ec.message();
    EXPECT_EQ(reader.join(), big);
  });
}

TEST_P(NetTest, DialRefused) {
  Runtime rt(config());
  rt.run([] {
    // A port that was just free: bind one, note it, close it.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    Address a = Address::loopback_v4(0);
    ASSERT_EQ(::bind(fd, a.sockaddr_ptr(), a.size()), 0);
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    Address free_port = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    ::close(fd);
    auto c = dial(free_port, 10s);
    EXPECT_EQ(c.error(), std::errc::connection_refused);
  });
}

TEST_P(NetTest, DialTimeout) {
  Runtime rt(config());
  rt.run([] {
    // A listener that never accepts, with the smallest backlog: once its queue is full the kernel drops further
    // SYNs, so a connect hangs until its deadline.
    int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    Address a = Address::loopback_v4(0);
    ASSERT_EQ(::bind(lfd, a.sockaddr_ptr(), a.size()), 0);
    ASSERT_EQ(::listen(lfd, 0), 0);
    sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(lfd, reinterpret_cast<sockaddr*>(&ss), &len);
    Address target = Address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    std::vector<Stream> held;
    bool timed_out = false;
    constexpr int kAttempts = 8;
    for (int i = 0; i < kAttempts && !timed_out; i++) {
      auto t0 = Clock::now();
      auto c = dial(target, 100ms);
      if (c) {
        held.push_back(std::move(*c));
        continue;
      }
      EXPECT_EQ(c.error(), std::errc::timed_out) << c.error().message();
      EXPECT_GE(Clock::now() - t0, 100ms);
      timed_out = true;
    }
    EXPECT_TRUE(timed_out) << "the backlog never filled";
    held.clear();
    ::close(lfd);
  });
}

TEST_P(NetTest, PeerResetIsAnError) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    auto reader = spawn([&] {
      char buf[16];
      return c->read(buf, sizeof buf, 10s);  // parks, then the reset arrives
    });
    sleep_for(20ms);
    linger lg{1, 0};  // close with RST instead of FIN
    setsockopt(s->fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    s->close();
    auto r = reader.join();
    EXPECT_EQ(r.ec, std::errc::connection_reset) << r.ec.message();
    // Writing to a reset connection fails too (EPIPE or ECONNRESET), without SIGPIPE killing the process.
    std::vector<char> data(1 << 20, 'x');
    auto w = c->write_all(data.data(), data.size(), 10s);
    EXPECT_FALSE(w);
    EXPECT_TRUE(w.ec == std::errc::broken_pipe || w.ec == std::errc::connection_reset) << w.ec.message();
  });
}

TEST_P(NetTest, HalfClose) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto server = spawn([&] {
      auto s = l->accept(10s);
      ASSERT_TRUE(s);
      std::string got;
      char buf[64];
      for (;;) {
        auto r = s->read(buf, sizeof buf, 10s);
        ASSERT_TRUE(r) << r.ec.message();
        if (r.n == 0) break;  // the client's FIN
        got.append(buf, r.n);
      }
      EXPECT_EQ(got, "ping");
      // Our direction is still open.
      ASSERT_TRUE(s->write_all("pong", 4));
    });
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    ASSERT_TRUE(c->write_all("ping", 4));
    ASSERT_FALSE(c->shutdown(Shutdown::write));
    char buf[8];
    auto r = c->read_full(buf, 4, 10s);
    ASSERT_TRUE(r) << r.ec.message();
    EXPECT_EQ(std::string(buf, 4), "pong");
    server.join();
    r = c->read_full(buf, 1, 10s);
    EXPECT_EQ(r.ec, Errc::eof);
    EXPECT_EQ(r.n, 0u);
  });
}

TEST_P(NetTest, ShutdownReadWakesAParkedReader) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    auto reader = spawn([&] {
      char buf[16];
      return c->read(buf, sizeof buf, 10s);
    });
    sleep_for(20ms);
    auto t0 = Clock::now();
    ASSERT_FALSE(c->shutdown(Shutdown::read));
    auto r = reader.join();
    EXPECT_TRUE(r) << r.ec.message();
    EXPECT_EQ(r.n, 0u);
    EXPECT_LT(Clock::now() - t0, kSlack);
  });
}

TEST_P(NetTest, Ipv6Loopback) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("[::1]:0");
    if (!l && (l.error() == std::errc::address_family_not_supported || l.error() == std::errc::address_not_available)) {
      GTEST_SKIP() << "no IPv6 loopback here: " << l.error().message();
    }
    ASSERT_TRUE(l) << l.error().message();
    EXPECT_TRUE(l->local_addr().is_v6());
    EXPECT_EQ(l->local_addr().to_string().rfind("[::1]:", 0), 0u) << l->local_addr().to_string();
    auto server = spawn([&] {
      auto s = l->accept(10s);
      ASSERT_TRUE(s);
      auto peer = s->peer_addr();
      ASSERT_TRUE(peer);
      EXPECT_TRUE(peer->is_v6());
      char buf[5];
      ASSERT_TRUE(s->read_full(buf, 5, 10s));
      ASSERT_TRUE(s->write_all(buf, 5));
    });
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c) << c.error().message();
    ASSERT_TRUE(c->write_all("hello", 5));
    char buf[5];
    ASSERT_TRUE(c->read_full(buf, 5, 10s));
    EXPECT_EQ(std::string(buf, 5), "hello");
    server.join();
  });
}

TEST_P(NetTest, NodelayIsOnByDefault) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    auto nodelay = [](int fd) {
      int v = 0;
      socklen_t len = sizeof v;
      getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len);
      return v != 0;
    };
    EXPECT_TRUE(nodelay(c->fd()));
    EXPECT_TRUE(nodelay(s->fd()));
    auto c2 = dial(l->local_addr(), 10s, {.nodelay = false});
    ASSERT_TRUE(c2);
    EXPECT_FALSE(nodelay(c2->fd()));
  });
}

TEST_P(NetTest, ZeroLengthReadReturnsZeroAndTouchesNothing) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    auto s = l->accept(10s);
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->write_all("data", 4));
    char guard[8] = {'g', 'g', 'g', 'g', 'g', 'g', 'g', 'g'};
    auto r = c->read(guard, 0, 10s);
    EXPECT_TRUE(r) << r.ec.message();
    EXPECT_EQ(r.n, 0u);
    EXPECT_EQ(std::string(guard, 8), "gggggggg");
    // The data is still there for a real read.
    r = c->read_full(guard, 4, 10s);
    ASSERT_TRUE(r);
    EXPECT_EQ(std::string(guard, 4), "data");
  });
}

TEST_P(NetTest, ClosedStreamsAndListenersSayClosed) {
  Runtime rt(config());
  rt.run([] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    c->close();
    EXPECT_FALSE(c->is_open());
    EXPECT_EQ(c->fd(), -1);
    char b[1];
    EXPECT_EQ(c->read(b, 1).ec, Errc::closed);
    EXPECT_EQ(c->write_all(b, 1).ec, Errc::closed);
    EXPECT_EQ(c->shutdown().value(), static_cast<int>(Errc::closed));
    EXPECT_EQ(c->peer_addr().error(), Errc::closed);
    EXPECT_FALSE(c->close());  // idempotent
    l->close();
    EXPECT_EQ(l->accept().error(), Errc::closed);
    EXPECT_EQ(l->fd(), -1);
  });
}

TEST_P(NetTest, StreamsAndListenersNeverOpenedSayNotOpen) {
  Runtime rt(config());
  rt.run([] {
    Stream never;
    char b[1];
    EXPECT_EQ(never.read(b, 1).ec, Errc::not_open);
    EXPECT_FALSE(never.close());
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l);
    auto c = dial(l->local_addr(), 10s);
    ASSERT_TRUE(c);
    Stream taken = std::move(*c);
    EXPECT_EQ(c->write_all(b, 1).ec, Errc::not_open);  // moved from
    EXPECT_TRUE(taken.is_open());
    Listener moved = std::move(*l);
    EXPECT_EQ(l->accept().error(), Errc::not_open);
    EXPECT_TRUE(moved.is_open());
  });
}

TEST_P(NetTest, OperationsOutsideFibersAreErrors) {
  Runtime rt(config());
  EXPECT_EQ(listen("127.0.0.1:0").error(), Errc::not_in_fiber);
  EXPECT_EQ(dial("127.0.0.1:1", 1s).error(), Errc::not_in_fiber);
  Listener l;
  rt.run([&] {
    auto r = listen("127.0.0.1:0");
    ASSERT_TRUE(r);
    l = std::move(*r);
  });
  EXPECT_EQ(l.accept(1s).error(), Errc::not_in_fiber);
  rt.run([&] { l.close(); });
}

// Not a pass/fail check of speed (the CI machine is shared): it measures loopback throughput and round trips per
// backend, prints them, and checks the bytes.
TEST_P(NetTest, LoopbackEchoThroughput) {
  Runtime rt(config());
  const size_t bulk = static_cast<size_t>(test::scaled(1024, 16)) << 20;
  const int conns = 32;
  const int round_trips = static_cast<int>(test::scaled(1000, 50));
  double mib_s = 0, rtt_s = 0;
  rt.run([&] {
    // Bulk: byte i of the stream is i % 251 (a prime, so a shifted or repeated block shows), checked with memcmp
    // against a reference, which keeps the check far cheaper than the transfer it checks.
    constexpr size_t kChunk = 256 << 10;
    constexpr size_t kPeriod = 251;
    std::vector<char> ref(kChunk + kPeriod);
    for (size_t i = 0; i < ref.size(); i++) ref[i] = static_cast<char>(i % kPeriod);
    auto bl = listen("127.0.0.1:0");
    ASSERT_TRUE(bl);
    auto t0 = Clock::now();
    auto sender = spawn([&] {
      auto s = bl->accept(10s);
      ASSERT_TRUE(s);
      for (size_t sent = 0; sent < bulk;) {
        size_t n = std::min(kChunk, bulk - sent);
        ASSERT_TRUE(s->write_all(ref.data() + sent % kPeriod, n));
        sent += n;
      }
    });
    auto c = dial(bl->local_addr(), 10s);
    ASSERT_TRUE(c);
    std::vector<char> buf(kChunk);
    size_t got = 0;
    for (;;) {
      auto r = c->read(buf.data(), buf.size(), 10s);
      ASSERT_TRUE(r) << r.ec.message();
      if (r.n == 0) break;
      ASSERT_EQ(std::memcmp(buf.data(), ref.data() + got % kPeriod, r.n), 0) << "corrupt data at offset " << got;
      got += r.n;
    }
    sender.join();
    EXPECT_EQ(got, bulk);
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    mib_s = static_cast<double>(bulk >> 20) / secs;

    auto l = listen("127.0.0.1:0", {.backlog = 1024});
    ASSERT_TRUE(l);
    WaitGroup wg;
    auto acceptor = spawn([&] {
      for (int i = 0; i < conns; i++) {
        auto s = l->accept(10s);
        ASSERT_TRUE(s);
        go([s = std::move(*s)]() mutable {
          char buf[128];
          for (;;) {
            auto r = s.read(buf, sizeof buf);
            if (!r || r.n == 0) return;
            if (!s.write_all(buf, r.n)) return;
          }
        });
      }
    });
    t0 = Clock::now();
    for (int i = 0; i < conns; i++) {
      wg.add(1);
      go([&] {
        auto c = dial(l->local_addr(), 10s);
        EXPECT_TRUE(c);
        if (c) {
          char msg[32] = "0123456789abcdef0123456789abcde";
          char back[32];
          for (int k = 0; k < round_trips; k++) {
            if (!c->write_all(msg, sizeof msg) || !c->read_full(back, sizeof back, 10s)) {
              ADD_FAILURE() << "echo failed";
              break;
            }
          }
        }
        wg.done();
      });
    }
    wg.wait();
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    rtt_s = conns * round_trips / secs;
    acceptor.join();
  });
  std::printf(
      "[ perf     ] %s: bulk %.0f MiB/s (one connection, 256 KiB writes); echo %.0f round trips/s "
      "(%d connections x 32 B)\n",
      GetParam().c_str(), mib_s, rtt_s, conns);
  RecordProperty("bulk_mib_per_s", static_cast<int>(mib_s));
  RecordProperty("echo_round_trips_per_s", static_cast<int>(rtt_s));
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
