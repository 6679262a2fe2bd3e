// Note (scheduler/futex.h): early wakeups are kept once, timed sleeps return, cross-thread wakeups end sleeps.
#include "scheduler/futex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "tests/support/watchdog.h"

namespace tern::sched {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#if defined(TERN_SANITIZE_THREAD)
constexpr int kPingPongRounds = 300;
#else
constexpr int kPingPongRounds = 3000;
#endif

// Waits (polling) up to `limit` for `flag`.
bool wait_for(const std::atomic<bool>& flag, std::chrono::milliseconds limit) {
  const auto end = Clock::now() + limit;
  while (!flag.load(std::memory_order_acquire)) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(Note, WakeupBeforeSleepIsKept) {
  Note n;
  n.wakeup();
  EXPECT_EQ(n.word()->load(), 1u);
  const auto t0 = Clock::now();
  n.sleep();  // unbounded, but the earlier wakeup must end it at once (a hang here is the failure)
  EXPECT_LT(Clock::now() - t0, 5s);
  EXPECT_EQ(n.word()->load(), 0u) << "sleep must consume the wakeup";
  EXPECT_FALSE(n.try_consume());
}

TEST(Note, WakeupsCoalesceIntoOne) {
  Note n;
  n.wakeup();
  n.wakeup();
  n.wakeup();
  EXPECT_TRUE(n.try_consume());
  EXPECT_FALSE(n.try_consume()) << "several wakeups before a sleep are one wakeup";
}

TEST(Note, TryConsume) {
  Note n;
  EXPECT_FALSE(n.try_consume());
  n.wakeup();
  EXPECT_TRUE(n.try_consume());
  EXPECT_FALSE(n.try_consume());
}

TEST(Note, TimedSleepWithoutWakeupReturns) {
  Note n;
  const auto t0 = Clock::now();
  n.sleep(20'000'000);  // 20 ms
  EXPECT_LT(Clock::now() - t0, 5s);
  n.sleep(0);
  EXPECT_FALSE(n.try_consume());
}

TEST(Note, TimedSleepConsumesAPendingWakeup) {
  Note n;
  n.wakeup();
  n.sleep(10'000'000'000);  // 10 s: must return at once
  EXPECT_FALSE(n.try_consume());
}

// The sleeper runs on its own thread so that a lost wakeup fails the test instead of hanging it.
TEST(Note, WakeupFromAnotherThreadEndsUnboundedSleep) {
  Note n;
  std::atomic<bool> started{false}, done{false};
  std::thread sleeper([&] {
    started.store(true, std::memory_order_release);
    n.sleep();
    done.store(true, std::memory_order_release);
  });
  ASSERT_TRUE(wait_for(started, 5000ms));
  std::this_thread::sleep_for(20ms);  // likely in futex_wait by now; correctness does not depend on it
  EXPECT_FALSE(done.load()) << "sleep returned without a wakeup";
  n.wakeup();
  const bool woke = wait_for(done, 5000ms);
  EXPECT_TRUE(woke) << "wakeup() did not end the sleep within 5 s";
  if (!woke) {
    n.word()->store(1);
    futex_wake(n.word(), 1);  // let the thread end so that the test can
  }
  sleeper.join();
  EXPECT_FALSE(n.try_consume()) << "the sleeper must have consumed the wakeup";
}

TEST(Note, WakeupFromAnotherThreadEndsTimedSleep) {
  Note n;
  std::atomic<bool> done{false};
  std::thread sleeper([&] {
    n.sleep(60'000'000'000);  // 60 s: only the wakeup (or a spurious return) ends it in time
    done.store(true, std::memory_order_release);
  });
  std::this_thread::sleep_for(10ms);
  n.wakeup();
  const bool woke = wait_for(done, 5000ms);
  EXPECT_TRUE(woke) << "wakeup() did not end the timed sleep within 5 s";
  if (!woke) {
    n.word()->store(1);
    futex_wake(n.word(), 1);
  }
  sleeper.join();
}

// Two threads hand a turn back and forth through two notes: every wakeup must be delivered, none lost to the race
// between wakeup() and a sleep() about to start.
TEST(Note, PingPongLosesNoWakeup) {
  Note ping, pong;
  std::atomic<int> turns{0};
  test::Watchdog dog("Note ping-pong", std::chrono::seconds(10));
  std::thread other([&] {
    for (int i = 0; i < kPingPongRounds; i++) {
      ping.sleep();
      turns.fetch_add(1, std::memory_order_relaxed);
      pong.wakeup();
    }
  });
  for (int i = 0; i < kPingPongRounds; i++) {
    ping.wakeup();
    pong.sleep();
    dog.kick();
  }
  other.join();
  EXPECT_EQ(turns.load(), kPingPongRounds);
  EXPECT_FALSE(ping.try_consume());
  EXPECT_FALSE(pong.try_consume());
}

}  // namespace
}  // namespace tern::sched
