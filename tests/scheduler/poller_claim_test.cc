// New work while a P is idle goes to the M that holds the poller role (wakep claims it) rather than to a new M: an M
// blocked in the poller is idle already, and every extra M joins the rotation of Ms that park (with io_uring, each
// parked M is woken for the completions of the receives it armed).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "runtime/go.h"
#include "runtime/runtime.h"

namespace tern {
namespace {

using Clock = std::chrono::steady_clock;

void spin_for(std::chrono::microseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
  }
}

TEST(PollerClaim, WorkReadiedWhileAPIsIdleRunsOnThePollerM) {
  constexpr int kRounds = 20;
  Config cfg;
  cfg.procs = 2;
  Runtime rt(cfg);
  int on_poller_m = 0;
  rt.run([&] {
    // A timer keeps the poller role worth holding, as I/O waiters do in a server. It is an hour off, so that only a
    // wake, not the timer, ends the poller's wait in time. (Shutdown frees the fiber left sleeping.)
    go([] { sleep_for(std::chrono::hours(1)); });
    for (int i = 0; i < kRounds; i++) {
      // This fiber holds its P (it never parks); the other P goes idle and its M takes the poller role.
      const auto start = Clock::now();
      for (;;) {
        RuntimeStats st = rt.stats();
        if ((st.idle_procs >= 1 && st.polling) || Clock::now() - start > std::chrono::seconds(2)) break;
      }
      const RuntimeStats before = rt.stats();
      std::atomic<bool> ran{false};
      // Readied while a P is idle: wakep hands that P to the poller M, which must wake and run the child while this
      // fiber keeps its own P. Without the wake the child stays queued behind this fiber: it would run only once this
      // fiber stops spinning, after 2 s, a bound no wake on a loaded machine comes near.
      JoinHandle<void> child = spawn([&] { ran.store(true); });
      const auto until = Clock::now() + std::chrono::seconds(2);
      while (!ran.load() && Clock::now() < until) {
      }
      const bool ran_meanwhile = ran.load();
      child.join();
      ASSERT_TRUE(ran_meanwhile) << "round " << i << ": work readied while a P was idle did not run elsewhere";
      const RuntimeStats after = rt.stats();
      // The child ran on an M that existed already (the poller M: the only other one) and wakep claimed it.
      if (after.poller_claims > before.poller_claims && after.threads == before.threads) on_poller_m++;
      spin_for(std::chrono::milliseconds(2));
    }
  });
  // Not every round: under CPU contention the poller M may be between two polls (the role released for a moment) when
  // the child is readied, and then wakep starts an M as before. Before the claim there were none, and the first round
  // already started a third M.
  const RuntimeStats st = rt.stats();
  EXPECT_GE(on_poller_m, kRounds / 2) << "claims " << st.poller_claims << ", threads " << st.threads;
}

}  // namespace
}  // namespace tern
