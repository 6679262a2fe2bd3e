// tools/echo/main.cc: tern-echo, the bundled HTTP/1.1 and TCP echo server.
//
//   tern-echo                                    # HTTP on 127.0.0.1:8080, processors and poller from the machine
//   tern-echo --listen 0.0.0.0:9000 --mode tcp   # echo bytes back
//   tern-echo --procs 2 --poller epoll --dry-run # print the resolved configuration as JSON and exit
//   tern-echo --cpu-pool 1                       # /work burns its CPU on a second runtime ("cpu") of 1 processor
//   tern-echo --buffers alloc                    # each request's read buffer from new/delete, not tern::Pool
//
// Precedence: flags > environment (tern::Config::from_env(): TERN_PROCS, TERN_POLLER, ...) > defaults.
#include <signal.h>
#include <unistd.h>

#include <fmt/core.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "runtime/cgroup.h"
#include "runtime/config.h"
#include "runtime/limiter.h"
#include "runtime/runtime.h"
#include "runtime/topology.h"
#include "tools/echo/echo_server.h"

namespace {

// The default address: loopback, so that starting the demo server never exposes it to the network.
constexpr const char* kDefaultListen = "127.0.0.1:8080";
// The CPU pool's runtime name: its metrics carry runtime="cpu" beside the main runtime's runtime="main".
constexpr const char* kCpuPoolName = "cpu";
// Exit status for bad flags or environment (CLI11 uses its own codes for malformed command lines).
constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  auto env = tern::Config::from_env();
  if (!env) {
    fmt::print(stderr, "tern-echo: {}\n", env.error().message());
    return kExitUsage;
  }
  tern::Config cfg = *env;

