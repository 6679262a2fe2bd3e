// tests/runtime/cgroup_test.cc: CPU-limit discovery: CPU lists, reason names, this machine, a real cgroup v1.
#include "runtime/cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/config.h"

namespace tern {
namespace {

std::string describe(const CpuLimits& l) {
  std::string out = "quota_ok=" + std::to_string(l.quota_ok) + " quota=" + std::to_string(l.quota_cores) +
                    " source=" + l.quota_source + " cpuset=" + std::to_string(l.cpuset_cpus) + " errors:";
  for (const auto& e : l.errors) out += std::string(" [") + e.reason + "] " + e.message;
  return out;
}

TEST(CpuList, Counts) {
  struct {
    const char* text;
    int cpus;  // -1: an error with `reason`
    const char* reason;
  } const cases[] = {
      {"0-3,5,7-8", 7, ""},
      {"0-3,5,7-8\n", 7, ""},
      {"0", 1, ""},
      {"0,1", 2, ""},
      {"0-3,2-5", 6, ""},  // overlaps count once
      {"8191", 1, ""},
      {"0-8191", 8192, ""},
      {"", -1, "garbage"},
      {"\n", -1, "garbage"},
      {"a", -1, "garbage"},
      {"3-1", -1, "garbage"},
      {"-1", -1, "garbage"},
      {"0-", -1, "garbage"},
      {"0--1", -1, "negative"},
      {"0,,1", -1, "garbage"},
      {"0 1", -1, "garbage"},
      {"0-7:2/4", -1, "garbage"},  // the kernel writes no stride syntax in these files
      {"1.5", -1, "garbage"},
      {"nan", -1, "garbage"},
      {"8192", -1, "overflow"},
      {"0-99999999", -1, "overflow"},
      {"99999999999999999999", -1, "overflow"},
  };
  for (const auto& c : cases) {
    const Result<int> r = count_cpu_list(c.text);
    if (c.cpus >= 0) {
      ASSERT_TRUE(r) << c.text << ": " << r.error().message();
      EXPECT_EQ(*r, c.cpus) << c.text;
    } else {
      ASSERT_FALSE(r) << c.text << " gave " << *r;
      EXPECT_STREQ(cgroup_reason_name(r.error().code()), c.reason) << c.text << ": " << r.error().message();
    }
  }
}

TEST(CgroupReason, StableShortNames) {
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::missing), "missing");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::unreadable), "unreadable");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::garbage), "garbage");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::negative), "negative");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::overflow), "overflow");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::zero_quota), "zero_quota");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::zero_period), "zero_period");
  EXPECT_STREQ(cgroup_reason_name(CgroupErrc::removed), "removed");
  EXPECT_STREQ(cgroup_reason_name(static_cast<CgroupErrc>(99)), "unknown");
  EXPECT_STREQ(cgroup_reason_name(std::make_error_code(std::errc::io_error)), "unreadable");
  const Error e(CgroupErrc::zero_period, "x: period is 0");
  EXPECT_TRUE(e == CgroupErrc::zero_period);
  EXPECT_STREQ(e.code().category().name(), "cgroup");
  EXPECT_STREQ(cgroup_version_name(CgroupVersion::v2), "v2");
}

// This machine's own cgroups: whatever they hold, a reading never crashes and its numbers are sane.
TEST(CgroupReal, ReadsThisMachine) {
  CgroupDiscovery d;
  for (int i = 0; i < 3; i++) {
    const CpuLimits l = d.cpu_limits();
    EXPECT_GE(l.cpus, 1) << describe(l);
    EXPECT_LE(l.cpus, affinity_cpus());
    if (l.has_quota()) {
      EXPECT_GT(l.quota_cores, 0);
    }
    if (auto t = d.throttle()) {
      EXPECT_LE(t->throttled_periods, t->periods);
    }
  }
}

