// tools/capacity/machine.h: the capacity formula's inputs this machine can give without a running server: cores and
// memory as the cgroup sees them, the descriptor limit, the link speed.
//
//   Input c = machine_cores();              // min(cgroup quota, cpuset, affinity), with the file that bound
//   Input m = machine_memory("/");          // the cgroup memory limit, else MemAvailable from /proc/meminfo
//   Input f = machine_fds("/");             // min(RLIMIT_NOFILE soft limit, /proc/sys/fs/file-max)
//   Input b = machine_bandwidth("/");       // the fastest physical interface that is up (/sys/class/net/*/speed)
//
// Each returns an Input that is not known when nothing could be read (the term that needs it says so), and fills
// `problems` with what went wrong on the way (a garbage file is named, never turned into a number). fs_root prefixes
// /proc and /sys, for tests on fixture trees.
#pragma once

#include <string>
#include <vector>

#include "tools/capacity/formula.h"

namespace tern::capacity {

Input machine_cores(const std::string& fs_root, std::vector<std::string>* problems);
Input machine_memory(const std::string& fs_root, std::vector<std::string>* problems);
Input machine_fds(const std::string& fs_root, std::vector<std::string>* problems);
Input machine_bandwidth(const std::string& fs_root, std::vector<std::string>* problems);

}  // namespace tern::capacity
