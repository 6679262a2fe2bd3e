// tests/runtime/cgroup_test.cc: CPU-limit discovery: fixture trees (tests/fixtures/cgroup/) for v1, v2, hybrid, nested
// limits, non-root and odd mounts, names with spaces and colons; garbage of every kind; CPU lists; a real cgroup v1.
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
#include <memory>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "tests/support/cgroup.h"

namespace tern {
namespace {

namespace fs = std::filesystem;

const double kNaN = kNoQuota;

std::string fixture(const std::string& name) {
  return std::string(TERN_SOURCE_DIR) + "/tests/fixtures/cgroup/" + name;
}

std::string describe(const CpuLimits& l) {
  std::string out = "quota_ok=" + std::to_string(l.quota_ok) + " quota=" + std::to_string(l.quota_cores) +
                    " source=" + l.quota_source + " cpuset=" + std::to_string(l.cpuset_cpus) + " errors:";
  for (const auto& e : l.errors) out += std::string(" [") + e.reason + "] " + e.message;
  return out;
}

// The CPUs a reading should report: the least of the cpuset (when known) and this machine's affinity.
int expected_cpus(int cpuset) {
  return cpuset > 0 ? std::min(cpuset, affinity_cpus()) : affinity_cpus();
}

// One fixture tree and what discovery must find in it. Paths are relative to the fixture's root.
struct TreeCase {
  const char* name;
  double quota;  // cores; NaN: no quota
  int64_t period_us;
  double burst;        // cores; NaN: none
  const char* source;  // the file that binds the quota; "" without one
  CgroupVersion version;
  int cpuset;  // 0: unknown
  CgroupVersion cpuset_version;
  uint64_t periods, throttled;
  double throttled_s;
  const char* stat;  // the cpu.stat throttle() reads; "" when there is none
};

void PrintTo(const TreeCase& c, std::ostream* os) {
  *os << c.name;
}

const TreeCase kTrees[] = {
    {"v1", 2.5, 100000, 0.5, "/sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us", CgroupVersion::v1, 2, CgroupVersion::v1,
     1000, 50, 2.5, "/sys/fs/cgroup/cpu,cpuacct/job/cpu.stat"},
    {"v2", 1.5, 100000, 0.2, "/sys/fs/cgroup/app.slice/svc/cpu.max", CgroupVersion::v2, 4, CgroupVersion::v2, 400, 40,
     1.5, "/sys/fs/cgroup/app.slice/svc/cpu.stat"},
    // cpu on v1 (the unified mount's tighter cpu.max is not read), cpuset on no v1 mount: from v2.
    {"hybrid", 2.0, 100000, kNaN, "/sys/fs/cgroup/cpu/svc/cpu.cfs_quota_us", CgroupVersion::v1, 3, CgroupVersion::v2,
     1000, 50, 2.5, "/sys/fs/cgroup/cpu/svc/cpu.stat"},
    // The parent's 0.5 binds though the child has none (issue 15's measured defect; golang/go#81180).
    {"nested-parent-tighter-v1", 0.5, 100000, kNaN, "/sys/fs/cgroup/cpu/parent/cpu.cfs_quota_us", CgroupVersion::v1, 0,
     CgroupVersion::none, 20, 7, 0.3, "/sys/fs/cgroup/cpu/parent/cpu.stat"},
    {"nested-child-tighter-v1", 0.6, 50000, kNaN, "/sys/fs/cgroup/cpu/parent/child/cpu.cfs_quota_us", CgroupVersion::v1,
     0, CgroupVersion::none, 1000, 50, 2.5, "/sys/fs/cgroup/cpu/parent/child/cpu.stat"},
    {"nested-parent-tighter-v2", 0.5, 100000, kNaN, "/sys/fs/cgroup/parent/cpu.max", CgroupVersion::v2, 0,
     CgroupVersion::v2, 30, 9, 0.45, "/sys/fs/cgroup/parent/cpu.stat"},
    {"nested-child-tighter-v2", 0.75, 100000, kNaN, "/sys/fs/cgroup/parent/child/cpu.max", CgroupVersion::v2, 0,
     CgroupVersion::v2, 400, 40, 1.5, "/sys/fs/cgroup/parent/child/cpu.stat"},
    // A container's own subtree bind-mounted at /sys/fs/cgroup (golang/go#76390): the pod's quota on the mount's root.
    {"container-subtree-v2", 1.0, 100000, kNaN, "/sys/fs/cgroup/cpu.max", CgroupVersion::v2, 4, CgroupVersion::v2, 400,
     40, 1.5, "/sys/fs/cgroup/cpu.stat"},
    {"container-subtree-v1", 1.5, 100000, kNaN, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", CgroupVersion::v1, 2,
     CgroupVersion::v1, 1000, 50, 2.5, "/sys/fs/cgroup/cpu,cpuacct/cpu.stat"},
    // The process's cgroup is outside the mount's root: the mount point itself.
    {"outside-root", 3.0, 100000, kNaN, "/sys/fs/cgroup/cpu.max", CgroupVersion::v2, 0, CgroupVersion::v2, 12, 1, 0.005,
     "/sys/fs/cgroup/cpu.stat"},
    // cgroup2 at /run/cg2; the decoy /sys/fs/cgroup/svc/cpu.max (0.1) must not be read.
    {"odd-mountpoint", 1.2, 100000, kNaN, "/run/cg2/svc/cpu.max", CgroupVersion::v2, 0, CgroupVersion::v2, 400, 40, 1.5,
     "/run/cg2/svc/cpu.stat"},
    {"spaces-colons-v2", 0.8, 100000, kNaN, "/mnt/cg root\\v2/my pods/pod:1/cpu.max", CgroupVersion::v2, 2,
     CgroupVersion::v2, 400, 40, 1.5, "/mnt/cg root\\v2/my pods/pod:1/cpu.stat"},
    {"spaces-colons-v1", 0.5, 100000, kNaN, "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", CgroupVersion::v1, 0,
     CgroupVersion::none, 1000, 50, 2.5, "/sys/fs/cgroup/cpu,cpuacct/cpu.stat"},
    // Normal, not problems: v2 without the cpu controller anywhere, and no cgroup mounted at all.
    {"v2-no-cpu-controller", kNaN, 0, kNaN, "", CgroupVersion::v2, 0, CgroupVersion::v2, 0, 0, 0,
     "/sys/fs/cgroup/a/cpu.stat"},
    {"no-cgroup-mount", kNaN, 0, kNaN, "", CgroupVersion::none, 0, CgroupVersion::none, 0, 0, 0, ""},
};

class CgroupTree : public ::testing::TestWithParam<TreeCase> {};

TEST_P(CgroupTree, FindsTheTightestQuotaCpusetAndThrottling) {
  const TreeCase& c = GetParam();
  const std::string root = fixture(c.name);
  ASSERT_TRUE(fs::exists(root + "/proc/self/mountinfo")) << root;
  CgroupDiscovery d(root);
  for (int round = 0; round < 2; round++) {  // the second reading uses the paths resolved by the first
    const CpuLimits l = d.cpu_limits();
    SCOPED_TRACE(describe(l));
    EXPECT_TRUE(l.errors.empty());
    EXPECT_TRUE(l.quota_ok);
    if (std::isnan(c.quota)) {
      EXPECT_FALSE(l.has_quota());
      EXPECT_EQ(l.quota_source, "");
    } else {
      EXPECT_DOUBLE_EQ(l.quota_cores, c.quota);
      EXPECT_EQ(l.quota_period_us, c.period_us);
      EXPECT_EQ(l.quota_source, root + c.source);
    }
    if (std::isnan(c.burst)) {
      EXPECT_TRUE(std::isnan(l.burst_cores)) << l.burst_cores;
    } else {
      EXPECT_DOUBLE_EQ(l.burst_cores, c.burst);
    }
    EXPECT_EQ(l.quota_version, c.version);
    EXPECT_EQ(l.cpuset_cpus, c.cpuset);
    EXPECT_EQ(l.cpuset_version, c.cpuset_version);
    EXPECT_EQ(l.affinity_cpus, affinity_cpus());
    EXPECT_EQ(l.cpus, expected_cpus(c.cpuset));

    const Result<CpuThrottle> t = d.throttle();
    ASSERT_TRUE(t) << t.error().message();
    EXPECT_EQ(t->periods, c.periods);
    EXPECT_EQ(t->throttled_periods, c.throttled);
    EXPECT_DOUBLE_EQ(t->throttled_s, c.throttled_s);
    EXPECT_EQ(t->source, *c.stat ? root + c.stat : "");
  }
  // The free function gives the same reading.
  EXPECT_EQ(discover_cpu_limits(root).quota_source, d.cpu_limits().quota_source);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CgroupTree, ::testing::ValuesIn(kTrees),
                         [](const ::testing::TestParamInfo<TreeCase>& i) {
                           std::string n = i.param.name;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// A fixture copied to a temporary directory, for tests that change files.
class CgroupScratch : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("tern-cg-" + std::to_string(getpid()));
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  void copy(const std::string& name) {
    fs::remove_all(root_);
    fs::copy(fixture(name), root_, fs::copy_options::recursive);
  }
  void write(const std::string& rel, const std::string& text) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::trunc) << text;
  }
  std::string root() const { return root_.string(); }
  fs::path root_;
};

// A file's text and the reason it must give ("" for a good reading with no quota at that level).
struct GarbageCase {
  const char* file;
  const char* text;
  const char* reason;
};

void expect_reason(const CpuLimits& l, const GarbageCase& g, const std::string& root) {
  SCOPED_TRACE(std::string(g.file) + " = '" + g.text + "': " + describe(l));
  if (*g.reason == '\0') {
    EXPECT_TRUE(l.quota_ok);
    EXPECT_TRUE(l.errors.empty());
    return;
  }
  EXPECT_FALSE(l.quota_ok);
  EXPECT_FALSE(l.has_quota());  // no value: the caller keeps its last good one
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_STREQ(l.errors[0].reason, g.reason);
  EXPECT_STREQ(cgroup_reason_name(l.errors[0].code), g.reason);
  EXPECT_NE(l.errors[0].message.find(root), std::string::npos) << "the message names the file";
}

TEST_F(CgroupScratch, V2GarbageQuotaGivesAReasonNeverAValue) {
  const char* leaf = "sys/fs/cgroup/app.slice/svc/cpu.max";
  const GarbageCase cases[] = {
      {leaf, "", "garbage"},
      {leaf, "\n", "garbage"},
      {leaf, "lots\n", "garbage"},
      {leaf, "nan 100000\n", "garbage"},
      {leaf, "NaN NaN\n", "garbage"},
      {leaf, "1.5 100000\n", "garbage"},
      {leaf, "1e5 100000\n", "garbage"},
      {leaf, "150000\n", "garbage"},  // no period
      {leaf, "150000 100000 7\n", "garbage"},
      {leaf, "150000 lots\n", "garbage"},
      {leaf, "0 100000\n", "zero_quota"},
      {leaf, "150000 0\n", "zero_period"},
      {leaf, "-1 100000\n", "negative"},
      {leaf, "150000 -100000\n", "negative"},
      {leaf, "99999999999999999999 100000\n", "overflow"},
      {leaf, "150000 99999999999999999999\n", "overflow"},
      {leaf, "max 100000\n", ""},
      {leaf, "max\n", ""},
      {"sys/fs/cgroup/app.slice/cpu.max", "garbage\n", "garbage"},  // an ancestor's garbage spoils the reading too
  };
  for (const GarbageCase& g : cases) {
    copy("v2");
    write(g.file, g.text);
    expect_reason(discover_cpu_limits(root()), g, root());
  }
}

TEST_F(CgroupScratch, V1GarbageQuotaGivesAReasonNeverAValue) {
  const char* quota = "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us";
  const char* period = "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_period_us";
  const GarbageCase cases[] = {
      {quota, "", "garbage"},
      {quota, "abc\n", "garbage"},
      {quota, "nan\n", "garbage"},
      {quota, "max\n", "garbage"},  // v2's word, not v1's
      {quota, "250000 100000\n", "garbage"},
      {quota, "0\n", "zero_quota"},
      {quota, "-2\n", "negative"},
      {quota, "-99999999999999999999\n", "overflow"},
      {quota, "99999999999999999999\n", "overflow"},
      {quota, "-1\n", ""},  // v1's "no quota"
      {period, "0\n", "zero_period"},
      {period, "-100000\n", "negative"},
      {period, "\n", "garbage"},
      {period, "1e5\n", "garbage"},
      {period, "18446744073709551616\n", "overflow"},
  };
  for (const GarbageCase& g : cases) {
    copy("v1");
    write(g.file, g.text);
    expect_reason(discover_cpu_limits(root()), g, root());
  }
}

TEST(CgroupMemory, TheTightestLimitAlongTheAncestors) {
  {  // v1: the job's 512 MiB under an unlimited root (v1 writes "unlimited" as 2^63 - 4096)
    const MemoryLimit m = CgroupDiscovery(fixture("v1")).memory_limit();
    EXPECT_TRUE(m.ok);
    EXPECT_EQ(m.version, CgroupVersion::v1);
    EXPECT_EQ(m.bytes, 512.0 * (1 << 20));
    EXPECT_NE(m.source.find("memory/job/memory.limit_in_bytes"), std::string::npos) << m.source;
  }
  {  // v2: the parent's 256 MiB binds a child whose memory.max is "max"
    const MemoryLimit m = CgroupDiscovery(fixture("nested-parent-tighter-v2")).memory_limit();
    EXPECT_TRUE(m.ok);
    EXPECT_EQ(m.version, CgroupVersion::v2);
    EXPECT_EQ(m.bytes, 256.0 * (1 << 20));
    EXPECT_NE(m.source.find("parent/memory.max"), std::string::npos) << m.source;
  }
  {  // v2 "max" everywhere (and no memory.max at the root): no limit
    const MemoryLimit m = CgroupDiscovery(fixture("v2")).memory_limit();
    EXPECT_TRUE(m.ok);
    EXPECT_FALSE(m.has_limit());
  }
  {  // no memory controller at all: no limit, no error
    const MemoryLimit m = CgroupDiscovery(fixture("garbage-v1")).memory_limit();
    EXPECT_TRUE(m.ok) << (m.errors.empty() ? "" : m.errors[0].message);
    EXPECT_EQ(m.version, CgroupVersion::none);
    EXPECT_FALSE(m.has_limit());
  }
}

TEST_F(CgroupScratch, MemoryLimitGarbageGivesAReasonNeverAValue) {
  const char* leaf = "sys/fs/cgroup/memory/job/memory.limit_in_bytes";
  for (auto [text, reason] : {std::pair{"", "garbage"},
                              {"lots\n", "garbage"},
                              {"max\n", "garbage"},
                              {"-5\n", "negative"},
                              {"99999999999999999999\n", "overflow"},
                              {"0\n", "zero_quota"},  // found by fuzz_cgroup: it reported a limit of 0 bytes
                              {"-1\n", ""}}) {
    copy("v1");
    write(leaf, text);
    const MemoryLimit m = CgroupDiscovery(root()).memory_limit();
    SCOPED_TRACE(std::string("'") + text + "'");
    if (*reason == '\0') {
      EXPECT_TRUE(m.ok);
      EXPECT_FALSE(m.has_limit());
      continue;
    }
    EXPECT_FALSE(m.ok);
    EXPECT_FALSE(m.has_limit());
    ASSERT_EQ(m.errors.size(), 1u);
    EXPECT_STREQ(m.errors[0].reason, reason);
    EXPECT_NE(m.errors[0].message.find(root()), std::string::npos) << "the message names the file";
  }
}

TEST_F(CgroupScratch, GarbageEverywhereIsReportedPerFile) {
  // garbage-v1: the leaf's quota is good but its parent's is text; the cpuset and cpu.stat are garbage.
  CgroupDiscovery d(fixture("garbage-v1"));
  const CpuLimits l = d.cpu_limits();
  SCOPED_TRACE(describe(l));
  EXPECT_FALSE(l.quota_ok);
  EXPECT_FALSE(l.has_quota());
  ASSERT_EQ(l.errors.size(), 2u);
  EXPECT_STREQ(l.errors[0].reason, "garbage");
  EXPECT_NE(l.errors[0].message.find("/p/cpu.cfs_quota_us"), std::string::npos);
  EXPECT_STREQ(l.errors[1].reason, "garbage");
  EXPECT_NE(l.errors[1].message.find("cpuset.effective_cpus"), std::string::npos);
  EXPECT_EQ(l.cpuset_cpus, 0);
  EXPECT_EQ(l.cpus, affinity_cpus());  // what is known still is
  const Result<CpuThrottle> t = d.throttle();
  ASSERT_FALSE(t);
  EXPECT_STREQ(cgroup_reason_name(t.error().code()), "garbage");
  EXPECT_TRUE(t.error() == CgroupErrc::garbage);
}

TEST_F(CgroupScratch, BurstGarbageSpoilsOnlyTheBurst) {
  copy("v2");
  write("sys/fs/cgroup/app.slice/svc/cpu.max.burst", "lots\n");
  const CpuLimits l = discover_cpu_limits(root());
  EXPECT_TRUE(l.quota_ok);
  EXPECT_DOUBLE_EQ(l.quota_cores, 1.5);
  EXPECT_TRUE(std::isnan(l.burst_cores));
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_STREQ(l.errors[0].reason, "garbage");
  copy("v2");
  fs::remove(root_ / "sys/fs/cgroup/app.slice/svc/cpu.max.burst");  // a kernel before 5.14: no burst, no problem
  const CpuLimits m = discover_cpu_limits(root());
  EXPECT_TRUE(m.errors.empty()) << describe(m);
  EXPECT_TRUE(std::isnan(m.burst_cores));
}

TEST_F(CgroupScratch, ThrottleGarbage) {
  const GarbageCase cases[] = {
      {"", "nr_periods -1\nnr_throttled 0\nthrottled_usec 0\n", "negative"},
      {"", "nr_periods x\n", "garbage"},
      {"", "nr_periods 18446744073709551616\n", "overflow"},
      {"", "nr_throttled\n", "garbage"},
      {"", "usage_usec 1\nthrottled_usec 1.5\n", "garbage"},
      {"", "", ""},  // no counters: nothing throttled
      {"", "usage_usec 5\nnr_periods 18446744073709551615\n", ""},
  };
  for (const GarbageCase& g : cases) {
    copy("v2");
    write("sys/fs/cgroup/app.slice/svc/cpu.stat", g.text);
    CgroupDiscovery d(root());
    ASSERT_TRUE(d.cpu_limits().quota_ok);
    const Result<CpuThrottle> t = d.throttle();
    SCOPED_TRACE(g.text);
    if (*g.reason == '\0') {
      EXPECT_TRUE(t) << t.error().message();
    } else {
      ASSERT_FALSE(t);
      EXPECT_STREQ(cgroup_reason_name(t.error().code()), g.reason) << t.error().message();
    }
  }
}

TEST_F(CgroupScratch, MissingAndUnreadableFiles) {
  // No /proc at all under the root.
  CpuLimits l = discover_cpu_limits(root() + "/nowhere");
  EXPECT_FALSE(l.quota_ok);
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_STREQ(l.errors[0].reason, "missing");
  EXPECT_NE(l.errors[0].message.find("/proc/self/mountinfo"), std::string::npos);
  EXPECT_EQ(l.cpus, affinity_cpus());

  copy("v2");
  fs::remove(root_ / "proc/self/cgroup");
  l = discover_cpu_limits(root());
  ASSERT_EQ(l.errors.size(), 1u) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "missing");

