// tools/capacity/server.cc: inputs from a running server (see server.h).
#include "tools/capacity/server.h"

#include <fmt/core.h>
#include <sched.h>

#include <chrono>
#include <cmath>

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
    // CPU per request with a few requests in flight, as under load (one at a time also pays every wakeup).
    o.connections = 4;
    o.duration = std::chrono::seconds(1);
    const double c0 = top::process_cpu_seconds(pid);
    auto burst = load::run(o);
    const double c1 = top::process_cpu_seconds(pid);
    if (burst && burst->ok > 0 && std::isfinite(c0) && std::isfinite(c1) && c1 > c0) {
      p.cpu_per_request_s = (c1 - c0) / static_cast<double>(burst->ok);
      p.requests += burst->ok;
    }
  }
  return p;
}

}  // namespace tern::capacity
