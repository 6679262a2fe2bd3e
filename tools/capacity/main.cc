// tools/capacity/main.cc: tern-capacity, the concurrency a server can carry, term by term, from this machine and
// (given) a running server.
//
//   tern-capacity                                        # the machine's terms; K_cpu and the fd overhead published
//   tern-capacity --from 127.0.0.1:9100                  # memory per fiber and fds per connection from its metrics
//   tern-capacity --probe http://127.0.0.1:8080/mix?cpu_us=100&sleep_ms=5 --pid 1234   # R0, X_max, the knee
//   tern-capacity --json ...                             # {"terms": [...], "knee": {...}, ...}
//
// Every number says where it came from (a cgroup file, a flag, a published constant, a measurement). Flags override
// what the machine shows. A flag that is not a finite number in range is an error naming it (exit 2).
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/config.h"
#include "runtime/net/address.h"
#include "runtime/runtime.h"
#include "tools/capacity/conn_cost.h"
#include "tools/capacity/formula.h"
#include "tools/capacity/machine.h"
#include "tools/capacity/server.h"
#include "tools/load/load.h"
#include "tools/top/exposition.h"
#include "tools/top/http_get.h"

namespace {

constexpr int kExitUsage = 2;
// The published constants, used only where nothing better is known: the low end of each range.
constexpr double kPublishedKCpu = 2, kPublishedOverhead = 3;

struct Flag {
  const char* name;
  std::string text;
  double scale;  // to the formula's unit
  tern::capacity::Input* target;
};

nlohmann::json input_json(const tern::capacity::Input& in) {
  return {{"value", in.value}, {"source", in.source}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tern-capacity: how many concurrent requests a server can carry here, and which limit binds"};
  std::string from, probe_url, fs_root = "/";
  int pid = 0, hold = 128;
  bool json = false;
  tern::capacity::Inputs in;
  std::vector<Flag> flags = {
      {"--cores", "", 1, &in.cores},
      {"--k-cpu", "", 1, &in.k_cpu},
      {"--memory-mb", "", 1 << 20, &in.memory_bytes},
      {"--fiber-kb", "", 1024, &in.fiber_bytes},
      {"--fds", "", 1, &in.fds},
      {"--overhead-per-conn", "", 1, &in.overhead_per_conn},
      {"--bandwidth-mbps", "", 1e6, &in.bandwidth_bps},
      {"--response-bytes", "", 1, &in.response_bytes},
      {"--latency-ms", "", 1e-3, &in.latency_s},
  };
  const char* help[] = {"CPU cores (default: min of the cgroup quota, cpuset and affinity)",
                        "concurrent requests per core (default: measured by --probe, else the published 2)",
                        "memory in MiB (default: the cgroup limit, else MemAvailable)",
                        "memory per request in KiB (default: measured by --from)",
                        "file descriptors (default: min of RLIMIT_NOFILE and fs.file-max)",
                        "descriptors per connection beyond 2 (default: measured by --from, else the published 3)",
                        "link speed in Mbit/s (default: the fastest physical interface that is up)",
                        "bytes per response (default: measured by --probe)",
                        "response time in ms for the bandwidth term (default: R0 from --probe)"};
  for (size_t i = 0; i < flags.size(); i++) app.add_option(flags[i].name, flags[i].text, help[i]);
  app.add_option("--from", from, "HOST:PORT of a running tern server's metrics endpoint");
  app.add_option("--probe", probe_url,
                 "http://HOST:PORT/PATH: a few sequential requests measure R0 and the reply size");
  app.add_option("--pid", pid, "the probed server's process id: its CPU per request gives X_max");
  app.add_option("--hold", hold,
                 "connections held open (with --from and --probe) to measure what one costs the server in resident "
                 "memory and descriptors (default 128; 0: do not measure)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--fs-root", fs_root, "where /proc and /sys are (tests)");
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);
  auto usage = [](const std::string& what) {
    fmt::print(stderr, "tern-capacity: {}\n", what);
    return kExitUsage;
  };

  std::vector<std::string> problems;
  in.cores = tern::capacity::machine_cores(fs_root, &problems);
  in.memory_bytes = tern::capacity::machine_memory(fs_root, &problems);
  in.fds = tern::capacity::machine_fds(fs_root, &problems);
  in.bandwidth_bps = tern::capacity::machine_bandwidth(fs_root, &problems);

  std::optional<tern::capacity::Input> server_procs;  // the server's processors, from its metrics
  std::optional<tern::net::Address> metrics_addr;
  if (!from.empty()) {
    auto addr = tern::net::Address::parse(from);
    if (!addr) return usage(addr.error().wrap("--from " + from).message());
    metrics_addr = *addr;
    auto body = tern::top::http_get(*addr, "/metrics", 5000);
    if (!body) return usage(body.error().wrap("--from").message());
    auto scrape = tern::top::parse_exposition(*body);
    if (!scrape) return usage(scrape.error().wrap("--from " + from + "/metrics").message());
    const auto s = tern::capacity::from_metrics(*scrape, from, &problems);
    if (s.fiber_bytes.known) in.fiber_bytes = s.fiber_bytes;
    if (s.overhead_per_conn.known) in.overhead_per_conn = s.overhead_per_conn;
    if (s.procs_limit.known && (!in.cores.known || s.procs_limit.value < in.cores.value)) in.cores = s.procs_limit;
    if (s.procs.known) server_procs = s.procs;
  }

  // Flags override whatever the machine and the server's metrics show, and what the probe measures (it fills only
  // what no flag gave).
  auto flagged = [&](const tern::capacity::Input& in) { return in.source.rfind("flag ", 0) == 0; };
  for (const Flag& f : flags) {
    if (f.text.empty()) continue;
    auto v = tern::parse_number(f.name, f.text, 0, 1e18);
    if (!v) return usage(v.error().message());
    *f.target = tern::capacity::Input(*v * f.scale, std::string("flag ") + f.name);
  }

  std::optional<tern::capacity::Probe> pr;
  if (!probe_url.empty()) {
    auto target = tern::load::parse_url(probe_url);
    if (!target) return usage(target.error().wrap("--probe").message());
    tern::Config cfg;
    cfg.procs = 1;  // one processor: the probe is sequential, and the server keeps the other CPUs
    auto rt = tern::Runtime::create(cfg);
    if (!rt) return usage(rt.error().message());
    tern::Result<tern::capacity::Probe> r = tern::make_error("not run");
    (*rt)->run([&] { r = tern::capacity::probe(target->addr, target->path, pid); });
    if (!r) {
      fmt::print(stderr, "tern-capacity: {}\n", r.error().message());
      return 1;
    }
    pr = *r;
    const std::string where = "measured by --probe " + probe_url;
    in.r0_s = tern::capacity::Input(pr->r0_s, where + " (median of " + std::to_string(pr->requests) + " requests)");
    if (!flagged(in.latency_s)) in.latency_s = in.r0_s;
    if (!flagged(in.response_bytes)) in.response_bytes = tern::capacity::Input(pr->response_bytes, where);
    if (pr->cpu_per_request_s > 0) {
      // X_max: every CPU the server may use, busy with requests; K_cpu then is the knee per core.
      // The server's processors where its metrics say (a tern server runs at most that many requests at once),
      // else the CPUs it may run on.
      double cpus =
          std::min(in.cores.known ? in.cores.value : 1e9, pr->server_cpus > 0 ? double(pr->server_cpus) : 1e9);
      if (server_procs) cpus = std::min(cpus, server_procs->value);
      if (cpus < 1e9 && in.cores.known && cpus < in.cores.value && !flagged(in.cores)) {
        // The CPU term counts the CPUs X_max counts: a server running on fewer processors than the machine's cores
        // carries what its processors carry (K_cpu is per processor here), else the term and the knee disagree.
        in.cores = tern::capacity::Input(
            cpus, fmt::format("the server's {:g} processors or CPUs (tern_procs, its affinity), of {:g} cores ({})",
                              cpus, in.cores.value, in.cores.source));
      }
      if (cpus < 1e9) {
        in.x_max = tern::capacity::Input(cpus / pr->cpu_per_request_s,
                                         fmt::format("{:g} CPUs / {:.1f} us of server CPU per request ({})", cpus,
                                                     pr->cpu_per_request_s * 1e6, where));
        if (!flagged(in.k_cpu))
          in.k_cpu = tern::capacity::Input(in.x_max.value * in.r0_s.value / cpus,
                                           fmt::format("X_max x R0 / {:g} CPUs ({})", cpus, where));
      }
    }
  }
  std::optional<tern::capacity::ConnectionCost> cost;
  if (metrics_addr && !probe_url.empty() && hold > 0) {
    auto target = tern::load::parse_url(probe_url);  // parsed above already
    auto c = tern::capacity::connection_cost(target->addr, target->hostport, target->path, *metrics_addr, pid, hold);
    if (!c) {
      problems.push_back(c.error().wrap("measuring a connection's cost").message());
    } else {
      cost = *c;
      // The one-reading estimate's complaint (too few connections open to divide by) is answered by the measurement.
      std::erase_if(problems, [](const std::string& p) { return p.rfind("overhead_per_conn:", 0) == 0; });
      const std::string where = fmt::format("measured: {} connections held ({:.0f} -> {:.0f} open)", c->held,
                                            c->conns_before, c->conns_during);
      if (!flagged(in.overhead_per_conn) && c->fds_per_conn() > 0) {
        in.fds_per_conn = tern::capacity::Input(
            c->fds_per_conn(), fmt::format("{}: fds {:.0f} -> {:.0f}", where, c->fds_before, c->fds_during));
        in.fixed_fds = tern::capacity::Input(
            c->fixed_fds(),
            fmt::format("{}: {:.0f} fds at {:.0f} connections, less theirs", where, c->fds_before, c->conns_before));
      }
      if (!flagged(in.fiber_bytes) && std::isfinite(c->bytes_per_conn()) && c->bytes_per_conn() > 0) {
        in.fiber_bytes = tern::capacity::Input(
            c->bytes_per_conn(), fmt::format("{}: resident memory {:.1f} -> {:.1f} MiB ({})", where,
                                             c->rss_before / (1 << 20), c->rss_during / (1 << 20), c->rss_source));
        in.fixed_bytes = tern::capacity::Input(
            c->fixed_bytes(), fmt::format("{}: {:.1f} MiB resident at {:.0f} connections, less theirs", where,
                                          c->rss_before / (1 << 20), c->conns_before));
      } else if (!flagged(in.fiber_bytes)) {
        problems.push_back(
            fmt::format("memory per connection: the server's resident memory did not grow while {} "
                        "connections were held (memory freed by earlier load is reused); the memory "
                        "term uses the metrics' stack and heap figures",
                        c->held));
      }
    }
  }
  if (!in.k_cpu.known) in.k_cpu = tern::capacity::Input(kPublishedKCpu, "published constant (2..5), its low end");
  if (!in.overhead_per_conn.known)
    in.overhead_per_conn = tern::capacity::Input(kPublishedOverhead, "published constant (3..5), its low end");

  auto rep = tern::capacity::compute(in);
  if (!rep) return usage(rep.error().message());
  if (json) {
    nlohmann::json j;
    j["terms"] = nlohmann::json::array();
    for (const auto& t : rep->terms) {
      nlohmann::json inputs;
      for (const auto& [k, v] : t.inputs) inputs[k] = input_json(v);
      j["terms"].push_back(
          {{"name", t.name}, {"value", t.value}, {"inputs", inputs}, {"binds", t.binds}, {"formula", t.formula}});
    }
    j["left_out"] = rep->left_out;
    j["n"] = rep->n;
    j["binding"] = rep->binding;
    j["bandwidth_rate"] = rep->bandwidth_rate >= 0 ? nlohmann::json(rep->bandwidth_rate) : nlohmann::json();
    j["knee"] = {{"predicted", rep->knee >= 0 ? nlohmann::json(rep->knee) : nlohmann::json()},
                 {"predicted_95", rep->knee_95 >= 0 ? nlohmann::json(rep->knee_95) : nlohmann::json()},
                 {"x_max", in.x_max.known ? nlohmann::json(in.x_max.value) : nlohmann::json()},
                 {"r0", in.r0_s.known ? nlohmann::json(in.r0_s.value) : nlohmann::json()}};
    if (pr)
      j["probe"] = {{"cpu_per_request_s", pr->cpu_per_request_s},
                    {"server_cpus", pr->server_cpus},
                    {"cpu_connections", pr->cpu_connections},
                    {"idle_cpu_rate", pr->idle_cpu_rate}};
    if (cost)
      j["connection_cost"] = {{"held", cost->held},
                              {"connections", {cost->conns_before, cost->conns_during}},
                              {"fds", {cost->fds_before, cost->fds_during}},
                              {"resident_bytes", {cost->rss_before, cost->rss_during}},
                              {"fds_per_conn", cost->fds_per_conn()},
                              {"bytes_per_conn", cost->bytes_per_conn()}};
    j["problems"] = problems;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("concurrency capacity: N = {:.0f}, bound by {}\n", rep->n, rep->binding);
  for (const auto& t : rep->terms) {
    fmt::print("  {} {:<9} {:>12.0f}  = {}\n", t.binds ? "*" : " ", t.name, t.value, t.formula);
    for (const auto& [k, v] : t.inputs) fmt::print("  {:13}{}: {}\n", "", k, v.source);
  }
  for (const auto& l : rep->left_out) fmt::print("    left out: {}\n", l);
  if (rep->bandwidth_rate >= 0)
    fmt::print("  the published bandwidth term is a rate, not a concurrency: {:.0f} responses/s\n",
               rep->bandwidth_rate);
  if (rep->knee >= 0) {
    fmt::print("  knee N* = X_max x R0 = {:.0f}/s x {:.3f} ms = {:.0f} concurrent requests\n", in.x_max.value,
               in.r0_s.value * 1e3, rep->knee);
    if (rep->knee_95 >= 0)
      fmt::print("  95% of X_max is reached at about N = {:.0f} (mean-value analysis of the same model)\n",
                 rep->knee_95);
  } else if (pr) {
    fmt::print("  knee: needs the server's CPU per request (--pid)\n");
  }
  for (const auto& p : problems) fmt::print("  note: {}\n", p);
  return 0;
}
