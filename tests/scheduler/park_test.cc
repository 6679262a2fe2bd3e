// Park/ready races: fibers park and are readied from other fibers and from plain threads, thousands of times. A lost
// wakeup hangs the test (ctest's timeout catches it); a resume-before-switch corrupts a context and crashes.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "scheduler/run_queue.h"
#include "scheduler/sched.h"
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
      &s, sched::WaitReason::kOther);
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
      sched::park([](sched::G*, void*) { return false; }, nullptr, sched::WaitReason::kOther);
      resumed++;
    }
  });
  EXPECT_EQ(resumed, 1000);
}

INSTANTIATE_TEST_SUITE_P(Procs, ParkReady, ::testing::Values(1, 2, 4));

// A fiber that readies its partner and then parks switches straight to the partner (Sched::take_handoff), which
// finishes the park on arrival. These pin down the orders that path must keep on one P.

TEST(ParkHandoff, PartnerRunsBeforeTheParkerResumes) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::vector<int> order;
  rt.run([&] {
    Slot a, b;
    JoinHandle<void> partner = spawn([&] {
      for (int i = 0; i < 100; i++) {
        park_in(b);
        order.push_back(2);
        wake(a);
      }
    });
    for (int i = 0; i < 100; i++) {
      order.push_back(1);
      wake(b);     // b goes to runnext ...
      park_in(a);  // ... and runs straight away; a is published only once this fiber has switched out
    }
    partner.join();
  });
  ASSERT_EQ(order.size(), 200u);
  for (size_t i = 0; i < order.size(); i++) EXPECT_EQ(order[i], i % 2 == 0 ? 1 : 2) << "at " << i;
}

TEST(ParkHandoff, AbandonedParkRunsAfterThePartner) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::vector<int> order;
  rt.run([&] {
    Slot b;
    JoinHandle<void> partner = spawn([&] {
      for (int i = 0; i < 100; i++) {
        park_in(b);
        order.push_back(2);
      }
    });
    for (int i = 0; i < 100; i++) {
      wake(b);
      // The handoff runs the partner; this park is abandoned when it arrives there, so we resume right after it.
      sched::park([](sched::G*, void*) { return false; }, nullptr, sched::WaitReason::kOther);
      order.push_back(1);
    }
    partner.join();
  });
  ASSERT_EQ(order.size(), 200u);
  for (size_t i = 0; i < order.size(); i++) EXPECT_EQ(order[i], i % 2 == 0 ? 2 : 1) << "at " << i;
}

TEST(ParkHandoff, StartsAFiberThatNeverRan) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  int started = 0;
  rt.run([&] {
    for (int i = 0; i < 1000; i++) {
      Slot s;
      go([&] {  // queued in runnext, never run: the park below starts it by switching straight into it
        started++;
        wake(s);
      });
      park_in(s);
    }
  });
  EXPECT_EQ(started, 1000);
}

TEST(ParkHandoff, PingPongPairLeavesRoomForQueuedFibers) {
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::atomic<bool> other_ran{false};
  int64_t rounds_before = -1;
  rt.run([&] {
    Slot a, b;
    std::atomic<bool> stop{false};
    JoinHandle<void> partner = spawn([&] {
      while (true) {
        park_in(b);
        if (stop.load()) return;
        wake(a);
      }
    });
    Slot c;
    go([&] {
      park_in(c);
      other_ran.store(true);
    });
    sched::yield();  // the partner and the other fiber park
    // The other fiber waits at the tail of the local queue, behind the pair: a handoff chain must not starve it.
    sched::G* g;
    while ((g = c.parked.exchange(nullptr)) == nullptr) sched::yield();
    sched::ready_tail(g);
    int64_t i = 0;
    for (; i < 10'000 && !other_ran.load(); i++) {
      wake(b);
      park_in(a);
    }
    rounds_before = i;
    stop.store(true);
    wake(b);
    partner.join();
  });
  EXPECT_TRUE(other_ran.load());
  EXPECT_LE(rounds_before, 2 * static_cast<int64_t>(sched::kRunnextChainMax));
}

// A poller's batch larger than the local queue (ready_list from a fiber, as the pollers call it): the first fibers of
// the batch run before the last. runq_put on overflow moves the local queue's oldest half to the global queue, which a
// P looks at only after its local queue (and one fiber in 61 ticks): the batch's first 128 ran after all the rest.
TEST(ReadyList, ABatchLargerThanTheLocalQueueRunsOldestFirst) {
  constexpr int kFibers = 400;  // more than RunQueue::kCapacity
  constexpr int kFirst = 128;
  constexpr int kLast = 100;
  static_assert(kFibers > static_cast<int>(sched::RunQueue::kCapacity));
  Config cfg;
  cfg.procs = 1;
  Runtime rt(cfg);
  std::vector<int> order;
  rt.run([&] {
    std::vector<Slot> slots(kFibers);
    for (int i = 0; i < kFibers; i++) {
      go([&, i] {
        park_in(slots[static_cast<size_t>(i)]);
        order.push_back(i);  // one P: the fibers never run at once
      });
    }
    sched::GList batch;
    for (auto& s : slots) {
      sched::G* g;
      while ((g = s.parked.exchange(nullptr)) == nullptr) sched::yield();
      batch.push(g);
    }
    sched::ready_list(batch);
    while (order.size() < kFibers) sched::yield();
  });
  ASSERT_EQ(order.size(), static_cast<size_t>(kFibers));
  std::vector<size_t> pos(kFibers);
  for (size_t k = 0; k < order.size(); k++) pos[static_cast<size_t>(order[k])] = k;
  size_t last_of_first = 0, first_of_last = order.size();
  for (int i = 0; i < kFirst; i++) last_of_first = std::max(last_of_first, pos[static_cast<size_t>(i)]);
  for (int i = kFibers - kLast; i < kFibers; i++) first_of_last = std::min(first_of_last, pos[static_cast<size_t>(i)]);
  EXPECT_LT(last_of_first, first_of_last) << "fiber " << order[first_of_last] << " of the batch's last " << kLast
                                          << " ran before some of its first " << kFirst;
}

}  // namespace
}  // namespace tern
