// Tests of WaitSlot, the parking spot both backends are built on: latching, deadlines, and notify racing the park
// and the timer.
#include "netpoll/wait_slot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "scheduler/timer.h"
#include "tests/scale.h"

namespace tern::netpoll {
namespace {

constexpr int64_t kMs = 1'000'000;

Config two_procs() {
  Config c;
  c.procs = 2;
  return c;
}

TEST(WaitSlot, LatchedNotificationReturnsAtOnce) {
  Runtime rt(two_procs());
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    EXPECT_EQ(slot.notify(), nullptr);  // nobody parked: latched
    EXPECT_EQ(slot.notify(), nullptr);  // a second notify coalesces
    EXPECT_EQ(slot.wait(-1, waiters), WaitSlot::kNotified);
    // Consumed: now the wait times out.
    EXPECT_EQ(slot.wait(sched::now_ns() + 5 * kMs, waiters), WaitSlot::kTimedOut);
    EXPECT_EQ(waiters.load(), 0);
  });
}

TEST(WaitSlot, DeadlineFires) {
  Runtime rt(two_procs());
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    int64_t t0 = sched::now_ns();
    EXPECT_EQ(slot.wait(t0 + 20 * kMs, waiters), WaitSlot::kTimedOut);
    int64_t took = sched::now_ns() - t0;
    EXPECT_GE(took, 20 * kMs);
    EXPECT_LT(took, 2000 * kMs);
    EXPECT_EQ(waiters.load(), 0);
    // An expired deadline does not park at all.
    EXPECT_EQ(slot.wait(t0, waiters), WaitSlot::kTimedOut);
  });
}

TEST(WaitSlot, NotifyFromAnotherFiberWakesTheWaiter) {
  Runtime rt(two_procs());
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    auto h = spawn([&] {
      while (waiters.load() == 0) yield();  // until the waiter has parked
      sched::G* g = slot.notify();
      EXPECT_NE(g, nullptr);
      if (g != nullptr) sched::ready(g);
    });
    EXPECT_EQ(slot.wait(-1, waiters), WaitSlot::kNotified);
    h.join();
    EXPECT_EQ(waiters.load(), 0);
  });
}

TEST(WaitSlot, NotifyFromAPlainThreadWakesTheWaiter) {
  Runtime rt(two_procs());
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    std::thread t([&] {
      while (waiters.load() == 0) std::this_thread::yield();
      if (sched::G* g = slot.notify()) sched::ready(g);
    });
    EXPECT_EQ(slot.wait(sched::now_ns() + 10'000 * kMs, waiters), WaitSlot::kNotified);
    t.join();
  });
}

// Notifications race parks and timers on two Ps: every wait must end (by notify or deadline) and the waiter count
// must return to zero. A lost wakeup hangs the test; a double ready corrupts the scheduler.
TEST(WaitSlot, NotifyRacingParkAndTimerLosesNothing) {
  Runtime rt(two_procs());
  const int rounds = static_cast<int>(test::scaled(20000, 500));
  rt.run([rounds] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    std::atomic<int> round{0};
    std::atomic<bool> stop{false};
    auto notifier = spawn([&] {
      int last = -1;
      while (!stop.load(std::memory_order_relaxed)) {
        int r = round.load(std::memory_order_acquire);
        if (r == last) {
          yield();
          continue;
        }
        last = r;
        if (sched::G* g = slot.notify()) sched::ready(g);
      }
    });
    int notified = 0, timed_out = 0;
    for (int i = 0; i < rounds; i++) {
      round.store(i, std::memory_order_release);
      // Deadlines from "already passed" to a few microseconds: the timer, the notify and the park all race.
      int64_t deadline = sched::now_ns() + (i % 4) * 2'000;
      if (slot.wait(deadline, waiters) == WaitSlot::kNotified) {
        notified++;
      } else {
        timed_out++;
      }
    }
    stop.store(true);
    notifier.join();
    EXPECT_EQ(notified + timed_out, rounds);
    EXPECT_GT(notified, 0);
    EXPECT_EQ(waiters.load(), 0);
  });
}

}  // namespace
}  // namespace tern::netpoll
