// Closing a Stream or Listener while other fibers are inside operations on it (runtime/net/close_gate.h), over both
// netpoll backends: a close wakes a parked read (small, large, with and without a deadline: each takes a different
// io_uring path), a parked write and a parked accept with Errc::closed, and a stress loop closes connections while
// their reads and writes run, with new connections taking the freed descriptor numbers meanwhile, and checks that no
// read ever returns another connection's bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/scale.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

// Upper bound on how long a woken operation may take to return: catches one that is never woken, not jitter.
constexpr auto kSlack = 2s;
// How long the closing fiber lets the victim park first. Not a correctness bound: a close that comes before the park
// must fail the operation just the same (the stress test covers that order).
constexpr auto kParkFirst = 20ms;

using test::NetTest;

struct Pair {
  Listener l;
  Stream client, server;
};

void make_pair(Pair& p) {
  auto l = listen("127.0.0.1:0");
  ASSERT_TRUE(l) << l.error().message();
  p.l = std::move(*l);
  auto c = dial(p.l.local_addr(), 10s);
  ASSERT_TRUE(c) << c.error().message();
  auto s = p.l.accept(10s);
  ASSERT_TRUE(s) << s.error().message();
  p.client = std::move(*c);
  p.server = std::move(*s);
}

// A read of `len` bytes parked on a stream nobody writes to, ended by close() from this fiber.
void close_wakes_read(size_t len, bool deadline) {
  Pair p;
  make_pair(p);
  auto reader = spawn([&] {
    std::vector<char> buf(len);
    return deadline ? p.client.read(buf.data(), len, 60s) : p.client.read(buf.data(), len);
  });
  sleep_for(kParkFirst);
  auto t0 = Clock::now();
  EXPECT_FALSE(p.client.close());
  IoResult r = reader.join();
  EXPECT_EQ(r.ec, Errc::closed) << r.ec.message();
  EXPECT_EQ(r.n, 0u);
  EXPECT_LT(Clock::now() - t0, kSlack);
  EXPECT_FALSE(p.client.is_open());
  char b[1];
  EXPECT_EQ(p.client.read(b, 1).ec, Errc::closed);
}

TEST_P(NetTest, CloseWakesABlockedRead) {
  Runtime rt(config());
  rt.run([] { close_wakes_read(64, /*deadline=*/false); });
}

TEST_P(NetTest, CloseWakesABlockedReadWithADeadline) {
  Runtime rt(config());
  rt.run([] { close_wakes_read(64, /*deadline=*/true); });
}

// Above the io_uring backend's multishot size: a receive straight into the caller's buffer, which must complete in the
// kernel before the read may return.
TEST_P(NetTest, CloseWakesABlockedLargeRead) {
  Runtime rt(config());
  rt.run([] {
    close_wakes_read(256 << 10, /*deadline=*/false);
    close_wakes_read(256 << 10, /*deadline=*/true);
  });
}

TEST_P(NetTest, CloseWakesABlockedWrite) {
  Runtime rt(config());
  rt.run([] {
    Pair p;
    make_pair(p);
    // Writes to a peer that never reads, until the socket buffers of both ends are full and the write parks.
    std::atomic<size_t> put{0};
    auto writer = spawn([&] {
      std::vector<char> chunk(64 << 10, 'w');
      for (;;) {
        IoResult r = p.client.write_all(chunk.data(), chunk.size());
        put.fetch_add(r.n);
        if (!r) return r.ec;
      }
    });
    // Parked: no progress for a while (bounded, so a writer that never parks fails below rather than hangs).
    size_t last = SIZE_MAX;
    for (int i = 0; i < 500 && put.load() != last; i++) {
      last = put.load();
      sleep_for(kParkFirst);
    }
    auto t0 = Clock::now();
    EXPECT_FALSE(p.client.close());
    std::error_code ec = writer.join();
    EXPECT_EQ(ec, Errc::closed) << ec.message();
    EXPECT_GT(put.load(), 0u);
    EXPECT_LT(Clock::now() - t0, kSlack);
  });
}

TEST_P(NetTest, CloseWakesABlockedAccept) {
  Runtime rt(config());
  rt.run([] {
    for (bool deadline : {false, true}) {
      auto l2 = listen("127.0.0.1:0");
      ASSERT_TRUE(l2);
      auto acceptor = spawn([&] { return deadline ? l2->accept(60s) : l2->accept(); });
      sleep_for(kParkFirst);
      auto t0 = Clock::now();
      EXPECT_FALSE(l2->close());
      auto s = acceptor.join();
      ASSERT_FALSE(s);
      EXPECT_EQ(s.error(), Errc::closed) << s.error().message();
      EXPECT_LT(Clock::now() - t0, kSlack);
      EXPECT_EQ(l2->accept().error(), Errc::closed);
    }
  });
}

