// tools/capacity/machine.cc: the formula's inputs read from this machine (see machine.h).
#include "tools/capacity/machine.h"

#include <dirent.h>
#include <fmt/core.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/cgroup.h"

namespace tern::capacity {
namespace {

std::string root_path(const std::string& fs_root, const std::string& path) {
  std::string r = fs_root;
  while (!r.empty() && r.back() == '/') r.pop_back();
  return r + path;
}

// The whole of a small file, or false.
bool slurp(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

// A non-negative decimal integer, the whole of s after trimming; false otherwise.
bool parse_count(std::string s, double* out) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (s.empty() || s.size() > 19) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  *out = std::strtod(s.c_str(), nullptr);
  return true;
}

}  // namespace

Input machine_cores(const std::string& fs_root, std::vector<std::string>* problems) {
  const CpuLimits l = discover_cpu_limits(fs_root);
  for (const auto& e : l.errors) problems->push_back("cores: " + e.message);
  if (l.cpus <= 0 && !l.has_quota()) return {};
  if (l.has_quota() && (l.cpus <= 0 || l.quota_cores < l.cpus))
    return {l.quota_cores, fmt::format("cgroup CPU quota ({})", l.quota_source)};
  if (l.cpuset_cpus > 0 && l.cpuset_cpus == l.cpus)
    return {double(l.cpus), fmt::format("cpuset ({})", l.cpuset_source)};
  return {double(l.cpus), "CPU affinity (sched_getaffinity)"};
}

Input machine_memory(const std::string& fs_root, std::vector<std::string>* problems) {
  const MemoryLimit m = CgroupDiscovery(fs_root).memory_limit();
  for (const auto& e : m.errors) problems->push_back("memory: " + e.message);
  std::string text;
  const std::string meminfo = root_path(fs_root, "/proc/meminfo");
  double available = NAN;
  if (slurp(meminfo, &text)) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("MemAvailable:", 0) != 0) continue;
      std::istringstream ls(line.substr(13));
      double kb = NAN;
      std::string unit;
      if (ls >> kb >> unit && unit == "kB" && std::isfinite(kb) && kb > 0) {
        available = kb * 1024;
      } else {
        problems->push_back("memory: " + meminfo + ": MemAvailable line \"" + line + "\" does not parse");
      }
    }
  } else {
    problems->push_back("memory: " + meminfo + ": cannot read");
  }
  // The cgroup's limit binds unless the machine has less free than it.
  if (m.has_limit() && !(std::isfinite(available) && available < m.bytes))
    return {m.bytes, fmt::format("cgroup memory limit ({})", m.source)};
  if (std::isfinite(available)) return {available, meminfo + " MemAvailable"};
  return {};
}

Input machine_fds(const std::string& fs_root, std::vector<std::string>* problems) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    problems->push_back(std::string("fds: getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
    return {};
  }
  double soft = rl.rlim_cur == RLIM_INFINITY ? INFINITY : static_cast<double>(rl.rlim_cur);
  const double hard = rl.rlim_max == RLIM_INFINITY ? INFINITY : static_cast<double>(rl.rlim_max);
  Input out(soft, fmt::format("RLIMIT_NOFILE soft limit (hard {})", hard));
  std::string text;
  const std::string file_max = root_path(fs_root, "/proc/sys/fs/file-max");
  double fm = NAN;
  if (!slurp(file_max, &text)) {
    problems->push_back("fds: " + file_max + ": cannot read");
  } else if (!parse_count(text, &fm)) {
    problems->push_back("fds: " + file_max + ": \"" + text.substr(0, 40) + "\" is not a count");
  } else if (fm < out.value) {
    out = Input(fm, file_max);
  }
  if (!std::isfinite(out.value)) return {};
  return out;
}

Input machine_bandwidth(const std::string& fs_root, std::vector<std::string>* problems) {
  const std::string net = root_path(fs_root, "/sys/class/net");
  DIR* d = opendir(net.c_str());
  if (d == nullptr) {
    problems->push_back("bandwidth: " + net + ": cannot list");
    return {};
  }
  Input best;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == ".." || name == "lo") continue;
    const std::string dir = net + "/" + name;
    // Physical interfaces have a device link; veth, bridges and tunnels report speeds that limit nothing.
    if (access((dir + "/device").c_str(), F_OK) != 0) continue;
    std::string state;
    if (!slurp(dir + "/operstate", &state) || state.rfind("up", 0) != 0) continue;
    std::string speed;
    double mbps = NAN;
    if (!slurp(dir + "/speed", &speed)) continue;  // EINVAL while the link has no speed
    if (speed.rfind("-1", 0) == 0) {
      problems->push_back("bandwidth: " + dir +
                          "/speed is -1: the driver does not know (a virtual NIC); give "
                          "--bandwidth-mbps");
      continue;
    }
    if (!parse_count(speed, &mbps) || mbps <= 0) {
      problems->push_back("bandwidth: " + dir + "/speed: \"" + speed.substr(0, 20) + "\" is not a speed");
      continue;
    }
    if (!best.known || mbps * 1e6 > best.value) best = Input(mbps * 1e6, dir + "/speed");
  }
  closedir(d);
  return best;
}

}  // namespace tern::capacity
