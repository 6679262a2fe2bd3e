// runtime/metrics/runtime_metrics.h: the runtime's own metrics (tern_*), computed when read from the scheduler's
// per-P counters (sched::SchedStats), the controller's (controller::ControllerStats), the cgroup files, the fiber
// stack pool, jemalloc and /proc. A Runtime registers one as a metrics::Collector (runtime/runtime.cc); the names and
// their meaning are listed in docs/architecture.md ("Metrics and the debug endpoint").
#pragma once

#include <mutex>
#include <string>

#include "runtime/cgroup.h"
#include "runtime/metrics/metrics.h"

namespace tern::sched {
class Sched;
}
namespace tern::controller {
class Controller;
}

namespace tern::metrics {

class RuntimeMetrics {
 public:
  // fs_root: where /proc and the cgroup mounts are looked up (Config::fs_root).
  RuntimeMetrics(sched::Sched& sched, controller::Controller& controller, const std::string& fs_root);
  // Appends the runtime's families to out. Thread-safe (the cgroup reader is serialized).
  void collect(Snapshot& out);

 private:
  sched::Sched& sched_;
  controller::Controller& controller_;
  std::mutex mu_;  // discovery_: one reader at a time
  CgroupDiscovery discovery_;
};

// The time fibers waited for a contended tern::Mutex, in nanoseconds (runtime/sync/mutex.cc adds to it on the slow
// path only): the counter behind tern_mutex_wait_seconds_total.
Counter& mutex_wait_ns();
// tern_connections_open: tern::net streams open now (runtime/net/stream.cc adds and removes).
Gauge& connections_open();

}  // namespace tern::metrics