  CLI::App app{"tern-echo: an HTTP/1.1 and TCP echo server on the tern fiber runtime"};
  std::string listen = kDefaultListen;
  std::string mode = "http";
  std::string procs;
  std::string poller;
  std::string numa;
  std::string max_body;
  std::string max_buffer_memory = "auto";
  std::string cpu_pool;
  bool dry_run = false;
  std::string buffers = "pool";
  std::string metrics_listen, admin_token;
  std::string max_threads;
  // Connection limits and the drain (tools/echo/echo_server.h, ServerOptions).
  std::string header_timeout, read_timeout, idle_timeout, write_timeout, drain_timeout, max_conns, max_inflight;
  // The controller's settings (runtime/config.h has each one's environment variable and default).
  std::string policy, shadow_policy, procs_min, procs_max, interval, rounding, reserve, rollback_drop, latency_target;
  app.add_option("--listen", listen, "HOST:PORT to listen on (IPv4 or [IPv6])")->capture_default_str();
  app.add_option("--mode", mode, "http: the HTTP endpoints; tcp: echo bytes back")
      ->check(CLI::IsMember({"http", "tcp"}))
      ->capture_default_str();
  app.add_option("--procs", procs, "processors: auto or N (default: TERN_PROCS, else auto)");
  app.add_option("--poller", poller, "auto, uring or epoll (default: TERN_POLLER, else auto)")
      ->check(CLI::IsMember({"auto", "uring", "epoll"}));
  app.add_option("--numa", numa,
                 "NUMA placement of processors on CPUs: none, compact or scatter (default: TERN_NUMA, else " +
                     std::string(tern::Config::kDefaultNuma) + ")")
      ->check(CLI::IsMember({"none", "compact", "scatter"}));
  app.add_option("--max-body", max_body, "largest HTTP request body, bytes with optional k/m suffix (default 1M)");
  app.add_option("--max-buffer-memory", max_buffer_memory,
                 "bytes of large-request read buffers held at once over all connections; a request that would pass it "
                 "is answered 503 with Retry-After before its body is read: a size (k/m/g suffix), auto (a quarter of "
                 "the cgroup memory limit, else of the machine's memory; default) or off");
  app.add_option("--max-threads", max_threads,
                 "most OS threads running fibers, those in a blocking call (/block) included (default: "
                 "TERN_MAX_THREADS, else 10000)");
  CLI::Option* cpu_pool_flag =
      app.add_option("--cpu-pool", cpu_pool,
                     "run /work on a second runtime named cpu of N processors, so CPU bursts cannot starve /health and "
                     "I/O (default: off, /work runs in its connection's fiber)");
  app.add_option("--buffers", buffers,
                 "where each request's read buffer comes from: pool (tern::Pool, per processor) or alloc (new/delete)")
      ->check(CLI::IsMember({"pool", "alloc"}))
      ->capture_default_str();
  app.add_flag("--dry-run", dry_run, "print the resolved configuration and CPU limits as JSON and exit");
  app.add_option("--policy", policy,
                 "processor-count policy: static, quota, threshold, hill or latency (default: TERN_POLICY, else quota; "
                 "static with an explicit --procs)");
  app.add_option("--shadow-policy", shadow_policy, "a policy run on the same samples that applies nothing");
  app.add_option("--procs-min", procs_min, "fewest processors the controller sets (default 1)");
  app.add_option("--procs-max", procs_max,
                 "most processors the controller sets: auto (min of CPUs and the quota's ceiling) or N");
  app.add_option("--controller-interval", interval, "how often the controller samples (default 100ms)");
  app.add_option("--quota-rounding", rounding, "cores from a fractional CPU quota: ceil, floor or auto (default)")
      ->check(CLI::IsMember({"ceil", "floor", "auto"}));
  app.add_option("--quota-reserve", reserve, "cores of the quota left to others, e.g. 0.2 (default 0)");
  app.add_option("--rollback-drop", rollback_drop, "throughput drop after a change that reverts it (default 0.1)");
  app.add_option("--latency-target", latency_target, "the latency policy's scheduling-latency target (default 1ms)");
  app.add_option("--metrics", metrics_listen,
                 "HOST:PORT of the debug endpoint: /metrics, /debug/sched, admin routes (default: TERN_METRICS, "
                 "else off)");
  app.add_option("--admin-token", admin_token,
                 "token the debug endpoint's admin routes require (default: TERN_ADMIN_TOKEN; without one they "
                 "answer loopback peers only)");
  app.add_option("--header-timeout", header_timeout,
                 "a request's header block must arrive within this of its first byte, else 408 (default 10s; 0: none)");
  app.add_option("--read-timeout", read_timeout,
                 "a whole request must arrive within this of its first byte, else 408 (default 30s; 0: none)");
  app.add_option("--idle-timeout", idle_timeout,
                 "a kept-alive connection waiting this long for its next request is closed (default 60s; 0: none)");
  app.add_option("--write-timeout", write_timeout,
                 "an answer not written within this closes the connection (default 30s; 0: none)");
  app.add_option("--max-conns", max_conns,
                 "connections open at once beyond this are answered 503 and closed (default 0: no limit)");
  app.add_option("--max-inflight", max_inflight,
                 "requests in flight beyond this are answered 503 with Retry-After: N, or auto (an adaptive limit "
                 "from measured latency), or off (default)");
  app.add_option("--drain-timeout", drain_timeout,
                 "on SIGTERM or SIGINT: stop accepting, finish what is in flight and exit within this (default 10s)");
  CLI11_PARSE(app, argc, argv);

