// SpinLock (runtime/sync/spin_lock.h): lock/try_lock/unlock, std guards, mutual exclusion under contention.
#include "runtime/sync/spin_lock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace tern {
namespace {

#if defined(TERN_SANITIZE_THREAD)
constexpr int kIters = 5'000;
#else
constexpr int kIters = 100'000;
#endif
constexpr int kThreads = 4;

TEST(SpinLock, TryLockFailsWhileHeld) {
  SpinLock lk;
  EXPECT_TRUE(lk.try_lock());
  EXPECT_FALSE(lk.try_lock()) << "not reentrant: a held lock refuses";
  lk.unlock();
  EXPECT_TRUE(lk.try_lock());
  lk.unlock();
  lk.lock();
  EXPECT_FALSE(lk.try_lock());
  lk.unlock();
}

TEST(SpinLock, TryLockFromAnotherThreadFailsWhileHeld) {
  SpinLock lk;
  lk.lock();
  bool got = true;
  std::thread([&] { got = lk.try_lock(); }).join();
  EXPECT_FALSE(got);
  lk.unlock();
  std::thread([&] {
    got = lk.try_lock();
    if (got) lk.unlock();
  }).join();
  EXPECT_TRUE(got);
}

TEST(SpinLock, WorksWithStandardGuards) {
  SpinLock lk;
  {
    std::lock_guard g(lk);
    EXPECT_FALSE(lk.try_lock());
  }
  {
    std::unique_lock g(lk, std::try_to_lock);
    EXPECT_TRUE(g.owns_lock());
    g.unlock();
    EXPECT_TRUE(lk.try_lock());
    lk.unlock();
  }
  SpinLock other;
  {
    std::scoped_lock g(lk, other);
    EXPECT_FALSE(lk.try_lock());
    EXPECT_FALSE(other.try_lock());
  }
  EXPECT_TRUE(lk.try_lock());
  EXPECT_TRUE(other.try_lock());
  lk.unlock();
  other.unlock();
}

// A lock() that finds the lock held waits until it is released (the slow path), and then holds it.
TEST(SpinLock, ContendedLockWaitsForUnlock) {
  SpinLock lk;
  lk.lock();
  std::atomic<bool> acquired{false};
  std::thread t([&] {
    lk.lock();
    acquired.store(true);
    lk.unlock();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin rounds, into the yield loop
  EXPECT_FALSE(acquired.load()) << "lock() returned while another thread held the lock";
  lk.unlock();
  t.join();
  EXPECT_TRUE(acquired.load());
}

// Several threads increment a plain counter under the lock: no increment is lost, and no two threads are ever inside
// together.
TEST(SpinLock, MutualExclusionUnderContention) {
  SpinLock lk;
  int64_t counter = 0;  // deliberately not atomic
  int inside = 0;
  std::atomic<bool> overlap{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&] {
      for (int i = 0; i < kIters; i++) {
        std::lock_guard g(lk);
        if (++inside != 1) overlap = true;
        counter++;
        inside--;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_FALSE(overlap.load());
  EXPECT_EQ(counter, int64_t{kThreads} * kIters);
}

// The same with try_lock() spinning, mixed with lock().
TEST(SpinLock, MutualExclusionWithTryLock) {
  SpinLock lk;
  int64_t counter = 0;
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; t++) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < kIters / 4; i++) {
        if (t % 2 == 0) {
          while (!lk.try_lock()) std::this_thread::yield();
        } else {
          lk.lock();
        }
        counter++;
        lk.unlock();
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(counter, int64_t{kThreads} * (kIters / 4));
}

}  // namespace
}  // namespace tern