  copy("v2");
  write("proc/self/mountinfo", "this is not mountinfo\n");
  l = discover_cpu_limits(root());
  ASSERT_EQ(l.errors.size(), 1u) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "garbage");

  copy("v2");
  write("proc/self/cgroup", "garbage\n");
  l = discover_cpu_limits(root());
  ASSERT_EQ(l.errors.size(), 1u) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "garbage");

  // The process's cgroup directory does not exist in the mount.
  copy("v2");
  write("proc/self/cgroup", "0::/app.slice/gone\n");
  l = discover_cpu_limits(root());
  ASSERT_FALSE(l.errors.empty()) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "missing");
  EXPECT_FALSE(l.quota_ok);

  // A file that cannot be read (a directory where cpu.max should be: read() fails with EISDIR; root ignores modes).
  copy("v2");
  fs::remove(root_ / "sys/fs/cgroup/app.slice/svc/cpu.max");
  fs::create_directory(root_ / "sys/fs/cgroup/app.slice/svc/cpu.max");
  l = discover_cpu_limits(root());
  ASSERT_EQ(l.errors.size(), 1u) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "unreadable");
  EXPECT_FALSE(l.quota_ok);

  // A v1 level whose directory has no quota file (no CFS bandwidth): no limit there, not a problem.
  copy("v1");
  fs::remove(root_ / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us");
  l = discover_cpu_limits(root());
  EXPECT_TRUE(l.errors.empty()) << describe(l);
  EXPECT_DOUBLE_EQ(l.quota_cores, 2.5);
}

