// runtime/cgroup.h: CPU-limit discovery: the cgroup CPU quota (the tightest along the process's cgroup and all its
// ancestors, v1 and v2, hybrid hierarchies too), the cpuset, the affinity mask, and the quota's throttling counters.
//
//   // At startup (Config::default_procs()):
//   CpuLimits lim = tern::discover_cpu_limits();
//   int procs = lim.cpus > 0 ? lim.cpus : 1;
//   if (lim.quota_ok && lim.has_quota()) procs = std::min(procs, std::max(1, (int)std::ceil(lim.quota_cores)));
//
//   // On a controller thread, every ~100 ms (runtime/controller/controller.cc):
//   tern::CgroupDiscovery d;                      // or d("/path/to/fixture") in tests
//   CpuLimits lim = d.cpu_limits();               // a few small reads; paths resolved once
//   for (auto& e : lim.errors) count(e.reason);   // "missing", "garbage", ...: keep the last good value
//   if (auto t = d.throttle()) use(t->throttled_periods, t->throttled_s);
//
// Design.
//   - Paths come from /proc/self/mountinfo, never from a fixed /sys/fs/cgroup layout: a v1 controller is found as the
//     mount whose fstype is `cgroup` and whose super options name the controller, v2 as the `cgroup2` mount, wherever
//     they are mounted. The process's cgroup (/proc/self/cgroup, "id:controllers:path", the path being everything after
//     the second colon, so names with colons work) is mapped into the mount through the mount's root field: a
//     container's bind mount of its own subtree has root "/kubepods/pod1" and mount point /sys/fs/cgroup, so the
//     process's "/kubepods/pod1/c1" is /sys/fs/cgroup/c1. Go assumed /sys/fs/cgroup and a root mount until
//     golang/go#76390; a path outside the mount's root falls back to the mount point itself.
//   - Hybrid hierarchies (v1 controllers beside a v2 `unified` mount, as systemd's hybrid mode and this repo's CI host
//     have): a controller mounted on v1 is read there; v2 serves the controllers not on v1.
//   - The quota is the tightest quota/period along the process's cgroup and every ancestor up to the mount's root:
//     the kernel throttles a cgroup when any ancestor runs out, so a 0.5-core quota on a pod's cgroup binds a
//     container whose own cgroup says `max`. Go (1.25) reads only the leaf (golang/go#81180), as tern's first version
//     did on v1: a 0.5-core quota on the parent and none on the child gave 2 processors on a 2-CPU host (measured,
//     issue 15). Throttling (cpu.stat) is read from the cgroup whose quota binds: that is the one the kernel throttles.
//   - Nothing here throws or crashes on bad input: a file that is missing, unreadable or garbage, quota or period 0,
//     negative or overflowing numbers, a cgroup removed mid-run give a CgroupProblem (a reason with a stable short
//     name, and a message with the path) and no value, so a caller keeps its last good value, logs once per reason
//     and counts by reason. What is normal is not a problem: no cgroup mount for the cpu controller, `max`, v1's -1,
//     a v2 level without the cpu controller (no cpu.max) all mean "no quota there".
//   - Reading is cheap: paths are resolved once (and again when a read finds them gone), the per-read file names are
//     precomputed, and each file is read with open/read/close into a stack buffer. A tick reads about 4 small files.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "base/result.h"

namespace tern {

// Why a cgroup reading has no usable value. The codes are an error_code enum (category "cgroup"), so a Result's Error
// carries one; cgroup_reason_name() gives each a stable short name for metrics labels and logs.
enum class CgroupErrc {
  missing = 1,  // "missing": a file or directory that must exist does not (/proc/self/mountinfo, a cgroup directory)
  unreadable,   // "unreadable": open or read failed otherwise (EACCES, EIO, ...)
  garbage,      // "garbage": text that does not parse (empty, words, NaN, trailing junk, a bad CPU list)
  negative,     // "negative": a negative number where none may be (v1's quota -1 is "no quota", not this)
  overflow,     // "overflow": a number beyond 64 bits, or a CPU number beyond kMaxCpuNumber
  zero_quota,   // "zero_quota": a CPU quota of 0 (the kernel refuses it) or a memory limit of 0: no usable limit
  zero_period,  // "zero_period": a period of 0
  removed,      // "removed": the process's cgroup directory went away mid-run (and re-resolving did not find it)
};

// The stable short name of a reason ("missing", "unreadable", "garbage", "negative", "overflow", "zero_quota",
// "zero_period", "removed"); "unknown" for any other value.
const char* cgroup_reason_name(CgroupErrc e);
// The same for an error_code from this module; "unreadable" for codes of other categories.
const char* cgroup_reason_name(const std::error_code& ec);
const std::error_category& cgroup_category();
inline std::error_code make_error_code(CgroupErrc e) {
  return {static_cast<int>(e), cgroup_category()};
}

}  // namespace tern

template <>
struct std::is_error_code_enum<tern::CgroupErrc> : std::true_type {};

