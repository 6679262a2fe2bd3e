// tests/runtime/config_test.cc: Config: flag parsers, the environment (TERN_*) and its errors, default_procs.
#include "runtime/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "runtime/cgroup.h"

namespace tern {
namespace {

TEST(Config, ParsesProcsAndSizes) {
  EXPECT_EQ(*parse_procs("auto"), 0);
  EXPECT_EQ(*parse_procs("3"), 3);
  EXPECT_FALSE(parse_procs("-1"));
  EXPECT_FALSE(parse_procs("two"));
  EXPECT_FALSE(parse_procs("100000"));
  EXPECT_EQ(*parse_size("64k"), 65536u);
  EXPECT_EQ(*parse_size("1M"), 1u << 20);
  EXPECT_FALSE(parse_size("12q"));
  EXPECT_FALSE(parse_size(""));
}

TEST(Config, FromEnvRejectsBadValuesClearly) {
  setenv("TERN_PROCS", "lots", 1);
  auto r = Config::from_env();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("TERN_PROCS"), std::string::npos);
  setenv("TERN_PROCS", "3", 1);
  setenv("TERN_STACK_SIZE", "128k", 1);
  setenv("TERN_POLLER", "epoll", 1);
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->procs, 3);
  EXPECT_EQ(r->stack_size, 128u << 10);
  EXPECT_EQ(r->poller, "epoll");
  EXPECT_TRUE(r->uring_park);
  setenv("TERN_URING_PARK", "off", 1);
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->uring_park);
  EXPECT_NE(r->to_json().find("\"uring_park\": false"), std::string::npos) << r->to_json();
  setenv("TERN_URING_PARK", "maybe", 1);
  r = Config::from_env();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("TERN_URING_PARK"), std::string::npos);
  unsetenv("TERN_URING_PARK");
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(r->uring_defer);  // off by default: netpoll/uring_poller.h, "Deferred rings"
  setenv("TERN_URING_DEFER", "on", 1);
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->uring_defer);
  EXPECT_NE(r->to_json().find("\"uring_defer\": true"), std::string::npos) << r->to_json();
  setenv("TERN_URING_DEFER", "sometimes", 1);
  r = Config::from_env();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("TERN_URING_DEFER"), std::string::npos);
  unsetenv("TERN_URING_DEFER");
  setenv("TERN_POLLER", "kqueue", 1);
  EXPECT_FALSE(Config::from_env());
  unsetenv("TERN_PROCS");
  unsetenv("TERN_STACK_SIZE");
  unsetenv("TERN_POLLER");
  EXPECT_GE(Config::default_procs(), 1);
  EXPECT_LE(Config::default_procs(), affinity_cpus());
}

}  // namespace
}  // namespace tern
