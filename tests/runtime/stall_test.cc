// The stall detector (TERN_STALL_MS; scheduler/stall.cc, runtime/debug/stall_report.cc): a fiber that runs past the
// threshold without a switch is reported once, with its id and a backtrace that names the function it is in.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"
#include "scheduler/sched.h"
#include "tests/procs.h"

namespace tern {
namespace {

using namespace std::chrono_literals;

std::atomic<uint64_t> g_sink{0};

// Named in the report: noinline, and not static, so that its name is in the symbol table as well as the debug info.
[[gnu::noinline]] void stall_test_busy_loop(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  uint64_t x = 1;
  while (std::chrono::steady_clock::now() < until) x = x * 6364136223846793005ull + 1;
  g_sink.store(x);
}

TEST(Stall, ABusyLoopIsReportedOnceWithItsFunction) {
  Config c = test::procs(1);
  c.stall_ms = 50;
  uint64_t id = 0, stalls = 0;
  testing::internal::CaptureStderr();
  {
    Runtime rt(c);
    rt.run([&] {
      id = sched::current_id();
      stall_test_busy_loop(300ms);
      stalls = sched::Sched::current()->stats().stalls;
    });
  }  // the monitor, which prints the report after looking up the names (slow the first time), has stopped
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(stalls, 1u) << err;  // one report for one run, however long it lasts
  EXPECT_NE(err.find("tern: stall: fiber " + std::to_string(id) + " has run"), std::string::npos) << err;
  EXPECT_NE(err.find("stall_test_busy_loop"), std::string::npos) << err;
}

// A fiber that switches now and then is not reported, however long it runs in all.
TEST(Stall, AFiberThatSwitchesIsNotReported) {
  Config c = test::procs(1);
  c.stall_ms = 50;
  Runtime rt(c);
  uint64_t stalls = 1;
  rt.run([&] {
    for (int i = 0; i < 20; i++) {
      stall_test_busy_loop(10ms);
      yield();
    }
    stalls = sched::Sched::current()->stats().stalls;
  });
  EXPECT_EQ(stalls, 0u);
}

}  // namespace
}  // namespace tern
