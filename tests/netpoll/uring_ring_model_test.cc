// The io_uring backend's ring model (docs/architecture.md 7.4), through tern::net on both backends (epoll as the
// control): multishot receives into a ring's shared provided buffers, which a reader that falls behind must not take
// from the others; a ring per submitting thread, whose completion work runs on that thread, so receives move off a
// thread that sleeps, an M parked in its own ring runs its completions, and a thread that runs one long fiber or is
// blocked in the kernel holds no read it submitted; and a close while a receive is still armed.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "netpoll/io_backend.h"
#include "runtime/go.h"
#include "runtime/net/net.h"
#include "runtime/runtime.h"
#include "tests/scale.h"
#include "tests/support/net.h"
#include "tests/support/require.h"

namespace tern::net {
namespace {

using namespace std::chrono_literals;

using test::connect_loopback_pair;
using test::connect_pairs;
using test::NetTest;
using test::Pattern;

TEST_P(NetTest, ReaderThatFallsBehindStarvesNoOtherConnection) {
  // One peer floods a connection whose reader does not read for a while. The io_uring backend receives into buffers
  // its ring shares among connections; without a bound on unread data the flood would take them all. Meanwhile other
  // connections must keep echoing, and afterwards the flooded reader gets every byte, in order.
  Runtime rt(config());
  rt.run([&] {
    auto l = listen("127.0.0.1:0", {.backlog = 256});
    ASSERT_TRUE(l);
    constexpr size_t kFlood = 8 << 20;
    auto flooded = dial(l->local_addr(), 10s);
    ASSERT_TRUE(flooded);
    auto fs = l->accept(10s);
    ASSERT_TRUE(fs);
    // The first read waits for the flood to start (so io_uring arms its receive), then the stream stays unread.
    auto flooder = spawn([&] {
      sleep_for(20ms);
      Pattern pat(3);
      std::vector<char> buf(64 << 10);
      for (size_t sent = 0; sent < kFlood; sent += buf.size()) {
        pat.fill(buf.data(), buf.size());
        ASSERT_TRUE(flooded->write_all(buf.data(), buf.size(), 30s));
      }
    });
    char first[1];
    auto r0 = fs->read(first, 1, 10s);
    ASSERT_TRUE(r0) << r0.ec.message();

    constexpr int kOthers = 40;
    std::vector<Stream> clients, servers;
    ASSERT_NO_FATAL_FAILURE(connect_pairs(*l, kOthers, clients, servers));
    std::vector<JoinHandle<void>> others;
    for (int i = 0; i < kOthers; i++) {
      others.push_back(spawn([&, i] {
        Stream* c = &clients[i];
        Stream* s = &servers[i];
        for (int round = 0; round < 20; round++) {
          char msg[32], got[32];
          int n = std::snprintf(msg, sizeof msg, "conn %d round %d", i, round);
          ASSERT_TRUE(c->write_all(msg, static_cast<size_t>(n), 10s));
          auto r = s->read_full(got, static_cast<size_t>(n), 10s);
          ASSERT_TRUE(r) << r.ec.message();
          ASSERT_EQ(std::string(got, r.n), std::string(msg, static_cast<size_t>(n)));
        }
      }));
    }
    for (auto& h : others) h.join();

    Pattern pat(3);
    std::vector<char> buf(100'000), want(100'000);
    pat.fill(want.data(), 1);
    ASSERT_EQ(first[0], want[0]);
    size_t got = 1;
    while (got < kFlood) {
      auto r = fs->read(buf.data(), buf.size(), 30s);
      ASSERT_TRUE(r) << r.ec.message() << " after " << got << " bytes";
      ASSERT_GT(r.n, 0u);
      pat.fill(want.data(), r.n);
      ASSERT_EQ(std::memcmp(buf.data(), want.data(), r.n), 0) << "corrupt data at offset " << got;
      got += r.n;
    }
    EXPECT_EQ(got, kFlood);
    flooder.join();
    if (GetParam() != "epoll") {
      EXPECT_GT(netpoll::current_backend()->io_stats().recv_throttles, 0u);
    }
  });
}

// Called in a fiber: rounds in which every fiber pauses, so that one M sleeps with receives armed while the other waits
// in the poller, and each server read starts before its client writes, long after that M went to sleep. Every byte
// must arrive, in order. One attempt, and up to 4 more until `taken()` says the path under test ran.
void paused_rounds(const std::function<bool()>& taken) {
  auto l = listen("127.0.0.1:0", {.backlog = 256});
  ASSERT_TRUE(l);
  constexpr int kConns = 48;
  constexpr int kRounds = 8;
  std::vector<Stream> clients, servers;
  ASSERT_NO_FATAL_FAILURE(connect_pairs(*l, kConns, clients, servers));
  for (int attempt = 0; attempt == 0 || (attempt < 5 && !taken()); attempt++) {
    std::vector<JoinHandle<void>> fibers;
    for (int i = 0; i < kConns; i++) {
      fibers.push_back(spawn([&, i] {
        for (int round = 0; round < kRounds; round++) {
          sleep_for(8ms);
          char msg[48];
          int n = std::snprintf(msg, sizeof msg, "attempt %d conn %d round %d", attempt, i, round);
          ASSERT_TRUE(clients[i].write_all(msg, static_cast<size_t>(n), 10s));
        }
      }));
      fibers.push_back(spawn([&, i] {
        for (int round = 0; round < kRounds; round++) {
          char want[48], got[48];
          int n = std::snprintf(want, sizeof want, "attempt %d conn %d round %d", attempt, i, round);
          if (round > 0) sleep_for(5ms);  // read again well after the Ms went idle, before the next write lands
          auto r = servers[i].read_full(got, static_cast<size_t>(n), 10s);
          ASSERT_TRUE(r) << r.ec.message();
          ASSERT_EQ(std::string(got, r.n), std::string(want, static_cast<size_t>(n)));
        }
      }));
    }
    for (auto& h : fibers) h.join();
  }
}

TEST_P(NetTest, BulkReadsLeaveTheMultishotReceiveAndComeBackLosingNothing) {
  // io_uring: a connection whose reads take 8 KiB or more from its multishot receive's buffers moves to receives into
  // the reader's buffer (no second copy), and back after four small reads in a row. Each move cancels the multishot
  // receive while data may be arriving: every byte must still arrive once, in order, in each phase. (epoll: the same
  // traffic, as the control.)
  Runtime rt(config(2));
  rt.run([&] {
    std::vector<Stream> clients, servers;
    ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
    Stream* c = &clients[0];
    Stream* s = &servers[0];
    Pattern out(7), in(7);
    std::vector<char> msg(64 << 10), got(16 << 10), want(16 << 10);
    auto send = [&](size_t n) {
      out.fill(msg.data(), n);
      ASSERT_TRUE(c->write_all(msg.data(), n, 10s));
    };
    auto receive = [&](size_t n) {  // reads n bytes in reads of up to 16 KiB, as a server's request buffer does
      for (size_t done = 0; done < n;) {
        auto r = s->read(got.data(), std::min(got.size(), n - done), 10s);
        ASSERT_TRUE(r) << r.ec.message() << " at " << done << " of " << n;
        ASSERT_GT(r.n, 0u);
        in.fill(want.data(), r.n);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), r.n), 0) << "corrupt at " << done << " of " << n;
        done += r.n;
      }
    };
    auto bulk = [] { return netpoll::current_backend()->io_stats().recv_bulk; };
    // Whether a message's pieces are taken between two waits depends on when the reaper gets to them: up to 8 phases
    // until two moves into bulk (so one out of it) were seen.
    const bool uring = GetParam() != "epoll";
    for (int phase = 0; phase < 2 || (uring && phase < 8 && bulk() < 2); phase++) {
      // Small requests first: the multishot receive is armed and serves them.
      for (int i = 0; i < 20; i++) {
        ASSERT_NO_FATAL_FAILURE(send(40));
        ASSERT_NO_FATAL_FAILURE(receive(40));
      }
      // Then 16 KiB requests and a 64 KiB one in flight, read while more arrive behind them.
      for (int i = 0; i < 10; i++) {
        ASSERT_NO_FATAL_FAILURE(send(16 << 10));
        ASSERT_NO_FATAL_FAILURE(receive(16 << 10));
      }
      auto writer = spawn([&] {
        for (int i = 0; i < 16; i++) send(64 << 10);
      });
      ASSERT_NO_FATAL_FAILURE(receive(16 * (64 << 10)));
      writer.join();
    }
    if (uring) {
      // Into bulk twice, so out of it in between.
      EXPECT_GE(bulk(), 2u);
    } else {
      EXPECT_EQ(bulk(), 0u);
    }
  });
}

