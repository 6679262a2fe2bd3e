// tools/capacity/formula.h: the concurrency capacity formula of ../shared/CAPACITY.md, computed from inputs that each
// say where they came from, with the forms that are concurrencies beside it.
//
//   N ≈ min( floor(cores × K_cpu),                 CPU
//            floor(memory / per-fiber memory),      memory
//            floor(fds / (2 + overhead_per_conn)),  file descriptors
//            bandwidth term )
//
// The published bandwidth term divides a link's rate by a response's size: requests per second, a rate, not a
// concurrency. It is reported as that rate (bandwidth_rate) and, with a latency, as the concurrency Little's law makes
// of it (rate × latency); only the concurrency form takes part in the minimum.
//
// The memory and fds terms have a measured form beside the published one. The published one divides the whole limit
// by a per-connection cost; a real server also holds fixed memory and descriptors whatever its load (tern-echo: 15
// descriptors, then exactly 1 per connection, where "2 + overhead" can never go below 2). Where a running server's
// cost was measured (conn_cost.h: fixed_bytes, fds_per_conn, fixed_fds), the terms are (limit - fixed) / per
// connection, and the published form is what the output shows only when nothing was measured.
//
//   Inputs in;
//   in.cores = {2, "cgroup quota (/sys/fs/cgroup/cpu/cpu.cfs_quota_us)"};
//   ...
//   Result<Report> r = compute(in);   // an input that is NaN, infinite, negative or zero where it must not be: an
//                                     // error naming it
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace tern::capacity {

// A number and where it came from ("cgroup quota", "--fds", "published constant (3..5)", "measured: ...").
struct Input {
  double value = 0;
  std::string source;
  bool known = false;  // false: not given and not found (a term that needs it is left out, and says why)

  Input() = default;
  Input(double v, std::string src) : value(v), source(std::move(src)), known(true) {}
};

struct Inputs {
  Input cores;              // CPU cores the server may use
  Input k_cpu;              // concurrent requests one core carries (the formula's K_cpu; published 2..5)
  Input memory_bytes;       // memory the server may use
  Input fiber_bytes;        // memory per concurrent request (its fiber's stack, buffers and heap)
  Input fds;                // file descriptors the server may open
  Input overhead_per_conn;  // descriptors per connection beyond the formula's 2 (published 3..5)
  // Measured (conn_cost.h) where a server can show them; when known they replace the published shapes:
  // memory (memory_bytes - fixed_bytes) / fiber_bytes and fds (fds - fixed_fds) / fds_per_conn.
  Input fixed_bytes;     // resident memory the server holds whatever its connections
  Input fds_per_conn;    // descriptors each connection adds
  Input fixed_fds;       // descriptors the server holds whatever its connections
  Input bandwidth_bps;   // the link, bits per second
  Input response_bytes;  // bytes per response on the wire
  Input latency_s;       // response time: turns the bandwidth rate into a concurrency
  Input x_max;           // peak throughput, requests per second (the knee's)
  Input r0_s;            // unloaded response time (the knee's)
};

struct Term {
  std::string name;  // cpu, memory, fds, bandwidth
  double value = 0;  // concurrent requests (floored)
  std::vector<std::pair<std::string, Input>> inputs;
  bool binds = false;
  std::string formula;  // how value was computed, with the numbers
};

struct Report {
  std::vector<Term> terms;            // the terms whose inputs are known
  std::vector<std::string> left_out;  // "bandwidth: needs response_bytes (--response-bytes or --from)"
  double n = 0;                       // the minimum over terms
  std::string binding;                // its term's name
  double bandwidth_rate = -1;         // responses per second the link carries (the published term); -1 unknown
  // The knee: N* = X_max × R0, peak throughput times unloaded latency (-1 where an input is unknown).
  double knee = -1;
  // Where a closed loop's throughput reaches 95% of X_max, from the same two inputs: knee_95 below (-1 unknown).
  double knee_95 = -1;
};

Result<Report> compute(const Inputs& in);

// N* is the corner of the closed system's optimistic bound: a measured curve bends below it, so the concurrency at
// which throughput reaches 95% of its peak (what a sweep can measure) lies above 0.95 N* by the queueing near the
// corner, relatively more the smaller N* is. This predicts that concurrency with exact mean-value analysis (Reiser and
// Lavenberg; Lazowska et al., Quantitative System Performance, ch. 6) of the model behind N*: each request spends
// R0 − D away from the CPU and D = servers / X_max on one of `servers` CPUs, the multi-CPU queue taken as Seidmann's
// one CPU of demand D / servers plus a delay of D (servers − 1) / servers. The smallest N with X(N) >= 95% of X_max;
// -1 when an input is not finite and positive, or when R0 < D.
inline constexpr double kKneePeakFraction = 0.95;
double knee_95(double x_max, double r0_s, double servers);

}  // namespace tern::capacity
