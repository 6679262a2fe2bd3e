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
#include "tests/procs.h"
#include "tests/scale.h"
#include "tests/support/race.h"
#include "tests/support/watchdog.h"

namespace tern::netpoll {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(WaitSlot, LatchedNotificationReturnsAtOnce) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    EXPECT_EQ(slot.notify(), nullptr);  // nobody parked: latched
    EXPECT_EQ(slot.notify(), nullptr);  // a second notify coalesces
    EXPECT_EQ(slot.wait(-1, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    // Consumed: now the wait times out.
    EXPECT_EQ(slot.wait(sched::now_ns() + 5 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    EXPECT_EQ(waiters.load(), 0);
  });
}

TEST(WaitSlot, DeadlineFires) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    int64_t t0 = sched::now_ns();
    EXPECT_EQ(slot.wait(t0 + 20 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    int64_t took = sched::now_ns() - t0;
    EXPECT_GE(took, 20 * kMs);
    EXPECT_LT(took, 2000 * kMs);
    EXPECT_EQ(waiters.load(), 0);
    // An expired deadline does not park at all.
    EXPECT_EQ(slot.wait(t0, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
  });
}

TEST(WaitSlot, NotifyFromAnotherFiberWakesTheWaiter) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    auto h = spawn([&] {
      while (waiters.load() == 0) yield();  // until the waiter has parked
      sched::G* g = slot.notify();
      EXPECT_NE(g, nullptr);
      if (g != nullptr) sched::ready(g);
    });
    EXPECT_EQ(slot.wait(-1, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    h.join();
    EXPECT_EQ(waiters.load(), 0);
  });
}

TEST(WaitSlot, NotifyFromAPlainThreadWakesTheWaiter) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    std::thread t([&] {
      while (waiters.load() == 0) std::this_thread::yield();
      if (sched::G* g = slot.notify()) sched::ready(g);
    });
    EXPECT_EQ(slot.wait(sched::now_ns() + 10'000 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    t.join();
  });
}

// Notifications race parks and timers on two Ps. Every round the notifier calls notify() exactly once, so exactly one
// kNotified must come of it: from the round's wait(), or, when the deadline won, from the notification it latched
// (taken by a wait whose deadline has already passed). Rounds alternate between no deadline (only a notify can end
// the wait: a lost wakeup hangs, and the watchdog fails the test) and a deadline that tracks the point where the
// timer and the notify land together (both outcomes must occur). A fiber that notify() handed back must have seen
// kNotified.
TEST(WaitSlot, NotifyRacingParkAndTimerLosesNothing) {
  Runtime rt(test::procs(2));
  const int rounds = static_cast<int>(test::scaled(20000, 1000));
  rt.run([rounds] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    std::atomic<int> round{-1};           // the round the notifier is to notify once
    std::atomic<int> notified{-1};        // the last round whose notify() has returned
    std::atomic<bool> woke_fiber{false};  // that notify() returned the parked waiter
    std::atomic<bool> stop{false};
    test::RaceDeadline race;
    auto notifier = spawn([&] {
      int last = -1;
      while (!stop.load(std::memory_order_acquire)) {
        const int r = round.load(std::memory_order_acquire);
        if (r == last) {
          yield();
          continue;
        }
        last = r;
        race.hold_notify();
        sched::G* g = slot.notify();
        woke_fiber.store(g != nullptr, std::memory_order_relaxed);
        notified.store(r, std::memory_order_release);
        if (g != nullptr) sched::ready(g);
      }
    });
    test::Watchdog dog("WaitSlot: a round of notify racing park and timer");
    int untimed_timeouts = 0, lost = 0, doubled = 0, woken_but_timed_out = 0;
    for (int i = 0; i < rounds; i++) {
      const bool timed = i % 2 == 1;
      const int64_t deadline = timed ? sched::now_ns() + race.offset_ns() : -1;
      round.store(i, std::memory_order_release);
      const WaitSlot::Result r = slot.wait(deadline, waiters, sched::WaitReason::kNetRead);
      // The notify may still be on its way (the deadline won): wait for it, then take what it latched.
      while (notified.load(std::memory_order_acquire) != i) yield();
      const bool woke = woke_fiber.load(std::memory_order_relaxed);
      const WaitSlot::Result latched =
          slot.wait(0, waiters, sched::WaitReason::kNetRead);  // a deadline in the past: never parks
      const int got = (r == WaitSlot::kNotified) + (latched == WaitSlot::kNotified);
      if (!timed && r != WaitSlot::kNotified) untimed_timeouts++;
      if (got == 0) lost++;
      if (got == 2) doubled++;
      if (woke && r != WaitSlot::kNotified) woken_but_timed_out++;
      if (timed) race.record(r == WaitSlot::kNotified);
      dog.kick();
    }
    stop.store(true, std::memory_order_release);
    notifier.join();
    EXPECT_EQ(untimed_timeouts, 0) << "a wait without a deadline returned kTimedOut";
    EXPECT_EQ(lost, 0) << "notifications lost (neither the wait nor a later one saw them)";
    EXPECT_EQ(doubled, 0) << "one notify() ended two waits";
    EXPECT_EQ(woken_but_timed_out, 0) << "a fiber handed back by notify() returned kTimedOut";
    EXPECT_TRUE(race.both_outcomes()) << "the timed rounds did not race: " << race.summary();
    EXPECT_EQ(waiters.load(), 0);
  });
}

}  // namespace
}  // namespace tern::netpoll