  tern::echo::ServerOptions opts;
  opts.listen = listen;
  opts.mode = mode == "tcp" ? tern::echo::Mode::kTcp : tern::echo::Mode::kHttp;
  opts.buffers = buffers == "alloc" ? tern::echo::Buffers::kAlloc : tern::echo::Buffers::kPool;
  if (!procs.empty()) {
    auto p = tern::parse_procs(procs);
    if (!p) {
      fmt::print(stderr, "tern-echo: --procs: {}\n", p.error().message());
      return kExitUsage;
    }
    cfg.procs = *p;
  }
  if (!poller.empty()) cfg.poller = poller;
  if (!numa.empty()) cfg.numa = numa;
  if (!policy.empty()) cfg.policy = policy;
  if (!shadow_policy.empty()) cfg.shadow_policy = shadow_policy;
  if (!rounding.empty()) cfg.quota_rounding = rounding;
  if (!metrics_listen.empty()) cfg.metrics = metrics_listen;
  if (!admin_token.empty()) cfg.admin_token = admin_token;
  // Each flag's parse error names the flag; Config::validate() then checks them together.
  auto bad_flag = [](const char* flag, const tern::Error& e) {
    fmt::print(stderr, "tern-echo: {}: {}\n", flag, e.message());
    return kExitUsage;
  };
  if (!procs_min.empty()) {
    auto p = tern::parse_procs(procs_min);
    if (!p || *p == 0) return bad_flag("--procs-min", p ? tern::make_error("must be at least 1") : p.error());
    cfg.procs_min = *p;
  }
  if (!procs_max.empty()) {
    auto p = tern::parse_procs(procs_max);
    if (!p) return bad_flag("--procs-max", p.error());
    cfg.procs_max = *p;
  }
  if (!max_threads.empty()) {
    auto r = tern::parse_number("threads", max_threads, 2, 1'000'000);
    if (!r || *r != static_cast<int>(*r))
      return bad_flag("--max-threads", r ? tern::make_error("must be an integer from 2 to 1000000") : r.error());
    cfg.max_threads = static_cast<int>(*r);
  }
  if (!interval.empty()) {
    auto d = tern::parse_duration_ns(interval);
    if (!d) return bad_flag("--controller-interval", d.error());
    cfg.controller_interval_ns = *d;
  }
  if (!reserve.empty()) {
    auto r = tern::parse_number("cores", reserve, 0, 1024);
    if (!r) return bad_flag("--quota-reserve", r.error());
    cfg.quota_reserve = *r;
  }
  if (!rollback_drop.empty()) {
    auto r = tern::parse_number("fraction", rollback_drop, 0.001, 1);
    if (!r) return bad_flag("--rollback-drop", r.error());
    cfg.rollback_drop = *r;
  }
  if (!latency_target.empty()) {
    auto d = tern::parse_duration_ns(latency_target);
    if (!d) return bad_flag("--latency-target", d.error());
    cfg.latency_target_s = static_cast<double>(*d) * 1e-9;
  }
  if (auto v = cfg.validate(); !v) {
    fmt::print(stderr, "tern-echo: {}\n", v.error().message());
    return kExitUsage;
  }
  // A duration flag: "0" (or "off") for none, else parse_duration_ns's forms.
  auto duration_flag = [&](const char* flag, const std::string& v, std::chrono::nanoseconds& out) {
    if (v.empty()) return true;
    if (v == "0" || v == "off") {
      out = std::chrono::nanoseconds(0);
      return true;
    }
    auto d = tern::parse_duration_ns(v);
    if (!d) {
      bad_flag(flag, d.error());
      return false;
    }
    out = std::chrono::nanoseconds(*d);
    return true;
  };
  if (!duration_flag("--header-timeout", header_timeout, opts.header_timeout) ||
      !duration_flag("--read-timeout", read_timeout, opts.read_timeout) ||
      !duration_flag("--idle-timeout", idle_timeout, opts.idle_timeout) ||
      !duration_flag("--write-timeout", write_timeout, opts.write_timeout) ||
      !duration_flag("--drain-timeout", drain_timeout, opts.drain_timeout)) {
    return kExitUsage;
  }
  if (opts.drain_timeout.count() == 0) {
    return bad_flag("--drain-timeout", tern::make_error("must be a positive duration (the drain needs time)"));
  }
  if (!max_conns.empty()) {
    auto r = tern::parse_number("connections", max_conns, 0, 1e9);
    if (!r || *r != static_cast<double>(static_cast<size_t>(*r)))
      return bad_flag("--max-conns", r ? tern::make_error("must be a whole number, 0 for no limit") : r.error());
    opts.max_conns = static_cast<size_t>(*r);
  }
  // --max-inflight: off, auto, or N.
  std::optional<tern::Limiter> limiter;
  if (!max_inflight.empty() && max_inflight != "off") {
    if (max_inflight == "auto") {
      limiter.emplace(tern::Limiter::adaptive());
    } else {
      auto r = tern::parse_number("requests", max_inflight, 1, 1e9);
      if (!r || *r != static_cast<double>(static_cast<int>(*r)))
        return bad_flag("--max-inflight",
                        r ? tern::make_error("must be auto, off or a whole number from 1") : r.error());
      limiter.emplace(tern::Limiter::fixed(static_cast<int>(*r)));
    }
    opts.limiter = &*limiter;
  }
  if (!max_body.empty()) {
    auto b = tern::parse_size(max_body);
    if (!b) {
      fmt::print(stderr, "tern-echo: --max-body: {}\n", b.error().message());
      return kExitUsage;
    }
    opts.limits.max_body_bytes = *b;
  }
  // --max-buffer-memory. Never below one request of the largest size allowed, which could otherwise never be read.
  std::optional<tern::echo::BufferBudget> budget;
  std::string budget_source;
  if (max_buffer_memory != "off") {
    const size_t floor = opts.limits.max_header_bytes + opts.limits.max_body_bytes;
    size_t bytes = 0;
    if (max_buffer_memory == "auto") {
      tern::CgroupDiscovery cgroups;
      const tern::MemoryLimit ml = cgroups.memory_limit();
      for (const tern::CgroupProblem& p : ml.errors)
        fmt::print(stderr, "tern-echo: --max-buffer-memory auto: {} ({}); using the machine's memory\n", p.message,
                   p.reason);
      double memory = 0;
      if (ml.ok && ml.has_limit()) {
        memory = ml.bytes;
        budget_source = ml.source;
      } else {
        memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
        budget_source = "physical memory";
      }
      bytes = std::max(static_cast<size_t>(memory / 4), floor);
    } else {
      auto b = tern::parse_size(max_buffer_memory);
      if (!b || *b < floor) {
        return bad_flag("--max-buffer-memory",
                        b ? tern::make_error(fmt::format("must be at least the largest request allowed ({} bytes: "
                                                         "--max-body and the header limit), auto or off",
                                                         floor))
                          : b.error());
      }
      bytes = *b;
      budget_source = "--max-buffer-memory";
    }
    budget.emplace(bytes);
    opts.buffer_budget = &*budget;
  }
  // The CPU pool: its own runtime, named for its metrics' runtime="cpu" label, with a static processor count (an
  // explicit count is static, as an explicit --procs is).
  std::optional<tern::Config> pool_cfg;
  if (*cpu_pool_flag) {  // given, even empty: an empty count is an error, not "off"
    auto p = tern::parse_procs(cpu_pool);
    if (!p || *p == 0) {  // parse_procs also takes "auto", which a pool's fixed size has no use for
      return bad_flag("--cpu-pool",
                      tern::make_error("must be a processor count from 1 to 1024, not '" + cpu_pool + "'"));
    }
    if (opts.mode == tern::echo::Mode::kTcp) {
      return bad_flag("--cpu-pool", tern::make_error("the pool runs /work, which only --mode http has"));
    }
    pool_cfg = tern::Config{};
    pool_cfg->name = kCpuPoolName;
    pool_cfg->procs = *p;
    pool_cfg->poller = cfg.poller;
    pool_cfg->stack_size = cfg.stack_size;
    if (auto v = pool_cfg->validate(); !v) return bad_flag("--cpu-pool", v.error());
  }
  auto addr = tern::echo::parse_listen_address(opts.listen);
  if (!addr) {
    fmt::print(stderr, "tern-echo: --listen: {}\n", addr.error().message());
    return kExitUsage;
  }

