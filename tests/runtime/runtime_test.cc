#include "runtime/runtime.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/cgroup.h"
#include "runtime/config.h"
#include "runtime/go.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace tern {
namespace {

using tern::test::procs;

int thread_count() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

TEST(Runtime, RunReturnsWhenMainReturns) {
  Runtime rt(procs(2));
  int v = 0;
  rt.run([&] {
    auto h = spawn([] { return 41; });
    v = h.join() + 1;
  });
  EXPECT_EQ(v, 42);
  EXPECT_EQ(rt.procs(), 2);
}

TEST(Runtime, CreateReportsAnUnusableConfigurationAsAValue) {
  Config bad = procs(1);
  bad.poller = "kqueue";
  auto r = Runtime::create(bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("kqueue"), std::string::npos) << r.error();
  auto ok = Runtime::create(procs(1));
  ASSERT_TRUE(ok) << ok.error();
  int v = 0;
  (*ok)->run([&] { v = 1; });
  EXPECT_EQ(v, 1);
}

TEST(Runtime, ShutdownLeavesNoThreadsOrStacks) {
  // ThreadSanitizer starts a background thread of its own with the process's first thread: let that happen first.
  std::thread([] {}).join();
  int before = thread_count();
  {
    Runtime rt(procs(4));
    rt.run([] {
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 1000; i++) hs.push_back(spawn([] { sleep_for(std::chrono::microseconds(100)); }));
      for (auto& h : hs) h.join();
      // A fiber left parked forever: shutdown must still free its stack.
      go([] { sleep_for(std::chrono::hours(1)); });
    });
    EXPECT_GT(rt.stats().stacks.mapped, 0u);
  }
  EXPECT_EQ(thread_count(), before);
}

TEST(Runtime, SeveralRuntimesAtOnce) {
  Runtime a(procs(2)), b(procs(1));
  std::atomic<int> in_a{0}, in_b{0};
  std::thread ta([&] {
    a.run([&] {
      for (int i = 0; i < 1000; i++) go([&] { in_a++; });
      while (in_a.load() < 1000) yield();
      EXPECT_EQ(sched::Sched::current(), &a.scheduler());
    });
  });
  std::thread tb([&] {
    b.run([&] {
      for (int i = 0; i < 1000; i++) go([&] { in_b++; });
      while (in_b.load() < 1000) yield();
      EXPECT_EQ(sched::Sched::current(), &b.scheduler());
    });
  });
  ta.join();
  tb.join();
  EXPECT_EQ(in_a.load(), 1000);
  EXPECT_EQ(in_b.load(), 1000);
}

TEST(Runtime, GoFromOutsideThreads) {
  Runtime rt(procs(2));
  std::atomic<int> ran{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; t++) {
    ts.emplace_back([&] {
      for (int i = 0; i < 2500; i++) rt.go([&] { ran.fetch_add(1); });
    });
  }
  for (auto& t : ts) t.join();
  rt.run([&] {
    while (ran.load() < 10000) sleep_for(std::chrono::microseconds(50));
  });
  EXPECT_EQ(ran.load(), 10000);
}

TEST(Runtime, JoinRethrowsTheFibersException) {
  Runtime rt(procs(2));
  rt.run([] {
    auto h = spawn([]() -> int { throw std::runtime_error("boom"); });
    EXPECT_THROW(
        {
          try {
            h.join();
          } catch (const std::runtime_error& e) {
            EXPECT_STREQ(e.what(), "boom");
            throw;
          }
        },
        std::runtime_error);
  });
  // From a plain thread too.
  auto h = spawn(rt, [] { return 7; });
  EXPECT_EQ(h.join(), 7);
}

TEST(RuntimeDeathTest, UncaughtExceptionNamesTheFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Runtime rt(procs(1));
        rt.run([] {
          go([] { throw std::logic_error("lost?"); });
          sleep_for(std::chrono::seconds(5));
        });
      },
      "fiber [0-9]+ terminated by an uncaught exception: lost\\?");
}

int recurse(int depth) {
  volatile char buf[1024];
  buf[0] = static_cast<char>(depth);
  return depth > 1'000'000 ? buf[0] : recurse(depth + 1) + buf[0];
}

TEST(RuntimeDeathTest, StackOverflowIsReportedNotSilent) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Config c = procs(1);
        c.stack_size = 64 << 10;
        Runtime rt(c);
        rt.run([] { recurse(0); });
      },
      "stack.overflow");
}

