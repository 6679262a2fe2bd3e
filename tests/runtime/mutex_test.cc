// Tests of tern::Mutex (runtime/sync/mutex.h): mutual exclusion under contention across Ps and with plain threads,
// try_lock, and bounded unfairness (starvation mode).
#include "runtime/sync/mutex.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/timer.h"

namespace {

double test_scale() {
  const char* s = std::getenv("TERN_TEST_SCALE");
  double v = s != nullptr ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}
int scaled(int n) {
  return std::max(1, static_cast<int>(n * test_scale()));
}

tern::Config procs(int n) {
  tern::Config cfg;
  cfg.procs = n;
  return cfg;
}

TEST(Mutex, TryLock) {
  tern::Mutex mu;
  EXPECT_TRUE(mu.try_lock());
  EXPECT_FALSE(mu.try_lock());
  mu.unlock();
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

TEST(Mutex, WorksWithStdLocks) {
  tern::Mutex mu;
  {
    std::lock_guard g(mu);
    EXPECT_FALSE(mu.try_lock());
  }
  std::unique_lock lk(mu, std::try_to_lock);
  EXPECT_TRUE(lk.owns_lock());
}

class MutexContention : public ::testing::TestWithParam<int> {};

// Many fibers incrementing a plain counter: any overlap of critical sections loses increments (and trips the
// `inside` check, and TSan).
TEST_P(MutexContention, MutualExclusion) {
  constexpr int kFibers = 8;
  const int per_fiber = scaled(20000);
  tern::Runtime rt(procs(GetParam()));
  rt.run([&] {
    tern::Mutex mu;
    long counter = 0;
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    tern::WaitGroup wg;
    for (int f = 0; f < kFibers; f++) {
      wg.add(1);
      tern::go([&, f] {
        for (int i = 0; i < per_fiber; i++) {
          std::lock_guard g(mu);
          if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlaps++;
          counter++;
          if ((i + f) % 64 == 0) tern::yield();  // hold the lock across a reschedule now and then
          inside.fetch_sub(1, std::memory_order_relaxed);
        }
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(counter, static_cast<long>(kFibers) * per_fiber);
  });
}

INSTANTIATE_TEST_SUITE_P(Procs, MutexContention, ::testing::Values(2, 3, 4),
                         [](const auto& info) { return "procs" + std::to_string(info.param); });

TEST(Mutex, FibersAndPlainThreadsShareOneMutex) {
  const int per_worker = scaled(20000);
  tern::Runtime rt(procs(2));
  tern::Mutex mu;
  long counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++) {
    threads.emplace_back([&] {
      for (int i = 0; i < per_worker; i++) {
        std::lock_guard g(mu);
        counter++;
      }
    });
  }
  rt.run([&] {
    tern::WaitGroup wg;
    for (int f = 0; f < 4; f++) {
      wg.add(1);
      tern::go([&] {
        for (int i = 0; i < per_worker; i++) {
          std::lock_guard g(mu);
          counter++;
        }
        wg.done();
      });
    }
    wg.wait();
  });
  for (auto& t : threads) t.join();
  std::lock_guard g(mu);
  EXPECT_EQ(counter, 6L * per_worker);
}

// A fiber blocked in lock() parks: its P keeps running other fibers meanwhile.
TEST(Mutex, WaiterParksNotThread) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Mutex mu;
    mu.lock();
    std::atomic<bool> got{false};
    tern::go([&] {
      std::lock_guard g(mu);
      got = true;
    });
    tern::yield();  // with one P, the locker can only have run if it parked and gave the P back
    int others = 0;
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      others++;
      wg.done();
    });
    wg.wait();
    EXPECT_EQ(others, 1);
    EXPECT_FALSE(got.load());
    mu.unlock();
    while (!got.load()) tern::yield();
  });
}

// Fairness: contenders holding the lock for kHoldNs each. Without starvation mode a running contender could take
// the lock back again and again while a woken waiter waits for a P; with it, no contender waits much longer than
// kMutexStarvationNs, i.e. about kMutexStarvationNs / kHoldNs acquisitions by others. Every contender's largest gap
// between two of its acquisitions, counted in acquisitions by anyone, must stay within a small multiple of that.
TEST(Mutex, NoContenderStarves) {
  constexpr int kContenders = 4;
  constexpr int64_t kHoldNs = 20'000;
  constexpr int kAcquisitionsPerStarvation = static_cast<int>(tern::kMutexStarvationNs / kHoldNs);
  constexpr int kMaxGap = 4 * kAcquisitionsPerStarvation + 4 * kContenders;
  const int total = scaled(2000);
  tern::Runtime rt(procs(2));
  rt.run([&] {
    tern::Mutex mu;
    int seq = 0;
    std::vector<std::vector<int>> mine(kContenders);
    tern::WaitGroup wg;
    for (int c = 0; c < kContenders; c++) {
      wg.add(1);
      tern::go([&, c] {
        for (;;) {
          std::lock_guard g(mu);
          if (seq >= total) break;
          mine[c].push_back(seq++);
          int64_t until = tern::sched::now_ns() + kHoldNs;
          while (tern::sched::now_ns() < until) {
          }
        }
        wg.done();
      });
    }
    wg.wait();
    for (int c = 0; c < kContenders; c++) {
      ASSERT_FALSE(mine[c].empty()) << "contender " << c << " never got the lock";
      int gap = mine[c].front();
      for (size_t i = 1; i < mine[c].size(); i++) gap = std::max(gap, mine[c][i] - mine[c][i - 1]);
      gap = std::max(gap, total - mine[c].back());
      EXPECT_LE(gap, kMaxGap) << "contender " << c << " got " << mine[c].size() << " of " << total;
    }
  });
}

}  // namespace