  if (dry_run) {
    nlohmann::json j = nlohmann::json::parse(cfg.to_json());
    j["listen"] = opts.listen;
    j["mode"] = mode;
    j["max_body"] = opts.limits.max_body_bytes;
    j["max_header"] = opts.limits.max_header_bytes;
    auto ms = [](std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; };
    j["header_timeout_ms"] = ms(opts.header_timeout);
    j["read_timeout_ms"] = ms(opts.read_timeout);
    j["idle_timeout_ms"] = ms(opts.idle_timeout);
    j["write_timeout_ms"] = ms(opts.write_timeout);
    j["drain_timeout_ms"] = ms(opts.drain_timeout);
    j["max_conns"] = opts.max_conns;
    j["max_buffer_memory"] = budget ? nlohmann::json(budget->limit()) : nlohmann::json(nullptr);
    if (budget) j["max_buffer_memory_source"] = budget_source;
    if (limiter) {
      j["max_inflight"] = limiter->is_adaptive() ? nlohmann::json("auto") : nlohmann::json(limiter->limit());
    } else {
      j["max_inflight"] = nullptr;
    }
    j["buffers"] = buffers;
    // What the poller setting resolves to on this machine, as procs does (auto is epoll: netpoll/netpoll.h).
    const tern::Config::PollerResolution poller = cfg.resolved_poller();
    if (!poller.backend.empty()) {
      j["poller_backend"] = poller.backend;
    } else {
      j["poller_backend"] = nullptr;  // "uring" asked for where it cannot work: starting would fail with the reason
    }
    if (!poller.uring_unavailable.empty()) j["uring_unavailable"] = poller.uring_unavailable;
    // Where each P would run: its processing unit (the OS's CPU number) and NUMA node; null PUs under --numa none.
    // More Ps than PUs wrap around (sched::SchedOptions::placement).
    if (auto placement = tern::machine_placement(cfg.numa); placement) {
      nlohmann::json ps = nlohmann::json::array();
      for (int i = 0; i < cfg.resolved_procs(); i++) {
        if (placement->empty()) {
          ps.push_back({{"p", i}, {"pu", nullptr}, {"node", 0}});
        } else {
          const auto& sl = (*placement)[static_cast<size_t>(i) % placement->size()];
          ps.push_back({{"p", i}, {"pu", sl.pu}, {"node", sl.node}});
        }
      }
      j["placement"] = std::move(ps);
    } else {
      j["placement"] = nullptr;
      j["placement_error"] = placement.error().message();
    }
    if (pool_cfg) {
      j["cpu_pool"] = {{"name", pool_cfg->name}, {"procs", pool_cfg->procs}, {"routes", {"/work"}}};
    } else {
      j["cpu_pool"] = nullptr;
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }

  // Requests are counted as application metrics only while someone can read them.
  if (!cfg.metrics.empty()) {
    auto m = tern::echo::register_app_metrics();
    if (!m) {
      fmt::print(stderr, "tern-echo: {}\n", m.error().message());
      return 1;
    }
    opts.metrics = *m;
  }
  // A peer that resets a connection mid-write must cost an error value, not the process.
  signal(SIGPIPE, SIG_IGN);
  auto created = tern::Runtime::create(cfg);
  if (!created) {
    fmt::print(stderr, "tern-echo: {}\n", created.error().message());
    return kExitUsage;
  }
  tern::Runtime& rt = **created;
  // Created after rt so that it is destroyed first: a pool fiber that finishes readies its waiter on rt, so rt must
  // outlive it (tern::go_on).
  std::unique_ptr<tern::Runtime> pool;
  if (pool_cfg) {
    auto p = tern::Runtime::create(*pool_cfg);
    if (!p) {
      fmt::print(stderr, "tern-echo: --cpu-pool: {}\n", p.error().message());
      return kExitUsage;
    }
    pool = std::move(*p);
    opts.cpu_pool = pool.get();
  }
  int status = 0;
  bool clean = true;
  rt.run([&] {
    tern::Result<bool> r = tern::echo::serve(opts);
    if (!r) {
      fmt::print(stderr, "tern-echo: {}\n", r.error().message());
      status = 1;
      return;
    }
    clean = *r;
  });
  if (!clean) {
    // Drained by the deadline with requests still running (a long /sleep, say): exit now, as promised, rather than
    // wait for them while the runtimes shut down.
    std::fflush(nullptr);
    std::_Exit(status);
  }
  return status;
}
