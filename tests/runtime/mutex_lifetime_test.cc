// tern::Mutex may be destroyed as soon as the last user's unlock() has made it free, as std::mutex may: the thread
// that sees it is the last user locks, unlocks and deletes it while the previous owner may still be inside its own
// unlock(). Such an unlock must not touch the Mutex after the store that frees it.
//
// The unlock that used to is the one after a starving waiter: the waiter took a lock reserved for it (kStarving) with
// nobody queued behind it, and its unlock stored "free" while still holding the internal std::mutex, which it then
// released, a write into the Mutex that a deleter may already have freed. The test drives one P through exactly that
// sequence (see run_one), with a plain thread spinning on try_lock() as the deleter. ThreadSanitizer reports the late
// unlock of the internal std::mutex on every round (its pthread_mutex_unlock interceptor reads the freed mutex, and
// nothing orders that read before the delete); ASan cannot see it, because the write happens inside glibc, which is
// not instrumented. Without a sanitizer the test still checks that every round completes with the right owners.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/mutex.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/timer.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

// How long the barger holds the lock in step 3: the starvation threshold, plus room for the clock reads around it.
constexpr int64_t kHoldNs = tern::kMutexStarvationNs + 200'000;

// The round's shared state. `mu` is deleted by the deleter thread; the rest lives for the whole test.
struct Round {
  std::atomic<tern::Mutex*> armed{nullptr};  // set once the deleter may start trying the lock
  bool waiter_done = false;                  // written by the waiter inside its critical section
  std::atomic<uint64_t> deleted{0};          // rounds the deleter finished
};

// The deleter: once armed, spins on try_lock(); the holder that finds the waiter's critical section done is the last
// user, and deletes the Mutex straight after its unlock(). A plain thread on the other CPU, so that its delete can
// land while the waiter's unlock is still returning.
void deleter(Round& r, uint64_t rounds) {
  for (uint64_t i = 0; i < rounds; i++) {
    tern::Mutex* mu;
    while ((mu = r.armed.load(std::memory_order_acquire)) == nullptr) {
    }
    for (;;) {
      if (!mu->try_lock()) continue;
      const bool last = r.waiter_done;
      mu->unlock();
      if (last) break;
    }
    r.armed.store(nullptr, std::memory_order_relaxed);
    delete mu;
    r.deleted.fetch_add(1, std::memory_order_release);
  }
}

// One round on a runtime with one P, so that the waiter cannot run while the barger holds the P:
//   1. the barger (this fiber) locks; the waiter queues behind it;
//   2. the barger unlocks, waking the waiter (normal mode: no handoff), and at once locks again: the waiter is
//      queued on this P, behind the barger, so it cannot get there first;
//   3. the barger holds the lock until the waiter has waited kMutexStarvationNs and unlocks: the free lock is now
//      reserved for the waiter (kStarving), and nobody else waits;
//   4. the waiter takes it and unlocks: the unlock path that frees a starving Mutex with an empty queue; the deleter,
//      spinning since step 2, takes the lock the moment it is free and deletes the Mutex.
void run_one(Round& r) {
  auto* mu = new tern::Mutex;
  r.waiter_done = false;
  mu->lock();
  tern::WaitGroup parked;
  parked.add(1);
  tern::go([&r, mu, &parked] {
    parked.done();  // runs before the lock() below parks: the barger waits on the P's queue, behind this fiber
    mu->lock();
    r.waiter_done = true;
    mu->unlock();
  });
  parked.wait();  // returns once the waiter has parked in lock(): it ran on from done() until then
  const int64_t queued_by = tern::sched::now_ns();
  mu->unlock();
  mu->lock();  // the woken waiter is behind this fiber on the one P: the lock is free for the barger
  r.armed.store(mu, std::memory_order_release);
  while (tern::sched::now_ns() - queued_by < kHoldNs) {
  }
  mu->unlock();
}

TEST(MutexLifetime, DeleteRightAfterUnlockFollowingStarvingWaiter) {
  const uint64_t rounds = static_cast<uint64_t>(scaled(300, 20));
  Round r;
  std::thread d(deleter, std::ref(r), rounds);
  tern::Runtime rt(procs(1));
  rt.run([&] {
    for (uint64_t i = 0; i < rounds; i++) {
      run_one(r);
      // The next round starts once the deleter has freed this one's Mutex.
      while (r.deleted.load(std::memory_order_acquire) <= i) tern::yield();
    }
  });
  d.join();
  EXPECT_EQ(r.deleted.load(), rounds);
}

}  // namespace
