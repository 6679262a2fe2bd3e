// Tests of tern::select (runtime/sync/select.h): default and timeout cases, fairness among ready cases, send and
// receive cases, and many concurrent selects that must neither lose nor duplicate a value.
#include "runtime/sync/select.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/wait_group.h"
#include "scheduler/timer.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace {

using tern::test::procs;
using tern::test::scaled;

using std::chrono::milliseconds;

TEST(Select, DefaultWhenNothingIsReady) {
  tern::Channel<int> a;
  tern::Channel<int> b(1);
  int ran = -1;
  int i = tern::select(tern::recv_case(a, [&](std::optional<int>) { ran = 0; }),
                       tern::recv_case(b, [&](std::optional<int>) { ran = 1; }), tern::default_case([&] { ran = 2; }));
  EXPECT_EQ(i, 2);
  EXPECT_EQ(ran, 2);
}

TEST(Select, ReadyCaseBeatsDefault) {
  tern::Channel<int> a;
  tern::Channel<int> b(1);
  b.try_send(42);
  std::optional<int> got;
  int i = tern::select(tern::recv_case(a, [&](std::optional<int> v) { got = v; }),
                       tern::recv_case(b, [&](std::optional<int> v) { got = v; }), tern::default_case());
  EXPECT_EQ(i, 1);
  EXPECT_EQ(got, 42);
  EXPECT_EQ(b.size(), 0u);
}

TEST(Select, TimeoutInFiber) {
  tern::Runtime rt(procs(1));
  rt.run([] {
    tern::Channel<int> a;
    bool timed_out = false;
    auto start = std::chrono::steady_clock::now();
    int i = tern::select(tern::recv_case(a, [](std::optional<int>) { FAIL() << "nothing was sent"; }),
                         tern::timeout_case(milliseconds(20), [&] { timed_out = true; }));
    EXPECT_EQ(i, 1);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(20));
    // The losing case was unlinked: a later send finds no stale receiver.
    EXPECT_FALSE(a.try_send(1));
  });
}

TEST(Select, TimeoutInPlainThread) {
  tern::Channel<int> a;
  auto start = std::chrono::steady_clock::now();
  int i = tern::select(tern::recv_case(a, [](std::optional<int>) {}), tern::timeout_case(milliseconds(10)));
  EXPECT_EQ(i, 1);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(10));
  EXPECT_FALSE(a.try_send(1));
}

TEST(Select, TimeoutAloneSleeps) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(tern::select(tern::timeout_case(milliseconds(5))), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(5));
  EXPECT_EQ(tern::select(tern::timeout_case(milliseconds(0))), 0);
}

TEST(Select, ZeroTimeoutPollsOnce) {
  tern::Channel<int> a(1);
  EXPECT_EQ(tern::select(tern::recv_case(a, [](std::optional<int>) {}), tern::timeout_case(milliseconds(0))), 1);
  a.try_send(3);
  EXPECT_EQ(tern::select(tern::recv_case(a, [](std::optional<int>) {}), tern::timeout_case(milliseconds(0))), 0);
}

// Go semantics: among ready cases the choice is uniform. With three always-ready cases each must get about a third.
TEST(Select, FairAmongReadyCases) {
  constexpr int kCases = 3;
  const int rounds = scaled(30000);
  tern::Channel<int> ch[kCases] = {tern::Channel<int>(1), tern::Channel<int>(1), tern::Channel<int>(1)};
  for (auto& c : ch) c.try_send(0);
  int count[kCases] = {};
  for (int r = 0; r < rounds; r++) {
    int i = tern::select(tern::recv_case(ch[0], [&](std::optional<int>) { ch[0].try_send(0); }),
                         tern::recv_case(ch[1], [&](std::optional<int>) { ch[1].try_send(0); }),
                         tern::recv_case(ch[2], [&](std::optional<int>) { ch[2].try_send(0); }));
    count[i]++;
  }
  // Binomial(rounds, 1/3): the standard deviation is about 0.27% of rounds at 30000; 5% is over 18 sigma away.
  for (int c = 0; c < kCases; c++) {
    EXPECT_NEAR(count[c], rounds / 3.0, rounds * 0.05) << "case " << c;
  }
}

TEST(Select, SendCaseToWaitingReceiver) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<int> out;
    tern::Channel<int> in;
    std::optional<int> got;
    auto h = tern::spawn([&] { got = out.recv(); });
    bool sent = false;
    int i =
        tern::select(tern::recv_case(in, [](std::optional<int>) {}), tern::send_case(out, 11, [&] { sent = true; }));
    EXPECT_EQ(i, 1);
    EXPECT_TRUE(sent);
    h.join();
    EXPECT_EQ(got, 11);
  });
}

TEST(Select, BlockedSelectWokenBySenderOrReceiver) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<int> in;
    tern::Channel<int> out;
    // Woken by a sender on the receive case.
    tern::go([&] {
      tern::sleep_for(milliseconds(2));
      in.send(5);
    });
    std::optional<int> got;
    int i = tern::select(tern::recv_case(in, [&](std::optional<int> v) { got = v; }), tern::send_case(out, 6));
    EXPECT_EQ(i, 0);
    EXPECT_EQ(got, 5);
    // Woken by a receiver on the send case.
    auto h = tern::spawn([&] {
      tern::sleep_for(milliseconds(2));
      return out.recv();
    });
    i = tern::select(tern::recv_case(in, [&](std::optional<int> v) { got = v; }), tern::send_case(out, 6));
    EXPECT_EQ(i, 1);
    EXPECT_EQ(h.join(), 6);
    // Neither channel keeps a stale node of the losing cases.
    EXPECT_FALSE(in.try_send(1));
    EXPECT_EQ(out.try_recv(), std::nullopt);
  });
}

