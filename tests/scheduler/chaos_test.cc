// The chaos schedule (SchedOptions::chaos_seed, TERN_CHAOS=<seed>): it announces its seed, takes the environment's when
// the option is unset, exercises the choices it randomizes, and keeps every invariant: each fiber runs exactly once and
// no wakeup is lost.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "scheduler/park.h"
#include "scheduler/sched.h"
#include "tests/scale.h"

namespace tern::sched {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void wait_until(const std::function<bool()>& done) {
  while (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

std::string construction_stderr(SchedOptions o) {
  testing::internal::CaptureStderr();
  { Sched s(std::move(o)); }
  return testing::internal::GetCapturedStderr();
}

TEST(Chaos, AnnouncesItsSeed) {
  SchedOptions o;
  o.chaos_seed = 12345;
  EXPECT_THAT(construction_stderr(o), HasSubstr("tern: chaos schedule, seed 12345\n"));
}

TEST(Chaos, EnvironmentFillsAnUnsetSeed) {
  setenv("TERN_CHAOS", "77", 1);
  EXPECT_THAT(construction_stderr({}), HasSubstr("tern: chaos schedule, seed 77\n"));
  SchedOptions o;
  o.chaos_seed = 5;  // the option wins
  EXPECT_THAT(construction_stderr(o), HasSubstr("tern: chaos schedule, seed 5\n"));
  setenv("TERN_CHAOS", "0", 1);
  EXPECT_THAT(construction_stderr({}), Not(HasSubstr("chaos")));
  unsetenv("TERN_CHAOS");
  EXPECT_THAT(construction_stderr({}), Not(HasSubstr("chaos")));
}

struct Slot {
  std::atomic<G*> parked{nullptr};
};

void park_in(Slot& s) {
  park(
      [](G* g, void* arg) {
        static_cast<Slot*>(arg)->parked.store(g, std::memory_order_release);
        return true;
      },
      &s, WaitReason::kOther);
}

void wake(Slot& s) {
  G* g;
  while ((g = s.parked.exchange(nullptr, std::memory_order_acq_rel)) == nullptr) yield();
  ready(g);
}

// Pairs of fibers that park and ready each other (next=true: runnext under the normal schedule), plus fibers spawned
// from fibers and from a plain thread: every fiber runs exactly once and every park is woken.
TEST(Chaos, EveryFiberRunsOnceAndNoWakeupIsLost) {
  SchedOptions o;
  o.procs = 4;
  o.chaos_seed = 1;
  Sched s(o);
  const int kRounds = static_cast<int>(test::scaled(3'000, 200));
  constexpr int kPairs = 4;
  constexpr int kSpawned = 2'000;
  std::atomic<int> pairs_done{0};
  auto runs = std::make_unique<std::atomic<int>[]>(2 * kSpawned);
  for (int i = 0; i < 2 * kSpawned; i++) runs[i].store(0);
  for (int p = 0; p < kPairs; p++) {
    auto a = std::make_shared<Slot>(), b = std::make_shared<Slot>();
    s.go([a, b, kRounds] {
      for (int i = 0; i < kRounds; i++) {
        wake(*b);
        park_in(*a);
      }
      wake(*b);
    });
    s.go([a, b, kRounds, &pairs_done] {
      for (int i = 0; i < kRounds; i++) {
        park_in(*b);
        wake(*a);
      }
      park_in(*b);
      pairs_done.fetch_add(1);
    });
  }
  s.go([&] {
    for (int i = 0; i < kSpawned; i++) s.go([&runs, i] { runs[i].fetch_add(1); });
  });
  std::thread outside([&] {
    for (int i = kSpawned; i < 2 * kSpawned; i++) s.go([&runs, i] { runs[i].fetch_add(1); });
  });
  outside.join();
  wait_until([&] {
    if (pairs_done.load() < kPairs) return false;
    for (int i = 0; i < 2 * kSpawned; i++) {
      if (runs[i].load() == 0) return false;
    }
    return true;
  });
  wait_until([&] { return s.stats().live == 0; });
  for (int i = 0; i < 2 * kSpawned; i++) ASSERT_EQ(runs[i].load(), 1) << "fiber " << i;
}

// On one P a ping-pong pair readies its partner into runnext and never touches the global queue; the chaos schedule
// sends some of those fibers there (and to the local tail), and reaches every kind of point.
TEST(Chaos, ExercisesTheChoices) {
  SchedOptions o;
  o.procs = 1;
  o.chaos_seed = 3;
  std::atomic<int> seen[8] = {};
  o.on_point = [&](SchedPoint pt) { seen[static_cast<int>(pt)].fetch_add(1, std::memory_order_relaxed); };
  Sched s(o);
  std::atomic<bool> done{false};
  auto a = std::make_shared<Slot>(), b = std::make_shared<Slot>();
  constexpr int kRounds = 2'000;
  s.go([a, b] {
    for (int i = 0; i < kRounds; i++) {
      wake(*b);
      park_in(*a);
    }
    wake(*b);
  });
  s.go([a, b, &done] {
    for (int i = 0; i < kRounds; i++) {
      park_in(*b);
      wake(*a);
    }
    park_in(*b);
    done.store(true);
  });
  wait_until([&] { return done.load(); });
  EXPECT_GT(s.stats().global_taken, 0u);
  for (SchedPoint pt : {SchedPoint::kPark, SchedPoint::kReady, SchedPoint::kWakep, SchedPoint::kGlobalPush,
                        SchedPoint::kGlobalPushed}) {
    EXPECT_GT(seen[static_cast<int>(pt)].load(), 0) << "point " << static_cast<int>(pt);
  }
}

}  // namespace
}  // namespace tern::sched
