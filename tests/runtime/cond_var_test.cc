// Tests of tern::CondVar (runtime/sync/cond_var.h).
#include "runtime/sync/cond_var.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"
#include "tests/scale.h"
#include "tests/support/watchdog.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

using std::chrono::milliseconds;

TEST(CondVar, ProducerConsumerQueue) {
  tern::Runtime rt(procs(2));
  const int n = scaled(20000);
  rt.run([&] {
    tern::Mutex mu;
    tern::CondVar not_empty;
    tern::CondVar not_full;
    constexpr size_t kBound = 8;
    std::deque<int> q;
    bool finished = false;
    long sum = 0;
    tern::WaitGroup wg;
    for (int c = 0; c < 3; c++) {
      wg.add(1);
      tern::go([&] {
        for (;;) {
          std::unique_lock lk(mu);
          not_empty.wait(lk, [&] { return !q.empty() || finished; });
          if (q.empty()) break;
          sum += q.front();
          q.pop_front();
          not_full.notify_one();
        }
        wg.done();
      });
    }
    for (int i = 1; i <= n; i++) {
      std::unique_lock lk(mu);
      not_full.wait(lk, [&] { return q.size() < kBound; });
      q.push_back(i);
      not_empty.notify_one();
    }
    {
      std::lock_guard g(mu);
      finished = true;
    }
    not_empty.notify_all();
    wg.wait();
    EXPECT_EQ(sum, static_cast<long>(n) * (n + 1) / 2);
  });
}

TEST(CondVar, NotifyAllWakesEveryWaiter) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    constexpr int kWaiters = 20;
    tern::Mutex mu;
    tern::CondVar cv;
    int generation = 0;
    int waiting = 0;
    std::atomic<int> woke{0};
    tern::WaitGroup wg;
    for (int i = 0; i < kWaiters; i++) {
      wg.add(1);
      tern::go([&] {
        {
          std::unique_lock lk(mu);
          waiting++;
          cv.wait(lk, [&] { return generation == 1; });
          woke++;
        }
        // Only after the unlock: once the count reaches zero the test returns and mu is gone.
        wg.done();
      });
    }
    for (;;) {
      std::lock_guard g(mu);
      if (waiting == kWaiters) break;
      tern::yield();
    }
    tern::sleep_for(milliseconds(1));
    EXPECT_EQ(woke.load(), 0);
    {
      std::lock_guard g(mu);
      generation = 1;
    }
    cv.notify_all();
    wg.wait();
    EXPECT_EQ(woke.load(), kWaiters);
  });
}

// notify_one wakes exactly one waiter: with no spurious wakeups each waiter evaluates its predicate once on entry
// and once per wakeup, so three notifies make exactly six evaluations.
TEST(CondVar, NotifyOneWakesExactlyOne) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    constexpr int kWaiters = 3;
    tern::Mutex mu;
    tern::CondVar cv;
    int tokens = 0;
    int checks = 0;  // guarded by mu
    std::atomic<int> consumed{0};
    tern::WaitGroup wg;
    for (int i = 0; i < kWaiters; i++) {
      wg.add(1);
      tern::go([&] {
        {
          std::unique_lock lk(mu);
          cv.wait(lk, [&] {
            checks++;
            return tokens > 0;
          });
          tokens--;
          consumed++;
        }
        wg.done();
      });
    }
    // Every waiter has checked once and, since it checks under mu and waits releasing it, is queued.
    for (;;) {
      std::lock_guard g(mu);
      if (checks == kWaiters) break;
      tern::yield();
    }
    for (int i = 1; i <= kWaiters; i++) {
      {
        std::lock_guard g(mu);
        tokens++;
      }
      cv.notify_one();
      while (consumed.load() < i) tern::yield();
    }
    wg.wait();
    std::lock_guard g(mu);
    EXPECT_EQ(checks, 2 * kWaiters);
  });
}

