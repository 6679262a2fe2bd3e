// The soft RLIMIT_NOFILE raised to the hard limit when a runtime starts (runtime/fd_limit.h), and left alone when
// Config::raise_fd_limit (TERN_RAISE_FD_LIMIT) is off. tern-echo's end-to-end test holds 1,500 idle connections under
// a soft limit of 1,024 (tests/tools/echo_e2e_test.cc).
#include "runtime/fd_limit.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>

#include "runtime/config.h"
#include "runtime/runtime.h"

namespace {

// Sets the soft limit for the test's length and puts the limits back after it.
class FdLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    if (saved_.rlim_max != RLIM_INFINITY && saved_.rlim_max <= 64) GTEST_SKIP() << "the hard limit is too low to test";
  }
  void TearDown() override { setrlimit(RLIMIT_NOFILE, &saved_); }
  void set_soft(rlim_t soft) {
    rlimit rl = saved_;
    rl.rlim_cur = soft;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
  }
  static rlim_t soft_now() {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
  }
  rlimit saved_{};
};

TEST_F(FdLimitTest, ARuntimeRaisesTheSoftLimitToTheHardOne) {
  set_soft(64);
  {
    tern::Config cfg;
    cfg.procs = 1;
    tern::Runtime rt(cfg);
    EXPECT_EQ(soft_now(), saved_.rlim_max);
  }
  // And raise_fd_limit() says what it did.
  set_soft(64);
  tern::FdLimit fd = tern::raise_fd_limit();
  EXPECT_EQ(fd.error, 0);
  EXPECT_EQ(fd.soft_before, 64u);
  EXPECT_EQ(fd.soft, fd.hard);
  EXPECT_NE(fd.message().find("64 -> "), std::string::npos) << fd.message();
}

TEST_F(FdLimitTest, TurnedOffTheLimitIsLeftAlone) {
  set_soft(64);
  tern::Config cfg;
  cfg.procs = 1;
  cfg.raise_fd_limit = false;
  tern::Runtime rt(cfg);
  EXPECT_EQ(soft_now(), 64u);
}

TEST_F(FdLimitTest, TheEnvironmentTurnsItOffAndGarbageIsNamed) {
  setenv("TERN_RAISE_FD_LIMIT", "off", 1);
  auto c = tern::Config::from_env();
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_FALSE(c->raise_fd_limit);
  setenv("TERN_RAISE_FD_LIMIT", "sometimes", 1);
  c = tern::Config::from_env();
  unsetenv("TERN_RAISE_FD_LIMIT");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("TERN_RAISE_FD_LIMIT"), std::string::npos) << c.error().message();
  EXPECT_TRUE(tern::Config{}.raise_fd_limit);
  // --dry-run's JSON says what start will make the soft limit.
  set_soft(64);
  const std::string j = tern::Config{}.to_json();
  EXPECT_NE(j.find("\"soft\": 64"), std::string::npos) << j;
  EXPECT_NE(j.find("\"soft_at_start\": " + std::to_string(saved_.rlim_max)), std::string::npos) << j;
}

}  // namespace
