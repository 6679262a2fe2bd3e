// Tests of tern::Semaphore (runtime/sync/semaphore.h).
#include "runtime/sync/semaphore.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

TEST(Semaphore, TryAcquireCountsPermits) {
  tern::Semaphore sem(2);
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_TRUE(sem.try_acquire());
  EXPECT_FALSE(sem.try_acquire());
  EXPECT_EQ(sem.available(), 0);
  sem.release(3);
  EXPECT_EQ(sem.available(), 3);
}

TEST(Semaphore, BoundsConcurrency) {
  constexpr int kPermits = 3;
  tern::Runtime rt(procs(4));
  const int per_fiber = scaled(500);
  rt.run([&] {
    tern::Semaphore sem(kPermits);
    std::atomic<int> inside{0};
    std::atomic<int> max_inside{0};
    tern::WaitGroup wg;
    for (int f = 0; f < 12; f++) {
      wg.add(1);
      tern::go([&] {
        for (int i = 0; i < per_fiber; i++) {
          sem.acquire();
          int now = inside.fetch_add(1) + 1;
          int m = max_inside.load();
          while (now > m && !max_inside.compare_exchange_weak(m, now)) {
          }
          tern::yield();
          inside.fetch_sub(1);
          sem.release();
        }
        wg.done();
      });
    }
    wg.wait();
    EXPECT_LE(max_inside.load(), kPermits);
    EXPECT_GE(max_inside.load(), 2);  // with 12 fibers on 4 Ps the permits were actually shared
    EXPECT_EQ(sem.available(), kPermits);
  });
}

TEST(Semaphore, WaitersServedInFifoOrder) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    constexpr int kWaiters = 5;
    tern::Semaphore sem(0);
    std::vector<int> order;  // one P: no lock needed
    tern::WaitGroup wg;
    for (int i = 0; i < kWaiters; i++) {
      wg.add(1);
      tern::go([&, i] {
        sem.acquire();
        order.push_back(i);
        wg.done();
      });
      tern::yield();  // let fiber i queue before fiber i+1 starts (one P)
    }
    EXPECT_FALSE(sem.try_acquire());  // nothing free
    // One permit at a time: each must go to the longest-waiting fiber.
    for (int i = 0; i < kWaiters; i++) {
      sem.release();
      EXPECT_FALSE(sem.try_acquire());  // the permit was handed to a waiter, not left for the taking
      while (order.size() < static_cast<size_t>(i + 1)) tern::yield();
    }
    wg.wait();
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  });
}

TEST(Semaphore, ReleaseManyWakesThatMany) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Semaphore sem(0);
    std::atomic<int> through{0};
    tern::WaitGroup wg;
    for (int i = 0; i < 6; i++) {
      wg.add(1);
      tern::go([&] {
        sem.acquire();
        through++;
        wg.done();
      });
    }
    tern::sleep_for(std::chrono::milliseconds(2));
    sem.release(4);
    while (through.load() < 4) tern::sleep_for(std::chrono::microseconds(100));
    tern::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(through.load(), 4);
    sem.release(2);
    wg.wait();
    EXPECT_EQ(through.load(), 6);
  });
}

TEST(Semaphore, PlainThreadsAndFibers) {
  tern::Runtime rt(procs(2));
  tern::Semaphore sem(0);
  std::thread t([&] {
    for (int i = 0; i < 100; i++) sem.acquire();  // blocks the thread until fibers release
  });
  rt.run([&] {
    for (int i = 0; i < 100; i++) {
      sem.release();
      if (i % 10 == 0) tern::yield();
    }
  });
  t.join();
  EXPECT_EQ(sem.available(), 0);
}

}  // namespace
