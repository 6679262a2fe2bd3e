// Tests of tern::Pool (runtime/pool.h): objects come back per P, the victim cache ages out in two cycles (by hand and
// on the monitor's timer), no object is ever handed to two owners while cycles run (run under TSan too), and the
// plain-thread path.
#include "runtime/pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/proc_local.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using namespace std::chrono_literals;
using tern::test::procs;
using tern::test::scaled;

struct Tagged {
  int slot = -1;  // the P slot it was last put on
  std::atomic<int> owners{0};
};

// A pool whose make/drop count, so that what it holds can be checked against what it made.
struct Counted {
  std::atomic<int64_t> made{0}, dropped{0};
  tern::Pool<Tagged> pool;
  explicit Counted(const char* name, tern::PoolOptions opts = {})
      : pool(
            name,
            [this] {
              made.fetch_add(1);
              return new Tagged;
            },
            [this](Tagged* t) {
              dropped.fetch_add(1);
              delete t;
            },
            opts) {}
  int64_t held() const {
    const tern::PoolStats s = pool.stats();
    return static_cast<int64_t>(s.primary + s.victim);
  }
};

TEST(Pool, PutObjectComesBackOnTheSameP) {
  tern::Pool<Tagged> pool("pool_test_same_p");
  tern::Runtime rt(procs(1));
  rt.run([&] {
    Tagged* a = pool.get();
    ASSERT_NE(a, nullptr);
    pool.put(a);
    EXPECT_EQ(pool.get(), a);  // LIFO: the hot one
    Tagged* b = pool.get();    // empty again: a new one
    EXPECT_NE(b, a);
    pool.put(a);
    pool.put(b);
    EXPECT_EQ(pool.get(), b);
    EXPECT_EQ(pool.get(), a);
    pool.put(a);
    pool.put(b);
  });
  const tern::PoolStats s = pool.stats();
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.hits, 3u);
  EXPECT_EQ(s.primary, 2u);
}

// Each object is tagged with the slot of the P it is put on, in the same stretch without a switch point; any get that
// hits must then return an object of the P it runs on, while fibers yield and migrate between the two Ps.
TEST(Pool, ObjectsComeBackPerP) {
  Counted c("pool_test_per_p");
  tern::Runtime rt(procs(2));
  const int fibers = static_cast<int>(scaled(200, 20));
  const int rounds = static_cast<int>(scaled(200, 20));
  std::atomic<int> wrong{0};
  rt.run([&] {
    tern::WaitGroup wg;
    for (int f = 0; f < fibers; f++) {
      wg.add(1);
      tern::go([&] {
        for (int r = 0; r < rounds; r++) {
          const int me = tern::sched::current_proc().slot;
          Tagged* t = c.pool.get();
          if (t->slot != -1 && t->slot != me) wrong.fetch_add(1);
          tern::yield();  // may resume on the other P
          const int now = tern::sched::current_proc().slot;
          t->slot = now;
          c.pool.put(t);
          if (r % 16 == 0) tern::sleep_for(10us);
        }
        wg.done();
      });
    }
    wg.wait();
  });
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(c.pool.stats().hits, 0u);
  EXPECT_EQ(c.made.load() - c.dropped.load(), c.held());
}

TEST(Pool, VictimCacheEmptiesAfterTwoCycles) {
  Counted c("pool_test_victim");
  tern::Runtime rt(procs(1));
  rt.run([&] {
    std::vector<Tagged*> ts;
    for (int i = 0; i < 10; i++) ts.push_back(c.pool.get());
    for (Tagged* t : ts) c.pool.put(t);
    EXPECT_EQ(c.pool.stats().primary, 10u);

    tern::pool_cycle();  // one cycle: they survive, as the victim cache
    tern::PoolStats s = c.pool.stats();
    EXPECT_EQ(s.primary, 0u);
    EXPECT_EQ(s.victim, 10u);
    EXPECT_EQ(c.dropped.load(), 0);
    Tagged* back = c.pool.get();  // a hit from the victim cache
    EXPECT_EQ(c.pool.stats().hits, 1u);
    EXPECT_EQ(c.made.load(), 10);
    c.pool.put(back);  // into the primary: it starts its two cycles again

    tern::pool_cycle();  // the other nine's second cycle: dropped
    s = c.pool.stats();
    EXPECT_EQ(c.dropped.load(), 9);
    EXPECT_EQ(s.victim, 1u);
    EXPECT_EQ(s.primary, 0u);

    tern::pool_cycle();
    EXPECT_EQ(c.dropped.load(), 10);
    EXPECT_EQ(c.held(), 0);
    EXPECT_EQ(c.pool.stats().drops, 10u);
  });
}

