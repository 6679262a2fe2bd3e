// A processor that always has work queued still reads the network (find_runnable's busy poll, every
// kBusyPollInterval ticks): a fiber waiting on a socket is woken within a few scheduling ticks of its data arriving,
// not when the queue runs dry or the monitor's 10 ms poll comes round. Without it, one processor kept busy by
// runnable fibers read new requests only in batches, and those batches became a convoy (docs/performance.md,
// "the busy poll").
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

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

// epoll only. With io_uring the read's completion is posted by kernel task work that runs on the thread that armed
// it, when that thread next enters the kernel; two fibers yielding to each other make no system call, so it waits for
// the next interrupt (a few ms: 75,000 ticks here) whether or not anyone polls. Under real load every reply's write
// enters the kernel; a ring per M that flushes its own task work is issue 21's.
INSTANTIATE_TEST_SUITE_P(Backends, BusyPollTest, ::testing::Values("epoll"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
