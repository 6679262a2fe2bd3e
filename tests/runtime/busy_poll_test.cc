// A processor that always has work queued still reads the network (find_runnable's busy poll, every
// kBusyPollInterval ticks): a fiber waiting on a socket is woken within a few scheduling ticks of its data arriving,
// not when the queue runs dry or the monitor's 10 ms poll comes round. Without it, one processor kept busy by
// runnable fibers read new requests only in batches, and those batches became a convoy (docs/performance.md,
// "the busy poll").
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "tests/support/net.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;
using test::NetTest;

class BusyPollTest : public NetTest {};

TEST_P(BusyPollTest, AReaderWakesWhileItsProcessorStaysBusy) {
  Runtime rt(config(1));
  std::atomic<bool> written{false}, woken{false}, stop{false};
  std::atomic<uint64_t> ticks_after_write{0};
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    auto client = dial(l->local_addr(), 5s);
    ASSERT_TRUE(client) << client.error().message();
    auto server = l->accept(5s);
    ASSERT_TRUE(server) << server.error().message();
    // Two fibers that yield to each other keep the one processor's queue non-empty the whole time.
    auto busy = [&] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (written.load(std::memory_order_acquire) && !woken.load(std::memory_order_acquire))
          ticks_after_write.fetch_add(1, std::memory_order_relaxed);
        sched::yield();
      }
    };
    auto b1 = spawn(busy), b2 = spawn(busy);
    auto reader = spawn([&] {
      char c;
      auto r = server->read(&c, 1);
      EXPECT_TRUE(r && r.n == 1);
      woken.store(true, std::memory_order_release);
    });
    // The data comes from a plain thread, while the busy fibers run.
    std::thread writer([&] {
      std::this_thread::sleep_for(20ms);
      ASSERT_EQ(::send(client->fd(), "x", 1, MSG_NOSIGNAL), 1);
      written.store(true, std::memory_order_release);
    });
    reader.join();
    stop.store(true);
    b1.join();
    b2.join();
    writer.join();
  });
  // Each yield is a scheduling tick: the busy poll comes every 4, so the reader runs within a handful of them once the
  // kernel has the byte (the completion or readiness takes some microseconds to show: at ~50 ns a yield, a few
  // hundred ticks). Waiting for the monitor's 10 ms poll instead would take about 10 ms of yields: 100,000s of them.
  EXPECT_LT(ticks_after_write.load(), 20'000u);
}

// What the busy poll readies runs ahead of the work already queued (P::ioq). Behind it, a request that arrived during
// a burst of queued CPU work was read only after the whole burst, so whatever it waited on next started late, and
// requests that arrived during one burst came back together (the convoy of docs/performance.md, "ahead of the
// queue"). Here 32 fibers that each burn 300 us are queued behind a reader whose byte is already in the socket: the
// reader must run within the first few of them (the busy poll comes every kBusyPollInterval starts), not after all.
TEST_P(BusyPollTest, AFiberTheNetworkReadiedRunsAheadOfQueuedWork) {
  Runtime rt(config(1));
  constexpr int kBurners = 32;
  std::atomic<int> burned{0};
  std::atomic<int> burned_when_read{-1};
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    auto client = dial(l->local_addr(), 5s);
    ASSERT_TRUE(client) << client.error().message();
    auto server = l->accept(5s);
    ASSERT_TRUE(server) << server.error().message();
    auto reader = spawn([&] {
      char c;
      auto r = server->read(&c, 1);
      EXPECT_TRUE(r && r.n == 1);
      burned_when_read.store(burned.load());
    });
    sched::yield();  // the reader parks on its empty socket
    std::vector<JoinHandle<void>> burners;
    for (int i = 0; i < kBurners; i++) {
      burners.push_back(spawn([&] {
        const auto until = std::chrono::steady_clock::now() + 300us;
        while (std::chrono::steady_clock::now() < until) {
        }
        burned.fetch_add(1);
      }));
    }
    ASSERT_EQ(::send(client->fd(), "x", 1, MSG_NOSIGNAL), 1);
    for (auto& b : burners) b.join();
    reader.join();
  });
  ASSERT_GE(burned_when_read.load(), 0);
  EXPECT_LT(burned_when_read.load(), 8) << "the reader waited behind the queued burners";
}