TEST_P(NetTest, ReceivesMoveOffAThreadThatSleepsAndLoseNothing) {
  // io_uring runs a receive's completion work on the thread that armed it. An M sleeping on a futex (uring_park off,
  // or a kernel before 6.7) would be woken for every arrival, so once it has slept long with no work, a read that has
  // to wait moves the receive to its own thread.
  Config c = config(2);
  c.uring_park = false;
  Runtime rt(c);
  rt.run([&] {
    const bool uring = GetParam() != "epoll";
    ASSERT_NO_FATAL_FAILURE(
        paused_rounds([&] { return !uring || netpoll::current_backend()->io_stats().recv_moves > 0; }));
    auto io = netpoll::current_backend()->io_stats();
    EXPECT_EQ(io.ring_parks, 0u);
    if (uring) {
      EXPECT_GT(io.recv_moves, 0u);
    } else {
      EXPECT_EQ(io.recv_moves, 0u);
    }
  });
}

TEST_P(NetTest, AnMParkedInItsRingRunsItsOwnCompletionsAndLosesNothing) {
  // uring_park (the default): the sleeping M waits in its own ring, its receives' completions wake it, and it runs
  // their fibers itself (a P is idle here) or queues them. Nothing moves, nothing is lost.
  Runtime rt(config(2));
  rt.run([&] {
    const bool uring = GetParam() != "epoll";
    ASSERT_NO_FATAL_FAILURE(paused_rounds([&] { return !uring || rt.stats().park_io_takes > 0; }));
    auto io = netpoll::current_backend()->io_stats();
    auto st = rt.stats();
    if (!uring) {
      EXPECT_EQ(io.ring_parks, 0u);
      EXPECT_EQ(st.park_io_wakes, 0u);
      return;
    }
    if (io.ring_parks == 0)
      TERN_SKIP_OR_FAIL(test::uring_futex_required(),
                        "no ring parks: the kernel lacks IORING_OP_FUTEX_WAIT (Linux 6.7)");
    EXPECT_GT(st.park_io_takes, 0u);
    EXPECT_GE(st.park_io_wakes, st.park_io_takes);
    EXPECT_EQ(io.recv_moves, 0u);
  });
}

