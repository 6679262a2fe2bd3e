// runtime/config.h: tern::Config, the runtime's settings, and where they come from.
//
// Precedence (docs/architecture.md): explicit API call > command-line flag > environment > defaults derived from the
// machine. Config::from_env() applies the environment over the defaults; programs apply their flags over that.
//
//   auto cfg = tern::Config::from_env();
//   if (!cfg) { fmt::print(stderr, "{}\n", cfg.error().message()); return 2; }
//   cfg->procs = 4;                       // explicit call wins
//   tern::Runtime rt(*cfg);
//
// Environment:
//   TERN_PROCS       processors; "auto" or a positive integer
//   TERN_STACK_SIZE  fiber stack size in bytes; suffixes k/K, m/M accepted
//   TERN_POLLER      auto | uring | epoll
//   TERN_NUMA        none | compact | scatter: the NUMA placement of Ps on processing units (runtime/topology.h)
//   TERN_URING_PARK  on | off: an idle M sleeps in its own io_uring (netpoll/uring_poller.h, park())
//   TERN_NODE_ARENAS on | off: G records on per-node jemalloc arenas, each M bound to its node's (alloc/arena.h)
//   TERN_ALLOCATOR   jemalloc | malloc: what alloc/arena.h allocates with, process-wide (read once, by alloc/)
//   TERN_POLICY      the controller's policy: static | quota | threshold | hill | latency (default quota; static when
//                    TERN_PROCS or Config::procs is explicit, as an explicit GOMAXPROCS is)
//   TERN_SHADOW_POLICY            a second policy run on the same samples, applying nothing
//   TERN_PROCS_MIN, TERN_PROCS_MAX  bounds of the controller's count (max 0/auto: min(CPUs, quota ceiling))
//   TERN_CONTROLLER_INTERVAL      how often the controller samples: a duration (100ms, 1s, 500us; a bare number is ms)
//   TERN_QUOTA_ROUNDING           ceil | floor | auto: cores from a fractional quota (runtime/controller/policy.h)
//   TERN_QUOTA_RESERVE            cores of the quota left to others (sidecars), e.g. 0.2
//   TERN_ROLLBACK_DROP            a throughput drop (fraction) after a change that reverts it, e.g. 0.1
//   TERN_LATENCY_TARGET           the latency policy's scheduling-latency target: a duration (1ms)
//   TERN_SCHEDTRACE               a schedtrace line on stderr every this many ms (Go's GODEBUG=schedtrace=X)
//   TERN_DEBUG                    comma-separated: controller (log each decision with its sample)
//   TERN_TRACE                    a file: the scheduler's event trace, written there as Chrome trace JSON when the
//                                 runtime stops (runtime/debug/trace_file.h)
//   TERN_METRICS                  HOST:PORT of the debug endpoint (runtime/metrics/debug_server.h): /metrics,
//                                 /debug/sched, /debug/fibers, admin routes
//   TERN_ADMIN_TOKEN              the token its admin routes require (without one they answer loopback peers only)
//   TERN_STALL_MS                 report a fiber that runs this long without a switch, once, with a backtrace (0: off)
//   TERN_MAX_THREADS              the most OS threads running fibers, those in tern::blocking included (10000)
//   TERN_MAX_BLOCKING_THREADS     the most threads of tern::spawn_blocking's pool (512; one pool per process)
//   TERN_RAISE_FD_LIMIT           on | off: raise the soft RLIMIT_NOFILE to the hard limit at start (on; fd_limit.h)
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace tern {

struct Config {
  // The runtime's name: the `runtime` label of its metrics when a process runs several runtimes (an IO pool and a CPU
  // pool, say: tern::go_on in runtime/go.h). Letters, digits, '_', '-' and '.', at most kMaxNameBytes. Not read from
  // the environment: every runtime of a process would read the same TERN_ variable.
  std::string name = "main";
  static constexpr size_t kMaxNameBytes = 64;
  int procs = 0;                  // 0 = auto: min(CPU affinity, ceil(cgroup CPU quota))
  size_t stack_size = 256 << 10;  // usable bytes per fiber stack (virtual; pages commit lazily)
  std::string poller = "auto";    // auto | uring | epoll
  // The NUMA placement (runtime/topology.h): none | compact | scatter. `none` by default: compact would bind P 0 of
  // every runtime to the affinity's first CPU, stacking programs that share CPUs (docs/architecture.md, 7.13).
  std::string numa = kDefaultNuma;
  static constexpr const char* kDefaultNuma = "none";
  // io_uring backend, kernels with IORING_OP_FUTEX_WAIT (6.7): an idle M sleeps in its own ring, so that completions
  // of I/O it submitted wake it with their fibers. Off: it sleeps on a futex, and receives move off it after 2 ms.
  bool uring_park = true;
  // io_uring backend: each M's ring SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1; with uring_park granted): completion
  // work runs in batches when the M asks for it rather than at each of its system calls, 0.9x the CPU per response
  // at -c1000 on one core. Off by default: an M inside tern::blocking (or any long system call) holds the data of its
  // ring's connections until it returns (netpoll/uring_poller.h, "Deferred rings"). For servers whose fibers never
  // block their thread.
  bool uring_defer = false;
  // G records on the jemalloc arena of the spawning P's node, each M bound to its node's arena (alloc/arena.h;
  // sched::SchedOptions::node_arenas). Off: operator new.
  bool node_arenas = true;

  // The controller (runtime/controller/controller.h).
  std::string policy;  // empty: "static" when procs > 0, else "quota"
  std::string shadow_policy;
  int procs_min = 1;
  int procs_max = 0;  // 0: min(CPUs, the quota's ceiling), followed live
  int64_t controller_interval_ns = 100'000'000;
  std::string quota_rounding = "auto";  // ceil | floor | auto
  double quota_reserve = 0;             // cores
  double rollback_drop = 0.10;
  double latency_target_s = 0.001;
  int64_t schedtrace_ms = 0;
  bool debug_controller = false;
  // The debug endpoint (runtime/metrics/debug_server.h): HOST:PORT to serve on, empty = off; the admin token.
  std::string metrics;
  std::string admin_token;
  int64_t stall_ms = 0;            // sched::SchedOptions::stall_ns, in ms; 0 = off
  int max_threads = 10'000;        // sched::SchedOptions::max_threads
  int max_blocking_threads = 512;  // runtime/blocking.h: the process's pool takes the last runtime's value
  // Raise the soft RLIMIT_NOFILE to the hard limit when the runtime starts, as Go does (runtime/fd_limit.h).
  bool raise_fd_limit = true;
  std::string fs_root = "/";  // where /proc and the cgroup mounts are looked up (tests: a fixture tree)
  // The event trace's file (TERN_TRACE; runtime/debug/trace_file.h): empty = no trace. Created when the runtime
  // starts (Runtime::create fails if it cannot be), written when it stops.
  std::string trace;

  // The policy that runs: `policy`, or its default.
  std::string resolved_policy() const { return !policy.empty() ? policy : procs > 0 ? "static" : "quota"; }

  static Result<Config> from_env();
  // Checks the settings that from_env() and flags cannot check one at a time (policy names, procs_min <= procs_max).
  Result<void> validate() const;
  // The processor count `procs = 0` resolves to on this machine now.
  static int default_procs();
  // procs with 0 resolved.
  int resolved_procs() const { return procs > 0 ? procs : default_procs(); }
  // What `poller` resolves to on this machine now, as resolved_procs() for procs: "auto" is epoll
  // (netpoll/netpoll.h says why). Probes the kernel (a throwaway ring) unless poller is "epoll", so that --dry-run
  // can say whether "uring" would work.
  struct PollerResolution {
    std::string backend;            // "uring" or "epoll"; empty: "uring" was asked for where it cannot work
    std::string uring_unavailable;  // why io_uring cannot be used here; empty if it can, or was not probed
  };
  PollerResolution resolved_poller() const;
  // The configuration as a JSON object (for --dry-run).
  std::string to_json() const;
};

// Parses a processor count ("auto" -> 0, "N" with N >= 1). Exposed for flag parsing.
Result<int> parse_procs(const std::string& s);
// Parses a byte size ("262144", "256k", "1M").
Result<size_t> parse_size(const std::string& s);
// Parses a duration: a number with a unit ns, us, ms or s ("100ms", "1.5s"); a bare number is milliseconds. Must be
// finite and positive.
Result<int64_t> parse_duration_ns(const std::string& s);
// Parses a finite number in [lo, hi] ("0.2"); names the setting in the error.
Result<double> parse_number(const std::string& name, const std::string& s, double lo, double hi);
// Parses a switch: on/1 or off/0; names the setting in the error.
Result<bool> parse_on_off(const std::string& name, const std::string& s);
// (runtime/config_parse.cc holds these parsers, pure functions of their text: tests/fuzz/config_fuzz.cc fuzzes them.)

namespace detail {
// A number as the settings print it: "0.2", "100", no trailing zeros.
std::string format_number(double x);
}  // namespace detail

}  // namespace tern
