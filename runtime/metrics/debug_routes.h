// runtime/metrics/debug_routes.h: the routes a Runtime serves on its debug endpoint (runtime/metrics/debug_server.h):
//   GET  /metrics               every metric, Prometheus text format 0.0.4 (metrics::snapshot())
//   GET  /debug/sched           JSON: the scheduler's totals and every P (state, M, queue, current fiber, its run time)
//   GET  /debug/fibers          every live fiber: state, what it waits on and for how long, its spawn site, grouped
//                               (runtime/debug/fibers.h); ?format=text for Go's goroutine-dump text
//   POST /debug/procs?n=N       admin: Runtime::set_procs(N) (the controller's policy becomes static)
//   POST /debug/policy?name=X   admin: Runtime::set_policy(X)
#pragma once

#include "runtime/metrics/debug_server.h"

namespace tern {
class Runtime;
}

namespace tern::metrics {

void add_runtime_routes(DebugServer& server, Runtime& rt);

}  // namespace tern::metrics
