// tests/support/cgroup.h: cgroup v1 directories of a test's own, under the ones this process runs in: a cpu one
// (CpuCgroup) for tests of discovery and the controller on the real cgroup filesystem, and a memory one with a hard
// limit (MemoryCgroup) for a server run under memory pressure. Needs root and a writable v1 cpu hierarchy; elsewhere
// skip_reason() says why, and the test skips with it (a v2-only machine is covered by the fixture trees).
//
//   test::CpuCgroup cg("tern-ctl-test");
//   if (!cg.skip_reason().empty()) GTEST_SKIP() << cg.skip_reason();
//   ASSERT_TRUE(cg.set_quota(cg.dir(), 50'000));      // half a CPU
//   ASSERT_TRUE(cg.join(cg.dir()));                   // this process moves in; the destructor moves it back
//
// The destructor moves every process still in the directory (and its child) back to where this one started, then
// removes them, child first; a directory that cannot be removed fails the test.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace tern::test {

// This process's path in the v1 hierarchy that holds `controller` ("/" when none names it), from /proc/self/cgroup's
// "N:cpu,cpuacct:/path" lines.
inline std::string own_cgroup_path(const std::string& controller) {
  std::string path = "/";
  std::ifstream pc("/proc/self/cgroup");
  for (std::string line; std::getline(pc, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string ctl = "," + line.substr(a + 1, b - a - 1) + ",";
    if (ctl.find("," + controller + ",") != std::string::npos) path = line.substr(b + 1);
  }
  return path;
}

class CpuCgroup {
 public:
  explicit CpuCgroup(const std::string& prefix) {
    if (geteuid() != 0) {
      skip_ = "needs root to create a cgroup";
      return;
    }
    const std::string path = own_cgroup_path("cpu");
    for (const char* mount : {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct,cpu"}) {
      const std::string home = std::string(mount) + (path == "/" ? "" : path);
      if (!std::filesystem::exists(home + "/cpu.cfs_quota_us")) continue;
      const std::string dir = home + "/" + prefix + "-" + std::to_string(getpid());
      if (mkdir(dir.c_str(), 0755) == 0) {
        home_ = home;
        dir_ = dir;
        return;
      }
    }
    skip_ = "no writable cgroup v1 cpu hierarchy under /sys/fs/cgroup";
  }
  ~CpuCgroup() {
    for (const std::string& d : {child_, dir_}) {
      if (d.empty()) continue;
      std::ifstream procs(d + "/cgroup.procs");
      for (std::string pid; std::getline(procs, pid);) write_file(home_ + "/cgroup.procs", pid);
      EXPECT_EQ(rmdir(d.c_str()), 0) << d << ": " << std::strerror(errno);
    }
  }
  CpuCgroup(const CpuCgroup&) = delete;
  CpuCgroup& operator=(const CpuCgroup&) = delete;

  // Empty when the directory was made; else why not.
  const std::string& skip_reason() const { return skip_; }
  const std::string& home() const { return home_; }  // where this process started
  const std::string& dir() const { return dir_; }    // ours
  const std::string& child() const { return child_; }

  // A child directory of ours ("<dir>/child"); false when it could not be made.
  bool make_child() {
    child_ = dir_ + "/child";
    if (mkdir(child_.c_str(), 0755) == 0) return true;
    child_.clear();
    return false;
  }
  // The child removed now (its processes moved home first), as a cgroup removed under a running program is.
  bool remove_child() {
    std::ifstream procs(child_ + "/cgroup.procs");
    for (std::string pid; std::getline(procs, pid);) write_file(home_ + "/cgroup.procs", pid);
    if (rmdir(child_.c_str()) != 0) return false;
    child_.clear();
    return true;
  }
  // quota_us -1: no quota.
  static bool set_quota(const std::string& dir, long quota_us, long period_us = 100'000) {
    return write_file(dir + "/cpu.cfs_period_us", std::to_string(period_us)) &&
           write_file(dir + "/cpu.cfs_quota_us", std::to_string(quota_us));
  }
  // Moves this process (every thread) into `dir`.
  static bool join(const std::string& dir) { return write_file(dir + "/cgroup.procs", std::to_string(getpid())); }

  static bool write_file(const std::string& path, const std::string& text) {
    const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
  }

 private:
  std::string skip_, home_, dir_, child_;
};

// A directory of the v1 memory hierarchy with a hard limit. Processes are put in it by a wrapper (wrapper(): a shell
// that moves itself in, then execs the command after it), so that the test process itself stays outside the limit.
// The destructor moves any process still there back home and removes the directory.
class MemoryCgroup {
 public:
  MemoryCgroup(const std::string& prefix, size_t limit_bytes) {
    if (geteuid() != 0) {
      skip_ = "needs root to create a cgroup";
      return;
    }
    const std::string path = own_cgroup_path("memory");
    home_ = "/sys/fs/cgroup/memory" + (path == "/" ? std::string() : path);
    if (!std::filesystem::exists(home_ + "/memory.limit_in_bytes")) {
      skip_ = "no cgroup v1 memory hierarchy at " + home_;
      return;
    }
    const std::string dir = home_ + "/" + prefix + "-" + std::to_string(getpid());
    if (mkdir(dir.c_str(), 0755) != 0) {
      skip_ = "cannot create " + dir + ": " + std::strerror(errno);
      return;
    }
    dir_ = dir;
    if (!CpuCgroup::write_file(dir_ + "/memory.limit_in_bytes", std::to_string(limit_bytes)))
      skip_ = "cannot set " + dir_ + "/memory.limit_in_bytes";
  }
  ~MemoryCgroup() {
    if (dir_.empty()) return;
    std::ifstream procs(dir_ + "/cgroup.procs");
    for (std::string pid; std::getline(procs, pid);) CpuCgroup::write_file(home_ + "/cgroup.procs", pid);
    EXPECT_EQ(rmdir(dir_.c_str()), 0) << dir_ << ": " << std::strerror(errno);
  }
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;

  // Empty when the directory was made and limited; else why not.
  const std::string& skip_reason() const { return skip_; }
  // argv to prefix a command with: it runs inside this cgroup.
  std::vector<std::string> wrapper() const {
    return {"/bin/sh", "-c", "echo $$ > " + dir_ + "/cgroup.procs && exec \"$@\"", "sh"};
  }
  // The most memory the cgroup has held.
  uint64_t peak_bytes() const {
    std::ifstream f(dir_ + "/memory.max_usage_in_bytes");
    uint64_t v = 0;
    f >> v;
    return v;
  }

 private:
  std::string skip_, home_, dir_;
};

}  // namespace tern::test
