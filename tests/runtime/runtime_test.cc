#include "runtime/runtime.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
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

// The address ranges of this process's mappings, from /proc/self/maps.
std::vector<std::pair<uintptr_t, uintptr_t>> mappings() {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream f("/proc/self/maps");
  std::string line;
  while (std::getline(f, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2) out.emplace_back(lo, hi);
  }
  return out;
}
size_t count_mapped(const std::vector<uintptr_t>& addrs) {
  const auto maps = mappings();
  size_t n = 0;
  for (uintptr_t a : addrs) {
    for (const auto& [lo, hi] : maps) {
      if (a >= lo && a < hi) {
        n++;
        break;
      }
    }
  }
  return n;
}

TEST(Runtime, ShutdownLeavesNoThreadsOrStacks) {
  // ThreadSanitizer starts a background thread of its own with the process's first thread: let that happen first.
  std::thread([] {}).join();
  int before = thread_count();
  // An address on each fiber's stack: after shutdown none of them may be mapped any more.
  std::mutex mu;
  std::vector<uintptr_t> stack_addrs;
  auto note_stack = [&] {
    volatile char here = 0;
    std::lock_guard lk(mu);
    stack_addrs.push_back(reinterpret_cast<uintptr_t>(&here));
  };
  constexpr int kParked = 200;
  {
    Runtime rt(procs(4));
    rt.run([&] {
      std::vector<JoinHandle<void>> hs;
      for (int i = 0; i < 1000; i++) {
        hs.push_back(spawn([&] {
          note_stack();
          sleep_for(std::chrono::microseconds(100));
        }));
      }
      for (auto& h : hs) h.join();
      // Fibers left parked forever: shutdown must still free their stacks.
      std::atomic<int> parked{0};
      for (int i = 0; i < kParked; i++) {
        go([&] {
          note_stack();
          parked.fetch_add(1);
          sleep_for(std::chrono::hours(1));
        });
      }
      while (parked.load() < kParked) sleep_for(std::chrono::microseconds(100));
    });
    EXPECT_GE(rt.stats().stacks.mapped, static_cast<uint64_t>(kParked));
    ASSERT_EQ(count_mapped(stack_addrs), stack_addrs.size()) << "the stacks are mapped while the runtime lives";
  }
  EXPECT_EQ(thread_count(), before);
  // A freed range can be mapped again by someone else (the allocator, a sanitizer) right away; a leak keeps them all.
  const size_t still = count_mapped(stack_addrs);
  EXPECT_LE(still * 20, stack_addrs.size())
      << still << " of " << stack_addrs.size() << " fiber stack addresses are still mapped after shutdown";
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
  EXPECT_LE(Config::default_procs(), affinity_cpus());
}

// A real cgroup v1 cpu controller: a child process moved into a cgroup of ours with a CPU quota computes its default
// processor count from it. Needs root and a writable v1 cpu hierarchy (a v2-only machine is covered by FakeCgroup).
class RealCgroupV1 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create a cgroup";
    // This process's place in the cpu hierarchy ("N:cpu,cpuacct:/path" or "N:cpu:/path").
    std::string path = "/";
    std::ifstream pc("/proc/self/cgroup");
    for (std::string line; std::getline(pc, line);) {
      auto a = line.find(':'), b = line.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) continue;
      const std::string ctl = "," + line.substr(a + 1, b - a - 1) + ",";
      if (ctl.find(",cpu,") != std::string::npos) path = line.substr(b + 1);
    }
    for (const char* mount : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct,cpu"}) {
      const std::string parent = std::string(mount) + (path == "/" ? "" : path);
      if (!std::filesystem::exists(parent + "/cpu.cfs_quota_us")) continue;
      const std::string dir = parent + "/tern-test-" + std::to_string(getpid());
      if (mkdir(dir.c_str(), 0755) == 0) {
        dir_ = dir;
        break;
      }
    }
    if (dir_.empty()) GTEST_SKIP() << "no writable cgroup v1 cpu hierarchy under /sys/fs/cgroup";
  }
  void TearDown() override {
    if (!dir_.empty()) {
      EXPECT_EQ(rmdir(dir_.c_str()), 0) << dir_ << ": " << std::strerror(errno);
    }
  }
  bool set_quota(long quota_us, long period_us) {
    std::ofstream p(dir_ + "/cpu.cfs_period_us");
    p << period_us << std::flush;
    std::ofstream q(dir_ + "/cpu.cfs_quota_us");
    q << quota_us << std::flush;
    return p.good() && q.good();
  }
  // Config::default_procs() as a child process moved into the cgroup computes it; negative on a failure.
  int default_procs_inside() {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      int v = -2;
      const int fd = open((dir_ + "/cgroup.procs").c_str(), O_WRONLY);
      const std::string me = std::to_string(getpid());
      if (fd >= 0 && write(fd, me.data(), me.size()) == static_cast<ssize_t>(me.size())) v = Config::default_procs();
      if (write(fds[1], &v, sizeof v) != sizeof v) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    int v = -3;
    if (pid < 0 || read(fds[0], &v, sizeof v) != sizeof v) v = -4;
    close(fds[0]);
    if (pid > 0) waitpid(pid, nullptr, 0);  // the cgroup is empty again once it has exited
    return v;
  }
  std::string dir_;
};

TEST_F(RealCgroupV1, DefaultProcsFollowsTheQuota) {
  ASSERT_TRUE(set_quota(50'000, 100'000));  // half a CPU: at least one processor
  EXPECT_EQ(default_procs_inside(), 1);
  ASSERT_TRUE(set_quota(250'000, 100'000));  // 2.5 CPUs: three processors, or fewer CPUs if that is all there is
  EXPECT_EQ(default_procs_inside(), std::min(affinity_cpus(), 3));
  ASSERT_TRUE(set_quota(-1, 100'000));  // no quota: every CPU this process may run on (unless an ancestor limits it)
  EXPECT_EQ(default_procs_inside(), Config::default_procs());
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