// A real cgroup v1 cpu controller: child processes moved into cgroups of ours read the quota there. Needs root and a
// writable v1 cpu hierarchy (a v2-only machine is covered by the fixtures).
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
        home_ = parent;
        dir_ = dir;
        break;
      }
    }
    if (dir_.empty()) GTEST_SKIP() << "no writable cgroup v1 cpu hierarchy under /sys/fs/cgroup";
  }
  void TearDown() override {
    // Whatever failed: move any process left in our cgroups back home, then remove them, the child first.
    for (const std::string& d : {child_, dir_}) {
      if (d.empty()) continue;
      std::ifstream procs(d + "/cgroup.procs");
      for (std::string pid; std::getline(procs, pid);) write_file(home_ + "/cgroup.procs", pid);
      EXPECT_EQ(rmdir(d.c_str()), 0) << d << ": " << std::strerror(errno);
    }
  }
  static bool write_file(const std::string& path, const std::string& text) {
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
  }
  static bool set_quota(const std::string& dir, long quota_us, long period_us) {
    return write_file(dir + "/cpu.cfs_period_us", std::to_string(period_us)) &&
           write_file(dir + "/cpu.cfs_quota_us", std::to_string(quota_us));
  }
  bool make_child() {
    child_ = dir_ + "/child";
    if (mkdir(child_.c_str(), 0755) == 0) return true;
    child_.clear();
    return false;
  }

  // What a child process moved into `cgroup` finds there.
  struct Inside {
    int status = -1;  // 0 ok; negative: the step that failed
    int default_procs = 0;
    int quota_ok = 0;
    double quota_cores = 0;
    char source[512] = {};
  };
  static Inside read_inside(const std::string& cgroup) {
    Inside in;
    int fds[2];
    if (pipe(fds) != 0) return in;
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      Inside v;
      v.status = -2;
      if (write_file(cgroup + "/cgroup.procs", std::to_string(getpid()))) {
        const CpuLimits l = CgroupDiscovery().cpu_limits();
        v.status = 0;
        v.quota_ok = l.quota_ok;
        v.quota_cores = l.quota_cores;
        std::snprintf(v.source, sizeof v.source, "%s", l.quota_source.c_str());
        v.default_procs = Config::default_procs();
      }
      if (::write(fds[1], &v, sizeof v) != sizeof v) _exit(1);
      _exit(0);
    }
    close(fds[1]);
    if (pid < 0 || read(fds[0], &in, sizeof in) != sizeof in) in.status = -3;
    close(fds[0]);
    if (pid > 0) waitpid(pid, nullptr, 0);  // the cgroup is empty again once it has exited
    return in;
  }

  std::string home_, dir_, child_;
};

TEST_F(RealCgroupV1, DefaultProcsFollowsTheQuota) {
  ASSERT_TRUE(set_quota(dir_, 50'000, 100'000));  // half a CPU: at least one processor
  Inside in = read_inside(dir_);
  ASSERT_EQ(in.status, 0);
  EXPECT_DOUBLE_EQ(in.quota_cores, 0.5);
  EXPECT_EQ(in.default_procs, 1);
  ASSERT_TRUE(set_quota(dir_, 250'000, 100'000));  // 2.5 CPUs: three processors, or fewer CPUs if that is all
  in = read_inside(dir_);
  ASSERT_EQ(in.status, 0);
  EXPECT_EQ(in.default_procs, std::min(affinity_cpus(), 3));
  ASSERT_TRUE(set_quota(dir_, -1, 100'000));  // no quota: every CPU this process may run on (unless an ancestor limits)
  in = read_inside(dir_);
  ASSERT_EQ(in.status, 0);
  EXPECT_EQ(in.default_procs, Config::default_procs());
}

// Issue 15's measured defect: a 0.5-core quota on the parent of the process's cgroup and none on its own gave 2.
TEST_F(RealCgroupV1, QuotaOnTheParentBinds) {
  ASSERT_TRUE(make_child()) << std::strerror(errno);
  ASSERT_TRUE(set_quota(dir_, 50'000, 100'000));
  const Inside in = read_inside(child_);
  ASSERT_EQ(in.status, 0);
  EXPECT_TRUE(in.quota_ok);
  EXPECT_DOUBLE_EQ(in.quota_cores, 0.5);
  EXPECT_EQ(std::string(in.source), dir_ + "/cpu.cfs_quota_us");
  EXPECT_EQ(in.default_procs, 1);
}

}  // namespace
}  // namespace tern