TEST_P(NetTest, AReadArmedByAThreadThatRunsOneLongFiberIsServedMeanwhile) {
  // A reader parks on its thread's ring; that thread then runs one fiber that never yields, and the data arrives.
  // io_uring runs the receive's completion work on that thread (at its next timer tick: the fiber makes no system
  // call), and the reader must then run on the other P while the hog still runs: a thread busy with one long fiber
  // must not hold the completions of everything it submitted. The hog gives up after 10 s; the reader must be done long
  // before. With deferred rings the work waits for the hog's thread to enter its ring, which it never does: the
  // monitor's nudge (a signal whose handler runs it) is what serves the reader.
  Runtime rt(config(2));
  rt.run([&] {
    bool same_thread = false;
    for (int attempt = 0; attempt < 10 && !same_thread; attempt++) {
      // A new connection each attempt: its first read that waits arms its receive on the reader's thread (a receive
      // armed by an earlier attempt's reader would stay on that thread).
      std::vector<Stream> clients, servers;
      ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
      Stream* c = &clients[0];
      Stream* s = &servers[0];
      std::atomic<bool> reading{false}, done{false};
      std::thread::id reader_thread;
      auto hog = spawn([&] {
        const auto hog_thread = std::this_thread::get_id();
        auto reader = spawn([&] {
          reader_thread = std::this_thread::get_id();
          reading.store(true);
          char buf[8];
          auto r = s->read_full(buf, 5, 30s);
          EXPECT_TRUE(r) << r.ec.message();
          EXPECT_EQ(std::string(buf, r.n), "hello");
          done.store(true);
        });
        while (!reading.load()) yield();  // the reader runs here first (it is in this P's runnext), and parks
        yield();
        auto writer = spawn([&] {  // queued behind the hog: the other P takes it
          sleep_for(20ms);
          EXPECT_TRUE(c->write_all("hello", 5, 10s));
        });
        const auto t0 = Clock::now();
        while (!done.load() && Clock::now() - t0 < 10s) {
        }
        same_thread = reader_thread == hog_thread && std::this_thread::get_id() == hog_thread;
        EXPECT_TRUE(done.load()) << "the reader was not run while the thread that armed its read ran one fiber";
        reader.join();
        writer.join();
      });
      hog.join();
    }
    if (!same_thread) GTEST_SKIP() << "the reader never parked on the thread that then ran the hog";
  });
}

