// tools/capacity/server.h: the capacity formula's inputs a running server shows, in place of the published constants:
// from its metrics endpoint (memory per fiber, descriptors per connection, its processors) and from a short unloaded
// probe (unloaded latency R0, response size, CPU per request, hence the peak throughput X_max and the knee).
//
//   auto scrape = top::parse_exposition(*top::http_get(addr, "/metrics", 2000));
//   ServerInputs s = from_metrics(*scrape, &problems);
//   rt.run([&] { p = probe(addr, "/mix?cpu_us=100&sleep_ms=5", server_pid); });   // on a fiber
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/result.h"
#include "runtime/net/address.h"
#include "tools/capacity/formula.h"
#include "tools/top/exposition.h"

namespace tern::capacity {

struct ServerInputs {
  Input fiber_bytes;        // (stacks in use + heap allocated) / live fibers
  Input overhead_per_conn;  // fds open / connections open - 2, with at least kMinConnections connections
  Input procs_limit;        // the least of the server's tern_procs_limit sources
  Input procs;              // its processors now (tern_procs): what X_max counts
};
inline constexpr double kMinConnections = 100;  // fewer: fixed descriptors (listeners, rings) swamp the per-connection

ServerInputs from_metrics(const top::Scrape& s, const std::string& where, std::vector<std::string>* problems);

struct Probe {
  double r0_s = -1;            // median latency of sequential requests on one connection
  double response_bytes = -1;  // mean bytes per reply, headers included
  // The server's CPU per request over a short closed-loop run at cpu_connections connections, less what it spends
  // idle over the same time (idle_cpu_rate, CPU seconds a second with no requests: its monitor and timers).
  double cpu_per_request_s = -1;
  int cpu_connections = 0;
  double idle_cpu_rate = -1;
  int server_cpus = 0;  // CPUs the server process may run on (sched_getaffinity), 0 unknown
  uint64_t requests = 0;
};

// Must run on a fiber. pid 0: no CPU figures (the server's CPU is read from /proc/PID/stat).
Result<Probe> probe(const net::Address& addr, const std::string& path, pid_t pid);

}  // namespace tern::capacity