TEST(CondVar, WaitForTimesOutAndRelocks) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Mutex mu;
    tern::CondVar cv;
    std::unique_lock lk(mu);
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(cv.wait_for(lk, milliseconds(5)), std::cv_status::timeout);
    EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(5));
    EXPECT_TRUE(lk.owns_lock());
    EXPECT_FALSE(cv.wait_for(lk, milliseconds(1), [] { return false; }));
    // A timed-out waiter left the queue: a later notify_one goes to a live waiter.
    bool flag = false;
    tern::go([&] {
      std::lock_guard g(mu);
      flag = true;
      cv.notify_one();
    });
    EXPECT_TRUE(cv.wait_for(lk, std::chrono::seconds(30), [&] { return flag; }));
  });
}

TEST(CondVar, NotifyOneSkipsTimedOutWaiters) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Mutex mu;
    tern::CondVar cv;
    bool ready = false;
    std::atomic<bool> long_waiter_woke{false};
    // A short waiter times out; the long one must still get the single notify.
    tern::WaitGroup wg;
    wg.add(2);
    // Each waiter releases mu before done(): the last done() lets this fiber return and destroy mu, so an unlock
    // after it would touch a dead Mutex.
    tern::go([&] {
      {
        std::unique_lock lk(mu);
        cv.wait_for(lk, milliseconds(1));
      }
      wg.done();
    });
    tern::go([&] {
      {
        std::unique_lock lk(mu);
        if (cv.wait_for(lk, std::chrono::seconds(30), [&] { return ready; })) long_waiter_woke = true;
      }
      wg.done();
    });
    tern::sleep_for(milliseconds(5));
    {
      std::lock_guard g(mu);
      ready = true;
    }
    cv.notify_one();
    wg.wait();
    EXPECT_TRUE(long_waiter_woke.load());
  });
}

// A plain thread blocked in wait() is woken by a fiber's notify_all(). The fiber notifies only once the thread is
// inside wait() (it saw `waiting` under the mutex, which wait() releases only once the thread is queued), so the
// notify must wake a blocked thread; a lost one hangs the join, and the watchdog fails the test.
TEST(CondVar, PlainThreadWaiterAndFiberNotifier) {
  tern::Runtime rt(procs(2));
  tern::Mutex mu;
  tern::CondVar cv;
  bool waiting = false, ready = false;
  std::atomic<bool> woke{false};
  tern::test::Watchdog dog("CondVar: a plain thread waiting for a fiber's notify");
  std::thread t([&] {
    std::unique_lock lk(mu);
    waiting = true;
    cv.wait(lk, [&] { return ready; });
    woke = true;
  });
  rt.run([&] {
    for (;;) {
      {
        std::lock_guard g(mu);
        if (waiting) break;
      }
      tern::yield();
    }
    std::lock_guard g(mu);
    ready = true;
    cv.notify_all();
  });
  t.join();
  dog.kick();
  EXPECT_TRUE(woke.load());
}

// The waiter destroys the CondVar as soon as it has been woken (allowed for std::condition_variable too), while
// notify_one may still be returning. The notifier first waits until the waiter is queued: a waiter that found the
// predicate already true would never wait, and destroying the CondVar before notify_one is even called is undefined
// for std::condition_variable as well.
TEST(CondVar, DestroyRightAfterWake) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(3000);
  rt.run([&] {
    for (int i = 0; i < rounds; i++) {
      tern::Mutex mu;
      auto cv = std::make_unique<tern::CondVar>();
      bool waiting = false;  // guarded by mu
      bool ready = false;    // guarded by mu
      tern::WaitGroup wg;
      wg.add(1);
      tern::go([&, c = cv.get()] {
        // The waiter sets `waiting` and queues itself before it releases mu, so seeing it under mu means queued.
        for (;;) {
          {
            std::lock_guard g(mu);
            if (waiting) {
              ready = true;
              break;
            }
          }
          tern::yield();
        }
        c->notify_one();
        wg.done();
      });
      {
        std::unique_lock lk(mu);
        waiting = true;
        if (i % 2 == 0) {
          cv->wait(lk, [&] { return ready; });
        } else {
          EXPECT_TRUE(cv->wait_for(lk, std::chrono::seconds(30), [&] { return ready; }));
        }
      }
      cv.reset();
      wg.wait();
    }
  });
}

}  // namespace
