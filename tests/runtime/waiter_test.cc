// Tests of tern::Waiter (runtime/sync/waiter.h): park/notify from fibers and threads, deadlines, and the race between
// a deadline and a notify (exactly one of them wins, and both sides agree which).
#include "runtime/sync/waiter.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/timer.h"
#include "tests/procs.h"
#include "tests/scale.h"
#include "tests/support/race.h"
#include "tests/support/watchdog.h"

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

// wait(lk) releases the lock for the wait and holds it again when it returns. The main fiber holds the lock except
// inside wait(lk), so the notifier (on the other P, blocked on the lock) gets it only once the waiter released it, and
// notifies at once: in many rounds its notify() lands between the unlock and the park commit, and must abandon the
// park rather than be lost (a lost one hangs, and the watchdog fails the test).
TEST(Waiter, WaitUnlocksTheMutexAndANotifyBeforeTheParkIsNotLost) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(5000, 500);
  rt.run([&] {
    std::mutex mu;
    std::optional<tern::Waiter> w;
    int round = -1;  // guarded by mu
    std::atomic<int> notify_failed{0};
    std::atomic<bool> stop{false};
    auto notifier = tern::spawn([&] {
      int last = -1;
      while (!stop.load()) {
        {
          std::lock_guard g(mu);  // acquirable only while the waiter is inside wait(lk)
          if (round != last) {
            last = round;
            if (!w->notify()) notify_failed++;
          }
        }
        tern::yield();
      }
    });
    tern::test::Watchdog dog("Waiter: a wait(lk) whose notify came through the lock");
    int not_relocked = 0;
    std::unique_lock lk(mu);
    for (int i = 0; i < rounds; i++) {
      w.emplace();
      round = i;
      w->wait(lk);
      if (!lk.owns_lock()) not_relocked++;
      if (i % 64 == 0) {  // the mutex itself is held again, not just the flag of the unique_lock
        bool held = false;
        std::thread([&] {
          held = !mu.try_lock();
          if (!held) mu.unlock();
        }).join();
        if (!held) not_relocked++;
      }
      dog.kick();
    }
    stop = true;
    lk.unlock();
    notifier.join();
    EXPECT_EQ(not_relocked, 0) << "wait(lk) returned without the lock";
    EXPECT_EQ(notify_failed.load(), 0) << "notify() found a waiter without a deadline timed out";
  });
}

// One round per waiter: the waiter's wait_until() against one notify() from a notifier that runs all along (a fiber
// on another P, or a plain thread). The deadline tracks the point where the two land together, so both outcomes occur;
// in every round the waiter's result and notify()'s must agree.
template <typename Yield>
struct DeadlineRace {
  explicit DeadlineRace(Yield yield) : yield_(yield) {}

  void notifier() {
    int last = -1;
    while (!stop.load(std::memory_order_acquire)) {
      const int r = round.load(std::memory_order_acquire);
      if (r == last) {
        yield_();
        continue;
      }
      last = r;
      race.hold_notify();
      notify_won.store(target.load(std::memory_order_relaxed)->notify(), std::memory_order_relaxed);
      done.store(r, std::memory_order_release);
    }
  }

  void waiter(int rounds, const char* what) {
    std::optional<tern::Waiter> w;
    tern::test::Watchdog dog(what);
    for (int i = 0; i < rounds; i++) {
      w.emplace();
      target.store(&*w, std::memory_order_relaxed);
      const int64_t deadline = tern::sched::now_ns() + race.offset_ns();
      round.store(i, std::memory_order_release);
      const bool got = w->wait_until(deadline);
      while (done.load(std::memory_order_acquire) != i) yield_();  // the notify may still be on its way
      if (got != notify_won.load(std::memory_order_relaxed)) disagreements++;
      race.record(got);
      dog.kick();
    }
    stop.store(true, std::memory_order_release);
  }

  Yield yield_;
  std::atomic<tern::Waiter*> target{nullptr};
  std::atomic<int> round{-1}, done{-1};
  std::atomic<bool> notify_won{false}, stop{false};
  tern::test::RaceDeadline race;
  int disagreements = 0;
};

TEST(Waiter, DeadlineRacingNotifyHasOneWinner) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(4000, 1000);
  DeadlineRace race([] { tern::yield(); });
  rt.run([&] {
    auto notifier = tern::spawn([&] { race.notifier(); });
    race.waiter(rounds, "Waiter: a fiber's deadline racing a notify");
    notifier.join();
  });
  EXPECT_EQ(race.disagreements, 0) << "the waiter and notify() disagree on who won";
  EXPECT_TRUE(race.race.both_outcomes()) << "the rounds did not race: " << race.race.summary();
}

TEST(Waiter, ThreadDeadlineRacingNotifyHasOneWinner) {
  // Not scaled down under the sanitizers: the window a broken timeout CAS leaves is narrow, and 2,000 rounds missed it.
  const int rounds = 20000;
  DeadlineRace race([] { std::this_thread::yield(); });
  std::thread notifier([&] { race.notifier(); });
  // The futex wait's timeout is otherwise rounded up by the timer slack (50 us): without it the waiter's wakeups are
  // precise enough for the lead to steer notifies into the instant the waiter times out.
  const int slack = prctl(PR_GET_TIMERSLACK);
  prctl(PR_SET_TIMERSLACK, 1);
  race.waiter(rounds, "Waiter: a thread's deadline racing a notify");
  prctl(PR_SET_TIMERSLACK, slack);
  notifier.join();
  EXPECT_EQ(race.disagreements, 0) << "the waiter and notify() disagree on who won";
  EXPECT_TRUE(race.race.both_outcomes()) << "the rounds did not race: " << race.race.summary();
}

}  // namespace