namespace tern {

// The highest CPU number a CPU list may name, plus one: Linux's NR_CPUS is at most 8192 (x86-64 with
// CONFIG_MAXSMP, arch/x86/Kconfig; arm64 and powerpc allow less), so a larger number is garbage.
inline constexpr int kMaxCpuNumber = 8192;

enum class CgroupVersion { none, v1, v2 };
const char* cgroup_version_name(CgroupVersion v);  // "none", "v1", "v2"

// One failed reading: the reason, its short name, and a message naming the file ("<path>: period is 0").
struct CgroupProblem {
  CgroupErrc code = CgroupErrc::unreadable;
  const char* reason = "unreadable";  // cgroup_reason_name(code)
  std::string message;
};

inline constexpr double kNoQuota = std::numeric_limits<double>::quiet_NaN();

struct CpuLimits {
  // The quota. quota_ok: the reading succeeded (quota_cores NaN then means "no quota anywhere"); false when a quota
  // file along the way failed (errors says why; keep the last good value). quota_cores: the tightest quota / period
  // along the cgroup and its ancestors, in cores (0.5 = 50 ms per 100 ms); quota_period_us: that cgroup's period;
  // burst_cores: its burst (v2 cpu.max.burst, v1 cpu.cfs_burst_us) / period, NaN where absent or unreadable;
  // quota_source: the file that bound it ("/sys/fs/cgroup/cpu/pod/cpu.cfs_quota_us"), empty without a quota.
  bool quota_ok = false;
  double quota_cores = kNoQuota;
  int64_t quota_period_us = 0;
  double burst_cores = kNoQuota;
  std::string quota_source;
  CgroupVersion quota_version = CgroupVersion::none;  // the hierarchy the cpu controller was read from

  // CPUs. cpuset_cpus: CPUs in the cgroup's effective cpuset (v2 cpuset.cpus.effective, v1 cpuset.effective_cpus or
  // cpuset.cpus), 0 when unknown; affinity_cpus: sched_getaffinity's count, 0 when it failed; cpus: the least of those
  // known, 0 when neither is.
  int cpuset_cpus = 0;
  std::string cpuset_source;
  CgroupVersion cpuset_version = CgroupVersion::none;
  int affinity_cpus = 0;
  int cpus = 0;

  std::vector<CgroupProblem> errors;  // empty when every reading succeeded

  bool has_quota() const { return std::isfinite(quota_cores); }
};

// Throttling counters of the cgroup whose quota binds (cpu.stat), cumulative since the cgroup was created.
// v2: nr_periods, nr_throttled, throttled_usec; v1: nr_periods, nr_throttled, throttled_time (ns). A cpu.stat without
// the counters (no quota there) reads as zeros.
struct CpuThrottle {
  uint64_t periods = 0;
  uint64_t throttled_periods = 0;
  double throttled_s = 0;
  std::string source;  // the cpu.stat read
};

// Discovery for one filesystem root, for a thread that re-reads every ~100 ms. Not thread-safe: one reader.
struct MemoryLimit {
  // ok: every file along the way read (bytes NaN then means "no limit anywhere"); false when one failed (errors says
  // why). bytes: the tightest hard limit along the cgroup and its ancestors (v2 memory.max, v1
  // memory.limit_in_bytes; v1's "unlimited", a value of 2^62 or more, counts as none); source: the file that bound.
  bool ok = false;
  double bytes = kNoQuota;
  std::string source;
  CgroupVersion version = CgroupVersion::none;
  std::vector<CgroupProblem> errors;

  bool has_limit() const { return std::isfinite(bytes); }
};

class CgroupDiscovery {
 public:
  // fs_root: where /proc/self/{mountinfo,cgroup} and the cgroup mounts named there are ("/"; a test's fixture tree).
  explicit CgroupDiscovery(std::string fs_root = "/");
  ~CgroupDiscovery();
  CgroupDiscovery(const CgroupDiscovery&) = delete;
  CgroupDiscovery& operator=(const CgroupDiscovery&) = delete;

  // Quota, cpuset and affinity now. Resolves the paths on first use, and again when a read finds them gone.
  CpuLimits cpu_limits();
  // cpu.stat of the cgroup whose quota bound at the last cpu_limits() (the leaf's cpu controller directory before
  // one, or without a quota). The Error's code is a CgroupErrc.
  Result<CpuThrottle> throttle();
  // The memory controller's hard limit (for capacity planning; not read on the controller's ticks).
  MemoryLimit memory_limit();
  // Forget the resolved paths: the next read resolves them again (after the process moved to another cgroup).
  void invalidate();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// One reading at the real root: the startup default (Config::default_procs()).
CpuLimits discover_cpu_limits(const std::string& fs_root = "/");

// CPUs named by a Linux CPU list ("0-3,5,7-8", a trailing newline allowed; overlaps count once). Garbage, a
// reversed range or a CPU number >= kMaxCpuNumber is an Error with a CgroupErrc code, never a crash.
Result<int> count_cpu_list(std::string_view text);

// CPUs in this thread's affinity mask (sched_getaffinity), at least 1.
int affinity_cpus();

}  // namespace tern
