// tests/runtime/cgroup_test.cc: the CPU quota from cgroups: a real cgroup v1 cpu controller, and fake v1/v2 trees.
#include "runtime/cgroup.h"

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

#include "runtime/config.h"
#include "runtime/go.h"
#include "tests/procs.h"
#include "tests/scale.h"

namespace tern {
namespace {

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