TEST_P(NetTest, CloseWhileAnotherFiberClosesIsANoOp) {
  Runtime rt(config());
  rt.run([] {
    Pair p;
    make_pair(p);
    auto reader = spawn([&] {
      char b[16];
      return p.client.read(b, sizeof b);
    });
    sleep_for(kParkFirst);
    WaitGroup wg;
    for (int i = 0; i < 4; i++) {
      wg.add(1);
      go([&] {
        EXPECT_FALSE(p.client.close());
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(reader.join().ec, Errc::closed);
  });
}

// Connections closed while a reader and a writer are inside operations on them, at random points (before the park,
// while parked, while data moves), from a third fiber; several loops at once so that freed descriptor numbers are taken
// at once by new connections. Each server floods its connection with one byte value, the connection's id, so a read
// that ever reached another connection's socket through a reused descriptor number shows as a wrong byte.
TEST_P(NetTest, CloseRacingReadsAndWritesStress) {
  Runtime rt(config(4));
  const int rounds = static_cast<int>(test::scaled(300, 40));
  constexpr int kLoops = 6;
  // Bounded, so that neither side runs as a busy loop (nothing preempts it) that delays the others' wakeups: enough
  // that reads and writes are still moving data at most of the random close points.
  static constexpr size_t kServerBytes = 256 << 10, kClientBytes = 1 << 20;
  std::atomic<uint64_t> wrong_bytes{0}, bytes_read{0}, bad_errors{0};
  rt.run([&] {
    auto l = listen("127.0.0.1:0", {.backlog = 1024});
    ASSERT_TRUE(l);
    WaitGroup servers;
    auto acceptor = spawn([&] {
      for (;;) {
        auto s = l->accept();
        if (!s) {
          EXPECT_EQ(s.error(), Errc::closed);
          return;
        }
        servers.add(1);
        go([&servers, s = std::move(*s)]() mutable {
          char id;
          if (s.read_full(&id, 1, 10s)) {
            char buf[4096];
            std::fill(buf, buf + sizeof buf, id);
            for (size_t put = 0; put < kServerBytes && s.write_all(buf, sizeof buf); put += sizeof buf) {
            }
            // Then take what the client's writer sends until the client closes.
            while (IoResult r = s.read(buf, sizeof buf)) {
              if (r.n == 0) break;
            }
          }
          servers.done();
        });
      }
    });
    WaitGroup loops;
    for (int j = 0; j < kLoops; j++) {
      loops.add(1);
      go([&, j] {
        uint64_t rng = 0x9E3779B97F4A7C15ull * (j + 1);
        for (int round = 0; round < rounds; round++) {
          rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
          const char id = static_cast<char>((round * kLoops + j) % 255 + 1);
          auto c = dial(l->local_addr(), 10s);
          if (!c) {
            ADD_FAILURE() << c.error().message();
            break;
          }
          Stream s = std::move(*c);
          if (!s.write_all(&id, 1)) {
            ADD_FAILURE() << "id write failed";
            break;
          }
          // Reads of each io_uring path by round: multishot-sized, large, with and without a deadline.
          const size_t len = rng & 1 ? 512 : 64 << 10;
          const bool deadline = rng & 2;
          std::atomic<bool> streaming{false};  // the reader has had bytes this round
          auto reader = spawn([&, len, deadline] {
            std::unique_ptr<char[]> buf(new char[len]);
            for (;;) {
              IoResult r = deadline ? s.read(buf.get(), len, 30s) : s.read(buf.get(), len);
              for (size_t i = 0; i < r.n; i++) wrong_bytes.fetch_add(buf[i] != id, std::memory_order_relaxed);
              bytes_read.fetch_add(r.n, std::memory_order_relaxed);
              if (r.n > 0) streaming.store(true, std::memory_order_relaxed);
              if (!r || r.n == 0) {
                if (r.ec != Errc::closed) bad_errors.fetch_add(1);
                return;
              }
            }
          });
          auto writer = spawn([&] {
            char junk[8192] = {};
            for (size_t put = 0; put < kClientBytes; put += sizeof junk) {
              IoResult r = s.write_all(junk, sizeof junk);
              if (!r) {
                if (r.ec != Errc::closed) bad_errors.fetch_add(1);
                return;
              }
            }
          });
          // Close at once, after a few yields, or after the reader has had time to park; every fourth round only once
          // bytes are flowing, so that closes in the middle of a stream happen however slow the build (under the
          // sanitizers the server's first bytes can take longer than all the other waits).
          if (round % 4 == 0) {
            const auto until = std::chrono::steady_clock::now() + 10s;
            while (!streaming.load() && std::chrono::steady_clock::now() < until) sleep_for(100us);
          }
          switch ((rng >> 2) % 3) {
            case 0:
              break;
            case 1:
              for (uint64_t k = 0; k < (rng >> 4) % 16; k++) yield();
              break;
            default:
              sleep_for(std::chrono::microseconds((rng >> 4) % 500));
          }
          EXPECT_FALSE(s.close());
          reader.join();
          writer.join();
        }
        loops.done();
      });
    }
    loops.wait();
    l->close();
    acceptor.join();
    servers.wait();
  });
  EXPECT_EQ(wrong_bytes.load(), 0u) << "a read returned another connection's bytes";
  EXPECT_EQ(bad_errors.load(), 0u) << "an interrupted operation reported something other than Errc::closed";
  EXPECT_GT(bytes_read.load(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
