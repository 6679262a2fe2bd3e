// tern::blocking and tern::spawn_blocking (runtime/blocking.h, scheduler/blocking.cc): a call that blocks its thread
// leaves the fibers beside it running, the monitor hands a long call's processor on, threads stay under their bound,
// and the pool under its own. Progress is asserted by counts, never by times.
#include "runtime/blocking.h"

#include <gtest/gtest.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "scheduler/sched.h"
#include "tests/procs.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

void block_thread(std::chrono::milliseconds d) {
  std::this_thread::sleep_for(d);  // nanosleep: blocks the thread, not the fiber
}

// One processor. A fiber spends 200 ms blocked in tern::blocking while another, on the same (only) processor, counts:
// the count must move during the call. Without the handoff the processor is the blocked thread's and the counter
// stands still for the whole 200 ms.
TEST(Blocking, FibersOnTheSameProcessorKeepRunning) {
  Runtime rt(test::procs(1));
  std::atomic<uint64_t> count{0};
  std::atomic<bool> stop{false};
  uint64_t during = 0;
  uint64_t retakes = 0;
  rt.run([&] {
    auto counter = spawn([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        count.fetch_add(1, std::memory_order_relaxed);
        yield();
      }
    });
    yield();  // the counter starts
    const uint64_t before = count.load();
    const int v = blocking([] {
      block_thread(200ms);
      return 7;
    });
    EXPECT_EQ(v, 7);
    during = count.load() - before;
    stop.store(true);
    counter.join();
    retakes = sched::Sched::current()->stats().retakes;
  });
  EXPECT_GT(during, 1000u) << "the counter did not run while the only processor's thread was blocked";
  EXPECT_GE(retakes, 1u) << "the monitor never handed the processor on";
}

// A call that returns at once keeps its processor: no handoff, the fiber goes on on the same thread.
TEST(Blocking, AShortCallKeepsItsProcessorAndThread) {
  Runtime rt(test::procs(1));
  rt.run([&] {
    const auto tid = std::this_thread::get_id();
    for (int i = 0; i < 1000; i++) {
      EXPECT_EQ(blocking([i] { return i; }), i);
    }
    EXPECT_EQ(std::this_thread::get_id(), tid);
    EXPECT_EQ(sched::Sched::current()->stats().blocking_calls, 1000u);
  });
}

// What the call throws leaves it, and the fiber has a processor again after it.
TEST(Blocking, AnExceptionLeavesTheCallAndTheFiberGoesOn) {
  Runtime rt(test::procs(2));
  rt.run([&] {
    EXPECT_THROW(blocking([]() -> int {
                   block_thread(5ms);
                   throw std::runtime_error("io");
                 }),
                 std::runtime_error);
    // Parking works again: the fiber holds a processor.
    Channel<int> ch(1);
    ch.send(1);
    EXPECT_EQ(ch.recv().value_or(0), 1);
    sleep_for(1ms);
  });
}

// Many fibers in long calls at once on two processors: each call's processor goes on to the next fiber, so all of
// them are in their calls together (a thread each), and every fiber comes back, to whatever processor is free.
TEST(Blocking, ManyLongCallsAtOnceEachGetAThread) {
  Runtime rt(test::procs(2));
  constexpr int kFibers = 16;
  std::atomic<int> inside{0}, most{0}, done{0};
  rt.run([&] {
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < kFibers; i++) {
      hs.push_back(spawn([&] {
        blocking([&] {
          const int now = inside.fetch_add(1) + 1;
          int m = most.load();
          while (now > m && !most.compare_exchange_weak(m, now)) {
          }
          block_thread(100ms);
          inside.fetch_sub(1);
        });
        done.fetch_add(1);
      }));
    }
    for (auto& h : hs) h.join();
  });
  EXPECT_EQ(done.load(), kFibers);
  EXPECT_GT(most.load(), 2) << "the calls ran at most two at a time: processors were not handed on";
}

// At the thread bound, processors of blocked calls wait for a thread to come back instead of starting more: the
// runtime's threads never exceed it, the limit is counted, and every call still completes.
TEST(Blocking, ThreadsStayUnderTheBound) {
  Config c = test::procs(2);
  c.max_threads = 4;
  Runtime rt(c);
  std::atomic<bool> stop{false};
  std::atomic<int> most_threads{0};
  sched::Sched* s = nullptr;
  std::atomic<int> done{0};
  rt.run([&] {
    s = sched::Sched::current();
    std::thread watcher([&] {
      while (!stop.load()) {
        const int t = s->stats().threads;
        if (t > most_threads.load()) most_threads.store(t);
        std::this_thread::sleep_for(1ms);
      }
    });
    std::vector<JoinHandle<void>> hs;
    for (int i = 0; i < 20; i++) {
      hs.push_back(spawn([&] {
        blocking([] { block_thread(20ms); });
        done.fetch_add(1);
      }));
    }
    for (auto& h : hs) h.join();
    stop.store(true);
    watcher.join();
    EXPECT_GT(s->stats().thread_limit_hits, 0u);
  });
  EXPECT_EQ(done.load(), 20);
  EXPECT_LE(most_threads.load(), 4);
}

// A fiber inside tern::blocking that waits on a tern primitive would park without a processor: the process stops and
// says why.
TEST(BlockingDeathTest, ParkingInsideTheCallStopsWithAMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Runtime rt(test::procs(1));
        rt.run([] { blocking([] { sleep_for(1ms); }); });
      },
      "inside tern::blocking waited on a tern primitive");
}

// Off fibers it only calls the function.
TEST(Blocking, OffFibersItCallsTheFunction) {
  EXPECT_EQ(blocking([] { return 3; }), 3);
}

// spawn_blocking: results and exceptions come back through join(), which parks the fiber, and the pool runs at most
// its bound at once, queueing the rest.
TEST(SpawnBlocking, ResultsExceptionsAndTheBound) {
  Config c = test::procs(1);
  c.max_blocking_threads = 2;
  Runtime rt(c);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> running{0};
  rt.run([&] {
    std::vector<JoinHandle<int>> hs;
    for (int i = 0; i < 6; i++) {
      hs.push_back(spawn_blocking([&, i] {
        running.fetch_add(1);
        std::unique_lock lk(mu);
        cv.wait(lk, [&] { return release; });
        return i * i;
      }));
    }
    // The fiber waits for the pool by parking, so the processor stays free: another fiber runs meanwhile.
    auto other = spawn([] { return 5; });
    EXPECT_EQ(other.join(), 5);
    while (running.load() < 2) sleep_for(1ms);
    sleep_for(20ms);  // more would have started by now if the pool ignored its bound
    const auto st = BlockingPool::instance().stats();
    EXPECT_EQ(running.load(), 2);
    EXPECT_LE(st.threads, 2);
    EXPECT_GE(st.queued, 4u);
    {
      std::lock_guard lk(mu);
      release = true;
    }
    cv.notify_all();
    for (int i = 0; i < 6; i++) EXPECT_EQ(hs[static_cast<size_t>(i)].join(), i * i);
    auto bad = spawn_blocking([]() -> int { throw std::runtime_error("legacy call failed"); });
    EXPECT_THROW(bad.join(), std::runtime_error);
  });
  Config back = test::procs(1);  // the pool is the process's: give it its default bound back for the other tests
  Runtime restore(back);
}

// From a plain thread, join() blocks the thread.
TEST(SpawnBlocking, FromAPlainThread) {
  auto h = spawn_blocking([] { return std::string("done"); });
  EXPECT_EQ(h.join(), "done");
}

}  // namespace
}  // namespace tern
