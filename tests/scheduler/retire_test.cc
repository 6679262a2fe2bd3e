// Shrinking while a P beyond the new count still runs a long fiber: the P is retiring but held, and retires only at
// its holder's next scheduling point. Until then its queue, runnext and timers must stay reachable by the other Ps
// (stealing, the monitor, rescue), and an idle M must not spin on timers it counts but cannot run.
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "runtime/go.h"
#include "runtime/runtime.h"
#include "scheduler/park.h"

namespace tern {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

template <class Pred>
bool spin_until(Pred pred, Clock::duration limit = std::chrono::seconds(5)) {
  const auto until = Clock::now() + limit;
  while (!pred()) {
    if (Clock::now() > until) return pred();
    std::this_thread::yield();
  }
  return true;
}

double cpu_seconds(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

TEST(Retire, WorkOfARetiringPHeldByALongFiberRunsElsewhere) {
  constexpr auto kSleep = milliseconds(5);
  constexpr auto kHold = milliseconds(300);  // the long fiber's run on the retiring P
  constexpr auto kBound = milliseconds(50);  // how late the sleeper and the queued fiber may run (well under kHold)
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);

  std::atomic<bool> want_shrink{false}, shrunk{false}, release_p0{false};
  std::atomic<int64_t> t_free{0};    // when P0 went idle (ns since the epoch of Clock)
  std::atomic<int64_t> t_queued{0};  // when the queued fiber ran
  std::atomic<int64_t> sleeper_due{0}, sleeper_woke{0};
  std::atomic<int> queued_p{-2}, sleeper_p{-2};
  double others_cpu = 0, wall = 0;  // CPU of every thread but the long fiber's, over its run
  std::atomic<bool> scenario_ran{false};
  auto now = [] { return Clock::now().time_since_epoch().count(); };

  std::thread resizer([&] {
    spin_until([&] { return want_shrink.load(); }, std::chrono::seconds(10));
    rt.set_procs(1);
    shrunk = true;
  });
  rt.run([&] {
    // Two spinners hold both Ps; the one on P1 runs the scenario, the one on P0 holds P0 until P1 is retiring.
    std::atomic<int> in{0};
    auto spinner = [&] {
      in.fetch_add(1);
      spin_until([&] { return in.load() == 2; });
      if (sched::current_p() != 1) {
        spin_until([&] { return release_p0.load(); }, std::chrono::seconds(10));
        t_free = now();
        return;
      }
      scenario_ran = true;
      // The sleeper runs here first (runnext, ahead of this fiber after the yield): its timer is on P1.
      go([&] {
        sleeper_due = now() + std::chrono::nanoseconds(kSleep).count();
        sleep_for(kSleep);
        sleeper_woke = now();
        sleeper_p = sched::current_p();
      });
      yield();
      want_shrink = true;
      spin_until([&] { return shrunk.load(); });
      // P1 is beyond procs() now, and this fiber holds it. A fiber queued here must not wait for it.
      go([&] {
        t_queued = now();
        queued_p = sched::current_p();
      });
      const double process0 = cpu_seconds(RUSAGE_SELF), mine0 = cpu_seconds(RUSAGE_THREAD);
      const auto start = Clock::now();
      release_p0 = true;
      while (Clock::now() - start < kHold) {
      }
      wall = std::chrono::duration<double>(Clock::now() - start).count();
      others_cpu = (cpu_seconds(RUSAGE_SELF) - process0) - (cpu_seconds(RUSAGE_THREAD) - mine0);
    };
    JoinHandle<void> a = spawn(spinner);
    JoinHandle<void> b = spawn(spinner);
    a.join();
    b.join();
    while (t_queued.load() == 0 || sleeper_woke.load() == 0) sleep_for(milliseconds(1));
  });
  resizer.join();
  ASSERT_TRUE(scenario_ran.load()) << "no spinner ran on P1";
  const auto late = [](int64_t ns) { return std::chrono::duration_cast<milliseconds>(std::chrono::nanoseconds(ns)); };
  EXPECT_LE(late(t_queued - t_free), kBound)
      << "the queued fiber waited for the long fiber (ran on P" << queued_p << ")";
  EXPECT_LE(late(sleeper_woke - sleeper_due), kBound)
      << "the sleeper's timer waited for the long fiber (ran on P" << sleeper_p << ")";
  // One core for the long fiber; the other M has nothing to do once the sleeper and the queued fiber ran. (Spinning,
  // it took a third of a core or more even on a loaded two-core machine.)
  EXPECT_LT(others_cpu, 0.25 * wall) << "an idle M spun beside the long fiber";
}

}  // namespace
}  // namespace tern
