#include "scheduler/timer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/waiter.h"
#include "scheduler/park.h"
#include "tests/scale.h"

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

TEST(Timers, WaiterTimeoutAndCancelRace) {
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  const int kRounds = static_cast<int>(test::scaled(5000, 200));
  std::atomic<int> notified{0}, timed_out{0};
  rt.run([&] {
    for (int i = 0; i < kRounds; i++) {
      auto w = std::make_shared<Waiter>();
      // The notifier fires about when the deadline does, so both outcomes occur; exactly one must win.
      auto h = spawn([w, i] {
        if (i % 2) yield();
        w->notify();
      });
      bool ok = w->wait_until(sched::now_ns() + (i % 3) * 1000);
      (ok ? notified : timed_out).fetch_add(1);
      h.join();
    }
  });
  EXPECT_EQ(notified.load() + timed_out.load(), kRounds);
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
