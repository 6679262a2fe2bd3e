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
#include "tests/procs.h"
#include "tests/scale.h"
#include "tests/support/watchdog.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

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

// A fiber blocked in lock() parks: its P keeps running other fibers meanwhile, and the blocked fiber itself does not
// run again until the unlock. A lock that spins (yielding or not) fails: one that spins without yielding holds the
// only P, so the main fiber never wakes from its sleep (the watchdog fails the test); one that yields between tries
// is switched to over and over while the main fiber sleeps, which the scheduler's switch count shows.
TEST(Mutex, WaiterParksNotThread) {
  tern::Runtime rt(procs(1));
  tern::test::Watchdog dog("Mutex: a fiber blocked in lock() on the only P");
  rt.run([&] {
    tern::Mutex mu;
    mu.lock();
    std::atomic<bool> trying{false}, got{false};
    tern::go([&] {
      trying = true;
      std::lock_guard g(mu);
      got = true;
    });
    while (!trying.load()) tern::yield();
    tern::yield();  // with one P, the locker has run into the lock and (if it parks) given the P back
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
    // While the main fiber sleeps, a parked locker costs no switches at all; a yielding spinner, thousands.
    const uint64_t before = rt.stats().switches;
    tern::sleep_for(std::chrono::milliseconds(100));
    dog.kick();
    const uint64_t during = rt.stats().switches - before;
    EXPECT_LT(during, 100u) << "the blocked locker kept running while the lock was held: it spins instead of parking";
    EXPECT_FALSE(got.load());
    mu.unlock();
    while (!got.load()) tern::yield();
  });
}

// Fairness. Contenders hold the lock for kHoldNs each, so kMutexStarvationNs is worth kPerStarvation acquisitions;
// starvation mode promises that a waiter gets the lock after about that many acquisitions by others, plus one turn of
// the queue. Runs `total` acquisitions and returns, per contender, the most acquisitions by others that happened
// while it was inside one lock() call.
constexpr int64_t kHoldNs = 20'000;
constexpr int kPerStarvation = static_cast<int>(tern::kMutexStarvationNs / kHoldNs);

std::vector<int> worst_waits(int nprocs, int contenders, int total, bool yield_while_holding) {
  std::vector<int> worst(contenders, -1);
  tern::Runtime rt(procs(nprocs));
  rt.run([&] {
    tern::Mutex mu;
    std::atomic<int> seq{0};  // written under mu; read before lock() to see how many acquisitions it waited
    tern::WaitGroup wg;
    for (int c = 0; c < contenders; c++) {
      wg.add(1);
      tern::go([&, c] {
        for (;;) {
          int before = seq.load(std::memory_order_relaxed);
          std::lock_guard g(mu);
          int now = seq.load(std::memory_order_relaxed);
          worst[c] = std::max(worst[c], now - before);
          if (now >= total) break;
          seq.store(now + 1, std::memory_order_relaxed);
          int64_t until = tern::sched::now_ns() + kHoldNs;
          while (tern::sched::now_ns() < until) {
          }
          // Holding the lock across a reschedule lets the others run into it even on one P.
          if (yield_while_holding) tern::yield();
        }
        wg.done();
      });
    }
    wg.wait();
  });
  return worst;
}

// On one P every fiber shares one thread, so kernel preemption stalls all contenders alike and the bound is tight.
// Without starvation mode the unlocker and the waiter it wakes would trade the lock forever and the others starve.
TEST(Mutex, NoContenderStarvesOnOneP) {
  constexpr int kContenders = 4;
  // Not scaled down under the sanitizers: with fewer acquisitions than the bound, a starving contender could not fail.
  const std::vector<int> worst = worst_waits(1, kContenders, 1500, true);
  for (int c = 0; c < kContenders; c++) {
    EXPECT_GE(worst[c], 0) << "contender " << c << " never got the lock";
    EXPECT_LE(worst[c], 2 * kPerStarvation + 4 * kContenders) << "contender " << c;
  }
}

// Across Ps a contender's thread can be descheduled by the kernel after lock() was called but before the contender
// queued, while the others keep going; the bound leaves room for ~10 ms of that.
TEST(Mutex, NoContenderStarvesAcrossPs) {
  constexpr int kContenders = 4;
  // Not scaled down under the sanitizers: the bound (516) must be well below the acquisitions, or nothing can fail.
  const std::vector<int> worst = worst_waits(2, kContenders, 2000, false);
  for (int c = 0; c < kContenders; c++) {
    EXPECT_GE(worst[c], 0) << "contender " << c << " never got the lock";
    EXPECT_LE(worst[c], 10 * kPerStarvation + 4 * kContenders) << "contender " << c;
  }
}

}  // namespace
