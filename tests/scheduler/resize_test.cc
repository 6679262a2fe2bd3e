// Resize under load: procs moves randomly between 1 and 8 while 1M fibers are spawned; each runs exactly once and
// fibers parked in timers survive the Ps they slept on.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "tests/scale.h"

namespace tern {
namespace {

TEST(Resize, EveryFiberRunsExactlyOnceWhileProcsChange) {
  const int64_t kFibers = test::scaled(1'000'000, 20'000);
  Config cfg;
  cfg.procs = 4;
  Runtime rt(cfg);
  std::vector<std::atomic<uint8_t>> ran(kFibers);
  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  std::thread resizer([&] {
    std::mt19937 rng(12345);
    while (!stop.load()) {
      rt.set_procs(static_cast<int>(rng() % 8) + 1);
      std::this_thread::sleep_for(std::chrono::microseconds(200 + rng() % 800));
    }
  });
  rt.run([&] {
    // Spawners on several Ps, each fiber yielding sometimes so queues stay populated when Ps retire.
    constexpr int kSpawners = 8;
    constexpr int64_t kMaxLive = 8192;
    std::vector<JoinHandle<void>> spawners;
    for (int s = 0; s < kSpawners; s++) {
      spawners.push_back(spawn([&, s] {
        for (int64_t i = s; i < kFibers; i += kSpawners) {
          // Bound the live fibers (each holds a guarded stack, two of the process's vm.max_map_count mappings).
          while (i - done.load(std::memory_order_relaxed) > kMaxLive) yield();
          go([&, i] {
            if (i % 3 == 0) yield();
            ran[i].fetch_add(1, std::memory_order_relaxed);
            done.fetch_add(1, std::memory_order_release);
          });
          if (i % 256 == 0) yield();
        }
      }));
    }
    for (auto& h : spawners) h.join();
    while (done.load(std::memory_order_acquire) < kFibers) sleep_for(std::chrono::microseconds(100));
  });
  stop.store(true);
  resizer.join();
  int64_t bad = 0;
  for (int64_t i = 0; i < kFibers; i++) bad += ran[i].load() != 1;
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(done.load(), kFibers);
}

TEST(Resize, SleepersOnRetiredPsWakeUp) {
  Config cfg;
  cfg.procs = 8;
  Runtime rt(cfg);
  const int kSleepers = static_cast<int>(test::scaled(2000, 200));
  std::atomic<int> woke{0};
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kSleepers; i++) {
      hs.push_back(spawn([&, i] {
        sleep_for(std::chrono::milliseconds(5 + i % 20));
        woke.fetch_add(1);
      }));
    }
    // Shrink while their timers sit in the heaps of Ps that are about to retire.
    rt.set_procs(1);
    for (auto& h : hs) h.join();
    rt.set_procs(3);
  });
  EXPECT_EQ(woke.load(), kSleepers);
  EXPECT_EQ(rt.procs(), 3);
}

TEST(Resize, ClampsToValidRange) {
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  rt.set_procs(0);
  EXPECT_EQ(rt.procs(), 1);
  rt.set_procs(-5);
  EXPECT_EQ(rt.procs(), 1);
  rt.set_procs(1 << 20);
  EXPECT_EQ(rt.procs(), sched::kMaxProcs);
  rt.set_procs(2);
  int x = 0;
  rt.run([&] { x = 1; });
  EXPECT_EQ(x, 1);
}

}  // namespace
}  // namespace tern
