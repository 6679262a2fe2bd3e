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
#include "tests/scale.h"

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

// A Once may be destroyed by whoever sees it done, as a std::mutex may be by whoever sees it free: the caller that
// ran f must not touch the Once after the store that makes it done. The runner here is a fiber, the deleter a plain
// thread on the other CPU that spins on done() and deletes the Once at once. ThreadSanitizer reports any access by
// the runner after that store (nothing orders it before the delete), so under TSan this fails on the first round
// if call() still unlocks an internal lock after publishing kDone; without a sanitizer it checks the rounds complete.
TEST(Once, DeleteAsSoonAsDoneIsSeen) {
  const int rounds = tern::test::scaled(300, 30);
  std::atomic<tern::Once*> armed{nullptr};
  std::atomic<int> deleted{0};
  std::thread deleter([&] {
    for (int i = 0; i < rounds; i++) {
      tern::Once* once;
      while ((once = armed.load(std::memory_order_acquire)) == nullptr) {
      }
      while (!once->done()) {
      }
      armed.store(nullptr, std::memory_order_relaxed);
      delete once;
      deleted.fetch_add(1, std::memory_order_release);
    }
  });
  tern::Runtime rt(procs(1));
  int ran = 0;
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      auto* once = new tern::Once;
      armed.store(once, std::memory_order_release);
      once->call([&] { ran++; });
      while (deleted.load(std::memory_order_acquire) <= i) tern::yield();
    }
  });
  deleter.join();
  EXPECT_EQ(ran, rounds);
}

// The same with a second caller parked in call() while f runs: once woken, it returns without touching the Once
// either (the deleter never waits for it to leave). One P, so that when f's yield comes back the waiter, which ran
// in between, has parked in call().
TEST(Once, DeleteAsSoonAsDoneIsSeenWithAWaiter) {
  const int rounds = tern::test::scaled(200, 20);
  std::atomic<tern::Once*> armed{nullptr};
  std::atomic<int> deleted{0};
  std::thread deleter([&] {
    for (int i = 0; i < rounds; i++) {
      tern::Once* once;
      while ((once = armed.load(std::memory_order_acquire)) == nullptr) {
      }
      while (!once->done()) {
      }
      armed.store(nullptr, std::memory_order_relaxed);
      delete once;
      deleted.fetch_add(1, std::memory_order_release);
    }
  });
  tern::Runtime rt(procs(1));
  std::atomic<int> ran{0}, waiter_returned{0};
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      auto* once = new tern::Once;
      std::atomic<bool> waiter_in{false};
      tern::WaitGroup wg(1);
      once->call([&] {
        tern::go([&, once] {
          waiter_in.store(true, std::memory_order_release);
          once->call([&] { ran++; });  // parks: f below is still running
          waiter_returned++;
          wg.done();
        });
        while (!waiter_in.load(std::memory_order_acquire)) tern::yield();
        ran++;
        armed.store(once, std::memory_order_release);
      });
      wg.wait();
      while (deleted.load(std::memory_order_acquire) <= i) tern::yield();
    }
  });
  deleter.join();
  EXPECT_EQ(ran.load(), rounds);
  EXPECT_EQ(waiter_returned.load(), rounds);
}

}  // namespace
