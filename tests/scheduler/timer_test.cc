#include "scheduler/timer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/waiter.h"
#include "scheduler/park.h"
#include "tests/scale.h"
#include "tests/support/race.h"
#include "tests/support/watchdog.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

TEST(Timers, SleepersWakeInDeadlineOrder) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::mutex mu;
  std::vector<int> order;
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    // Started in scrambled order; each sleeps 10 ms * its rank, well apart from the next.
    for (int rank : {5, 1, 4, 2, 3, 0}) {
      hs.push_back(spawn([&, rank] {
        sleep_for(std::chrono::milliseconds(10 * rank));
        std::lock_guard lk(mu);
        order.push_back(rank);
      }));
    }
    for (auto& h : hs) h.join();
  });
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

// timer_due (scheduler/g.h) reads the clock only for a timer within a second of the coarse clock, which the monitor
// moves every period while a P is busy. A P that never runs dry (a fiber yields to it without end) must still fire a
// timer set further out than that, on time: were the coarse clock left behind, the sleep would end only when the
// yielder gives up, after 6 s.
TEST(Timers, AFarTimerFiresOnTimeWhileItsProcessorStaysBusy) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::atomic<bool> stop{false};
  std::chrono::steady_clock::duration took{};
  rt.run([&] {
    auto busy = spawn([&] {
      const auto give_up = std::chrono::steady_clock::now() + 6s;
      while (!stop.load(std::memory_order_relaxed) && std::chrono::steady_clock::now() < give_up) yield();
    });
    const auto t0 = std::chrono::steady_clock::now();
    sleep_for(1500ms);
    took = std::chrono::steady_clock::now() - t0;
    stop = true;
    busy.join();
  });
  EXPECT_GE(took, 1500ms);
  EXPECT_LT(took, 2500ms) << "a timer 1.5 s out fired late while its processor stayed busy";
}

TEST(Timers, SleepIsNeverShort) {
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 50; i++) {
      hs.push_back(spawn([i] {
        auto d = std::chrono::microseconds(100 * (i % 10) + 50);
        auto t0 = std::chrono::steady_clock::now();
        sleep_for(d);
        EXPECT_GE(std::chrono::steady_clock::now() - t0, d);
      }));
    }
    for (auto& h : hs) h.join();
  });
}

TEST(Timers, IdleRuntimeWakesForTimer) {
  // Every M idle, one in the poller role: the earliest timer must end that wait.
  Config cfg;
  cfg.procs = 4;
  Runtime rt(cfg);
  rt.run([] {
    for (int i = 0; i < 20; i++) {
      auto t0 = std::chrono::steady_clock::now();
      sleep_for(2ms);
      auto took = std::chrono::steady_clock::now() - t0;
      EXPECT_GE(took, 2ms);
      EXPECT_LT(took, 500ms) << "a sleeping runtime missed its timer";
    }
  });
}

// A Waiter's deadline timer racing its notify() on two Ps. Every round one notify() is made, and its result must agree
// with the wait's: true exactly when the wait returned true. Rounds alternate between no deadline (only the notify can
// end the wait: a lost wakeup hangs, and the watchdog fails the test) and a deadline that tracks the point where the
// timer and the notify land together (both outcomes must occur). Every round's Waiter is built in the same storage, so
// a timer that was not cancelled when its wait returned fires into a later round and ends an untimed wait early.
TEST(Timers, WaiterTimeoutAndCancelRace) {
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  const int kRounds = static_cast<int>(test::scaled(10000, 1000));
  rt.run([&] {
    std::optional<Waiter> w;
    std::atomic<Waiter*> target{nullptr};  // the round's waiter, for the notifier to notify once
    std::atomic<int> round{-1};
    std::atomic<int> done{-1};  // the last round whose notify() has returned
    std::atomic<bool> notify_won{false};
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
        notify_won.store(target.load(std::memory_order_relaxed)->notify(), std::memory_order_relaxed);
        done.store(r, std::memory_order_release);
      }
    });
    test::Watchdog dog("Timers: a round of a Waiter's deadline racing its notify");
    int untimed_false = 0, disagreements = 0;
    for (int i = 0; i < kRounds; i++) {
      const bool timed = i % 2 == 1;
      w.emplace();
      target.store(&*w, std::memory_order_relaxed);
      const int64_t deadline = timed ? sched::now_ns() + race.offset_ns() : -1;
      round.store(i, std::memory_order_release);
      const bool ok = w->wait_until(deadline);
      while (done.load(std::memory_order_acquire) != i) yield();  // the notify may be on its way still
      if (!timed && !ok) untimed_false++;
      if (ok != notify_won.load(std::memory_order_relaxed)) disagreements++;
      if (timed) race.record(ok);
      dog.kick();
    }
    stop.store(true, std::memory_order_release);
    notifier.join();
    EXPECT_EQ(untimed_false, 0) << "a wait without a deadline returned false (a stale timer fired into it?)";
    EXPECT_EQ(disagreements, 0) << "the waiter and notify() disagree on who won";
    EXPECT_TRUE(race.both_outcomes()) << "the timed rounds did not race: " << race.summary();
  });
}

TEST(Timers, CancelBeforeFireReturnsTrue) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  rt.run([] {
    static std::atomic<int> fired{0};
    sched::Timer t;
    t.when = sched::now_ns() + 1'000'000'000;
    t.fire = [](sched::Timer*) -> sched::G* {
      fired++;
      return nullptr;
    };
    sched::add_timer(&t);
    EXPECT_TRUE(sched::cancel_timer(&t));
    EXPECT_FALSE(sched::cancel_timer(&t));
    sched::Timer soon;
    soon.when = sched::now_ns();
    soon.fire = t.fire;
    sched::add_timer(&soon);
    sleep_for(1ms);
    EXPECT_FALSE(sched::cancel_timer(&soon)) << "a fired timer cannot be cancelled";
    EXPECT_EQ(fired.load(), 1);
  });
}

}  // namespace
}  // namespace tern
