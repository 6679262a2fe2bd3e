// runtime/cgroup.h: the CPU quota of the cgroup this process runs in (v2 cpu.max, or v1 cpu.cfs_quota_us /
// cpu.cfs_period_us), and the CPU affinity mask's size.
//
//   if (auto q = tern::cgroup_cpu_quota()) procs = std::min(procs, (int)std::ceil(*q));
//
// A missing or unreadable file means "no quota" (std::nullopt), never an error: containers without a cpu controller
// are normal.
#pragma once

#include <optional>
#include <string>

namespace tern {

// CPUs' worth of quota (2.5 = 250 ms per 100 ms period), or nullopt when unlimited or unknown. `root` lets tests point
// at a fake hierarchy; `proc_self_cgroup` at a fake /proc/self/cgroup.
std::optional<double> cgroup_cpu_quota(const std::string& root = "/sys/fs/cgroup",
                                       const std::string& proc_self_cgroup = "/proc/self/cgroup");

// CPUs in this thread's affinity mask (sched_getaffinity), at least 1.
int affinity_cpus();

}  // namespace tern
