// runtime/config.cc: Config: the environment (TERN_*), flag parsers, default_procs, resolved_poller.
#include "runtime/config.h"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "netpoll/netpoll.h"
#include "runtime/cgroup.h"
#include "scheduler/sched.h"

namespace tern {
namespace {
// Smallest stack tern accepts: the switch frame, the fiber entry and a few calls into libc need this much.
constexpr size_t kMinStackSize = 16 << 10;
// Largest: 1 GiB of address space per fiber is already absurd; larger is surely a typo.
constexpr size_t kMaxStackSize = size_t{1} << 30;

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// A switch from the environment: on/1 or off/0.
Result<bool> parse_on_off(const char* name, const std::string& s) {
  if (s == "on" || s == "1") return true;
  if (s == "off" || s == "0") return false;
  return make_error(std::string(name) + ": must be on or off, not '" + s + "'");
}
}  // namespace

Result<int> parse_procs(const std::string& s) {
  auto bad = [&s] {
    return make_error("procs must be 'auto' or an integer from 1 to " + std::to_string(sched::kMaxProcs) + ", not '" +
                      s + "'");
  };
  if (s == "auto" || s == "0") return 0;
  if (s.empty() || s.size() > 6) return bad();
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
  int n = std::stoi(s);
  if (n < 1 || n > sched::kMaxProcs) return bad();
  return n;
}

Result<size_t> parse_size(const std::string& s) {
  size_t i = 0;
  unsigned long long v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (v > std::numeric_limits<unsigned long long>::max() / 10) return make_error("size too large: '" + s + "'");
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
    i++;
  }
  if (i == 0) return make_error("size must be a number with an optional k/m/g suffix, not '" + s + "'");
  std::string suffix = s.substr(i);
  unsigned long long mult = 1;
  if (suffix == "k" || suffix == "K" || suffix == "KiB") {
    mult = 1ull << 10;
  } else if (suffix == "m" || suffix == "M" || suffix == "MiB") {
    mult = 1ull << 20;
  } else if (suffix == "g" || suffix == "G" || suffix == "GiB") {
    mult = 1ull << 30;
  } else if (!suffix.empty()) {
    return make_error("size must be a number with an optional k/m/g suffix, not '" + s + "'");
  }
  return static_cast<size_t>(v * mult);
}

int Config::default_procs() {
  const CpuLimits lim = discover_cpu_limits();
  int n = std::max(1, lim.cpus);  // min(cpuset, affinity)
  // ceil(quota), the quota clamped to n first so that a huge one cannot overflow the int.
  if (lim.quota_ok && lim.has_quota()) n = std::max(1, static_cast<int>(std::ceil(std::min(lim.quota_cores, 1.0 * n))));
  return n;
}

Result<Config> Config::from_env() {
  Config c;
  if (const char* v = std::getenv("TERN_PROCS"); v != nullptr && *v != '\0') {
    auto r = parse_procs(v);
    if (!r) return r.error().wrap("TERN_PROCS");
    c.procs = *r;
  }
  if (const char* v = std::getenv("TERN_STACK_SIZE"); v != nullptr && *v != '\0') {
    auto r = parse_size(v);
    if (!r) return r.error().wrap("TERN_STACK_SIZE");
    if (*r < kMinStackSize || *r > kMaxStackSize)
      return make_error("TERN_STACK_SIZE: must be between 16k and 1g, not '" + std::string(v) + "'");
    c.stack_size = *r;
  }
  if (const char* v = std::getenv("TERN_POLLER"); v != nullptr && *v != '\0') {
    std::string s = v;
    if (s != "auto" && s != "uring" && s != "epoll")
      return make_error("TERN_POLLER: must be auto, uring or epoll, not '" + s + "'");
    c.poller = s;
  }
  if (const char* v = std::getenv("TERN_NUMA"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_NUMA", v);
    if (!r) return r.error();
    c.numa = *r;
  }
  if (const char* v = std::getenv("TERN_URING_PARK"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_URING_PARK", v);
    if (!r) return r.error();
    c.uring_park = *r;
  }
  return c;
}

Config::PollerResolution Config::resolved_poller() const {
  PollerResolution r;
  if (poller != "epoll") r.uring_unavailable = netpoll::uring_unavailable_reason();
  if (poller == "epoll" || (poller == "auto" && !r.uring_unavailable.empty())) {
    r.backend = "epoll";
  } else if (r.uring_unavailable.empty()) {
    r.backend = "uring";
  }
  return r;
}

std::string Config::to_json() const {
  std::string out = "{";
  out += "\"procs\": " + std::to_string(resolved_procs());
  out += ", \"procs_setting\": \"" + (procs == 0 ? std::string("auto") : std::to_string(procs)) + "\"";
  out += ", \"stack_size\": " + std::to_string(stack_size);
  out += ", \"poller\": \"" + json_escape(poller) + "\"";
  out += ", \"numa\": " + std::string(numa ? "true" : "false");
  out += ", \"uring_park\": " + std::string(uring_park ? "true" : "false");
  out += "}";
  return out;
}

}  // namespace tern
