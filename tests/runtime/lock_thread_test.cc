// lock_to_thread (Go's LockOSThread; scheduler/locked.cc): a locked fiber stays on its thread across every kind of
// wait, while the fibers around it move between threads as usual; unlocked, it is free again.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "runtime/blocking.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "runtime/sync/wait_group.h"
#include "tests/procs.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

TEST(LockThread, TheThreadIsStableAcrossYieldsSleepsChannelsSocketsAndBlockingCalls) {
  Runtime rt(test::procs(2));
  std::atomic<int> moved{0};
  rt.run([&] {
    auto l = net::listen("127.0.0.1:0");
    ASSERT_TRUE(l) << l.error().message();
    // Busy neighbours: they keep both processors' queues moving, and two of them block their threads over and over, so
    // processors keep passing from thread to thread (tern::blocking's handoff) and an unlocked fiber changes threads.
    std::atomic<bool> stop{false};
    std::vector<JoinHandle<void>> noise;
    for (int i = 0; i < 2; i++) {
      noise.push_back(spawn([&] {
        while (!stop.load()) blocking([] { std::this_thread::sleep_for(1ms); });
      }));
    }
    for (int i = 0; i < 4; i++) {
      noise.push_back(spawn([&] {
        while (!stop.load()) {
          sleep_for(100us);
          yield();
        }
      }));
    }
    auto echo = spawn([&] {
      auto s = l->accept(5s);
      ASSERT_TRUE(s);
      char c;
      while (s->read(&c, 1).n == 1 && s->write_all(&c, 1)) {
      }
    });
    Channel<int> ch;  // unbuffered: each send waits for the receiver
    auto peer = spawn([&] {
      while (auto v = ch.recv()) {
      }
    });
    auto locked = spawn([&] {
      lock_to_thread();
      const auto tid = std::this_thread::get_id();
      auto check = [&] {
        if (std::this_thread::get_id() != tid) moved.fetch_add(1);
      };
      auto c = net::dial(l->local_addr(), 5s);
      ASSERT_TRUE(c);
      for (int i = 0; i < 100; i++) {
        yield();
        check();
        sleep_for(200us);
        check();
        ch.send(i);
        check();
        char b = 'x';
        ASSERT_TRUE(c->write_all(&b, 1));
        ASSERT_EQ(c->read(&b, 1).n, 1u);
        check();
        blocking([] { std::this_thread::sleep_for(2ms); });  // long enough for its processor to be handed on
        check();
      }
      unlock_thread();
    });
    locked.join();
    ch.close();
    peer.join();
    stop.store(true);
    for (auto& n : noise) n.join();
    l->close();
    echo.join();
  });
  EXPECT_EQ(moved.load(), 0) << "the locked fiber ran on another thread after a wait";
}

// Locks nest; the fiber is free again after as many unlocks, and a fiber that ends locked frees its thread for others.
TEST(LockThread, LocksNestAndAnEndingFiberFreesItsThread) {
  Runtime rt(test::procs(2));
  rt.run([&] {
    auto h = spawn([] {
      lock_to_thread();
      lock_to_thread();
      EXPECT_TRUE(sched::thread_locked());
      unlock_thread();
      EXPECT_TRUE(sched::thread_locked());
      unlock_thread();
      EXPECT_FALSE(sched::thread_locked());
      unlock_thread();  // one too many: ignored
      EXPECT_FALSE(sched::thread_locked());
    });
    h.join();
    auto ends_locked = spawn([] {
      lock_to_thread();
      sleep_for(1ms);
    });
    ends_locked.join();
    // The runtime still runs fibers on every thread: many short ones all complete.
    WaitGroup wg;
    std::atomic<int> done{0};
    for (int i = 0; i < 100; i++) {
      wg.add(1);
      go([&] {
        sleep_for(100us);
        done.fetch_add(1);
        wg.done();
      });
    }
    wg.wait();
    EXPECT_EQ(done.load(), 100);
  });
}

// A locked fiber woken again before its thread has gone to sleep for it (the waker hands its processor over at once):
// the handoff's wakeup must not outlive it. Left in the thread's note, it made the thread's next idle park return at
// once while the thread stayed on the idle list; its next park pushed it a second time, which cut the list, and a
// shutdown could then wait forever for a thread nobody would wake (seen under ThreadSanitizer as a hung ~Runtime).
// The scheduler now stops the process on a second push; before the fix this test did (idle_list_corrupt).
TEST(LockThread, AHandoffThatWinsTheRaceToTheLockedThreadLeavesNoWakeupBehind) {
  for (int round = 0; round < 20; round++) {
    Runtime rt(test::procs(2));
    rt.run([&] {
      Channel<int> to_locked(1), from_locked(1);
      auto locked = spawn([&] {
        lock_to_thread();
        for (int i = 0; i < 200; i++) {
          auto v = to_locked.recv();
          ASSERT_TRUE(v.has_value());
          from_locked.send(*v + 1);
        }
      });
      for (int i = 0; i < 200; i++) {
        to_locked.send(i);
        ASSERT_EQ(from_locked.recv(), i + 1);
        // Between round trips, sometimes let every thread go idle, so that a stray wakeup meets an idle park.
        if (i % 16 == 0) sleep_for(200us);
      }
      locked.join();
    });
  }
}

// The locked thread runs no other fiber: a fiber that records its thread many times never sees the locked one's.
TEST(LockThread, TheLockedThreadRunsNoOtherFiber) {
  Runtime rt(test::procs(2));
  std::atomic<bool> ready{false}, stop{false};
  std::thread::id locked_tid;
  std::atomic<int> intruded{0};
  rt.run([&] {
    auto locked = spawn([&] {
      lock_to_thread();
      locked_tid = std::this_thread::get_id();
      ready.store(true);
      while (!stop.load()) sleep_for(200us);  // waits a lot: its thread sleeps meanwhile
      unlock_thread();
    });
    while (!ready.load()) yield();
    std::vector<JoinHandle<void>> others;
    for (int i = 0; i < 8; i++) {
      others.push_back(spawn([&] {
        for (int k = 0; k < 300; k++) {
          if (std::this_thread::get_id() == locked_tid) intruded.fetch_add(1);
          if (k % 3 == 0)
            sleep_for(50us);
          else
            yield();
        }
      }));
    }
    for (auto& o : others) o.join();
    stop.store(true);
    locked.join();
  });
  EXPECT_EQ(intruded.load(), 0);
}

}  // namespace
}  // namespace tern
