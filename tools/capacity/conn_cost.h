// tools/capacity/conn_cost.h: what one more connection costs a running server, measured rather than assumed: the
// server's descriptors and resident memory before and while this program holds n more keep-alive connections to it
// (each has sent one request and read its reply, so it holds what a served connection holds: its fiber's touched
// stack, its buffers, its socket).
//
//   auto c = connection_cost(server_addr, "127.0.0.1:8080", "/mix?sleep_ms=1", metrics_addr, pid, 128);
//   c->fds_per_conn();    // 1.0 for tern-echo: its socket
//   c->bytes_per_conn();  // resident bytes each connection added
//
// Why the difference of two readings and not one reading divided by the connections open: a server holds fixed
// descriptors (listeners, rings, the metrics endpoint, stdio) and fixed memory (code, pools, the runtime) whatever its
// load, and with few connections open they swamp the per-connection share (tern-echo: 15 fixed descriptors, 1 per
// connection; the formula's "2 + overhead" shape cannot express that). The per-connection memory is resident memory
// (the process's RSS): tern_stack_bytes counts a stack's whole mapping (256 KiB), of which a served connection
// touches a few pages. Memory freed by earlier load and kept by the allocator or the stack pool is reused by the new
// connections without growing the RSS, so a server measured after heavy load reads low: measure it fresh.
#pragma once

#include <sys/types.h>

#include <cmath>
#include <string>

#include "base/result.h"
#include "runtime/net/address.h"

namespace tern::capacity {

struct ConnectionCost {
  int held = 0;  // connections this program held open during the second reading
  double conns_before = NAN, conns_during = NAN;
  double fds_before = NAN, fds_during = NAN;
  double rss_before = NAN, rss_during = NAN;  // bytes; NaN when neither the metrics nor /proc/PID show it
  std::string rss_source;                     // "process_resident_memory_bytes" or "/proc/PID/status VmRSS"

  double added() const { return conns_during - conns_before; }
  double fds_per_conn() const { return (fds_during - fds_before) / added(); }
  double fixed_fds() const { return std::max(0.0, fds_before - conns_before * fds_per_conn()); }
  double bytes_per_conn() const { return (rss_during - rss_before) / added(); }
  double fixed_bytes() const { return std::max(0.0, rss_before - conns_before * bytes_per_conn()); }
};

// Plain blocking sockets (no runtime): n connections to `server`, each sends GET path (Host: hostport) and reads the
// reply; the metrics endpoint is scraped before and after (3 times each, keeping the reading with the fewest
// descriptors: a scrape also counts ones only passing through); every connection is closed before returning. An error
// when a connection fails, a reply is not 2xx, the metrics lack tern_fds_open or tern_connections_open, or the
// server's connection count did not grow (what would it divide by).
Result<ConnectionCost> connection_cost(const net::Address& server, const std::string& hostport, const std::string& path,
                                       const net::Address& metrics, pid_t pid, int n);

}  // namespace tern::capacity
