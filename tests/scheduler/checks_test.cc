// The invariant checks (base/check.h): G status moves (set_gstatus), CheckedMutex::assert_held, TERN_CHECK itself.
#include <gtest/gtest.h>

#include <mutex>

#include "base/check.h"
#include "base/checked_mutex.h"
#include "scheduler/g.h"

namespace tern::sched {
namespace {

TEST(GStatusMoves, TheLegalOnesAndNoOthers) {
  using S = GStatus;
  const S all[] = {S::kIdle, S::kRunnable, S::kRunning, S::kWaiting, S::kDead};
  // from -> to, as scheduler/g.h lists them.
  auto legal = [](S from, S to) {
    return (from == S::kIdle && to == S::kRunnable) || (from == S::kRunnable && to == S::kRunning) ||
           (from == S::kRunning && (to == S::kRunnable || to == S::kWaiting || to == S::kDead)) ||
           (from == S::kWaiting && to == S::kRunnable) || (from == S::kDead && to == S::kIdle) ||
           (from == S::kIdle && to == S::kIdle);
  };
  int allowed = 0;
  for (S from : all) {
    for (S to : all) {
      EXPECT_EQ(gstatus_move_ok(from, to), legal(from, to))
          << "from " << static_cast<int>(from) << " to " << static_cast<int>(to);
      allowed += gstatus_move_ok(from, to);
    }
  }
  EXPECT_EQ(allowed, 8);
  // The double ready that invariant 1 forbids: a queued fiber readied again.
  EXPECT_FALSE(gstatus_move_ok(S::kRunnable, S::kRunnable));
}

TEST(CheckDeathTest, TernCheckAbortsWithTheConditionAndPlace) {
  int n = -1;
  EXPECT_DEATH(TERN_CHECK(n >= 0), "tern: check failed: n >= 0 at .*checks_test.cc");
}

#if TERN_DCHECK_IS_ON
TEST(CheckDeathTest, AnIllegalStatusMoveAborts) {
  G g;
  set_gstatus(&g, GStatus::kRunnable);  // kIdle -> kRunnable: fine
  EXPECT_DEATH(set_gstatus(&g, GStatus::kRunnable), "gstatus_move_ok");
}

TEST(CheckDeathTest, AssertHeldAbortsWhenTheThreadDoesNotHoldTheMutex) {
  CheckedMutex mu;
  {
    std::lock_guard lk(mu);
    mu.assert_held();  // held: fine
  }
  EXPECT_DEATH(mu.assert_held(), "check failed");
}
#else
TEST(CheckTest, DCheckIsNotEvaluatedInRelease) {
  int evaluated = 0;
  TERN_DCHECK(++evaluated > 0);
  EXPECT_EQ(evaluated, 0);
}
#endif

}  // namespace
}  // namespace tern::sched
