// Fibers queued on a P that has stopped starting fibers (here one fiber hogs it without yielding, as when the OS
// deschedules its M) are taken by another M that is busy, rather than waiting for the hog to end.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"

namespace tern {
namespace {

using Clock = std::chrono::steady_clock;

TEST(RescueStalled, FibersQueuedBehindAHogRunOnABusyP) {
  // The hog holds its P this long; the fibers queued behind it must have run well before it lets go. Without the
  // rescue they wait for all of it: the other P is never idle (yielders keep its queue non-empty), so it never steals,
  // and the monitor's wakep finds no idle P.
  constexpr auto kHog = std::chrono::milliseconds(300);
  constexpr auto kDeadline = std::chrono::milliseconds(150);
  constexpr int kYielders = 4;
  constexpr int kMarkers = 8;
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  std::atomic<bool> stop{false};
  std::atomic<bool> on_p[2] = {false, false};
  std::vector<std::atomic<int64_t>> ran_at(kMarkers);
  for (auto& r : ran_at) r.store(-1);
  std::atomic<int> markers_done{0};
  Clock::time_point hog_start;
  rt.run([&] {
    std::vector<JoinHandle<void>> yielders;
    for (int i = 0; i < kYielders; i++) {
      yielders.push_back(spawn([&] {
        while (!stop.load(std::memory_order_relaxed)) {
          if (int p = sched::current_p(); p == 0 || p == 1) on_p[p].store(true);
          sched::yield();
        }
      }));
    }
    // Both Ps busy: from here on neither runs dry, so neither steals (a P with one yielder keeps running it).
    while (!on_p[0].load() || !on_p[1].load()) sched::yield();
    JoinHandle<void> hog = spawn([&] {
      hog_start = Clock::now();
      // Queued on this P (each new one takes the runnext slot and pushes the one before into the local queue).
      for (int i = 0; i < kMarkers; i++) {
        go([&, i, start = hog_start] {
          ran_at[static_cast<size_t>(i)].store(
              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
          markers_done.fetch_add(1, std::memory_order_release);
        });
      }
      while (Clock::now() - hog_start < kHog) {
      }
    });
    hog.join();
    stop.store(true);
    for (auto& y : yielders) y.join();
    // The markers are detached: the last (in runnext) may still be running when the hog ends. Wait for them (bounded,
    // so one that never ran fails below) before ran_at goes away with this test.
    const auto until = Clock::now() + std::chrono::seconds(10);
    while (markers_done.load(std::memory_order_acquire) < kMarkers && Clock::now() < until) sched::yield();
  });
  // The last marker sits in the runnext slot, which is the hog's P's own: it runs when the hog ends.
  int early = 0;
  for (int i = 0; i < kMarkers - 1; i++) {
    int64_t us = ran_at[static_cast<size_t>(i)].load();
    EXPECT_GE(us, 0) << "marker " << i << " never ran";
    if (us >= 0 && us < std::chrono::duration_cast<std::chrono::microseconds>(kDeadline).count()) early++;
  }
  EXPECT_EQ(early, kMarkers - 1) << "markers queued behind the hog waited for it";
  EXPECT_GT(rt.stats().rescued, 0u);
}

}  // namespace
}  // namespace tern
