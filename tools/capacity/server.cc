// tools/capacity/server.cc: inputs from a running server (see server.h).
#include "tools/capacity/server.h"

#include <fmt/core.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "runtime/go.h"
#include "tools/load/load.h"
#include "tools/top/proc_stat.h"

namespace tern::capacity {

ServerInputs from_metrics(const top::Scrape& s, const std::string& where, std::vector<std::string>* problems) {
  ServerInputs out;
  const double stacks = s.value("tern_stack_bytes", {{"state", "in_use"}});
  const double heap = s.value("tern_heap_bytes", {{"kind", "allocated"}});
  const double fibers = s.sum("tern_fibers");
  if (std::isfinite(stacks) && std::isfinite(heap) && std::isfinite(fibers) && fibers > 0) {
    out.fiber_bytes = Input((stacks + heap) / fibers,
                            fmt::format("measured at {}: (stacks in use {:.1f} MiB + heap {:.1f} MiB) / {:.0f} fibers",
                                        where, stacks / (1 << 20), heap / (1 << 20), fibers));
  } else {
    problems->push_back("fiber_bytes: " + where + " shows no tern_stack_bytes, tern_heap_bytes or live fibers");
  }
  const double fds = s.value("tern_fds_open"), conns = s.value("tern_connections_open");
  if (std::isfinite(fds) && std::isfinite(conns) && conns >= kMinConnections) {
    out.overhead_per_conn =
        Input(std::max(0.0, fds / conns - 2),
              fmt::format("measured at {}: {:.0f} fds / {:.0f} connections - 2", where, fds, conns));
  } else if (std::isfinite(conns)) {
    problems->push_back(
        fmt::format("overhead_per_conn: {} has {:.0f} connections open, fewer than the {:.0f} that make "
                    "fds per connection meaningful",
                    where, conns, kMinConnections));
  }
  double least = INFINITY;
  std::string src;
  for (const top::Sample* x : s.all("tern_procs_limit")) {
    if (std::isfinite(x->value) && x->value > 0 && x->value < least) {
      least = x->value;
      src = std::string(x->label("source"));
    }
  }
  if (const double procs = s.value("tern_procs"); std::isfinite(procs) && procs >= 1)
    out.procs = Input(procs, fmt::format("measured at {}: tern_procs", where));
  if (std::isfinite(least)) out.procs_limit = Input(least, fmt::format("measured at {}: its {} limit", where, src));
  return out;
}

Result<Probe> probe(const net::Address& addr, const std::string& path, pid_t pid) {
  Probe p;
  load::Options o;
  o.addr = addr;
  o.path = path;
  o.connections = 1;
  o.duration = std::chrono::milliseconds(500);
  auto seq = load::run(o);
  if (!seq) return seq.error();
  if (seq->ok == 0) {
    std::string why;
    for (const auto& [k, v] : seq->errors) why += fmt::format("{}{} {}", why.empty() ? "" : ", ", k, v);
    return make_error("probe " + addr.to_string() + path + ": no request succeeded (" + why + ")");
  }
  p.r0_s = static_cast<double>(seq->uncorrected.quantile(0.5)) * 1e-9;
  p.response_bytes = static_cast<double>(seq->bytes) / static_cast<double>(seq->ok);
  p.requests = seq->ok;
  if (pid > 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(pid, sizeof set, &set) == 0) p.server_cpus = CPU_COUNT(&set);
    // What the server spends with no requests at all (its monitor, controller and timers): a fixed cost per second
    // that, divided among the few requests of a short run, would read as CPU per request.
    using Clock = std::chrono::steady_clock;
    const auto i0 = Clock::now();
    const double idle0 = top::process_cpu_seconds(pid);
    sleep_for(std::chrono::milliseconds(300));
    const double idle1 = top::process_cpu_seconds(pid);
    const double idle_s = std::chrono::duration<double>(Clock::now() - i0).count();
    if (std::isfinite(idle0) && std::isfinite(idle1) && idle1 >= idle0) p.idle_cpu_rate = (idle1 - idle0) / idle_s;
    // CPU per request with requests in flight, as under load: one at a time, each request also pays the server's
    // going idle and waking (at 4 connections on a 20 ms request, 98 us a request against 39 us under load; at 16,
    // 48 us). As many connections as one request's R0 holds half-milliseconds, 4 to 32: a few percent of one CPU for
    // slow requests, a quarter of it at most for fast ones, over one second.
    o.connections = std::clamp(static_cast<int>(std::lround(p.r0_s / 0.5e-3)), 4, 32);
    p.cpu_connections = o.connections;
    // First a short untimed run at that count: the first use of as many connections pays for their fibers' stacks
    // and the server's buffers (page faults), once.
    o.duration = std::chrono::milliseconds(300);
    if (auto warm = load::run(o); warm) p.requests += warm->ok;
    o.duration = std::chrono::seconds(1);
    const auto b0 = Clock::now();
    const double c0 = top::process_cpu_seconds(pid);
    auto burst = load::run(o);
    const double c1 = top::process_cpu_seconds(pid);
    const double burst_s = std::chrono::duration<double>(Clock::now() - b0).count();
    if (burst && burst->ok > 0 && std::isfinite(c0) && std::isfinite(c1) && c1 > c0) {
      double cpu = c1 - c0;
      // Less the idle cost, but never below half the total (a busy neighbour can inflate the idle reading).
      if (p.idle_cpu_rate > 0) cpu = std::max(cpu / 2, cpu - p.idle_cpu_rate * burst_s);
      p.cpu_per_request_s = cpu / static_cast<double>(burst->ok);
      p.requests += burst->ok;
    }
  }
  return p;
}

}  // namespace tern::capacity
