// tools/top/frame.h: one tern-top frame: what two scrapes of a program's /metrics, dt seconds apart, say it is doing,
// and that frame as lines of text (the live view and --once print the same lines).
//
//   Frame f = make_frame(prev, cur, 1.0);       // prev: the scrape before (rates and per-interval quantiles)
//   for (const auto& line : render(f, "127.0.0.1:9100", 100)) puts(line.c_str());
//
// Rates and quantiles are over the interval between the scrapes; a counter that went backwards (the program
// restarted) reads as that interval's own count. Without a previous scrape (prev empty) rates are unknown (shown as
// "-") and the latency quantiles are over the program's whole life.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tools/top/exposition.h"

namespace tern::top {

struct ProcRow {
  int id = 0;
  double busy = -1;  // fraction of the interval its P was held (0..1), -1 unknown
  double runq = 0;
};

struct Frame {
  double dt = 0;  // seconds between the scrapes (0: a single scrape)
  double procs = 0;
  std::map<std::string, double> procs_limit;  // by source: affinity, cpuset, quota, max
  std::map<std::string, double> threads;      // by state
  std::map<std::string, double> fibers;       // by state
  double global_runq = 0;
  std::vector<ProcRow> per_p;
  double busy_procs = -1;  // processors' busy time per second (sum over Ps)
  double cpu_cores = -1;   // the process's CPU time per second
  double lat_p50_s = -1;   // scheduling latency (runnable -> running) over the interval
  double lat_p99_s = -1;
  double oldest_runnable_s = -1;
  double target = -1, shadow = -1;
  double rollbacks = 0;
  std::map<std::string, double> decisions;  // "policy direction" -> count in the interval (or total)
  double quota_cores = -1;
  double throttled_periods = -1, throttled_s = -1;  // in the interval
  double work_rate = -1, steal_rate = -1, switch_rate = -1;
  double connections = -1, fds_open = -1, fds_limit = -1;
  std::map<std::string, double> heap_bytes, stack_bytes;
};

// A quantile (0..1) of a Prometheus histogram named `base` (samples base_bucket{le=...}), over what was added
// between prev and cur (prev may be empty), interpolated linearly inside the bucket as PromQL's histogram_quantile
// does; -1 when there are no observations.
double histogram_quantile(const Scrape* prev, const Scrape& cur, const std::string& base, double q);

Frame make_frame(const Scrape* prev, const Scrape& cur, double dt);

// The frame as lines at most `width` columns wide; `source` names the program (HOST:PORT).
std::vector<std::string> render(const Frame& f, const std::string& source, int width);

}  // namespace tern::top
