// tern::signals (runtime/signals.h): real signals sent to this process reach every subscription's channel, in a
// fiber or a plain thread; a full channel loses the signal without holding up the others; the last subscription's
// end restores the earlier disposition; signals that cannot be delivered to a channel are refused with a reason.
#include "runtime/signals.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/select.h"
#include "tests/procs.h"

namespace {

using namespace std::chrono_literals;

// The next signal on `ch` within 10 s (a plain thread blocks), or nullopt.
std::optional<int> recv_within(tern::Channel<int>& ch, std::chrono::milliseconds limit = 10s) {
  std::optional<int> got;
  tern::select(tern::recv_case(ch, [&](std::optional<int> v) { got = v; }), tern::timeout_case(limit));
  return got;
}

TEST(Signals, AFiberReceivesASignalSentToTheProcess) {
  auto sub = tern::signals({SIGUSR1, SIGTERM});
  ASSERT_TRUE(sub) << sub.error().message();
  tern::Runtime rt(tern::test::procs(2));
  std::optional<int> first, second;
  rt.run([&] {
    kill(getpid(), SIGTERM);  // delivered to the channel: the process is not terminated
    first = recv_within((*sub)->channel());
    kill(getpid(), SIGUSR1);
    second = (*sub)->recv();
  });
  EXPECT_EQ(first, SIGTERM);
  EXPECT_EQ(second, SIGUSR1);
}

TEST(Signals, EverySubscriptionGetsItAndAFullOneDoesNotHoldUpTheOthers) {
  auto small = tern::signals({SIGUSR2}, 1);
  auto roomy = tern::signals({SIGUSR2}, 16);
  ASSERT_TRUE(small && roomy);
  for (int i = 0; i < 3; i++) {
    kill(getpid(), SIGUSR2);
    // One at a time: signals of one number pending together merge in the kernel.
    ASSERT_EQ(recv_within((*roomy)->channel()), SIGUSR2) << "signal " << i;
  }
  EXPECT_EQ((*small)->channel().size(), 1u);  // the first; the later two found it full and were dropped
  EXPECT_EQ(recv_within((*small)->channel()), SIGUSR2);
  EXPECT_EQ(recv_within((*small)->channel(), 100ms), std::nullopt);
}

std::atomic<int> g_own_handler_calls{0};

TEST(Signals, TheLastSubscriptionsEndRestoresTheEarlierDisposition) {
  struct sigaction own {};
  own.sa_handler = [](int) { g_own_handler_calls.fetch_add(1); };
  struct sigaction before {};
  ASSERT_EQ(sigaction(SIGUSR1, &own, &before), 0);
  {
    auto a = tern::signals({SIGUSR1});
    auto b = tern::signals({SIGUSR1});
    ASSERT_TRUE(a && b);
    kill(getpid(), SIGUSR1);
    EXPECT_EQ(recv_within((*a)->channel()), SIGUSR1);
    (*a)->reset();
    EXPECT_EQ((*a)->recv(), std::nullopt);  // closed
    kill(getpid(), SIGUSR1);                // b still holds the signal
    EXPECT_EQ(recv_within((*b)->channel()), SIGUSR1);
    EXPECT_EQ(g_own_handler_calls.load(), 0);
  }
  kill(getpid(), SIGUSR1);  // both gone: the program's own handler again
  for (int i = 0; i < 1000 && g_own_handler_calls.load() == 0; i++) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(g_own_handler_calls.load(), 1);
  sigaction(SIGUSR1, &before, nullptr);
}

TEST(Signals, SignalsThatCannotReachAChannelAreRefusedWithTheReason) {
  auto why = [](std::initializer_list<int> sigs, size_t cap = 8) {
    auto r = tern::signals(sigs, cap);
    return r ? std::string("accepted") : r.error().message();
  };
  EXPECT_NE(why({SIGKILL}).find("cannot be caught"), std::string::npos);
  EXPECT_NE(why({SIGSTOP}).find("cannot be caught"), std::string::npos);
  EXPECT_NE(why({SIGSEGV}).find("synchronous fault"), std::string::npos);
  EXPECT_NE(why({SIGBUS}).find("synchronous fault"), std::string::npos);
  EXPECT_NE(why({SIGURG}).find("stall detector"), std::string::npos);
  EXPECT_NE(why({0}).find("no signal 0"), std::string::npos);
  EXPECT_NE(why({SIGRTMAX + 1}).find("no signal"), std::string::npos);
  EXPECT_NE(why({}).find("no signal given"), std::string::npos);
  EXPECT_NE(why({SIGUSR1}, 0).find("at least one"), std::string::npos);
  // A refused list changes nothing: SIGUSR1 before the bad one keeps its disposition.
  struct sigaction now {};
  sigaction(SIGUSR1, nullptr, &now);
  const auto handler_before = now.sa_handler;
  EXPECT_NE(why({SIGUSR1, SIGKILL}), "accepted");
  sigaction(SIGUSR1, nullptr, &now);
  EXPECT_EQ(now.sa_handler, handler_before);
}

}  // namespace
