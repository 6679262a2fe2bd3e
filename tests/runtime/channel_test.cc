// Tests of tern::Channel (runtime/sync/channel.h): Go's channel semantics for fibers and plain threads.
#include "runtime/sync/channel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <ostream>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

TEST(Channel, UnbufferedDeliversInOrder) {
  tern::Runtime rt(procs(2));
  const int n = scaled(10000);
  rt.run([&] {
    tern::Channel<int> ch;
    tern::go([&] {
      for (int i = 0; i < n; i++) EXPECT_TRUE(ch.send(i));
      EXPECT_TRUE(ch.close());
    });
    int expect = 0;
    while (std::optional<int> v = ch.recv()) {
      EXPECT_EQ(*v, expect);
      EXPECT_EQ(ch.size(), 0u);  // unbuffered: nothing is ever parked in a buffer
      expect++;
    }
    EXPECT_EQ(expect, n);
  });
}

TEST(Channel, UnbufferedSendWaitsForReceiver) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<int> ch;
    std::atomic<bool> sent{false};
    auto h = tern::spawn([&] {
      ch.send(7);
      sent = true;
    });
    tern::sleep_for(std::chrono::milliseconds(5));
    EXPECT_FALSE(sent.load());
    EXPECT_EQ(ch.recv(), 7);
    h.join();
    EXPECT_TRUE(sent.load());
  });
}

TEST(Channel, BufferedIsFifoAndBounded) {
  // Operations that need no waiting work outside any runtime.
  tern::Channel<int> ch(4);
  EXPECT_EQ(ch.capacity(), 4u);
  for (int i = 0; i < 4; i++) EXPECT_TRUE(ch.try_send(i));
  EXPECT_FALSE(ch.try_send(99));  // full
  EXPECT_EQ(ch.size(), 4u);
  for (int i = 0; i < 4; i++) EXPECT_EQ(ch.try_recv(), i);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  // Wrap around the ring.
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 3; i++) EXPECT_TRUE(ch.try_send(round * 10 + i));
    for (int i = 0; i < 3; i++) EXPECT_EQ(ch.try_recv(), round * 10 + i);
  }
}

TEST(Channel, UnbufferedTryOpsNeedAPartner) {
  tern::Channel<int> ch;
  EXPECT_FALSE(ch.try_send(1));
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  EXPECT_FALSE(ch.closed());
}

TEST(Channel, TrySendHandsToParkedReceiver) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Channel<int> ch;
    std::optional<int> got;
    auto h = tern::spawn([&] { got = ch.recv(); });
    tern::yield();  // the receiver parks
    while (!ch.try_send(5)) tern::yield();
    h.join();
    EXPECT_EQ(got, 5);
  });
}

// Several senders blocked on a full channel, blocked in a known order: their values come out behind the buffered ones,
// in the order the senders blocked. On one P a fiber runs from its `blocking` store into the park without giving the
// P up, so once the main fiber sees the store, that sender is queued.
TEST(Channel, BlockedSendersKeepFifoBehindTheBuffer) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    constexpr int kSenders = 6;
    tern::Channel<int> ch(2);
    EXPECT_TRUE(ch.send(100));
    EXPECT_TRUE(ch.send(101));
    std::vector<tern::JoinHandle<void>> hs;
    for (int k = 0; k < kSenders; k++) {
      std::atomic<bool> blocking{false};
      hs.push_back(tern::spawn([&ch, &blocking, k] {
        blocking = true;
        EXPECT_TRUE(ch.send(k));  // full: parks
      }));
      while (!blocking.load()) tern::yield();
    }
    EXPECT_EQ(ch.size(), 2u);
    std::vector<int> got;
    for (int i = 0; i < kSenders + 2; i++) got.push_back(ch.recv().value_or(-1));
    EXPECT_EQ(got, (std::vector<int>{100, 101, 0, 1, 2, 3, 4, 5}));
    for (auto& h : hs) h.join();
  });
}