TEST(Select, ClosedChannels) {
  tern::Channel<int> a;
  a.close();
  std::optional<int> got = 1;
  EXPECT_EQ(tern::select(tern::recv_case(a, [&](std::optional<int> v) { got = v; })), 0);
  EXPECT_EQ(got, std::nullopt);
  int sent = -1;
  EXPECT_EQ(tern::select(tern::send_case(a, 1, [&](bool ok) { sent = ok; }), tern::default_case()), 0);
  EXPECT_EQ(sent, 0);
  bool nullary_ran = false;
  EXPECT_EQ(tern::select(tern::send_case(a, 1, [&] { nullary_ran = true; })), 0);
  EXPECT_FALSE(nullary_ran);
}

TEST(Select, CloseWakesBlockedSelect) {
  tern::Runtime rt(procs(2));
  rt.run([] {
    tern::Channel<int> a;
    tern::Channel<int> b;
    tern::go([&] {
      tern::sleep_for(milliseconds(2));
      b.close();
    });
    std::optional<int> got = 1;
    int i = tern::select(tern::recv_case(a, [](std::optional<int>) {}),
                         tern::recv_case(b, [&](std::optional<int> v) { got = v; }));
    EXPECT_EQ(i, 1);
    EXPECT_EQ(got, std::nullopt);
  });
}

TEST(Select, SameChannelInTwoCases) {
  tern::Channel<int> a(1);
  int i = tern::select(tern::recv_case(a, [](std::optional<int>) {}), tern::send_case(a, 9));
  EXPECT_EQ(i, 1);  // the buffer was empty, so only the send could proceed
  EXPECT_EQ(a.try_recv(), 9);
}

TEST(Select, PlainThreadSelectWokenByFiber) {
  tern::Runtime rt(procs(2));
  tern::Channel<int> a;
  tern::Channel<int> b;
  rt.go([&] {
    tern::sleep_for(milliseconds(2));
    b.send(3);
  });
  std::optional<int> got;
  int i = tern::select(tern::recv_case(a, [](std::optional<int>) {}),
                       tern::recv_case(b, [&](std::optional<int> v) { got = v; }));
  EXPECT_EQ(i, 1);
  EXPECT_EQ(got, 3);
}

// Sends racing select timeouts: a value is either taken by the select or still with its sender, never lost.
TEST(Select, TimeoutRacingSendLosesNothing) {
  tern::Runtime rt(procs(2));
  const int rounds = scaled(2000);
  rt.run([&] {
    tern::Channel<int> ch;
    long received = 0;
    int timeouts = 0;
    tern::WaitGroup wg;
    wg.add(1);
    tern::go([&] {
      for (int i = 0; i < rounds; i++) {
        // Pauses around the select's timeout make sends land just before, at and after the deadline.
        if (i % 4 == 0) tern::sleep_for(std::chrono::microseconds(i % 3 * 4));
        ch.send(1);
      }
      ch.close();
      wg.done();
    });
    for (;;) {
      bool closed = false;
      tern::select(tern::recv_case(ch,
                                   [&](std::optional<int> v) {
                                     if (v) {
                                       received += *v;
                                     } else {
                                       closed = true;
                                     }
                                   }),
                   tern::timeout_case(std::chrono::microseconds(5), [&] { timeouts++; }));
      if (closed) break;
    }
    wg.wait();
    EXPECT_EQ(received, rounds);
    EXPECT_GT(timeouts, 0);  // or the race was not exercised
  });
}

// Many fibers on several Ps selecting over shared channels, on both the send and the receive side: every value is
// delivered exactly once.
TEST(Select, ManySelectorsNoLostOrDuplicatedValues) {
  tern::Runtime rt(procs(4));
  constexpr int kSenders = 6;
  constexpr int kReceivers = 6;
  const int per_sender = scaled(3000);
  rt.run([&] {
    tern::Channel<int> a;
    tern::Channel<int> b(8);
    tern::Channel<int> c;
    std::vector<std::atomic<int>> seen(kSenders * per_sender);
    tern::WaitGroup senders;
    tern::WaitGroup receivers;
    std::atomic<int> timeouts{0};
    for (int r = 0; r < kReceivers; r++) {
      receivers.add(1);
      tern::go([&] {
        int open = 3;
        bool a_open = true, b_open = true, c_open = true;
        auto take = [&](bool& is_open) {
          return [&](std::optional<int> v) {
            if (v) {
              seen[*v]++;
            } else if (is_open) {
              is_open = false;
              open--;
            }
          };
        };
        while (open > 0) {
          tern::select(tern::recv_case(a, take(a_open)), tern::recv_case(b, take(b_open)),
                       tern::recv_case(c, take(c_open)), tern::timeout_case(milliseconds(1), [&] { timeouts++; }));
        }
        receivers.done();
      });
    }
    for (int s = 0; s < kSenders; s++) {
      senders.add(1);
      tern::go([&, s] {
        for (int i = 0; i < per_sender; i++) {
          int v = s * per_sender + i;
          if (i % 4 == 0) {
            EXPECT_TRUE(c.send(v));  // plain sends mixed with selects on the same channel
          } else {
            int taken = tern::select(tern::send_case(a, v), tern::send_case(b, v), tern::send_case(c, v));
            EXPECT_GE(taken, 0);
          }
        }
        senders.done();
      });
    }
    senders.wait();
    a.close();
    b.close();
    c.close();
    receivers.wait();
    int bad = 0;
    for (auto& n : seen) bad += n.load() != 1;
    EXPECT_EQ(bad, 0);
  });
}

}  // namespace
