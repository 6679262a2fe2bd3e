// runtime/metrics/runtime_metrics.h: the runtime's own metrics (tern_*), computed when read from the scheduler's
// per-P counters (sched::SchedStats), the controller's (controller::ControllerStats), the cgroup files, the fiber
// stack pool, jemalloc and /proc. A Runtime registers one as a metrics::Collector (runtime/runtime.cc); the names and
// their meaning are listed in docs/architecture.md ("Metrics and the debug endpoint").
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

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

// The process's exposition of its runtimes' metrics: one collector (metric names are process-wide, as in Prometheus's
// default registry) over every live runtime's RuntimeMetrics, registered with the first runtime and kept for the
// process's life (it adds nothing while no runtime lives). With one runtime the families are exactly what its
// collect() makes; with several (an IO pool beside a CPU pool: tern::go_on) they are merged_runtimes()'s.
//
// expose_runtime() adds m under `name` and returns the label its series carry: the name, or NAME-ID (the scheduler's
// id) when a live runtime already has that name, so two runtimes never share a label. hide_runtime() returns once no
// scrape is reading m.
std::string expose_runtime(const std::string& name, uint64_t id, RuntimeMetrics* m);
void hide_runtime(RuntimeMetrics* m);

// Whether a family of collect() describes the process rather than one runtime (process_*, the cgroup's, the heap's,
// descriptors, the tern::Mutex wait counter, which is process-wide): with several runtimes it appears once, unlabelled.
bool process_wide(const std::string& family);
// Several runtimes' snapshots (label, what its collect() made), oldest first, as one: every series of a runtime's
// family gets the label runtime="LABEL" first among its labels, the runtimes' series of one family sit together (the
// exposition format requires it), and process-wide families are taken from the first runtime only. One runtime's
// snapshot is returned as it is.
Snapshot merged_runtimes(std::vector<std::pair<std::string, Snapshot>> per_runtime);

// The time fibers waited for a contended tern::Mutex, in nanoseconds (runtime/sync/mutex.cc adds to it on the slow
// path only): the counter behind tern_mutex_wait_seconds_total.
Counter& mutex_wait_ns();
// tern_connections_open: tern::net streams open now (runtime/net/stream.cc adds and removes).
Gauge& connections_open();

}  // namespace tern::metrics