// Receivers blocked on an empty channel, in a known order (as above), are served in that order.
TEST(Channel, BlockedReceiversAreServedInFifoOrder) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    constexpr int kReceivers = 6;
    for (size_t cap : {0u, 3u}) {
      tern::Channel<int> ch(cap);
      std::vector<int> got(kReceivers, -1);
      std::vector<tern::JoinHandle<void>> hs;
      for (int k = 0; k < kReceivers; k++) {
        std::atomic<bool> blocking{false};
        hs.push_back(tern::spawn([&ch, &got, &blocking, k] {
          blocking = true;
          got[k] = ch.recv().value_or(-2);  // empty: parks
        }));
        while (!blocking.load()) tern::yield();
      }
      for (int v = 0; v < kReceivers; v++) EXPECT_TRUE(ch.send(v));
      for (auto& h : hs) h.join();
      EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 4, 5})) << "capacity " << cap;
    }
  });
}

TEST(Channel, RecvFromClosedDrainsThenNullopt) {
  tern::Channel<int> ch(3);
  ch.try_send(1);
  ch.try_send(2);
  EXPECT_TRUE(ch.close());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.recv(), 2);
  EXPECT_EQ(ch.recv(), std::nullopt);  // closed and drained: at once, repeatedly
  EXPECT_EQ(ch.recv(), std::nullopt);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
}

TEST(Channel, SendToClosedFailsAndCloseTwiceIsReported) {
  tern::Channel<int> buffered(2);
  tern::Channel<int> unbuffered;
  EXPECT_TRUE(buffered.close());
  EXPECT_TRUE(unbuffered.close());
  EXPECT_FALSE(buffered.send(1));
  EXPECT_FALSE(unbuffered.send(1));
  EXPECT_FALSE(buffered.try_send(1));
  EXPECT_EQ(buffered.size(), 0u);
  EXPECT_FALSE(buffered.close());
  EXPECT_FALSE(unbuffered.close());
}

TEST(Channel, CloseWakesAllReceivers) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    constexpr int kReceivers = 16;
    tern::Channel<int> ch;
    tern::WaitGroup wg;
    std::atomic<int> got_nullopt{0};
    for (int i = 0; i < kReceivers; i++) {
      wg.add(1);
      tern::go([&] {
        if (!ch.recv().has_value()) got_nullopt++;
        wg.done();
      });
    }
    tern::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(got_nullopt.load(), 0);
    EXPECT_TRUE(ch.close());
    wg.wait();
    EXPECT_EQ(got_nullopt.load(), kReceivers);
  });
}

TEST(Channel, CloseWakesAllSenders) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    constexpr int kSenders = 16;
    tern::Channel<int> ch(1);
    ch.send(-1);  // full: every further send waits
    tern::WaitGroup wg;
    std::atomic<int> failed{0};
    for (int i = 0; i < kSenders; i++) {
      wg.add(1);
      tern::go([&, i] {
        if (!ch.send(i)) failed++;
        wg.done();
      });
    }
    tern::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(ch.close());
    wg.wait();
    EXPECT_EQ(failed.load(), kSenders);
    EXPECT_EQ(ch.recv(), -1);  // the buffered value survives the close
    EXPECT_EQ(ch.recv(), std::nullopt);
  });
}

TEST(Channel, MoveOnlyValues) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<std::unique_ptr<int>> ch(1);
    tern::go([&] {
      for (int i = 0; i < 3; i++) ch.send(std::make_unique<int>(i));
      ch.close();
    });
    int expect = 0;
    while (auto v = ch.recv()) EXPECT_EQ(**v, expect++);
    EXPECT_EQ(expect, 3);
  });
}

TEST(Channel, BufferedValuesDestroyedWithChannel) {
  auto token = std::make_shared<int>(1);
  {
    tern::Channel<std::shared_ptr<int>> ch(8);
    for (int i = 0; i < 5; i++) ch.try_send(token);
    ch.try_recv();
    EXPECT_EQ(token.use_count(), 5);
  }
  EXPECT_EQ(token.use_count(), 1);
}

