// netpoll/netpoll.h: the network poller module, and the factory that picks a backend.
//
// netpoll/ implements scheduler/'s Poller interface twice, and offers runtime/net the fiber-blocking socket operations
// of netpoll::IoBackend (netpoll/io_backend.h):
//   epoll_poller.h   readiness, edge-triggered, one registration per socket (any Linux)
//   uring_poller.h   completions, one io_uring per submitting thread, provided buffers (Linux 6.0+)
//   wait_slot.h      the one-fiber parking spot both are built on; desc_table.h, their descriptor storage
// It may call scheduler/ (park, ready, timers) and alloc/; the scheduler knows no backend.
//
// Selection (Config::poller, --poller, TERN_POLLER):
//   "epoll"  always works on Linux;
//   "uring"  io_uring, or an error saying what the kernel lacks;
//   "auto"   epoll. The backend measured faster on this kernel for the workloads measured: one server core under wrk
//            at 100/1000/10000 connections, plain and pipelined, 64 B and 16 KiB (bench/percore.py), io_uring took
//            3-21% more CPU per response than epoll at every point (docs/performance.md, issue 21). Until io_uring is
//            never slower, "auto" does not pick it; "uring" asks for it.
//
//   auto p = tern::netpoll::make_poller("auto");   // Result<std::unique_ptr<sched::Poller>>
//   if (!p) { std::fprintf(stderr, "%s\n", p.error().c_str()); return 2; }
//   opts.poller = p->get();                        // sched::SchedOptions; *p must outlive the Sched
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "scheduler/poller.h"

namespace tern::netpoll {

// uring_park: Config::uring_park (the io_uring backend's idle Ms sleep in their own rings where the kernel can).
// uring_defer: Config::uring_defer (its rings SINGLE_ISSUER | DEFER_TASKRUN; netpoll/uring_poller.h).
Result<std::unique_ptr<sched::Poller>> make_poller(const std::string& kind, bool uring_park = true,
                                                   bool uring_defer = false);

// Whether make_poller("uring") would succeed here: empty, or the reason it would not (for --dry-run and tests).
std::string uring_unavailable_reason();

}  // namespace tern::netpoll
