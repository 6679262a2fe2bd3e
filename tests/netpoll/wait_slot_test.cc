// Tests of WaitSlot, the parking spot both backends are built on: latching, deadlines, and notify racing the park
// and the timer.
#include "netpoll/wait_slot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
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

// Ends a wait on `slot` by notifying it from another fiber once the waiter has parked.
void notify_when_parked(WaitSlot& slot, std::atomic<int64_t>& waiters) {
  spawn([&slot, &waiters] {
    while (waiters.load() == 0) yield();
    if (sched::G* g = slot.notify()) sched::ready(g);
  }).detach();
}

// The slot's timer stays in the heap between waits (wait_slot.h): when the first wait's deadline comes, the second
// wait, with a later one, must not be expired by it; the timer follows to the later deadline.
TEST(WaitSlot, ALaterDeadlineIsNotCutShortByAnEarlierWaitsTimer) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    notify_when_parked(slot, waiters);
    // A deadline the notification beats by far even on a loaded machine, and that passes during the second wait.
    ASSERT_EQ(slot.wait(sched::now_ns() + 100 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    const int64_t t0 = sched::now_ns();
    EXPECT_EQ(slot.wait(t0 + 400 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    const int64_t took = sched::now_ns() - t0;
    EXPECT_GE(took, 400 * kMs) << "the first wait's timer, left in the heap, expired the second wait early";
    EXPECT_LT(took, 2000 * kMs);
    // And again, now that the timer has followed once.
    const int64_t t1 = sched::now_ns();
    EXPECT_EQ(slot.wait(t1 + 30 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    EXPECT_GE(sched::now_ns() - t1, 30 * kMs);
    EXPECT_EQ(waiters.load(), 0);
  });
}

// A deadline earlier than the timer's place in the heap moves the timer: the wait ends at its own deadline, not at
// the previous wait's.
TEST(WaitSlot, AnEarlierDeadlineMovesTheTimer) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    notify_when_parked(slot, waiters);
    ASSERT_EQ(slot.wait(sched::now_ns() + 5'000 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    const int64_t t0 = sched::now_ns();
    EXPECT_EQ(slot.wait(t0 + 30 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    const int64_t took = sched::now_ns() - t0;
    EXPECT_GE(took, 30 * kMs);
    EXPECT_LT(took, 2000 * kMs) << "the wait ended at the earlier wait's deadline, not its own";
  });
}

// A timed wait followed by waits without a deadline: the timer, still in the heap, comes due with nobody waiting and
// must leave without expiring anything (a wait with no deadline never times out).
TEST(WaitSlot, ATimerComingDueBetweenWaitsExpiresNothing) {
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    notify_when_parked(slot, waiters);
    ASSERT_EQ(slot.wait(sched::now_ns() + 100 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    sleep_for(std::chrono::milliseconds(150));  // the timer comes due now
    notify_when_parked(slot, waiters);
    EXPECT_EQ(slot.wait(-1, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    // A new deadline after the timer left the heap arms it again.
    const int64_t t0 = sched::now_ns();
    EXPECT_EQ(slot.wait(t0 + 20 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kTimedOut);
    EXPECT_GE(sched::now_ns() - t0, 20 * kMs);
  });
}

// The window between a firing's decision and its move of the state word: a notification lands there, the woken
// waiter's wait returns kNotified, and it waits again with no deadline. The firing, when it goes on, must not expire
// that next wait (it belongs to a wait that has ended). The hook holds the firing in the window until the first
// wait has returned, or 300 ms: a waiter that lets the firing finish first never returns within it.
TEST(WaitSlot, AFiringThatLosesToANotificationDoesNotExpireTheNextWait) {
  static WaitSlot* slot_seen;
  static std::atomic<bool> first_returned;
  slot_seen = nullptr;
  first_returned = false;
  testing::fire_hook.store(+[](WaitSlot* s) {
    slot_seen = s;
    // Notify now, inside the window; the woken fiber is readied from another thread (not under the timer lock).
    if (sched::G* g = s->notify()) std::thread([g] { sched::ready(g); }).join();
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (!first_returned.load() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  });
  Runtime rt(test::procs(2));
  rt.run([] {
    WaitSlot slot;
    std::atomic<int64_t> waiters{0};
    EXPECT_EQ(slot.wait(sched::now_ns() + 10 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    first_returned = true;
    EXPECT_EQ(slot_seen, &slot) << "the hook did not run: the test proved nothing";
    std::atomic<bool> second_returned{false};
    std::thread notifier([&] {
      while (waiters.load() == 0 && !second_returned.load()) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (sched::G* g = slot.notify()) sched::ready(g);
    });
    EXPECT_EQ(slot.wait(-1, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified)
        << "a wait with no deadline timed out: the previous wait's firing expired it";
    second_returned = true;
    notifier.join();
  });
  testing::fire_hook.store(nullptr);
}

// A slot destroyed while its timer is still in the heap takes it out (a connection's descriptor record, a heap-
// allocated io_uring operation): the timer must not fire into freed memory (ASan's run sees it if it does).
TEST(WaitSlot, DestroyingASlotTakesItsTimerOutOfTheHeap) {
  Runtime rt(test::procs(2));
  rt.run([] {
    std::atomic<int64_t> waiters{0};
    for (int i = 0; i < 50; i++) {
      auto slot = std::make_unique<WaitSlot>();
      notify_when_parked(*slot, waiters);
      ASSERT_EQ(slot->wait(sched::now_ns() + 100 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
    }
    sleep_for(std::chrono::milliseconds(150));  // past every deadline: a timer left behind would fire now
  });
}

// A slot that outlives the runtime its timer was armed on (a poller is destroyed after the scheduler): the runtime
// lets go of the timers left in its heaps, and the slot's destructor finds its timer in none (ASan: no use of a
// freed P).
TEST(WaitSlot, ASlotMayOutliveTheRuntimeItsTimerWasArmedOn) {
  auto slot = std::make_unique<WaitSlot>();
  {
    Runtime rt(test::procs(2));
    rt.run([&] {
      std::atomic<int64_t> waiters{0};
      notify_when_parked(*slot, waiters);
      ASSERT_EQ(slot->wait(sched::now_ns() + 60'000 * kMs, waiters, sched::WaitReason::kNetRead), WaitSlot::kNotified);
      sleep_for(std::chrono::milliseconds(5));  // the notifier has finished with `waiters`
    });
  }
  slot.reset();
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