// Holds the calling thread in the kernel for `ns`, in a wait that no signal or io_uring task work interrupts: the
// parent of a vfork child (as in posix_spawn) until the child exits. The child shares the memory, so it runs on a stack
// of its own and makes raw system calls only.
void block_thread_in_kernel(int64_t ns) {
  std::vector<char> stack(64 << 10);
  struct Arg {
    timespec ts;
  } arg{{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)}};
  int pid = ::clone(
      [](void* a) -> int {
        syscall(SYS_nanosleep, &static_cast<Arg*>(a)->ts, nullptr);
        return 0;
      },
      stack.data() + stack.size(), CLONE_VM | CLONE_VFORK | SIGCHLD, &arg);
  ASSERT_GT(pid, 0) << "clone: " << errno;
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
}

TEST_P(NetTest, AReadEndsAtItsDeadlineWhileTheThreadThatSubmittedItIsBlocked) {
  // A bulk read (larger than a request: one receive operation of its own on io_uring) parks on its thread's ring; that
  // thread then blocks in the kernel, in a wait that io_uring's task work cannot interrupt. The read's deadline must
  // still end it on time, on the other P: its completion (or its cancellation's) needs task work on the blocked
  // thread, and waiting for that held the reader until the block ended.
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer takes the vfork child for a fork of a multi-threaded process, and its state for the parent's
  // threads does not survive it.
  GTEST_SKIP() << "a vfork child cannot run under ThreadSanitizer";
#endif
  constexpr auto kDeadline = 100ms;
  constexpr auto kLate = 500ms;  // past the deadline: timer and scheduling jitter, not a wait for the blocked thread
  constexpr auto kBlock = 2s;
  Runtime rt(config(2));
  rt.run([&] {
    std::vector<Stream> clients, servers;
    ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
    Stream* s = &servers[0];
    bool same_thread = false;
    for (int attempt = 0; attempt < 10 && !same_thread; attempt++) {
      std::atomic<bool> reading{false};
      std::thread::id reader_thread, blocked_thread;
      Clock::duration took{};
      auto outer = spawn([&] {
        auto reader = spawn([&] {
          reader_thread = std::this_thread::get_id();
          reading.store(true);
          std::vector<char> buf(64 << 10);
          const auto t0 = Clock::now();
          auto r = s->read(buf.data(), buf.size(), kDeadline);
          took = Clock::now() - t0;
          EXPECT_EQ(r.ec, std::errc::timed_out);
        });
        while (!reading.load()) yield();  // the reader runs here first (it is in this P's runnext), and parks
        yield();
        blocked_thread = std::this_thread::get_id();
        block_thread_in_kernel(std::chrono::nanoseconds(kBlock).count());
        reader.join();
      });
      outer.join();
      same_thread = reader_thread == blocked_thread;
      if (same_thread) {
        EXPECT_LT(took, kDeadline + kLate)
            << "the read ended " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
            << " ms after it began, its deadline " << kDeadline.count() << " ms";
      }
    }
    if (!same_thread) GTEST_SKIP() << "the reader never parked on the thread that then blocked";
  });
}

