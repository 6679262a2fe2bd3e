// Tests of tern::Waiter (runtime/sync/waiter.h): park/notify from fibers and threads, deadlines, and the race between
// a deadline and a notify (exactly one of them wins, and both sides agree which).
#include "runtime/sync/waiter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/timer.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

constexpr int64_t kMs = 1'000'000;

TEST(Waiter, NotifyBeforeWaitReturnsAtOnce) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Waiter w;
    EXPECT_TRUE(w.notify());
    EXPECT_FALSE(w.notify());  // second notify finds it already notified
    w.wait();
    EXPECT_TRUE(w.notified());
  });
}

TEST(Waiter, FiberWokenByFiber) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Waiter w;
    std::atomic<bool> woke{false};
    auto h = tern::spawn([&] {
      w.wait();
      woke = true;
    });
    tern::sleep_for(std::chrono::milliseconds(2));
    EXPECT_FALSE(woke.load());
    EXPECT_TRUE(w.notify());
    h.join();
    EXPECT_TRUE(woke.load());
  });
}

TEST(Waiter, ThreadWokenByFiberAndFiberByThread) {
  tern::Runtime rt(procs(2));
  tern::Waiter to_thread;
  tern::Waiter to_fiber;
  std::thread t([&] {
    to_thread.wait();  // blocks this plain thread on the futex
    EXPECT_TRUE(to_fiber.notify());
  });
  rt.run([&] {
    EXPECT_TRUE(to_thread.notify());
    to_fiber.wait();
    EXPECT_TRUE(to_fiber.notified());
  });
  t.join();
}

TEST(Waiter, DeadlinePassesInFiber) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Waiter w;
    int64_t start = tern::sched::now_ns();
    EXPECT_FALSE(w.wait_until(start + 5 * kMs));
    EXPECT_GE(tern::sched::now_ns() - start, 5 * kMs);
    EXPECT_FALSE(w.notify());  // after a timeout notify wakes nobody
    EXPECT_FALSE(w.notified());
  });
}

TEST(Waiter, DeadlinePassesInThread) {
  tern::Waiter w;
  int64_t start = tern::sched::now_ns();
  EXPECT_FALSE(w.wait_until(start + 5 * kMs));
  EXPECT_GE(tern::sched::now_ns() - start, 5 * kMs);
  EXPECT_FALSE(w.notify());
}

TEST(Waiter, NotifiedBeforeDeadline) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Waiter w;
    tern::go([&] { w.notify(); });
    EXPECT_TRUE(w.wait_until(tern::sched::now_ns() + 10'000 * kMs));
  });
}

TEST(Waiter, WaitUnlocksMutexAfterParking) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    std::mutex mu;
    tern::Waiter w;
    bool queued = false;
    std::unique_lock lk(mu);
    queued = true;
    tern::go([&] {
      std::lock_guard g(mu);  // acquirable only once the waiter has parked
      EXPECT_TRUE(queued);
      w.notify();
    });
    w.wait(lk);
    EXPECT_TRUE(lk.owns_lock());
  });
}

// A deadline and a notify racing: the waiter's result and notify()'s result must agree, from fibers and threads.
TEST(Waiter, DeadlineRacingNotifyHasOneWinner) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(2000);
  std::atomic<int> disagreements{0};
  std::atomic<int> notified{0};
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      tern::Waiter w;
      std::atomic<int> by_notify{-1};
      auto h = tern::spawn([&] { by_notify = w.notify() ? 1 : 0; });
      // Deadline about now, so timer and notify land close together.
      bool got = w.wait_until(tern::sched::now_ns() + (i % 3) * 20'000);
      h.join();
      if (got != (by_notify.load() == 1)) disagreements++;
      if (got) notified++;
    }
  });
  EXPECT_EQ(disagreements.load(), 0);
  // Both outcomes should happen over many rounds, or the test did not exercise the race.
  EXPECT_GT(notified.load(), 0);
}

TEST(Waiter, ThreadDeadlineRacingNotifyHasOneWinner) {
  const int rounds = scaled(300);
  int disagreements = 0;
  for (int i = 0; i < rounds; i++) {
    tern::Waiter w;
    std::atomic<int> by_notify{-1};
    std::thread t([&] { by_notify = w.notify() ? 1 : 0; });
    bool got = w.wait_until(tern::sched::now_ns() + (i % 3) * 20'000);
    t.join();
    if (got != (by_notify.load() == 1)) disagreements++;
  }
  EXPECT_EQ(disagreements, 0);
}

}  // namespace
