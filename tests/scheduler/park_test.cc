// Park/ready races: fibers park and are readied from other fibers and from plain threads, thousands of times. A lost
// wakeup hangs the test (ctest's timeout catches it); a resume-before-switch corrupts a context and crashes.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "tests/scale.h"

namespace tern {
namespace {

// A mailbox slot: the parker publishes itself in the commit; the waker spins until it sees it, then readies it.
struct Slot {
  std::atomic<sched::G*> parked{nullptr};
};

void park_in(Slot& s) {
  sched::park(
      [](sched::G* g, void* arg) {
        static_cast<Slot*>(arg)->parked.store(g, std::memory_order_release);
        return true;
      },
      &s);
}

void wake(Slot& s) {
  sched::G* g;
  while ((g = s.parked.exchange(nullptr, std::memory_order_acq_rel)) == nullptr) {
    if (sched::in_fiber()) {
      sched::yield();
    } else {
      std::this_thread::yield();
    }
  }
  sched::ready(g);
}

class ParkReady : public ::testing::TestWithParam<int> {};

TEST_P(ParkReady, FibersWakeEachOtherAcrossProcs) {
  Config cfg;
  cfg.procs = GetParam();
  Runtime rt(cfg);
  const int64_t kRounds = test::scaled(20'000, 500);
  constexpr int kPairs = 8;
  std::atomic<int64_t> woken{0};
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    for (int p = 0; p < kPairs; p++) {
      auto slot = std::make_shared<Slot>();
      hs.push_back(spawn([slot, kRounds, &woken] {
        for (int64_t i = 0; i < kRounds; i++) {
          park_in(*slot);
          woken.fetch_add(1, std::memory_order_relaxed);
        }
      }));
      hs.push_back(spawn([slot, kRounds] {
        for (int64_t i = 0; i < kRounds; i++) wake(*slot);
      }));
    }
    for (auto& h : hs) h.join();
  });
  EXPECT_EQ(woken.load(), kRounds * kPairs);
}

TEST_P(ParkReady, PlainThreadsReadyParkedFibers) {
  Config cfg;
  cfg.procs = GetParam();
  Runtime rt(cfg);
  const int64_t kRounds = test::scaled(5'000, 200);
  constexpr int kThreads = 4;
  std::vector<Slot> slots(kThreads);
  std::atomic<int64_t> woken{0};
  std::vector<std::thread> wakers;
  for (int t = 0; t < kThreads; t++) {
    wakers.emplace_back([&, t] {
      for (int64_t i = 0; i < kRounds; i++) wake(slots[t]);
    });
  }
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    for (int t = 0; t < kThreads; t++) {
      hs.push_back(spawn([&, t] {
        for (int64_t i = 0; i < kRounds; i++) {
          park_in(slots[t]);
          woken.fetch_add(1, std::memory_order_relaxed);
        }
      }));
    }
    for (auto& h : hs) h.join();
  });
  for (auto& w : wakers) w.join();
  EXPECT_EQ(woken.load(), kRounds * kThreads);
}

TEST_P(ParkReady, AbandonedParkResumesAtOnce) {
  Config cfg;
  cfg.procs = GetParam();
  Runtime rt(cfg);
  int resumed = 0;
  rt.run([&] {
    for (int i = 0; i < 1000; i++) {
      sched::park([](sched::G*, void*) { return false; }, nullptr);
      resumed++;
    }
  });
  EXPECT_EQ(resumed, 1000);
}

INSTANTIATE_TEST_SUITE_P(Procs, ParkReady, ::testing::Values(1, 2, 4));

}  // namespace
}  // namespace tern