TEST_P(NetTest, ClosingAStreamWithAReadInFlightOrDataUnreadLosesNothingElse) {
  // Server-side close while the backend still receives for the stream (after a read that timed out, and with data
  // unread): the close returns, the peer sees the end of the stream, and the runtime carries on. Repeated, so a
  // receive completion addressed to a closed stream would hit a reused record.
  Runtime rt(config());
  const int kRounds = static_cast<int>(test::scaled(300, 30));
  rt.run([&] {
    auto l = listen("127.0.0.1:0", {.backlog = 256});
    ASSERT_TRUE(l);
    for (int i = 0; i < kRounds; i++) {
      auto c = dial(l->local_addr(), 10s);
      ASSERT_TRUE(c);
      auto s = l->accept(10s);
      ASSERT_TRUE(s);
      ASSERT_TRUE(c->write_all("hello", 5, 10s));
      char buf[8];
      auto r = s->read_full(buf, 5, 10s);
      ASSERT_TRUE(r) << r.ec.message();
      r = s->read(buf, sizeof buf, 1ms);  // nothing more: times out, the receive stays in flight
      EXPECT_EQ(r.ec, std::errc::timed_out);
      if (i % 2 == 1) {
        ASSERT_TRUE(c->write_all("unread", 6, 10s));  // arrives, is never read
        sleep_for(1ms);
      }
      s->close();
      r = c->read(buf, sizeof buf, 10s);
      EXPECT_TRUE(r.n == 0 || r.ec == std::errc::connection_reset) << r.ec.message();
    }
  });
}

TEST_P(NetTest, AReceiveArmedOnAnotherThreadIsCancelledByItsOwnerWhenTheStreamCloses) {
  // A read times out and leaves its receive armed on its thread's ring; the stream is then closed by a fiber on the
  // other thread. With deferred rings only that ring's owner may cancel there (the kernel refuses anyone else,
  // -EEXIST), so the close queues the cancellation and wakes the owner with a ring message (a kick). Each close must
  // return, the peer see the end of the stream, and the runtime carry on.
  Runtime rt(config(2));
  rt.run([&] {
    int crossed = 0;
    for (int round = 0; round < 50 && crossed < 5; round++) {
      std::vector<Stream> clients, servers;
      ASSERT_NO_FATAL_FAILURE(connect_loopback_pair(clients, servers));
      Stream* s = &servers[0];
      std::thread::id armed_on;
      auto reader = spawn([&] {
        armed_on = std::this_thread::get_id();
        char buf[8];
        auto r = s->read(buf, sizeof buf, 1ms);  // nothing comes: times out, the receive stays armed on this thread
        EXPECT_EQ(r.ec, std::errc::timed_out);
        armed_on = std::this_thread::get_id();  // where it woke; the receive was armed before the wait
      });
      reader.join();
      bool other = false;
      auto closer = spawn([&] {
        other = std::this_thread::get_id() != armed_on;
        s->close();
      });
      closer.join();
      if (other) crossed++;
      char buf[8];
      auto r = clients[0].read(buf, sizeof buf, 10s);
      EXPECT_TRUE(r.n == 0 || r.ec == std::errc::connection_reset) << r.ec.message();
    }
    if (crossed == 0) GTEST_SKIP() << "no close ran on another thread than its read";
    if (GetParam() == "uring_defer") {
      EXPECT_GT(netpoll::current_backend()->io_stats().kicks, 0u);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, NetTest, ::testing::Values("epoll", "uring", "uring_defer"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tern::net
