// tests/runtime/go_on_test.cc: tern::go_on, work handed to another runtime (runtime/go.h): where it runs, that a fiber
// waiting on it parks on its own runtime instead of blocking its thread, values and exceptions, both directions.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/scale.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

Config named(const std::string& name, int procs) {
  Config cfg;
  cfg.name = name;
  cfg.procs = procs;
  return cfg;
}

// How long a test waits for progress that a correct runtime makes in microseconds: long enough for a loaded
// sanitizer build, short enough that a blocked thread fails the test rather than hanging it.
constexpr auto kProgressDeadline = 5s;

TEST(GoOn, RunsOnTheOtherRuntimeAndResumesOnTheCallers) {
  Runtime io(named("io", 1)), cpu(named("cpu", 2));
  EXPECT_EQ(io.procs(), 1);
  EXPECT_EQ(cpu.procs(), 2);
  EXPECT_EQ(io.name(), "io");
  EXPECT_EQ(cpu.name(), "cpu");
  io.run([&] {
    const int p = go_on(cpu, [&] {
                    EXPECT_TRUE(cpu.on_this_runtime());
                    EXPECT_FALSE(io.on_this_runtime());
                    return cpu.procs();
                  }).join();
    EXPECT_EQ(p, 2);
    EXPECT_TRUE(io.on_this_runtime()) << "the joiner resumes on its own runtime";
  });
}

// The question go_on stands on: does a fiber of A that joins work running in B park (A's processor runs A's other
// fibers meanwhile) or block its thread? A has one processor, so a blocked thread would stop A entirely: B's work waits
// for A's other fiber to make progress, and checks in A's fiber dump that the joiner is parked in a join.
TEST(GoOn, WaitingParksTheFiberAndNotItsThread) {
  Runtime a(named("a", 1)), b(named("b", 1));
  constexpr uint64_t kSteps = 100;
  std::atomic<uint64_t> progress{0};
  std::atomic<bool> stop{false};
  uint64_t made = 0;
  bool joiner_parked_in_join = false;
  a.run([&] {
    go([&] {
      while (!stop.load()) {
        progress.fetch_add(1);
        yield();
      }
    });
    const uint64_t joiner = this_fiber::id();
    auto h = go_on(b, [&] {
      const uint64_t start = progress.load();
      const auto deadline = std::chrono::steady_clock::now() + kProgressDeadline;
      while (progress.load() < start + kSteps && std::chrono::steady_clock::now() < deadline) sleep_for(1ms);
      for (const FiberInfo& f : a.dump_fibers()) {
        if (f.id == joiner) {
          joiner_parked_in_join = f.status == sched::GStatus::kWaiting && f.reason == sched::WaitReason::kJoin;
        }
      }
      return progress.load() - start;
    });
    made = h.join();
    stop.store(true);
  });
  EXPECT_GE(made, kSteps) << "A's only processor made no progress while its fiber waited on B: the wait blocked its M";
  EXPECT_TRUE(joiner_parked_in_join);
}

TEST(GoOn, ExceptionsPropagateToTheWaiter) {
  Runtime io(named("io", 1)), cpu(named("cpu", 1));
  io.run([&] {
    try {
      go_on(cpu, []() -> int { throw std::runtime_error("boom in cpu"); }).join();
      ADD_FAILURE() << "join returned";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "boom in cpu");
    }
    EXPECT_TRUE(io.on_this_runtime());
    // A void task's exception too.
    EXPECT_THROW(go_on(cpu, [] { throw std::logic_error("void"); }).join(), std::logic_error);
  });
  // And to a plain thread.
  EXPECT_THROW(go_on(cpu, [] { throw std::out_of_range("thread"); }).join(), std::out_of_range);
}

TEST(GoOn, FromAPlainThread) {
  Runtime cpu(named("cpu", 2));
  EXPECT_EQ(go_on(cpu, [&] { return cpu.on_this_runtime() ? 7 : -1; }).join(), 7);
  auto r = try_go_on(cpu, [] { return std::string("ok"); });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->join(), "ok");
}

// Many fibers of each runtime hand work to the other at once and wait for it: every value arrives, each task ran where
// it was sent, and each waiter resumed on its own runtime.
TEST(GoOn, HandsWorkBothWaysAtOnce) {
  Runtime a(named("a", 2)), b(named("b", 1));
  const int kFibers = static_cast<int>(test::scaled(200, 20));
  const int kRounds = static_cast<int>(test::scaled(20, 4));
  std::atomic<int64_t> sum_a{0}, sum_b{0};
  std::atomic<int> wrong_place{0};
  auto drive = [&](Runtime& self, Runtime& other, std::atomic<int64_t>& sum) {
    WaitGroup wg;
    for (int i = 0; i < kFibers; i++) {
      wg.add(1);
      go([&, i] {
        for (int r = 0; r < kRounds; r++) {
          sum.fetch_add(go_on(other, [&, i] {
                          if (!other.on_this_runtime()) wrong_place.fetch_add(1);
                          yield();  // a task that parks and moves on the other runtime still returns its value
                          return static_cast<int64_t>(i);
                        }).join());
          if (!self.on_this_runtime()) wrong_place.fetch_add(1);
        }
        wg.done();
      });
    }
    wg.wait();
  };
  std::thread ta([&] { a.run([&] { drive(a, b, sum_a); }); });
  std::thread tb([&] { b.run([&] { drive(b, a, sum_b); }); });
  ta.join();
  tb.join();
  const int64_t expect = static_cast<int64_t>(kFibers) * (kFibers - 1) / 2 * kRounds;
  EXPECT_EQ(sum_a.load(), expect);
  EXPECT_EQ(sum_b.load(), expect);
  EXPECT_EQ(wrong_place.load(), 0);
}

TEST(GoOn, ABadRuntimeNameIsAnError) {
  for (const char* bad : {"", "has space", "quote\"", "new\nline", "é"}) {
    auto r = Runtime::create(named(bad, 1));
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message().find("runtime name"), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(Runtime::create(named(std::string(Config::kMaxNameBytes + 1, 'x'), 1)));
  EXPECT_TRUE(Runtime::create(named(std::string(Config::kMaxNameBytes, 'x'), 1)));
  EXPECT_EQ(Config{}.name, "main");
}

}  // namespace
}  // namespace tern
