// Tests of tern::WaitGroup (runtime/sync/wait_group.h), from fibers and from plain threads.
#include "runtime/sync/wait_group.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

TEST(WaitGroup, ZeroCountDoesNotWait) {
  tern::WaitGroup wg;
  wg.wait();
  EXPECT_EQ(wg.count(), 0);
}

TEST(WaitGroup, WaitsForAllFibers) {
  tern::Runtime rt(procs(4));
  const int n = scaled(1000);
  rt.run([&] {
    tern::WaitGroup wg;
    std::atomic<int> finished{0};
    for (int i = 0; i < n; i++) {
      wg.add(1);
      tern::go([&, i] {
        if (i % 7 == 0) tern::sleep_for(std::chrono::microseconds(200));
        finished++;
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(finished.load(), n);
    EXPECT_EQ(wg.count(), 0);
  });
}

TEST(WaitGroup, ManyFiberWaiters) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::WaitGroup gate(1);
    tern::WaitGroup all;
    std::atomic<int> released{0};
    for (int i = 0; i < 50; i++) {
      all.add(1);
      tern::go([&] {
        gate.wait();
        released++;
        all.done();
      });
    }
    tern::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(released.load(), 0);
    gate.done();
    all.wait();
    EXPECT_EQ(released.load(), 50);
  });
}

TEST(WaitGroup, PlainThreadsOnly) {
  tern::WaitGroup wg;
  std::atomic<int> finished{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; i++) {
    wg.add(1);
    threads.emplace_back([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      finished++;
      wg.done();
    });
  }
  wg.wait();
  EXPECT_EQ(finished.load(), 4);
  for (auto& t : threads) t.join();
}

TEST(WaitGroup, ThreadWaitsForFibersAndFiberForThreads) {
  tern::Runtime rt(procs(2));
  tern::WaitGroup fibers;
  std::atomic<int> fiber_work{0};
  for (int i = 0; i < 100; i++) {
    fibers.add(1);
    rt.go([&] {
      fiber_work++;
      fibers.done();
    });
  }
  fibers.wait();  // this test's thread blocks until the fibers are done
  EXPECT_EQ(fiber_work.load(), 100);

  tern::WaitGroup threads_done;
  std::atomic<int> thread_work{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; i++) {
    threads_done.add(1);
    threads.emplace_back([&] {
      thread_work++;
      threads_done.done();
    });
  }
  rt.run([&] {
    threads_done.wait();  // a fiber parks until plain threads are done
    EXPECT_EQ(thread_work.load(), 3);
  });
  for (auto& t : threads) t.join();
}

TEST(WaitGroup, ReusableAcrossRounds) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::WaitGroup wg;
    for (int round = 0; round < 20; round++) {
      std::atomic<int> n{0};
      for (int i = 0; i < 10; i++) {
        wg.add(1);
        tern::go([&] {
          n++;
          wg.done();
        });
      }
      wg.wait();
      EXPECT_EQ(n.load(), 10);
    }
  });
}

// wait() returning lets its caller destroy the WaitGroup while the last done() is still returning.
TEST(WaitGroup, DestroyRightAfterWait) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(5000);
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      auto wg = std::make_unique<tern::WaitGroup>(1);
      tern::go([w = wg.get()] { w->done(); });
      wg->wait();
      wg.reset();
    }
  });
}

TEST(WaitGroupDeathTest, NegativeCountAborts) {
  EXPECT_DEATH(
      {
        tern::WaitGroup wg;
        wg.done();
      },
      "negative count");
}

TEST(WaitGroupDeathTest, ACountPastItsWordAborts) {
  EXPECT_DEATH(
      {
        tern::WaitGroup wg(int64_t{1} << 30);
        wg.add(int64_t{1} << 30);
      },
      "past 2\\^31 - 1");
  EXPECT_DEATH({ tern::WaitGroup wg(int64_t{1} << 32); }, "past 2\\^31 - 1");
}

// Many fibers on every P count down one WaitGroup while fibers and a thread wait on it, round after round: each round's
// waiters all return, and only once the last done() of their round has happened.
TEST(WaitGroup, ConcurrentDonesReleaseEveryWaiterOnce) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(200);
  constexpr int kWorkers = 64;
  constexpr int kWaiters = 4;
  rt.run([&] {
    for (int r = 0; r < rounds; r++) {
      tern::WaitGroup wg(kWorkers);
      std::atomic<int> finished{0}, released{0}, early{0};
      tern::WaitGroup waiters_done(kWaiters);
      for (int i = 0; i < kWaiters; i++) {
        tern::go([&] {
          wg.wait();
          if (finished.load() != kWorkers) early.fetch_add(1);
          released.fetch_add(1);
          waiters_done.done();
        });
      }
      for (int i = 0; i < kWorkers; i++) {
        tern::go([&] {
          tern::yield();
          finished.fetch_add(1);
          wg.done();
        });
      }
      wg.wait();
      EXPECT_EQ(finished.load(), kWorkers);
      waiters_done.wait();
      EXPECT_EQ(released.load(), kWaiters);
      EXPECT_EQ(early.load(), 0);
      EXPECT_EQ(wg.count(), 0);
    }
  });
}

}  // namespace