// Nobody calls pool_cycle(): the monitor does, every sched::kProcCyclePeriodNs while a P is busy. An object put and
// not taken again dies at the second cycle after its put: between one and two periods later.
TEST(Pool, MonitorAgesObjectsOnItsTimer) {
  Counted c("pool_test_timer");
  tern::Runtime rt(procs(1));
  rt.run([&] {
    std::vector<Tagged*> ts;
    for (int i = 0; i < 5; i++) ts.push_back(c.pool.get());
    for (Tagged* t : ts) c.pool.put(t);
    const auto start = std::chrono::steady_clock::now();
    const auto limit = start + 3 * std::chrono::nanoseconds(tern::sched::kProcCyclePeriodNs) + 2s;
    while (c.held() > 0 && std::chrono::steady_clock::now() < limit) tern::sleep_for(5ms);  // keeps the monitor up
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(c.held(), 0);
    EXPECT_EQ(c.dropped.load(), 5);
    EXPECT_GE(took, std::chrono::nanoseconds(tern::sched::kProcCyclePeriodNs) * 9 / 10);
  });
}

// Fibers on four Ps take, hold across switch points, and give back objects while a thread runs cycles back to back:
// each object must have one owner at a time (its owner count goes 0 -> 1 -> 0), and everything made is either held by
// the pool or dropped at the end. TSan checks the slot exclusion's happens-before edges.
TEST(Pool, NoObjectHandedToTwoOwnersUnderCycles) {
  Counted c("pool_test_stress", tern::PoolOptions{.per_proc = 8});
  tern::Runtime rt(procs(4));
  const int fibers = static_cast<int>(scaled(64, 8));
  const int rounds = static_cast<int>(scaled(20000, 1000));
  std::atomic<int> doubles{0};
  std::atomic<bool> stop{false};
  std::atomic<int> cycles{0};
  std::thread cycler([&] {
    while (!stop.load()) {
      tern::pool_cycle();
      cycles.fetch_add(1);
      std::this_thread::yield();
    }
  });
  rt.run([&] {
    tern::WaitGroup wg;
    for (int f = 0; f < fibers; f++) {
      wg.add(1);
      tern::go([&, f] {
        std::vector<Tagged*> held;
        for (int r = 0; r < rounds; r++) {
          Tagged* t = c.pool.get();
          if (t->owners.fetch_add(1) != 0) doubles.fetch_add(1);
          held.push_back(t);
          if ((r + f) % 3 == 0) tern::yield();
          if (held.size() >= static_cast<size_t>(1 + (r + f) % 4)) {
            for (Tagged* h : held) {
              h->owners.fetch_sub(1);
              c.pool.put(h);
            }
            held.clear();
          }
        }
        for (Tagged* h : held) {
          h->owners.fetch_sub(1);
          c.pool.put(h);
        }
        wg.done();
      });
    }
    wg.wait();
  });
  stop.store(true);
  cycler.join();
  EXPECT_EQ(doubles.load(), 0);
  EXPECT_GT(cycles.load(), 0);
  EXPECT_EQ(c.made.load() - c.dropped.load(), c.held());
  const tern::PoolStats s = c.pool.stats();
  EXPECT_EQ(static_cast<int64_t>(s.misses), c.made.load());
  EXPECT_EQ(static_cast<int64_t>(s.drops), c.dropped.load());
}

TEST(Pool, PlainThreadMakesAndDrops) {
  Counted c("pool_test_plain");
  Tagged* t = c.pool.get();
  ASSERT_NE(t, nullptr);
  c.pool.put(t);
  EXPECT_EQ(c.made.load(), 1);
  EXPECT_EQ(c.dropped.load(), 1);
  const tern::PoolStats s = c.pool.stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.drops, 1u);
  EXPECT_EQ(s.primary + s.victim, 0u);
}

TEST(Pool, DefaultObjectsLiveOnTheNodeArena) {
  tern::Pool<std::vector<int>> pool("pool_test_default");
  tern::Runtime rt(procs(1));
  rt.run([&] {
    std::vector<int>* v = pool.get();
    v->assign(100, 7);
    pool.put(v);
    EXPECT_EQ(pool.get()->size(), 100u);  // as it was put: get() does not reset
    pool.put(v);
  });
  // The pool's destructor drops v (and frees its elements): ASan checks nothing leaks or is freed twice.
}

TEST(Pool, NamesAreMadeValidAndUnique) {
  tern::Pool<int> a("pool name/with spaces");
  tern::Pool<int> b("pool name/with spaces");
  EXPECT_EQ(a.name(), "pool_name_with_spaces");
  EXPECT_EQ(b.name(), "pool_name_with_spaces-2");
}

}  // namespace