TEST(Runtime, SmallStacksAndManyFibers) {
  Config c = procs(2);
  c.stack_size = 16 << 10;
  Runtime rt(c);
  const int64_t n = test::scaled(100'000, 5'000);
  std::atomic<int64_t> ran{0};
  rt.run([&] {
    for (int64_t i = 0; i < n; i++) go([&] { ran.fetch_add(1, std::memory_order_relaxed); });
    while (ran.load() < n) sleep_for(std::chrono::microseconds(100));
    // A fiber counts as finished only once it has switched out, after its body returned: the last ones may still be
    // on an M the OS preempted right after their increment. Wait for their exits (bounded, so a lost one fails).
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (rt.stats().finished < static_cast<uint64_t>(n) && std::chrono::steady_clock::now() < until) {
      sleep_for(std::chrono::microseconds(100));
    }
  });
  auto st = rt.stats();
  EXPECT_GE(st.finished, static_cast<uint64_t>(n)) << "every fiber but main has finished";
  EXPECT_GE(st.finished + 1, st.spawned) << "every fiber but main (which may still be exiting) has finished";
}

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
  EXPECT_NE(r.error().find("TERN_PROCS"), std::string::npos);
  setenv("TERN_PROCS", "3", 1);
  setenv("TERN_STACK_SIZE", "128k", 1);
  setenv("TERN_POLLER", "epoll", 1);
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->procs, 3);
  EXPECT_EQ(r->stack_size, 128u << 10);
  EXPECT_EQ(r->poller, "epoll");
  EXPECT_TRUE(r->uring_park);
  setenv("TERN_URING_PARK", "off", 1);
  r = Config::from_env();
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->uring_park);
  EXPECT_NE(r->to_json().find("\"uring_park\": false"), std::string::npos) << r->to_json();
  setenv("TERN_URING_PARK", "maybe", 1);
  r = Config::from_env();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("TERN_URING_PARK"), std::string::npos);
  unsetenv("TERN_URING_PARK");
  setenv("TERN_POLLER", "kqueue", 1);
  EXPECT_FALSE(Config::from_env());
  unsetenv("TERN_PROCS");
  unsetenv("TERN_STACK_SIZE");
  unsetenv("TERN_POLLER");
  EXPECT_GE(Config::default_procs(), 1);
}

class FakeCgroup : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = std::filesystem::temp_directory_path() / ("tern-cg-" + std::to_string(getpid()));
    std::filesystem::create_directories(root_);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  void write(const std::string& rel, const std::string& text) {
    auto p = root_ / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
  }
  std::filesystem::path root_;
};

TEST_F(FakeCgroup, V2QuotaTightestAncestorWins) {
  write("proc_cgroup", "0::/a/b\n");
  write("fs/cpu.max", "max 100000\n");
  write("fs/a/cpu.max", "150000 100000\n");
  write("fs/a/b/cpu.max", "max 100000\n");
  auto q = cgroup_cpu_quota((root_ / "fs").string(), (root_ / "proc_cgroup").string());
  ASSERT_TRUE(q);
  EXPECT_DOUBLE_EQ(*q, 1.5);
}

TEST_F(FakeCgroup, V1Quota) {
  write("proc_cgroup", "4:cpu,cpuacct:/job\n3:memory:/job\n");
  write("fs/cpu,cpuacct/job/cpu.cfs_quota_us", "250000\n");
  write("fs/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  auto q = cgroup_cpu_quota((root_ / "fs").string(), (root_ / "proc_cgroup").string());
  ASSERT_TRUE(q);
  EXPECT_DOUBLE_EQ(*q, 2.5);
}

TEST_F(FakeCgroup, MissingOrUnlimitedMeansNoQuota) {
  write("proc_cgroup", "4:cpu,cpuacct:/job\n");
  write("fs/cpu,cpuacct/job/cpu.cfs_quota_us", "-1\n");
  write("fs/cpu,cpuacct/job/cpu.cfs_period_us", "100000\n");
  EXPECT_FALSE(cgroup_cpu_quota((root_ / "fs").string(), (root_ / "proc_cgroup").string()));
  EXPECT_FALSE(cgroup_cpu_quota((root_ / "nowhere").string(), (root_ / "none").string()));
  write("proc_cgroup2", "0::/x\n");
  write("fs2/x/cpu.max", "garbage\n");
  EXPECT_FALSE(cgroup_cpu_quota((root_ / "fs2").string(), (root_ / "proc_cgroup2").string()));
}

}  // namespace
}  // namespace tern
