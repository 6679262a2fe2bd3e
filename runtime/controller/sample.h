// runtime/controller/sample.h: Sample, what the controller thread measures each tick and hands to a policy.
//
// A policy (runtime/controller/policy.h) is a pure function of the samples it has been given and its own state: it
// reads nothing else, so a table of Samples tests it completely, and a shadow policy can be run on the same samples.
//
//   Sample s;                        // built by the controller thread (runtime/controller/controller.cc)
//   s.procs = 2; s.quota_cores = 1.0; s.utilization = 0.9; ...
//   int target = policy->decide(s);  // the controller clamps it to [procs_min, procs_max] and applies hysteresis
//
// Every double may be NaN or infinite when its source was (a garbage cgroup file gives NaN quota, say): policies treat
// a non-finite input as unknown, never as a number.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace tern::controller {

inline constexpr double kUnknown = std::numeric_limits<double>::quiet_NaN();

struct Sample {
  // When, and how long since the previous sample (seconds; the first sample's interval is the time since start).
  int64_t now_ns = 0;
  double interval_s = 0;

  // The processor count now, and the bounds the controller clamps to (procs_max already includes what the machine
  // allows: min(cpuset, affinity, quota ceiling) unless the user set a higher one explicitly).
  int procs = 1;
  int procs_min = 1;
  int procs_max = 1;
  int idle_procs = 0;  // Ps idle at the moment of sampling

  // Limits, as discovered now (runtime/cgroup.h). quota_cores: the tightest CPU quota along the process's cgroup and
  // its ancestors, in cores (NaN = no quota); quota_reserve is already subtracted. cpus: the CPUs the process may run
  // on (min of cpuset.cpus.effective and sched_getaffinity; 0 = unknown).
  double quota_cores = kUnknown;
  int cpus = 0;

  // Throttling of the cgroup that binds the quota, over the interval (cpu.stat deltas). throttled_ratio =
  // throttled_periods / periods (NaN without periods).
  uint64_t periods = 0;
  uint64_t throttled_periods = 0;
  double throttled_s = 0;
  double throttled_ratio = kUnknown;

  // CPU over the interval. busy_s: the sum over Ps of the time each was held by an M (running fibers, polling,
  // spinning); utilization = busy_s / (procs * interval_s), in [0, 1]. cpu_s: the process's CPU time (utime + stime);
  // cpu_cores = cpu_s / interval_s.
  double busy_s = 0;
  double utilization = kUnknown;
  double cpu_s = 0;
  double cpu_cores = kUnknown;

  // Queueing. runnable: fibers queued now (local + global). sched_latency_p99_s: the 99th percentile of the time from
  // runnable to running over the interval (estimated from sampled readies, scheduler/g.h; NaN with none).
  // oldest_runnable_s: how long the longest-waiting runnable fiber has waited, as far as can be seen cheaply (the
  // longest sampled wait in the interval, or the time a P with a non-empty queue has gone without starting a fiber,
  // whichever is longer).
  uint64_t runnable = 0;
  double sched_latency_p99_s = kUnknown;
  double oldest_runnable_s = 0;

  // Throughput over the interval: fibers finished, the application's work counter (tern::count_work), and their rates.
  // throughput is work per second where the application counts work (work_counted), else fibers finished per second.
  uint64_t fibers_finished = 0;
  uint64_t work = 0;
  bool work_counted = false;
  double throughput = kUnknown;
};

// A number usable as one: finite.
inline bool known(double x) {
  return std::isfinite(x);
}

}  // namespace tern::controller
