// Preemption marks (scheduler/park.h, preempt_point; the monitor sets them): a fiber that computes without switching
// for a whole monitor period yields at its next preempt point, so the fibers queued behind it on its only processor
// run. Asserted by what ran, never by times.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "runtime/sync/channel.h"
#include "scheduler/sched.h"
#include "tests/procs.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

// The loop runs until the other fiber has run, or for 5 s. Without the mark the other fiber is queued behind it on the
// one processor and cannot run before the loop ends by its time limit.
template <class Step>
void run_hog(Step step, bool& other_ran_during, uint64_t& preempted) {
  Runtime rt(test::procs(1));
  std::atomic<bool> other{false};
  rt.run([&] {
    auto h = spawn([&] { other.store(true); });
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (!other.load() && std::chrono::steady_clock::now() < until) step();
    other_ran_during = other.load();
    h.join();
    preempted = sched::Sched::current()->stats().preempted;
  });
}

TEST(Preempt, ABusyLoopThatCallsPreemptPointYieldsOnceMarked) {
  bool ran = false;
  uint64_t preempted = 0;
  run_hog([] { preempt_point(); }, ran, preempted);
  EXPECT_TRUE(ran) << "the queued fiber never ran during a 5 s loop";
  EXPECT_GE(preempted, 1u);
}

TEST(Preempt, ChannelOperationsArePreemptPoints) {
  bool ran = false;
  uint64_t preempted = 0;
  Channel<int>* ch = nullptr;
  Channel<int> c(1);
  ch = &c;
  run_hog(
      [ch] {
        ch->send(1);  // never waits: the buffer has room, and the receive below empties it
        (void)ch->recv();
      },
      ran, preempted);
  EXPECT_TRUE(ran);
  EXPECT_GE(preempted, 1u);
}

// Unmarked, a preempt point does not yield: a loop of them alone on a processor is not interrupted.
TEST(Preempt, UnmarkedItDoesNothing) {
  Runtime rt(test::procs(1));
  rt.run([&] {
    const uint64_t switches = sched::Sched::current()->stats().switches;
    for (int i = 0; i < 1000; i++) preempt_point();  // far less than a monitor period
    EXPECT_EQ(sched::Sched::current()->stats().switches, switches);
  });
}

}  // namespace
}  // namespace tern
