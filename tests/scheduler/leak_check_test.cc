// The shutdown leak check (SchedOptions::leak_check, TERN_LEAK_CHECK=1): fibers still alive are reported on stderr, a
// runtime-internal leak (a fiber stack still in use after every fiber gave its stack back) aborts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "scheduler/m.h"
#include "scheduler/p.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"

namespace tern::sched {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

SchedOptions checked(int procs) {
  SchedOptions o;
  o.procs = procs;
  o.leak_check = true;
  return o;
}

TEST(LeakCheck, CleanShutdownSaysNothing) {
  testing::internal::CaptureStderr();
  {
    Sched s(checked(2));
    std::atomic<int> done{0};
    for (int i = 0; i < 100; i++) s.go([&] { done.fetch_add(1); });
    while (done.load() < 100) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_THAT(testing::internal::GetCapturedStderr(), Not(HasSubstr("leak check")));
}

TEST(LeakCheck, ReportsFibersStillParked) {
  testing::internal::CaptureStderr();
  {
    Sched s(checked(2));
    std::atomic<bool> parking{false};
    for (int i = 0; i < 3; i++) {
      s.go([&] {
        parking.store(true);
        park([](G*, void*) { return true; }, nullptr, WaitReason::kOther);  // nobody will ever ready it
      });
    }
    wait_for(parking);
    while (s.stats().parks < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_THAT(err, HasSubstr("tern: leak check: 3 fibers still alive at shutdown"));
  EXPECT_THAT(err, HasSubstr("(3 parked, 0 queued, 0 running)"));
  EXPECT_THAT(err, Not(HasSubstr("runtime leak")));
}

TEST(LeakCheck, OffSaysNothing) {
  testing::internal::CaptureStderr();
  {
    SchedOptions o;
    o.procs = 1;
    // leak_check stays false; TERN_LEAK_CHECK may be set by the test suite, so this test only runs without it.
    if (std::getenv("TERN_LEAK_CHECK") != nullptr) unsetenv("TERN_LEAK_CHECK");
    Sched s(o);
    std::atomic<bool> parked{false};
    s.go([&] {
      parked.store(true);
      park([](G*, void*) { return true; }, nullptr, WaitReason::kOther);
    });
    wait_for(parked);
  }
  EXPECT_THAT(testing::internal::GetCapturedStderr(), Not(HasSubstr("leak check")));
}

// A stack taken from a P's cache outside any fiber record (a test-only path into the internals) is a runtime leak.
TEST(LeakCheckDeathTest, LeakedStackAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Sched s(checked(1));
        std::atomic<bool> done{false};
        s.go([&] {
          alloc::Stack leaked = this_m()->p->stacks.get();
          (void)leaked;
          done.store(true);
        });
        wait_for(done);
      },
      "tern: leak check: runtime leak at shutdown of runtime [0-9]+: 1 fiber stacks still in use");
}

}  // namespace
}  // namespace tern::sched
