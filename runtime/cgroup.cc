// runtime/cgroup.cc: the CPU quota from cgroup v1/v2 files, and the CPU affinity mask.
#include "runtime/cgroup.h"

#include <sched.h>

#include <fstream>
#include <sstream>
#include <vector>

namespace tern {
namespace {

std::optional<std::string> read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) return std::nullopt;
  return line;
}

// Lines of /proc/self/cgroup: "hierarchy-id:controllers:path". v2 has "0::/path".
struct CgroupLine {
  std::string controllers, path;
};
std::vector<CgroupLine> read_proc_cgroup(const std::string& file) {
  std::vector<CgroupLine> out;
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line)) {
    auto a = line.find(':');
    auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    out.push_back({line.substr(a + 1, b - a - 1), line.substr(b + 1)});
  }
  return out;
}

bool has_controller(const std::string& list, const std::string& name) {
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ','))
    if (item == name) return true;
  return false;
}

std::optional<double> quota_v2(const std::string& dir) {
  auto line = read_first_line(dir + "/cpu.max");
  if (!line) return std::nullopt;
  std::istringstream in(*line);
  std::string quota;
  long long period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return std::nullopt;
  try {
    double q = std::stod(quota);
    if (q <= 0) return std::nullopt;
    return q / static_cast<double>(period);
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<double> quota_v1(const std::string& dir) {
  auto q = read_first_line(dir + "/cpu.cfs_quota_us");
  auto p = read_first_line(dir + "/cpu.cfs_period_us");
  if (!q || !p) return std::nullopt;
  try {
    long long quota = std::stoll(*q), period = std::stoll(*p);
    if (quota <= 0 || period <= 0) return std::nullopt;
    return static_cast<double>(quota) / static_cast<double>(period);
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

std::optional<double> cgroup_cpu_quota(const std::string& root, const std::string& proc_self_cgroup) {
  std::optional<double> best;
  auto consider = [&](std::optional<double> q) {
    if (q && (!best || *q < *best)) best = q;
  };
  for (const CgroupLine& l : read_proc_cgroup(proc_self_cgroup)) {
    if (l.controllers.empty()) {
      // v2: the quota of every ancestor applies; the tightest wins.
      std::string path = l.path;
      for (;;) {
        consider(quota_v2(root + (path == "/" ? "" : path)));
        if (path.empty() || path == "/") break;
        path = path.substr(0, path.rfind('/'));
        if (path.empty()) path = "/";
      }
    } else if (has_controller(l.controllers, "cpu")) {
      // v1: the cpu hierarchy is mounted as cpu,cpuacct or cpu; inside a container the path may already be the root.
      for (const char* mount : {"/cpu,cpuacct", "/cpu", "/cpuacct,cpu"}) {
        consider(quota_v1(root + mount + (l.path == "/" ? "" : l.path)));
        consider(quota_v1(root + mount));
      }
    }
  }
  return best;
}

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? n : 1;
}

}  // namespace tern
