// runtime/config.cc: Config: the environment (TERN_*), flag parsers, default_procs, resolved_poller.
#include "runtime/config.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <utility>

#include "alloc/arena.h"
#include "netpoll/netpoll.h"
#include "runtime/cgroup.h"
#include "runtime/controller/policy.h"
#include "runtime/metrics/debug_server.h"
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

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string fmt_number(double x) {
  std::string out = std::to_string(x);
  while (out.size() > 1 && out.back() == '0') out.pop_back();
  if (!out.empty() && out.back() == '.') out.pop_back();
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

Result<int64_t> parse_duration_ns(const std::string& s) {
  auto bad = [&s] {
    return make_error("duration must be a positive number with a unit ns, us, ms or s (a bare number is ms), not '" +
                      s + "'");
  };
  if (s.empty() || s.size() > 32) return bad();
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) i++;
  if (i == 0) return bad();
  char* end = nullptr;
  const std::string num = s.substr(0, i);
  const double v = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(v) || v <= 0) return bad();
  const std::string unit = s.substr(i);
  double mult = 0;
  if (unit == "ns") {
    mult = 1;
  } else if (unit == "us") {
    mult = 1e3;
  } else if (unit == "ms" || unit.empty()) {
    mult = 1e6;
  } else if (unit == "s") {
    mult = 1e9;
  } else {
    return bad();
  }
  const double ns = v * mult;
  // A day is far past any interval tern takes; beyond it is a typo (and near int64's end, an overflow).
  if (ns < 1 || ns > 86'400e9) return bad();
  return static_cast<int64_t>(ns);
}

Result<double> parse_number(const std::string& name, const std::string& s, double lo, double hi) {
  char* end = nullptr;
  const double v = s.empty() ? kNaN : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v) || v < lo || v > hi) {
    return make_error(name + ": must be a number from " + fmt_number(lo) + " to " + fmt_number(hi) + ", not '" + s +
                      "'");
  }
  return v;
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
  if (const char* v = std::getenv("TERN_NODE_ARENAS"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_NODE_ARENAS", v);
    if (!r) return r.error();
    c.node_arenas = *r;
  }
  auto env = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  if (auto v = env("TERN_POLICY")) c.policy = *v;
  if (auto v = env("TERN_SHADOW_POLICY")) c.shadow_policy = *v;
  if (auto v = env("TERN_PROCS_MIN")) {
    auto r = parse_procs(*v);
    if (!r || *r == 0)
      return make_error("TERN_PROCS_MIN: must be an integer from 1 to " + std::to_string(sched::kMaxProcs) + ", not '" +
                        *v + "'");
    c.procs_min = *r;
  }
  if (auto v = env("TERN_PROCS_MAX")) {
    auto r = parse_procs(*v);
    if (!r) return r.error().wrap("TERN_PROCS_MAX");
    c.procs_max = *r;
  }
  for (auto [name, field] : {std::pair{"TERN_MAX_THREADS", &c.max_threads},
                             std::pair{"TERN_MAX_BLOCKING_THREADS", &c.max_blocking_threads}}) {
    if (auto v = env(name)) {
      auto r = parse_number(name, *v, 1, 1'000'000);
      if (!r || *r != std::floor(*r))
        return make_error(std::string(name) + ": must be an integer from 1 to 1000000, not '" + *v + "'");
      *field = static_cast<int>(*r);
    }
  }
  if (auto v = env("TERN_STALL_MS")) {
    auto r = parse_number("TERN_STALL_MS", *v, 0, 3'600'000);
    if (!r) return r.error();
    c.stall_ms = static_cast<int64_t>(*r);
  }
  if (auto v = env("TERN_CONTROLLER_INTERVAL")) {
    auto r = parse_duration_ns(*v);
    if (!r) return r.error().wrap("TERN_CONTROLLER_INTERVAL");
    c.controller_interval_ns = *r;
  }
  if (auto v = env("TERN_QUOTA_ROUNDING")) c.quota_rounding = *v;
  if (auto v = env("TERN_QUOTA_RESERVE")) {
    auto r = parse_number("TERN_QUOTA_RESERVE", *v, 0, sched::kMaxProcs);
    if (!r) return r.error();
    c.quota_reserve = *r;
  }
  if (auto v = env("TERN_ROLLBACK_DROP")) {
    auto r = parse_number("TERN_ROLLBACK_DROP", *v, 0.001, 1);
    if (!r) return r.error();
    c.rollback_drop = *r;
  }
  if (auto v = env("TERN_LATENCY_TARGET")) {
    auto r = parse_duration_ns(*v);
    if (!r) return r.error().wrap("TERN_LATENCY_TARGET");
    c.latency_target_s = static_cast<double>(*r) * 1e-9;
  }
  if (auto v = env("TERN_SCHEDTRACE")) {
    auto r = parse_duration_ns(*v);
    if (!r) return r.error().wrap("TERN_SCHEDTRACE");
    c.schedtrace_ms = std::max<int64_t>(1, *r / 1'000'000);
  }
  if (auto v = env("TERN_TRACE")) c.trace = *v;  // the path is checked by opening it, when the runtime starts
  if (auto v = env("TERN_DEBUG")) {
    std::string item;
    std::string list = *v + ",";
    for (char ch : list) {
      if (ch != ',') {
        item += ch;
        continue;
      }
      if (item == "controller") {
        c.debug_controller = true;
      } else if (!item.empty()) {
        return make_error("TERN_DEBUG: unknown subsystem '" + item + "' (known: controller)");
      }
      item.clear();
    }
  }
  if (auto v = env("TERN_METRICS")) c.metrics = *v;
  if (auto v = env("TERN_ADMIN_TOKEN")) c.admin_token = *v;
  if (auto e = c.validate(); !e) return e.error();
  return c;
}