// The receiver destroys the channel as soon as recv() returns, while the sender may still be inside send(). The
// sender must be done with the channel by the time the receiver can run (caught by ASan/TSan otherwise).
TEST(Channel, ReceiverMayDestroyChannelRightAfterRecv) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(5000);
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      auto ch = std::make_unique<tern::Channel<int>>();
      tern::WaitGroup wg;
      wg.add(1);
      tern::go([&wg, c = ch.get(), i] {
        c->send(i);
        wg.done();
      });
      EXPECT_EQ(ch->recv(), i);
      ch.reset();
      wg.wait();
    }
  });
}

struct Mpmc {
  int procs;
  size_t capacity;
};
// GoogleTest prints a parameter it has no printer for as its bytes, padding included, so `ctest -N` differed between
// builds.
void PrintTo(const Mpmc& m, std::ostream* os) {
  *os << "procs=" << m.procs << " capacity=" << m.capacity;
}

class ChannelMpmc : public ::testing::TestWithParam<Mpmc> {};

// Several producers and consumers across Ps: every value arrives exactly once, and each producer's values arrive in
// the order it sent them.
TEST_P(ChannelMpmc, NoLossNoDuplicationPerProducerOrder) {
  const Mpmc p = GetParam();
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  const int per_producer = scaled(5000);
  tern::Runtime rt(procs(p.procs));
  rt.run([&] {
    tern::Channel<int> ch(p.capacity);
    std::vector<std::vector<int>> got(kConsumers);
    tern::WaitGroup producers;
    tern::WaitGroup consumers;
    for (int c = 0; c < kConsumers; c++) {
      consumers.add(1);
      tern::go([&, c] {
        while (auto v = ch.recv()) got[c].push_back(*v);
        consumers.done();
      });
    }
    for (int pr = 0; pr < kProducers; pr++) {
      producers.add(1);
      tern::go([&, pr] {
        for (int i = 0; i < per_producer; i++) EXPECT_TRUE(ch.send(pr * per_producer + i));
        producers.done();
      });
    }
    producers.wait();
    ch.close();
    consumers.wait();
    std::vector<int> seen(kProducers * per_producer, 0);
    for (auto& values : got) {
      std::vector<int> last(kProducers, -1);
      for (int v : values) {
        seen[v]++;
        int pr = v / per_producer;
        EXPECT_LT(last[pr], v) << "producer " << pr << " reordered";
        last[pr] = v;
      }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(seen.size()));
  });
}

INSTANTIATE_TEST_SUITE_P(ProcsAndCapacity, ChannelMpmc,
                         ::testing::Values(Mpmc{1, 0}, Mpmc{2, 0}, Mpmc{4, 0}, Mpmc{2, 1}, Mpmc{2, 16}, Mpmc{4, 64}),
                         [](const auto& info) {
                           return "procs" + std::to_string(info.param.procs) + "_cap" +
                                  std::to_string(info.param.capacity);
                         });

// Plain std::threads and fibers on the same channels, in both directions: the threads block, the fibers park.
TEST(Channel, PlainThreadsAndFibers) {
  tern::Runtime rt(procs(2));
  const int n = scaled(5000);
  tern::Channel<int> to_fibers;
  tern::Channel<int> to_thread(4);
  std::thread producer([&] {
    for (int i = 0; i < n; i++) EXPECT_TRUE(to_fibers.send(i));
    to_fibers.close();
  });
  long sum = 0;
  int count = 0;
  std::thread consumer([&] {
    while (auto v = to_thread.recv()) {
      sum += *v;
      count++;
    }
  });
  rt.run([&] {
    tern::WaitGroup wg;
    for (int f = 0; f < 3; f++) {
      wg.add(1);
      tern::go([&] {
        while (auto v = to_fibers.recv()) EXPECT_TRUE(to_thread.send(*v * 2));
        wg.done();
      });
    }
    wg.wait();
    to_thread.close();
  });
  producer.join();
  consumer.join();
  EXPECT_EQ(count, n);
  EXPECT_EQ(sum, static_cast<long>(n) * (n - 1));  // the fibers send 2 * i
}