TEST_F(CgroupScratch, CgroupRemovedMidRunThenMoved) {
  copy("v2");
  CgroupDiscovery d(root());
  CpuLimits l = d.cpu_limits();
  ASSERT_TRUE(l.quota_ok) << describe(l);
  EXPECT_DOUBLE_EQ(l.quota_cores, 1.5);

  // The leaf goes away while /proc/self/cgroup still names it.
  fs::remove_all(root_ / "sys/fs/cgroup/app.slice/svc");
  l = d.cpu_limits();
  EXPECT_FALSE(l.quota_ok);
  EXPECT_FALSE(l.has_quota());
  ASSERT_FALSE(l.errors.empty()) << describe(l);
  EXPECT_STREQ(l.errors[0].reason, "removed") << describe(l);
  l = d.cpu_limits();  // still gone: the same reason, not a different one each tick
  ASSERT_FALSE(l.errors.empty());
  EXPECT_STREQ(l.errors[0].reason, "removed") << describe(l);
  EXPECT_FALSE(d.throttle());

  // The process now lives in another cgroup: the next reading resolves the paths again and finds it.
  write("proc/self/cgroup", "0::/app.slice/other\n");
  write("sys/fs/cgroup/app.slice/other/cpu.max", "50000 100000\n");
  write("sys/fs/cgroup/app.slice/other/cpu.stat", "nr_periods 3\nnr_throttled 2\nthrottled_usec 10\n");
  l = d.cpu_limits();
  EXPECT_TRUE(l.errors.empty()) << describe(l);
  EXPECT_DOUBLE_EQ(l.quota_cores, 0.5);
  auto t = d.throttle();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->throttled_periods, 2u);

  // Moved while the old directory still exists: invalidate() makes the next reading resolve again.
  write("proc/self/cgroup", "0::/app.slice\n");
  EXPECT_DOUBLE_EQ(d.cpu_limits().quota_cores, 0.5);  // the resolved paths are kept: still "other"
  d.invalidate();
  l = d.cpu_limits();
  EXPECT_TRUE(l.quota_ok);
  EXPECT_FALSE(l.has_quota()) << describe(l);  // app.slice says max
}