Result<void> Config::validate() const {
  if (name.empty() || name.size() > kMaxNameBytes || !std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      }))
    return make_error("runtime name '" + name + "' must be 1 to " + std::to_string(kMaxNameBytes) +
                      " letters, digits, '_', '-' or '.'");
  controller::PolicyConfig pc;
  if (auto p = controller::make_policy(resolved_policy(), pc); !p) return p.error().wrap("policy");
  if (!shadow_policy.empty()) {
    if (auto p = controller::make_policy(shadow_policy, pc); !p) return p.error().wrap("shadow policy");
  }
  if (auto r = controller::parse_rounding(quota_rounding); !r) return r.error().wrap("quota rounding");
  if (procs_min < 1 || procs_min > sched::kMaxProcs) return make_error("procs-min must be from 1 to 1024");
  if (procs_max < 0 || procs_max > sched::kMaxProcs) return make_error("procs-max must be from 0 (auto) to 1024");
  if (procs_max != 0 && procs_max < procs_min) return make_error("procs-max must not be below procs-min");
  if (controller_interval_ns < 1'000'000) return make_error("controller interval must be at least 1ms");
  if (max_threads < 2 || max_threads > 1'000'000) return make_error("max threads must be from 2 to 1000000");
  if (stall_ms < 0) return make_error("stall ms must be >= 0 (0: off)");
  if (max_blocking_threads < 1 || max_blocking_threads > 1'000'000)
    return make_error("max blocking threads must be from 1 to 1000000");
  if (!std::isfinite(quota_reserve) || quota_reserve < 0) return make_error("quota reserve must be >= 0 cores");
  if (!std::isfinite(rollback_drop) || rollback_drop <= 0 || rollback_drop > 1)
    return make_error("rollback drop must be a fraction in (0, 1]");
  if (!std::isfinite(latency_target_s) || latency_target_s <= 0) return make_error("latency target must be > 0");
  if (!metrics.empty()) {
    if (auto m = metrics::DebugServer::parse_listen(metrics); !m) return m.error();
  }
  return {};
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
  out += "\"name\": \"" + json_escape(name) + "\"";
  out += ", \"procs\": " + std::to_string(resolved_procs());
  out += ", \"procs_setting\": \"" + (procs == 0 ? std::string("auto") : std::to_string(procs)) + "\"";
  out += ", \"stack_size\": " + std::to_string(stack_size);
  out += ", \"poller\": \"" + json_escape(poller) + "\"";
  out += ", \"numa\": " + std::string(numa ? "true" : "false");
  out += ", \"uring_park\": " + std::string(uring_park ? "true" : "false");
  out += ", \"node_arenas\": " + std::string(node_arenas ? "true" : "false");
  out += ", \"allocator\": \"" + std::string(tern::alloc::heap_name()) + "\"";  // what node_arenas allocate with
  out += ", \"policy\": \"" + json_escape(resolved_policy()) + "\"";
  out += ", \"shadow_policy\": \"" + json_escape(shadow_policy) + "\"";
  out += ", \"procs_min\": " + std::to_string(procs_min);
  out += ", \"procs_max_setting\": " + std::to_string(procs_max);
  out += ", \"controller_interval_ms\": " + fmt_number(static_cast<double>(controller_interval_ns) / 1e6);
  out += ", \"quota_rounding\": \"" + json_escape(quota_rounding) + "\"";
  out += ", \"quota_reserve\": " + fmt_number(quota_reserve);
  out += ", \"rollback_drop\": " + fmt_number(rollback_drop);
  out += ", \"latency_target_ms\": " + fmt_number(latency_target_s * 1e3);
  out += ", \"metrics\": \"" + json_escape(metrics) + "\"";  // the admin token is never printed
  out += ", \"max_threads\": " + std::to_string(max_threads);
  out += ", \"stall_ms\": " + std::to_string(stall_ms);
  out += ", \"max_blocking_threads\": " + std::to_string(max_blocking_threads);
  out += ", \"admin_token_set\": " + std::string(admin_token.empty() ? "false" : "true");
  // The limits the default came from, and where each was read.
  const CpuLimits lim = discover_cpu_limits(fs_root);
  out += ", \"limits\": {\"quota_cores\": " + (lim.has_quota() ? fmt_number(lim.quota_cores) : std::string("null"));
  out += ", \"quota_source\": \"" + json_escape(lim.quota_source) + "\"";
  out += ", \"cpuset_cpus\": " + std::to_string(lim.cpuset_cpus);
  out += ", \"cpuset_source\": \"" + json_escape(lim.cpuset_source) + "\"";
  out += ", \"affinity_cpus\": " + std::to_string(lim.affinity_cpus);
  out += ", \"cpus\": " + std::to_string(lim.cpus);
  out += ", \"procs_from\": \"" +
         std::string(procs > 0                                                  ? "explicit"
                     : lim.has_quota() && std::ceil(lim.quota_cores) < lim.cpus ? "quota"
                                                                                : "cpus") +
         "\"}";
  out += "}";
  return out;
}

}  // namespace tern
