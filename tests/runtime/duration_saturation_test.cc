// Timed waits given durations too long for int64 nanoseconds (hours::max(), nanoseconds::max(), a huge floating
// duration: the usual ways to say "forever") must wait, not overflow into the past and return at once. A loop such
// as `while (!pred) cv.wait_for(lk, hours::max())` would otherwise spin.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>

#include "runtime/deadline.h"
#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "runtime/sync/cond_var.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/select.h"
#include "scheduler/timer.h"
#include "tests/procs.h"

namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using tern::test::procs;

// How long a "forever" wait is watched before the test decides it really waits: long against the microseconds an
// overflowed deadline takes to return, short for the suite.
constexpr milliseconds kWatch{50};

// The shared helper (runtime/deadline.h) on the representations and periods callers use.
TEST(DurationSaturation, SaturatingNsClampsEveryRepresentation) {
  using std::chrono::duration;
  using tern::detail::saturating_ns;
  EXPECT_EQ(saturating_ns(hours::max()), nanoseconds::max());
  EXPECT_EQ(saturating_ns(hours::min()), nanoseconds::min());
  EXPECT_EQ(saturating_ns(nanoseconds::max()), nanoseconds::max());
  EXPECT_EQ(saturating_ns(nanoseconds::min()), nanoseconds::min());
  EXPECT_EQ(saturating_ns(hours(2)), nanoseconds(7'200'000'000'000));
  EXPECT_EQ(saturating_ns(milliseconds(-3)), nanoseconds(-3'000'000));
  EXPECT_EQ(saturating_ns(duration<uint64_t>(std::numeric_limits<uint64_t>::max())), nanoseconds::max());
  EXPECT_EQ(saturating_ns(duration<uint64_t, std::nano>(std::numeric_limits<uint64_t>::max())), nanoseconds::max());
  EXPECT_EQ(saturating_ns(duration<int32_t>(std::numeric_limits<int32_t>::max())),
            nanoseconds(int64_t{std::numeric_limits<int32_t>::max()} * 1'000'000'000));
  EXPECT_EQ(saturating_ns(duration<int64_t, std::pico>(-2'500)), nanoseconds(-2));  // truncates toward zero
  // 5e9 s: fits, but duration_cast's intermediate count * 1e9 would overflow before its division by 3.
  EXPECT_EQ(saturating_ns(duration<int64_t, std::ratio<1, 3>>(15'000'000'000)), nanoseconds(5'000'000'000'000'000'000));
  EXPECT_EQ(saturating_ns(duration<double>(1e300)), nanoseconds::max());
  EXPECT_EQ(saturating_ns(duration<double>(-INFINITY)), nanoseconds::min());
  EXPECT_EQ(saturating_ns(duration<double>(NAN)), nanoseconds::zero());
  EXPECT_EQ(saturating_ns(duration<double, std::milli>(1.5)), nanoseconds(1'500'000));
  static_assert(saturating_ns(hours::max()) == nanoseconds::max());
}

TEST(DurationSaturation, DeadlinesSaturateToNoDeadline) {
  using tern::detail::deadline_after;
  using tern::detail::deadline_at;
  using tern::detail::kNoDeadline;
  const int64_t before = tern::sched::now_ns();
  EXPECT_EQ(deadline_after(hours::max()), kNoDeadline);
  EXPECT_EQ(deadline_after(nanoseconds::max()), kNoDeadline);
  const int64_t past = deadline_after(hours::min());  // now: already due
  EXPECT_GE(past, before);
  EXPECT_LE(past, tern::sched::now_ns());
  const int64_t in_5ms = deadline_after(milliseconds(5));
  EXPECT_GE(in_5ms, before + 5'000'000);
  EXPECT_LE(in_5ms, tern::sched::now_ns() + 5'000'000);
  EXPECT_EQ(deadline_at(std::chrono::steady_clock::time_point::max()), kNoDeadline);
  EXPECT_EQ(deadline_at(std::chrono::steady_clock::time_point::min()), 0);
  EXPECT_EQ(deadline_at(std::chrono::system_clock::time_point::max()), kNoDeadline);
  const int64_t sys_min = deadline_at(std::chrono::system_clock::time_point::min());
  EXPECT_LE(sys_min, tern::sched::now_ns());
  EXPECT_EQ(deadline_at(std::chrono::time_point<std::chrono::steady_clock, hours>::max()), kNoDeadline);
  const int64_t sys = deadline_at(std::chrono::system_clock::now() + std::chrono::seconds(10));
  EXPECT_NEAR(static_cast<double>(sys - tern::sched::now_ns()), 10e9, 1e9);
}

TEST(DurationSaturation, SleepForMaxInFiberWaits) {
  tern::Runtime rt(procs(2));
  std::atomic<bool> woke{false};
  rt.run([&] {
    // Discarded, still parked, when the runtime goes: a sleeper whose sleep ended would set `woke` first.
    tern::go([&] {
      tern::sleep_for(nanoseconds::max());
      woke = true;
    });
    tern::go([&] {
      tern::sleep_for(hours::max());
      woke = true;
    });
    tern::sleep_for(kWatch);
  });
  EXPECT_FALSE(woke.load());
}

TEST(DurationSaturation, SleepForMaxOnThreadWaits) {
  // The thread never wakes, so it is detached and its flag outlives the test.
  static std::atomic<bool> woke{false};
  std::thread([] {
    tern::sleep_for(nanoseconds::max());
    woke = true;
  }).detach();
  std::this_thread::sleep_for(kWatch);
  EXPECT_FALSE(woke.load());
}

TEST(DurationSaturation, SleepForNegativeReturns) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    int64_t t0 = tern::sched::now_ns();
    tern::sleep_for(nanoseconds::min());
    tern::sleep_for(hours::min());
    EXPECT_LT(tern::sched::now_ns() - t0, std::chrono::duration_cast<nanoseconds>(kWatch).count());
  });
}

// The loop the issue describes: each wait_for should end only at the notify, so the loop runs once or twice.
template <class D>
int loops_until_notified(D forever) {
  int loops = 0;
  tern::Runtime rt(procs(2));
  rt.run([&] {
    tern::Mutex mu;
    tern::CondVar cv;
    bool ready = false;
    tern::go([&] {
      tern::sleep_for(kWatch);
      {
        std::lock_guard g(mu);
        ready = true;
      }
      cv.notify_all();
    });
    std::unique_lock lk(mu);
    while (!ready) {
      loops++;
      cv.wait_for(lk, forever);
    }
  });
  return loops;
}

TEST(DurationSaturation, CondVarWaitForHoursMaxDoesNotSpin) {
  EXPECT_LE(loops_until_notified(hours::max()), 2);
}
TEST(DurationSaturation, CondVarWaitForNanosecondsMaxDoesNotSpin) {
  EXPECT_LE(loops_until_notified(nanoseconds::max()), 2);
}
TEST(DurationSaturation, CondVarWaitForHugeFloatingDurationDoesNotSpin) {
  EXPECT_LE(loops_until_notified(std::chrono::duration<double>(1e300)), 2);
}

TEST(DurationSaturation, CondVarWaitForMaxOnThreadWaitsForNotify) {
  tern::Mutex mu;
  tern::CondVar cv;
  bool ready = false;
  std::thread notifier([&] {
    std::this_thread::sleep_for(kWatch);
    {
      std::lock_guard g(mu);
      ready = true;
    }
    cv.notify_one();
  });
  std::unique_lock lk(mu);
  EXPECT_TRUE(cv.wait_for(lk, hours::max(), [&] { return ready; }));
  lk.unlock();
  notifier.join();
}

TEST(DurationSaturation, CondVarWaitUntilOtherClockMaxWaits) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Mutex mu;
    tern::CondVar cv;
    bool ready = false;
    tern::go([&] {
      tern::sleep_for(kWatch);
      {
        std::lock_guard g(mu);
        ready = true;
      }
      cv.notify_one();
    });
    std::unique_lock lk(mu);
    // system_clock's far end converts through "now" on both clocks; that sum must not wrap either.
    EXPECT_EQ(cv.wait_until(lk, std::chrono::system_clock::time_point::max()), std::cv_status::no_timeout);
    EXPECT_TRUE(ready);
  });
}

TEST(DurationSaturation, CondVarWaitForNegativeTimesOut) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Mutex mu;
    tern::CondVar cv;
    std::unique_lock lk(mu);
    EXPECT_EQ(cv.wait_for(lk, hours::min()), std::cv_status::timeout);
    EXPECT_EQ(cv.wait_for(lk, nanoseconds::min()), std::cv_status::timeout);
  });
}

TEST(DurationSaturation, SelectTimeoutHoursMaxWaitsForChannel) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<int> ch;
    tern::go([&] {
      tern::sleep_for(kWatch);
      ch.send(7);
    });
    int got = 0;
    int taken = tern::select(tern::recv_case(ch, [&](std::optional<int> v) { got = v.value_or(-1); }),
                             tern::timeout_case(hours::max()));
    EXPECT_EQ(taken, 0);
    EXPECT_EQ(got, 7);
  });
}

}  // namespace
