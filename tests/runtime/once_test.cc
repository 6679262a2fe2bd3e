// Tests of tern::Once (runtime/sync/once.h).
#include "runtime/sync/once.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"

namespace {

using tern::test::procs;

TEST(Once, RunsOnce) {
  tern::Once once;
  int calls = 0;
  EXPECT_FALSE(once.done());
  once.call([&] { calls++; });
  once.call([&] { calls++; });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(once.done());
}

// Many fibers on several Ps plus plain threads race on one Once whose function takes a while: it runs exactly once,
// and every caller returns only after it finished (sees its effect).
TEST(Once, ExactlyOnceUnderContention) {
  tern::Runtime rt(procs(4));
  tern::Once once;
  std::atomic<int> calls{0};
  int value = 0;  // written only inside the once function
  std::atomic<int> saw_value{0};
  auto init = [&] {
    calls++;
    tern::sleep_for(std::chrono::milliseconds(5));  // parks inside f: waiters must wait, not run it again
    value = 42;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; t++) {
    threads.emplace_back([&] {
      once.call(init);
      if (value == 42) saw_value++;
    });
  }
  rt.run([&] {
    tern::WaitGroup wg;
    for (int f = 0; f < 64; f++) {
      wg.add(1);
      tern::go([&] {
        once.call(init);
        if (value == 42) saw_value++;
        wg.done();
      });
    }
    wg.wait();
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(saw_value.load(), 66);
}

TEST(Once, ExceptionLeavesItNotDone) {
  tern::Once once;
  EXPECT_THROW(once.call([] { throw std::runtime_error("boom"); }), std::runtime_error);
  EXPECT_FALSE(once.done());
  int calls = 0;
  once.call([&] { calls++; });
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(once.done());
}

// While a throwing call is in progress other callers wait; after it throws, one of them runs its own function.
TEST(Once, WaiterTakesOverAfterException) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Once once;
    std::atomic<int> successes{0};
    std::atomic<int> attempts{0};
    std::atomic<bool> started{false};
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      try {
        once.call([&] {
          attempts++;
          started = true;
          tern::sleep_for(std::chrono::milliseconds(5));
          throw std::runtime_error("first attempt fails");
        });
      } catch (const std::runtime_error&) {
      }
      wg.done();
    });
    while (!started.load()) tern::sleep_for(std::chrono::microseconds(100));
    for (int i = 0; i < 8; i++) {
      wg.add(1);
      tern::go([&] {
        once.call([&] {
          attempts++;
          successes++;
        });
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(successes.load(), 1);
    EXPECT_EQ(attempts.load(), 2);
    EXPECT_TRUE(once.done());
  });
}

}  // namespace