// Past the knee the order flips: with more queued than ioq could jump (here the local queue overflowed into the global
// queue), what the network readies takes its turn behind everything already waiting. Ahead of it, under overload each
// poll's new arrivals were served first and the oldest last, for seconds (bench/overload.sh at twice the peak:
// admitted p99 5 s with --max-inflight auto, whose queueing rule then saw only the newest requests' short waits).
// Here 400 fibers are queued (the local queue holds 256: the rest overflow to the global queue) before the reader's
// byte arrives: the reader must run behind all but the last few, where the queue has shrunk below ioq's reach.
TEST_P(BusyPollTest, PastTheKneeTheNetworksFibersTakeTheirTurnBehindTheQueue) {
  Runtime rt(config(1));
  constexpr int kQueued = 400;
  std::atomic<int> ran{0};
  std::atomic<int> ran_when_read{-1};
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    auto client = dial(l->local_addr(), 5s);
    ASSERT_TRUE(client) << client.error().message();
    auto server = l->accept(5s);
    ASSERT_TRUE(server) << server.error().message();
    auto reader = spawn([&] {
      char c;
      auto r = server->read(&c, 1);
      EXPECT_TRUE(r && r.n == 1);
      ran_when_read.store(ran.load());
    });
    sched::yield();  // the reader parks on its empty socket
    std::vector<JoinHandle<void>> queued;
    for (int i = 0; i < kQueued; i++) {
      queued.push_back(spawn([&] {
        const auto until = std::chrono::steady_clock::now() + 5us;
        while (std::chrono::steady_clock::now() < until) {
        }
        ran.fetch_add(1);
      }));
    }
    ASSERT_EQ(::send(client->fd(), "x", 1, MSG_NOSIGNAL), 1);
    for (auto& q : queued) q.join();
    reader.join();
  });
  ASSERT_GE(ran_when_read.load(), 0);
  EXPECT_GE(ran_when_read.load(), kQueued - 64) << "the reader went ahead of the queue past the knee";
}

// The other side of running the network's fibers first: the queued work still runs while the network keeps readying
// fibers. 64 connections bounce a byte back and forth as fast as one processor can, so every busy poll finds fibers;
// a fiber that only yields must still get its turns (the next busy poll waits for ioq to run dry and for
// kBusyPollInterval starts from the queues).
TEST_P(BusyPollTest, QueuedWorkRunsWhileTheNetworkKeepsReadyingFibers) {
  Runtime rt(config(1));
  constexpr int kPairs = 64;
  constexpr uint64_t kRoundTrips = 20'000;
  std::atomic<uint64_t> trips{0}, yields{0};
  std::atomic<bool> stop{false};
  rt.run([&] {
    auto l = listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    std::vector<Stream> clients, servers;
    for (int i = 0; i < kPairs; i++) {
      auto c = dial(l->local_addr(), 5s);
      ASSERT_TRUE(c) << c.error().message();
      auto s = l->accept(5s);
      ASSERT_TRUE(s) << s.error().message();
      clients.push_back(std::move(*c));
      servers.push_back(std::move(*s));
    }
    std::vector<JoinHandle<void>> fibers;
    for (int i = 0; i < kPairs; i++) {
      fibers.push_back(spawn([&, i] {  // echoes until its client closes
        char c;
        while (servers[i].read(&c, 1).n == 1 && servers[i].write_all(&c, 1)) {
        }
      }));
      fibers.push_back(spawn([&, i] {
        char c = 'x';
        while (!stop.load() && clients[i].write_all(&c, 1) && clients[i].read(&c, 1).n == 1) {
          if (trips.fetch_add(1) + 1 >= kRoundTrips) stop.store(true);
        }
        clients[i].close();
      }));
    }
    auto yielder = spawn([&] {
      while (!stop.load()) {
        yields.fetch_add(1);
        sched::yield();
      }
    });
    for (auto& f : fibers) f.join();
    yielder.join();
  });
  EXPECT_GE(trips.load(), kRoundTrips);
  // At least 4 queue starts in every 4 + 64, shared by the yielder and whatever the regular polls queued: far more
  // than this. Starved, it would get a turn only when the network went quiet.
  EXPECT_GE(yields.load(), 100u);
}

// epoll only. With io_uring the read's completion is posted by kernel task work that runs on the thread that armed
// it, when that thread next enters the kernel; two fibers yielding to each other make no system call, so it waits for
// the next interrupt (a few ms: 75,000 ticks here) whether or not anyone polls. Under real load every reply's write
// enters the kernel; a ring per M that flushes its own task work is issue 21's.
INSTANTIATE_TEST_SUITE_P(Backends, BusyPollTest, ::testing::Values("epoll"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