TEST_F(CgroupScratch, QuotaChangedLiveIsSeenOnTheNextReading) {
  copy("nested-parent-tighter-v2");
  CgroupDiscovery d(root());
  EXPECT_DOUBLE_EQ(d.cpu_limits().quota_cores, 0.5);
  write("sys/fs/cgroup/parent/cpu.max", "max 100000\n");
  write("sys/fs/cgroup/parent/child/cpu.max", "200000 100000\n");
  const CpuLimits l = d.cpu_limits();
  EXPECT_DOUBLE_EQ(l.quota_cores, 2.0);
  EXPECT_EQ(l.quota_source, root() + "/sys/fs/cgroup/parent/child/cpu.max");
  auto t = d.throttle();  // now the child's cpu.stat
  ASSERT_TRUE(t);
  EXPECT_EQ(t->source, root() + "/sys/fs/cgroup/parent/child/cpu.stat");
}

TEST_F(CgroupScratch, CpusetGarbage) {
  copy("v2");
  write("sys/fs/cgroup/app.slice/svc/cpuset.cpus.effective", "0-3,x\n");
  CpuLimits l = discover_cpu_limits(root());
  EXPECT_TRUE(l.quota_ok);  // the quota is still good
  EXPECT_DOUBLE_EQ(l.quota_cores, 1.5);
  ASSERT_EQ(l.errors.size(), 1u);
  EXPECT_STREQ(l.errors[0].reason, "garbage");
  EXPECT_EQ(l.cpuset_cpus, 0);
  EXPECT_EQ(l.cpus, affinity_cpus());

  // v2 without the cpuset controller on the leaf: its parent's effective set applies (here the root's 0-7).
  copy("v2");
  fs::remove(root_ / "sys/fs/cgroup/app.slice/svc/cpuset.cpus.effective");
  l = discover_cpu_limits(root());
  EXPECT_TRUE(l.errors.empty()) << describe(l);
  EXPECT_EQ(l.cpuset_cpus, 8);
  EXPECT_EQ(l.cpuset_source, root() + "/sys/fs/cgroup/cpuset.cpus.effective");

  // v1 without cpuset.effective_cpus (old kernels): cpuset.cpus.
  copy("v1");
  fs::remove(root_ / "sys/fs/cgroup/cpuset/job/cpuset.effective_cpus");
  l = discover_cpu_limits(root());
  EXPECT_TRUE(l.errors.empty()) << describe(l);
  EXPECT_EQ(l.cpuset_cpus, 4);
  EXPECT_EQ(l.cpus, std::min(4, affinity_cpus()));
}