// Regression loop for a hang seen once in PlainThreadsAndFibers (a plain thread blocked in send with every scheduler
// thread idle: a wakeup lost between a plain thread and a parked fiber). Each round starts a fresh runtime, whose Ms
// come and go idle, and passes few values through small channels, so the plain threads wake parked fibers (recv in
// one direction, send on a full buffer in the other) mostly while Ps are going idle, the window where such a wakeup
// can be lost. A watchdog turns a hang into a failure with the round it happened in, instead of a suite timeout.
TEST(Channel, PlainThreadsWakeParkedFibersAcrossRuntimes) {
  const int rounds = scaled(400);
  constexpr int kValues = 64;
  constexpr int kFibers = 3;
  // Far above a round's milliseconds even under a sanitizer on a loaded machine.
  constexpr auto kStall = std::chrono::seconds(30);
  std::atomic<int> round{0};
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    int seen = -1;
    auto last = std::chrono::steady_clock::now();
    while (!finished.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      int r = round.load();
      auto now = std::chrono::steady_clock::now();
      if (r != seen) {
        seen = r;
        last = now;
      } else if (now - last > kStall) {
        std::fprintf(stderr, "PlainThreadsWakeParkedFibersAcrossRuntimes: round %d made no progress for %llds\n", r,
                     static_cast<long long>(kStall.count()));
        std::abort();
      }
    }
  });
  for (int r = 0; r < rounds; r++) {
    tern::Runtime rt(procs(2));
    tern::Channel<int> to_fibers;
    tern::Channel<int> to_thread(1);
    std::thread producer([&] {
      for (int i = 0; i < kValues; i++) EXPECT_TRUE(to_fibers.send(i));
      to_fibers.close();
    });
    long sum = 0;
    std::thread consumer([&] {
      while (auto v = to_thread.recv()) sum += *v;
    });
    rt.run([&] {
      tern::WaitGroup wg;
      wg.add(kFibers);
      for (int f = 0; f < kFibers; f++) {
        tern::go([&] {
          while (auto v = to_fibers.recv()) EXPECT_TRUE(to_thread.send(*v));
          wg.done();
        });
      }
      wg.wait();
      to_thread.close();
    });
    producer.join();
    consumer.join();
    EXPECT_EQ(sum, static_cast<long>(kValues) * (kValues - 1) / 2) << "round " << r;
    if (HasFailure()) break;
    round.store(r + 1);
  }
  finished.store(true);
  watchdog.join();
}

// A program thread's send wakes the runtime's last fiber, which ends run(); the runtime is destroyed at once, while
// the thread may still be inside the wakeup (Sched::ready's wakep). Shutdown waits for it: before it did, the
// sanitizers caught the thread reading the freed scheduler (first seen with the signal relay thread, signals.cc).
TEST(Channel, ARuntimeDestroyedRightAfterAThreadWokeItsLastFiberWaitsForTheWakeup) {
  const int rounds = scaled(300);
  for (int r = 0; r < rounds; r++) {
    auto ch = std::make_shared<tern::Channel<int>>(1);
    std::thread sender;
    {
      tern::Runtime rt(procs(2));
      rt.run([&] {
        sender = std::thread([ch, r] { ch->send(r); });
        EXPECT_EQ(ch->recv(), r);
      });
    }
    sender.join();
  }
}

TEST(Channel, ThreadsOnlyWithoutRuntime) {
  tern::Channel<int> ch;
  const int n = scaled(2000);
  std::thread producer([&] {
    for (int i = 0; i < n; i++) ch.send(i);
    ch.close();
  });
  int expect = 0;
  while (auto v = ch.recv()) EXPECT_EQ(*v, expect++);
  EXPECT_EQ(expect, n);
  producer.join();
}

}  // namespace
