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
#include "runtime/fd_limit.h"
#include "runtime/metrics/debug_server.h"
#include "runtime/topology.h"
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

}  // namespace

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
    auto r = parse_numa_policy(v);
    if (!r) return r.error().wrap("TERN_NUMA");
    c.numa = v;
  }
  if (const char* v = std::getenv("TERN_URING_PARK"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_URING_PARK", v);
    if (!r) return r.error();
    c.uring_park = *r;
  }
  if (const char* v = std::getenv("TERN_URING_DEFER"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_URING_DEFER", v);
    if (!r) return r.error();
    c.uring_defer = *r;
  }
  if (const char* v = std::getenv("TERN_RAISE_FD_LIMIT"); v != nullptr && *v != '\0') {
    auto r = parse_on_off("TERN_RAISE_FD_LIMIT", v);
    if (!r) return r.error();
    c.raise_fd_limit = *r;
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
  if (auto r = parse_numa_policy(numa); !r) return r.error().wrap("numa");
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
  if (poller == "epoll" || poller == "auto") {
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
  out += ", \"numa\": \"" + json_escape(numa) + "\"";
  out += ", \"uring_park\": " + std::string(uring_park ? "true" : "false");
  out += ", \"uring_defer\": " + std::string(uring_defer ? "true" : "false");
  out += ", \"node_arenas\": " + std::string(node_arenas ? "true" : "false");
  out += ", \"allocator\": \"" + std::string(tern::alloc::heap_name()) + "\"";  // what node_arenas allocate with
  out += ", \"policy\": \"" + json_escape(resolved_policy()) + "\"";
  out += ", \"shadow_policy\": \"" + json_escape(shadow_policy) + "\"";
  out += ", \"procs_min\": " + std::to_string(procs_min);
  out += ", \"procs_max_setting\": " + std::to_string(procs_max);
  out += ", \"controller_interval_ms\": " + detail::format_number(static_cast<double>(controller_interval_ns) / 1e6);
  out += ", \"quota_rounding\": \"" + json_escape(quota_rounding) + "\"";
  out += ", \"quota_reserve\": " + detail::format_number(quota_reserve);
  out += ", \"rollback_drop\": " + detail::format_number(rollback_drop);
  out += ", \"latency_target_ms\": " + detail::format_number(latency_target_s * 1e3);
  out += ", \"metrics\": \"" + json_escape(metrics) + "\"";  // the admin token is never printed
  out += ", \"max_threads\": " + std::to_string(max_threads);
  out += ", \"stall_ms\": " + std::to_string(stall_ms);
  out += ", \"max_blocking_threads\": " + std::to_string(max_blocking_threads);
  out += ", \"raise_fd_limit\": " + std::string(raise_fd_limit ? "true" : "false");
  out += ", \"admin_token_set\": " + std::string(admin_token.empty() ? "false" : "true");
  // The limits the default came from, and where each was read.
  const CpuLimits lim = discover_cpu_limits(fs_root);
  out += ", \"limits\": {\"quota_cores\": " +
         (lim.has_quota() ? detail::format_number(lim.quota_cores) : std::string("null"));
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
  // The descriptor limit now, and what a runtime's start makes the soft one (raise_fd_limit; null: unlimited).
  const FdLimit fd = current_fd_limit();
  auto limit = [](uint64_t v) { return v == UINT64_MAX ? std::string("null") : std::to_string(v); };
  out += ", \"fd_limit\": {\"soft\": " + limit(fd.soft) + ", \"hard\": " + limit(fd.hard) +
         ", \"soft_at_start\": " + limit(raise_fd_limit && fd.soft < fd.hard ? fd.hard : fd.soft) + "}";
  out += "}";
  return out;
}

}  // namespace tern