// Random bytes in place of each file discovery reads, in both layouts: never a crash, and every reading either has a
// sane value or says why it has none.
TEST_F(CgroupScratch, RandomBytesNeverCrash) {
  const char* const files[][6] = {
      {"v2", "proc/self/mountinfo", "proc/self/cgroup", "sys/fs/cgroup/app.slice/svc/cpu.max",
       "sys/fs/cgroup/app.slice/svc/cpu.stat", "sys/fs/cgroup/app.slice/svc/cpuset.cpus.effective"},
      {"v1", "proc/self/mountinfo", "proc/self/cgroup", "sys/fs/cgroup/cpu,cpuacct/job/cpu.cfs_quota_us",
       "sys/fs/cgroup/cpu,cpuacct/job/cpu.stat", "sys/fs/cgroup/cpuset/job/cpuset.effective_cpus"},
  };
  const char alphabet[] = "0123456789-: \n\\/maxnr_periods ,";
  uint64_t seed = 0x9e3779b97f4a7c15;  // fixed: a failure reproduces
  auto next = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  for (int i = 0; i < 200; i++) {
    const auto& layout = files[i % 2];
    copy(layout[0]);
    std::string text;
    const size_t len = next() % 48;
    for (size_t k = 0; k < len; k++) {
      const uint64_t r = next();
      text += (r & 1) ? static_cast<char>(r >> 8) : alphabet[(r >> 8) % (sizeof alphabet - 1)];
    }
    write(layout[1 + next() % 5], text);
    CgroupDiscovery d(root());
    const CpuLimits l = d.cpu_limits();
    if (l.has_quota()) {
      EXPECT_TRUE(l.quota_ok);
      EXPECT_GT(l.quota_cores, 0);
      EXPECT_GT(l.quota_period_us, 0);
    }
    if (!l.quota_ok) {
      EXPECT_FALSE(l.errors.empty());
    }
    for (const auto& e : l.errors) EXPECT_STRNE(e.reason, "unknown") << e.message;
    EXPECT_GE(l.cpus, 1);
    (void)d.throttle();
  }
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
    cg_ = std::make_unique<test::CpuCgroup>("tern-test");
    if (!cg_->skip_reason().empty()) GTEST_SKIP() << cg_->skip_reason();
    dir_ = cg_->dir();
  }
  // Whatever failed: the cgroups are emptied and removed, the child first.
  void TearDown() override { cg_.reset(); }
  static bool write_file(const std::string& path, const std::string& text) {
    return test::CpuCgroup::write_file(path, text);
  }
  static bool set_quota(const std::string& dir, long quota_us, long period_us) {
    return test::CpuCgroup::set_quota(dir, quota_us, period_us);
  }
  bool make_child() {
    if (!cg_->make_child()) return false;
    child_ = cg_->child();
    return true;
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

  std::unique_ptr<test::CpuCgroup> cg_;
  std::string dir_, child_;
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

// The memory limit on the real v1 memory hierarchy: a child process moved into a cgroup of ours with 300 MiB reads
// it (with the ancestors' limits, when tighter, instead).
TEST(CgroupReal, MemoryLimitOfAV1Cgroup) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create a cgroup";
  std::string path;
  std::ifstream pc("/proc/self/cgroup");
  for (std::string line; std::getline(pc, line);) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a != std::string::npos && b != std::string::npos && line.substr(a + 1, b - a - 1) == "memory")
      path = line.substr(b + 1);
  }
  const std::string home = "/sys/fs/cgroup/memory" + (path == "/" ? std::string() : path);
  if (path.empty() || !fs::exists(home + "/memory.limit_in_bytes")) GTEST_SKIP() << "no v1 memory hierarchy";
  const std::string dir = home + "/tern-mem-test-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0755) != 0) GTEST_SKIP() << dir << ": " << std::strerror(errno);
  const bool set = test::CpuCgroup::write_file(dir + "/memory.limit_in_bytes", std::to_string(300 << 20));
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    double bytes = -1;
    if (test::CpuCgroup::write_file(dir + "/cgroup.procs", std::to_string(getpid()))) {
      const MemoryLimit m = CgroupDiscovery().memory_limit();
      bytes = m.ok ? (m.has_limit() ? m.bytes : 0) : -2;
    }
    if (::write(fds[1], &bytes, sizeof bytes) != sizeof bytes) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  double bytes = -3;
  if (read(fds[0], &bytes, sizeof bytes) != sizeof bytes) bytes = -4;
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  EXPECT_EQ(rmdir(dir.c_str()), 0) << std::strerror(errno);
  ASSERT_TRUE(set);
  EXPECT_GT(bytes, 0) << "the child read no limit (0), failed (-2) or never reported (< -2)";
  EXPECT_LE(bytes, 300.0 * (1 << 20));
}

}  // namespace
}  // namespace tern
