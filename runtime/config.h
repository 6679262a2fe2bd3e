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
//   TERN_NUMA        on | off
//   TERN_URING_PARK  on | off: an idle M sleeps in its own io_uring (netpoll/uring_poller.h, park())
//   TERN_POLICY, TERN_METRICS, TERN_SCHEDTRACE, TERN_TRACE: read by later parts of the runtime
#pragma once

#include <cstddef>
#include <string>

#include "base/result.h"

namespace tern {

struct Config {
  int procs = 0;                  // 0 = auto: min(CPU affinity, ceil(cgroup CPU quota))
  size_t stack_size = 256 << 10;  // usable bytes per fiber stack (virtual; pages commit lazily)
  std::string poller = "auto";    // auto | uring | epoll
  bool numa = true;
  // io_uring backend, kernels with IORING_OP_FUTEX_WAIT (6.7): an idle M sleeps in its own ring, so that completions
  // of I/O it submitted wake it with their fibers. Off: it sleeps on a futex, and receives move off it after 2 ms.
  bool uring_park = true;

  static Result<Config> from_env();
  // The processor count `procs = 0` resolves to on this machine now.
  static int default_procs();
  // procs with 0 resolved.
  int resolved_procs() const { return procs > 0 ? procs : default_procs(); }
  // What `poller` resolves to on this machine now, as resolved_procs() for procs: "auto" takes io_uring where its
  // probe passes. Probes the kernel (a throwaway ring) unless poller is "epoll".
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

}  // namespace tern
